/* capf_spki: validation of the SubjectPublicKeyInfo a CAPF client sends in
 * KEY_GENERATE_RESPONSE (capf-protocol.md §3.2). The outer structure, the
 * algorithm and the curve OID are read with CBS first so each refusal gets a
 * precise code (wrong type, wrong curve, weak exponent) before BoringSSL
 * builds the key with EVP_parse_public_key, which then has to consume the
 * same bytes exactly. The RSA integers are read by hand for the same reason
 * (BoringSSL's own refusals would all look like "not DER").
 * Thread: any thread; no shared state. EVP_parse_public_key allocates, so
 * call it where the session may allocate (not inside a polling burst). */
#include "dataplane/capf_spki.h"

#include <openssl/bn.h>
#include <openssl/bytestring.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/sha.h>

/* 1.2.840.113549.1.1.1 rsaEncryption */
static const uint8_t capf_oid_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
/* 1.2.840.10045.2.1 id-ecPublicKey */
static const uint8_t capf_oid_ec[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};

/* Named curves by CURVE value (§2.5.2): OID contents. */
static const struct {
    uint8_t oid[8];
    uint8_t oid_len;
} capf_curve_oids[CAPF_CURVE__MAX + 1] = {
    [CAPF_CURVE_P256] = {{0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}, 8}, /* prime256v1 */
    [CAPF_CURVE_P384] = {{0x2b, 0x81, 0x04, 0x00, 0x22}, 5},                   /* secp384r1 */
    [CAPF_CURVE_P521] = {{0x2b, 0x81, 0x04, 0x00, 0x23}, 5},                   /* secp521r1 */
};

/* Longest canonical SPKI we re-encode (RSA-4096 is 550 bytes). */
#define CAPF_SPKI_MARSHAL_MAX 1024

/* capf_spki_split reads SEQUENCE { SEQUENCE { OID, params... }, BIT STRING }
 * with nothing after it. `params` is the rest of the AlgorithmIdentifier. */
static bool capf_spki_split(const uint8_t *der, size_t der_len, CBS *oid, CBS *params,
                            CBS *bits) {
    CBS in, spki;
    CBS_init(&in, der, der_len);
    if (!CBS_get_asn1(&in, &spki, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
        !CBS_get_asn1(&spki, params, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(params, oid, CBS_ASN1_OBJECT) ||
        !CBS_get_asn1(&spki, bits, CBS_ASN1_BITSTRING) || CBS_len(&spki) != 0)
        return false;
    return true;
}

/* capf_rsa_check reads RSAPublicKey from the BIT STRING contents and applies
 * the size and exponent rules. */
static capf_err_t capf_rsa_check(const capf_spki_policy_t *pol, const capf_keyspec_t *want,
                                 CBS bits) {
    unsigned min_bits = pol && pol->rsa_min_bits ? pol->rsa_min_bits : CAPF_SPKI_RSA_MIN_DEFAULT;
    BIGNUM *n = BN_new(), *e = BN_new();
    CBS rsa;
    uint8_t unused;
    capf_err_t err = CAPF_OK;

    if (n == NULL || e == NULL) {
        err = CAPF_E_BUFFER;
    } else if (!CBS_get_u8(&bits, &unused) || unused != 0 ||
               !CBS_get_asn1(&bits, &rsa, CBS_ASN1_SEQUENCE) || CBS_len(&bits) != 0 ||
               !BN_parse_asn1_unsigned(&rsa, n) || !BN_parse_asn1_unsigned(&rsa, e) ||
               CBS_len(&rsa) != 0) {
        err = CAPF_E_SPKI_DER;
    } else if (BN_num_bits(n) != want->rsa_bits || BN_num_bits(n) < min_bits ||
               BN_num_bits(n) > CAPF_SPKI_RSA_MAX) {
        err = CAPF_E_SPKI_RSA_SIZE;
    } else if (!BN_is_odd(e) || BN_num_bits(e) < 2 || BN_num_bits(e) > 32) {
        err = CAPF_E_SPKI_RSA_EXP;        /* odd, 3 <= e <= 2^32 (2^32 is even) */
    }
    BN_free(n);
    BN_free(e);
    return err;
}

/* capf_ec_curve checks that the parameters are exactly the requested
 * named-curve OID (no NULL, no specifiedCurve, no other curve). */
static capf_err_t capf_ec_curve(const capf_keyspec_t *want, CBS params) {
    CBS oid;
    if (!CBS_get_asn1(&params, &oid, CBS_ASN1_OBJECT) || CBS_len(&params) != 0 ||
        !CBS_mem_equal(&oid, capf_curve_oids[want->curve].oid,
                       capf_curve_oids[want->curve].oid_len))
        return CAPF_E_SPKI_CURVE;
    return CAPF_OK;
}

/* capf_ec_point: on the curve and not at infinity (parsing already decoded it). */
static bool capf_ec_point(const EVP_PKEY *key) {
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
    const EC_GROUP *g = ec ? EC_KEY_get0_group(ec) : NULL;
    const EC_POINT *p = ec ? EC_KEY_get0_public_key(ec) : NULL;
    return g && p && !EC_POINT_is_at_infinity(g, p) && EC_KEY_check_key(ec);
}

/* capf_key_hash writes SHA-256 of the canonical SPKI of `key`. */
static bool capf_key_hash(const EVP_PKEY *key, uint8_t out[CAPF_SPKI_HASH_LEN]) {
    uint8_t buf[CAPF_SPKI_MARSHAL_MAX];
    size_t len;
    CBB cbb;
    if (!CBB_init_fixed(&cbb, buf, sizeof(buf)) || !EVP_marshal_public_key(&cbb, key) ||
        !CBB_finish(&cbb, NULL, &len)) {
        CBB_cleanup(&cbb);
        return false;
    }
    SHA256(buf, len, out);
    return true;
}

/* capf_spki_shape runs the CBS checks (steps 1 to 3 of capf_spki_check)
 * before any key object exists. */
static capf_err_t capf_spki_shape(const capf_spki_policy_t *pol, const capf_keyspec_t *want,
                                  const uint8_t *der, size_t der_len) {
    CBS oid, params, bits;
    if (!capf_spki_split(der, der_len, &oid, &params, &bits))
        return CAPF_E_SPKI_DER;
    capf_key_type_t type;
    if (CBS_mem_equal(&oid, capf_oid_rsa, sizeof(capf_oid_rsa)))
        type = CAPF_KEY_RSA;
    else if (CBS_mem_equal(&oid, capf_oid_ec, sizeof(capf_oid_ec)))
        type = CAPF_KEY_EC;
    else
        return CAPF_E_SPKI_ALG;
    if (type != want->type)
        return CAPF_E_SPKI_TYPE;
    return type == CAPF_KEY_RSA ? capf_rsa_check(pol, want, bits) : capf_ec_curve(want, params);
}

capf_err_t capf_spki_check(const capf_spki_policy_t *pol, const capf_keyspec_t *want,
                           const uint8_t *der, size_t der_len,
                           EVP_PKEY **out_key, uint8_t out_hash[CAPF_SPKI_HASH_LEN]) {
    EVP_PKEY *key = NULL;
    capf_err_t err;
    CBS in;

    if (out_key != NULL)
        *out_key = NULL;
    if ((unsigned)want->type > CAPF_KEY__MAX ||
        (want->type == CAPF_KEY_EC && (unsigned)want->curve > CAPF_CURVE__MAX))
        return CAPF_E_ARG;
    if ((err = capf_spki_shape(pol, want, der, der_len)) != CAPF_OK)
        goto fail;
    CBS_init(&in, der, der_len);
    key = EVP_parse_public_key(&in);
    if (key == NULL || CBS_len(&in) != 0 ||
        EVP_PKEY_id(key) != (want->type == CAPF_KEY_RSA ? EVP_PKEY_RSA : EVP_PKEY_EC)) {
        /* The shape was right, so for EC it is the point that failed. */
        err = want->type == CAPF_KEY_EC ? CAPF_E_SPKI_POINT : CAPF_E_SPKI_DER;
        goto fail;
    }
    if (want->type == CAPF_KEY_EC && !capf_ec_point(key)) {
        err = CAPF_E_SPKI_POINT;
        goto fail;
    }
    if (out_hash != NULL && !capf_key_hash(key, out_hash)) {
        err = CAPF_E_BUFFER;
        goto fail;
    }
    if (out_key != NULL)
        *out_key = key;
    else
        EVP_PKEY_free(key);
    return CAPF_OK;
fail:
    EVP_PKEY_free(key);
    ERR_clear_error();
    return err;
}
