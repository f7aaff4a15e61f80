/* capf_sess: the CAPF session engine (see capf_sess.h). */
#include "dataplane/capf_sess.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const capf_state_text[CAPF_S__COUNT] = {
    [CAPF_S_AWAIT_AUTH] = "await-auth",     [CAPF_S_DECIDE] = "decide",
    [CAPF_S_AWAIT_KEYGEN] = "await-keygen", [CAPF_S_SIGNING] = "signing",
    [CAPF_S_AWAIT_STORE] = "await-store",   [CAPF_S_AWAIT_FETCH] = "await-fetch",
    [CAPF_S_AWAIT_DELETE] = "await-delete", [CAPF_S_FINISHING] = "finishing",
    [CAPF_S_CLOSING] = "closing",
};

const char *capf_state_str(unsigned st) { return st < CAPF_S__COUNT ? capf_state_text[st] : "unknown"; }

void capf_conf_default(capf_conf_t *cf) {
    *cf = (capf_conf_t){.hello_auth_type = true,
                        .strict_version = true,
                        .device_name_max = CAPF_DEVICE_NAME_MAX,
                        .max_in_progress = 16,
                        .fetch_delete = true,
                        .status_reply = true};
}

const char *capf_op_failed(const capf_sess_t *s) {
    switch (s->op) {
    case RA_OP_DELETE: return "Delete Failed";
    case RA_OP_TROUBLESHOOT: return "Troubleshoot Failed";
    default: return "Upgrade Failed";
    }
}

static void capf_why(capf_result_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void capf_why(capf_result_t *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->why, sizeof(r->why), fmt, ap);
    va_end(ap);
}

/* capf_end builds END_SESSION `reason` and enters CLOSING. */
static capf_step_t capf_end(capf_sess_t *s, uint8_t reason, CBB *out, capf_result_t *r) {
    capf_msg_out_t m = {.op = CAPF_OP_END_SESSION, .session_id = s->id, .present = CAPF_BIT(CAPF_TAG_REASON),
                        .reason = reason};
    s->state = CAPF_S_CLOSING;
    r->end_reason = reason;
    if (out) capf_msg_build(out, &m); /* a full CBB: the caller just closes */
    return CAPF_STEP_END;
}

/* capf_refuse ends the session with END 07 because of `r->why`: recorded
 * first (FAIL) when the device is locked, else straight away. */
static capf_step_t capf_refuse(capf_sess_t *s, CBB *out, capf_result_t *r) {
    if (s->locked) {
        s->state = CAPF_S_FINISHING;
        s->success = false;
        return CAPF_STEP_FAIL;
    }
    return capf_end(s, CAPF_REASON_INVALID_ELEMENT, out, r);
}

capf_err_t capf_sess_start(capf_sess_t *s, const capf_conf_t *cf, uint32_t id, CBB *out) {
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->state = CAPF_S_AWAIT_AUTH;
    capf_msg_out_t m = {.op = CAPF_OP_AUTH_REQUEST, .session_id = id, .present = CAPF_BIT(CAPF_TAG_VERSION),
                        .version = 3, .auth_type = CAPF_AUTH_NONE};
    if (cf->hello_auth_type) m.present |= CAPF_BIT(CAPF_TAG_AUTH_TYPE);
    return capf_msg_build(out, &m);
}

/* capf_on_auth reads AUTH_RESPONSE (§2.7.1, §4.2): version, device name,
 * optional password. */
static capf_step_t capf_on_auth(capf_sess_t *s, const capf_conf_t *cf, const capf_msg_t *m, CBB *out,
                                capf_result_t *r) {
    uint8_t v = 0;
    capf_err_t e = capf_msg_u8(m, CAPF_TAG_VERSION, &v);
    if (e == CAPF_E_ABSENT && !cf->strict_version) v = 2;
    else if (e != CAPF_OK || v < 2) {
        capf_why(r, "AUTH_RESPONSE: %s protocol version", e == CAPF_OK ? "unsupported" : "missing");
        return capf_end(s, CAPF_REASON_INVALID_ELEMENT, out, r);
    }
    s->version = v > 3 ? 3 : v;
    CBS name;
    if ((e = capf_msg_device_name(m, cf->device_name_max, &name)) != CAPF_OK) {
        capf_why(r, "AUTH_RESPONSE: device name: %s", capf_err_str(e));
        return capf_end(s, CAPF_REASON_INVALID_ELEMENT, out, r);
    }
    memcpy(s->device, CBS_data(&name), CBS_len(&name));
    s->device[CBS_len(&name)] = 0;
    CBS_init(&r->password, NULL, 0);
    r->has_password = capf_msg_string(m, CAPF_TAG_PASSWORD, &r->password) == CAPF_OK;
    s->state = CAPF_S_DECIDE;
    return CAPF_STEP_BEGIN;
}

static capf_step_t capf_on_keygen(capf_sess_t *s, const capf_conf_t *cf, const capf_msg_t *m, CBB *out,
                                  capf_result_t *r) {
    if (m->op == CAPF_OP_REQUEST_IN_PROGRESS) {
        if (++s->in_progress > cf->max_in_progress) {
            capf_why(r, "%s: more than %u REQUEST_IN_PROGRESS messages", capf_op_failed(s), cf->max_in_progress);
            return capf_refuse(s, out, r);
        }
        return CAPF_STEP_WAIT;
    }
    if (capf_msg_get(m, CAPF_TAG_PUBLIC_KEY, &r->spki) != CAPF_OK) {
        uint8_t why = 0;
        if (capf_msg_u8(m, CAPF_TAG_REASON, &why) == CAPF_OK)
            capf_why(r, "Upgrade Failed: Key Generation Failed/Timeout (the phone sent reason %u, no key)", why);
        else
            capf_why(r, "Upgrade Failed: Key Generation Failed/Timeout (the phone sent no key)");
        return capf_refuse(s, out, r);
    }
    s->state = CAPF_S_SIGNING;
    return CAPF_STEP_SIGN;
}

/* capf_on_answer reads the phone's answer to STORE, DELETE or FETCH. */
static capf_step_t capf_on_answer(capf_sess_t *s, const capf_msg_t *m, capf_result_t *r) {
    uint8_t reason = 0;
    bool ok = capf_msg_u8(m, CAPF_TAG_REASON, &reason) == CAPF_OK && reason == CAPF_REASON_UPDATE_CERTIFICATE;
    capf_cert_type_t type;
    switch (m->op) {
    case CAPF_OP_STORE_CERTIFICATE_RESPONSE:
        r->finish = ok ? CAPF_FIN_INSTALL_OK : CAPF_FIN_INSTALL_FAILED;
        if (!ok) capf_why(r, "Upgrade Failed: the phone could not store the certificate (reason %u)", reason);
        break;
    case CAPF_OP_DELETE_CERTIFICATE_RESPONSE:
        r->finish = ok ? CAPF_FIN_DELETE_OK : CAPF_FIN_DELETE_FAILED;
        if (!ok) capf_why(r, "Delete Failed: the phone did not delete its LSC (reason %u)", reason);
        break;
    default: /* FETCH_CERTIFICATE_RESPONSE */
        ok = ok && capf_msg_cert(m, &type, &r->cert) == CAPF_OK;
        r->finish = ok ? CAPF_FIN_FETCH_OK : CAPF_FIN_FETCH_FAILED;
        if (!ok) capf_why(r, "Troubleshoot Failed: the phone sent no certificate (reason %u)", reason);
        break;
    }
    if (ok) r->why[0] = 0;
    s->success = ok;
    s->state = CAPF_S_FINISHING;
    return CAPF_STEP_FINISH;
}

/* Which opcode each waiting state accepts (besides REQUEST_IN_PROGRESS in S3). */
static unsigned capf_expected(unsigned st) {
    switch (st) {
    case CAPF_S_AWAIT_AUTH: return CAPF_OP_AUTH_RESPONSE;
    case CAPF_S_AWAIT_KEYGEN: return CAPF_OP_KEY_GENERATE_RESPONSE;
    case CAPF_S_AWAIT_STORE: return CAPF_OP_STORE_CERTIFICATE_RESPONSE;
    case CAPF_S_AWAIT_FETCH: return CAPF_OP_FETCH_CERTIFICATE_RESPONSE;
    case CAPF_S_AWAIT_DELETE: return CAPF_OP_DELETE_CERTIFICATE_RESPONSE;
    default: return 0; /* busy or closing: no client message is expected */
    }
}

capf_step_t capf_sess_on_msg(capf_sess_t *s, const capf_conf_t *cf, const capf_msg_t *m, CBB *out,
                             capf_result_t *r) {
    r->why[0] = 0;
    if (s->state == CAPF_S_CLOSING) return CAPF_STEP_WAIT; /* §2.7.4: discarded */
    if (m->session_id != s->id) {
        capf_why(r, "%s: %s carries session id %08x, not %08x", s->locked ? capf_op_failed(s) : "refused",
                 capf_op_str(m->op), m->session_id, s->id);
        return capf_refuse(s, out, r);
    }
    if (m->op == CAPF_OP_ABORT_REQUEST && s->locked) { /* §4.3.4: the user cancelled */
        capf_why(r, "%s: aborted by the user", capf_op_failed(s));
        return capf_refuse(s, out, r);
    }
    if (m->op == CAPF_OP_STATUS_REQUEST && cf->status_reply && capf_expected(s->state)) {
        /* §4.3.4: the phone asks how things stand; the session stays where it is */
        capf_msg_out_t st = {.op = CAPF_OP_STATUS_RESPONSE, .session_id = s->id,
                             .present = CAPF_BIT(CAPF_TAG_REASON), .reason = CAPF_REASON_UPDATE_CERTIFICATE};
        capf_msg_build(out, &st);
        return CAPF_STEP_WAIT;
    }
    unsigned want = capf_expected(s->state);
    bool in_progress = s->state == CAPF_S_AWAIT_KEYGEN && m->op == CAPF_OP_REQUEST_IN_PROGRESS;
    if (!want || (m->op != want && !in_progress)) {
        capf_why(r, "%s: %s (%s) not expected in state %s", s->locked ? capf_op_failed(s) : "refused",
                 capf_op_str(m->op), capf_op_dir(m->op) == CAPF_DIR_TO_CLIENT ? "a server opcode" : "out of order",
                 capf_state_str(s->state));
        return capf_refuse(s, out, r);
    }
    switch (s->state) {
    case CAPF_S_AWAIT_AUTH: return capf_on_auth(s, cf, m, out, r);
    case CAPF_S_AWAIT_KEYGEN: return capf_on_keygen(s, cf, m, out, r);
    default: return capf_on_answer(s, m, r);
    }
}

capf_step_t capf_sess_bad_input(capf_sess_t *s, capf_err_t e, CBB *out, capf_result_t *r) {
    capf_why(r, "%s: malformed message: %s", s->locked ? capf_op_failed(s) : "refused", capf_err_str(e));
    if (s->state == CAPF_S_CLOSING) return CAPF_STEP_END;
    return capf_refuse(s, out, r);
}

/* capf_key_for picks the key to ask for from the device's key order (§5.2):
 * the first key the client's version can make (version 2: RSA only).
 * Returns false if there is none (EC only and a version 2 client). */
static bool capf_key_for(const capf_sess_t *s, const ra_device_t *dev, capf_keyspec_t *k) {
    for (size_t i = 0; i < dev->num_keys; i++) {
        switch (dev->keys[i]) {
        case RA_KEY_RSA2048: *k = (capf_keyspec_t){CAPF_KEY_RSA, 2048, 0}; return true;
        case RA_KEY_RSA3072: *k = (capf_keyspec_t){CAPF_KEY_RSA, 3072, 0}; return true;
        case RA_KEY_RSA4096: *k = (capf_keyspec_t){CAPF_KEY_RSA, 4096, 0}; return true;
        case RA_KEY_RSA1024: *k = (capf_keyspec_t){CAPF_KEY_RSA, 1024, 0}; return true;
        case RA_KEY_RSA512: *k = (capf_keyspec_t){CAPF_KEY_RSA, 512, 0}; return true;
        default: break;
        }
        if (s->version < 3) continue;
        capf_curve_t c = dev->keys[i] == RA_KEY_EC256 ? CAPF_CURVE_P256
                         : dev->keys[i] == RA_KEY_EC384 ? CAPF_CURVE_P384
                                                       : CAPF_CURVE_P521;
        *k = (capf_keyspec_t){CAPF_KEY_EC, 0, c};
        return true;
    }
    return false;
}

/* capf_operate sends the first request of the device's operation. */
static capf_step_t capf_operate(capf_sess_t *s, const ra_device_t *dev, CBB *out, capf_result_t *r) {
    capf_msg_out_t m = {.session_id = s->id};
    switch (s->op) {
    case RA_OP_INSTALL:
        if (!capf_key_for(s, dev, &s->key)) {
            capf_why(r, "Upgrade Failed: No Support for EC only in CAPF version 3 (the client speaks version %u)",
                     s->version);
            return capf_refuse(s, out, r);
        }
        m.op = CAPF_OP_KEY_GENERATE_REQUEST;
        if (s->key.type == CAPF_KEY_RSA) {
            m.present = CAPF_BIT(CAPF_TAG_KEY_SIZE);
            m.key_size = s->key.rsa_bits;
        }
        if (s->version >= 3) { /* §2.7.1: version 3 always gets KEY_TYPE */
            m.present |= CAPF_BIT(CAPF_TAG_KEY_TYPE);
            m.key_type = s->key.type;
            if (s->key.type == CAPF_KEY_EC) {
                m.present |= CAPF_BIT(CAPF_TAG_CURVE);
                m.curve = s->key.curve;
            }
        }
        s->state = CAPF_S_AWAIT_KEYGEN;
        break;
    case RA_OP_DELETE:
        m.op = CAPF_OP_DELETE_CERTIFICATE_REQUEST;
        s->state = CAPF_S_AWAIT_DELETE;
        break;
    default: /* RA_OP_TROUBLESHOOT */
        m.op = CAPF_OP_FETCH_CERTIFICATE_REQUEST;
        s->state = CAPF_S_AWAIT_FETCH;
        break;
    }
    capf_err_t e = capf_msg_build(out, &m);
    if (e != CAPF_OK) {
        capf_why(r, "%s: cannot build %s: %s", capf_op_failed(s), capf_op_str(m.op), capf_err_str(e));
        return capf_refuse(s, NULL, r);
    }
    return CAPF_STEP_WAIT;
}

capf_step_t capf_sess_begun(capf_sess_t *s, const capf_conf_t *cf, capf_begin_t b, const ra_device_t *dev,
                            CBB *out, capf_result_t *r) {
    switch (b) {
    case CAPF_BEGIN_UNKNOWN:
        capf_why(r, "unknown device");
        return capf_end(s, CAPF_REASON_UNKNOWN_DEVICE, out, r);
    case CAPF_BEGIN_REFUSED:
        if (!r->why[0]) capf_why(r, "refused by the registry");
        return capf_end(s, CAPF_REASON_INVALID_ELEMENT, out, r);
    case CAPF_BEGIN_UNAVAILABLE:
        capf_why(r, "registry (Redis) unavailable");
        return capf_end(s, CAPF_REASON_INVALID_ELEMENT, out, r);
    case CAPF_BEGIN_OK: break;
    }
    s->locked = true;
    s->op = (uint8_t)dev->op;
    if (dev->op == RA_OP_NONE || dev->op >= RA_OP__COUNT) {
        capf_why(r, "refused: no certificate operation pending");
        return capf_refuse(s, out, r);
    }
    if (dev->op != RA_OP_INSTALL && (!cf->fetch_delete || s->version < 3)) {
        capf_why(r, "%s: %s", capf_op_failed(s),
                 !cf->fetch_delete ? "Delete and Troubleshoot are disabled (capf_fetch_delete = false)"
                                   : "Delete and Troubleshoot need a version 3 client");
        return capf_refuse(s, out, r);
    }
    switch (dev->auth) {
    case RA_AUTH_NULL: return capf_operate(s, dev, out, r);
    case RA_AUTH_STRING:
        if (!r->has_password || CBS_len(&r->password) == 0) {
            capf_why(r, "%s: Invalid Authentication String (none sent)", capf_op_failed(s));
            r->auth_failure = true;
            return capf_refuse(s, out, r);
        }
        return CAPF_STEP_AUTH;
    default: /* LSC or MIC: the certificate proof is checked on a signer */
        return CAPF_STEP_CERTAUTH;
    }
}

capf_step_t capf_sess_certauthed(capf_sess_t *s, const capf_conf_t *cf, const ra_device_t *dev, capf_err_t e,
                                 const char *status, CBB *out, capf_result_t *r) {
    (void)cf;
    if (e == CAPF_OK) return capf_operate(s, dev, out, r);
    if (status) {
        capf_why(r, "%s: %s", capf_op_failed(s), status);
        r->auth_failure = true;
    } else {
        capf_why(r, "%s: the certificate proof could not be checked (%s)", capf_op_failed(s), capf_err_str(e));
    }
    return capf_refuse(s, out, r);
}

capf_step_t capf_sess_authed(capf_sess_t *s, const capf_conf_t *cf, const ra_device_t *dev, bool ok, CBB *out,
                             capf_result_t *r) {
    (void)cf;
    if (!ok) {
        capf_why(r, "%s: Invalid Authentication String", capf_op_failed(s));
        r->auth_failure = true;
        return capf_refuse(s, out, r);
    }
    return capf_operate(s, dev, out, r);
}

capf_step_t capf_sess_signed(capf_sess_t *s, capf_err_t e, capf_result_t *r) {
    if (e != CAPF_OK) {
        capf_why(r, "Upgrade Failed: %s", e == CAPF_E_BUFFER ? "the LSC could not be signed" : capf_err_str(e));
        return capf_refuse(s, NULL, r);
    }
    return CAPF_STEP_RECORD;
}

capf_step_t capf_sess_recorded(capf_sess_t *s, bool ok, bool lock_lost, CBS cert_der, CBB *out,
                               capf_result_t *r) {
    if (lock_lost) { /* another session owns the device now: leave its record alone */
        s->locked = false;
        capf_why(r, "refused: the device lock expired before the LSC was recorded; nothing sent");
        return capf_end(s, CAPF_REASON_INVALID_ELEMENT, out, r);
    }
    if (!ok) {
        capf_why(r, "Upgrade Failed: the LSC could not be recorded (registry unavailable); nothing sent");
        return capf_refuse(s, out, r);
    }
    capf_msg_out_t m = {.op = CAPF_OP_STORE_CERTIFICATE_REQUEST, .session_id = s->id,
                        .present = CAPF_BIT(CAPF_TAG_CERTIFICATE_TYPE) | CAPF_BIT(CAPF_TAG_CERTIFICATE),
                        .cert_type = CAPF_CERT_LSC, .cert_der = cert_der};
    capf_err_t e = capf_msg_build(out, &m);
    if (e != CAPF_OK) { /* §1.1 rule 2: fail cleanly instead of sending it */
        capf_why(r, "Upgrade Failed: the LSC (%zu bytes) does not fit one CAPF message: %s", CBS_len(&cert_der),
                 capf_err_str(e));
        return capf_refuse(s, NULL, r);
    }
    s->state = CAPF_S_AWAIT_STORE;
    return CAPF_STEP_WAIT;
}

capf_step_t capf_sess_closed(capf_sess_t *s, bool recorded, CBB *out, capf_result_t *r) {
    s->locked = false;
    bool ok = recorded && s->success;
    if (!recorded && s->success) capf_why(r, "the outcome could not be recorded in the registry (see the warning before)");
    return capf_end(s, ok ? CAPF_REASON_UPDATE_CERTIFICATE : CAPF_REASON_INVALID_ELEMENT, out, r);
}

/* capf_lost: the status for a timeout or a lost connection in state st. */
static capf_step_t capf_lost(capf_sess_t *s, CBB *out, capf_result_t *r, const char *what) {
    switch (s->state) {
    case CAPF_S_AWAIT_AUTH:
        capf_why(r, "%s before AUTH_RESPONSE", what);
        return capf_end(s, CAPF_REASON_INVALID_ELEMENT, out, r);
    case CAPF_S_AWAIT_KEYGEN:
        capf_why(r, "Upgrade Failed: Key Generation Failed/Timeout (%s)", what);
        return capf_refuse(s, out, r);
    case CAPF_S_AWAIT_STORE:
    case CAPF_S_AWAIT_FETCH:
    case CAPF_S_AWAIT_DELETE:
        capf_why(r, "%s: Phone Communication Failure (%s)", capf_op_failed(s), what);
        return capf_refuse(s, out, r);
    case CAPF_S_CLOSING: return CAPF_STEP_END;
    default: return CAPF_STEP_WAIT; /* a registry or signer result is on its way */
    }
}

capf_step_t capf_sess_timeout(capf_sess_t *s, CBB *out, capf_result_t *r) {
    return capf_lost(s, out, r, "timed out");
}

capf_step_t capf_sess_eof(capf_sess_t *s, capf_result_t *r) {
    return capf_lost(s, NULL, r, "connection closed by the phone");
}
