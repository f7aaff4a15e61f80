/* ra_reqlist_test: listing request records (ra_reqlist.h) against a private
 * redis-server (unix socket in a temp dir, no TCP, no persistence). Records
 * are written by the request script itself (ra_req.h), plus hand-made
 * stale index entries and malformed keys; then the open walk (with and
 * without pruning), the walk over every record, paging past one batch, an
 * early stop, and the key and reply decoders on their own. Skipped (exit
 * 77) without redis-server. */
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
#include "ra/ra_req.h"
#include "ra/ra_reqlist.h"

static ra_testredis_t srv;
static redisContext *rc;
static char sha[41];

static int start_server(void **state) {
    (void)state;
    if (ra_testredis_start(&srv, "ra_reqlist_test", &rc) != 0) return -1;
    ra_req_script_sha(sha);
    return ra_testredis_load_script(rc, ra_req_script(), sha);
}

static int stop_server(void **state) {
    (void)state;
    return ra_testredis_stop(&srv, &rc);
}

static void cmd(int argc, const char **argv) {
    redisReply *r = redisCommandArgv(rc, argc, argv, NULL);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

static long long zcard(void) {
    redisReply *r = redisCommand(rc, "ZCARD %s", RA_REQ_OPEN_SET);
    assert_non_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

/* request records one request the way stampeded does: the script, then
 * the index update. `serial` NULL: a rejection. Writes its id to `id`. */
static void request(const char *identity, const char *csr, const char *serial, const char *renew, int64_t now,
                    char id[RA_REQ_ID_MAX]) {
    ra_req_record_t r = {.identity = identity, .protocol = "est", .peer = "198.51.100.9:5555",
                         .csr_der = (const uint8_t *)csr, .csr_len = strlen(csr), .issue = serial != NULL,
                         .reason = "CSR signature does not verify", .cert_der = (const uint8_t *)"CERT",
                         .cert_len = 4, .serial_hex = serial, .not_after = now + 86400,
                         .renew_serial_hex = renew, .now = now};
    ra_req_cmd_t c;
    ra_req_result_t res;
    char why[256];
    SHA256((const uint8_t *)csr, strlen(csr), r.csr_sha256);
    ra_req_id(id, RA_REQ_ID_MAX, identity, r.csr_sha256);
    assert_int_equal(ra_req_record_cmd(&c, sha, &r), RA_OK);
    redisReply *rep = redisCommandArgv(rc, c.argc, c.argv, c.argvlen);
    assert_int_equal(ra_req_record_parse(rep, &res, why, sizeof(why)), RA_OK);
    freeReplyObject(rep);
}

/* Collected entries. */
typedef struct {
    ra_reqlist_entry_t e[64];
    size_t num, calls;
    size_t stop_after; /* 0: never stop */
} seen_t;

static int collect(const ra_reqlist_entry_t *e, void *arg) {
    seen_t *s = arg;
    s->calls++;
    if (s->num < 64) s->e[s->num++] = *e;
    return s->stop_after && s->calls >= s->stop_after;
}

static const ra_reqlist_entry_t *find(const seen_t *s, const char *id, ra_reqlist_kind_t kind) {
    for (size_t i = 0; i < s->num; i++)
        if (!strcmp(s->e[i].id, id) && s->e[i].kind == kind) return &s->e[i];
    return NULL;
}

/* why_has: the entry exists and its cause mentions `needle`. */
static void why_has(const ra_reqlist_entry_t *e, const char *needle) {
    assert_non_null(e);
    if (!strstr(e->why, needle)) fail_msg("why '%s' lacks '%s'", e->why, needle);
}

static const ra_reqlist_entry_t *find_key(const seen_t *s, const char *key) {
    for (size_t i = 0; i < s->num; i++)
        if (!strcmp(s->e[i].key, key)) return &s->e[i];
    return NULL;
}

/* Ids of the fixture built by test_open_and_prune, checked by test_all. */
static char id_rej[RA_REQ_ID_MAX], id_issued[RA_REQ_ID_MAX], id_gone[RA_REQ_ID_MAX], id_mal[RA_REQ_ID_MAX],
    id_renewed[RA_REQ_ID_MAX];
static int64_t t0;

static void test_open_and_prune(void **state) {
    (void)state;
    char why[256], key[RA_REQ_KEY_MAX];
    seen_t s = {0};
    size_t pruned = 0;
    t0 = (int64_t)time(NULL);
    request("alice", "CSR-REJ", NULL, "", t0 - 30, id_rej);              /* open: rejected */
    request("alice", "CSR-REJ", NULL, "", t0 - 20, id_rej);              /* ... twice */
    request("bob", "CSR-ISS", NULL, "", t0 - 30, id_issued);             /* rejected ... */
    request("bob", "CSR-ISS", "0e01", "", t0 - 10, id_issued);           /* ... then issued */
    request("carol", "CSR-REN", "0f01", "", t0 - 10, id_renewed);        /* issued ... */
    request("carol", "CSR-REN", "0f02", "0f01", t0, id_renewed);         /* ... renewed: archived 0f01 */
    request("dave", "CSR-MAL", NULL, "", t0, id_mal);
    /* stale entries: the ZREM after an issuance was lost; a record gone; junk */
    const char *zadd1[] = {"ZADD", RA_REQ_OPEN_SET, "100", id_issued};
    cmd(4, zadd1);
    request("erin", "CSR-GONE", NULL, "", t0, id_gone);
    assert_int_equal(ra_req_key_of_id(key, sizeof(key), id_gone), RA_OK);
    const char *del[] = {"DEL", key};
    cmd(2, del);
    const char *zadd2[] = {"ZADD", RA_REQ_OPEN_SET, "200", "junk\x01member"};
    cmd(4, zadd2);
    /* a malformed record stays listed as unreadable, never pruned */
    assert_int_equal(ra_req_key_of_id(key, sizeof(key), id_mal), RA_OK);
    const char *hset[] = {"HSET", key, "updated", "soon"};
    cmd(4, hset);
    assert_int_equal(zcard(), 5);

    assert_int_equal(ra_reqlist_open(rc, false, collect, &s, &pruned, why, sizeof(why)), RA_OK);
    assert_int_equal(s.num, 5);
    assert_int_equal(pruned, 0);
    const ra_reqlist_entry_t *e = find(&s, id_rej, RA_REQLIST_RECORD);
    assert_non_null(e);
    assert_string_equal(e->identity, "alice");
    assert_string_equal(e->protocol, "est");
    assert_string_equal(e->state, "rejected");
    assert_string_equal(e->reason, "CSR signature does not verify");
    assert_string_equal(e->peer, "198.51.100.9:5555");
    assert_int_equal(e->received, t0 - 30);
    assert_int_equal(e->updated, t0 - 20);
    assert_int_equal(e->attempts, 2);
    assert_int_equal(strlen(e->hash), 64);
    assert_false(e->stale);
    e = find(&s, id_issued, RA_REQLIST_RECORD);
    assert_non_null(e);
    assert_string_equal(e->state, "issued");
    assert_string_equal(e->serial, "0e01");
    assert_int_equal(e->not_after, t0 - 10 + 86400);
    assert_true(e->stale);
    assert_false(e->pruned);
    e = find(&s, id_gone, RA_REQLIST_MISSING);
    assert_non_null(e);
    assert_true(e->stale);
    assert_string_equal(e->identity, "erin");
    assert_string_equal(e->reason, "no record");
    e = find(&s, "junk?member", RA_REQLIST_MISSING);
    assert_non_null(e);
    assert_true(e->stale);
    assert_string_equal(e->reason, "not a request id");
    e = find(&s, id_mal, RA_REQLIST_BAD_RECORD);
    why_has(e, "'updated'");
    assert_false(e->stale);
    assert_int_equal(zcard(), 5); /* listing alone changes nothing */

    memset(&s, 0, sizeof(s));
    assert_int_equal(ra_reqlist_open(rc, true, collect, &s, &pruned, why, sizeof(why)), RA_OK);
    assert_int_equal(s.num, 5);
    assert_int_equal(pruned, 3);
    assert_true(find(&s, id_issued, RA_REQLIST_RECORD)->pruned);
    assert_true(find(&s, id_gone, RA_REQLIST_MISSING)->pruned);
    assert_true(find(&s, "junk?member", RA_REQLIST_MISSING)->pruned);
    assert_false(find(&s, id_rej, RA_REQLIST_RECORD)->pruned);
    assert_int_equal(zcard(), 2);
    memset(&s, 0, sizeof(s));
    pruned = 0;
    assert_int_equal(ra_reqlist_open(rc, true, collect, &s, &pruned, why, sizeof(why)), RA_OK);
    assert_int_equal(s.num, 2);
    assert_int_equal(pruned, 0);
}

static void test_all(void **state) {
    (void)state;
    char why[256], key[RA_REQ_KEY_MAX], archived[RA_REQLIST_KEY_MAX];
    seen_t s = {0};
    const char *set1[] = {"SET", "stp:req:{frank}:0000000000000000000000000000000000000000000000000000000000000000",
                          "not a hash"};
    const char *set2[] = {"HSET", "stp:req:foo", "state", "issued"};
    cmd(3, set1);
    cmd(4, set2);
    assert_int_equal(ra_reqlist_all(rc, collect, &s, why, sizeof(why)), RA_OK);
    /* alice, bob, carol + carol's archive, dave (malformed), frank, foo; erin's record is gone */
    assert_int_equal(s.num, 7);
    const ra_reqlist_entry_t *e = find(&s, id_issued, RA_REQLIST_RECORD);
    assert_non_null(e);
    assert_string_equal(e->serial, "0e01");
    assert_false(e->stale);
    e = find(&s, id_renewed, RA_REQLIST_RECORD);
    assert_non_null(e);
    assert_string_equal(e->serial, "0f02");
    assert_int_equal(ra_req_key_of_id(key, sizeof(key), id_renewed), RA_OK);
    snprintf(archived, sizeof(archived), "%s:0f01", key);
    e = find_key(&s, archived);
    assert_non_null(e);
    assert_int_equal(e->kind, RA_REQLIST_ARCHIVED);
    assert_string_equal(e->id, id_renewed);
    assert_string_equal(e->state, "issued");
    assert_string_equal(e->serial, "0f01");
    assert_int_equal(e->not_after, t0 - 10 + 86400);
    e = find_key(&s, set1[1]);
    why_has(e, "WRONGTYPE");
    assert_int_equal(e->kind, RA_REQLIST_BAD_RECORD);
    e = find_key(&s, "stp:req:foo");
    assert_non_null(e);
    assert_int_equal(e->kind, RA_REQLIST_BAD_RECORD);
    assert_non_null(find(&s, id_mal, RA_REQLIST_BAD_RECORD));
    assert_null(find(&s, id_gone, RA_REQLIST_MISSING));
    for (size_t i = 0; i < s.num; i++) assert_string_not_equal(s.e[i].key, RA_REQ_OPEN_SET);
    const char *del[] = {"DEL", set1[1], "stp:req:foo"};
    cmd(3, del);
}

/* More entries than one batch and one SCAN page (the set leaves its
 * compact encoding); each seen at least once; an early stop is honoured. */
static int count_ids(const ra_reqlist_entry_t *e, void *arg) {
    int *n = arg;
    if (e->kind == RA_REQLIST_RECORD && !strncmp(e->identity, "bulk", 4) && !strcmp(e->state, "rejected")) ++*n;
    return 0;
}

static void test_many_pages_and_stop(void **state) {
    (void)state;
    enum { N = 1300 };
    char why[256], key[RA_REQ_KEY_MAX], id[RA_REQ_ID_MAX], score[24];
    uint8_t md[32];
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "bulk%04d", i);
        SHA256((const uint8_t *)name, strlen(name), md);
        ra_req_id(id, sizeof(id), name, md);
        ra_req_key(key, sizeof(key), name, md);
        snprintf(score, sizeof(score), "%d", 1000 + i);
        const char *hset[] = {"HSET", key, "id", id, "identity", name, "protocol", "est", "state", "rejected",
                              "reason", "r", "updated", score, "attempts", "1"};
        const char *zadd[] = {"ZADD", RA_REQ_OPEN_SET, score, id};
        assert_int_equal(redisAppendCommandArgv(rc, 16, hset, NULL), REDIS_OK);
        assert_int_equal(redisAppendCommandArgv(rc, 4, zadd, NULL), REDIS_OK);
    }
    for (int i = 0; i < 2 * N; i++) {
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(rc, (void **)&r), REDIS_OK);
        assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
        freeReplyObject(r);
    }
    int n = 0;
    assert_int_equal(ra_reqlist_open(rc, false, count_ids, &n, NULL, why, sizeof(why)), RA_OK);
    assert_true(n >= N); /* SCAN may repeat, never miss */
    n = 0;
    assert_int_equal(ra_reqlist_all(rc, count_ids, &n, why, sizeof(why)), RA_OK);
    assert_true(n >= N);
    seen_t s = {.stop_after = 3};
    assert_int_equal(ra_reqlist_open(rc, false, collect, &s, NULL, why, sizeof(why)), RA_OK);
    assert_int_equal(s.calls, 3);
    s.calls = s.num = 0;
    assert_int_equal(ra_reqlist_all(rc, collect, &s, why, sizeof(why)), RA_OK);
    assert_int_equal(s.calls, 3);
}

/* ---- the decoders on their own ---- */

static void test_parse_key(void **state) {
    (void)state;
    ra_reqlist_entry_t e;
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    char key[256];
    snprintf(key, sizeof(key), "stp:req:{SEP1.a_b@c-d}:%s", hex);
    assert_int_equal(ra_reqlist_parse_key(&e, key, strlen(key)), RA_OK);
    assert_int_equal(e.kind, RA_REQLIST_RECORD);
    assert_string_equal(e.identity, "SEP1.a_b@c-d");
    assert_string_equal(e.hash, hex);
    assert_string_equal(e.key, key);
    assert_int_equal(strncmp(e.id, "SEP1.a_b@c-d:", 13), 0);
    assert_string_equal(e.id + 13, hex);
    snprintf(key, sizeof(key), "stp:req:{SEP1}:%s:0A1b", hex);
    assert_int_equal(ra_reqlist_parse_key(&e, key, strlen(key)), RA_OK);
    assert_int_equal(e.kind, RA_REQLIST_ARCHIVED);
    assert_string_equal(e.serial, "0A1b");
    char longserial[RA_REQ_SERIAL_MAX + 2];
    memset(longserial, 'a', sizeof(longserial) - 1);
    longserial[sizeof(longserial) - 1] = '\0';
    const char *bad[] = {"", "stp:req:", "stp:req:{SEP1}", "stp:req:{}:%s", "stp:req:{a b}:%s", "stp:req:{SEP1}%s",
                         "stp:req:{SEP1}:%.63s", "stp:req:{SEP1}:%s:", "stp:req:{SEP1}:%s:xyz", "stp:req:{SEP1}:%s0",
                         "stp:req:{SEP1}:%s:12:34", "stp:reqs:open", "stp:req:SEP1:%s", "stp:req:{SEP1}:%s:%s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(key, sizeof(key), bad[i], hex, longserial);
        assert_int_equal(ra_reqlist_parse_key(&e, key, strlen(key)), RA_E_BAD_NAME);
        assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
        assert_string_equal(e.key, key);
    }
    snprintf(key, sizeof(key), "stp:req:{SEP1}:%s", hex);
    key[20] = 'A'; /* upper-case hash: not ours */
    assert_int_equal(ra_reqlist_parse_key(&e, key, strlen(key)), RA_E_BAD_NAME);
    snprintf(key, sizeof(key), "stp:req:{SEP1}:%s", hex);
    assert_int_equal(ra_reqlist_parse_key(&e, key, strlen(key) + 1), RA_E_BAD_NAME); /* with its NUL */
    assert_int_equal(strlen(e.key), strlen(key) + 1);
    assert_int_equal(e.key[strlen(key)], '?');
    char bin[] = "stp:req:{\x01\x7f}";
    assert_int_equal(ra_reqlist_parse_key(&e, bin, sizeof(bin) - 1), RA_E_BAD_NAME);
    assert_string_equal(e.key, "stp:req:{??}");
}

static redisReply nil_reply(void) {
    redisReply r;
    memset(&r, 0, sizeof(r));
    r.type = REDIS_REPLY_NIL;
    return r;
}

static redisReply str_reply(const char *s, size_t len) {
    redisReply r = nil_reply();
    r.type = REDIS_REPLY_STRING;
    r.str = (char *)s;
    r.len = len;
    return r;
}

static void test_decode(void **state) {
    (void)state;
    ra_reqlist_entry_t e, base;
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    char key[128], id[128], longtext[400];
    redisReply el[RA_REQLIST_NUM_FIELDS], *ptr[RA_REQLIST_NUM_FIELDS], arr;
    snprintf(key, sizeof(key), "stp:req:{u1}:%s", hex);
    snprintf(id, sizeof(id), "u1:%s", hex);
    assert_int_equal(ra_reqlist_parse_key(&base, key, strlen(key)), RA_OK);
    memset(longtext, 'x', sizeof(longtext));
    longtext[5] = '\n';
#define RESET()                                                                                    \
    do {                                                                                           \
        for (int k_ = 0; k_ < RA_REQLIST_NUM_FIELDS; k_++) el[k_] = nil_reply(), ptr[k_] = &el[k_]; \
        el[0] = str_reply(id, strlen(id));                                                         \
        el[4] = str_reply("rejected", 8);                                                          \
        el[7] = str_reply("1700000000", 10);                                                       \
        memset(&arr, 0, sizeof(arr));                                                              \
        arr.type = REDIS_REPLY_ARRAY;                                                              \
        arr.elements = RA_REQLIST_NUM_FIELDS;                                                      \
        arr.element = ptr;                                                                         \
        e = base;                                                                                  \
    } while (0)
    RESET();
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_RECORD);
    assert_int_equal(e.updated, 1700000000);
    assert_int_equal(e.attempts, 0);
    RESET();
    el[5] = str_reply(longtext, sizeof(longtext)); /* reason: clipped, sanitized */
    el[3] = str_reply("\xff\x00peer", 6);
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_RECORD);
    assert_int_equal(strlen(e.reason), RA_REQ_REASON_MAX - 1);
    assert_int_equal(e.reason[5], '?');
    assert_string_equal(e.peer, "??peer");
    RESET();
    for (int i = 0; i < RA_REQLIST_NUM_FIELDS; i++) el[i] = nil_reply();
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_MISSING);
    RESET();
    el[4] = nil_reply(); /* no state */
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    RESET();
    el[0] = str_reply("u2:00", 5); /* someone else's id */
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    RESET();
    el[1] = str_reply("u2", 2);
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    const char *nums[] = {"", "-1", "1e3", "12345678901234567890", " 1"};
    for (int f = 6; f <= 10; f += (f == 8 ? 2 : 1)) { /* received updated attempts not_after */
        for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
            RESET();
            el[f] = str_reply(nums[i], strlen(nums[i]));
            ra_reqlist_decode(&e, &arr);
            assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
            assert_non_null(strstr(e.why, "not a number"));
        }
    }
    RESET();
    el[2].type = REDIS_REPLY_INTEGER; /* wrong type */
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    RESET();
    arr.elements = RA_REQLIST_NUM_FIELDS - 1;
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    RESET();
    arr.elements = 0;
    arr.element = NULL;
    ra_reqlist_decode(&e, &arr);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    RESET();
    ra_reqlist_decode(&e, NULL);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    RESET();
    redisReply err = str_reply("WRONGTYPE Operation against a key", 33);
    err.type = REDIS_REPLY_ERROR;
    ra_reqlist_decode(&e, &err);
    assert_int_equal(e.kind, RA_REQLIST_BAD_RECORD);
    assert_non_null(strstr(e.why, "WRONGTYPE"));
#undef RESET
}

int main(void) {
    if (system("command -v redis-server >/dev/null 2>&1") != 0) return 77; /* meson: skipped */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_and_prune),
        cmocka_unit_test(test_all),
        cmocka_unit_test(test_many_pages_and_stop),
        cmocka_unit_test(test_parse_key),
        cmocka_unit_test(test_decode),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
