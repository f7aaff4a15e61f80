/* dp_core: polling-core housekeeping: per-core pools of sessions and
 * buffers, deadline lists, the completion queue from the signing pool, and
 * the thread itself (see dp_core.h). The protocol work of a session is in
 * dp_sess.c; the event loop is the transport's (dp_kernel.c).
 * Thread: polling core only, except dp_core_init/start/cleanup (startup). */
#include "dataplane/dp_core.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <urcu/uatomic.h>

#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"

/* Implemented in dp_sess.c. */
void dp_sess_job_done(dp_sess_t *s, dp_buf_t *b);
void dp_sess_keyop_done(dp_sess_t *s, dp_keyop_t *k);
void dp_sess_timeout(dp_sess_t *s);
void dp_sess_drain(dp_sess_t *s);
/* Implemented in dp_capf.c. */
void dp_capf_job_done(dp_sess_t *s, dp_buf_t *b);
void dp_capf_buf_put(dp_buf_t *b);
void dp_capf_service(dp_core_t *c);
void dp_capf_cleanup(dp_core_t *c);
size_t dp_capf_buf_need(void);

int64_t dp_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int dp_core_init(dp_core_t *c, dp_runtime_t *rt, unsigned id) {
    memset(c, 0, sizeof(*c));
    c->id = id;
    c->rt = rt;
    c->epfd = -1;
    c->est_listener = (dp_listener_t){.poll_type = DP_POLL_LISTENER, .proto = DP_PROTO_EST, .fd = -1};
    c->capf_listener = (dp_listener_t){.poll_type = DP_POLL_LISTENER, .proto = DP_PROTO_CAPF, .fd = -1};
    c->event_poll_type = DP_POLL_EVENT;
    for (int k = 0; k < DP_T__COUNT; k++) CDS_INIT_LIST_HEAD(&c->timers[k]);
    const dp_config_t *cfg = &rt->cfg;
    c->timeout_ms[DP_T_HANDSHAKE] = (int64_t)cfg->handshake_timeout * 1000;
    c->timeout_ms[DP_T_HEADER] = (int64_t)cfg->header_timeout * 1000;
    c->timeout_ms[DP_T_BODY] = (int64_t)cfg->body_timeout * 1000;
    c->timeout_ms[DP_T_IDLE] = (int64_t)cfg->idle_timeout * 1000;
    c->timeout_ms[DP_T_WRITE] = (int64_t)cfg->body_timeout * 1000;
    c->timeout_ms[DP_T_LINGER] = cfg->close_linger_ms;
    c->timeout_ms[DP_T_CAPF_AUTH] = (int64_t)cfg->capf_auth_timeout * 1000;
    c->timeout_ms[DP_T_CAPF_KEYGEN] = (int64_t)cfg->capf_keygen_timeout * 1000;
    c->timeout_ms[DP_T_CAPF_REPLY] = (int64_t)cfg->capf_reply_timeout * 1000;
    c->timeout_ms[DP_T_ONLINE] = cfg->online_wait_ms;
    c->timeout_ms[DP_T_CAPF_ONLINE] = (int64_t)cfg->capf_online_timeout * 1000;
    c->capf_max_parked = (cfg->capf_max_keygen + rt->num_cores - 1) / rt->num_cores;
    /* request (header + body) + room for the longest response: the largest
     * CSR a body can carry (3/4 of it) becomes a slightly larger certificate,
     * wrapped in PKCS#7 and base64 again (4/3 + CRLFs), plus headers; then
     * the CSR's and the certificate's DER kept for the request record
     * (3/4 of max_body each, plus the certificate's own fields). */
    c->buf_cap = cfg->max_header + cfg->max_body + cfg->max_body + cfg->max_body / 2 + 4096 +
                 cfg->max_body / 4 * 3 * 2 + 2048;
    /* A CAPF session lays its messages, the LSC and the upstream request
     * out in the same buffer (dp_capf.c): small EST limits must not shrink
     * it below that. */
    if (cfg->capf_listen[0] && c->buf_cap < dp_capf_buf_need()) c->buf_cap = dp_capf_buf_need();
    c->scratch_cap = c->buf_cap;
    dp_redis_init(&c->redis, c, rt->est.registry ? &rt->redis_addr : NULL, (int64_t)cfg->redis_timeout_ms);
    if (cfg->max_per_address && dp_addrcap_init(&c->addrs, cfg->max_sessions)) return -1;
    if (dp_online_init(c)) return -1;
    c->scratch = malloc(c->scratch_cap);
    c->tx = malloc(DP_TX_CAP);
    c->rx = malloc(DP_RX_CAP);
    return c->scratch && c->tx && c->rx ? 0 : -1;
}

/* ---- timers ---- */

void dp_timer_arm(dp_sess_t *s, dp_timer_kind_t k) {
    dp_core_t *c = s->core;
    if (s->timer != DP_T_NONE) cds_list_del(&s->timer_link);
    s->timer = (uint8_t)k;
    if (k == DP_T_NONE) return;
    s->deadline_ms = c->now_ms + c->timeout_ms[k];
    cds_list_add_tail(&s->timer_link, &c->timers[k]);
}

static int dp_timers_expire(dp_core_t *c, int max_wait_ms) {
    int64_t next = c->now_ms + max_wait_ms;
    for (int k = 0; k < DP_T__COUNT; k++) {
        while (!cds_list_empty(&c->timers[k])) {
            dp_sess_t *s = cds_list_first_entry(&c->timers[k], dp_sess_t, timer_link);
            if (s->deadline_ms > c->now_ms) {
                if (s->deadline_ms < next) next = s->deadline_ms;
                break;
            }
            c->stats.timeouts++;
            dp_sess_timeout(s); /* disarms or frees s */
        }
    }
    int64_t wait = next - c->now_ms;
    return wait < 0 ? 0 : (int)wait;
}

/* ---- pools ---- */

dp_sess_t *dp_sess_alloc(dp_core_t *c) {
    if (c->num_sess >= c->rt->cfg.max_sessions) return NULL;
    dp_sess_t *s = c->free_sess;
    if (s) c->free_sess = s->next_free;
    else if (!(s = malloc(sizeof(*s)))) return NULL;
    memset(s, 0, sizeof(*s));
    s->poll_type = DP_POLL_SESS;
    s->timer = DP_T_NONE;
    s->core = c;
    c->num_sess++;
    return s;
}

void dp_sess_release(dp_sess_t *s) {
    dp_core_t *c = s->core;
    s->next_free = c->free_sess;
    c->free_sess = s;
    c->num_sess--;
}

dp_buf_t *dp_buf_get(dp_core_t *c) {
    dp_buf_t *b = c->free_bufs;
    if (b) {
        c->free_bufs = b->next_free;
    } else {
        /* Pools grow to the peak number of busy sessions, then recycle. */
        if (c->num_bufs >= c->rt->cfg.queue_bound + 64) return NULL;
        if (!(b = malloc(sizeof(*b) + c->buf_cap))) return NULL;
        b->capf.out_live = false;
        b->capf.in_used = 0;
        c->num_bufs++;
    }
    b->next_free = NULL;
    b->len = b->resp_off = b->resp_len = 0;
    return b;
}

dp_keyop_t *dp_keyop_get(dp_core_t *c) {
    dp_keyop_t *k = c->free_keyops;
    if (k) c->free_keyops = k->next_free;
    else if (!(k = malloc(sizeof(*k)))) return NULL;
    k->next_free = NULL;
    return k;
}

void dp_keyop_put(dp_core_t *c, dp_keyop_t *k) {
    k->sess = NULL;
    k->next_free = c->free_keyops;
    c->free_keyops = k;
}

void dp_buf_put(dp_core_t *c, dp_buf_t *b) {
    dp_capf_buf_put(b);
    b->sess = NULL;
    b->next_free = c->free_bufs;
    c->free_bufs = b;
}

/* ---- completions ---- */

void dp_core_on_completions(dp_core_t *c) {
    /* The eventfd is registered edge-triggered: every worker write raises a
     * new edge, so the counter need not be read back (one system call less
     * per wake-up); the queue itself is drained completely below. */
    c->now_ms = dp_now_ms();
    cx_job_t *j;
    while ((j = cx_pool_poll(c->rt->pool, c->id)) != NULL) {
        if (j->kind == DP_JOB_ENROLL) {
            dp_buf_t *b = caa_container_of(j, dp_buf_t, job);
            dp_sess_job_done(b->sess, b);
        } else if (j->kind == DP_JOB_CAPF_AUTH || j->kind == DP_JOB_CAPF_SIGN || j->kind == DP_JOB_CAPF_CERTAUTH ||
                   j->kind == DP_JOB_CAPF_REQUEST) {
            dp_buf_t *b = caa_container_of(j, dp_buf_t, job);
            dp_capf_job_done(b->sess, b);
        } else {
            dp_keyop_t *k = caa_container_of(j, dp_keyop_t, job);
            dp_sess_keyop_done(k->sess, k);
        }
    }
}

int dp_core_epoll_init(dp_core_t *c, char *why, size_t why_len) {
    c->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &c->event_poll_type};
    if (c->epfd < 0 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, cx_pool_core_fd(c->rt->pool, c->id), &ev)) {
        snprintf(why, why_len, "epoll: %s", strerror(errno));
        return -1;
    }
    return 0;
}

bool dp_core_on_poll(dp_core_t *c, void *ptr, uint32_t e) {
    uint8_t type = *(uint8_t *)ptr;
    if (type == DP_POLL_EVENT) dp_core_on_completions(c);
    else if (type == DP_POLL_REDIS) /* the registry connection or the online-mode subscriber */
        dp_redis_on_io(ptr, e & (EPOLLIN | EPOLLHUP | EPOLLERR), e & EPOLLOUT);
    else return false;
    return true;
}

int dp_core_service(dp_core_t *c, int max_wait_ms) {
    cx_pool_kick(c->rt->pool, c->id); /* one doorbell for the whole batch */
    dp_log_flush();
    c->now_ms = dp_now_ms();
    int req = uatomic_read(&c->rt->stats_req);
    if (req != c->stats_seen) { /* SIGUSR1 */
        c->stats_seen = req;
        dp_core_log_stats(c, "counters");
    }
    if (!c->draining && uatomic_read(&c->rt->stop)) {
        c->draining = true;
        c->rt->transport->stop_listening(c);
        for (int k = 0; k < DP_T__COUNT; k++) {
            dp_sess_t *s, *tmp;
            cds_list_for_each_entry_safe(s, tmp, &c->timers[k], timer_link) dp_sess_drain(s);
        }
        DP_INFO("draining: %u sessions left", c->num_sess);
    }
    if (c->draining && c->now_ms >= c->rt->stop_deadline_ms && c->num_sess) {
        DP_WARN("drain deadline passed with %u sessions open; closing them", c->num_sess);
        /* Sessions waiting on a hung Redis have no timer: failing the
         * connection answers them (503) and they close like the rest. */
        dp_redis_close(&c->redis);
        for (int k = 0; k < DP_T__COUNT; k++) {
            dp_sess_t *s, *tmp;
            cds_list_for_each_entry_safe(s, tmp, &c->timers[k], timer_link) dp_sess_timeout(s);
        }
    }
    int wait = dp_timers_expire(c, max_wait_ms);
    dp_ra_sweep(c);
    dp_capf_service(c);
    dp_ra_flush(c);                           /* this iteration's records: one script call */
    wait = dp_online_service(c, wait);
    return dp_redis_service(&c->redis, wait); /* last: writes this iteration's commands */
}

bool dp_core_should_exit(dp_core_t *c) {
    return c->draining && (c->num_sess == 0 ||
                           (c->now_ms >= c->rt->stop_deadline_ms + 2000));
}

void dp_core_log_stats(dp_core_t *c, const char *what) {
    DP_INFO("%s: accepted=%llu closed=%llu handshakes=%llu handshake_failures=%llu requests=%llu "
            "enrolled=%llu denied=%llu shed=%llu timeouts=%llu bad_requests=%llu reissued=%llu "
            "unrecorded=%llu redis_commands=%llu redis_writes=%llu redis_reads=%llu redis_connects=%llu",
            what, (unsigned long long)c->stats.accepted, (unsigned long long)c->stats.closed,
            (unsigned long long)c->stats.handshakes, (unsigned long long)c->stats.hs_failed,
            (unsigned long long)c->stats.requests, (unsigned long long)c->stats.enrolled,
            (unsigned long long)c->stats.denied, (unsigned long long)c->stats.shed,
            (unsigned long long)c->stats.timeouts, (unsigned long long)c->stats.bad_requests,
            (unsigned long long)c->stats.reissued, (unsigned long long)c->stats.unrecorded,
            (unsigned long long)c->redis.stats.commands, (unsigned long long)c->redis.stats.writes,
            (unsigned long long)c->redis.stats.reads, (unsigned long long)c->redis.stats.connects);
    if (c->rt->transport->log_stats) c->rt->transport->log_stats(c);
}

/* ---- thread ---- */

static void *dp_core_main(void *arg) {
    dp_core_t *c = arg;
    char name[16];
    snprintf(name, sizeof(name), "core%u", c->id);
    dp_log_set_thread(name);
    dp_log_set_buffered(true);
    pthread_setname_np(pthread_self(), name);
    c->now_ms = dp_now_ms();
    c->rt->transport->run(c);
    dp_redis_close(&c->redis);
    if (c->online.on)
        DP_INFO("online CA: parked=%llu notices=%llu record_reads=%llu certificates=%llu refusals=%llu "
                "accepted_202=%llu",
                (unsigned long long)c->online.stats.parked, (unsigned long long)c->online.stats.notices,
                (unsigned long long)c->online.stats.reads, (unsigned long long)c->online.stats.certs,
                (unsigned long long)c->online.stats.refusals, (unsigned long long)c->online.stats.accepted_202);
    dp_online_cleanup(c);
    dp_log_flush();
    dp_log_set_buffered(false);
    dp_core_log_stats(c, "stopped");
    return NULL;
}

int dp_core_start(dp_core_t *c) {
    if (pthread_create(&c->thread, NULL, dp_core_main, c) != 0) return -1;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > 1) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(c->id % (unsigned)ncpu, &set);
        pthread_setaffinity_np(c->thread, sizeof(set), &set);
    }
    return 0;
}

void dp_core_cleanup(dp_core_t *c) {
    while (c->free_sess) {
        dp_sess_t *s = c->free_sess;
        c->free_sess = s->next_free;
        free(s);
    }
    while (c->free_bufs) {
        dp_buf_t *b = c->free_bufs;
        c->free_bufs = b->next_free;
        free(b);
    }
    while (c->free_keyops) {
        dp_keyop_t *k = c->free_keyops;
        c->free_keyops = k->next_free;
        free(k);
    }
    dp_ra_cleanup(c);
    dp_capf_cleanup(c);
    dp_addrcap_free(&c->addrs);
    free(c->scratch);
    free(c->tx);
    free(c->rx);
    c->scratch = c->tx = c->rx = NULL;
}
