/* dp_sess: one client connection on a polling core: TLS handshake (with the
 * server key offloaded to the signing pool), HTTP/1.1 request reading with
 * per-phase deadlines, EST dispatch, the response, keep-alive and close.
 * The state machine (dp_state_t) is re-driven after every I/O readiness,
 * job completion and timeout; it never blocks and never allocates beyond the
 * core's pools.
 * Thread: the owning polling core; dp_job_run on signer workers. */
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/dp_core.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"
#include "dataplane/dp_tls.h"
#include "dataplane/est_http.h"
#include "dataplane/est_server.h"

/* dp_core.c */
void dp_timer_arm(dp_sess_t *s, dp_timer_kind_t k);
dp_sess_t *dp_sess_alloc(dp_core_t *c);
void dp_sess_release(dp_sess_t *s);
dp_buf_t *dp_buf_get(dp_core_t *c);
void dp_buf_put(dp_core_t *c, dp_buf_t *b);
dp_keyop_t *dp_keyop_get(dp_core_t *c);
void dp_keyop_put(dp_core_t *c, dp_keyop_t *k);

void dp_sess_job_done(dp_sess_t *s, dp_buf_t *b);
void dp_sess_lookup_done(dp_sess_t *s, dp_buf_t *b);
void dp_sess_ra_done(dp_sess_t *s, dp_buf_t *b, bool ok);
/* dp_ra.c */
bool dp_ra_lookup(dp_sess_t *s, dp_buf_t *b);
bool dp_ra_record(dp_sess_t *s, dp_buf_t *b);
const char *dp_ra_unavailable_text(void);
void dp_sess_timeout(dp_sess_t *s);
void dp_sess_drain(dp_sess_t *s);
dp_buf_t *dp_sess_job_buf(dp_sess_t *s);
dp_keyop_t *dp_sess_keyop(dp_sess_t *s);
void dp_sess_keyop_submitted(dp_sess_t *s);
void dp_sess_keyop_done(dp_sess_t *s, dp_keyop_t *k);
int dp_sess_flush(dp_sess_t *s);
/* dp_capf.c */
bool dp_capf_started(dp_sess_t *s);
bool dp_capf_read(dp_sess_t *s);
bool dp_capf_write(dp_sess_t *s);
void dp_capf_timeout(dp_sess_t *s);
bool dp_capf_lost(dp_sess_t *s);
void dp_capf_job_run(dp_buf_t *b, unsigned worker);
void dp_capf_unpark(dp_sess_t *s);
void dp_capf_parked_io(dp_sess_t *s);
void dp_capf_online_drain(dp_sess_t *s);

static void sess_drive(dp_sess_t *s);

static size_t req_cap(const dp_core_t *c) { return c->rt->cfg.max_header + c->rt->cfg.max_body; }

/* ---- jobs (signer worker side) ---- */

static void dp_job_run(cx_job_t *j, unsigned worker) {
    if (j->kind == DP_JOB_ENROLL) {
        dp_buf_t *b = caa_container_of(j, dp_buf_t, job);
        est_enroll_run(&b->sess->core->rt->est, &b->enroll, worker);
    } else if (j->kind == DP_JOB_CAPF_AUTH || j->kind == DP_JOB_CAPF_SIGN || j->kind == DP_JOB_CAPF_CERTAUTH ||
               j->kind == DP_JOB_CAPF_REQUEST) {
        dp_capf_job_run(caa_container_of(j, dp_buf_t, job), worker);
    } else {
        dp_keyop_t *k = caa_container_of(j, dp_keyop_t, job);
        const dp_runtime_t *rt = k->sess->core->rt;
        dp_tls_keyop_run(k, k->sess->proto == DP_PROTO_CAPF && rt->capf_tls_ca ? rt->ca.ca_key : rt->ca.tls_key);
    }
}

/* ---- lifecycle ---- */

static void sess_free(dp_sess_t *s) {
    dp_core_t *c = s->core;
    dp_capf_unpark(s);
    if (s->addr_key) dp_addrcap_put(&c->addrs, s->addr_key);
    s->addr_key = 0;
    free(s->pending);
    s->pending = NULL;
    s->pending_len = 0;
    free(s->stash);
    s->stash = NULL;
    s->stash_len = s->stash_off = 0;
    dp_timer_arm(s, DP_T_NONE);
    if (s->buf) dp_buf_put(c, s->buf);
    s->buf = NULL;
    if (s->keyop) dp_keyop_put(c, s->keyop);
    s->keyop = NULL;
    SSL_free(s->ssl);
    s->ssl = NULL;
    c->stats.closed++;
    dp_sess_release(s);
}

/* sess_close ends the connection; with a job in flight the session lives on
 * (DP_S_CLOSED) until the job comes back. `notify` sends close_notify. */
static void sess_close(dp_sess_t *s, bool notify) {
    dp_core_t *c = s->core;
    if (s->state == DP_S_CLOSED) return;
    /* A CAPF session that holds its device records the loss first (the
     * FAIL releases the device); the session lives until that reply. */
    if (s->proto == DP_PROTO_CAPF && dp_capf_lost(s)) notify = false;
    if (s->state == DP_S_ONLINE) dp_online_forget(s); /* parked, nothing in flight */
    bool busy = s->state == DP_S_JOB || s->state == DP_S_RA; /* a job or a Redis reply will come back */
    if (notify && s->ssl && s->state != DP_S_HANDSHAKE && !busy) SSL_shutdown(s->ssl);
    if (c->tx_owner == s) { /* best effort: a close_notify or a TLS alert, after older bytes */
        dp_sess_flush(s);
        c->tx_owner = NULL;
    }
    if (c->rx_owner == s) {
        c->rx_owner = NULL;
        c->rx_len = c->rx_off = 0;
    }
    c->rt->transport->close(c, &s->conn);
    s->state = DP_S_CLOSED;
    dp_timer_arm(s, DP_T_NONE);
    if (!busy) sess_free(s);
}

/* shed_before_tls counts a connection refused before TLS; true when its
 * log line may be written (at most one per second per cause, so a flood
 * does not flood the log). */
static bool shed_before_tls(dp_core_t *c, int64_t *next_log_ms) {
    c->stats.shed++;
    if (c->now_ms < *next_log_ms) return false;
    *next_log_ms = c->now_ms + 1000;
    return true;
}

dp_sess_t *dp_core_accepted(dp_core_t *c, dp_conn_t conn, const char *peer, unsigned proto) {
    if (c->draining) return NULL;
    if (proto == DP_PROTO_CAPF && c->capf_parked >= c->capf_max_parked) { /* R10: before TLS */
        if (shed_before_tls(c, &c->capf_shed_log_ms))
            DP_WARN("CAPF peer=%s refused before TLS: %u sessions on this core wait for key generation "
                    "(capf_max_keygen)", peer, c->capf_parked);
        return NULL;
    }
    uint64_t addr_key = 0;
    uint32_t per_addr = c->rt->cfg.max_per_address;
    if (per_addr) { /* R9: a flood from one address is refused before TLS */
        addr_key = dp_addrcap_key(peer);
        if (!dp_addrcap_take(&c->addrs, addr_key, per_addr)) {
            if (shed_before_tls(c, &c->addr_shed_log_ms))
                DP_WARN("peer=%s refused before TLS: %u connections from this address on this core "
                        "(max_per_address)", peer, dp_addrcap_count(&c->addrs, addr_key));
            return NULL;
        }
    }
    dp_sess_t *s = dp_sess_alloc(c);
    if (!s) {
        if (addr_key) dp_addrcap_put(&c->addrs, addr_key);
        c->stats.shed++;
        return NULL;
    }
    s->addr_key = addr_key;
    s->conn = conn;
    snprintf(s->peer, sizeof(s->peer), "%s", peer);
    s->proto = (uint8_t)proto;
    if (dp_tls_session_new(proto == DP_PROTO_CAPF ? c->rt->capf_tls : c->rt->est_tls, s)) {
        if (addr_key) dp_addrcap_put(&c->addrs, addr_key);
        dp_sess_release(s);
        return NULL;
    }
    s->state = DP_S_HANDSHAKE;
    s->keep_alive = true;
    c->stats.accepted++;
    dp_timer_arm(s, DP_T_HANDSHAKE);
    return s;
}

dp_buf_t *dp_sess_job_buf(dp_sess_t *s) {
    if (!s->buf && !(s->buf = dp_buf_get(s->core))) return NULL;
    s->buf->sess = s;
    s->buf->job.fn = dp_job_run;
    return s->buf;
}

dp_keyop_t *dp_sess_keyop(dp_sess_t *s) {
    if (!s->keyop && !(s->keyop = dp_keyop_get(s->core))) return NULL;
    s->keyop->sess = s;
    s->keyop->job.fn = dp_job_run;
    return s->keyop;
}

void dp_sess_keyop_submitted(dp_sess_t *s) { s->state = DP_S_JOB; }

/* ---- responses ---- */

static void sess_after_response(dp_sess_t *s);
static void sess_close(dp_sess_t *s, bool notify);

/* sess_linger ends a connection politely: close_notify goes out with the
 * last response, then the client gets close_linger_ms to close first (so the
 * client, not the appliance, keeps TIME_WAIT, and unread client bytes never
 * turn our close into a reset under the response). */
static void sess_linger(dp_sess_t *s) {
    dp_core_t *c = s->core;
    if (c->draining || s->state == DP_S_HANDSHAKE || c->timeout_ms[DP_T_LINGER] == 0) {
        sess_close(s, true);
        return;
    }
    SSL_shutdown(s->ssl);
    if (s->buf) {
        dp_buf_put(c, s->buf);
        s->buf = NULL;
    }
    s->state = DP_S_LINGER;
    dp_timer_arm(s, DP_T_LINGER);
}

/* sess_linger_read discards what the client still sends and closes at its
 * end of stream (or on any error). */
static void sess_linger_read(dp_sess_t *s) {
    dp_core_t *c = s->core;
    s->stash_len = s->stash_off = 0;
    if (c->rx_owner == s) c->rx_len = c->rx_off = 0;
    for (;;) {
        ssize_t n = c->rt->transport->recv(&s->conn, c->scratch, c->scratch_cap);
        if (n == DP_IO_AGAIN) return;
        if (n <= 0) {
            sess_close(s, false);
            return;
        }
    }
}

/* sess_send writes the prepared response (buf data[resp_off..]) in one
 * SSL_write, i.e. one TLS record for responses up to 16 KiB. */
static bool sess_send(dp_sess_t *s) {
    dp_buf_t *b = s->buf;
    s->want_write = false;
    int r = SSL_write(s->ssl, b->data + b->resp_off, (int)b->resp_len);
    if (r > 0) {
        sess_after_response(s);
        return s->state == DP_S_READ;
    }
    int err = SSL_get_error(s->ssl, r);
    if (err == SSL_ERROR_WANT_WRITE) {
        s->state = DP_S_WRITE;
        dp_timer_arm(s, DP_T_WRITE);
        return false;
    }
    DP_DEBUG("peer=%s write failed (ssl error %d)", s->peer, err);
    sess_close(s, false);
    return false;
}

/* The answer when load is shed (with a Retry-After header). */
static const char sess_busy_text[] = "busy: retry later\n";

/* sess_format writes `r` as an HTTP response into `out`; a 503 carries the
 * configured Retry-After. Returns the length, 0 if `cap` is too small. */
static size_t sess_format(const dp_sess_t *s, uint8_t *out, size_t cap, const est_reply_t *r,
                          bool keep_alive) {
    char extra[160];
    const char *hdrs = r->extra_headers;
    if (r->status == 503) {
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", s->core->rt->cfg.retry_after);
        hdrs = extra;
    }
    return est_http_response(out, cap, r->status, r->content_type, hdrs, keep_alive, r->body, r->body_len);
}

static bool sess_reply(dp_sess_t *s, const est_reply_t *r, bool keep_alive) {
    dp_buf_t *b = s->buf;
    s->keep_alive = keep_alive && !r->close && !s->closing;
    b->resp_off = req_cap(s->core);
    b->resp_len = sess_format(s, b->data + b->resp_off, s->core->buf_cap - b->resp_off, r, s->keep_alive);
    if (r->status >= 400) {
        if (r->status < 500) s->core->stats.bad_requests++; /* 503s are counted as shed */
        DP_INFO("EST %d peer=%s: %.*s", r->status, s->peer,
                r->log_reason ? (int)strcspn(r->log_reason, "\n") : 0, r->log_reason ? r->log_reason : "");
    }
    if (!b->resp_len) {
        sess_close(s, false);
        return false;
    }
    return sess_send(s);
}

static bool sess_reply_error(dp_sess_t *s, int status, const char *reason) {
    est_reply_t r = {status, "text/plain", NULL, (const uint8_t *)reason, strlen(reason), true, reason};
    return sess_reply(s, &r, false);
}

/* sess_after_response: the response is out; keep the connection or end it. */
static void sess_after_response(dp_sess_t *s) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    if (!s->keep_alive || c->draining) {
        sess_linger(s);
        return;
    }
    /* Keep pipelined bytes that followed the request. */
    size_t consumed = b->consumed < b->len ? b->consumed : b->len;
    size_t left = b->len - consumed;
    if (left) memmove(b->data, b->data + consumed, left);
    b->len = left;
    b->resp_off = b->resp_len = 0;
    s->state = DP_S_READ;
    if (!left) {
        dp_buf_put(c, b);
        s->buf = NULL;
        dp_timer_arm(s, DP_T_IDLE);
    } else {
        dp_timer_arm(s, DP_T_HEADER);
    }
}

/* ---- requests ---- */

static void sess_peer(dp_sess_t *s, est_peer_t *p) {
    p->addr = s->peer;
    dp_tls_peer_info(s->ssl, &p->chain, &p->cert_der, &p->cert_der_len);
}

/* sess_busy sheds an enrollment with 503 + Retry-After (signing queue full,
 * or the registry unavailable). */
static bool sess_busy(dp_sess_t *s, const char *text, const char *why) {
    s->core->stats.shed++;
    est_reply_t r = {503, "text/plain", NULL, (const uint8_t *)text, strlen(text), false, why};
    return sess_reply(s, &r, s->buf->enroll.keep_alive);
}

/* sess_registry_busy sheds an enrollment because Redis cannot record it
 * (not connected, or it failed under the request). */
static bool sess_registry_busy(dp_sess_t *s) {
    s->state = DP_S_READ; /* for sess_reply's bookkeeping */
    return sess_busy(s, dp_ra_unavailable_text(), "registry unavailable");
}

/* sess_submit_job hands the enrollment to the signing pool. */
static bool sess_submit_job(dp_sess_t *s) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    b->job.fn = dp_job_run;
    b->job.kind = DP_JOB_ENROLL;
    b->sess = s;
    if (cx_pool_submit(c->rt->pool, c->id, &b->job, false) != CX_OK)
        return sess_busy(s, sess_busy_text, "signing queue full, shedding load");
    s->state = DP_S_JOB;
    dp_timer_arm(s, DP_T_NONE);
    return false;
}

static bool sess_submit_enroll(dp_sess_t *s, const est_http_req_t *req) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    b->enroll.out = b->data + req_cap(c);
    b->enroll.out_cap = c->buf_cap - req_cap(c);
    b->consumed = req->header_len + (size_t)req->content_length;
    b->sess = s;
    /* Nothing starts that could not be recorded. */
    if (c->rt->est.registry && !dp_redis_usable(&c->redis)) return sess_registry_busy(s);
    if (!b->enroll.device_lookup) return sess_submit_job(s);
    s->state = DP_S_RA;
    dp_timer_arm(s, DP_T_NONE);
    return dp_ra_lookup(s, b) ? false : sess_registry_busy(s);
}

/* sess_request handles a complete header block in the buffer. Returns 1 if
 * the state machine should continue at once, 0 to wait, 2 to read more. */
static int sess_request(dp_sess_t *s, const est_http_req_t *req) {
    dp_core_t *c = s->core;
    dp_buf_t *b = s->buf;
    size_t avail = b->len - req->header_len;
    CBS body;
    size_t want = req->content_length > 0 ? (size_t)req->content_length : 0;
    CBS_init(&body, b->data + req->header_len, avail < want ? avail : want);
    est_peer_t peer;
    sess_peer(s, &peer);
    est_reply_t reply;
    est_action_t act = est_route(&c->rt->est, req, body, &peer, &reply, &b->enroll);
    if (act == EST_REPLY) {
        dp_online_cacerts(c, &reply); /* online mode: the upstream CA's chain */
        c->stats.requests++;
        /* A body we have not read makes the connection unusable. */
        bool whole = req->content_length <= 0 || avail >= want;
        b->consumed = req->header_len + (whole ? want : 0);
        return sess_reply(s, &reply, req->keep_alive && whole);
    }
    if (avail < want) { /* need the body */
        if (s->timer != DP_T_BODY) {
            dp_timer_arm(s, DP_T_BODY);
            if (req->expect_continue && avail == 0) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                SSL_write(s->ssl, cont, sizeof(cont) - 1);
            }
        }
        return 2;
    }
    c->stats.requests++;
    return sess_submit_enroll(s, req);
}

/* sess_shed answers 503 + Retry-After when the core has no request buffer
 * left (queue_bound reached): it reads what the client sent into the core's
 * scratch (so closing does not reset the connection under the answer),
 * replies from a static text and closes. */
static void sess_shed(dp_sess_t *s) {
    dp_core_t *c = s->core;
    c->stats.shed++;
    size_t got = 0;
    int n = 0;
    while (got < c->scratch_cap && (n = SSL_read(s->ssl, c->scratch, (int)c->scratch_cap)) > 0)
        got += (size_t)n;
    if (!got) {
        if (SSL_get_error(s->ssl, n) != SSL_ERROR_WANT_READ) sess_close(s, false);
        return; /* nothing sent yet: keep waiting (the header timer runs) */
    }
    uint8_t resp[256];
    est_reply_t r = {503, "text/plain", NULL, (const uint8_t *)sess_busy_text, sizeof(sess_busy_text) - 1,
                     true, NULL};
    size_t len = sess_format(s, resp, sizeof(resp), &r, false);
    if (len) SSL_write(s->ssl, resp, (int)len);
    DP_INFO("EST 503 peer=%s: no request buffer left (queue_bound %u reached), shedding load", s->peer,
            c->rt->cfg.queue_bound);
    sess_close(s, true);
}

/* sess_read reads and parses until a request is complete or the transport
 * has nothing more. Returns true to continue the state machine. */
static bool sess_read(dp_sess_t *s) {
    dp_core_t *c = s->core;
    if (!dp_sess_job_buf(s)) {
        sess_shed(s);
        return false;
    }
    dp_buf_t *b = s->buf;
    size_t cap = req_cap(c);
    for (;;) {
        if (b->len) {
            est_http_req_t req;
            est_http_err_t e = est_http_parse(&req, b->data, b->len, c->rt->cfg.max_header);
            if (e == EST_HTTP_OK) {
                int r = sess_request(s, &req);
                if (r != 2) return r == 1;
            } else if (e != EST_HTTP_PARTIAL) {
                int status = e == EST_HTTP_E_HEADER_SIZE ? 431 : e == EST_HTTP_E_VERSION ? 505 : 400;
                char reason[96];
                snprintf(reason, sizeof(reason), "%s\n", est_http_err_str(e));
                return sess_reply_error(s, status, reason);
            } else if (s->timer != DP_T_HEADER) {
                dp_timer_arm(s, DP_T_HEADER);
            }
        }
        if (b->len >= cap) return sess_reply_error(s, 413, "request too large\n");
        int n = SSL_read(s->ssl, b->data + b->len, (int)(cap - b->len));
        if (n > 0) {
            b->len += (size_t)n;
            continue;
        }
        int err = SSL_get_error(s->ssl, n);
        if (err == SSL_ERROR_WANT_READ) {
            if (b->len == 0) { /* idle: hold no buffer */
                dp_buf_put(c, b);
                s->buf = NULL;
            }
            return false;
        }
        if (err != SSL_ERROR_ZERO_RETURN && !(err == SSL_ERROR_SYSCALL && b->len == 0))
            DP_DEBUG("peer=%s read failed (ssl error %d)", s->peer, err);
        sess_close(s, false);
        return false;
    }
}

static bool sess_handshake(dp_sess_t *s) {
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        s->core->stats.handshakes++;
        if (s->keyop) {
            dp_keyop_put(s->core, s->keyop);
            s->keyop = NULL;
        }
        if (s->proto == DP_PROTO_CAPF) return dp_capf_started(s); /* the server speaks first */
        s->state = DP_S_READ;
        dp_timer_arm(s, DP_T_HEADER);
        return true;
    }
    int err = SSL_get_error(s->ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE ||
        err == SSL_ERROR_WANT_PRIVATE_KEY_OPERATION)
        return false;
    s->core->stats.hs_failed++;
    uint32_t e = ERR_peek_error();
    if (err == SSL_ERROR_SSL)
        DP_INFO("TLS handshake failed peer=%s: %s", s->peer, e ? ERR_reason_error_string(e) : "protocol error");
    else
        DP_DEBUG("TLS handshake aborted peer=%s (ssl error %d)", s->peer, err);
    ERR_clear_error();
    sess_close(s, false);
    return false;
}

/* dp_sess_flush sends the core's coalesced bytes for `s`; what the transport
 * does not take is kept in s->pending. Returns 0 if everything went out,
 * 1 if bytes are pending, -1 on a transport error. */
int dp_sess_flush(dp_sess_t *s) {
    dp_core_t *c = s->core;
    const dp_transport_ops_t *t = c->rt->transport;
    if (s->pending_len) { /* older bytes first */
        ssize_t n = t->send(&s->conn, s->pending, s->pending_len);
        if (n == DP_IO_ERROR) return -1;
        if (n > 0) {
            memmove(s->pending, s->pending + n, s->pending_len - (size_t)n);
            s->pending_len -= (size_t)n;
        }
    }
    size_t off = 0;
    if (!s->pending_len && c->tx_len) {
        ssize_t n = t->send(&s->conn, c->tx, c->tx_len);
        if (n == DP_IO_ERROR) return -1;
        off = n > 0 ? (size_t)n : 0;
    }
    if (off < c->tx_len) { /* keep the rest for the next writable event */
        uint8_t *p = realloc(s->pending, s->pending_len + c->tx_len - off);
        if (!p) return -1;
        memcpy(p + s->pending_len, c->tx + off, c->tx_len - off);
        s->pending = p;
        s->pending_len += c->tx_len - off;
    }
    c->tx_len = 0;
    return s->pending_len ? 1 : 0;
}

/* sess_stash keeps read-ahead bytes the engine did not consume (the session
 * paused, e.g. for a signing job) so they are served first next time. */
static bool sess_stash(dp_sess_t *s) {
    dp_core_t *c = s->core;
    if (c->rx_owner != s) return true;
    c->rx_owner = NULL;
    size_t left = c->rx_len - c->rx_off;
    if (s->stash_off == s->stash_len) s->stash_len = s->stash_off = 0;
    if (left) {
        uint8_t *p = realloc(s->stash, s->stash_len + left);
        if (!p) {
            sess_close(s, false);
            return false;
        }
        memcpy(p + s->stash_len, c->rx + c->rx_off, left);
        s->stash = p;
        s->stash_len += left;
    }
    c->rx_len = c->rx_off = 0;
    return true;
}

/* sess_drive runs the state machine with output coalescing and read-ahead
 * around it. */
static void sess_drive_inner(dp_sess_t *s);
static void sess_drive(dp_sess_t *s) {
    dp_core_t *c = s->core;
    if (s->pending_len && dp_sess_flush(s) < 0) {
        sess_close(s, false);
        return;
    }
    c->tx_owner = s;
    c->tx_len = 0;
    c->rx_owner = s;
    c->rx_len = c->rx_off = 0;
    sess_drive_inner(s);
    if (c->tx_owner != s) return; /* closed meanwhile (flushed there) */
    c->tx_owner = NULL;
    if (!sess_stash(s)) return;
    int r = dp_sess_flush(s);
    if (r < 0) {
        sess_close(s, false);
    } else if (r == 0 && s->want_write && s->state != DP_S_CLOSED) {
        s->want_write = false;
        sess_drive(s); /* the engine was told to retry: let it */
    } else if (r > 0 || s->want_write) {
        c->rt->transport->watch_write(c, &s->conn, s);
    }
}

static void sess_drive_inner(dp_sess_t *s) {
    for (;;) {
        bool more = false;
        switch (s->state) {
        case DP_S_HANDSHAKE: more = sess_handshake(s); break;
        case DP_S_READ: more = s->proto == DP_PROTO_CAPF ? dp_capf_read(s) : sess_read(s); break;
        case DP_S_WRITE: more = s->proto == DP_PROTO_CAPF ? dp_capf_write(s) : sess_send(s); break;
        case DP_S_LINGER: sess_linger_read(s); return;
        case DP_S_ONLINE:
            if (s->proto == DP_PROTO_CAPF) dp_capf_parked_io(s); /* CAPF: a phone that leaves is recorded now */
            else if (s->conn.rx_hup) sess_close(s, false); /* EST client gone: free its buffer now */
            return;
        case DP_S_JOB:
        case DP_S_CLOSED: return;
        }
        if (!more) return;
    }
}

/* ---- events ---- */

void dp_sess_on_io(dp_sess_t *s, bool readable, bool writable, bool hangup) {
    /* "Writable" alone matters only to a session with bytes waiting to go
     * out; otherwise (e.g. the edge reported right after registration)
     * driving would only cost a read that finds nothing. */
    if (!readable && !hangup && writable && !s->pending_len && !s->want_write && s->state != DP_S_WRITE)
        return;
    sess_drive(s);
}

/* sess_answer sends the enrollment's answer prepared in e->out. */
static void sess_answer(dp_sess_t *s, dp_buf_t *b) {
    dp_core_t *c = s->core;
    est_enroll_t *e = &b->enroll;
    if (e->status == 200) c->stats.enrolled++;
    else c->stats.denied++;
    if (!e->out_len) {
        sess_reply_error(s, 500, "response too large\n");
        return;
    }
    /* Closing after a response that did not announce it is allowed (drain). */
    s->keep_alive = e->keep_alive && !s->closing;
    b->resp_off = req_cap(c);
    b->resp_len = e->out_len;
    s->state = DP_S_WRITE;
    sess_drive(s);
}

/* sess_unavailable answers 503 when Redis failed under a request. */
static void sess_unavailable(dp_sess_t *s) {
    if (sess_registry_busy(s)) sess_drive(s);
}

/* sess_returned: a job or a Redis reply came back for `s`. If the client
 * went away meanwhile, the session is freed (nothing was sent) and false is
 * returned. */
static bool sess_returned(dp_sess_t *s) {
    if (s->state != DP_S_CLOSED) return true;
    sess_free(s);
    return false;
}

void dp_sess_job_done(dp_sess_t *s, dp_buf_t *b) {
    if (!sess_returned(s)) return;
    if (!s->core->rt->est.registry) { /* redis = off: nothing to record */
        if (b->enroll.issued) est_log_issued(&b->enroll, b->enroll.serial_hex);
        sess_answer(s, b);
        return;
    }
    s->state = DP_S_RA;
    if (!dp_ra_record(s, b)) sess_unavailable(s);
}

void dp_sess_lookup_done(dp_sess_t *s, dp_buf_t *b) {
    (void)b;
    if (!sess_returned(s)) return;
    if (sess_submit_job(s)) sess_drive(s);
}

void dp_sess_ra_done(dp_sess_t *s, dp_buf_t *b, bool ok) {
    if (!sess_returned(s)) return;
    if (!ok) {
        sess_unavailable(s);
        return;
    }
    if (b->enroll.online_wait) {
        dp_online_park(s, b);
        return;
    }
    sess_answer(s, b);
}

void dp_sess_online_answer(dp_sess_t *s, dp_buf_t *b) { sess_answer(s, b); }

void dp_sess_keyop_done(dp_sess_t *s, dp_keyop_t *k) {
    (void)k; /* s->keyop: read by the TLS complete callback */
    if (!sess_returned(s)) return;
    s->state = DP_S_HANDSHAKE;
    sess_drive(s);
}

void dp_sess_timeout(dp_sess_t *s) {
    static const char *const phase[DP_T__COUNT] = {"handshake",      "request header", "request body",
                                                   "idle keep-alive", "response write", "linger",
                                                   "CAPF auth",      "CAPF keygen",    "CAPF reply",
                                                   "online CA wait", "CAPF online CA wait"};
    if (s->timer == DP_T_ONLINE || s->timer == DP_T_CAPF_ONLINE) {
        dp_online_timeout(s);
        return;
    }
    if (s->proto == DP_PROTO_CAPF && s->timer >= DP_T_CAPF_AUTH && s->timer <= DP_T_CAPF_REPLY) {
        dp_capf_timeout(s);
        return;
    }
    if (s->timer < DP_T__COUNT && s->timer != DP_T_IDLE && s->timer != DP_T_LINGER && !s->core->draining)
        DP_INFO("peer=%s timed out in %s; closing", s->peer, phase[s->timer]);
    sess_close(s, s->timer == DP_T_IDLE);
}

void dp_sess_drain(dp_sess_t *s) {
    s->closing = true;
    if (s->proto == DP_PROTO_CAPF) { /* sessions with a phone finish or time out; idle ones close */
        if (s->state == DP_S_ONLINE) { /* waiting for the online CA: END 07 now, the phone retries */
            dp_capf_online_drain(s);
            return;
        }
        if (s->state == DP_S_LINGER || (s->state == DP_S_READ && !s->capf.locked && !s->buf))
            sess_close(s, s->state != DP_S_LINGER);
        return;
    }
    if (s->state == DP_S_LINGER) {
        sess_close(s, false);
        return;
    }
    if (s->state == DP_S_ONLINE) { /* 202 now: the client retries, maybe on another node */
        dp_online_drain(s);
        return;
    }
    if (s->state != DP_S_READ || (s->buf && s->buf->len)) return; /* busy: finishes, then closes */
    /* Idle as far as we know: a request may have arrived unread. Read once;
     * it is answered (and the connection closed after it), else close now. */
    sess_drive(s);
    if (s->state == DP_S_READ && (!s->buf || s->buf->len == 0)) sess_close(s, true);
}

/* ---- for dp_capf.c ---- */

void dp_sess_close(dp_sess_t *s, bool notify) { sess_close(s, notify); }
void dp_sess_linger(dp_sess_t *s) { sess_linger(s); }
bool dp_sess_returned(dp_sess_t *s) { return sess_returned(s); }
void dp_sess_redrive(dp_sess_t *s) { sess_drive(s); }
