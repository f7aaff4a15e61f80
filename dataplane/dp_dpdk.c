/* dp_dpdk: the DPDK half of the DPDK transport (see dp_dpdk.h): EAL, the
 * mbuf pool, the port and its queues, burst RX, buffered TX, link state and
 * counters. The lwIP half is dp_lwip.c.
 *
 * Linking: DPDK is linked statically with a hand-picked list of drivers
 * (meson.build). Debian's shared DPDK dlopens every plugin at rte_eal_init,
 * and one of them (crypto_openssl) maps OpenSSL into stampeded, which must
 * load BoringSSL only.
 * Threads: open/close on the main thread; queue q by polling core q. */
#include "dataplane/dp_dpdk.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#define DP_DPDK_MAX_ARGS 64
#define DP_DPDK_RX_BURST_MAX 64
#define DP_DPDK_TX_BURST 32
#define DP_DPDK_TX_DESC 1024
#define DP_DPDK_MAX_QUEUES 64

typedef struct {
    struct rte_eth_dev_tx_buffer *txb;
    dp_dpdk_qstats_t st;
    int rx_fd;
} __rte_cache_aligned dp_dpdk_queue_t;

struct dp_dpdk {
    uint16_t port;
    unsigned nq;
    struct rte_mempool *pool;
    unsigned pool_size;
    char driver[32];
    bool tap;            /* net_tap: its queue fds can wake a sleeping core */
    struct rte_ether_addr mac;
    char runtime_dir[256];
    char eal_words[2048], eal_prefix[64]; /* EAL keeps pointers into its argv */
    char *eal_argv[DP_DPDK_MAX_ARGS];
    dp_dpdk_queue_t q[DP_DPDK_MAX_QUEUES];
};

_Static_assert(DP_DPDK_PRIV % RTE_MBUF_PRIV_ALIGN == 0, "mbuf private area must stay aligned");

/* dp_dpdk_argv splits `eal` on spaces into argv (argv[0] = "stampeded")
 * and adds --file-prefix and --log-level unless given. `buf` holds the
 * words. Returns argc or -1. */
static int dp_dpdk_argv(const char *eal, char *buf, size_t cap, char **argv, char *prefix, size_t prefix_cap) {
    int argc = 0;
    argv[argc++] = "stampeded";
    if (snprintf(buf, cap, "%s", eal) >= (int)cap) return -1;
    bool has_prefix = false, has_log = false;
    for (char *save = NULL, *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        if (argc >= DP_DPDK_MAX_ARGS - 3) return -1;
        if (!strncmp(w, "--file-prefix", 13)) has_prefix = true;
        if (!strncmp(w, "--log-level", 11)) has_log = true;
        argv[argc++] = w;
    }
    if (!has_prefix) {
        snprintf(prefix, prefix_cap, "--file-prefix=stampeded-%ld", (long)getpid());
        argv[argc++] = prefix;
    }
    if (!has_log) argv[argc++] = "--log-level=warning";
    argv[argc] = NULL;
    return argc;
}

static int dp_dpdk_port_start(dp_dpdk_t *d, const dp_dpdk_conf_t *conf, bool rx_intr, char *why, size_t why_len) {
    struct rte_eth_conf pc;
    memset(&pc, 0, sizeof(pc));
    pc.intr_conf.rxq = rx_intr ? 1 : 0;
    int r = rte_eth_dev_configure(d->port, (uint16_t)d->nq, (uint16_t)d->nq, &pc);
    if (r < 0) {
        snprintf(why, why_len, "port %u: configure %u queues: %s", d->port, d->nq, rte_strerror(-r));
        return -1;
    }
    uint16_t nrx = (uint16_t)conf->rx_desc, ntx = DP_DPDK_TX_DESC;
    rte_eth_dev_adjust_nb_rx_tx_desc(d->port, &nrx, &ntx);
    int sock = rte_eth_dev_socket_id(d->port);
    if (sock < 0) sock = 0;
    for (unsigned i = 0; i < d->nq; i++) {
        if ((r = rte_eth_rx_queue_setup(d->port, (uint16_t)i, nrx, (unsigned)sock, NULL, d->pool)) < 0 ||
            (r = rte_eth_tx_queue_setup(d->port, (uint16_t)i, ntx, (unsigned)sock, NULL)) < 0) {
            snprintf(why, why_len, "port %u: queue %u setup: %s", d->port, i, rte_strerror(-r));
            return -1;
        }
    }
    if ((r = rte_eth_dev_start(d->port)) < 0) {
        snprintf(why, why_len, "port %u: start: %s", d->port, rte_strerror(-r));
        return -1;
    }
    return 0;
}

dp_dpdk_t *dp_dpdk_open(const dp_dpdk_conf_t *conf, char *why, size_t why_len) {
    if (conf->queues == 0 || conf->queues > DP_DPDK_MAX_QUEUES) {
        snprintf(why, why_len, "%u polling cores: the DPDK transport supports 1 to %d", conf->queues,
                 DP_DPDK_MAX_QUEUES);
        return NULL;
    }
    dp_dpdk_t *d = calloc(1, sizeof(*d)); /* kept until exit: EAL holds on to its argv */
    if (!d) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    int argc = dp_dpdk_argv(conf->eal, d->eal_words, sizeof(d->eal_words), d->eal_argv, d->eal_prefix,
                            sizeof(d->eal_prefix));
    if (argc < 0) {
        snprintf(why, why_len, "dpdk_eal: too long or too many arguments");
        free(d);
        return NULL;
    }
    cpu_set_t cpus;
    bool have_cpus = sched_getaffinity(0, sizeof(cpus), &cpus) == 0;
    if (rte_eal_init(argc, d->eal_argv) < 0) {
        snprintf(why, why_len, "EAL init failed (%s); dpdk_eal was '%s'", rte_strerror(rte_errno), conf->eal);
        const char *dir = rte_eal_get_runtime_dir();
        if (dir && dir[0]) rmdir(dir); /* made before the failure, empty */
        free(d);
        return NULL;
    }
    /* EAL pins the calling thread to its main lcore; polling cores pin
     * themselves, and the main thread and the signers must not be stuck on
     * one CPU. */
    if (have_cpus) sched_setaffinity(0, sizeof(cpus), &cpus);
    snprintf(d->runtime_dir, sizeof(d->runtime_dir), "%s", rte_eal_get_runtime_dir());
    d->nq = conf->queues;
    if (!rte_eth_dev_is_valid_port((uint16_t)conf->port)) {
        snprintf(why, why_len, "no DPDK port %u (%u ports found; give a device in dpdk_eal, e.g. "
                 "--vdev=net_tap0,iface=stp0 or a PCI address)", conf->port, rte_eth_dev_count_avail());
        goto fail;
    }
    d->port = (uint16_t)conf->port;
    struct rte_eth_dev_info info;
    int r = rte_eth_dev_info_get(d->port, &info);
    if (r) {
        snprintf(why, why_len, "port %u: %s", d->port, rte_strerror(-r));
        goto fail;
    }
    snprintf(d->driver, sizeof(d->driver), "%s", info.driver_name ? info.driver_name : "?");
    if (d->nq > info.max_rx_queues || d->nq > info.max_tx_queues) {
        snprintf(why, why_len, "port %u (%s) has %u RX / %u TX queues; %u polling cores need one pair each "
                 "(lower cores)", d->port, d->driver, info.max_rx_queues, info.max_tx_queues, d->nq);
        goto fail;
    }
    if (conf->mbufs < conf->rx_desc * d->nq + 2 * DP_DPDK_TX_BURST * d->nq + 64) {
        snprintf(why, why_len, "dpdk_mbufs %u is too small: the RX rings alone hold %u (dpdk_rx_desc x cores)",
                 conf->mbufs, conf->rx_desc * d->nq);
        goto fail;
    }
    int sock = rte_eth_dev_socket_id(d->port);
    d->pool = rte_pktmbuf_pool_create("stp_mbufs", conf->mbufs, 256, DP_DPDK_PRIV, RTE_MBUF_DEFAULT_BUF_SIZE,
                                      sock < 0 ? (int)rte_socket_id() : sock);
    if (!d->pool) {
        snprintf(why, why_len, "mbuf pool of %u: %s (with --no-huge, raise -m in dpdk_eal)", conf->mbufs,
                 rte_strerror(rte_errno));
        goto fail;
    }
    d->pool_size = conf->mbufs;
    /* net_tap wakes a sleeping core through its queue fd; other drivers are
     * polled (the core naps at most 1 ms when idle). */
    d->tap = !strcmp(d->driver, "net_tap");
    bool rx_intr = d->tap;
    if (dp_dpdk_port_start(d, conf, rx_intr, why, why_len)) goto fail;
    rte_eth_macaddr_get(d->port, &d->mac);
    for (unsigned i = 0; i < d->nq; i++) {
        dp_dpdk_queue_t *q = &d->q[i];
        q->rx_fd = rx_intr ? rte_eth_dev_rx_intr_ctl_q_get_fd(d->port, (uint16_t)i) : -1;
        q->txb = rte_zmalloc_socket("stp_txb", RTE_ETH_TX_BUFFER_SIZE(DP_DPDK_TX_BURST), 0, rte_socket_id());
        if (!q->txb) {
            snprintf(why, why_len, "TX buffer: out of DPDK memory");
            goto fail;
        }
        rte_eth_tx_buffer_init(q->txb, DP_DPDK_TX_BURST);
        rte_eth_tx_buffer_set_err_callback(q->txb, rte_eth_tx_buffer_count_callback, &q->st.tx_refused);
    }
    return d;
fail:
    dp_dpdk_close(d);
    return NULL;
}

void dp_dpdk_close(dp_dpdk_t *d) {
    if (!d) return;
    if (rte_eth_dev_is_valid_port(d->port) && d->driver[0]) {
        for (unsigned i = 0; i < d->nq; i++)
            if (d->q[i].txb) {
                rte_eth_tx_buffer_flush(d->port, (uint16_t)i, d->q[i].txb);
                rte_free(d->q[i].txb);
            }
        rte_eth_dev_stop(d->port);
        rte_eth_dev_close(d->port);
    }
    rte_mempool_free(d->pool);
    rte_eal_cleanup();
    if (d->runtime_dir[0]) rmdir(d->runtime_dir); /* EAL leaves it behind, empty */
    free(d);
}

void dp_dpdk_describe(const dp_dpdk_t *d, char *out, size_t cap) {
    char mac[RTE_ETHER_ADDR_FMT_SIZE];
    rte_ether_format_addr(mac, sizeof(mac), &d->mac);
    snprintf(out, cap, "port %u %s, %u queue pair%s, MAC %s, %u mbufs%s", d->port, d->driver, d->nq,
             d->nq == 1 ? "" : "s", mac, d->pool_size, d->q[0].rx_fd >= 0 ? ", RX wake-up fd" : "");
}

void dp_dpdk_mac(const dp_dpdk_t *d, uint8_t mac[6]) { memcpy(mac, d->mac.addr_bytes, 6); }

int dp_dpdk_thread_init(dp_dpdk_t *d) {
    (void)d;
    return rte_thread_register();
}

unsigned dp_dpdk_rx(dp_dpdk_t *d, unsigned q, dp_dpdk_pkt_t *pkts, unsigned max) {
    struct rte_mbuf *ms[DP_DPDK_RX_BURST_MAX];
    if (max > DP_DPDK_RX_BURST_MAX) max = DP_DPDK_RX_BURST_MAX;
    uint16_t n = rte_eth_rx_burst(d->port, (uint16_t)q, ms, (uint16_t)max);
    for (uint16_t i = 0; i < n; i++) {
        struct rte_mbuf *m = ms[i];
        if (m->nb_segs > 1) { /* never with a 2 KiB data room and MTU 1500 */
            d->q[q].st.rx_multiseg++;
            rte_pktmbuf_free(m);
            pkts[i] = (dp_dpdk_pkt_t){0};
            continue;
        }
        pkts[i] = (dp_dpdk_pkt_t){.m = m, .data = rte_pktmbuf_mtod(m, uint8_t *), .len = m->data_len,
                                  .priv = rte_mbuf_to_priv(m)};
    }
    d->q[q].st.rx_packets += n;
    if (n == max) d->q[q].st.rx_bursts_full++; /* a backlog: more may be waiting */
    return n;
}

void dp_dpdk_pkt_free(void *m) { rte_pktmbuf_free((struct rte_mbuf *)m); }

void dp_dpdk_priv_free(void *priv) {
    rte_pktmbuf_free((struct rte_mbuf *)((char *)priv - sizeof(struct rte_mbuf)));
}

bool dp_dpdk_pool_low(const dp_dpdk_t *d) {
    return rte_mempool_avail_count(d->pool) < d->pool_size / 4;
}

uint8_t *dp_dpdk_tx_alloc(dp_dpdk_t *d, unsigned q, size_t len, void **m) {
    struct rte_mbuf *mb = len <= RTE_MBUF_DEFAULT_DATAROOM ? rte_pktmbuf_alloc(d->pool) : NULL;
    uint8_t *data = mb ? (uint8_t *)rte_pktmbuf_append(mb, (uint16_t)len) : NULL;
    if (!data) {
        if (mb) rte_pktmbuf_free(mb);
        d->q[q].st.tx_nombuf++;
        return NULL;
    }
    *m = mb;
    return data;
}

void dp_dpdk_tx_queue(dp_dpdk_t *d, unsigned q, void *m) {
    d->q[q].st.tx_packets++; /* handed to the driver; tx_refused of them it did not take */
    rte_eth_tx_buffer(d->port, (uint16_t)q, d->q[q].txb, (struct rte_mbuf *)m);
}

void dp_dpdk_tx_flush(dp_dpdk_t *d, unsigned q) {
    if (d->q[q].txb->length) rte_eth_tx_buffer_flush(d->port, (uint16_t)q, d->q[q].txb);
}

int dp_dpdk_rx_fd(const dp_dpdk_t *d, unsigned q) { return d->q[q].rx_fd; }

bool dp_dpdk_link_up(dp_dpdk_t *d) {
    struct rte_eth_link link;
    memset(&link, 0, sizeof(link));
    return rte_eth_link_get_nowait(d->port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
}

void dp_dpdk_port_stats(dp_dpdk_t *d, dp_dpdk_port_t *out) {
    struct rte_eth_stats s;
    memset(out, 0, sizeof(*out));
    out->link_up = dp_dpdk_link_up(d);
    if (rte_eth_stats_get(d->port, &s) == 0) {
        out->ipackets = s.ipackets;
        out->opackets = s.opackets;
        out->imissed = s.imissed;
        out->ierrors = s.ierrors;
        out->oerrors = s.oerrors;
        out->rx_nombuf = s.rx_nombuf;
    }
    out->pool_free = rte_mempool_avail_count(d->pool);
    out->pool_size = d->pool_size;
}

const dp_dpdk_qstats_t *dp_dpdk_qstats(const dp_dpdk_t *d, unsigned q) { return &d->q[q].st; }
