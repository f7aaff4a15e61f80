/* capf_certauth: verification of CAPF authentication by existing
 * certificate (see capf_certauth.h for the rules). One pass, one cleanup:
 * load the certificate, find its trust store (which decides LSC or MIC),
 * check its name, take its key, verify the SHA-2 then the SHA-1 signature,
 * then the optional SUDI_DATA. Hashes are computed over the message views
 * with the one-shot SHA contexts (no allocation). RSA signatures are opened
 * with the raw public-key operation and compared, whole and in constant
 * time, with the two type-1 blocks the signature may be: the bare hash or
 * the DigestInfo, so the padding is checked byte for byte (usecallmanagernz
 * compares only the trailing hash bytes; we do not copy that).
 * Thread: signer worker only. */
#include "dataplane/capf_certauth.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/mem.h>
#include <openssl/pool.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#define CAPF_RSA_MAX_BYTES (CAPF_CERTAUTH_RSA_MAX_BITS / 8)
#define CAPF_PKCS1_MIN_PAD 8      /* at least eight FF bytes (RFC 8017 §9.2) */
#define CAPF_CN_SHOW_MAX 64       /* CN bytes quoted in `why` */

/* DigestInfo prefixes (RFC 8017 §9.2 note 1): DER of
 * SEQUENCE { AlgorithmIdentifier { oid, NULL }, OCTET STRING (hash) }
 * up to the hash bytes. */
static const uint8_t capf_di_sha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                       0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
static const uint8_t capf_di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                         0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                         0x01, 0x05, 0x00, 0x04, 0x20};
static const uint8_t capf_di_sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                         0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                         0x03, 0x05, 0x00, 0x04, 0x40};

/* capf_digest_t: one hash of the signed message. */
typedef struct {
    capf_hash_t id;
    size_t len;
    uint8_t md[SHA512_DIGEST_LENGTH];
} capf_digest_t;

/* capf_ca_t: what the check learns on its way, freed by capf_ca_clear. */
typedef struct {
    X509 *cert;               /* the certificate of tag 04 */
    EVP_PKEY *key;            /* its public key */
    CBS der;                  /* its DER, a view into the message */
    capf_cert_type_t kind;    /* LSC or MIC, once a store accepted it */
    bool expired_ok;          /* an expired MIC accepted by the setting */
    bool sudi;                /* SUDI_DATA verified */
} capf_ca_t;

/* capf_trust_t: one store's verdict on a certificate, best first. */
typedef enum {
    CAPF_TRUST_OK = 0,
    CAPF_TRUST_TIME,          /* chained, but outside a validity period */
    CAPF_TRUST_REFUSED,       /* chain found but refused (signature, CA flags...) */
    CAPF_TRUST_NO_PATH,       /* no issuer in the store */
    CAPF_TRUST_NO_MEMORY,
} capf_trust_t;

/* capf_why writes the detail for logs; `why` may be NULL. */
static void capf_why(char *why, size_t why_len, const char *fmt, ...) {
    if (why == NULL || why_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

/* capf_show copies at most CAPF_CN_SHOW_MAX bytes of `in` into `out` as
 * text safe for a log line: [A-Za-z0-9 ._-] kept, anything else '?'. */
static void capf_show(CBS in, char *out, size_t cap) {
    size_t n = 0;
    uint8_t c;
    while (n + 1 < cap && n < CAPF_CN_SHOW_MAX && CBS_get_u8(&in, &c)) {
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == ' ' || c == '.' || c == '_' || c == '-';
        out[n++] = plain ? (char)c : '?';
    }
    out[n] = '\0';
}

/* ---- hashing and signatures -------------------------------------------- */

/* capf_digest hashes the concatenation of `parts` with hash `id` (1..3). */
static void capf_digest(capf_hash_t id, const CBS *parts, size_t num_parts, capf_digest_t *d) {
    SHA_CTX s1;
    SHA256_CTX s256;
    SHA512_CTX s512;
    d->id = id;
    switch (id) {
    case CAPF_HASH_SHA1:
        SHA1_Init(&s1);
        for (size_t i = 0; i < num_parts; i++)
            SHA1_Update(&s1, CBS_data(&parts[i]), CBS_len(&parts[i]));
        SHA1_Final(d->md, &s1);
        d->len = SHA_DIGEST_LENGTH;
        break;
    case CAPF_HASH_SHA256:
        SHA256_Init(&s256);
        for (size_t i = 0; i < num_parts; i++)
            SHA256_Update(&s256, CBS_data(&parts[i]), CBS_len(&parts[i]));
        SHA256_Final(d->md, &s256);
        d->len = SHA256_DIGEST_LENGTH;
        break;
    case CAPF_HASH_SHA512:
        SHA512_Init(&s512);
        for (size_t i = 0; i < num_parts; i++)
            SHA512_Update(&s512, CBS_data(&parts[i]), CBS_len(&parts[i]));
        SHA512_Final(d->md, &s512);
        d->len = SHA512_DIGEST_LENGTH;
        break;
    }
}

/* capf_pkcs1_block writes the k-byte type-1 block 00 01 FF.. 00 [prefix] hash
 * into `out`. Returns false if it does not fit with eight FF bytes. */
static bool capf_pkcs1_block(uint8_t *out, size_t k, const uint8_t *prefix, size_t prefix_len,
                             const capf_digest_t *d) {
    size_t t_len = prefix_len + d->len;
    CBB cbb;
    if (k < 3 + CAPF_PKCS1_MIN_PAD + t_len)
        return false;
    size_t pad = k - 3 - t_len;
    bool ok = CBB_init_fixed(&cbb, out, k) && CBB_add_u8(&cbb, 0x00) && CBB_add_u8(&cbb, 0x01);
    for (size_t i = 0; ok && i < pad; i++)
        ok = CBB_add_u8(&cbb, 0xff);
    ok = ok && CBB_add_u8(&cbb, 0x00) && CBB_add_bytes(&cbb, prefix, prefix_len) &&
         CBB_add_bytes(&cbb, d->md, d->len) && CBB_finish(&cbb, NULL, NULL);
    return ok;
}

/* capf_rsa_ok: the signature is exactly k bytes and opens to the block of
 * the bare hash or of its DigestInfo. Both comparisons always run. */
static bool capf_rsa_ok(RSA *rsa, const capf_digest_t *d, const CBS *sig) {
    static const struct { const uint8_t *p; size_t len; } di[CAPF_HASH__MAX + 1] = {
        [CAPF_HASH_SHA1] = {capf_di_sha1, sizeof(capf_di_sha1)},
        [CAPF_HASH_SHA256] = {capf_di_sha256, sizeof(capf_di_sha256)},
        [CAPF_HASH_SHA512] = {capf_di_sha512, sizeof(capf_di_sha512)},
    };
    uint8_t em[CAPF_RSA_MAX_BYTES], want[CAPF_RSA_MAX_BYTES];
    size_t k = RSA_size(rsa), em_len = 0;
    int match = 0;

    if (k > sizeof(em) || CBS_len(sig) != k ||
        !RSA_verify_raw(rsa, &em_len, em, sizeof(em), CBS_data(sig), CBS_len(sig), RSA_NO_PADDING) ||
        em_len != k)
        return false;
    if (capf_pkcs1_block(want, k, NULL, 0, d))
        match |= CRYPTO_memcmp(em, want, k) == 0;
    if (capf_pkcs1_block(want, k, di[d->id].p, di[d->id].len, d))
        match |= CRYPTO_memcmp(em, want, k) == 0;
    return match != 0;
}

/* capf_sig_ok verifies `sig` over the digest with `key` (RSA or EC). */
static bool capf_sig_ok(EVP_PKEY *key, const capf_digest_t *d, const CBS *sig) {
    switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_RSA:
        return capf_rsa_ok(EVP_PKEY_get0_RSA(key), d, sig);
    case EVP_PKEY_EC:
        return ECDSA_verify(0, d->md, d->len, CBS_data(sig), CBS_len(sig),
                            EVP_PKEY_get0_EC_KEY(key)) == 1;
    default:
        return false;
    }
}

/* ---- certificates ------------------------------------------------------ */

/* capf_x509 parses `der` as exactly one certificate (BoringSSL keeps its
 * own copy). NULL if it is not one, or on allocation failure. */
static X509 *capf_x509(const CBS *der) {
    CRYPTO_BUFFER *buf = CRYPTO_BUFFER_new(CBS_data(der), CBS_len(der), NULL);
    X509 *x = buf ? X509_parse_from_buffer(buf) : NULL;
    CRYPTO_BUFFER_free(buf);
    return x;
}

/* capf_key_usable: RSA up to CAPF_CERTAUTH_RSA_MAX_BITS, or EC. */
static bool capf_key_usable(EVP_PKEY *key, bool rsa_only) {
    if (key == NULL)
        return false;
    if (EVP_PKEY_id(key) == EVP_PKEY_RSA)
        return RSA_size(EVP_PKEY_get0_RSA(key)) <= CAPF_RSA_MAX_BYTES;
    return !rsa_only && EVP_PKEY_id(key) == EVP_PKEY_EC;
}

/* capf_allow_expired_leaf: verify callback tolerating only the expiry of
 * the certificate being verified (accept_expired_mic). */
static int capf_allow_expired_leaf(int ok, X509_STORE_CTX *xs) {
    if (!ok && X509_STORE_CTX_get_error(xs) == X509_V_ERR_CERT_HAS_EXPIRED &&
        X509_STORE_CTX_get_current_cert(xs) == X509_STORE_CTX_get0_cert(xs))
        return 1;
    return ok;
}

/* capf_chain verifies `x` against `store` at `now`; *x509_err gets the
 * X.509 verification error (0 if none). */
static capf_trust_t capf_chain(X509_STORE *store, X509 *x, int64_t now, bool allow_expired_leaf,
                               int *x509_err) {
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    capf_trust_t t = CAPF_TRUST_NO_MEMORY;
    *x509_err = X509_V_ERR_OUT_OF_MEM;
    if (xs == NULL || !X509_STORE_CTX_init(xs, store, x, NULL))
        goto done;
    X509_STORE_CTX_set_flags(xs, X509_V_FLAG_PARTIAL_CHAIN);
    X509_STORE_CTX_set_time(xs, 0, (time_t)now);
    if (allow_expired_leaf)
        X509_STORE_CTX_set_verify_cb(xs, capf_allow_expired_leaf);
    if (X509_verify_cert(xs) == 1) {
        *x509_err = 0;
        t = CAPF_TRUST_OK;
        goto done;
    }
    *x509_err = X509_STORE_CTX_get_error(xs);
    switch (*x509_err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        t = CAPF_TRUST_TIME;
        break;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        t = CAPF_TRUST_NO_PATH;
        break;
    case X509_V_ERR_OUT_OF_MEM:
        t = CAPF_TRUST_NO_MEMORY;
        break;
    default:
        t = CAPF_TRUST_REFUSED;
        break;
    }
done:
    X509_STORE_CTX_free(xs);
    return t;
}

/* capf_trust_err maps a failed verdict to the error code. */
static capf_err_t capf_trust_err(capf_trust_t t, int x509_err, bool sudi) {
    if (t == CAPF_TRUST_NO_MEMORY)
        return CAPF_E_BUFFER;
    if (sudi)
        return CAPF_E_CERTAUTH_SUDI_UNTRUSTED;
    if (t == CAPF_TRUST_TIME)
        return x509_err == X509_V_ERR_CERT_NOT_YET_VALID ? CAPF_E_CERTAUTH_NOT_YET_VALID
                                                         : CAPF_E_CERTAUTH_EXPIRED;
    return CAPF_E_CERTAUTH_UNTRUSTED;
}

/* capf_is_expired: x's notAfter is before `now`. */
static bool capf_is_expired(X509 *x, int64_t now) {
    time_t t = (time_t)now;
    return X509_cmp_time(X509_get0_notAfter(x), &t) < 0;
}

/* capf_load reads tag 04 into ca->cert, ca->der, ca->key (rule 1). */
static capf_err_t capf_load(const capf_msg_t *m, capf_ca_t *ca, char *why, size_t why_len) {
    capf_cert_type_t type;
    capf_err_t e = capf_msg_cert(m, &type, &ca->der);
    if (e == CAPF_E_ABSENT) {
        capf_why(why, why_len, "no CERTIFICATE element%s",
                 capf_msg_has(m, CAPF_TAG_SIGNED_DATA) || capf_msg_has(m, CAPF_TAG_SHA2_SIGNED_DATA) ||
                         capf_msg_has(m, CAPF_TAG_SUDI_DATA)
                     ? " (signatures without the certificate)"
                     : "");
        return CAPF_E_CERTAUTH_NO_CREDENTIALS;
    }
    if (e != CAPF_OK) {
        capf_why(why, why_len, "CERTIFICATE element: certificate type neither LSC nor MIC");
        return CAPF_E_CERTAUTH_CERT;
    }
    if ((ca->cert = capf_x509(&ca->der)) == NULL) {
        capf_why(why, why_len, "CERTIFICATE element: not one X.509 certificate");
        return ERR_GET_REASON(ERR_peek_last_error()) == ERR_R_MALLOC_FAILURE ? CAPF_E_BUFFER
                                                                            : CAPF_E_CERTAUTH_CERT;
    }
    if (X509_check_ca(ca->cert) != 0) {
        capf_why(why, why_len, "the certificate sent is a CA certificate");
        return CAPF_E_CERTAUTH_UNTRUSTED;
    }
    return CAPF_OK;
}

/* capf_trust finds the store that accepts ca->cert (rules 2 and 3): the
 * preferred kind first; on failure ca->kind is the closest store's. */
static capf_err_t capf_trust(const capf_certauth_ctx_t *ctx, capf_ca_t *ca, char *why,
                             size_t why_len) {
    const capf_cert_type_t order[2] = {ctx->prefer_mic ? CAPF_CERT_MIC : CAPF_CERT_LSC,
                                       ctx->prefer_mic ? CAPF_CERT_LSC : CAPF_CERT_MIC};
    capf_trust_t best = CAPF_TRUST_NO_MEMORY;   /* worse than every real verdict */
    int best_err = X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY;

    for (size_t i = 0; i < 2; i++) {
        bool mic = order[i] == CAPF_CERT_MIC;
        X509_STORE *store = mic ? ctx->mic_trust : ctx->lsc_trust;
        int x509_err;
        if (store == NULL)
            continue;
        capf_trust_t t = capf_chain(store, ca->cert, ctx->now, mic && ctx->accept_expired_mic,
                                    &x509_err);
        if (t == CAPF_TRUST_NO_MEMORY) {
            capf_why(why, why_len, "certificate chain: out of memory");
            return CAPF_E_BUFFER;
        }
        if (t == CAPF_TRUST_OK) {
            ca->kind = order[i];
            ca->expired_ok = mic && capf_is_expired(ca->cert, ctx->now);
            return CAPF_OK;
        }
        if (t < best) {
            best = t;
            best_err = x509_err;
            if (t < CAPF_TRUST_NO_PATH)   /* no issuer anywhere: keep the preferred kind */
                ca->kind = order[i];
        }
    }
    capf_why(why, why_len, "%s chain: %s%s", ca->kind == CAPF_CERT_MIC ? "MIC" : "LSC",
             X509_verify_cert_error_string(best_err),
             ctx->mic_trust == NULL ? " (no manufacturer CA configured: MICs not accepted)" : "");
    return capf_trust_err(best, best_err, false);
}

/* capf_subject_cn sets *cn to the only CN of x's subject (a view into the
 * X509 object). False if there is none, more than one, or it is not a
 * UTF8String, PrintableString or IA5String. */
static bool capf_subject_cn(X509 *x, CBS *cn) {
    const X509_NAME *name = X509_get_subject_name(x);
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, i) >= 0)
        return false;
    const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    int type = ASN1_STRING_type(s);
    if (type != V_ASN1_UTF8STRING && type != V_ASN1_PRINTABLESTRING && type != V_ASN1_IA5STRING)
        return false;
    CBS_init(cn, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    return true;
}

/* capf_cn_suffix: cn is "<at least one byte>-<device>". */
static bool capf_cn_suffix(CBS cn, const char *device, size_t dev_len) {
    uint8_t dash;
    if (CBS_len(&cn) < dev_len + 2)
        return false;
    return CBS_skip(&cn, CBS_len(&cn) - dev_len - 1) && CBS_get_u8(&cn, &dash) && dash == '-' &&
           CBS_mem_equal(&cn, (const uint8_t *)device, dev_len);
}

/* capf_name applies rule 4. */
static capf_err_t capf_name(const capf_certauth_ctx_t *ctx, const capf_ca_t *ca, char *why,
                            size_t why_len) {
    size_t dev_len = strlen(ctx->device);
    char shown[CAPF_CN_SHOW_MAX + 1];
    CBS cn;
    bool ok;
    if (!capf_subject_cn(ca->cert, &cn)) {
        capf_why(why, why_len, "%s subject has no single text CN",
                 ca->kind == CAPF_CERT_MIC ? "MIC" : "LSC");
        return CAPF_E_CERTAUTH_NAME;
    }
    if (ca->kind == CAPF_CERT_MIC)
        ok = capf_cn_suffix(cn, ctx->device, dev_len);
    else
        ok = CBS_mem_equal(&cn, (const uint8_t *)ctx->device, dev_len) ||
             (ctx->lsc_cucm_cn && capf_cn_suffix(cn, ctx->device, dev_len));
    if (ok)
        return CAPF_OK;
    capf_show(cn, shown, sizeof(shown));
    capf_why(why, why_len, "%s CN \"%s\" is not %s%s", ca->kind == CAPF_CERT_MIC ? "MIC" : "LSC",
             shown, ca->kind == CAPF_CERT_MIC || ctx->lsc_cucm_cn ? "<model>-" : "", ctx->device);
    return CAPF_E_CERTAUTH_NAME;
}

/* ---- the proofs -------------------------------------------------------- */

/* capf_proof verifies SHA2_SIGNED_DATA, then SIGNED_DATA (rules 5, 6) over
 * device || 00 || DER. */
static capf_err_t capf_proof(const capf_certauth_ctx_t *ctx, const capf_msg_t *m,
                             const capf_ca_t *ca, char *why, size_t why_len) {
    static const uint8_t zero = 0;
    CBS parts[3], sig;
    capf_hash_t hash;
    capf_digest_t d;
    const char *kind = ca->kind == CAPF_CERT_MIC ? "MIC" : "LSC";

    CBS_init(&parts[0], (const uint8_t *)ctx->device, strlen(ctx->device));
    CBS_init(&parts[1], &zero, 1);
    parts[2] = ca->der;
    capf_err_t e = capf_msg_sha2_signed(m, &hash, &sig);
    if (e == CAPF_E_ABSENT) {
        capf_why(why, why_len, "no SHA2_SIGNED_DATA with the %s", kind);
        return CAPF_E_CERTAUTH_NO_SHA2;
    }
    if (e != CAPF_OK || (hash != CAPF_HASH_SHA256 && hash != CAPF_HASH_SHA512)) {
        capf_why(why, why_len, "SHA2_SIGNED_DATA hash id %s", e == CAPF_OK ? "01 (SHA-1)" : "unknown");
        return CAPF_E_CERTAUTH_HASH_ID;
    }
    capf_digest(hash, parts, 3, &d);
    if (!capf_sig_ok(ca->key, &d, &sig)) {
        capf_why(why, why_len, "SHA2_SIGNED_DATA (%s, %zu bytes) does not verify with the %s key",
                 capf_hash_str(hash), CBS_len(&sig), kind);
        return hash == CAPF_HASH_SHA512 ? CAPF_E_CERTAUTH_SIG_SHA512 : CAPF_E_CERTAUTH_SIG_SHA256;
    }
    if (capf_msg_get(m, CAPF_TAG_SIGNED_DATA, &sig) != CAPF_OK)
        return CAPF_OK;
    capf_digest(CAPF_HASH_SHA1, parts, 3, &d);
    if (!capf_sig_ok(ca->key, &d, &sig)) {
        capf_why(why, why_len, "SIGNED_DATA (SHA-1, %zu bytes) does not verify with the %s key",
                 CBS_len(&sig), kind);
        return CAPF_E_CERTAUTH_SIG_SHA1;
    }
    return CAPF_OK;
}

/* capf_sudi_blocks splits SUDI_DATA: 00 cert, 01 SHA-1 sig, 03|02 sig. */
static bool capf_sudi_blocks(CBS in, CBS *der, CBS *sig1, CBS *sig2, uint8_t *hash2) {
    uint8_t id0, id1;
    return CBS_get_u8(&in, &id0) && id0 == 0x00 && CBS_get_u16_length_prefixed(&in, der) &&
           CBS_get_u8(&in, &id1) && id1 == CAPF_HASH_SHA1 &&
           CBS_get_u16_length_prefixed(&in, sig1) && CBS_get_u8(&in, hash2) &&
           (*hash2 == CAPF_HASH_SHA512 || *hash2 == CAPF_HASH_SHA256) &&
           CBS_get_u16_length_prefixed(&in, sig2) && CBS_len(&in) == 0;
}

/* capf_sudi_verify checks the SUDI certificate `x` (DER `der`) and both
 * signatures over le32(session id) || DER. */
static capf_err_t capf_sudi_verify(const capf_certauth_ctx_t *ctx, X509 *x, const CBS *der,
                                   const CBS *sig1, const CBS *sig2, uint8_t hash2, char *why,
                                   size_t why_len) {
    uint32_t sid = ctx->session_id;
    const uint8_t le[4] = {(uint8_t)sid, (uint8_t)(sid >> 8), (uint8_t)(sid >> 16),
                           (uint8_t)(sid >> 24)};
    CBS parts[2];
    capf_digest_t d;
    int x509_err;
    EVP_PKEY *key = X509_get_pubkey(x);
    capf_err_t e = CAPF_OK;

    capf_trust_t t;
    CBS_init(&parts[0], le, sizeof(le));
    parts[1] = *der;
    if (X509_check_ca(x) != 0 || !capf_key_usable(key, true)) {
        capf_why(why, why_len, "SUDI certificate: %s",
                 X509_check_ca(x) != 0 ? "a CA certificate"
                 : key == NULL         ? "no usable key"
                                       : "key not RSA (or over 4096 bits)");
        e = CAPF_E_CERTAUTH_SUDI_CERT;
    } else if ((t = capf_chain(ctx->mic_trust, x, ctx->now, ctx->accept_expired_mic, &x509_err)) !=
               CAPF_TRUST_OK) {
        capf_why(why, why_len, "SUDI chain: %s", X509_verify_cert_error_string(x509_err));
        e = capf_trust_err(t, x509_err, true);
    } else {
        capf_digest((capf_hash_t)hash2, parts, 2, &d);
        bool ok2 = capf_sig_ok(key, &d, sig2);
        capf_digest(CAPF_HASH_SHA1, parts, 2, &d);
        bool ok1 = capf_sig_ok(key, &d, sig1);
        if (!ok1 || !ok2) {
            capf_why(why, why_len, "SUDI %s signature over the session id does not verify",
                     !ok2 ? capf_hash_str(hash2) : "SHA-1");
            e = CAPF_E_CERTAUTH_SUDI_SIG;
        }
    }
    EVP_PKEY_free(key);
    return e;
}

/* capf_sudi applies rule 7 when SUDI_DATA was sent. */
static capf_err_t capf_sudi(const capf_certauth_ctx_t *ctx, const capf_msg_t *m, capf_ca_t *ca,
                            char *why, size_t why_len) {
    CBS blocks, der, sig1, sig2;
    uint8_t hash2;
    if (capf_msg_get(m, CAPF_TAG_SUDI_DATA, &blocks) != CAPF_OK)
        return CAPF_OK;
    if (!capf_sudi_blocks(blocks, &der, &sig1, &sig2, &hash2)) {
        capf_why(why, why_len, "SUDI_DATA: blocks are not 00 certificate, 01 SHA-1, 03/02 SHA-2");
        return CAPF_E_CERTAUTH_SUDI_FORMAT;
    }
    if (ctx->mic_trust == NULL) {
        capf_why(why, why_len, "SUDI_DATA sent but no manufacturer CA configured");
        return CAPF_E_CERTAUTH_SUDI_UNTRUSTED;
    }
    X509 *x = capf_x509(&der);
    if (x == NULL) {
        capf_why(why, why_len, "SUDI certificate: not one X.509 certificate");
        return CAPF_E_CERTAUTH_SUDI_CERT;
    }
    capf_err_t e = capf_sudi_verify(ctx, x, &der, &sig1, &sig2, hash2, why, why_len);
    X509_free(x);
    ca->sudi = e == CAPF_OK;
    return e;
}

/* ---- entry points ------------------------------------------------------ */

capf_err_t capf_certauth_check(const capf_certauth_ctx_t *ctx, const capf_msg_t *auth_response,
                               capf_cert_type_t *used, char *why, size_t why_len) {
    capf_ca_t ca = {.kind = ctx && ctx->prefer_mic ? CAPF_CERT_MIC : CAPF_CERT_LSC};
    capf_err_t e;

    capf_why(why, why_len, "%s", "");
    if (ctx == NULL || ctx->device == NULL || ctx->device[0] == '\0' ||
        (ctx->lsc_trust == NULL && ctx->mic_trust == NULL)) {
        capf_why(why, why_len, "no device name or no trust store");
        e = CAPF_E_ARG;
        goto done;
    }
    if ((e = capf_load(auth_response, &ca, why, why_len)) != CAPF_OK ||
        (e = capf_trust(ctx, &ca, why, why_len)) != CAPF_OK ||
        (e = capf_name(ctx, &ca, why, why_len)) != CAPF_OK)
        goto done;
    ca.key = X509_get_pubkey(ca.cert);
    if (!capf_key_usable(ca.key, false)) {
        capf_why(why, why_len, "%s key: neither RSA up to %d bits nor EC",
                 ca.kind == CAPF_CERT_MIC ? "MIC" : "LSC", CAPF_CERTAUTH_RSA_MAX_BITS);
        e = CAPF_E_CERTAUTH_KEY;
        goto done;
    }
    if ((e = capf_proof(ctx, auth_response, &ca, why, why_len)) != CAPF_OK ||
        (e = capf_sudi(ctx, auth_response, &ca, why, why_len)) != CAPF_OK)
        goto done;
    capf_why(why, why_len, "%s%s%s", ca.kind == CAPF_CERT_MIC ? "MIC" : "LSC",
             ca.expired_ok ? " (expired, accepted by setting)" : "", ca.sudi ? " + SUDI" : "");
done:
    *used = ca.kind;
    EVP_PKEY_free(ca.key);
    X509_free(ca.cert);
    ERR_clear_error();
    return e;
}

/* Status texts (§5.5): "Invalid LSC: " / "Invalid MIC: " + capf_err_str. */
#define CAPF_ROW(code, text) [code - CAPF_E_CERTAUTH_CERT] = {"Invalid LSC: " text, "Invalid MIC: " text}
static const char *const capf_status_text[][2] = {
    CAPF_ROW(CAPF_E_CERTAUTH_CERT, "certificate malformed"),
    CAPF_ROW(CAPF_E_CERTAUTH_UNTRUSTED, "certificate not issued by a trusted CA"),
    CAPF_ROW(CAPF_E_CERTAUTH_EXPIRED, "certificate expired"),
    CAPF_ROW(CAPF_E_CERTAUTH_NOT_YET_VALID, "certificate not yet valid"),
    CAPF_ROW(CAPF_E_CERTAUTH_NAME, "certificate CN does not match the device name"),
    CAPF_ROW(CAPF_E_CERTAUTH_KEY, "certificate key neither RSA (up to 4096 bits) nor EC"),
    CAPF_ROW(CAPF_E_CERTAUTH_NO_SHA2, "no SHA-2 signature sent"),
    CAPF_ROW(CAPF_E_CERTAUTH_HASH_ID, "SHA-2 signature hash neither SHA-256 nor SHA-512"),
    CAPF_ROW(CAPF_E_CERTAUTH_SIG_SHA1, "signature (SHA-1) does not verify"),
    CAPF_ROW(CAPF_E_CERTAUTH_SIG_SHA256, "signature (SHA-256) does not verify"),
    CAPF_ROW(CAPF_E_CERTAUTH_SIG_SHA512, "signature (SHA-512) does not verify"),
    CAPF_ROW(CAPF_E_CERTAUTH_SUDI_FORMAT, "SUDI data malformed"),
    CAPF_ROW(CAPF_E_CERTAUTH_SUDI_CERT, "SUDI certificate malformed or not RSA"),
    CAPF_ROW(CAPF_E_CERTAUTH_SUDI_UNTRUSTED,
             "SUDI certificate not issued by a trusted manufacturer CA or not valid now"),
    CAPF_ROW(CAPF_E_CERTAUTH_SUDI_SIG, "SUDI signature does not verify"),
};
#undef CAPF_ROW

const char *capf_certauth_status(capf_err_t err, capf_cert_type_t used) {
    if (err == CAPF_E_CERTAUTH_NO_CREDENTIALS)
        return "Invalid Credentials: no certificate sent";
    if (err < CAPF_E_CERTAUTH_CERT || err > CAPF_E_CERTAUTH_SUDI_SIG)
        return NULL;
    bool mic = used == CAPF_CERT_MIC || err >= CAPF_E_CERTAUTH_SUDI_FORMAT;
    return capf_status_text[err - CAPF_E_CERTAUTH_CERT][mic ? 1 : 0];
}
