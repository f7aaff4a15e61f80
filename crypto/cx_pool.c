/* cx_pool: worker threads behind lock-free queues (see cx_pool.h).
 * Each worker owns an input queue and a futex word it sleeps on; each polling
 * core owns a completion queue and an eventfd. Nothing here takes a lock on
 * the submit or completion path: enqueues are wait-free (cds_wfcq_enqueue),
 * each queue has a single dequeuer, so the lock-free __cds_wfcq_* dequeue is
 * used. Threads: submit/poll on polling cores; cx_pool_worker on workers. */
#include "crypto/cx_pool.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <urcu/arch.h>
#include <urcu/uatomic.h>

#define CX_SPIN_ROUNDS 256   /* empty polls before a worker sleeps */
#define CX_SIGNAL_BATCH 8    /* results a worker may hold back from a core's eventfd */

typedef struct {
    struct cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    int32_t sleeping;          /* futex word: 1 while the worker sleeps */
    pthread_t thread;
    bool started;
} __attribute__((aligned(64))) cx_worker_t;

typedef struct {
    struct cds_wfcq_head head;
    struct cds_wfcq_tail tail;
    int efd;                   /* eventfd: results arrived */
    unsigned inflight;         /* touched by the owning core only */
    unsigned next_worker;      /* round-robin cursor, core only */
    uint64_t kick;             /* workers with new jobs since the last kick (bitmask), core only */
} __attribute__((aligned(64))) cx_done_t;

struct cx_pool {
    unsigned num_workers, num_cores, bound;
    int stop;                  /* set at cx_pool_free */
    void (*worker_init)(unsigned);
    void (*worker_idle)(unsigned);
    cx_worker_t *workers;
    cx_done_t *done;
};

typedef struct {
    cx_pool_t *pool;
    unsigned id;
} cx_worker_arg_t;

static void cx_futex_wait(int32_t *addr, int32_t val) {
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void cx_futex_wake(int32_t *addr) {
    syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

cx_pool_t *cx_pool_new(unsigned num_workers, unsigned num_cores, unsigned per_core_bound) {
    if (num_workers == 0 || num_cores == 0) return NULL;
    cx_pool_t *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->num_workers = num_workers;
    p->num_cores = num_cores;
    p->bound = per_core_bound ? per_core_bound : 1;
    if (posix_memalign((void **)&p->workers, 64, num_workers * sizeof(cx_worker_t)) ||
        posix_memalign((void **)&p->done, 64, num_cores * sizeof(cx_done_t)))
        goto fail;
    memset(p->workers, 0, num_workers * sizeof(cx_worker_t));
    memset(p->done, 0, num_cores * sizeof(cx_done_t));
    for (unsigned i = 0; i < num_workers; i++)
        cds_wfcq_init(&p->workers[i].head, &p->workers[i].tail);
    for (unsigned i = 0; i < num_cores; i++) {
        cds_wfcq_init(&p->done[i].head, &p->done[i].tail);
        p->done[i].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        p->done[i].next_worker = i % num_workers;  /* first worker of core i */
        if (p->done[i].efd < 0) goto fail;
    }
    return p;
fail:
    if (p->done)
        for (unsigned i = 0; i < num_cores; i++)
            if (p->done[i].efd > 0) close(p->done[i].efd);
    free(p->workers);
    free(p->done);
    free(p);
    return NULL;
}

/* cx_pool_take dequeues one job for worker `w`, sleeping when idle.
 * Returns NULL when the pool stops and the queue is empty. */
static cx_job_t *cx_pool_take(cx_pool_t *p, cx_worker_t *w, unsigned id) {
    for (;;) {
        for (int spin = 0; spin < CX_SPIN_ROUNDS; spin++) {
            struct cds_wfcq_node *n = __cds_wfcq_dequeue_blocking(&w->head, &w->tail);
            if (n) return caa_container_of(n, cx_job_t, _node);
            if (uatomic_read(&p->stop)) return NULL;
            caa_cpu_relax();
        }
        if (p->worker_idle) p->worker_idle(id);
        uatomic_set(&w->sleeping, 1);
        cmm_smp_mb();
        if (cds_wfcq_empty(&w->head, &w->tail) && !uatomic_read(&p->stop))
            cx_futex_wait(&w->sleeping, 1);
        uatomic_set(&w->sleeping, 0);
    }
}

/* cx_pool_ring writes the eventfd of every core in `owe` and clears it. */
static void cx_pool_ring(cx_pool_t *p, bool *owe) {
    for (unsigned c = 0; c < p->num_cores; c++) {
        if (!owe[c]) continue;
        owe[c] = false;
        uint64_t one = 1;
        ssize_t r = write(p->done[c].efd, &one, sizeof(one));
        (void)r;
    }
}

static void *cx_pool_worker(void *arg) {
    cx_worker_arg_t a = *(cx_worker_arg_t *)arg;
    free(arg);
    cx_pool_t *p = a.pool;
    cx_worker_t *w = &p->workers[a.id];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu > 1) { /* worker i on CPU i, like core i: see cx_pool_submit */
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(a.id % (unsigned)ncpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    }
    if (p->worker_init) p->worker_init(a.id);
    /* owe[c]: this worker put a result into core c's empty completion queue
     * and has not rung core c's eventfd yet. It rings when its own input
     * queue runs dry (about to sleep) or after CX_SIGNAL_BATCH jobs, so a
     * burst of results costs the core one wake-up, not one per job. */
    bool *owe = calloc(p->num_cores, sizeof(bool));
    unsigned since = 0;
    cx_job_t *job;
    while (owe && (job = cx_pool_take(p, w, a.id)) != NULL) {
        job->fn(job, a.id);
        cx_done_t *d = &p->done[job->core];
        /* A dequeued node keeps its stale next pointer: reset it first. */
        cds_wfcq_node_init(&job->_node);
        /* cds_wfcq_enqueue returns false when the queue was empty before:
         * only then does the core need a wake-up. */
        if (!cds_wfcq_enqueue(&d->head, &d->tail, &job->_node)) owe[job->core] = true;
        if (++since >= CX_SIGNAL_BATCH || cds_wfcq_empty(&w->head, &w->tail)) {
            cx_pool_ring(p, owe);
            since = 0;
        }
    }
    free(owe);
    if (p->worker_idle) p->worker_idle(a.id);
    return NULL;
}

cx_err_t cx_pool_start(cx_pool_t *p, void (*worker_init)(unsigned), void (*worker_idle)(unsigned)) {
    p->worker_init = worker_init;
    p->worker_idle = worker_idle;
    for (unsigned i = 0; i < p->num_workers; i++) {
        cx_worker_arg_t *a = malloc(sizeof(*a));
        if (!a) return CX_E_NOMEM;
        a->pool = p;
        a->id = i;
        if (pthread_create(&p->workers[i].thread, NULL, cx_pool_worker, a) != 0) {
            free(a);
            return CX_E_NOMEM;
        }
        p->workers[i].started = true;
    }
    return CX_OK;
}

cx_err_t cx_pool_submit(cx_pool_t *p, unsigned core, cx_job_t *job, bool force) {
    cx_done_t *d = &p->done[core];
    if (!force && d->inflight >= p->bound) return CX_E_BUSY;
    d->inflight++;
    job->core = (uint16_t)core;
    cds_wfcq_node_init(&job->_node);
    /* Core c feeds the workers w with w % num_cores == c (or, with fewer
     * workers than cores, worker c % num_workers): with workers pinned like
     * cores, hand-offs stay on one CPU and wake-ups need no IPI. */
    cx_worker_t *w = &p->workers[d->next_worker];
    if (p->num_workers > p->num_cores) {
        d->next_worker += p->num_cores;
        if (d->next_worker >= p->num_workers) d->next_worker = core;
    }
    cds_wfcq_enqueue(&w->head, &w->tail, &job->_node);
    d->kick |= 1ull << ((unsigned)(w - p->workers) % 64);
    return CX_OK;
}

void cx_pool_kick(cx_pool_t *p, unsigned core) {
    cx_done_t *d = &p->done[core];
    if (!d->kick) return;
    uint64_t mask = d->kick;
    d->kick = 0;
    cmm_smp_mb(); /* order the enqueues before reading `sleeping` */
    for (unsigned i = 0; i < p->num_workers; i++) {
        if (!(mask & (1ull << (i % 64)))) continue;
        cx_worker_t *w = &p->workers[i];
        if (uatomic_read(&w->sleeping)) {
            uatomic_set(&w->sleeping, 0);
            cx_futex_wake(&w->sleeping);
        }
    }
}

cx_job_t *cx_pool_poll(cx_pool_t *p, unsigned core) {
    cx_done_t *d = &p->done[core];
    struct cds_wfcq_node *n = __cds_wfcq_dequeue_blocking(&d->head, &d->tail);
    if (!n) return NULL;
    d->inflight--;
    return caa_container_of(n, cx_job_t, _node);
}

int cx_pool_core_fd(const cx_pool_t *p, unsigned core) { return p->done[core].efd; }

void cx_pool_core_ack(cx_pool_t *p, unsigned core) {
    uint64_t v;
    ssize_t r = read(p->done[core].efd, &v, sizeof(v));
    (void)r;
}

unsigned cx_pool_inflight(const cx_pool_t *p, unsigned core) { return p->done[core].inflight; }

void cx_pool_free(cx_pool_t *p) {
    if (!p) return;
    uatomic_set(&p->stop, 1);
    cmm_smp_mb();
    for (unsigned i = 0; i < p->num_workers; i++) {
        if (!p->workers[i].started) continue;
        uatomic_set(&p->workers[i].sleeping, 0);
        cx_futex_wake(&p->workers[i].sleeping);
    }
    for (unsigned i = 0; i < p->num_workers; i++)
        if (p->workers[i].started) pthread_join(p->workers[i].thread, NULL);
    for (unsigned i = 0; i < p->num_cores; i++) close(p->done[i].efd);
    free(p->workers);
    free(p->done);
    free(p);
}
