/* ra_reqlist: reading the request records of docs/redis-schema.md for
 * operators (`stampedectl requests`). Two walks:
 *   - open: the members of `stp:reqs:open` (ZSCAN in pages), each mapped to
 *     its record `stp:req:{IDENTITY}:SHA256HEX`; a member whose record is
 *     gone or already issued is a stale index entry (the daemon's index
 *     update after the record script was lost), shown as such or removed;
 *   - all: every key matching `stp:req:*` (SCAN ... COUNT 500), current
 *     records and archived ones (`...:SERIAL`, kept by a renewal).
 * Records are read in pipelined batches (one round trip per page) of HMGET
 * of the listing fields only, never the csr/cert blobs, and decoded from
 * untrusted bytes through CBS: numbers strictly (a malformed one makes the
 * entry RA_REQLIST_BAD_RECORD), display text sanitized (non-printable bytes
 * as '?') and clipped to its buffer.
 * Order is SCAN order (no sorting, so millions of records stream in
 * constant memory); an entry may repeat if the keyspace or the set changes
 * during the walk (SCAN's guarantee).
 * Synchronous hiredis: for stampedectl, never a polling core.
 * Thread: the thread owning `c`. */
#ifndef RA_REQLIST_H
#define RA_REQLIST_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ra/ra_err.h"
#include "ra/ra_req.h"

#define RA_REQLIST_BATCH 500 /* SCAN COUNT and HMGETs per round trip */
#define RA_REQLIST_KEY_MAX (RA_REQ_KEY_MAX + 1 + RA_REQ_SERIAL_MAX)
#define RA_REQLIST_PEER_MAX 64

/* The HMGET field list, in reply order. */
#define RA_REQLIST_FIELDS                                                                          \
    "id", "identity", "protocol", "peer", "state", "reason", "received", "updated", "attempts",  \
        "serial", "not_after"
#define RA_REQLIST_NUM_FIELDS 11

typedef enum {
    RA_REQLIST_RECORD = 0, /* a current record, decoded */
    RA_REQLIST_ARCHIVED,   /* an archived record `...:SERIAL`, decoded */
    RA_REQLIST_MISSING,    /* index member without a record, or not a request id (cause in reason) */
    RA_REQLIST_BAD_RECORD, /* key or record unreadable (cause in why); the walk goes on */
} ra_reqlist_kind_t;

/* ra_reqlist_entry_t: one listed request. Strings are NUL-terminated and
 * printable; numbers are 0 when the field is absent. */
typedef struct {
    ra_reqlist_kind_t kind;
    char key[RA_REQLIST_KEY_MAX];  /* the record's key (sanitized if unreadable) */
    char id[RA_REQ_ID_MAX];        /* IDENTITY:SHA256HEX (a bad index member: sanitized, clipped) */
    char identity[RA_REQ_IDENTITY_MAX + 1];
    char hash[65];                 /* SHA256HEX of the CSR */
    char protocol[16];
    char peer[RA_REQLIST_PEER_MAX];
    char state[16];                /* the record's state field: issued, rejected, ... */
    char reason[RA_REQ_REASON_MAX];
    char serial[RA_REQ_SERIAL_MAX + 1];
    int64_t received, updated, not_after, attempts;
    bool stale;                    /* open walk: MISSING, or a record already issued */
    bool pruned;                   /* stale and removed from stp:reqs:open by this walk */
    char why[160];                 /* RA_REQLIST_BAD_RECORD: the cause */
} ra_reqlist_entry_t;

/* ra_reqlist_cb is called once per entry, in walk order. `e` is valid only
 * during the call. Return 0 to go on, anything else to stop the walk. */
typedef int (*ra_reqlist_cb)(const ra_reqlist_entry_t *e, void *arg);

/* ra_reqlist_parse_key fills out->key, id, identity and hash from a key
 * `stp:req:{IDENTITY}:SHA256HEX` (kind RA_REQLIST_RECORD) or
 * `stp:req:{IDENTITY}:SHA256HEX:SERIAL` (kind RA_REQLIST_ARCHIVED, SERIAL in
 * out->serial). `key` is untrusted (length given, no NUL needed). Clears
 * everything else in `out`. Returns RA_OK or RA_E_BAD_NAME (out->key then
 * holds the key sanitized, kind RA_REQLIST_BAD_RECORD). Pure function. */
ra_err_t ra_reqlist_parse_key(ra_reqlist_entry_t *out, const char *key, size_t key_len);

/* ra_reqlist_decode fills the record fields of `out` (key, id, identity
 * already set by ra_reqlist_parse_key) from the reply `r` of HMGET key
 * RA_REQLIST_FIELDS. Sets kind RA_REQLIST_MISSING if every field is absent,
 * RA_REQLIST_BAD_RECORD (cause in out->why) for an error reply (e.g.
 * WRONGTYPE), a reply of the wrong shape, a malformed number, an `id` that
 * does not match the key or no `state`; else leaves kind as it is.
 * Pure function; `r` may be NULL (treated as the wrong shape). */
void ra_reqlist_decode(ra_reqlist_entry_t *out, const redisReply *r);

/* ra_reqlist_open walks `stp:reqs:open`. With `prune`, stale members are
 * removed (ZREM, only if their score is still the one read, so a request
 * rejected again meanwhile stays listed) before `cb` sees them; the number
 * removed is added to *num_pruned (may be NULL).
 * Returns RA_OK (also if `cb` stopped the walk), or RA_E_REDIS /
 * RA_E_REDIS_CONNECT / RA_E_NOMEM with the cause in `why`. */
ra_err_t ra_reqlist_open(redisContext *c, bool prune, ra_reqlist_cb cb, void *arg, size_t *num_pruned,
                         char *why, size_t why_len);

/* ra_reqlist_all walks every key matching `stp:req:*`. Entries are
 * RA_REQLIST_RECORD, RA_REQLIST_ARCHIVED or RA_REQLIST_BAD_RECORD (a key of
 * that prefix this code did not write, or an unreadable record); a key
 * deleted between SCAN and HMGET is skipped.
 * Returns as ra_reqlist_open. */
ra_err_t ra_reqlist_all(redisContext *c, ra_reqlist_cb cb, void *arg, char *why, size_t why_len);

#endif
