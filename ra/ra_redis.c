/* ra_redis: Redis address parsing and synchronous connections (see
 * ra_redis.h). */
#include "ra/ra_redis.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* ra_parse_uint reads all of s[0..len) as a decimal in [0, max]. */
static int ra_parse_uint(const char *s, size_t len, long max, long *out) {
    long v = 0;
    if (len == 0 || len > 9) return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max) return 0;
    *out = v;
    return 1;
}

static ra_err_t ra_parse_unix(ra_redis_addr_t *out, const char *path) {
    const char *q = strchr(path, '?');
    size_t len = q ? (size_t)(q - path) : strlen(path);
    long db = 0;
    if (path[0] != '/' || len >= sizeof(out->path)) return RA_E_REDIS_URL;
    if (q && (strncmp(q, "?db=", 4) || !ra_parse_uint(q + 4, strlen(q + 4), 15000, &db)))
        return RA_E_REDIS_URL;
    out->kind = RA_REDIS_UNIX;
    memcpy(out->path, path, len);
    out->path[len] = '\0';
    out->db = (int)db;
    return RA_OK;
}

static ra_err_t ra_parse_tcp(ra_redis_addr_t *out, const char *hp) {
    const char *slash = strchr(hp, '/');
    size_t hplen = slash ? (size_t)(slash - hp) : strlen(hp);
    const char *host = hp, *colon;
    size_t hlen;
    long port = RA_REDIS_DEFAULT_PORT, db = 0;
    if (hp[0] == '[') { /* [v6]:port */
        const char *rb = memchr(hp, ']', hplen);
        if (!rb) return RA_E_REDIS_URL;
        host = hp + 1;
        hlen = (size_t)(rb - host);
        colon = rb + 1 < hp + hplen ? rb + 1 : NULL;
        if (colon && *colon != ':') return RA_E_REDIS_URL;
    } else {
        colon = memchr(hp, ':', hplen);
        hlen = colon ? (size_t)(colon - hp) : hplen;
    }
    if (hlen == 0 || hlen >= sizeof(out->host)) return RA_E_REDIS_URL;
    if (colon && (!ra_parse_uint(colon + 1, (size_t)(hp + hplen - colon - 1), 65535, &port) || port == 0))
        return RA_E_REDIS_URL;
    if (slash && slash[1] && !ra_parse_uint(slash + 1, strlen(slash + 1), 15000, &db))
        return RA_E_REDIS_URL;
    out->kind = RA_REDIS_TCP;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = (int)port;
    out->db = (int)db;
    return RA_OK;
}

ra_err_t ra_redis_parse_url(ra_redis_addr_t *out, const char *url) {
    memset(out, 0, sizeof(*out));
    if (!url) return RA_E_REDIS_URL;
    if (url[0] == '/') return ra_parse_unix(out, url);
    if (!strncmp(url, "unix:", 5)) return ra_parse_unix(out, url + 5 + (!strncmp(url + 5, "//", 2) ? 2 : 0));
    if (!strncmp(url, "redis://", 8)) return ra_parse_tcp(out, url + 8);
    return RA_E_REDIS_URL;
}

ra_err_t ra_redis_addr_data_dir(ra_redis_addr_t *out, const char *dir) {
    memset(out, 0, sizeof(*out));
    out->kind = RA_REDIS_UNIX;
    int n = snprintf(out->path, sizeof(out->path), "%s/redis.sock", dir);
    return n > 0 && (size_t)n < sizeof(out->path) && dir[0] ? RA_OK : RA_E_REDIS_URL;
}

void ra_redis_addr_str(const ra_redis_addr_t *a, char *buf, size_t buf_len) {
    if (a->kind == RA_REDIS_UNIX)
        snprintf(buf, buf_len, "unix:%s%s%.0d", a->path, a->db ? "?db=" : "", a->db);
    else
        snprintf(buf, buf_len, strchr(a->host, ':') ? "redis://[%s]:%d/%d" : "redis://%s:%d/%d",
                 a->host, a->port, a->db);
}

ra_err_t ra_redis_reply_err(redisContext *c, const redisReply *r, char *why, size_t why_len) {
    if (!r) {
        snprintf(why, why_len, "%s", c->errstr[0] ? c->errstr : "connection lost");
        return c->err == REDIS_ERR_IO || c->err == REDIS_ERR_EOF ? RA_E_REDIS_CONNECT : RA_E_REDIS;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, why_len, "%s", r->str);
        return RA_E_REDIS;
    }
    return RA_OK;
}

/* ra_redis_check runs one argument-less command and checks its reply. */
static ra_err_t ra_redis_check(redisContext *c, const char *cmd, char *why, size_t why_len) {
    redisReply *r = redisCommand(c, cmd);
    ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
    if (r) freeReplyObject(r);
    return e;
}

ra_err_t ra_redis_connect(redisContext **out, const ra_redis_addr_t *a, int timeout_ms,
                          char *why, size_t why_len) {
    char url[RA_REDIS_HOST_MAX + RA_REDIS_PATH_MAX + 32], cause[256];
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c;
    ra_err_t e;
    *out = NULL;
    ra_redis_addr_str(a, url, sizeof(url));
    c = a->kind == RA_REDIS_UNIX ? redisConnectUnixWithTimeout(a->path, tv)
                                 : redisConnectWithTimeout(a->host, a->port, tv);
    if (!c) {
        snprintf(why, why_len, "Redis at %s: out of memory", url);
        return RA_E_NOMEM;
    }
    if (c->err) {
        snprintf(why, why_len, "Redis at %s unreachable: %s", url, c->errstr);
        redisFree(c);
        return RA_E_REDIS_CONNECT;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(why, why_len, "Redis at %s: cannot set timeout: %s", url, strerror(errno));
        redisFree(c);
        return RA_E_REDIS_CONNECT;
    }
    e = ra_redis_check(c, "PING", cause, sizeof(cause));
    if (e == RA_OK && a->db > 0) {
        redisReply *r = redisCommand(c, "SELECT %d", a->db);
        e = ra_redis_reply_err(c, r, cause, sizeof(cause));
        if (r) freeReplyObject(r);
    }
    if (e != RA_OK) {
        snprintf(why, why_len, "Redis at %s: %s", url, cause);
        redisFree(c);
        return e == RA_E_REDIS_CONNECT ? e : RA_E_REDIS;
    }
    *out = c;
    return RA_OK;
}

void ra_printable(char *out, size_t cap, const void *p, size_t n) {
    const unsigned char *in = p;
    size_t w = 0;
    for (; w < n && w + 1 < cap; w++) out[w] = in[w] >= 0x20 && in[w] < 0x7f ? (char)in[w] : '?';
    out[w] = '\0';
}

void ra_redis_text(char *out, size_t cap, const redisReply *e) {
    bool text = e && (e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS);
    ra_printable(out, cap, text ? e->str : "", text ? e->len : 0);
}
