/* cx_pool: the signing pool. M worker threads run every expensive
 * public-key operation (CSR checks, issuance signatures, TLS handshake
 * private-key operations) so that polling cores never do.
 *
 * Queues are liburcu wait-free concurrent queues (cds_wfcq): one input queue
 * per worker (many cores enqueue, one worker dequeues) and one completion
 * queue per polling core (many workers enqueue, the core dequeues). Core c
 * feeds the workers pinned to its CPU. An idle worker sleeps on a futex; a
 * core rings the doorbell (cx_pool_kick) once per event-loop batch and wakes
 * a worker only if it finds it asleep, so a burst of jobs costs one wake-up.
 * A worker rings a core's eventfd only for results it put into an empty
 * completion queue, and only when its own queue runs dry or every few jobs,
 * so a burst of results costs the core one wake-up too.
 *
 * Load shedding is per core and lock-free: a core counts the jobs it has in
 * flight and refuses new ones past its bound (cx_pool_submit -> CX_E_BUSY).
 * Thread: as tagged per function. */
#ifndef CX_POOL_H
#define CX_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <urcu/wfcqueue.h>

#include "crypto/cx_err.h"

typedef struct cx_job cx_job_t;
typedef struct cx_pool cx_pool_t;

/* cx_job_fn runs a job on worker `worker` (0..M-1). It must fill the job's
 * result fields and must not touch state owned by a polling core. */
typedef void (*cx_job_fn)(cx_job_t *job, unsigned worker);

/* cx_job_t: embed it in the owner's structure (a session) and recover the
 * owner with container_of (caa_container_of) when it comes back.
 * Ownership: between cx_pool_submit and its return from cx_pool_poll the job
 * belongs to the pool; the owner must keep the memory alive. */
struct cx_job {
    struct cds_wfcq_node _node;
    cx_job_fn fn;        /* what to run (set by the submitter) */
    uint16_t core;       /* submitting core; set by cx_pool_submit */
    uint8_t kind;        /* free for the submitter: tells results apart */
    int result;          /* free for fn: outcome code */
};

/* cx_pool_new creates a pool for `num_cores` polling cores with `num_workers`
 * workers (threads not started yet). `per_core_bound` is the in-flight job
 * limit of each core. Returns NULL on allocation failure. Thread: startup only. */
cx_pool_t *cx_pool_new(unsigned num_workers, unsigned num_cores, unsigned per_core_bound);

/* cx_pool_start starts the worker threads. `worker_init`, if not NULL, runs
 * first on each worker thread (names it, sets up thread state); `worker_idle`,
 * if not NULL, runs on a worker each time it is about to sleep (flush
 * buffered logs).
 * Returns CX_OK or CX_E_NOMEM. Thread: startup only. */
cx_err_t cx_pool_start(cx_pool_t *pool, void (*worker_init)(unsigned worker),
                       void (*worker_idle)(unsigned worker));

/* cx_pool_submit queues `job` (job->fn set) from polling core `core`; the
 * worker is woken at the next cx_pool_kick.
 * `force` ignores the core's bound (for work that must not be refused, such
 * as a handshake already accepted). Never blocks, never allocates.
 * Returns CX_OK, or CX_E_BUSY if the core's bound is reached (nothing queued).
 * Thread: polling core `core` only. */
cx_err_t cx_pool_submit(cx_pool_t *pool, unsigned core, cx_job_t *job, bool force);

/* cx_pool_kick wakes the workers that received jobs from `core` since the
 * last kick, if they sleep. Call it once per event-loop iteration, before
 * the core waits. Until then submitted jobs may sit unnoticed.
 * Thread: polling core `core` only. */
void cx_pool_kick(cx_pool_t *pool, unsigned core);

/* cx_pool_poll returns the next finished job of `core`, or NULL if none.
 * Thread: polling core `core` only. */
cx_job_t *cx_pool_poll(cx_pool_t *pool, unsigned core);

/* cx_pool_core_fd returns the eventfd that becomes readable when results for
 * `core` arrive. A poller watching it level-triggered clears it with
 * cx_pool_core_ack before draining with cx_pool_poll; an edge-triggered
 * poller need not read it (each ring is a new edge; the counter cannot
 * realistically overflow). Thread: polling core `core` only. */
int cx_pool_core_fd(const cx_pool_t *pool, unsigned core);
void cx_pool_core_ack(cx_pool_t *pool, unsigned core);

/* cx_pool_inflight returns the jobs `core` has in flight. Thread: core only. */
unsigned cx_pool_inflight(const cx_pool_t *pool, unsigned core);

/* cx_pool_free stops the workers after they finish queued jobs, joins them
 * and frees the pool. Results not yet polled are dropped (owners must have
 * drained first). Safe with NULL. Thread: startup/shutdown only. */
void cx_pool_free(cx_pool_t *pool);

#endif
