/* capf_sign: the signing-pool half of a CAPF session (see capf_sign.h). */
#include "dataplane/capf_sign.h"

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "ra/ra_device.h"

void capf_sign_auth(capf_job_t *j) {
    char pw[80];
    j->auth_ok = false;
    if (CBS_len(&j->password) == 0 || CBS_len(&j->password) >= sizeof(pw) || j->auth_hash[0] != '$') return;
    memcpy(pw, CBS_data(&j->password), CBS_len(&j->password));
    pw[CBS_len(&j->password)] = 0;
    j->auth_ok = ra_auth_string_check(pw, j->auth_hash);
    OPENSSL_cleanse(pw, sizeof(pw));
}

/* capf_mic_pidsn takes the model and serial number from a verified MIC's
 * subject serialNumber "PID:<pid> SN:<sn>" (§3.3: what the CUCM-style LSC
 * subject needs); anything else leaves them unknown. */
static void capf_mic_pidsn(capf_job_t *j, const CBS *der) {
    const uint8_t *p = CBS_data(der);
    X509 *x = d2i_X509(NULL, &p, (long)CBS_len(der));
    char v[80] = "", pid[RA_DEVICE_PIDSN_MAX + 1], sn[RA_DEVICE_PIDSN_MAX + 1];
    if (x && X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_serialNumber, v, sizeof(v)) > 0 &&
        sscanf(v, "PID:%24s SN:%24s", pid, sn) == 2 && ra_pidsn_valid(pid) && ra_pidsn_valid(sn)) {
        snprintf(j->pid, sizeof(j->pid), "%s", pid);
        snprintf(j->sn, sizeof(j->sn), "%s", sn);
    }
    X509_free(x);
    ERR_clear_error();
}

void capf_sign_certauth(capf_job_t *j, const capf_certauth_ctx_t *ctx) {
    capf_msg_t m;
    capf_certauth_ctx_t c = *ctx;
    c.device = j->device;
    c.session_id = j->session_id;
    c.prefer_mic = j->prefer_mic;
    j->cert_used = j->prefer_mic ? CAPF_CERT_MIC : CAPF_CERT_LSC;
    j->cert_why[0] = 0;
    j->cert_err = capf_msg_parse(&m, j->msg, j->msg_len); /* parsed before on the core: cannot fail */
    if (j->cert_err == CAPF_OK)
        j->cert_err = capf_certauth_check(&c, &m, &j->cert_used, j->cert_why, sizeof(j->cert_why));
    capf_cert_type_t type;
    CBS der;
    if (j->cert_err != CAPF_OK || capf_msg_cert(&m, &type, &der) != CAPF_OK) return;
    SHA256(CBS_data(&der), CBS_len(&der), j->cert_sha256);
    if (j->cert_used == CAPF_CERT_MIC) capf_mic_pidsn(j, &der);
}

/* capf_sign_begin checks the phone's key and points `out` at the job's
 * certificate buffer: the common start of the LSC and the upstream request.
 * Returns false with j->err set. */
static bool capf_sign_begin(capf_job_t *j, const capf_spki_policy_t *spki_pol, CBB *out) {
    j->cert_len = 0;
    j->cx_err = CX_OK;
    j->err = capf_spki_check(spki_pol, &j->key, CBS_data(&j->spki), CBS_len(&j->spki), NULL, j->key_hash);
    if (j->err != CAPF_OK) return false;
    if (!CBB_init_fixed(out, j->cert, j->cert_cap)) {
        j->err = CAPF_E_BUFFER;
        return false;
    }
    return true;
}

void capf_sign_lsc(capf_job_t *j, const capf_spki_policy_t *spki_pol, const cx_issuer_t *iss,
                   const cx_lsc_policy_t *pol, int64_t now) {
    CBB out;
    size_t len = 0;
    if (!capf_sign_begin(j, spki_pol, &out)) return;
    j->cx_err = cx_lsc_issue(&out, j->serial, iss, &j->spki, j->device, j->pid, j->sn, pol, now);
    if (j->cx_err != CX_OK || !CBB_finish(&out, NULL, &len)) {
        CBB_cleanup(&out);
        j->err = CAPF_E_BUFFER;
        return;
    }
    CBS subject, spki, serial;
    if (cx_cert_parse_basic(j->cert, len, &subject, &spki, &serial, &j->not_after) != CX_OK) {
        j->err = CAPF_E_BUFFER;
        return;
    }
    j->cert_len = len;
}

void capf_sign_request(capf_job_t *j, const capf_spki_policy_t *spki_pol, const cx_issuer_t *ra,
                       const cx_lsc_policy_t *pol) {
    CBB out;
    size_t len = 0;
    if (!capf_sign_begin(j, spki_pol, &out)) return;
    j->cx_err = cx_lsc_request(&out, ra, &j->spki, j->device, j->pid, j->sn, pol);
    if (j->cx_err != CX_OK || !CBB_finish(&out, NULL, &len)) {
        CBB_cleanup(&out);
        j->err = CAPF_E_BUFFER;
        return;
    }
    j->cert_len = len;
}
