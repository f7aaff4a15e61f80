/* ra_redis: where the Redis system of record is and a synchronous hiredis
 * connection to it, for stampedectl and other start-up/operator tools (the
 * polling cores' non-blocking connections come with the request-lifecycle
 * work and reuse ra_redis_parse_url).
 * Addresses: `redis://host[:port][/db]` (port 6379, db 0 by default; IPv6
 * hosts in brackets), `unix:/path/to/sock[?db=N]`, a bare absolute path (a
 * unix socket), or a data directory, whose embedded server listens on
 * DIR/redis.sock. Passwords/TLS are not supported yet.
 * Thread: any thread; a redisContext belongs to one thread at a time. */
#ifndef RA_REDIS_H
#define RA_REDIS_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "ra/ra_err.h"

#define RA_REDIS_HOST_MAX 256
#define RA_REDIS_PATH_MAX 108 /* sun_path */
#define RA_REDIS_DEFAULT_PORT 6379

typedef enum { RA_REDIS_TCP = 0, RA_REDIS_UNIX } ra_redis_kind_t;

typedef struct {
    ra_redis_kind_t kind;
    char host[RA_REDIS_HOST_MAX]; /* RA_REDIS_TCP */
    int port;                     /* RA_REDIS_TCP */
    char path[RA_REDIS_PATH_MAX]; /* RA_REDIS_UNIX */
    int db;                       /* SELECT after connect if > 0 */
} ra_redis_addr_t;

/* ra_redis_parse_url fills `out` from `url` (forms above; pure function).
 * Returns RA_OK or RA_E_REDIS_URL (`out` then unspecified). */
ra_err_t ra_redis_parse_url(ra_redis_addr_t *out, const char *url);

/* ra_redis_addr_data_dir fills `out` with the embedded server's socket,
 * `dir`/redis.sock, db 0. Returns RA_OK or RA_E_REDIS_URL if the path is too
 * long for a unix socket. */
ra_err_t ra_redis_addr_data_dir(ra_redis_addr_t *out, const char *dir);

/* ra_redis_addr_str writes `a` as a URL into `buf` (for messages). */
void ra_redis_addr_str(const ra_redis_addr_t *a, char *buf, size_t buf_len);

/* ra_redis_connect opens a blocking connection to `a` with `timeout_ms` for
 * the connect and for every later command, pings it and selects the db.
 * Ownership: on RA_OK the caller owns *out (redisFree).
 * Returns RA_OK, or RA_E_REDIS_CONNECT / RA_E_REDIS / RA_E_NOMEM with a
 * one-line cause naming the address in `why`. */
ra_err_t ra_redis_connect(redisContext **out, const ra_redis_addr_t *a, int timeout_ms,
                          char *why, size_t why_len);

/* ra_printable copies the `n` untrusted bytes `p` into out[cap] as text for
 * a log line or a message: bytes outside printable ASCII become '?', cut to
 * cap - 1 bytes, always NUL-terminated (cap >= 1). This function can't fail.
 * Thread: any. */
void ra_printable(char *out, size_t cap, const void *p, size_t n);

/* ra_redis_text is ra_printable of reply element `e` if it is a string or
 * status reply; any other type (or NULL) gives "". */
void ra_redis_text(char *out, size_t cap, const redisReply *e);

/* ra_redis_reply_err turns a NULL or error reply into RA_E_REDIS /
 * RA_E_REDIS_CONNECT with a cause in `why`; RA_OK for any other reply.
 * Does not free `r`. */
ra_err_t ra_redis_reply_err(redisContext *c, const redisReply *r, char *why, size_t why_len);

#endif
