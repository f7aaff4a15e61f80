/* cx_csr_test: unit tests for cx_csr. Every key and request is generated at
 * test time (cx_testkit.h): X509_REQ for what real clients send, hand-made
 * CBB requests for the shapes X509_REQ cannot write. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "crypto/cx_csr.h"
#include "crypto/cx_testkit.h"

static EVP_PKEY *g_rsa2048, *g_p256;

static int setup(void **state) {
    (void)state;
    g_rsa2048 = tk_rsa_key(2048);
    g_p256 = tk_ec_key(NID_X9_62_prime256v1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    EVP_PKEY_free(g_rsa2048);
    EVP_PKEY_free(g_p256);
    return 0;
}

/* parse_verify parses and verifies `der`, returning the first error. */
static cx_err_t parse_verify(const uint8_t *der, size_t len) {
    cx_csr_t csr;
    cx_err_t err = cx_csr_parse(&csr, der, len);
    return err != CX_OK ? err : cx_csr_verify(&csr, NULL);
}

static void check_good_req(EVP_PKEY *key, const EVP_MD *md, const char *san) {
    uint8_t *der;
    size_t len;
    cx_csr_t csr;
    EVP_PKEY *pub = NULL;
    char cn[64];

    tk_csr_req(key, md, "SEP001122334455", san, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    assert_int_equal(CBS_len(&csr.der), len);
    assert_false(csr.subject_empty);
    assert_int_equal(cx_csr_verify(&csr, &pub), CX_OK);
    assert_non_null(pub);
    assert_int_equal(EVP_PKEY_cmp(pub, key), 1);
    assert_true(cx_name_cn(&csr.subject, cn, sizeof(cn)));
    assert_string_equal(cn, "SEP001122334455");
    if (san == NULL) {
        assert_int_equal(CBS_len(&csr.san), 0);
    } else {
        const uint8_t *p = CBS_data(&csr.san);
        GENERAL_NAMES *gens = d2i_GENERAL_NAMES(NULL, &p, (long)CBS_len(&csr.san));
        assert_non_null(gens);
        assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
        assert_int_equal(sk_GENERAL_NAME_value(gens, 0)->type, GEN_DNS);
        assert_int_equal(sk_GENERAL_NAME_value(gens, 1)->type, GEN_IPADD);
        GENERAL_NAMES_free(gens);
    }
    EVP_PKEY_free(pub);
    OPENSSL_free(der);
}

static void test_rsa2048_sha256(void **state) {
    (void)state;
    check_good_req(g_rsa2048, EVP_sha256(), NULL);
    check_good_req(g_rsa2048, EVP_sha256(), "DNS:phone.example,IP:10.0.0.1");
}

static void test_p256_sha256(void **state) {
    (void)state;
    check_good_req(g_p256, EVP_sha256(), NULL);
    check_good_req(g_p256, EVP_sha256(), "DNS:phone.example,IP:10.0.0.1");
}

static void test_other_accepted_algs(void **state) {
    (void)state;
    EVP_PKEY *p384 = tk_ec_key(NID_secp384r1), *p521 = tk_ec_key(NID_secp521r1);
    check_good_req(p384, EVP_sha384(), NULL);
    check_good_req(p521, EVP_sha512(), NULL);
    check_good_req(g_p256, EVP_sha384(), NULL);
    check_good_req(g_rsa2048, EVP_sha384(), NULL);
    check_good_req(g_rsa2048, EVP_sha512(), NULL);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
}

static void test_tampered_signature(void **state) {
    (void)state;
    EVP_PKEY *keys[] = {g_rsa2048, g_p256};
    for (size_t i = 0; i < 2; i++) {
        uint8_t *der;
        size_t len;
        cx_csr_t csr;
        tk_csr_req(keys[i], EVP_sha256(), "tamper", NULL, &der, &len);
        der[len - 1] ^= 0x01;                    /* last signature byte */
        assert_int_equal(parse_verify(der, len), CX_E_CSR_SIG);
        der[len - 1] ^= 0x01;
        assert_int_equal(parse_verify(der, len), CX_OK);
        assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
        /* Change one byte of the signed subject ("tamper" -> "tampes"). */
        uint8_t *cn = memmem(der, len, "tamper", 6);
        assert_non_null(cn);
        cn[5] = 's';
        assert_int_equal(parse_verify(der, len), CX_E_CSR_SIG);
        OPENSSL_free(der);
    }
}

static void test_sha1_and_md5_refused(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    tk_csr_req(g_rsa2048, EVP_sha1(), "sha1", NULL, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_ALG);
    OPENSSL_free(der);
    tk_csr_req(g_p256, EVP_sha1(), "sha1", NULL, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_ALG);
    OPENSSL_free(der);
    /* md5WithRSAEncryption, NULL params. */
    static const uint8_t md5_rsa[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                      0x0d, 0x01, 0x01, 0x04, 0x05, 0x00};
    tk_csr_opts_t o = {.key = g_rsa2048, .md = EVP_sha256(), .alg_der = md5_rsa,
                       .alg_der_len = sizeof(md5_rsa)};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_ALG);
    OPENSSL_free(der);
}

static void test_alg_parameters(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    /* sha256WithRSAEncryption with absent parameters: accepted. */
    static const uint8_t rsa_absent[] = {0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                         0xf7, 0x0d, 0x01, 0x01, 0x0b};
    tk_csr_opts_t o = {.key = g_rsa2048, .md = EVP_sha256(), .alg_der = rsa_absent,
                       .alg_der_len = sizeof(rsa_absent)};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_OK);
    OPENSSL_free(der);
    /* ecdsa-with-SHA256 with NULL parameters: refused. */
    static const uint8_t ec_null[] = {0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
                                      0x3d, 0x04, 0x03, 0x02, 0x05, 0x00};
    o = (tk_csr_opts_t){.key = g_p256, .md = EVP_sha256(), .alg_der = ec_null,
                        .alg_der_len = sizeof(ec_null)};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_ALG);
    OPENSSL_free(der);
    /* sha256WithRSAEncryption with INTEGER parameters: refused. */
    static const uint8_t rsa_int[] = {0x30, 0x0e, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                      0x0d, 0x01, 0x01, 0x0b, 0x02, 0x01, 0x00};
    o = (tk_csr_opts_t){.key = g_rsa2048, .md = EVP_sha256(), .alg_der = rsa_int,
                        .alg_der_len = sizeof(rsa_int)};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_ALG);
    OPENSSL_free(der);
    /* An RSA key labelled ecdsa-with-SHA256: algorithm/key mismatch. */
    static const uint8_t ec_alg[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
                                     0x3d, 0x04, 0x03, 0x02};
    o = (tk_csr_opts_t){.key = g_rsa2048, .md = EVP_sha256(), .alg_der = ec_alg,
                        .alg_der_len = sizeof(ec_alg)};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_ALG);
    OPENSSL_free(der);
}

static void test_weak_keys(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    EVP_PKEY *rsa1024 = tk_rsa_key(1024), *p224 = tk_ec_key(NID_secp224r1);
    tk_csr_req(rsa1024, EVP_sha256(), "weak", NULL, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_KEY);
    OPENSSL_free(der);
    tk_csr_opts_t o = {.key = p224, .md = EVP_sha256()};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_E_CSR_KEY);
    OPENSSL_free(der);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(p224);
}

static void test_truncated_and_trailing(void **state) {
    (void)state;
    uint8_t *der, *longer;
    size_t len;
    cx_csr_t csr;
    tk_csr_req(g_p256, EVP_sha256(), "trunc", "DNS:x.example", &der, &len);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(cx_csr_parse(&csr, der, n), CX_E_NOT_CSR);
    longer = OPENSSL_malloc(len + 1);
    memcpy(longer, der, len);
    longer[len] = 0;
    assert_int_equal(cx_csr_parse(&csr, longer, len + 1), CX_E_NOT_CSR);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    OPENSSL_free(longer);
    OPENSSL_free(der);
}

static void test_version(void **state) {
    (void)state;
    for (uint64_t v = 1; v <= 2; v++) {
        uint8_t *der;
        size_t len;
        cx_csr_t csr;
        tk_csr_opts_t o = {.key = g_p256, .md = EVP_sha256(), .version = v};
        tk_csr_hand(&o, &der, &len);
        assert_int_equal(cx_csr_parse(&csr, der, len), CX_E_CSR_VERSION);
        OPENSSL_free(der);
    }
}

static void test_attributes(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    cx_csr_t csr;
    char cn[16];
    /* No [0] at all (some clients omit it). */
    tk_csr_opts_t o = {.key = g_p256, .md = EVP_sha256()};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    assert_int_equal(CBS_len(&csr.san), 0);
    assert_int_equal(cx_csr_verify(&csr, NULL), CX_OK);
    assert_true(cx_name_cn(&csr.subject, cn, sizeof(cn)));
    assert_string_equal(cn, "hand");
    OPENSSL_free(der);
    /* Empty [0]. */
    o.attrs = true;
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(parse_verify(der, len), CX_OK);
    OPENSSL_free(der);
    /* challengePassword is skipped, extensionRequest after it is read. */
    o.challenge = true;
    o.san_dns = "dev.example";
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    static const uint8_t want_san[] = {0x30, 0x0d, 0x82, 0x0b, 'd', 'e', 'v', '.', 'e',
                                       'x', 'a', 'm', 'p', 'l', 'e'};
    assert_int_equal(CBS_len(&csr.san), sizeof(want_san));
    assert_memory_equal(CBS_data(&csr.san), want_san, sizeof(want_san));
    assert_int_equal(cx_csr_verify(&csr, NULL), CX_OK);
    /* A GeneralName that is not context-specific: malformed SAN. */
    uint8_t *gn = memmem(der, len, want_san, sizeof(want_san));
    assert_non_null(gn);
    gn[2] = 0x04;
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_E_CSR_EXT);
    OPENSSL_free(der);
}

static void test_subject(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    cx_csr_t csr;
    char cn[8];
    static const uint8_t empty[] = {0x30, 0x00};
    tk_csr_opts_t o = {.key = g_p256, .md = EVP_sha256(), .subject_der = empty,
                       .subject_der_len = sizeof(empty)};
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    assert_true(csr.subject_empty);
    assert_false(cx_name_cn(&csr.subject, cn, sizeof(cn)));
    assert_string_equal(cn, "");
    OPENSSL_free(der);

    static const uint8_t empty_rdn[] = {0x30, 0x02, 0x31, 0x00};
    o.subject_der = empty_rdn;
    o.subject_der_len = sizeof(empty_rdn);
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_E_CSR_SUBJECT);
    OPENSSL_free(der);

    /* RDN with a value missing. */
    static const uint8_t no_value[] = {0x30, 0x09, 0x31, 0x07, 0x30, 0x05,
                                       0x06, 0x03, 0x55, 0x04, 0x03};
    o.subject_der = no_value;
    o.subject_der_len = sizeof(no_value);
    tk_csr_hand(&o, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_E_CSR_SUBJECT);
    OPENSSL_free(der);
}

static void test_bitstring_unused_bits(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    cx_csr_t csr;
    tk_csr_req(g_p256, EVP_sha256(), "bits", NULL, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    size_t off = (size_t)(CBS_data(&csr.sig) - der) - 1;   /* unused-bits byte */
    assert_int_equal(der[off], 0);
    der[off] = 1;
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_E_NOT_CSR);
    OPENSSL_free(der);
}

static void test_too_large(void **state) {
    (void)state;
    static uint8_t big[CX_CSR_MAX_DER + 1];
    cx_csr_t csr;
    assert_int_equal(cx_csr_parse(&csr, big, sizeof(big)), CX_E_TOO_LARGE);
    assert_int_equal(cx_csr_parse(&csr, big, 0), CX_E_NOT_CSR);
}

static void test_name_cn(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    cx_csr_t csr;
    char small[5], out[32];
    tk_csr_req(g_p256, EVP_sha256(), "caf\xc3\xa9-phone", NULL, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    assert_true(cx_name_cn(&csr.subject, out, sizeof(out)));
    assert_string_equal(out, "caf?" "?-phone");
    assert_true(cx_name_cn(&csr.subject, small, sizeof(small)));
    assert_string_equal(small, "caf?");
    assert_false(cx_name_cn(&csr.subject, out, 0));
    OPENSSL_free(der);
    /* No CN: only O=Test. */
    tk_csr_req(g_p256, EVP_sha256(), NULL, NULL, &der, &len);
    assert_int_equal(cx_csr_parse(&csr, der, len), CX_OK);
    assert_false(cx_name_cn(&csr.subject, out, sizeof(out)));
    assert_string_equal(out, "");
    OPENSSL_free(der);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rsa2048_sha256),
        cmocka_unit_test(test_p256_sha256),
        cmocka_unit_test(test_other_accepted_algs),
        cmocka_unit_test(test_tampered_signature),
        cmocka_unit_test(test_sha1_and_md5_refused),
        cmocka_unit_test(test_alg_parameters),
        cmocka_unit_test(test_weak_keys),
        cmocka_unit_test(test_truncated_and_trailing),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_bitstring_unused_bits),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_name_cn),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
