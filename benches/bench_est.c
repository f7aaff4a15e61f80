/* bench_est: the EST load engine of stampede-bench. T worker threads each
 * drive their share of the C client connections with non-blocking sockets,
 * one edge-triggered epoll set, and BoringSSL SSL objects on the socket
 * (SSL_set_fd). An enrollment takes the next pre-encoded simpleenroll request
 * (bench_keys.c), sends it on a new TCP+TLS connection, or with --keepalive on
 * the connection's persistent one, reads the whole response, checks it
 * (bench_msg.c) and writes latency and serial into result slots reserved
 * before the run: the loop itself allocates nothing (BoringSSL allocates per
 * SSL object). A 503 is retried, same request, after Retry-After (at most 1 s).
 *
 * Per connection the state machine is
 *   NEXT -> CONNECTING -> HANDSHAKE -> SEND -> RECV -> NEXT   (or -> WAIT -> ...)
 * NEXT (take the next enrollment) and WAIT (retry after Retry-After) are
 * served by the timer pass of the loop, never from inside an event, so a
 * failure that repeats instantly cannot recurse.
 *
 * Thread: bench_est_start/_totals/_join and the preflight from the main
 * thread; everything else on its worker. A worker owns its connections and
 * counters; workers share only the job counter, the result-slot counter and
 * the first-errors list (a mutex, taken a few times per run). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/err.h>

#include "benches/bench.h"

#define EST_EVENTS 64                       /* epoll_wait burst */
#define EST_TICK_NS 100000000ull            /* longest sleep: how soon a stop is seen */
#define EST_RETRY_CAP_NS 1000000000ull      /* Retry-After is honoured up to 1 s */
#define EST_PREFLIGHT_BUF 65536

typedef enum {
    CONN_IDLE = 0,   /* no more work */
    CONN_NEXT,       /* take the next enrollment at the timer pass */
    CONN_CONNECTING,
    CONN_HANDSHAKE,
    CONN_SEND,
    CONN_RECV,
    CONN_WAIT,       /* 503: retry the same enrollment at wake_ns */
    CONN__COUNT
} est_state_t;

static const char *const est_state_name[CONN__COUNT] = {
    [CONN_IDLE] = "idle", [CONN_NEXT] = "next", [CONN_CONNECTING] = "connecting",
    [CONN_HANDSHAKE] = "handshake", [CONN_SEND] = "sending", [CONN_RECV] = "receiving",
    [CONN_WAIT] = "waiting"};

typedef struct {
    est_state_t state;
    int fd;
    uint32_t gen;               /* bumped per socket: stale epoll events are dropped */
    uint32_t index;
    SSL *ssl;
    bool established;           /* handshake done on this socket */
    uint64_t job;               /* enrollment number */
    const bench_req_t *req;
    size_t sent;
    size_t rlen;
    uint8_t *rbuf;              /* BENCH_RESP_MAX bytes, in the worker's block */
    uint64_t t_start_ns;        /* latency start */
    uint64_t deadline_ns;       /* attempt timeout */
    uint64_t wake_ns;           /* CONN_WAIT: when to retry */
} est_conn_t;

struct bench_worker {
    bench_run_t *run;
    pthread_t thread;
    bool started;
    int epfd;
    est_conn_t *conns;
    unsigned num_conns;
    unsigned active;            /* connections not CONN_IDLE */
    uint64_t next_timer_ns;     /* earliest NEXT, WAIT or deadline */
    uint64_t timeout_ns;
    uint8_t *rbufs;
    uint8_t *decoded;           /* BENCH_RESP_MAX scratch for base64 bodies */
    uint64_t errors_by[BENCH_E__COUNT];   /* read after join */
    /* Written by this worker only, read relaxed by the main thread. */
    _Alignas(64) _Atomic uint64_t ok, errors, retries, abandoned, connections, handshakes;
};

static void est_bump(_Atomic uint64_t *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void est_arm(bench_worker_t *w, uint64_t t) {
    if (t < w->next_timer_ns)
        w->next_timer_ns = t;
}

void bench_run_note_tls(bench_run_t *run, const SSL *ssl) {
    if (atomic_load_explicit(&run->tls_seen, memory_order_acquire))
        return;
    pthread_mutex_lock(&run->mu);
    if (!atomic_load_explicit(&run->tls_seen, memory_order_relaxed)) {
        bench_tls_params_get(&run->tls, ssl);
        atomic_store_explicit(&run->tls_seen, true, memory_order_release);
    }
    pthread_mutex_unlock(&run->mu);
}

/* est_close drops the connection's SSL and socket (close_notify first if
 * `graceful`). The enrollment and state stay. */
static void est_close(est_conn_t *c, bool graceful) {
    if (c->ssl != NULL) {
        if (graceful && c->established)
            SSL_shutdown(c->ssl);             /* best effort, non-blocking */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);                         /* also leaves the epoll set */
        c->fd = -1;
    }
    c->established = false;
    c->gen++;
    ERR_clear_error();
}

static void est_retire(bench_worker_t *w, est_conn_t *c) {
    est_close(c, true);
    if (c->state != CONN_IDLE) {
        c->state = CONN_IDLE;
        w->active--;
    }
}

/* est_done ends the current enrollment; the timer pass takes the next one. */
static void est_done(bench_worker_t *w, est_conn_t *c, uint64_t now) {
    c->state = CONN_NEXT;
    est_arm(w, now);
}

/* est_fail counts a failed enrollment, shows it if it is among the first
 * few, drops the connection and moves on. */
__attribute__((format(printf, 4, 5)))
static void est_fail(bench_worker_t *w, est_conn_t *c, bench_err_t cause, const char *fmt, ...) {
    bench_run_t *run = w->run;
    est_bump(&w->errors);
    w->errors_by[cause]++;
    pthread_mutex_lock(&run->mu);
    if (run->num_errors_shown < BENCH_ERRORS_SHOWN) {
        char *slot = run->errors_shown[run->num_errors_shown++];
        size_t cap = sizeof run->errors_shown[0];
        int n = snprintf(slot, cap, "enrollment %llu (CN bench-%s-%llu): %s: ",
                         (unsigned long long)c->job, run->csrs->run_id,
                         (unsigned long long)(c->job % run->csrs->num_reqs), bench_err_str(cause));
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < cap)
            vsnprintf(slot + n, cap - (size_t)n, fmt, ap);
        va_end(ap);
        fprintf(stderr, "stampede-bench: error: %s\n", slot);
    }
    pthread_mutex_unlock(&run->mu);
    est_close(c, false);
    est_done(w, c, bench_now_ns());
}

/* est_ssl_blocked returns true if the SSL call that returned `r` only has to
 * wait for the socket; otherwise it fails the enrollment with `cause`. */
static bool est_ssl_blocked(bench_worker_t *w, est_conn_t *c, int r, bench_err_t cause,
                            const char *what) {
    int saved_errno = errno;
    int e = SSL_get_error(c->ssl, r);
    char msg[200];
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return true;
    if (e == SSL_ERROR_SYSCALL)
        snprintf(msg, sizeof msg, "%s", saved_errno ? strerror(saved_errno)
                                                    : "connection closed by the server");
    else if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(msg, sizeof msg, "server sent close_notify");
    else
        bench_tls_error_str(msg, sizeof msg, c->ssl);
    est_fail(w, c, cause, "%s (state %s, %zu bytes received): %s", what,
             est_state_name[c->state], c->rlen, msg);
    return false;
}

/* est_tls_begin puts an SSL client object on the connected socket. */
static bool est_tls_begin(bench_worker_t *w, est_conn_t *c) {
    c->ssl = SSL_new(w->run->client_ctx);
    if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) ||
        (w->run->sni != NULL && !SSL_set_tlsext_host_name(c->ssl, w->run->sni))) {
        est_fail(w, c, BENCH_E_TLS, "cannot create the SSL object");
        return false;
    }
    SSL_set_connect_state(c->ssl);
    c->state = CONN_HANDSHAKE;
    return true;
}

static void est_drive(bench_worker_t *w, est_conn_t *c, uint32_t events);

/* est_connect opens a new non-blocking socket and starts connecting. */
static void est_connect(bench_worker_t *w, est_conn_t *c) {
    bench_run_t *run = w->run;
    int one = 1;
    c->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        est_fail(w, c, BENCH_E_CONNECT, "socket: %s", strerror(errno));
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = ((uint64_t)c->index << 32) | c->gen};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        est_fail(w, c, BENCH_E_CONNECT, "epoll_ctl: %s", strerror(errno));
        return;
    }
    est_bump(&w->connections);
    if (connect(c->fd, (const struct sockaddr *)&run->addr, run->addr_len) == 0) {
        if (est_tls_begin(w, c))
            est_drive(w, c, 0);
    } else if (errno == EINPROGRESS) {
        c->state = CONN_CONNECTING;
    } else {
        est_fail(w, c, BENCH_E_CONNECT, "connect: %s", strerror(errno));
    }
}

/* est_attempt (re)starts the current enrollment. */
static void est_attempt(bench_worker_t *w, est_conn_t *c, uint64_t now) {
    c->sent = 0;
    c->rlen = 0;
    c->deadline_ns = now + w->timeout_ns;
    est_arm(w, c->deadline_ns);
    c->t_start_ns = now;
    if (c->established) {
        c->state = CONN_SEND;
        est_drive(w, c, 0);
        return;
    }
    est_close(c, false);
    est_connect(w, c);
}

/* est_next takes the next enrollment for `c`, or retires it. */
static void est_next(bench_worker_t *w, est_conn_t *c, uint64_t now) {
    bench_run_t *run = w->run;
    uint64_t job;
    if (atomic_load_explicit(&run->stop, memory_order_relaxed) != 0 ||
        (job = atomic_fetch_add_explicit(&run->next_job, 1, memory_order_relaxed)) >=
            run->cfg->count) {
        est_retire(w, c);
        return;
    }
    c->job = job;
    c->req = &run->csrs->reqs[job % run->csrs->num_reqs];
    est_attempt(w, c, now);
}

static void est_abandon(bench_worker_t *w, est_conn_t *c) {
    est_bump(&w->abandoned);
    est_retire(w, c);
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
static bool est_check_certs(bench_worker_t *w, est_conn_t *c, const bench_msg_resp_t *resp,
                            CBS *serial) {
    size_t num_certs;
    const char *why = NULL;
    if (bench_msg_certs_body(resp, true, w->decoded, BENCH_RESP_MAX, &num_certs, serial,
                             &why) != BENCH_OK) {
        est_fail(w, c, BENCH_E_CONTENT, "%s", why);
        return false;
    }
    if (num_certs != 1 || CBS_len(serial) > BENCH_SERIAL_MAX) {
        est_fail(w, c, BENCH_E_CONTENT, "PKCS#7 holds %zu certificates (expected 1) "
                 "or a serial over 20 bytes", num_certs);
        return false;
    }
    return true;
}

/* est_response acts on a complete response to the current enrollment. */
static void est_response(bench_worker_t *w, est_conn_t *c, const bench_msg_resp_t *resp,
                         bool eof) {
    bench_run_t *run = w->run;
    uint64_t now = bench_now_ns();
    bool keep = run->cfg->keepalive && !resp->close && !eof;
    CBS serial;

    if (resp->status == 503) {
        est_bump(&w->retries);
        if (!keep)
            est_close(c, true);
        c->state = CONN_WAIT;
        c->wake_ns = now + (resp->retry_after_s == 0 ? 0 : EST_RETRY_CAP_NS);
        est_arm(w, c->wake_ns);
        return;
    }
    if (resp->status != 200) {
        char text[120];
        est_snippet(text, sizeof text, resp->body);
        est_fail(w, c, BENCH_E_STATUS, "HTTP %d %.*s: %s", resp->status,
                 (int)(CBS_len(&resp->reason) > 60 ? 60 : CBS_len(&resp->reason)),
                 (const char *)CBS_data(&resp->reason), text);
        return;
    }
    if (!est_check_certs(w, c, resp, &serial))
        return;
    uint64_t slot = atomic_fetch_add_explicit(&run->num_results, 1, memory_order_relaxed);
    uint64_t us = (now - c->t_start_ns) / 1000;
    run->latency_us[slot] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    bench_serial_t *s = &run->serials[slot];
    s->len = (uint8_t)CBS_len(&serial);
    memcpy(s->bytes, CBS_data(&serial), s->len);
    s->csr_index = (uint32_t)(c->job % run->csrs->num_reqs);
    est_bump(&w->ok);
    if (!keep)
        est_close(c, true);
    est_done(w, c, now);
}

/* est_recv reads response bytes; returns true to keep reading. */
static bool est_recv(bench_worker_t *w, est_conn_t *c) {
    bench_msg_resp_t resp;
    bool eof = false;
    int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(BENCH_RESP_MAX - c->rlen));
    if (r > 0) {
        c->rlen += (size_t)r;
    } else {
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_ZERO_RETURN && e != SSL_ERROR_SYSCALL) {
            est_ssl_blocked(w, c, r, BENCH_E_TLS, "reading the response");
            return false;
        }
        eof = true;                           /* close_notify, FIN or reset */
    }
    switch (bench_msg_parse_response(&resp, c->rbuf, c->rlen, false)) {
    case BENCH_MSG_DONE:
        est_response(w, c, &resp, eof);
        return false;
    case BENCH_MSG_BAD:
        est_fail(w, c, BENCH_E_HTTP, "%s", resp.why);
        return false;
    case BENCH_MSG_MORE:
        break;
    }
    if (eof) {  /* a body without Content-Length ends here; else it is cut short */
        if (bench_msg_parse_response(&resp, c->rbuf, c->rlen, true) == BENCH_MSG_DONE &&
            c->rlen > 0) {
            est_response(w, c, &resp, eof);
            return false;
        }
        est_fail(w, c, BENCH_E_CLOSED, "server closed the connection after %zu response bytes",
                 c->rlen);
        return false;
    }
    if (c->rlen == BENCH_RESP_MAX) {
        est_fail(w, c, BENCH_E_TOO_LARGE, "response over %d bytes", BENCH_RESP_MAX);
        return false;
    }
    return true;
}

/* est_step advances `c` by one state; returns false when it has to wait. */
static bool est_step(bench_worker_t *w, est_conn_t *c, uint32_t events) {
    int r, err = 0;
    socklen_t err_len = sizeof err;
    switch (c->state) {
    case CONN_CONNECTING:
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return false;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
            err = errno;
        if (err != 0) {
            est_fail(w, c, BENCH_E_CONNECT, "connect: %s", strerror(err));
            return false;
        }
        return est_tls_begin(w, c);
    case CONN_HANDSHAKE:
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            est_ssl_blocked(w, c, r, BENCH_E_TLS, "TLS handshake");
            return false;
        }
        est_bump(&w->handshakes);
        bench_run_note_tls(w->run, c->ssl);
        c->established = true;
        if (w->run->cfg->keepalive)
            c->t_start_ns = bench_now_ns();   /* keepalive latency: from the send */
        c->state = CONN_SEND;
        return true;
    case CONN_SEND:
        r = SSL_write(c->ssl, c->req->data + c->sent, (int)(c->req->len - c->sent));
        if (r <= 0) {
            est_ssl_blocked(w, c, r, BENCH_E_CLOSED, "sending the request");
            return false;
        }
        c->sent += (size_t)r;
        if (c->sent == c->req->len)
            c->state = CONN_RECV;
        return true;
    case CONN_RECV:
        return est_recv(w, c);
    case CONN_NEXT:
    case CONN_WAIT:   /* the server closed an idle keep-alive connection */
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            est_close(c, false);
        return false;
    default:
        return false;
    }
}

static void est_drive(bench_worker_t *w, est_conn_t *c, uint32_t events) {
    while (est_step(w, c, events))
        ;
}

/* est_conn_timer returns when `c` next needs the timer pass. */
static uint64_t est_conn_timer(const est_conn_t *c, uint64_t now) {
    switch (c->state) {
    case CONN_IDLE:
        return UINT64_MAX;
    case CONN_NEXT:
        return now;
    case CONN_WAIT:
        return c->wake_ns;
    default:
        return c->deadline_ns;
    }
}

/* est_timers serves NEXT and WAIT connections, enforces deadlines and the
 * run's stop request, and sets next_timer_ns. */
static void est_timers(bench_worker_t *w, uint64_t now) {
    int stop = atomic_load_explicit(&w->run->stop, memory_order_relaxed);
    uint64_t next = now + EST_TICK_NS;
    for (unsigned i = 0; i < w->num_conns; i++) {
        est_conn_t *c = &w->conns[i];
        switch (c->state) {
        case CONN_IDLE:
            continue;
        case CONN_NEXT:
            est_next(w, c, now);
            break;
        case CONN_WAIT:
            if (stop != 0)
                est_abandon(w, c);
            else if (c->wake_ns <= now)
                est_attempt(w, c, now);
            break;
        default:
            if (stop >= 2)
                est_abandon(w, c);
            else if (c->deadline_ns <= now)
                est_fail(w, c, BENCH_E_TIMEOUT, "no complete response within %.1f s (%s, "
                         "%zu bytes received)", w->run->cfg->timeout_s,
                         est_state_name[c->state], c->rlen);
            break;
        }
        uint64_t t = est_conn_timer(c, now);
        if (t < next)
            next = t;
    }
    w->next_timer_ns = next;
}

static void *est_worker_main(void *arg) {
    bench_worker_t *w = arg;
    struct epoll_event evs[EST_EVENTS];
    while (w->active > 0) {
        uint64_t now = bench_now_ns();
        if (now >= w->next_timer_ns)
            est_timers(w, now);
        if (w->active == 0)
            break;
        now = bench_now_ns();
        uint64_t wait_ns = w->next_timer_ns > now ? w->next_timer_ns - now : 0;
        int n = epoll_wait(w->epfd, evs, EST_EVENTS, (int)((wait_ns + 999999) / 1000000));
        for (int i = 0; i < n; i++) {
            est_conn_t *c = &w->conns[evs[i].data.u64 >> 32];
            if (c->gen == (uint32_t)evs[i].data.u64 && c->fd >= 0)
                est_drive(w, c, evs[i].events);
        }
    }
    atomic_fetch_add(&w->run->workers_done, 1);
    return NULL;
}

static void est_free_workers(bench_run_t *run) {
    for (unsigned t = 0; run->workers != NULL && t < run->num_workers; t++) {
        bench_worker_t *w = &run->workers[t];
        for (unsigned i = 0; w->conns != NULL && i < w->num_conns; i++)
            est_close(&w->conns[i], false);
        if (w->epfd >= 0)
            close(w->epfd);
        free(w->conns);
        free(w->rbufs);
        free(w->decoded);
    }
    free(run->workers);
    run->workers = NULL;
    run->num_workers = 0;
}

/* est_worker_init prepares worker `w` with `num_conns` connections. */
static bool est_worker_init(bench_run_t *run, bench_worker_t *w, unsigned num_conns) {
    w->run = run;
    w->num_conns = num_conns;
    w->timeout_ns = (uint64_t)(run->cfg->timeout_s * 1e9);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->conns = calloc(num_conns, sizeof *w->conns);
    w->rbufs = malloc((size_t)num_conns * BENCH_RESP_MAX);
    w->decoded = malloc(BENCH_RESP_MAX);
    if (w->epfd < 0 || w->conns == NULL || w->rbufs == NULL || w->decoded == NULL)
        return false;
    for (unsigned i = 0; i < num_conns; i++) {
        est_conn_t *c = &w->conns[i];
        c->fd = -1;
        c->index = i;
        c->rbuf = w->rbufs + (size_t)i * BENCH_RESP_MAX;
        c->state = CONN_NEXT;
    }
    w->active = num_conns;
    w->next_timer_ns = 0;
    return true;
}

bench_err_t bench_est_start(bench_run_t *run, char *why, size_t why_len) {
    unsigned num = (unsigned)run->cfg->threads;
    unsigned conc = (unsigned)run->cfg->concurrency;
    size_t bytes = num * sizeof *run->workers;
    run->workers = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (run->workers == NULL) {
        snprintf(why, why_len, "out of memory for workers");
        return BENCH_E_SETUP;
    }
    memset(run->workers, 0, bytes);
    run->num_workers = num;
    for (unsigned t = 0; t < num; t++)
        run->workers[t].epfd = -1;
    for (unsigned t = 0; t < num; t++) {
        if (!est_worker_init(run, &run->workers[t], conc / num + (t < conc % num))) {
            snprintf(why, why_len, "cannot set up worker %u: %s", t, strerror(errno));
            est_free_workers(run);
            return BENCH_E_SETUP;
        }
    }
    for (unsigned t = 0; t < num; t++) {
        bench_worker_t *w = &run->workers[t];
        w->started = pthread_create(&w->thread, NULL, est_worker_main, w) == 0;
        if (!w->started) {
            snprintf(why, why_len, "cannot start worker thread %u", t);
            atomic_store(&run->stop, 2);
            bench_est_join(run, NULL);
            return BENCH_E_SETUP;
        }
    }
    return BENCH_OK;
}

/* est_sum adds the workers' counters into `out`; `by_cause` only after join. */
static void est_sum(const bench_run_t *run, bench_totals_t *out, bool by_cause) {
    memset(out, 0, sizeof *out);
    for (unsigned t = 0; t < run->num_workers; t++) {
        const bench_worker_t *w = &run->workers[t];
        out->ok += atomic_load_explicit(&w->ok, memory_order_relaxed);
        out->errors += atomic_load_explicit(&w->errors, memory_order_relaxed);
        out->retries += atomic_load_explicit(&w->retries, memory_order_relaxed);
        out->abandoned += atomic_load_explicit(&w->abandoned, memory_order_relaxed);
        out->connections += atomic_load_explicit(&w->connections, memory_order_relaxed);
        out->handshakes += atomic_load_explicit(&w->handshakes, memory_order_relaxed);
        for (unsigned e = 0; by_cause && e < BENCH_E__COUNT; e++)
            out->errors_by[e] += w->errors_by[e];
    }
}

void bench_est_totals(const bench_run_t *run, bench_totals_t *out) {
    est_sum(run, out, false);
}

void bench_est_join(bench_run_t *run, bench_totals_t *totals) {
    for (unsigned t = 0; t < run->num_workers; t++)
        if (run->workers[t].started)
            pthread_join(run->workers[t].thread, NULL);
    if (totals != NULL)
        est_sum(run, totals, true);
    est_free_workers(run);
}

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
    struct timeval tv = {.tv_sec = 5};
    char req[512], tls[160];
    bench_msg_resp_t resp;
    size_t num_certs = 0;
    bench_err_t err = BENCH_E_SETUP;
    SSL *ssl = NULL;
    uint8_t *buf = malloc(2 * EST_PREFLIGHT_BUF);
    int fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(why, why_len, "out of memory or sockets");
    if (buf == NULL || fd < 0)
        goto out;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)&run->addr, run->addr_len) != 0) {
        snprintf(why, why_len, "cannot connect to %s: %s", cfg->connect, strerror(errno));
        err = BENCH_E_CONNECT;
        goto out;
    }
    ssl = SSL_new(run->client_ctx);
    if (ssl == NULL || !SSL_set_fd(ssl, fd) ||
        (run->sni != NULL && !SSL_set_tlsext_host_name(ssl, run->sni)) || SSL_connect(ssl) != 1) {
        char msg[200];
        bench_tls_error_str(msg, sizeof msg, ssl);
        snprintf(why, why_len, "TLS handshake with %s failed: %s", cfg->connect, msg);
        err = BENCH_E_TLS;
        goto out;
    }
    bench_run_note_tls(run, ssl);
    size_t req_len = bench_msg_cacerts_request(req, sizeof req, cfg->connect);
    err = est_preflight_get(ssl, req, req_len, buf, &resp, why, why_len);
    if (err == BENCH_OK)
        err = est_preflight_check(&resp, buf + EST_PREFLIGHT_BUF, &num_certs, why, why_len);
    bench_tls_params_str(tls, sizeof tls, &run->tls);
    snprintf(info, info_len, "%s, %s: GET cacerts %s (%zu certificate%s)", cfg->connect, tls,
             err == BENCH_OK ? "ok" : "failed", num_certs, num_certs == 1 ? "" : "s");
out:
    if (ssl != NULL)
        SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    free(buf);
    ERR_clear_error();
    return err;
}
