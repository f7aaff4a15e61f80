/* cx_cert: X.509 v3 certificate building with CBB (no ASN.1 templates), and
 * the degenerate certs-only PKCS#7 that EST returns (RFC 7030 §4.1.3, §4.2.3).
 * One builder serves the self-signed CA, the TLS server certificate and every
 * leaf (LSC / EST) certificate.
 * Thread: any thread; issuance runs on signer workers (it signs). */
#ifndef CX_CERT_H
#define CX_CERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>
#include <openssl/evp.h>

#include "crypto/cx_csr.h"
#include "crypto/cx_err.h"

/* Serial numbers are 16 random bytes, most significant bit cleared so the
 * INTEGER is positive, first byte never 0 (so it is always 16 bytes of DER). */
#define CX_SERIAL_LEN 16

/* keyUsage bits (the flags are ours; the encoder maps them to RFC 5280 bits). */
enum {
    CX_KU_DIGITAL_SIGNATURE = 1u << 0,
    CX_KU_KEY_ENCIPHERMENT = 1u << 2,
    CX_KU_KEY_CERT_SIGN = 1u << 5,
    CX_KU_CRL_SIGN = 1u << 6,
};
/* extendedKeyUsage flags. The encoder writes the OIDs in the order
 * serverAuth, clientAuth, ipsecEndSystem (1.3.6.1.5.5.7.3.5, for CAPF LSCs). */
enum {
    CX_EKU_CLIENT_AUTH = 1u << 0,
    CX_EKU_SERVER_AUTH = 1u << 1,
    CX_EKU_IPSEC_END_SYSTEM = 1u << 2,
};

/* cx_issuer_t: what an issuing CA contributes to a certificate.
 * For a self-signed certificate, subject/ski are those of the new CA. */
typedef struct {
    CBS subject;              /* issuer Name TLV (points into the CA cert) */
    uint8_t ski[20];          /* issuer subjectKeyIdentifier -> leaf AKI */
    EVP_PKEY *key;            /* issuer private key (not owned) */
    int64_t not_after;        /* issuer notAfter; leaves never outlive it
                                 (0 = no cap, e.g. while self-signing) */
} cx_issuer_t;

/* cx_tbs_t: the variable part of one certificate. */
typedef struct {
    CBS subject;              /* subject Name TLV */
    CBS spki;                 /* SubjectPublicKeyInfo TLV */
    CBS san;                  /* GeneralNames TLV for subjectAltName; len 0 = none */
    int64_t not_before;       /* seconds since the epoch */
    int64_t not_after;
    unsigned key_usage;       /* CX_KU_* */
    unsigned eku;             /* CX_EKU_*; 0 = no extendedKeyUsage extension */
    bool is_ca;               /* basicConstraints CA:TRUE, pathlen:0 (critical) */
} cx_tbs_t;

/* cx_leaf_policy_t: issuance policy for end-entity certificates. */
typedef struct {
    uint32_t validity_days;   /* notAfter = now + days */
    uint32_t backdate_s;      /* notBefore = now - backdate_s (clock skew) */
    bool server_auth;         /* add EKU serverAuth beside clientAuth */
    bool copy_san;            /* copy the CSR's subjectAltName */
} cx_leaf_policy_t;

/* cx_cert_build encodes and signs one certificate with `iss->key` and writes
 * its DER to `out`. A random serial is drawn and also written to `serial`.
 * SKI is SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 method 1);
 * AKI keyIdentifier is iss->ski. The signature algorithm follows the key:
 * ecdsa-with-SHA256 (P-256) / SHA384 (P-384) / SHA512 (P-521),
 * sha256WithRSAEncryption (NULL parameters).
 * Extensions, in order: basicConstraints (critical), keyUsage (critical;
 * omitted if key_usage is 0), extendedKeyUsage (if eku), subjectKeyIdentifier,
 * authorityKeyIdentifier, subjectAltName (if san; critical when the subject
 * is the empty Name). Times: UTCTime for 1950..2049, else GeneralizedTime.
 * Subject, issuer, spki and san bytes are copied as given (callers pass
 * validated TLVs: cx_csr_parse output or cx_name_build output).
 * No X509 objects; the only allocations are BoringSSL's signing context and
 * `out` growth (none if `out` is a large enough CBB_init_fixed buffer).
 * Returns CX_OK, CX_E_CSR_KEY (unparseable spki), CX_E_SIGN (no key, key type
 * not supported, or signing failed), CX_E_CONFIG (validity outside years
 * 0000..9999 or not_after < not_before), CX_E_NOMEM (includes a fixed `out`
 * too small). On failure `out` may hold a partial write: discard it. */
cx_err_t cx_cert_build(CBB *out, uint8_t serial[CX_SERIAL_LEN],
                       const cx_issuer_t *iss, const cx_tbs_t *tbs);

/* cx_cert_issue_leaf builds the leaf for a verified `csr` under `pol`:
 * subject and key from the CSR, keyUsage digitalSignature+keyEncipherment,
 * EKU clientAuth (+serverAuth if pol->server_auth), SAN only if pol->copy_san,
 * validity [now - backdate, now + days], notAfter capped at the issuer's
 * notAfter (iss->not_after) so no leaf outlives its CA. Writes DER to `out`.
 * Thread: signer worker only. Returns as cx_cert_build. */
cx_err_t cx_cert_issue_leaf(CBB *out, uint8_t serial[CX_SERIAL_LEN],
                            const cx_issuer_t *iss, const cx_csr_t *csr,
                            const cx_leaf_policy_t *pol, int64_t now);

/* cx_cert_ski computes the SHA-1 key identifier of the SPKI TLV `spki`.
 * Returns CX_OK or CX_E_CSR_KEY if `spki` is not a SubjectPublicKeyInfo. */
cx_err_t cx_cert_ski(uint8_t out[20], const CBS *spki);

/* cx_cert_parse_basic extracts views from a certificate DER (points into it):
 * subject Name TLV, SubjectPublicKeyInfo TLV, serial INTEGER contents, and
 * notAfter as seconds since the epoch. Any out pointer may be NULL.
 * Structural only (no signature check); fields after the SPKI are not read.
 * Returns CX_OK or CX_E_CERT. */
cx_err_t cx_cert_parse_basic(const uint8_t *der, size_t der_len, CBS *subject,
                             CBS *spki, CBS *serial, int64_t *not_after);

/* cx_name_build writes a Name TLV with, in order, O=`org` (skipped if NULL)
 * and CN=`cn` (skipped if NULL), both UTF8String, to `out`.
 * Returns CX_OK or CX_E_NOMEM. */
cx_err_t cx_name_build(CBB *out, const char *org, const char *cn);

/* cx_pkcs7_certs_only writes a degenerate SignedData ContentInfo
 * (certs-only, no signers; RFC 5652 / RFC 7030 §4.1.3) holding `certs[i]`
 * (each a certificate DER TLV, copied raw) to `out`. `certificates` is a SET
 * OF, written in DER order (sorted by encoding, X.690 11.6) whatever the
 * order given; readers find the leaf by its key or name, not its position.
 * Returns CX_OK or CX_E_NOMEM. */
cx_err_t cx_pkcs7_certs_only(CBB *out, const CBS *certs, size_t num_certs);

#endif
