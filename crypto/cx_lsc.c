/* cx_lsc: the CAPF LSC profile (capf-protocol.md §3.3). Everything that
 * varies per device is checked first (policy, names, SPKI algorithm, issuer
 * Name and expiry), so a refusal writes nothing; then the subject Name and
 * the optional subjectAltName are written with CBB into stack buffers and
 * cx_cert_build encodes and signs the certificate. The issuer Name is
 * untrusted-shaped input here (it comes from a certificate file), so it is
 * walked with CBS only and its attributes are copied as whole TLVs.
 * cx_lsc_request (online CA mode) writes the same subject into a PKCS#10
 * signed by the CAPF key instead (the phone signs nothing; see cx_lsc.h).
 * Thread: cx_lsc_issue and cx_lsc_request on signer workers; the rest on
 * any thread. No shared state, no allocation beyond the caller's CBB. */
#include "crypto/cx_lsc.h"

#include <string.h>

#include <openssl/digest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/md5.h>
#include <openssl/sha.h>

#define CX_LSC_NOW_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */
#define CX_LSC_CN_MAX 64                /* ub-common-name (RFC 5280) */
#define CX_LSC_SAN_MAX 80               /* GeneralNames { URI:<64 chars> } */
#define CX_LSC_SIG_MAX 1024             /* RSA-8192; ECDSA P-521 needs 139 */

/* cx_lsc_oid_t: an OID's contents (no tag, no length). */
typedef struct {
    const uint8_t *der;
    size_t len;
} cx_lsc_oid_t;

static const uint8_t cx_lsc_oid_c[] = {0x55, 0x04, 0x06};    /* 2.5.4.6 countryName */
static const uint8_t cx_lsc_oid_l[] = {0x55, 0x04, 0x07};    /* 2.5.4.7 localityName */
static const uint8_t cx_lsc_oid_st[] = {0x55, 0x04, 0x08};   /* 2.5.4.8 stateOrProvinceName */
static const uint8_t cx_lsc_oid_o[] = {0x55, 0x04, 0x0a};    /* 2.5.4.10 organizationName */
static const uint8_t cx_lsc_oid_ou[] = {0x55, 0x04, 0x0b};   /* 2.5.4.11 organizationalUnitName */
static const uint8_t cx_lsc_oid_cn[] = {0x55, 0x04, 0x03};   /* 2.5.4.3 commonName */
static const uint8_t cx_lsc_oid_sn[] = {0x55, 0x04, 0x05};   /* 2.5.4.5 serialNumber */
/* 1.2.840.113549.1.1.1 rsaEncryption, 1.2.840.10045.2.1 id-ecPublicKey */
static const uint8_t cx_lsc_oid_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
static const uint8_t cx_lsc_oid_ec[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
/* 1.2.840.113549.1.1.11 sha256WithRSAEncryption, 1.2.840.10045.4.3.2 ecdsa-with-SHA256 */
static const uint8_t cx_lsc_oid_sha256_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b};
static const uint8_t cx_lsc_oid_ecdsa_sha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

#define CX_LSC_OID(a) {(a), sizeof(a)}
/* DEVICE style: these types, in the issuer's order. */
static const cx_lsc_oid_t cx_lsc_device_types[] = {
    CX_LSC_OID(cx_lsc_oid_c), CX_LSC_OID(cx_lsc_oid_st), CX_LSC_OID(cx_lsc_oid_l),
    CX_LSC_OID(cx_lsc_oid_o), CX_LSC_OID(cx_lsc_oid_ou),
};
/* CUCM style: C, then O, then OU (one pass over the issuer each). */
static const cx_lsc_oid_t cx_lsc_cucm_types[] = {
    CX_LSC_OID(cx_lsc_oid_c), CX_LSC_OID(cx_lsc_oid_o), CX_LSC_OID(cx_lsc_oid_ou),
};

void cx_lsc_policy_default(cx_lsc_policy_t *p) {
    *p = (cx_lsc_policy_t){
        .validity_days = CX_LSC_DAYS_DEFAULT,
        .backdate_s = CX_LSC_BACKDATE_DEFAULT,
        .subject = CX_LSC_SUBJECT_DEVICE,
        .ec_key_encipherment = false,
        .san_uri = false,
    };
}

cx_err_t cx_lsc_policy_check(const cx_lsc_policy_t *p) {
    if (p->validity_days < CX_LSC_DAYS_MIN || p->validity_days > CX_LSC_DAYS_MAX ||
        p->backdate_s > CX_LSC_BACKDATE_MAX ||
        (p->subject != CX_LSC_SUBJECT_DEVICE && p->subject != CX_LSC_SUBJECT_CUCM))
        return CX_E_CONFIG;
    return CX_OK;
}

/* cx_lsc_token_len returns the length of `s` if it is 1..`max` characters of
 * ASCII letters, digits and `punct`, else 0. */
static size_t cx_lsc_token_len(const char *s, size_t max, const char *punct) {
    size_t n;
    for (n = 0; s[n] != '\0'; n++) {
        char c = s[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  strchr(punct, c) != NULL;
        if (n == max || !ok)
            return 0;
    }
    return n;
}

/* cx_lsc_spki_kind reads SEQUENCE { SEQUENCE { OID, ... }, BIT STRING }
 * (nothing after it) and tells RSA from EC. False for anything else. */
static bool cx_lsc_spki_kind(const CBS *spki, bool *is_rsa) {
    CBS in = *spki, seq, alg, oid, bits;
    if (!CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
        !CBS_get_asn1(&seq, &alg, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&alg, &oid, CBS_ASN1_OBJECT) ||
        !CBS_get_asn1(&seq, &bits, CBS_ASN1_BITSTRING) || CBS_len(&seq) != 0)
        return false;
    *is_rsa = CBS_mem_equal(&oid, cx_lsc_oid_rsa, sizeof(cx_lsc_oid_rsa));
    return *is_rsa || CBS_mem_equal(&oid, cx_lsc_oid_ec, sizeof(cx_lsc_oid_ec));
}

static bool cx_lsc_type_in(const CBS *type, const cx_lsc_oid_t *types, size_t num_types) {
    for (size_t i = 0; i < num_types; i++)
        if (CBS_mem_equal(type, types[i].der, types[i].len))
            return true;
    return false;
}

/* cx_lsc_copy_attrs walks the issuer Name TLV and appends each
 * AttributeTypeAndValue whose type is in `types` to `name`, as its own RDN,
 * in the issuer's order. With `name` NULL it only checks the structure:
 * Name = non-empty SEQUENCE OF non-empty SET OF SEQUENCE { OID, one
 * element } (RFC 5280 §4.1.2.4: an issuer Name is never empty).
 * Returns CX_OK, CX_E_CERT (malformed) or CX_E_NOMEM (`name` full). */
static cx_err_t cx_lsc_copy_attrs(CBB *name, const CBS *issuer, const cx_lsc_oid_t *types,
                                  size_t num_types) {
    CBS in = *issuer, rdns, rdn, atv, body, type, value;
    CBB set;
    if (!CBS_get_asn1(&in, &rdns, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
        CBS_len(&rdns) == 0)
        return CX_E_CERT;
    while (CBS_len(&rdns) != 0) {
        if (!CBS_get_asn1(&rdns, &rdn, CBS_ASN1_SET) || CBS_len(&rdn) == 0)
            return CX_E_CERT;
        while (CBS_len(&rdn) != 0) {
            if (!CBS_get_asn1_element(&rdn, &atv, CBS_ASN1_SEQUENCE))
                return CX_E_CERT;
            body = atv;
            if (!CBS_get_asn1(&body, &value, CBS_ASN1_SEQUENCE) ||
                !CBS_get_asn1(&value, &type, CBS_ASN1_OBJECT) ||
                !CBS_get_any_asn1_element(&value, NULL, NULL, NULL) || CBS_len(&value) != 0)
                return CX_E_CERT;
            if (name == NULL || !cx_lsc_type_in(&type, types, num_types))
                continue;
            if (!CBB_add_asn1(name, &set, CBS_ASN1_SET) ||
                !CBB_add_bytes(&set, CBS_data(&atv), CBS_len(&atv)) || !CBB_flush(name))
                return CX_E_NOMEM;
        }
    }
    return CX_OK;
}

/* cx_lsc_add_rdn appends one RDN { `oid` = string of `tag` } whose value is
 * the concatenation of the `num_parts` strings in `parts`. */
static bool cx_lsc_add_rdn(CBB *name, const uint8_t *oid, size_t oid_len, unsigned tag,
                           const char *const *parts, size_t num_parts) {
    CBB set, atv, obj, str;
    if (!CBB_add_asn1(name, &set, CBS_ASN1_SET) ||
        !CBB_add_asn1(&set, &atv, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&atv, &obj, CBS_ASN1_OBJECT) || !CBB_add_bytes(&obj, oid, oid_len) ||
        !CBB_add_asn1(&atv, &str, tag))
        return false;
    for (size_t i = 0; i < num_parts; i++)
        if (!CBB_add_bytes(&str, (const uint8_t *)parts[i], strlen(parts[i])))
            return false;
    return CBB_flush(name);
}

/* cx_lsc_subject writes the subject Name TLV to `out` (names already
 * checked; `cucm` only when pid and sn are both valid). */
static cx_err_t cx_lsc_subject(CBB *out, const CBS *issuer, bool cucm, const char *device,
                               const char *pid, const char *sn) {
    CBB name;
    cx_err_t err = CX_OK;
    if (!CBB_add_asn1(out, &name, CBS_ASN1_SEQUENCE))
        return CX_E_NOMEM;
    if (cucm) {
        const char *const serial[] = {"PID:", pid, " SN:", sn};
        const char *const cn[] = {pid, "-", device};
        if (!cx_lsc_add_rdn(&name, cx_lsc_oid_sn, sizeof(cx_lsc_oid_sn),
                            CBS_ASN1_PRINTABLESTRING, serial, 4))
            return CX_E_NOMEM;
        for (size_t i = 0; err == CX_OK && i < 3; i++)
            err = cx_lsc_copy_attrs(&name, issuer, &cx_lsc_cucm_types[i], 1);
        if (err == CX_OK && !cx_lsc_add_rdn(&name, cx_lsc_oid_cn, sizeof(cx_lsc_oid_cn),
                                            CBS_ASN1_UTF8STRING, cn, 3))
            err = CX_E_NOMEM;
    } else {
        const char *const cn[] = {device};
        err = cx_lsc_copy_attrs(&name, issuer, cx_lsc_device_types,
                                sizeof(cx_lsc_device_types) / sizeof(cx_lsc_device_types[0]));
        if (err == CX_OK && !cx_lsc_add_rdn(&name, cx_lsc_oid_cn, sizeof(cx_lsc_oid_cn),
                                            CBS_ASN1_UTF8STRING, cn, 1))
            err = CX_E_NOMEM;
    }
    if (err == CX_OK && !CBB_flush(out))
        err = CX_E_NOMEM;
    return err;
}

/* cx_lsc_san writes GeneralNames { uniformResourceIdentifier <device> }. */
static bool cx_lsc_san(CBB *out, const char *device) {
    CBB names, uri;
    return CBB_add_asn1(out, &names, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&names, &uri, CBS_ASN1_CONTEXT_SPECIFIC | 6) &&
           CBB_add_bytes(&uri, (const uint8_t *)device, strlen(device)) && CBB_flush(out);
}

/* cx_lsc_check_names applies the character rules and decides the style:
 * *cucm is set when CUCM style is asked for and both pid and sn are known. */
static cx_err_t cx_lsc_check_names(const cx_lsc_policy_t *pol, const char *device,
                                   const char *pid, const char *sn, bool *cucm) {
    size_t dev_len, pid_len;
    if (device == NULL || (dev_len = cx_lsc_token_len(device, CX_LSC_DEVICE_MAX, "._-")) == 0)
        return CX_E_CONFIG;
    *cucm = pol->subject == CX_LSC_SUBJECT_CUCM && pid != NULL && pid[0] != '\0' &&
            sn != NULL && sn[0] != '\0';
    if (!*cucm)
        return CX_OK;
    if ((pid_len = cx_lsc_token_len(pid, CX_LSC_PID_MAX, "./+=-")) == 0 ||
        cx_lsc_token_len(sn, CX_LSC_SN_MAX, "./+=-") == 0 ||
        pid_len + 1 + dev_len > CX_LSC_CN_MAX)
        return CX_E_CONFIG;
    return CX_OK;
}

cx_err_t cx_lsc_issue(CBB *out, uint8_t serial[CX_SERIAL_LEN], const cx_issuer_t *iss,
                      const CBS *spki, const char *device, const char *pid, const char *sn,
                      const cx_lsc_policy_t *pol, int64_t now) {
    cx_lsc_policy_t defaults;
    uint8_t subject_buf[CX_LSC_SUBJECT_MAX], san_buf[CX_LSC_SAN_MAX], *unused;
    bool cucm, is_rsa;
    cx_err_t err;
    CBB cbb;
    size_t len;

    if (pol == NULL) {
        cx_lsc_policy_default(&defaults);
        pol = &defaults;
    }
    if (cx_lsc_policy_check(pol) != CX_OK || now < 0 || now > CX_LSC_NOW_MAX)
        return CX_E_CONFIG;
    if ((err = cx_lsc_check_names(pol, device, pid, sn, &cucm)) != CX_OK)
        return err;
    if (spki == NULL || !cx_lsc_spki_kind(spki, &is_rsa))
        return CX_E_CSR_KEY;
    if (iss == NULL || iss->key == NULL)
        return CX_E_SIGN;
    if ((iss->not_after != 0 && iss->not_after <= now) ||
        cx_lsc_copy_attrs(NULL, &iss->subject, NULL, 0) != CX_OK)
        return CX_E_CERT;

    cx_tbs_t tbs = {
        .spki = *spki,
        .not_before = now - (int64_t)pol->backdate_s,
        .key_usage = CX_KU_DIGITAL_SIGNATURE |
                     (is_rsa || pol->ec_key_encipherment ? CX_KU_KEY_ENCIPHERMENT : 0),
        .eku = CX_EKU_SERVER_AUTH | CX_EKU_CLIENT_AUTH | CX_EKU_IPSEC_END_SYSTEM,
        .is_ca = false,
    };
    tbs.not_after = tbs.not_before + (int64_t)pol->validity_days * 86400;
    if (iss->not_after != 0 && tbs.not_after > iss->not_after)
        tbs.not_after = iss->not_after;

    if (!CBB_init_fixed(&cbb, subject_buf, sizeof(subject_buf)))
        return CX_E_NOMEM;
    err = cx_lsc_subject(&cbb, &iss->subject, cucm, device, pid, sn);
    if (err != CX_OK || !CBB_finish(&cbb, &unused, &len)) {
        CBB_cleanup(&cbb);
        return err != CX_OK ? err : CX_E_NOMEM;
    }
    CBS_init(&tbs.subject, subject_buf, len);

    CBS_init(&tbs.san, NULL, 0);
    if (pol->san_uri) {
        if (!CBB_init_fixed(&cbb, san_buf, sizeof(san_buf)) || !cx_lsc_san(&cbb, device) ||
            !CBB_finish(&cbb, &unused, &len)) {
            CBB_cleanup(&cbb);
            return CX_E_NOMEM;
        }
        CBS_init(&tbs.san, san_buf, len);
    }
    return cx_cert_build(out, serial, iss, &tbs);
}

/* cx_lsc_add_sigalg writes the AlgorithmIdentifier of a SHA-256 signature
 * by an RSA (`rsa`) or EC key. */
static bool cx_lsc_add_sigalg(CBB *out, bool rsa) {
    CBB seq, oid, null;
    return CBB_add_asn1(out, &seq, CBS_ASN1_SEQUENCE) && CBB_add_asn1(&seq, &oid, CBS_ASN1_OBJECT) &&
           CBB_add_bytes(&oid, rsa ? cx_lsc_oid_sha256_rsa : cx_lsc_oid_ecdsa_sha256,
                         rsa ? sizeof(cx_lsc_oid_sha256_rsa) : sizeof(cx_lsc_oid_ecdsa_sha256)) &&
           (!rsa || CBB_add_asn1(&seq, &null, CBS_ASN1_NULL)) && CBB_flush(out);
}

/* cx_lsc_sign_sha256 signs `in` with `key` and SHA-256 into `sig`
 * (CX_LSC_SIG_MAX bytes). */
static bool cx_lsc_sign_sha256(EVP_PKEY *key, const uint8_t *in, size_t in_len, uint8_t *sig,
                               size_t *sig_len) {
    EVP_MD_CTX ctx;
    bool ok;
    *sig_len = CX_LSC_SIG_MAX;
    EVP_MD_CTX_init(&ctx);
    ok = EVP_DigestSignInit(&ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
         EVP_DigestSign(&ctx, sig, sig_len, in, in_len) == 1;
    EVP_MD_CTX_cleanup(&ctx);
    if (!ok)
        ERR_clear_error();
    return ok;
}

cx_err_t cx_lsc_request(CBB *out, const cx_issuer_t *ra, const CBS *spki, const char *device,
                        const char *pid, const char *sn, const cx_lsc_policy_t *pol) {
    cx_lsc_policy_t defaults;
    uint8_t subject_buf[CX_LSC_SUBJECT_MAX], sig[CX_LSC_SIG_MAX], *unused;
    bool cucm, is_rsa;
    cx_err_t err;
    CBB cbb, req, info, attrs, bits;
    size_t len, sig_len;

    if (pol == NULL) {
        cx_lsc_policy_default(&defaults);
        pol = &defaults;
    }
    if (cx_lsc_policy_check(pol) != CX_OK)
        return CX_E_CONFIG;
    if ((err = cx_lsc_check_names(pol, device, pid, sn, &cucm)) != CX_OK)
        return err;
    if (spki == NULL || !cx_lsc_spki_kind(spki, &is_rsa))
        return CX_E_CSR_KEY;
    if (ra == NULL || ra->key == NULL ||
        (EVP_PKEY_id(ra->key) != EVP_PKEY_RSA && EVP_PKEY_id(ra->key) != EVP_PKEY_EC) ||
        EVP_PKEY_size(ra->key) <= 0 || (size_t)EVP_PKEY_size(ra->key) > CX_LSC_SIG_MAX)
        return CX_E_SIGN;
    if (cx_lsc_copy_attrs(NULL, &ra->subject, NULL, 0) != CX_OK)
        return CX_E_CERT;

    if (!CBB_init_fixed(&cbb, subject_buf, sizeof(subject_buf)))
        return CX_E_NOMEM;
    err = cx_lsc_subject(&cbb, &ra->subject, cucm, device, pid, sn);
    if (err != CX_OK || !CBB_finish(&cbb, &unused, &len)) {
        CBB_cleanup(&cbb);
        return err != CX_OK ? err : CX_E_NOMEM;
    }
    /* CertificationRequestInfo { version 0, subject, SPKI, attributes [0] {} } */
    if (!CBB_add_asn1(out, &req, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1(&req, &info, CBS_ASN1_SEQUENCE) || !CBB_add_asn1_uint64(&info, 0) ||
        !CBB_add_bytes(&info, subject_buf, len) ||
        !CBB_add_bytes(&info, CBS_data(spki), CBS_len(spki)) ||
        !CBB_add_asn1(&info, &attrs, CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | 0) ||
        !CBB_flush(&req))
        return CX_E_NOMEM;
    /* `req` now holds exactly the CertificationRequestInfo TLV: sign it. */
    if (!cx_lsc_sign_sha256(ra->key, CBB_data(&req), CBB_len(&req), sig, &sig_len))
        return CX_E_SIGN;
    if (!cx_lsc_add_sigalg(&req, EVP_PKEY_id(ra->key) == EVP_PKEY_RSA) ||
        !CBB_add_asn1(&req, &bits, CBS_ASN1_BITSTRING) || !CBB_add_u8(&bits, 0) ||
        !CBB_add_bytes(&bits, sig, sig_len) || !CBB_flush(out))
        return CX_E_NOMEM;
    return CX_OK;
}

void cx_lsc_fingerprints(const uint8_t *der, size_t len, uint8_t md5[16], uint8_t sha256[32]) {
    MD5(der, len, md5);
    SHA256(der, len, sha256);
}
