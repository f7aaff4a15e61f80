/* cx_cert_test: unit tests for cx_cert. A CA and leaves are built with
 * cx_cert_build from keys made at test time, then parsed back with
 * BoringSSL's X509 code (d2i_X509, X509_get_ext_d2i, X509_verify) and,
 * when the openssl CLI is installed, checked with `openssl verify` and
 * `openssl pkcs7 -print_certs`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>

#include "crypto/cx_cert.h"
#include "crypto/cx_testkit.h"

/* test_ca_t: a CA built by the code under test. */
typedef struct {
    EVP_PKEY *key;
    uint8_t *der;
    size_t der_len;
    cx_issuer_t iss;
} test_ca_t;

static test_ca_t g_ec_ca, g_rsa_ca;
static EVP_PKEY *g_leaf_p256;

/* spki_of marshals the public half of `key` (OPENSSL_free the result). */
static void spki_of(const EVP_PKEY *key, uint8_t **out, size_t *out_len) {
    CBB cbb;
    if (!CBB_init(&cbb, 512) || !EVP_marshal_public_key(&cbb, key) ||
        !CBB_finish(&cbb, out, out_len))
        abort();
}

static void ca_make(test_ca_t *ca, EVP_PKEY *key, const char *cn) {
    uint8_t *spki, *name, serial[CX_SERIAL_LEN];
    size_t spki_len, name_len;
    CBB cbb;
    time_t now = time(NULL);

    ca->key = key;
    spki_of(key, &spki, &spki_len);
    assert_true(CBB_init(&cbb, 128));
    assert_int_equal(cx_name_build(&cbb, "Stampede Test", cn), CX_OK);
    assert_true(CBB_finish(&cbb, &name, &name_len));
    cx_issuer_t self = {.key = key};
    cx_tbs_t tbs = {
        .not_before = now - 300,
        .not_after = now + 3650 * 86400LL,
        .key_usage = CX_KU_DIGITAL_SIGNATURE | CX_KU_KEY_CERT_SIGN | CX_KU_CRL_SIGN,
        .is_ca = true,
    };
    CBS_init(&self.subject, name, name_len);
    CBS_init(&tbs.subject, name, name_len);
    CBS_init(&tbs.spki, spki, spki_len);
    CBS_init(&tbs.san, NULL, 0);
    assert_int_equal(cx_cert_ski(self.ski, &tbs.spki), CX_OK);
    assert_true(CBB_init(&cbb, 1024));
    assert_int_equal(cx_cert_build(&cbb, serial, &self, &tbs), CX_OK);
    assert_true(CBB_finish(&cbb, &ca->der, &ca->der_len));
    OPENSSL_free(spki);
    OPENSSL_free(name);
    /* The issuer view points into the CA certificate, as cx_ca does it. */
    CBS ca_spki;
    assert_int_equal(cx_cert_parse_basic(ca->der, ca->der_len, &ca->iss.subject, &ca_spki,
                                         NULL, NULL), CX_OK);
    assert_int_equal(cx_cert_ski(ca->iss.ski, &ca_spki), CX_OK);
    ca->iss.key = key;
}

static int setup(void **state) {
    (void)state;
    ca_make(&g_ec_ca, tk_ec_key(NID_X9_62_prime256v1), "EC Test CA");
    ca_make(&g_rsa_ca, tk_rsa_key(2048), "RSA Test CA");
    g_leaf_p256 = tk_ec_key(NID_X9_62_prime256v1);
    return 0;
}

static void ca_free(test_ca_t *ca) {
    EVP_PKEY_free(ca->key);
    OPENSSL_free(ca->der);
}

static int teardown(void **state) {
    (void)state;
    ca_free(&g_ec_ca);
    ca_free(&g_rsa_ca);
    EVP_PKEY_free(g_leaf_p256);
    return 0;
}

static X509 *x509_of(const uint8_t *der, size_t len) {
    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    assert_non_null(x);
    assert_ptr_equal(p, der + len);
    return x;
}

/* leaf_issue issues a leaf for a fresh CSR of `key` under `ca`. */
static X509 *leaf_issue(const test_ca_t *ca, EVP_PKEY *key, const char *san,
                        const cx_leaf_policy_t *pol, uint8_t serial[CX_SERIAL_LEN],
                        X509_REQ **req_out, uint8_t **der_out, size_t *der_len_out) {
    uint8_t *csr_der, *der;
    size_t csr_len, der_len;
    cx_csr_t csr;
    CBB cbb;

    tk_csr_req(key, EVP_sha256(), "SEP001122334455", san, &csr_der, &csr_len);
    assert_int_equal(cx_csr_parse(&csr, csr_der, csr_len), CX_OK);
    assert_int_equal(cx_csr_verify(&csr, NULL), CX_OK);
    assert_true(CBB_init(&cbb, 1024));
    assert_int_equal(cx_cert_issue_leaf(&cbb, serial, &ca->iss, &csr, pol, time(NULL)), CX_OK);
    assert_true(CBB_finish(&cbb, &der, &der_len));
    X509 *x = x509_of(der, der_len);
    if (req_out) {
        const uint8_t *p = csr_der;
        *req_out = d2i_X509_REQ(NULL, &p, (long)csr_len);
        assert_non_null(*req_out);
    }
    if (der_out) {
        *der_out = der;
        *der_len_out = der_len;
    } else {
        OPENSSL_free(der);
    }
    OPENSSL_free(csr_der);
    return x;
}

/* ext_bytes returns the extnValue contents of extension `nid`, or NULL. */
static const ASN1_OCTET_STRING *ext_value(X509 *x, int nid, int *critical) {
    int idx = X509_get_ext_by_NID(x, nid, -1);
    if (idx < 0)
        return NULL;
    X509_EXTENSION *ext = X509_get_ext(x, idx);
    *critical = X509_EXTENSION_get_critical(ext);
    return X509_EXTENSION_get_data(ext);
}

static void assert_ext_bytes(X509 *x, int nid, int want_crit, const uint8_t *want,
                             size_t want_len) {
    int crit = -1;
    const ASN1_OCTET_STRING *v = ext_value(x, nid, &crit);
    assert_non_null(v);
    assert_int_equal(crit, want_crit);
    assert_int_equal(ASN1_STRING_length(v), want_len);
    assert_memory_equal(ASN1_STRING_get0_data(v), want, want_len);
}

static void test_ca_certificate(void **state) {
    (void)state;
    test_ca_t *cas[] = {&g_ec_ca, &g_rsa_ca};
    for (size_t i = 0; i < 2; i++) {
        X509 *x = x509_of(cas[i]->der, cas[i]->der_len);
        int crit = -1;
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
        assert_non_null(bc);
        assert_int_equal(crit, 1);
        assert_true(bc->ca);
        assert_non_null(bc->pathlen);
        assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
        BASIC_CONSTRAINTS_free(bc);
        /* keyUsage digitalSignature(0) keyCertSign(5) cRLSign(6): 03 02 01 86 */
        static const uint8_t ku[] = {0x03, 0x02, 0x01, 0x86};
        assert_ext_bytes(x, NID_key_usage, 1, ku, sizeof(ku));
        assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN |
                                                    KU_CRL_SIGN);
        assert_int_equal(X509_get_ext_by_NID(x, NID_ext_key_usage, -1), -1);
        assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
        assert_int_equal(X509_get_version(x), 2);
        assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
        assert_int_equal(X509_verify(x, cas[i]->key), 1);
        assert_int_equal(X509_check_ca(x), 1);
        /* AKI = SKI for a self-signed CA. */
        const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
        const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
        assert_non_null(ski);
        assert_non_null(aki);
        assert_int_equal(ASN1_STRING_length(ski), 20);
        assert_memory_equal(ASN1_STRING_get0_data(ski), cas[i]->iss.ski, 20);
        assert_int_equal(ASN1_OCTET_STRING_cmp(ski, aki), 0);
        int want_sig = i == 0 ? NID_ecdsa_with_SHA256 : NID_sha256WithRSAEncryption;
        assert_int_equal(X509_get_signature_nid(x), want_sig);
        X509_free(x);
    }
}

static void test_leaf_from_csr(void **state) {
    (void)state;
    test_ca_t *cas[] = {&g_ec_ca, &g_rsa_ca};
    EVP_PKEY *rsa_leaf = tk_rsa_key(2048);
    EVP_PKEY *leaf_keys[] = {g_leaf_p256, rsa_leaf};
    cx_leaf_policy_t pol = {.validity_days = 365, .backdate_s = 600};
    for (size_t i = 0; i < 2; i++) {
        for (size_t k = 0; k < 2; k++) {
            uint8_t serial[CX_SERIAL_LEN];
            X509_REQ *req;
            time_t now = time(NULL);
            X509 *x = leaf_issue(cas[i], leaf_keys[k], NULL, &pol, serial, &req, NULL, NULL);
            assert_int_equal(X509_verify(x, cas[i]->key), 1);
            assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x),
                                           X509_REQ_get_subject_name(req)), 0);
            X509 *cax = x509_of(cas[i]->der, cas[i]->der_len);
            assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(x),
                                           X509_get_subject_name(cax)), 0);
            assert_int_equal(X509_check_issued(cax, x), X509_V_OK);
            EVP_PKEY *pub = X509_get_pubkey(x);
            assert_int_equal(EVP_PKEY_cmp(pub, leaf_keys[k]), 1);
            EVP_PKEY_free(pub);
            /* Serial: 16 bytes, positive, equal to what was returned. */
            const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
            assert_int_equal(ASN1_STRING_type(sn), V_ASN1_INTEGER);
            assert_int_equal(ASN1_STRING_length(sn), CX_SERIAL_LEN);
            assert_memory_equal(ASN1_STRING_get0_data(sn), serial, CX_SERIAL_LEN);
            /* basicConstraints CA:FALSE critical, empty SEQUENCE. */
            static const uint8_t bc[] = {0x30, 0x00};
            assert_ext_bytes(x, NID_basic_constraints, 1, bc, sizeof(bc));
            assert_int_equal(X509_check_ca(x), 0);
            /* keyUsage digitalSignature(0) keyEncipherment(2): 03 02 05 a0 */
            static const uint8_t ku[] = {0x03, 0x02, 0x05, 0xa0};
            assert_ext_bytes(x, NID_key_usage, 1, ku, sizeof(ku));
            assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
            assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
            /* SKI from the leaf key, AKI = CA SKI. */
            uint8_t *spki;
            size_t spki_len;
            uint8_t ski[20];
            CBS cbs;
            spki_of(leaf_keys[k], &spki, &spki_len);
            CBS_init(&cbs, spki, spki_len);
            assert_int_equal(cx_cert_ski(ski, &cbs), CX_OK);
            assert_memory_equal(ASN1_STRING_get0_data(X509_get0_subject_key_id(x)), ski, 20);
            assert_memory_equal(ASN1_STRING_get0_data(X509_get0_authority_key_id(x)),
                                cas[i]->iss.ski, 20);
            OPENSSL_free(spki);
            /* Validity. */
            int days, secs;
            assert_true(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x),
                                       X509_get0_notAfter(x)));
            assert_int_equal((int64_t)days * 86400 + secs, 365 * 86400LL + 600);
            assert_int_equal(X509_cmp_time(X509_get0_notBefore(x), &now), -1);
            assert_int_equal(X509_cmp_time(X509_get0_notAfter(x), &now), 1);
            X509_free(cax);
            X509_REQ_free(req);
            X509_free(x);
        }
    }
    EVP_PKEY_free(rsa_leaf);
}

static void test_leaf_san_and_eku(void **state) {
    (void)state;
    uint8_t serial[CX_SERIAL_LEN];
    cx_leaf_policy_t pol = {.validity_days = 30, .copy_san = true, .server_auth = true};
    X509 *x = leaf_issue(&g_ec_ca, g_leaf_p256, "DNS:phone.example,IP:10.1.2.3", &pol, serial,
                         NULL, NULL, NULL);
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    assert_non_null(gens);
    assert_int_equal(crit, 0);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    GENERAL_NAME *dns = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(dns->type, GEN_DNS);
    assert_int_equal(ASN1_STRING_length(dns->d.dNSName), 13);
    assert_memory_equal(ASN1_STRING_get0_data(dns->d.dNSName), "phone.example", 13);
    assert_int_equal(sk_GENERAL_NAME_value(gens, 1)->type, GEN_IPADD);
    GENERAL_NAMES_free(gens);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT | XKU_SSL_SERVER);
    assert_int_equal(X509_verify(x, g_ec_ca.key), 1);
    X509_free(x);

    pol.copy_san = false;
    pol.server_auth = false;
    x = leaf_issue(&g_ec_ca, g_leaf_p256, "DNS:phone.example", &pol, serial, NULL, NULL, NULL);
    assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    X509_free(x);
}

/* A leaf never outlives its issuer: notAfter is capped at iss->not_after. */
static void test_leaf_capped_by_issuer(void **state) {
    (void)state;
    test_ca_t ca = g_ec_ca;
    int64_t now = (int64_t)time(NULL), na;
    cx_leaf_policy_t pol = {.validity_days = 730, .backdate_s = 300};
    uint8_t serial[CX_SERIAL_LEN], *der;
    size_t der_len;
    ca.iss.not_after = now + 10 * 86400;
    X509 *x = leaf_issue(&ca, g_leaf_p256, NULL, &pol, serial, NULL, &der, &der_len);
    assert_int_equal(cx_cert_parse_basic(der, der_len, NULL, NULL, NULL, &na), CX_OK);
    assert_int_equal(na, ca.iss.not_after);
    X509_free(x);
    OPENSSL_free(der);
    ca.iss.not_after = now + 10000 * 86400LL; /* far away: the policy decides */
    x = leaf_issue(&ca, g_leaf_p256, NULL, &pol, serial, NULL, &der, &der_len);
    assert_int_equal(cx_cert_parse_basic(der, der_len, NULL, NULL, NULL, &na), CX_OK);
    assert_true(na <= now + 730 * 86400LL + 5 && na >= now + 730 * 86400LL - 5);
    X509_free(x);
    OPENSSL_free(der);
}

static void test_serials(void **state) {
    (void)state;
    uint8_t *spki;
    size_t spki_len;
    spki_of(g_leaf_p256, &spki, &spki_len);
    cx_tbs_t tbs = {.not_before = 0, .not_after = 86400, .key_usage = CX_KU_DIGITAL_SIGNATURE};
    tbs.subject = g_ec_ca.iss.subject;
    CBS_init(&tbs.spki, spki, spki_len);
    CBS_init(&tbs.san, NULL, 0);
    uint8_t prev[CX_SERIAL_LEN] = {0};
    for (int i = 0; i < 200; i++) {
        uint8_t serial[CX_SERIAL_LEN], buf[2048];
        size_t len;
        CBB cbb;
        CBS sn;
        assert_true(CBB_init_fixed(&cbb, buf, sizeof(buf)));
        assert_int_equal(cx_cert_build(&cbb, serial, &g_ec_ca.iss, &tbs), CX_OK);
        uint8_t *out;
        assert_true(CBB_finish(&cbb, &out, &len));
        assert_int_equal(cx_cert_parse_basic(buf, len, NULL, NULL, &sn, NULL), CX_OK);
        assert_int_equal(CBS_len(&sn), CX_SERIAL_LEN);
        assert_memory_equal(CBS_data(&sn), serial, CX_SERIAL_LEN);
        assert_true(serial[0] >= 0x01 && serial[0] <= 0x7f);
        assert_memory_not_equal(serial, prev, CX_SERIAL_LEN);
        memcpy(prev, serial, CX_SERIAL_LEN);
    }
    OPENSSL_free(spki);
}

/* build_with_times builds a certificate valid [nb, na] and parses it back. */
static X509 *build_with_times(int64_t nb, int64_t na, int64_t *parsed_na) {
    uint8_t *spki, serial[CX_SERIAL_LEN], *der;
    size_t spki_len, der_len;
    CBB cbb;
    spki_of(g_leaf_p256, &spki, &spki_len);
    cx_tbs_t tbs = {.not_before = nb, .not_after = na, .key_usage = CX_KU_DIGITAL_SIGNATURE};
    CBS_init(&tbs.subject, CBS_data(&g_ec_ca.iss.subject), CBS_len(&g_ec_ca.iss.subject));
    CBS_init(&tbs.spki, spki, spki_len);
    CBS_init(&tbs.san, NULL, 0);
    assert_true(CBB_init(&cbb, 1024));
    assert_int_equal(cx_cert_build(&cbb, serial, &g_ec_ca.iss, &tbs), CX_OK);
    assert_true(CBB_finish(&cbb, &der, &der_len));
    assert_int_equal(cx_cert_parse_basic(der, der_len, NULL, NULL, NULL, parsed_na), CX_OK);
    X509 *x = x509_of(der, der_len);
    OPENSSL_free(der);
    OPENSSL_free(spki);
    return x;
}

static void test_time_encoding(void **state) {
    (void)state;
    int64_t na;
    /* 2049-12-31T23:59:59Z is the last UTCTime; 2050-01-01 is GeneralizedTime. */
    X509 *x = build_with_times(1700000000, 2524607999LL, &na);
    assert_int_equal(na, 2524607999LL);
    assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_UTCTIME);
    assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_UTCTIME);
    assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notAfter(x)), "491231235959Z", 13);
    assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notBefore(x)), "231114221320Z", 13);
    X509_free(x);
    x = build_with_times(2524608000LL, 2524608000LL + 86400 * 366 + 1, &na);
    assert_int_equal(na, 2524608000LL + 86400 * 366 + 1);
    assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_GENERALIZEDTIME);
    assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notBefore(x)), "20500101000000Z", 15);
    assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notAfter(x)), "20510102000001Z", 15);
    X509_free(x);
    /* Before 1950: GeneralizedTime too; leap day 2000-02-29. */
    x = build_with_times(-631152001LL, 951782400LL, &na);
    assert_int_equal(na, 951782400LL);
    assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notBefore(x)), "19491231235959Z", 15);
    assert_memory_equal(ASN1_STRING_get0_data(X509_get0_notAfter(x)), "000229000000Z", 13);
    X509_free(x);
    /* Out of range or inverted validity. */
    uint8_t serial[CX_SERIAL_LEN];
    CBB cbb;
    cx_tbs_t bad = {.not_before = 10, .not_after = 5};
    bad.subject = g_ec_ca.iss.subject;
    assert_int_equal(cx_cert_parse_basic(g_ec_ca.der, g_ec_ca.der_len, NULL, &bad.spki, NULL,
                                         NULL), CX_OK);
    CBS_init(&bad.san, NULL, 0);
    assert_true(CBB_init(&cbb, 1024));
    assert_int_equal(cx_cert_build(&cbb, serial, &g_ec_ca.iss, &bad), CX_E_CONFIG);
    bad.not_after = 253402300800LL;            /* year 10000 */
    assert_int_equal(cx_cert_build(&cbb, serial, &g_ec_ca.iss, &bad), CX_E_CONFIG);
    CBB_cleanup(&cbb);
}

static void test_other_issuer_keys(void **state) {
    (void)state;
    static const struct { int nid; int sig_nid; } v[] = {
        {NID_secp384r1, NID_ecdsa_with_SHA384},
        {NID_secp521r1, NID_ecdsa_with_SHA512},
    };
    for (size_t i = 0; i < 2; i++) {
        test_ca_t ca;
        ca_make(&ca, tk_ec_key(v[i].nid), "Curve CA");
        X509 *x = x509_of(ca.der, ca.der_len);
        assert_int_equal(X509_get_signature_nid(x), v[i].sig_nid);
        assert_int_equal(X509_verify(x, ca.key), 1);
        X509_free(x);
        ca_free(&ca);
    }
}

static void test_bad_inputs(void **state) {
    (void)state;
    uint8_t serial[CX_SERIAL_LEN], ski[20];
    CBB cbb;
    static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    cx_tbs_t tbs = {.not_before = 0, .not_after = 1};
    tbs.subject = g_ec_ca.iss.subject;
    CBS_init(&tbs.spki, junk, sizeof(junk));
    CBS_init(&tbs.san, NULL, 0);
    assert_int_equal(cx_cert_ski(ski, &tbs.spki), CX_E_CSR_KEY);
    assert_true(CBB_init(&cbb, 64));
    assert_int_equal(cx_cert_build(&cbb, serial, &g_ec_ca.iss, &tbs), CX_E_CSR_KEY);
    cx_issuer_t no_key = g_ec_ca.iss;
    no_key.key = NULL;
    assert_int_equal(cx_cert_build(&cbb, serial, &no_key, &tbs), CX_E_SIGN);
    CBB_cleanup(&cbb);
    /* A fixed buffer too small for the certificate: CX_E_NOMEM. */
    uint8_t small[64];
    assert_int_equal(cx_cert_parse_basic(g_ec_ca.der, g_ec_ca.der_len, NULL, &tbs.spki,
                                         NULL, NULL), CX_OK);
    assert_true(CBB_init_fixed(&cbb, small, sizeof(small)));
    assert_int_equal(cx_cert_build(&cbb, serial, &g_ec_ca.iss, &tbs), CX_E_NOMEM);
    CBB_cleanup(&cbb);
    /* cx_cert_parse_basic refuses prefixes and trailing bytes. */
    for (size_t n = 0; n < g_ec_ca.der_len; n++)
        assert_int_equal(cx_cert_parse_basic(g_ec_ca.der, n, NULL, NULL, NULL, NULL),
                         CX_E_CERT);
    uint8_t *longer = OPENSSL_malloc(g_ec_ca.der_len + 1);
    memcpy(longer, g_ec_ca.der, g_ec_ca.der_len);
    longer[g_ec_ca.der_len] = 0;
    assert_int_equal(cx_cert_parse_basic(longer, g_ec_ca.der_len + 1, NULL, NULL, NULL, NULL),
                     CX_E_CERT);
    OPENSSL_free(longer);
}

static void test_name_build(void **state) {
    (void)state;
    uint8_t *der;
    size_t len;
    CBB cbb;
    char buf[64];
    assert_true(CBB_init(&cbb, 64));
    assert_int_equal(cx_name_build(&cbb, "Acme", "Stampede CA"), CX_OK);
    assert_true(CBB_finish(&cbb, &der, &len));
    const uint8_t *p = der;
    X509_NAME *name = d2i_X509_NAME(NULL, &p, (long)len);
    assert_non_null(name);
    assert_int_equal(X509_NAME_entry_count(name), 2);
    assert_int_equal(X509_NAME_get_text_by_NID(name, NID_organizationName, buf, sizeof(buf)), 4);
    assert_string_equal(buf, "Acme");
    assert_int_equal(X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof(buf)), 11);
    assert_string_equal(buf, "Stampede CA");
    X509_NAME_free(name);
    OPENSSL_free(der);
    /* Without O. */
    assert_true(CBB_init(&cbb, 64));
    assert_int_equal(cx_name_build(&cbb, NULL, "x"), CX_OK);
    assert_true(CBB_finish(&cbb, &der, &len));
    static const uint8_t want[] = {0x30, 0x0c, 0x31, 0x0a, 0x30, 0x08, 0x06, 0x03,
                                   0x55, 0x04, 0x03, 0x0c, 0x01, 'x'};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(der, want, sizeof(want));
    OPENSSL_free(der);
}

static void test_pkcs7_round_trip(void **state) {
    (void)state;
    uint8_t serial[CX_SERIAL_LEN], *leaf_der, *p7;
    size_t leaf_len, p7_len;
    cx_leaf_policy_t pol = {.validity_days = 1};
    X509 *leaf = leaf_issue(&g_ec_ca, g_leaf_p256, NULL, &pol, serial, NULL, &leaf_der,
                            &leaf_len);
    CBS certs[2];
    CBB cbb;
    CBS_init(&certs[0], leaf_der, leaf_len);
    CBS_init(&certs[1], g_ec_ca.der, g_ec_ca.der_len);
    assert_true(CBB_init(&cbb, 2048));
    assert_int_equal(cx_pkcs7_certs_only(&cbb, certs, 2), CX_OK);
    assert_true(CBB_finish(&cbb, &p7, &p7_len));

    STACK_OF(X509) *sk = sk_X509_new_null();
    CBS in;
    CBS_init(&in, p7, p7_len);
    assert_true(PKCS7_get_certificates(sk, &in));
    assert_int_equal(CBS_len(&in), 0);
    assert_int_equal(sk_X509_num(sk), 2);
    /* a DER SET OF: ordered by encoding, whatever order they were given in */
    X509 *ca = x509_of(g_ec_ca.der, g_ec_ca.der_len);
    /* X.690 11.6: compared as octet strings, the shorter padded with zeros */
    size_t common = leaf_len < g_ec_ca.der_len ? leaf_len : g_ec_ca.der_len;
    int cmp = memcmp(leaf_der, g_ec_ca.der, common);
    int leaf_first = cmp < 0 || (cmp == 0 && leaf_len <= g_ec_ca.der_len);
    assert_int_equal(X509_cmp(sk_X509_value(sk, leaf_first ? 0 : 1), leaf), 0);
    assert_int_equal(X509_cmp(sk_X509_value(sk, leaf_first ? 1 : 0), ca), 0);
    sk_X509_pop_free(sk, X509_free);

    const uint8_t *pp = p7;
    PKCS7 *pkcs7 = d2i_PKCS7(NULL, &pp, (long)p7_len);
    assert_non_null(pkcs7);
    assert_ptr_equal(pp, p7 + p7_len);
    assert_true(PKCS7_type_is_signed(pkcs7));
    assert_int_equal(sk_X509_num(pkcs7->d.sign->cert), 2);
    PKCS7_free(pkcs7);

    /* No certificates at all is still a well-formed structure. */
    uint8_t *empty;
    size_t empty_len;
    assert_true(CBB_init(&cbb, 64));
    assert_int_equal(cx_pkcs7_certs_only(&cbb, NULL, 0), CX_OK);
    assert_true(CBB_finish(&cbb, &empty, &empty_len));
    sk = sk_X509_new_null();
    CBS_init(&in, empty, empty_len);
    assert_true(PKCS7_get_certificates(sk, &in));
    assert_int_equal(sk_X509_num(sk), 0);
    sk_X509_free(sk);
    OPENSSL_free(empty);

    X509_free(ca);
    X509_free(leaf);
    OPENSSL_free(leaf_der);
    OPENSSL_free(p7);
}

/* write_file writes `len` bytes to `path`. */
static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void write_pem(const char *path, const uint8_t *der, size_t len) {
    BIO *bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_true(PEM_write_bio(bio, "CERTIFICATE", "", der, (long)len) > 0);
    BIO_free(bio);
}

/* test_openssl_cli: the openssl command line tool (if any) accepts our
 * certificates and PKCS#7. Skipped when it is not installed. */
static void test_openssl_cli(void **state) {
    (void)state;
    if (system("openssl version >/dev/null 2>&1") != 0) {
        skip();
        return;
    }
    char dir[] = "/tmp/cx_cert_test.XXXXXX", cmd[1024], path[256];
    assert_non_null(mkdtemp(dir));
    test_ca_t *cas[] = {&g_ec_ca, &g_rsa_ca};
    for (size_t i = 0; i < 2; i++) {
        uint8_t serial[CX_SERIAL_LEN], *leaf_der, *p7;
        size_t leaf_len, p7_len;
        cx_leaf_policy_t pol = {.validity_days = 30, .copy_san = true, .server_auth = true};
        X509 *x = leaf_issue(cas[i], g_leaf_p256, "DNS:phone.example", &pol, serial, NULL,
                             &leaf_der, &leaf_len);
        X509_free(x);
        snprintf(path, sizeof(path), "%s/ca.pem", dir);
        write_pem(path, cas[i]->der, cas[i]->der_len);
        snprintf(path, sizeof(path), "%s/leaf.pem", dir);
        write_pem(path, leaf_der, leaf_len);
        snprintf(cmd, sizeof(cmd),
                 "openssl verify -x509_strict -purpose sslclient -CAfile %s/ca.pem "
                 "%s/leaf.pem >/dev/null 2>&1", dir, dir);
        assert_int_equal(system(cmd), 0);
        CBS certs[2];
        CBB cbb;
        CBS_init(&certs[0], leaf_der, leaf_len);
        CBS_init(&certs[1], cas[i]->der, cas[i]->der_len);
        assert_true(CBB_init(&cbb, 2048));
        assert_int_equal(cx_pkcs7_certs_only(&cbb, certs, 2), CX_OK);
        assert_true(CBB_finish(&cbb, &p7, &p7_len));
        snprintf(path, sizeof(path), "%s/certs.p7", dir);
        write_file(path, p7, p7_len);
        snprintf(cmd, sizeof(cmd),
                 "openssl pkcs7 -inform DER -in %s/certs.p7 -print_certs 2>/dev/null | "
                 "grep -c 'BEGIN CERTIFICATE' | grep -qx 2", dir);
        assert_int_equal(system(cmd), 0);
        OPENSSL_free(p7);
        OPENSSL_free(leaf_der);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ca_certificate),
        cmocka_unit_test(test_leaf_from_csr),
        cmocka_unit_test(test_leaf_san_and_eku),
        cmocka_unit_test(test_leaf_capped_by_issuer),
        cmocka_unit_test(test_serials),
        cmocka_unit_test(test_time_encoding),
        cmocka_unit_test(test_other_issuer_keys),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_name_build),
        cmocka_unit_test(test_pkcs7_round_trip),
        cmocka_unit_test(test_openssl_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
