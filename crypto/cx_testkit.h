/* cx_testkit: helpers shared by the crypto/ unit tests (never linked into
 * stampeded): fresh keys and PKCS#10 requests made at test time, either with
 * BoringSSL's X509_REQ (what real clients produce) or by hand with CBB (for
 * shapes X509_REQ will not write: no attributes, odd versions, odd
 * algorithm identifiers). All functions abort the test on failure.
 * Thread: test main thread. */
#ifndef CX_TESTKIT_H
#define CX_TESTKIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static inline EVP_PKEY *tk_ec_key(int nid) {
    EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
    EVP_PKEY *key = EVP_PKEY_new();
    if (!ec || !key || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(key, ec))
        abort();
    return key;
}

static inline EVP_PKEY *tk_rsa_key(int bits) {
    RSA *rsa = RSA_new();
    BIGNUM *e = BN_new();
    EVP_PKEY *key = EVP_PKEY_new();
    if (!rsa || !e || !key || !BN_set_word(e, RSA_F4) ||
        !RSA_generate_key_ex(rsa, bits, e, NULL) || !EVP_PKEY_assign_RSA(key, rsa))
        abort();
    BN_free(e);
    return key;
}

/* tk_csr_req makes a CSR with X509_REQ: subject CN=`cn` (O=Test too), and an
 * extensionRequest with subjectAltName `san` (OpenSSL syntax, e.g.
 * "DNS:a.example,IP:10.0.0.1") when not NULL. DER to *der (OPENSSL_free). */
static inline void tk_csr_req(EVP_PKEY *key, const EVP_MD *md, const char *cn,
                              const char *san, uint8_t **der, size_t *der_len) {
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = X509_NAME_new();
    if (!req || !name || !X509_REQ_set_version(req, 0) ||
        !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const uint8_t *)"Test", -1, -1, 0) ||
        (cn && !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const uint8_t *)cn, -1, -1, 0)) ||
        !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key))
        abort();
    if (san) {
        STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
        X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, NULL, NID_subject_alt_name, san);
        if (!exts || !ext || !sk_X509_EXTENSION_push(exts, ext) ||
            !X509_REQ_add_extensions(req, exts))
            abort();
        sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    }
    if (!X509_REQ_sign(req, key, md))
        abort();
    int n = i2d_X509_REQ(req, NULL);
    uint8_t *p = OPENSSL_malloc((size_t)n);
    *der = p;
    if (!p || i2d_X509_REQ(req, &p) != n)
        abort();
    *der_len = (size_t)n;
    X509_NAME_free(name);
    X509_REQ_free(req);
}

/* tk_csr_opts_t: a CSR made by hand. Zeroed fields mean: version 0, subject
 * CN=hand, no [0] attributes unless `attrs`, signature AlgorithmIdentifier
 * that matches `key` and `md` unless `alg_der` is given. */
typedef struct {
    EVP_PKEY *key;
    const EVP_MD *md;
    uint64_t version;
    bool attrs;                 /* write the [0] attributes field */
    bool challenge;             /* add a challengePassword attribute */
    const char *san_dns;        /* add extensionRequest { SAN dNSName } */
    const uint8_t *alg_der;     /* signatureAlgorithm TLV override */
    size_t alg_der_len;
    const uint8_t *subject_der; /* subject Name TLV override */
    size_t subject_der_len;
} tk_csr_opts_t;

static inline void tk_add_oid(CBB *cbb, const char *text) {
    CBB oid;
    if (!CBB_add_asn1(cbb, &oid, CBS_ASN1_OBJECT) ||
        !CBB_add_asn1_oid_from_text(&oid, text, strlen(text)) || !CBB_flush(cbb))
        abort();
}

static inline void tk_add_attributes(CBB *cri, const tk_csr_opts_t *o) {
    CBB attrs, attr, set, str, exts, ext, val, names, dns;
    if (!CBB_add_asn1(cri, &attrs, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0))
        abort();
    if (o->challenge) {
        if (!CBB_add_asn1(&attrs, &attr, CBS_ASN1_SEQUENCE))
            abort();
        tk_add_oid(&attr, "1.2.840.113549.1.9.7");
        if (!CBB_add_asn1(&attr, &set, CBS_ASN1_SET) ||
            !CBB_add_asn1(&set, &str, CBS_ASN1_UTF8STRING) ||
            !CBB_add_bytes(&str, (const uint8_t *)"secret", 6) || !CBB_flush(&attrs))
            abort();
    }
    if (o->san_dns) {
        if (!CBB_add_asn1(&attrs, &attr, CBS_ASN1_SEQUENCE))
            abort();
        tk_add_oid(&attr, "1.2.840.113549.1.9.14");
        if (!CBB_add_asn1(&attr, &set, CBS_ASN1_SET) ||
            !CBB_add_asn1(&set, &exts, CBS_ASN1_SEQUENCE) ||
            !CBB_add_asn1(&exts, &ext, CBS_ASN1_SEQUENCE))
            abort();
        tk_add_oid(&ext, "2.5.29.17");
        if (!CBB_add_asn1(&ext, &val, CBS_ASN1_OCTETSTRING) ||
            !CBB_add_asn1(&val, &names, CBS_ASN1_SEQUENCE) ||
            !CBB_add_asn1(&names, &dns, CBS_ASN1_CONTEXT_SPECIFIC | 2) ||
            !CBB_add_bytes(&dns, (const uint8_t *)o->san_dns, strlen(o->san_dns)) ||
            !CBB_flush(&attrs))
            abort();
    }
    if (!CBB_flush(cri))
        abort();
}

/* tk_default_alg writes the AlgorithmIdentifier that matches key and md. */
static inline void tk_default_alg(CBB *cbb, const tk_csr_opts_t *o) {
    CBB alg, null;
    bool rsa = EVP_PKEY_id(o->key) == EVP_PKEY_RSA;
    int md = EVP_MD_type(o->md);
    const char *oid = rsa ? (md == NID_sha256   ? "1.2.840.113549.1.1.11"
                             : md == NID_sha384 ? "1.2.840.113549.1.1.12"
                             : md == NID_sha512 ? "1.2.840.113549.1.1.13"
                                                : "1.2.840.113549.1.1.5")
                          : (md == NID_sha256   ? "1.2.840.10045.4.3.2"
                             : md == NID_sha384 ? "1.2.840.10045.4.3.3"
                             : md == NID_sha512 ? "1.2.840.10045.4.3.4"
                                                : "1.2.840.10045.4.1");
    if (!CBB_add_asn1(cbb, &alg, CBS_ASN1_SEQUENCE))
        abort();
    tk_add_oid(&alg, oid);
    if ((rsa && !CBB_add_asn1(&alg, &null, CBS_ASN1_NULL)) || !CBB_flush(cbb))
        abort();
}

/* tk_csr_hand builds and signs a CSR per `o`. DER to *der (OPENSSL_free). */
static inline void tk_csr_hand(const tk_csr_opts_t *o, uint8_t **der, size_t *der_len) {
    CBB info, cri, top, req, bits, name, rdn, atv, str;
    EVP_MD_CTX ctx;
    uint8_t sig[1024];
    size_t sig_len = sizeof(sig);

    if (!CBB_init(&info, 512) || !CBB_add_asn1(&info, &cri, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1_uint64(&cri, o->version))
        abort();
    if (o->subject_der) {
        if (!CBB_add_bytes(&cri, o->subject_der, o->subject_der_len))
            abort();
    } else {
        if (!CBB_add_asn1(&cri, &name, CBS_ASN1_SEQUENCE) ||
            !CBB_add_asn1(&name, &rdn, CBS_ASN1_SET) ||
            !CBB_add_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE))
            abort();
        tk_add_oid(&atv, "2.5.4.3");
        if (!CBB_add_asn1(&atv, &str, CBS_ASN1_UTF8STRING) ||
            !CBB_add_bytes(&str, (const uint8_t *)"hand", 4) || !CBB_flush(&cri))
            abort();
    }
    if (!EVP_marshal_public_key(&cri, o->key))
        abort();
    if (o->attrs || o->challenge || o->san_dns)
        tk_add_attributes(&cri, o);
    if (!CBB_flush(&info))
        abort();
    EVP_MD_CTX_init(&ctx);
    if (!EVP_DigestSignInit(&ctx, NULL, o->md, NULL, o->key) ||
        !EVP_DigestSign(&ctx, sig, &sig_len, CBB_data(&info), CBB_len(&info)))
        abort();
    EVP_MD_CTX_cleanup(&ctx);
    if (!CBB_init(&top, 1024) || !CBB_add_asn1(&top, &req, CBS_ASN1_SEQUENCE) ||
        !CBB_add_bytes(&req, CBB_data(&info), CBB_len(&info)))
        abort();
    if (o->alg_der) {
        if (!CBB_add_bytes(&req, o->alg_der, o->alg_der_len))
            abort();
    } else {
        tk_default_alg(&req, o);
    }
    if (!CBB_add_asn1(&req, &bits, CBS_ASN1_BITSTRING) || !CBB_add_u8(&bits, 0) ||
        !CBB_add_bytes(&bits, sig, sig_len) || !CBB_finish(&top, der, der_len))
        abort();
    CBB_cleanup(&info);
}

#endif
