/* dp_ra: an EST session's round trips to the registry (Redis) on its
 * polling core, around the signing job:
 *   before it, LOOKUP: HGETALL of the registry device a Basic user names;
 *   after it,  RECORD: the request script (ra_req.h) decides and records the
 *              outcome (issued / the existing certificate / refused /
 *              rejected) and, for a device, its status and LSC;
 *              AUDIT:  the stp:reqs:open update and the audit entry (XADD),
 *              pipelined; the answer goes out only when the XADD is
 *              acknowledged, so every certificate a client receives is in
 *              Redis and in the audit stream first.
 * Denials before an identity is established (401, undecodable body) skip
 * RECORD and are only audited. If Redis fails at any step the client gets
 * 503 + Retry-After and a signed but unrecorded certificate is discarded.
 * Thread: the owning polling core. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dataplane/dp_core.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"
#include "dataplane/est_server.h"
#include "ra/ra_audit.h"
#include "ra/ra_registry.h"
#include "ra/ra_req.h"

/* dp_sess.c */
void dp_sess_lookup_done(dp_sess_t *s, dp_buf_t *b);
void dp_sess_ra_done(dp_sess_t *s, dp_buf_t *b, bool ok);

enum { RA_PHASE_LOOKUP = 1, RA_PHASE_RECORD, RA_PHASE_AUDIT };

static const char dp_ra_unavailable[] = "certificate registry (Redis) unavailable: retry later";

static dp_buf_t *ra_buf(dp_redis_req_t *req) { return caa_container_of(req, dp_buf_t, rreq); }

/* ra_audit_send queues the index update (if any) and the audit XADD whose
 * reply releases the answer. */
static bool ra_audit_send(dp_sess_t *s, dp_buf_t *b, const char *event, const ra_req_result_t *res) {
    est_enroll_t *e = &b->enroll;
    dp_redis_t *r = &s->core->redis;
    char id[RA_REQ_ID_MAX] = "", score[24];
    int64_t now = (int64_t)time(NULL);
    if (e->record) ra_req_id(id, sizeof(id), e->identity, e->csr_sha256);
    if (res) {
        const char *argv[4];
        size_t argvlen[4];
        int argc;
        snprintf(score, sizeof(score), "%lld", (long long)now);
        if (ra_req_index_cmd(res, id, score, argv, argvlen, &argc) && !dp_redis_command(r, NULL, argc, argv, argvlen))
            return false;
    }
    char user[RA_REQ_IDENTITY_MAX + 1];
    const char *who = e->identity;
    if (!who[0] && e->basic) { /* unauthenticated: the name it claimed, made printable */
        size_t n = CBS_len(&e->user) < sizeof(user) - 1 ? CBS_len(&e->user) : sizeof(user) - 1;
        for (size_t i = 0; i < n; i++) {
            char c = (char)CBS_data(&e->user)[i];
            user[i] = c > 0x20 && c < 0x7f ? c : '?';
        }
        user[n] = 0;
        who = user;
    }
    const char *serial = res ? res->serial : "";
    ra_audit_entry_t ent = {.event = event, .device = who, .peer = e->peer.addr,
                            .reason = e->status == 200 ? "" : e->reason, .serial = serial,
                            .request = id, .protocol = "est", .time = now};
    ra_audit_cmd_t cmd;
    ra_audit_cmd(&cmd, &ent);
    b->ra_phase = RA_PHASE_AUDIT;
    return dp_redis_command(r, &b->rreq, cmd.argc, cmd.argv, cmd.argvlen);
}

static void ra_on_reply(dp_redis_req_t *req, redisReply *reply) {
    dp_buf_t *b = ra_buf(req);
    dp_sess_t *s = b->sess;
    dp_core_t *c = s->core;
    est_enroll_t *e = &b->enroll;
    char why[200];

    if (b->ra_phase == RA_PHASE_LOOKUP) {
        e->device_found = false;
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            dp_sess_ra_done(s, b, false);
            return;
        }
        char name[RA_DEVICE_NAME_MAX + 1];
        snprintf(name, sizeof(name), "%.*s", (int)CBS_len(&e->user), (const char *)CBS_data(&e->user));
        ra_err_t re = ra_registry_decode_reply(reply, name, &e->device, why, sizeof(why));
        if (re == RA_OK) e->device_found = true;
        else if (re != RA_E_NOT_FOUND) DP_WARN("registry device %s unreadable: %s", name, why);
        dp_sess_lookup_done(s, b);
        return;
    }
    if (b->ra_phase == RA_PHASE_RECORD) {
        ra_req_result_t res;
        if (ra_req_record_parse(reply, &res, why, sizeof(why)) != RA_OK) {
            if (e->issued) c->stats.unrecorded++;
            DP_WARN("EST peer=%s identity=%s: request not recorded (%s)%s", e->peer.addr, e->identity, why,
                    e->issued ? "; the signed certificate is discarded" : "");
            dp_sess_ra_done(s, b, false);
            return;
        }
        const char *event = "deny";
        switch (res.outcome) {
        case RA_REQ_OUT_ISSUED:
            event = "issue";
            DP_INFO("EST issued serial=%s identity=%s cn=%s peer=%s", res.serial, e->identity, e->subject_cn,
                    e->peer.addr);
            break;
        case RA_REQ_OUT_EXISTING:
            event = "reissue";
            c->stats.reissued++;
            est_cert_response(e, res.cert, res.cert_len); /* the reply dies after this callback */
            DP_INFO("EST same CSR again: returned the recorded certificate serial=%s identity=%s peer=%s%s",
                    res.serial, e->identity, e->peer.addr, e->issued ? " (new signature discarded)" : "");
            if (!e->out_len) {
                dp_sess_ra_done(s, b, false);
                return;
            }
            break;
        case RA_REQ_OUT_REFUSED:
            est_deny_response(e, 403, res.reason);
            DP_INFO("EST denied peer=%s identity=%s status=403: %s (signature discarded)", e->peer.addr,
                    e->identity, res.reason);
            break;
        default:
            break;
        }
        if (!ra_audit_send(s, b, event, &res)) dp_sess_ra_done(s, b, false);
        return;
    }
    /* RA_PHASE_AUDIT */
    bool ok = reply && reply->type != REDIS_REPLY_ERROR;
    if (!ok)
        DP_WARN("EST peer=%s identity=%s: audit entry not written (%s)", e->peer.addr,
                e->identity[0] ? e->identity : "-", reply ? reply->str : "connection lost");
    dp_sess_ra_done(s, b, ok);
}

bool dp_ra_lookup(dp_sess_t *s, dp_buf_t *b) {
    est_enroll_t *e = &b->enroll;
    char key[RA_DEVICE_NAME_MAX + 16];
    char name[RA_DEVICE_NAME_MAX + 1];
    if (CBS_len(&e->user) > RA_DEVICE_NAME_MAX) {
        e->device_found = false; /* not a device name: the job denies it */
        dp_sess_lookup_done(s, b);
        return true;
    }
    snprintf(name, sizeof(name), "%.*s", (int)CBS_len(&e->user), (const char *)CBS_data(&e->user));
    if (!ra_device_name_valid(name)) {
        e->device_found = false;
        dp_sess_lookup_done(s, b);
        return true;
    }
    ra_registry_key(key, sizeof(key), name);
    const char *argv[] = {"HGETALL", key};
    b->rreq.done = ra_on_reply;
    b->ra_phase = RA_PHASE_LOOKUP;
    return dp_redis_command(&s->core->redis, &b->rreq, 2, argv, NULL);
}

bool dp_ra_record(dp_sess_t *s, dp_buf_t *b) {
    est_enroll_t *e = &b->enroll;
    dp_redis_t *r = &s->core->redis;
    b->rreq.done = ra_on_reply;
    if (!e->record) /* nobody authenticated: audit the denial only */
        return ra_audit_send(s, b, "deny", NULL);
    ra_req_record_t rec = {.identity = e->identity, .device = e->is_device, .protocol = "est",
                           .peer = e->peer.addr, .csr_der = e->csr_der ? e->csr_der : (const uint8_t *)"",
                           .csr_len = e->csr_len,
                           .issue = e->issued, .reason = e->reason, .cert_der = e->cert_der,
                           .cert_len = e->cert_len, .serial_hex = e->serial_hex, .not_after = e->not_after,
                           .renew_serial_hex = e->renew_serial_hex, .now = (int64_t)time(NULL)};
    memcpy(rec.csr_sha256, e->csr_sha256, sizeof(rec.csr_sha256));
    ra_req_cmd_t cmd;
    if (ra_req_record_cmd(&cmd, r->sha, &rec) != RA_OK) return false;
    b->ra_phase = RA_PHASE_RECORD;
    return dp_redis_command(r, &b->rreq, cmd.argc, cmd.argv, cmd.argvlen);
}

const char *dp_ra_unavailable_text(void) { return dp_ra_unavailable; }
