/* cx_csr: PKCS#10 CertificationRequest (RFC 2986) parsing and proof of
 * possession. The DER comes from untrusted clients, so it is read only with
 * CBS cursors: every step is checked and every constructed value must be
 * consumed exactly (no trailing bytes). cx_csr_parse is cheap and structural
 * (it may run on a polling core); cx_csr_verify parses the public key,
 * applies the key and algorithm policy and checks the signature, and so
 * belongs on a signer worker. Nothing is allocated by the parser: the result
 * is a set of views into the caller's buffer.
 * Thread: any thread; no shared state. */
#include "crypto/cx_csr.h"

#include <string.h>

#include <openssl/bn.h>
#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/rsa.h>

#define CX_RSA_MIN_BITS 2048
#define CX_RSA_MAX_BITS 8192
#define CX_RSA_E_MIN_BITS 17   /* e >= 65537 (FIPS 186-4), e odd */
#define CX_RSA_E_MAX_BITS 33   /* what BoringSSL verifies at all */

/* 1.2.840.113549.1.9.14 extensionRequest */
static const uint8_t cx_oid_ext_req[] = {0x2a, 0x86, 0x48, 0x86, 0xf7,
                                         0x0d, 0x01, 0x09, 0x0e};
/* 2.5.29.17 subjectAltName */
static const uint8_t cx_oid_san[] = {0x55, 0x1d, 0x11};
/* 2.5.4.3 commonName */
static const uint8_t cx_oid_cn[] = {0x55, 0x04, 0x03};

/* Accepted CSR signature algorithms. Anything else (sha1WithRSAEncryption,
 * md5WithRSAEncryption, ecdsa-with-SHA1, RSASSA-PSS, ...) is CX_E_CSR_ALG. */
typedef struct {
    uint8_t oid[9];
    uint8_t oid_len;
    int key_type;                 /* EVP_PKEY_RSA or EVP_PKEY_EC */
    const EVP_MD *(*md)(void);
} cx_sigalg_t;

static const cx_sigalg_t cx_sigalgs[] = {
    /* 1.2.840.113549.1.1.11/12/13 sha256/384/512WithRSAEncryption */
    {{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b}, 9, EVP_PKEY_RSA, EVP_sha256},
    {{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c}, 9, EVP_PKEY_RSA, EVP_sha384},
    {{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d}, 9, EVP_PKEY_RSA, EVP_sha512},
    /* 1.2.840.10045.4.3.2/3/4 ecdsa-with-SHA256/384/512 */
    {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}, 8, EVP_PKEY_EC, EVP_sha256},
    {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}, 8, EVP_PKEY_EC, EVP_sha384},
    {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}, 8, EVP_PKEY_EC, EVP_sha512},
};

static bool cx_cbs_is(const CBS *cbs, const uint8_t *bytes, size_t len) {
    return CBS_mem_equal(cbs, bytes, len);
}

/* cx_alg_split reads an AlgorithmIdentifier TLV: SEQUENCE { OID, params
 * OPTIONAL (one element) }. `params` is the parameters TLV, empty if absent. */
static bool cx_alg_split(const CBS *alg_tlv, CBS *oid, CBS *params) {
    CBS in = *alg_tlv, seq;
    CBS_init(params, NULL, 0);
    if (!CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
        !CBS_get_asn1(&seq, oid, CBS_ASN1_OBJECT) || CBS_len(oid) == 0)
        return false;
    if (CBS_len(&seq) == 0)
        return true;
    unsigned tag;
    return CBS_get_any_asn1_element(&seq, params, &tag, NULL) && CBS_len(&seq) == 0;
}

/* cx_name_check validates a Name TLV: SEQUENCE OF RelativeDistinguishedName,
 * each a non-empty SET OF SEQUENCE { OBJECT IDENTIFIER, ANY }. Sets *empty
 * when there is no RDN. */
static bool cx_name_check(const CBS *name_tlv, bool *empty) {
    CBS in = *name_tlv, rdns;
    if (!CBS_get_asn1(&in, &rdns, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0)
        return false;
    *empty = CBS_len(&rdns) == 0;
    while (CBS_len(&rdns) > 0) {
        CBS rdn;
        if (!CBS_get_asn1(&rdns, &rdn, CBS_ASN1_SET) || CBS_len(&rdn) == 0)
            return false;
        while (CBS_len(&rdn) > 0) {
            CBS atv, oid, value;
            unsigned tag;
            if (!CBS_get_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE) ||
                !CBS_get_asn1(&atv, &oid, CBS_ASN1_OBJECT) || CBS_len(&oid) == 0 ||
                !CBS_get_any_asn1_element(&atv, &value, &tag, NULL) ||
                CBS_len(&atv) != 0)
                return false;
        }
    }
    return true;
}

/* cx_spki_check validates the shape of a SubjectPublicKeyInfo TLV:
 * SEQUENCE { AlgorithmIdentifier, BIT STRING }. The key itself is parsed by
 * cx_csr_verify. */
static bool cx_spki_check(const CBS *spki_tlv) {
    CBS in = *spki_tlv, seq, alg, oid, params, bits;
    return CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE) && CBS_len(&in) == 0 &&
           CBS_get_asn1_element(&seq, &alg, CBS_ASN1_SEQUENCE) &&
           cx_alg_split(&alg, &oid, &params) &&
           CBS_get_asn1(&seq, &bits, CBS_ASN1_BITSTRING) &&
           CBS_is_valid_asn1_bitstring(&bits) && CBS_len(&seq) == 0;
}

/* cx_general_names_check validates a GeneralNames TLV: a non-empty SEQUENCE
 * of context-specific elements [0]..[8] (RFC 5280 §4.2.1.6). */
static bool cx_general_names_check(const CBS *gn_tlv) {
    CBS in = *gn_tlv, names;
    if (!CBS_get_asn1(&in, &names, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
        CBS_len(&names) == 0)
        return false;
    while (CBS_len(&names) > 0) {
        CBS name;
        unsigned tag;
        if (!CBS_get_any_asn1_element(&names, &name, &tag, NULL) ||
            (tag & CBS_ASN1_CLASS_MASK) != CBS_ASN1_CONTEXT_SPECIFIC ||
            (tag & CBS_ASN1_TAG_NUMBER_MASK) > 8)
            return false;
    }
    return true;
}

/* cx_ext_request parses the value SET of an extensionRequest attribute:
 * SET { SEQUENCE OF Extension }, Extension ::= SEQUENCE { OID, critical
 * BOOLEAN DEFAULT FALSE, OCTET STRING }. Records subjectAltName in out->san. */
static cx_err_t cx_ext_request(cx_csr_t *out, CBS *values) {
    CBS exts;
    if (!CBS_get_asn1(values, &exts, CBS_ASN1_SEQUENCE) || CBS_len(values) != 0)
        return CX_E_CSR_EXT;
    while (CBS_len(&exts) > 0) {
        CBS ext, oid, value;
        int critical;
        if (!CBS_get_asn1(&exts, &ext, CBS_ASN1_SEQUENCE) ||
            !CBS_get_asn1(&ext, &oid, CBS_ASN1_OBJECT) || CBS_len(&oid) == 0 ||
            (CBS_peek_asn1_tag(&ext, CBS_ASN1_BOOLEAN) &&
             !CBS_get_asn1_bool(&ext, &critical)) ||
            !CBS_get_asn1(&ext, &value, CBS_ASN1_OCTETSTRING) || CBS_len(&ext) != 0)
            return CX_E_CSR_EXT;
        if (!cx_cbs_is(&oid, cx_oid_san, sizeof(cx_oid_san)))
            continue;
        if (CBS_len(&out->san) != 0)
            return CX_E_CSR_EXT;           /* two subjectAltName: ambiguous */
        if (!cx_general_names_check(&value))
            return CX_E_CSR_EXT;
        out->san = value;
    }
    return CX_OK;
}

/* cx_attributes walks the [0] attributes: SET OF SEQUENCE { OID, SET OF ANY }.
 * Only extensionRequest is interpreted, at most once; others are skipped. */
static cx_err_t cx_attributes(cx_csr_t *out, CBS *attrs) {
    bool seen_ext_req = false;
    while (CBS_len(attrs) > 0) {
        CBS attr, oid, values;
        if (!CBS_get_asn1(attrs, &attr, CBS_ASN1_SEQUENCE) ||
            !CBS_get_asn1(&attr, &oid, CBS_ASN1_OBJECT) || CBS_len(&oid) == 0 ||
            !CBS_get_asn1(&attr, &values, CBS_ASN1_SET) || CBS_len(&attr) != 0)
            return CX_E_NOT_CSR;
        if (!cx_cbs_is(&oid, cx_oid_ext_req, sizeof(cx_oid_ext_req)))
            continue;
        if (seen_ext_req)
            return CX_E_CSR_EXT;
        seen_ext_req = true;
        cx_err_t err = cx_ext_request(out, &values);
        if (err != CX_OK)
            return err;
    }
    return CX_OK;
}

/* cx_version reads the version INTEGER, which must be 0 (v1). */
static cx_err_t cx_version(CBS *cri) {
    CBS ver;
    static const uint8_t zero = 0;
    if (!CBS_get_asn1(cri, &ver, CBS_ASN1_INTEGER) ||
        !CBS_is_valid_asn1_integer(&ver, NULL))
        return CX_E_NOT_CSR;
    return cx_cbs_is(&ver, &zero, 1) ? CX_OK : CX_E_CSR_VERSION;
}

/* cx_info parses certificationRequestInfo (out->info) into its parts. */
static cx_err_t cx_info(cx_csr_t *out) {
    CBS in = out->info, cri, attrs;
    int has_attrs;
    cx_err_t err;

    if (!CBS_get_asn1(&in, &cri, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0)
        return CX_E_NOT_CSR;
    if ((err = cx_version(&cri)) != CX_OK)
        return err;
    if (!CBS_get_asn1_element(&cri, &out->subject, CBS_ASN1_SEQUENCE))
        return CX_E_NOT_CSR;
    if (!cx_name_check(&out->subject, &out->subject_empty))
        return CX_E_CSR_SUBJECT;
    if (!CBS_get_asn1_element(&cri, &out->spki, CBS_ASN1_SEQUENCE) ||
        !cx_spki_check(&out->spki) ||
        !CBS_get_optional_asn1(&cri, &attrs, &has_attrs,
                               CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
        CBS_len(&cri) != 0)
        return CX_E_NOT_CSR;
    return has_attrs ? cx_attributes(out, &attrs) : CX_OK;
}

cx_err_t cx_csr_parse(cx_csr_t *out, const uint8_t *der, size_t der_len) {
    CBS in, req, bits, oid, params;
    uint8_t unused_bits;

    memset(out, 0, sizeof(*out));
    if (der_len > CX_CSR_MAX_DER)
        return CX_E_TOO_LARGE;
    CBS_init(&in, der, der_len);
    if (!CBS_get_asn1_element(&in, &out->der, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0)
        return CX_E_NOT_CSR;
    in = out->der;
    if (!CBS_get_asn1(&in, &req, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1_element(&req, &out->info, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1_element(&req, &out->sig_alg, CBS_ASN1_SEQUENCE) ||
        !cx_alg_split(&out->sig_alg, &oid, &params) ||
        !CBS_get_asn1(&req, &bits, CBS_ASN1_BITSTRING) || CBS_len(&req) != 0 ||
        !CBS_get_u8(&bits, &unused_bits) || unused_bits != 0 || CBS_len(&bits) == 0)
        return CX_E_NOT_CSR;
    out->sig = bits;
    return cx_info(out);
}

/* cx_sigalg_find maps the signatureAlgorithm to an accepted entry, checking
 * the parameters: absent or NULL for RSA, absent for ECDSA (RFC 5754). */
static const cx_sigalg_t *cx_sigalg_find(const CBS *alg_tlv) {
    static const uint8_t null_der[] = {0x05, 0x00};
    CBS oid, params;
    if (!cx_alg_split(alg_tlv, &oid, &params))
        return NULL;
    for (size_t i = 0; i < sizeof(cx_sigalgs) / sizeof(cx_sigalgs[0]); i++) {
        const cx_sigalg_t *a = &cx_sigalgs[i];
        if (!cx_cbs_is(&oid, a->oid, a->oid_len))
            continue;
        if (CBS_len(&params) == 0 ||
            (a->key_type == EVP_PKEY_RSA && cx_cbs_is(&params, null_der, 2)))
            return a;
        return NULL;
    }
    return NULL;
}

/* cx_key_policy accepts RSA 2048..8192 bits with an odd exponent >= 65537,
 * and EC keys on P-256, P-384, P-521. */
static bool cx_key_policy(const EVP_PKEY *key) {
    switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_RSA: {
        const BIGNUM *e = RSA_get0_e(EVP_PKEY_get0_RSA(key));
        int bits = EVP_PKEY_bits(key);
        return bits >= CX_RSA_MIN_BITS && bits <= CX_RSA_MAX_BITS && e != NULL &&
               BN_is_odd(e) && BN_num_bits(e) >= CX_RSA_E_MIN_BITS &&
               BN_num_bits(e) <= CX_RSA_E_MAX_BITS;
    }
    case EVP_PKEY_EC: {
        const EC_GROUP *g = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key));
        int nid = g ? EC_GROUP_get_curve_name(g) : NID_undef;
        return nid == NID_X9_62_prime256v1 || nid == NID_secp384r1 ||
               nid == NID_secp521r1;
    }
    default:
        return false;
    }
}

/* cx_sig_check verifies `sig` over `info` with `key` and digest `md`
 * (PKCS#1 v1.5 for RSA, DER ECDSA-Sig-Value for EC). */
static bool cx_sig_check(EVP_PKEY *key, const EVP_MD *md, const CBS *info,
                         const CBS *sig) {
    EVP_MD_CTX ctx;
    bool ok;
    EVP_MD_CTX_init(&ctx);
    ok = EVP_DigestVerifyInit(&ctx, NULL, md, NULL, key) == 1 &&
         EVP_DigestVerify(&ctx, CBS_data(sig), CBS_len(sig), CBS_data(info),
                          CBS_len(info)) == 1;
    EVP_MD_CTX_cleanup(&ctx);
    return ok;
}

cx_err_t cx_csr_verify(const cx_csr_t *csr, EVP_PKEY **out_key) {
    const cx_sigalg_t *alg = cx_sigalg_find(&csr->sig_alg);
    EVP_PKEY *key = NULL;
    CBS spki = csr->spki;
    cx_err_t err;

    if (out_key != NULL)
        *out_key = NULL;
    if (alg == NULL)
        return CX_E_CSR_ALG;
    key = EVP_parse_public_key(&spki);
    if (key == NULL || CBS_len(&spki) != 0 || !cx_key_policy(key)) {
        err = CX_E_CSR_KEY;
        goto fail;
    }
    if (EVP_PKEY_id(key) != alg->key_type) {
        err = CX_E_CSR_ALG;                /* e.g. ecdsa-with-SHA256 on RSA */
        goto fail;
    }
    if (!cx_sig_check(key, alg->md(), &csr->info, &csr->sig)) {
        err = CX_E_CSR_SIG;
        goto fail;
    }
    if (out_key != NULL)
        *out_key = key;
    else
        EVP_PKEY_free(key);
    return CX_OK;
fail:
    EVP_PKEY_free(key);
    ERR_clear_error();
    return err;
}

/* cx_copy_printable copies `s` into `out` as NUL-terminated text, replacing
 * bytes outside printable ASCII with '?'. */
static void cx_copy_printable(char *out, size_t out_len, CBS s) {
    size_t n = 0;
    uint8_t c;
    while (n + 1 < out_len && CBS_get_u8(&s, &c))
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    out[n] = '\0';
}

bool cx_name_cn(const CBS *name, char *out, size_t out_len) {
    CBS in = *name, rdns;
    bool empty;

    if (out_len == 0)
        return false;
    out[0] = '\0';
    if (!cx_name_check(name, &empty) || !CBS_get_asn1(&in, &rdns, CBS_ASN1_SEQUENCE))
        return false;
    while (CBS_len(&rdns) > 0) {
        CBS rdn;
        if (!CBS_get_asn1(&rdns, &rdn, CBS_ASN1_SET))
            return false;
        while (CBS_len(&rdn) > 0) {
            CBS atv, oid, value;
            unsigned tag;
            if (!CBS_get_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE) ||
                !CBS_get_asn1(&atv, &oid, CBS_ASN1_OBJECT) ||
                !CBS_get_any_asn1(&atv, &value, &tag))
                return false;
            if (cx_cbs_is(&oid, cx_oid_cn, sizeof(cx_oid_cn))) {
                cx_copy_printable(out, out_len, value);
                return true;
            }
        }
    }
    return false;
}
