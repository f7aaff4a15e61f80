/* cx_ca_test: unit tests for cx_ca in fresh mkdtemp directories: first start
 * creates the four files (keys 0600), later starts reuse them, the TLS
 * certificate is reissued when stale, and broken directories are refused
 * with a cause naming the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>

#include "crypto/cx_ca.h"
#include "crypto/cx_testkit.h"

static const cx_ca_config_t k_cfg = {
    .ca_key_type = CX_KEY_EC256,
    .tls_key_type = CX_KEY_EC256,
    .ca_name = "Stampede Test CA",
    .org = "Stampede",
    .ca_validity_days = 3650,
    .tls_validity_days = 825,
    .tls_names = "localhost, 127.0.0.1,::1 ,stampede.example",
};

typedef struct {
    char dir[64];
} tmpdir_t;

static void tmp_make(tmpdir_t *t) {
    strcpy(t->dir, "/tmp/cx_ca_test.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
}

static void tmp_remove(tmpdir_t *t) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
}

static void path_of(char *out, size_t out_len, const tmpdir_t *t, const char *file) {
    snprintf(out, out_len, "%s/%s", t->dir, file);
}

static mode_t mode_of(const tmpdir_t *t, const char *file) {
    char path[128];
    struct stat st;
    path_of(path, sizeof(path), t, file);
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static X509 *x509_of(const uint8_t *der, size_t len) {
    const uint8_t *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    assert_non_null(x);
    return x;
}

static void open_ok(cx_ca_t *ca, const tmpdir_t *t, const cx_ca_config_t *cfg) {
    char why[256] = "untouched";
    cx_err_t err = cx_ca_open(ca, t->dir, cfg, why, sizeof(why));
    if (err != CX_OK)
        fail_msg("cx_ca_open: %s: %s", cx_err_str(err), why);
    assert_string_equal(why, "");
}

/* open_fails expects `want` and a cause mentioning `file`. */
static void open_fails(const tmpdir_t *t, const cx_ca_config_t *cfg, cx_err_t want,
                       const char *file) {
    cx_ca_t ca;
    char why[256] = "";
    assert_int_equal(cx_ca_open(&ca, t->dir, cfg, why, sizeof(why)), want);
    assert_non_null(strstr(why, file));
    assert_null(ca.ca_key);
    assert_null(ca.ca_der);
}

static void test_keytypes(void **state) {
    (void)state;
    static const char *const names[] = {"ec256", "ec384", "rsa2048", "rsa3072", "rsa4096"};
    cx_keytype_t t;
    for (int i = 0; i < CX_KEY__COUNT; i++) {
        assert_int_equal(cx_keytype_parse(names[i], &t), CX_OK);
        assert_int_equal(t, i);
        assert_string_equal(cx_keytype_str(t), names[i]);
    }
    assert_int_equal(cx_keytype_parse("p256", &t), CX_OK);
    assert_int_equal(t, CX_KEY_EC256);
    assert_int_equal(cx_keytype_parse("p384", &t), CX_OK);
    assert_int_equal(t, CX_KEY_EC384);
    assert_int_equal(cx_keytype_parse("rsa1024", &t), CX_E_CONFIG);
    assert_int_equal(cx_keytype_parse("", &t), CX_E_CONFIG);
    assert_string_equal(cx_keytype_str(CX_KEY__COUNT), "unknown");
    EVP_PKEY *k = cx_key_generate(CX_KEY_EC384);
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_bits(k), 384);
    EVP_PKEY_free(k);
    assert_null(cx_key_generate(CX_KEY__COUNT));
}

static void check_fresh(const cx_ca_t *ca) {
    X509 *cax = x509_of(ca->ca_der, ca->ca_der_len);
    X509 *tls = x509_of(ca->tls_der, ca->tls_der_len);
    char buf[64];
    int crit;

    /* CA: self-signed, CA:TRUE pathlen 0, keyCertSign, key matches. */
    assert_int_equal(X509_verify(cax, ca->ca_key), 1);
    assert_int_equal(X509_check_ca(cax), 1);
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(cax, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_true(bc->ca);
    assert_int_equal(ASN1_INTEGER_get(bc->pathlen), 0);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(X509_get_key_usage(cax), KU_DIGITAL_SIGNATURE | KU_KEY_CERT_SIGN |
                                                  KU_CRL_SIGN);
    assert_int_equal(X509_get_ext_by_NID(cax, NID_ext_key_usage, -1), -1);
    X509_NAME_get_text_by_NID(X509_get_subject_name(cax), NID_commonName, buf, sizeof(buf));
    assert_string_equal(buf, "Stampede Test CA");
    X509_NAME_get_text_by_NID(X509_get_subject_name(cax), NID_organizationName, buf,
                              sizeof(buf));
    assert_string_equal(buf, "Stampede");
    EVP_PKEY *pub = X509_get_pubkey(cax);
    assert_int_equal(EVP_PKEY_cmp(pub, ca->ca_key), 1);
    EVP_PKEY_free(pub);

    /* Issuer view: CA subject and SKI. */
    const uint8_t *p = CBS_data(&ca->issuer.subject);
    X509_NAME *iss_name = d2i_X509_NAME(NULL, &p, (long)CBS_len(&ca->issuer.subject));
    assert_non_null(iss_name);
    assert_int_equal(X509_NAME_cmp(iss_name, X509_get_subject_name(cax)), 0);
    X509_NAME_free(iss_name);
    assert_memory_equal(ASN1_STRING_get0_data(X509_get0_subject_key_id(cax)), ca->issuer.ski,
                        20);
    assert_ptr_equal(ca->issuer.key, ca->ca_key);

    /* TLS: issued by the CA, CN = first name, SAN of all names, serverAuth. */
    assert_int_equal(X509_verify(tls, ca->ca_key), 1);
    assert_int_equal(X509_check_issued(cax, tls), X509_V_OK);
    X509_NAME_get_text_by_NID(X509_get_subject_name(tls), NID_commonName, buf, sizeof(buf));
    assert_string_equal(buf, "localhost");
    assert_int_equal(X509_get_extended_key_usage(tls), XKU_SSL_SERVER);
    assert_int_equal(X509_get_key_usage(tls), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    GENERAL_NAMES *gens = X509_get_ext_d2i(tls, NID_subject_alt_name, &crit, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 4);
    static const int types[] = {GEN_DNS, GEN_IPADD, GEN_IPADD, GEN_DNS};
    static const int lens[] = {9, 4, 16, 16};
    for (int i = 0; i < 4; i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, (size_t)i);
        assert_int_equal(gn->type, types[i]);
        const ASN1_STRING *s = gn->type == GEN_DNS ? gn->d.dNSName : gn->d.iPAddress;
        assert_int_equal(ASN1_STRING_length(s), lens[i]);
    }
    GENERAL_NAMES_free(gens);
    pub = X509_get_pubkey(tls);
    assert_int_equal(EVP_PKEY_cmp(pub, ca->tls_key), 1);
    EVP_PKEY_free(pub);
    X509_free(cax);
    X509_free(tls);
}

static void test_create_then_reuse(void **state) {
    (void)state;
    tmpdir_t t;
    cx_ca_t a, b;
    tmp_make(&t);
    open_ok(&a, &t, &k_cfg);
    assert_true(a.created_ca);
    assert_true(a.created_tls);
    check_fresh(&a);
    assert_int_equal(mode_of(&t, "ca.key"), 0600);
    assert_int_equal(mode_of(&t, "tls.key"), 0600);
    assert_int_equal(mode_of(&t, "ca.crt") & 0600, 0600);
    char path[128];
    path_of(path, sizeof(path), &t, "ca.key.tmp");
    assert_int_not_equal(access(path, F_OK), 0);

    /* The key file is PEM PKCS#8 ("PRIVATE KEY"). */
    path_of(path, sizeof(path), &t, "ca.key");
    BIO *bio = BIO_new_file(path, "r");
    char *name = NULL, *header = NULL;
    uint8_t *data = NULL;
    long len = 0;
    assert_true(PEM_read_bio(bio, &name, &header, &data, &len));
    assert_string_equal(name, "PRIVATE KEY");
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    BIO_free(bio);

    /* Second start: same CA and TLS certificate, nothing created. */
    open_ok(&b, &t, &k_cfg);
    assert_false(b.created_ca);
    assert_false(b.created_tls);
    assert_int_equal(a.ca_der_len, b.ca_der_len);
    assert_memory_equal(a.ca_der, b.ca_der, a.ca_der_len);
    assert_int_equal(a.tls_der_len, b.tls_der_len);
    assert_memory_equal(a.tls_der, b.tls_der, a.tls_der_len);
    assert_int_equal(EVP_PKEY_cmp(a.ca_key, b.ca_key), 1);
    check_fresh(&b);
    cx_ca_cleanup(&b);

    /* Changed TLS names: TLS certificate reissued under the same CA and key. */
    cx_ca_config_t cfg = k_cfg;
    cfg.tls_names = "localhost,127.0.0.1,::1,stampede.example";   /* same, no blanks */
    open_ok(&b, &t, &cfg);
    assert_false(b.created_tls);
    cx_ca_cleanup(&b);
    cfg.tls_names = "other.example";
    open_ok(&b, &t, &cfg);
    assert_false(b.created_ca);
    assert_true(b.created_tls);
    assert_memory_equal(a.ca_der, b.ca_der, a.ca_der_len);
    assert_int_equal(EVP_PKEY_cmp(a.tls_key, b.tls_key), 1);
    cx_ca_cleanup(&b);

    cx_ca_cleanup(&a);
    cx_ca_cleanup(&a);                    /* idempotent */
    tmp_remove(&t);
}

static void test_rsa_ca(void **state) {
    (void)state;
    tmpdir_t t;
    cx_ca_t ca;
    cx_ca_config_t cfg = k_cfg;
    cfg.ca_key_type = CX_KEY_RSA2048;
    cfg.tls_key_type = CX_KEY_EC384;
    tmp_make(&t);
    open_ok(&ca, &t, &cfg);
    assert_int_equal(EVP_PKEY_id(ca.ca_key), EVP_PKEY_RSA);
    assert_int_equal(EVP_PKEY_bits(ca.ca_key), 2048);
    assert_int_equal(EVP_PKEY_id(ca.tls_key), EVP_PKEY_EC);
    X509 *x = x509_of(ca.ca_der, ca.ca_der_len);
    assert_int_equal(X509_get_signature_nid(x), NID_sha256WithRSAEncryption);
    X509_free(x);
    check_fresh(&ca);

    /* The issuer issues leaves (what the signing pool will do). */
    EVP_PKEY *leaf_key = tk_ec_key(NID_X9_62_prime256v1);
    uint8_t *csr_der, *der, serial[CX_SERIAL_LEN];
    size_t csr_len, der_len;
    cx_csr_t csr;
    CBB cbb;
    cx_leaf_policy_t pol = {.validity_days = 90, .backdate_s = 60};
    tk_csr_req(leaf_key, EVP_sha256(), "SEPAABBCCDDEEFF", NULL, &csr_der, &csr_len);
    assert_int_equal(cx_csr_parse(&csr, csr_der, csr_len), CX_OK);
    assert_true(CBB_init(&cbb, 1024));
    assert_int_equal(cx_cert_issue_leaf(&cbb, serial, &ca.issuer, &csr, &pol, time(NULL)),
                     CX_OK);
    assert_true(CBB_finish(&cbb, &der, &der_len));
    x = x509_of(der, der_len);
    assert_int_equal(X509_verify(x, ca.ca_key), 1);
    X509_free(x);
    OPENSSL_free(der);
    OPENSSL_free(csr_der);
    EVP_PKEY_free(leaf_key);
    cx_ca_cleanup(&ca);
    tmp_remove(&t);
}

static void test_tls_reissue(void **state) {
    (void)state;
    tmpdir_t t, other;
    cx_ca_t a, b;
    char src[128], dst[128], cmd[300];
    tmp_make(&t);
    tmp_make(&other);
    open_ok(&a, &t, &k_cfg);
    cx_ca_cleanup(&a);
    open_ok(&b, &other, &k_cfg);
    cx_ca_cleanup(&b);

    /* tls.crt from another CA with the same name: reissued. */
    path_of(src, sizeof(src), &other, "tls.crt");
    path_of(dst, sizeof(dst), &t, "tls.crt");
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    open_ok(&a, &t, &k_cfg);
    assert_false(a.created_ca);
    assert_true(a.created_tls);
    check_fresh(&a);
    cx_ca_cleanup(&a);

    /* Missing tls.key: new key, new certificate. */
    path_of(dst, sizeof(dst), &t, "tls.key");
    assert_int_equal(unlink(dst), 0);
    open_ok(&a, &t, &k_cfg);
    assert_true(a.created_tls);
    assert_int_equal(mode_of(&t, "tls.key"), 0600);
    check_fresh(&a);
    cx_ca_cleanup(&a);

    /* Garbage tls.crt: reissued. */
    path_of(dst, sizeof(dst), &t, "tls.crt");
    FILE *f = fopen(dst, "w");
    assert_non_null(f);
    fputs("not a certificate\n", f);
    fclose(f);
    open_ok(&a, &t, &k_cfg);
    assert_true(a.created_tls);
    cx_ca_cleanup(&a);

    /* A TLS validity under 30 days is always "expiring": reissued each start. */
    cx_ca_config_t cfg = k_cfg;
    cfg.tls_validity_days = 10;
    assert_int_equal(unlink(dst), 0);
    open_ok(&a, &t, &cfg);
    assert_true(a.created_tls);
    cx_ca_cleanup(&a);
    open_ok(&a, &t, &cfg);
    assert_true(a.created_tls);
    cx_ca_cleanup(&a);

    tmp_remove(&t);
    tmp_remove(&other);
}

static void test_ca_key_missing_or_mismatched(void **state) {
    (void)state;
    tmpdir_t t, other;
    cx_ca_t a;
    char src[128], dst[128], cmd[300];
    tmp_make(&t);
    tmp_make(&other);
    open_ok(&a, &t, &k_cfg);
    cx_ca_cleanup(&a);
    open_ok(&a, &other, &k_cfg);
    cx_ca_cleanup(&a);

    /* ca.key of another CA: refused, nothing overwritten. */
    path_of(src, sizeof(src), &other, "ca.key");
    path_of(dst, sizeof(dst), &t, "ca.key");
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    open_fails(&t, &k_cfg, CX_E_KEY, "ca.crt");
    snprintf(cmd, sizeof(cmd), "cmp -s '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);

    /* ca.key missing while ca.crt exists: refused, no key generated. */
    assert_int_equal(unlink(dst), 0);
    open_fails(&t, &k_cfg, CX_E_KEY, "ca.key");
    assert_int_not_equal(access(dst, F_OK), 0);

    /* ca.key unreadable as a key. */
    FILE *f = fopen(dst, "w");
    assert_non_null(f);
    fputs("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", f);
    fclose(f);
    open_fails(&t, &k_cfg, CX_E_KEY, "ca.key");

    /* ca.crt garbage with a real key. */
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
    assert_int_equal(system(cmd), 0);
    path_of(dst, sizeof(dst), &t, "ca.crt");
    f = fopen(dst, "w");
    assert_non_null(f);
    fputs("garbage\n", f);
    fclose(f);
    open_fails(&t, &k_cfg, CX_E_CERT, "ca.crt");

    /* ca.crt removed but ca.key kept: a new self-signed CA certificate for
     * the same key (recovers from a crash between the two writes). */
    assert_int_equal(unlink(dst), 0);
    open_ok(&a, &t, &k_cfg);
    assert_true(a.created_ca);
    assert_true(a.created_tls);
    check_fresh(&a);
    cx_ca_cleanup(&a);

    tmp_remove(&t);
    tmp_remove(&other);
}

/* test_expired_ca: an expired ca.crt (same key) is refused, naming ca.crt;
 * removing it self-signs a new one for the same key. */
static void test_expired_ca(void **state) {
    (void)state;
    tmpdir_t t;
    cx_ca_t ca;
    char path[128];
    uint8_t *name, *spki, serial[CX_SERIAL_LEN], *der;
    size_t name_len, spki_len, der_len;
    CBB cbb;
    tmp_make(&t);
    open_ok(&ca, &t, &k_cfg);
    EVP_PKEY *key = ca.ca_key;
    ca.ca_key = NULL;
    cx_ca_cleanup(&ca);

    assert_true(CBB_init(&cbb, 128));
    assert_int_equal(cx_name_build(&cbb, "Stampede", "Old CA"), CX_OK);
    assert_true(CBB_finish(&cbb, &name, &name_len));
    assert_true(CBB_init(&cbb, 128));
    assert_true(EVP_marshal_public_key(&cbb, key));
    assert_true(CBB_finish(&cbb, &spki, &spki_len));
    cx_issuer_t iss = {.key = key};
    cx_tbs_t tbs = {.not_before = time(NULL) - 7200, .not_after = time(NULL) - 3600,
                    .key_usage = CX_KU_KEY_CERT_SIGN, .is_ca = true};
    CBS_init(&iss.subject, name, name_len);
    tbs.subject = iss.subject;
    CBS_init(&tbs.spki, spki, spki_len);
    CBS_init(&tbs.san, NULL, 0);
    assert_int_equal(cx_cert_ski(iss.ski, &tbs.spki), CX_OK);
    assert_true(CBB_init(&cbb, 1024));
    assert_int_equal(cx_cert_build(&cbb, serial, &iss, &tbs), CX_OK);
    assert_true(CBB_finish(&cbb, &der, &der_len));
    path_of(path, sizeof(path), &t, "ca.crt");
    BIO *bio = BIO_new_file(path, "w");
    assert_non_null(bio);
    assert_true(PEM_write_bio(bio, "CERTIFICATE", "", der, (long)der_len) > 0);
    BIO_free(bio);
    open_fails(&t, &k_cfg, CX_E_CERT, "ca.crt");

    assert_int_equal(unlink(path), 0);
    open_ok(&ca, &t, &k_cfg);
    assert_true(ca.created_ca);
    assert_int_equal(EVP_PKEY_cmp(ca.ca_key, key), 1);
    check_fresh(&ca);
    cx_ca_cleanup(&ca);
    EVP_PKEY_free(key);
    OPENSSL_free(name);
    OPENSSL_free(spki);
    OPENSSL_free(der);
    tmp_remove(&t);
}

static void test_bad_config(void **state) {
    (void)state;
    tmpdir_t t;
    tmp_make(&t);
    cx_ca_config_t cfg = k_cfg;
    cfg.tls_names = "";
    open_fails(&t, &cfg, CX_E_CONFIG, "tls.crt");
    cfg.tls_names = " , ,";
    open_fails(&t, &cfg, CX_E_CONFIG, "tls.crt");
    cfg.tls_names = "bad name!";
    open_fails(&t, &cfg, CX_E_CONFIG, "tls.crt");
    cfg.tls_names = NULL;
    open_fails(&t, &cfg, CX_E_CONFIG, "tls.crt");
    cfg = k_cfg;
    cfg.ca_name = "";
    tmp_remove(&t);
    tmp_make(&t);
    open_fails(&t, &cfg, CX_E_CONFIG, "ca.crt");
    cfg = k_cfg;
    cfg.ca_key_type = CX_KEY__COUNT;
    open_fails(&t, &cfg, CX_E_CONFIG, t.dir);
    tmp_remove(&t);

    /* A directory that does not exist. */
    cx_ca_t ca;
    char why[256] = "";
    assert_int_equal(cx_ca_open(&ca, "/nonexistent/stampede", &k_cfg, why, sizeof(why)),
                     CX_E_IO);
    assert_non_null(strstr(why, "/nonexistent/stampede"));
    /* why may be NULL. */
    assert_int_equal(cx_ca_open(&ca, "/nonexistent/stampede", &k_cfg, NULL, 0), CX_E_IO);
    cx_ca_t zero = {0};
    cx_ca_cleanup(&zero);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keytypes),
        cmocka_unit_test(test_create_then_reuse),
        cmocka_unit_test(test_rsa_ca),
        cmocka_unit_test(test_tls_reissue),
        cmocka_unit_test(test_ca_key_missing_or_mismatched),
        cmocka_unit_test(test_expired_ca),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
