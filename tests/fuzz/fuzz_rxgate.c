/* fuzz_rxgate: libFuzzer target for the DPDK transport's RX admission gate
 * (every frame from the wire). Input: 8 bytes of clock (big-endian
 * milliseconds, any int64_t), then one Ethernet frame. The frame is checked
 * four times (twice at that time, a second later, then half the clock's
 * range away) through a gate with a burst of one SYN, so the SYN bucket's
 * refill runs at every clock value, forward and back. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_rxgate.h"

static const uint8_t fuzz_mac[6] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x01};
#define FUZZ_ADDR 0xc000020au /* 192.0.2.10/24 */
#define FUZZ_NETMASK 0xffffff00u

static void check_verdict(dp_rx_verdict_t v) {
    if ((unsigned)v >= DP_RX__COUNT || strcmp(dp_rx_verdict_str(v), "unknown") == 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t clock = 0;
    size_t skip = size < 8 ? size : 8;
    for (size_t i = 0; i < skip; i++) clock = clock << 8 | data[i];
    int64_t now_ms;
    memcpy(&now_ms, &clock, sizeof(now_ms));
    uint64_t far = clock ^ ((uint64_t)1 << 63); /* half the clock's range away */
    int64_t far_ms;
    memcpy(&far_ms, &far, sizeof(far_ms));
    bool forward = now_ms <= INT64_MAX - 1000;     /* else the clock wraps back */
    int64_t later_ms = forward ? now_ms + 1000 : INT64_MIN;

    dp_rxgate_t g;
    if (dp_rxgate_init(&g, fuzz_mac, FUZZ_ADDR, FUZZ_NETMASK, 1, 64) != 0) abort();
    const uint8_t *frame = data + skip;
    size_t len = size - skip;
    dp_rx_verdict_t v1 = dp_rxgate_check(&g, frame, len, now_ms);
    dp_rx_verdict_t v2 = dp_rxgate_check(&g, frame, len, now_ms);
    dp_rx_verdict_t v3 = dp_rxgate_check(&g, frame, len, later_ms);
    dp_rx_verdict_t v4 = dp_rxgate_check(&g, frame, len, far_ms);
    check_verdict(v1);
    check_verdict(v2);
    check_verdict(v3);
    check_verdict(v4);
    if (len < 14 && v1 != DP_RX_MALFORMED) abort();
    /* only a SYN's verdict depends on the bucket: the rest is a function of
     * the bytes */
    if (v1 != DP_RX_PASS && (v2 != v1 || v3 != v1 || v4 != v1)) abort();
    /* a burst of one: a fresh bucket admits one SYN, a second at the same
     * instant is refused, a second later refills it, a step back does not */
    if (v1 == DP_RX_PASS && v2 == DP_RX_SYN_LIMITED &&
        v3 != (forward ? DP_RX_PASS : DP_RX_SYN_LIMITED))
        abort();
    if (v1 == DP_RX_PASS && v2 != DP_RX_PASS && v2 != DP_RX_SYN_LIMITED) abort();
    dp_rxgate_free(&g);
    return 0;
}
