/* cx_lsc_test: unit tests for cx_lsc (the CAPF LSC profile, §3.3).
 * Issuer CAs are built with cx_cert_build from keys made at test time; the
 * CA subject has CN, OU, O, L, ST, C and emailAddress, so the copy rule
 * (C/ST/L/O/OU only, issuer order, byte for byte) is visible. LSCs for
 * RSA-2048/4096 and P-256/384/521 SPKIs (generated here, never hard-coded)
 * are parsed back with BoringSSL's X509 code, and the subject and issuer
 * bytes are compared with a CBS walk written for the test; when the openssl
 * CLI is installed, `openssl verify -x509_strict` checks them too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/digest.h>
#include <openssl/pem.h>

#include "crypto/cx_lsc.h"
#include "crypto/cx_testkit.h"

/* test_ca_t: an issuing CA built by the code under test. */
typedef struct {
    EVP_PKEY *key;
    uint8_t *der;
    size_t der_len;
    cx_issuer_t iss;
} test_ca_t;

/* The leaf key types of the profile. */
enum { K_RSA2048, K_RSA4096, K_P256, K_P384, K_P521, K__COUNT };
static const char *const k_names[K__COUNT] = {"RSA-2048", "RSA-4096", "P-256", "P-384",
                                              "P-521"};

static test_ca_t g_rsa_ca, g_ec_ca;
static EVP_PKEY *g_keys[K__COUNT];

#define DEVICE "SEPB000B4BA0AEE"

static const uint8_t ku_ds[] = {0x03, 0x02, 0x07, 0x80};     /* digitalSignature */
static const uint8_t ku_ds_ke[] = {0x03, 0x02, 0x05, 0xa0};  /* + keyEncipherment */
static const uint8_t bc_leaf[] = {0x30, 0x00};               /* CA:FALSE */
/* SEQUENCE { serverAuth, clientAuth, ipsecEndSystem } */
static const uint8_t eku_lsc[] = {
    0x30, 0x1e, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
    0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
    0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x05};

static void spki_of(const EVP_PKEY *key, uint8_t **out, size_t *out_len) {
    CBB cbb;
    if (!CBB_init(&cbb, 600) || !EVP_marshal_public_key(&cbb, key) ||
        !CBB_finish(&cbb, out, out_len))
        abort();
}

/* capf_name_der writes the CAPF-like issuer subject (DER order: CN, OU, O,
 * L, ST, C, emailAddress) with X509_NAME. OPENSSL_free the result. */
static void capf_name_der(uint8_t **der, size_t *len) {
    static const char *const attrs[][2] = {
        {"CN", "CAPF-a7fb32bf"}, {"OU", "IST"}, {"O", "stormin"}, {"L", "Melbourne"},
        {"ST", "VIC"}, {"C", "AU"}, {"emailAddress", "capf@example.com"},
    };
    X509_NAME *name = X509_NAME_new();
    assert_non_null(name);
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
        assert_true(X509_NAME_add_entry_by_txt(name, attrs[i][0], MBSTRING_UTF8,
                                               (const uint8_t *)attrs[i][1], -1, -1, 0));
    *der = NULL;
    int n = i2d_X509_NAME(name, der);
    assert_true(n > 0);
    *len = (size_t)n;
    X509_NAME_free(name);
}

/* ca_make self-signs a CA with subject `name` (a Name TLV) and `key`. */
static void ca_make(test_ca_t *ca, EVP_PKEY *key, const uint8_t *name, size_t name_len) {
    uint8_t *spki, serial[CX_SERIAL_LEN];
    size_t spki_len;
    CBB cbb;
    int64_t now = (int64_t)time(NULL);
    CBS ca_spki;

    ca->key = key;
    spki_of(key, &spki, &spki_len);
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
    assert_true(CBB_init(&cbb, 2048));
    assert_int_equal(cx_cert_build(&cbb, serial, &self, &tbs), CX_OK);
    assert_true(CBB_finish(&cbb, &ca->der, &ca->der_len));
    OPENSSL_free(spki);
    /* The issuer view points into the CA certificate, as cx_ca does it. */
    assert_int_equal(cx_cert_parse_basic(ca->der, ca->der_len, &ca->iss.subject, &ca_spki,
                                         NULL, NULL), CX_OK);
    assert_int_equal(cx_cert_ski(ca->iss.ski, &ca_spki), CX_OK);
    ca->iss.key = key;
    ca->iss.not_after = 0;
}

static void ca_free(test_ca_t *ca) {
    EVP_PKEY_free(ca->key);
    OPENSSL_free(ca->der);
}

static int setup(void **state) {
    (void)state;
    uint8_t *name;
    size_t name_len;
    capf_name_der(&name, &name_len);
    ca_make(&g_rsa_ca, tk_rsa_key(2048), name, name_len);
    ca_make(&g_ec_ca, tk_ec_key(NID_X9_62_prime256v1), name, name_len);
    OPENSSL_free(name);
    g_keys[K_RSA2048] = tk_rsa_key(2048);
    g_keys[K_RSA4096] = tk_rsa_key(4096);
    g_keys[K_P256] = tk_ec_key(NID_X9_62_prime256v1);
    g_keys[K_P384] = tk_ec_key(NID_secp384r1);
    g_keys[K_P521] = tk_ec_key(NID_secp521r1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    ca_free(&g_rsa_ca);
    ca_free(&g_ec_ca);
    for (size_t k = 0; k < K__COUNT; k++)
        EVP_PKEY_free(g_keys[k]);
    return 0;
}

static X509 *x509_of(const uint8_t *der, size_t len) {
    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    assert_non_null(x);
    assert_ptr_equal(p, der + len);
    return x;
}

/* lsc_try runs cx_lsc_issue for `key` into a growing CBB. On CX_OK the DER
 * goes to *der (OPENSSL_free); on failure it checks nothing was written
 * when the inputs were refused. */
static cx_err_t lsc_try(const cx_issuer_t *iss, const EVP_PKEY *key, const char *device,
                        const char *pid, const char *sn, const cx_lsc_policy_t *pol,
                        int64_t now, uint8_t serial[CX_SERIAL_LEN], uint8_t **der,
                        size_t *der_len) {
    uint8_t *spki;
    size_t spki_len;
    CBB cbb;
    CBS cbs;
    spki_of(key, &spki, &spki_len);
    CBS_init(&cbs, spki, spki_len);
    assert_true(CBB_init(&cbb, 256));
    cx_err_t err = cx_lsc_issue(&cbb, serial, iss, &cbs, device, pid, sn, pol, now);
    if (err == CX_OK) {
        assert_true(CBB_finish(&cbb, der, der_len));
    } else {
        if (err == CX_E_CONFIG || err == CX_E_CSR_KEY || err == CX_E_CERT)
            assert_int_equal(CBB_len(&cbb), 0);
        CBB_cleanup(&cbb);
    }
    OPENSSL_free(spki);
    return err;
}

/* lsc_issue: lsc_try that must succeed; returns the parsed certificate. */
static X509 *lsc_issue(const cx_issuer_t *iss, const EVP_PKEY *key, const char *device,
                       const char *pid, const char *sn, const cx_lsc_policy_t *pol,
                       int64_t now, uint8_t serial[CX_SERIAL_LEN], uint8_t **der_out,
                       size_t *der_len_out) {
    uint8_t *der;
    size_t der_len;
    assert_int_equal(lsc_try(iss, key, device, pid, sn, pol, now, serial, &der, &der_len),
                     CX_OK);
    X509 *x = x509_of(der, der_len);
    if (der_out) {
        *der_out = der;
        *der_len_out = der_len;
    } else {
        OPENSSL_free(der);
    }
    return x;
}

/* atv_t: one AttributeTypeAndValue of a Name, found by the test's own walk. */
typedef struct {
    CBS tlv;            /* the whole ATV element */
    size_t rdn;         /* index of the RDN it sits in */
    char oid[40];       /* dotted type */
    unsigned tag;       /* value tag */
    CBS value;          /* value contents */
} atv_t;

#define ATV_MAX 16

/* name_atvs lists the ATVs of the Name TLV `name` in order; returns count. */
static size_t name_atvs(const uint8_t *name, size_t name_len, atv_t *out) {
    CBS in, rdns, rdn, seq, oid;
    size_t n = 0, r = 0;
    CBS_init(&in, name, name_len);
    assert_true(CBS_get_asn1(&in, &rdns, CBS_ASN1_SEQUENCE));
    assert_int_equal(CBS_len(&in), 0);
    for (; CBS_len(&rdns) != 0; r++) {
        assert_true(CBS_get_asn1(&rdns, &rdn, CBS_ASN1_SET));
        while (CBS_len(&rdn) != 0) {
            assert_true(n < ATV_MAX);
            atv_t *a = &out[n++];
            assert_true(CBS_get_asn1_element(&rdn, &a->tlv, CBS_ASN1_SEQUENCE));
            seq = a->tlv;
            assert_true(CBS_get_asn1(&seq, &seq, CBS_ASN1_SEQUENCE));
            assert_true(CBS_get_asn1(&seq, &oid, CBS_ASN1_OBJECT));
            assert_true(CBS_get_any_asn1(&seq, &a->value, &a->tag));
            assert_int_equal(CBS_len(&seq), 0);
            char *text = CBS_asn1_oid_to_text(&oid);
            assert_non_null(text);
            assert_true(strlen(text) < sizeof(a->oid));
            strcpy(a->oid, text);
            OPENSSL_free(text);
            a->rdn = r;
        }
    }
    return n;
}

static const char *const copied_types[] = {"2.5.4.6", "2.5.4.8", "2.5.4.7", "2.5.4.10",
                                           "2.5.4.11"};

static bool is_copied_type(const char *oid) {
    for (size_t i = 0; i < 5; i++)
        if (strcmp(oid, copied_types[i]) == 0)
            return true;
    return false;
}

static void assert_value(const atv_t *a, const char *oid, unsigned tag, const char *want) {
    assert_string_equal(a->oid, oid);
    assert_int_equal(a->tag, tag);
    assert_int_equal(CBS_len(&a->value), strlen(want));
    assert_memory_equal(CBS_data(&a->value), want, strlen(want));
}

/* subject_of returns the subject Name DER of `x` (points into `x`). */
static void name_der(X509_NAME *name, const uint8_t **der, size_t *len) {
    assert_true(X509_NAME_get0_der(name, der, len));
}

/* assert_device_subject: subject = the issuer's C/ST/L/O/OU ATVs (bytes,
 * issuer order, one per RDN) then CN=<device> UTF8String, one per RDN. */
static void assert_device_subject(X509 *x, const CBS *issuer, const char *device) {
    atv_t want[ATV_MAX], got[ATV_MAX];
    const uint8_t *der;
    size_t len, nw = 0, n_iss = name_atvs(CBS_data(issuer), CBS_len(issuer), want);
    for (size_t i = 0; i < n_iss; i++)
        if (is_copied_type(want[i].oid))
            want[nw++] = want[i];
    name_der(X509_get_subject_name(x), &der, &len);
    size_t ng = name_atvs(der, len, got);
    assert_int_equal(ng, nw + 1);
    for (size_t i = 0; i < ng; i++)
        assert_int_equal(got[i].rdn, i);
    for (size_t i = 0; i < nw; i++) {
        assert_int_equal(CBS_len(&got[i].tlv), CBS_len(&want[i].tlv));
        assert_memory_equal(CBS_data(&got[i].tlv), CBS_data(&want[i].tlv),
                            CBS_len(&want[i].tlv));
    }
    assert_value(&got[nw], "2.5.4.3", CBS_ASN1_UTF8STRING, device);
}

static void assert_ext_bytes(X509 *x, int nid, int want_crit, const uint8_t *want,
                             size_t want_len) {
    int idx = X509_get_ext_by_NID(x, nid, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_get_ext_by_NID(x, nid, idx), -1);   /* only once */
    X509_EXTENSION *ext = X509_get_ext(x, idx);
    assert_int_equal(X509_EXTENSION_get_critical(ext), want_crit);
    const ASN1_OCTET_STRING *v = X509_EXTENSION_get_data(ext);
    assert_int_equal(ASN1_STRING_length(v), want_len);
    assert_memory_equal(ASN1_STRING_get0_data(v), want, want_len);
}

/* assert_time_is: `t` encodes exactly `want` seconds since the epoch. */
static void assert_time_is(const ASN1_TIME *t, int64_t want) {
    ASN1_TIME *w = ASN1_TIME_set(NULL, (time_t)want);
    int days = -1, secs = -1;
    assert_non_null(w);
    assert_true(ASN1_TIME_diff(&days, &secs, w, t));
    assert_int_equal(days, 0);
    assert_int_equal(secs, 0);
    ASN1_TIME_free(w);
}

static void assert_eku(X509 *x) {
    assert_ext_bytes(x, NID_ext_key_usage, 0, eku_lsc, sizeof(eku_lsc));
    int crit = -1;
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
    assert_non_null(eku);
    assert_int_equal(sk_ASN1_OBJECT_num(eku), 3);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 0)), NID_server_auth);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 1)), NID_client_auth);
    assert_int_equal(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, 2)), NID_ipsecEndSystem);
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
}

static void assert_serial(X509 *x, const uint8_t serial[CX_SERIAL_LEN]) {
    const ASN1_INTEGER *sn = X509_get0_serialNumber(x);
    assert_int_equal(ASN1_STRING_type(sn), V_ASN1_INTEGER);      /* not V_ASN1_NEG_INTEGER */
    assert_true(ASN1_STRING_length(sn) >= 1 && ASN1_STRING_length(sn) <= 20);
    assert_int_equal(ASN1_STRING_length(sn), CX_SERIAL_LEN);
    assert_memory_equal(ASN1_STRING_get0_data(sn), serial, CX_SERIAL_LEN);
    assert_true(serial[0] >= 0x01 && serial[0] <= 0x7f);
}

/* assert_profile checks everything the default profile fixes for one LSC of
 * `key` under `ca` issued at `now` with `pol` (DEVICE style). */
static void assert_profile(X509 *x, const test_ca_t *ca, const EVP_PKEY *key, bool rsa,
                           const cx_lsc_policy_t *pol, int64_t now,
                           const uint8_t serial[CX_SERIAL_LEN]) {
    X509 *cax = x509_of(ca->der, ca->der_len);
    const uint8_t *a, *b;
    size_t a_len, b_len;

    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_serial(x, serial);
    /* Issuer: the CA's subject, byte for byte. */
    name_der(X509_get_issuer_name(x), &a, &a_len);
    name_der(X509_get_subject_name(cax), &b, &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, b_len);
    assert_int_equal(a_len, CBS_len(&ca->iss.subject));
    assert_memory_equal(a, CBS_data(&ca->iss.subject), a_len);
    assert_device_subject(x, &ca->iss.subject, DEVICE);
    /* Validity. */
    int64_t nb = now - (int64_t)pol->backdate_s;
    assert_time_is(X509_get0_notBefore(x), nb);
    assert_time_is(X509_get0_notAfter(x), nb + (int64_t)pol->validity_days * 86400);
    /* Extensions. */
    assert_ext_bytes(x, NID_basic_constraints, 1, bc_leaf, sizeof(bc_leaf));
    assert_int_equal(X509_check_ca(x), 0);
    if (rsa || pol->ec_key_encipherment) {
        assert_ext_bytes(x, NID_key_usage, 1, ku_ds_ke, sizeof(ku_ds_ke));
        assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    } else {
        assert_ext_bytes(x, NID_key_usage, 1, ku_ds, sizeof(ku_ds));
        assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    }
    assert_eku(x);
    uint8_t *spki, ski[20];
    size_t spki_len;
    CBS cbs;
    spki_of(key, &spki, &spki_len);
    CBS_init(&cbs, spki, spki_len);
    assert_int_equal(cx_cert_ski(ski, &cbs), CX_OK);
    OPENSSL_free(spki);
    const ASN1_OCTET_STRING *xski = X509_get0_subject_key_id(x);
    const ASN1_OCTET_STRING *xaki = X509_get0_authority_key_id(x);
    assert_non_null(xski);
    assert_non_null(xaki);
    assert_int_equal(ASN1_STRING_length(xski), 20);
    assert_memory_equal(ASN1_STRING_get0_data(xski), ski, 20);
    assert_int_equal(ASN1_STRING_length(xaki), 20);
    assert_memory_equal(ASN1_STRING_get0_data(xaki), ca->iss.ski, 20);
    if (!pol->san_uri)
        assert_int_equal(X509_get_ext_by_NID(x, NID_subject_alt_name, -1), -1);
    assert_int_equal(X509_get_ext_count(x), pol->san_uri ? 6 : 5);
    /* Key and signature. */
    EVP_PKEY *pub = X509_get_pubkey(x);
    assert_non_null(pub);
    assert_int_equal(EVP_PKEY_cmp(pub, key), 1);
    EVP_PKEY_free(pub);
    assert_int_equal(X509_get_signature_nid(x), EVP_PKEY_id(ca->key) == EVP_PKEY_RSA
                                                    ? NID_sha256WithRSAEncryption
                                                    : NID_ecdsa_with_SHA256);
    assert_int_equal(X509_verify(x, ca->key), 1);
    const test_ca_t *other = ca == &g_rsa_ca ? &g_ec_ca : &g_rsa_ca;
    assert_int_equal(X509_verify(x, other->key), 0);
    assert_int_equal(X509_check_issued(cax, x), X509_V_OK);
    X509_free(cax);
}

static void test_policy_default(void **state) {
    (void)state;
    cx_lsc_policy_t p;
    memset(&p, 0xa5, sizeof(p));
    cx_lsc_policy_default(&p);
    assert_int_equal(p.validity_days, 365);
    assert_int_equal(p.backdate_s, 300);
    assert_int_equal(p.subject, CX_LSC_SUBJECT_DEVICE);
    assert_false(p.ec_key_encipherment);
    assert_false(p.san_uri);
    assert_int_equal(cx_lsc_policy_check(&p), CX_OK);
    p.validity_days = 0;
    assert_int_equal(cx_lsc_policy_check(&p), CX_E_CONFIG);
    p.validity_days = 1826;
    assert_int_equal(cx_lsc_policy_check(&p), CX_E_CONFIG);
    p.validity_days = 1825;
    assert_int_equal(cx_lsc_policy_check(&p), CX_OK);
    p.backdate_s = CX_LSC_BACKDATE_MAX + 1;
    assert_int_equal(cx_lsc_policy_check(&p), CX_E_CONFIG);
    p.backdate_s = 0;
    p.subject = (cx_lsc_subject_t)2;
    assert_int_equal(cx_lsc_policy_check(&p), CX_E_CONFIG);
}

/* Every key type under both CA types, default policy: the whole profile. */
static void test_key_types(void **state) {
    (void)state;
    const test_ca_t *cas[] = {&g_rsa_ca, &g_ec_ca};
    cx_lsc_policy_t pol;
    cx_lsc_policy_default(&pol);
    for (size_t c = 0; c < 2; c++) {
        for (size_t k = 0; k < K__COUNT; k++) {
            uint8_t serial[CX_SERIAL_LEN], *der;
            size_t der_len;
            int64_t now = (int64_t)time(NULL);
            print_message("CA %s, leaf %s\n", c == 0 ? "RSA-2048" : "P-256", k_names[k]);
            X509 *x = lsc_issue(&cas[c]->iss, g_keys[k], DEVICE, NULL, NULL, &pol, now,
                                serial, &der, &der_len);
            assert_profile(x, cas[c], g_keys[k], k == K_RSA2048 || k == K_RSA4096, &pol, now,
                           serial);
            assert_true(der_len <= CX_LSC_DER_MAX_V2);
            X509_free(x);
            OPENSSL_free(der);
        }
    }
}

/* pol == NULL means the defaults. */
static void test_null_policy(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t serial[CX_SERIAL_LEN];
    int64_t now = (int64_t)time(NULL);
    cx_lsc_policy_default(&pol);
    X509 *x = lsc_issue(&g_rsa_ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, NULL, now, serial,
                        NULL, NULL);
    assert_profile(x, &g_rsa_ca, g_keys[K_P256], false, &pol, now, serial);
    X509_free(x);
}

static void test_validity(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t serial[CX_SERIAL_LEN];
    int64_t now = (int64_t)time(NULL);
    test_ca_t ca = g_ec_ca;
    cx_lsc_policy_default(&pol);
    static const struct { uint32_t days, backdate; } v[] = {{1, 0}, {1825, 86400}, {30, 7}};
    for (size_t i = 0; i < 3; i++) {
        pol.validity_days = v[i].days;
        pol.backdate_s = v[i].backdate;
        X509 *x = lsc_issue(&ca.iss, g_keys[K_P384], DEVICE, NULL, NULL, &pol, now, serial,
                            NULL, NULL);
        assert_profile(x, &ca, g_keys[K_P384], false, &pol, now, serial);
        X509_free(x);
    }
    /* Capped at the issuer's notAfter. */
    cx_lsc_policy_default(&pol);
    ca.iss.not_after = now + 10 * 86400;
    X509 *x = lsc_issue(&ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, &pol, now, serial, NULL,
                        NULL);
    assert_time_is(X509_get0_notBefore(x), now - 300);
    assert_time_is(X509_get0_notAfter(x), ca.iss.not_after);
    X509_free(x);
    /* An issuer that outlives the LSC does not change it. */
    ca.iss.not_after = now + 300 * 86400;
    pol.validity_days = 299;
    x = lsc_issue(&ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, &pol, now, serial, NULL, NULL);
    assert_time_is(X509_get0_notAfter(x), now - 300 + 299 * 86400LL);
    X509_free(x);
    /* An issuer expired at `now` is refused. */
    uint8_t *der;
    size_t der_len;
    ca.iss.not_after = now;
    assert_int_equal(lsc_try(&ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, &pol, now, serial,
                             &der, &der_len), CX_E_CERT);
    ca.iss.not_after = now + 1;
    x = lsc_issue(&ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, &pol, now, serial, NULL, NULL);
    assert_time_is(X509_get0_notAfter(x), now + 1);
    X509_free(x);
}

static void test_ec_key_encipherment(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t serial[CX_SERIAL_LEN];
    int64_t now = (int64_t)time(NULL);
    cx_lsc_policy_default(&pol);
    pol.ec_key_encipherment = true;
    for (size_t k = 0; k < K__COUNT; k++) {
        if (k == K_RSA4096)
            continue;     /* same rule as RSA-2048; keeps the test quick */
        X509 *x = lsc_issue(&g_rsa_ca.iss, g_keys[k], DEVICE, NULL, NULL, &pol, now, serial,
                            NULL, NULL);
        assert_ext_bytes(x, NID_key_usage, 1, ku_ds_ke, sizeof(ku_ds_ke));
        assert_profile(x, &g_rsa_ca, g_keys[k], k == K_RSA2048, &pol, now, serial);
        X509_free(x);
    }
}

static void test_san_uri(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t serial[CX_SERIAL_LEN];
    int64_t now = (int64_t)time(NULL);
    cx_lsc_policy_default(&pol);
    pol.san_uri = true;
    X509 *x = lsc_issue(&g_ec_ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, &pol, now, serial,
                        NULL, NULL);
    assert_profile(x, &g_ec_ca, g_keys[K_P256], false, &pol, now, serial);
    int crit = -1;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    assert_non_null(gens);
    assert_int_equal(crit, 0);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    GENERAL_NAME *uri = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(uri->type, GEN_URI);
    assert_int_equal(ASN1_STRING_length(uri->d.uniformResourceIdentifier), strlen(DEVICE));
    assert_memory_equal(ASN1_STRING_get0_data(uri->d.uniformResourceIdentifier), DEVICE,
                        strlen(DEVICE));
    GENERAL_NAMES_free(gens);
    X509_free(x);
}

/* assert_cucm_subject: serialNumber "PID:<pid> SN:<sn>" (PrintableString),
 * the issuer's C, O, OU ATVs (that order, bytes), CN=<pid>-<device>. */
static void assert_cucm_subject(X509 *x, const CBS *issuer, const char *pid, const char *sn,
                                const char *device) {
    atv_t iss[ATV_MAX], got[ATV_MAX], *want[ATV_MAX];
    const uint8_t *der;
    size_t len, nw = 0, n_iss = name_atvs(CBS_data(issuer), CBS_len(issuer), iss);
    static const char *const order[] = {"2.5.4.6", "2.5.4.10", "2.5.4.11"};
    char buf[128];
    for (size_t t = 0; t < 3; t++)
        for (size_t i = 0; i < n_iss; i++)
            if (strcmp(iss[i].oid, order[t]) == 0)
                want[nw++] = &iss[i];
    name_der(X509_get_subject_name(x), &der, &len);
    size_t ng = name_atvs(der, len, got);
    assert_int_equal(ng, nw + 2);
    for (size_t i = 0; i < ng; i++)
        assert_int_equal(got[i].rdn, i);
    snprintf(buf, sizeof(buf), "PID:%s SN:%s", pid, sn);
    assert_value(&got[0], "2.5.4.5", CBS_ASN1_PRINTABLESTRING, buf);
    for (size_t i = 0; i < nw; i++) {
        assert_int_equal(CBS_len(&got[i + 1].tlv), CBS_len(&want[i]->tlv));
        assert_memory_equal(CBS_data(&got[i + 1].tlv), CBS_data(&want[i]->tlv),
                            CBS_len(&want[i]->tlv));
    }
    snprintf(buf, sizeof(buf), "%s-%s", pid, device);
    assert_value(&got[nw + 1], "2.5.4.3", CBS_ASN1_UTF8STRING, buf);
}

static void test_cucm_subject(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t serial[CX_SERIAL_LEN], *der;
    size_t der_len;
    int64_t now = (int64_t)time(NULL);
    char buf[128];
    cx_lsc_policy_default(&pol);
    pol.subject = CX_LSC_SUBJECT_CUCM;
    X509 *x = lsc_issue(&g_rsa_ca.iss, g_keys[K_RSA2048], DEVICE, "CP-8861", "FCH18198CNQ",
                        &pol, now, serial, NULL, NULL);
    assert_cucm_subject(x, &g_rsa_ca.iss.subject, "CP-8861", "FCH18198CNQ", DEVICE);
    /* As text: serialNumber, C=AU, O=stormin, OU=IST, CN=CP-8861-SEP... */
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_entry_count(name), 5);
    static const int nids[] = {NID_serialNumber, NID_countryName, NID_organizationName,
                               NID_organizationalUnitName, NID_commonName};
    for (int i = 0; i < 5; i++)
        assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(X509_NAME_get_entry(name, i))),
                         nids[i]);
    assert_int_equal(X509_NAME_get_text_by_NID(name, NID_commonName, buf, sizeof(buf)),
                     (int)strlen("CP-8861-" DEVICE));
    assert_string_equal(buf, "CP-8861-" DEVICE);
    assert_int_equal(X509_verify(x, g_rsa_ca.key), 1);
    X509_free(x);

    /* PID or SN unknown (NULL or empty): DEVICE style. */
    static const char *const unknown[][2] = {{NULL, NULL}, {"CP-8861", NULL},
                                             {NULL, "FCH1"}, {"", "FCH1"}, {"CP-8861", ""}};
    for (size_t i = 0; i < 5; i++) {
        x = lsc_issue(&g_rsa_ca.iss, g_keys[K_P256], DEVICE, unknown[i][0], unknown[i][1],
                      &pol, now, serial, NULL, NULL);
        assert_device_subject(x, &g_rsa_ca.iss.subject, DEVICE);
        X509_free(x);
    }
    /* DEVICE style ignores pid/sn even when given. */
    pol.subject = CX_LSC_SUBJECT_DEVICE;
    x = lsc_issue(&g_rsa_ca.iss, g_keys[K_P256], DEVICE, "CP-8861", "FCH1", &pol, now, serial,
                  NULL, NULL);
    assert_device_subject(x, &g_rsa_ca.iss.subject, DEVICE);
    X509_free(x);

    /* Bad PID/SN characters or lengths. */
    pol.subject = CX_LSC_SUBJECT_CUCM;
    static const char *const bad[][2] = {
        {"CP 8861", "FCH1"}, {"CP-8861", "FCH 1"}, {"CP_8861", "FCH1"}, {"CP:8861", "FCH1"},
        {"CP-8861", "FCH1,O=x"}, {"CP-8861", "FCH\xc3\xa9"},
        {"123456789012345678901234x", "FCH1"}, {"CP-8861", "123456789012345678901234x"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(lsc_try(&g_rsa_ca.iss, g_keys[K_P256], DEVICE, bad[i][0], bad[i][1],
                                 &pol, now, serial, &der, &der_len), CX_E_CONFIG);
    /* Longest PID and SN accepted; CN "<pid>-<device>" at most 64 characters. */
    static const char pid24[] = "CP-8861-K9=/+.0123456789";
    static const char dev39[] = "SEP0123456789012345678901234567890123AB";
    static const char dev40[] = "SEP0123456789012345678901234567890123ABC";
    assert_int_equal(strlen(pid24), CX_LSC_PID_MAX);
    x = lsc_issue(&g_rsa_ca.iss, g_keys[K_P256], dev39, pid24, "123456789012345678901234",
                  &pol, now, serial, NULL, NULL);
    assert_cucm_subject(x, &g_rsa_ca.iss.subject, pid24, "123456789012345678901234", dev39);
    X509_free(x);
    assert_int_equal(lsc_try(&g_rsa_ca.iss, g_keys[K_P256], dev40, pid24, "1", &pol, now,
                             serial, &der, &der_len), CX_E_CONFIG);
}

/* add_atv appends SEQUENCE { oid, value } to `set`. */
static void add_atv(CBB *set, const char *oid, unsigned tag, const char *value) {
    CBB atv, str;
    assert_true(CBB_add_asn1(set, &atv, CBS_ASN1_SEQUENCE));
    tk_add_oid(&atv, oid);
    assert_true(CBB_add_asn1(&atv, &str, tag));
    assert_true(CBB_add_bytes(&str, (const uint8_t *)value, strlen(value)));
    assert_true(CBB_flush(set));
}

/* An issuer Name with a multi-valued RDN and repeated OUs: each copied ATV
 * gets its own RDN; DEVICE keeps the issuer's order, CUCM uses C, O, OU. */
static void test_issuer_name_shapes(void **state) {
    (void)state;
    CBB cbb, name, set;
    uint8_t *der;
    size_t der_len;
    assert_true(CBB_init(&cbb, 256));
    assert_true(CBB_add_asn1(&cbb, &name, CBS_ASN1_SEQUENCE));
    assert_true(CBB_add_asn1(&name, &set, CBS_ASN1_SET));     /* O + emailAddress */
    add_atv(&set, "2.5.4.10", CBS_ASN1_UTF8STRING, "Acme");
    add_atv(&set, "1.2.840.113549.1.9.1", CBS_ASN1_IA5STRING, "pki@acme.example");
    assert_true(CBB_add_asn1(&name, &set, CBS_ASN1_SET));
    add_atv(&set, "2.5.4.11", CBS_ASN1_UTF8STRING, "Voice");
    assert_true(CBB_add_asn1(&name, &set, CBS_ASN1_SET));
    add_atv(&set, "2.5.4.6", CBS_ASN1_PRINTABLESTRING, "US");
    assert_true(CBB_add_asn1(&name, &set, CBS_ASN1_SET));
    add_atv(&set, "2.5.4.11", CBS_ASN1_PRINTABLESTRING, "Lab 2");
    assert_true(CBB_add_asn1(&name, &set, CBS_ASN1_SET));
    add_atv(&set, "2.5.4.3", CBS_ASN1_UTF8STRING, "CAPF-0badf00d");
    assert_true(CBB_add_asn1(&name, &set, CBS_ASN1_SET));
    add_atv(&set, "2.5.4.7", CBS_ASN1_UTF8STRING, "Springfield");
    assert_true(CBB_finish(&cbb, &der, &der_len));

    test_ca_t ca;
    ca_make(&ca, tk_ec_key(NID_secp384r1), der, der_len);
    OPENSSL_free(der);
    cx_lsc_policy_t pol;
    uint8_t serial[CX_SERIAL_LEN];
    int64_t now = (int64_t)time(NULL);
    char buf[64];
    cx_lsc_policy_default(&pol);
    X509 *x = lsc_issue(&ca.iss, g_keys[K_P256], "CSFjdoe", NULL, NULL, &pol, now, serial,
                        NULL, NULL);
    assert_device_subject(x, &ca.iss.subject, "CSFjdoe");
    X509_NAME *n = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_entry_count(n), 6);   /* O, OU, C, OU, L, CN */
    assert_int_equal(X509_NAME_get_text_by_NID(n, NID_localityName, buf, sizeof(buf)), 11);
    assert_int_equal(X509_NAME_get_index_by_NID(n, NID_pkcs9_emailAddress, -1), -1);
    assert_int_equal(X509_NAME_get_text_by_NID(n, NID_commonName, buf, sizeof(buf)), 7);
    assert_string_equal(buf, "CSFjdoe");
    assert_int_equal(X509_verify(x, ca.key), 1);
    X509_free(x);

    pol.subject = CX_LSC_SUBJECT_CUCM;
    x = lsc_issue(&ca.iss, g_keys[K_P256], "CSFjdoe", "CSF", "X1", &pol, now, serial, NULL,
                  NULL);
    assert_cucm_subject(x, &ca.iss.subject, "CSF", "X1", "CSFjdoe");
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(x)), 6); /* sN C O OU OU CN */
    X509_free(x);
    ca_free(&ca);
}

static void test_device_names(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t serial[CX_SERIAL_LEN], *der;
    size_t der_len;
    int64_t now = (int64_t)time(NULL);
    char long_name[CX_LSC_DEVICE_MAX + 2];
    cx_lsc_policy_default(&pol);
    memset(long_name, 'A', sizeof(long_name) - 1);
    long_name[CX_LSC_DEVICE_MAX] = '\0';                 /* 64: accepted */
    static const char *const good[] = {"SEPB000B4BA0AEE", "CSFuser.name_1-x", "a", "0"};
    for (size_t i = 0; i < 4; i++) {
        X509 *x = lsc_issue(&g_ec_ca.iss, g_keys[K_P256], good[i], NULL, NULL, &pol, now,
                            serial, NULL, NULL);
        assert_device_subject(x, &g_ec_ca.iss.subject, good[i]);
        X509_free(x);
    }
    X509 *x = lsc_issue(&g_ec_ca.iss, g_keys[K_P256], long_name, NULL, NULL, &pol, now,
                        serial, NULL, NULL);
    assert_device_subject(x, &g_ec_ca.iss.subject, long_name);
    X509_free(x);
    long_name[CX_LSC_DEVICE_MAX] = 'A';                  /* 65: refused */
    long_name[CX_LSC_DEVICE_MAX + 1] = '\0';
    static const char *const bad[] = {"", "SEP 1", "SEP/1", "SEP:1", "CN=x,O=y", "x\n",
                                      "SEP\xc3\xa9", "SEP+1", "-\x7f"};
    assert_int_equal(lsc_try(&g_ec_ca.iss, g_keys[K_P256], long_name, NULL, NULL, &pol, now,
                             serial, &der, &der_len), CX_E_CONFIG);
    assert_int_equal(lsc_try(&g_ec_ca.iss, g_keys[K_P256], NULL, NULL, NULL, &pol, now,
                             serial, &der, &der_len), CX_E_CONFIG);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(lsc_try(&g_ec_ca.iss, g_keys[K_P256], bad[i], NULL, NULL, &pol, now,
                                 serial, &der, &der_len), CX_E_CONFIG);
    pol.subject = CX_LSC_SUBJECT_CUCM;                   /* refused in both styles */
    assert_int_equal(lsc_try(&g_ec_ca.iss, g_keys[K_P256], "SEP 1", "CP-1", "S1", &pol, now,
                             serial, &der, &der_len), CX_E_CONFIG);
}

/* issue_raw runs cx_lsc_issue with a raw SPKI and issuer. */
static cx_err_t issue_raw(const cx_issuer_t *iss, const uint8_t *spki, size_t spki_len,
                          const cx_lsc_policy_t *pol, int64_t now) {
    uint8_t serial[CX_SERIAL_LEN];
    CBB cbb;
    CBS cbs;
    CBS_init(&cbs, spki, spki_len);
    assert_true(CBB_init(&cbb, 64));
    cx_err_t err = cx_lsc_issue(&cbb, serial, iss, &cbs, DEVICE, NULL, NULL, pol, now);
    if (err == CX_E_CONFIG || err == CX_E_CSR_KEY || err == CX_E_CERT)
        assert_int_equal(CBB_len(&cbb), 0);
    CBB_cleanup(&cbb);
    return err;
}

static void test_bad_inputs(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t *spki, *buf, serial[CX_SERIAL_LEN];
    size_t spki_len;
    int64_t now = (int64_t)time(NULL);
    cx_lsc_policy_default(&pol);
    spki_of(g_keys[K_P256], &spki, &spki_len);
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, now), CX_OK);

    /* Policy and clock. */
    pol.validity_days = 0;
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, now), CX_E_CONFIG);
    pol.validity_days = 1826;
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, now), CX_E_CONFIG);
    cx_lsc_policy_default(&pol);
    pol.backdate_s = CX_LSC_BACKDATE_MAX + 1;
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, now), CX_E_CONFIG);
    cx_lsc_policy_default(&pol);
    pol.subject = (cx_lsc_subject_t)5;
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, now), CX_E_CONFIG);
    cx_lsc_policy_default(&pol);
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, -1), CX_E_CONFIG);
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, 253402300800LL),
                     CX_E_CONFIG);
    /* Near the end of year 9999 the LSC no longer fits the time range. */
    assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, spki_len, &pol, 253402300799LL),
                     CX_E_CONFIG);

    /* SPKI: truncated, trailing byte, wrong algorithm, NULL. */
    for (size_t n = 0; n < spki_len; n++)
        assert_int_equal(issue_raw(&g_rsa_ca.iss, spki, n, &pol, now), CX_E_CSR_KEY);
    buf = OPENSSL_malloc(spki_len + 1);
    memcpy(buf, spki, spki_len);
    buf[spki_len] = 0;
    assert_int_equal(issue_raw(&g_rsa_ca.iss, buf, spki_len + 1, &pol, now), CX_E_CSR_KEY);
    OPENSSL_free(buf);
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    EVP_PKEY *ed = NULL;
    assert_non_null(kctx);
    assert_true(EVP_PKEY_keygen_init(kctx) && EVP_PKEY_keygen(kctx, &ed));
    EVP_PKEY_CTX_free(kctx);
    uint8_t *ed_spki;
    size_t ed_len;
    spki_of(ed, &ed_spki, &ed_len);
    assert_int_equal(issue_raw(&g_rsa_ca.iss, ed_spki, ed_len, &pol, now), CX_E_CSR_KEY);
    OPENSSL_free(ed_spki);
    EVP_PKEY_free(ed);
    {   /* An RSA key labelled RSASSA-PSS. */
        uint8_t *rsa_spki, *pss;
        size_t rsa_len, pss_len;
        CBS in, seq, alg, bits;
        CBB cbb, top, a;
        spki_of(g_keys[K_RSA2048], &rsa_spki, &rsa_len);
        CBS_init(&in, rsa_spki, rsa_len);
        assert_true(CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE));
        assert_true(CBS_get_asn1(&seq, &alg, CBS_ASN1_SEQUENCE));
        assert_true(CBS_get_asn1_element(&seq, &bits, CBS_ASN1_BITSTRING));
        assert_true(CBB_init(&cbb, 600) && CBB_add_asn1(&cbb, &top, CBS_ASN1_SEQUENCE) &&
                    CBB_add_asn1(&top, &a, CBS_ASN1_SEQUENCE));
        tk_add_oid(&a, "1.2.840.113549.1.1.10");
        assert_true(CBB_flush(&top) &&
                    CBB_add_bytes(&top, CBS_data(&bits), CBS_len(&bits)) &&
                    CBB_finish(&cbb, &pss, &pss_len));
        assert_int_equal(issue_raw(&g_rsa_ca.iss, pss, pss_len, &pol, now), CX_E_CSR_KEY);
        OPENSSL_free(pss);
        OPENSSL_free(rsa_spki);
    }
    CBB out;
    assert_true(CBB_init(&out, 64));
    assert_int_equal(cx_lsc_issue(&out, serial, &g_rsa_ca.iss, NULL, DEVICE, NULL, NULL, &pol,
                                  now), CX_E_CSR_KEY);
    assert_int_equal(CBB_len(&out), 0);

    /* Issuer: NULL, no key, malformed Name. */
    CBS cbs;
    CBS_init(&cbs, spki, spki_len);
    assert_int_equal(cx_lsc_issue(&out, serial, NULL, &cbs, DEVICE, NULL, NULL, &pol, now),
                     CX_E_SIGN);
    cx_issuer_t iss = g_rsa_ca.iss;
    iss.key = NULL;
    assert_int_equal(issue_raw(&iss, spki, spki_len, &pol, now), CX_E_SIGN);
    CBB_cleanup(&out);
    iss = g_rsa_ca.iss;
    const uint8_t *name = CBS_data(&g_rsa_ca.iss.subject);
    size_t name_len = CBS_len(&g_rsa_ca.iss.subject);
    for (size_t n = 0; n < name_len; n++) {
        CBS_init(&iss.subject, name, n);
        assert_int_equal(issue_raw(&iss, spki, spki_len, &pol, now), CX_E_CERT);
    }
    static const uint8_t bad_names[][13] = {
        {0x30, 0x00},                                           /* empty Name */
        {0x30, 0x02, 0x31, 0x00},                               /* empty RDN */
        {0x30, 0x04, 0x31, 0x02, 0x30, 0x00},                   /* ATV without type */
        {0x30, 0x06, 0x31, 0x04, 0x30, 0x02, 0x06, 0x00},       /* ATV without value */
        {0x30, 0x0b, 0x31, 0x09, 0x30, 0x07, 0x06, 0x01, 0x55,  /* two values */
         0x0c, 0x00, 0x0c, 0x00},
        {0x30, 0x04, 0x30, 0x02, 0x30, 0x00},                   /* RDN not a SET */
    };
    static const size_t bad_lens[] = {2, 4, 6, 8, 13, 6};
    for (size_t i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
        CBS_init(&iss.subject, bad_names[i], bad_lens[i]);
        assert_int_equal(issue_raw(&iss, spki, spki_len, &pol, now), CX_E_CERT);
    }

    /* An issuer Name whose copied attributes exceed CX_LSC_SUBJECT_MAX. */
    {
        CBB cbb, nm, set;
        uint8_t *big;
        size_t big_len;
        char ou[61];
        memset(ou, 'u', 60);
        ou[60] = '\0';
        assert_true(CBB_init(&cbb, 2048) && CBB_add_asn1(&cbb, &nm, CBS_ASN1_SEQUENCE));
        for (int i = 0; i < 20; i++) {
            assert_true(CBB_add_asn1(&nm, &set, CBS_ASN1_SET));
            add_atv(&set, "2.5.4.11", CBS_ASN1_UTF8STRING, ou);
        }
        assert_true(CBB_finish(&cbb, &big, &big_len));
        assert_true(big_len > CX_LSC_SUBJECT_MAX);
        CBS_init(&iss.subject, big, big_len);
        assert_int_equal(issue_raw(&iss, spki, spki_len, &pol, now), CX_E_NOMEM);
        OPENSSL_free(big);
    }

    /* A fixed output buffer too small: CX_E_NOMEM. */
    uint8_t small[200];
    CBS_init(&cbs, spki, spki_len);
    assert_true(CBB_init_fixed(&out, small, sizeof(small)));
    assert_int_equal(cx_lsc_issue(&out, serial, &g_rsa_ca.iss, &cbs, DEVICE, NULL, NULL, &pol,
                                  now), CX_E_NOMEM);
    CBB_cleanup(&out);
    OPENSSL_free(spki);
}

/* The largest LSC this profile writes (RSA-4096 key under an RSA-4096 CA,
 * 64-character device, SAN on, CUCM subject at its limits) fits the
 * version-2 client limit, also through a fixed buffer of exactly that size. */
static void test_size_limit(void **state) {
    (void)state;
    uint8_t *name, *der, buf[CX_LSC_DER_MAX_V2], serial[CX_SERIAL_LEN];
    size_t name_len, der_len, len;
    test_ca_t ca;
    capf_name_der(&name, &name_len);
    ca_make(&ca, tk_rsa_key(4096), name, name_len);
    OPENSSL_free(name);
    cx_lsc_policy_t pol;
    int64_t now = (int64_t)time(NULL);
    char dev64[CX_LSC_DEVICE_MAX + 1];
    memset(dev64, 'S', CX_LSC_DEVICE_MAX);
    dev64[CX_LSC_DEVICE_MAX] = '\0';
    cx_lsc_policy_default(&pol);
    pol.san_uri = true;
    X509 *x = lsc_issue(&ca.iss, g_keys[K_RSA4096], dev64, NULL, NULL, &pol, now, serial, &der,
                        &der_len);
    print_message("RSA-4096 LSC, RSA-4096 CA, DEVICE style: %zu bytes\n", der_len);
    assert_true(der_len <= CX_LSC_DER_MAX_V2);
    assert_int_equal(X509_verify(x, ca.key), 1);
    X509_free(x);
    OPENSSL_free(der);

    pol.subject = CX_LSC_SUBJECT_CUCM;
    x = lsc_issue(&ca.iss, g_keys[K_RSA4096], "SEP0123456789012345678901234567890123AB",
                  "CP-8861-K9=/+.0123456789", "123456789012345678901234", &pol, now, serial,
                  &der, &der_len);
    print_message("RSA-4096 LSC, RSA-4096 CA, CUCM style: %zu bytes\n", der_len);
    assert_true(der_len <= CX_LSC_DER_MAX_V2);
    X509_free(x);
    OPENSSL_free(der);

    CBB cbb;
    CBS spki_cbs;
    uint8_t *spki, *unused;
    size_t spki_len;
    spki_of(g_keys[K_RSA4096], &spki, &spki_len);
    CBS_init(&spki_cbs, spki, spki_len);
    assert_true(CBB_init_fixed(&cbb, buf, sizeof(buf)));
    assert_int_equal(cx_lsc_issue(&cbb, serial, &ca.iss, &spki_cbs, dev64, NULL, NULL, &pol,
                                  now), CX_OK);
    assert_true(CBB_finish(&cbb, &unused, &len));
    x = x509_of(buf, len);
    assert_int_equal(X509_verify(x, ca.key), 1);
    X509_free(x);
    OPENSSL_free(spki);
    ca_free(&ca);
}

static void hex_to(const char *hex, uint8_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void test_fingerprints(void **state) {
    (void)state;
    uint8_t md5[16], sha256[32], want_md5[16], want_sha[32];
    /* Known answers (RFC 1321 and FIPS 180-2 test vectors for "abc"). */
    cx_lsc_fingerprints((const uint8_t *)"abc", 3, md5, sha256);
    hex_to("900150983cd24fb0d6963f7d28e17f72", want_md5, 16);
    hex_to("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", want_sha, 32);
    assert_memory_equal(md5, want_md5, 16);
    assert_memory_equal(sha256, want_sha, 32);
    /* On an LSC: equal to X509_digest of the parsed certificate. */
    for (size_t k = 0; k < K__COUNT; k++) {
        uint8_t serial[CX_SERIAL_LEN], *der, xmd5[EVP_MAX_MD_SIZE], xsha[EVP_MAX_MD_SIZE];
        size_t der_len;
        unsigned xmd5_len, xsha_len;
        X509 *x = lsc_issue(&g_rsa_ca.iss, g_keys[k], DEVICE, NULL, NULL, NULL,
                            (int64_t)time(NULL), serial, &der, &der_len);
        cx_lsc_fingerprints(der, der_len, md5, sha256);
        assert_true(X509_digest(x, EVP_md5(), xmd5, &xmd5_len));
        assert_true(X509_digest(x, EVP_sha256(), xsha, &xsha_len));
        assert_int_equal(xmd5_len, 16);
        assert_int_equal(xsha_len, 32);
        assert_memory_equal(md5, xmd5, 16);
        assert_memory_equal(sha256, xsha, 32);
        X509_free(x);
        OPENSSL_free(der);
    }
}

/* Serials differ between LSCs and are always positive 16-byte INTEGERs. */
static void test_serials(void **state) {
    (void)state;
    uint8_t prev[CX_SERIAL_LEN] = {0};
    for (int i = 0; i < 50; i++) {
        uint8_t serial[CX_SERIAL_LEN];
        X509 *x = lsc_issue(&g_ec_ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, NULL,
                            (int64_t)time(NULL), serial, NULL, NULL);
        assert_serial(x, serial);
        assert_memory_not_equal(serial, prev, CX_SERIAL_LEN);
        memcpy(prev, serial, CX_SERIAL_LEN);
        X509_free(x);
    }
}

static void write_pem(const char *path, const uint8_t *der, size_t len) {
    BIO *bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_true(PEM_write_bio(bio, "CERTIFICATE", "", der, (long)len) > 0);
    BIO_free(bio);
}

/* test_openssl_cli: the openssl command line tool (if installed) verifies
 * LSCs of each key type against their CA as TLS client and server
 * certificates, under -x509_strict. Skipped without the tool. */
static void test_openssl_cli(void **state) {
    (void)state;
    if (system("openssl version >/dev/null 2>&1") != 0) {
        skip();
        return;
    }
    char dir[] = "/tmp/cx_lsc_test.XXXXXX", cmd[1024], path[256];
    const test_ca_t *cas[] = {&g_rsa_ca, &g_ec_ca};
    cx_lsc_policy_t pol;
    cx_lsc_policy_default(&pol);
    pol.san_uri = true;
    assert_non_null(mkdtemp(dir));
    for (size_t c = 0; c < 2; c++) {
        snprintf(path, sizeof(path), "%s/ca.pem", dir);
        write_pem(path, cas[c]->der, cas[c]->der_len);
        for (size_t k = 0; k < K__COUNT; k++) {
            uint8_t serial[CX_SERIAL_LEN], *der;
            size_t der_len;
            pol.subject = k % 2 ? CX_LSC_SUBJECT_CUCM : CX_LSC_SUBJECT_DEVICE;
            X509 *x = lsc_issue(&cas[c]->iss, g_keys[k], DEVICE, "CP-8861", "FCH18198CNQ",
                                &pol, (int64_t)time(NULL), serial, &der, &der_len);
            X509_free(x);
            snprintf(path, sizeof(path), "%s/lsc.pem", dir);
            write_pem(path, der, der_len);
            OPENSSL_free(der);
            for (int purpose = 0; purpose < 2; purpose++) {
                snprintf(cmd, sizeof(cmd),
                         "openssl verify -x509_strict -purpose %s -CAfile %s/ca.pem "
                         "%s/lsc.pem >/dev/null 2>&1",
                         purpose ? "sslserver" : "sslclient", dir, dir);
                assert_int_equal(system(cmd), 0);
            }
        }
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- cx_lsc_request: the PKCS#10 of online CA mode ---- */

/* req_try runs cx_lsc_request for `key`'s SPKI into a growing CBB; on CX_OK
 * the DER goes to *der (OPENSSL_free), else it checks that a refusal of the
 * inputs wrote nothing. */
static cx_err_t req_try(const cx_issuer_t *ra, const EVP_PKEY *key, const char *device,
                        const char *pid, const char *sn, const cx_lsc_policy_t *pol,
                        uint8_t **der, size_t *der_len) {
    uint8_t *spki;
    size_t spki_len;
    CBB cbb;
    CBS cbs;
    spki_of(key, &spki, &spki_len);
    CBS_init(&cbs, spki, spki_len);
    assert_true(CBB_init(&cbb, 64));
    cx_err_t err = cx_lsc_request(&cbb, ra, &cbs, device, pid, sn, pol);
    if (err == CX_OK) {
        assert_true(CBB_finish(&cbb, der, der_len));
    } else {
        if (err == CX_E_CONFIG || err == CX_E_CSR_KEY || err == CX_E_CERT || err == CX_E_SIGN)
            assert_int_equal(CBB_len(&cbb), 0);
        CBB_cleanup(&cbb);
    }
    OPENSSL_free(spki);
    return err;
}

/* assert_request parses `der` back with BoringSSL and checks the shape the
 * upstream CA gets: version 0, subject = that of the LSC cx_lsc_issue makes
 * for the same inputs (byte for byte), SPKI = the phone's bytes, no
 * attributes, a SHA-256 signature that verifies with the CAPF key (and not
 * with the phone's key, which signed nothing). */
static void assert_request(const uint8_t *der, size_t der_len, const test_ca_t *ca,
                           const EVP_PKEY *key, const char *device, const char *pid,
                           const char *sn, const cx_lsc_policy_t *pol) {
    /* BoringSSL's parser. */
    const uint8_t *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)der_len);
    assert_non_null(req);
    assert_ptr_equal(p, der + der_len);
    assert_int_equal(X509_REQ_get_version(req), X509_REQ_VERSION_1);
    assert_int_equal(X509_REQ_get_attr_count(req), 0);
    assert_int_equal(X509_REQ_get_signature_nid(req), EVP_PKEY_id(ca->key) == EVP_PKEY_RSA
                                                          ? NID_sha256WithRSAEncryption
                                                          : NID_ecdsa_with_SHA256);
    assert_int_equal(X509_REQ_verify(req, ca->key), 1);
    EVP_PKEY *pub = X509_REQ_get_pubkey(req);
    assert_non_null(pub);
    assert_int_equal(EVP_PKEY_cmp(pub, key), 1);
    assert_int_equal(X509_REQ_verify(req, pub), 0);   /* the phone signed nothing */
    ERR_clear_error();
    EVP_PKEY_free(pub);
    /* Subject: the LSC's, byte for byte. */
    uint8_t serial[CX_SERIAL_LEN];
    X509 *lsc = lsc_issue(&ca->iss, key, device, pid, sn, pol, (int64_t)time(NULL), serial,
                          NULL, NULL);
    const uint8_t *a, *b;
    size_t a_len, b_len;
    name_der(X509_REQ_get_subject_name(req), &a, &a_len);
    name_der(X509_get_subject_name(lsc), &b, &b_len);
    assert_int_equal(a_len, b_len);
    assert_memory_equal(a, b, b_len);
    X509_free(lsc);
    X509_REQ_free(req);

    /* The exact DER, walked with CBS: SEQUENCE { SEQUENCE { INTEGER 0, Name,
     * SPKI (the input bytes), [0] empty }, AlgorithmIdentifier, BIT STRING }. */
    uint8_t *spki;
    size_t spki_len;
    uint64_t version;
    CBS in, top, info, name, got_spki, attrs, alg, oid, bits;
    spki_of(key, &spki, &spki_len);
    CBS_init(&in, der, der_len);
    assert_true(CBS_get_asn1(&in, &top, CBS_ASN1_SEQUENCE));
    assert_int_equal(CBS_len(&in), 0);
    assert_true(CBS_get_asn1(&top, &info, CBS_ASN1_SEQUENCE));
    assert_true(CBS_get_asn1_uint64(&info, &version));
    assert_int_equal(version, 0);
    assert_true(CBS_get_asn1_element(&info, &name, CBS_ASN1_SEQUENCE));
    assert_true(CBS_get_asn1_element(&info, &got_spki, CBS_ASN1_SEQUENCE));
    assert_int_equal(CBS_len(&got_spki), spki_len);
    assert_memory_equal(CBS_data(&got_spki), spki, spki_len);
    assert_true(CBS_get_asn1(&info, &attrs, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0));
    assert_int_equal(CBS_len(&attrs), 0);
    assert_int_equal(CBS_len(&info), 0);
    assert_true(CBS_get_asn1(&top, &alg, CBS_ASN1_SEQUENCE));
    assert_true(CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT));
    if (EVP_PKEY_id(ca->key) == EVP_PKEY_RSA) {   /* RFC 4055: NULL parameters */
        CBS null;
        assert_true(CBS_get_asn1(&alg, &null, CBS_ASN1_NULL));
        assert_int_equal(CBS_len(&null), 0);
    }
    assert_int_equal(CBS_len(&alg), 0);           /* ECDSA: parameters absent */
    assert_true(CBS_get_asn1(&top, &bits, CBS_ASN1_BITSTRING));
    assert_int_equal(CBS_len(&top), 0);
    OPENSSL_free(spki);
}

static void test_request(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t *der;
    size_t der_len;
    cx_lsc_policy_default(&pol);
    /* Every key type of the profile under an RSA and an EC CAPF key. */
    const test_ca_t *cas[] = {&g_rsa_ca, &g_ec_ca};
    for (size_t c = 0; c < 2; c++) {
        for (size_t k = 0; k < K__COUNT; k++) {
            assert_int_equal(req_try(&cas[c]->iss, g_keys[k], DEVICE, NULL, NULL, &pol, &der,
                                     &der_len), CX_OK);
            assert_request(der, der_len, cas[c], g_keys[k], DEVICE, NULL, NULL, &pol);
            OPENSSL_free(der);
        }
    }
    /* NULL policy: the defaults (DEVICE style). */
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_RSA2048], DEVICE, NULL, NULL, NULL, &der,
                             &der_len), CX_OK);
    assert_request(der, der_len, &g_rsa_ca, g_keys[K_RSA2048], DEVICE, NULL, NULL, &pol);
    OPENSSL_free(der);
    /* CUCM style with PID and SN known; without them DEVICE style. */
    pol.subject = CX_LSC_SUBJECT_CUCM;
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_RSA2048], DEVICE, "CP-8861", "FCH18198CNQ",
                             &pol, &der, &der_len), CX_OK);
    assert_request(der, der_len, &g_rsa_ca, g_keys[K_RSA2048], DEVICE, "CP-8861", "FCH18198CNQ",
                   &pol);
    OPENSSL_free(der);
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_RSA2048], DEVICE, NULL, "FCH1", &pol, &der,
                             &der_len), CX_OK);
    assert_request(der, der_len, &g_rsa_ca, g_keys[K_RSA2048], DEVICE, NULL, "FCH1", &pol);
    OPENSSL_free(der);
    /* A P-384 CAPF key still signs with SHA-256. */
    test_ca_t p384;
    uint8_t *name;
    size_t name_len;
    capf_name_der(&name, &name_len);
    ca_make(&p384, tk_ec_key(NID_secp384r1), name, name_len);
    OPENSSL_free(name);
    cx_lsc_policy_default(&pol);
    assert_int_equal(req_try(&p384.iss, g_keys[K_P256], DEVICE, NULL, NULL, &pol, &der,
                             &der_len), CX_OK);
    assert_request(der, der_len, &p384, g_keys[K_P256], DEVICE, NULL, NULL, &pol);
    OPENSSL_free(der);
    ca_free(&p384);
}

static void test_request_bad_inputs(void **state) {
    (void)state;
    cx_lsc_policy_t pol;
    uint8_t *der = NULL, *spki;
    size_t der_len, spki_len;
    cx_lsc_policy_default(&pol);
    /* Names and policy. */
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_P256], NULL, NULL, NULL, &pol, &der,
                             &der_len), CX_E_CONFIG);
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_P256], "SEP 1", NULL, NULL, &pol, &der,
                             &der_len), CX_E_CONFIG);
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_P256], "", NULL, NULL, &pol, &der,
                             &der_len), CX_E_CONFIG);
    pol.subject = CX_LSC_SUBJECT_CUCM;
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_P256], DEVICE, "CP 8861", "FCH1", &pol,
                             &der, &der_len), CX_E_CONFIG);
    pol.subject = (cx_lsc_subject_t)7;
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_P256], DEVICE, NULL, NULL, &pol, &der,
                             &der_len), CX_E_CONFIG);
    cx_lsc_policy_default(&pol);
    /* Signer: none, no key, an Ed25519 key. */
    assert_int_equal(req_try(NULL, g_keys[K_P256], DEVICE, NULL, NULL, &pol, &der, &der_len),
                     CX_E_SIGN);
    cx_issuer_t nokey = g_rsa_ca.iss;
    nokey.key = NULL;
    assert_int_equal(req_try(&nokey, g_keys[K_P256], DEVICE, NULL, NULL, &pol, &der, &der_len),
                     CX_E_SIGN);
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    EVP_PKEY *ed = NULL;
    assert_non_null(kctx);
    assert_true(EVP_PKEY_keygen_init(kctx) && EVP_PKEY_keygen(kctx, &ed));
    EVP_PKEY_CTX_free(kctx);
    cx_issuer_t edra = g_rsa_ca.iss;
    edra.key = ed;
    assert_int_equal(req_try(&edra, g_keys[K_P256], DEVICE, NULL, NULL, &pol, &der, &der_len),
                     CX_E_SIGN);
    /* The phone's key: an Ed25519 SPKI is not a CAPF key. */
    assert_int_equal(req_try(&g_rsa_ca.iss, ed, DEVICE, NULL, NULL, &pol, &der, &der_len),
                     CX_E_CSR_KEY);
    EVP_PKEY_free(ed);
    /* SPKI truncated, with a trailing byte, NULL. */
    spki_of(g_keys[K_RSA2048], &spki, &spki_len);
    for (size_t n = 0; n < spki_len; n += 7) {
        CBB cbb;
        CBS cbs;
        CBS_init(&cbs, spki, n);
        assert_true(CBB_init(&cbb, 64));
        assert_int_equal(cx_lsc_request(&cbb, &g_rsa_ca.iss, &cbs, DEVICE, NULL, NULL, &pol),
                         CX_E_CSR_KEY);
        assert_int_equal(CBB_len(&cbb), 0);
        CBB_cleanup(&cbb);
    }
    {
        CBB cbb;
        assert_true(CBB_init(&cbb, 64));
        assert_int_equal(cx_lsc_request(&cbb, &g_rsa_ca.iss, NULL, DEVICE, NULL, NULL, &pol),
                         CX_E_CSR_KEY);
        CBB_cleanup(&cbb);
    }
    /* A malformed CAPF subject. */
    static const uint8_t bad_name[] = {0x30, 0x03, 0x31, 0x01, 0x00};
    cx_issuer_t badsub = g_rsa_ca.iss;
    CBS_init(&badsub.subject, bad_name, sizeof(bad_name));
    assert_int_equal(req_try(&badsub, g_keys[K_P256], DEVICE, NULL, NULL, &pol, &der, &der_len),
                     CX_E_CERT);
    /* A fixed buffer too small: NOMEM; the right size: OK, same length. */
    assert_int_equal(req_try(&g_rsa_ca.iss, g_keys[K_RSA2048], DEVICE, NULL, NULL, &pol, &der,
                             &der_len), CX_OK);
    OPENSSL_free(der);
    uint8_t *fixed = OPENSSL_malloc(der_len + 16);
    assert_non_null(fixed);
    for (size_t cap = 0; cap < der_len; cap += 97) {
        CBB cbb;
        CBS cbs;
        CBS_init(&cbs, spki, spki_len);
        assert_true(CBB_init_fixed(&cbb, fixed, cap));
        assert_int_equal(cx_lsc_request(&cbb, &g_rsa_ca.iss, &cbs, DEVICE, NULL, NULL, &pol),
                         CX_E_NOMEM);
        CBB_cleanup(&cbb);
    }
    {
        CBB cbb;
        CBS cbs;
        size_t n;
        CBS_init(&cbs, spki, spki_len);
        assert_true(CBB_init_fixed(&cbb, fixed, der_len + 16));
        assert_int_equal(cx_lsc_request(&cbb, &g_rsa_ca.iss, &cbs, DEVICE, NULL, NULL, &pol),
                         CX_OK);
        assert_true(CBB_finish(&cbb, NULL, &n));
        assert_int_equal(n, der_len);               /* RSA PKCS#1 v1.5: fixed length */
    }
    OPENSSL_free(fixed);
    OPENSSL_free(spki);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_default),
        cmocka_unit_test(test_key_types),
        cmocka_unit_test(test_null_policy),
        cmocka_unit_test(test_validity),
        cmocka_unit_test(test_ec_key_encipherment),
        cmocka_unit_test(test_san_uri),
        cmocka_unit_test(test_cucm_subject),
        cmocka_unit_test(test_issuer_name_shapes),
        cmocka_unit_test(test_device_names),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_fingerprints),
        cmocka_unit_test(test_serials),
        cmocka_unit_test(test_openssl_cli),
        cmocka_unit_test(test_request),
        cmocka_unit_test(test_request_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
