/* capf_sess_test: the CAPF session engine driven directly: every flow of
 * capf-protocol.md §2.7 and the refusals of §5.2/§6, checking the steps,
 * the states and the exact server bytes. Client messages are built by hand
 * here (the codec only builds server messages). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/capf_sess.h"

#define SID 0x00000123u

/* A client message: header + elements, built with CBB. */
typedef struct {
    uint8_t buf[2048];
    size_t len;
    capf_msg_t msg;
} cmsg_t;

static void cmsg(cmsg_t *c, uint8_t op, uint32_t sid, const uint8_t *elems, size_t elems_len) {
    CBB b, body;
    assert_true(CBB_init_fixed(&b, c->buf, sizeof(c->buf)));
    assert_true(CBB_add_u8(&b, CAPF_MAGIC) && CBB_add_u8(&b, op) && CBB_add_u32(&b, sid) &&
                CBB_add_u16_length_prefixed(&b, &body) && CBB_add_bytes(&body, elems, elems_len));
    assert_true(CBB_finish(&b, NULL, &c->len));
    assert_int_equal(capf_msg_parse(&c->msg, c->buf, c->len), CAPF_OK);
}

/* AUTH_RESPONSE {REASON 01, VERSION v, DEVICE_NAME name [, PASSWORD pw]} */
static void auth_msg(cmsg_t *c, uint8_t v, const char *name, const char *pw) {
    uint8_t e[200];
    CBB b, val;
    size_t n;
    assert_true(CBB_init_fixed(&b, e, sizeof(e)));
    assert_true(CBB_add_u8(&b, 0x01) && CBB_add_u16(&b, 1) && CBB_add_u8(&b, 1));
    assert_true(CBB_add_u8(&b, 0x07) && CBB_add_u16(&b, 1) && CBB_add_u8(&b, v));
    assert_true(CBB_add_u8(&b, 0x0d) && CBB_add_u16_length_prefixed(&b, &val) &&
                CBB_add_bytes(&val, (const uint8_t *)name, strlen(name) + 1));
    if (pw)
        assert_true(CBB_add_u8(&b, 0x0b) && CBB_add_u16_length_prefixed(&b, &val) &&
                    CBB_add_bytes(&val, (const uint8_t *)pw, strlen(pw) + 1));
    assert_true(CBB_finish(&b, NULL, &n));
    cmsg(c, CAPF_OP_AUTH_RESPONSE, SID, e, n);
}

static void reason_msg(cmsg_t *c, uint8_t op, uint8_t reason) {
    const uint8_t e[] = {0x01, 0x00, 0x01, reason};
    cmsg(c, op, SID, e, sizeof(e));
}

/* An output buffer for one server message. */
typedef struct {
    uint8_t buf[4096];
    CBB cbb;
    bool live; /* cbb holds BoringSSL state (this BoringSSL allocates in CBB_init_fixed) */
} out_t;

static CBB *out_reset(out_t *o) {
    if (o->live) CBB_cleanup(&o->cbb);
    assert_true(CBB_init_fixed(&o->cbb, o->buf, sizeof(o->buf)));
    o->live = true;
    return &o->cbb;
}

static size_t out_take(out_t *o, const uint8_t **data) {
    size_t n;
    uint8_t *p;
    assert_true(o->live);
    o->live = false;
    assert_true(CBB_finish(&o->cbb, &p, &n));
    *data = o->buf;
    return n;
}

/* out_done releases what the last out_reset left (every test ends with it). */
static void out_done(out_t *o) {
    if (o->live) CBB_cleanup(&o->cbb);
    o->live = false;
}

static void assert_bytes(out_t *o, const uint8_t *want, size_t want_len) {
    const uint8_t *got;
    size_t n = out_take(o, &got);
    assert_int_equal(n, want_len);
    assert_memory_equal(got, want, want_len);
}

static void device(ra_device_t *d, ra_op_t op, ra_auth_t auth, ra_key_t k0, ra_key_t k1, size_t nk) {
    ra_device_init(d, "SEP74A02FC0A675");
    d->op = op;
    d->auth = auth;
    d->keys[0] = k0;
    d->keys[1] = k1;
    d->num_keys = nk;
}

static void start(capf_sess_t *s, capf_conf_t *cf, out_t *o) {
    capf_conf_default(cf);
    assert_int_equal(capf_sess_start(s, cf, SID, out_reset(o)), CAPF_OK);
    /* §2.9 hello, usecallmanagernz style (VERSION 3 + AUTH_TYPE 0): F3 */
    const uint8_t hello[] = {0x55, 0x01, 0x00, 0x00, 0x01, 0x23, 0x00, 0x08,
                             0x07, 0x00, 0x01, 0x03, 0x08, 0x00, 0x01, 0x00};
    assert_bytes(o, hello, sizeof(hello));
    assert_int_equal(s->state, CAPF_S_AWAIT_AUTH);
}

/* to_begin starts a session and feeds it AUTH_RESPONSE (version v, device
 * `name`, password `pw` or NULL): the engine must ask for BEGIN. */
static void to_begin(capf_sess_t *s, capf_conf_t *cf, out_t *o, capf_result_t *r, cmsg_t *m, uint8_t v,
                     const char *name, const char *pw) {
    start(s, cf, o);
    auth_msg(m, v, name, pw);
    assert_int_equal(capf_sess_on_msg(s, cf, &m->msg, out_reset(o), r), CAPF_STEP_BEGIN);
}

/* P1: v2 client, null string, RSA-2048: the exact sequence of §2.7.1. */
static void test_install_v2(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;
    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL);
    assert_string_equal(s.device, "SEP74A02FC0A675");
    assert_int_equal(s.version, 2);
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_EC256, RA_KEY_RSA2048, 2); /* EC preferred, RSA backup */
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t keygen[] = {0x55, 0x03, 0x00, 0x00, 0x01, 0x23, 0x00, 0x05, 0x0a, 0x00, 0x02, 0x08, 0x00};
    assert_bytes(&o, keygen, sizeof(keygen)); /* KEY_SIZE only, as CUCM sent it */
    assert_int_equal(s.state, CAPF_S_AWAIT_KEYGEN);

    uint8_t spki[] = {0x09, 0x00, 0x03, 0x30, 0x01, 0x00};
    cmsg(&m, CAPF_OP_KEY_GENERATE_RESPONSE, SID, spki, sizeof(spki));
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_SIGN);
    assert_int_equal(CBS_len(&r.spki), 3);
    assert_int_equal(s.key.type, CAPF_KEY_RSA);
    assert_int_equal(s.key.rsa_bits, 2048);
    assert_int_equal(capf_sess_signed(&s, CAPF_OK, &r), CAPF_STEP_RECORD);
    const uint8_t der[] = {0x30, 0x03, 0x02, 0x01, 0x05};
    CBS cert;
    CBS_init(&cert, der, sizeof(der));
    assert_int_equal(capf_sess_recorded(&s, true, false, cert, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t store[] = {0x55, 0x09, 0x00, 0x00, 0x01, 0x23, 0x00, 0x11, 0x03, 0x00, 0x01, 0x01,
                             0x04, 0x00, 0x0a, 0x01, 0x00, 0x07, 0x00, 0x01, 0x30, 0x03, 0x02, 0x01, 0x05};
    assert_bytes(&o, store, sizeof(store));
    assert_int_equal(s.state, CAPF_S_AWAIT_STORE);

    reason_msg(&m, CAPF_OP_STORE_CERTIFICATE_RESPONSE, 1);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FINISH);
    assert_int_equal(r.finish, CAPF_FIN_INSTALL_OK);
    assert_int_equal(capf_sess_closed(&s, true, out_reset(&o), &r), CAPF_STEP_END);
    const uint8_t end_ok[] = {0x55, 0x0f, 0x00, 0x00, 0x01, 0x23, 0x00, 0x04, 0x01, 0x00, 0x01, 0x01};
    assert_bytes(&o, end_ok, sizeof(end_ok));
    assert_int_equal(s.state, CAPF_S_CLOSING);
    assert_false(s.locked);
    out_done(&o);
}

/* P2/P4/P5: v3 client: KEY_TYPE always; EC first in the key order -> EC;
 * REQUEST_IN_PROGRESS accepted up to the limit. */
static void test_install_v3_ec(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;
    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", "");
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_EC384, RA_KEY_RSA2048, 2);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t keygen[] = {0x55, 0x03, 0x00, 0x00, 0x01, 0x23, 0x00, 0x08,
                              0x11, 0x00, 0x01, 0x01, 0x12, 0x00, 0x01, 0x01};
    assert_bytes(&o, keygen, sizeof(keygen)); /* §2.9 "version 3, EC P-384" */
    for (unsigned i = 0; i < cf.max_in_progress; i++) {
        cmsg(&m, CAPF_OP_REQUEST_IN_PROGRESS, SID, NULL, 0);
        assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_WAIT);
    }
    cmsg(&m, CAPF_OP_REQUEST_IN_PROGRESS, SID, NULL, 0);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "REQUEST_IN_PROGRESS"));
    assert_int_equal(s.state, CAPF_S_FINISHING);
    assert_int_equal(capf_sess_closed(&s, true, out_reset(&o), &r), CAPF_STEP_END);
    assert_int_equal(r.end_reason, 7);
    out_done(&o);
}

/* v3 RSA: KEY_SIZE + KEY_TYPE=0 (§2.9). */
static void test_install_v3_rsa(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;
    start(&s, &cf, &o);
    auth_msg(&m, 4, "SEP74A02FC0A675", NULL); /* VERSION 04 is treated as 3 (§4.2) */
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_BEGIN);
    assert_int_equal(s.version, 3);
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_RSA2048, 0, 1);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t keygen[] = {0x55, 0x03, 0x00, 0x00, 0x01, 0x23, 0x00, 0x09, 0x0a, 0x00, 0x02,
                              0x08, 0x00, 0x11, 0x00, 0x01, 0x00};
    assert_bytes(&o, keygen, sizeof(keygen));
    out_done(&o);
}

/* P13 / refusals by the registry, before anything is locked. */
static void test_begin_refusals(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    const uint8_t end9[] = {0x55, 0x0f, 0x00, 0x00, 0x01, 0x23, 0x00, 0x04, 0x01, 0x00, 0x01, 0x09};
    const uint8_t end7[] = {0x55, 0x0f, 0x00, 0x00, 0x01, 0x23, 0x00, 0x04, 0x01, 0x00, 0x01, 0x07};
    to_begin(&s, &cf, &o, &r, &m, 2, "CSF123", NULL);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_UNKNOWN, NULL, out_reset(&o), &r), CAPF_STEP_END);
    assert_bytes(&o, end9, sizeof(end9));
    assert_false(s.locked);

    capf_begin_t refusals[] = {CAPF_BEGIN_REFUSED, CAPF_BEGIN_UNAVAILABLE};
    for (size_t i = 0; i < 2; i++) {
        to_begin(&s, &cf, &o, &r, &m, 2, "CSF123", NULL);
        r.why[0] = 0;
        assert_int_equal(capf_sess_begun(&s, &cf, refusals[i], NULL, out_reset(&o), &r), CAPF_STEP_END);
        assert_bytes(&o, end7, sizeof(end7));
        assert_true(r.why[0]);
    }
    out_done(&o);
}

/* N1, N6, N12 and the unsupported certificate modes: refused after the lock
 * is taken, so the cause is recorded (FAIL). */
static void test_policy_failures(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;

    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", NULL); /* authentication string required, none sent */
    device(&d, RA_OP_INSTALL, RA_AUTH_STRING, RA_KEY_RSA2048, 0, 1);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_true(r.auth_failure);
    assert_non_null(strstr(r.why, "Invalid Authentication String"));

    memset(&r, 0, sizeof(r)); /* a string sent: checked on a signer; wrong */
    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", "123456");
    assert_true(r.has_password);
    assert_int_equal(CBS_len(&r.password), 6);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_AUTH);
    assert_int_equal(capf_sess_authed(&s, &cf, &d, false, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_true(r.auth_failure);
    /* ... and right: the key request goes out */
    memset(&r, 0, sizeof(r));
    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", "123456");
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_AUTH);
    assert_int_equal(capf_sess_authed(&s, &cf, &d, true, out_reset(&o), &r), CAPF_STEP_WAIT);
    assert_int_equal(s.state, CAPF_S_AWAIT_KEYGEN);

    memset(&r, 0, sizeof(r)); /* N6: EC only, version 2 client */
    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL);
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_EC256, 0, 1);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "No Support for EC only in CAPF version 3"));
    assert_false(r.auth_failure);

    /* certificate modes: the proof is checked on a signer; a fault of the
     * phone is recorded with its CUCM status and counted, ours is not */
    ra_auth_t modes[] = {RA_AUTH_LSC, RA_AUTH_MIC};
    for (int i = 0; i < 2; i++) {
        memset(&r, 0, sizeof(r));
        to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", NULL);
        device(&d, RA_OP_INSTALL, modes[i], RA_KEY_RSA2048, 0, 1);
        assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_CERTAUTH);
        assert_int_equal(capf_sess_certauthed(&s, &cf, &d, CAPF_E_CERTAUTH_UNTRUSTED,
                                              "Invalid LSC: certificate not issued by a trusted CA", out_reset(&o), &r),
                         CAPF_STEP_FAIL);
        assert_string_equal(r.why, "Upgrade Failed: Invalid LSC: certificate not issued by a trusted CA");
        assert_true(r.auth_failure);
    }
    memset(&r, 0, sizeof(r));
    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", NULL);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_CERTAUTH);
    assert_int_equal(capf_sess_certauthed(&s, &cf, &d, CAPF_E_BUFFER, NULL, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_false(r.auth_failure);
    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", NULL);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_CERTAUTH);
    assert_int_equal(capf_sess_certauthed(&s, &cf, &d, CAPF_OK, NULL, out_reset(&o), &r), CAPF_STEP_WAIT);
    assert_int_equal(s.state, CAPF_S_AWAIT_KEYGEN);

    /* N12: VERSION 01 and a missing VERSION are refused before BEGIN */
    start(&s, &cf, &o);
    auth_msg(&m, 1, "SEP74A02FC0A675", NULL);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_END);
    const uint8_t name_only[] = {0x0d, 0x00, 0x03, 'A', 'B', 0x00};
    start(&s, &cf, &o);
    cmsg(&m, CAPF_OP_AUTH_RESPONSE, SID, name_only, sizeof(name_only));
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_END);
    assert_non_null(strstr(r.why, "version"));
    out_done(&o);
}

/* M2, M11, M13, M9 and the key-generation failure (N9). */
static void test_protocol_violations(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;

    start(&s, &cf, &o); /* KEY_GENERATE_RESPONSE before AUTH_RESPONSE */
    uint8_t spki[] = {0x09, 0x00, 0x01, 0x30};
    cmsg(&m, CAPF_OP_KEY_GENERATE_RESPONSE, SID, spki, sizeof(spki));
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_END);
    assert_non_null(strstr(r.why, "out of order"));
    assert_int_equal(r.end_reason, 7);

    start(&s, &cf, &o); /* a server opcode from the client */
    reason_msg(&m, CAPF_OP_END_SESSION, 1);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_END);
    assert_non_null(strstr(r.why, "server opcode"));

    start(&s, &cf, &o); /* wrong session id */
    const uint8_t name[] = {0x07, 0x00, 0x01, 0x02, 0x0d, 0x00, 0x03, 'A', 'B', 0x00};
    cmsg(&m, CAPF_OP_AUTH_RESPONSE, SID + 1, name, sizeof(name));
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_END);
    const uint8_t end7[] = {0x55, 0x0f, 0x00, 0x00, 0x01, 0x23, 0x00, 0x04, 0x01, 0x00, 0x01, 0x07};
    assert_bytes(&o, end7, sizeof(end7)); /* END 07 carries the server's id */

    start(&s, &cf, &o); /* a device name over the limit (16 > 15) */
    auth_msg(&m, 2, "SEP74A02FC0A6751", NULL);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_END);
    assert_non_null(strstr(r.why, "device name"));

    /* after the lock: violations are recorded (FAIL), then END 07 */
    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL);
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_RSA2048, 0, 1);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    reason_msg(&m, CAPF_OP_STORE_CERTIFICATE_RESPONSE, 1); /* 0a before 09 */
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "Upgrade Failed"));
    assert_int_equal(capf_sess_closed(&s, true, out_reset(&o), &r), CAPF_STEP_END);
    assert_bytes(&o, end7, sizeof(end7));

    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL); /* N9: 04 with a REASON and no key */
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    reason_msg(&m, CAPF_OP_KEY_GENERATE_RESPONSE, 7);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "Key Generation Failed/Timeout"));
    assert_non_null(strstr(r.why, "reason 7"));

    start(&s, &cf, &o); /* framing errors end the session the same way */
    assert_int_equal(capf_sess_bad_input(&s, CAPF_E_MAGIC, out_reset(&o), &r), CAPF_STEP_END);
    assert_bytes(&o, end7, sizeof(end7));
    out_done(&o);
}

/* N10, signing refusal (N7), lost lock, Redis down at the record, store
 * failure: the certificate is only sent once recorded. */
static void test_install_failures(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;
    const uint8_t spki[] = {0x09, 0x00, 0x01, 0x30};
    const uint8_t der[] = {0x30, 0x00};
    CBS cert;
    CBS_init(&cert, der, sizeof(der));
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_RSA2048, 0, 1);
    for (int variant = 0; variant < 4; variant++) {
        memset(&r, 0, sizeof(r));
        to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL);
        assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
        cmsg(&m, CAPF_OP_KEY_GENERATE_RESPONSE, SID, spki, sizeof(spki));
        assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_SIGN);
        if (variant == 0) { /* the key is refused: nothing signed */
            assert_int_equal(capf_sess_signed(&s, CAPF_E_SPKI_RSA_SIZE, &r), CAPF_STEP_FAIL);
            assert_non_null(strstr(r.why, capf_err_str(CAPF_E_SPKI_RSA_SIZE)));
            continue;
        }
        assert_int_equal(capf_sess_signed(&s, CAPF_OK, &r), CAPF_STEP_RECORD);
        if (variant == 1) { /* another session took the device: END 07 at once, nothing sent */
            assert_int_equal(capf_sess_recorded(&s, false, true, cert, out_reset(&o), &r), CAPF_STEP_END);
            assert_int_equal(r.end_reason, 7);
            assert_false(s.locked);
            continue;
        }
        if (variant == 2) { /* Redis failed under the record: FAIL, then 07 */
            assert_int_equal(capf_sess_recorded(&s, false, false, cert, out_reset(&o), &r), CAPF_STEP_FAIL);
            assert_int_equal(capf_sess_closed(&s, false, out_reset(&o), &r), CAPF_STEP_END);
            assert_int_equal(r.end_reason, 7);
            continue;
        }
        assert_int_equal(capf_sess_recorded(&s, true, false, cert, out_reset(&o), &r), CAPF_STEP_WAIT);
        reason_msg(&m, CAPF_OP_STORE_CERTIFICATE_RESPONSE, 7); /* N10 */
        assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FINISH);
        assert_int_equal(r.finish, CAPF_FIN_INSTALL_FAILED);
        assert_int_equal(capf_sess_closed(&s, true, out_reset(&o), &r), CAPF_STEP_END);
        assert_int_equal(r.end_reason, 7);
    }
    /* An install-ok that cannot be recorded is not announced as a success. */
    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    cmsg(&m, CAPF_OP_KEY_GENERATE_RESPONSE, SID, spki, sizeof(spki));
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_SIGN);
    assert_int_equal(capf_sess_signed(&s, CAPF_OK, &r), CAPF_STEP_RECORD);
    assert_int_equal(capf_sess_recorded(&s, true, false, cert, out_reset(&o), &r), CAPF_STEP_WAIT);
    reason_msg(&m, CAPF_OP_STORE_CERTIFICATE_RESPONSE, 1);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FINISH);
    assert_int_equal(capf_sess_closed(&s, false, out_reset(&o), &r), CAPF_STEP_END);
    assert_int_equal(r.end_reason, 7);
    out_done(&o);
}

/* P10/P11: troubleshoot and delete (v3 only). */
static void test_delete_fetch(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;
    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", NULL);
    device(&d, RA_OP_DELETE, RA_AUTH_NULL, RA_KEY_RSA2048, 0, 1);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t del[] = {0x55, 0x0d, 0x00, 0x00, 0x01, 0x23, 0x00, 0x00};
    assert_bytes(&o, del, sizeof(del));
    reason_msg(&m, CAPF_OP_DELETE_CERTIFICATE_RESPONSE, 1);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FINISH);
    assert_int_equal(r.finish, CAPF_FIN_DELETE_OK);
    assert_int_equal(capf_sess_closed(&s, true, out_reset(&o), &r), CAPF_STEP_END);
    assert_int_equal(r.end_reason, 1);

    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", NULL);
    d.op = RA_OP_TROUBLESHOOT;
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t fetch_resp[] = {0x01, 0x00, 0x01, 0x01, 0x04, 0x00, 0x07, 0x01, 0x00, 0x04,
                                  0x00, 0x01, 0x30, 0x00};
    cmsg(&m, CAPF_OP_FETCH_CERTIFICATE_RESPONSE, SID, fetch_resp, sizeof(fetch_resp));
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FINISH);
    assert_int_equal(r.finish, CAPF_FIN_FETCH_OK);
    assert_int_equal(CBS_len(&r.cert), 2);

    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL); /* version 2 clients never get the empty-bodied requests */
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "Troubleshoot Failed"));
    out_done(&o);
}

/* §4.3.4: STATUS_REQUEST gets STATUS_RESPONSE 01 and the session stays in
 * its state (setting on); with the setting off it is out of order. */
static void test_status_request(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;
    to_begin(&s, &cf, &o, &r, &m, 3, "SEP74A02FC0A675", NULL);
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_RSA2048, 0, 1);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    cmsg(&m, CAPF_OP_STATUS_REQUEST, SID, NULL, 0);
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t status[] = {0x55, 0x13, 0x00, 0x00, 0x01, 0x23, 0x00, 0x04, 0x01, 0x00, 0x01, 0x01};
    assert_bytes(&o, status, sizeof(status));
    assert_int_equal(s.state, CAPF_S_AWAIT_KEYGEN);
    cf.status_reply = false;
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "STATUS_REQUEST"));
    out_done(&o);
}

/* R3, R6, R7, R8: timers and lost connections per state. */
static void test_timeouts(void **state) {
    (void)state;
    capf_sess_t s;
    capf_conf_t cf;
    out_t o = {.live = false};
    capf_result_t r = {0};
    cmsg_t m;
    ra_device_t d;
    start(&s, &cf, &o);
    assert_int_equal(capf_sess_timeout(&s, out_reset(&o), &r), CAPF_STEP_END); /* nothing recorded */
    start(&s, &cf, &o);
    assert_int_equal(capf_sess_eof(&s, &r), CAPF_STEP_END);

    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL);
    assert_int_equal(capf_sess_timeout(&s, out_reset(&o), &r), CAPF_STEP_WAIT); /* BEGIN reply pending */
    device(&d, RA_OP_INSTALL, RA_AUTH_NULL, RA_KEY_RSA2048, 0, 1);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    assert_int_equal(capf_sess_timeout(&s, out_reset(&o), &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "Key Generation Failed/Timeout"));

    to_begin(&s, &cf, &o, &r, &m, 2, "SEP74A02FC0A675", NULL);
    assert_int_equal(capf_sess_begun(&s, &cf, CAPF_BEGIN_OK, &d, out_reset(&o), &r), CAPF_STEP_WAIT);
    const uint8_t spki[] = {0x09, 0x00, 0x01, 0x30};
    cmsg(&m, CAPF_OP_KEY_GENERATE_RESPONSE, SID, spki, sizeof(spki));
    assert_int_equal(capf_sess_on_msg(&s, &cf, &m.msg, out_reset(&o), &r), CAPF_STEP_SIGN);
    const uint8_t der[] = {0x30, 0x00};
    CBS cert;
    CBS_init(&cert, der, sizeof(der));
    assert_int_equal(capf_sess_signed(&s, CAPF_OK, &r), CAPF_STEP_RECORD);
    assert_int_equal(capf_sess_recorded(&s, true, false, cert, out_reset(&o), &r), CAPF_STEP_WAIT);
    assert_int_equal(capf_sess_eof(&s, &r), CAPF_STEP_FAIL);
    assert_non_null(strstr(r.why, "Phone Communication Failure"));
    out_done(&o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_install_v2),        cmocka_unit_test(test_install_v3_ec),
        cmocka_unit_test(test_install_v3_rsa),    cmocka_unit_test(test_begin_refusals),
        cmocka_unit_test(test_policy_failures),   cmocka_unit_test(test_protocol_violations),
        cmocka_unit_test(test_install_failures),  cmocka_unit_test(test_delete_fetch),
        cmocka_unit_test(test_timeouts),          cmocka_unit_test(test_status_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
