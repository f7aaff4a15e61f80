/* dp_rxgate: the RX admission gate of the DPDK transport. Every Ethernet
 * frame read from the port goes through dp_rxgate_check before it is handed
 * to lwIP: frames not addressed to us, of a protocol we do not run, with a
 * broken header, or a SYN over its source's rate are dropped here
 * (docs/dpdk-transport-notes.md, "Security of TCP in the packaged lwIP").
 * Frames are untrusted bytes, read with CBS only. No DPDK or lwIP types:
 * the gate sees a byte range and a clock.
 * Thread: any polling core, with the calls serialised by the caller (it
 * holds the lwIP core lock); no locking inside. dp_rxgate_init and
 * dp_rxgate_free are startup/shutdown only; dp_rxgate_check never
 * allocates or blocks. */
#ifndef DP_RXGATE_H
#define DP_RXGATE_H

#include <stddef.h>
#include <stdint.h>

/* dp_rx_verdict_t: what to do with one frame. Only DP_RX_PASS goes on to
 * lwIP; every other verdict means "drop, and count it under this name". */
typedef enum {
    DP_RX_PASS = 0,      /* hand the frame to lwIP */
    DP_RX_NOT_OURS,      /* destination MAC or IPv4 address is not ours */
    DP_RX_UNSUPPORTED,   /* EtherType other than ARP and IPv4 (IPv6, VLAN, ...) */
    DP_RX_MALFORMED,     /* truncated or inconsistent Ethernet/ARP/IPv4/TCP header */
    DP_RX_SYN_LIMITED,   /* a SYN over its source address's rate */
    DP_RX__COUNT
} dp_rx_verdict_t;

/* dp_rx_verdict_str returns a static, human-readable string for `v` (never
 * NULL; "unknown" for values outside the enum). Any thread. Can't fail. */
const char *dp_rx_verdict_str(dp_rx_verdict_t v);

/* dp_rxgate_slot_t: one SYN token bucket, owned by the source address that
 * last used the slot. */
typedef struct {
    uint32_t src;          /* source IPv4 address, host byte order */
    uint32_t milli_tokens; /* 1000 per SYN allowed now */
    int64_t last_ms;       /* clock of the last refill */
} dp_rxgate_slot_t;

/* The largest syn_rate (its one-second burst, in milli-tokens, must fit a
 * slot's uint32_t) and the largest slot table dp_rxgate_init accepts. */
#define DP_RXGATE_SYN_RATE_MAX (UINT32_MAX / 1000u)
#define DP_RXGATE_SLOTS_MAX ((size_t)1 << 24)

/* dp_rxgate_t: the gate's settings and its SYN buckets. Filled by
 * dp_rxgate_init; callers read the fields (logs, tests) but do not change
 * them. */
typedef struct {
    uint8_t mac[6];          /* our MAC */
    uint32_t addr;           /* our IPv4 address, host byte order */
    uint32_t bcast;          /* our subnet's directed broadcast, host order
                                (255.255.255.255 for a /31 or /32: none) */
    uint32_t syn_rate;       /* SYNs per second per source address; 0 = no limit */
    dp_rxgate_slot_t *slots; /* power-of-two table */
    size_t mask;             /* slots - 1 */
} dp_rxgate_t;

/* dp_rxgate_init sets `g` up for our `mac`, IPv4 `addr` and `netmask` (host
 * byte order; the mask must be contiguous ones) and allocates `slots` SYN
 * buckets, rounded up to a power of two, at least 64 and at most
 * DP_RXGATE_SLOTS_MAX. Each source address gets `syn_rate` SYNs per second
 * (at most DP_RXGATE_SYN_RATE_MAX) with a burst of one second's worth; 0
 * means no limit. Sources whose hashes share a slot evict each other, and an
 * evicted source starts again with a full bucket: the table bounds memory,
 * not accuracy, so size it above the number of sources expected at once.
 * Ownership: `mac` is copied; `g` owns the table until dp_rxgate_free.
 * Thread: startup only.
 * Returns 0, or -1 if out of memory or an argument is out of range (then
 * `g` is left zeroed). */
int dp_rxgate_init(dp_rxgate_t *g, const uint8_t mac[6], uint32_t addr, uint32_t netmask,
                   uint32_t syn_rate, size_t slots);

/* dp_rxgate_free releases the table and zeroes `g`; safe on a zeroed
 * struct and twice in a row. Thread: shutdown only. Can't fail. */
void dp_rxgate_free(dp_rxgate_t *g);

/* dp_rxgate_check decides whether the Ethernet frame `frame` (`len` bytes,
 * without FCS) arrived at `now_ms` may go on to lwIP:
 *   - the Ethernet II header must be complete (else DP_RX_MALFORMED) and its
 *     destination our MAC or ff:ff:ff:ff:ff:ff (else DP_RX_NOT_OURS,
 *     multicast included);
 *   - ARP must carry an Ethernet/IPv4 body of at least 28 bytes;
 *   - IPv4 must have a consistent header and total length (padding after
 *     the total length is fine), be addressed to our address, the limited
 *     broadcast or our subnet's broadcast (else DP_RX_NOT_OURS), and if it
 *     is the first (or only) fragment of a TCP segment, hold a complete
 *     20-byte TCP header; a SYN without ACK takes one token from its
 *     source's bucket (none left: DP_RX_SYN_LIMITED);
 *   - any other EtherType is DP_RX_UNSUPPORTED.
 * `now_ms` is a millisecond clock; it may step back or jump (a step back
 * never adds tokens; refill restarts from the new time).
 * Ownership: `frame` is only read, never kept.
 * Thread: polling core, calls serialised by the caller (lwIP core lock).
 * Never allocates. Returns the verdict. */
dp_rx_verdict_t dp_rxgate_check(dp_rxgate_t *g, const uint8_t *frame, size_t len, int64_t now_ms);

#endif
