/* dp_redis: hiredis async driven by a polling core's epoll (see dp_redis.h). */
#include "dataplane/dp_redis.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>

#include <urcu/uatomic.h>

#include "dataplane/dp_core.h"
#include "dataplane/dp_runtime.h"
#include "dataplane/dp_log.h"
#include "ra/ra_capf.h"
#include "ra/ra_req.h"

#define DP_REDIS_BACKOFF_MIN_MS 100
#define DP_REDIS_BACKOFF_MAX_MS 2000

static void redis_epoll(dp_redis_t *r) {
    if (r->fd < 0) return;
    uint32_t ev = (r->want_read ? EPOLLIN : 0) | (r->want_write ? EPOLLOUT : 0);
    if (ev == r->events) return;
    struct epoll_event e = {.events = ev, .data.ptr = r};
    int op = r->events == 0 ? EPOLL_CTL_ADD : ev == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(r->core->epfd, op, r->fd, &e) == 0) r->events = ev;
    else DP_WARN("redis: epoll_ctl: %s", strerror(errno));
}

/* hiredis event hooks: reads are registered at once; writes only record
 * the wish, and dp_redis_service writes (or, while connecting, waits for
 * writability). */
static void ev_add_read(void *p) { dp_redis_t *r = p; r->want_read = true; redis_epoll(r); }
static void ev_del_read(void *p) { dp_redis_t *r = p; r->want_read = false; redis_epoll(r); }
static void ev_add_write(void *p) { ((dp_redis_t *)p)->want_write = true; }
static void ev_del_write(void *p) { dp_redis_t *r = p; r->want_write = false; redis_epoll(r); }
static void ev_cleanup(void *p) {
    dp_redis_t *r = p;
    if (r->fd >= 0 && r->events) epoll_ctl(r->core->epfd, EPOLL_CTL_DEL, r->fd, NULL);
    r->fd = -1;
    r->events = 0;
    r->want_read = r->want_write = false;
}

/* redis_down marks the connection gone and schedules a reconnect. */
static void redis_down(dp_redis_t *r, const char *cause) {
    bool was_up = r->up;
    r->ac = NULL;
    r->up = r->connected = false;
    r->inflight = 0;
    r->retry_at_ms = r->core->now_ms + r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > DP_REDIS_BACKOFF_MAX_MS ? DP_REDIS_BACKOFF_MAX_MS : r->backoff_ms * 2;
    if (was_up || strcmp(r->why, cause) != 0) {
        char addr[300];
        ra_redis_addr_str(r->addr, addr, sizeof(addr));
        if (r->channel)
            DP_WARN("redis %s: subscription to %s: %s; reconnecting (waiting sessions re-read their records "
                    "when it is back)", addr, r->channel, cause);
        else
            DP_WARN("redis %s: %s; refusing new enrollments (503) and reconnecting", addr, cause);
    }
    snprintf(r->why, sizeof(r->why), "%s", cause);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    dp_redis_t *r = ac->data;
    if (status != REDIS_OK) {
        char cause[160];
        snprintf(cause, sizeof(cause), "connect failed: %s", ac->errstr[0] ? ac->errstr : "error");
        redis_down(r, cause); /* hiredis frees ac after this callback */
        return;
    }
    r->connected = true;
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    dp_redis_t *r = ac->data;
    if (r->ac != ac) return; /* we dropped it ourselves (dp_redis_close) */
    char cause[160];
    snprintf(cause, sizeof(cause), "connection lost: %s",
             status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "error");
    redis_down(r, cause);
}

/* redis_answered books one reply (or its failure) of an inflight command. */
static void redis_answered(dp_redis_t *r) {
    if (r->inflight) r->inflight--;
    r->progress_ms = r->core->now_ms;
}

/* redis_reply is the trampoline of every command. */
static void redis_reply(redisAsyncContext *ac, void *reply, void *priv) {
    dp_redis_t *r = ac->data;
    redis_answered(r);
    if (!reply) r->stats.failed++;
    dp_redis_req_t *req = priv;
    if (req) req->done(req, reply);
}

/* script_loaded checks a SCRIPT LOAD reply against the SHA-1 the core
 * computed; a failure drops the connection (it reconnects with back-off).
 * Returns true if `rep` names the script. */
static bool script_loaded(dp_redis_t *r, redisAsyncContext *ac, const redisReply *rep, const char *sha,
                          const char *what) {
    if (rep->type == REDIS_REPLY_STRING && rep->len == 40 && memcmp(rep->str, sha, 40) == 0) return true;
    DP_WARN("redis: SCRIPT LOAD of the %s script failed: %.*s", what,
            rep->type == REDIS_REPLY_ERROR ? (int)rep->len : 0, rep->type == REDIS_REPLY_ERROR ? rep->str : "");
    r->why[0] = 0;
    redisAsyncDisconnect(ac);
    return false;
}

/* on_capf_loaded checks the CAPF script (loaded first; the request
 * script's reply then marks the connection up). */
static void on_capf_loaded(redisAsyncContext *ac, void *reply, void *priv) {
    (void)priv;
    dp_redis_t *r = ac->data;
    redis_answered(r);
    if (reply) script_loaded(r, ac, reply, r->capf_sha, "CAPF");
}

static void on_script_loaded(redisAsyncContext *ac, void *reply, void *priv) {
    (void)priv;
    dp_redis_t *r = ac->data;
    redisReply *rep = reply;
    redis_answered(r);
    if (!rep) return; /* connection gone: redis_down runs */
    if (!script_loaded(r, ac, rep, r->sha, "request")) return;
    if (!r->up) {
        char addr[300];
        ra_redis_addr_str(r->addr, addr, sizeof(addr));
        if (r->stats.connects > 0 || r->why[0]) DP_INFO("redis %s: connected; accepting enrollments", addr);
        else DP_DEBUG("redis %s: connected", addr);
    }
    if (r->stats.connects == 0) uatomic_inc(&r->core->rt->redis_cores_up); /* start-up wait */
    r->up = true;
    r->why[0] = 0;
    r->backoff_ms = DP_REDIS_BACKOFF_MIN_MS;
    r->stats.connects++;
}

/* on_sub is the callback of SUBSCRIBE: its confirmation marks the
 * connection up, every later call is a message. hiredis keeps it for the
 * life of the subscription; NULL when the connection goes. */
static void on_sub(redisAsyncContext *ac, void *reply, void *priv) {
    (void)priv;
    dp_redis_t *r = ac->data;
    redisReply *rep = reply;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const redisReply *kind = rep->element[0], *last = rep->element[rep->elements - 1];
    r->progress_ms = r->core->now_ms;
    if (kind->len == 9 && !memcmp(kind->str, "subscribe", 9)) {
        if (r->why[0]) DP_INFO("redis: subscribed to %s again", r->channel);
        r->up = true;
        r->why[0] = 0;
        r->backoff_ms = DP_REDIS_BACKOFF_MIN_MS;
        r->stats.connects++;
        if (r->on_up) r->on_up(r);
    } else if (kind->len == 7 && !memcmp(kind->str, "message", 7) && last->type == REDIS_REPLY_STRING) {
        r->stats.reads++;
        r->on_message(r, last->str, last->len);
    }
}

static bool redis_send(dp_redis_t *r, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                       const size_t *argvlen) {
    if (redisAsyncCommandArgv(r->ac, fn, priv, argc, argv, argvlen) != REDIS_OK) return false;
    if (r->inflight++ == 0) r->progress_ms = r->core->now_ms;
    r->stats.commands++;
    return true;
}

static void redis_connect(dp_redis_t *r) {
    const ra_redis_addr_t *a = r->addr;
    redisAsyncContext *ac = a->kind == RA_REDIS_UNIX ? redisAsyncConnectUnix(a->path)
                                                     : redisAsyncConnect(a->host, a->port);
    if (!ac || ac->err) {
        char cause[160];
        snprintf(cause, sizeof(cause), "connect failed: %s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        r->ac = NULL;
        redis_down(r, cause);
        return;
    }
    r->ac = ac;
    ac->data = r;
    /* TCP keepalive (15 s): a half-open connection is noticed even when
     * nothing is sent on it, as on the subscriber (unix sockets: n/a) */
    if (a->kind == RA_REDIS_TCP) redisEnableKeepAlive(&ac->c);
    r->fd = ac->c.fd;
    r->events = 0;
    ac->ev.data = r;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->connected = r->up = false;
    r->inflight = 0;
    if (r->channel) { /* a subscriber: no scripts, no reply timeout (it waits for messages) */
        const char *sub[] = {"SUBSCRIBE", r->channel};
        if (redisAsyncCommandArgv(ac, on_sub, NULL, 2, sub, NULL) != REDIS_OK) {
            dp_redis_close(r);
            redis_down(r, "out of memory");
        }
        return;
    }
    char db[16];
    snprintf(db, sizeof(db), "%d", a->db);
    const char *sel[] = {"SELECT", db};
    const char *load[] = {"SCRIPT", "LOAD", ra_req_script()};
    const char *load_capf[] = {"SCRIPT", "LOAD", ra_capf_script()};
    if ((a->db > 0 && !redis_send(r, redis_reply, NULL, 2, sel, NULL)) ||
        !redis_send(r, on_capf_loaded, NULL, 3, load_capf, NULL) ||
        !redis_send(r, on_script_loaded, NULL, 3, load, NULL)) {
        dp_redis_close(r);
        redis_down(r, "out of memory");
    }
}

void dp_redis_init(dp_redis_t *r, dp_core_t *core, const ra_redis_addr_t *addr, int64_t timeout_ms) {
    memset(r, 0, sizeof(*r));
    r->poll_type = DP_POLL_REDIS;
    r->core = core;
    r->addr = addr;
    r->fd = -1;
    r->timeout_ms = timeout_ms;
    r->backoff_ms = DP_REDIS_BACKOFF_MIN_MS;
    ra_req_script_sha(r->sha);
    ra_capf_script_sha(r->capf_sha);
}

void dp_redis_init_sub(dp_redis_t *r, dp_core_t *core, const ra_redis_addr_t *addr, const char *channel,
                       dp_redis_msg_fn on_message, dp_redis_up_fn on_up) {
    dp_redis_init(r, core, addr, 0);
    r->channel = channel;
    r->on_message = on_message;
    r->on_up = on_up;
}

void dp_redis_close(dp_redis_t *r) {
    redisAsyncContext *ac = r->ac;
    if (!ac) return;
    r->ac = NULL; /* on_disconnect then ignores it */
    redisAsyncFree(ac); /* pending callbacks run with NULL */
    r->up = r->connected = false;
    r->inflight = 0;
}

int dp_redis_service(dp_redis_t *r, int max_ms) {
    if (!r->addr) return max_ms;
    int64_t now = r->core->now_ms;
    if (!r->ac) {
        if (r->core->draining && !r->up) return max_ms;
        if (now >= r->retry_at_ms) redis_connect(r);
        if (!r->ac) {
            int64_t wait = r->retry_at_ms - now;
            return wait < max_ms ? (int)(wait > 0 ? wait : 0) : max_ms;
        }
    }
    if (r->inflight && now - r->progress_ms > r->timeout_ms) {
        char cause[160];
        snprintf(cause, sizeof(cause), "no reply within %lld ms", (long long)r->timeout_ms);
        dp_redis_close(r);
        redis_down(r, cause);
        return 0;
    }
    if (r->want_write) {
        if (r->connected) {
            r->stats.writes++;
            redisAsyncHandleWrite(r->ac); /* one write; re-asks if partial */
        }
        if (r->ac) redis_epoll(r); /* still wanted: wait for writability */
    }
    if (r->inflight) {
        int64_t left = r->progress_ms + r->timeout_ms - now + 1;
        if (left < max_ms) return left > 0 ? (int)left : 0;
    }
    return max_ms;
}

void dp_redis_on_io(dp_redis_t *r, bool readable, bool writable) {
    if (r->ac && writable) {
        r->stats.writes++;
        redisAsyncHandleWrite(r->ac);
        if (r->ac && !r->want_write) redis_epoll(r);
    }
    if (r->ac && readable) {
        r->stats.reads++;
        redisAsyncHandleRead(r->ac);
    }
}

bool dp_redis_command(dp_redis_t *r, dp_redis_req_t *req, int argc, const char **argv,
                      const size_t *argvlen) {
    if (!r->addr || !r->up || !r->ac || r->channel) return false;
    return redis_send(r, redis_reply, req, argc, argv, argvlen);
}
