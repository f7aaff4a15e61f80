/* ctl_work: stampede-control's work loop in online CA mode
 * (docs/redis-schema.md, "Online CA mode"). stampeded queues a pending
 * request record and a `stp:upstream` stream entry naming it; a worker
 * reads the entry (consumer group `ctl`), hands the record to the wait set
 * `stp:upstream:wait` with a lease, acknowledges the entry, and then drives
 * the record to issued or rejected through the certsrv connector
 * (ctl_certsrv.h): submit (certfnsh.asp), store the CA's request id, fetch
 * the certificate (certnew.cer). Failures worth retrying put the record
 * back in the wait set with a due time; every worker also takes due (and
 * expired-lease) members of the wait set, and entries that a crashed
 * consumer read but never handed over (XAUTOCLAIM).
 *
 * Every change of a record is one EVALSHA of one Lua script (verbs TAKE,
 * LEASE, SUBMIT, ACKID, COMPLETE, REJECT, WAIT, CA), which checks the
 * record's state first, so delivery may be at-least-once: a verb applied
 * twice is a no-op the second time. The script enforces the rule of
 * certsrv-protocol.md §5.13: a request whose CA request id is stored is
 * never POSTed again, and a POST whose outcome is unknown is repeated at
 * most once (audited `upstream-resubmit`), then the request is given up.
 *
 * Threads: `pool_size` workers (ctl_work_worker_main), each with its own
 * upstream connection and Redis connection, and one chain thread
 * (ctl_work_chain_main) that publishes the CA chain in `stp:ca:upstream`.
 * They share only the ctl_rt_t: the frozen config, the stop flag and
 * atomic counters. */
#ifndef CTL_WORK_H
#define CTL_WORK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/ctl_config.h"
#include "ra/ra_redis.h"

#define CTL_STREAM "stp:upstream"
#define CTL_GROUP "ctl"
#define CTL_WAIT_SET "stp:upstream:wait"
#define CTL_CA_KEY "stp:ca:upstream"
#define CTL_CONSUMER_MAX 128

typedef enum {
    CTL_W_OK = 0,
    CTL_W_E_CONFIG,  /* no usable Redis address */
    CTL_W_E_REDIS,   /* cannot connect, or a command failed */
    CTL_W_E_SCRIPT,  /* SCRIPT LOAD failed */
    CTL_W_E_NOMEM,
    CTL_W__COUNT
} ctl_work_err_t;

/* ctl_work_err_str names `e` ("unknown" if out of range). Thread: any. */
const char *ctl_work_err_str(ctl_work_err_t e);

/* ctl_counters_t: what the process did since it started (any thread adds,
 * relaxed atomics; read for the summary line). */
typedef struct {
    atomic_ulong submitted;     /* POSTs to certfnsh.asp */
    atomic_ulong resubmitted;   /* of which repeats after an unknown outcome */
    atomic_ulong issued;        /* records completed with a certificate */
    atomic_ulong denied;        /* records rejected (CA denial, final failure, given up) */
    atomic_ulong approval;      /* answers "pending CA manager approval" (submit or poll) */
    atomic_ulong retried;       /* retryable failures put back in the wait set */
    atomic_ulong unknown;       /* POSTs whose outcome was unknown (timeout after the body) */
    atomic_ulong http_requests; /* upstream HTTP requests, auth legs included */
} ctl_counters_t;

/* ctl_rt_t: the process's one runtime struct. main() fills it with
 * ctl_work_init, starts the threads with a pointer to it, and sets `stop`
 * on SIGTERM/SIGINT. Nothing else is shared between threads. */
typedef struct {
    const ctl_config_t *cfg;    /* frozen before threads start */
    ra_redis_addr_t redis;
    char redis_str[300];        /* the address as a URL, for messages */
    char consumer[CTL_CONSUMER_MAX]; /* consumer name prefix; worker N is PREFIX/wN */
    atomic_bool stop;
    ctl_counters_t n;
} ctl_rt_t;

/* ctl_worker_t: one worker thread's handle (owned by main). */
typedef struct {
    ctl_rt_t *rt;
    unsigned index;
    pthread_t thread;
} ctl_worker_t;

/* ctl_work_init fills `rt` for `cfg` (the Redis address: `redis`, else
 * DATA/redis.sock of `data_dir`; the consumer name: `consumer`, else
 * HOST:PID), connects once, creates the consumer group (XGROUP CREATE
 * stp:upstream ctl 0 MKSTREAM; BUSYGROUP is fine) and checks that the
 * script loads. Thread: startup only.
 * Returns CTL_W_OK, or an error with a one-line cause in `why`. */
ctl_work_err_t ctl_work_init(ctl_rt_t *rt, const ctl_config_t *cfg, char *why, size_t why_len);

/* ctl_work_worker_main is a worker thread's body (arg: ctl_worker_t *).
 * It works until rt->stop is set; the call in flight finishes first,
 * bounded by the configured timeouts. Redis failures are retried with
 * back-off; the thread never exits on its own. Returns NULL. */
void *ctl_work_worker_main(void *arg);

/* ctl_work_chain_main is the chain thread's body (arg: ctl_rt_t *): it
 * reads the CA chain at start-up and every chain_refresh_s (failures
 * retried with back-off from retry_min_ms to retry_max_ms, each logged with
 * its cause) and publishes stp:ca:upstream; a new renewal index also gets
 * `previous` and an audit entry `upstream-ca-rollover`. Returns NULL. */
void *ctl_work_chain_main(void *arg);

/* ctl_work_log_summary logs one line with the counters; `when` says why
 * ("every 60 s", "at exit"). Thread: any. */
void ctl_work_log_summary(ctl_rt_t *rt, const char *when);

/* ctl_work_cert_facts reads the DER certificate `der` (OpenSSL's
 * libcrypto): its serial as lower-case hex of the magnitude without leading
 * zero bytes (as stampeded records serials) into out[out_len] (41 bytes
 * hold any RFC 5280 serial), and its notAfter as unix seconds.
 * Returns false if the certificate does not parse or the serial does not
 * fit. Thread: any. */
bool ctl_work_cert_facts(const uint8_t *der, size_t der_len, char *out, size_t out_len, int64_t *not_after);

#endif
