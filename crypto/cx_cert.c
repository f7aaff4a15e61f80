/* cx_cert: X.509 v3 certificates written directly with CBB, signed with
 * EVP_DigestSign; plus the certs-only PKCS#7 of EST and a small certificate
 * reader. No ASN.1 templates and no X509 objects: a leaf costs one
 * signature, one SHA-1 (SKI) and a few hundred bytes of CBB writes, so it
 * stays cheap on signer workers. The same builder makes the self-signed CA
 * and the TLS server certificate at startup.
 * Thread: any thread; no shared state (an issuer key may be shared by
 * several signer workers: BoringSSL keys are safe for concurrent signing). */
#include "crypto/cx_cert.h"

#include <string.h>

#include <openssl/digest.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define CX_SIG_MAX 1024                 /* RSA-8192; ECDSA P-521 needs 139 */
#define CX_TIME_MIN (-62167219200LL)    /* 0000-01-01T00:00:00Z */
#define CX_TIME_MAX 253402300799LL      /* 9999-12-31T23:59:59Z */
#define CX_TAG_CTX_CONS(n) (CBS_ASN1_CONTEXT_SPECIFIC | CBS_ASN1_CONSTRUCTED | (n))

static const uint8_t cx_oid_basic_constraints[] = {0x55, 0x1d, 0x13};
static const uint8_t cx_oid_key_usage[] = {0x55, 0x1d, 0x0f};
static const uint8_t cx_oid_eku[] = {0x55, 0x1d, 0x25};
static const uint8_t cx_oid_ski[] = {0x55, 0x1d, 0x0e};
static const uint8_t cx_oid_aki[] = {0x55, 0x1d, 0x23};
static const uint8_t cx_oid_san[] = {0x55, 0x1d, 0x11};
/* 1.3.6.1.5.5.7.3.1 serverAuth, .2 clientAuth, .5 ipsecEndSystem */
static const uint8_t cx_oid_server_auth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01};
static const uint8_t cx_oid_client_auth[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};
static const uint8_t cx_oid_ipsec_end_system[] = {0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x05};
static const uint8_t cx_oid_org[] = {0x55, 0x04, 0x0a};   /* 2.5.4.10 */
static const uint8_t cx_oid_cn[] = {0x55, 0x04, 0x03};    /* 2.5.4.3 */
/* 1.2.840.113549.1.7.2 signedData, 1.2.840.113549.1.7.1 data */
static const uint8_t cx_oid_signed_data[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};
static const uint8_t cx_oid_data[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01};

/* cx_certalg_t: the signature algorithm an issuer key signs with. */
typedef struct {
    const uint8_t *oid;
    size_t oid_len;
    bool null_params;                  /* RSA: parameters NULL (RFC 4055) */
    const EVP_MD *md;
} cx_certalg_t;

static const uint8_t cx_oid_sha256_rsa[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b};
static const uint8_t cx_oid_ecdsa_sha256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};
static const uint8_t cx_oid_ecdsa_sha384[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03};
static const uint8_t cx_oid_ecdsa_sha512[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04};

/* cx_certalg_for_key picks the signature algorithm that follows `key`. */
static bool cx_certalg_for_key(const EVP_PKEY *key, cx_certalg_t *out) {
    if (EVP_PKEY_id(key) == EVP_PKEY_RSA) {
        *out = (cx_certalg_t){cx_oid_sha256_rsa, sizeof(cx_oid_sha256_rsa), true, EVP_sha256()};
        return true;
    }
    if (EVP_PKEY_id(key) != EVP_PKEY_EC)
        return false;
    const EC_GROUP *g = EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(key));
    switch (g ? EC_GROUP_get_curve_name(g) : NID_undef) {
    case NID_X9_62_prime256v1:
        *out = (cx_certalg_t){cx_oid_ecdsa_sha256, sizeof(cx_oid_ecdsa_sha256), false, EVP_sha256()};
        return true;
    case NID_secp384r1:
        *out = (cx_certalg_t){cx_oid_ecdsa_sha384, sizeof(cx_oid_ecdsa_sha384), false, EVP_sha384()};
        return true;
    case NID_secp521r1:
        *out = (cx_certalg_t){cx_oid_ecdsa_sha512, sizeof(cx_oid_ecdsa_sha512), false, EVP_sha512()};
        return true;
    default:
        return false;
    }
}

static int cx_add_oid(CBB *cbb, const uint8_t *oid, size_t oid_len) {
    CBB c;
    return CBB_add_asn1(cbb, &c, CBS_ASN1_OBJECT) && CBB_add_bytes(&c, oid, oid_len) &&
           CBB_flush(cbb);
}

static int cx_add_alg_id(CBB *cbb, const cx_certalg_t *alg) {
    CBB seq, null;
    return CBB_add_asn1(cbb, &seq, CBS_ASN1_SEQUENCE) &&
           cx_add_oid(&seq, alg->oid, alg->oid_len) &&
           (!alg->null_params || CBB_add_asn1(&seq, &null, CBS_ASN1_NULL)) &&
           CBB_flush(cbb);
}

/* Calendar conversions (proleptic Gregorian, H. Hinnant's algorithms). */
static int64_t cx_days_from_civil(int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void cx_civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void cx_put_digits(uint8_t *out, unsigned v, int n) {
    for (int i = n - 1; i >= 0; i--, v /= 10)
        out[i] = (uint8_t)('0' + v % 10);
}

/* cx_add_time writes `t` as UTCTime for 1950..2049, else GeneralizedTime
 * (RFC 5280 §4.1.2.5). `t` must be within CX_TIME_MIN..CX_TIME_MAX. */
static int cx_add_time(CBB *cbb, int64_t t) {
    int64_t days = (t >= 0 ? t : t - 86399) / 86400, y;
    unsigned secs = (unsigned)(t - days * 86400), m, d;
    uint8_t buf[15];
    size_t n = 0;
    CBB c;

    cx_civil_from_days(days, &y, &m, &d);
    bool utc = y >= 1950 && y < 2050;
    n = utc ? 2 : 4;
    cx_put_digits(buf, (unsigned)(utc ? y % 100 : y), (int)n);
    cx_put_digits(buf + n, m, 2);
    cx_put_digits(buf + n + 2, d, 2);
    cx_put_digits(buf + n + 4, secs / 3600, 2);
    cx_put_digits(buf + n + 6, secs / 60 % 60, 2);
    cx_put_digits(buf + n + 8, secs % 60, 2);
    buf[n + 10] = 'Z';
    return CBB_add_asn1(cbb, &c, utc ? CBS_ASN1_UTCTIME : CBS_ASN1_GENERALIZEDTIME) &&
           CBB_add_bytes(&c, buf, n + 11) && CBB_flush(cbb);
}

/* cx_ext_open starts Extension { extnID, critical, extnValue OCTET STRING }
 * in `exts`; the caller writes the value into `val` then flushes `exts`. */
static int cx_ext_open(CBB *exts, CBB *ext, CBB *val, const uint8_t *oid,
                       size_t oid_len, bool critical) {
    return CBB_add_asn1(exts, ext, CBS_ASN1_SEQUENCE) && cx_add_oid(ext, oid, oid_len) &&
           (!critical || CBB_add_asn1_bool(ext, 1)) &&
           CBB_add_asn1(ext, val, CBS_ASN1_OCTETSTRING);
}

static int cx_ext_basic_constraints(CBB *exts, bool is_ca) {
    CBB ext, val, seq;
    return cx_ext_open(exts, &ext, &val, cx_oid_basic_constraints,
                       sizeof(cx_oid_basic_constraints), true) &&
           CBB_add_asn1(&val, &seq, CBS_ASN1_SEQUENCE) &&
           (!is_ca || (CBB_add_asn1_bool(&seq, 1) && CBB_add_asn1_uint64(&seq, 0))) &&
           CBB_flush(exts);
}

/* cx_ext_key_usage: flag bit n is RFC 5280 bit n (bit 0 = MSB of the first
 * byte); the BIT STRING is as short as possible with the unused bits counted. */
static int cx_ext_key_usage(CBB *exts, unsigned ku) {
    uint8_t b[2] = {0, 0};
    unsigned top = 0;
    CBB ext, val, bits;

    for (unsigned bit = 0; bit < 9; bit++) {
        if (ku & (1u << bit)) {
            b[bit / 8] |= (uint8_t)(0x80u >> (bit % 8));
            top = bit;
        }
    }
    return cx_ext_open(exts, &ext, &val, cx_oid_key_usage, sizeof(cx_oid_key_usage), true) &&
           CBB_add_asn1(&val, &bits, CBS_ASN1_BITSTRING) &&
           CBB_add_u8(&bits, (uint8_t)(7 - top % 8)) &&
           CBB_add_bytes(&bits, b, top / 8 + 1) && CBB_flush(exts);
}

static int cx_ext_eku(CBB *exts, unsigned eku) {
    CBB ext, val, seq;
    return cx_ext_open(exts, &ext, &val, cx_oid_eku, sizeof(cx_oid_eku), false) &&
           CBB_add_asn1(&val, &seq, CBS_ASN1_SEQUENCE) &&
           (!(eku & CX_EKU_SERVER_AUTH) ||
            cx_add_oid(&seq, cx_oid_server_auth, sizeof(cx_oid_server_auth))) &&
           (!(eku & CX_EKU_CLIENT_AUTH) ||
            cx_add_oid(&seq, cx_oid_client_auth, sizeof(cx_oid_client_auth))) &&
           (!(eku & CX_EKU_IPSEC_END_SYSTEM) ||
            cx_add_oid(&seq, cx_oid_ipsec_end_system, sizeof(cx_oid_ipsec_end_system))) &&
           CBB_flush(exts);
}

static int cx_ext_ski(CBB *exts, const uint8_t ski[20]) {
    CBB ext, val;
    return cx_ext_open(exts, &ext, &val, cx_oid_ski, sizeof(cx_oid_ski), false) &&
           CBB_add_asn1_octet_string(&val, ski, 20) && CBB_flush(exts);
}

static int cx_ext_aki(CBB *exts, const uint8_t keyid[20]) {
    CBB ext, val, seq, id;
    return cx_ext_open(exts, &ext, &val, cx_oid_aki, sizeof(cx_oid_aki), false) &&
           CBB_add_asn1(&val, &seq, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&seq, &id, CBS_ASN1_CONTEXT_SPECIFIC | 0) &&
           CBB_add_bytes(&id, keyid, 20) && CBB_flush(exts);
}

/* cx_ext_san copies the GeneralNames TLV; critical when the subject is empty
 * (RFC 5280 §4.2.1.6). */
static int cx_ext_san(CBB *exts, const CBS *san, bool critical) {
    CBB ext, val;
    return cx_ext_open(exts, &ext, &val, cx_oid_san, sizeof(cx_oid_san), critical) &&
           CBB_add_bytes(&val, CBS_data(san), CBS_len(san)) && CBB_flush(exts);
}

static bool cx_name_is_empty(const CBS *name) {
    static const uint8_t empty_seq[] = {0x30, 0x00};
    return CBS_mem_equal(name, empty_seq, sizeof(empty_seq));
}

static int cx_add_extensions(CBB *tbs_cbb, const cx_tbs_t *tbs, const uint8_t ski[20],
                             const uint8_t aki[20]) {
    CBB wrap, exts;
    return CBB_add_asn1(tbs_cbb, &wrap, CX_TAG_CTX_CONS(3)) &&
           CBB_add_asn1(&wrap, &exts, CBS_ASN1_SEQUENCE) &&
           cx_ext_basic_constraints(&exts, tbs->is_ca) &&
           ((tbs->key_usage & 0x1ff) == 0 || cx_ext_key_usage(&exts, tbs->key_usage & 0x1ff)) &&
           (tbs->eku == 0 || cx_ext_eku(&exts, tbs->eku)) &&
           cx_ext_ski(&exts, ski) && cx_ext_aki(&exts, aki) &&
           (CBS_len(&tbs->san) == 0 ||
            cx_ext_san(&exts, &tbs->san, cx_name_is_empty(&tbs->subject))) &&
           CBB_flush(tbs_cbb);
}

/* cx_tbs_write writes the TBSCertificate TLV into `cert`. */
static int cx_tbs_write(CBB *cert, const uint8_t serial[CX_SERIAL_LEN],
                        const cx_certalg_t *alg, const cx_issuer_t *iss,
                        const cx_tbs_t *tbs, const uint8_t ski[20]) {
    CBB t, ver, ser, validity;
    return CBB_add_asn1(cert, &t, CBS_ASN1_SEQUENCE) &&
           CBB_add_asn1(&t, &ver, CX_TAG_CTX_CONS(0)) && CBB_add_asn1_uint64(&ver, 2) &&
           CBB_add_asn1(&t, &ser, CBS_ASN1_INTEGER) &&
           CBB_add_bytes(&ser, serial, CX_SERIAL_LEN) &&
           cx_add_alg_id(&t, alg) &&
           CBB_add_bytes(&t, CBS_data(&iss->subject), CBS_len(&iss->subject)) &&
           CBB_add_asn1(&t, &validity, CBS_ASN1_SEQUENCE) &&
           cx_add_time(&validity, tbs->not_before) && cx_add_time(&validity, tbs->not_after) &&
           CBB_add_bytes(&t, CBS_data(&tbs->subject), CBS_len(&tbs->subject)) &&
           CBB_add_bytes(&t, CBS_data(&tbs->spki), CBS_len(&tbs->spki)) &&
           cx_add_extensions(&t, tbs, ski, iss->ski) && CBB_flush(cert);
}

/* cx_sign signs `in` with `key` and `md` into `sig` (CX_SIG_MAX bytes). */
static bool cx_sign(EVP_PKEY *key, const EVP_MD *md, const uint8_t *in, size_t in_len,
                    uint8_t *sig, size_t *sig_len) {
    EVP_MD_CTX ctx;
    bool ok;
    if (EVP_PKEY_size(key) <= 0 || (size_t)EVP_PKEY_size(key) > CX_SIG_MAX)
        return false;
    *sig_len = CX_SIG_MAX;
    EVP_MD_CTX_init(&ctx);
    ok = EVP_DigestSignInit(&ctx, NULL, md, NULL, key) == 1 &&
         EVP_DigestSign(&ctx, sig, sig_len, in, in_len) == 1;
    EVP_MD_CTX_cleanup(&ctx);
    return ok;
}

static void cx_serial_draw(uint8_t serial[CX_SERIAL_LEN]) {
    RAND_bytes(serial, CX_SERIAL_LEN);
    serial[0] &= 0x7f;                 /* positive */
    if (serial[0] == 0)
        serial[0] = 0x01;              /* minimal DER: always 16 bytes */
}

cx_err_t cx_cert_build(CBB *out, uint8_t serial[CX_SERIAL_LEN],
                       const cx_issuer_t *iss, const cx_tbs_t *tbs) {
    cx_certalg_t alg;
    uint8_t ski[SHA_DIGEST_LENGTH], sig[CX_SIG_MAX];
    size_t sig_len;
    CBB cert, bits;

    if (iss == NULL || iss->key == NULL || !cx_certalg_for_key(iss->key, &alg))
        return CX_E_SIGN;
    if (cx_cert_ski(ski, &tbs->spki) != CX_OK)
        return CX_E_CSR_KEY;
    if (tbs->not_before < CX_TIME_MIN || tbs->not_after > CX_TIME_MAX ||
        tbs->not_after < tbs->not_before)
        return CX_E_CONFIG;
    cx_serial_draw(serial);
    if (!CBB_add_asn1(out, &cert, CBS_ASN1_SEQUENCE) ||
        !cx_tbs_write(&cert, serial, &alg, iss, tbs, ski))
        return CX_E_NOMEM;
    /* `cert` now holds exactly the TBSCertificate TLV: sign it in place. */
    if (!cx_sign(iss->key, alg.md, CBB_data(&cert), CBB_len(&cert), sig, &sig_len)) {
        ERR_clear_error();
        return CX_E_SIGN;
    }
    if (!cx_add_alg_id(&cert, &alg) || !CBB_add_asn1(&cert, &bits, CBS_ASN1_BITSTRING) ||
        !CBB_add_u8(&bits, 0) || !CBB_add_bytes(&bits, sig, sig_len) || !CBB_flush(out))
        return CX_E_NOMEM;
    return CX_OK;
}

cx_err_t cx_cert_issue_leaf(CBB *out, uint8_t serial[CX_SERIAL_LEN],
                            const cx_issuer_t *iss, const cx_csr_t *csr,
                            const cx_leaf_policy_t *pol, int64_t now) {
    cx_tbs_t tbs = {
        .subject = csr->subject,
        .spki = csr->spki,
        .not_before = now - (int64_t)pol->backdate_s,
        .not_after = now + (int64_t)pol->validity_days * 86400,
        .key_usage = CX_KU_DIGITAL_SIGNATURE | CX_KU_KEY_ENCIPHERMENT,
        .eku = CX_EKU_CLIENT_AUTH | (pol->server_auth ? CX_EKU_SERVER_AUTH : 0),
        .is_ca = false,
    };
    if (iss->not_after > 0 && tbs.not_after > iss->not_after)
        tbs.not_after = iss->not_after;
    if (pol->copy_san)
        tbs.san = csr->san;
    else
        CBS_init(&tbs.san, NULL, 0);
    return cx_cert_build(out, serial, iss, &tbs);
}

cx_err_t cx_cert_ski(uint8_t out[20], const CBS *spki) {
    CBS in = *spki, seq, alg, bits;
    uint8_t unused_bits;
    if (!CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
        !CBS_get_asn1(&seq, &alg, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&seq, &bits, CBS_ASN1_BITSTRING) || CBS_len(&seq) != 0 ||
        !CBS_get_u8(&bits, &unused_bits) || unused_bits != 0 || CBS_len(&bits) == 0)
        return CX_E_CSR_KEY;
    SHA1(CBS_data(&bits), CBS_len(&bits), out);
    return CX_OK;
}

/* cx_get_digits reads `n` ASCII digits as a number. */
static bool cx_get_digits(CBS *cbs, int n, unsigned *out) {
    *out = 0;
    for (int i = 0; i < n; i++) {
        uint8_t c;
        if (!CBS_get_u8(cbs, &c) || c < '0' || c > '9')
            return false;
        *out = *out * 10 + (unsigned)(c - '0');
    }
    return true;
}

/* cx_get_time reads a UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime
 * (YYYYMMDDHHMMSSZ) element as seconds since the epoch. */
static bool cx_get_time(CBS *cbs, int64_t *out) {
    static const uint8_t mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    CBS t;
    unsigned tag, y, mo, d, h, mi, s;
    uint8_t z;

    if (!CBS_get_any_asn1(cbs, &t, &tag))
        return false;
    if (tag == CBS_ASN1_UTCTIME) {
        if (!cx_get_digits(&t, 2, &y))
            return false;
        y += y >= 50 ? 1900 : 2000;
    } else if (tag != CBS_ASN1_GENERALIZEDTIME || !cx_get_digits(&t, 4, &y)) {
        return false;
    }
    if (!cx_get_digits(&t, 2, &mo) || !cx_get_digits(&t, 2, &d) ||
        !cx_get_digits(&t, 2, &h) || !cx_get_digits(&t, 2, &mi) ||
        !cx_get_digits(&t, 2, &s) || !CBS_get_u8(&t, &z) || z != 'Z' ||
        CBS_len(&t) != 0 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        h > 23 || mi > 59 || s > 59)
        return false;
    if (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
        return false;
    *out = cx_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
    return true;
}

cx_err_t cx_cert_parse_basic(const uint8_t *der, size_t der_len, CBS *subject,
                             CBS *spki, CBS *serial, int64_t *not_after) {
    CBS in, cert, tbs, alg, bits, ser, issuer, validity, subj, key;
    int64_t nb, na;
    int has_version;

    CBS_init(&in, der, der_len);
    if (!CBS_get_asn1(&in, &cert, CBS_ASN1_SEQUENCE) || CBS_len(&in) != 0 ||
        !CBS_get_asn1(&cert, &tbs, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&cert, &alg, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&cert, &bits, CBS_ASN1_BITSTRING) || CBS_len(&cert) != 0 ||
        !CBS_get_optional_asn1(&tbs, NULL, &has_version, CX_TAG_CTX_CONS(0)) ||
        !CBS_get_asn1(&tbs, &ser, CBS_ASN1_INTEGER) ||
        !CBS_is_valid_asn1_integer(&ser, NULL) ||
        !CBS_get_asn1(&tbs, &alg, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1_element(&tbs, &issuer, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1(&tbs, &validity, CBS_ASN1_SEQUENCE) ||
        !cx_get_time(&validity, &nb) || !cx_get_time(&validity, &na) ||
        CBS_len(&validity) != 0 ||
        !CBS_get_asn1_element(&tbs, &subj, CBS_ASN1_SEQUENCE) ||
        !CBS_get_asn1_element(&tbs, &key, CBS_ASN1_SEQUENCE))
        return CX_E_CERT;
    if (subject != NULL)
        *subject = subj;
    if (spki != NULL)
        *spki = key;
    if (serial != NULL)
        *serial = ser;
    if (not_after != NULL)
        *not_after = na;
    return CX_OK;
}

static int cx_add_rdn(CBB *name, const uint8_t *oid, size_t oid_len, const char *value) {
    CBB set, atv, str;
    return CBB_add_asn1(name, &set, CBS_ASN1_SET) &&
           CBB_add_asn1(&set, &atv, CBS_ASN1_SEQUENCE) && cx_add_oid(&atv, oid, oid_len) &&
           CBB_add_asn1(&atv, &str, CBS_ASN1_UTF8STRING) &&
           CBB_add_bytes(&str, (const uint8_t *)value, strlen(value)) && CBB_flush(name);
}

cx_err_t cx_name_build(CBB *out, const char *org, const char *cn) {
    CBB name;
    if (!CBB_add_asn1(out, &name, CBS_ASN1_SEQUENCE) ||
        (org != NULL && !cx_add_rdn(&name, cx_oid_org, sizeof(cx_oid_org), org)) ||
        (cn != NULL && !cx_add_rdn(&name, cx_oid_cn, sizeof(cx_oid_cn), cn)) ||
        !CBB_flush(out))
        return CX_E_NOMEM;
    return CX_OK;
}

cx_err_t cx_pkcs7_certs_only(CBB *out, const CBS *certs, size_t num_certs) {
    CBB ci, explicit0, sd, digests, encap, cert_set, signers;
    if (!CBB_add_asn1(out, &ci, CBS_ASN1_SEQUENCE) ||
        !cx_add_oid(&ci, cx_oid_signed_data, sizeof(cx_oid_signed_data)) ||
        !CBB_add_asn1(&ci, &explicit0, CX_TAG_CTX_CONS(0)) ||
        !CBB_add_asn1(&explicit0, &sd, CBS_ASN1_SEQUENCE) ||
        !CBB_add_asn1_uint64(&sd, 1) ||
        !CBB_add_asn1(&sd, &digests, CBS_ASN1_SET) ||
        !CBB_add_asn1(&sd, &encap, CBS_ASN1_SEQUENCE) ||
        !cx_add_oid(&encap, cx_oid_data, sizeof(cx_oid_data)) ||
        !CBB_add_asn1(&sd, &cert_set, CX_TAG_CTX_CONS(0)))
        return CX_E_NOMEM;
    /* certificates is a SET OF: DER orders it by encoding (strict parsers,
     * e.g. Python's cryptography, warn about any other order). */
    for (size_t i = 0; i < num_certs; i++)
        if (!CBB_add_bytes(&cert_set, CBS_data(&certs[i]), CBS_len(&certs[i])))
            return CX_E_NOMEM;
    if (!CBB_flush_asn1_set_of(&cert_set) || !CBB_add_asn1(&sd, &signers, CBS_ASN1_SET) || !CBB_flush(out))
        return CX_E_NOMEM;
    return CX_OK;
}
