/* capf_sign: the signing-pool half of a CAPF session: the checks and the
 * signature a polling core must not do (capf-protocol.md §3.2, §3.3, §2.8).
 *   capf_sign_auth: the authentication string against the device's crypt(3)
 *                   hash (a deliberately slow hash: never on a core);
 *   capf_sign_lsc:  the phone's public key against what was asked for
 *                   (capf_spki_check), then the LSC (cx_lsc_issue), its
 *                   fingerprints and the key hash for the records;
 *   capf_sign_request: online CA mode: the same key checks, then the
 *                   PKCS#10 for the upstream CA (cx_lsc_request: the
 *                   LSC's subject, the phone's key, signed by the CAPF key
 *                   because a phone signs nothing) instead of the LSC.
 * The job lives in the session's pooled buffer; inputs are views into the
 * message the session keeps until the job returns. Nothing is allocated
 * beyond BoringSSL's parsing and signing contexts.
 * Thread: signer worker only. */
#ifndef CAPF_SIGN_H
#define CAPF_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>

#include "crypto/cx_cert.h"
#include "crypto/cx_lsc.h"
#include "dataplane/capf_certauth.h"
#include "dataplane/capf_spki.h"
#include "ra/ra_device.h"

/* capf_job_t: one job. The caller fills the inputs; the worker the outputs. */
typedef struct {
    /* inputs */
    char device[RA_DEVICE_NAME_MAX + 1];
    char pid[RA_DEVICE_PIDSN_MAX + 1];  /* lsc: for the CUCM-style subject ("" = unknown);
                                           certauth: out, from a verified MIC */
    char sn[RA_DEVICE_PIDSN_MAX + 1];
    CBS password;                       /* auth: the string the phone sent */
    char auth_hash[RA_DEVICE_HASH_MAX]; /* auth: the device's crypt(3) hash */
    capf_keyspec_t key;                 /* lsc, request: what KEY_GENERATE_REQUEST asked */
    CBS spki;                           /* lsc, request: the PUBLIC_KEY value */
    uint8_t *cert;                      /* lsc: where the DER goes (caller's buffer);
                                           request: where the PKCS#10 goes */
    size_t cert_cap;
    /* outputs */
    bool auth_ok;
    capf_err_t err;                     /* lsc, request: CAPF_OK, the key's fault, or
                                           CAPF_E_BUFFER (signing failed) */
    cx_err_t cx_err;                    /* lsc, request: the signer's cause when err is
                                           CAPF_E_BUFFER */
    size_t cert_len;                    /* lsc: the LSC's length; request: the PKCS#10's */
    uint8_t serial[CX_SERIAL_LEN];
    int64_t not_after;
    uint8_t key_hash[CAPF_SPKI_HASH_LEN]; /* lsc, request: SHA-256 of the canonical key
                                             (reuse check) */
    /* certauth: the AUTH_RESPONSE (a view of the session's buffer) and the
     * session id it was signed for; outputs the verdict and its detail */
    const uint8_t *msg;
    size_t msg_len;
    uint32_t session_id;
    bool prefer_mic;
    capf_err_t cert_err;
    capf_cert_type_t cert_used;
    char cert_why[CAPF_CERTAUTH_WHY_MAX];
    uint8_t cert_sha256[32];            /* certauth: SHA-256 of the certificate sent */
} capf_job_t;

/* capf_sign_auth sets j->auth_ok: the string matches the hash (one crypt;
 * the copy of the string on the stack is wiped). A hash that is not a crypt
 * hash (e.g. a used one-time string) never matches. */
void capf_sign_auth(capf_job_t *j);

/* capf_sign_certauth checks the certificate proof of the AUTH_RESPONSE in
 * j->msg with `ctx` (its device, session_id and prefer_mic are taken from
 * the job). Sets cert_err, cert_used and cert_why. */
void capf_sign_certauth(capf_job_t *j, const capf_certauth_ctx_t *ctx);

/* capf_sign_lsc checks j->spki against j->key under `spki_pol`, then signs
 * the LSC for j->device with `iss` under `pol` at `now` into j->cert.
 * Sets j->err (and j->cx_err), and on success cert_len, serial, not_after. */
void capf_sign_lsc(capf_job_t *j, const capf_spki_policy_t *spki_pol, const cx_issuer_t *iss,
                   const cx_lsc_policy_t *pol, int64_t now);

/* capf_sign_request checks j->spki against j->key under `spki_pol` (as
 * capf_sign_lsc does, key_hash included), then writes the PKCS#10 that
 * online CA mode submits upstream for j->device (cx_lsc_request: subject
 * per `pol` with j->pid/j->sn and ra->subject, signed by ra->key) into
 * j->cert. Sets j->err (and j->cx_err), and on success cert_len. */
void capf_sign_request(capf_job_t *j, const capf_spki_policy_t *spki_pol, const cx_issuer_t *ra,
                       const cx_lsc_policy_t *pol);

#endif
