/* fuzz_capf_certauth: libFuzzer target for capf_certauth_check (the
 * certificate proof in AUTH_RESPONSE is untrusted). At start-up it makes a
 * fixed world with BoringSSL: an LSC CA and a manufacturer CA (the trust
 * stores), an EC LSC and an RSA MIC for device SEP001122334455, an RSA SUDI
 * certificate, and the valid elements a phone would send with each
 * (CERTIFICATE, SHA2_SIGNED_DATA, SIGNED_DATA, SUDI_DATA).
 * Input: two flag bytes, then AUTH_RESPONSE body bytes (TLVs). The flags
 * append valid elements after the fuzzed ones, so mutations of the others
 * reach the deep checks, and pick the settings:
 *   byte 0: 01 DEVICE_NAME, 02 CERTIFICATE, 04 SHA2_SIGNED_DATA,
 *           08 SIGNED_DATA, 10 SUDI_DATA, 20 use the MIC (else the LSC),
 *           40 prefer_mic, 80 accept_expired_mic;
 *   byte 1: 01 no manufacturer CAs, 02 lsc_cucm_cn, 04 `now` 20 years on.
 * The message (header + body) is parsed with capf_msg_parse first.
 * Invariants: no crash, no leak (ASan); the BoringSSL error queue is empty;
 * the result is CAPF_OK or a CAPF_E_CERTAUTH_* code with a status text
 * (never CAPF_E_ARG or CAPF_E_BUFFER); *used is LSC or MIC; `why` is
 * terminated; an accepted message carries SHA2_SIGNED_DATA and exactly the
 * certificate of the kind it was accepted as (nothing else can chain), and
 * a MIC only when manufacturer CAs are set. Any mismatch aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "dataplane/capf_certauth.h"

#define DEV "SEP001122334455"
#define SID 0x00000123u
#define YEAR (365 * 86400)

typedef struct {
    EVP_PKEY *key;
    X509 *x;
    uint8_t *der;
    size_t der_len;
} cert_t;

/* elem_t: a precomputed element value. */
typedef struct {
    uint8_t v[2048];
    size_t len;
} elem_t;

static struct {
    int64_t now;
    cert_t lsc_ca, mfg, lsc, mic, sudi;
    X509_STORE *lsc_store, *mic_store;
    elem_t cert[2], sha2[2], sha1[2], sudi_data;   /* [0] LSC, [1] MIC */
} W;

static void must(int ok) {
    if (!ok)
        abort();
}

static EVP_PKEY *ec_key(void) {
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    EVP_PKEY *k = EVP_PKEY_new();
    must(ec && k && EC_KEY_generate_key(ec) && EVP_PKEY_assign_EC_KEY(k, ec));
    return k;
}

static EVP_PKEY *rsa_key(void) {
    RSA *rsa = RSA_new();
    BIGNUM *e = BN_new();
    EVP_PKEY *k = EVP_PKEY_new();
    must(rsa && e && k && BN_set_word(e, RSA_F4) && RSA_generate_key_ex(rsa, 2048, e, NULL) &&
         EVP_PKEY_assign_RSA(k, rsa));
    BN_free(e);
    return k;
}

static void add_ext(X509 *x, int nid, const char *value) {
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, NULL, nid, value);
    must(ext && X509_add_ext(x, ext, -1));
    X509_EXTENSION_free(ext);
}

/* mk_cert: CN=cn for `key`, by `iss` (NULL: self-signed CA), one year. */
static void mk_cert(cert_t *c, EVP_PKEY *key, const char *cn, const cert_t *iss) {
    static long serial;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    must(x && name && X509_set_version(x, X509_VERSION_3) &&
         ASN1_INTEGER_set(X509_get_serialNumber(x), ++serial) &&
         X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)cn, -1, -1, 0) &&
         X509_set_subject_name(x, name) &&
         X509_set_issuer_name(x, iss ? X509_get_subject_name(iss->x) : name) &&
         ASN1_TIME_set(X509_getm_notBefore(x), (time_t)(W.now - 86400)) &&
         ASN1_TIME_set(X509_getm_notAfter(x), (time_t)(W.now + YEAR)) && X509_set_pubkey(x, key));
    add_ext(x, NID_basic_constraints, iss ? "critical,CA:FALSE" : "critical,CA:TRUE");
    must(X509_sign(x, iss ? iss->key : key, EVP_sha256()));
    uint8_t *der = NULL;
    int n = i2d_X509(x, &der);
    must(n > 0);
    X509_NAME_free(name);
    *c = (cert_t){.key = key, .x = x, .der = der, .der_len = (size_t)n};
}

/* sign: the phone's signature of `nid` hash h: ECDSA, or RSA PKCS#1 with
 * the DigestInfo (digestinfo) or the bare hash in the type-1 block. */
static size_t sign(EVP_PKEY *key, int nid, bool digestinfo, const uint8_t *h, size_t h_len,
                   uint8_t *out) {
    unsigned n = 512;
    size_t len = 0;
    if (EVP_PKEY_id(key) == EVP_PKEY_EC) {
        must(ECDSA_sign(0, h, h_len, out, &n, EVP_PKEY_get0_EC_KEY(key)));
        return n;
    }
    RSA *rsa = EVP_PKEY_get0_RSA(key);
    if (digestinfo) {
        must(RSA_sign(nid, h, (unsigned)h_len, out, &n, rsa));
        return n;
    }
    uint8_t em[512];
    size_t k = RSA_size(rsa);
    memset(em, 0xff, k);
    em[0] = 0x00;
    em[1] = 0x01;
    em[k - h_len - 1] = 0x00;
    memcpy(em + k - h_len, h, h_len);
    must(RSA_sign_raw(rsa, &len, out, 512, em, k, RSA_NO_PADDING));
    return len;
}

/* block appends id | u16 len | data to e. */
static void block(elem_t *e, uint8_t id, const uint8_t *d, size_t len) {
    CBB cbb, b;
    size_t n = 0;
    must(CBB_init_fixed(&cbb, e->v + e->len, sizeof(e->v) - e->len) && CBB_add_u8(&cbb, id) &&
         CBB_add_u16_length_prefixed(&cbb, &b) && CBB_add_bytes(&b, d, len) &&
         CBB_finish(&cbb, NULL, &n));
    e->len += n;
}

/* phone_elements fills the elements a phone sends with certificate c. */
static void phone_elements(const cert_t *c, elem_t *cert, elem_t *sha2, elem_t *sha1) {
    uint8_t h[SHA512_DIGEST_LENGTH], sig[512], type[2] = {0x00, 0x01};
    SHA512_CTX s512;
    SHA_CTX s1;
    size_t n;

    cert->len = 0;
    uint8_t inner[2048];
    memcpy(inner, type, 2);
    memcpy(inner + 2, c->der, c->der_len);
    block(cert, 0x01, inner, 2 + c->der_len);
    SHA512_Init(&s512);
    SHA512_Update(&s512, DEV, sizeof(DEV));      /* the name and its 00 */
    SHA512_Update(&s512, c->der, c->der_len);
    SHA512_Final(h, &s512);
    n = sign(c->key, NID_sha512, true, h, SHA512_DIGEST_LENGTH, sig);
    sha2->len = 0;
    block(sha2, CAPF_HASH_SHA512, sig, n);
    SHA1_Init(&s1);
    SHA1_Update(&s1, DEV, sizeof(DEV));
    SHA1_Update(&s1, c->der, c->der_len);
    SHA1_Final(h, &s1);
    n = sign(c->key, NID_sha1, false, h, SHA_DIGEST_LENGTH, sig);
    memcpy(sha1->v, sig, n);
    sha1->len = n;
}

/* sudi_element: SUDI_DATA for W.sudi over le32(SID). */
static void sudi_element(elem_t *e) {
    const uint8_t le[4] = {SID & 0xff, (SID >> 8) & 0xff, (SID >> 16) & 0xff, SID >> 24};
    uint8_t h[SHA512_DIGEST_LENGTH], sig[512];
    SHA512_CTX s512;
    SHA_CTX s1;
    e->len = 0;
    block(e, 0x00, W.sudi.der, W.sudi.der_len);
    SHA1_Init(&s1);
    SHA1_Update(&s1, le, 4);
    SHA1_Update(&s1, W.sudi.der, W.sudi.der_len);
    SHA1_Final(h, &s1);
    block(e, CAPF_HASH_SHA1, sig, sign(W.sudi.key, NID_sha1, false, h, SHA_DIGEST_LENGTH, sig));
    SHA512_Init(&s512);
    SHA512_Update(&s512, le, 4);
    SHA512_Update(&s512, W.sudi.der, W.sudi.der_len);
    SHA512_Final(h, &s512);
    block(e, CAPF_HASH_SHA512, sig, sign(W.sudi.key, NID_sha512, false, h, SHA512_DIGEST_LENGTH, sig));
}

/* world makes the fixed keys, certificates, stores and elements (once). */
static void world(void) {
    W.now = (int64_t)time(NULL);
    EVP_PKEY *rsa = rsa_key();
    mk_cert(&W.lsc_ca, ec_key(), "Fuzz LSC CA", NULL);
    mk_cert(&W.mfg, ec_key(), "Fuzz Manufacturing CA", NULL);
    mk_cert(&W.lsc, ec_key(), DEV, &W.lsc_ca);
    mk_cert(&W.mic, rsa, "CP-8861-" DEV, &W.mfg);
    EVP_PKEY_up_ref(rsa);
    mk_cert(&W.sudi, rsa, "CP-8861 SN:FUZZ0001", &W.mfg);
    W.lsc_store = X509_STORE_new();
    W.mic_store = X509_STORE_new();
    must(W.lsc_store && W.mic_store && X509_STORE_add_cert(W.lsc_store, W.lsc_ca.x) &&
         X509_STORE_add_cert(W.mic_store, W.mfg.x));
    phone_elements(&W.lsc, &W.cert[0], &W.sha2[0], &W.sha1[0]);
    phone_elements(&W.mic, &W.cert[1], &W.sha2[1], &W.sha1[1]);
    sudi_element(&W.sudi_data);
}

static bool add_elem(CBB *body, uint8_t tag, const uint8_t *v, size_t len) {
    CBB e;
    return CBB_add_u8(body, tag) && CBB_add_u16_length_prefixed(body, &e) && CBB_add_bytes(&e, v, len) &&
           CBB_flush(body);
}

/* check_accepted: an accepted message carries our certificate of that kind. */
static void check_accepted(const capf_msg_t *m, capf_cert_type_t used, bool mic_trust) {
    capf_cert_type_t type;
    CBS der;
    const cert_t *c = used == CAPF_CERT_MIC ? &W.mic : &W.lsc;
    if (capf_msg_cert(m, &type, &der) != CAPF_OK || !CBS_mem_equal(&der, c->der, c->der_len) ||
        !capf_msg_has(m, CAPF_TAG_SHA2_SIGNED_DATA) || (used == CAPF_CERT_MIC && !mic_trust))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool ready;
    static uint8_t buf[CAPF_HEADER_LEN + 16384];
    CBB cbb, body;
    CBS in;
    uint8_t a, b;
    size_t len;
    capf_msg_t m;

    if (!ready) {
        world();
        ready = true;
    }
    CBS_init(&in, data, size);
    if (!CBS_get_u8(&in, &a) || !CBS_get_u8(&in, &b))
        return 0;
    int k = (a & 0x20) ? 1 : 0;
    must(CBB_init_fixed(&cbb, buf, sizeof(buf)));
    bool ok = CBB_add_u8(&cbb, CAPF_MAGIC) && CBB_add_u8(&cbb, CAPF_OP_AUTH_RESPONSE) &&
              CBB_add_u32(&cbb, SID) && CBB_add_u16_length_prefixed(&cbb, &body) &&
              CBB_add_bytes(&body, CBS_data(&in), CBS_len(&in)) &&
              (!(a & 0x01) || add_elem(&body, CAPF_TAG_DEVICE_NAME, (const uint8_t *)DEV, sizeof(DEV))) &&
              (!(a & 0x02) || add_elem(&body, CAPF_TAG_CERTIFICATE, W.cert[k].v, W.cert[k].len)) &&
              (!(a & 0x04) || add_elem(&body, CAPF_TAG_SHA2_SIGNED_DATA, W.sha2[k].v, W.sha2[k].len)) &&
              (!(a & 0x08) || add_elem(&body, CAPF_TAG_SIGNED_DATA, W.sha1[k].v, W.sha1[k].len)) &&
              (!(a & 0x10) || add_elem(&body, CAPF_TAG_SUDI_DATA, W.sudi_data.v, W.sudi_data.len)) &&
              CBB_finish(&cbb, NULL, &len);
    if (!ok) {                              /* body over 64 KiB: not a message */
        CBB_cleanup(&cbb);
        return 0;
    }
    if (capf_msg_parse(&m, buf, len) != CAPF_OK)
        return 0;

    bool mic_trust = !(b & 0x01);
    capf_certauth_ctx_t ctx = {
        .device = DEV,
        .session_id = SID,
        .lsc_trust = W.lsc_store,
        .mic_trust = mic_trust ? W.mic_store : NULL,
        .accept_expired_mic = (a & 0x80) != 0,
        .prefer_mic = (a & 0x40) != 0,
        .lsc_cucm_cn = (b & 0x02) != 0,
        .now = W.now + ((b & 0x04) ? 20 * (int64_t)YEAR : 0),
    };
    char why[CAPF_CERTAUTH_WHY_MAX];
    capf_cert_type_t used = (capf_cert_type_t)0;
    memset(why, 'x', sizeof(why));
    capf_err_t err = capf_certauth_check(&ctx, &m, &used, why, sizeof(why));
    if (ERR_peek_error() != 0 || memchr(why, '\0', sizeof(why)) == NULL ||
        (used != CAPF_CERT_LSC && used != CAPF_CERT_MIC))
        abort();
    if (err == CAPF_OK)
        check_accepted(&m, used, mic_trust);
    else if (capf_certauth_status(err, used) == NULL)
        abort();                            /* CAPF_E_ARG, CAPF_E_BUFFER, foreign code */
    return 0;
}
