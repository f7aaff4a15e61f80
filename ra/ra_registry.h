/* ra_registry: the device registry in Redis (docs/redis-schema.md): one hash
 * `stp:dev:{NAME}` per device, the index set `stp:devices`, and an entry in
 * the audit stream for each change made here.
 * Atomicity: the record itself is written by one single-key script (DEL +
 * HSET of all fields, refused if it exists and replace is off), so a record
 * is never half written and two racing adds cannot both win. The set member
 * and the audit entry follow in one pipelined round trip; they live in other
 * hash slots, so on Redis Cluster they cannot share a MULTI. A crash between
 * the two leaves a record missing from `stp:devices` (the daemon looks
 * devices up by key, so it still serves it; `device add --replace` or a
 * re-import repairs the index). Delete removes the record first, then the
 * member, the same way round.
 * Synchronous hiredis: for stampedectl and start-up code, never a polling
 * core. Thread: the thread owning `c`. */
#ifndef RA_REGISTRY_H
#define RA_REGISTRY_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>

#include "ra/ra_device.h"
#include "ra/ra_err.h"

#define RA_REGISTRY_SET "stp:devices"
#define RA_REGISTRY_DEADLINES "stp:deadlines"

/* ra_registry_sweep_cmd builds the deadline sweep: devices whose pending
 * install passed its deadline ("Operation Completes By") get status failed,
 * reason "deadline passed", and an audit entry "deadline-passed"; at most
 * `limit` devices per call; each due member leaves stp:deadlines. The reply
 * is {marked failed, looked at}. Send argv with any hiredis flavour. */
typedef struct {
    const char *argv[7];
    int argc;
    char now[24], limit[16];
} ra_registry_sweep_cmd_t;
void ra_registry_sweep_cmd(ra_registry_sweep_cmd_t *cmd, int64_t now, unsigned limit);

/* ra_registry_key writes `stp:dev:{NAME}` into `buf`. */
void ra_registry_key(char *buf, size_t buf_len, const char *name);

/* ra_registry_add stores `d` (validated first) and indexes it. `created`
 * and `updated` are set to now; with `replace` an existing record's
 * provisioning is overwritten while its `created` and what its sessions
 * established are kept (current LSC serial/expiry/fingerprints, the
 * unconfirmed, stale, superseded and fetched certificates, the last
 * session): re-scheduling an install keeps the current LSC on record. `peer` names the actor for the audit
 * entry "device-add". Returns RA_OK, the RA_E_BAD_* of ra_device_validate,
 * RA_E_EXISTS (nothing changed), or RA_E_REDIS / RA_E_REDIS_CONNECT with the
 * cause in `why`. */
ra_err_t ra_registry_add(redisContext *c, const ra_device_t *d, bool replace, const char *peer,
                         char *why, size_t why_len);

/* ra_registry_get reads device `name` into `out`. Returns RA_OK,
 * RA_E_BAD_NAME, RA_E_NOT_FOUND, RA_E_BAD_RECORD or RA_E_REDIS* (cause in
 * `why`). */
ra_err_t ra_registry_get(redisContext *c, const char *name, ra_device_t *out, char *why,
                         size_t why_len);

/* ra_registry_decode_reply decodes an HGETALL reply of device `name` into
 * `out` (for callers with their own connection, e.g. the polling cores).
 * Returns RA_OK, RA_E_NOT_FOUND (empty reply), RA_E_BAD_RECORD, or
 * RA_E_REDIS for a reply of the wrong type (cause in `why`). */
ra_err_t ra_registry_decode_reply(const redisReply *r, const char *name, ra_device_t *out, char *why,
                                  size_t why_len);

/* ra_registry_get_batch reads the `num` devices `names` in one pipelined
 * round trip (for reports over many devices). errs[i] gets RA_OK (out[i]
 * filled), RA_E_BAD_NAME, RA_E_NOT_FOUND or RA_E_BAD_RECORD (also for a
 * key of the wrong type). Returns RA_OK, or RA_E_REDIS* / RA_E_NOMEM with
 * the cause in `why` if the round trip failed (errs then unspecified). */
ra_err_t ra_registry_get_batch(redisContext *c, const char *const *names, size_t num,
                               ra_device_t *out, ra_err_t *errs, char *why, size_t why_len);

/* ra_registry_list_cb is called once per indexed name (SSCAN order; a name
 * may repeat if the set changes during the scan). Return 0 to go on. */
typedef int (*ra_registry_list_cb)(const char *name, void *arg);

/* ra_registry_list walks `stp:devices` with SSCAN. Returns RA_OK (also if
 * the callback stopped it) or RA_E_REDIS* with the cause in `why`. */
ra_err_t ra_registry_list(redisContext *c, ra_registry_list_cb cb, void *arg, char *why,
                          size_t why_len);

/* ra_registry_delete removes device `name` and its index entry, and audits
 * "device-delete-record". Returns RA_OK, RA_E_BAD_NAME, RA_E_NOT_FOUND or
 * RA_E_REDIS* (cause in `why`). */
ra_err_t ra_registry_delete(redisContext *c, const char *name, const char *peer, char *why,
                            size_t why_len);

/* ra_registry_set_status sets `status`, `reason` ("" clears it) and
 * `updated` of an existing device in one step. Returns RA_OK, RA_E_BAD_NAME,
 * RA_E_NOT_FOUND or RA_E_REDIS* (cause in `why`). */
ra_err_t ra_registry_set_status(redisContext *c, const char *name, ra_status_t status,
                                const char *reason, char *why, size_t why_len);

#endif
