/* dp_ra: an EST session's round trips to the registry (Redis) on its
 * polling core, around the signing job:
 *   before it, LOOKUP: HGETALL of the registry device a Basic user names;
 *   after it,  RECORD: the request script (ra_req.h) decides and records the
 *              outcome (issued / the existing certificate / refused /
 *              rejected), updates a device's status and LSC, the open-request
 *              index and appends the audit entry, all in one call; the answer
 *              goes out only after its reply, so every certificate a client
 *              receives is in Redis and in the audit stream first.
 * RECORDs are batched: every request that finished its job during one loop
 * iteration joins the core's open flight, and dp_ra_flush sends the flight as
 * one script call (at most RA_REQ_BATCH_MAX requests) just before the core
 * writes to Redis. Denials before an identity is established (401, an
 * undecodable body) ride along as audit-only entries. If Redis fails, every
 * request of the flight gets 503 + Retry-After and a signed but unrecorded
 * certificate is discarded.
 * Core 0 also runs the registry's deadline sweep every deadline_sweep_s
 * (devices whose pending install passed its deadline become failed).
 * Flights are pooled per core (allocated on first need, reused, freed at
 * exit); nothing is allocated per request.
 * Thread: the owning polling core. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/dp_core.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"
#include "dataplane/est_server.h"
#include "ra/ra_registry.h"
#include "ra/ra_req.h"

/* dp_sess.c */
void dp_sess_lookup_done(dp_sess_t *s, dp_buf_t *b);
void dp_sess_ra_done(dp_sess_t *s, dp_buf_t *b, bool ok);

/* dp_ra_flight_t: one batch of RECORDs, filling or in flight. */
struct dp_ra_flight {
    dp_redis_req_t req;         /* the script call (its reply completes all) */
    dp_ra_flight_t *next_free;
    dp_ra_flight_t *next_all;   /* every flight of the core, for cleanup */
    dp_core_t *core;
    size_t n;
    dp_buf_t *items[RA_REQ_BATCH_MAX];
    char who[RA_REQ_BATCH_MAX][RA_REQ_IDENTITY_MAX + 1]; /* audit-only: the name claimed */
};

static const char dp_ra_unavailable[] = "certificate registry (Redis) unavailable: retry later";

const char *dp_ra_unavailable_text(void) { return dp_ra_unavailable; }

/* ---- device lookup ---- */

static void ra_on_lookup(dp_redis_req_t *req, redisReply *reply) {
    dp_buf_t *b = caa_container_of(req, dp_buf_t, rreq);
    dp_sess_t *s = b->sess;
    est_enroll_t *e = &b->enroll;
    char why[200], name[RA_DEVICE_NAME_MAX + 1];
    e->device_found = false;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        dp_sess_ra_done(s, b, false);
        return;
    }
    snprintf(name, sizeof(name), "%.*s", (int)CBS_len(&e->user), (const char *)CBS_data(&e->user));
    ra_err_t re = ra_registry_decode_reply(reply, name, &e->device, why, sizeof(why));
    if (re == RA_OK) e->device_found = true;
    else if (re != RA_E_NOT_FOUND) DP_WARN("registry device %s unreadable: %s", name, why);
    dp_sess_lookup_done(s, b);
}

bool dp_ra_lookup(dp_sess_t *s, dp_buf_t *b) {
    est_enroll_t *e = &b->enroll;
    char key[RA_DEVICE_NAME_MAX + 16], name[RA_DEVICE_NAME_MAX + 1];
    bool fits = CBS_len(&e->user) <= RA_DEVICE_NAME_MAX;
    if (fits) snprintf(name, sizeof(name), "%.*s", (int)CBS_len(&e->user), (const char *)CBS_data(&e->user));
    if (!fits || !ra_device_name_valid(name)) { /* cannot be a device: the job denies it */
        e->device_found = false;
        dp_sess_lookup_done(s, b);
        return true;
    }
    ra_registry_key(key, sizeof(key), name);
    const char *argv[] = {"HGETALL", key};
    b->rreq.done = ra_on_lookup;
    return dp_redis_command(&s->core->redis, &b->rreq, 2, argv, NULL);
}

/* ---- records ---- */

/* ra_outcome applies result `res` of one request to its prepared answer. */
static void ra_outcome(dp_core_t *c, est_enroll_t *e, const ra_req_result_t *res) {
    switch (res->outcome) {
    case RA_REQ_OUT_ISSUED:
        est_log_issued(e, res->serial);
        break;
    case RA_REQ_OUT_EXISTING:
        c->stats.reissued++;
        est_cert_response(e, res->cert, res->cert_len); /* the reply dies after the callback */
        DP_INFO("EST same CSR again: returned the recorded certificate serial=%s identity=%s peer=%s%s",
                res->serial, e->identity, e->peer.addr, e->issued ? " (new signature discarded)" : "");
        break;
    case RA_REQ_OUT_REFUSED:
        est_deny_response(e, 403, res->reason);
        DP_INFO("EST denied peer=%s identity=%s status=403: %s (signature discarded)", e->peer.addr,
                e->identity, res->reason);
        break;
    case RA_REQ_OUT_PENDING: /* online mode: the core waits for the upstream CA (dp_online.c) */
        e->online_wait = true;
        e->online_reread = res->was_open;
        break;
    default:
        break;
    }
}

static void ra_flight_put(dp_core_t *c, dp_ra_flight_t *f) {
    f->n = 0;
    f->next_free = c->ra_free;
    c->ra_free = f;
}

static void ra_on_flight(dp_redis_req_t *req, redisReply *reply) {
    dp_ra_flight_t *f = caa_container_of(req, dp_ra_flight_t, req);
    dp_core_t *c = f->core;
    char why[200];
    for (size_t i = 0; i < f->n; i++) {
        dp_buf_t *b = f->items[i];
        est_enroll_t *e = &b->enroll;
        ra_req_result_t res;
        bool ok = ra_req_batch_parse(reply, f->n, i, &res, why, sizeof(why)) == RA_OK;
        if (!ok) {
            if (e->issued) c->stats.unrecorded++;
            DP_WARN("EST peer=%s identity=%s: request not recorded (%s)%s", e->peer.addr,
                    e->identity[0] ? e->identity : "-", why, e->issued ? "; the signed certificate is discarded" : "");
        } else if (e->record) {
            ra_outcome(c, e, &res);
            ok = e->out_len > 0 || e->online_wait; /* a pending wait answers later */
        }
        dp_sess_ra_done(b->sess, b, ok);
    }
    ra_flight_put(c, f);
}

/* ra_claimed copies the user name an unauthenticated request claimed,
 * printable, for its audit entry. */
static void ra_claimed(char *out, size_t cap, const est_enroll_t *e) {
    size_t n = e->basic ? CBS_len(&e->user) : 0;
    if (n > cap - 1) n = cap - 1;
    for (size_t i = 0; i < n; i++) {
        char ch = (char)CBS_data(&e->user)[i];
        out[i] = ch > 0x20 && ch < 0x7f ? ch : '?';
    }
    out[n] = 0;
}

void dp_ra_flush(dp_core_t *c) {
    dp_ra_flight_t *f = c->ra_open;
    if (!f) return;
    c->ra_open = NULL;
    ra_req_batch_t *bt = c->ra_batch;
    int64_t now = (int64_t)time(NULL);
    ra_req_batch_init(bt, c->redis.sha, now);
    for (size_t i = 0; i < f->n; i++) {
        est_enroll_t *e = &f->items[i]->enroll;
        if (e->record) {
            ra_req_record_t rec = {.identity = e->identity, .device = e->is_device, .protocol = "est",
                                   .peer = e->peer.addr, .csr_der = e->csr_der, .csr_len = e->csr_len,
                                   .issue = e->issued || e->online_accept, .reason = e->reason,
                                   .cert_der = e->cert_der, .cert_len = e->cert_len,
                                   .serial_hex = e->serial_hex, .not_after = e->not_after,
                                   .renew_serial_hex = e->renew_serial_hex, .now = now,
                                   .online = e->online_accept, .notify = c->online.channel};
            memcpy(rec.csr_sha256, e->csr_sha256, sizeof(rec.csr_sha256));
            if (ra_req_batch_add(bt, &rec) == RA_OK) continue; /* room is reserved: n <= MAX */
            /* cannot happen (the worker validated the identity): never send unrecorded */
            est_deny_response(e, 500, "request could not be recorded");
            e->record = false;
        }
        {
            ra_claimed(f->who[i], sizeof(f->who[i]), e);
            ra_req_denial_t d = {.who = f->who[i], .peer = e->peer.addr, .protocol = "est", .reason = e->reason};
            ra_req_batch_add_denial(bt, &d);
        }
    }
    ra_req_batch_cmd(bt);
    f->req.done = ra_on_flight;
    if (!dp_redis_command(&c->redis, &f->req, bt->argc, bt->argv, bt->argvlen)) ra_on_flight(&f->req, NULL);
}

bool dp_ra_record(dp_sess_t *s, dp_buf_t *b) {
    dp_core_t *c = s->core;
    if (!dp_redis_usable(&c->redis)) return false;
    if (!c->ra_batch && !(c->ra_batch = malloc(sizeof(*c->ra_batch)))) return false;
    dp_ra_flight_t *f = c->ra_open;
    if (!f) {
        if ((f = c->ra_free)) {
            c->ra_free = f->next_free;
        } else {
            if (!(f = malloc(sizeof(*f)))) return false;
            f->core = c;
            f->next_all = c->ra_all;
            c->ra_all = f;
        }
        f->n = 0;
        c->ra_open = f;
    }
    f->items[f->n++] = b;
    if (f->n == RA_REQ_BATCH_MAX) dp_ra_flush(c);
    return true;
}

/* ---- deadline sweep ---- */

#define DP_RA_SWEEP_LIMIT 1000 /* devices per call; the next call continues */

static void ra_on_sweep(dp_redis_req_t *req, redisReply *reply) {
    dp_core_t *c = caa_container_of(req, dp_core_t, sweep_req);
    c->sweep_busy = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER || reply->element[1]->type != REDIS_REPLY_INTEGER) {
        DP_WARN("deadline sweep failed: %s", reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
        return;
    }
    long long failed = reply->element[0]->integer, seen = reply->element[1]->integer;
    if (failed) DP_INFO("deadline sweep: %lld device(s) passed their deadline: status failed", failed);
    if (seen >= DP_RA_SWEEP_LIMIT) c->next_sweep_ms = c->now_ms; /* more are due: go on at once */
}

void dp_ra_sweep(dp_core_t *c) {
    unsigned every = c->rt->cfg.deadline_sweep_s;
    if (c->id != 0 || !every || c->sweep_busy || c->now_ms < c->next_sweep_ms || !dp_redis_usable(&c->redis))
        return;
    c->next_sweep_ms = c->now_ms + (int64_t)every * 1000;
    ra_registry_sweep_cmd_t cmd;
    ra_registry_sweep_cmd(&cmd, (int64_t)time(NULL), DP_RA_SWEEP_LIMIT);
    c->sweep_req.done = ra_on_sweep;
    c->sweep_busy = dp_redis_command(&c->redis, &c->sweep_req, cmd.argc, cmd.argv, NULL);
}

void dp_ra_cleanup(dp_core_t *c) {
    while (c->ra_all) {
        dp_ra_flight_t *f = c->ra_all;
        c->ra_all = f->next_all;
        free(f);
    }
    c->ra_free = c->ra_open = NULL;
    free(c->ra_batch);
    c->ra_batch = NULL;
}
