/* capf_certauth: CAPF "authentication by existing certificate"
 * (capf-protocol.md §2.8, §5.2 row 5, §5.5): the proof a phone gives in
 * AUTH_RESPONSE that it holds the key of its current LSC, or of its MIC.
 * The phone sends
 *   CERTIFICATE (04)       its LSC or MIC (§2.6 wrapper, type 0001 or 0002),
 *   SHA2_SIGNED_DATA (14)  hash id | u16 length | signature,
 *   SIGNED_DATA (06)       the same signature with SHA-1 (optional here),
 *   SUDI_DATA (10)         optional: SUDI certificate + two signatures,
 * where the signatures cover `device_name || 00 || DER(certificate)` and the
 * SUDI ones `le32(session id) || DER(SUDI certificate)`. RSA signatures are
 * PKCS#1 v1.5 type-1 blocks of the bare hash or of a DigestInfo (both are
 * in use, §2.8); EC signatures are DER ECDSA.
 *
 * The rules, including the gaps §2.8 tells us to close:
 *  1. exactly one X.509 certificate, not a CA certificate;
 *  2. it chains to `lsc_trust` (an LSC) or to `mic_trust` (a MIC), the
 *     preferred store first (precedence LSC or MIC, §5.1); every
 *     certificate of either store is a trust anchor (the configured issuer
 *     is enough, its root need not be loaded), and two LSC issuers may be
 *     trusted at once (CAPF rollover, §5.8); no EKU is required;
 *  3. every certificate of the chain is valid at `now`; only the MIC
 *     itself may have expired, and only with `accept_expired_mic`;
 *  4. the subject has exactly one CN: an LSC's equals the device name (or,
 *     with `lsc_cucm_cn`, ends in "-<device name>" as our CUCM-style LSCs
 *     do, §3.3); a MIC's ends in "-<device name>" with something before;
 *  5. SHA2_SIGNED_DATA is required, hash id 03 (SHA-512) or 02 (SHA-256):
 *     id 01 (SHA-1) is no SHA-2 proof; it must verify;
 *  6. SIGNED_DATA (SHA-1) is optional (SHA-1 alone never authenticates),
 *     but one that is sent must verify: a phone that signs badly is refused;
 *  7. SUDI_DATA, when sent, must be exactly the blocks 00 (certificate), 01
 *     (SHA-1 signature), 03 or 02 (SHA-512 / SHA-256 signature); the SUDI
 *     certificate must be RSA (the only kind §2.8 knows), chain to
 *     `mic_trust` under rule 3, and both signatures must verify with the
 *     session id little-endian (§2.8).
 * Message bytes are read only with CBS; the certificate is parsed by
 * BoringSSL from a copy. Nothing is allocated but BoringSSL objects (the
 * X509s, their keys, one verification context), all freed on every path.
 * Thread: signer worker only (chain and signature verification are
 * public-key operations; never on a polling core). X509_STORE is safe for
 * concurrent verifications, so the stores may be shared by all workers. */
#ifndef CAPF_CERTAUTH_H
#define CAPF_CERTAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

#include "dataplane/capf_err.h"
#include "dataplane/capf_msg.h"

/* Largest RSA key accepted (certificate or SUDI): bounds the stack buffers
 * of the raw RSA operation. Phones use 1024 to 4096 (§5.1). */
#define CAPF_CERTAUTH_RSA_MAX_BITS 4096
/* A `why` buffer of this size holds every detail in full for device names
 * up to 64 characters (a smaller one truncates; it is always terminated). */
#define CAPF_CERTAUTH_WHY_MAX 160

/* capf_certauth_ctx_t: what the check needs besides the message.
 * Ownership: everything is borrowed for the duration of the call. */
typedef struct {
    const char *device;      /* the device name the session accepted from this
                                message's DEVICE_NAME (capf_msg_device_name),
                                NUL-terminated; it is what the phone signed */
    uint32_t session_id;     /* the session's id: signed by SUDI_DATA (little-endian) */
    X509_STORE *lsc_trust;   /* LSC issuers (ours; two during a rollover), or NULL:
                                no LSC accepted */
    X509_STORE *mic_trust;   /* manufacturer CAs (MIC and SUDI issuers), or NULL:
                                no MIC and no SUDI_DATA accepted */
    bool accept_expired_mic; /* setting (default false): an expired MIC (the leaf
                                only, never a CA, never an LSC) is accepted */
    bool prefer_mic;         /* auth mode "precedence to MIC": try mic_trust
                                first; false: LSC first, MIC as fallback */
    bool lsc_cucm_cn;        /* the LSC subject style is CUCM (CN=<pid>-<device>,
                                cx_lsc CX_LSC_SUBJECT_CUCM): also accept that CN */
    int64_t now;             /* seconds since the epoch, for validity periods */
} capf_certauth_ctx_t;

/* capf_certauth_check verifies the certificate proof of `auth_response`
 * (an AUTH_RESPONSE that capf_msg_parse accepted) under `ctx`, by rules 1
 * to 7 above, in that order; it stops at the first failure.
 * Ownership: `ctx` and `auth_response` (and the bytes it views) are only
 * read. `why` (may be NULL when `why_len` is 0) always gets a NUL-terminated
 * detail for logs: on success what was accepted ("LSC", "MIC (expired,
 * accepted by setting) + SUDI"), on failure the precise cause (the
 * certificate CN, with any byte outside [A-Za-z0-9 ._-] shown as '?'; the
 * X.509 verification error). It never holds a secret.
 * *used is always set: the kind of certificate the phone authenticated
 * with, or failed to (CAPF_CERT_LSC or CAPF_CERT_MIC): the store the
 * certificate chained to, else the store it came closest to (a validity
 * failure before a refused chain before no issuer at all), else the
 * preferred kind (prefer_mic).
 * Thread: signer worker only.
 * Returns CAPF_OK, one of CAPF_E_CERTAUTH_* (the phone's fault: see
 * capf_certauth_status), CAPF_E_ARG (`ctx` unusable: no device name or no
 * store at all) or CAPF_E_BUFFER (BoringSSL could not allocate: the
 * server's fault). The BoringSSL error queue is left empty. */
capf_err_t capf_certauth_check(const capf_certauth_ctx_t *ctx, const capf_msg_t *auth_response,
                               capf_cert_type_t *used, char *why, size_t why_len);

/* capf_certauth_status returns the CUCM certificate operation status
 * qualifier for a failure of capf_certauth_check (§5.5), with its cause:
 * "Invalid Credentials: no certificate sent" for
 * CAPF_E_CERTAUTH_NO_CREDENTIALS, "Invalid MIC: <cause>" for the SUDI codes
 * (the SUDI is a manufacturing credential) and for the others when `used`
 * is CAPF_CERT_MIC, else "Invalid LSC: <cause>", e.g.
 * "Invalid LSC: signature (SHA-512) does not verify". <cause> is
 * capf_err_str(err). The session prefixes the operation ("Upgrade Failed: ").
 * Returns a static string, or NULL when `err` is not the phone's fault
 * (CAPF_OK, CAPF_E_ARG, CAPF_E_BUFFER, any code not of capf_certauth):
 * record a plain "<op> Failed" and do not count it against the device.
 * Thread: any thread. This function can't fail. */
const char *capf_certauth_status(capf_err_t err, capf_cert_type_t used);

#endif
