/* bench_est: the EST client of stampede-bench, on the load engine
 * (bench_load.c, which owns the threads, sockets, TLS and deadlines). An
 * enrollment takes the next pre-encoded simpleenroll request (bench_keys.c),
 * sends it on a new TCP+TLS connection, or with --keepalive on the
 * connection's persistent one, reads the whole response, checks it
 * (bench_msg.c) and books latency and serial in the run's result slots.
 * A 503 is retried, same request, after Retry-After (at most 1 s).
 *
 * Per connection, after the engine's handshake: SEND -> RECV -> done (or
 * -> the engine's WAIT on a 503). The response is read into the
 * connection's BENCH_RESP_MAX buffer; a base64 body is decoded into the
 * worker's scratch block.
 *
 * Thread: bench_est_preflight on the main thread; the ops on the worker
 * that owns the connection. */
#include <stdio.h>

#include "benches/bench.h"

#define EST_RETRY_CAP_NS 1000000000ull      /* Retry-After is honoured up to 1 s */
#define EST_PREFLIGHT_BUF 65536

/* est_conn_t: one client connection; rbuf is base.buf (BENCH_RESP_MAX). */
typedef struct {
    bench_load_conn_t base;     /* first: the engine's part */
    const bench_req_t *req;
    size_t sent;
    size_t rlen;
} est_conn_t;

/* est_scratch_t: per worker, for base64 bodies. */
typedef struct {
    uint8_t decoded[BENCH_RESP_MAX];
} est_scratch_t;

/* est_begin (re)starts enrollment base.job: its request, nothing sent yet. */
static void est_begin(bench_load_worker_t *w, bench_load_conn_t *c) {
    const bench_csrs_t *csrs = bench_load_run(w)->csrs;
    est_conn_t *e = (est_conn_t *)c;
    e->req = &csrs->reqs[c->job % csrs->num_reqs];
    e->sent = 0;
    e->rlen = 0;
}

static void est_job_str(const bench_run_t *run, const bench_load_conn_t *c, char *out,
                        size_t cap) {
    snprintf(out, cap, "enrollment %llu (CN bench-%s-%llu)", (unsigned long long)c->job,
             run->csrs->run_id, (unsigned long long)(c->job % run->csrs->num_reqs));
}

static void est_where_str(const bench_load_conn_t *c, char *out, size_t cap) {
    snprintf(out, cap, "state %s, %zu bytes received", bench_load_state_str(c->state),
             ((const est_conn_t *)c)->rlen);
}

static void est_expire(bench_load_worker_t *w, bench_load_conn_t *c) {
    bench_load_fail(w, c, BENCH_E_TIMEOUT, "no complete response within %.1f s (%s, "
                    "%zu bytes received)", bench_load_run(w)->cfg->timeout_s,
                    bench_load_state_str(c->state), ((est_conn_t *)c)->rlen);
}

/* est_snippet copies the first line of `body` (printable ASCII, at most
 * cap-1 bytes) into `out`. */
static void est_snippet(char *out, size_t cap, CBS body) {
    size_t n = 0;
    uint8_t ch;
    while (n + 1 < cap && CBS_get_u8(&body, &ch) && ch != '\r' && ch != '\n')
        out[n++] = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
    out[n] = '\0';
}

/* est_check_certs checks a 200 answer and returns its serial in `serial`. */
static bool est_check_certs(bench_load_worker_t *w, bench_load_conn_t *c,
                            const bench_msg_resp_t *resp, CBS *serial) {
    est_scratch_t *scratch = bench_load_scratch(w);
    size_t num_certs;
    const char *why = NULL;
    if (bench_msg_certs_body(resp, true, scratch->decoded, BENCH_RESP_MAX, &num_certs, serial,
                             &why) != BENCH_OK) {
        bench_load_fail(w, c, BENCH_E_CONTENT, "%s", why);
        return false;
    }
    if (num_certs != 1 || CBS_len(serial) > BENCH_SERIAL_MAX) {
        bench_load_fail(w, c, BENCH_E_CONTENT, "PKCS#7 holds %zu certificates (expected 1) "
                        "or a serial over 20 bytes", num_certs);
        return false;
    }
    return true;
}

/* est_response acts on a complete response to the current enrollment. */
static void est_response(bench_load_worker_t *w, bench_load_conn_t *c,
                         const bench_msg_resp_t *resp, bool eof) {
    const bench_run_t *run = bench_load_run(w);
    uint64_t now = bench_now_ns();
    bool keep = run->cfg->keepalive && !resp->close && !eof;
    CBS serial;

    if (resp->status == 503) {
        if (!keep)
            bench_load_close(c, true);
        bench_load_retry(w, c, now + (resp->retry_after_s == 0 ? 0 : EST_RETRY_CAP_NS));
        return;
    }
    if (resp->status != 200) {
        char text[120];
        est_snippet(text, sizeof text, resp->body);
        bench_load_fail(w, c, BENCH_E_STATUS, "HTTP %d %.*s: %s", resp->status,
                        (int)(CBS_len(&resp->reason) > 60 ? 60 : CBS_len(&resp->reason)),
                        (const char *)CBS_data(&resp->reason), text);
        return;
    }
    if (!est_check_certs(w, c, resp, &serial))
        return;
    bench_load_record(w, c, now, CBS_data(&serial), CBS_len(&serial),
                      (uint32_t)(c->job % run->csrs->num_reqs));
    if (!keep)
        bench_load_close(c, true);
    bench_load_done(w, c, now);
}

/* est_recv reads response bytes; returns true to keep reading. */
static bool est_recv(bench_load_worker_t *w, est_conn_t *e) {
    bench_load_conn_t *c = &e->base;
    bench_msg_resp_t resp;
    bool eof = false;
    int r = SSL_read(c->ssl, c->buf + e->rlen, (int)(BENCH_RESP_MAX - e->rlen));
    if (r > 0) {
        e->rlen += (size_t)r;
    } else {
        int err = SSL_get_error(c->ssl, r);
        if (err != SSL_ERROR_ZERO_RETURN && err != SSL_ERROR_SYSCALL) {
            bench_load_ssl_blocked(w, c, r, BENCH_E_TLS, "reading the response");
            return false;
        }
        eof = true;                           /* close_notify, FIN or reset */
    }
    switch (bench_msg_parse_response(&resp, c->buf, e->rlen, false)) {
    case BENCH_MSG_DONE:
        est_response(w, c, &resp, eof);
        return false;
    case BENCH_MSG_BAD:
        bench_load_fail(w, c, BENCH_E_HTTP, "%s", resp.why);
        return false;
    case BENCH_MSG_MORE:
        break;
    }
    if (eof) {  /* a body without Content-Length ends here; else it is cut short */
        if (bench_msg_parse_response(&resp, c->buf, e->rlen, true) == BENCH_MSG_DONE &&
            e->rlen > 0) {
            est_response(w, c, &resp, eof);
            return false;
        }
        bench_load_fail(w, c, BENCH_E_CLOSED, "server closed the connection after %zu "
                        "response bytes", e->rlen);
        return false;
    }
    if (e->rlen == BENCH_RESP_MAX) {
        bench_load_fail(w, c, BENCH_E_TOO_LARGE, "response over %d bytes", BENCH_RESP_MAX);
        return false;
    }
    return true;
}

/* est_step serves SEND and RECV; returns false when it has to wait. */
static bool est_step(bench_load_worker_t *w, bench_load_conn_t *c) {
    est_conn_t *e = (est_conn_t *)c;
    int r;
    switch (c->state) {
    case BENCH_LOAD_SEND:
        r = SSL_write(c->ssl, e->req->data + e->sent, (int)(e->req->len - e->sent));
        if (r <= 0) {
            bench_load_ssl_blocked(w, c, r, BENCH_E_CLOSED, "sending the request");
            return false;
        }
        e->sent += (size_t)r;
        if (e->sent == e->req->len)
            c->state = BENCH_LOAD_RECV;
        return true;
    case BENCH_LOAD_RECV:
        return est_recv(w, e);
    default:
        return false;
    }
}

const bench_load_ops_t bench_est_load = {
    .conn_size = sizeof(est_conn_t),
    .buf_size = BENCH_RESP_MAX,
    .worker_size = sizeof(est_scratch_t),
    .first = BENCH_LOAD_SEND,                 /* the client speaks first */
    .close_notify = true,
    .begin = est_begin,
    .step = est_step,
    .expire = est_expire,
    .job_str = est_job_str,
    .where_str = est_where_str,
};

/* ---- preflight ------------------------------------------------------------- */

/* est_preflight_get sends `req` on the blocking `ssl` and reads the response
 * into `buf` (EST_PREFLIGHT_BUF bytes). Returns BENCH_OK with `resp` set. */
static bench_err_t est_preflight_get(SSL *ssl, const char *req, size_t req_len, uint8_t *buf,
                                     bench_msg_resp_t *resp, char *why, size_t why_len) {
    size_t len = 0;
    if (SSL_write(ssl, req, (int)req_len) != (int)req_len) {
        bench_tls_error_str(why, why_len, ssl);
        return BENCH_E_TLS;
    }
    for (;;) {
        int r = SSL_read(ssl, buf + len, (int)(EST_PREFLIGHT_BUF - len));
        bool eof = r <= 0;
        if (r > 0)
            len += (size_t)r;
        bench_msg_status_t st = bench_msg_parse_response(resp, buf, len, eof);
        if (st == BENCH_MSG_DONE)
            return BENCH_OK;
        if (st == BENCH_MSG_BAD || eof || len == EST_PREFLIGHT_BUF) {
            snprintf(why, why_len, "GET cacerts: %s",
                     st == BENCH_MSG_BAD ? resp->why : eof ? "no complete response"
                                                           : "response too large");
            return BENCH_E_HTTP;
        }
    }
}

/* est_preflight_check checks a cacerts answer and counts its certificates. */
static bench_err_t est_preflight_check(const bench_msg_resp_t *resp, uint8_t *scratch,
                                       size_t *num_certs, char *why, size_t why_len) {
    CBS serial;
    const char *cause = NULL;
    if (resp->status != 200) {
        snprintf(why, why_len, "GET cacerts answered HTTP %d", resp->status);
        return BENCH_E_STATUS;
    }
    if (bench_msg_certs_body(resp, false, scratch, EST_PREFLIGHT_BUF, num_certs, &serial,
                             &cause) != BENCH_OK) {
        snprintf(why, why_len, "GET cacerts: %s", cause);
        return BENCH_E_CONTENT;
    }
    return BENCH_OK;
}

bench_err_t bench_est_preflight(bench_run_t *run, char *info, size_t info_len,
                                char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    char req[512], tls[160];
    bench_msg_resp_t resp;
    size_t num_certs = 0;
    bench_load_dial_t d;
    bench_err_t err = bench_load_dial(run, 2 * EST_PREFLIGHT_BUF, &d, why, why_len);

    if (err != BENCH_OK)
        return err;
    size_t req_len = bench_msg_cacerts_request(req, sizeof req, cfg->connect);
    err = est_preflight_get(d.ssl, req, req_len, d.buf, &resp, why, why_len);
    if (err == BENCH_OK)
        err = est_preflight_check(&resp, d.buf + EST_PREFLIGHT_BUF, &num_certs, why, why_len);
    bench_tls_params_str(tls, sizeof tls, &run->tls);
    snprintf(info, info_len, "%s, %s: GET cacerts %s (%zu certificate%s)", cfg->connect, tls,
             err == BENCH_OK ? "ok" : "failed", num_certs, num_certs == 1 ? "" : "s");
    bench_load_hangup(&d);
    return err;
}
