/* dp_addrcap: connections per client address on one core (see dp_addrcap.h). */
#include "dataplane/dp_addrcap.h"

#include <stdlib.h>
#include <string.h>

int dp_addrcap_init(dp_addrcap_t *t, size_t max_entries) {
    size_t slots = 16;
    while (slots < 2 * max_entries && slots < ((size_t)1 << 30)) slots <<= 1;
    t->keys = calloc(slots, sizeof(*t->keys));
    t->counts = calloc(slots, sizeof(*t->counts));
    t->mask = slots - 1;
    t->used = 0;
    if (t->keys && t->counts) return 0;
    dp_addrcap_free(t);
    return -1;
}

void dp_addrcap_free(dp_addrcap_t *t) {
    free(t->keys);
    free(t->counts);
    memset(t, 0, sizeof(*t));
}

uint64_t dp_addrcap_key(const char *peer) {
    size_t n = strlen(peer);
    const char *colon = strrchr(peer, ':'); /* the port separator ("[v6]:port" ends in "]:port") */
    if (colon) n = (size_t)(colon - peer);
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)peer[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

/* slot_of returns the slot holding `key`, or the empty slot where it would go. */
static size_t slot_of(const dp_addrcap_t *t, uint64_t key) {
    size_t i = (size_t)(key ^ (key >> 29)) & t->mask;
    while (t->keys[i] && t->keys[i] != key) i = (i + 1) & t->mask;
    return i;
}

bool dp_addrcap_take(dp_addrcap_t *t, uint64_t key, uint32_t limit) {
    if (!t->keys) return false;
    size_t i = slot_of(t, key);
    if (t->keys[i] == key) {
        if (t->counts[i] >= limit) return false;
        t->counts[i]++;
        return true;
    }
    if (limit == 0 || t->used >= (t->mask + 1) / 2) return false; /* keep probes short */
    t->keys[i] = key;
    t->counts[i] = 1;
    t->used++;
    return true;
}

void dp_addrcap_put(dp_addrcap_t *t, uint64_t key) {
    if (!t->keys) return;
    size_t i = slot_of(t, key);
    if (t->keys[i] != key || --t->counts[i] > 0) return;
    /* backward-shift deletion: move later members of the probe run into the hole */
    size_t hole = i;
    for (size_t j = (i + 1) & t->mask; t->keys[j]; j = (j + 1) & t->mask) {
        size_t home = (size_t)(t->keys[j] ^ (t->keys[j] >> 29)) & t->mask;
        /* j may move to the hole unless its home lies cyclically in (hole, j] */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        t->keys[hole] = t->keys[j];
        t->counts[hole] = t->counts[j];
        hole = j;
    }
    t->keys[hole] = 0;
    t->counts[hole] = 0;
    t->used--;
}

uint32_t dp_addrcap_count(const dp_addrcap_t *t, uint64_t key) {
    if (!t->keys) return 0;
    size_t i = slot_of(t, key);
    return t->keys[i] == key ? t->counts[i] : 0;
}
