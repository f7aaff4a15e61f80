/* dp_online: the online CA mode's waiting room on a polling core
 * (docs/redis-schema.md "Online CA mode"). An enrollment the upstream CA
 * must sign is recorded pending (EST: by the request script; CAPF: by the
 * CAPF script's SUBMIT) and queued for stampede-control; its session then
 * parks here, holding its buffer, keyed by its request record, until one
 * of:
 *   - a notice on the core's own channel `stp:done:NODE:CORE` (its own
 *     subscriber connection) names the record: the core reads the record
 *     (one HMGET) and answers with the certificate or the CA's refusal, or
 *     parks it again if it is still pending;
 *   - the wait (online_wait_ms) ends: one last read, then the answer, or
 *     202 Accepted + Retry-After (RFC 7030 4.2.3): the client repeats the
 *     same CSR and the request script finds the record.
 * When the subscription comes back after a loss every parked record is
 * read once (notices sent meanwhile are lost), so nothing waits for a
 * notice that was never delivered.
 * A parked buffer says whether it is an EST or a CAPF session
 * (b->online.capf). The table, the subscriber, the reads and the final read
 * at expiry are the same for both; what a record read means is the
 * protocol's: EST answers here (certificate, 403 or 202), CAPF hands every
 * read to dp_capf_online_fetched (dp_capf.c: ISSUED and STORE, or FAIL and
 * END_SESSION 07), whose timer is DP_T_CAPF_ONLINE (capf_online_timeout).
 * Thread: the owning polling core only. Nothing here blocks; parking,
 * notices and answers allocate nothing. */
#ifndef DP_ONLINE_H
#define DP_ONLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dataplane/dp_redis.h"

typedef struct dp_core dp_core_t;
typedef struct dp_sess dp_sess_t;
typedef struct dp_buf dp_buf_t;

typedef struct {
    uint64_t parked, notices, reads, certs, refusals, accepted_202;
} dp_online_stats_t;

/* dp_online_t: one per core (inside dp_core_t). */
typedef struct {
    bool on;                  /* ca_mode online */
    bool reread;              /* subscribed again: read every parked record once */
    /* /cacerts: the upstream CA's chain as stampede-control published it in
     * stp:ca:upstream (current + previous during a rollover), read by this
     * core every few seconds; base64 certs-only PKCS#7, malloc'd on change */
    uint8_t *cacerts_b64;
    size_t cacerts_len;
    uint8_t cacerts_digest[32]; /* of what it was built from */
    int64_t cacerts_next_ms;
    bool cacerts_busy;
    dp_redis_req_t cacerts_req;
    char channel[160];        /* stp:done:NODE:CORE */
    dp_redis_t sub;           /* subscribed to `channel` */
    dp_buf_t **table;         /* parked buffers by record key, chained */
    size_t mask;
    unsigned waiting;
    dp_online_stats_t stats;
} dp_online_t;

/* dp_online_init prepares core `c`'s waiting room if ca_mode is online
 * (channel name, table, subscriber). Returns 0, or -1 out of memory.
 * Startup only. */
int dp_online_init(dp_core_t *c);
void dp_online_cleanup(dp_core_t *c);

/* dp_online_service runs the subscriber connection (connect, reconnect).
 * Returns the ms until it next needs to run, capped at `max_ms`. */
int dp_online_service(dp_core_t *c, int max_ms);

/* dp_online_cacerts answers GET /cacerts in online mode: rewrites `r`
 * (stampeded's own CA, prepared by est_route) to the upstream chain, or to
 * 503 (+ the configured Retry-After) while stampede-control has not published it yet. The
 * body stays valid until the core's next loop iteration. No-op in local
 * mode or for any other reply. */
typedef struct est_reply est_reply_t;
void dp_online_cacerts(dp_core_t *c, est_reply_t *r);

/* dp_online_chain_p7 merges the certificates of the DER PKCS#7 `chain` and
 * `prev` (either may be empty; duplicates once) into one base64 certs-only
 * PKCS#7. Ownership: *out is malloc'd for the caller. Returns 0, or -1 if a
 * non-empty input is not a PKCS#7 SignedData or there is no certificate.
 * Thread: any (pure). */
int dp_online_chain_p7(const uint8_t *chain, size_t chain_len, const uint8_t *prev, size_t prev_len,
                       uint8_t **out, size_t *out_len);

/* dp_online_park parks session `s` whose record the request script found
 * or made pending (b->enroll.online_wait), or answers 202 at once when
 * online_wait_ms is 0. */
void dp_online_park(dp_sess_t *s, dp_buf_t *b);

/* dp_online_wait parks session `s` (a CAPF session) under b->online.key,
 * which the caller set with b->online.capf: state DP_S_ONLINE until a
 * notice or the subscription's return reads the record. The caller arms
 * the timer. */
void dp_online_wait(dp_sess_t *s, dp_buf_t *b);

/* dp_online_timeout: the session's wait ran out (timer DP_T_ONLINE or
 * DP_T_CAPF_ONLINE): one last read of the record decides (a CAPF session
 * whose record cannot be read gets dp_capf_online_fetched with no reply
 * and `expired` set). */
void dp_online_timeout(dp_sess_t *s);

/* dp_online_rec_t: a request record as a parked session reads it (HMGET
 * state reason cert serial not_after). Strings are printable copies; `cert`
 * points into the reply (valid while it is). */
#define DP_ONLINE_REASON_MAX 200
typedef struct {
    char state[16];             /* "" if the reply was not the expected shape */
    char reason[DP_ONLINE_REASON_MAX];
    char serial[72];
    const uint8_t *cert;        /* state "issued" with a certificate, else NULL */
    size_t cert_len;
} dp_online_rec_t;

/* dp_online_rec_read fills `out` from reply `rep` (untrusted shape; NULL
 * when the read failed: everything empty). This function can't fail. */
void dp_online_rec_read(const redisReply *rep, dp_online_rec_t *out);

/* dp_capf_online_fetched (dp_capf.c) continues a parked CAPF session after
 * a read of its record: `rep` is HMGET state reason cert serial not_after
 * (untrusted shape), or NULL if the read failed; b->online.expired says the
 * wait is over. It also frees a session that closed meanwhile. */
void dp_capf_online_fetched(dp_sess_t *s, dp_buf_t *b, const redisReply *rep);

/* dp_online_drain answers a parked session 202 at once (SIGTERM). */
void dp_online_drain(dp_sess_t *s);

/* dp_online_forget takes a parked session out of the table (it closes, or
 * a CAPF session ends otherwise); nothing if it is not parked. */
void dp_online_forget(dp_sess_t *s);

#endif
