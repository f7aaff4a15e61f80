/* capf_msg_test: unit tests for the CAPF codec. The hex examples of
 * capf-protocol.md §2.9 are parsed and, for server messages, rebuilt byte
 * for byte (both from the parsed message and from a hand-written
 * description); the malformed inputs of §6.3 that concern a parser (M1, M3
 * to M10, M12, M14, M16) and the rules of §2.10 are checked one by one.
 * Public keys for KEY_GENERATE_RESPONSE are generated at test time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/capf_msg.h"
#include "crypto/cx_testkit.h"

#define SID 0x00000123u

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* unhex decodes pairs of hex digits, skipping anything else (spaces, '|'). */
static size_t unhex(const char *s, uint8_t *out, size_t cap) {
    size_t n = 0;
    while (*s) {
        int hi = hexval(s[0]), lo = hi >= 0 ? hexval(s[1]) : -1;
        if (hi < 0 || lo < 0) {
            s++;
            continue;
        }
        assert_true(n < cap);
        out[n++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    return n;
}

/* msg_with writes header(op, SID, body_len) + body to out. */
static size_t msg_with(uint8_t *out, size_t cap, uint8_t op, const uint8_t *body, size_t body_len) {
    CBB cbb;
    size_t len;
    assert_true(CBB_init_fixed(&cbb, out, cap));
    assert_true(CBB_add_u8(&cbb, CAPF_MAGIC) && CBB_add_u8(&cbb, op) && CBB_add_u32(&cbb, SID) &&
                CBB_add_u16(&cbb, (uint16_t)body_len) && CBB_add_bytes(&cbb, body, body_len) &&
                CBB_finish(&cbb, NULL, &len));
    return len;
}

/* msg_hex: header(op) + the hex body. */
static size_t msg_hex(uint8_t *out, size_t cap, uint8_t op, const char *body_hex) {
    uint8_t body[1024];
    size_t n = unhex(body_hex, body, sizeof(body));
    return msg_with(out, cap, op, body, n);
}

static capf_err_t parse_hex_body(uint8_t op, const char *body_hex, capf_msg_t *m) {
    static uint8_t buf[2048];
    size_t n = msg_hex(buf, sizeof(buf), op, body_hex);
    return capf_msg_parse(m, buf, n);
}

/* out_from_msg fills a build description from a parsed server message. */
static void out_from_msg(const capf_msg_t *m, capf_msg_out_t *o) {
    uint8_t b;
    memset(o, 0, sizeof(*o));
    o->op = m->op;
    o->session_id = m->session_id;
    o->present = m->present;
    if (capf_msg_u8(m, CAPF_TAG_REASON, &b) == CAPF_OK) o->reason = b;
    if (capf_msg_u8(m, CAPF_TAG_VERSION, &b) == CAPF_OK) o->version = b;
    if (capf_msg_u8(m, CAPF_TAG_AUTH_TYPE, &b) == CAPF_OK) o->auth_type = b;
    if (capf_msg_u8(m, CAPF_TAG_KEY_TYPE, &b) == CAPF_OK) o->key_type = b;
    if (capf_msg_u8(m, CAPF_TAG_CURVE, &b) == CAPF_OK) o->curve = b;
    if (capf_msg_u8(m, CAPF_TAG_CERTIFICATE_TYPE, &b) == CAPF_OK) o->cert_type = b;
    (void)capf_msg_u16(m, CAPF_TAG_KEY_SIZE, &o->key_size);
    capf_cert_type_t inner;
    if (capf_msg_cert(m, &inner, &o->cert_der) == CAPF_OK) assert_int_equal(inner, o->cert_type);
}

/* build_eq builds `o` and compares with `want`. */
static void build_eq(const capf_msg_out_t *o, const uint8_t *want, size_t want_len) {
    static uint8_t buf[CAPF_SERVER_MSG_MAX];
    CBB cbb;
    size_t len;
    assert_true(CBB_init_fixed(&cbb, buf, sizeof(buf)));
    assert_int_equal(capf_msg_build(&cbb, o), CAPF_OK);
    assert_true(CBB_finish(&cbb, NULL, &len));
    assert_int_equal(len, want_len);
    assert_memory_equal(buf, want, len);
}

/* The server messages of §2.9, rebuilt from the parse. */
static const char *const doc_server[] = {
    "55 01 00 00 01 23 00 04 | 07 00 01 03",
    "55 01 00 00 01 23 00 08 | 07 00 01 03 | 08 00 01 00",
    "55 03 00 00 01 23 00 05 | 0a 00 02 08 00",
    "55 03 00 00 01 23 00 09 | 0a 00 02 08 00 | 11 00 01 00",
    "55 03 00 00 01 23 00 08 | 11 00 01 01 | 12 00 01 01",
    "55 0f 00 00 01 23 00 04 | 01 00 01 01",
    "55 0f 00 00 01 23 00 04 | 01 00 01 07",
    "55 0f 00 00 01 23 00 04 | 01 00 01 09",
    "55 0b 00 00 01 23 00 00",
    "55 0d 00 00 01 23 00 00",
};

static void test_doc_server_roundtrip(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(doc_server) / sizeof(doc_server[0]); i++) {
        uint8_t buf[64];
        size_t n = unhex(doc_server[i], buf, sizeof(buf)), need;
        capf_msg_t m;
        capf_msg_out_t o;
        assert_int_equal(capf_msg_need(buf, n, &need), CAPF_OK);
        assert_int_equal(need, n);
        assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
        assert_int_equal(m.session_id, SID);
        assert_int_equal(CBS_len(&m.body), n - CAPF_HEADER_LEN);
        assert_int_equal(capf_op_dir(m.op), CAPF_DIR_TO_CLIENT);
        assert_int_equal(m.num_unknown, 0);
        out_from_msg(&m, &o);
        build_eq(&o, buf, n);
    }
}

/* Same bytes from descriptions written by hand (the builder alone). */
static void test_doc_server_build(void **state) {
    (void)state;
    const capf_msg_out_t outs[] = {
        {.op = CAPF_OP_AUTH_REQUEST, .session_id = SID, .present = CAPF_BIT(CAPF_TAG_VERSION),
         .version = 3},
        {.op = CAPF_OP_AUTH_REQUEST, .session_id = SID,
         .present = CAPF_BIT(CAPF_TAG_VERSION) | CAPF_BIT(CAPF_TAG_AUTH_TYPE), .version = 3,
         .auth_type = CAPF_AUTH_NONE},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .session_id = SID,
         .present = CAPF_BIT(CAPF_TAG_KEY_SIZE), .key_size = 2048},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .session_id = SID,
         .present = CAPF_BIT(CAPF_TAG_KEY_SIZE) | CAPF_BIT(CAPF_TAG_KEY_TYPE), .key_size = 2048,
         .key_type = CAPF_KEY_RSA},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .session_id = SID,
         .present = CAPF_BIT(CAPF_TAG_KEY_TYPE) | CAPF_BIT(CAPF_TAG_CURVE), .key_type = CAPF_KEY_EC,
         .curve = CAPF_CURVE_P384},
        {.op = CAPF_OP_END_SESSION, .session_id = SID, .present = CAPF_BIT(CAPF_TAG_REASON),
         .reason = CAPF_REASON_UPDATE_CERTIFICATE},
        {.op = CAPF_OP_END_SESSION, .session_id = SID, .present = CAPF_BIT(CAPF_TAG_REASON),
         .reason = CAPF_REASON_INVALID_ELEMENT},
        {.op = CAPF_OP_END_SESSION, .session_id = SID, .present = CAPF_BIT(CAPF_TAG_REASON),
         .reason = CAPF_REASON_UNKNOWN_DEVICE},
        {.op = CAPF_OP_FETCH_CERTIFICATE_REQUEST, .session_id = SID},
        {.op = CAPF_OP_DELETE_CERTIFICATE_REQUEST, .session_id = SID},
    };
    for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
        uint8_t want[64];
        size_t n = unhex(doc_server[i], want, sizeof(want));
        build_eq(&outs[i], want, n);
    }
}

/* fake_der writes a DER SEQUENCE of `len` bytes in all (len >= 260) with
 * filler contents: the codec only checks the DER envelope. */
static void fake_der(uint8_t *out, size_t len) {
    size_t content = len - 4;
    out[0] = 0x30;
    out[1] = 0x82;
    out[2] = (uint8_t)(content >> 8);
    out[3] = (uint8_t)content;
    for (size_t i = 0; i < content; i++)
        out[4 + i] = (uint8_t)(i * 7 + 1);
}

/* STORE_CERTIFICATE_REQUEST and FETCH_CERTIFICATE_RESPONSE with the 979-byte
 * certificate of §2.9 (999 bytes in all). */
static void test_doc_cert_messages(void **state) {
    (void)state;
    static uint8_t buf[1200];
    uint8_t der[979];
    size_t n;
    capf_msg_t m;
    capf_msg_out_t o;
    capf_cert_type_t type;
    CBS got;
    uint8_t reason;

    fake_der(der, sizeof(der));
    assert_int_equal(der[2], 0x03);
    assert_int_equal(der[3], 0xcf);
    n = unhex("55 09 00 00 01 23 03 df | 03 00 01 01 | 04 03 d8 01 03 d5 00 01", buf, sizeof(buf));
    memcpy(buf + n, der, sizeof(der));
    n += sizeof(der);
    assert_int_equal(n, 999);
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
    assert_int_equal(m.op, CAPF_OP_STORE_CERTIFICATE_REQUEST);
    assert_int_equal(capf_msg_cert(&m, &type, &got), CAPF_OK);
    assert_int_equal(type, CAPF_CERT_LSC);
    assert_true(CBS_mem_equal(&got, der, sizeof(der)));
    out_from_msg(&m, &o);
    build_eq(&o, buf, n);
    o = (capf_msg_out_t){.op = CAPF_OP_STORE_CERTIFICATE_REQUEST, .session_id = SID,
                         .present = CAPF_BIT(CAPF_TAG_CERTIFICATE_TYPE) | CAPF_BIT(CAPF_TAG_CERTIFICATE),
                         .cert_type = CAPF_CERT_LSC};
    CBS_init(&o.cert_der, der, sizeof(der));
    build_eq(&o, buf, n);

    n = unhex("55 0c 00 00 01 23 03 df | 01 00 01 01 | 04 03 d8 01 03 d5 00 01", buf, sizeof(buf));
    memcpy(buf + n, der, sizeof(der));
    n += sizeof(der);
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
    assert_int_equal(capf_op_dir(m.op), CAPF_DIR_TO_SERVER);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_REASON, &reason), CAPF_OK);
    assert_int_equal(reason, CAPF_REASON_UPDATE_CERTIFICATE);
    assert_int_equal(capf_msg_cert(&m, &type, &got), CAPF_OK);
    assert_int_equal(CBS_len(&got), 979);
}

static void test_doc_client_examples(void **state) {
    (void)state;
    uint8_t buf[128];
    size_t n;
    capf_msg_t m;
    uint8_t b;
    CBS s;

    /* Jabber: version 2, "CSF123", reason 1; 18-byte body. */
    n = unhex("55 02 00 00 01 23 00 12 | 07 00 01 02 | 0d 00 07 43 53 46 31 32 33 00 | 01 00 01 01",
              buf, sizeof(buf));
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
    assert_int_equal(m.op, CAPF_OP_AUTH_RESPONSE);
    assert_int_equal(CBS_len(&m.body), 18);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_VERSION, &b), CAPF_OK);
    assert_int_equal(b, 2);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_REASON, &b), CAPF_OK);
    assert_int_equal(b, 1);
    assert_int_equal(capf_msg_device_name(&m, 0, &s), CAPF_OK);
    assert_true(CBS_mem_equal(&s, (const uint8_t *)"CSF123", 6));
    assert_false(capf_msg_has(&m, CAPF_TAG_PASSWORD));
    assert_int_equal(capf_msg_string(&m, CAPF_TAG_PASSWORD, &s), CAPF_E_ABSENT);

    /* Phone with authentication string "123456", version 3. */
    n = unhex("55 02 00 00 01 23 00 25 | 01 00 01 01 | 07 00 01 03"
              "| 0b 00 07 31 32 33 34 35 36 00"
              "| 0d 00 10 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 00", buf, sizeof(buf));
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_VERSION, &b), CAPF_OK);
    assert_int_equal(b, 3);
    assert_int_equal(capf_msg_string(&m, CAPF_TAG_PASSWORD, &s), CAPF_OK);
    assert_true(CBS_mem_equal(&s, (const uint8_t *)"123456", 6));
    assert_int_equal(capf_msg_device_name(&m, 0, &s), CAPF_OK);
    assert_true(CBS_mem_equal(&s, (const uint8_t *)"SEP74A02FC0A675", 15));

    /* REQUEST_IN_PROGRESS: empty body. */
    n = unhex("55 11 00 00 01 23 00 00", buf, sizeof(buf));
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
    assert_int_equal(m.op, CAPF_OP_REQUEST_IN_PROGRESS);
    assert_int_equal(m.present, 0);
    assert_int_equal(CBS_len(&m.body), 0);

    /* Responses carrying only a REASON. */
    static const struct { const char *hex; uint8_t op, reason; } reasons[] = {
        {"55 0a 00 00 01 23 00 04 | 01 00 01 01", 0x0a, 1},
        {"55 0e 00 00 01 23 00 04 | 01 00 01 01", 0x0e, 1},
        {"55 0e 00 00 01 23 00 04 | 01 00 01 07", 0x0e, 7},
        {"55 0c 00 00 01 23 00 04 | 01 00 01 07", 0x0c, 7},
        {"55 04 00 00 01 23 00 04 | 01 00 01 07", 0x04, 7},  /* keygen failure */
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        n = unhex(reasons[i].hex, buf, sizeof(buf));
        assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
        assert_int_equal(m.op, reasons[i].op);
        assert_int_equal(capf_op_dir(m.op), CAPF_DIR_TO_SERVER);
        assert_int_equal(capf_msg_u8(&m, CAPF_TAG_REASON, &b), CAPF_OK);
        assert_int_equal(b, reasons[i].reason);
        assert_int_equal(m.present, CAPF_BIT(CAPF_TAG_REASON));
    }
}

/* KEY_GENERATE_RESPONSE with keys made now: header and element prefix as in
 * §2.9 for every size listed there. */
static void test_doc_keygen_response(void **state) {
    (void)state;
    static const struct { int rsa_bits, nid; const char *prefix; size_t spki_len; } cases[] = {
        {2048, 0, "55 04 00 00 01 23 01 29 | 09 01 26 30 82 01 22 30 0d 06 09 2a 86 48 86 f7 0d 01"
                  " 01 01 05 00 03 82 01 0f 00 30 82 01 0a 02 82 01 01 00", 294},
        {1024, 0, "55 04 00 00 01 23 00 a5 | 09 00 a2 30 81 9f", 162},
        {4096, 0, "55 04 00 00 01 23 02 29 | 09 02 26 30 82 02 22", 550},
        {0, NID_X9_62_prime256v1, "55 04 00 00 01 23 00 5e | 09 00 5b 30 59", 91},
        {0, NID_secp384r1, "55 04 00 00 01 23 00 7b | 09 00 78 30 76", 120},
        {0, NID_secp521r1, "55 04 00 00 01 23 00 a1 | 09 00 9e 30 81 9b", 158},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        EVP_PKEY *key = cases[i].rsa_bits ? tk_rsa_key(cases[i].rsa_bits) : tk_ec_key(cases[i].nid);
        uint8_t spki[600], body[620], buf[640], prefix[64];
        size_t spki_len, body_len, n, plen;
        CBB cbb, v;
        capf_msg_t m;
        CBS got;

        assert_true(CBB_init_fixed(&cbb, spki, sizeof(spki)));
        assert_true(EVP_marshal_public_key(&cbb, key) && CBB_finish(&cbb, NULL, &spki_len));
        assert_int_equal(spki_len, cases[i].spki_len);
        assert_true(CBB_init_fixed(&cbb, body, sizeof(body)));
        assert_true(CBB_add_u8(&cbb, CAPF_TAG_PUBLIC_KEY) && CBB_add_u16_length_prefixed(&cbb, &v) &&
                    CBB_add_bytes(&v, spki, spki_len) && CBB_finish(&cbb, NULL, &body_len));
        n = msg_with(buf, sizeof(buf), CAPF_OP_KEY_GENERATE_RESPONSE, body, body_len);
        if (cases[i].rsa_bits == 2048) {
            assert_int_equal(n, 305);
            assert_memory_equal(buf + n - 5, "\x02\x03\x01\x00\x01", 5);
        }
        plen = unhex(cases[i].prefix, prefix, sizeof(prefix));
        assert_memory_equal(buf, prefix, plen);
        assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
        assert_int_equal(capf_msg_get(&m, CAPF_TAG_PUBLIC_KEY, &got), CAPF_OK);
        assert_true(CBS_mem_equal(&got, spki, spki_len));
        EVP_PKEY_free(key);
    }
}

/* AUTH_RESPONSE with certificate authentication (shape of §2.9). */
static void test_cert_auth_shape(void **state) {
    (void)state;
    static uint8_t body[4096], buf[4200];
    uint8_t der[600], sig[256];
    CBB cbb, v, inner;
    size_t body_len, n;
    capf_msg_t m;
    capf_cert_type_t type;
    capf_hash_t hash;
    CBS got;

    fake_der(der, sizeof(der));
    memset(sig, 0xa5, sizeof(sig));
    assert_true(CBB_init_fixed(&cbb, body, sizeof(body)));
    assert_true(CBB_add_u8(&cbb, 0x01) && CBB_add_u16(&cbb, 1) && CBB_add_u8(&cbb, 1));
    assert_true(CBB_add_u8(&cbb, 0x07) && CBB_add_u16(&cbb, 1) && CBB_add_u8(&cbb, 3));
    assert_true(CBB_add_u8(&cbb, 0x0d) && CBB_add_u16_length_prefixed(&cbb, &v) &&
                CBB_add_bytes(&v, (const uint8_t *)"SEP74A02FC0A675", 16));
    assert_true(CBB_add_u8(&cbb, 0x04) && CBB_add_u16_length_prefixed(&cbb, &v) &&
                CBB_add_u8(&v, 0x01) && CBB_add_u16_length_prefixed(&v, &inner) &&
                CBB_add_u16(&inner, CAPF_CERT_MIC) && CBB_add_bytes(&inner, der, sizeof(der)));
    assert_true(CBB_add_u8(&cbb, 0x06) && CBB_add_u16_length_prefixed(&cbb, &v) &&
                CBB_add_bytes(&v, sig, sizeof(sig)));
    assert_true(CBB_add_u8(&cbb, 0x14) && CBB_add_u16_length_prefixed(&cbb, &v) &&
                CBB_add_u8(&v, CAPF_HASH_SHA512) && CBB_add_u16_length_prefixed(&v, &inner) &&
                CBB_add_bytes(&inner, sig, sizeof(sig)));
    assert_true(CBB_add_u8(&cbb, 0x10) && CBB_add_u16_length_prefixed(&cbb, &v) &&
                CBB_add_u8(&v, 0x00) && CBB_add_u16_length_prefixed(&v, &inner) &&
                CBB_add_bytes(&inner, der, sizeof(der)) &&
                CBB_add_u8(&v, 0x01) && CBB_add_u16_length_prefixed(&v, &inner) &&
                CBB_add_bytes(&inner, sig, 128) &&
                CBB_add_u8(&v, 0x03) && CBB_add_u16_length_prefixed(&v, &inner) &&
                CBB_add_bytes(&inner, sig, 128));
    assert_true(CBB_finish(&cbb, NULL, &body_len));
    n = msg_with(buf, sizeof(buf), CAPF_OP_AUTH_RESPONSE, body, body_len);
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
    assert_int_equal(capf_msg_cert(&m, &type, &got), CAPF_OK);
    assert_int_equal(type, CAPF_CERT_MIC);
    assert_true(CBS_mem_equal(&got, der, sizeof(der)));
    assert_int_equal(capf_msg_get(&m, CAPF_TAG_SIGNED_DATA, &got), CAPF_OK);
    assert_int_equal(CBS_len(&got), 256);
    assert_int_equal(capf_msg_sha2_signed(&m, &hash, &got), CAPF_OK);
    assert_int_equal(hash, CAPF_HASH_SHA512);
    assert_int_equal(CBS_len(&got), 256);
    assert_true(capf_msg_has(&m, CAPF_TAG_SUDI_DATA));
    /* Hash id bytes 14 01 03 03 01 00 as in §2.9. */
    assert_true(CBS_len(&m.elem[CAPF_TAG_SHA2_SIGNED_DATA]) == 259);
}

/* capf_msg_need on every prefix, and with pipelined bytes after (M14). */
static void test_need(void **state) {
    (void)state;
    uint8_t buf[64];
    size_t n = unhex("55 02 00 00 01 23 00 12 | 07 00 01 02 | 0d 00 07 43 53 46 31 32 33 00"
                     "| 01 00 01 01 | 55 11 00 00 01 23 00 00", buf, sizeof(buf)), need;
    assert_int_equal(n, 26 + 8);
    assert_int_equal(capf_msg_need(NULL, 0, &need), CAPF_PARTIAL);
    assert_int_equal(need, 8);
    for (size_t len = 0; len < 8; len++) {
        assert_int_equal(capf_msg_need(buf, len, &need), CAPF_PARTIAL);
        assert_int_equal(need, 8);
    }
    for (size_t len = 8; len < 26; len++) {
        assert_int_equal(capf_msg_need(buf, len, &need), CAPF_PARTIAL);
        assert_int_equal(need, 26);
    }
    for (size_t len = 26; len <= n; len++) {
        assert_int_equal(capf_msg_need(buf, len, &need), CAPF_OK);
        assert_int_equal(need, 26);
    }
    /* The next message starts where the first ends. */
    assert_int_equal(capf_msg_need(buf + 26, n - 26, &need), CAPF_OK);
    assert_int_equal(need, 8);
    capf_msg_t m;
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_E_TRAILING);
    assert_int_equal(capf_msg_parse(&m, buf, 26), CAPF_OK);
    assert_int_equal(capf_msg_parse(&m, buf + 26, 8), CAPF_OK);
    assert_int_equal(m.op, CAPF_OP_REQUEST_IN_PROGRESS);

    /* M1: the first byte decides; M12: the second. */
    buf[0] = 0x16;                             /* a TLS record, say */
    assert_int_equal(capf_msg_need(buf, 1, &need), CAPF_E_MAGIC);
    assert_int_equal(need, 0);
    static const uint8_t bad_ops[] = {0x00, 0x18, 0x80, 0xf0, 0xff};
    for (size_t i = 0; i < sizeof(bad_ops); i++) {
        uint8_t h[2] = {0x55, bad_ops[i]};
        assert_int_equal(capf_msg_need(h, 2, &need), CAPF_E_OPCODE);
    }
}

/* M3: lengths over the per-opcode limit are refused from the header alone. */
static void test_need_limits(void **state) {
    (void)state;
    static const struct { uint8_t op; size_t max; } limits[] = {
        {CAPF_OP_AUTH_RESPONSE, 16384},
        {CAPF_OP_KEY_GENERATE_RESPONSE, 2048},
        {CAPF_OP_FETCH_CERTIFICATE_RESPONSE, 8192},
        {CAPF_OP_STORE_CERTIFICATE_RESPONSE, 64},
        {CAPF_OP_DELETE_CERTIFICATE_RESPONSE, 64},
        {CAPF_OP_REQUEST_IN_PROGRESS, 64},
        {CAPF_OP_ABORT_REQUEST, 64},
        {CAPF_OP_END_SESSION, 64},
        {CAPF_OP_STORE_CERTIFICATE_REQUEST, 4088},
    };
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        size_t max = limits[i].max, need;
        uint8_t h[8] = {0x55, limits[i].op, 0, 0, 1, 0x23, (uint8_t)(max >> 8), (uint8_t)max};
        capf_msg_t m;
        assert_int_equal(capf_op_max_body(limits[i].op), max);
        assert_int_equal(capf_msg_need(h, 8, &need), CAPF_PARTIAL);
        assert_int_equal(need, 8 + max);
        h[6] = (uint8_t)((max + 1) >> 8);
        h[7] = (uint8_t)(max + 1);
        assert_int_equal(capf_msg_need(h, 8, &need), CAPF_E_OVERSIZE);
        assert_int_equal(need, 0);
        assert_int_equal(capf_msg_parse(&m, h, 8), CAPF_E_OVERSIZE);
        h[6] = h[7] = 0xff;
        assert_int_equal(capf_msg_need(h, 8, &need), CAPF_E_OVERSIZE);
    }
    assert_int_equal(capf_op_max_body(0x00), 0);
    assert_int_equal(capf_op_max_body(0x18), 0);
}

static void test_header_errors(void **state) {
    (void)state;
    uint8_t buf[64];
    capf_msg_t m;
    size_t n = unhex("55 0a 00 00 01 23 00 04 | 01 00 01 01", buf, sizeof(buf));
    for (size_t len = 0; len < 8; len++)
        assert_int_equal(capf_msg_parse(&m, len ? buf : NULL, len), CAPF_E_SHORT_HEADER);
    /* M4: fewer body bytes than announced. */
    for (size_t len = 8; len < n; len++)
        assert_int_equal(capf_msg_parse(&m, buf, len), CAPF_E_TRUNCATED);
    buf[n] = 0x00;
    assert_int_equal(capf_msg_parse(&m, buf, n + 1), CAPF_E_TRAILING);
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_OK);
    buf[0] = 0x56;
    assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_E_MAGIC);
    assert_int_equal(m.present, 0);          /* zeroed on failure */
    buf[0] = 0x55;
    static const uint8_t bad_ops[] = {0x00, 0x18, 0x80, 0xff};
    for (size_t i = 0; i < sizeof(bad_ops); i++) {
        buf[1] = bad_ops[i];
        assert_int_equal(capf_msg_parse(&m, buf, n), CAPF_E_OPCODE);
    }
}

/* M5, M6, M7: element framing. */
static void test_element_framing(void **state) {
    (void)state;
    capf_msg_t m;
    /* M5: the body length cuts an element (REASON value outside the body). */
    assert_int_equal(parse_hex_body(0x0a, "01 00 01", &m), CAPF_E_ELEMENT_TRUNCATED);
    /* M6: 1 and 2 bytes of an element header left. */
    assert_int_equal(parse_hex_body(0x0a, "01 00 01 01 | 07", &m), CAPF_E_ELEMENT_TRUNCATED);
    assert_int_equal(parse_hex_body(0x0a, "01 00 01 01 | 07 00", &m), CAPF_E_ELEMENT_TRUNCATED);
    /* M7: element length past the end. */
    assert_int_equal(parse_hex_body(0x0a, "01 00 05 01", &m), CAPF_E_ELEMENT_TRUNCATED);
    assert_int_equal(parse_hex_body(0x02, "0d ff ff 41 00", &m), CAPF_E_ELEMENT_TRUNCATED);
    /* Tag 00 is invalid (§4.3). */
    assert_int_equal(parse_hex_body(0x0a, "01 00 01 01 | 00 00 00", &m), CAPF_E_TAG);
}

/* M8 and rule 5: exact lengths of fixed-size elements; string bounds. */
static void test_element_lengths(void **state) {
    (void)state;
    capf_msg_t m;
    const char *name = "0d 00 04 41 42 43 00";
    char body[256];
    static const char *const bad[] = {
        "07 00 00", "07 00 02 03 03", "01 00 00", "01 00 02 01 01", "08 00 00", "11 00 02 00 00",
        "12 00 00", "03 00 02 00 01", "0a 00 01 08", "0a 00 03 00 08 00", "09 00 00", "06 00 00",
        "0d 00 01 00", "10 00 03 00 00 00", "14 00 03 03 00 00",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "%s | %s", name, bad[i]);
        if (strncmp(bad[i], "0d", 2) == 0)
            snprintf(body, sizeof(body), "%s", bad[i]);
        assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_E_ELEMENT_LENGTH);
    }
    /* 65 bytes (64 characters + 00) is the longest string; 66 is refused. */
    char hex[512];
    size_t off = (size_t)snprintf(hex, sizeof(hex), "0d 00 41");
    for (int i = 0; i < 64; i++)
        off += (size_t)snprintf(hex + off, sizeof(hex) - off, " 41");
    snprintf(hex + off, sizeof(hex) - off, " 00");
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, hex, &m), CAPF_OK);
    off = (size_t)snprintf(hex, sizeof(hex), "0d 00 42");
    for (int i = 0; i < 65; i++)
        off += (size_t)snprintf(hex + off, sizeof(hex) - off, " 41");
    snprintf(hex + off, sizeof(hex) - off, " 00");
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, hex, &m), CAPF_E_ELEMENT_LENGTH);
    /* Opaque tags of unknown format accept any length, even 0. */
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, "0d 00 02 41 00 | 02 00 00 | 13 00 00",
                                    &m), CAPF_OK);
    assert_true(capf_msg_has(&m, CAPF_TAG_REASON_INFO));
}

/* M9: device name and string rules. */
static void test_strings(void **state) {
    (void)state;
    capf_msg_t m;
    CBS s;
    /* No 00, embedded 00, 00 not last. */
    assert_int_equal(parse_hex_body(0x02, "0d 00 03 41 42 43", &m), CAPF_E_STRING);
    assert_int_equal(parse_hex_body(0x02, "0d 00 04 41 00 43 00", &m), CAPF_E_STRING);
    assert_int_equal(parse_hex_body(0x02, "0d 00 02 00 00", &m), CAPF_E_STRING);
    assert_int_equal(parse_hex_body(0x02, "0d 00 02 41 00 | 0b 00 02 31 32", &m), CAPF_E_STRING);
    /* Empty password "0b 00 01 00" (§2.8 null string) is fine. */
    assert_int_equal(parse_hex_body(0x02, "0d 00 02 41 00 | 0b 00 01 00", &m), CAPF_OK);
    assert_int_equal(capf_msg_string(&m, CAPF_TAG_PASSWORD, &s), CAPF_OK);
    assert_int_equal(CBS_len(&s), 0);

    static const struct { const char *hex; size_t max; capf_err_t want; } names[] = {
        {"0d 00 10 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 00", 0, CAPF_OK},
        {"0d 00 0d 43 53 46 2e 75 73 65 72 5f 31 2d 78 00", 0, CAPF_OK},      /* CSF.user_1-x */
        {"0d 00 04 61 2e 62 00", 0, CAPF_OK},                                 /* a.b */
        {"0d 00 11 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 41 00", 0, CAPF_E_NAME}, /* 16 */
        {"0d 00 11 53 45 50 37 34 41 30 32 46 43 30 41 36 37 35 41 00", 20, CAPF_OK},
        {"0d 00 04 41 42 43 00", 2, CAPF_E_NAME},
        {"0d 00 05 2e 2e 2f 41 00", 0, CAPF_E_NAME},                          /* ../A */
        {"0d 00 05 41 2f 42 43 00", 0, CAPF_E_NAME},                          /* A/BC */
        {"0d 00 05 41 2e 2e 42 00", 0, CAPF_E_NAME},                          /* A..B */
        {"0d 00 03 2e 41 00", 0, CAPF_E_NAME},                                /* .A */
        {"0d 00 04 43 c3 a9 00", 0, CAPF_E_NAME},                             /* non-ASCII */
        {"0d 00 04 41 0a 42 00", 0, CAPF_E_NAME},                             /* newline */
        {"0d 00 04 41 20 42 00", 0, CAPF_E_NAME},                             /* space */
        {"0d 00 04 41 25 6e 00", 0, CAPF_E_NAME},                             /* %n */
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        assert_int_equal(parse_hex_body(0x02, names[i].hex, &m), CAPF_OK);
        assert_int_equal(capf_msg_device_name(&m, names[i].max, &s), names[i].want);
        if (names[i].want != CAPF_OK)
            assert_int_equal(CBS_len(&s), 0);
    }
}

/* M10 and rule 6: duplicates of known tags; unknown tags skipped (P16). */
static void test_duplicates_and_unknown(void **state) {
    (void)state;
    capf_msg_t m;
    assert_int_equal(parse_hex_body(0x02, "0d 00 02 41 00 | 0d 00 02 42 00", &m), CAPF_E_DUPLICATE);
    assert_int_equal(parse_hex_body(0x04, "09 00 01 30 | 09 00 01 30", &m), CAPF_E_DUPLICATE);
    assert_int_equal(parse_hex_body(0x02, "07 00 01 03 | 0d 00 02 41 00 | 07 00 01 03", &m),
                     CAPF_E_DUPLICATE);
    assert_int_equal(parse_hex_body(0x0a, "01 00 01 01 | 01 00 01 07", &m), CAPF_E_DUPLICATE);
    /* Unknown: gaps 0e/0f, 15..7f, extension f0, reserved ff; repeated too. */
    assert_int_equal(parse_hex_body(0x02, "15 00 02 aa bb | 07 00 01 02 | f0 00 06 00 01 00 00 00 01"
                                          "| 0d 00 02 41 00 | 0e 00 00 | 0f 00 01 00 | ff 00 00"
                                          "| 15 00 00 | 7f 00 03 00 00 00", &m), CAPF_OK);
    assert_int_equal(m.num_unknown, 7);
    assert_int_equal(m.first_unknown, 0x15);
    assert_int_equal(m.present, CAPF_BIT(CAPF_TAG_VERSION) | CAPF_BIT(CAPF_TAG_DEVICE_NAME));
    /* Order is free (§2.2): usecallmanagernz's order parses the same. */
    assert_int_equal(parse_hex_body(0x02, "01 00 01 01 | 07 00 01 03 | 0b 00 01 00 | 0d 00 02 41 00",
                                    &m), CAPF_OK);
}

static void test_missing(void **state) {
    (void)state;
    capf_msg_t m;
    static const struct { uint8_t op; const char *hex; } missing[] = {
        {CAPF_OP_AUTH_RESPONSE, "07 00 01 02 | 01 00 01 01"},
        {CAPF_OP_AUTH_RESPONSE, ""},
        {CAPF_OP_STORE_CERTIFICATE_RESPONSE, ""},
        {CAPF_OP_STORE_CERTIFICATE_RESPONSE, "15 00 01 01"},
        {CAPF_OP_KEY_GENERATE_RESPONSE, ""},
        {CAPF_OP_FETCH_CERTIFICATE_RESPONSE, ""},
        {CAPF_OP_DELETE_CERTIFICATE_RESPONSE, ""},
        {CAPF_OP_END_SESSION, ""},
        {CAPF_OP_AUTH_REQUEST, "08 00 01 00"},
        {CAPF_OP_KEY_GENERATE_REQUEST, "12 00 01 00"},
        {CAPF_OP_STORE_CERTIFICATE_REQUEST, "03 00 01 01"},
    };
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++)
        assert_int_equal(parse_hex_body(missing[i].op, missing[i].hex, &m), CAPF_E_MISSING);
    /* A failed key generation may carry REASON only; REQUEST_IN_PROGRESS nothing. */
    assert_int_equal(parse_hex_body(CAPF_OP_KEY_GENERATE_RESPONSE, "01 00 01 07", &m), CAPF_OK);
    assert_int_equal(parse_hex_body(CAPF_OP_REQUEST_IN_PROGRESS, "", &m), CAPF_OK);
    assert_int_equal(parse_hex_body(CAPF_OP_STATUS_REQUEST, "", &m), CAPF_OK);
}

/* M16 and §2.6: the CERTIFICATE wrapper. */
static void test_cert_element(void **state) {
    (void)state;
    capf_msg_t m;
    capf_cert_type_t type;
    CBS der;
    const char *name = "0d 00 02 41 00 | ";
    char body[256];
    static const char *const bad[] = {
        "04 00 09 02 00 06 00 01 30 02 05 00",       /* inner tag 02 */
        "04 00 09 01 00 07 00 01 30 02 05 00",       /* len(B) != len(A) - 3 */
        "04 00 09 01 00 05 00 01 30 02 05 00",       /* len(B) short */
        "04 00 0a 01 00 07 00 01 30 02 05 00 00",    /* DER with trailing bytes */
        "04 00 09 01 00 06 00 01 04 02 05 00",       /* not a SEQUENCE */
        "04 00 0a 01 00 07 00 01 30 81 02 05 00",    /* non-minimal DER length */
        "04 00 09 01 00 06 00 01 30 05 05 00",       /* DER length past the end */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "%s%s", name, bad[i]);
        capf_err_t err = parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m);
        assert_true(err == CAPF_E_CERT_ELEMENT || err == CAPF_E_ELEMENT_LENGTH);
    }
    /* Inner tag length 0 (len(B) < 2) and a zero-length element. */
    snprintf(body, sizeof(body), "%s04 00 03 01 00 00", name);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_E_ELEMENT_LENGTH);
    snprintf(body, sizeof(body), "%s04 00 00", name);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_E_ELEMENT_LENGTH);
    snprintf(body, sizeof(body), "%s04 00 09 02 00 06 00 01 30 02 05 00", name);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_E_CERT_ELEMENT);
    /* Types 0001 and 0002 are accepted; 0000 and 0003 parse but the
     * accessor refuses them. */
    snprintf(body, sizeof(body), "%s04 00 09 01 00 06 00 02 30 02 05 00", name);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_OK);
    assert_int_equal(capf_msg_cert(&m, &type, &der), CAPF_OK);
    assert_int_equal(type, CAPF_CERT_MIC);
    assert_int_equal(CBS_len(&der), 4);
    snprintf(body, sizeof(body), "%s04 00 09 01 00 06 00 03 30 02 05 00", name);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_OK);
    assert_int_equal(capf_msg_cert(&m, &type, &der), CAPF_E_ENUM);
    assert_int_equal(CBS_len(&der), 0);
    snprintf(body, sizeof(body), "%s04 00 09 01 00 06 00 00 30 02 05 00", name);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_OK);
    assert_int_equal(capf_msg_cert(&m, &type, &der), CAPF_E_ENUM);
}

/* SHA2_SIGNED_DATA and SUDI_DATA block layouts. */
static void test_nested(void **state) {
    (void)state;
    capf_msg_t m;
    capf_hash_t hash;
    CBS sig;
    static const char *const bad[] = {
        "14 00 08 03 00 01 aa 03 00 01 aa",          /* two blocks */
        "14 00 05 03 00 03 aa aa",                   /* signature length past end */
        "14 00 05 03 00 01 aa aa",                   /* trailing byte */
        "14 00 04 03 00 00 aa",                      /* empty signature, junk */
        "10 00 07 00 00 01 aa 01 00 00",             /* empty second block */
        "10 00 06 00 00 01 aa 01 00",                /* truncated block header */
        "10 00 04 00 00 02 aa",                      /* block past end */
    };
    char body[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(body, sizeof(body), "0d 00 02 41 00 | %s", bad[i]);
        assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, body, &m), CAPF_E_NESTED);
    }
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE,
                                    "0d 00 02 41 00 | 14 00 05 01 00 02 aa bb", &m), CAPF_OK);
    assert_int_equal(capf_msg_sha2_signed(&m, &hash, &sig), CAPF_OK);
    assert_int_equal(hash, CAPF_HASH_SHA1);
    assert_int_equal(CBS_len(&sig), 2);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE,
                                    "0d 00 02 41 00 | 14 00 04 04 00 01 aa", &m), CAPF_OK);
    assert_int_equal(capf_msg_sha2_signed(&m, &hash, &sig), CAPF_E_ENUM);
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE,
                                    "0d 00 02 41 00 | 10 00 08 00 00 01 aa 03 00 01 bb", &m), CAPF_OK);
    assert_int_equal(capf_msg_sha2_signed(&m, &hash, &sig), CAPF_E_ABSENT);
}

static void test_accessors(void **state) {
    (void)state;
    capf_msg_t m;
    uint8_t b = 0x5a;
    uint16_t w;
    CBS s;
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE,
                                    "0d 00 02 41 00 | 07 00 01 04 | 01 00 01 63 | 08 00 01 05"
                                    "| 11 00 01 02 | 12 00 01 03 | 03 00 01 00 | 0a 00 02 10 00", &m),
                     CAPF_OK);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_VERSION, &b), CAPF_OK);    /* any value */
    assert_int_equal(b, 4);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_REASON, &b), CAPF_OK);
    assert_int_equal(b, 0x63);
    b = 0x5a;
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_AUTH_TYPE, &b), CAPF_E_ENUM);
    assert_int_equal(b, 0x5a);                                            /* untouched */
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_KEY_TYPE, &b), CAPF_E_ENUM);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_CURVE, &b), CAPF_E_ENUM);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_CERTIFICATE_TYPE, &b), CAPF_E_ENUM);
    assert_int_equal(capf_msg_u16(&m, CAPF_TAG_KEY_SIZE, &w), CAPF_OK);
    assert_int_equal(w, 4096);
    /* Wrong kind of accessor for the tag. */
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_DEVICE_NAME, &b), CAPF_E_ARG);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_KEY_SIZE, &b), CAPF_E_ARG);
    assert_int_equal(capf_msg_u8(&m, 0x15, &b), CAPF_E_ARG);
    assert_int_equal(capf_msg_u16(&m, CAPF_TAG_REASON, &w), CAPF_E_ARG);
    assert_int_equal(capf_msg_string(&m, CAPF_TAG_VERSION, &s), CAPF_E_ARG);
    /* Absent elements. */
    assert_int_equal(capf_msg_get(&m, CAPF_TAG_PUBLIC_KEY, &s), CAPF_E_ABSENT);
    assert_int_equal(CBS_len(&s), 0);
    assert_int_equal(capf_msg_get(&m, 0x30, &s), CAPF_E_ABSENT);
    assert_false(capf_msg_has(&m, 0xff));
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE, "0d 00 02 41 00", &m), CAPF_OK);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_VERSION, &b), CAPF_E_ABSENT);
    assert_int_equal(capf_msg_u16(&m, CAPF_TAG_KEY_SIZE, &w), CAPF_E_ABSENT);
    /* In-range enumerations. */
    assert_int_equal(parse_hex_body(CAPF_OP_AUTH_RESPONSE,
                                    "0d 00 02 41 00 | 08 00 01 04 | 11 00 01 01 | 12 00 01 02"
                                    "| 03 00 01 02", &m), CAPF_OK);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_AUTH_TYPE, &b), CAPF_OK);
    assert_int_equal(b, CAPF_AUTH_MIC);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_CURVE, &b), CAPF_OK);
    assert_int_equal(b, CAPF_CURVE_P521);
    assert_int_equal(capf_msg_u8(&m, CAPF_TAG_CERTIFICATE_TYPE, &b), CAPF_OK);
    assert_int_equal(b, CAPF_CERT_MIC);
}

static capf_err_t try_build(const capf_msg_out_t *o, size_t cap, size_t *len) {
    static uint8_t buf[8192];
    CBB cbb;
    assert_true(cap <= sizeof(buf));
    assert_true(CBB_init_fixed(&cbb, buf, cap));
    capf_err_t err = capf_msg_build(&cbb, o);
    if (err == CAPF_OK)
        assert_true(CBB_finish(&cbb, NULL, len));
    else            /* after CAPF_E_BUFFER the CBB may not be asked anything */
        *len = err == CAPF_E_BUFFER ? 0 : CBB_len(&cbb);
    CBB_cleanup(&cbb);
    return err;
}

static void test_build_rejects(void **state) {
    (void)state;
    size_t len;
    const uint32_t R = CAPF_BIT(CAPF_TAG_REASON), V = CAPF_BIT(CAPF_TAG_VERSION),
                   KS = CAPF_BIT(CAPF_TAG_KEY_SIZE), KT = CAPF_BIT(CAPF_TAG_KEY_TYPE),
                   C = CAPF_BIT(CAPF_TAG_CURVE), CT = CAPF_BIT(CAPF_TAG_CERTIFICATE_TYPE),
                   CE = CAPF_BIT(CAPF_TAG_CERTIFICATE);
    const capf_msg_out_t bad[] = {
        {.op = CAPF_OP_AUTH_RESPONSE, .present = V, .version = 3},    /* client opcode */
        {.op = CAPF_OP_REQUEST_IN_PROGRESS},
        {.op = CAPF_OP_RETRY_LATER},                                   /* never sent */
        {.op = CAPF_OP_STATUS_RESPONSE, .present = R, .reason = 7},     /* only REASON 01 (§4.3.4) */
        {.op = CAPF_OP_STATUS_RESPONSE, .present = 0},
        {.op = (capf_op_t)0x30, .present = R, .reason = 1},
        {.op = CAPF_OP_AUTH_REQUEST},                                  /* no VERSION */
        {.op = CAPF_OP_AUTH_REQUEST, .present = V | R, .version = 3, .reason = 1},
        {.op = CAPF_OP_AUTH_REQUEST, .present = V, .version = 4},
        {.op = CAPF_OP_AUTH_REQUEST, .present = V, .version = 1},
        {.op = CAPF_OP_AUTH_REQUEST, .present = V | CAPF_BIT(CAPF_TAG_AUTH_TYPE), .version = 3,
         .auth_type = (capf_auth_type_t)5},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .present = KS | KT, .key_size = 2048, .key_type = CAPF_KEY_EC},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .present = KT | C, .key_type = CAPF_KEY_RSA},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .present = C},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .present = KS | KT | C, .key_size = 2048},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .present = KS, .key_size = 2047},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .present = KS, .key_size = 8192},
        {.op = CAPF_OP_KEY_GENERATE_REQUEST, .present = KT | C, .key_type = CAPF_KEY_EC,
         .curve = (capf_curve_t)3},
        {.op = CAPF_OP_END_SESSION},
        {.op = CAPF_OP_END_SESSION, .present = R, .reason = 0},       /* never NO_ACTION */
        {.op = CAPF_OP_END_SESSION, .present = R, .reason = 2},
        {.op = CAPF_OP_END_SESSION, .present = R | V, .reason = 1, .version = 3},
        {.op = CAPF_OP_END_SESSION, .present = R | CAPF_BIT(0x15), .reason = 1},
        {.op = CAPF_OP_FETCH_CERTIFICATE_REQUEST, .present = R, .reason = 1},
        {.op = CAPF_OP_STORE_CERTIFICATE_REQUEST, .present = CT, .cert_type = CAPF_CERT_LSC},
        {.op = CAPF_OP_STORE_CERTIFICATE_REQUEST, .present = CT | CE,
         .cert_type = CAPF_CERT_LSC},                                  /* empty DER */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(try_build(&bad[i], 4096, &len), CAPF_E_ARG);
        assert_int_equal(len, 0);                                      /* nothing written */
    }

    /* Certificates: DER must be one element; 4076 bytes fit, 4077 do not. */
    static uint8_t der[4200];
    capf_msg_out_t o = {.op = CAPF_OP_STORE_CERTIFICATE_REQUEST, .session_id = SID,
                        .present = CT | CE, .cert_type = CAPF_CERT_LSC};
    fake_der(der, 600);
    CBS_init(&o.cert_der, der, 601);                                   /* trailing byte */
    assert_int_equal(try_build(&o, 4096, &len), CAPF_E_ARG);
    CBS_init(&o.cert_der, der, 599);                                   /* truncated */
    assert_int_equal(try_build(&o, 4096, &len), CAPF_E_ARG);
    o.cert_type = (capf_cert_type_t)3;
    CBS_init(&o.cert_der, der, 600);
    assert_int_equal(try_build(&o, 4096, &len), CAPF_E_ARG);
    o.cert_type = CAPF_CERT_LSC;
    fake_der(der, 4076);
    CBS_init(&o.cert_der, der, 4076);
    assert_int_equal(try_build(&o, 4096, &len), CAPF_OK);
    assert_int_equal(len, CAPF_SERVER_MSG_MAX);
    fake_der(der, 4077);
    CBS_init(&o.cert_der, der, 4077);
    assert_int_equal(try_build(&o, 8192, &len), CAPF_E_OVERSIZE);
    assert_int_equal(len, 0);

    /* A full output buffer. */
    capf_msg_out_t end = {.op = CAPF_OP_END_SESSION, .session_id = SID, .present = R, .reason = 7};
    for (size_t cap = 0; cap < 12; cap++)
        assert_int_equal(try_build(&end, cap, &len), CAPF_E_BUFFER);
    assert_int_equal(try_build(&end, 12, &len), CAPF_OK);
    assert_int_equal(len, 12);

    /* A growable CBB works as well; the message is appended. */
    CBB cbb;
    uint8_t *out;
    assert_true(CBB_init(&cbb, 0));
    assert_int_equal(capf_msg_build(&cbb, &end), CAPF_OK);
    assert_int_equal(capf_msg_build(&cbb, &end), CAPF_OK);
    assert_true(CBB_finish(&cbb, &out, &len));
    assert_int_equal(len, 24);
    assert_memory_equal(out, out + 12, 12);
    OPENSSL_free(out);
}

static void test_strings_tables(void **state) {
    (void)state;
    for (int e = 0; e < CAPF_E__COUNT; e++)
        assert_string_not_equal(capf_err_str((capf_err_t)e), "unknown");
    assert_string_equal(capf_err_str(CAPF_E__COUNT), "unknown");
    assert_string_equal(capf_err_str((capf_err_t)-1), "unknown");
    for (unsigned op = 1; op <= CAPF_OP__MAX; op++) {
        assert_string_not_equal(capf_op_str(op), "unknown");
        assert_true(capf_op_max_body(op) >= 64);
    }
    assert_string_equal(capf_op_str(0x02), "AUTH_RESPONSE");
    assert_string_equal(capf_op_str(0x00), "unknown");
    assert_string_equal(capf_op_str(0x18), "unknown");
    assert_string_equal(capf_tag_str(0x0d), "DEVICE_NAME");
    assert_string_equal(capf_tag_str(0x0e), "unknown");
    assert_string_equal(capf_tag_str(0x00), "unknown");
    assert_string_equal(capf_tag_str(0xf0), "unknown");
    assert_string_equal(capf_reason_str(7), "INVALID_ELEMENT");
    assert_string_equal(capf_reason_str(2), "unknown");
    assert_string_equal(capf_reason_str(300), "unknown");
    assert_string_equal(capf_auth_type_str(CAPF_AUTH_NULL_STRING), "NULL_STRING");
    assert_string_equal(capf_cert_type_str(0), "unknown");
    assert_string_equal(capf_cert_type_str(CAPF_CERT_MIC), "MIC");
    assert_string_equal(capf_key_type_str(CAPF_KEY_EC), "EC");
    assert_string_equal(capf_curve_str(CAPF_CURVE_P384), "P-384");
    assert_string_equal(capf_hash_str(CAPF_HASH_SHA512), "SHA-512");
    assert_string_equal(capf_hash_str(4), "unknown");
    /* Direction: M13's server-only opcodes. */
    static const uint8_t server_only[] = {0x01, 0x03, 0x09, 0x0f};
    for (size_t i = 0; i < sizeof(server_only); i++)
        assert_int_equal(capf_op_dir(server_only[i]), CAPF_DIR_TO_CLIENT);
    assert_int_equal(capf_op_dir(0x11), CAPF_DIR_TO_SERVER);
    assert_int_equal(capf_op_dir(0x05), CAPF_DIR_UNKNOWN);
    assert_int_equal(capf_op_dir(0x80), CAPF_DIR_UNKNOWN);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doc_server_roundtrip),
        cmocka_unit_test(test_doc_server_build),
        cmocka_unit_test(test_doc_cert_messages),
        cmocka_unit_test(test_doc_client_examples),
        cmocka_unit_test(test_doc_keygen_response),
        cmocka_unit_test(test_cert_auth_shape),
        cmocka_unit_test(test_need),
        cmocka_unit_test(test_need_limits),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_element_framing),
        cmocka_unit_test(test_element_lengths),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_duplicates_and_unknown),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_cert_element),
        cmocka_unit_test(test_nested),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_build_rejects),
        cmocka_unit_test(test_strings_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
