/* bench_capf_test: unit tests for the pure parts of `stampede-bench capf`:
 * device names (bench_capf_names_init / bench_capf_name), the client
 * messages against the bytes of capf-protocol.md §2.9 and against the
 * server's own parser, the phone session fed server messages built by the
 * server's own builder (capf_msg_build) around an LSC from cx_lsc_issue
 * (success for v2/RSA and v3/P-256, declines at each step, and the server
 * faults the phone must catch), and the provisioning CSV. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/mem.h>

#include "benches/bench.h"
#include "crypto/cx_cert.h"
#include "crypto/cx_lsc.h"
#include "crypto/cx_testkit.h"
#include "dataplane/capf_msg.h"

#define SID 0x00000123u
#define DEVICE "SEPBENCH0000001"

/* The test fixture: an EC CA, one phone key of each type and their SPKIs. */
static struct {
    EVP_PKEY *ca_key;
    uint8_t *ca_der;
    size_t ca_der_len;
    cx_issuer_t iss;
    EVP_PKEY *rsa, *ec;
    uint8_t *rsa_spki, *ec_spki;
    size_t rsa_spki_len, ec_spki_len;
} g;

static void spki_of(const EVP_PKEY *key, uint8_t **out, size_t *out_len) {
    CBB cbb;
    if (!CBB_init(&cbb, 600) || !EVP_marshal_public_key(&cbb, key) ||
        !CBB_finish(&cbb, out, out_len))
        abort();
}

/* ca_make self-signs the test CA (O=bench, CN=CAPF-test) as cx_lsc_test does. */
static void ca_make(void) {
    uint8_t *spki, *name, serial[CX_SERIAL_LEN];
    size_t spki_len, name_len;
    int64_t now = (int64_t)time(NULL);
    CBB cbb;
    CBS ca_spki;

    g.ca_key = tk_ec_key(NID_X9_62_prime256v1);
    spki_of(g.ca_key, &spki, &spki_len);
    assert_true(CBB_init(&cbb, 256));
    assert_int_equal(cx_name_build(&cbb, "bench", "CAPF-test"), CX_OK);
    assert_true(CBB_finish(&cbb, &name, &name_len));
    cx_issuer_t self = {.key = g.ca_key};
    cx_tbs_t tbs = {.not_before = now - 300, .not_after = now + 3650 * 86400LL,
                    .key_usage = CX_KU_DIGITAL_SIGNATURE | CX_KU_KEY_CERT_SIGN, .is_ca = true};
    CBS_init(&self.subject, name, name_len);
    CBS_init(&tbs.subject, name, name_len);
    CBS_init(&tbs.spki, spki, spki_len);
    CBS_init(&tbs.san, NULL, 0);
    assert_int_equal(cx_cert_ski(self.ski, &tbs.spki), CX_OK);
    assert_true(CBB_init(&cbb, 2048));
    assert_int_equal(cx_cert_build(&cbb, serial, &self, &tbs), CX_OK);
    assert_true(CBB_finish(&cbb, &g.ca_der, &g.ca_der_len));
    OPENSSL_free(spki);
    OPENSSL_free(name);
    assert_int_equal(cx_cert_parse_basic(g.ca_der, g.ca_der_len, &g.iss.subject, &ca_spki,
                                         NULL, NULL), CX_OK);
    assert_int_equal(cx_cert_ski(g.iss.ski, &ca_spki), CX_OK);
    g.iss.key = g.ca_key;
}

static int setup(void **state) {
    (void)state;
    ca_make();
    g.rsa = tk_rsa_key(2048);
    g.ec = tk_ec_key(NID_X9_62_prime256v1);
    spki_of(g.rsa, &g.rsa_spki, &g.rsa_spki_len);
    spki_of(g.ec, &g.ec_spki, &g.ec_spki_len);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    EVP_PKEY_free(g.ca_key);
    EVP_PKEY_free(g.rsa);
    EVP_PKEY_free(g.ec);
    OPENSSL_free(g.ca_der);
    OPENSSL_free(g.rsa_spki);
    OPENSSL_free(g.ec_spki);
    return 0;
}

static CBS rsa_spki(void) {
    CBS c;
    CBS_init(&c, g.rsa_spki, g.rsa_spki_len);
    return c;
}

static CBS ec_spki(void) {
    CBS c;
    CBS_init(&c, g.ec_spki, g.ec_spki_len);
    return c;
}

/* ---- device names -------------------------------------------------------- */

static void test_names(void **state) {
    (void)state;
    bench_capf_names_t n;
    char name[BENCH_CAPF_NAME_MAX + 1], why[200];
    assert_int_equal(bench_capf_names_init(&n, "SEPBENCH", 3000, why, sizeof why), BENCH_OK);
    assert_int_equal(n.digits, 7);
    bench_capf_name(&n, 1, name);
    assert_string_equal(name, "SEPBENCH0000001");
    bench_capf_name(&n, 9999999, name);
    assert_string_equal(name, "SEPBENCH9999999");
    assert_int_equal(bench_capf_names_init(&n, "SEPBENCH", 9999999, why, sizeof why), BENCH_OK);
    assert_int_equal(bench_capf_names_init(&n, "SEPBENCH", 10000000, why, sizeof why),
                     BENCH_E_SETUP);
    assert_int_equal(bench_capf_names_init(&n, "SEPR1", 3000, why, sizeof why), BENCH_OK);
    bench_capf_name(&n, 42, name);
    assert_string_equal(name, "SEPR10000000042");
    assert_int_equal(bench_capf_names_init(&n, "ABCDEFGHIJKLMN", 9, why, sizeof why), BENCH_OK);
    bench_capf_name(&n, 9, name);
    assert_string_equal(name, "ABCDEFGHIJKLMN9");
    assert_int_equal(bench_capf_names_init(&n, "ABCDEFGHIJKLMN", 10, why, sizeof why),
                     BENCH_E_SETUP);
    const char *bad[] = {"", "ABCDEFGHIJKLMNO", "SEP BENCH", ".SEP", "SE..P", "SEP/1", "SEPÄ"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(bench_capf_names_init(&n, bad[i], 1, why, sizeof why), BENCH_E_SETUP);
}

/* ---- client messages ----------------------------------------------------- */

/* build_fixed runs a builder into a BENCH_CAPF_WBUF fixed CBB. */
#define BUILD(buf, len, call)                                                        \
    do {                                                                             \
        CBB cbb_;                                                                    \
        uint8_t *p_;                                                                 \
        assert_true(CBB_init_fixed(&cbb_, (buf), BENCH_CAPF_WBUF));                  \
        assert_true(call(&cbb_));                                                    \
        assert_true(CBB_finish(&cbb_, &p_, &(len)));                                 \
    } while (0)

static int auth_v2_csf(CBB *c) { return bench_capf_build_auth(c, SID, 2, "CSF123"); }
static int auth_v3_csf(CBB *c) { return bench_capf_build_auth(c, SID, 3, "CSF123"); }
static int store_ok(CBB *c) { return bench_capf_build_store(c, SID, 1); }
static int keygen_rsa(CBB *c) { return bench_capf_build_keygen(c, SID, rsa_spki()); }

static void test_auth_bytes(void **state) {
    (void)state;
    /* §2.9: AUTH_RESPONSE, Jabber (version 2, device "CSF123", reason 1). */
    static const uint8_t v2[] = {0x55, 0x02, 0x00, 0x00, 0x01, 0x23, 0x00, 0x12,
                                 0x07, 0x00, 0x01, 0x02,
                                 0x0d, 0x00, 0x07, 'C', 'S', 'F', '1', '2', '3', 0x00,
                                 0x01, 0x00, 0x01, 0x01};
    /* Phone order (REASON, VERSION, DEVICE_NAME) as usecallmanagernz's emulator. */
    static const uint8_t v3[] = {0x55, 0x02, 0x00, 0x00, 0x01, 0x23, 0x00, 0x12,
                                 0x01, 0x00, 0x01, 0x01,
                                 0x07, 0x00, 0x01, 0x03,
                                 0x0d, 0x00, 0x07, 'C', 'S', 'F', '1', '2', '3', 0x00};
    uint8_t buf[BENCH_CAPF_WBUF];
    size_t len;
    BUILD(buf, len, auth_v2_csf);
    assert_int_equal(len, sizeof v2);
    assert_memory_equal(buf, v2, sizeof v2);
    BUILD(buf, len, auth_v3_csf);
    assert_int_equal(len, sizeof v3);
    assert_memory_equal(buf, v3, sizeof v3);

    /* The server's parser takes it, device name and all. */
    capf_msg_t m;
    CBS name;
    uint8_t version;
    assert_int_equal(capf_msg_parse(&m, buf, len), CAPF_OK);
    assert_int_equal(m.op, CAPF_OP_AUTH_RESPONSE);
    assert_int_equal(m.session_id, SID);
    assert_int_equal(capf_msg_device_name(&m, 0, &name), CAPF_OK);
    assert_true(CBS_mem_equal(&name, (const uint8_t *)"CSF123", 6));
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_VERSION, &version), CAPF_OK);
    assert_int_equal(version, 3);
}

static void test_store_and_keygen_bytes(void **state) {
    (void)state;
    /* §2.9: STORE_CERTIFICATE_RESPONSE, stored. */
    static const uint8_t store[] = {0x55, 0x0a, 0x00, 0x00, 0x01, 0x23, 0x00, 0x04,
                                    0x01, 0x00, 0x01, 0x01};
    /* §2.9: KEY_GENERATE_RESPONSE, RSA-2048: 305 bytes, header 01 29, element 09 01 26. */
    static const uint8_t keygen_head[] = {0x55, 0x04, 0x00, 0x00, 0x01, 0x23, 0x01, 0x29,
                                          0x09, 0x01, 0x26, 0x30, 0x82, 0x01, 0x22};
    uint8_t buf[BENCH_CAPF_WBUF];
    size_t len;
    BUILD(buf, len, store_ok);
    assert_int_equal(len, sizeof store);
    assert_memory_equal(buf, store, sizeof store);
    BUILD(buf, len, keygen_rsa);
    assert_int_equal(len, 305);
    assert_memory_equal(buf, keygen_head, sizeof keygen_head);
    assert_memory_equal(buf + 11, g.rsa_spki, g.rsa_spki_len);
    capf_msg_t m;
    CBS spki;
    assert_int_equal(capf_msg_parse(&m, buf, len), CAPF_OK);
    assert_int_equal(capf_msg_get(&m, CAPF_TAG_PUBLIC_KEY, &spki), CAPF_OK);
    assert_true(CBS_mem_equal(&spki, g.rsa_spki, g.rsa_spki_len));

    /* A CBB too small for the message: zero, nothing claimed. */
    CBB small;
    uint8_t tiny[8];
    assert_true(CBB_init_fixed(&small, tiny, sizeof tiny));
    assert_false(bench_capf_build_store(&small, SID, 1));
    CBB_cleanup(&small);
}

/* ---- server messages (built with the server's builder) -------------------- */

typedef struct {
    uint8_t buf[4096];
    size_t len;
} srv_msg_t;

static void srv_build(srv_msg_t *out, const capf_msg_out_t *m) {
    CBB cbb;
    uint8_t *p;
    assert_true(CBB_init_fixed(&cbb, out->buf, sizeof out->buf));
    assert_int_equal(capf_msg_build(&cbb, m), CAPF_OK);
    assert_true(CBB_finish(&cbb, &p, &out->len));
}

static void srv_hello(srv_msg_t *out, uint32_t sid) {
    capf_msg_out_t m = {.op = CAPF_OP_AUTH_REQUEST, .session_id = sid,
                        .present = CAPF_BIT(CAPF_TAG_VERSION) | CAPF_BIT(CAPF_TAG_AUTH_TYPE),
                        .version = 3, .auth_type = CAPF_AUTH_NONE};
    srv_build(out, &m);
}

static void srv_keyreq(srv_msg_t *out, uint32_t sid, uint8_t version, bench_keytype_t t) {
    capf_msg_out_t m = {.op = CAPF_OP_KEY_GENERATE_REQUEST, .session_id = sid};
    if (t == BENCH_KEY_RSA2048) {
        m.present = CAPF_BIT(CAPF_TAG_KEY_SIZE);
        m.key_size = 2048;
    }
    if (version >= 3) {
        m.present |= CAPF_BIT(CAPF_TAG_KEY_TYPE);
        m.key_type = t == BENCH_KEY_RSA2048 ? CAPF_KEY_RSA : CAPF_KEY_EC;
        if (t == BENCH_KEY_EC256) {
            m.present |= CAPF_BIT(CAPF_TAG_CURVE);
            m.curve = CAPF_CURVE_P256;
        }
    }
    srv_build(out, &m);
}

/* srv_store issues the LSC of `device` for `spki` and wraps it; the serial
 * goes to `serial`. */
static void srv_store(srv_msg_t *out, uint32_t sid, const char *device, CBS spki,
                      uint8_t serial[CX_SERIAL_LEN]) {
    uint8_t der[2048];
    size_t der_len;
    uint8_t *p;
    CBB cbb;
    assert_true(CBB_init_fixed(&cbb, der, sizeof der));
    assert_int_equal(cx_lsc_issue(&cbb, serial, &g.iss, &spki, device, NULL, NULL, NULL,
                                  (int64_t)time(NULL)), CX_OK);
    assert_true(CBB_finish(&cbb, &p, &der_len));
    capf_msg_out_t m = {.op = CAPF_OP_STORE_CERTIFICATE_REQUEST, .session_id = sid,
                        .present = CAPF_BIT(CAPF_TAG_CERTIFICATE_TYPE) |
                                   CAPF_BIT(CAPF_TAG_CERTIFICATE),
                        .cert_type = CAPF_CERT_LSC};
    CBS_init(&m.cert_der, der, der_len);
    srv_build(out, &m);
}

static void srv_end(srv_msg_t *out, uint32_t sid, uint8_t reason) {
    capf_msg_out_t m = {.op = CAPF_OP_END_SESSION, .session_id = sid,
                        .present = CAPF_BIT(CAPF_TAG_REASON), .reason = reason};
    srv_build(out, &m);
}

/* feed gives the session one server message; on SEND the answer is parsed
 * back with the server's parser into `answer` (may be NULL). */
static bench_capf_step_t feed(bench_capf_sess_t *s, const srv_msg_t *in, capf_msg_t *answer,
                              uint8_t wbuf[BENCH_CAPF_WBUF]) {
    CBB out;
    uint8_t *p;
    size_t len;
    assert_true(CBB_init_fixed(&out, wbuf, BENCH_CAPF_WBUF));
    bench_capf_step_t st = bench_capf_sess_on_msg(s, in->buf, in->len, &out);
    if (st == BENCH_CAPF_SEND) {
        assert_true(CBB_finish(&out, &p, &len));
        if (answer != NULL)
            assert_int_equal(capf_msg_parse(answer, wbuf, len), CAPF_OK);
    } else {
        CBB_cleanup(&out);
    }
    return st;
}

/* install runs a whole successful session for `version` and key `t`. */
static void install(uint8_t version, bench_keytype_t t) {
    CBS spki = t == BENCH_KEY_RSA2048 ? rsa_spki() : ec_spki(), sent;
    bench_capf_sess_t s;
    srv_msg_t msg;
    capf_msg_t ans;
    uint8_t wbuf[BENCH_CAPF_WBUF], serial[CX_SERIAL_LEN], v;
    const uint32_t sid = 0xdeadbeefu;

    bench_capf_sess_init(&s, version, t, DEVICE, spki);
    srv_hello(&msg, sid);
    assert_int_equal(feed(&s, &msg, &ans, wbuf), BENCH_CAPF_SEND);
    assert_int_equal(ans.op, CAPF_OP_AUTH_RESPONSE);
    assert_int_equal(ans.session_id, sid);
    assert_int_equal(capf_msg_u8(&ans, CAPF_TAG_VERSION, &v), CAPF_OK);
    assert_int_equal(v, version);

    srv_keyreq(&msg, sid, version, t);
    assert_int_equal(feed(&s, &msg, &ans, wbuf), BENCH_CAPF_SEND);
    assert_int_equal(ans.op, CAPF_OP_KEY_GENERATE_RESPONSE);
    assert_int_equal(capf_msg_get(&ans, CAPF_TAG_PUBLIC_KEY, &sent), CAPF_OK);
    assert_true(CBS_mem_equal(&sent, CBS_data(&spki), CBS_len(&spki)));

    srv_store(&msg, sid, DEVICE, spki, serial);
    assert_int_equal(feed(&s, &msg, &ans, wbuf), BENCH_CAPF_SEND);
    assert_int_equal(ans.op, CAPF_OP_STORE_CERTIFICATE_RESPONSE);
    assert_int_equal(capf_msg_u8(&ans, CAPF_TAG_REASON, &v), CAPF_OK);
    assert_int_equal(v, 1);
    assert_int_equal(s.serial_len, CX_SERIAL_LEN);
    assert_memory_equal(s.serial, serial, CX_SERIAL_LEN);

    srv_end(&msg, sid, 1);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_DONE);
    assert_int_equal(s.end_reason, 1);
    assert_int_equal(s.state, BENCH_CAPF_S_ENDED);
    /* Nothing after END_SESSION. */
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);
}

static void test_install_v2_rsa(void **state) {
    (void)state;
    install(2, BENCH_KEY_RSA2048);
}

static void test_install_v3_rsa(void **state) {
    (void)state;
    install(3, BENCH_KEY_RSA2048);
}

static void test_install_v3_ec(void **state) {
    (void)state;
    install(3, BENCH_KEY_EC256);
}

/* start brings a v`version` session to the key request (hello answered). */
static void start(bench_capf_sess_t *s, uint8_t version, bench_keytype_t t, CBS spki) {
    srv_msg_t msg;
    uint8_t wbuf[BENCH_CAPF_WBUF];
    bench_capf_sess_init(s, version, t, DEVICE, spki);
    srv_hello(&msg, SID);
    assert_int_equal(feed(s, &msg, NULL, wbuf), BENCH_CAPF_SEND);
}

static void test_declines(void **state) {
    (void)state;
    bench_capf_sess_t s;
    srv_msg_t msg;
    uint8_t wbuf[BENCH_CAPF_WBUF], serial[CX_SERIAL_LEN];

    start(&s, 2, BENCH_KEY_RSA2048, rsa_spki());        /* unknown device */
    srv_end(&msg, SID, 9);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_DECLINED);
    assert_int_equal(s.end_reason, 9);
    assert_int_equal(s.end_stage, BENCH_CAPF_AFTER_AUTH);

    start(&s, 2, BENCH_KEY_RSA2048, rsa_spki());        /* key refused */
    srv_keyreq(&msg, SID, 2, BENCH_KEY_RSA2048);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_SEND);
    srv_end(&msg, SID, 7);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_DECLINED);
    assert_int_equal(s.end_stage, BENCH_CAPF_AFTER_KEY);

    start(&s, 3, BENCH_KEY_EC256, ec_spki());           /* store not recorded */
    srv_keyreq(&msg, SID, 3, BENCH_KEY_EC256);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_SEND);
    srv_store(&msg, SID, DEVICE, ec_spki(), serial);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_SEND);
    srv_end(&msg, SID, 7);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_DECLINED);
    assert_int_equal(s.end_reason, 7);
    assert_int_equal(s.end_stage, BENCH_CAPF_AFTER_STORE);
}

/* bad_at_keyreq feeds a key request of (`version`, `t`) to a phone of
 * (`pversion`, `pt`) and expects BAD. */
static void bad_at_keyreq(uint8_t pversion, bench_keytype_t pt, uint8_t version,
                          bench_keytype_t t) {
    bench_capf_sess_t s;
    srv_msg_t msg;
    uint8_t wbuf[BENCH_CAPF_WBUF];
    start(&s, pversion, pt, pt == BENCH_KEY_EC256 ? ec_spki() : rsa_spki());
    srv_keyreq(&msg, SID, version, t);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);
    assert_non_null(strstr(s.why, "KEY_GENERATE_REQUEST"));
}

static void test_server_faults(void **state) {
    (void)state;
    bench_capf_sess_t s;
    srv_msg_t msg;
    uint8_t wbuf[BENCH_CAPF_WBUF], serial[CX_SERIAL_LEN];

    bad_at_keyreq(2, BENCH_KEY_RSA2048, 3, BENCH_KEY_RSA2048); /* KEY_TYPE to v2 */
    bad_at_keyreq(3, BENCH_KEY_EC256, 3, BENCH_KEY_RSA2048);   /* not the provisioned key */
    bad_at_keyreq(3, BENCH_KEY_RSA2048, 3, BENCH_KEY_EC256);
    bad_at_keyreq(3, BENCH_KEY_RSA2048, 2, BENCH_KEY_RSA2048); /* no KEY_TYPE to v3 */

    start(&s, 2, BENCH_KEY_RSA2048, rsa_spki());        /* wrong session id */
    srv_keyreq(&msg, SID + 1, 2, BENCH_KEY_RSA2048);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);
    assert_non_null(strstr(s.why, "session id"));

    start(&s, 2, BENCH_KEY_RSA2048, rsa_spki());        /* out of order */
    srv_store(&msg, SID, DEVICE, rsa_spki(), serial);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);

    bench_capf_sess_init(&s, 2, BENCH_KEY_RSA2048, DEVICE, rsa_spki());  /* END first */
    srv_end(&msg, SID, 7);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);

    bench_capf_sess_init(&s, 2, BENCH_KEY_RSA2048, DEVICE, rsa_spki());  /* not CAPF */
    srv_hello(&msg, SID);
    msg.buf[0] = 0x56;
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);
    assert_non_null(strstr(s.why, "malformed"));

    /* The LSC of another device, and an LSC for another key. */
    start(&s, 2, BENCH_KEY_RSA2048, rsa_spki());
    srv_keyreq(&msg, SID, 2, BENCH_KEY_RSA2048);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_SEND);
    srv_store(&msg, SID, "SEPBENCH0000002", rsa_spki(), serial);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);
    assert_non_null(strstr(s.why, "CN"));

    start(&s, 2, BENCH_KEY_RSA2048, rsa_spki());
    srv_keyreq(&msg, SID, 2, BENCH_KEY_RSA2048);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_SEND);
    srv_store(&msg, SID, DEVICE, ec_spki(), serial);
    assert_int_equal(feed(&s, &msg, NULL, wbuf), BENCH_CAPF_BAD);
    assert_non_null(strstr(s.why, "public key"));
}

static void test_lsc_check_not_a_cert(void **state) {
    (void)state;
    static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    CBS der, serial;
    const char *why = NULL;
    CBS_init(&der, junk, sizeof junk);
    assert_int_equal(bench_capf_lsc_check(der, rsa_spki(), DEVICE, &serial, &why),
                     BENCH_E_CONTENT);
    assert_non_null(why);
}

/* ---- provisioning CSV ------------------------------------------------------ */

static void test_provision_csv(void **state) {
    (void)state;
    bench_capf_names_t n;
    char why[200], *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(bench_capf_names_init(&n, "SEPE1", 3, why, sizeof why), BENCH_OK);
    assert_int_equal(bench_provision_csv(f, &n, 3, BENCH_KEY_EC256), BENCH_OK);
    fclose(f);
    assert_string_equal(text, "name,op,auth,auth_string,keys,by\n"
                              "SEPE10000000001,install,null,,ec256,\n"
                              "SEPE10000000002,install,null,,ec256,\n"
                              "SEPE10000000003,install,null,,ec256,\n");
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_auth_bytes),
        cmocka_unit_test(test_store_and_keygen_bytes),
        cmocka_unit_test(test_install_v2_rsa),
        cmocka_unit_test(test_install_v3_rsa),
        cmocka_unit_test(test_install_v3_ec),
        cmocka_unit_test(test_declines),
        cmocka_unit_test(test_server_faults),
        cmocka_unit_test(test_lsc_check_not_a_cert),
        cmocka_unit_test(test_provision_csv),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
