/* dp_redis_child: the embedded Redis. With no `redis` URL configured,
 * stampeded runs a private redis-server as its child: unix socket
 * DATA/redis.sock (mode 0700, no TCP port), data in DATA/redis/, AOF on with
 * appendfsync everysec (or always), hashes as listpacks up to 4 KiB values
 * (request records stay compact), log in DATA/redis/redis.log. The child
 * dies with stampeded (PR_SET_PDEATHSIG) and is restarted with back-off if it
 * dies alone. stampedectl --data-dir finds the same socket.
 * Thread: main thread only (startup, signal loop, shutdown). */
#ifndef DP_REDIS_CHILD_H
#define DP_REDIS_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    pid_t pid;                /* 0 when not running */
    char sock[512];           /* DATA/redis.sock */
    char dir[512];            /* DATA/redis */
    bool fsync_always;
    unsigned restarts;        /* consecutive restarts without a healthy minute */
    int64_t next_start_ms;    /* scheduled restart (monotonic ms), 0 = none */
    int64_t started_ms;
} dp_redis_child_t;

/* dp_redis_child_start starts redis-server for `data_dir` and waits (at most
 * 10 s) until it answers PING on its socket. `fsync` is "everysec" or
 * "always". A Redis that still answers on the socket gets 5 s to go away
 * (the child of a stampeded that just died); if it stays, the start fails.
 * Returns 0, or -1 with a cause in `why`. */
int dp_redis_child_start(dp_redis_child_t *rc, const char *data_dir, const char *fsync, char *why,
                         size_t why_len);

/* dp_redis_child_reaped is called after SIGCHLD: it reaps exited children
 * and, if the child was ours, logs it and schedules a restart with back-off
 * (1 s, doubling, at most 30 s). */
void dp_redis_child_reaped(dp_redis_child_t *rc);

/* dp_redis_child_tick performs a scheduled restart when it is due. Returns
 * the milliseconds until the next due restart (or -1 if none). */
int dp_redis_child_tick(dp_redis_child_t *rc);

/* dp_redis_child_stop asks the child to exit (SIGTERM; it fsyncs the AOF),
 * waits up to 5 s, then kills it. Safe when not running. */
void dp_redis_child_stop(dp_redis_child_t *rc);

/* dp_redis_ping says whether a Redis answers PING on unix socket `sock`
 * within `timeout_ms`. */
bool dp_redis_ping(const char *sock, int timeout_ms);

#endif
