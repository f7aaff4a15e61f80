/* dp_addrcap: a polling core's count of open connections per client
 * address, for the per-address cap (max_per_address; capf-protocol.md §6.4
 * R9: a flood from one address is refused before TLS while other clients
 * go on). An open-addressing table of 64-bit address hashes with linear
 * probing and backward-shift deletion: no tombstones, no allocation after
 * init, O(1) per accept and close.
 * Thread: the owning polling core only (dp_addrcap_init at startup). */
#ifndef DP_ADDRCAP_H
#define DP_ADDRCAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t *keys;     /* 0 = empty slot */
    uint32_t *counts;
    size_t mask;        /* slots - 1 (a power of two) */
    size_t used;
} dp_addrcap_t;

/* dp_addrcap_init sizes the table for `max_entries` distinct addresses at
 * once (twice that many slots, so probes stay short). Returns 0, or -1 if
 * out of memory. Startup only. */
int dp_addrcap_init(dp_addrcap_t *t, size_t max_entries);

/* dp_addrcap_free releases the table; safe on a zeroed one. */
void dp_addrcap_free(dp_addrcap_t *t);

/* dp_addrcap_key hashes the address part of `peer` ("a.b.c.d:port" or
 * "[v6]:port"; the port is ignored) into a non-zero key. Can't fail. */
uint64_t dp_addrcap_key(const char *peer);

/* dp_addrcap_take counts one more connection from `key` unless it already
 * has `limit`. Returns true if counted (release it with dp_addrcap_put),
 * false if the address is at its limit or the table is full. */
bool dp_addrcap_take(dp_addrcap_t *t, uint64_t key, uint32_t limit);

/* dp_addrcap_put releases one connection counted by dp_addrcap_take. */
void dp_addrcap_put(dp_addrcap_t *t, uint64_t key);

/* dp_addrcap_count returns the connections counted for `key` (tests, logs). */
uint32_t dp_addrcap_count(const dp_addrcap_t *t, uint64_t key);

#endif
