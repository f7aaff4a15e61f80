/* ra_capf_test: the CAPF session script (ra_capf.h) against a private
 * redis-server (ra_testredis.h), driven through a synchronous hiredis
 * context: SCRIPT LOAD (checked against ra_capf_script_sha), the ra_capf_*
 * builders + redisCommandArgv, ra_capf_parse / ra_capf_parse_begin.
 * Covers every BEGIN outcome, the lock (TTL, re-entry, wrong tokens), the
 * lockout, ISSUED (refused without the lock, the records it writes, stale
 * LSCs), every FINISH kind, FAIL, RELEASE, the audit entries, binary DER
 * round trips, argument checks on both sides and malformed replies; and the
 * online CA mode: SUBMIT (queued, pending, issued, refusals, requeue of a
 * rejected record, archive of a local one, the lock TTL) and ISSUED with
 * the upstream CA's certificate (no second audit entry, stampede-control's
 * fields kept).
 * Devices are provisioned with ra_registry_add. Skipped (exit 77) without
 * redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/md5.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ra/ra_capf.h"
#include "ra/ra_registry.h"
#include "ra/ra_req.h"
#include "ra/ra_testredis.h"

static ra_testredis_t srv;
static redisContext *rc;
static char sha[41];
static int64_t T; /* the tests' "now" */

static const char *const PEER = "192.0.2.44:51234";

static int start_server(void **state) {
    (void)state;
    T = (int64_t)time(NULL);
    if (ra_testredis_start(&srv, "ra_capf_test", &rc) != 0) return -1;
    ra_capf_script_sha(sha);
    return ra_testredis_load_script(rc, ra_capf_script(), sha);
}

static int stop_server(void **state) {
    (void)state;
    return ra_testredis_stop(&srv, &rc);
}

/* ---- Redis helpers ---- */

static redisReply *cmd(int argc, const char **argv) {
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    assert_non_null(r);
    return r;
}

static long long int_cmd(int argc, const char **argv) {
    redisReply *r = cmd(argc, argv);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static long long exists(const char *key) {
    const char *argv[] = {"EXISTS", key};
    return int_cmd(2, argv);
}

static long long pttl(const char *key) {
    const char *argv[] = {"PTTL", key};
    return int_cmd(2, argv);
}

static long long xlen(void) {
    const char *argv[] = {"XLEN", "stp:audit"};
    return int_cmd(2, argv);
}

/* assert_field checks HGET key f: absent if `want` is NULL, else exactly
 * want_len bytes. */
static void assert_field(const char *key, const char *f, const void *want, size_t want_len) {
    const char *argv[] = {"HGET", key, f};
    redisReply *r = cmd(3, argv);
    if (!want) {
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    } else {
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal(r->len, want_len);
        assert_memory_equal(r->str, want, want_len);
    }
    freeReplyObject(r);
}

static void assert_field_str(const char *key, const char *f, const char *want) {
    assert_field(key, f, want, want ? strlen(want) : 0);
}

static void assert_field_int(const char *key, const char *f, long long want) {
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", want);
    assert_field_str(key, f, buf);
}

static void devkey(char *buf, size_t n, const char *name) { ra_registry_key(buf, n, name); }

static void lockkey(char *buf, size_t n, const char *name) {
    snprintf(buf, n, RA_CAPF_LOCK_PREFIX "{%s}", name);
}

/* assert_lock checks who holds the device lock (NULL = nobody). */
static void assert_lock(const char *name, const char *token) {
    char k[128];
    lockkey(k, sizeof(k), name);
    const char *argv[] = {"GET", k};
    redisReply *r = cmd(2, argv);
    if (!token) {
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    } else {
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_string_equal(r->str, token);
    }
    freeReplyObject(r);
}

/* assert_audit checks the newest entry of stp:audit: `event`, device,
 * protocol capf, time, and peer/reason/serial/request (NULL = absent). */
static void assert_audit(const char *event, const char *device, int64_t time_, const char *peer,
                         const char *reason, const char *serial, const char *request) {
    const char *argv[] = {"XREVRANGE", "stp:audit", "+", "-", "COUNT", "1"};
    redisReply *x = cmd(6, argv);
    assert_int_equal(x->type, REDIS_REPLY_ARRAY);
    assert_int_equal(x->elements, 1);
    const redisReply *f = x->element[0]->element[1];
    const char *names[] = {"event", "device", "time", "peer", "reason", "serial", "request", "protocol"};
    char t[24];
    snprintf(t, sizeof(t), "%lld", (long long)time_);
    const char *want[] = {event, device, t, peer, reason, serial, request, "capf"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *got = NULL;
        for (size_t j = 0; j + 1 < f->elements; j += 2)
            if (!strcmp(f->element[j]->str, names[i])) got = f->element[j + 1]->str;
        if (!want[i]) {
            if (got) fprintf(stderr, "audit field %s: unexpected '%s'\n", names[i], got);
            assert_null(got);
        } else {
            if (!got) fprintf(stderr, "audit field %s missing\n", names[i]);
            assert_non_null(got);
            assert_string_equal(got, want[i]);
        }
    }
    freeReplyObject(x);
}

/* ---- devices ---- */

static void dev_init(ra_device_t *d, const char *name, ra_op_t op, int64_t by) {
    ra_device_init(d, name);
    d->op = op;
    d->by = by;
    d->status = op == RA_OP_NONE ? RA_STATUS_NONE : RA_STATUS_PENDING;
}

static void dev_add(const ra_device_t *d) {
    char why[256];
    assert_int_equal(ra_registry_add(rc, d, false, "test", why, sizeof(why)), RA_OK);
}

static void add_device(const char *name, ra_op_t op, int64_t by) {
    ra_device_t d;
    dev_init(&d, name, op, by);
    dev_add(&d);
}

static void get_device(const char *name, ra_device_t *d) {
    char why[256];
    ra_err_t e = ra_registry_get(rc, name, d, why, sizeof(why));
    if (e != RA_OK) fprintf(stderr, "get %s: %s\n", name, why);
    assert_int_equal(e, RA_OK);
}

/* ---- running the script ---- */

static ra_capf_result_t run(ra_capf_cmd_t *c) {
    ra_capf_result_t res;
    char why[256] = "";
    redisReply *r = redisCommandArgv(rc, c->argc, c->argv, c->argvlen);
    ra_err_t e = ra_capf_parse(r, &res, why, sizeof(why));
    if (e != RA_OK) fprintf(stderr, "parse: %s\n", why);
    assert_int_equal(e, RA_OK);
    freeReplyObject(r);
    return res;
}

/* begin runs BEGIN; on OK the device is decoded into *dev (if dev). */
static ra_capf_result_t do_begin(const char *name, const char *tok, int64_t now, int64_t ttl_ms, ra_device_t *dev) {
    ra_capf_cmd_t c;
    ra_capf_result_t res;
    ra_device_t scratch;
    char why[256] = "";
    assert_int_equal(ra_capf_begin_cmd(&c, sha, name, tok, now, PEER, ttl_ms), RA_OK);
    redisReply *r = redisCommandArgv(rc, c.argc, c.argv, c.argvlen);
    ra_err_t e = ra_capf_parse_begin(r, name, &res, dev ? dev : &scratch, why, sizeof(why));
    if (e != RA_OK) fprintf(stderr, "parse_begin: %s\n", why);
    assert_int_equal(e, RA_OK);
    freeReplyObject(r);
    return res;
}

static ra_capf_result_t do_auth_failed(const char *name, const char *tok, int64_t now, const char *reason,
                                    int64_t max, int64_t lockout_s) {
    ra_capf_cmd_t c;
    assert_int_equal(ra_capf_auth_failed_cmd(&c, sha, name, tok, now, PEER, reason, max, lockout_s), RA_OK);
    return run(&c);
}

static ra_capf_result_t do_issued(const char *name, const char *tok, int64_t now, const ra_capf_lsc_t *l) {
    ra_capf_cmd_t c;
    assert_int_equal(ra_capf_issued_cmd(&c, sha, name, tok, now, PEER, l), RA_OK);
    return run(&c);
}

static ra_capf_result_t do_finish(const char *name, const char *tok, int64_t now, ra_capf_kind_t kind,
                               const ra_capf_lsc_t *l, const void *der, size_t der_len) {
    ra_capf_cmd_t c;
    ra_capf_finish_t f = {.kind = kind, .lsc = l, .cert_der = der, .cert_len = der_len};
    assert_int_equal(ra_capf_finish_cmd(&c, sha, name, tok, now, PEER, &f), RA_OK);
    return run(&c);
}

static ra_capf_result_t do_fail(const char *name, const char *tok, int64_t now, const char *reason) {
    ra_capf_cmd_t c;
    assert_int_equal(ra_capf_fail_cmd(&c, sha, name, tok, now, PEER, reason), RA_OK);
    return run(&c);
}

static ra_capf_result_t do_release(const char *name, const char *tok) {
    ra_capf_cmd_t c;
    assert_int_equal(ra_capf_release_cmd(&c, sha, name, tok), RA_OK);
    return run(&c);
}

/* Binary stand-ins: NUL bytes and high bits (the script stores bytes). */
static const uint8_t spki1[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x00, 0x00, 0xff, 0x80, 0x7f, 0x01, 0x00};
static const uint8_t spki2[] = {0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x00, 0x00, 0xff, 0x80, 0x7f, 0x02, 0x00};
static const uint8_t cert1[] = {0x30, 0x82, 0x01, 0x00, 0x00, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xff, 0xfe, 0x00, 0x81};
static const uint8_t cert2[] = {0x30, 0x82, 0x01, 0x00, 0x00, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xff, 0xfe, 0x00, 0x82};

static void lsc(ra_capf_lsc_t *l, const uint8_t *spki, size_t spki_len, const uint8_t *cert, size_t cert_len,
                const char *serial, int64_t not_after) {
    assert_int_equal(ra_capf_lsc_init(l, spki, spki_len, cert, cert_len, serial, not_after), RA_OK);
}

static void hex(char *out, const uint8_t *in, size_t n) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", in[i]);
}

static void utc(char *buf, size_t n, int64_t t) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- tests ---- */

static void test_script_and_words(void **state) {
    (void)state;
    assert_int_equal(strlen(sha), 40);
    assert_true(strlen(ra_capf_script()) > 1000);
    const char *words[] = {"ok", "unknown", "busy", "no-op", "late", "locked-out", "lost-lock", "key-in-use",
                           "not-issued"};
    for (int o = 0; o < RA_CAPF__COUNT; o++) assert_string_equal(ra_capf_outcome_str((ra_capf_outcome_t)o), words[o]);
    assert_string_equal(ra_capf_outcome_str(RA_CAPF__COUNT), "?");
    assert_string_equal(ra_capf_kind_str(RA_CAPF_FETCH_FAILED), "fetch-failed");
    assert_string_equal(ra_capf_kind_str(RA_CAPF_KIND__COUNT), "?");
}

static void test_begin_unknown(void **state) {
    (void)state;
    char dk[128], lk[128];
    long long n = xlen();
    ra_capf_result_t r = do_begin("SEPCAFE00001", "n1:0:1", T, 60000, NULL);
    assert_int_equal(r.outcome, RA_CAPF_UNKNOWN);
    assert_string_equal(r.reason, "unknown device");
    devkey(dk, sizeof(dk), "SEPCAFE00001");
    lockkey(lk, sizeof(lk), "SEPCAFE00001");
    assert_int_equal(exists(dk), 0); /* no write */
    assert_int_equal(exists(lk), 0);
    assert_int_equal(xlen(), n + 1);
    assert_audit("deny", "SEPCAFE00001", T, PEER, "unknown device", NULL, NULL);
}

/* BEGIN takes the lock with its TTL; a second token is busy; the same
 * token again renews it; RELEASE by a wrong token keeps it. */
static void test_begin_lock(void **state) {
    (void)state;
    const char *name = "SEPCAFE00002";
    char dk[128], lk[128];
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    lockkey(lk, sizeof(lk), name);
    add_device(name, RA_OP_INSTALL, T + 3600);
    ra_capf_result_t r = do_begin(name, "n1:0:2", T, 60000, &d);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_string_equal(r.reason, "");
    assert_string_equal(d.name, name);
    assert_int_equal(d.op, RA_OP_INSTALL);
    assert_int_equal(d.by, T + 3600);
    assert_lock(name, "n1:0:2");
    long long ttl = pttl(lk);
    assert_true(ttl > 50000 && ttl <= 60000);
    assert_field_int(dk, "last_session", T);
    assert_field_str(dk, "last_peer", PEER);

    long long n = xlen();
    r = do_begin(name, "n2:1:7", T + 1, 60000, NULL);
    assert_int_equal(r.outcome, RA_CAPF_BUSY);
    assert_string_equal(r.reason, "another CAPF session for this device is active");
    assert_lock(name, "n1:0:2");
    assert_field_int(dk, "last_session", T); /* the refused session wrote nothing */
    assert_int_equal(xlen(), n + 1);
    assert_audit("deny", name, T + 1, PEER, "another CAPF session for this device is active", NULL, NULL);

    r = do_begin(name, "n1:0:2", T + 2, 120000, NULL); /* re-entrant: renews the TTL */
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_true(pttl(lk) > 60000);
    assert_field_int(dk, "last_session", T + 2);

    r = do_release(name, "n2:1:7");
    assert_int_equal(r.outcome, RA_CAPF_LOST_LOCK);
    assert_lock(name, "n1:0:2");
    assert_true(pttl(lk) > 0);
    r = do_release(name, "n1:0:2");
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_lock(name, NULL);
    r = do_release(name, "n1:0:2");
    assert_int_equal(r.outcome, RA_CAPF_LOST_LOCK);
}

static void test_begin_no_op(void **state) {
    (void)state;
    const char *name = "SEPCAFE00003";
    char dk[128];
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_NONE, 0);
    ra_capf_result_t r = do_begin(name, "n1:0:3", T, 60000, NULL);
    assert_int_equal(r.outcome, RA_CAPF_NO_OP);
    assert_string_equal(r.reason, "no certificate operation pending");
    assert_field_str(dk, "status", "none"); /* unchanged */
    assert_field_str(dk, "last_session", NULL);
    assert_lock(name, NULL);
    assert_audit("deny", name, T, PEER, "no certificate operation pending", NULL, NULL);
}

static void test_begin_late(void **state) {
    (void)state;
    const char *name = "SEPCAFE00004";
    ra_device_t d;
    add_device(name, RA_OP_DELETE, T - 10);
    ra_capf_result_t r = do_begin(name, "n1:0:4", T, 60000, NULL);
    assert_int_equal(r.outcome, RA_CAPF_LATE);
    assert_string_equal(r.reason, "deadline passed");
    get_device(name, &d);
    assert_int_equal(d.status, RA_STATUS_FAILED);
    assert_string_equal(d.reason, "deadline passed");
    assert_int_equal(d.op, RA_OP_DELETE); /* stays, expired until extended */
    assert_int_equal(d.updated, T);
    assert_lock(name, NULL);
    assert_audit("deny", name, T, PEER, "deadline passed", NULL, NULL);
    /* the deadline itself is still in time (by < now is late) */
    r = do_begin(name, "n1:0:5", T - 10, 60000, NULL);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_int_equal(do_release(name, "n1:0:5").outcome, RA_CAPF_OK);
}

/* max_failures failures lock the device out for lockout_s; BEGIN is
 * refused until then and accepted from the end of the window. */
static void test_auth_failed_lockout(void **state) {
    (void)state;
    const char *name = "SEPCAFE00005";
    char dk[128], until[40], reason[160];
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    dev_init(&d, name, RA_OP_INSTALL, T + 86400);
    d.auth = RA_AUTH_STRING;
    assert_int_equal(ra_auth_string_hash("123456", d.auth_hash, sizeof(d.auth_hash)), RA_OK);
    dev_add(&d);
    const char *toks[] = {"n1:0:10", "n1:0:11", "n1:0:12"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(do_begin(name, toks[i], T + i, 60000, NULL).outcome, RA_CAPF_OK);
        ra_capf_result_t r = do_auth_failed(name, toks[i], T + i, "Invalid Authentication String", 3, 600);
        assert_int_equal(r.outcome, RA_CAPF_OK);
        assert_int_equal(r.auth_failures, i + 1);
        assert_lock(name, NULL); /* released */
        get_device(name, &d);
        assert_int_equal(d.status, RA_STATUS_FAILED);
        assert_string_equal(d.reason, "Invalid Authentication String");
        if (i < 2) {
            assert_int_equal(r.auth_lock_until, 0);
            assert_int_equal(d.auth_failures, i + 1);
            assert_string_equal(r.reason, "Invalid Authentication String");
            assert_audit("deny", name, T + i, PEER, "Invalid Authentication String", NULL, NULL);
        }
    }
    /* the third failure started the lockout and restarted the counter */
    get_device(name, &d);
    assert_int_equal(d.auth_failures, 0);
    assert_field_int(dk, "auth_lock_until", T + 2 + 600);
    utc(until, sizeof(until), T + 602);
    snprintf(reason, sizeof(reason), "Invalid Authentication String; authentication locked out until %s", until);
    assert_audit("deny", name, T + 2, PEER, reason, NULL, NULL);

    ra_capf_result_t r = do_begin(name, "n1:0:13", T + 601, 60000, NULL);
    assert_int_equal(r.outcome, RA_CAPF_LOCKED_OUT);
    assert_int_equal(r.auth_lock_until, T + 602);
    snprintf(reason, sizeof(reason), "authentication locked out until %s", until);
    assert_string_equal(r.reason, reason);
    assert_lock(name, NULL);
    assert_audit("deny", name, T + 601, PEER, reason, NULL, NULL);

    r = do_begin(name, "n1:0:14", T + 602, 60000, NULL); /* the window is over */
    assert_int_equal(r.outcome, RA_CAPF_OK);
    /* max_failures 0: counted, never locked out */
    r = do_auth_failed(name, "n1:0:14", T + 603, NULL, 0, 600);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_int_equal(r.auth_failures, 1);
    assert_int_equal(r.auth_lock_until, 0);
    get_device(name, &d);
    assert_string_equal(d.reason, "Invalid Credentials"); /* the default reason */
}

/* The lockout time is written by the script's own UTC formatter: check it
 * against gmtime on dates around leap days and centuries. */
static void test_lockout_dates(void **state) {
    (void)state;
    const char *name = "SEPCAFE00006";
    const int64_t dates[] = {86399, 951782400, 951868799, 978307200, 1700000000, 1709164800, 4102444799};
    add_device(name, RA_OP_INSTALL, 0);
    for (size_t i = 0; i < sizeof(dates) / sizeof(dates[0]); i++) {
        char want[80], until[40];
        ra_capf_result_t r = do_auth_failed(name, "n1:0:20", dates[i] - 1, "x", 1, 1);
        assert_int_equal(r.auth_lock_until, dates[i]);
        utc(until, sizeof(until), dates[i]);
        snprintf(want, sizeof(want), "x; authentication locked out until %s", until);
        assert_string_equal(r.reason, want);
    }
    char until[40];
    utc(until, sizeof(until), 1700000000);
    assert_string_equal(until, "2023-11-14T22:13:20Z");
}

/* AUTH_FAILED from a session whose lock another session took: the failure
 * counts, the other session's status is left alone. */
static void test_auth_failed_other_lock(void **state) {
    (void)state;
    const char *name = "SEPCAFE00007";
    ra_device_t d;
    add_device(name, RA_OP_INSTALL, 0);
    assert_int_equal(do_begin(name, "n1:0:30", T, 60000, NULL).outcome, RA_CAPF_OK);
    ra_capf_result_t r = do_auth_failed(name, "n9:9:9", T, "Invalid LSC", 5, 600);
    assert_int_equal(r.outcome, RA_CAPF_LOST_LOCK);
    assert_int_equal(r.auth_failures, 1);
    get_device(name, &d);
    assert_int_equal(d.auth_failures, 1);
    assert_int_equal(d.status, RA_STATUS_PENDING);
    assert_lock(name, "n1:0:30");
    assert_audit("deny", name, T, PEER, "Invalid LSC", NULL, NULL);
}

static void test_issued_without_lock(void **state) {
    (void)state;
    const char *name = "SEPCAFE00008";
    char dk[128], rk[RA_REQ_KEY_MAX];
    ra_capf_lsc_t l;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_INSTALL, 0);
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "0801", T + 86400);
    ra_req_key(rk, sizeof(rk), name, l.spki_sha256);
    long long n = xlen();
    ra_capf_result_t r = do_issued(name, "n1:0:40", T, &l); /* nobody holds the lock */
    assert_int_equal(r.outcome, RA_CAPF_LOST_LOCK);
    assert_string_equal(r.reason, "the session does not hold the device lock");
    assert_int_equal(exists(rk), 0);
    assert_int_equal(xlen(), n);
    assert_int_equal(do_begin(name, "n1:0:41", T, 60000, NULL).outcome, RA_CAPF_OK);
    n = xlen();
    r = do_issued(name, "n1:0:40", T, &l); /* another token holds it */
    assert_int_equal(r.outcome, RA_CAPF_LOST_LOCK);
    assert_int_equal(exists(rk), 0);
    assert_field_str(dk, "lsc_unconfirmed", NULL);
    assert_int_equal(xlen(), n);
    assert_lock(name, "n1:0:41");
}

/* The install path of 5.10: ISSUED records the LSC (binary DER intact),
 * FINISH install-ok confirms it, consumes the string and releases. */
static void test_issue_and_install(void **state) {
    (void)state;
    const char *name = "SEPCAFE00009", *tok = "n1:0:50";
    char dk[128], rk[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX], md5hex[33], shahex[65];
    uint8_t md5[16], sha256[32];
    ra_device_t d;
    ra_capf_lsc_t l;
    devkey(dk, sizeof(dk), name);
    dev_init(&d, name, RA_OP_INSTALL, T + 86400);
    d.auth = RA_AUTH_STRING;
    assert_int_equal(ra_auth_string_hash("4711", d.auth_hash, sizeof(d.auth_hash)), RA_OK);
    snprintf(d.lsc_serial, sizeof(d.lsc_serial), "0a0a");
    d.lsc_not_after = T + 1000;
    d.auth_failures = 2;
    dev_add(&d);
    assert_int_equal(do_begin(name, tok, T, 60000, &d).outcome, RA_CAPF_OK);
    assert_int_equal(d.auth, RA_AUTH_STRING);
    assert_true(ra_auth_string_check("4711", d.auth_hash));

    int64_t na = T + 365 * 86400;
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "7F01AB", na);
    assert_string_equal(l.serial, "7f01ab");
    ra_req_key(rk, sizeof(rk), name, l.spki_sha256);
    ra_req_id(id, sizeof(id), name, l.spki_sha256);
    ra_capf_result_t r = do_issued(name, tok, T + 1, &l);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    MD5(cert1, sizeof(cert1), md5);
    SHA256(cert1, sizeof(cert1), sha256);
    hex(md5hex, md5, 16);
    hex(shahex, sha256, 32);
    assert_field_str(rk, "id", id);
    assert_field_str(rk, "identity", name);
    assert_field_str(rk, "protocol", "capf");
    assert_field_str(rk, "peer", PEER);
    assert_field(rk, "csr", spki1, sizeof(spki1));
    assert_field(rk, "cert", cert1, sizeof(cert1));
    assert_field_str(rk, "mode", "local");
    assert_field_int(rk, "received", T + 1);
    assert_field_int(rk, "updated", T + 1);
    assert_field_int(rk, "attempts", 1);
    assert_field_str(rk, "state", "issued");
    assert_field_str(rk, "serial", "7f01ab");
    assert_field_int(rk, "not_after", na);
    assert_field_str(rk, "cert_md5", md5hex);
    assert_field_str(rk, "cert_sha256", shahex);
    assert_field_int(rk, "confirmed", 0);
    assert_field_str(dk, "lsc_unconfirmed", "7f01ab");
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_INSTALL);
    assert_int_equal(d.status, RA_STATUS_PENDING);
    assert_int_equal(d.auth_failures, 0); /* authenticated: counter reset */
    assert_string_equal(d.lsc_serial, "0a0a");
    assert_lock(name, tok); /* kept until FINISH */
    assert_audit("issue", name, T + 1, PEER, NULL, "7f01ab", id);

    r = do_finish(name, tok, T + 5, RA_CAPF_INSTALL_OK, &l, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d); /* still decodable: the used hash is a marker */
    assert_int_equal(d.op, RA_OP_NONE);
    assert_int_equal(d.status, RA_STATUS_SUCCESS);
    assert_string_equal(d.reason, "Upgrade Success");
    assert_string_equal(d.lsc_serial, "7f01ab");
    assert_int_equal(d.lsc_not_after, na);
    assert_int_equal(d.updated, T + 5);
    assert_int_equal(d.auth, RA_AUTH_STRING);
    assert_string_equal(d.auth_hash, RA_CAPF_AUTH_HASH_USED);
    assert_false(ra_auth_string_check("4711", d.auth_hash)); /* one-time use */
    assert_field_str(dk, "lsc_md5", md5hex);
    assert_field_str(dk, "lsc_sha256", shahex);
    assert_field_str(dk, "lsc_unconfirmed", "");
    assert_field_str(dk, "superseded_serial", "0a0a");
    assert_field_int(rk, "confirmed", 1);
    assert_field_int(rk, "confirmed_at", T + 5);
    assert_lock(name, NULL);
    assert_audit("lsc-installed", name, T + 5, PEER, "supersedes 0a0a", "7f01ab", id);

    /* 5.7: a second request after the install finds no operation */
    assert_int_equal(do_begin(name, "n1:0:51", T + 6, 60000, NULL).outcome, RA_CAPF_NO_OP);
}

/* A second ISSUED (the phone came back with a new key) makes the first
 * LSC stale; the list keeps the newest RA_CAPF_STALE_MAX; the same key
 * again archives its record, the same LSC again is a retry. */
static void test_issued_stale(void **state) {
    (void)state;
    const char *name = "SEPCAFE00010", *tok = "n1:0:60";
    char dk[128], rk[RA_REQ_KEY_MAX], arch[RA_REQ_KEY_MAX + 80];
    ra_capf_lsc_t l;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_INSTALL, 0);
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_OK);
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "01", T + 86400);
    assert_int_equal(do_issued(name, tok, T, &l).outcome, RA_CAPF_OK);
    assert_field_str(dk, "stale_lscs", NULL);
    lsc(&l, spki2, sizeof(spki2), cert2, sizeof(cert2), "02", T + 86400);
    assert_int_equal(do_issued(name, tok, T + 1, &l).outcome, RA_CAPF_OK);
    assert_field_str(dk, "lsc_unconfirmed", "02");
    assert_field_int(dk, "stale_lscs", 1);
    assert_field_str(dk, "stale_serials", "01");
    /* the same LSC again (ISSUED retried): no new stale entry, attempts 2 */
    assert_int_equal(do_issued(name, tok, T + 2, &l).outcome, RA_CAPF_OK);
    assert_field_int(dk, "stale_lscs", 1);
    ra_req_key(rk, sizeof(rk), name, l.spki_sha256);
    assert_field_int(rk, "attempts", 2);
    assert_field_int(rk, "received", T + 1);
    /* eleven more, all for spki2: each archives the previous record */
    for (int s = 3; s <= 13; s++) {
        char serial[8];
        snprintf(serial, sizeof(serial), "%02x", s);
        lsc(&l, spki2, sizeof(spki2), cert2, sizeof(cert2), serial, T + 86400);
        assert_int_equal(do_issued(name, tok, T + s, &l).outcome, RA_CAPF_OK);
        snprintf(arch, sizeof(arch), "%s:%02x", rk, s - 1);
        assert_int_equal(exists(arch), 1);
        assert_field_int(rk, "attempts", 1);
    }
    assert_field_str(dk, "lsc_unconfirmed", "0d");
    assert_field_int(dk, "stale_lscs", 12);
    assert_field_str(dk, "stale_serials", "03,04,05,06,07,08,09,0a,0b,0c");
    assert_int_equal(do_release(name, tok).outcome, RA_CAPF_OK);
}

/* install-ok without the lock is applied only for the device's current
 * unconfirmed LSC. */
static void test_install_ok_without_lock(void **state) {
    (void)state;
    const char *name = "SEPCAFE00011";
    char dk[128], lk[128];
    ra_capf_lsc_t a, b;
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    lockkey(lk, sizeof(lk), name);
    add_device(name, RA_OP_INSTALL, 0);
    lsc(&a, spki1, sizeof(spki1), cert1, sizeof(cert1), "61", T + 86400);
    lsc(&b, spki2, sizeof(spki2), cert2, sizeof(cert2), "62", T + 86400);
    /* session A issued 61, its lock expired, session B issued 62 */
    assert_int_equal(do_begin(name, "A", T, 60000, NULL).outcome, RA_CAPF_OK);
    assert_int_equal(do_issued(name, "A", T, &a).outcome, RA_CAPF_OK);
    const char *del[] = {"DEL", lk};
    assert_int_equal(int_cmd(2, del), 1);
    assert_int_equal(do_begin(name, "B", T + 1, 60000, NULL).outcome, RA_CAPF_OK);
    assert_int_equal(do_issued(name, "B", T + 1, &b).outcome, RA_CAPF_OK);
    long long n = xlen();
    ra_capf_result_t r = do_finish(name, "A", T + 2, RA_CAPF_INSTALL_OK, &a, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_LOST_LOCK); /* stale session: nothing */
    assert_int_equal(xlen(), n);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_INSTALL);
    assert_string_equal(d.lsc_serial, "");
    assert_field_str(dk, "lsc_unconfirmed", "62");
    assert_lock(name, "B");
    /* B's lock expires too; B's confirmation still lands */
    assert_int_equal(int_cmd(2, del), 1);
    r = do_finish(name, "B", T + 3, RA_CAPF_INSTALL_OK, &b, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_NONE);
    assert_string_equal(d.lsc_serial, "62");
    assert_field_str(dk, "lsc_unconfirmed", "");
    assert_field_str(dk, "superseded_serial", NULL); /* there was no LSC before */
    assert_field_str(dk, "auth_hash", NULL);         /* auth null: nothing to consume */
    char id[RA_REQ_ID_MAX];
    ra_req_id(id, sizeof(id), name, b.spki_sha256);
    assert_audit("lsc-installed", name, T + 3, PEER, NULL, "62", id);
}

static void test_install_failed(void **state) {
    (void)state;
    const char *name = "SEPCAFE00012", *tok = "n1:0:70";
    char dk[128];
    ra_capf_lsc_t l;
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_INSTALL, 0);
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_OK);
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "70", T + 86400);
    assert_int_equal(do_issued(name, tok, T, &l).outcome, RA_CAPF_OK);
    ra_capf_result_t r = do_finish(name, tok, T + 1, RA_CAPF_INSTALL_FAILED, NULL, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_INSTALL);
    assert_int_equal(d.status, RA_STATUS_FAILED);
    assert_string_equal(d.reason, "Upgrade Failed: phone could not store the certificate");
    assert_string_equal(d.lsc_serial, "");
    assert_field_str(dk, "lsc_unconfirmed", "70"); /* kept: possibly installed */
    assert_lock(name, NULL);
    assert_audit("deny", name, T + 1, PEER, "Upgrade Failed: phone could not store the certificate", NULL, NULL);
}

static void test_delete(void **state) {
    (void)state;
    const char *name = "SEPCAFE00013", *tok1 = "n1:0:80", *tok2 = "n1:0:81";
    char dk[128];
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    dev_init(&d, name, RA_OP_DELETE, 0);
    snprintf(d.lsc_serial, sizeof(d.lsc_serial), "0b0b");
    d.lsc_not_after = T + 1000;
    dev_add(&d);
    assert_int_equal(do_begin(name, tok1, T, 60000, NULL).outcome, RA_CAPF_OK);
    ra_capf_result_t r = do_finish(name, tok1, T + 1, RA_CAPF_DELETE_FAILED, NULL, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_DELETE);
    assert_int_equal(d.status, RA_STATUS_FAILED);
    assert_string_equal(d.reason, "Delete Failed");
    assert_string_equal(d.lsc_serial, "0b0b");
    assert_lock(name, NULL);
    assert_audit("deny", name, T + 1, PEER, "Delete Failed", NULL, NULL);

    assert_int_equal(do_begin(name, tok2, T + 2, 60000, NULL).outcome, RA_CAPF_OK);
    r = do_finish(name, tok2, T + 3, RA_CAPF_DELETE_OK, NULL, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_NONE);
    assert_int_equal(d.status, RA_STATUS_SUCCESS);
    assert_string_equal(d.reason, "Delete Success");
    assert_string_equal(d.lsc_serial, "");
    assert_int_equal(d.lsc_not_after, 0);
    assert_field_str(dk, "lsc_md5", "");
    assert_field_str(dk, "lsc_sha256", "");
    assert_lock(name, NULL);
    assert_audit("lsc-deleted", name, T + 3, PEER, NULL, "0b0b", NULL);
}

static void test_fetch(void **state) {
    (void)state;
    const char *name = "SEPCAFE00014", *tok1 = "n1:0:90", *tok2 = "n1:0:91";
    char dk[128];
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_TROUBLESHOOT, 0);
    assert_int_equal(do_begin(name, tok1, T, 60000, NULL).outcome, RA_CAPF_OK);
    ra_capf_result_t r = do_finish(name, tok1, T + 1, RA_CAPF_FETCH_FAILED, NULL, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_TROUBLESHOOT);
    assert_int_equal(d.status, RA_STATUS_FAILED);
    assert_string_equal(d.reason, "Troubleshoot Failed: no certificate");
    assert_lock(name, NULL);
    assert_audit("deny", name, T + 1, PEER, "Troubleshoot Failed: no certificate", NULL, NULL);

    assert_int_equal(do_begin(name, tok2, T + 2, 60000, NULL).outcome, RA_CAPF_OK);
    r = do_finish(name, tok2, T + 3, RA_CAPF_FETCH_OK, NULL, cert2, sizeof(cert2));
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d); /* the binary field does not disturb the decoder */
    assert_int_equal(d.op, RA_OP_NONE);
    assert_int_equal(d.status, RA_STATUS_SUCCESS);
    assert_string_equal(d.reason, "Troubleshoot Success");
    assert_field(dk, "fetched_cert", cert2, sizeof(cert2));
    assert_field_int(dk, "fetched_at", T + 3);
    assert_lock(name, NULL);
    assert_audit("lsc-fetched", name, T + 3, PEER, NULL, NULL, NULL);
    /* the device with its binary field still comes back through BEGIN */
    ra_device_t d2;
    const char *hset[] = {"HSET", dk, "op", "troubleshoot"};
    freeReplyObject(cmd(4, hset));
    assert_int_equal(do_begin(name, "n1:0:92", T + 4, 60000, &d2).outcome, RA_CAPF_OK);
    assert_int_equal(d2.op, RA_OP_TROUBLESHOOT);
    assert_int_equal(do_release(name, "n1:0:92").outcome, RA_CAPF_OK);
}

static void test_fail(void **state) {
    (void)state;
    const char *name = "SEPCAFE00015", *tok = "n1:0:100";
    ra_device_t d;
    add_device(name, RA_OP_INSTALL, 0);
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_OK);
    /* another session's FAIL changes nothing */
    ra_capf_result_t r = do_fail(name, "n7:7:7", T, "Upgrade Failed");
    assert_int_equal(r.outcome, RA_CAPF_LOST_LOCK);
    get_device(name, &d);
    assert_int_equal(d.status, RA_STATUS_PENDING);
    assert_lock(name, tok);
    r = do_fail(name, tok, T + 1, "Upgrade Failed: Key Generation Failed/Timeout");
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_INSTALL);
    assert_int_equal(d.status, RA_STATUS_FAILED);
    assert_string_equal(d.reason, "Upgrade Failed: Key Generation Failed/Timeout");
    assert_lock(name, NULL);
    assert_audit("deny", name, T + 1, PEER, "Upgrade Failed: Key Generation Failed/Timeout", NULL, NULL);
    /* free text is made printable (the decoder would refuse the record) */
    assert_int_equal(do_begin(name, tok, T + 2, 60000, NULL).outcome, RA_CAPF_OK);
    r = do_fail(name, tok, T + 2, "Upgrade Failed: \x01\xff bad");
    assert_int_equal(r.outcome, RA_CAPF_OK);
    get_device(name, &d);
    assert_string_equal(d.reason, "Upgrade Failed: ?? bad");
}

/* The device vanished during the session: nothing is recreated. */
static void test_device_deleted_mid_session(void **state) {
    (void)state;
    const char *name = "SEPCAFE00016", *tok = "n1:0:110";
    char dk[128], why[256];
    ra_capf_lsc_t l;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_INSTALL, 0);
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_OK);
    assert_int_equal(ra_registry_delete(rc, name, "test", why, sizeof(why)), RA_OK);
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "10", T + 86400);
    assert_int_equal(do_issued(name, tok, T, &l).outcome, RA_CAPF_UNKNOWN);
    assert_int_equal(do_finish(name, tok, T, RA_CAPF_INSTALL_OK, &l, NULL, 0).outcome, RA_CAPF_UNKNOWN);
    assert_int_equal(exists(dk), 0);
    assert_lock(name, NULL); /* FINISH released it */
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_UNKNOWN);
    /* failures after BEGIN are still audited */
    long long n = xlen();
    assert_int_equal(do_fail(name, tok, T, "Upgrade Failed: x").outcome, RA_CAPF_UNKNOWN);
    assert_int_equal(xlen(), n + 1);
    assert_audit("deny", name, T, PEER, "Upgrade Failed: x", NULL, NULL);
    assert_int_equal(do_auth_failed(name, tok, T + 1, "Invalid LSC", 3, 60).outcome, RA_CAPF_UNKNOWN);
    assert_int_equal(xlen(), n + 2);
    assert_audit("deny", name, T + 1, PEER, "Invalid LSC", NULL, NULL);
    assert_int_equal(exists(dk), 0);
}

/* ISSUED refuses a device whose operation was changed during the session. */
static void test_issued_op_changed(void **state) {
    (void)state;
    const char *name = "SEPCAFE00017", *tok = "n1:0:120";
    char dk[128], rk[RA_REQ_KEY_MAX];
    ra_capf_lsc_t l;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_INSTALL, 0);
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_OK);
    const char *hset[] = {"HSET", dk, "op", "none"};
    freeReplyObject(cmd(4, hset));
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "20", T + 86400);
    assert_int_equal(do_issued(name, tok, T, &l).outcome, RA_CAPF_NO_OP);
    ra_req_key(rk, sizeof(rk), name, l.spki_sha256);
    assert_int_equal(exists(rk), 0);
    assert_lock(name, tok);
    assert_int_equal(do_release(name, tok).outcome, RA_CAPF_OK);
}

/* BEGIN locks even if the record cannot be decoded: parse_begin says so
 * and the caller releases. */
static void test_begin_bad_record(void **state) {
    (void)state;
    const char *name = "SEPCAFE00018";
    char dk[128], why[256];
    ra_capf_cmd_t c;
    ra_capf_result_t res;
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_INSTALL, 0);
    const char *hset[] = {"HSET", dk, "keys", "rsa1"};
    freeReplyObject(cmd(4, hset));
    assert_int_equal(ra_capf_begin_cmd(&c, sha, name, "n1:0:130", T, PEER, 60000), RA_OK);
    redisReply *r = redisCommandArgv(rc, c.argc, c.argv, c.argvlen);
    assert_int_equal(ra_capf_parse_begin(r, name, &res, &d, why, sizeof(why)), RA_E_BAD_RECORD);
    assert_int_equal(res.outcome, RA_CAPF_OK);
    assert_non_null(strstr(why, "keys"));
    freeReplyObject(r);
    assert_lock(name, "n1:0:130");
    assert_int_equal(do_release(name, "n1:0:130").outcome, RA_CAPF_OK);
}

static void test_builder_args(void **state) {
    (void)state;
    ra_capf_cmd_t c;
    ra_capf_lsc_t l;
    char long_tok[RA_CAPF_TOKEN_MAX + 2], serial65[66];
    memset(long_tok, 't', sizeof(long_tok) - 1);
    long_tok[sizeof(long_tok) - 1] = '\0';
    memset(serial65, 'a', 65);
    serial65[65] = '\0';
    const char *bad_names[] = {"", "a{b", "a b", "a}b", NULL};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        assert_int_equal(ra_capf_begin_cmd(&c, sha, bad_names[i], "t", T, PEER, 1000), RA_E_BAD_NAME);
    const char *bad_toks[] = {"", "has space", "tab\t", "\x7f", long_tok, NULL};
    for (size_t i = 0; i < sizeof(bad_toks) / sizeof(bad_toks[0]); i++)
        assert_int_equal(ra_capf_release_cmd(&c, sha, "SEP1", bad_toks[i]), RA_E_BAD_NAME);
    long_tok[RA_CAPF_TOKEN_MAX] = '\0';
    assert_int_equal(ra_capf_release_cmd(&c, sha, "SEP1", long_tok), RA_OK);
    assert_int_equal(ra_capf_begin_cmd(&c, sha, "SEP1", "t", T, PEER, 0), RA_E_BAD_NAME);
    assert_int_equal(ra_capf_begin_cmd(&c, sha, "SEP1", "t", -1, PEER, 1000), RA_E_BAD_NAME);
    assert_int_equal(ra_capf_auth_failed_cmd(&c, sha, "SEP1", "t", T, PEER, "x", -1, 60), RA_E_BAD_NAME);
    const char *bad_serials[] = {"", "xyz", "0x01", serial65, NULL};
    for (size_t i = 0; i < sizeof(bad_serials) / sizeof(bad_serials[0]); i++)
        assert_int_equal(ra_capf_lsc_init(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), bad_serials[i], T),
                         RA_E_BAD_NAME);
    assert_int_equal(ra_capf_lsc_init(&l, spki1, 0, cert1, sizeof(cert1), "01", T), RA_E_BAD_NAME);
    assert_int_equal(ra_capf_lsc_init(&l, spki1, sizeof(spki1), NULL, 0, "01", T), RA_E_BAD_NAME);
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "01", T);
    ra_capf_finish_t f = {.kind = RA_CAPF_KIND__COUNT};
    assert_int_equal(ra_capf_finish_cmd(&c, sha, "SEP1", "t", T, PEER, &f), RA_E_BAD_NAME);
    f.kind = RA_CAPF_INSTALL_OK; /* without lsc */
    assert_int_equal(ra_capf_finish_cmd(&c, sha, "SEP1", "t", T, PEER, &f), RA_E_BAD_NAME);
    f.kind = RA_CAPF_FETCH_OK;   /* without a certificate */
    assert_int_equal(ra_capf_finish_cmd(&c, sha, "SEP1", "t", T, PEER, &f), RA_E_BAD_NAME);
    l.spki_der = NULL;           /* ISSUED needs the DERs */
    assert_int_equal(ra_capf_issued_cmd(&c, sha, "SEP1", "t", T, PEER, &l), RA_E_BAD_NAME);

    /* layouts: EVALSHA sha numkeys, 3 keys (+ the request key), 4 common args */
    assert_int_equal(ra_capf_begin_cmd(&c, sha, "SEP1", "t", T, NULL, 1000), RA_OK);
    assert_int_equal(c.argc, 3 + 3 + 4 + 1);
    assert_string_equal(c.argv[2], "3");
    assert_string_equal(c.argv[4], "stp:dev:{SEP1}");
    assert_string_equal(c.argv[5], "stp:capf:lock:{SEP1}");
    assert_string_equal(c.argv[9], ""); /* peer NULL */
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "01", T);
    assert_int_equal(ra_capf_issued_cmd(&c, sha, "SEP1", "t", T, PEER, &l), RA_OK);
    assert_int_equal(c.argc, 3 + 4 + 4 + 7);
    assert_string_equal(c.argv[2], "4");
    assert_int_equal(c.argvlen[c.argc - 1], sizeof(cert1));
    assert_memory_equal(c.argv[c.argc - 2], spki1, sizeof(spki1));
    f = (ra_capf_finish_t){.kind = RA_CAPF_DELETE_OK};
    assert_int_equal(ra_capf_finish_cmd(&c, sha, "SEP1", "t", T, PEER, &f), RA_OK);
    assert_int_equal(c.argc, 3 + 3 + 4 + 7);
    /* a long, non-printable peer is cut and cleaned */
    char peer[200];
    memset(peer, '1', sizeof(peer) - 1);
    peer[0] = '\n';
    peer[sizeof(peer) - 1] = '\0';
    assert_int_equal(ra_capf_fail_cmd(&c, sha, "SEP1", "t", T, peer, NULL), RA_OK);
    assert_int_equal(c.argvlen[9], RA_CAPF_PEER_MAX - 1);
    assert_int_equal(c.argv[9][0], '?');
}

/* The script refuses arguments it cannot use, whoever built them. */
static void test_script_args(void **state) {
    (void)state;
    ra_capf_result_t res;
    char why[256];
    struct { const char *argv[12]; int argc; const char *want; } cases[] = {
        {{"EVALSHA", sha, "3", "stp:audit", "stp:dev:{S1}", "stp:capf:lock:{S1}", "BEGIN", "t", "12a", "", "1000"},
         11, "bad now"},
        {{"EVALSHA", sha, "3", "stp:audit", "stp:dev:{S1}", "stp:capf:lock:{S2}", "BEGIN", "t", "1", "", "1000"},
         11, "bad keys"},
        {{"EVALSHA", sha, "3", "stp:audit", "stp:dev:{S1}", "stp:capf:lock:{S1}", "BEGIN", "t t", "1", "", "1000"},
         11, "bad token"},
        {{"EVALSHA", sha, "3", "stp:audit", "stp:dev:{S1}", "stp:capf:lock:{S1}", "BEGIN", "t", "1", "", "-5"},
         11, "bad lock_ttl_ms"},
        {{"EVALSHA", sha, "3", "stp:audit", "stp:dev:{S1}", "stp:capf:lock:{S1}", "DANCE", "t", "1", ""},
         10, "bad verb"},
        {{"EVALSHA", sha, "3", "stp:audit", "stp:dev:{S1}", "stp:capf:lock:{S1}", "FINISH", "t", "1", "", "install-ok",
          "S1:00"},
         12, "bad lsc"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        redisReply *r = redisCommandArgv(rc, cases[i].argc, cases[i].argv, NULL);
        assert_int_equal(ra_capf_parse(r, &res, why, sizeof(why)), RA_E_REDIS);
        if (!strstr(why, cases[i].want)) fprintf(stderr, "case %zu: %s\n", i, why);
        assert_non_null(strstr(why, cases[i].want));
        freeReplyObject(r);
    }
    /* an unknown script */
    ra_capf_cmd_t c;
    assert_int_equal(ra_capf_release_cmd(&c, "0000000000000000000000000000000000000000", "S1", "t"), RA_OK);
    redisReply *r = redisCommandArgv(rc, c.argc, c.argv, c.argvlen);
    assert_int_equal(ra_capf_parse(r, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "NOSCRIPT"));
    freeReplyObject(r);
}

/* ---- malformed replies ---- */

static redisReply str_reply(const char *s, int type) {
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = type;
    r.str = (char *)s;
    r.len = strlen(s);
    return r;
}

static redisReply int_reply(long long v) {
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = REDIS_REPLY_INTEGER;
    r.integer = v;
    return r;
}

static void expect_parse(const redisReply *r, ra_err_t want) {
    ra_capf_result_t res;
    char why[128] = "";
    assert_int_equal(ra_capf_parse(r, &res, why, sizeof(why)), want);
    if (want != RA_OK) assert_true(why[0] != '\0');
}

static void test_parse_malformed(void **state) {
    (void)state;
    redisReply el[5], *ptr[5], arr, fel[2], *fptr[2];
#define RESET()                                                                                                    \
    do {                                                                                                           \
        el[0] = str_reply("locked-out", REDIS_REPLY_STRING);                                                       \
        el[1] = str_reply("authentication locked out until 2023-11-14T22:13:20Z", REDIS_REPLY_STRING);             \
        el[2] = int_reply(0);                                                                                      \
        el[3] = int_reply(1700000000);                                                                             \
        memset(&el[4], 0, sizeof(el[4]));                                                                          \
        el[4].type = REDIS_REPLY_ARRAY;                                                                            \
        for (int i = 0; i < 5; i++) ptr[i] = &el[i];                                                               \
        memset(&arr, 0, sizeof(arr));                                                                              \
        arr.type = REDIS_REPLY_ARRAY;                                                                              \
        arr.elements = 5;                                                                                          \
        arr.element = ptr;                                                                                         \
    } while (0)
    RESET();
    ra_capf_result_t res;
    char why[128];
    assert_int_equal(ra_capf_parse(&arr, &res, why, sizeof(why)), RA_OK);
    assert_int_equal(res.outcome, RA_CAPF_LOCKED_OUT);
    assert_int_equal(res.auth_lock_until, 1700000000);
    assert_string_equal(res.reason, "authentication locked out until 2023-11-14T22:13:20Z");
    expect_parse(NULL, RA_E_REDIS);
    redisReply err = str_reply("ERR boom", REDIS_REPLY_ERROR);
    expect_parse(&err, RA_E_REDIS);
    redisReply whole = int_reply(1);
    expect_parse(&whole, RA_E_REDIS);
    arr.elements = 4;
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[0] = str_reply("maybe", REDIS_REPLY_STRING); /* unknown outcome */
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[0] = int_reply(0);
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[1] = int_reply(0);
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[2] = str_reply("1", REDIS_REPLY_STRING);
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[3] = int_reply(-1);
    expect_parse(&arr, RA_E_REDIS);
    RESET();
    el[4] = int_reply(0);
    expect_parse(&arr, RA_E_REDIS);
    /* fields only with ok */
    RESET();
    fel[0] = str_reply("op", REDIS_REPLY_STRING);
    fel[1] = str_reply("install", REDIS_REPLY_STRING);
    fptr[0] = &fel[0];
    fptr[1] = &fel[1];
    el[4].elements = 2;
    el[4].element = fptr;
    expect_parse(&arr, RA_E_REDIS);
    el[0] = str_reply("ok", REDIS_REPLY_STRING);
    expect_parse(&arr, RA_OK);
    ra_device_t d;
    assert_int_equal(ra_capf_parse_begin(&arr, "SEP1", &res, &d, why, sizeof(why)), RA_OK);
    assert_int_equal(d.op, RA_OP_INSTALL);
    el[4].elements = 1; /* odd pairs */
    assert_int_equal(ra_capf_parse_begin(&arr, "SEP1", &res, &d, why, sizeof(why)), RA_E_BAD_RECORD);
    /* a reason with a NUL and control bytes is cut and cleaned */
    RESET();
    static const char nasty[] = {'a', '\n', 'b', '\0', 'c'};
    el[1].str = (char *)nasty;
    el[1].len = sizeof(nasty);
    assert_int_equal(ra_capf_parse(&arr, &res, why, sizeof(why)), RA_OK);
    assert_string_equal(res.reason, "a?b");
#undef RESET
}

/* N8: a public key already bound to another device is refused at ISSUED
 * (nothing written but the audit entry); the same device may present it
 * again. */
static void test_issued_key_in_use(void **state) {
    (void)state;
    const char *a = "SEPCAFE00031", *b = "SEPCAFE00032";
    char dka[128], dkb[128], rkb[RA_REQ_KEY_MAX];
    ra_capf_lsc_t l;
    devkey(dka, sizeof(dka), a);
    devkey(dkb, sizeof(dkb), b);
    add_device(a, RA_OP_INSTALL, 0);
    add_device(b, RA_OP_INSTALL, 0);
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "0a01", T + 86400);
    l.has_key_hash = true;
    memset(l.key_hash, 0x5a, sizeof(l.key_hash));
    assert_int_equal(do_begin(a, "n1:0:61", T, 60000, NULL).outcome, RA_CAPF_OK);
    assert_int_equal(do_issued(a, "n1:0:61", T, &l).outcome, RA_CAPF_OK);
    assert_int_equal(do_issued(a, "n1:0:61", T, &l).outcome, RA_CAPF_OK); /* its own key again */
    assert_int_equal(do_begin(b, "n1:0:62", T, 60000, NULL).outcome, RA_CAPF_OK);
    ra_req_key(rkb, sizeof(rkb), b, l.spki_sha256);
    long long n = xlen();
    ra_capf_result_t r = do_issued(b, "n1:0:62", T, &l);
    assert_int_equal(r.outcome, RA_CAPF_KEY_IN_USE);
    assert_string_equal(r.reason, "public key already bound to device SEPCAFE00031");
    assert_int_equal(exists(rkb), 0);
    assert_field_str(dkb, "lsc_unconfirmed", NULL);
    assert_int_equal(xlen(), n); /* nothing: the session's FAIL audits the refusal */
    assert_lock(b, "n1:0:62");        /* kept: the session follows up with FAIL */
    l.has_key_hash = false;           /* without the hash nothing is checked */
    assert_int_equal(do_issued(b, "n1:0:62", T, &l).outcome, RA_CAPF_OK);
    (void)dka;
}

/* ---- online CA mode: SUBMIT and ISSUED online ---- */

static const uint8_t p10a[] = {0x30, 0x81, 0x90, 0x30, 0x00, 0x02, 0x01, 0x00, 0xff, 0x10};
#define NOTIFY1 "stp:done:host/aaaa:bbbb:0"
#define NOTIFY2 "stp:done:host/aaaa:cccc:3"

static void submit_init(ra_capf_submit_t *sub, const uint8_t *spki, size_t spki_len, const char *notify,
                        int64_t ttl_ms) {
    *sub = (ra_capf_submit_t){.spki_der = spki, .spki_len = spki_len, .p10_der = p10a, .p10_len = sizeof(p10a),
                              .notify = notify, .lock_ttl_ms = ttl_ms};
}

/* do_submit runs SUBMIT; on OK *out gets the answer (cert copied into
 * cert_buf, at most 64 bytes). */
static ra_capf_result_t do_submit(const char *name, const char *tok, int64_t now, const ra_capf_submit_t *sub,
                                  ra_capf_submitted_t *out, uint8_t cert_buf[64]) {
    ra_capf_cmd_t c;
    ra_capf_result_t res;
    char why[256] = "";
    assert_int_equal(ra_capf_submit_cmd(&c, sha, name, tok, now, PEER, sub), RA_OK);
    redisReply *r = redisCommandArgv(rc, c.argc, c.argv, c.argvlen);
    ra_err_t e = ra_capf_parse_submit(r, &res, out, why, sizeof(why));
    if (e != RA_OK) fprintf(stderr, "parse_submit: %s\n", why);
    assert_int_equal(e, RA_OK);
    if (out->cert) {
        assert_true(out->cert_len <= 64);
        memcpy(cert_buf, out->cert, out->cert_len);
        out->cert = cert_buf;
    }
    freeReplyObject(r);
    return res;
}

static long long xlen_of(const char *key) {
    const char *argv[] = {"XLEN", key};
    return int_cmd(2, argv);
}

/* assert_open_score checks ZSCORE stp:reqs:open id (-1: not a member). */
static void assert_open_score(const char *id, long long want) {
    const char *argv[] = {"ZSCORE", "stp:reqs:open", id};
    redisReply *r = cmd(3, argv);
    if (want < 0) {
        assert_int_equal(r->type, REDIS_REPLY_NIL);
    } else {
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal(atoll(r->str), want);
    }
    freeReplyObject(r);
}

/* assert_upstream_last: the newest stp:upstream entry is {key K, id ID}. */
static void assert_upstream_last(const char *key, const char *id) {
    const char *argv[] = {"XREVRANGE", "stp:upstream", "+", "-", "COUNT", "1"};
    redisReply *x = cmd(6, argv);
    assert_int_equal(x->elements, 1);
    const redisReply *f = x->element[0]->element[1];
    assert_int_equal(f->elements, 4);
    assert_string_equal(f->element[0]->str, "key");
    assert_string_equal(f->element[1]->str, key);
    assert_string_equal(f->element[2]->str, "id");
    assert_string_equal(f->element[3]->str, id);
    freeReplyObject(x);
}

/* complete plays stampede-control's COMPLETE on record `rk` (the fields of
 * the schema; the PUBLISH is not the script's business here). */
static void complete(const char *rk, const char *id, const uint8_t *cert, size_t cert_len, const char *serial,
                     int64_t not_after) {
    char na[24];
    snprintf(na, sizeof(na), "%lld", (long long)not_after);
    const char *argv[] = {"HSET", rk, "state", "issued", "cert", (const char *)cert, "serial", serial,
                          "not_after", na, "ca_state", "done", "ca_req_id", "4711"};
    size_t lens[14];
    for (int i = 0; i < 14; i++) lens[i] = strlen(argv[i]);
    lens[5] = cert_len;
    redisReply *r = redisCommandArgv(rc, 14, argv, lens);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    freeReplyObject(r);
    const char *zrem[] = {"ZREM", "stp:reqs:open", id};
    freeReplyObject(cmd(3, zrem));
}

/* The whole online install: SUBMIT queues (pending record, open index,
 * stp:upstream, lock extended, no audit); SUBMIT again only moves notify;
 * after COMPLETE SUBMIT hands back the certificate; ISSUED online keeps
 * stampede-control's record and writes no second `issue`; FINISH confirms
 * it (the record's serial compared without case or leading zero bytes). */
static void test_submit_online_install(void **state) {
    (void)state;
    const char *name = "SEPCAFE00041", *tok = "n1:0:71";
    char dk[128], lk[128], rk[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX];
    uint8_t spki_sha[32], cbuf[64];
    ra_capf_submit_t sub;
    ra_capf_submitted_t got;
    ra_device_t d;
    devkey(dk, sizeof(dk), name);
    lockkey(lk, sizeof(lk), name);
    add_device(name, RA_OP_INSTALL, 0);
    SHA256(spki1, sizeof(spki1), spki_sha);
    ra_req_key(rk, sizeof(rk), name, spki_sha);
    ra_req_id(id, sizeof(id), name, spki_sha);
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_OK);
    long long n = xlen(), up = xlen_of("stp:upstream");

    submit_init(&sub, spki1, sizeof(spki1), NOTIFY1, 600000);
    ra_capf_result_t r = do_submit(name, tok, T + 1, &sub, &got, cbuf);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_int_equal(got.state, RA_CAPF_SUBMIT_QUEUED);
    assert_null(got.cert);
    assert_field_str(rk, "id", id);
    assert_field_str(rk, "identity", name);
    assert_field_str(rk, "protocol", "capf");
    assert_field_str(rk, "peer", PEER);
    assert_field(rk, "csr", spki1, sizeof(spki1));
    assert_field(rk, "p10", p10a, sizeof(p10a));
    assert_field_str(rk, "mode", "online");
    assert_field_str(rk, "state", "pending");
    assert_field_str(rk, "ca_state", "queued");
    assert_field_str(rk, "notify", NOTIFY1);
    assert_field_int(rk, "received", T + 1);
    assert_field_int(rk, "updated", T + 1);
    assert_field_int(rk, "attempts", 1);
    assert_field_str(rk, "cert", NULL);
    assert_open_score(id, T + 1);
    assert_int_equal(xlen_of("stp:upstream"), up + 1);
    assert_upstream_last(rk, id);
    assert_int_equal(xlen(), n);           /* no audit: stampede-control audits the answer */
    assert_true(pttl(lk) > 60000);         /* the wait does not outlive the lock */
    assert_lock(name, tok);
    assert_field_str(dk, "lsc_unconfirmed", NULL);

    /* again (a notice lost, a second session): pending, only notify moves */
    submit_init(&sub, spki1, sizeof(spki1), NOTIFY2, 600000);
    r = do_submit(name, tok, T + 2, &sub, &got, cbuf);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_int_equal(got.state, RA_CAPF_SUBMIT_PENDING);
    assert_field_str(rk, "notify", NOTIFY2);
    assert_field_int(rk, "attempts", 2);
    assert_field_int(rk, "received", T + 1);
    assert_open_score(id, T + 1);
    assert_int_equal(xlen_of("stp:upstream"), up + 1); /* not queued twice */
    assert_int_equal(xlen(), n);

    /* stampede-control completes it; SUBMIT now returns the certificate */
    int64_t na = T + 365 * 86400;
    complete(rk, id, cert1, sizeof(cert1), "7F01AB", na);
    r = do_submit(name, tok, T + 3, &sub, &got, cbuf);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_int_equal(got.state, RA_CAPF_SUBMIT_ISSUED);
    assert_int_equal(got.cert_len, sizeof(cert1));
    assert_memory_equal(got.cert, cert1, sizeof(cert1));
    assert_string_equal(got.serial, "7F01AB");
    assert_int_equal(got.not_after, na);
    assert_field_int(rk, "attempts", 3);
    assert_int_equal(xlen_of("stp:upstream"), up + 1);

    /* ISSUED online: a certificate the record does not hold is refused */
    ra_capf_lsc_t l;
    lsc(&l, spki1, sizeof(spki1), cert2, sizeof(cert2), "7f01ab", na);
    l.online = true;
    r = do_issued(name, tok, T + 4, &l);
    assert_int_equal(r.outcome, RA_CAPF_NOT_ISSUED);
    assert_string_equal(r.reason, "the request record does not hold this certificate (state issued)");
    assert_field_str(dk, "lsc_unconfirmed", NULL);
    assert_int_equal(xlen(), n);
    /* the record's own certificate: device bookkeeping, the record kept */
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "7f01ab", na);
    l.online = true;
    l.has_key_hash = true;
    memset(l.key_hash, 0x41, sizeof(l.key_hash));
    r = do_issued(name, tok, T + 4, &l);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_int_equal(xlen(), n);           /* COMPLETE wrote the `issue` entry: no second one */
    assert_field_str(dk, "lsc_unconfirmed", "7f01ab");
    assert_field_str(rk, "mode", "online");
    assert_field(rk, "p10", p10a, sizeof(p10a));
    assert_field_str(rk, "ca_req_id", "4711");
    assert_field_str(rk, "ca_state", "done");
    assert_field_str(rk, "serial", "7F01AB");
    assert_field_int(rk, "attempts", 3);
    assert_field_int(rk, "confirmed", 0);
    char md5hex[33], shahex[65];
    hex(md5hex, l.cert_md5, 16);
    hex(shahex, l.cert_sha256, 32);
    assert_field_str(rk, "cert_md5", md5hex);
    assert_field_str(rk, "cert_sha256", shahex);
    {
        char kk[96];
        memset(kk, 0, sizeof(kk));
        snprintf(kk, sizeof(kk), "stp:capf:key:%s", "4141414141414141414141414141414141414141414141414141414141414141");
        assert_int_equal(exists(kk), 1);
    }
    assert_lock(name, tok);
    r = do_finish(name, tok, T + 5, RA_CAPF_INSTALL_OK, &l, NULL, 0);
    assert_int_equal(r.outcome, RA_CAPF_OK);
    assert_field_int(rk, "confirmed", 1);
    assert_field_int(rk, "confirmed_at", T + 5);
    get_device(name, &d);
    assert_int_equal(d.op, RA_OP_NONE);
    assert_int_equal(d.status, RA_STATUS_SUCCESS);
    assert_string_equal(d.lsc_serial, "7f01ab");
    assert_audit("lsc-installed", name, T + 5, PEER, NULL, "7f01ab", id);
    assert_lock(name, NULL);
}

/* SUBMIT refuses what ISSUED refuses (nothing written): no lock, another
 * session's lock, op withdrawn, device gone, a key of another device. */
static void test_submit_refusals(void **state) {
    (void)state;
    const char *name = "SEPCAFE00042", *tok = "n1:0:72";
    char rk[RA_REQ_KEY_MAX], dk[128];
    uint8_t spki_sha[32], cbuf[64];
    ra_capf_submit_t sub;
    ra_capf_submitted_t got;
    devkey(dk, sizeof(dk), name);
    add_device(name, RA_OP_INSTALL, 0);
    SHA256(spki2, sizeof(spki2), spki_sha);
    ra_req_key(rk, sizeof(rk), name, spki_sha);
    long long up = xlen_of("stp:upstream"), n = xlen();
    submit_init(&sub, spki2, sizeof(spki2), NOTIFY1, 600000);
    assert_int_equal(do_submit(name, tok, T, &sub, &got, cbuf).outcome, RA_CAPF_LOST_LOCK);
    assert_int_equal(do_begin(name, "n1:0:other", T, 60000, NULL).outcome, RA_CAPF_OK);
    assert_int_equal(do_submit(name, tok, T, &sub, &got, cbuf).outcome, RA_CAPF_LOST_LOCK);
    assert_int_equal(do_release(name, "n1:0:other").outcome, RA_CAPF_OK);
    assert_int_equal(do_begin(name, tok, T, 60000, NULL).outcome, RA_CAPF_OK);
    /* a key bound to another device */
    const char *own[] = {"SET", "stp:capf:key:4242424242424242424242424242424242424242424242424242424242424242",
                         "SEPOTHER1"};
    freeReplyObject(cmd(3, own));
    sub.has_key_hash = true;
    memset(sub.key_hash, 0x42, sizeof(sub.key_hash));
    ra_capf_result_t r = do_submit(name, tok, T, &sub, &got, cbuf);
    assert_int_equal(r.outcome, RA_CAPF_KEY_IN_USE);
    assert_string_equal(r.reason, "public key already bound to device SEPOTHER1");
    sub.has_key_hash = false;
    /* op withdrawn meanwhile */
    const char *opnone[] = {"HSET", dk, "op", "none"};
    freeReplyObject(cmd(4, opnone));
    assert_int_equal(do_submit(name, tok, T, &sub, &got, cbuf).outcome, RA_CAPF_NO_OP);
    /* device gone */
    const char *del[] = {"DEL", dk};
    freeReplyObject(cmd(2, del));
    assert_int_equal(do_submit(name, tok, T, &sub, &got, cbuf).outcome, RA_CAPF_UNKNOWN);
    assert_int_equal(exists(rk), 0);
    assert_int_equal(xlen_of("stp:upstream"), up);
    assert_int_equal(xlen(), n + 0);
    /* ISSUED online on a record that is still pending: refused */
    add_device(name, RA_OP_INSTALL, 0);
    assert_int_equal(do_submit(name, tok, T, &sub, &got, cbuf).outcome, RA_CAPF_OK);
    assert_int_equal(got.state, RA_CAPF_SUBMIT_QUEUED);
    ra_capf_lsc_t l;
    lsc(&l, spki2, sizeof(spki2), cert1, sizeof(cert1), "01", T + 100);
    l.online = true;
    ra_capf_result_t ri = do_issued(name, tok, T, &l);
    assert_int_equal(ri.outcome, RA_CAPF_NOT_ISSUED);
    assert_string_equal(ri.reason, "the request record does not hold this certificate (state pending)");
    assert_field_str(dk, "lsc_unconfirmed", NULL);
    assert_field_str(rk, "state", "pending");
}

/* Other record states: rejected -> a new submission (received and attempts
 * carried over, queued again); an issued record of local mode or an expired
 * online one -> archived as ...:SERIAL, then queued; a longer lock TTL is
 * never shortened. */
static void test_submit_record_states(void **state) {
    (void)state;
    const char *name = "SEPCAFE00043", *tok = "n1:0:73";
    char rk[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX], lk[128], arch[RA_REQ_KEY_MAX + 8];
    uint8_t spki_sha[32], cbuf[64];
    ra_capf_submit_t sub;
    ra_capf_submitted_t got;
    lockkey(lk, sizeof(lk), name);
    add_device(name, RA_OP_INSTALL, 0);
    SHA256(spki1, sizeof(spki1), spki_sha);
    ra_req_key(rk, sizeof(rk), name, spki_sha);
    ra_req_id(id, sizeof(id), name, spki_sha);
    assert_int_equal(do_begin(name, tok, T, 900000, NULL).outcome, RA_CAPF_OK);
    submit_init(&sub, spki1, sizeof(spki1), NOTIFY1, 60000);
    assert_int_equal(do_submit(name, tok, T, &sub, &got, cbuf).outcome, RA_CAPF_OK);
    assert_true(pttl(lk) > 60000); /* 900 s kept, not cut to 60 s */
    /* REJECT by stampede-control */
    const char *rej[] = {"HSET", rk, "state", "rejected", "reason", "Denied by Policy Module", "ca_state", "done"};
    freeReplyObject(cmd(8, rej));
    long long up = xlen_of("stp:upstream");
    assert_int_equal(do_submit(name, tok, T + 10, &sub, &got, cbuf).outcome, RA_CAPF_OK);
    assert_int_equal(got.state, RA_CAPF_SUBMIT_QUEUED);
    assert_field_str(rk, "state", "pending");
    assert_field_str(rk, "reason", NULL);
    assert_field_int(rk, "received", T);
    assert_field_int(rk, "attempts", 2);
    assert_open_score(id, T + 10);
    assert_int_equal(xlen_of("stp:upstream"), up + 1);
    /* an issued record of local mode: archived, queued afresh */
    const char *loc[] = {"HSET", rk, "state", "issued", "mode", "local", "serial", "0c0c", "cert", "x",
                         "not_after", "99999999999"};
    freeReplyObject(cmd(12, loc));
    assert_int_equal(do_submit(name, tok, T + 20, &sub, &got, cbuf).outcome, RA_CAPF_OK);
    assert_int_equal(got.state, RA_CAPF_SUBMIT_QUEUED);
    snprintf(arch, sizeof(arch), "%s:0c0c", rk);
    assert_field_str(arch, "mode", "local");
    assert_field_str(rk, "mode", "online");
    assert_field_int(rk, "received", T + 20);
    assert_field_int(rk, "attempts", 1);
    assert_int_equal(xlen_of("stp:upstream"), up + 2);
    /* an expired online certificate: archived too */
    const char *old[] = {"HSET", rk, "state", "issued", "serial", "0d0d", "cert", "y", "not_after", "5"};
    freeReplyObject(cmd(10, old));
    assert_int_equal(do_submit(name, tok, T + 30, &sub, &got, cbuf).outcome, RA_CAPF_OK);
    assert_int_equal(got.state, RA_CAPF_SUBMIT_QUEUED);
    snprintf(arch, sizeof(arch), "%s:0d0d", rk);
    assert_int_equal(exists(arch), 1);
    assert_field_str(rk, "state", "pending");
}

static void test_submit_args(void **state) {
    (void)state;
    ra_capf_cmd_t c;
    ra_capf_submit_t sub;
    char long_notify[RA_CAPF_NOTIFY_MAX + 2];
    memset(long_notify, 'n', sizeof(long_notify) - 1);
    long_notify[sizeof(long_notify) - 1] = '\0';
    submit_init(&sub, spki1, sizeof(spki1), NOTIFY1, 1000);
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, NULL), RA_E_BAD_NAME);
    sub.notify = "has space";
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_E_BAD_NAME);
    sub.notify = long_notify;
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_E_BAD_NAME);
    long_notify[RA_CAPF_NOTIFY_MAX] = '\0';
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_OK);
    sub.notify = NULL;
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_E_BAD_NAME);
    submit_init(&sub, spki1, sizeof(spki1), "", 0);
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_E_BAD_NAME);
    submit_init(&sub, spki1, 0, "", 1000);
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_E_BAD_NAME);
    submit_init(&sub, spki1, sizeof(spki1), "", 1000);
    sub.p10_len = 0;
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_E_BAD_NAME);
    /* layout: EVALSHA sha 6|7, keys, verb token now peer id spki p10 notify ttl */
    submit_init(&sub, spki1, sizeof(spki1), NOTIFY1, 1000);
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_OK);
    assert_int_equal(c.argc, 3 + 6 + 9);
    assert_string_equal(c.argv[2], "6");
    assert_string_equal(c.argv[7], "stp:reqs:open");
    assert_string_equal(c.argv[8], "stp:upstream");
    assert_string_equal(c.argv[9], "SUBMIT");
    sub.has_key_hash = true;
    assert_int_equal(ra_capf_submit_cmd(&c, sha, "SEP1", "t", T, PEER, &sub), RA_OK);
    assert_int_equal(c.argc, 3 + 7 + 9);
    assert_string_equal(c.argv[2], "7");
    assert_true(!strncmp(c.argv[9], "stp:capf:key:", 13));
    assert_string_equal(c.argv[10], "SUBMIT");
    assert_memory_equal(c.argv[c.argc - 3], p10a, sizeof(p10a));
    assert_string_equal(c.argv[c.argc - 2], NOTIFY1);
    assert_string_equal(c.argv[c.argc - 1], "1000");
    /* ISSUED online: one more argument */
    ra_capf_lsc_t l;
    lsc(&l, spki1, sizeof(spki1), cert1, sizeof(cert1), "01", T);
    l.online = true;
    assert_int_equal(ra_capf_issued_cmd(&c, sha, "SEP1", "t", T, PEER, &l), RA_OK);
    assert_int_equal(c.argc, 3 + 4 + 4 + 8);
    assert_string_equal(c.argv[c.argc - 1], "1");
    /* the script's own checks */
    ra_capf_result_t res;
    char why[256];
    const char *argv[] = {"EVALSHA", sha, "6", "stp:audit", "stp:dev:{S1}", "stp:capf:lock:{S1}",
                          "stp:req:{S1}:0000000000000000000000000000000000000000000000000000000000000000",
                          "stp:reqs:open", "stp:upstream", "SUBMIT", "t", "1", "",
                          "S1:0000000000000000000000000000000000000000000000000000000000000000", "k", "p", "a b",
                          "1000"};
    redisReply *r = redisCommandArgv(rc, 18, argv, NULL);
    assert_int_equal(ra_capf_parse(r, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "bad notify"));
    freeReplyObject(r);
    argv[16] = "x";
    argv[8] = "stp:upstreamX";
    r = redisCommandArgv(rc, 18, argv, NULL);
    assert_int_equal(ra_capf_parse(r, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "bad keys"));
    freeReplyObject(r);
    argv[8] = "stp:upstream";
    argv[13] = "S2:0000000000000000000000000000000000000000000000000000000000000000";
    r = redisCommandArgv(rc, 18, argv, NULL);
    assert_int_equal(ra_capf_parse(r, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "bad keys"));
    freeReplyObject(r);
    argv[13] = "S1:0000000000000000000000000000000000000000000000000000000000000000";
    argv[17] = "0";
    r = redisCommandArgv(rc, 18, argv, NULL);
    assert_int_equal(ra_capf_parse(r, &res, why, sizeof(why)), RA_E_REDIS);
    assert_non_null(strstr(why, "bad lock_ttl_ms"));
    freeReplyObject(r);
}

/* SUBMIT replies of the wrong shape are refused by ra_capf_parse_submit. */
static void test_parse_submit_malformed(void **state) {
    (void)state;
    redisReply el[5], *ptr[5], arr, fel[8], *fptr[8];
    ra_capf_result_t res;
    ra_capf_submitted_t sub;
    char why[128];
    el[0] = str_reply("ok", REDIS_REPLY_STRING);
    el[1] = str_reply("", REDIS_REPLY_STRING);
    el[2] = int_reply(0);
    el[3] = int_reply(0);
    memset(&el[4], 0, sizeof(el[4]));
    el[4].type = REDIS_REPLY_ARRAY;
    el[4].element = fptr;
    for (int i = 0; i < 5; i++) ptr[i] = &el[i];
    for (int i = 0; i < 8; i++) fptr[i] = &fel[i];
    memset(&arr, 0, sizeof(arr));
    arr.type = REDIS_REPLY_ARRAY;
    arr.elements = 5;
    arr.element = ptr;
    /* no fields at all */
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_E_REDIS);
    /* an unknown state */
    fel[0] = str_reply("state", REDIS_REPLY_STRING);
    fel[1] = str_reply("maybe", REDIS_REPLY_STRING);
    el[4].elements = 2;
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_E_REDIS);
    fel[1] = str_reply("pending", REDIS_REPLY_STRING);
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_OK);
    assert_int_equal(sub.state, RA_CAPF_SUBMIT_PENDING);
    /* issued without a certificate, then with one */
    fel[1] = str_reply("issued", REDIS_REPLY_STRING);
    fel[2] = str_reply("serial", REDIS_REPLY_STRING);
    fel[3] = str_reply("0a0b", REDIS_REPLY_STRING);
    fel[4] = str_reply("not_after", REDIS_REPLY_STRING);
    fel[5] = str_reply("1700000000", REDIS_REPLY_STRING);
    el[4].elements = 6;
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_E_REDIS);
    fel[6] = str_reply("cert", REDIS_REPLY_STRING);
    fel[7] = str_reply("\x30\x03", REDIS_REPLY_STRING);
    el[4].elements = 8;
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_OK);
    assert_int_equal(sub.state, RA_CAPF_SUBMIT_ISSUED);
    assert_string_equal(sub.serial, "0a0b");
    assert_int_equal(sub.not_after, 1700000000);
    assert_int_equal(sub.cert_len, 2);
    /* a bad not_after, an odd count, a non-string value */
    fel[5] = str_reply("-3", REDIS_REPLY_STRING);
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_E_REDIS);
    fel[5] = str_reply("1700000000", REDIS_REPLY_STRING);
    el[4].elements = 7;
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_E_REDIS);
    el[4].elements = 8;
    fel[7] = int_reply(3);
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_E_REDIS);
    /* a refusal is parsed like any other verb's */
    el[0] = str_reply("no-op", REDIS_REPLY_STRING);
    el[4].elements = 0;
    assert_int_equal(ra_capf_parse_submit(&arr, &res, &sub, why, sizeof(why)), RA_OK);
    assert_int_equal(res.outcome, RA_CAPF_NO_OP);
}

/* R14: a restarted instance releases the locks its killed run left, and
 * only those. */
static void test_release_stale(void **state) {
    (void)state;
    const char *set[][2] = {{"stp:capf:lock:{ST1}", "host/aaaa:old1:00000001"},
                            {"stp:capf:lock:{ST2}", "host/aaaa:new2:00000002"},
                            {"stp:capf:lock:{ST3}", "host/bbbb:old1:00000003"},
                            {"stp:capf:lock:{ST4}", "host/aaaa:old9:00000004"}};
    for (size_t i = 0; i < 4; i++) {
        redisReply *r = redisCommand(rc, "SET %s %s PX 600000", set[i][0], set[i][1]);
        freeReplyObject(r);
    }
    unsigned released = 99;
    char why[200];
    assert_int_equal(ra_capf_release_stale(rc, "host/aaaa:", "host/aaaa:new2:", &released, why, sizeof(why)),
                     RA_OK);
    assert_int_equal(released, 2);
    int want[] = {0, 1, 1, 0}; /* another boot of this instance: gone; this boot, another instance: kept */
    for (size_t i = 0; i < 4; i++) {
        redisReply *r = redisCommand(rc, "EXISTS %s", set[i][0]);
        assert_int_equal(r->integer, want[i]);
        freeReplyObject(r);
    }
}

int main(void) {
    if (system("command -v redis-server >/dev/null 2>&1") != 0) return 77; /* meson: skipped */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_script_and_words),
        cmocka_unit_test(test_begin_unknown),
        cmocka_unit_test(test_begin_lock),
        cmocka_unit_test(test_begin_no_op),
        cmocka_unit_test(test_begin_late),
        cmocka_unit_test(test_auth_failed_lockout),
        cmocka_unit_test(test_lockout_dates),
        cmocka_unit_test(test_auth_failed_other_lock),
        cmocka_unit_test(test_issued_without_lock),
        cmocka_unit_test(test_issue_and_install),
        cmocka_unit_test(test_issued_stale),
        cmocka_unit_test(test_install_ok_without_lock),
        cmocka_unit_test(test_install_failed),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_fetch),
        cmocka_unit_test(test_fail),
        cmocka_unit_test(test_device_deleted_mid_session),
        cmocka_unit_test(test_issued_op_changed),
        cmocka_unit_test(test_begin_bad_record),
        cmocka_unit_test(test_builder_args),
        cmocka_unit_test(test_script_args),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_release_stale),
        cmocka_unit_test(test_issued_key_in_use),
        cmocka_unit_test(test_submit_online_install),
        cmocka_unit_test(test_submit_refusals),
        cmocka_unit_test(test_submit_record_states),
        cmocka_unit_test(test_submit_args),
        cmocka_unit_test(test_parse_submit_malformed),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
