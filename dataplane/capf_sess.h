/* capf_sess: the CAPF session engine, the server side of one connection on
 * TCP 3804 (capf-protocol.md §5.3). It is a pure state machine: it takes
 * parsed client messages (capf_msg) and the results of the steps it asks
 * for (the registry's decision, the authentication check, the signature,
 * the records), builds every server message whole into a caller's CBB (one
 * message per call, for one SSL_write, §1.1), and returns the next step.
 * It never sees a socket, TLS, Redis or a thread: the dataplane glue
 * (dp_capf.c) carries the steps out, and the unit tests drive it directly.
 *
 *   hello ─▶ AWAIT_AUTH ─02─▶ DECIDE ─(BEGIN ok, AUTH ok)─▶ AWAIT_KEYGEN
 *     ─04─▶ SIGNING ─(signed, RECORD ok)─▶ AWAIT_STORE ─0a─▶ FINISHING ─▶ END
 *   DECIDE ─▶ AWAIT_DELETE / AWAIT_FETCH ─0e/0c─▶ FINISHING ─▶ END
 *   any refusal or violation ─▶ (FAIL recorded if the device was locked) ─▶ END 07
 *
 * The registry (ra_capf) holds the per-device lock from BEGIN to the end, so
 * every step after BEGIN ends in FINISH or FAIL (which release it); before
 * BEGIN nothing is recorded (the device is not known yet, §5.3 S1).
 * Thread: the session's polling core. No allocation, no blocking. */
#ifndef CAPF_SESS_H
#define CAPF_SESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>

#include "dataplane/capf_msg.h"
#include "dataplane/capf_spki.h"
#include "ra/ra_device.h"

/* capf_conf_t: the listener's settings (frozen at startup). */
typedef struct {
    bool hello_auth_type;      /* hello carries AUTH_TYPE=00 (§2.7.2), default on */
    bool strict_version;       /* VERSION missing/00/01 refused (§4.2), default on */
    size_t device_name_max;    /* §2.10 rule 7, default 15 */
    unsigned max_in_progress;  /* REQUEST_IN_PROGRESS messages allowed in S3 (16) */
    bool fetch_delete;         /* Troubleshoot and Delete served (§4.3.9), default on */
    bool status_reply;         /* STATUS_REQUEST gets STATUS_RESPONSE 01 (§4.3.4), default on */
} capf_conf_t;

/* capf_conf_default fills the defaults above. This function can't fail. */
void capf_conf_default(capf_conf_t *cf);

typedef enum {
    CAPF_S_AWAIT_AUTH = 0, /* S1: hello sent, waiting for AUTH_RESPONSE */
    CAPF_S_DECIDE,         /* S2: registry decision / credentials check running */
    CAPF_S_AWAIT_KEYGEN,   /* S3: KEY_GENERATE_REQUEST sent */
    CAPF_S_SIGNING,        /* S4: key check + LSC signature, then its record */
    CAPF_S_AWAIT_STORE,    /* S5: STORE_CERTIFICATE_REQUEST sent */
    CAPF_S_AWAIT_FETCH,    /* S6: FETCH_CERTIFICATE_REQUEST sent */
    CAPF_S_AWAIT_DELETE,   /* S7: DELETE_CERTIFICATE_REQUEST sent */
    CAPF_S_FINISHING,      /* the outcome is being recorded */
    CAPF_S_CLOSING,        /* S8: END_SESSION built; nothing more is read */
    CAPF_S__COUNT
} capf_state_t;

/* capf_state_str: the state's name for logs. Static; can't fail. */
const char *capf_state_str(unsigned st);

/* capf_step_t: what the caller does next. */
typedef enum {
    CAPF_STEP_WAIT = 0, /* send `out` if it holds a message, then read the next message */
    CAPF_STEP_BEGIN,    /* registry BEGIN for s->device (decide + lock), then capf_sess_begun */
    CAPF_STEP_AUTH,     /* check r->password against the device's hash on a signer,
                           then capf_sess_authed */
    CAPF_STEP_CERTAUTH, /* check the certificate proof of the AUTH_RESPONSE (still in
                           the caller's buffer) on a signer (capf_certauth), then
                           capf_sess_certauthed */
    CAPF_STEP_SIGN,     /* check r->spki against s->key and sign the LSC on a signer,
                           then capf_sess_signed */
    CAPF_STEP_RECORD,   /* registry ISSUED (the LSC persisted), then capf_sess_recorded */
    CAPF_STEP_FINISH,   /* registry FINISH r->finish, then capf_sess_closed */
    CAPF_STEP_FAIL,     /* registry FAIL / AUTH_FAILED (r->auth_failure) with r->why,
                           then capf_sess_closed */
    CAPF_STEP_END,      /* send `out` (END_SESSION) and close; nothing to record */
} capf_step_t;

/* capf_finish_t: the outcome FINISH records (ra_capf's kinds). */
typedef enum {
    CAPF_FIN_INSTALL_OK = 0,
    CAPF_FIN_INSTALL_FAILED,
    CAPF_FIN_DELETE_OK,
    CAPF_FIN_DELETE_FAILED,
    CAPF_FIN_FETCH_OK,
    CAPF_FIN_FETCH_FAILED,
    CAPF_FIN__COUNT
} capf_finish_t;

/* capf_result_t: what a step needs, filled by the engine. CBS views point
 * into the message given to capf_sess_on_msg: the caller keeps that
 * message's bytes until the step is done. */
typedef struct {
    char why[160];          /* FAIL: the status reason (CUCM wording + detail);
                               END: the cause, for the log line */
    bool auth_failure;      /* FAIL counts against the device's lockout */
    capf_finish_t finish;   /* FINISH: the outcome */
    bool has_password;      /* AUTH_RESPONSE carried PASSWORD */
    CBS password;           /* AUTH: the string sent (without its 00) */
    CBS spki;               /* SIGN: the PUBLIC_KEY value */
    CBS cert;               /* FINISH fetch-ok: the certificate DER */
    uint8_t end_reason;     /* END/closed: the REASON of the END_SESSION */
} capf_result_t;

/* capf_begin_t: the registry's decision (ra_capf BEGIN). */
typedef enum {
    CAPF_BEGIN_OK = 0,      /* device locked for this session; `dev` valid */
    CAPF_BEGIN_UNKNOWN,     /* not provisioned: END 09 */
    CAPF_BEGIN_REFUSED,     /* busy, no operation, late, locked out: END 07
                               (the registry already recorded the cause) */
    CAPF_BEGIN_UNAVAILABLE, /* Redis unreachable: END 07, nothing recorded */
} capf_begin_t;

/* capf_sess_t: one session's engine state (small: ~120 bytes; no buffers,
 * so thousands of sessions parked in S3 cost little). */
typedef struct {
    uint8_t state;          /* capf_state_t */
    uint8_t version;        /* client VERSION (2 or 3 after AUTH_RESPONSE) */
    uint8_t op;             /* ra_op_t being carried out */
    uint8_t in_progress;    /* REQUEST_IN_PROGRESS messages seen */
    bool locked;            /* BEGIN succeeded: steps end in FINISH or FAIL */
    bool success;           /* the outcome being recorded is a success */
    capf_keyspec_t key;     /* the key asked for in KEY_GENERATE_REQUEST */
    uint32_t id;            /* session id (§2.1) */
    char device[RA_DEVICE_NAME_MAX + 1]; /* "" until AUTH_RESPONSE */
} capf_sess_t;

/* capf_op_failed returns CUCM's status words for a failure of the
 * operation in progress (§5.5): "Upgrade Failed", "Delete Failed" or
 * "Troubleshoot Failed". Static storage; can't fail. */
const char *capf_op_failed(const capf_sess_t *s);

/* capf_sess_start begins session `id`: builds the hello (AUTH_REQUEST,
 * VERSION 3 [+ AUTH_TYPE 00]) into `out` and enters AWAIT_AUTH.
 * Returns CAPF_OK or CAPF_E_BUFFER (out refused the bytes). */
capf_err_t capf_sess_start(capf_sess_t *s, const capf_conf_t *cf, uint32_t id, CBB *out);

/* capf_sess_on_msg handles one parsed client message `m` (capf_msg_parse
 * succeeded on exactly its bytes). It checks the session id, the direction
 * and that the state accepts the opcode, then acts per §5.3 / §2.7.
 * A message that is not acceptable ends the session: END 07 built into `out`
 * (CAPF_STEP_END) before BEGIN, CAPF_STEP_FAIL after it.
 * Returns the next step (see capf_step_t); `r` says why and carries views. */
capf_step_t capf_sess_on_msg(capf_sess_t *s, const capf_conf_t *cf, const capf_msg_t *m, CBB *out,
                             capf_result_t *r);

/* capf_sess_bad_input ends the session after the framing layer refused the
 * bytes (capf_msg_need / capf_msg_parse error `e`: bad magic, oversize,
 * malformed). Returns CAPF_STEP_END (END 07 in `out`) before BEGIN,
 * CAPF_STEP_FAIL after it. */
capf_step_t capf_sess_bad_input(capf_sess_t *s, capf_err_t e, CBB *out, capf_result_t *r);

/* capf_sess_begun continues after the registry's decision `b`; `dev` is the
 * device record when b is CAPF_BEGIN_OK (else ignored). `r` must be the
 * result capf_sess_on_msg filled for the AUTH_RESPONSE (it carries the
 * password view), with r->why set to the registry's cause for a refusal. Resolves the key
 * order for the client's version (§5.2), checks the authentication mode and
 * either asks for CAPF_STEP_AUTH, or builds the operation's first request
 * (KEY_GENERATE / DELETE / FETCH) into `out` (CAPF_STEP_WAIT).
 * Returns CAPF_STEP_WAIT, CAPF_STEP_AUTH, CAPF_STEP_FAIL or CAPF_STEP_END. */
capf_step_t capf_sess_begun(capf_sess_t *s, const capf_conf_t *cf, capf_begin_t b, const ra_device_t *dev,
                            CBB *out, capf_result_t *r);

/* capf_sess_authed continues after the credentials check (`ok`).
 * Returns CAPF_STEP_WAIT (operation request in `out`) or CAPF_STEP_FAIL. */
capf_step_t capf_sess_authed(capf_sess_t *s, const capf_conf_t *cf, const ra_device_t *dev, bool ok, CBB *out,
                             capf_result_t *r);

/* capf_sess_certauthed continues after the certificate proof was checked:
 * `e` CAPF_OK (go on like capf_sess_authed), a CAPF_E_CERTAUTH_* fault of
 * the phone with its CUCM status `status` (FAIL, counted against the
 * device), or another code (our fault: FAIL, not counted).
 * Returns CAPF_STEP_WAIT or CAPF_STEP_FAIL. */
capf_step_t capf_sess_certauthed(capf_sess_t *s, const capf_conf_t *cf, const ra_device_t *dev, capf_err_t e,
                                 const char *status, CBB *out, capf_result_t *r);

/* capf_sess_signed continues after the signer: `e` is CAPF_OK when the key
 * passed capf_spki_check and the LSC was signed, else the key's fault; a
 * signing failure that is ours is `CAPF_E_BUFFER`.
 * Returns CAPF_STEP_RECORD or CAPF_STEP_FAIL. */
capf_step_t capf_sess_signed(capf_sess_t *s, capf_err_t e, capf_result_t *r);

/* capf_sess_recorded continues after ISSUED: `ok` when the LSC is persisted
 * (then STORE_CERTIFICATE_REQUEST with `cert_der` goes into `out`); not ok
 * (lock lost, Redis down) means the certificate must not be sent.
 * Returns CAPF_STEP_WAIT, CAPF_STEP_FAIL or CAPF_STEP_END. */
capf_step_t capf_sess_recorded(capf_sess_t *s, bool ok, bool lock_lost, CBS cert_der, CBB *out,
                               capf_result_t *r);

/* capf_sess_closed builds the END_SESSION after FINISH or FAIL was
 * recorded (or could not be: `recorded` false turns a success into 07,
 * since a success that is not persisted must not be announced, §6.4 R13).
 * Returns CAPF_STEP_END. */
capf_step_t capf_sess_closed(capf_sess_t *s, bool recorded, CBB *out, capf_result_t *r);

/* capf_sess_timeout: the state's timer expired; capf_sess_eof: the client
 * closed or reset the connection. Both return CAPF_STEP_FAIL with the
 * state's status (Key Generation Failed/Timeout in S3, Phone Communication
 * Failure in S5-S7) when the device is locked, else CAPF_STEP_END (nothing
 * to record; for a timeout END 07 is in `out`, for EOF `out` is untouched).
 * A session already recording (SIGNING, FINISHING) returns CAPF_STEP_WAIT:
 * the result still comes back and ends it. */
capf_step_t capf_sess_timeout(capf_sess_t *s, CBB *out, capf_result_t *r);
capf_step_t capf_sess_eof(capf_sess_t *s, capf_result_t *r);

#endif
