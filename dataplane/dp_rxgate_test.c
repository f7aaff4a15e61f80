/* dp_rxgate_test: the RX admission gate on frames built here byte by byte:
 * every verdict, Ethernet padding, every truncation of a valid ARP and TCP
 * SYN frame (each copied to a heap buffer of exactly that length, so a read
 * past it is caught under ASan), and the per-source SYN bucket (rate, burst,
 * other flags and sources, slot eviction, a clock that steps back or
 * jumps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dataplane/dp_rxgate.h"

static const uint8_t our_mac[6] = {0x02, 0x00, 0x5e, 0x10, 0x20, 0x30};
static const uint8_t peer_mac[6] = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
static const uint8_t bcast_mac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
#define OUR_ADDR 0xc000020au /* 192.0.2.10 */
#define NETMASK 0xffffff00u  /* /24: broadcast 192.0.2.255 */
#define PEER_A 0xc6336401u   /* 198.51.100.1 */
#define PEER_B 0xc6336404u   /* 198.51.100.4 (not in PEER_A's slot of 64) */

#define TCP_SYN 0x02
#define TCP_ACK 0x10
#define TCP_SYNACK 0x12

/* A frame under construction: bytes appended one at a time. */
typedef struct {
    uint8_t b[256];
    size_t n;
} frame_t;

static void put8(frame_t *f, uint8_t v) {
    assert_true(f->n < sizeof(f->b));
    f->b[f->n++] = v;
}
static void put16(frame_t *f, uint16_t v) {
    put8(f, (uint8_t)(v >> 8));
    put8(f, (uint8_t)v);
}
static void put32(frame_t *f, uint32_t v) {
    put16(f, (uint16_t)(v >> 16));
    put16(f, (uint16_t)v);
}
static void put_mac(frame_t *f, const uint8_t mac[6]) {
    for (int i = 0; i < 6; i++) put8(f, mac[i]);
}
static void pad_to(frame_t *f, size_t n) {
    while (f->n < n) put8(f, 0);
}

static void eth(frame_t *f, const uint8_t dst[6], uint16_t type) {
    f->n = 0;
    put_mac(f, dst);
    put_mac(f, peer_mac);
    put16(f, type);
}

/* arp_frame: a who-has for our address from PEER_A (42 bytes). */
static void arp_frame(frame_t *f, uint16_t htype, uint16_t ptype, uint8_t hlen, uint8_t plen) {
    eth(f, bcast_mac, 0x0806);
    put16(f, htype);
    put16(f, ptype);
    put8(f, hlen);
    put8(f, plen);
    put16(f, 1); /* request */
    put_mac(f, peer_mac);
    put32(f, PEER_A);
    for (int i = 0; i < 6; i++) put8(f, 0);
    put32(f, OUR_ADDR);
}

/* ipv4_hdr: a header of `ihl` words (options are NOPs) with total length
 * `total`. */
static void ipv4_hdr(frame_t *f, uint8_t version, uint8_t ihl, uint16_t total, uint16_t frag,
                     uint8_t proto, uint32_t src, uint32_t dst) {
    put8(f, (uint8_t)(version << 4 | ihl));
    put8(f, 0);
    put16(f, total);
    put16(f, 0x1234);
    put16(f, frag);
    put8(f, 64);
    put8(f, proto);
    put16(f, 0); /* checksum: lwIP's job */
    put32(f, src);
    put32(f, dst);
    for (int i = 5; i < ihl; i++) put32(f, 0x01010101);
}

static void tcp_hdr(frame_t *f, uint8_t flags) {
    put16(f, 40000);
    put16(f, 443);
    put32(f, 1); /* seq */
    put32(f, 0); /* ack */
    put8(f, 5 << 4);
    put8(f, flags);
    put16(f, 65535);
    put16(f, 0);
    put16(f, 0);
}

/* tcp_frame: a 54-byte TCP segment with `flags` from `src` to `dst`. */
static void tcp_frame(frame_t *f, uint32_t src, uint32_t dst, uint8_t flags) {
    eth(f, our_mac, 0x0800);
    ipv4_hdr(f, 4, 5, 40, 0x4000, 6, src, dst);
    tcp_hdr(f, flags);
}

/* icmp_frame: an echo request to `dst`, padded to Ethernet's 60 bytes. */
static void icmp_frame(frame_t *f, const uint8_t mac[6], uint32_t dst) {
    eth(f, mac, 0x0800);
    ipv4_hdr(f, 4, 5, 28, 0, 1, PEER_A, dst);
    put8(f, 8);
    put8(f, 0);
    put16(f, 0);
    put16(f, 1);
    put16(f, 1);
    pad_to(f, 60);
}

static dp_rxgate_t gate(uint32_t syn_rate) {
    dp_rxgate_t g;
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, NETMASK, syn_rate, 64), 0);
    return g;
}

static dp_rx_verdict_t check(dp_rxgate_t *g, const frame_t *f, int64_t now) {
    return dp_rxgate_check(g, f->b, f->n, now);
}

static void test_verdict_str(void **state) {
    (void)state;
    assert_string_equal(dp_rx_verdict_str(DP_RX_PASS), "pass");
    assert_string_equal(dp_rx_verdict_str(DP_RX_NOT_OURS), "not for us");
    assert_string_equal(dp_rx_verdict_str(DP_RX_UNSUPPORTED), "unsupported protocol");
    assert_string_equal(dp_rx_verdict_str(DP_RX_MALFORMED), "malformed");
    assert_string_equal(dp_rx_verdict_str(DP_RX_SYN_LIMITED), "SYN rate limit");
    assert_string_equal(dp_rx_verdict_str(DP_RX__COUNT), "unknown");
    assert_string_equal(dp_rx_verdict_str((dp_rx_verdict_t)-1), "unknown");
}

static void test_init(void **state) {
    (void)state;
    dp_rxgate_t g;
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, NETMASK, 5, 0), 0);
    assert_int_equal(g.mask, 63); /* at least 64 */
    assert_memory_equal(g.mac, our_mac, 6);
    assert_int_equal(g.addr, OUR_ADDR);
    assert_int_equal(g.bcast, 0xc00002ffu);
    assert_int_equal(g.syn_rate, 5);
    dp_rxgate_free(&g);
    assert_null(g.slots);
    dp_rxgate_free(&g); /* twice is fine */
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, NETMASK, 5, 65), 0);
    assert_int_equal(g.mask, 127);
    dp_rxgate_free(&g);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, NETMASK, 5, 4096), 0);
    assert_int_equal(g.mask, 4095);
    dp_rxgate_free(&g);
    /* /31 and /32 have no directed broadcast; /0 broadcasts to all ones */
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, 0xfffffffeu, 5, 0), 0);
    assert_int_equal(g.bcast, 0xffffffffu);
    dp_rxgate_free(&g);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, 0xffffffffu, 5, 0), 0);
    assert_int_equal(g.bcast, 0xffffffffu);
    dp_rxgate_free(&g);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, 0xfffffffcu, 5, 0), 0);
    assert_int_equal(g.bcast, 0xc000020bu); /* /30 */
    dp_rxgate_free(&g);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, 0, DP_RXGATE_SYN_RATE_MAX, 0), 0);
    assert_int_equal(g.bcast, 0xffffffffu);
    dp_rxgate_free(&g);
    /* bad arguments leave the struct zeroed */
    assert_int_equal(dp_rxgate_init(&g, NULL, OUR_ADDR, NETMASK, 5, 0), -1);
    assert_null(g.slots);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, 0xff00ff00u, 5, 0), -1);
    assert_null(g.slots);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, NETMASK, DP_RXGATE_SYN_RATE_MAX + 1, 0),
                     -1);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, NETMASK, 5, DP_RXGATE_SLOTS_MAX + 1), -1);
    assert_int_equal(dp_rxgate_init(&g, our_mac, OUR_ADDR, NETMASK, 5, SIZE_MAX), -1);
    assert_int_equal(dp_rxgate_init(NULL, our_mac, OUR_ADDR, NETMASK, 5, 0), -1);
    dp_rxgate_free(&g);
    dp_rxgate_free(NULL);
}

static void test_mac_filter(void **state) {
    (void)state;
    dp_rxgate_t g = gate(5);
    frame_t f;
    icmp_frame(&f, our_mac, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    icmp_frame(&f, bcast_mac, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    icmp_frame(&f, peer_mac, OUR_ADDR); /* promiscuous: someone else's frame */
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    static const uint8_t mc4[6] = {0x01, 0x00, 0x5e, 0x00, 0x00, 0x01};
    static const uint8_t mc6[6] = {0x33, 0x33, 0x00, 0x00, 0x00, 0x01};
    static const uint8_t near[6] = {0x02, 0x00, 0x5e, 0x10, 0x20, 0x31}; /* last byte differs */
    static const uint8_t near0[6] = {0x03, 0x00, 0x5e, 0x10, 0x20, 0x30}; /* first byte differs */
    icmp_frame(&f, mc4, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    icmp_frame(&f, mc6, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    icmp_frame(&f, near, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    icmp_frame(&f, near0, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    /* the MAC decides before the EtherType and the body */
    eth(&f, peer_mac, 0x86dd);
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    eth(&f, peer_mac, 0x0800);
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    dp_rxgate_free(&g);
}

static void test_unsupported(void **state) {
    (void)state;
    dp_rxgate_t g = gate(5);
    frame_t f;
    const uint16_t types[] = {0x86dd, 0x8100, 0x88a8, 0x88cc, 0x8035, 0x0000, 0x0805, 0x0801, 0xffff};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        eth(&f, our_mac, types[i]);
        pad_to(&f, 60);
        assert_int_equal(check(&g, &f, 0), DP_RX_UNSUPPORTED);
    }
    /* a VLAN tag around a valid IPv4 packet is still unsupported */
    eth(&f, our_mac, 0x8100);
    put16(&f, 0x0005);
    put16(&f, 0x0800);
    ipv4_hdr(&f, 4, 5, 20, 0, 1, PEER_A, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_UNSUPPORTED);
    dp_rxgate_free(&g);
}

static void test_arp(void **state) {
    (void)state;
    dp_rxgate_t g = gate(5);
    frame_t f;
    arp_frame(&f, 1, 0x0800, 6, 4);
    assert_int_equal(f.n, 42);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    pad_to(&f, 60); /* Ethernet padding */
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    arp_frame(&f, 6, 0x0800, 6, 4); /* IEEE 802 htype */
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    arp_frame(&f, 1, 0x86dd, 6, 4);
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    arp_frame(&f, 1, 0x0800, 8, 4);
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    arp_frame(&f, 1, 0x0800, 6, 16);
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    arp_frame(&f, 0x0100, 0x0008, 6, 4); /* byte-swapped fields */
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    dp_rxgate_free(&g);
}

static void test_ipv4_header(void **state) {
    (void)state;
    dp_rxgate_t g = gate(5);
    frame_t f;
    icmp_frame(&f, our_mac, OUR_ADDR); /* 42 bytes + 18 of padding */
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    f.n = 42; /* unpadded */
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    f.n = 41; /* total length 28 > 27 available */
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);

    struct {
        uint8_t version, ihl;
        uint16_t total;
        size_t pad;
        dp_rx_verdict_t want;
    } cases[] = {
        {4, 5, 20, 0, DP_RX_PASS},           /* header only */
        {4, 5, 20, 60, DP_RX_PASS},          /* header + padding */
        {4, 6, 24, 0, DP_RX_PASS},           /* one word of options */
        {4, 15, 60, 0, DP_RX_PASS},          /* the longest header */
        {4, 15, 100, 0, DP_RX_MALFORMED},    /* total length past the frame */
        {6, 5, 20, 60, DP_RX_MALFORMED},     /* IPv6 in an IPv4 EtherType */
        {0, 5, 20, 60, DP_RX_MALFORMED},
        {5, 5, 20, 60, DP_RX_MALFORMED},
        {4, 4, 20, 60, DP_RX_MALFORMED},     /* IHL below 5 */
        {4, 0, 20, 60, DP_RX_MALFORMED},
        {4, 5, 19, 60, DP_RX_MALFORMED},     /* total length < header */
        {4, 6, 20, 60, DP_RX_MALFORMED},
        {4, 5, 0, 60, DP_RX_MALFORMED},
        {4, 5, 61, 60, DP_RX_MALFORMED},     /* total length > 46 available */
        {4, 5, 46, 60, DP_RX_PASS},          /* exactly the frame */
        {4, 5, 0xffff, 60, DP_RX_MALFORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        eth(&f, our_mac, 0x0800);
        ipv4_hdr(&f, cases[i].version, cases[i].ihl, cases[i].total, 0, 17, PEER_A, OUR_ADDR);
        pad_to(&f, cases[i].pad);
        if (dp_rxgate_check(&g, f.b, f.n, 0) != cases[i].want) fail_msg("case %zu", i);
    }
    /* IHL 15 with only 40 bytes of header present */
    eth(&f, our_mac, 0x0800);
    ipv4_hdr(&f, 4, 15, 60, 0, 17, PEER_A, OUR_ADDR);
    f.n = 14 + 40;
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    dp_rxgate_free(&g);
}

static void test_ipv4_dst(void **state) {
    (void)state;
    dp_rxgate_t g = gate(5);
    frame_t f;
    const struct {
        uint32_t dst;
        dp_rx_verdict_t want;
    } cases[] = {
        {OUR_ADDR, DP_RX_PASS},
        {0xffffffffu, DP_RX_PASS},     /* limited broadcast */
        {0xc00002ffu, DP_RX_PASS},     /* 192.0.2.255, our subnet's */
        {0xc000020bu, DP_RX_NOT_OURS}, /* a neighbour */
        {0xc0000200u, DP_RX_NOT_OURS}, /* the network address */
        {0xc00003ffu, DP_RX_NOT_OURS}, /* another subnet's broadcast */
        {0xe0000001u, DP_RX_NOT_OURS}, /* 224.0.0.1 */
        {0x0a00020au, DP_RX_NOT_OURS}, /* 10.0.2.10: host part matches */
        {0, DP_RX_NOT_OURS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        icmp_frame(&f, our_mac, cases[i].dst);
        if (check(&g, &f, 0) != cases[i].want) fail_msg("case %zu", i);
        icmp_frame(&f, bcast_mac, cases[i].dst);
        if (check(&g, &f, 0) != cases[i].want) fail_msg("case %zu (broadcast MAC)", i);
    }
    /* sanity comes before the destination: a broken packet for someone else */
    eth(&f, our_mac, 0x0800);
    ipv4_hdr(&f, 4, 5, 100, 0, 1, PEER_A, 0x0a000001u);
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    /* a TCP SYN for someone else is not counted against its source */
    dp_rxgate_t g1 = gate(1);
    tcp_frame(&f, PEER_A, 0x0a000001u, TCP_SYN);
    for (int i = 0; i < 3; i++) assert_int_equal(check(&g1, &f, 0), DP_RX_NOT_OURS);
    tcp_frame(&f, PEER_A, OUR_ADDR, TCP_SYN);
    assert_int_equal(check(&g1, &f, 0), DP_RX_PASS);
    dp_rxgate_free(&g1);
    dp_rxgate_free(&g);
}

static void test_tcp_header(void **state) {
    (void)state;
    dp_rxgate_t g = gate(0);
    frame_t f;
    tcp_frame(&f, PEER_A, OUR_ADDR, TCP_ACK);
    assert_int_equal(f.n, 54);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    pad_to(&f, 60);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    /* total length leaves 19 bytes of TCP; the padding does not count */
    for (uint16_t tcp_len = 0; tcp_len < 20; tcp_len++) {
        eth(&f, our_mac, 0x0800);
        ipv4_hdr(&f, 4, 5, (uint16_t)(20 + tcp_len), 0, 6, PEER_A, OUR_ADDR);
        tcp_hdr(&f, TCP_ACK);
        pad_to(&f, 60);
        if (check(&g, &f, 0) != DP_RX_MALFORMED) fail_msg("TCP header of %u bytes", tcp_len);
    }
    /* IP options move the TCP header */
    eth(&f, our_mac, 0x0800);
    ipv4_hdr(&f, 4, 7, 28 + 20, 0, 6, PEER_A, OUR_ADDR);
    tcp_hdr(&f, TCP_ACK);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    f.n--;
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    /* a later fragment carries no TCP header; a first fragment (MF) does */
    eth(&f, our_mac, 0x0800);
    ipv4_hdr(&f, 4, 5, 28, 0x2001, 6, PEER_A, OUR_ADDR); /* MF, offset 8 bytes */
    put32(&f, 0);
    put32(&f, 0);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    eth(&f, our_mac, 0x0800);
    ipv4_hdr(&f, 4, 5, 28, 0x2000, 6, PEER_A, OUR_ADDR); /* MF, offset 0: tiny first fragment */
    put32(&f, 0);
    put32(&f, 0);
    assert_int_equal(check(&g, &f, 0), DP_RX_MALFORMED);
    /* other protocols need no TCP-sized payload */
    eth(&f, our_mac, 0x0800);
    ipv4_hdr(&f, 4, 5, 20, 0, 17, PEER_A, OUR_ADDR);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    dp_rxgate_free(&g);
}

/* Every prefix of a valid frame is MALFORMED, read from a heap buffer of
 * exactly that many bytes. */
static void all_truncations(dp_rxgate_t *g, const frame_t *f) {
    assert_int_equal(dp_rxgate_check(g, f->b, f->n, 0), DP_RX_PASS);
    assert_int_equal(dp_rxgate_check(g, NULL, 0, 0), DP_RX_MALFORMED);
    for (size_t n = 0; n < f->n; n++) {
        uint8_t *copy = test_malloc(n ? n : 1);
        memcpy(copy, f->b, n);
        if (dp_rxgate_check(g, copy, n, 0) != DP_RX_MALFORMED) fail_msg("prefix of %zu bytes", n);
        test_free(copy);
    }
}

static void test_truncated(void **state) {
    (void)state;
    dp_rxgate_t g = gate(0); /* no limit: every full SYN would pass */
    frame_t f;
    arp_frame(&f, 1, 0x0800, 6, 4);
    all_truncations(&g, &f);
    tcp_frame(&f, PEER_A, OUR_ADDR, TCP_SYN);
    all_truncations(&g, &f);
    dp_rxgate_free(&g);
}

static void test_syn_bucket(void **state) {
    (void)state;
    dp_rxgate_t g = gate(5);
    frame_t syn, synack, ack, syn_b;
    tcp_frame(&syn, PEER_A, OUR_ADDR, TCP_SYN);
    tcp_frame(&synack, PEER_A, OUR_ADDR, TCP_SYNACK);
    tcp_frame(&ack, PEER_A, OUR_ADDR, TCP_ACK);
    tcp_frame(&syn_b, PEER_B, OUR_ADDR, TCP_SYN);
    int64_t t = 1000000;
    for (int i = 0; i < 5; i++) assert_int_equal(check(&g, &syn, t), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, t), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, t + 199), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, t + 200), DP_RX_PASS); /* 200 ms = one token */
    assert_int_equal(check(&g, &syn, t + 200), DP_RX_SYN_LIMITED);
    /* SYN-ACK, ACK and other flags from the same source are never limited */
    for (int i = 0; i < 50; i++) {
        assert_int_equal(check(&g, &synack, t + 200), DP_RX_PASS);
        assert_int_equal(check(&g, &ack, t + 200), DP_RX_PASS);
    }
    frame_t other;
    const uint8_t flags[] = {0x00, 0x01, 0x04, 0x08, 0x11, 0x14, 0x18, 0xf0, 0xff};
    for (size_t i = 0; i < sizeof(flags); i++) {
        tcp_frame(&other, PEER_A, OUR_ADDR, flags[i]);
        assert_int_equal(check(&g, &other, t + 200), DP_RX_PASS);
    }
    /* SYN with FIN, RST, PSH or URG but no ACK still counts */
    tcp_frame(&other, PEER_A, OUR_ADDR, TCP_SYN | 0x01 | 0x04 | 0x08 | 0x20);
    assert_int_equal(check(&g, &other, t + 200), DP_RX_SYN_LIMITED);
    /* another source has its own bucket (and its own slot) */
    assert_int_equal(check(&g, &syn_b, t + 200), DP_RX_PASS);
    size_t held_a = 0;
    for (size_t i = 0; i <= g.mask; i++) held_a += g.slots[i].src == PEER_A;
    assert_int_equal(held_a, 1);
    for (int i = 0; i < 4; i++) assert_int_equal(check(&g, &syn_b, t + 200), DP_RX_PASS);
    assert_int_equal(check(&g, &syn_b, t + 200), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, t + 200), DP_RX_SYN_LIMITED);
    /* a long pause refills one second's burst, no more */
    int n = 0;
    while (check(&g, &syn, t + 3600000) == DP_RX_PASS) n++;
    assert_int_equal(n, 5);
    /* unused tokens do not pile up past the burst */
    frame_t syn_c;
    tcp_frame(&syn_c, 0xc6336406u, OUR_ADDR, TCP_SYN); /* 198.51.100.6, a third slot */
    assert_int_equal(check(&g, &syn_c, t), DP_RX_PASS); /* 4 left */
    n = 0;
    while (check(&g, &syn_c, t + 10000) == DP_RX_PASS) n++;
    assert_int_equal(n, 5);
    /* a steady 5 SYNs/s passes */
    for (int s = 1; s <= 20; s++) assert_int_equal(check(&g, &syn, t + 3600000 + 200 * s), DP_RX_PASS);
    dp_rxgate_free(&g);
}

static void test_syn_rates(void **state) {
    (void)state;
    frame_t syn;
    tcp_frame(&syn, PEER_A, OUR_ADDR, TCP_SYN);
    dp_rxgate_t g = gate(0); /* no limit */
    for (int i = 0; i < 10000; i++) assert_int_equal(check(&g, &syn, 0), DP_RX_PASS);
    dp_rxgate_free(&g);
    g = gate(1); /* a burst of one */
    assert_int_equal(check(&g, &syn, 0), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, 0), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, 999), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, 1000), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, 100000), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, 100000), DP_RX_SYN_LIMITED);
    dp_rxgate_free(&g);
    g = gate(DP_RXGATE_SYN_RATE_MAX); /* the largest rate: no overflow */
    for (int i = 0; i < 1000; i++) assert_int_equal(check(&g, &syn, INT64_MAX), DP_RX_PASS);
    dp_rxgate_free(&g);
}

/* Sources sharing a slot evict each other; the newcomer starts full. */
static void test_collision(void **state) {
    (void)state;
    dp_rxgate_t g = gate(2);
    frame_t syn_a, syn_c;
    tcp_frame(&syn_a, PEER_A, OUR_ADDR, TCP_SYN);
    assert_int_equal(check(&g, &syn_a, 0), DP_RX_PASS);
    assert_int_equal(check(&g, &syn_a, 0), DP_RX_PASS);
    assert_int_equal(check(&g, &syn_a, 0), DP_RX_SYN_LIMITED);
    size_t slot_a = g.mask + 1;
    for (size_t i = 0; i <= g.mask; i++)
        if (g.slots[i].src == PEER_A) slot_a = i;
    assert_true(slot_a <= g.mask);
    /* find another source that lands in A's slot (64 slots: a few hundred tries) */
    uint32_t c = 0;
    for (uint32_t cand = 0x0a000001u; cand < 0x0a010000u && !c; cand++) {
        tcp_frame(&syn_c, cand, OUR_ADDR, TCP_SYN);
        assert_int_equal(check(&g, &syn_c, 0), DP_RX_PASS);
        if (g.slots[slot_a].src == cand) c = cand;
    }
    assert_int_not_equal(c, 0);
    /* C evicted A: A starts again with a full bucket (2 SYNs at once) */
    assert_int_equal(check(&g, &syn_a, 0), DP_RX_PASS);
    assert_int_equal(g.slots[slot_a].src, PEER_A);
    assert_int_equal(check(&g, &syn_a, 0), DP_RX_PASS);
    assert_int_equal(check(&g, &syn_a, 0), DP_RX_SYN_LIMITED);
    /* and A evicted C */
    tcp_frame(&syn_c, c, OUR_ADDR, TCP_SYN);
    assert_int_equal(check(&g, &syn_c, 0), DP_RX_PASS);
    assert_int_equal(check(&g, &syn_c, 0), DP_RX_PASS);
    assert_int_equal(check(&g, &syn_c, 0), DP_RX_SYN_LIMITED);
    dp_rxgate_free(&g);
}

/* Source 0.0.0.0 matches an unused slot's src field: it must still get a
 * full bucket, then be limited like any other. */
static void test_source_zero(void **state) {
    (void)state;
    dp_rxgate_t g = gate(2);
    frame_t syn;
    tcp_frame(&syn, 0, OUR_ADDR, TCP_SYN);
    assert_int_equal(check(&g, &syn, INT64_MIN), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, INT64_MIN), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, INT64_MIN), DP_RX_SYN_LIMITED);
    dp_rxgate_free(&g);
}

static void test_clock(void **state) {
    (void)state;
    dp_rxgate_t g = gate(5);
    frame_t syn;
    tcp_frame(&syn, PEER_A, OUR_ADDR, TCP_SYN);
    int64_t t = 10000;
    for (int i = 0; i < 5; i++) assert_int_equal(check(&g, &syn, t), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, t), DP_RX_SYN_LIMITED);
    /* stepping back adds nothing, however far */
    assert_int_equal(check(&g, &syn, t - 5000), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, INT64_MIN), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, INT64_MIN), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, -1), DP_RX_PASS); /* refill restarted at INT64_MIN */
    assert_int_equal(check(&g, &syn, -1), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, -1), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, -1), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, -1), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, -1), DP_RX_SYN_LIMITED);
    /* after a step back, refill counts from the new time */
    assert_int_equal(check(&g, &syn, -1001), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, -802), DP_RX_SYN_LIMITED);
    assert_int_equal(check(&g, &syn, -601), DP_RX_PASS); /* 995 + 1005 milli-tokens */
    assert_int_equal(check(&g, &syn, -601), DP_RX_PASS);
    assert_int_equal(check(&g, &syn, -601), DP_RX_SYN_LIMITED);
    /* the widest jump forward: INT64_MIN to INT64_MAX, one burst */
    assert_int_equal(check(&g, &syn, INT64_MIN), DP_RX_SYN_LIMITED);
    int n = 0;
    while (check(&g, &syn, INT64_MAX) == DP_RX_PASS) n++;
    assert_int_equal(n, 5);
    assert_int_equal(check(&g, &syn, INT64_MIN), DP_RX_SYN_LIMITED);
    dp_rxgate_free(&g);
}

/* A zeroed gate (never initialised, or freed) drops frames for lack of a
 * MAC, and does not crash on a SYN. */
static void test_zeroed(void **state) {
    (void)state;
    dp_rxgate_t g;
    memset(&g, 0, sizeof(g));
    frame_t f;
    tcp_frame(&f, PEER_A, OUR_ADDR, TCP_SYN);
    assert_int_equal(check(&g, &f, 0), DP_RX_NOT_OURS);
    eth(&f, bcast_mac, 0x0800);
    ipv4_hdr(&f, 4, 5, 40, 0, 6, PEER_A, 0xffffffffu);
    tcp_hdr(&f, TCP_SYN);
    assert_int_equal(check(&g, &f, 0), DP_RX_PASS);
    dp_rxgate_free(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verdict_str), cmocka_unit_test(test_init),
        cmocka_unit_test(test_mac_filter),  cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_arp),         cmocka_unit_test(test_ipv4_header),
        cmocka_unit_test(test_ipv4_dst),    cmocka_unit_test(test_tcp_header),
        cmocka_unit_test(test_truncated),   cmocka_unit_test(test_syn_bucket),
        cmocka_unit_test(test_syn_rates),   cmocka_unit_test(test_collision),
        cmocka_unit_test(test_source_zero), cmocka_unit_test(test_clock),
        cmocka_unit_test(test_zeroed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
