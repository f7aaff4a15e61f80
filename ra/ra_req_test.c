/* ra_req_test: the request record script (ra_req.h) against a private
 * redis-server (unix socket in a temp dir, no TCP, no persistence), driven
 * through a synchronous hiredis context: SCRIPT LOAD, ra_req_record_cmd +
 * redisCommandArgv, ra_req_record_parse. Covers each outcome and the record
 * and device fields it leaves, renewal archiving, the open-index command,
 * ids and keys, and malformed replies. Skipped (exit 77) without
 * redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ra/ra_redis.h"
#include "ra/ra_testredis.h"
#include "ra/ra_registry.h"
#include "ra/ra_req.h"

static ra_testredis_t srv;
static redisContext *rc;
static char sha[41];

static int start_server(void **state) {
    (void)state;
    if (ra_testredis_start(&srv, "ra_req_test", &rc) != 0) return -1;
    ra_req_script_sha(sha);
    return ra_testredis_load_script(rc, ra_req_script(), sha);
}

static int stop_server(void **state) {
    (void)state;
    return ra_testredis_stop(&srv, &rc);
}

/* ---- helpers ---- */

/* new_req fills `r` for a request of `identity` with CSR bytes `csr`. */
static void new_req(ra_req_record_t *r, const char *identity, const void *csr, size_t csr_len, int64_t now) {
    memset(r, 0, sizeof(*r));
    r->identity = identity;
    r->protocol = "est";
    r->peer = "192.0.2.7:40000";
    r->csr_der = csr;
    r->csr_len = csr_len;
    SHA256(csr, csr_len, r->csr_sha256);
    r->renew_serial_hex = "";
    r->now = now;
}

static void set_issue(ra_req_record_t *r, const void *cert, size_t cert_len, const char *serial,
                      int64_t not_after) {
    r->issue = true;
    r->cert_der = cert;
    r->cert_len = cert_len;
    r->serial_hex = serial;
    r->not_after = not_after;
}

static void set_reject(ra_req_record_t *r, const char *reason) {
    r->issue = false;
    r->reason = reason;
}

/* run_script runs the script for `r` and parses the reply into `res`.
 * Returns the reply (res->cert points into it; the caller frees it). */
static redisReply *run_script(const ra_req_record_t *r, ra_req_result_t *res) {
    ra_req_cmd_t cmd;
    char why[256];
    assert_int_equal(ra_req_record_cmd(&cmd, sha, r), RA_OK);
    redisReply *rep = redisCommandArgv(rc, cmd.argc, cmd.argv, cmd.argvlen);
    assert_non_null(rep);
    ra_err_t e = ra_req_record_parse(rep, res, why, sizeof(why));
    if (e != RA_OK) fprintf(stderr, "parse: %s\n", why);
    assert_int_equal(e, RA_OK);
    return rep;
}


static void key_of(char *key, size_t key_len, const ra_req_record_t *r) {
    ra_req_key(key, key_len, r->identity, r->csr_sha256);
}

/* field returns HGET key f (NULL if absent); free with freeReplyObject. */
static redisReply *field(const char *key, const char *f) {
    const char *argv[] = {"HGET", key, f};
    redisReply *rep = redisCommandArgv(rc, 3, argv, NULL);
    assert_non_null(rep);
    assert_true(rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_NIL);
    return rep;
}

static void assert_field(const char *key, const char *f, const void *want, size_t want_len) {
    redisReply *rep = field(key, f);
    if (!want) {
        assert_int_equal(rep->type, REDIS_REPLY_NIL);
    } else {
        assert_int_equal(rep->type, REDIS_REPLY_STRING);
        assert_int_equal(rep->len, want_len);
        assert_memory_equal(rep->str, want, want_len);
    }
    freeReplyObject(rep);
}

static void assert_field_str(const char *key, const char *f, const char *want) {
    assert_field(key, f, want, want ? strlen(want) : 0);
}

static void assert_field_int(const char *key, const char *f, long long want) {
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", want);
    assert_field_str(key, f, buf);
}

static long long zscore_exists(const char *id) {
    const char *argv[] = {"ZSCORE", RA_REQ_OPEN_SET, id};
    redisReply *rep = redisCommandArgv(rc, 3, argv, NULL);
    assert_non_null(rep);
    long long n = rep->type == REDIS_REPLY_STRING;
    freeReplyObject(rep);
    return n;
}

static long long exists(const char *key) {
    const char *argv[] = {"EXISTS", key};
    redisReply *rep = redisCommandArgv(rc, 2, argv, NULL);
    assert_non_null(rep);
    long long n = rep->integer;
    freeReplyObject(rep);
    return n;
}

/* Binary CSR/certificate stand-ins (the script stores bytes, NULs too). */
static const uint8_t csr_a[] = {0x30, 0x82, 0x00, 0x10, 'C', 'S', 'R', '-', 'A', 0x00, 0xff};
static const uint8_t cert_a1[] = {0x30, 0x82, 0x00, 0x05, 'C', 'E', 'R', 'T', 0x00, '1'};
static const uint8_t cert_a2[] = {0x30, 0x82, 0x00, 0x05, 'C', 'E', 'R', 'T', 0x00, '2'};
static const uint8_t cert_a3[] = {0x30, 0x82, 0x00, 0x05, 'C', 'E', 'R', 'T', 0x00, '3'};

/* ---- issuance, retry, renewal ---- */

static void test_issue_existing_renew(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    char key[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX], archived[RA_REQ_KEY_MAX + 32];
    int64_t now = (int64_t)time(NULL), na = now + 365 * 86400;

    /* new issuance */
    new_req(&r, "est-user_1.x@y", csr_a, sizeof(csr_a), now);
    set_issue(&r, cert_a1, sizeof(cert_a1), "0a01", na);
    redisReply *rep = run_script(&r, &res);
    assert_int_equal(res.outcome, RA_REQ_OUT_ISSUED);
    assert_string_equal(res.serial, "0a01");
    assert_int_equal(res.not_after, na);
    assert_false(res.was_open);
    assert_string_equal(res.reason, "");
    freeReplyObject(rep);
    key_of(key, sizeof(key), &r);
    ra_req_id(id, sizeof(id), r.identity, r.csr_sha256);
    assert_field_str(key, "id", id);
    assert_field_str(key, "identity", "est-user_1.x@y");
    assert_field_str(key, "protocol", "est");
    assert_field_str(key, "peer", "192.0.2.7:40000");
    assert_field(key, "csr", csr_a, sizeof(csr_a));
    assert_field_str(key, "state", "issued");
    assert_field_str(key, "serial", "0a01");
    assert_field_int(key, "not_after", na);
    assert_field(key, "cert", cert_a1, sizeof(cert_a1));
    assert_field_int(key, "received", now);
    assert_field_int(key, "updated", now);
    assert_field_int(key, "attempts", 1);
    assert_field_str(key, "mode", "local");
    assert_field_str(key, "reason", NULL);
    assert_int_equal(zscore_exists(id), 0);

    /* the same CSR again (a retry): the recorded certificate, not the new one */
    new_req(&r, "est-user_1.x@y", csr_a, sizeof(csr_a), now + 5);
    set_issue(&r, cert_a2, sizeof(cert_a2), "0a02", na + 5);
    rep = run_script(&r, &res);
    assert_int_equal(res.outcome, RA_REQ_OUT_EXISTING);
    assert_int_equal(res.cert_len, sizeof(cert_a1));
    assert_memory_equal(res.cert, cert_a1, sizeof(cert_a1));
    assert_string_equal(res.serial, "0a01");
    assert_int_equal(res.not_after, na);
    assert_false(res.was_open);
    freeReplyObject(rep);
    assert_field_int(key, "attempts", 2);
    assert_field_str(key, "serial", "0a01");
    assert_field(key, "cert", cert_a1, sizeof(cert_a1));
    assert_field_int(key, "received", now);

    /* renewal: simplereenroll presenting the recorded certificate */
    new_req(&r, "est-user_1.x@y", csr_a, sizeof(csr_a), now + 10);
    set_issue(&r, cert_a3, sizeof(cert_a3), "0a03", na + 10);
    r.renew_serial_hex = "0a01";
    rep = run_script(&r, &res);
    assert_int_equal(res.outcome, RA_REQ_OUT_ISSUED);
    assert_string_equal(res.serial, "0a03");
    assert_false(res.was_open);
    freeReplyObject(rep);
    snprintf(archived, sizeof(archived), "%s:0a01", key);
    assert_int_equal(exists(archived), 1);
    assert_field_str(archived, "state", "issued");
    assert_field_str(archived, "serial", "0a01");
    assert_field(archived, "cert", cert_a1, sizeof(cert_a1));
    assert_field_str(archived, "id", id);
    assert_field_int(archived, "attempts", 2);
    assert_field_str(key, "serial", "0a03");
    assert_field(key, "cert", cert_a3, sizeof(cert_a3));
    assert_field_int(key, "attempts", 1);
    assert_field_int(key, "received", now + 10);
}

/* An issued certificate that has expired is not handed out again: the
 * record is archived and the new certificate recorded. */
static void test_expired_is_reissued(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    char key[RA_REQ_KEY_MAX], archived[RA_REQ_KEY_MAX + 32];
    static const uint8_t csr[] = "CSR-EXPIRED";
    int64_t now = (int64_t)time(NULL);
    new_req(&r, "exp1", csr, sizeof(csr), now - 100);
    set_issue(&r, cert_a1, sizeof(cert_a1), "0b01", now - 1);
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_ISSUED);
    new_req(&r, "exp1", csr, sizeof(csr), now);
    set_issue(&r, cert_a2, sizeof(cert_a2), "0b02", now + 86400);
    redisReply *rep = run_script(&r, &res);
    assert_int_equal(res.outcome, RA_REQ_OUT_ISSUED);
    assert_string_equal(res.serial, "0b02");
    freeReplyObject(rep);
    key_of(key, sizeof(key), &r);
    snprintf(archived, sizeof(archived), "%s:0b01", key);
    assert_int_equal(exists(archived), 1);
    assert_field_str(key, "serial", "0b02");
}

/* ---- rejection, then issuance ---- */

static void test_reject_then_issue(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    char key[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX];
    static const uint8_t csr[] = {0x30, 0x81, 0x7f, 'B', 'A', 'D'};
    int64_t now = (int64_t)time(NULL);
    new_req(&r, "alice", csr, sizeof(csr), now - 20);
    set_reject(&r, "CSR signature does not verify");
    redisReply *rep = run_script(&r, &res);
    assert_int_equal(res.outcome, RA_REQ_OUT_REJECTED);
    assert_string_equal(res.reason, "CSR signature does not verify");
    assert_int_equal(res.cert_len, 0);
    assert_false(res.was_open);
    freeReplyObject(rep);
    key_of(key, sizeof(key), &r);
    ra_req_id(id, sizeof(id), "alice", r.csr_sha256);
    assert_int_equal(zscore_exists(id), 1);
    assert_field_str(key, "state", "rejected");
    assert_field_str(key, "reason", "CSR signature does not verify");
    assert_field_str(key, "serial", NULL);
    assert_field_str(key, "cert", NULL);
    assert_field(key, "csr", csr, sizeof(csr));

    /* rejected again: still open, attempts counted, first receipt kept */
    new_req(&r, "alice", csr, sizeof(csr), now - 10);
    set_reject(&r, "CSR signature does not verify");
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_REJECTED);
    assert_true(res.was_open);
    assert_field_int(key, "attempts", 2);
    assert_field_int(key, "received", now - 20);
    assert_field_int(key, "updated", now - 10);

    /* then issued: leaves the open index */
    new_req(&r, "alice", csr, sizeof(csr), now);
    set_issue(&r, cert_a2, sizeof(cert_a2), "0c01", now + 86400);
    rep = run_script(&r, &res);
    assert_int_equal(res.outcome, RA_REQ_OUT_ISSUED);
    assert_true(res.was_open);
    freeReplyObject(rep);
    assert_int_equal(zscore_exists(id), 0);
    assert_field_str(key, "state", "issued");
    assert_field_str(key, "reason", NULL);
    assert_field_int(key, "attempts", 3);
    assert_field_int(key, "received", now - 20);
}

/* ---- registry devices ---- */

static void add_device(const char *name, ra_op_t op, int64_t by) {
    ra_device_t d;
    char why[256];
    ra_device_init(&d, name);
    d.op = op;
    d.by = by;
    d.status = op == RA_OP_NONE ? RA_STATUS_NONE : RA_STATUS_PENDING;
    assert_int_equal(ra_registry_add(rc, &d, false, "test", why, sizeof(why)), RA_OK);
}

static void get_device(const char *name, ra_device_t *d) {
    char why[256];
    assert_int_equal(ra_registry_get(rc, name, d, why, sizeof(why)), RA_OK);
}

static void test_device_install(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    ra_device_t d;
    char key[RA_REQ_KEY_MAX];
    static const uint8_t csr[] = "CSR-DEV-1";
    int64_t now = (int64_t)time(NULL);
    add_device("SEPDEV000001", RA_OP_INSTALL, now + 3600);
    new_req(&r, "SEPDEV000001", csr, sizeof(csr), now);
    r.device = true;
    set_issue(&r, cert_a1, sizeof(cert_a1), "0d01", now + 86400);
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_ISSUED);
    get_device("SEPDEV000001", &d);
    assert_int_equal(d.op, RA_OP_NONE);
    assert_int_equal(d.status, RA_STATUS_SUCCESS);
    assert_string_equal(d.lsc_serial, "0d01");
    assert_int_equal(d.lsc_not_after, now + 86400);
    assert_string_equal(d.reason, "");
    assert_int_equal(d.updated, now);
    key_of(key, sizeof(key), &r);
    assert_field_str(key, "state", "issued");
}

static void test_device_op_none_refused(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    ra_device_t d;
    char key[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX];
    static const uint8_t csr[] = "CSR-DEV-2";
    int64_t now = (int64_t)time(NULL);
    add_device("SEPDEV000002", RA_OP_NONE, 0);
    new_req(&r, "SEPDEV000002", csr, sizeof(csr), now);
    r.device = true;
    set_issue(&r, cert_a1, sizeof(cert_a1), "0d02", now + 86400);
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_REFUSED);
    assert_string_equal(res.reason, "no certificate operation pending for this device");
    assert_string_equal(res.serial, "");
    ra_req_id(id, sizeof(id), r.identity, r.csr_sha256);
    assert_int_equal(zscore_exists(id), 1);
    key_of(key, sizeof(key), &r);
    assert_field_str(key, "state", "rejected");
    assert_field_str(key, "reason", "no certificate operation pending for this device");
    assert_field_str(key, "cert", NULL); /* the signature is discarded */
    get_device("SEPDEV000002", &d);
    assert_int_equal(d.op, RA_OP_NONE);
    assert_int_equal(d.status, RA_STATUS_NONE); /* nothing was pending: status untouched */
    assert_string_equal(d.lsc_serial, "");
}

static void test_device_deadline_passed(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    ra_device_t d;
    static const uint8_t csr[] = "CSR-DEV-3";
    int64_t now = (int64_t)time(NULL);
    add_device("SEPDEV000003", RA_OP_INSTALL, now - 3600);
    new_req(&r, "SEPDEV000003", csr, sizeof(csr), now);
    r.device = true;
    set_issue(&r, cert_a1, sizeof(cert_a1), "0d03", now + 86400);
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_REFUSED);
    assert_string_equal(res.reason, "deadline passed");
    get_device("SEPDEV000003", &d);
    assert_int_equal(d.status, RA_STATUS_FAILED);
    assert_string_equal(d.reason, "deadline passed");
    assert_int_equal(d.op, RA_OP_INSTALL);
    assert_string_equal(d.lsc_serial, "");
}

static void test_device_not_registered(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    static const uint8_t csr[] = "CSR-DEV-4";
    char devkey[RA_DEVICE_NAME_MAX + 16];
    new_req(&r, "SEPDEV000004", csr, sizeof(csr), (int64_t)time(NULL));
    r.device = true;
    set_issue(&r, cert_a1, sizeof(cert_a1), "0d04", r.now + 86400);
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_REFUSED);
    assert_string_equal(res.reason, "device is not registered");
    ra_registry_key(devkey, sizeof(devkey), "SEPDEV000004");
    assert_int_equal(exists(devkey), 0); /* not created by the script */
}

/* ---- commands, ids, keys ---- */

static void test_bad_identity(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_cmd_t cmd;
    char long_name[RA_REQ_IDENTITY_MAX + 2];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    const char *bad[] = {"a{b", "a}b", "", "a b", "a:b", long_name};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        new_req(&r, bad[i], "x", 1, 1);
        set_reject(&r, "x");
        assert_int_equal(ra_req_record_cmd(&cmd, sha, &r), RA_E_BAD_NAME);
    }
    long_name[RA_REQ_IDENTITY_MAX] = '\0'; /* exactly 64 */
    new_req(&r, long_name, "x", 1, 1);
    assert_int_equal(ra_req_record_cmd(&cmd, sha, &r), RA_OK);
    /* EVALSHA sha numkeys audit open upstream key devkey now n (10) + one request's values */
    assert_int_equal(cmd.argc, 10 + RA_REQ_ITEM_ARGS);
    assert_string_equal(cmd.argv[2], "5");
    r.device = true;
    assert_int_equal(ra_req_record_cmd(&cmd, sha, &r), RA_OK);
    assert_int_equal(cmd.argc, 10 + RA_REQ_ITEM_ARGS);
}

/* ---- online CA mode: pending, queued once, then what the CA decided ---- */

static long long stream_len(void) {
    redisReply *rep = redisCommand(rc, "XLEN %s", RA_REQ_UPSTREAM_STREAM);
    assert_non_null(rep);
    long long n = rep->integer;
    freeReplyObject(rep);
    return n;
}

static void test_online_pending(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_result_t res;
    char key[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX];
    static const uint8_t csr[] = {0x30, 0x03, 'O', 'N', 0x00};
    int64_t now = (int64_t)time(NULL);
    long long before = stream_len();
    new_req(&r, "online1", csr, sizeof(csr), now);
    r.issue = true; /* accepted: no certificate, the CA decides */
    r.online = true;
    r.notify = "stp:done:test:0";
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_PENDING);
    key_of(key, sizeof(key), &r);
    ra_req_id(id, sizeof(id), "online1", r.csr_sha256);
    assert_field_str(key, "state", "pending");
    assert_field_str(key, "mode", "online");
    assert_field_str(key, "ca_state", "queued");
    assert_field_str(key, "notify", "stp:done:test:0");
    assert_field(key, "p10", csr, sizeof(csr)); /* EST: the CSR itself goes upstream */
    assert_field_str(key, "cert", NULL);
    assert_int_equal(zscore_exists(id), 1);
    assert_int_equal(stream_len(), before + 1);
    redisReply *last = redisCommand(rc, "XREVRANGE %s + - COUNT 1", RA_REQ_UPSTREAM_STREAM);
    assert_non_null(last);
    assert_int_equal(last->type, REDIS_REPLY_ARRAY);
    assert_int_equal(last->elements, 1);
    redisReply *fv = last->element[0]->element[1];
    assert_int_equal(fv->elements, 4);
    assert_string_equal(fv->element[0]->str, "key");
    assert_string_equal(fv->element[1]->str, key);
    assert_string_equal(fv->element[3]->str, id);
    freeReplyObject(last);

    /* the same CSR while the CA has not answered: pending again, not queued twice */
    new_req(&r, "online1", csr, sizeof(csr), now + 3);
    r.issue = true;
    r.online = true;
    r.notify = "stp:done:test:1";
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_PENDING);
    assert_true(res.was_open);
    assert_int_equal(stream_len(), before + 1);
    assert_field_str(key, "notify", "stp:done:test:1");
    assert_field_int(key, "attempts", 2);

    /* the CA holds it (ca_req_id); a retry that policy now refuses, or one
     * in local mode, is refused and the record left alone */
    freeReplyObject(redisCommand(rc, "HSET %s ca_req_id 61100", key));
    new_req(&r, "online1", csr, sizeof(csr), now + 4);
    set_reject(&r, "deadline passed");
    r.online = true;
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_REFUSED);
    assert_string_equal(res.reason, "deadline passed");
    new_req(&r, "online1", csr, sizeof(csr), now + 5);
    set_issue(&r, cert_a1, sizeof(cert_a1), "0e01", now + 86400); /* local mode */
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_REFUSED);
    assert_string_equal(res.reason, "request pending at the upstream CA");
    assert_field_str(key, "state", "pending");
    assert_field_str(key, "mode", "online");
    assert_field_str(key, "ca_req_id", "61100");
    assert_field_int(key, "attempts", 2);
    assert_int_equal(stream_len(), before + 1);

    /* stampede-control stored the certificate: a retry gets it (existing) */
    const char *hset[] = {"HSET", key, "state", "issued", "cert", (const char *)cert_a3, "serial", "0d01",
                          "not_after", "9999999999"};
    size_t hlen[] = {4, strlen(key), 5, 6, 4, sizeof(cert_a3), 6, 4, 9, 10};
    freeReplyObject(redisCommandArgv(rc, 10, hset, hlen));
    new_req(&r, "online1", csr, sizeof(csr), now + 6);
    r.issue = true;
    r.online = true;
    r.notify = "stp:done:test:1";
    redisReply *rep = run_script(&r, &res);
    assert_int_equal(res.outcome, RA_REQ_OUT_EXISTING);
    assert_int_equal(res.cert_len, sizeof(cert_a3));
    assert_memory_equal(res.cert, cert_a3, sizeof(cert_a3));
    freeReplyObject(rep);
    assert_int_equal(stream_len(), before + 1);

    /* a refused device is rejected at once, never queued */
    new_req(&r, "online-nodev", csr, sizeof(csr), now);
    r.issue = true;
    r.online = true;
    r.device = true;
    freeReplyObject(run_script(&r, &res));
    assert_int_equal(res.outcome, RA_REQ_OUT_REFUSED);
    assert_int_equal(stream_len(), before + 1);
}

static void test_key_of_id(void **state) {
    (void)state;
    uint8_t md[32];
    char id[RA_REQ_ID_MAX], key[RA_REQ_KEY_MAX], back[RA_REQ_KEY_MAX];
    for (int i = 0; i < 32; i++) md[i] = (uint8_t)(i * 37 + 5);
    ra_req_id(id, sizeof(id), "SEP74A02FC0A675", md);
    ra_req_key(key, sizeof(key), "SEP74A02FC0A675", md);
    assert_int_equal(strlen(id), 15 + 1 + 64);
    assert_string_equal(key + strlen("stp:req:{SEP74A02FC0A675}:"), id + 16);
    assert_int_equal(ra_req_key_of_id(back, sizeof(back), id), RA_OK);
    assert_string_equal(back, key);
    const char *bad[] = {"", "nocolon", "SEP1:", "SEP1:abc",
                         ":0000000000000000000000000000000000000000000000000000000000000000",
                         "a{b:0000000000000000000000000000000000000000000000000000000000000000",
                         "SEP1:000000000000000000000000000000000000000000000000000000000000000A",
                         "SEP1:00000000000000000000000000000000000000000000000000000000000000000",
                         "SEP1:000000000000000000000000000000000000000000000000000000000000000g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ra_req_key_of_id(back, sizeof(back), bad[i]), RA_E_BAD_NAME);
    char twice[RA_REQ_ID_MAX + 70];
    snprintf(twice, sizeof(twice), "x:%s", id); /* identity with a ':' */
    assert_int_equal(ra_req_key_of_id(back, sizeof(back), twice), RA_E_BAD_NAME);
}

/* One script call with several requests: each gets its own outcome, the
 * open index and the audit stream are maintained by the script, an
 * audit-only denial is audited, and an error on one request (a key of the
 * wrong type) fails that request only. */
static void test_batch(void **state) {
    (void)state;
    static const uint8_t csr1[] = "CSR-BATCH-1", csr2[] = "CSR-BATCH-2", csr3[] = "CSR-BATCH-3";
    static const uint8_t cert1[] = {0x30, 0x03, 0x02, 0x01, 0x0b};
    int64_t now = (int64_t)time(NULL);
    ra_req_record_t r1, r2, r3;
    new_req(&r1, "batch", csr1, sizeof(csr1), now);
    set_issue(&r1, cert1, sizeof(cert1), "0b01", now + 86400);
    new_req(&r2, "batch", csr2, sizeof(csr2), now);
    set_reject(&r2, "CSR signature does not verify");
    new_req(&r3, "batch", csr3, sizeof(csr3), now);
    set_issue(&r3, cert1, sizeof(cert1), "0b03", now + 86400);
    char key3[RA_REQ_KEY_MAX], id1[RA_REQ_ID_MAX], id2[RA_REQ_ID_MAX];
    key_of(key3, sizeof(key3), &r3);
    const char *set[] = {"SET", key3, "not a hash"};
    freeReplyObject(redisCommandArgv(rc, 3, set, NULL));
    ra_req_id(id1, sizeof(id1), "batch", r1.csr_sha256);
    ra_req_id(id2, sizeof(id2), "batch", r2.csr_sha256);

    const char *xlen[] = {"XLEN", "stp:audit"};
    redisReply *x = redisCommandArgv(rc, 2, xlen, NULL);
    long long before = x->integer;
    freeReplyObject(x);

    static ra_req_batch_t b; /* large */
    ra_req_batch_init(&b, sha, now);
    assert_int_equal(ra_req_batch_add(&b, &r1), RA_OK);
    assert_int_equal(ra_req_batch_add(&b, &r2), RA_OK);
    ra_req_denial_t d = {.who = "mallory", .peer = "192.0.2.9:1", .protocol = "est", .reason = "bad password"};
    assert_int_equal(ra_req_batch_add_denial(&b, &d), RA_OK);
    assert_int_equal(ra_req_batch_add(&b, &r3), RA_OK);
    ra_req_batch_cmd(&b);
    redisReply *rep = redisCommandArgv(rc, b.argc, b.argv, b.argvlen);
    ra_req_result_t res;
    char why[256];
    assert_int_equal(ra_req_batch_parse(rep, 4, 0, &res, why, sizeof(why)), RA_OK);
    assert_int_equal(res.outcome, RA_REQ_OUT_ISSUED);
    assert_int_equal(ra_req_batch_parse(rep, 4, 1, &res, why, sizeof(why)), RA_OK);
    assert_int_equal(res.outcome, RA_REQ_OUT_REJECTED);
    assert_int_equal(ra_req_batch_parse(rep, 4, 2, &res, why, sizeof(why)), RA_OK);
    assert_int_equal(res.outcome, RA_REQ_OUT_REJECTED);
    assert_int_equal(ra_req_batch_parse(rep, 4, 3, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "WRONGTYPE"));
    assert_int_equal(ra_req_batch_parse(rep, 5, 0, &res, why, sizeof(why)), RA_E_REDIS); /* wrong n */
    freeReplyObject(rep);
    assert_int_equal(zscore_exists(id1), 0);
    assert_int_equal(zscore_exists(id2), 1);
    x = redisCommandArgv(rc, 2, xlen, NULL);
    assert_int_equal(x->integer, before + 3); /* issue, deny, deny; none for the failed one */
    freeReplyObject(x);
    const char *last[] = {"XREVRANGE", "stp:audit", "+", "-", "COUNT", "3"};
    x = redisCommandArgv(rc, 6, last, NULL);
    assert_int_equal(x->elements, 3);
    const char *want[] = {"deny", "deny", "issue"}; /* newest first */
    for (size_t i = 0; i < 3; i++) {
        const redisReply *f = x->element[i]->element[1];
        assert_string_equal(f->element[0]->str, "event");
        assert_string_equal(f->element[1]->str, want[i]);
    }
    freeReplyObject(x);

    /* a batch of the maximum size fits; one more is refused */
    ra_req_batch_init(&b, sha, now);
    for (int i = 0; i < RA_REQ_BATCH_MAX; i++) assert_int_equal(ra_req_batch_add_denial(&b, &d), RA_OK);
    assert_int_equal(ra_req_batch_add_denial(&b, &d), RA_E_NOMEM);
    assert_int_equal(ra_req_batch_add(&b, &r1), RA_E_NOMEM);
}

/* ---- malformed replies ---- */

static redisReply str_reply(const char *s, size_t len) {
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = REDIS_REPLY_STRING;
    r.str = (char *)s;
    r.len = len;
    return r;
}

static redisReply int_reply(long long v) {
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = REDIS_REPLY_INTEGER;
    r.integer = v;
    return r;
}

static void expect_parse(const redisReply *rep, ra_err_t want) {
    ra_req_result_t res;
    char why[128] = "";
    assert_int_equal(ra_req_record_parse(rep, &res, why, sizeof(why)), want);
    if (want != RA_OK) assert_true(why[0] != '\0');
}

static void test_parse_malformed(void **state) {
    (void)state;
    redisReply el[7], *ptr[7], arr, nil;
    memset(&nil, 0, sizeof(nil));
    nil.type = REDIS_REPLY_NIL;
    /* a well-formed reply first, then one defect at a time */
#define RESET()                                                                                    \
    do {                                                                                           \
        el[0] = str_reply("issued", 6);                                                           \
        el[1] = str_reply("", 0);                                                                 \
        el[2] = str_reply("", 0);                                                                 \
        el[3] = str_reply("0a01", 4);                                                             \
        el[4] = int_reply(1700000000);                                                            \
        el[5] = int_reply(0);                                                                     \
        el[6] = int_reply(0);                                                                     \
        for (int i = 0; i < 7; i++) ptr[i] = &el[i];                                             \
        memset(&arr, 0, sizeof(arr));                                                              \
        arr.type = REDIS_REPLY_ARRAY;                                                              \
        arr.elements = 6;                                                                          \
        arr.element = ptr;                                                                         \
    } while (0)
    RESET();
    expect_parse(&arr, RA_OK);
    expect_parse(NULL, RA_E_REDIS);
    const char *boom = "ERR Error running script: boom";
    redisReply err = str_reply(boom, strlen(boom));
    err.type = REDIS_REPLY_ERROR;
    expect_parse(&err, RA_E_REDIS);
    redisReply whole = int_reply(1);
    expect_parse(&whole, RA_E_REDIS);
    redisReply s = str_reply("issued", 6);
    expect_parse(&s, RA_E_REDIS);
    RESET();
    arr.elements = 5;
    expect_parse(&arr, RA_E_REDIS);
    arr.elements = 7;
    expect_parse(&arr, RA_E_REDIS);
    arr.elements = 0;
    arr.element = NULL;
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[0] = int_reply(0); /* outcome not a string */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    ptr[1] = &nil; /* reason nil */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    ptr[2] = &nil; /* cert nil (a record without its cert) */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[3] = int_reply(10); /* serial not a string */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[4] = str_reply("1700000000", 10); /* not_after a string */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[5] = str_reply("1", 1); /* was_open a string */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[0] = str_reply("maybe", 5);
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[0] = str_reply("issued\0", 7); /* a NUL does not make it "issued" */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[0] = str_reply("issued-and-a-very-long-suffix", 29);
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[0] = str_reply("existing", 8); /* existing without a certificate */
    expect_parse(&arr, RA_E_REDIS);
    el[2] = str_reply("\x30\x00", 2);
    expect_parse(&arr, RA_OK);
    RESET();
    char long_serial[300];
    memset(long_serial, 'f', sizeof(long_serial));
    el[3] = str_reply(long_serial, sizeof(long_serial)); /* clipped, never overflows */
    ra_req_result_t res;
    char why[64];
    assert_int_equal(ra_req_record_parse(&arr, &res, why, sizeof(why)), RA_OK);
    assert_int_equal(strlen(res.serial), RA_REQ_SERIAL_MAX);
#undef RESET
}

/* Errors from the server itself: an unknown script, a key of the wrong type. */
static void test_parse_server_errors(void **state) {
    (void)state;
    ra_req_record_t r;
    ra_req_cmd_t cmd;
    ra_req_result_t res;
    char why[256], key[RA_REQ_KEY_MAX];
    static const uint8_t csr[] = "CSR-WRONGTYPE";
    new_req(&r, "wt", csr, sizeof(csr), (int64_t)time(NULL));
    set_reject(&r, "x");
    assert_int_equal(ra_req_record_cmd(&cmd, "0000000000000000000000000000000000000000", &r), RA_OK);
    redisReply *rep = redisCommandArgv(rc, cmd.argc, cmd.argv, cmd.argvlen);
    assert_int_equal(ra_req_record_parse(rep, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "NOSCRIPT"));
    freeReplyObject(rep);
    key_of(key, sizeof(key), &r);
    const char *set[] = {"SET", key, "not a hash"};
    freeReplyObject(redisCommandArgv(rc, 3, set, NULL));
    assert_int_equal(ra_req_record_cmd(&cmd, sha, &r), RA_OK);
    rep = redisCommandArgv(rc, cmd.argc, cmd.argv, cmd.argvlen);
    assert_int_equal(ra_req_record_parse(rep, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "WRONGTYPE"));
    freeReplyObject(rep);
}

int main(void) {
    if (system("command -v redis-server >/dev/null 2>&1") != 0) return 77; /* meson: skipped */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_existing_renew),
        cmocka_unit_test(test_expired_is_reissued),
        cmocka_unit_test(test_reject_then_issue),
        cmocka_unit_test(test_device_install),
        cmocka_unit_test(test_device_op_none_refused),
        cmocka_unit_test(test_device_deadline_passed),
        cmocka_unit_test(test_device_not_registered),
        cmocka_unit_test(test_bad_identity),
        cmocka_unit_test(test_key_of_id),
        cmocka_unit_test(test_online_pending),
        cmocka_unit_test(test_batch),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_server_errors),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
