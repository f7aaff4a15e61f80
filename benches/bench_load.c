/* bench_load: the epoll load engine of stampede-bench, shared by its
 * protocols (EST in bench_est.c, CAPF in bench_capf.c). T worker threads
 * each drive their share of the C client connections with non-blocking
 * sockets, one edge-triggered epoll set, and BoringSSL SSL objects on the
 * socket (SSL_set_fd). The engine does what every protocol's client does
 * alike: take the next job, connect, the TLS handshake, the per-attempt
 * deadline, retries, the first-errors list, result slots, closing, the
 * counters; a protocol fills one bench_load_ops_t (chosen at startup) for
 * what is its own: what a job sends and how the answer is read and checked.
 * The loop itself allocates nothing (BoringSSL allocates per SSL object):
 * connections, their buffers and the result slots are reserved before.
 *
 * Per connection the state machine is
 *   NEXT -> CONNECTING -> HANDSHAKE -> ops->first ... (SEND, RECV, CLOSING:
 *   the protocol's ops->step) -> NEXT                   (or -> WAIT -> ...)
 * NEXT (take the next job) and WAIT (retry the same job at wake_ns) are
 * served by the timer pass of the loop, never from inside an event, so a
 * failure that repeats instantly cannot recurse.
 *
 * Thread: bench_load_start/_totals/_join, bench_load_dial/_hangup and
 * bench_run_note_tls from the main thread; everything else on its worker.
 * A worker owns its connections, their buffers, its scratch block and its
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

#define LOAD_EVENTS 64                      /* epoll_wait burst */
#define LOAD_TICK_NS 100000000ull           /* longest sleep: how soon a stop is seen */
#define LOAD_DIAL_TIMEOUT_S 5               /* preflight socket send/receive limit */

static const char *const load_state_name[BENCH_LOAD__COUNT] = {
    [BENCH_LOAD_IDLE] = "idle", [BENCH_LOAD_NEXT] = "next",
    [BENCH_LOAD_CONNECTING] = "connecting", [BENCH_LOAD_HANDSHAKE] = "handshake",
    [BENCH_LOAD_WAIT] = "waiting", [BENCH_LOAD_SEND] = "sending",
    [BENCH_LOAD_RECV] = "receiving", [BENCH_LOAD_CLOSING] = "closing"};

const char *bench_load_state_str(bench_load_state_t st) {
    return (unsigned)st < BENCH_LOAD__COUNT ? load_state_name[st] : "unknown";
}

struct bench_load_worker {
    bench_run_t *run;
    const bench_load_ops_t *ops;
    pthread_t thread;
    bool started;
    int epfd;
    uint8_t *conns;             /* num_conns structs of ops->conn_size bytes */
    unsigned num_conns;
    unsigned active;            /* connections not IDLE */
    uint64_t next_timer_ns;     /* earliest NEXT, WAIT or deadline */
    uint64_t timeout_ns;
    uint8_t *bufs;              /* ops->buf_size bytes per connection */
    void *scratch;              /* ops->worker_size bytes, the protocol's */
    uint64_t errors_by[BENCH_E__COUNT];   /* read after join */
    /* Written by this worker only, read relaxed by the main thread. */
    _Alignas(64) _Atomic uint64_t ok, errors, retries, abandoned, connections, handshakes;
};

bench_run_t *bench_load_run(const bench_load_worker_t *w) {
    return w->run;
}

void *bench_load_scratch(bench_load_worker_t *w) {
    return w->scratch;
}

static bench_load_conn_t *load_conn(const bench_load_worker_t *w, unsigned i) {
    return (bench_load_conn_t *)(w->conns + (size_t)i * w->ops->conn_size);
}

static void load_bump(_Atomic uint64_t *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void load_arm(bench_load_worker_t *w, uint64_t t) {
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

void bench_load_close(bench_load_conn_t *c, bool graceful) {
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

static void load_retire(bench_load_worker_t *w, bench_load_conn_t *c) {
    bench_load_close(c, w->ops->close_notify);
    if (c->state != BENCH_LOAD_IDLE) {
        c->state = BENCH_LOAD_IDLE;
        w->active--;
    }
}

static void load_abandon(bench_load_worker_t *w, bench_load_conn_t *c) {
    load_bump(&w->abandoned);
    load_retire(w, c);
}

void bench_load_done(bench_load_worker_t *w, bench_load_conn_t *c, uint64_t now) {
    c->state = BENCH_LOAD_NEXT;
    load_arm(w, now);
}

void bench_load_retry(bench_load_worker_t *w, bench_load_conn_t *c, uint64_t wake_ns) {
    load_bump(&w->retries);
    c->state = BENCH_LOAD_WAIT;
    c->wake_ns = wake_ns;
    load_arm(w, wake_ns);
}

void bench_load_record(bench_load_worker_t *w, const bench_load_conn_t *c, uint64_t end_ns,
                       const uint8_t *serial, size_t serial_len, uint32_t csr_index) {
    bench_run_t *run = w->run;
    uint64_t slot = atomic_fetch_add_explicit(&run->num_results, 1, memory_order_relaxed);
    uint64_t us = (end_ns - c->t_start_ns) / 1000;
    run->latency_us[slot] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    bench_serial_t *s = &run->serials[slot];
    s->len = (uint8_t)serial_len;
    memcpy(s->bytes, serial, serial_len);
    s->csr_index = csr_index;
    load_bump(&w->ok);
}

void bench_load_fail(bench_load_worker_t *w, bench_load_conn_t *c, bench_err_t cause,
                     const char *fmt, ...) {
    bench_run_t *run = w->run;
    load_bump(&w->errors);
    w->errors_by[cause]++;
    pthread_mutex_lock(&run->mu);
    if (run->num_errors_shown < BENCH_ERRORS_SHOWN) {
        char *slot = run->errors_shown[run->num_errors_shown++];
        size_t cap = sizeof run->errors_shown[0];
        w->ops->job_str(run, c, slot, cap);
        size_t len = strlen(slot);
        int n = snprintf(slot + len, cap - len, ": %s: ", bench_err_str(cause));
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && len + (size_t)n < cap)
            vsnprintf(slot + len + n, cap - len - (size_t)n, fmt, ap);
        va_end(ap);
        fprintf(stderr, "stampede-bench: error: %s\n", slot);
    }
    pthread_mutex_unlock(&run->mu);
    bench_load_close(c, false);
    bench_load_done(w, c, bench_now_ns());
}

bool bench_load_ssl_blocked(bench_load_worker_t *w, bench_load_conn_t *c, int r,
                            bench_err_t cause, const char *what) {
    int saved_errno = errno;
    int e = SSL_get_error(c->ssl, r);
    char msg[200], where[120];
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return true;
    if (e == SSL_ERROR_SYSCALL)
        snprintf(msg, sizeof msg, "%s", saved_errno ? strerror(saved_errno)
                                                    : "connection closed by the server");
    else if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(msg, sizeof msg, "server sent close_notify");
    else
        bench_tls_error_str(msg, sizeof msg, c->ssl);
    w->ops->where_str(c, where, sizeof where);
    bench_load_fail(w, c, cause, "%s (%s): %s", what, where, msg);
    return false;
}

/* load_tls_begin puts an SSL client object on the connected socket. */
static bool load_tls_begin(bench_load_worker_t *w, bench_load_conn_t *c) {
    c->ssl = SSL_new(w->run->client_ctx);
    if (c->ssl == NULL || !SSL_set_fd(c->ssl, c->fd) ||
        (w->run->sni != NULL && !SSL_set_tlsext_host_name(c->ssl, w->run->sni))) {
        bench_load_fail(w, c, BENCH_E_TLS, "cannot create the SSL object");
        return false;
    }
    SSL_set_connect_state(c->ssl);
    c->state = BENCH_LOAD_HANDSHAKE;
    return true;
}

static void load_drive(bench_load_worker_t *w, bench_load_conn_t *c, uint32_t events);

/* load_connect opens a new non-blocking socket and starts connecting. */
static void load_connect(bench_load_worker_t *w, bench_load_conn_t *c) {
    bench_run_t *run = w->run;
    int one = 1;
    c->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        bench_load_fail(w, c, BENCH_E_CONNECT, "socket: %s", strerror(errno));
        return;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = ((uint64_t)c->index << 32) | c->gen};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
        bench_load_fail(w, c, BENCH_E_CONNECT, "epoll_ctl: %s", strerror(errno));
        return;
    }
    load_bump(&w->connections);
    if (connect(c->fd, (const struct sockaddr *)&run->addr, run->addr_len) == 0) {
        if (load_tls_begin(w, c))
            load_drive(w, c, 0);
    } else if (errno == EINPROGRESS) {
        c->state = BENCH_LOAD_CONNECTING;
    } else {
        bench_load_fail(w, c, BENCH_E_CONNECT, "connect: %s", strerror(errno));
    }
}

/* load_attempt (re)starts the current job: on the established connection
 * if there is one, else on a new one. */
static void load_attempt(bench_load_worker_t *w, bench_load_conn_t *c, uint64_t now) {
    w->ops->begin(w, c);
    c->deadline_ns = now + w->timeout_ns;
    load_arm(w, c->deadline_ns);
    c->t_start_ns = now;
    if (c->established) {
        c->state = w->ops->first;
        load_drive(w, c, 0);
        return;
    }
    bench_load_close(c, false);
    load_connect(w, c);
}

/* load_next takes the next job for `c`, or retires it. */
static void load_next(bench_load_worker_t *w, bench_load_conn_t *c, uint64_t now) {
    bench_run_t *run = w->run;
    uint64_t job;
    if (atomic_load_explicit(&run->stop, memory_order_relaxed) != 0 ||
        (job = atomic_fetch_add_explicit(&run->next_job, 1, memory_order_relaxed)) >=
            run->cfg->count) {
        load_retire(w, c);
        return;
    }
    c->job = job;
    load_attempt(w, c, now);
}

/* load_connected finishes a non-blocking connect and starts TLS. */
static bool load_connected(bench_load_worker_t *w, bench_load_conn_t *c, uint32_t events) {
    int err = 0;
    socklen_t err_len = sizeof err;
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        return false;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
        err = errno;
    if (err != 0) {
        bench_load_fail(w, c, BENCH_E_CONNECT, "connect: %s", strerror(err));
        return false;
    }
    return load_tls_begin(w, c);
}

/* load_step advances `c` by one state; returns false when it has to wait. */
static bool load_step(bench_load_worker_t *w, bench_load_conn_t *c, uint32_t events) {
    int r;
    switch (c->state) {
    case BENCH_LOAD_IDLE:
        return false;
    case BENCH_LOAD_CONNECTING:
        return load_connected(w, c, events);
    case BENCH_LOAD_HANDSHAKE:
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            bench_load_ssl_blocked(w, c, r, BENCH_E_TLS, "TLS handshake");
            return false;
        }
        load_bump(&w->handshakes);
        bench_run_note_tls(w->run, c->ssl);
        c->established = true;
        if (w->run->cfg->keepalive)
            c->t_start_ns = bench_now_ns();   /* keepalive latency: from the send */
        c->state = w->ops->first;
        return true;
    case BENCH_LOAD_NEXT:
    case BENCH_LOAD_WAIT:   /* the server closed an idle keep-alive connection */
        if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            bench_load_close(c, false);
        return false;
    default:
        return w->ops->step(w, c);
    }
}

static void load_drive(bench_load_worker_t *w, bench_load_conn_t *c, uint32_t events) {
    while (load_step(w, c, events))
        ;
}

/* load_conn_timer returns when `c` next needs the timer pass. */
static uint64_t load_conn_timer(const bench_load_conn_t *c, uint64_t now) {
    switch (c->state) {
    case BENCH_LOAD_IDLE:
        return UINT64_MAX;
    case BENCH_LOAD_NEXT:
        return now;
    case BENCH_LOAD_WAIT:
        return c->wake_ns;
    default:
        return c->deadline_ns;
    }
}

/* load_timers serves NEXT and WAIT connections, enforces deadlines and the
 * run's stop request, and sets next_timer_ns. */
static void load_timers(bench_load_worker_t *w, uint64_t now) {
    int stop = atomic_load_explicit(&w->run->stop, memory_order_relaxed);
    uint64_t next = now + LOAD_TICK_NS;
    for (unsigned i = 0; i < w->num_conns; i++) {
        bench_load_conn_t *c = load_conn(w, i);
        switch (c->state) {
        case BENCH_LOAD_IDLE:
            continue;
        case BENCH_LOAD_NEXT:
            load_next(w, c, now);
            break;
        case BENCH_LOAD_WAIT:
            if (stop != 0)
                load_abandon(w, c);
            else if (c->wake_ns <= now)
                load_attempt(w, c, now);
            break;
        default:
            if (stop >= 2)
                load_abandon(w, c);
            else if (c->deadline_ns <= now)
                w->ops->expire(w, c);
            break;
        }
        uint64_t t = load_conn_timer(c, now);
        if (t < next)
            next = t;
    }
    w->next_timer_ns = next;
}

static void *load_worker_main(void *arg) {
    bench_load_worker_t *w = arg;
    struct epoll_event evs[LOAD_EVENTS];
    while (w->active > 0) {
        uint64_t now = bench_now_ns();
        if (now >= w->next_timer_ns)
            load_timers(w, now);
        if (w->active == 0)
            break;
        now = bench_now_ns();
        uint64_t wait_ns = w->next_timer_ns > now ? w->next_timer_ns - now : 0;
        int n = epoll_wait(w->epfd, evs, LOAD_EVENTS, (int)((wait_ns + 999999) / 1000000));
        for (int i = 0; i < n; i++) {
            bench_load_conn_t *c = load_conn(w, (unsigned)(evs[i].data.u64 >> 32));
            if (c->gen == (uint32_t)evs[i].data.u64 && c->fd >= 0)
                load_drive(w, c, evs[i].events);
        }
    }
    atomic_fetch_add(&w->run->workers_done, 1);
    return NULL;
}

static void load_free_workers(bench_run_t *run) {
    for (unsigned t = 0; run->workers != NULL && t < run->num_workers; t++) {
        bench_load_worker_t *w = &run->workers[t];
        for (unsigned i = 0; w->conns != NULL && i < w->num_conns; i++)
            bench_load_close(load_conn(w, i), false);
        if (w->epfd >= 0)
            close(w->epfd);
        free(w->conns);
        free(w->bufs);
        free(w->scratch);
    }
    free(run->workers);
    run->workers = NULL;
    run->num_workers = 0;
}

/* load_worker_init prepares worker `w` with `num_conns` connections. */
static bool load_worker_init(bench_run_t *run, const bench_load_ops_t *ops,
                             bench_load_worker_t *w, unsigned num_conns) {
    w->run = run;
    w->ops = ops;
    w->num_conns = num_conns;
    w->timeout_ns = (uint64_t)(run->cfg->timeout_s * 1e9);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->conns = calloc(num_conns, ops->conn_size);
    w->bufs = malloc((size_t)num_conns * ops->buf_size);
    w->scratch = ops->worker_size > 0 ? calloc(1, ops->worker_size) : NULL;
    if (w->epfd < 0 || w->conns == NULL || w->bufs == NULL ||
        (ops->worker_size > 0 && w->scratch == NULL))
        return false;
    for (unsigned i = 0; i < num_conns; i++) {
        bench_load_conn_t *c = load_conn(w, i);
        c->fd = -1;
        c->index = i;
        c->buf = w->bufs + (size_t)i * ops->buf_size;
        c->state = BENCH_LOAD_NEXT;
    }
    w->active = num_conns;
    w->next_timer_ns = 0;
    return true;
}

bench_err_t bench_load_start(bench_run_t *run, const bench_load_ops_t *ops, char *why,
                             size_t why_len) {
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
        if (!load_worker_init(run, ops, &run->workers[t], conc / num + (t < conc % num))) {
            snprintf(why, why_len, "cannot set up worker %u: %s", t, strerror(errno));
            load_free_workers(run);
            return BENCH_E_SETUP;
        }
    }
    for (unsigned t = 0; t < num; t++) {
        bench_load_worker_t *w = &run->workers[t];
        w->started = pthread_create(&w->thread, NULL, load_worker_main, w) == 0;
        if (!w->started) {
            snprintf(why, why_len, "cannot start worker thread %u", t);
            atomic_store(&run->stop, 2);
            bench_load_join(run, NULL);
            return BENCH_E_SETUP;
        }
    }
    return BENCH_OK;
}

/* load_sum adds the workers' counters into `out`; `all` (the counters by
 * cause and the protocol's own) only after join. */
static void load_sum(const bench_run_t *run, bench_totals_t *out, bool all) {
    memset(out, 0, sizeof *out);
    for (unsigned t = 0; t < run->num_workers; t++) {
        const bench_load_worker_t *w = &run->workers[t];
        out->ok += atomic_load_explicit(&w->ok, memory_order_relaxed);
        out->errors += atomic_load_explicit(&w->errors, memory_order_relaxed);
        out->retries += atomic_load_explicit(&w->retries, memory_order_relaxed);
        out->abandoned += atomic_load_explicit(&w->abandoned, memory_order_relaxed);
        out->connections += atomic_load_explicit(&w->connections, memory_order_relaxed);
        out->handshakes += atomic_load_explicit(&w->handshakes, memory_order_relaxed);
        if (!all)
            continue;
        for (unsigned e = 0; e < BENCH_E__COUNT; e++)
            out->errors_by[e] += w->errors_by[e];
        if (w->ops->sum != NULL)
            w->ops->sum(w->scratch, out);
    }
}

void bench_load_totals(const bench_run_t *run, bench_totals_t *out) {
    load_sum(run, out, false);
}

void bench_load_join(bench_run_t *run, bench_totals_t *totals) {
    for (unsigned t = 0; t < run->num_workers; t++)
        if (run->workers[t].started)
            pthread_join(run->workers[t].thread, NULL);
    if (totals != NULL)
        load_sum(run, totals, true);
    load_free_workers(run);
}

/* ---- preflight connections ------------------------------------------------ */

bench_err_t bench_load_dial(bench_run_t *run, size_t buf_len, bench_load_dial_t *out,
                            char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    struct timeval tv = {.tv_sec = LOAD_DIAL_TIMEOUT_S};
    bench_err_t err = BENCH_E_SETUP;

    out->ssl = NULL;
    out->buf = malloc(buf_len);
    out->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(why, why_len, "out of memory or sockets");
    if (out->buf == NULL || out->fd < 0)
        goto fail;
    setsockopt(out->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(out->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(out->fd, (const struct sockaddr *)&run->addr, run->addr_len) != 0) {
        snprintf(why, why_len, "cannot connect to %s: %s", cfg->connect, strerror(errno));
        err = BENCH_E_CONNECT;
        goto fail;
    }
    out->ssl = SSL_new(run->client_ctx);
    if (out->ssl == NULL || !SSL_set_fd(out->ssl, out->fd) ||
        (run->sni != NULL && !SSL_set_tlsext_host_name(out->ssl, run->sni)) ||
        SSL_connect(out->ssl) != 1) {
        char msg[200];
        bench_tls_error_str(msg, sizeof msg, out->ssl);
        snprintf(why, why_len, "TLS handshake with %s failed: %s", cfg->connect, msg);
        err = BENCH_E_TLS;
        goto fail;
    }
    bench_run_note_tls(run, out->ssl);
    return BENCH_OK;
fail:
    bench_load_hangup(out);
    return err;
}

void bench_load_hangup(bench_load_dial_t *d) {
    if (d->ssl != NULL)
        SSL_free(d->ssl);
    if (d->fd >= 0)
        close(d->fd);
    free(d->buf);
    d->ssl = NULL;
    d->fd = -1;
    d->buf = NULL;
    ERR_clear_error();
}
