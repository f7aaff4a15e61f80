/* dp_rxgate: the RX admission gate of the DPDK transport, run on each frame
 * before it reaches lwIP. Four filters, cheapest first:
 *   - a MAC filter: tap and af_packet run the port promiscuous, so frames
 *     for other hosts arrive too, and lwIP (IP_FORWARD=1) must not see them;
 *   - a protocol filter: lwIP here serves IPv4 only, so only ARP and IPv4
 *     pass (no IPv6, no VLAN tags);
 *   - header sanity: the Ethernet, ARP, IPv4 and TCP headers lwIP will read
 *     are complete and consistent, so a broken frame is counted here rather
 *     than dropped silently inside lwIP (it has no counters);
 *   - a per-source SYN limiter: the packaged lwIP has no SYN cookies and no
 *     listen backlog, so each SYN costs a malloc'd PCB held through its
 *     SYN-ACK retransmissions. A token bucket per source address, in a fixed
 *     table indexed by a hash of the address (a colliding source evicts the
 *     slot and starts full), bounds that cost without allocating per packet.
 * Frames are parsed with CBS only; no DPDK or lwIP headers here.
 * Thread: any polling core, under the lwIP core lock (the caller's), so no
 * locking inside. Owns its slot table (allocated by dp_rxgate_init). */
#include "dataplane/dp_rxgate.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bytestring.h>

#define ETHERTYPE_IPV4 0x0800
#define ETHERTYPE_ARP 0x0806
#define ARP_BODY_LEN 28       /* Ethernet/IPv4 ARP: 8 fixed + 2 * (6 + 4) */
#define IPV4_PROTO_TCP 6
#define IPV4_FRAG_OFFSET 0x1fff
#define TCP_HEADER_MIN 20
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_ACK 0x10
#define SYN_COST 1000         /* milli-tokens per SYN */
#define SLOTS_MIN 64

static const uint8_t mac_broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

static const char *const dp_rx_verdict_text[DP_RX__COUNT] = {
    [DP_RX_PASS] = "pass",
    [DP_RX_NOT_OURS] = "not for us",
    [DP_RX_UNSUPPORTED] = "unsupported protocol",
    [DP_RX_MALFORMED] = "malformed",
    [DP_RX_SYN_LIMITED] = "SYN rate limit",
};

const char *dp_rx_verdict_str(dp_rx_verdict_t v) {
    return (unsigned)v < DP_RX__COUNT ? dp_rx_verdict_text[v] : "unknown";
}

/* burst returns a full bucket for `g`: one second of SYNs, in milli-tokens. */
static uint32_t burst(const dp_rxgate_t *g) {
    return (uint32_t)((uint64_t)g->syn_rate * SYN_COST); /* <= UINT32_MAX: init bounds syn_rate */
}

int dp_rxgate_init(dp_rxgate_t *g, const uint8_t mac[6], uint32_t addr, uint32_t netmask,
                   uint32_t syn_rate, size_t slots) {
    if (!g) return -1;
    memset(g, 0, sizeof(*g));
    uint32_t host = ~netmask;
    if (!mac || (host & (host + 1)) != 0 || /* mask not contiguous ones */
        syn_rate > DP_RXGATE_SYN_RATE_MAX || slots > DP_RXGATE_SLOTS_MAX)
        return -1;
    size_t n = SLOTS_MIN;
    while (n < slots) n <<= 1;
    g->slots = calloc(n, sizeof(*g->slots));
    if (!g->slots) return -1;
    memcpy(g->mac, mac, sizeof(g->mac));
    g->addr = addr;
    g->bcast = host > 1 ? (addr & netmask) | host : UINT32_MAX; /* a /31 or /32 has none */
    g->syn_rate = syn_rate;
    g->mask = n - 1;
    /* An unused slot reads as a full bucket of source 0.0.0.0, which is
     * what a first SYN from that source (or an eviction) would give it. */
    for (size_t i = 0; i < n; i++) g->slots[i].milli_tokens = burst(g);
    return 0;
}

void dp_rxgate_free(dp_rxgate_t *g) {
    if (!g) return;
    free(g->slots);
    memset(g, 0, sizeof(*g));
}

/* slot_of hashes `src` (murmur3's finaliser) onto the table. */
static dp_rxgate_slot_t *slot_of(const dp_rxgate_t *g, uint32_t src) {
    uint32_t h = src;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return &g->slots[(size_t)h & g->mask];
}

/* syn_admit refills `src`'s bucket for the time since its last SYN and
 * takes one SYN's worth from it. Returns false if there was not enough. */
static bool syn_admit(dp_rxgate_t *g, uint32_t src, int64_t now_ms) {
    if (g->syn_rate == 0 || !g->slots) return true;
    dp_rxgate_slot_t *s = slot_of(g, src);
    uint32_t full = burst(g);
    if (s->src != src) { /* evict whoever held the slot */
        s->src = src;
        s->milli_tokens = full;
    } else if (now_ms > s->last_ms) {
        /* exact in uint64_t for any two int64_t; 1000 ms refill a bucket */
        uint64_t elapsed = (uint64_t)now_ms - (uint64_t)s->last_ms;
        if (elapsed > 1000) elapsed = 1000;
        uint64_t tokens = s->milli_tokens + elapsed * g->syn_rate;
        s->milli_tokens = tokens < full ? (uint32_t)tokens : full;
    }
    s->last_ms = now_ms; /* a step back adds nothing and restarts from now */
    if (s->milli_tokens < SYN_COST) return false;
    s->milli_tokens -= SYN_COST;
    return true;
}

/* check_arp: `body` is everything after the Ethernet header. */
static dp_rx_verdict_t check_arp(CBS *body) {
    CBS arp;
    uint16_t htype, ptype;
    uint8_t hlen, plen;
    if (!CBS_get_bytes(body, &arp, ARP_BODY_LEN) || !CBS_get_u16(&arp, &htype) ||
        !CBS_get_u16(&arp, &ptype) || !CBS_get_u8(&arp, &hlen) || !CBS_get_u8(&arp, &plen) ||
        htype != 1 || ptype != ETHERTYPE_IPV4 || hlen != 6 || plen != 4)
        return DP_RX_MALFORMED;
    return DP_RX_PASS;
}

/* check_tcp: `seg` is the IPv4 payload up to the total length. */
static dp_rx_verdict_t check_tcp(dp_rxgate_t *g, CBS *seg, uint32_t src, int64_t now_ms) {
    CBS tcp;
    uint8_t flags;
    if (!CBS_get_bytes(seg, &tcp, TCP_HEADER_MIN) ||
        !CBS_skip(&tcp, 13) || /* ports, sequence and ack numbers, data offset */
        !CBS_get_u8(&tcp, &flags))
        return DP_RX_MALFORMED;
    if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN) return DP_RX_PASS;
    return syn_admit(g, src, now_ms) ? DP_RX_PASS : DP_RX_SYN_LIMITED;
}

/* check_ipv4: `body` is everything after the Ethernet header, padding
 * included. */
static dp_rx_verdict_t check_ipv4(dp_rxgate_t *g, CBS *body, int64_t now_ms) {
    CBS peek = *body, hdr, pkt;
    uint8_t vihl, proto;
    uint16_t total_len, frag;
    uint32_t src, dst;
    if (!CBS_get_u8(&peek, &vihl)) return DP_RX_MALFORMED;
    size_t hdr_len = (size_t)(vihl & 0x0f) * 4;
    if ((vihl >> 4) != 4 || hdr_len < 20 || !CBS_get_bytes(body, &hdr, hdr_len) ||
        !CBS_skip(&hdr, 2) ||        /* version/IHL, DSCP/ECN */
        !CBS_get_u16(&hdr, &total_len) ||
        !CBS_skip(&hdr, 2) ||        /* identification */
        !CBS_get_u16(&hdr, &frag) ||
        !CBS_skip(&hdr, 1) ||        /* TTL */
        !CBS_get_u8(&hdr, &proto) ||
        !CBS_skip(&hdr, 2) ||        /* header checksum (lwIP verifies it) */
        !CBS_get_u32(&hdr, &src) || !CBS_get_u32(&hdr, &dst) ||
        total_len < hdr_len || total_len - hdr_len > CBS_len(body))
        return DP_RX_MALFORMED;
    if (dst != g->addr && dst != UINT32_MAX && dst != g->bcast) return DP_RX_NOT_OURS;
    if (proto != IPV4_PROTO_TCP || (frag & IPV4_FRAG_OFFSET) != 0) return DP_RX_PASS;
    if (!CBS_get_bytes(body, &pkt, total_len - hdr_len)) return DP_RX_MALFORMED; /* checked above */
    return check_tcp(g, &pkt, src, now_ms);
}

dp_rx_verdict_t dp_rxgate_check(dp_rxgate_t *g, const uint8_t *frame, size_t len, int64_t now_ms) {
    CBS f, dst;
    uint16_t type;
    CBS_init(&f, frame, len);
    if (!CBS_get_bytes(&f, &dst, 6) || !CBS_skip(&f, 6) || !CBS_get_u16(&f, &type))
        return DP_RX_MALFORMED;
    if (!CBS_mem_equal(&dst, g->mac, sizeof(g->mac)) &&
        !CBS_mem_equal(&dst, mac_broadcast, sizeof(mac_broadcast)))
        return DP_RX_NOT_OURS;
    switch (type) {
    case ETHERTYPE_ARP: return check_arp(&f);
    case ETHERTYPE_IPV4: return check_ipv4(g, &f, now_ms);
    default: return DP_RX_UNSUPPORTED;
    }
}
