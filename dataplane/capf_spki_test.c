/* capf_spki_test: unit tests for capf_spki_check (capf-protocol.md §3.2,
 * §6.2 N7). Every key is generated at test time with BoringSSL; odd shapes
 * (exponents BoringSSL will not generate, other curves, broken points) are
 * re-encoded by hand with CBB from those keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "dataplane/capf_spki.h"
#include "crypto/cx_testkit.h"

static EVP_PKEY *g_rsa2048, *g_rsa1024, *g_p256, *g_p384, *g_p521, *g_p224;

static const capf_keyspec_t want_rsa2048 = {.type = CAPF_KEY_RSA, .rsa_bits = 2048};
static const capf_keyspec_t want_p256 = {.type = CAPF_KEY_EC, .curve = CAPF_CURVE_P256};

static const uint8_t oid_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
static const uint8_t oid_ec[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};

static int setup(void **state) {
    (void)state;
    g_rsa2048 = tk_rsa_key(2048);
    g_rsa1024 = tk_rsa_key(1024);
    g_p256 = tk_ec_key(NID_X9_62_prime256v1);
    g_p384 = tk_ec_key(NID_secp384r1);
    g_p521 = tk_ec_key(NID_secp521r1);
    g_p224 = tk_ec_key(NID_secp224r1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    EVP_PKEY *keys[] = {g_rsa2048, g_rsa1024, g_p256, g_p384, g_p521, g_p224};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        EVP_PKEY_free(keys[i]);
    return 0;
}

/* der_of: the key's SPKI as BoringSSL writes it. */
static size_t der_of(const EVP_PKEY *key, uint8_t *out, size_t cap) {
    CBB cbb;
    size_t len;
    assert_true(CBB_init_fixed(&cbb, out, cap));
    assert_true(EVP_marshal_public_key(&cbb, key) && CBB_finish(&cbb, NULL, &len));
    return len;
}

/* spki_make: SEQUENCE { SEQUENCE { OID alg, params }, BIT STRING { unused | key } }
 * where params is raw DER (maybe empty). */
static size_t spki_make(uint8_t *out, size_t cap, const uint8_t *alg, size_t alg_len,
                        const uint8_t *params, size_t params_len, uint8_t unused,
                        const uint8_t *key, size_t key_len) {
    CBB cbb, spki, ai, oid, bits;
    size_t len;
    assert_true(CBB_init_fixed(&cbb, out, cap));
    assert_true(CBB_add_asn1(&cbb, &spki, CBS_ASN1_SEQUENCE) &&
                CBB_add_asn1(&spki, &ai, CBS_ASN1_SEQUENCE) &&
                CBB_add_asn1(&ai, &oid, CBS_ASN1_OBJECT) && CBB_add_bytes(&oid, alg, alg_len) &&
                CBB_add_bytes(&ai, params, params_len) &&
                CBB_add_asn1(&spki, &bits, CBS_ASN1_BITSTRING) && CBB_add_u8(&bits, unused) &&
                CBB_add_bytes(&bits, key, key_len) && CBB_finish(&cbb, NULL, &len));
    return len;
}

/* rsa_spki: an RSA SPKI with the modulus of `key` and exponent `e`. */
static size_t rsa_spki(uint8_t *out, size_t cap, const EVP_PKEY *key, const BIGNUM *e) {
    static const uint8_t null_der[] = {0x05, 0x00};
    uint8_t rsa_der[1100];
    CBB cbb, seq;
    size_t rsa_len;
    assert_true(CBB_init_fixed(&cbb, rsa_der, sizeof(rsa_der)));
    assert_true(CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE) &&
                BN_marshal_asn1(&seq, RSA_get0_n(EVP_PKEY_get0_RSA(key))) &&
                BN_marshal_asn1(&seq, e) && CBB_finish(&cbb, NULL, &rsa_len));
    return spki_make(out, cap, oid_rsa, sizeof(oid_rsa), null_der, sizeof(null_der), 0,
                     rsa_der, rsa_len);
}

/* ec_point: the public point of `key` in `form`. */
static size_t ec_point(const EVP_PKEY *key, point_conversion_form_t form, uint8_t *out, size_t cap) {
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
    size_t n = EC_POINT_point2oct(EC_KEY_get0_group(ec), EC_KEY_get0_public_key(ec), form, out,
                                  cap, NULL);
    assert_true(n > 0);
    return n;
}

/* ec_spki: EC SPKI with parameters `params` (raw DER) and point bytes. */
static size_t ec_spki(uint8_t *out, size_t cap, const uint8_t *params, size_t params_len,
                      const uint8_t *point, size_t point_len) {
    return spki_make(out, cap, oid_ec, sizeof(oid_ec), params, params_len, 0, point, point_len);
}

static capf_err_t check(const capf_keyspec_t *want, const uint8_t *der, size_t len) {
    EVP_PKEY *key = (EVP_PKEY *)1;
    capf_err_t err = capf_spki_check(NULL, want, der, len, &key, NULL);
    if (err == CAPF_OK) {
        assert_non_null(key);
        EVP_PKEY_free(key);
    } else {
        assert_null(key);
    }
    assert_int_equal(ERR_peek_error(), 0);
    return err;
}

/* check_good: accepted, same key back, hash of the canonical DER. */
static void check_good(const capf_spki_policy_t *pol, const capf_keyspec_t *want,
                       const EVP_PKEY *orig, const uint8_t *der, size_t len) {
    EVP_PKEY *key = NULL;
    uint8_t hash[CAPF_SPKI_HASH_LEN], want_hash[SHA256_DIGEST_LENGTH], canon[1024];
    size_t canon_len = der_of(orig, canon, sizeof(canon));
    assert_int_equal(capf_spki_check(pol, want, der, len, &key, hash), CAPF_OK);
    assert_non_null(key);
    assert_int_equal(EVP_PKEY_cmp(key, orig), 1);
    SHA256(canon, canon_len, want_hash);
    assert_memory_equal(hash, want_hash, sizeof(hash));
    EVP_PKEY_free(key);
    assert_int_equal(capf_spki_check(pol, want, der, len, NULL, NULL), CAPF_OK);
}

static void test_rsa2048_ok(void **state) {
    (void)state;
    uint8_t der[600], prefix[] = {0x30, 0x82, 0x01, 0x22, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86,
                                  0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00, 0x03,
                                  0x82, 0x01, 0x0f, 0x00, 0x30, 0x82, 0x01, 0x0a, 0x02, 0x82,
                                  0x01, 0x01, 0x00};
    size_t len = der_of(g_rsa2048, der, sizeof(der));
    /* The annotated value of §3.1: 294 bytes, e = 65537. */
    assert_int_equal(len, 294);
    assert_memory_equal(der, prefix, sizeof(prefix));
    assert_memory_equal(der + len - 5, "\x02\x03\x01\x00\x01", 5);
    check_good(NULL, &want_rsa2048, g_rsa2048, der, len);
}

/* RSA sizes: exact match with the request and within policy (P3, N7). */
static void test_rsa_sizes(void **state) {
    (void)state;
    uint8_t der[600];
    size_t len = der_of(g_rsa1024, der, sizeof(der));
    const capf_keyspec_t want1024 = {.type = CAPF_KEY_RSA, .rsa_bits = 1024};
    const capf_spki_policy_t legacy = {.rsa_min_bits = 1024};
    assert_int_equal(check(&want_rsa2048, der, len), CAPF_E_SPKI_RSA_SIZE);
    assert_int_equal(check(&want1024, der, len), CAPF_E_SPKI_RSA_SIZE);   /* below default */
    check_good(&legacy, &want1024, g_rsa1024, der, len);                  /* operator allowed it */
    assert_int_equal(capf_spki_check(&legacy, &want_rsa2048, der, len, NULL, NULL),
                     CAPF_E_SPKI_RSA_SIZE);
    len = der_of(g_rsa2048, der, sizeof(der));
    const capf_keyspec_t want3072 = {.type = CAPF_KEY_RSA, .rsa_bits = 3072};
    const capf_keyspec_t want4096 = {.type = CAPF_KEY_RSA, .rsa_bits = 4096};
    assert_int_equal(check(&want3072, der, len), CAPF_E_SPKI_RSA_SIZE);
    assert_int_equal(check(&want4096, der, len), CAPF_E_SPKI_RSA_SIZE);
    assert_int_equal(capf_spki_check(&legacy, &want1024, der, len, NULL, NULL),
                     CAPF_E_SPKI_RSA_SIZE);
}

/* Exponent: odd, 3 <= e <= 2^32 (§3.2 rule 3). */
static void test_rsa_exponent(void **state) {
    (void)state;
    uint8_t der[600];
    size_t len;
    BIGNUM *e = BN_new();
    assert_non_null(e);

    /* A real key with e = 3: the doc's floor is 3, so it is accepted. */
    RSA *rsa = RSA_new();
    EVP_PKEY *k3 = EVP_PKEY_new();
    assert_true(rsa && k3 && BN_set_word(e, 3) && RSA_generate_key_ex(rsa, 2048, e, NULL) &&
                EVP_PKEY_assign_RSA(k3, rsa));
    len = der_of(k3, der, sizeof(der));
    check_good(NULL, &want_rsa2048, k3, der, len);
    EVP_PKEY_free(k3);

    static const struct { uint64_t e; capf_err_t want; } cases[] = {
        {1, CAPF_E_SPKI_RSA_EXP},
        {2, CAPF_E_SPKI_RSA_EXP},
        {65536, CAPF_E_SPKI_RSA_EXP},
        {65537, CAPF_OK},
        {0xffffffffu, CAPF_OK},                 /* largest odd e <= 2^32 */
        {UINT64_C(0x100000000), CAPF_E_SPKI_RSA_EXP},
        {UINT64_C(0x100000001), CAPF_E_SPKI_RSA_EXP},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_true(BN_set_u64(e, cases[i].e));
        len = rsa_spki(der, sizeof(der), g_rsa2048, e);
        assert_int_equal(check(&want_rsa2048, der, len), cases[i].want);
    }
    /* e = 0 (DER INTEGER 0). */
    BN_zero(e);
    len = rsa_spki(der, sizeof(der), g_rsa2048, e);
    assert_int_equal(check(&want_rsa2048, der, len), CAPF_E_SPKI_RSA_EXP);
    BN_free(e);
}

static void test_rsa_bad_der(void **state) {
    (void)state;
    uint8_t der[600], bad[600];
    size_t len = der_of(g_rsa2048, der, sizeof(der));
    /* BIT STRING with 1 unused bit. */
    memcpy(bad, der, len);
    assert_int_equal(bad[23], 0x00);
    bad[23] = 0x01;
    assert_int_equal(check(&want_rsa2048, bad, len), CAPF_E_SPKI_DER);
    /* Negative modulus: drop the leading 00 of the INTEGER, fix lengths. */
    const RSA *rsa = EVP_PKEY_get0_RSA(g_rsa2048);
    uint8_t n_bytes[256], key[300];
    CBB cbb, seq, n_int;
    size_t key_len;
    assert_int_equal(BN_bn2bin_padded(n_bytes, sizeof(n_bytes), RSA_get0_n(rsa)), 1);
    assert_true(CBB_init_fixed(&cbb, key, sizeof(key)));
    assert_true(CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE) &&
                CBB_add_asn1(&seq, &n_int, CBS_ASN1_INTEGER) &&
                CBB_add_bytes(&n_int, n_bytes, sizeof(n_bytes)) &&
                BN_marshal_asn1(&seq, RSA_get0_e(rsa)) && CBB_finish(&cbb, NULL, &key_len));
    static const uint8_t null_der[] = {0x05, 0x00};
    len = spki_make(bad, sizeof(bad), oid_rsa, sizeof(oid_rsa), null_der, 2, 0, key, key_len);
    assert_int_equal(check(&want_rsa2048, bad, len), CAPF_E_SPKI_DER);
    /* Extra bytes inside the BIT STRING, after RSAPublicKey. */
    len = der_of(g_rsa2048, der, sizeof(der));
    CBS in, spki_body;
    CBS_init(&in, der, len);
    assert_true(CBS_get_asn1(&in, &spki_body, CBS_ASN1_SEQUENCE));
    uint8_t inner[600];
    memcpy(inner, CBS_data(&spki_body) + 15 + 5, 270);        /* RSAPublicKey */
    inner[270] = 0x00;
    len = spki_make(bad, sizeof(bad), oid_rsa, sizeof(oid_rsa), null_der, 2, 0, inner, 271);
    assert_int_equal(check(&want_rsa2048, bad, len), CAPF_E_SPKI_DER);
    len = spki_make(bad, sizeof(bad), oid_rsa, sizeof(oid_rsa), null_der, 2, 0, inner, 270);
    assert_int_equal(check(&want_rsa2048, bad, len), CAPF_OK);
}

static void test_ec_ok(void **state) {
    (void)state;
    const struct { EVP_PKEY *key; capf_curve_t curve; size_t len; } cases[] = {
        {g_p256, CAPF_CURVE_P256, 91}, {g_p384, CAPF_CURVE_P384, 120}, {g_p521, CAPF_CURVE_P521, 158},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t der[200];
        size_t len = der_of(cases[i].key, der, sizeof(der));
        capf_keyspec_t want = {.type = CAPF_KEY_EC, .curve = cases[i].curve};
        assert_int_equal(len, cases[i].len);                     /* sizes of §2.9 */
        check_good(NULL, &want, cases[i].key, der, len);
        /* Every other curve is refused. */
        for (capf_curve_t c = CAPF_CURVE_P256; c <= CAPF_CURVE__MAX; c++) {
            want.curve = c;
            if (c != cases[i].curve)
                assert_int_equal(check(&want, der, len), CAPF_E_SPKI_CURVE);
        }
    }
}

/* A compressed point is the same key: accepted, same hash. */
static void test_ec_compressed(void **state) {
    (void)state;
    static const uint8_t p256_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    uint8_t point[80], der[200];
    size_t plen = ec_point(g_p256, POINT_CONVERSION_COMPRESSED, point, sizeof(point));
    assert_int_equal(plen, 33);
    size_t len = ec_spki(der, sizeof(der), p256_params, sizeof(p256_params), point, plen);
    check_good(NULL, &want_p256, g_p256, der, len);
}

static void test_ec_curves_refused(void **state) {
    (void)state;
    uint8_t der[200], point[80];
    size_t len, plen = ec_point(g_p256, POINT_CONVERSION_UNCOMPRESSED, point, sizeof(point));
    /* P-224: a curve BoringSSL knows, not one CAPF uses. */
    len = der_of(g_p224, der, sizeof(der));
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_CURVE);
    /* secp256k1 (1.3.132.0.10): unknown to both. */
    static const uint8_t k1[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a};
    len = ec_spki(der, sizeof(der), k1, sizeof(k1), point, plen);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_CURVE);
    /* NULL parameters, absent parameters, explicit (specifiedCurve) ones. */
    static const uint8_t null_der[] = {0x05, 0x00};
    len = ec_spki(der, sizeof(der), null_der, sizeof(null_der), point, plen);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_CURVE);
    len = ec_spki(der, sizeof(der), NULL, 0, point, plen);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_CURVE);
    static const uint8_t explicit_params[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    len = ec_spki(der, sizeof(der), explicit_params, sizeof(explicit_params), point, plen);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_CURVE);
    /* The right OID followed by something else. */
    static const uint8_t p256_extra[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
                                         0x05, 0x00};
    len = ec_spki(der, sizeof(der), p256_extra, sizeof(p256_extra), point, plen);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_CURVE);
}

static void test_ec_bad_points(void **state) {
    (void)state;
    static const uint8_t p256_params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
    uint8_t der[200], point[80], bad[80];
    size_t len, plen = ec_point(g_p256, POINT_CONVERSION_UNCOMPRESSED, point, sizeof(point));
    /* Off the curve: change Y. */
    memcpy(bad, point, plen);
    bad[plen - 1] ^= 0x01;
    len = ec_spki(der, sizeof(der), p256_params, sizeof(p256_params), bad, plen);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_POINT);
    /* Point at infinity, encoded as a single 00. */
    static const uint8_t inf[] = {0x00};
    len = ec_spki(der, sizeof(der), p256_params, sizeof(p256_params), inf, 1);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_POINT);
    /* Wrong length, unknown form byte, empty. */
    len = ec_spki(der, sizeof(der), p256_params, sizeof(p256_params), point, plen - 1);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_POINT);
    memcpy(bad, point, plen);
    bad[0] = 0x05;
    len = ec_spki(der, sizeof(der), p256_params, sizeof(p256_params), bad, plen);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_POINT);
    len = ec_spki(der, sizeof(der), p256_params, sizeof(p256_params), NULL, 0);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_POINT);
    /* X not on the curve in compressed form: try X values until one fails. */
    uint8_t comp[33];
    size_t clen = ec_point(g_p256, POINT_CONVERSION_COMPRESSED, comp, sizeof(comp));
    bool refused = false;
    for (int i = 0; i < 16 && !refused; i++) {
        comp[clen - 1] ^= (uint8_t)(1 + i);
        len = ec_spki(der, sizeof(der), p256_params, sizeof(p256_params), comp, clen);
        capf_err_t err = check(&want_p256, der, len);
        assert_true(err == CAPF_OK || err == CAPF_E_SPKI_POINT);
        refused = err == CAPF_E_SPKI_POINT;
    }
    assert_true(refused);
}

/* The requested key type must match (N7 "wrong algorithm"). */
static void test_type_mismatch(void **state) {
    (void)state;
    uint8_t der[600];
    size_t len = der_of(g_rsa2048, der, sizeof(der));
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_TYPE);
    len = der_of(g_p256, der, sizeof(der));
    assert_int_equal(check(&want_rsa2048, der, len), CAPF_E_SPKI_TYPE);
    /* Ed25519 (1.3.101.112), key bytes random. */
    static const uint8_t oid_ed25519[] = {0x2b, 0x65, 0x70};
    uint8_t raw[32];
    assert_true(RAND_bytes(raw, sizeof(raw)));
    len = spki_make(der, sizeof(der), oid_ed25519, sizeof(oid_ed25519), NULL, 0, 0, raw, 32);
    assert_int_equal(check(&want_rsa2048, der, len), CAPF_E_SPKI_ALG);
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_ALG);
}

/* Not an SPKI at all (N7: trailing bytes, PKCS#10, empty, garbage). */
static void test_garbage(void **state) {
    (void)state;
    uint8_t der[600], junk[256];
    size_t len = der_of(g_p256, der, sizeof(der));
    assert_int_equal(check(&want_p256, NULL, 0), CAPF_E_SPKI_DER);
    /* Every truncation of a good value. */
    for (size_t i = 0; i < len; i++)
        assert_int_not_equal(check(&want_p256, der, i), CAPF_OK);
    der[len] = 0x00;
    assert_int_equal(check(&want_p256, der, len + 1), CAPF_E_SPKI_DER);
    /* BER indefinite length instead of DER. */
    der[1] = 0x80;
    assert_int_equal(check(&want_p256, der, len), CAPF_E_SPKI_DER);
    assert_true(RAND_bytes(junk, sizeof(junk)));
    junk[0] = 0x04;                                  /* never a SEQUENCE */
    assert_int_equal(check(&want_p256, junk, sizeof(junk)), CAPF_E_SPKI_DER);
    /* A whole PKCS#10 request where the bare SPKI belongs. */
    uint8_t *csr;
    size_t csr_len;
    tk_csr_req(g_rsa2048, EVP_sha256(), "SEP001122334455", NULL, &csr, &csr_len);
    assert_int_equal(check(&want_rsa2048, csr, csr_len), CAPF_E_SPKI_DER);
    OPENSSL_free(csr);
}

static void test_bad_request(void **state) {
    (void)state;
    uint8_t der[200];
    size_t len = der_of(g_p256, der, sizeof(der));
    const capf_keyspec_t bad_type = {.type = (capf_key_type_t)2};
    const capf_keyspec_t bad_curve = {.type = CAPF_KEY_EC, .curve = (capf_curve_t)3};
    assert_int_equal(check(&bad_type, der, len), CAPF_E_ARG);
    assert_int_equal(check(&bad_curve, der, len), CAPF_E_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rsa2048_ok),
        cmocka_unit_test(test_rsa_sizes),
        cmocka_unit_test(test_rsa_exponent),
        cmocka_unit_test(test_rsa_bad_der),
        cmocka_unit_test(test_ec_ok),
        cmocka_unit_test(test_ec_compressed),
        cmocka_unit_test(test_ec_curves_refused),
        cmocka_unit_test(test_ec_bad_points),
        cmocka_unit_test(test_type_mismatch),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_bad_request),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
