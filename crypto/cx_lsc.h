/* cx_lsc: the CAPF Locally Significant Certificate profile
 * (capf-protocol.md §3.3, "Appliance default" column). CAPF clients send a
 * bare SubjectPublicKeyInfo, not a CSR, so the whole subject comes from
 * here: the device name plus attributes copied from the CAPF (issuer)
 * certificate's subject. The certificate itself is written and signed by
 * cx_cert_build; this module only fills a cx_tbs_t for it.
 * In online CA mode the upstream CA signs instead: cx_lsc_request builds
 * the PKCS#10 it is sent, with the same subject.
 * Thread: cx_lsc_issue and cx_lsc_request on signer workers only (they
 * sign); the other functions on any thread. No shared state. */
#ifndef CX_LSC_H
#define CX_LSC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>

#include "crypto/cx_cert.h"
#include "crypto/cx_err.h"

/* Policy bounds and defaults (§3.3: validity 1 to 1825 days, default 365;
 * notBefore 5 minutes in the past for phones whose clocks lag). */
#define CX_LSC_DAYS_MIN 1
#define CX_LSC_DAYS_MAX 1825
#define CX_LSC_DAYS_DEFAULT 365
#define CX_LSC_BACKDATE_DEFAULT 300
#define CX_LSC_BACKDATE_MAX 86400     /* more than a day back is a typo */

/* Names: a device name is 1..CX_LSC_DEVICE_MAX characters of
 * [A-Za-z0-9._-]; a PID or SN (CUCM style) is 1..CX_LSC_PID_MAX /
 * CX_LSC_SN_MAX characters of [A-Za-z0-9./+=-] (PrintableString
 * characters, no space, so "PID:<pid> SN:<sn>" stays unambiguous and within
 * the 64-character serialNumber bound of RFC 5280). */
#define CX_LSC_DEVICE_MAX 64
#define CX_LSC_PID_MAX 24
#define CX_LSC_SN_MAX 24
/* Longest subject Name this module writes (stack buffer, not allocated). */
#define CX_LSC_SUBJECT_MAX 1024

/* Largest certificate DER a version-2 CAPF client can read in one message
 * (§1.1 rule 2: 4096-byte read minus the 20-byte wrapper). cx_lsc_issue
 * does not enforce it (newer clients are not known to have the limit): a
 * caller that must respect it passes a CBB_init_fixed buffer of this size
 * and treats CX_E_NOMEM as "LSC too large". */
#define CX_LSC_DER_MAX_V2 4076

/* cx_lsc_subject_t: how the subject Name is composed.
 *  DEVICE: the issuer subject's C, ST, L, O and OU attributes, in the
 *          issuer's order, each copied byte for byte as its own RDN (other
 *          attribute types, e.g. the issuer's CN or emailAddress, are
 *          dropped), then CN=<device> (UTF8String).
 *  CUCM:   serialNumber="PID:<pid> SN:<sn>" (PrintableString), then the
 *          issuer's C, then O, then OU attributes (that fixed order, as in
 *          the CUCM LSC of §3.3; each copied byte for byte as its own RDN),
 *          then CN=<pid>-<device> (UTF8String). */
typedef enum { CX_LSC_SUBJECT_DEVICE = 0, CX_LSC_SUBJECT_CUCM } cx_lsc_subject_t;

/* cx_lsc_policy_t: LSC issuance settings. Start from cx_lsc_policy_default. */
typedef struct {
    uint32_t validity_days;      /* CX_LSC_DAYS_MIN..CX_LSC_DAYS_MAX, default 365 */
    uint32_t backdate_s;         /* notBefore = now - backdate_s, 0..CX_LSC_BACKDATE_MAX,
                                    default 300 */
    cx_lsc_subject_t subject;    /* default DEVICE */
    bool ec_key_encipherment;    /* add keyEncipherment for EC keys (default off;
                                    RFC 5480 does not define it for EC) */
    bool san_uri;                /* subjectAltName URI = device name (default off:
                                    a bare device name is not an absolute URI) */
} cx_lsc_policy_t;

/* cx_lsc_policy_default fills `p` with the defaults above.
 * Thread: any thread. This function can't fail. */
void cx_lsc_policy_default(cx_lsc_policy_t *p);

/* cx_lsc_policy_check validates `p` (for the settings table).
 * Thread: any thread.
 * Returns CX_OK, or CX_E_CONFIG if validity_days, backdate_s or subject is
 * out of range. */
cx_err_t cx_lsc_policy_check(const cx_lsc_policy_t *p);

/* cx_lsc_issue signs the LSC for `device` with public key `spki` under `iss`
 * and writes its DER to `out`, its serial (16 bytes, positive) to `serial`.
 * Profile: v3; issuer = iss->subject byte for byte; subject per
 * pol->subject (see cx_lsc_subject_t); notBefore = now - backdate_s,
 * notAfter = notBefore + validity_days, capped at iss->not_after when that
 * is non-zero; basicConstraints critical CA:FALSE; keyUsage critical:
 * RSA keys digitalSignature + keyEncipherment, EC keys digitalSignature
 * (+ keyEncipherment if pol->ec_key_encipherment); extendedKeyUsage
 * serverAuth, clientAuth, ipsecEndSystem; SKI and AKI; subjectAltName
 * { URI:<device> } only if pol->san_uri. Signature algorithm follows the
 * issuer key (cx_cert_build).
 * Inputs: `spki` is a SubjectPublicKeyInfo TLV already validated by
 * capf_spki_check (only its outer structure and algorithm OID are read
 * here). `pid` and `sn` are read only for CX_LSC_SUBJECT_CUCM; if either is
 * NULL or empty (not known for this device), the DEVICE style is used
 * instead, as §3.3 says CUCM style applies only when both are known.
 * `pol` NULL means the defaults. Nothing is retained after the call.
 * Thread: signer worker only. Allocates nothing beyond `out` growth (none
 * with a large enough CBB_init_fixed buffer) and BoringSSL's signing
 * context.
 * Returns CX_OK;
 *   CX_E_CONFIG: policy out of range, `device` NULL or not allowed, `pid` or
 *     `sn` given but not allowed, CUCM CN "<pid>-<device>" over 64
 *     characters, `now` outside 0..9999-12-31, or notAfter past 9999;
 *   CX_E_CSR_KEY: `spki` NULL, not a SubjectPublicKeyInfo, or its algorithm
 *     is neither rsaEncryption nor id-ecPublicKey;
 *   CX_E_CERT: iss->subject is not a well-formed Name, or iss->not_after is
 *     non-zero and not after `now` (issuer expired);
 *   CX_E_NOMEM: subject over CX_LSC_SUBJECT_MAX bytes, or `out` could not
 *     grow (a fixed `out` too small);
 *   CX_E_SIGN: `iss` NULL, no key, unsupported key type, or signing failed.
 * On any refusal of the inputs (CONFIG, CSR_KEY, CERT) nothing is written to
 * `out`; after NOMEM or SIGN `out` may hold a partial write: discard it. */
cx_err_t cx_lsc_issue(CBB *out, uint8_t serial[CX_SERIAL_LEN], const cx_issuer_t *iss,
                      const CBS *spki, const char *device, const char *pid, const char *sn,
                      const cx_lsc_policy_t *pol, int64_t now);

/* cx_lsc_request writes the PKCS#10 CertificationRequest (RFC 2986) that
 * CAPF submits to an upstream CA in online CA mode for the phone key
 * `spki` of `device`, to `out`: version 0; subject exactly as cx_lsc_issue
 * would write it for the same device, pid, sn and pol->subject, with the
 * attributes copied from ra->subject (the CAPF certificate's subject);
 * subjectPKInfo = `spki` byte for byte, as the phone sent it; attributes
 * empty ([0] with no Attribute); signed with SHA-256 by ra->key
 * (sha256WithRSAEncryption, NULL parameters, for an RSA key;
 * ecdsa-with-SHA256, no parameters, for an EC key of any curve).
 *
 * Who signs: a CAPF phone never signs anything (capf-protocol.md §3.1: it
 * sends a bare SubjectPublicKeyInfo, there is no proof of possession in the
 * protocol; possession is only implied by the authenticated session), so
 * the request cannot carry the phone's signature. It is signed by CAPF as
 * the registration authority, with the key of the certificate CAPF
 * presents. The signature therefore does NOT verify against the public key
 * inside the request. [DESIGN, to verify against a real ADCS] A Microsoft
 * CA checks a PKCS#10's signature against the key in it, unless the
 * certificate template accepts requests signed by an enrollment agent (then
 * the CAPF certificate must be an enrollment-agent certificate the CA
 * trusts, and ADCS normally takes the request wrapped in a CMC/PKCS#7
 * signed by it); whether a bare PKCS#10 signed by another key is accepted
 * is not known. If not, the CA refuses it and the phone's session ends with
 * END_SESSION 07 and the CA's words (docs/redis-schema.md, "CAPF requests
 * upstream").
 *
 * Only ra->subject and ra->key are read (not ski or not_after: no
 * validity is involved). `pid`, `sn` and `pol` as for cx_lsc_issue (only
 * the subject style of `pol` is used; NULL = the defaults). Nothing is
 * retained after the call.
 * Thread: signer worker only (it signs). Allocates nothing beyond `out`
 * growth (none with a large enough CBB_init_fixed buffer) and BoringSSL's
 * signing context.
 * Returns CX_OK;
 *   CX_E_CONFIG: policy out of range, `device` NULL or not allowed, `pid` or
 *     `sn` given but not allowed, CUCM CN over 64 characters;
 *   CX_E_CSR_KEY: `spki` NULL, not a SubjectPublicKeyInfo, or its algorithm
 *     is neither rsaEncryption nor id-ecPublicKey;
 *   CX_E_CERT: ra->subject is not a well-formed Name;
 *   CX_E_NOMEM: subject over CX_LSC_SUBJECT_MAX bytes, or `out` could not
 *     grow;
 *   CX_E_SIGN: `ra` NULL, no key, a key that is neither RSA nor EC, or
 *     signing failed.
 * On CONFIG, CSR_KEY or CERT nothing is written to `out`; after NOMEM or
 * SIGN `out` may hold a partial write: discard it. */
cx_err_t cx_lsc_request(CBB *out, const cx_issuer_t *ra, const CBS *spki, const char *device,
                        const char *pid, const char *sn, const cx_lsc_policy_t *pol);

/* cx_lsc_fingerprints writes the MD5 and SHA-256 digests of the certificate
 * DER `der` (`len` bytes) to `md5` and `sha256`. The MD5 is what Jabber
 * compares with certHash in its configuration file (§3.3).
 * Thread: any thread. This function can't fail. */
void cx_lsc_fingerprints(const uint8_t *der, size_t len, uint8_t md5[16], uint8_t sha256[32]);

#endif
