/* dp_redis: a polling core's own connection to Redis, the system of record.
 * hiredis's async context is driven by the core's loop: its socket sits in
 * the core's epoll set (a management socket: kernel even under other
 * transports), commands issued while the core handles events are buffered
 * and written with one write() when the core is about to sleep, so all
 * sessions of one loop iteration share a round trip (pipelining), and
 * replies are read when the socket is readable. Nothing blocks.
 *
 * The connection is "up" once it is connected and the request script is
 * loaded (SCRIPT LOAD on every connect, so a restarted Redis is fine).
 * While it is not up, dp_redis_command refuses and the caller answers
 * 503 + Retry-After; the core reconnects with back-off (100 ms doubling to
 * 2 s). A command that gets no reply within redis_timeout_ms drops the
 * connection: every pending callback then runs with a NULL reply.
 * Thread: the owning polling core only. */
#ifndef DP_REDIS_H
#define DP_REDIS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#include "ra/ra_redis.h"

typedef struct dp_core dp_core_t;

/* dp_redis_req_t: embedded in whatever waits for a reply (a session's
 * buffer); `done` runs on the core with the reply (freed after it returns)
 * or NULL if the command failed (connection lost or timed out). */
typedef struct dp_redis_req {
    void (*done)(struct dp_redis_req *req, redisReply *reply);
} dp_redis_req_t;

typedef struct {
    uint64_t commands, writes, reads, failed, connects;
} dp_redis_stats_t;

typedef struct dp_redis dp_redis_t;

/* A subscriber connection (online CA mode, dp_online.c) runs SUBSCRIBE
 * `channel` instead of loading scripts; it is "up" once subscribed, then
 * `on_up` runs (notices may have been missed while it was down), and every
 * message's payload goes to `on_message`. It takes no commands. */
typedef void (*dp_redis_msg_fn)(dp_redis_t *r, const char *payload, size_t len);
typedef void (*dp_redis_up_fn)(dp_redis_t *r);

struct dp_redis {
    uint8_t poll_type;          /* DP_POLL_REDIS: must be first */
    dp_core_t *core;
    const ra_redis_addr_t *addr;/* NULL: no Redis (benchmark mode "off") */
    int64_t timeout_ms;
    redisAsyncContext *ac;
    int fd;                     /* registered in the core's epoll, or -1 */
    uint32_t events;            /* epoll mask registered */
    bool want_read, want_write;
    bool connected;             /* TCP/unix connect finished */
    bool up;                    /* connected and the script loaded */
    int64_t retry_at_ms;        /* next connect attempt while down */
    int64_t backoff_ms;
    unsigned inflight;          /* commands awaiting replies */
    int64_t progress_ms;        /* last reply, or when inflight became > 0 */
    char sha[41];               /* request script SHA-1 */
    char capf_sha[41];          /* CAPF script SHA-1 */
    char why[160];              /* last cause of being down (logged on change) */
    const char *channel;        /* subscriber connection: the channel, else NULL */
    dp_redis_msg_fn on_message;
    dp_redis_up_fn on_up;
    dp_redis_stats_t stats;
};

/* dp_redis_init prepares `r` for `core` (no connection yet); `addr` NULL
 * means Redis is off. Startup only. */
void dp_redis_init(dp_redis_t *r, dp_core_t *core, const ra_redis_addr_t *addr, int64_t timeout_ms);

/* dp_redis_init_sub prepares `r` as a subscriber to `channel` (which must
 * outlive it). Startup only. */
void dp_redis_init_sub(dp_redis_t *r, dp_core_t *core, const ra_redis_addr_t *addr, const char *channel,
                       dp_redis_msg_fn on_message, dp_redis_up_fn on_up);

/* dp_redis_service connects/reconnects when due, enforces the reply
 * timeout and flushes buffered commands (one write). Call once per loop
 * iteration before sleeping. Returns the ms until it next needs to run
 * (capped at `max_ms`). */
int dp_redis_service(dp_redis_t *r, int max_ms);

/* dp_redis_on_io handles epoll events on the Redis socket. */
void dp_redis_on_io(dp_redis_t *r, bool readable, bool writable);

/* dp_redis_command queues one command; `req->done` runs later, exactly
 * once. Returns false (nothing queued, `done` not called) if Redis is off,
 * not up, or hiredis failed: the caller answers "unavailable". */
bool dp_redis_command(dp_redis_t *r, dp_redis_req_t *req, int argc, const char **argv,
                      const size_t *argvlen);

/* dp_redis_usable: Redis is configured and up (new work may start). */
static inline bool dp_redis_usable(const dp_redis_t *r) { return r->addr && r->up; }

/* dp_redis_close drops the connection (pending callbacks get NULL). */
void dp_redis_close(dp_redis_t *r);

#endif
