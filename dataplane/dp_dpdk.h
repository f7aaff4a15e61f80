/* dp_dpdk: the DPDK half of the DPDK transport: EAL, the mbuf pool, one
 * Ethernet port with one RX/TX queue pair per polling core, burst receive,
 * buffered transmit and the port's link and counters. Plain C types only:
 * DPDK and lwIP headers cannot share a translation unit (struct ip6_hdr and
 * IP_DF clash), so the lwIP half (dp_lwip.c) sees DPDK only through this
 * header, and mbufs only as opaque pointers.
 * Threads: dp_dpdk_open/close at startup and exit (main thread); queue `q`
 * is used only by the thread that holds lwIP's core lock on behalf of
 * polling core `q` (RX by core q itself), so no queue is ever shared. */
#ifndef DP_DPDK_H
#define DP_DPDK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dp_dpdk dp_dpdk_t;

/* Bytes reserved in each mbuf's private area for the lwIP side (a struct
 * pbuf_custom: zero-copy receive). */
#define DP_DPDK_PRIV 64

typedef struct {
    const char *eal;     /* EAL arguments, space separated (no quoting) */
    unsigned port;       /* DPDK port id */
    unsigned queues;     /* RX/TX queue pairs = polling cores */
    unsigned mbufs;      /* mbuf pool size */
    unsigned rx_desc;    /* RX ring descriptors per queue */
} dp_dpdk_conf_t;

/* A received frame: its bytes and the private area for lwIP. */
typedef struct {
    void *m;             /* the mbuf (opaque) */
    uint8_t *data;
    uint16_t len;
    void *priv;          /* DP_DPDK_PRIV bytes owned by the mbuf */
} dp_dpdk_pkt_t;

/* Per-queue counters; written only by the queue's user. */
typedef struct {
    uint64_t rx_packets, rx_bursts_full, rx_multiseg, tx_packets, tx_nombuf, tx_refused;
} dp_dpdk_qstats_t;

/* Port-wide state and the driver's counters. */
typedef struct {
    bool link_up;
    uint64_t ipackets, opackets, imissed, ierrors, oerrors, rx_nombuf;
    unsigned pool_free, pool_size;
} dp_dpdk_port_t;

/* dp_dpdk_open initialises EAL with conf->eal (adding --file-prefix and a
 * log level unless given), restores the calling thread's CPU affinity, makes
 * the mbuf pool and starts the port with conf->queues queue pairs.
 * Startup only (once per process). Returns the handle, or NULL with the cause
 * in `why`. */
dp_dpdk_t *dp_dpdk_open(const dp_dpdk_conf_t *conf, char *why, size_t why_len);

/* dp_dpdk_close stops and closes the port (a tap interface disappears) and
 * cleans EAL up, removing its runtime directory. Exit only, after every
 * polling core has stopped. Safe on NULL. */
void dp_dpdk_close(dp_dpdk_t *d);

/* dp_dpdk_describe writes "driver, N queues, MAC" for the log. */
void dp_dpdk_describe(const dp_dpdk_t *d, char *out, size_t cap);
void dp_dpdk_mac(const dp_dpdk_t *d, uint8_t mac[6]);

/* dp_dpdk_thread_init registers the calling polling core with EAL (an lcore
 * id and a mempool cache). Polling core only, once. Returns 0 or -1. */
int dp_dpdk_thread_init(dp_dpdk_t *d);

/* dp_dpdk_rx receives up to `max` frames from queue `q`. Ownership: each
 * pkts[i].m is the caller's, to free with dp_dpdk_pkt_free (or, once handed
 * to lwIP, dp_dpdk_priv_free). Polling core q only. */
unsigned dp_dpdk_rx(dp_dpdk_t *d, unsigned q, dp_dpdk_pkt_t *pkts, unsigned max);

/* dp_dpdk_pkt_free frees mbuf `m`; dp_dpdk_priv_free frees the mbuf whose
 * private area is `priv`. Any polling core or the main thread. */
void dp_dpdk_pkt_free(void *m);
void dp_dpdk_priv_free(void *priv);

/* dp_dpdk_pool_low says fewer than a quarter of the mbufs are free: the
 * receive path then copies instead of holding mbufs in connections. */
bool dp_dpdk_pool_low(const dp_dpdk_t *d);

/* dp_dpdk_tx_alloc returns room for a `len`-byte frame in a fresh mbuf
 * (*m), or NULL if the pool is empty or the frame too long (counted as
 * tx_nombuf). dp_dpdk_tx_queue buffers *m on queue `q`; a full buffer is
 * sent at once; frames the driver refuses are freed and counted. */
uint8_t *dp_dpdk_tx_alloc(dp_dpdk_t *d, unsigned q, size_t len, void **m);
void dp_dpdk_tx_queue(dp_dpdk_t *d, unsigned q, void *m);
/* dp_dpdk_tx_flush sends what queue `q` has buffered. */
void dp_dpdk_tx_flush(dp_dpdk_t *d, unsigned q);

/* dp_dpdk_rx_fd returns an fd that polls readable while queue q has frames
 * (net_tap), or -1 if the driver has none. */
int dp_dpdk_rx_fd(const dp_dpdk_t *d, unsigned q);

/* dp_dpdk_link_up reads the link state without waiting. */
bool dp_dpdk_link_up(dp_dpdk_t *d);

/* dp_dpdk_stats reads port counters and queue q's counters. */
void dp_dpdk_port_stats(dp_dpdk_t *d, dp_dpdk_port_t *out);
const dp_dpdk_qstats_t *dp_dpdk_qstats(const dp_dpdk_t *d, unsigned q);

#endif
