/* dp_capf: a CAPF session on its polling core: the glue between the CAPF
 * engine (capf_sess: the state machine, capf_msg: the codec), the TLS
 * session, the registry (ra_capf's script over the core's Redis connection)
 * and the signing pool (capf_sign). The engine says what to do next; this
 * file does it:
 *   reading   one message at a time, never past its end (capf_msg_need), so
 *             a message in the buffer is exactly one message; its bytes stay
 *             until the step it started is done (the engine keeps views);
 *   writing   every server message built whole and written with one
 *             SSL_write (one TLS record, §1.1); a write the socket could not
 *             take is retried with the same bytes;
 *   Redis     BEGIN / ISSUED / FINISH / FAIL / AUTH_FAILED, one EVALSHA each;
 *             the LSC goes out only after ISSUED answered OK, and success is
 *             announced only after FINISH did (§5.10);
 *   signing   the authentication-string check and the key check + LSC
 *             signature run on a signer worker; a core never signs;
 *   online    ca_mode online: the signer builds the PKCS#10 for the upstream
 *             CA instead of the LSC (capf_sign_request), SUBMIT records it
 *             pending and queues it for stampede-control, and the session
 *             parks in dp_online's wait table (no message to the phone,
 *             which waits for STORE_CERTIFICATE_REQUEST) until its record
 *             is issued (then ISSUED with the CA's certificate and STORE as
 *             in local mode), rejected, or capf_online_timeout ends (FAIL,
 *             END_SESSION 07, the operation stays: the phone retries).
 * A session waiting for the phone (S1, S3, S5-S7) holds no buffer: only its
 * TLS session and ~150 bytes of engine state. Timers per state (§5.3):
 * capf_auth_timeout, capf_keygen_timeout, capf_reply_timeout, and in
 * online mode capf_online_timeout while the session waits for the CA (it
 * keeps its buffer then: the phone's key and the request are in it).
 * Every session ends with one log line naming the peer, the device (once
 * known), the session id and the cause.
 * Thread: the owning polling core; capf_sign runs on signer workers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/sha.h>

#include "dataplane/capf_sign.h"
#include "dataplane/dp_core.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"
#include "ra/ra_capf.h"

/* dp_core.c / dp_sess.c */
void dp_timer_arm(dp_sess_t *s, dp_timer_kind_t k);
dp_buf_t *dp_buf_get(dp_core_t *c);
void dp_buf_put(dp_core_t *c, dp_buf_t *b);
dp_buf_t *dp_sess_job_buf(dp_sess_t *s);
void dp_sess_close(dp_sess_t *s, bool notify);
void dp_sess_linger(dp_sess_t *s);
bool dp_sess_returned(dp_sess_t *s);
void dp_sess_redrive(dp_sess_t *s);

/* Layout of a CAPF session's buffer: the message being read, the server
 * message being written, then the LSC the signer writes. In online mode
 * the last region first holds the PKCS#10 the signer builds (hiredis copies
 * it when SUBMIT is queued), then the upstream CA's certificate. */
#define CAPF_IN_CAP (CAPF_HEADER_LEN + 16384)
#define CAPF_OUT_OFF CAPF_IN_CAP
#define CAPF_CERT_OFF (CAPF_OUT_OFF + CAPF_SERVER_MSG_MAX)
#define CAPF_CERT_CAP 8192

/* dp_capf_buf_need: the buffer capacity this layout needs (dp_core.c). */
size_t dp_capf_buf_need(void) { return CAPF_CERT_OFF + CAPF_CERT_CAP; }

static bool capf_run(dp_sess_t *s, capf_step_t step);
static void capf_go(dp_sess_t *s, capf_step_t step);
static bool capf_submit_upstream(dp_sess_t *s);
static void capf_on_recorded(dp_redis_req_t *req, redisReply *reply);
void dp_capf_defer_fail(dp_core_t *c, const char *device, uint32_t id, const char *why);

/* ---- small helpers ---- */

static capf_sess_t *eng(dp_sess_t *s) { return &s->capf; }
static const capf_conf_t *conf(dp_sess_t *s) { return &s->core->rt->capf; }

/* capf_token writes the owner token of session `id` (the device lock's
 * value): INSTANCE:BOOT:ID. */
static void capf_token(const dp_core_t *c, uint32_t id, char *out, size_t cap) {
    snprintf(out, cap, "%s:%08x", c->rt->capf_node, id);
}

/* capf_out opens the CBB where the engine writes the next server message. */
static CBB *capf_out(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    if (b->capf.out_live) CBB_cleanup(&b->capf.out); /* an earlier step built nothing */
    b->capf.out_live = CBB_init_fixed(&b->capf.out, b->data + CAPF_OUT_OFF, CAPF_SERVER_MSG_MAX) == 1;
    return &b->capf.out;
}

/* capf_out_len finishes the message the engine built: its length, or 0. */
static size_t capf_out_len(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    size_t n = 0;
    uint8_t *p;
    if (!b->capf.out_live) return 0;
    b->capf.out_live = false;
    if (!CBB_finish(&b->capf.out, &p, &n)) {
        CBB_cleanup(&b->capf.out);
        n = 0;
    }
    return n;
}

/* dp_capf_buf_put runs whenever a buffer goes back to the pool: it ends a
 * message being built and wipes the client messages it held (an
 * authentication string may be among them). */
void dp_capf_buf_put(dp_buf_t *b) {
    if (b->capf.out_live) CBB_cleanup(&b->capf.out);
    b->capf.out_live = false;
    if (b->capf.in_used) OPENSSL_cleanse(b->data, b->capf.in_used);
    b->capf.in_used = 0;
}

static const char *capf_dev_name(const dp_sess_t *s) { return s->capf.device[0] ? s->capf.device : "-"; }

/* capf_log writes the session's one outcome line. */
static void capf_log(dp_sess_t *s, bool info, const char *what) {
    if (info)
        DP_INFO("CAPF peer=%s device=%s session=%08x: %s", s->peer, capf_dev_name(s), s->capf.id, what);
    else
        DP_DEBUG("CAPF peer=%s device=%s session=%08x: %s", s->peer, capf_dev_name(s), s->capf.id, what);
}

/* capf_park counts the session in the core's key-generation budget while
 * it is in S3 (capf_max_keygen). */
static void capf_park(dp_sess_t *s, bool parked) {
    if (s->capf_parked == parked) return;
    s->capf_parked = parked;
    if (parked) s->core->capf_parked++;
    else s->core->capf_parked--;
}

void dp_capf_unpark(dp_sess_t *s) { capf_park(s, false); }

/* capf_timer arms the timer of the engine's waiting state. */
static void capf_timer(dp_sess_t *s) {
    capf_park(s, s->capf.state == CAPF_S_AWAIT_KEYGEN);
    switch (s->capf.state) {
    case CAPF_S_AWAIT_AUTH: dp_timer_arm(s, DP_T_CAPF_AUTH); break;
    case CAPF_S_AWAIT_KEYGEN: dp_timer_arm(s, DP_T_CAPF_KEYGEN); break;
    case CAPF_S_AWAIT_STORE:
    case CAPF_S_AWAIT_FETCH:
    case CAPF_S_AWAIT_DELETE: dp_timer_arm(s, DP_T_CAPF_REPLY); break;
    default: dp_timer_arm(s, DP_T_NONE); break;
    }
}

/* capf_drop_buf gives the buffer back while the session waits for the
 * phone with nothing read (the common case in S3: minutes of key
 * generation cost no buffer); dp_capf_buf_put wipes what it held. */
static void capf_drop_buf(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    /* Only while waiting for AUTH_RESPONSE or the key: later states keep
     * what the next step needs (the LSC's record for FINISH). */
    if (!b || b->len || (s->capf.state != CAPF_S_AWAIT_AUTH && s->capf.state != CAPF_S_AWAIT_KEYGEN)) return;
    dp_buf_put(s->core, b);
    s->buf = NULL;
}

/* capf_buf gives the session a buffer; one taken afresh starts with an
 * empty result (no stale flags from its previous user). NULL if the core
 * has none left. */
static dp_buf_t *capf_buf(dp_sess_t *s) {
    bool fresh = !s->buf;
    dp_buf_t *b = dp_sess_job_buf(s);
    if (b && fresh) {
        memset(&b->capf.r, 0, sizeof(b->capf.r));
        b->len = 0;
    }
    return b;
}

/* capf_buf_or_shed gives the session a buffer, or sheds the session when
 * the core has none left (queue_bound reached). */
static dp_buf_t *capf_buf_or_shed(dp_sess_t *s) {
    dp_buf_t *b = capf_buf(s);
    if (b) return b;
    capf_log(s, true, "no buffer left (queue_bound reached); closing");
    s->core->stats.shed++;
    dp_sess_close(s, false);
    return NULL;
}

/* ---- writing ---- */

/* capf_write writes the prepared message (resp_off/resp_len) with one
 * SSL_write. Returns true once it is out; false if it waits for the socket
 * (state DP_S_WRITE) or the session closed. */
static bool capf_write(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    s->want_write = false;
    int r = SSL_write(s->ssl, b->data + b->resp_off, (int)b->resp_len);
    if (r > 0) {
        b->resp_len = 0;
        return true;
    }
    int err = SSL_get_error(s->ssl, r);
    if (err == SSL_ERROR_WANT_WRITE) {
        s->state = DP_S_WRITE;
        dp_timer_arm(s, DP_T_WRITE);
        return false;
    }
    ERR_clear_error();
    capf_log(s, true, "write failed; closing");
    dp_sess_close(s, false);
    return false;
}

/* capf_after_write continues once a message is out: read on, or close
 * after END_SESSION (close_notify, then linger). */
static bool capf_after_write(dp_sess_t *s) {
    if (s->capf.state == CAPF_S_CLOSING) {
        dp_sess_linger(s);
        return false;
    }
    s->state = DP_S_READ;
    capf_timer(s);
    capf_drop_buf(s);
    return true;
}

/* capf_send prepares the message the engine just built (if any): the
 * session's drive writes it (DP_S_WRITE), inside the core's output
 * coalescing. Returns true when the drive should go on. */
static bool capf_send(dp_sess_t *s) {
    size_t n = capf_out_len(s);
    if (!n) return capf_after_write(s);
    s->buf->resp_off = CAPF_OUT_OFF;
    s->buf->resp_len = n;
    s->state = DP_S_WRITE;
    dp_timer_arm(s, DP_T_WRITE);
    return true;
}

/* dp_capf_write is the drive's DP_S_WRITE for CAPF sessions. */
bool dp_capf_write(dp_sess_t *s) {
    if (!capf_write(s)) return false;
    return capf_after_write(s);
}

/* ---- Redis steps ---- */

/* A reply for a session that closed meanwhile: the session is freed by
 * dp_sess_returned; a lock it may hold is released with a FAIL that nobody
 * waits for (the phone is gone: Phone Communication Failure). */
static void capf_orphan_done(dp_redis_req_t *req, redisReply *reply) {
    (void)req, (void)reply;
}

static void capf_orphan_fail(dp_core_t *c, const char *device, uint32_t id, const char *reason) {
    if (!device[0]) return;
    if (!dp_redis_usable(&c->redis)) { /* sent when Redis is back (dp_capf_service) */
        dp_capf_defer_fail(c, device, id, reason);
        return;
    }
    ra_capf_cmd_t cmd;
    char token[RA_CAPF_TOKEN_MAX + 1];
    capf_token(c, id, token, sizeof(token));
    if (ra_capf_fail_cmd(&cmd, c->rt->capf_sha, device, token, (int64_t)time(NULL), "", reason) != RA_OK) return;
    c->capf_orphan.done = capf_orphan_done;
    dp_redis_command(&c->redis, &c->capf_orphan, cmd.argc, cmd.argv, cmd.argvlen);
}

/* capf_returned: the Redis reply or the job of `b` came back. False if the
 * session had closed (then it is freed, and its lock released). */
static bool capf_returned(dp_sess_t *s, bool lock_may_be_held) {
    if (s->state != DP_S_CLOSED) return true;
    if (lock_may_be_held)
        capf_orphan_fail(s->core, s->capf.device, s->capf.id,
                         "Upgrade Failed: Phone Communication Failure (connection lost)");
    dp_sess_returned(s);
    return false;
}

/* capf_command queues `cmd`; the session then waits in DP_S_RA. False if
 * it could not be queued (nothing in flight, state unchanged). */
static bool capf_command(dp_sess_t *s, ra_capf_cmd_t *cmd, void (*done)(dp_redis_req_t *, redisReply *)) {
    dp_buf_t *b = s->buf;
    b->rreq.done = done;
    if (!dp_redis_command(&s->core->redis, &b->rreq, cmd->argc, cmd->argv, cmd->argvlen)) return false;
    s->state = DP_S_RA; /* hiredis never calls back from inside the command */
    dp_timer_arm(s, DP_T_NONE);
    return true;
}

static void capf_on_begin(dp_redis_req_t *req, redisReply *reply) {
    dp_buf_t *b = caa_container_of(req, dp_buf_t, rreq);
    dp_sess_t *s = b->sess;
    ra_capf_result_t res;
    char why[200];
    ra_err_t e = ra_capf_parse_begin(reply, s->capf.device, &res, &b->capf.dev, why, sizeof(why));
    bool locked = e == RA_OK ? res.outcome == RA_CAPF_OK : e == RA_E_BAD_RECORD;
    if (!capf_returned(s, locked)) return;
    capf_result_t *r = &b->capf.r;
    capf_begin_t verdict = CAPF_BEGIN_OK;
    if (e == RA_E_BAD_RECORD) { /* locked, but unreadable: record the cause and refuse */
        s->capf.locked = true;
        snprintf(r->why, sizeof(r->why), "refused: device record unreadable (%.100s)", why);
        s->capf.state = CAPF_S_FINISHING;
        capf_go(s, CAPF_STEP_FAIL);
        return;
    }
    if (e != RA_OK) {
        DP_WARN("CAPF peer=%s device=%s: registry BEGIN failed: %s", s->peer, s->capf.device, why);
        verdict = CAPF_BEGIN_UNAVAILABLE;
    } else if (res.outcome == RA_CAPF_UNKNOWN) {
        verdict = CAPF_BEGIN_UNKNOWN;
    } else if (res.outcome != RA_CAPF_OK) {
        verdict = CAPF_BEGIN_REFUSED;
        snprintf(r->why, sizeof(r->why), "refused (%s): %.120s", ra_capf_outcome_str(res.outcome),
                 res.reason[0] ? res.reason : ra_capf_outcome_str(res.outcome));
    }
    capf_go(s, capf_sess_begun(eng(s), conf(s), verdict, &b->capf.dev, capf_out(s), r));
}

static bool capf_begin(dp_sess_t *s) {
    dp_core_t *c = s->core;
    const dp_config_t *cfg = &c->rt->cfg;
    ra_capf_cmd_t cmd;
    char token[RA_CAPF_TOKEN_MAX + 1];
    capf_token(c, s->capf.id, token, sizeof(token));
    /* the lock covers the longest session: key generation, then the store
     * answer; a crashed daemon's locks are released at its next start */
    int64_t ttl_ms = ((int64_t)cfg->capf_keygen_timeout + cfg->capf_reply_timeout + 60) * 1000;
    if (!dp_redis_usable(&c->redis) ||
        ra_capf_begin_cmd(&cmd, c->rt->capf_sha, s->capf.device, token, (int64_t)time(NULL), s->peer, ttl_ms) !=
            RA_OK ||
        !capf_command(s, &cmd, capf_on_begin))
        return capf_run(s, capf_sess_begun(eng(s), conf(s), CAPF_BEGIN_UNAVAILABLE, NULL, capf_out(s), &s->buf->capf.r));
    return false;
}

static void capf_on_recorded(dp_redis_req_t *req, redisReply *reply) {
    dp_buf_t *b = caa_container_of(req, dp_buf_t, rreq);
    dp_sess_t *s = b->sess;
    ra_capf_result_t res;
    char why[200];
    ra_err_t e = ra_capf_parse(reply, &res, why, sizeof(why));
    if (!capf_returned(s, true)) return;
    bool ok = e == RA_OK && res.outcome == RA_CAPF_OK;
    bool lost = e == RA_OK && res.outcome == RA_CAPF_LOST_LOCK;
    if (e != RA_OK) DP_WARN("CAPF peer=%s device=%s: LSC not recorded: %s", s->peer, s->capf.device, why);
    if (!ok && !lost && e == RA_OK) { /* key of another device, device gone, operation withdrawn */
        snprintf(b->capf.r.why, sizeof(b->capf.r.why), "Upgrade Failed: %.120s", res.reason);
        s->capf.state = CAPF_S_FINISHING;
        capf_go(s, CAPF_STEP_FAIL); /* records the cause and releases the lock; nothing was sent */
        return;
    }
    CBS cert;
    CBS_init(&cert, b->data + CAPF_CERT_OFF, b->capf.job.cert_len);
    capf_go(s, capf_sess_recorded(eng(s), ok, lost, cert, capf_out(s), &b->capf.r));
}

static bool capf_record(dp_sess_t *s) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    if (c->online.on) return capf_submit_upstream(s); /* the upstream CA signs */
    capf_job_t *j = &b->capf.job;
    ra_capf_cmd_t cmd;
    char token[RA_CAPF_TOKEN_MAX + 1], serial[2 * CX_SERIAL_LEN + 1];
    ra_hex(serial, j->serial, CX_SERIAL_LEN); /* the first byte is never 0: no leading zeros */
    capf_token(c, s->capf.id, token, sizeof(token));
    bool ok = dp_redis_usable(&c->redis) &&
              ra_capf_lsc_init(&b->capf.lsc, CBS_data(&b->capf.r.spki), CBS_len(&b->capf.r.spki),
                               b->data + CAPF_CERT_OFF, j->cert_len, serial, j->not_after) == RA_OK;
    if (ok) { /* the key's owner is checked and recorded with the LSC */
        b->capf.lsc.has_key_hash = true;
        memcpy(b->capf.lsc.key_hash, j->key_hash, sizeof(j->key_hash));
        ok = ra_capf_issued_cmd(&cmd, c->rt->capf_sha, s->capf.device, token, (int64_t)time(NULL), s->peer,
                                &b->capf.lsc) == RA_OK &&
             capf_command(s, &cmd, capf_on_recorded);
    }
    if (!ok) {
        CBS none;
        CBS_init(&none, NULL, 0);
        return capf_run(s, capf_sess_recorded(eng(s), false, false, none, capf_out(s), &b->capf.r));
    }
    return false;
}

static void capf_on_closed(dp_redis_req_t *req, redisReply *reply) {
    dp_buf_t *b = caa_container_of(req, dp_buf_t, rreq);
    dp_sess_t *s = b->sess;
    ra_capf_result_t res;
    char why[200];
    ra_err_t e = ra_capf_parse(reply, &res, why, sizeof(why));
    if (!capf_returned(s, e != RA_OK)) return;
    bool recorded = e == RA_OK && res.outcome == RA_CAPF_OK;
    if (e != RA_OK) DP_WARN("CAPF peer=%s device=%s: outcome not recorded: %s", s->peer, s->capf.device, why);
    else if (!recorded)
        DP_WARN("CAPF peer=%s device=%s: outcome not recorded: %s%s%s", s->peer, s->capf.device,
                ra_capf_outcome_str(res.outcome), res.reason[0] ? ": " : "", res.reason);
    if (e == RA_OK && res.auth_lock_until > 0)
        DP_INFO("CAPF device=%s: %lld failed authentications: locked out for %u s", s->capf.device,
                (long long)res.auth_failures, s->core->rt->cfg.capf_lockout_s);
    capf_go(s, capf_sess_closed(eng(s), recorded, capf_out(s), &b->capf.r));
}

/* capf_close_record sends FINISH (outcome `r->finish`) or FAIL. */
static bool capf_close_record(dp_sess_t *s, bool finish) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    capf_result_t *r = &b->capf.r;
    const dp_config_t *cfg = &c->rt->cfg;
    ra_capf_cmd_t cmd;
    char token[RA_CAPF_TOKEN_MAX + 1];
    capf_token(c, s->capf.id, token, sizeof(token));
    int64_t now = (int64_t)time(NULL);
    ra_err_t e;
    if (finish) {
        static const ra_capf_kind_t kinds[CAPF_FIN__COUNT] = {
            [CAPF_FIN_INSTALL_OK] = RA_CAPF_INSTALL_OK,   [CAPF_FIN_INSTALL_FAILED] = RA_CAPF_INSTALL_FAILED,
            [CAPF_FIN_DELETE_OK] = RA_CAPF_DELETE_OK,     [CAPF_FIN_DELETE_FAILED] = RA_CAPF_DELETE_FAILED,
            [CAPF_FIN_FETCH_OK] = RA_CAPF_FETCH_OK,       [CAPF_FIN_FETCH_FAILED] = RA_CAPF_FETCH_FAILED};
        ra_capf_finish_t f = {.kind = kinds[r->finish], .lsc = &b->capf.lsc, .cert_der = CBS_data(&r->cert),
                              .cert_len = CBS_len(&r->cert)};
        e = ra_capf_finish_cmd(&cmd, c->rt->capf_sha, s->capf.device, token, now, s->peer, &f);
    } else if (r->auth_failure) {
        e = ra_capf_auth_failed_cmd(&cmd, c->rt->capf_sha, s->capf.device, token, now, s->peer, r->why,
                                    cfg->capf_max_auth_failures, cfg->capf_lockout_s);
    } else {
        e = ra_capf_fail_cmd(&cmd, c->rt->capf_sha, s->capf.device, token, now, s->peer, r->why);
    }
    if (e != RA_OK || !dp_redis_usable(&c->redis) || !capf_command(s, &cmd, capf_on_closed)) {
        /* the device stays locked until Redis takes the FAIL: queue it */
        if (s->capf.locked) {
            char why[160];
            snprintf(why, sizeof(why), "%s: the outcome could not be recorded (registry unavailable)",
                     capf_op_failed(&s->capf));
            dp_capf_defer_fail(c, s->capf.device, s->capf.id, finish || !r->why[0] ? why : r->why);
        }
        return capf_run(s, capf_sess_closed(eng(s), false, capf_out(s), r));
    }
    return false;
}

/* ---- signing pool ---- */

static bool capf_submit(dp_sess_t *s, int kind) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    b->job.kind = kind;
    b->sess = s;
    s->state = DP_S_JOB;
    dp_timer_arm(s, DP_T_NONE);
    return cx_pool_submit(c->rt->pool, c->id, &b->job, false) == CX_OK;
}

void dp_capf_job_run(dp_buf_t *b, unsigned worker) {
    (void)worker;
    dp_runtime_t *rt = b->sess->core->rt;
    capf_job_t *j = &b->capf.job;
    if (b->job.kind == DP_JOB_CAPF_AUTH) {
        capf_sign_auth(j);
    } else if (b->job.kind == DP_JOB_CAPF_CERTAUTH) {
        capf_certauth_ctx_t ctx = rt->capf_certauth;
        ctx.now = (int64_t)time(NULL);
        capf_sign_certauth(j, &ctx);
    } else if (b->job.kind == DP_JOB_CAPF_REQUEST) { /* online: signed by the CAPF (CA) key */
        capf_sign_request(j, &rt->capf_spki, &rt->est.issuer, &rt->capf_lsc);
    } else {
        capf_sign_lsc(j, &rt->capf_spki, &rt->est.issuer, &rt->capf_lsc, (int64_t)time(NULL));
    }
}

/* capf_current_lsc: the LSC of hash `sha256` is the device's current one
 * (or the registry has none on record, e.g. a device imported with an LSC
 * issued elsewhere: then any valid LSC of the device will do). */
static bool capf_current_lsc(const ra_device_t *dev, const uint8_t sha256[32]) {
    char h[65];
    if (!dev->lsc_sha256[0]) return true;
    ra_hex(h, sha256, 32);
    return strcasecmp(h, dev->lsc_sha256) == 0;
}

void dp_capf_job_done(dp_sess_t *s, dp_buf_t *b) {
    if (!capf_returned(s, true)) return;
    capf_job_t *j = &b->capf.job;
    if (b->job.kind == DP_JOB_CAPF_AUTH) {
        capf_go(s, capf_sess_authed(eng(s), conf(s), &b->capf.dev, j->auth_ok, capf_out(s), &b->capf.r));
        return;
    }
    if (b->job.kind == DP_JOB_CAPF_CERTAUTH) {
        const char *status = capf_certauth_status(j->cert_err, j->cert_used);
        if (j->cert_err == CAPF_OK && j->pid[0] && !b->capf.dev.pid[0]) { /* the MIC's model and serial */
            snprintf(b->capf.dev.pid, sizeof(b->capf.dev.pid), "%s", j->pid);
            snprintf(b->capf.dev.sn, sizeof(b->capf.dev.sn), "%s", j->sn);
        }
        capf_err_t err = j->cert_err;
        if (err == CAPF_OK && j->cert_used == CAPF_CERT_LSC && !capf_current_lsc(&b->capf.dev, j->cert_sha256)) {
            /* a valid LSC, but not the one on record: superseded, or kept from an earlier rollout */
            err = CAPF_E_CERTAUTH_UNTRUSTED;
            status = "Invalid LSC: not the device's current LSC";
            snprintf(j->cert_why, sizeof(j->cert_why), "the LSC sent is not the one recorded for the device (%.70s)",
                     b->capf.dev.lsc_serial[0] ? b->capf.dev.lsc_serial : "none");
        }
        if (err != CAPF_OK) /* the detail (which certificate, which check) goes to the log */
            DP_INFO("CAPF peer=%s device=%s session=%08x: certificate proof refused: %s", s->peer, s->capf.device,
                    s->capf.id, j->cert_why[0] ? j->cert_why : capf_err_str(err));
        capf_go(s, capf_sess_certauthed(eng(s), conf(s), &b->capf.dev, err, status, capf_out(s), &b->capf.r));
        return;
    }
    if (j->err == CAPF_E_BUFFER)
        DP_WARN("CAPF peer=%s device=%s: %s failed: %s", s->peer, s->capf.device,
                b->job.kind == DP_JOB_CAPF_REQUEST ? "building the request for the online CA" : "LSC signing",
                cx_err_str(j->cx_err));
    if (b->job.kind == DP_JOB_CAPF_REQUEST && j->err == CAPF_E_BUFFER) {
        snprintf(b->capf.r.why, sizeof(b->capf.r.why), "Upgrade Failed: the request for the online CA could not be built");
        s->capf.state = CAPF_S_FINISHING;
        s->capf.success = false;
        capf_go(s, CAPF_STEP_FAIL);
        return;
    }
    capf_go(s, capf_sess_signed(eng(s), j->err, &b->capf.r));
}

/* capf_job_new clears the session's job and names its device. */
static capf_job_t *capf_job_new(dp_sess_t *s) {
    capf_job_t *j = &s->buf->capf.job;
    memset(j, 0, sizeof(*j));
    snprintf(j->device, sizeof(j->device), "%s", s->capf.device);
    return j;
}

/* capf_job hands the prepared job to the signing pool. A saturated pool
 * sheds the session: the refusal is recorded (FAIL) and it ends with 07.
 * Returns what capf_run returns. */
static bool capf_job(dp_sess_t *s, int kind) {
    if (capf_submit(s, kind)) return false;
    snprintf(s->buf->capf.r.why, sizeof(s->buf->capf.r.why), "%s: server busy (signing queue full)",
             capf_op_failed(&s->capf));
    s->capf.state = CAPF_S_FINISHING;
    return capf_run(s, CAPF_STEP_FAIL);
}

static bool capf_auth(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    capf_job_t *j = capf_job_new(s);
    j->password = b->capf.r.password;
    snprintf(j->auth_hash, sizeof(j->auth_hash), "%s", b->capf.dev.auth_hash);
    return capf_job(s, DP_JOB_CAPF_AUTH);
}

static bool capf_certauth(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    capf_job_t *j = capf_job_new(s);
    j->msg = b->data; /* the AUTH_RESPONSE stays in the buffer until the step ends */
    j->msg_len = b->len;
    j->session_id = s->capf.id;
    j->prefer_mic = b->capf.dev.auth == RA_AUTH_MIC;
    return capf_job(s, DP_JOB_CAPF_CERTAUTH);
}

static bool capf_sign(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    capf_job_t *j = capf_job_new(s);
    snprintf(j->pid, sizeof(j->pid), "%s", b->capf.dev.pid); /* BEGIN's record is still in the buffer */
    snprintf(j->sn, sizeof(j->sn), "%s", b->capf.dev.sn);
    j->key = s->capf.key;
    j->spki = b->capf.r.spki;
    j->cert = b->data + CAPF_CERT_OFF;
    j->cert_cap = CAPF_CERT_CAP;
    return capf_job(s, s->core->online.on ? DP_JOB_CAPF_REQUEST : DP_JOB_CAPF_SIGN);
}

/* ---- the step loop ---- */

/* capf_run carries out `step`. Returns true when the session's drive
 * should go on at once (a message to write, or reading on); callers inside
 * the drive return it, callers outside (job and Redis completions, timers)
 * use capf_go. */
static bool capf_run(dp_sess_t *s, capf_step_t step) {
    capf_result_t *r = &s->buf->capf.r;
    switch (step) {
    case CAPF_STEP_WAIT:
        s->buf->len = 0; /* the message is done with */
        return capf_send(s);
    case CAPF_STEP_BEGIN: return capf_begin(s);
    case CAPF_STEP_AUTH: return capf_auth(s);
    case CAPF_STEP_CERTAUTH: return capf_certauth(s);
    case CAPF_STEP_SIGN: return capf_sign(s);
    case CAPF_STEP_RECORD: return capf_record(s);
    case CAPF_STEP_FINISH: return capf_close_record(s, true);
    case CAPF_STEP_FAIL: return capf_close_record(s, false);
    case CAPF_STEP_END: break;
    }
    char line[240];
    if (s->capf_eof) { /* the phone is gone: nothing to send; one line for the session */
        snprintf(line, sizeof(line), "connection lost: %s", r->why[0] ? r->why : "closed by the phone");
        s->core->stats.denied++;
        capf_log(s, true, line);
        s->buf->len = 0;
        if (!s->capf_in_close) { /* else the close in progress (dp_capf_lost) finishes it */
            s->state = DP_S_READ; /* nothing in flight any more: the close frees the session */
            dp_sess_close(s, false);
        }
        return false;
    }
    if (r->end_reason == CAPF_REASON_UPDATE_CERTIFICATE) {
        s->core->stats.enrolled++;
        snprintf(line, sizeof(line), "%s",
                 s->capf.op == RA_OP_DELETE        ? "LSC deleted (Delete Success)"
                 : s->capf.op == RA_OP_TROUBLESHOOT ? "certificate fetched (Troubleshoot Success)"
                                                    : "LSC installed (Upgrade Success)");
        if (s->capf.op == RA_OP_INSTALL)
            snprintf(line + strlen(line), sizeof(line) - strlen(line), " serial=%s", s->buf->capf.lsc.serial);
    } else {
        s->core->stats.denied++;
        snprintf(line, sizeof(line), "END_SESSION reason %u: %s", r->end_reason, r->why[0] ? r->why : "refused");
    }
    capf_log(s, true, line);
    s->buf->len = 0;
    return capf_send(s); /* END_SESSION, then close_notify and linger */
}

/* capf_go runs `step` from outside the session's drive. */
static void capf_go(dp_sess_t *s, capf_step_t step) {
    if (capf_run(s, step)) dp_sess_redrive(s);
}

/* ---- reading ---- */

/* capf_message handles the complete message of `len` bytes at the start of
 * the buffer. */
static bool capf_message(dp_sess_t *s, size_t len) {
    dp_buf_t *b = s->buf;
    capf_result_t *r = &b->capf.r;
    capf_msg_t m;
    capf_err_t e = capf_msg_parse(&m, b->data, len);
    if (e != CAPF_OK) return capf_run(s, capf_sess_bad_input(eng(s), e, capf_out(s), r));
    if (m.num_unknown)
        DP_DEBUG("CAPF peer=%s session=%08x: %s with %u unknown element(s) (first tag %02x), ignored", s->peer,
                 s->capf.id, capf_op_str(m.op), m.num_unknown, m.first_unknown);
    if (s->capf.state == CAPF_S_AWAIT_AUTH) memset(r, 0, sizeof(*r)); /* a new decision starts */
    return capf_run(s, capf_sess_on_msg(eng(s), conf(s), &m, capf_out(s), r));
}

bool dp_capf_read(dp_sess_t *s) {
    dp_buf_t *b = capf_buf_or_shed(s);
    if (!b) return false;
    for (;;) {
        size_t need = CAPF_HEADER_LEN;
        capf_err_t e = capf_msg_need(b->data, b->len, &need);
        if (e == CAPF_OK) return capf_message(s, need);
        if (e != CAPF_PARTIAL) return capf_run(s, capf_sess_bad_input(eng(s), e, capf_out(s), &b->capf.r));
        /* read no further than this message: what follows stays in TLS */
        int n = SSL_read(s->ssl, b->data + b->len, (int)(need - b->len));
        if (n > 0) {
            b->len += (size_t)n;
            if (b->len > b->capf.in_used) b->capf.in_used = b->len;
            continue;
        }
        int err = SSL_get_error(s->ssl, n);
        if (err == SSL_ERROR_WANT_READ) {
            capf_drop_buf(s);
            return false;
        }
        ERR_clear_error();
        /* the phone closed or reset: record what that means in this state */
        capf_step_t step = capf_sess_eof(eng(s), &b->capf.r);
        if (step == CAPF_STEP_FAIL) { /* logged once, when the FAIL is recorded */
            s->capf_eof = true;
            capf_close_record(s, false);
            return false;
        }
        if (b->len || s->capf.state != CAPF_S_AWAIT_AUTH) capf_log(s, true, "connection closed by the peer");
        else capf_log(s, false, "connection closed before AUTH_RESPONSE");
        dp_sess_close(s, false);
        return false;
    }
}

/* ---- session events ---- */

bool dp_capf_started(dp_sess_t *s) {
    dp_core_t *c = s->core;
    if (!capf_buf_or_shed(s)) return false;
    uint32_t id = c->rt->capf_id_base + c->id + c->capf_seq++ * c->rt->num_cores;
    if (capf_sess_start(eng(s), conf(s), id, capf_out(s)) != CAPF_OK) {
        dp_sess_close(s, false);
        return false;
    }
    s->buf->len = 0;
    return capf_send(s);
}

void dp_capf_timeout(dp_sess_t *s) {
    if (!capf_buf(s)) {
        dp_sess_close(s, false);
        return;
    }
    capf_result_t *r = &s->buf->capf.r;
    capf_step_t step = capf_sess_timeout(eng(s), capf_out(s), r);
    if (step == CAPF_STEP_WAIT) return; /* a result is on its way */
    capf_go(s, step);
}

static capf_step_t capf_online_lost(dp_sess_t *s);

bool dp_capf_lost(dp_sess_t *s) {
    /* The transport failed under a session that holds the device: record
     * the loss (FAIL releases the lock), then let the close go on. */
    if (!s->capf.locked || s->state == DP_S_JOB || s->state == DP_S_RA || s->state == DP_S_CLOSED) return false;
    if (!capf_buf(s)) return false;
    capf_step_t step = s->state == DP_S_ONLINE ? capf_online_lost(s) : capf_sess_eof(eng(s), &s->buf->capf.r);
    if (step != CAPF_STEP_FAIL) return false;
    s->capf_eof = true;
    s->capf_in_close = true; /* the close in progress frees the session, not capf_run */
    capf_close_record(s, false);
    s->capf_in_close = false;
    return s->state == DP_S_RA;
}

/* ---- online CA mode (docs/redis-schema.md "Online CA mode") ---- */

/* capf_more continues the drive of `s` if a step asked for it (what
 * capf_go does for a step, for callers that already ran theirs). */
static void capf_more(dp_sess_t *s, bool more) {
    if (more) dp_sess_redrive(s);
}

/* capf_online_log writes one line of the online wait: peer, device,
 * session and request id, then `fmt`. */
static void capf_online_log(dp_sess_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void capf_online_log(dp_sess_t *s, const char *fmt, ...) {
    char what[260];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    DP_INFO("CAPF peer=%s device=%s session=%08x request=%s: %s", s->peer, capf_dev_name(s), s->capf.id,
            s->buf && s->buf->online.id[0] ? s->buf->online.id : "-", what);
}

/* capf_online_end records FAIL with the status `why` (the device keeps its
 * operation: the phone retries), then END_SESSION 07. Returns what
 * capf_run returns. */
static bool capf_online_end(dp_sess_t *s, const char *why) {
    snprintf(s->buf->capf.r.why, sizeof(s->buf->capf.r.why), "%s", why);
    s->capf.state = CAPF_S_FINISHING;
    s->capf.success = false;
    return capf_run(s, CAPF_STEP_FAIL);
}

/* capf_spki_alg_key splits a SubjectPublicKeyInfo into its algorithm OID
 * and its subjectPublicKey bits. */
static bool capf_spki_alg_key(const CBS *spki, CBS *oid, CBS *bits) {
    CBS in = *spki, seq, alg;
    return CBS_get_asn1(&in, &seq, CBS_ASN1_SEQUENCE) && CBS_get_asn1(&seq, &alg, CBS_ASN1_SEQUENCE) &&
           CBS_get_asn1(&alg, oid, CBS_ASN1_OBJECT) && CBS_get_asn1(&seq, bits, CBS_ASN1_BITSTRING);
}

/* capf_same_key: the certificate's key `cert_spki` is the phone's `spki`
 * (the same bytes, or the same algorithm and key bits under an encoding of
 * the parameters the CA chose). */
static bool capf_same_key(const CBS *cert_spki, const CBS *spki) {
    CBS o1, k1, o2, k2;
    if (CBS_mem_equal(cert_spki, CBS_data(spki), CBS_len(spki))) return true;
    return capf_spki_alg_key(cert_spki, &o1, &k1) && capf_spki_alg_key(spki, &o2, &k2) &&
           CBS_mem_equal(&o1, CBS_data(&o2), CBS_len(&o2)) && CBS_mem_equal(&k1, CBS_data(&k2), CBS_len(&k2));
}

/* capf_serial_same compares two hex serials without case or leading zeros. */
static bool capf_serial_same(const char *a, const char *b) {
    while (a[0] == '0' && a[1]) a++;
    while (b[0] == '0' && b[1]) b++;
    return strcasecmp(a, b) == 0;
}

/* capf_online_unusable ends a session whose certificate from the upstream
 * CA cannot be sent (`what`: why). */
static bool capf_online_unusable(dp_sess_t *s, const char *what) {
    char why[160];
    capf_online_log(s, "the online CA's certificate cannot be sent: %s", what);
    snprintf(why, sizeof(why), "Upgrade Failed: the online CA's certificate is unusable (%s)", what);
    return capf_online_end(s, why);
}

/* capf_online_issued continues with the certificate `der` (`len` bytes)
 * the upstream CA issued for the session's request (record serial
 * `rec_serial`, for a cross-check): it is copied into the buffer, checked
 * (a certificate for the phone's key), its serial, notAfter and
 * fingerprints are taken (on the core: one small certificate), then ISSUED
 * records it on the device (online: the record is stampede-control's, no
 * second `issue` audit) and STORE_CERTIFICATE_REQUEST follows as in local
 * mode. Returns what capf_run returns. */
static bool capf_online_issued(dp_sess_t *s, const uint8_t *der, size_t len, const char *rec_serial) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    capf_job_t *j = &b->capf.job;
    uint8_t *cert = b->data + CAPF_CERT_OFF;
    CBS spki, serial;
    int64_t not_after;
    char hex[RA_CAPF_SERIAL_MAX + 1], what[80];
    dp_timer_arm(s, DP_T_NONE);
    if (len > CAPF_CERT_CAP) {
        snprintf(what, sizeof(what), "%zu bytes, more than %d", len, CAPF_CERT_CAP);
        return capf_online_unusable(s, what);
    }
    memcpy(cert, der, len);
    j->cert_len = len;
    if (cx_cert_parse_basic(cert, len, NULL, &spki, &serial, &not_after) != CX_OK)
        return capf_online_unusable(s, "not a certificate");
    if (!capf_same_key(&spki, &b->capf.r.spki)) return capf_online_unusable(s, "issued for another public key");
    if (CBS_len(&serial) == 0 || (CBS_data(&serial)[0] & 0x80)) return capf_online_unusable(s, "negative serial");
    while (CBS_len(&serial) > 1 && CBS_data(&serial)[0] == 0) CBS_skip(&serial, 1); /* no leading zero bytes */
    if (CBS_len(&serial) * 2 > RA_CAPF_SERIAL_MAX) return capf_online_unusable(s, "serial over 32 bytes");
    ra_hex(hex, CBS_data(&serial), CBS_len(&serial));
    if (ra_capf_lsc_init(&b->capf.lsc, CBS_data(&b->capf.r.spki), CBS_len(&b->capf.r.spki), cert, len, hex,
                         not_after) != RA_OK)
        return capf_online_unusable(s, "notAfter before 1970");
    b->capf.lsc.online = true;
    b->capf.lsc.has_key_hash = true;
    memcpy(b->capf.lsc.key_hash, j->key_hash, sizeof(j->key_hash));
    if (rec_serial && rec_serial[0] && !capf_serial_same(rec_serial, hex))
        DP_WARN("CAPF peer=%s device=%s request=%s: the record's serial %s is not the certificate's %s; the "
                "certificate's is recorded", s->peer, s->capf.device, b->online.id, rec_serial, hex);
    c->online.stats.certs++;
    capf_online_log(s, "issued by the online CA serial=%s", hex);
    ra_capf_cmd_t cmd;
    char token[RA_CAPF_TOKEN_MAX + 1];
    capf_token(c, s->capf.id, token, sizeof(token));
    if (dp_redis_usable(&c->redis) &&
        ra_capf_issued_cmd(&cmd, c->rt->capf_sha, s->capf.device, token, (int64_t)time(NULL), s->peer,
                           &b->capf.lsc) == RA_OK &&
        capf_command(s, &cmd, capf_on_recorded))
        return false;
    CBS none;
    CBS_init(&none, NULL, 0);
    return capf_run(s, capf_sess_recorded(eng(s), false, false, none, capf_out(s), &b->capf.r));
}

/* capf_online_park: the request is pending at the upstream CA; the session
 * waits for it in dp_online's table (capf_online_timeout). */
static void capf_online_park(dp_sess_t *s, bool queued) {
    unsigned secs = s->core->rt->cfg.capf_online_timeout;
    capf_online_log(s, "%s; waiting up to %u s", queued ? "queued for the online CA (stp:upstream)"
                                                        : "already pending at the online CA: not queued again",
                    secs);
    s->core->online.stats.parked++;
    dp_online_wait(s, s->buf);
    dp_timer_arm(s, DP_T_CAPF_ONLINE);
}

static void capf_on_submitted(dp_redis_req_t *req, redisReply *reply) {
    dp_buf_t *b = caa_container_of(req, dp_buf_t, rreq);
    dp_sess_t *s = b->sess;
    ra_capf_result_t res;
    ra_capf_submitted_t sub;
    char why[200];
    ra_err_t e = ra_capf_parse_submit(reply, &res, &sub, why, sizeof(why));
    if (!capf_returned(s, true)) return;
    if (e != RA_OK) {
        DP_WARN("CAPF peer=%s device=%s request=%s: not queued for the online CA: %s", s->peer, s->capf.device,
                b->online.id, why);
        capf_more(s, capf_online_end(s, "Upgrade Failed: the request could not be queued for the online CA "
                                        "(registry unavailable)"));
        return;
    }
    if (res.outcome == RA_CAPF_LOST_LOCK) { /* another session owns the device now */
        CBS none;
        CBS_init(&none, NULL, 0);
        capf_online_log(s, "not queued for the online CA: %s", res.reason);
        capf_go(s, capf_sess_recorded(eng(s), false, true, none, capf_out(s), &b->capf.r));
        return;
    }
    if (res.outcome != RA_CAPF_OK) { /* key of another device, device gone, operation withdrawn */
        char text[160];
        snprintf(text, sizeof(text), "Upgrade Failed: %.120s", res.reason);
        capf_online_log(s, "not queued for the online CA: %s", res.reason);
        capf_more(s, capf_online_end(s, text));
        return;
    }
    if (sub.state == RA_CAPF_SUBMIT_ISSUED) { /* the phone's retry: the CA answered meanwhile */
        capf_online_log(s, "already issued by the online CA: not submitted again");
        capf_more(s, capf_online_issued(s, sub.cert, sub.cert_len, sub.serial));
        return;
    }
    capf_online_park(s, sub.state == RA_CAPF_SUBMIT_QUEUED);
}

/* capf_submit_upstream (CAPF_STEP_RECORD in online mode): SUBMIT the
 * request the signer built; the reply parks the session or, if the record
 * is already issued, goes on at once. */
static bool capf_submit_upstream(dp_sess_t *s) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    const dp_config_t *cfg = &c->rt->cfg;
    capf_job_t *j = &b->capf.job;
    uint8_t spki_sha256[32];
    ra_capf_submit_t sub = {
        .spki_der = CBS_data(&b->capf.r.spki), .spki_len = CBS_len(&b->capf.r.spki),
        .p10_der = j->cert, .p10_len = j->cert_len, .has_key_hash = true, .notify = c->online.channel,
        /* the lock must outlast the wait and the phone's answer to STORE */
        .lock_ttl_ms = ((int64_t)cfg->capf_online_timeout + cfg->capf_reply_timeout + 60) * 1000};
    memcpy(sub.key_hash, j->key_hash, sizeof(sub.key_hash));
    SHA256(sub.spki_der, sub.spki_len, spki_sha256);
    ra_req_key(b->online.key, sizeof(b->online.key), s->capf.device, spki_sha256);
    ra_req_id(b->online.id, sizeof(b->online.id), s->capf.device, spki_sha256);
    b->online.capf = true;
    b->online.expired = false;
    ra_capf_cmd_t cmd;
    char token[RA_CAPF_TOKEN_MAX + 1];
    capf_token(c, s->capf.id, token, sizeof(token));
    if (dp_redis_usable(&c->redis) &&
        ra_capf_submit_cmd(&cmd, c->rt->capf_sha, s->capf.device, token, (int64_t)time(NULL), s->peer, &sub) ==
            RA_OK &&
        capf_command(s, &cmd, capf_on_submitted))
        return false;
    capf_online_log(s, "not queued for the online CA: registry unavailable");
    return capf_online_end(s, "Upgrade Failed: the request could not be queued for the online CA (registry "
                              "unavailable)");
}

/* capf_online_stop ends a wait because stampeded stops (SIGTERM): like
 * EST's 202, the phone is let go at once (END 07; its retry finds the
 * record, here or on another node). Returns what capf_run returns. */
static bool capf_online_stop(dp_sess_t *s) {
    dp_timer_arm(s, DP_T_NONE);
    capf_online_log(s, "stampeded is stopping: the wait for the online CA ends (the phone may retry)");
    return capf_online_end(s, "Upgrade Failed: online CA did not answer before stampeded stopped");
}

void dp_capf_online_fetched(dp_sess_t *s, dp_buf_t *b, const redisReply *rep) {
    if (!capf_returned(s, true)) return;
    dp_core_t *c = s->core;
    dp_online_rec_t rec;
    dp_online_rec_read(rep, &rec);
    if (rec.cert) {
        capf_more(s, capf_online_issued(s, rec.cert, rec.cert_len, rec.serial));
    } else if (!strcmp(rec.state, "rejected")) {
        char why[160];
        const char *cause = rec.reason[0] ? rec.reason : "no reason given";
        c->online.stats.refusals++;
        dp_timer_arm(s, DP_T_NONE);
        capf_online_log(s, "refused by the online CA: %s", cause);
        snprintf(why, sizeof(why), "Upgrade Failed: online CA refused the request: %.110s", cause);
        capf_more(s, capf_online_end(s, why));
    } else if (b->online.expired) {
        capf_online_log(s, "the online CA did not answer within %u s (record %s)", c->rt->cfg.capf_online_timeout,
                        rec.state[0] ? rec.state : rep ? "unreadable" : "not read: registry unavailable");
        capf_more(s, capf_online_end(s, "Upgrade Failed: online CA did not answer in time"));
    } else if (c->draining) { /* still pending, but stampeded stops */
        capf_more(s, capf_online_stop(s));
    } else { /* still pending (or the read failed): wait on */
        dp_online_wait(s, b);
    }
}

/* capf_online_lost: the phone left while its session waited for the CA:
 * out of the table, status Phone Communication Failure (then FAIL). */
static capf_step_t capf_online_lost(dp_sess_t *s) {
    dp_online_forget(s);
    dp_timer_arm(s, DP_T_NONE);
    capf_online_log(s, "the phone closed the connection while waiting for the online CA");
    snprintf(s->buf->capf.r.why, sizeof(s->buf->capf.r.why),
             "Upgrade Failed: Phone Communication Failure (connection closed by the phone while waiting for "
             "the online CA)");
    s->capf.state = CAPF_S_FINISHING;
    s->capf.success = false;
    return CAPF_STEP_FAIL;
}

void dp_capf_parked_io(dp_sess_t *s) {
    /* The phone sends nothing while it waits for STORE_CERTIFICATE_REQUEST.
     * Bytes it does send stay unread (peeked, not consumed): the engine
     * judges them after STORE, as in local mode where a message sent
     * during signing waits the same way. A close or reset is the loss of
     * the phone, recorded now (FAIL releases the device). */
    uint8_t byte;
    int n = SSL_peek(s->ssl, &byte, 1);
    if (n > 0) return;
    int err = SSL_get_error(s->ssl, n);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return;
    ERR_clear_error();
    capf_online_lost(s);
    s->capf_eof = true;
    capf_close_record(s, false);
}

void dp_capf_online_drain(dp_sess_t *s) {
    dp_online_forget(s);
    capf_more(s, capf_online_stop(s));
}

/* ---- FAILs that wait for Redis ---- */

/* A FAIL that could not be sent leaves its device locked (up to the lock's
 * TTL, ~13 min by default), so the phone's retries would be refused as
 * "busy". The core keeps such FAILs (bounded) and sends them as soon as its
 * Redis connection is up again. */
#define DP_CAPF_DEFER_MAX 4096

struct dp_capf_deferred {
    char device[RA_DEVICE_NAME_MAX + 1];
    uint32_t id;
    char why[120];
};

void dp_capf_defer_fail(dp_core_t *c, const char *device, uint32_t id, const char *why) {
    if (!c->capf_deferred && !(c->capf_deferred = calloc(DP_CAPF_DEFER_MAX, sizeof(*c->capf_deferred)))) return;
    if (c->capf_num_deferred == DP_CAPF_DEFER_MAX) {
        DP_WARN("CAPF device=%s: %d device locks already wait for Redis; this one expires with its TTL", device,
                DP_CAPF_DEFER_MAX);
        return;
    }
    struct dp_capf_deferred *d = &c->capf_deferred[c->capf_num_deferred++];
    snprintf(d->device, sizeof(d->device), "%s", device);
    d->id = id;
    snprintf(d->why, sizeof(d->why), "%s", why && why[0] ? why : "Upgrade Failed: Phone Communication Failure");
}

void dp_capf_service(dp_core_t *c) {
    if (!c->capf_num_deferred || !dp_redis_usable(&c->redis)) return;
    for (size_t i = 0; i < c->capf_num_deferred; i++)
        capf_orphan_fail(c, c->capf_deferred[i].device, c->capf_deferred[i].id, c->capf_deferred[i].why);
    DP_INFO("CAPF: Redis is back: recorded %zu failure(s) that waited for it and released their devices",
            c->capf_num_deferred);
    c->capf_num_deferred = 0;
}

void dp_capf_cleanup(dp_core_t *c) {
    free(c->capf_deferred);
    c->capf_deferred = NULL;
    c->capf_num_deferred = 0;
}
