/* bench_capf: the CAPF load engine of stampede-bench. T worker threads each
 * drive their share of the C simulated phones with non-blocking sockets, one
 * edge-triggered epoll set, and BoringSSL SSL objects on the socket
 * (SSL_set_fd). Like a real phone, every install is a new TCP connection and
 * a full TLS handshake (no resumption: the client context has no session
 * cache), for its own device (job j installs device j+1 of the plan, which
 * `stampedectl import` provisioned); the phone's conversation is
 * bench_capf_msg.c's session engine, this file only moves its bytes:
 *   reading   until capf_msg_need says one whole server message is in the
 *             buffer, which is handed to the engine as exactly that message;
 *             a message that took several TLS records, or a record that held
 *             more than one, is counted (capf-protocol.md §1.1), not fatal;
 *   writing   each client message with one SSL_write (one TLS record);
 *   closing   after END_SESSION the phone waits for the server's close
 *             (§2.7.4), so the server never writes into a closed socket;
 *             latency is measured from connect to END_SESSION.
 * The key pool's SPKIs are sent round robin (the server binds no key to a
 * device today). Latency and the LSC serial go into result slots reserved
 * before the run: the loop itself allocates nothing (BoringSSL allocates per
 * SSL object).
 *
 * Per phone the state machine is
 *   NEXT -> CONNECTING -> HANDSHAKE -> RECV <-> SEND ... -> CLOSING -> NEXT
 * NEXT is served by the timer pass of the loop, never from inside an event,
 * so a failure that repeats instantly cannot recurse.
 *
 * Thread: bench_capf_start/_totals/_join, the preflight and the plan from
 * the main thread; everything else on its worker. A worker owns its phones
 * and counters; workers share only the job counter, the result-slot counter
 * and the first-errors list (a mutex, taken a few times per run). */
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
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "benches/bench.h"
#include "dataplane/capf_msg.h"

#define PHONE_EVENTS 64                     /* epoll_wait burst */
#define PHONE_TICK_NS 100000000ull          /* longest sleep: how soon a stop is seen */
#define PHONE_SPKI_HINT 300                 /* bytes per SPKI, to size the arena */

typedef enum {
    PHONE_IDLE = 0,  /* no more work */
    PHONE_NEXT,      /* take the next install at the timer pass */
    PHONE_CONNECTING,
    PHONE_HANDSHAKE,
    PHONE_RECV,      /* reading a server message */
    PHONE_SEND,      /* writing the answer in wbuf */
    PHONE_CLOSING,   /* END_SESSION read: waiting for the server's close */
    PHONE__COUNT
} phone_state_t;

static const char *const phone_state_name[PHONE__COUNT] = {
    [PHONE_IDLE] = "idle", [PHONE_NEXT] = "next", [PHONE_CONNECTING] = "connecting",
    [PHONE_HANDSHAKE] = "handshake", [PHONE_RECV] = "receiving", [PHONE_SEND] = "sending",
    [PHONE_CLOSING] = "closing"};

/* phone_t: one simulated phone (one connection slot). */
typedef struct {
    phone_state_t state;
    int fd;
    uint32_t gen;               /* bumped per socket: stale epoll events are dropped */
    uint32_t index;
    SSL *ssl;
    uint64_t job;               /* install number; the device is job + 1 */
    bench_capf_sess_t sess;
    bench_capf_step_t outcome;  /* CLOSING: DONE or DECLINED */
    uint8_t *rbuf;              /* BENCH_CAPF_RBUF bytes, in the worker's block */
    size_t rlen;
    unsigned records;           /* SSL_reads that brought the bytes in rbuf */
    unsigned msgs;              /* server messages of this session */
    uint8_t *wbuf;              /* BENCH_CAPF_WBUF bytes */
    size_t wlen;
    uint64_t t_start_ns;        /* connect */
    uint64_t t_end_ns;          /* END_SESSION read */
    uint64_t deadline_ns;
} phone_t;

struct bench_capf_worker {
    bench_run_t *run;
    pthread_t thread;
    bool started;
    int epfd;
    phone_t *phones;
    unsigned num_phones;
    unsigned active;            /* phones not PHONE_IDLE */
    uint64_t next_timer_ns;     /* earliest NEXT or deadline */
    uint64_t timeout_ns;
    uint8_t *bufs;
    /* Read after join. */
    uint64_t errors_by[BENCH_E__COUNT];
    uint64_t declined_by[BENCH_CAPF_AFTER__COUNT][256];
    uint64_t split_msgs, merged_msgs;
    /* Written by this worker only, read relaxed by the main thread. */
    _Alignas(64) _Atomic uint64_t ok, errors, abandoned, connections, handshakes;
};

static void phone_bump(_Atomic uint64_t *c) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void phone_arm(bench_capf_worker_t *w, uint64_t t) {
    if (t < w->next_timer_ns)
        w->next_timer_ns = t;
}

/* phone_close drops the SSL object and the socket; the job and state stay.
 * No close_notify: a phone just closes (and by then the server has closed
 * or the session failed). */
static void phone_close(phone_t *p) {
    if (p->ssl != NULL) {
        SSL_free(p->ssl);
        p->ssl = NULL;
    }
    if (p->fd >= 0) {
        close(p->fd);                         /* also leaves the epoll set */
        p->fd = -1;
    }
    p->gen++;
    ERR_clear_error();
}

static void phone_retire(bench_capf_worker_t *w, phone_t *p) {
    phone_close(p);
    if (p->state != PHONE_IDLE) {
        p->state = PHONE_IDLE;
        w->active--;
    }
}

/* phone_done ends the current install; the timer pass takes the next one. */
static void phone_done(bench_capf_worker_t *w, phone_t *p, uint64_t now) {
    phone_close(p);
    p->state = PHONE_NEXT;
    phone_arm(w, now);
}

/* phone_fail counts a failed install, shows it if it is among the first
 * few, drops the connection and moves on. */
__attribute__((format(printf, 4, 5)))
static void phone_fail(bench_capf_worker_t *w, phone_t *p, bench_err_t cause, const char *fmt,
                       ...) {
    bench_run_t *run = w->run;
    phone_bump(&w->errors);
    w->errors_by[cause]++;
    pthread_mutex_lock(&run->mu);
    if (run->num_errors_shown < BENCH_ERRORS_SHOWN) {
        char *slot = run->errors_shown[run->num_errors_shown++];
        size_t cap = sizeof run->errors_shown[0];
        int n = snprintf(slot, cap, "install %llu (device %s, session %08x): %s: ",
                         (unsigned long long)p->job, p->sess.device, p->sess.session_id,
                         bench_err_str(cause));
        va_list ap;
        va_start(ap, fmt);
        if (n > 0 && (size_t)n < cap)
            vsnprintf(slot + n, cap - (size_t)n, fmt, ap);
        va_end(ap);
        fprintf(stderr, "stampede-bench: error: %s\n", slot);
    }
    pthread_mutex_unlock(&run->mu);
    phone_done(w, p, bench_now_ns());
}

/* phone_ssl_blocked returns true if the SSL call that returned `r` only has
 * to wait for the socket; otherwise it fails the install with `cause`. */
static bool phone_ssl_blocked(bench_capf_worker_t *w, phone_t *p, int r, bench_err_t cause,
                              const char *what) {
    int saved_errno = errno;
    int e = SSL_get_error(p->ssl, r);
    char msg[200];
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return true;
    if (e == SSL_ERROR_SYSCALL)
        snprintf(msg, sizeof msg, "%s", saved_errno ? strerror(saved_errno)
                                                    : "connection closed by the server");
    else if (e == SSL_ERROR_ZERO_RETURN)
        snprintf(msg, sizeof msg, "server sent close_notify");
    else
        bench_tls_error_str(msg, sizeof msg, p->ssl);
    phone_fail(w, p, cause, "%s (%s, waiting for %s): %s", what, phone_state_name[p->state],
               bench_capf_state_str(p->sess.state), msg);
    return false;
}

/* phone_tls_begin puts an SSL client object on the connected socket. */
static bool phone_tls_begin(bench_capf_worker_t *w, phone_t *p) {
    p->ssl = SSL_new(w->run->client_ctx);
    if (p->ssl == NULL || !SSL_set_fd(p->ssl, p->fd) ||
        (w->run->sni != NULL && !SSL_set_tlsext_host_name(p->ssl, w->run->sni))) {
        phone_fail(w, p, BENCH_E_TLS, "cannot create the SSL object");
        return false;
    }
    SSL_set_connect_state(p->ssl);
    p->state = PHONE_HANDSHAKE;
    return true;
}

static void phone_drive(bench_capf_worker_t *w, phone_t *p, uint32_t events);

/* phone_connect opens a new non-blocking socket and starts connecting. */
static void phone_connect(bench_capf_worker_t *w, phone_t *p) {
    bench_run_t *run = w->run;
    int one = 1;
    p->fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        phone_fail(w, p, BENCH_E_CONNECT, "socket: %s", strerror(errno));
        return;
    }
    setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    p->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             .data.u64 = ((uint64_t)p->index << 32) | p->gen};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, p->fd, &ev) != 0) {
        phone_fail(w, p, BENCH_E_CONNECT, "epoll_ctl: %s", strerror(errno));
        return;
    }
    phone_bump(&w->connections);
    if (connect(p->fd, (const struct sockaddr *)&run->addr, run->addr_len) == 0) {
        if (phone_tls_begin(w, p))
            phone_drive(w, p, 0);
    } else if (errno == EINPROGRESS) {
        p->state = PHONE_CONNECTING;
    } else {
        phone_fail(w, p, BENCH_E_CONNECT, "connect: %s", strerror(errno));
    }
}

/* phone_next takes the next install for `p`, or retires it. */
static void phone_next(bench_capf_worker_t *w, phone_t *p, uint64_t now) {
    bench_run_t *run = w->run;
    const bench_capf_plan_t *plan = run->capf;
    char device[BENCH_CAPF_NAME_MAX + 1];
    uint64_t job;
    if (atomic_load_explicit(&run->stop, memory_order_relaxed) != 0 ||
        (job = atomic_fetch_add_explicit(&run->next_job, 1, memory_order_relaxed)) >=
            run->cfg->count) {
        phone_retire(w, p);
        return;
    }
    p->job = job;
    bench_capf_name(&plan->names, job + 1, device);
    bench_capf_sess_init(&p->sess, plan->version, plan->key_type, device,
                         plan->spkis[job % plan->num_spkis]);
    p->rlen = p->wlen = 0;
    p->records = p->msgs = 0;
    p->t_start_ns = now;
    p->deadline_ns = now + w->timeout_ns;
    phone_arm(w, p->deadline_ns);
    phone_close(p);
    phone_connect(w, p);
}

static void phone_abandon(bench_capf_worker_t *w, phone_t *p) {
    phone_bump(&w->abandoned);
    phone_retire(w, p);
}

/* phone_finish books the session once the server has closed: a success
 * (latency, serial) or a decline (by stage and reason). */
static void phone_finish(bench_capf_worker_t *w, phone_t *p) {
    bench_run_t *run = w->run;
    const bench_capf_sess_t *s = &p->sess;
    if (p->outcome != BENCH_CAPF_DONE) {
        w->declined_by[s->end_stage][s->end_reason]++;
        phone_fail(w, p, BENCH_E_DECLINED, "END_SESSION %02x (%s) after %s", s->end_reason,
                   capf_reason_str(s->end_reason), bench_capf_stage_str(s->end_stage));
        return;
    }
    uint64_t slot = atomic_fetch_add_explicit(&run->num_results, 1, memory_order_relaxed);
    uint64_t us = (p->t_end_ns - p->t_start_ns) / 1000;
    run->latency_us[slot] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    bench_serial_t *out = &run->serials[slot];
    out->len = s->serial_len;
    memcpy(out->bytes, s->serial, s->serial_len);
    out->csr_index = (uint32_t)p->job;        /* one device per install */
    phone_bump(&w->ok);
    phone_done(w, p, bench_now_ns());
}

/* phone_message hands the message at the start of rbuf (`len` bytes) to the
 * session and acts on its step. Returns true to keep driving. */
static bool phone_message(bench_capf_worker_t *w, phone_t *p, size_t len) {
    uint8_t *unused;
    size_t rest = p->rlen - len;
    CBB out;
    if (p->records > 1)
        w->split_msgs++;
    if (rest > 0)
        w->merged_msgs++;
    CBB_init_fixed(&out, p->wbuf, BENCH_CAPF_WBUF);
    bench_capf_step_t st = bench_capf_sess_on_msg(&p->sess, p->rbuf, len, &out);
    p->msgs++;
    memmove(p->rbuf, p->rbuf + len, rest);
    p->rlen = rest;
    p->records = rest > 0;
    if (st == BENCH_CAPF_BAD) {
        CBB_cleanup(&out);
        phone_fail(w, p, BENCH_E_CAPF, "%s", p->sess.why);
        return false;
    }
    if (rest > 0) {                           /* lockstep protocol: nothing may follow */
        CBB_cleanup(&out);
        phone_fail(w, p, BENCH_E_CAPF, "%zu bytes came right after %s", rest,
                   st == BENCH_CAPF_SEND ? "a request, before the phone answered"
                                         : "END_SESSION");
        return false;
    }
    if (st == BENCH_CAPF_SEND) {
        if (!CBB_finish(&out, &unused, &p->wlen)) {
            phone_fail(w, p, BENCH_E_CAPF, "client message does not fit");
            return false;
        }
        p->state = PHONE_SEND;
        return true;
    }
    CBB_cleanup(&out);
    p->t_end_ns = bench_now_ns();
    p->outcome = st;
    p->state = PHONE_CLOSING;
    return true;
}

/* phone_recv reads server bytes until one whole message is there. Returns
 * true to keep driving. */
static bool phone_recv(bench_capf_worker_t *w, phone_t *p) {
    size_t need = 0;
    capf_err_t e = capf_msg_need(p->rbuf, p->rlen, &need);
    if (e == CAPF_OK)
        return phone_message(w, p, need);
    if (e != CAPF_PARTIAL) {
        phone_fail(w, p, BENCH_E_CAPF, "framing where %s was due: %s",
                   bench_capf_state_str(p->sess.state), capf_err_str(e));
        return false;
    }
    if (need > BENCH_CAPF_RBUF) {
        phone_fail(w, p, BENCH_E_TOO_LARGE, "a %zu-byte message where %s was due", need,
                   bench_capf_state_str(p->sess.state));
        return false;
    }
    int r = SSL_read(p->ssl, p->rbuf + p->rlen, (int)(BENCH_CAPF_RBUF - p->rlen));
    if (r > 0) {
        p->rlen += (size_t)r;
        p->records++;
        return true;
    }
    int se = SSL_get_error(p->ssl, r);
    if (se == SSL_ERROR_ZERO_RETURN || se == SSL_ERROR_SYSCALL) {
        phone_fail(w, p, BENCH_E_CLOSED, "the server closed the connection where %s was due "
                   "(after %u messages; %zu bytes of the next)",
                   bench_capf_state_str(p->sess.state), p->msgs, p->rlen);
        return false;
    }
    phone_ssl_blocked(w, p, r, BENCH_E_TLS, "reading");
    return false;
}

/* phone_send writes the client message with one SSL_write (one record). */
static bool phone_send(bench_capf_worker_t *w, phone_t *p) {
    int r = SSL_write(p->ssl, p->wbuf, (int)p->wlen);
    if (r <= 0) {
        phone_ssl_blocked(w, p, r, BENCH_E_CLOSED, "writing");
        return false;
    }
    if ((size_t)r != p->wlen) {
        phone_fail(w, p, BENCH_E_TLS, "SSL_write took %d of %zu bytes", r, p->wlen);
        return false;
    }
    p->wlen = 0;
    p->state = PHONE_RECV;
    return true;
}

/* phone_closing waits for the server's close after END_SESSION. */
static bool phone_closing(bench_capf_worker_t *w, phone_t *p) {
    int r = SSL_read(p->ssl, p->rbuf, BENCH_CAPF_RBUF);
    if (r > 0) {
        phone_fail(w, p, BENCH_E_CAPF, "%d bytes after END_SESSION (§2.7.4: it is the last "
                   "message)", r);
        return false;
    }
    int e = SSL_get_error(p->ssl, r);
    if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL) {  /* close_notify, FIN, RST */
        phone_finish(w, p);
        return false;
    }
    phone_ssl_blocked(w, p, r, BENCH_E_TLS, "waiting for the close after END_SESSION");
    return false;
}

/* phone_step advances `p` by one state; returns false when it has to wait. */
static bool phone_step(bench_capf_worker_t *w, phone_t *p, uint32_t events) {
    int r, err = 0;
    socklen_t err_len = sizeof err;
    switch (p->state) {
    case PHONE_CONNECTING:
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return false;
        if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0)
            err = errno;
        if (err != 0) {
            phone_fail(w, p, BENCH_E_CONNECT, "connect: %s", strerror(err));
            return false;
        }
        return phone_tls_begin(w, p);
    case PHONE_HANDSHAKE:
        r = SSL_do_handshake(p->ssl);
        if (r != 1) {
            phone_ssl_blocked(w, p, r, BENCH_E_TLS, "TLS handshake");
            return false;
        }
        phone_bump(&w->handshakes);
        bench_run_note_tls(w->run, p->ssl);
        p->state = PHONE_RECV;                /* the server speaks first */
        return true;
    case PHONE_RECV:
        return phone_recv(w, p);
    case PHONE_SEND:
        return phone_send(w, p);
    case PHONE_CLOSING:
        return phone_closing(w, p);
    default:
        return false;
    }
}

static void phone_drive(bench_capf_worker_t *w, phone_t *p, uint32_t events) {
    while (phone_step(w, p, events))
        ;
}

/* phone_timers serves NEXT phones, enforces deadlines and the run's stop
 * request, and sets next_timer_ns. */
static void phone_timers(bench_capf_worker_t *w, uint64_t now) {
    int stop = atomic_load_explicit(&w->run->stop, memory_order_relaxed);
    uint64_t next = now + PHONE_TICK_NS;
    for (unsigned i = 0; i < w->num_phones; i++) {
        phone_t *p = &w->phones[i];
        switch (p->state) {
        case PHONE_IDLE:
            continue;
        case PHONE_NEXT:
            phone_next(w, p, now);
            break;
        default:
            if (stop >= 2)
                phone_abandon(w, p);
            else if (p->deadline_ns <= now)
                phone_fail(w, p, BENCH_E_TIMEOUT, "no %s within %.1f s (%s, %u messages read)",
                           p->state == PHONE_CLOSING ? "close after END_SESSION"
                                                     : bench_capf_state_str(p->sess.state),
                           w->run->cfg->timeout_s, phone_state_name[p->state], p->msgs);
            break;
        }
        uint64_t t = p->state == PHONE_IDLE ? UINT64_MAX
                     : p->state == PHONE_NEXT ? now
                                              : p->deadline_ns;
        if (t < next)
            next = t;
    }
    w->next_timer_ns = next;
}

static void *phone_worker_main(void *arg) {
    bench_capf_worker_t *w = arg;
    struct epoll_event evs[PHONE_EVENTS];
    while (w->active > 0) {
        uint64_t now = bench_now_ns();
        if (now >= w->next_timer_ns)
            phone_timers(w, now);
        if (w->active == 0)
            break;
        now = bench_now_ns();
        uint64_t wait_ns = w->next_timer_ns > now ? w->next_timer_ns - now : 0;
        int n = epoll_wait(w->epfd, evs, PHONE_EVENTS, (int)((wait_ns + 999999) / 1000000));
        for (int i = 0; i < n; i++) {
            phone_t *p = &w->phones[evs[i].data.u64 >> 32];
            if (p->gen == (uint32_t)evs[i].data.u64 && p->fd >= 0)
                phone_drive(w, p, evs[i].events);
        }
    }
    atomic_fetch_add(&w->run->workers_done, 1);
    return NULL;
}

static void phone_free_workers(bench_run_t *run) {
    for (unsigned t = 0; run->capf_workers != NULL && t < run->num_workers; t++) {
        bench_capf_worker_t *w = &run->capf_workers[t];
        for (unsigned i = 0; w->phones != NULL && i < w->num_phones; i++)
            phone_close(&w->phones[i]);
        if (w->epfd >= 0)
            close(w->epfd);
        free(w->phones);
        free(w->bufs);
    }
    free(run->capf_workers);
    run->capf_workers = NULL;
    run->num_workers = 0;
}

/* phone_worker_init prepares worker `w` with `num` phones. */
static bool phone_worker_init(bench_run_t *run, bench_capf_worker_t *w, unsigned num) {
    size_t per = BENCH_CAPF_RBUF + BENCH_CAPF_WBUF;
    w->run = run;
    w->num_phones = num;
    w->timeout_ns = (uint64_t)(run->cfg->timeout_s * 1e9);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    w->phones = calloc(num, sizeof *w->phones);
    w->bufs = malloc((size_t)num * per);
    if (w->epfd < 0 || w->phones == NULL || w->bufs == NULL)
        return false;
    for (unsigned i = 0; i < num; i++) {
        phone_t *p = &w->phones[i];
        p->fd = -1;
        p->index = i;
        p->rbuf = w->bufs + (size_t)i * per;
        p->wbuf = p->rbuf + BENCH_CAPF_RBUF;
        p->state = PHONE_NEXT;
    }
    w->active = num;
    w->next_timer_ns = 0;
    return true;
}

bench_err_t bench_capf_start(bench_run_t *run, char *why, size_t why_len) {
    unsigned num = (unsigned)run->cfg->threads;
    unsigned conc = (unsigned)run->cfg->concurrency;
    size_t bytes = num * sizeof *run->capf_workers;
    run->capf_workers = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (run->capf_workers == NULL) {
        snprintf(why, why_len, "out of memory for workers");
        return BENCH_E_SETUP;
    }
    memset(run->capf_workers, 0, bytes);
    run->num_workers = num;
    for (unsigned t = 0; t < num; t++)
        run->capf_workers[t].epfd = -1;
    for (unsigned t = 0; t < num; t++) {
        if (!phone_worker_init(run, &run->capf_workers[t], conc / num + (t < conc % num))) {
            snprintf(why, why_len, "cannot set up worker %u: %s", t, strerror(errno));
            phone_free_workers(run);
            return BENCH_E_SETUP;
        }
    }
    for (unsigned t = 0; t < num; t++) {
        bench_capf_worker_t *w = &run->capf_workers[t];
        w->started = pthread_create(&w->thread, NULL, phone_worker_main, w) == 0;
        if (!w->started) {
            snprintf(why, why_len, "cannot start worker thread %u", t);
            atomic_store(&run->stop, 2);
            bench_capf_join(run, NULL);
            return BENCH_E_SETUP;
        }
    }
    return BENCH_OK;
}

/* phone_sum adds the workers' counters into `out`; `all` only after join. */
static void phone_sum(const bench_run_t *run, bench_totals_t *out, bool all) {
    memset(out, 0, sizeof *out);
    for (unsigned t = 0; t < run->num_workers; t++) {
        const bench_capf_worker_t *w = &run->capf_workers[t];
        out->ok += atomic_load_explicit(&w->ok, memory_order_relaxed);
        out->errors += atomic_load_explicit(&w->errors, memory_order_relaxed);
        out->abandoned += atomic_load_explicit(&w->abandoned, memory_order_relaxed);
        out->connections += atomic_load_explicit(&w->connections, memory_order_relaxed);
        out->handshakes += atomic_load_explicit(&w->handshakes, memory_order_relaxed);
        if (!all)
            continue;
        for (unsigned e = 0; e < BENCH_E__COUNT; e++)
            out->errors_by[e] += w->errors_by[e];
        for (unsigned st = 0; st < BENCH_CAPF_AFTER__COUNT; st++)
            for (unsigned r = 0; r < 256; r++)
                out->declined_by[st][r] += w->declined_by[st][r];
        out->split_msgs += w->split_msgs;
        out->merged_msgs += w->merged_msgs;
    }
}

void bench_capf_totals(const bench_run_t *run, bench_totals_t *out) {
    phone_sum(run, out, false);
}

void bench_capf_join(bench_run_t *run, bench_totals_t *totals) {
    for (unsigned t = 0; t < run->num_workers; t++)
        if (run->capf_workers[t].started)
            pthread_join(run->capf_workers[t].thread, NULL);
    if (totals != NULL)
        phone_sum(run, totals, true);
    phone_free_workers(run);
}

/* ---- the plan ---------------------------------------------------------------- */

bench_err_t bench_capf_plan_build(bench_capf_plan_t *plan, const bench_cfg_t *cfg,
                                  const bench_keys_t *keys, char *why, size_t why_len) {
    size_t *ends = calloc(keys->num_keys, sizeof *ends), len = 0;
    bench_err_t err = BENCH_E_CRYPTO;
    CBB arena;

    memset(plan, 0, sizeof *plan);
    CBB_zero(&arena);
    plan->version = (uint8_t)cfg->capf_version;
    plan->key_type = cfg->key_type;
    if (bench_capf_names_init(&plan->names, cfg->devices, cfg->count, why, why_len) != BENCH_OK) {
        free(ends);
        return BENCH_E_SETUP;
    }
    bench_capf_name(&plan->names, 1, plan->device1);
    plan->spkis = calloc(keys->num_keys, sizeof *plan->spkis);
    snprintf(why, why_len, "cannot encode the public keys of the pool");
    if (ends == NULL || plan->spkis == NULL ||
        !CBB_init(&arena, keys->num_keys * PHONE_SPKI_HINT))
        goto out;
    for (size_t i = 0; i < keys->num_keys; i++) {
        if (!EVP_marshal_public_key(&arena, keys->keys[i]))
            goto out;
        ends[i] = CBB_len(&arena);
    }
    if (!CBB_finish(&arena, &plan->arena, &len))
        goto out;
    for (size_t i = 0; i < keys->num_keys; i++) {
        size_t start = i == 0 ? 0 : ends[i - 1];
        CBS_init(&plan->spkis[i], plan->arena + start, ends[i] - start);
    }
    plan->num_spkis = keys->num_keys;
    err = BENCH_OK;
out:
    CBB_cleanup(&arena);
    free(ends);
    ERR_clear_error();
    if (err != BENCH_OK)
        bench_capf_plan_cleanup(plan);
    return err;
}

void bench_capf_plan_cleanup(bench_capf_plan_t *plan) {
    OPENSSL_free(plan->arena);
    free(plan->spkis);
    memset(plan, 0, sizeof *plan);
}

/* ---- preflight ------------------------------------------------------------- */

/* preflight_read reads one whole server message from the blocking `ssl`
 * into `buf` (BENCH_CAPF_RBUF bytes), never past its end. */
static bench_err_t preflight_read(SSL *ssl, uint8_t *buf, size_t *msg_len, char *why,
                                  size_t why_len) {
    size_t len = 0, need = 0;
    for (;;) {
        capf_err_t e = capf_msg_need(buf, len, &need);
        if (e == CAPF_OK) {
            *msg_len = need;
            return BENCH_OK;
        }
        if (e != CAPF_PARTIAL || need > BENCH_CAPF_RBUF) {
            snprintf(why, why_len, "framing: %s", e != CAPF_PARTIAL ? capf_err_str(e)
                                                                    : "message too large");
            return BENCH_E_CAPF;
        }
        int r = SSL_read(ssl, buf + len, (int)(need - len));
        if (r <= 0) {
            snprintf(why, why_len, "the server closed the connection (or timed out) after "
                     "%zu bytes of a message", len);
            return BENCH_E_CLOSED;
        }
        len += (size_t)r;
    }
}

/* preflight_cred returns which of DIR/ca.crt and DIR/tls.crt the server
 * presented as its leaf ("ca" or "tls"), or NULL if neither. */
static const char *preflight_cred(const bench_cfg_t *cfg, const SSL *ssl) {
    static const char *const names[] = {"ca", "tls"};
    const STACK_OF(CRYPTO_BUFFER) *chain = SSL_get0_peer_certificates(ssl);
    const char *found = NULL;
    if (chain == NULL || sk_CRYPTO_BUFFER_num(chain) == 0)
        return NULL;
    const CRYPTO_BUFFER *leaf = sk_CRYPTO_BUFFER_value(chain, 0);
    for (size_t i = 0; i < sizeof names / sizeof names[0] && found == NULL; i++) {
        char file[16], path[4096];
        uint8_t *der = NULL;
        snprintf(file, sizeof file, "%s.crt", names[i]);
        if (bench_path(path, sizeof path, cfg->data_dir, file) != BENCH_OK)
            continue;
        BIO *bio = BIO_new_file(path, "r");
        X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        int len = x != NULL ? i2d_X509(x, &der) : -1;
        if (len > 0 && (size_t)len == CRYPTO_BUFFER_len(leaf) &&
            memcmp(der, CRYPTO_BUFFER_data(leaf), (size_t)len) == 0)
            found = names[i];
        OPENSSL_free(der);
        X509_free(x);
        BIO_free(bio);
    }
    ERR_clear_error();
    return found;
}

/* preflight_probe runs the probe session on the connected `ssl`. */
static bench_err_t preflight_probe(bench_run_t *run, SSL *ssl, uint8_t *buf,
                                   bench_capf_sess_t *s, char *why, size_t why_len) {
    uint8_t *out_data;
    size_t len, out_len;
    CBB out;
    bench_err_t err = preflight_read(ssl, buf, &len, why, why_len);
    if (err != BENCH_OK)
        return err;
    CBS none;
    CBS_init(&none, NULL, 0);
    bench_capf_sess_init(s, (uint8_t)run->cfg->capf_version, run->cfg->key_type,
                         BENCH_CAPF_PROBE, none);
    CBB_init_fixed(&out, buf + BENCH_CAPF_RBUF, BENCH_CAPF_WBUF);
    if (bench_capf_sess_on_msg(s, buf, len, &out) != BENCH_CAPF_SEND ||
        !CBB_finish(&out, &out_data, &out_len)) {
        CBB_cleanup(&out);
        snprintf(why, why_len, "hello: %s", s->why);
        return BENCH_E_CAPF;
    }
    if (SSL_write(ssl, out_data, (int)out_len) != (int)out_len) {
        snprintf(why, why_len, "cannot send AUTH_RESPONSE");
        return BENCH_E_CLOSED;
    }
    if ((err = preflight_read(ssl, buf, &len, why, why_len)) != BENCH_OK)
        return err;
    CBB_init_fixed(&out, buf + BENCH_CAPF_RBUF, BENCH_CAPF_WBUF);
    bench_capf_step_t st = bench_capf_sess_on_msg(s, buf, len, &out);
    CBB_cleanup(&out);
    if (st == BENCH_CAPF_DECLINED && s->end_reason == CAPF_REASON_UNKNOWN_DEVICE)
        return BENCH_OK;
    if (st == BENCH_CAPF_DECLINED)
        snprintf(why, why_len, "device %s: END_SESSION %02x (%s), expected 09 (unknown device)",
                 BENCH_CAPF_PROBE, s->end_reason, capf_reason_str(s->end_reason));
    else if (st == BENCH_CAPF_BAD)
        snprintf(why, why_len, "device %s: %s", BENCH_CAPF_PROBE, s->why);
    else
        snprintf(why, why_len, "device %s exists: the server asked for a key", BENCH_CAPF_PROBE);
    return st == BENCH_CAPF_DECLINED ? BENCH_E_DECLINED : BENCH_E_CAPF;
}

bench_err_t bench_capf_preflight(bench_run_t *run, char *info, size_t info_len,
                                 char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    struct timeval tv = {.tv_sec = 5};
    char tls[160];
    bench_capf_sess_t sess;
    bench_err_t err = BENCH_E_SETUP;
    SSL *ssl = NULL;
    uint8_t *buf = malloc(BENCH_CAPF_RBUF + BENCH_CAPF_WBUF);
    int fd = socket(run->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    memset(&sess, 0, sizeof sess);
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
    run->crypto_in.tls_name = preflight_cred(cfg, ssl);
    err = preflight_probe(run, ssl, buf, &sess, why, why_len);
    bench_tls_params_str(tls, sizeof tls, &run->tls);
    snprintf(info, info_len, "%s, %s, certificate %s: hello (session %08x), probe device %s %s",
             cfg->connect, tls,
             run->crypto_in.tls_name == NULL ? "neither DIR/ca.crt nor DIR/tls.crt (crypto "
                                               "measured with tls.key)"
             : strcmp(run->crypto_in.tls_name, "ca") == 0 ? "DIR/ca.crt"
                                                          : "DIR/tls.crt",
             sess.session_id, BENCH_CAPF_PROBE,
             err == BENCH_OK ? "declined with END_SESSION 09 (unknown device) as expected"
                             : "answered unexpectedly");
out:
    if (ssl != NULL)
        SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    free(buf);
    ERR_clear_error();
    return err;
}
