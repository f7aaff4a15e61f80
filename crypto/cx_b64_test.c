/* cx_b64_test: unit tests for cx_b64 (RFC 4648 vectors, EST line breaks,
 * rejection of bad characters and bad padding, output capacity, round trips). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include "crypto/cx_b64.h"

/* decode_str decodes NUL-terminated `in` into `out` (capacity `cap`). */
static cx_err_t decode_str(const char *in, uint8_t *out, size_t cap, size_t *out_len) {
    return cx_b64_decode(out, out_len, cap, (const uint8_t *)in, strlen(in));
}

static void assert_decodes(const char *in, const char *want) {
    uint8_t out[256];
    size_t n = 99;
    assert_int_equal(decode_str(in, out, sizeof(out), &n), CX_OK);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void assert_rejects(const char *in) {
    uint8_t out[256];
    size_t n = 99;
    assert_int_equal(decode_str(in, out, sizeof(out), &n), CX_E_BASE64);
    assert_int_equal(n, 0);
}

static void test_rfc4648_vectors(void **state) {
    (void)state;
    static const char *const v[][2] = {
        {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},
        {"foo", "Zm9v"},   {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint8_t enc[64];
        size_t want_len = strlen(v[i][1]) + (strlen(v[i][1]) ? 2 : 0);
        size_t n = cx_b64_encode(enc, (const uint8_t *)v[i][0], strlen(v[i][0]));
        assert_int_equal(n, want_len);
        assert_int_equal(cx_b64_encoded_len(strlen(v[i][0])), want_len);
        assert_memory_equal(enc, v[i][1], strlen(v[i][1]));
        if (n)
            assert_memory_equal(enc + n - 2, "\r\n", 2);
        assert_decodes(v[i][1], v[i][0]);
    }
}

static void test_all_byte_values(void **state) {
    (void)state;
    uint8_t in[256], enc[400], dec[256];
    size_t n;
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)i;
    size_t elen = cx_b64_encode(enc, in, sizeof(in));
    assert_int_equal(elen, cx_b64_encoded_len(sizeof(in)));
    assert_int_equal(cx_b64_decode(dec, &n, sizeof(dec), enc, elen), CX_OK);
    assert_int_equal(n, sizeof(in));
    assert_memory_equal(dec, in, sizeof(in));
}

static void test_line_wrapping(void **state) {
    (void)state;
    uint8_t in[200], out[400];
    memset(in, 0xa5, sizeof(in));
    /* 48 bytes -> exactly one full line of 64 characters. */
    assert_int_equal(cx_b64_encode(out, in, 48), 66);
    assert_memory_equal(out + 64, "\r\n", 2);
    /* 49 bytes -> a full line and a 4-character line, both with CRLF. */
    assert_int_equal(cx_b64_encoded_len(49), 64 + 2 + 4 + 2);
    assert_int_equal(cx_b64_encode(out, in, 49), 72);
    assert_memory_equal(out + 64, "\r\n", 2);
    assert_memory_equal(out + 70, "\r\n", 2);
    /* Every line is 64 characters but the last. */
    size_t n = cx_b64_encode(out, in, 200);
    assert_int_equal(n, cx_b64_encoded_len(200));
    for (size_t pos = 0; pos + 66 <= n; pos += 66)
        assert_memory_equal(out + pos + 64, "\r\n", 2);
}

static void test_whitespace_accepted(void **state) {
    (void)state;
    assert_decodes("Zm9v\r\nYmFy", "foobar");
    assert_decodes("Zm9v\nYmFy\n", "foobar");
    assert_decodes("  Zm 9v\tYg==\r\n", "foob");
    assert_decodes("\r\n\r\nZ\r\nm\r\n8\r\n=\r\n", "fo");
    assert_decodes("Zg= =", "f");
    assert_decodes(" \t\r\n", "");
}

static void test_bad_characters(void **state) {
    (void)state;
    assert_rejects("Zm9v!");
    assert_rejects("Zm9v-_");          /* base64url alphabet */
    assert_rejects("Zm9v\vYmFy");      /* vertical tab is not whitespace here */
    assert_rejects("Zm9v\fYmFy");
    assert_rejects("Zm9v.");
    assert_rejects("Zm9v\x80");
    uint8_t out[16];
    size_t n;
    static const uint8_t with_nul[] = {'Z', 'm', 0, 'v'};
    assert_int_equal(cx_b64_decode(out, &n, sizeof(out), with_nul, sizeof(with_nul)),
                     CX_E_BASE64);
}

static void test_bad_padding(void **state) {
    (void)state;
    assert_rejects("Zg");              /* truncated group */
    assert_rejects("Zg=");
    assert_rejects("Zm9");
    assert_rejects("Z===");
    assert_rejects("====");
    assert_rejects("=Zm9");
    assert_rejects("Zm=v");
    assert_rejects("Zg==Zg==");        /* data after padding */
    assert_rejects("Zg==\r\nZm9v");
    assert_rejects("Zg===");
    assert_rejects("Zh==");            /* non-zero pad bits */
    assert_rejects("Zm9=");
    assert_rejects("Z");
}

static void test_capacity(void **state) {
    (void)state;
    uint8_t out[8];
    size_t n = 99;
    assert_int_equal(decode_str("Zm9vYmFy", out, 6, &n), CX_OK);
    assert_int_equal(n, 6);
    assert_int_equal(decode_str("Zm9vYmFy", out, 5, &n), CX_E_TOO_LARGE);
    assert_int_equal(n, 0);
    assert_int_equal(decode_str("Zm9vYg==", out, 4, &n), CX_OK);
    assert_int_equal(decode_str("Zm9vYg==", out, 3, &n), CX_E_TOO_LARGE);
    assert_int_equal(decode_str("", NULL, 0, &n), CX_OK);
    assert_int_equal(n, 0);
    assert_int_equal(decode_str("Zg==", NULL, 0, &n), CX_E_TOO_LARGE);
}

static void test_random_round_trips(void **state) {
    (void)state;
    uint8_t in[300], enc[450], dec[300];
    for (size_t len = 0; len <= sizeof(in); len++) {
        size_t n;
        RAND_bytes(in, len);
        size_t elen = cx_b64_encode(enc, in, len);
        assert_true(elen <= sizeof(enc));
        assert_int_equal(elen, cx_b64_encoded_len(len));
        assert_int_equal(cx_b64_decode(dec, &n, len, enc, elen), CX_OK);
        assert_int_equal(n, len);
        assert_memory_equal(dec, in, len);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_all_byte_values),
        cmocka_unit_test(test_line_wrapping),
        cmocka_unit_test(test_whitespace_accepted),
        cmocka_unit_test(test_bad_characters),
        cmocka_unit_test(test_bad_padding),
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_random_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
