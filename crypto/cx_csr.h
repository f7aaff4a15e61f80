/* cx_csr: PKCS#10 certificate requests (RFC 2986) from untrusted clients.
 * Parsing is structural only and uses CBS cursors; cx_csr_verify does the
 * expensive part (public key policy + signature = proof of possession) and
 * therefore runs in the signing pool, never on a polling core.
 * Thread: any thread; a cx_csr_t is used by one thread at a time. */
#ifndef CX_CSR_H
#define CX_CSR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>
#include <openssl/evp.h>

#include "crypto/cx_err.h"

/* Longest CSR accepted (DER bytes). */
#define CX_CSR_MAX_DER 16384

/* cx_csr_t: views into a CSR's DER. All CBS point into the buffer given to
 * cx_csr_parse, which must outlive the cx_csr_t. */
typedef struct {
    CBS der;      /* the whole CertificationRequest TLV */
    CBS info;     /* certificationRequestInfo TLV: the signed bytes */
    CBS subject;  /* subject Name TLV (a SEQUENCE, possibly empty) */
    CBS spki;     /* subjectPKInfo TLV */
    CBS san;      /* subjectAltName extnValue contents (GeneralNames TLV)
                     from the extensionRequest attribute; length 0 if absent */
    CBS sig_alg;  /* signatureAlgorithm AlgorithmIdentifier TLV */
    CBS sig;      /* signature BIT STRING contents without the unused-bits byte */
    bool subject_empty;  /* subject has no RDNs */
} cx_csr_t;

/* cx_csr_parse checks the DER structure of a CertificationRequest and fills
 * `out` with views into `der` (not copied; caller keeps `der` alive).
 * No signature check and no key parsing beyond the structure.
 * The [0] attributes may be absent; attributes other than extensionRequest
 * are skipped. The SAN must be a non-empty GeneralNames whose elements are
 * context-specific [0]..[8]; a second extensionRequest or subjectAltName is
 * CX_E_CSR_EXT. The signature BIT STRING must have 0 unused bits.
 * Returns CX_OK, CX_E_NOT_CSR (not DER / wrong structure / trailing bytes),
 * CX_E_CSR_VERSION, CX_E_CSR_SUBJECT (malformed Name), CX_E_CSR_EXT
 * (malformed extensionRequest or SAN), CX_E_TOO_LARGE (> CX_CSR_MAX_DER).
 * `out` is zeroed first, so it is never left half-filled with stale views. */
cx_err_t cx_csr_parse(cx_csr_t *out, const uint8_t *der, size_t der_len);

/* cx_csr_verify applies the key policy (RSA 2048..8192 bits with an odd
 * exponent 65537 <= e < 2^33, EC P-256/P-384/P-521) and verifies the
 * signature over `info` with
 * the CSR's own key (sha256/384/512 with RSA PKCS#1 v1.5, ECDSA with
 * SHA-256/384/512; SHA-1 and MD5 are refused). RSA algorithm parameters
 * must be NULL or absent, ECDSA ones absent. Checks run in that order:
 * algorithm (CX_E_CSR_ALG), key (CX_E_CSR_KEY), algorithm matching the key
 * type (CX_E_CSR_ALG), signature (CX_E_CSR_SIG).
 * If `out_key` is not NULL, on success *out_key receives a new reference to the
 * parsed public key (caller frees it with EVP_PKEY_free).
 * Thread: signer worker only (it costs a public-key operation).
 * Returns CX_OK, CX_E_CSR_KEY, CX_E_CSR_ALG or CX_E_CSR_SIG. */
cx_err_t cx_csr_verify(const cx_csr_t *csr, EVP_PKEY **out_key);

/* cx_name_cn copies the first commonName of the Name TLV `name` into `out`
 * (NUL-terminated, truncated to out_len-1, non-printable bytes replaced by '?')
 * for logs. Writes "" when there is none. Returns true if a CN was found. */
bool cx_name_cn(const CBS *name, char *out, size_t out_len);

#endif
