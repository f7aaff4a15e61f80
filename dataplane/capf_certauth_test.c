/* capf_certauth_test: unit tests for capf_certauth_check and
 * capf_certauth_status (capf-protocol.md §2.8, §5.5, §5.8; §6.1 P7, P8, P15;
 * §6.2 N3, N4). Every key and certificate is made at test time with
 * BoringSSL: our LSC CA, a second one (CAPF rollover), a manufacturer CA,
 * an expired manufacturer CA and a rogue CA. Each test writes AUTH_RESPONSE
 * by hand (header + TLVs, signed the way a phone signs: PKCS#1 type-1 block
 * of the bare hash or of a DigestInfo, or ECDSA), parses it with
 * capf_msg_parse, runs the check and looks at the code, the certificate
 * kind, the detail and the BoringSSL error queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/sha.h>

#include "crypto/cx_testkit.h"
#include "dataplane/capf_certauth.h"

#define DEV "SEP001122334455"
#define MIC_CN "CP-8861-" DEV
#define SID 0x00000123u
#define DAY 86400

typedef struct {
    EVP_PKEY *key;
    X509 *x;
    uint8_t *der;
    size_t der_len;
} cert_t;

/* CAs */
static cert_t g_ca1, g_ca2, g_mfg, g_mfg_old, g_rogue, g_mfg_root, g_mfg_sub;
/* leaves */
static cert_t g_lsc_rsa, g_lsc_ec, g_lsc_ca2, g_lsc_rogue, g_lsc_expired, g_lsc_future,
    g_lsc_wrong_cn, g_lsc_cucm_cn, g_lsc_weird_cn, g_lsc_two_cn;
static cert_t g_mic, g_mic_expired, g_mic_future, g_mic_old_ca, g_mic_wrong_cn, g_mic_bare_cn,
    g_mic_dash_cn, g_mic_sub;
static cert_t g_sudi, g_sudi_ec, g_sudi_rogue;
static X509_STORE *g_lsc_store, *g_ca1_store, *g_mic_store, *g_sub_store;
static int64_t g_now;

/* ---- certificates ------------------------------------------------------ */

static void add_ext(X509 *x, int nid, const char *value) {
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, NULL, nid, value);
    if (!ext || !X509_add_ext(x, ext, -1))
        abort();
    X509_EXTENSION_free(ext);
}

/* mk_cert issues a certificate for `key` with subject O=Test, CN=cn (and a
 * second CN if cn2), by `issuer` (NULL: self-signed), valid [nb, na]. */
static void mk_cert(cert_t *out, EVP_PKEY *key, const char *cn, const char *cn2, const cert_t *issuer,
                    bool ca, int64_t nb, int64_t na) {
    static long serial;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    if (!x || !name || !X509_set_version(x, X509_VERSION_3) ||
        !ASN1_INTEGER_set(X509_get_serialNumber(x), ++serial) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const uint8_t *)"Test", -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)cn, -1, -1, 0) ||
        (cn2 && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)cn2, -1, -1, 0)) ||
        !X509_set_subject_name(x, name) ||
        !X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->x) : name) ||
        !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)nb) ||
        !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)na) || !X509_set_pubkey(x, key))
        abort();
    add_ext(x, NID_basic_constraints, ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x, NID_key_usage, ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    if (!X509_sign(x, issuer ? issuer->key : key, EVP_sha256()))
        abort();
    uint8_t *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0)
        abort();
    X509_NAME_free(name);
    EVP_PKEY_up_ref(key);
    *out = (cert_t){.key = key, .x = x, .der = der, .der_len = (size_t)n};
}

static void free_cert(cert_t *c) {
    EVP_PKEY_free(c->key);
    X509_free(c->x);
    OPENSSL_free(c->der);
}

static X509_STORE *mk_store(const cert_t *a, const cert_t *b) {
    X509_STORE *s = X509_STORE_new();
    if (!s || !X509_STORE_add_cert(s, a->x) || (b && !X509_STORE_add_cert(s, b->x)))
        abort();
    return s;
}

static int setup(void **state) {
    (void)state;
    int64_t now = g_now = (int64_t)time(NULL);
    int64_t nb = now - DAY, na = now + 365 * DAY;
    EVP_PKEY *rsa_ca = tk_rsa_key(2048), *rsa_mfg = tk_rsa_key(2048), *rsa_lsc = tk_rsa_key(2048),
             *rsa_mic = tk_rsa_key(2048), *rsa_sudi = tk_rsa_key(2048);
    EVP_PKEY *ec_ca2 = tk_ec_key(NID_X9_62_prime256v1), *ec_rogue = tk_ec_key(NID_X9_62_prime256v1),
             *ec_old = tk_ec_key(NID_X9_62_prime256v1), *ec_lsc = tk_ec_key(NID_X9_62_prime256v1),
             *ec_sudi = tk_ec_key(NID_X9_62_prime256v1);

    mk_cert(&g_ca1, rsa_ca, "Test CAPF CA 1", NULL, NULL, true, nb, na);
    mk_cert(&g_ca2, ec_ca2, "Test CAPF CA 2", NULL, NULL, true, nb, na);
    mk_cert(&g_mfg, rsa_mfg, "Test Manufacturing CA", NULL, NULL, true, nb, na);
    mk_cert(&g_mfg_old, ec_old, "Old Manufacturing CA", NULL, NULL, true, now - 3650 * DAY, now - DAY);
    mk_cert(&g_rogue, ec_rogue, "Rogue CA", NULL, NULL, true, nb, na);
    mk_cert(&g_mfg_root, ec_old, "Test Manufacturing Root", NULL, NULL, true, nb, na);
    mk_cert(&g_mfg_sub, ec_ca2, "Test Manufacturing Sub CA", NULL, &g_mfg_root, true, nb, na);

    mk_cert(&g_lsc_rsa, rsa_lsc, DEV, NULL, &g_ca1, false, nb, na);
    mk_cert(&g_lsc_ec, ec_lsc, DEV, NULL, &g_ca1, false, nb, na);
    mk_cert(&g_lsc_ca2, ec_lsc, DEV, NULL, &g_ca2, false, nb, na);
    mk_cert(&g_lsc_rogue, ec_lsc, DEV, NULL, &g_rogue, false, nb, na);
    mk_cert(&g_lsc_expired, rsa_lsc, DEV, NULL, &g_ca1, false, now - 400 * DAY, now - DAY);
    mk_cert(&g_lsc_future, rsa_lsc, DEV, NULL, &g_ca1, false, now + DAY, na);
    mk_cert(&g_lsc_wrong_cn, rsa_lsc, "SEP999999999999", NULL, &g_ca1, false, nb, na);
    mk_cert(&g_lsc_cucm_cn, rsa_lsc, MIC_CN, NULL, &g_ca1, false, nb, na);
    mk_cert(&g_lsc_weird_cn, rsa_lsc, "SEP<b>\x01\"x", NULL, &g_ca1, false, nb, na);
    mk_cert(&g_lsc_two_cn, rsa_lsc, DEV, DEV, &g_ca1, false, nb, na);

    mk_cert(&g_mic, rsa_mic, MIC_CN, NULL, &g_mfg, false, now - 3000 * DAY, now + 600 * DAY);
    mk_cert(&g_mic_expired, rsa_mic, MIC_CN, NULL, &g_mfg, false, now - 3650 * DAY, now - DAY);
    mk_cert(&g_mic_future, rsa_mic, MIC_CN, NULL, &g_mfg, false, now + DAY, na);
    mk_cert(&g_mic_old_ca, rsa_mic, MIC_CN, NULL, &g_mfg_old, false, now - 100 * DAY, na);
    mk_cert(&g_mic_wrong_cn, rsa_mic, "CP-8861-SEP999999999999", NULL, &g_mfg, false, nb, na);
    mk_cert(&g_mic_bare_cn, rsa_mic, DEV, NULL, &g_mfg, false, nb, na);
    mk_cert(&g_mic_dash_cn, rsa_mic, "-" DEV, NULL, &g_mfg, false, nb, na);
    mk_cert(&g_mic_sub, rsa_mic, MIC_CN, NULL, &g_mfg_sub, false, nb, na);

    mk_cert(&g_sudi, rsa_sudi, "CP-8861 SN:FCH1234ABCD", NULL, &g_mfg, false, nb, na);
    mk_cert(&g_sudi_ec, ec_sudi, "CP-8861 SN:FCH1234ABCD", NULL, &g_mfg, false, nb, na);
    mk_cert(&g_sudi_rogue, rsa_sudi, "CP-8861 SN:FCH1234ABCD", NULL, &g_rogue, false, nb, na);

    EVP_PKEY *keys[] = {rsa_ca, rsa_mfg, rsa_lsc, rsa_mic, rsa_sudi, ec_ca2, ec_rogue, ec_old, ec_lsc, ec_sudi};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        EVP_PKEY_free(keys[i]);

    g_lsc_store = mk_store(&g_ca1, &g_ca2);
    g_ca1_store = mk_store(&g_ca1, NULL);
    g_mic_store = mk_store(&g_mfg, &g_mfg_old);
    g_sub_store = mk_store(&g_mfg_sub, NULL);     /* the issuer only, not its root */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    cert_t *all[] = {&g_ca1, &g_ca2, &g_mfg, &g_mfg_old, &g_rogue, &g_mfg_root, &g_mfg_sub, &g_mic_sub,
                     &g_lsc_rsa, &g_lsc_ec,
                     &g_lsc_ca2, &g_lsc_rogue, &g_lsc_expired, &g_lsc_future, &g_lsc_wrong_cn,
                     &g_lsc_cucm_cn, &g_lsc_weird_cn, &g_lsc_two_cn, &g_mic, &g_mic_expired,
                     &g_mic_future, &g_mic_old_ca, &g_mic_wrong_cn, &g_mic_bare_cn, &g_mic_dash_cn,
                     &g_sudi, &g_sudi_ec, &g_sudi_rogue};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        free_cert(all[i]);
    X509_STORE_free(g_lsc_store);
    X509_STORE_free(g_ca1_store);
    X509_STORE_free(g_mic_store);
    X509_STORE_free(g_sub_store);
    return 0;
}

/* ---- the phone's side -------------------------------------------------- */

typedef enum {
    RSA_BARE = 0, /* type-1 block of the bare hash (usecallmanagernz's client) */
    RSA_DI,       /* standard PKCS#1 v1.5: DigestInfo */
    RSA_TRAILING, /* 00 01 FF*8 00, zeros, then the hash: only the tail is right */
} rsa_style_t;

/* hash_of: `nid` hash of a || b || c. */
static size_t hash_of(int nid, const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len,
                      const uint8_t *c, size_t c_len, uint8_t *out) {
    const EVP_MD *md = nid == NID_sha1 ? EVP_sha1() : nid == NID_sha256 ? EVP_sha256() : EVP_sha512();
    EVP_MD_CTX ctx;
    unsigned n = 0;
    EVP_MD_CTX_init(&ctx);
    if (!EVP_DigestInit_ex(&ctx, md, NULL) || !EVP_DigestUpdate(&ctx, a, a_len) ||
        !EVP_DigestUpdate(&ctx, b, b_len) || !EVP_DigestUpdate(&ctx, c, c_len) ||
        !EVP_DigestFinal_ex(&ctx, out, &n))
        abort();
    EVP_MD_CTX_cleanup(&ctx);
    return n;
}

/* sign_hash signs hash `h` (of `nid`) with `key` the way a phone does. */
static size_t sign_hash(EVP_PKEY *key, int nid, rsa_style_t style, const uint8_t *h, size_t h_len,
                        uint8_t *out, size_t cap) {
    size_t len = 0;
    if (EVP_PKEY_id(key) == EVP_PKEY_EC) {
        unsigned n = (unsigned)cap;
        if (!ECDSA_sign(0, h, h_len, out, &n, EVP_PKEY_get0_EC_KEY(key)))
            abort();
        return n;
    }
    RSA *rsa = EVP_PKEY_get0_RSA(key);
    size_t k = RSA_size(rsa);
    if (style == RSA_DI) {
        unsigned n = 0;
        if (!RSA_sign(nid, h, (unsigned)h_len, out, &n, rsa))
            abort();
        return n;
    }
    uint8_t em[512];
    memset(em, 0, k);
    em[1] = 0x01;
    if (style == RSA_BARE)
        memset(em + 2, 0xff, k - 3 - h_len);
    else
        memset(em + 2, 0xff, 8);
    memcpy(em + k - h_len, h, h_len);
    if (!RSA_sign_raw(rsa, &len, out, cap, em, k, RSA_NO_PADDING))
        abort();
    return len;
}

/* phone_t: what the phone puts in AUTH_RESPONSE. Zero = the normal case:
 * CERTIFICATE of `cert` (type 1), SHA2_SIGNED_DATA id 03 (SHA-512), no
 * SIGNED_DATA unless `sha1`, all signed by the certificate's key over
 * DEV || 00 || DER in the bare RSA style. */
typedef struct {
    const cert_t *cert;          /* NULL: no CERTIFICATE */
    int cert_type;               /* 0: 1 (LSC); -1: 0000 */
    const uint8_t *der;          /* sent instead of cert->der (malformed cases) */
    size_t der_len;
    EVP_PKEY *signer;            /* NULL: cert->key */
    const char *signed_name;     /* NULL: DEV */
    rsa_style_t style;
    bool sha1;                   /* send SIGNED_DATA */
    bool no_sha2;                /* send no SHA2_SIGNED_DATA */
    uint8_t sha2_id;             /* 0: 3 */
    int sha2_nid;                /* hash actually signed; 0: the one of sha2_id */
    bool flip_sha1, flip_sha2;   /* corrupt one byte of the signature */
    bool sigs_without_cert;      /* signatures (by g_lsc_rsa) but no CERTIFICATE */
    const cert_t *sudi;          /* send SUDI_DATA with this certificate */
    bool sudi_be;                /* sign the session id big-endian */
    bool sudi_flip_sha1;
    uint8_t sudi_id0;            /* id of the certificate block (00) */
    uint8_t sudi_id2;            /* 0: 3 */
    bool sudi_swap;              /* blocks in the order 01, 00, 03 */
} phone_t;

typedef struct {
    bool prefer_mic, accept_expired_mic, lsc_cucm_cn, no_mic_trust, no_lsc_trust;
    X509_STORE *lsc;             /* NULL: g_lsc_store */
    X509_STORE *mic;             /* NULL: g_mic_store */
    const char *device;          /* NULL: DEV */
    int64_t shift;               /* added to the current time for `now` */
} opts_t;

static uint8_t g_buf[8 + 16384];
static capf_msg_t g_msg;
static char g_why[CAPF_CERTAUTH_WHY_MAX];

static void add_elem(CBB *body, uint8_t tag, const uint8_t *v, size_t len) {
    CBB e;
    if (!CBB_add_u8(body, tag) || !CBB_add_u16_length_prefixed(body, &e) || !CBB_add_bytes(&e, v, len) ||
        !CBB_flush(body))
        abort();
}

static void add_block(CBB *v, uint8_t id, const uint8_t *d, size_t len) {
    CBB b;
    if (!CBB_add_u8(v, id) || !CBB_add_u16_length_prefixed(v, &b) || !CBB_add_bytes(&b, d, len) ||
        !CBB_flush(v))
        abort();
}

static int nid_of(uint8_t id) {
    return id == CAPF_HASH_SHA1 ? NID_sha1 : id == CAPF_HASH_SHA256 ? NID_sha256 : NID_sha512;
}

/* add_sudi writes SUDI_DATA for p->sudi over the session id. */
static void add_sudi(CBB *body, const phone_t *p) {
    uint8_t sid[4], h[64], s1[512], s2[512];
    uint8_t id2 = p->sudi_id2 ? p->sudi_id2 : CAPF_HASH_SHA512;
    CBB blk;
    if (p->sudi_be) {
        sid[0] = 0, sid[1] = 0, sid[2] = 0x01, sid[3] = 0x23;
    } else {
        sid[0] = 0x23, sid[1] = 0x01, sid[2] = 0, sid[3] = 0;
    }
    const cert_t *c = p->sudi;
    size_t hl = hash_of(NID_sha1, sid, 4, c->der, c->der_len, NULL, 0, h);
    size_t l1 = sign_hash(c->key, NID_sha1, RSA_BARE, h, hl, s1, sizeof(s1));
    hl = hash_of(nid_of(id2), sid, 4, c->der, c->der_len, NULL, 0, h);
    size_t l2 = sign_hash(c->key, nid_of(id2), RSA_BARE, h, hl, s2, sizeof(s2));
    if (p->sudi_flip_sha1)
        s1[l1 / 2] ^= 0x01;
    if (!CBB_init(&blk, 2048))
        abort();
    if (p->sudi_swap) {
        add_block(&blk, 0x01, s1, l1);
        add_block(&blk, p->sudi_id0, c->der, c->der_len);
    } else {
        add_block(&blk, p->sudi_id0, c->der, c->der_len);
        add_block(&blk, 0x01, s1, l1);
    }
    add_block(&blk, id2, s2, l2);
    add_elem(body, CAPF_TAG_SUDI_DATA, CBB_data(&blk), CBB_len(&blk));
    CBB_cleanup(&blk);
}

/* add_sigs writes SHA2_SIGNED_DATA and SIGNED_DATA as `p` says. */
static void add_sigs(CBB *body, const phone_t *p, const cert_t *c, const uint8_t *der, size_t der_len) {
    static const uint8_t zero = 0;
    const char *name = p->signed_name ? p->signed_name : DEV;
    EVP_PKEY *key = p->signer ? p->signer : c->key;
    uint8_t h[64], sig[512];
    CBB v;
    if (!p->no_sha2) {
        uint8_t id = p->sha2_id ? p->sha2_id : CAPF_HASH_SHA512;
        int nid = p->sha2_nid ? p->sha2_nid : nid_of(id);
        size_t hl = hash_of(nid, (const uint8_t *)name, strlen(name), &zero, 1, der, der_len, h);
        size_t sl = sign_hash(key, nid, p->style, h, hl, sig, sizeof(sig));
        if (p->flip_sha2)
            sig[sl / 2] ^= 0x01;
        uint8_t blk[3 + 512];
        if (!CBB_init_fixed(&v, blk, sizeof(blk)))
            abort();
        add_block(&v, id, sig, sl);
        size_t bl;
        if (!CBB_finish(&v, NULL, &bl))
            abort();
        add_elem(body, CAPF_TAG_SHA2_SIGNED_DATA, blk, bl);
    }
    if (p->sha1) {
        size_t hl = hash_of(NID_sha1, (const uint8_t *)name, strlen(name), &zero, 1, der, der_len, h);
        size_t sl = sign_hash(key, NID_sha1, p->style, h, hl, sig, sizeof(sig));
        if (p->flip_sha1)
            sig[sl / 2] ^= 0x01;
        add_elem(body, CAPF_TAG_SIGNED_DATA, sig, sl);
    }
}

/* build writes AUTH_RESPONSE for `p` into g_buf and parses it into g_msg. */
static void build(const phone_t *p) {
    static const uint8_t one = 1, three = 3;
    CBB cbb, body, v, inner;
    size_t len;
    if (!CBB_init_fixed(&cbb, g_buf, sizeof(g_buf)) || !CBB_add_u8(&cbb, CAPF_MAGIC) ||
        !CBB_add_u8(&cbb, CAPF_OP_AUTH_RESPONSE) || !CBB_add_u32(&cbb, SID) ||
        !CBB_add_u16_length_prefixed(&cbb, &body))
        abort();
    add_elem(&body, CAPF_TAG_REASON, &one, 1);
    add_elem(&body, CAPF_TAG_VERSION, &three, 1);
    add_elem(&body, CAPF_TAG_DEVICE_NAME, (const uint8_t *)DEV, sizeof(DEV));
    if (p->cert) {
        const uint8_t *der = p->der ? p->der : p->cert->der;
        size_t der_len = p->der ? p->der_len : p->cert->der_len;
        if (!CBB_add_u8(&body, CAPF_TAG_CERTIFICATE) || !CBB_add_u16_length_prefixed(&body, &v) ||
            !CBB_add_u8(&v, 0x01) || !CBB_add_u16_length_prefixed(&v, &inner) ||
            !CBB_add_u16(&inner, p->cert_type < 0 ? 0 : p->cert_type ? (uint16_t)p->cert_type : CAPF_CERT_LSC) ||
            !CBB_add_bytes(&inner, der, der_len) || !CBB_flush(&body))
            abort();
        add_sigs(&body, p, p->cert, der, der_len);
    } else if (p->sigs_without_cert) {
        add_sigs(&body, p, &g_lsc_rsa, g_lsc_rsa.der, g_lsc_rsa.der_len);
    }
    if (p->sudi)
        add_sudi(&body, p);
    if (!CBB_finish(&cbb, NULL, &len))
        abort();
    assert_int_equal(capf_msg_parse(&g_msg, g_buf, len), CAPF_OK);
}

/* run builds `p`, checks it under `o` and returns the code; *used and
 * g_why are the check's. The BoringSSL error queue must be empty after. */
static capf_err_t run(const phone_t *p, const opts_t *o, capf_cert_type_t *used) {
    static const opts_t defaults;
    if (o == NULL)
        o = &defaults;
    build(p);
    capf_certauth_ctx_t ctx = {
        .device = o->device ? o->device : DEV,
        .session_id = SID,
        .lsc_trust = o->no_lsc_trust ? NULL : o->lsc ? o->lsc : g_lsc_store,
        .mic_trust = o->no_mic_trust ? NULL : o->mic ? o->mic : g_mic_store,
        .accept_expired_mic = o->accept_expired_mic,
        .prefer_mic = o->prefer_mic,
        .lsc_cucm_cn = o->lsc_cucm_cn,
        .now = g_now + o->shift,
    };
    *used = (capf_cert_type_t)0xee;
    memset(g_why, 'x', sizeof(g_why));
    capf_err_t e = capf_certauth_check(&ctx, &g_msg, used, g_why, sizeof(g_why));
    assert_int_equal(ERR_peek_error(), 0);
    assert_non_null(memchr(g_why, '\0', sizeof(g_why)));
    assert_true(*used == CAPF_CERT_LSC || *used == CAPF_CERT_MIC);
    if (e != CAPF_OK && e != CAPF_E_ARG)
        assert_non_null(capf_certauth_status(e, *used));
    return e;
}

#define EXPECT(p, o, err, kind)                                                  \
    do {                                                                         \
        capf_cert_type_t used_;                                                  \
        capf_err_t e_ = run((p), (o), &used_);                                   \
        if (e_ != (err))                                                         \
            print_message("got %s (%s)\n", capf_err_str(e_), g_why);             \
        assert_int_equal(e_, (err));                                             \
        assert_int_equal(used_, (kind));                                         \
    } while (0)

/* ---- P7, P8, P15 ------------------------------------------------------- */

static void test_p7_lsc_rsa_bare(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true}), NULL, CAPF_OK, CAPF_CERT_LSC);
    assert_string_equal(g_why, "LSC");
}

static void test_p7_lsc_rsa_digestinfo(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true, .style = RSA_DI}), NULL, CAPF_OK, CAPF_CERT_LSC);
}

static void test_p7_lsc_ec(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_ec, .sha1 = true}), NULL, CAPF_OK, CAPF_CERT_LSC);
}

static void test_p7_sha256_and_sha2_only(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true, .sha2_id = CAPF_HASH_SHA256}), NULL,
           CAPF_OK, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_ec, .sha2_id = CAPF_HASH_SHA256}), NULL, CAPF_OK, CAPF_CERT_LSC);
    /* SIGNED_DATA (SHA-1) is optional */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa}), NULL, CAPF_OK, CAPF_CERT_LSC);
}

static void test_p7_type_is_informational(void **state) {
    (void)state;
    /* the 16-bit type inside CERTIFICATE does not decide LSC or MIC */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .cert_type = CAPF_CERT_MIC, .sha1 = true}), NULL,
           CAPF_OK, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_mic, .cert_type = CAPF_CERT_LSC, .sha1 = true}), NULL,
           CAPF_OK, CAPF_CERT_MIC);
}

static void test_p8_mic_sudi(void **state) {
    (void)state;
    const phone_t p = {.cert = &g_mic, .sha1 = true, .sudi = &g_sudi};
    EXPECT(&p, NULL, CAPF_OK, CAPF_CERT_MIC);
    assert_string_equal(g_why, "MIC + SUDI");
    EXPECT(&p, &((opts_t){.prefer_mic = true}), CAPF_OK, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic, .sha1 = true, .style = RSA_DI, .sudi = &g_sudi,
                       .sudi_id2 = CAPF_HASH_SHA256}),
           NULL, CAPF_OK, CAPF_CERT_MIC);
    /* SUDI_DATA with an LSC is checked too */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true, .sudi = &g_sudi}), NULL, CAPF_OK,
           CAPF_CERT_LSC);
    assert_string_equal(g_why, "LSC + SUDI");
}

static void test_p8_mic_without_sudi(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_mic, .sha1 = true}), NULL, CAPF_OK, CAPF_CERT_MIC);
    assert_string_equal(g_why, "MIC");
    /* precedence decides the order only: an LSC still works in MIC mode */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true}), &((opts_t){.prefer_mic = true}),
           CAPF_OK, CAPF_CERT_LSC);
}

static void test_p15_rollover(void **state) {
    (void)state;
    const phone_t p = {.cert = &g_lsc_ca2, .sha1 = true};
    EXPECT(&p, NULL, CAPF_OK, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true}), NULL, CAPF_OK, CAPF_CERT_LSC);
    /* the second issuer is what makes it pass */
    EXPECT(&p, &((opts_t){.lsc = g_ca1_store}), CAPF_E_CERTAUTH_UNTRUSTED, CAPF_CERT_LSC);
}

static void test_issuer_is_enough(void **state) {
    (void)state;
    /* a store holding the issuing CA but not its root: the issuer is the anchor */
    EXPECT(&((phone_t){.cert = &g_mic_sub, .sha1 = true}), &((opts_t){.mic = g_sub_store}), CAPF_OK,
           CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic_sub, .sha1 = true}), NULL, CAPF_E_CERTAUTH_UNTRUSTED,
           CAPF_CERT_LSC);
}

/* ---- N3 ---------------------------------------------------------------- */

static void test_n3_untrusted(void **state) {
    (void)state;
    const phone_t p = {.cert = &g_lsc_rogue, .sha1 = true};
    capf_cert_type_t used;
    EXPECT(&p, NULL, CAPF_E_CERTAUTH_UNTRUSTED, CAPF_CERT_LSC);
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_UNTRUSTED, CAPF_CERT_LSC),
                        "Invalid LSC: certificate not issued by a trusted CA");
    EXPECT(&p, &((opts_t){.prefer_mic = true}), CAPF_E_CERTAUTH_UNTRUSTED, CAPF_CERT_MIC);
    /* no issuer anywhere: the preferred kind, even when its store is not set */
    EXPECT(&p, &((opts_t){.prefer_mic = true, .no_mic_trust = true}), CAPF_E_CERTAUTH_UNTRUSTED,
           CAPF_CERT_MIC);
    /* a MIC without manufacturer CAs configured */
    EXPECT(&((phone_t){.cert = &g_mic, .sha1 = true}), &((opts_t){.no_mic_trust = true}),
           CAPF_E_CERTAUTH_UNTRUSTED, CAPF_CERT_LSC);
    assert_non_null(strstr(g_why, "MICs not accepted"));
    /* an LSC with only manufacturer CAs */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true}), &((opts_t){.no_lsc_trust = true}),
           CAPF_E_CERTAUTH_UNTRUSTED, CAPF_CERT_LSC);
    /* an LSC whose issuer signature is broken: our CA's name, so "Invalid LSC"
     * even in MIC precedence (a refused chain is closer than no issuer) */
    uint8_t der[4096];
    memcpy(der, g_lsc_rsa.der, g_lsc_rsa.der_len);
    der[g_lsc_rsa.der_len - 10] ^= 0x01;
    assert_int_equal(run(&((phone_t){.cert = &g_lsc_rsa, .der = der, .der_len = g_lsc_rsa.der_len}),
                         &((opts_t){.prefer_mic = true}), &used),
                     CAPF_E_CERTAUTH_UNTRUSTED);
    assert_int_equal(used, CAPF_CERT_LSC);
    assert_non_null(strstr(g_why, "signature failure"));
}

static void test_n3_ca_certificate(void **state) {
    (void)state;
    /* the CA certificate itself, signed with the CA key: in the store, but no device */
    EXPECT(&((phone_t){.cert = &g_ca1, .sha1 = true}), NULL, CAPF_E_CERTAUTH_UNTRUSTED, CAPF_CERT_LSC);
    assert_non_null(strstr(g_why, "CA certificate"));
}

static void test_n3_bad_sha1(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true, .flip_sha1 = true}), NULL,
           CAPF_E_CERTAUTH_SIG_SHA1, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_ec, .sha1 = true, .flip_sha1 = true}), NULL,
           CAPF_E_CERTAUTH_SIG_SHA1, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_mic, .sha1 = true, .flip_sha1 = true, .style = RSA_DI}), NULL,
           CAPF_E_CERTAUTH_SIG_SHA1, CAPF_CERT_MIC);
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_SIG_SHA1, CAPF_CERT_MIC),
                        "Invalid MIC: signature (SHA-1) does not verify");
}

static void test_n3_bad_sha512(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true, .flip_sha2 = true}), NULL,
           CAPF_E_CERTAUTH_SIG_SHA512, CAPF_CERT_LSC);
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_SIG_SHA512, CAPF_CERT_LSC),
                        "Invalid LSC: signature (SHA-512) does not verify");
    EXPECT(&((phone_t){.cert = &g_lsc_ec, .flip_sha2 = true}), NULL, CAPF_E_CERTAUTH_SIG_SHA512,
           CAPF_CERT_LSC);
    /* signed over another device name, or with another key */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .signed_name = "SEP001122334456"}), NULL,
           CAPF_E_CERTAUTH_SIG_SHA512, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .signer = g_mic.key}), NULL, CAPF_E_CERTAUTH_SIG_SHA512,
           CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .signer = g_lsc_ec.key}), NULL,
           CAPF_E_CERTAUTH_SIG_SHA512, CAPF_CERT_LSC);
    /* the device the session accepted is not the one the phone signed for */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa}), &((opts_t){.device = "SEP00112233445"}),
           CAPF_E_CERTAUTH_NAME, CAPF_CERT_LSC);
}

static void test_n3_rsa_padding(void **state) {
    (void)state;
    /* right hash at the end, wrong padding before it: refused */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .style = RSA_TRAILING}), NULL, CAPF_E_CERTAUTH_SIG_SHA512,
           CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_mic, .sha2_id = CAPF_HASH_SHA256, .style = RSA_TRAILING}), NULL,
           CAPF_E_CERTAUTH_SIG_SHA256, CAPF_CERT_MIC);
}

static void test_n3_hash_id(void **state) {
    (void)state;
    /* 01 (SHA-1) is no SHA-2 proof, even when the signature is right */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha2_id = CAPF_HASH_SHA1}), NULL,
           CAPF_E_CERTAUTH_HASH_ID, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha2_id = 4, .sha2_nid = NID_sha512}), NULL,
           CAPF_E_CERTAUTH_HASH_ID, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha2_id = 0xff, .sha2_nid = NID_sha512}), NULL,
           CAPF_E_CERTAUTH_HASH_ID, CAPF_CERT_LSC);
    /* the id says one hash, the signature is over another */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha2_id = CAPF_HASH_SHA256, .sha2_nid = NID_sha512}),
           NULL, CAPF_E_CERTAUTH_SIG_SHA256, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_ec, .sha2_id = CAPF_HASH_SHA512, .sha2_nid = NID_sha256}),
           NULL, CAPF_E_CERTAUTH_SIG_SHA512, CAPF_CERT_LSC);
}

static void test_n3_no_sha2(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .sha1 = true, .no_sha2 = true}), NULL,
           CAPF_E_CERTAUTH_NO_SHA2, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_mic, .no_sha2 = true}), NULL, CAPF_E_CERTAUTH_NO_SHA2,
           CAPF_CERT_MIC);
}

static void test_n3_validity(void **state) {
    (void)state;
    const opts_t allow = {.accept_expired_mic = true};
    /* an expired LSC is never accepted */
    EXPECT(&((phone_t){.cert = &g_lsc_expired, .sha1 = true}), NULL, CAPF_E_CERTAUTH_EXPIRED,
           CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_expired, .sha1 = true}), &allow, CAPF_E_CERTAUTH_EXPIRED,
           CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_future, .sha1 = true}), NULL, CAPF_E_CERTAUTH_NOT_YET_VALID,
           CAPF_CERT_LSC);
    /* an expired MIC only with the setting */
    EXPECT(&((phone_t){.cert = &g_mic_expired, .sha1 = true}), NULL, CAPF_E_CERTAUTH_EXPIRED,
           CAPF_CERT_MIC);
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_EXPIRED, CAPF_CERT_MIC),
                        "Invalid MIC: certificate expired");
    EXPECT(&((phone_t){.cert = &g_mic_expired, .sha1 = true}), &allow, CAPF_OK, CAPF_CERT_MIC);
    assert_string_equal(g_why, "MIC (expired, accepted by setting)");
    EXPECT(&((phone_t){.cert = &g_mic_expired, .sha1 = true, .sudi = &g_sudi}),
           &((opts_t){.accept_expired_mic = true, .prefer_mic = true}), CAPF_OK, CAPF_CERT_MIC);
    /* the setting covers the MIC itself, not a MIC not yet valid or an expired CA */
    EXPECT(&((phone_t){.cert = &g_mic_future, .sha1 = true}), &allow,
           CAPF_E_CERTAUTH_NOT_YET_VALID, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic_old_ca, .sha1 = true}), &allow, CAPF_E_CERTAUTH_EXPIRED,
           CAPF_CERT_MIC);
    /* validity is judged at ctx->now, not at the wall clock */
    EXPECT(&((phone_t){.cert = &g_lsc_rsa}), &((opts_t){.shift = 400 * DAY}), CAPF_E_CERTAUTH_EXPIRED,
           CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_future}), &((opts_t){.shift = 2 * DAY}), CAPF_OK, CAPF_CERT_LSC);
}

static void test_n3_name(void **state) {
    (void)state;
    EXPECT(&((phone_t){.cert = &g_lsc_wrong_cn, .sha1 = true}), NULL, CAPF_E_CERTAUTH_NAME,
           CAPF_CERT_LSC);
    assert_string_equal(g_why, "LSC CN \"SEP999999999999\" is not " DEV);
    EXPECT(&((phone_t){.cert = &g_mic_wrong_cn, .sha1 = true}), NULL, CAPF_E_CERTAUTH_NAME,
           CAPF_CERT_MIC);
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_NAME, CAPF_CERT_MIC),
                        "Invalid MIC: certificate CN does not match the device name");
    /* a MIC needs "<model>-" before the name; an LSC needs the name alone */
    EXPECT(&((phone_t){.cert = &g_mic_bare_cn}), NULL, CAPF_E_CERTAUTH_NAME, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic_dash_cn}), NULL, CAPF_E_CERTAUTH_NAME, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_lsc_cucm_cn}), NULL, CAPF_E_CERTAUTH_NAME, CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_cucm_cn}), &((opts_t){.lsc_cucm_cn = true}), CAPF_OK,
           CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_wrong_cn}), &((opts_t){.lsc_cucm_cn = true}),
           CAPF_E_CERTAUTH_NAME, CAPF_CERT_LSC);
    /* two CNs: ambiguous, refused */
    EXPECT(&((phone_t){.cert = &g_lsc_two_cn}), NULL, CAPF_E_CERTAUTH_NAME, CAPF_CERT_LSC);
    /* CN bytes are shown safely in the detail */
    EXPECT(&((phone_t){.cert = &g_lsc_weird_cn}), NULL, CAPF_E_CERTAUTH_NAME, CAPF_CERT_LSC);
    assert_string_equal(g_why, "LSC CN \"SEP?b???x\" is not " DEV);
}

static void test_n3_sudi(void **state) {
    (void)state;
    capf_cert_type_t used;
    /* the session id signed big-endian is refused (§2.8: little-endian) */
    EXPECT(&((phone_t){.cert = &g_mic, .sha1 = true, .sudi = &g_sudi, .sudi_be = true}), NULL,
           CAPF_E_CERTAUTH_SUDI_SIG, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic, .sudi = &g_sudi, .sudi_flip_sha1 = true}), NULL,
           CAPF_E_CERTAUTH_SUDI_SIG, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic, .sudi = &g_sudi_rogue}), NULL,
           CAPF_E_CERTAUTH_SUDI_UNTRUSTED, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic, .sudi = &g_sudi_ec}), NULL, CAPF_E_CERTAUTH_SUDI_CERT,
           CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic, .sudi = &g_sudi, .sudi_swap = true}), NULL,
           CAPF_E_CERTAUTH_SUDI_FORMAT, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic, .sudi = &g_sudi, .sudi_id2 = CAPF_HASH_SHA1}), NULL,
           CAPF_E_CERTAUTH_SUDI_FORMAT, CAPF_CERT_MIC);
    EXPECT(&((phone_t){.cert = &g_mic, .sudi = &g_sudi, .sudi_id0 = 0x04}), NULL,
           CAPF_E_CERTAUTH_SUDI_FORMAT, CAPF_CERT_MIC);
    /* SUDI errors are MIC failures whatever authenticated */
    assert_int_equal(run(&((phone_t){.cert = &g_lsc_rsa, .sudi = &g_sudi}),
                         &((opts_t){.no_mic_trust = true}), &used),
                     CAPF_E_CERTAUTH_SUDI_UNTRUSTED);
    assert_int_equal(used, CAPF_CERT_LSC);
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_SUDI_UNTRUSTED, used),
                        "Invalid MIC: SUDI certificate not issued by a trusted manufacturer CA or not valid now");
}

/* ---- N4 and malformed input -------------------------------------------- */

static void test_n4_no_certificate(void **state) {
    (void)state;
    EXPECT(&((phone_t){0}), NULL, CAPF_E_CERTAUTH_NO_CREDENTIALS, CAPF_CERT_LSC);
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_NO_CREDENTIALS, CAPF_CERT_LSC),
                        "Invalid Credentials: no certificate sent");
    EXPECT(&((phone_t){0}), &((opts_t){.prefer_mic = true}), CAPF_E_CERTAUTH_NO_CREDENTIALS,
           CAPF_CERT_MIC);
    EXPECT(&((phone_t){.sigs_without_cert = true, .sha1 = true}), NULL,
           CAPF_E_CERTAUTH_NO_CREDENTIALS, CAPF_CERT_LSC);
    assert_non_null(strstr(g_why, "without the certificate"));
    EXPECT(&((phone_t){.sudi = &g_sudi}), NULL, CAPF_E_CERTAUTH_NO_CREDENTIALS, CAPF_CERT_LSC);
}

static void test_malformed_certificate(void **state) {
    (void)state;
    static const uint8_t not_x509[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .der = not_x509, .der_len = sizeof(not_x509)}), NULL,
           CAPF_E_CERTAUTH_CERT, CAPF_CERT_LSC);
    assert_non_null(strstr(g_why, "not one X.509"));
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .cert_type = 3}), NULL, CAPF_E_CERTAUTH_CERT,
           CAPF_CERT_LSC);
    assert_non_null(strstr(g_why, "type neither LSC nor MIC"));
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .cert_type = -1}), NULL, CAPF_E_CERTAUTH_CERT,
           CAPF_CERT_LSC);
    EXPECT(&((phone_t){.cert = &g_lsc_rsa, .cert_type = 0xffff}), NULL, CAPF_E_CERTAUTH_CERT,
           CAPF_CERT_LSC);
}

static void test_bad_context(void **state) {
    (void)state;
    capf_certauth_ctx_t ctx = {.device = DEV, .session_id = SID, .now = g_now};
    capf_cert_type_t used = (capf_cert_type_t)0xee;
    char why[8];
    build(&((phone_t){.cert = &g_lsc_rsa}));
    assert_int_equal(capf_certauth_check(&ctx, &g_msg, &used, why, sizeof(why)), CAPF_E_ARG);
    assert_int_equal(used, CAPF_CERT_LSC);
    assert_true(strlen(why) < sizeof(why));          /* truncated, terminated */
    ctx.lsc_trust = g_lsc_store;
    ctx.device = "";
    assert_int_equal(capf_certauth_check(&ctx, &g_msg, &used, NULL, 0), CAPF_E_ARG);
    ctx.device = NULL;
    assert_int_equal(capf_certauth_check(&ctx, &g_msg, &used, NULL, 0), CAPF_E_ARG);
    ctx.device = DEV;
    assert_int_equal(capf_certauth_check(&ctx, &g_msg, &used, NULL, 0), CAPF_OK);
    assert_null(capf_certauth_status(CAPF_E_ARG, CAPF_CERT_LSC));
}

static void test_status_texts(void **state) {
    (void)state;
    char want[256];
    for (int e = CAPF_E_CERTAUTH_CERT; e <= CAPF_E_CERTAUTH_SUDI_SIG; e++) {
        bool sudi = e >= CAPF_E_CERTAUTH_SUDI_FORMAT;
        snprintf(want, sizeof(want), "Invalid %s: %s", sudi ? "MIC" : "LSC", capf_err_str((capf_err_t)e));
        assert_string_equal(capf_certauth_status((capf_err_t)e, CAPF_CERT_LSC), want);
        snprintf(want, sizeof(want), "Invalid MIC: %s", capf_err_str((capf_err_t)e));
        assert_string_equal(capf_certauth_status((capf_err_t)e, CAPF_CERT_MIC), want);
    }
    snprintf(want, sizeof(want), "Invalid Credentials: %s", capf_err_str(CAPF_E_CERTAUTH_NO_CREDENTIALS));
    assert_string_equal(capf_certauth_status(CAPF_E_CERTAUTH_NO_CREDENTIALS, CAPF_CERT_MIC), want);
    assert_null(capf_certauth_status(CAPF_OK, CAPF_CERT_LSC));
    assert_null(capf_certauth_status(CAPF_E_BUFFER, CAPF_CERT_LSC));
    assert_null(capf_certauth_status(CAPF_E_MAGIC, CAPF_CERT_MIC));
    assert_null(capf_certauth_status(CAPF_E__COUNT, CAPF_CERT_MIC));
    assert_string_equal(capf_err_str(CAPF_E_CERTAUTH_SUDI_SIG), "SUDI signature does not verify");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_p7_lsc_rsa_bare),
        cmocka_unit_test(test_p7_lsc_rsa_digestinfo),
        cmocka_unit_test(test_p7_lsc_ec),
        cmocka_unit_test(test_p7_sha256_and_sha2_only),
        cmocka_unit_test(test_p7_type_is_informational),
        cmocka_unit_test(test_p8_mic_sudi),
        cmocka_unit_test(test_p8_mic_without_sudi),
        cmocka_unit_test(test_p15_rollover),
        cmocka_unit_test(test_issuer_is_enough),
        cmocka_unit_test(test_n3_untrusted),
        cmocka_unit_test(test_n3_ca_certificate),
        cmocka_unit_test(test_n3_bad_sha1),
        cmocka_unit_test(test_n3_bad_sha512),
        cmocka_unit_test(test_n3_rsa_padding),
        cmocka_unit_test(test_n3_hash_id),
        cmocka_unit_test(test_n3_no_sha2),
        cmocka_unit_test(test_n3_validity),
        cmocka_unit_test(test_n3_name),
        cmocka_unit_test(test_n3_sudi),
        cmocka_unit_test(test_n4_no_certificate),
        cmocka_unit_test(test_malformed_certificate),
        cmocka_unit_test(test_bad_context),
        cmocka_unit_test(test_status_texts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
