/* dp_lwip: the DPDK transport (`transport = dpdk`): lwIP is the TCP/IP
 * stack over the DPDK port of dp_dpdk.c, and this file fills the transport
 * ops table, so the TLS, EST and CAPF engines run unchanged on top.
 *
 * Why this shape: Debian's lwIP (liblwip-dev) is one global stack guarded
 * by its core lock (LWIP_TCPIP_CORE_LOCKING), with its options fixed in the
 * shared library. So:
 *  - every lwIP call (frame input, raw TCP API, timers) runs under that lock,
 *    on whichever polling core holds it; TX then goes out on that core's own
 *    queue (dp_lw_t.cur_q), so no DPDK queue is shared;
 *  - lwIP callbacks never run session code: they only note events on the
 *    connection (dp_lwconn_t) and put it on its owner core's ready list.
 *    The owner (the core that accepted it) takes the list under the lock and
 *    drives its sessions after unlocking: sessions stay on their core even
 *    when a flow's frames arrive on another queue (tun steering, af_packet
 *    rollover) or from the timer core, and the engines run unlocked;
 *  - received frames become pbufs without a copy (a pbuf_custom in the mbuf's
 *    private area) unless the pool runs low; data a connection received waits
 *    in its pbuf chain until the engine reads it, and the TCP window opens
 *    (tcp_recved) only as it is read;
 *  - the frames a core produces in one loop go out as one burst (TX buffer
 *    flushed once per loop iteration, i.e. within microseconds);
 *  - core 0 owns lwIP's timers (every 10 ms) and the link state (polled every
 *    100 ms: netif link down/up, counted);
 *  - an idle core spins dpdk_spin_us, then sleeps in epoll_wait on its
 *    completion eventfd, Redis sockets, a wake-up eventfd (another core
 *    queued it work) and, with net_tap, its RX queue's fd.
 * Before lwIP, dp_rxgate drops frames not for us and limits SYNs per source
 * (lwIP here has no SYN cookies and no listen backlog). net_tap's per-frame
 * real-time signal is taken by polling cores only. On SIGTERM no core leaves
 * before every core has drained and lwIP has delivered what was written.
 * Threads: setup/cleanup on the main thread; the rest on polling cores. */
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <urcu/arch.h>
#include <urcu/uatomic.h>

#include <lwip/etharp.h>
#include <lwip/init.h>
#include <lwip/netif.h>
#include <lwip/pbuf.h>
#include <lwip/sys.h>
#include <lwip/tcp.h>
#include <lwip/priv/tcp_priv.h> /* tcp_active_pcbs: what lwIP still holds at exit */
#include <lwip/tcpip.h>
#include <lwip/timeouts.h>
#include <netif/ethernet.h>

#include "dataplane/dp_core.h"
#include "dataplane/dp_dpdk.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"
#include "dataplane/dp_rxgate.h"

#define DP_LW_BURST 64
#define DP_LW_EPOLL_BATCH 64
#define DP_LW_TIMER_MS 10      /* lwIP timer resolution (core 0) */
#define DP_LW_LINK_MS 100      /* link state poll (core 0) */
#define DP_LW_NOFD_NAP_MS 1    /* longest idle sleep of a core without an RX fd */

_Static_assert(sizeof(struct pbuf_custom) <= DP_DPDK_PRIV, "pbuf_custom must fit the mbuf private area");

/* Events noted by lwIP callbacks for the owner core. */
enum { DP_LW_EV_ACCEPT = 1, DP_LW_EV_READ = 2, DP_LW_EV_WRITE = 4, DP_LW_EV_FIN = 8, DP_LW_EV_ERR = 16 };

typedef struct dp_lw dp_lw_t;

/* dp_lwconn_t: one TCP connection. Fields under "lock" are touched only
 * with lwIP's core lock held (from any core); "owner" fields only by the
 * owner core. */
typedef struct dp_lwconn {
    /* lock */
    struct tcp_pcb *pcb;          /* NULL once lwIP dropped it (err) */
    struct pbuf *in_head, *in_tail; /* received, not yet taken by the owner */
    unsigned ev;                  /* DP_LW_EV_* not yet taken */
    bool queued;                  /* on the owner's ready list */
    bool want_write;              /* a send found no room: report writable */
    bool mem_blocked;             /* tcp_write said ERR_MEM: wait for an ACK (on_sent) */
    struct cds_list_head ready_link;
    struct dp_lwconn *next_free;
    /* set at accept, then read-only */
    dp_lw_t *t;
    unsigned owner;
    uint8_t proto;
    char peer[48];
    /* owner */
    dp_sess_t *sess;
    struct pbuf *rx_head, *rx_tail; /* taken from in_*, read by recv */
    size_t rx_off;                /* bytes of rx_head already read */
    size_t unrecved;              /* read but the window not yet opened */
    unsigned pending;             /* events taken, not yet delivered */
    bool fin, err;
    struct cds_list_head work_link;  /* on the core's work list unless empty (self-linked) */
    struct cds_list_head dirty_link; /* on the core's dirty list unless empty (self-linked) */
} dp_lwconn_t;

typedef struct {
    uint64_t not_ours, unsupported, malformed, syn_limited, rx_copied, rx_dropped, accepted, refused;
} dp_lw_stats_t;

/* dp_lwcore_t: the transport's part of one polling core. */
typedef struct {
    uint8_t poll_type;            /* DP_POLL_XPORT: its fds only end the wait */
    int wake_fd;                  /* eventfd: another core queued it work */
    int rx_fd;                    /* net_tap RX queue fd, or -1 */
    struct cds_list_head ready;   /* lock: connections with events */
    int ready_hint;               /* atomic: `ready` may be non-empty */
    int sleeping;                 /* atomic: in epoll_wait with a timeout */
    struct cds_list_head work;    /* owner: taken from `ready`, to deliver */
    struct cds_list_head dirty;   /* owner: connections with unrecved bytes */
    bool drained;                 /* owner: counted out of dp_lw_t.cores_running */
    int64_t next_flush_check_ms;  /* owner: next look for data lwIP still holds */
    dp_lw_stats_t st;             /* lock (counted by whoever holds it for this core) */
} __attribute__((aligned(64))) dp_lwcore_t;

typedef struct {
    dp_lw_t *t;
    uint8_t proto;
    uint16_t port;
    struct tcp_pcb *pcb;
} dp_lw_listener_t;

struct dp_lw {
    dp_dpdk_t *dpdk;
    struct netif nif;
    dp_rxgate_t gate;             /* lock */
    dp_lw_listener_t lst[2];      /* EST, CAPF */
    unsigned cur_q;               /* lock: the holder's queue (= its core id) */
    dp_lwconn_t *free_conns;      /* lock */
    unsigned ncores;
    dp_lwcore_t *cores;
    bool link_up;                 /* core 0 */
    uint64_t link_downs, link_ups;/* core 0 */
    int64_t next_timer_ms, next_link_ms; /* core 0 */
    unsigned spin_us;
    int cores_running;            /* atomic: cores not yet drained (exit) */
    bool lwip_up;                 /* lwip_init ran and the core lock exists */
};

/* ---- lock ---- */

static void dp_lw_lock(dp_lw_t *t, unsigned q) {
    LOCK_TCPIP_CORE();
    t->cur_q = q;
}

static void dp_lw_unlock(void) { UNLOCK_TCPIP_CORE(); }

static int64_t dp_lw_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- netif ---- */

static err_t dp_lw_linkoutput(struct netif *nif, struct pbuf *p) {
    dp_lw_t *t = nif->state;
    void *m;
    uint8_t *dst = dp_dpdk_tx_alloc(t->dpdk, t->cur_q, p->tot_len, &m);
    if (!dst) return ERR_MEM; /* counted; TCP retransmits */
    pbuf_copy_partial(p, dst, p->tot_len, 0);
    dp_dpdk_tx_queue(t->dpdk, t->cur_q, m);
    return ERR_OK;
}

static err_t dp_lw_netif_init(struct netif *nif) {
    dp_lw_t *t = nif->state;
    nif->name[0] = 's';
    nif->name[1] = 't';
    nif->hwaddr_len = 6;
    dp_dpdk_mac(t->dpdk, nif->hwaddr);
    nif->mtu = 1500;
    nif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET;
    nif->output = etharp_output;
    nif->linkoutput = dp_lw_linkoutput;
    return ERR_OK;
}

/* dp_lw_rx_free returns a zero-copy pbuf's mbuf to the pool. */
static void dp_lw_rx_free(struct pbuf *p) { dp_dpdk_priv_free(p); }

/* ---- connection events (lwIP callbacks: lock held, any core) ---- */

static void dp_lw_post(dp_lwconn_t *k, unsigned ev) {
    dp_lw_t *t = k->t;
    k->ev |= ev;
    if (k->queued) return;
    k->queued = true;
    dp_lwcore_t *lc = &t->cores[k->owner];
    cds_list_add_tail(&k->ready_link, &lc->ready);
    uatomic_set(&lc->ready_hint, 1);
    cmm_smp_mb(); /* pairs with the owner's store to `sleeping` then read of `ready_hint` */
    if (k->owner != t->cur_q && uatomic_read(&lc->sleeping)) {
        uint64_t one = 1;
        if (write(lc->wake_fd, &one, sizeof(one)) < 0) { /* the counter is full: it is awake anyway */
        }
    }
}

static err_t dp_lw_on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err) {
    dp_lwconn_t *k = arg;
    (void)err;
    if (!k) { /* no owner any more (cannot happen: callbacks are cleared at close) */
        if (p) {
            tcp_recved(pcb, p->tot_len);
            pbuf_free(p);
        }
        return ERR_OK;
    }
    if (!p) {
        dp_lw_post(k, DP_LW_EV_FIN);
        return ERR_OK;
    }
    struct pbuf *last = p;
    while (last->next) last = last->next;
    if (k->in_tail) k->in_tail->next = p; /* our own chain: tot_len is not kept */
    else k->in_head = p;
    k->in_tail = last;
    dp_lw_post(k, DP_LW_EV_READ);
    return ERR_OK;
}

static err_t dp_lw_on_sent(void *arg, struct tcp_pcb *pcb, u16_t len) {
    dp_lwconn_t *k = arg;
    (void)pcb, (void)len;
    if (k) k->mem_blocked = false;
    if (k && k->want_write) {
        k->want_write = false;
        dp_lw_post(k, DP_LW_EV_WRITE);
    }
    return ERR_OK;
}

static void dp_lw_on_err(void *arg, err_t err) {
    dp_lwconn_t *k = arg;
    (void)err;
    if (!k) return;
    k->pcb = NULL; /* lwIP has freed it */
    dp_lw_post(k, DP_LW_EV_ERR);
}

static err_t dp_lw_on_accept(void *arg, struct tcp_pcb *pcb, err_t err) {
    dp_lw_listener_t *l = arg;
    dp_lw_t *t = l->t;
    if (err != ERR_OK || !pcb) return ERR_VAL;
    dp_lwcore_t *lc = &t->cores[t->cur_q];
    dp_lwconn_t *k = t->free_conns;
    if (k) t->free_conns = k->next_free;
    else k = malloc(sizeof(*k)); /* per connection, recycled; never per packet */
    if (!k) {
        lc->st.refused++;
        tcp_abort(pcb);
        return ERR_ABRT;
    }
    memset(k, 0, sizeof(*k));
    k->t = t;
    k->pcb = pcb;
    k->owner = t->cur_q; /* the core whose queue completed the handshake */
    k->proto = l->proto;
    char a[IP4ADDR_STRLEN_MAX];
    ip4addr_ntoa_r(ip_2_ip4(&pcb->remote_ip), a, sizeof(a));
    snprintf(k->peer, sizeof(k->peer), "%s:%u", a, pcb->remote_port);
    CDS_INIT_LIST_HEAD(&k->work_link);
    CDS_INIT_LIST_HEAD(&k->dirty_link);
    tcp_arg(pcb, k);
    tcp_recv(pcb, dp_lw_on_recv);
    tcp_sent(pcb, dp_lw_on_sent);
    tcp_err(pcb, dp_lw_on_err);
    tcp_nagle_disable(pcb); /* stampeded coalesces its own writes */
    lc->st.accepted++;
    dp_lw_post(k, DP_LW_EV_ACCEPT);
    return ERR_OK;
}

/* ---- the owner side ---- */

/* dp_lw_free_chain frees a chain we linked by hand, pbuf by pbuf (each was
 * handed to us with its own reference). */
static void dp_lw_free_chain(struct pbuf **head, struct pbuf **tail) {
    for (struct pbuf *p = *head, *next; p; p = next) {
        next = p->next;
        p->next = NULL;
        pbuf_free(p);
    }
    *head = *tail = NULL;
}

/* dp_lw_take moves the core's ready connections to its work list, with
 * their received data and events. Lock held. */
static void dp_lw_take(dp_lwcore_t *lc) {
    uatomic_set(&lc->ready_hint, 0);
    while (!cds_list_empty(&lc->ready)) {
        dp_lwconn_t *k = cds_list_first_entry(&lc->ready, dp_lwconn_t, ready_link);
        cds_list_del(&k->ready_link);
        k->queued = false;
        if (k->in_head) {
            if (k->rx_tail) k->rx_tail->next = k->in_head;
            else k->rx_head = k->in_head;
            k->rx_tail = k->in_tail;
            k->in_head = k->in_tail = NULL;
        }
        if (k->ev & DP_LW_EV_FIN) k->fin = true;
        if (k->ev & DP_LW_EV_ERR) k->err = true;
        k->pending |= k->ev;
        k->ev = 0;
        if (cds_list_empty(&k->work_link)) cds_list_add_tail(&k->work_link, &lc->work);
    }
}

/* dp_lw_open_window gives lwIP back the window of what the engine read
 * (tcp_recved takes at most 0xffff at a time). Lock held. */
static void dp_lw_open_window(dp_lwconn_t *k) {
    while (k->pcb && k->unrecved) {
        u16_t n = k->unrecved > 0xffff ? 0xffff : (u16_t)k->unrecved;
        tcp_recved(k->pcb, n);
        k->unrecved -= n;
    }
    k->unrecved = 0;
}

/* dp_lw_recved opens the windows by what the engines read. Lock held. */
static void dp_lw_recved(dp_lwcore_t *lc) {
    while (!cds_list_empty(&lc->dirty)) {
        dp_lwconn_t *k = cds_list_first_entry(&lc->dirty, dp_lwconn_t, dirty_link);
        cds_list_del_init(&k->dirty_link);
        dp_lw_open_window(k);
        /* The engine read and did not answer (it waits for more, or for a
         * signer): acknowledge now, not at lwIP's 250 ms delayed-ACK timer,
         * or a client that waits for the ACK (Nagle) stalls. When it did
         * answer, the answer carried the ACK and the flag is clear. */
        if (k->pcb && (k->pcb->flags & TF_ACK_DELAY)) {
            tcp_set_flags(k->pcb, TF_ACK_NOW);
            tcp_output(k->pcb);
        }
    }
}

static void dp_lw_close_conn(dp_lwconn_t *k);

/* dp_lw_deliver drives the sessions of the work list. Lock not held. */
static void dp_lw_deliver(dp_core_t *c, dp_lwcore_t *lc) {
    while (!cds_list_empty(&lc->work)) {
        dp_lwconn_t *k = cds_list_first_entry(&lc->work, dp_lwconn_t, work_link);
        cds_list_del_init(&k->work_link);
        unsigned ev = k->pending;
        k->pending = 0;
        if (ev & DP_LW_EV_ACCEPT) {
            dp_sess_t *s = dp_core_accepted(c, (dp_conn_t){.fd = -1, .pcb = k}, k->peer, k->proto);
            if (!s) {
                dp_lw_close_conn(k);
                continue;
            }
            k->sess = s;
            s->conn.rx_hup = k->fin || k->err;
            dp_sess_on_io(s, true, true, s->conn.rx_hup);
            continue;
        }
        if (!k->sess) continue;
        bool hup = k->fin || k->err;
        k->sess->conn.rx_hup = hup;
        dp_sess_on_io(k->sess, ev & (DP_LW_EV_READ | DP_LW_EV_FIN | DP_LW_EV_ERR), ev & DP_LW_EV_WRITE,
                      ev & (DP_LW_EV_FIN | DP_LW_EV_ERR));
    }
}

/* ---- frames in ---- */

/* dp_lw_input hands a burst to lwIP. Lock held. */
static void dp_lw_input(dp_lw_t *t, dp_lwcore_t *lc, dp_dpdk_pkt_t *pkts, unsigned n, int64_t now_ms) {
    bool low = n && dp_dpdk_pool_low(t->dpdk);
    for (unsigned i = 0; i < n; i++) {
        dp_dpdk_pkt_t *pk = &pkts[i];
        if (!pk->m) continue;
        dp_rx_verdict_t v = dp_rxgate_check(&t->gate, pk->data, pk->len, now_ms);
        if (v != DP_RX_PASS) {
            if (v == DP_RX_NOT_OURS) lc->st.not_ours++;
            else if (v == DP_RX_UNSUPPORTED) lc->st.unsupported++;
            else if (v == DP_RX_SYN_LIMITED) lc->st.syn_limited++;
            else lc->st.malformed++;
            dp_dpdk_pkt_free(pk->m);
            continue;
        }
        struct pbuf *p;
        if (low) { /* the pool runs low: do not let connections hold mbufs */
            p = pbuf_alloc(PBUF_RAW, pk->len, PBUF_RAM);
            if (p) {
                pbuf_take(p, pk->data, pk->len);
                lc->st.rx_copied++;
            }
            dp_dpdk_pkt_free(pk->m);
        } else {
            struct pbuf_custom *pc = pk->priv;
            pc->custom_free_function = dp_lw_rx_free;
            p = pbuf_alloced_custom(PBUF_RAW, pk->len, PBUF_REF, pc, pk->data, pk->len);
            if (!p) dp_dpdk_pkt_free(pk->m);
        }
        if (!p) {
            lc->st.rx_dropped++;
            continue;
        }
        if (t->nif.input(p, &t->nif) != ERR_OK) {
            lc->st.rx_dropped++;
            pbuf_free(p);
        }
    }
}

/* dp_lw_core0 runs lwIP's timers and follows the link. Lock held, core 0. */
static void dp_lw_core0(dp_lw_t *t, int64_t now_ms) {
    if (now_ms >= t->next_timer_ms) {
        sys_check_timeouts();
        t->next_timer_ms = now_ms + DP_LW_TIMER_MS;
    }
    if (now_ms >= t->next_link_ms) {
        t->next_link_ms = now_ms + DP_LW_LINK_MS;
        bool up = dp_dpdk_link_up(t->dpdk);
        if (up != t->link_up) {
            t->link_up = up;
            if (up) {
                t->link_ups++;
                netif_set_link_up(&t->nif); /* sends a gratuitous ARP */
                DP_INFO("dpdk: link up");
            } else {
                t->link_downs++;
                netif_set_link_down(&t->nif);
                DP_WARN("dpdk: link down: connections wait (TCP retransmits) until it is back");
            }
        }
    }
}

/* ---- the polling loop ---- */

/* dp_lw_rt_signals blocks or unblocks, on the calling thread, the real-time
 * signals a driver may use (SIGRTMIN+1 up; glibc keeps the first ones). */
static void dp_lw_rt_signals(int how) {
    sigset_t rt;
    sigemptyset(&rt);
    for (int sig = SIGRTMIN + 1; sig <= SIGRTMAX; sig++) sigaddset(&rt, sig);
    /* When the real-time signal queue overflows (RLIMIT_SIGPENDING: frames
     * while no core takes them), the kernel sends SIGIO instead, whose
     * default action ends the process: keep it blocked everywhere. */
    if (how == SIG_BLOCK) sigaddset(&rt, SIGIO);
    pthread_sigmask(how, &rt, NULL);
}

/* dp_lw_pending says lwIP still holds data it has not delivered (unsent or
 * unacknowledged segments). Lock held. */
static bool dp_lw_pending(void) {
    for (struct tcp_pcb *p = tcp_active_pcbs; p; p = p->next)
        if (p->unsent || p->unacked) return true;
    return false;
}

/* dp_lw_may_exit: a core leaves only when every core has drained its
 * sessions and lwIP has delivered what they wrote (a closed session's last
 * bytes live on in lwIP, and core 0 runs the timers that retransmit them),
 * or at the hard deadline (stop deadline + 2 s, as the kernel transport). */
static bool dp_lw_may_exit(dp_lw_t *t, dp_lwcore_t *lc, dp_core_t *c) {
    if (!dp_core_should_exit(c)) return false;
    if (!lc->drained) {
        lc->drained = true;
        uatomic_dec(&t->cores_running);
    }
    if (c->now_ms >= c->rt->stop_deadline_ms + 2000) return true;
    if (uatomic_read(&t->cores_running) > 0 || c->now_ms < lc->next_flush_check_ms) return false;
    lc->next_flush_check_ms = c->now_ms + DP_LW_TIMER_MS;
    dp_lw_lock(t, c->id);
    bool pending = dp_lw_pending();
    dp_lw_unlock();
    return !pending;
}

static void dp_lw_run(dp_core_t *c) {
    dp_lw_t *t = c->rt->xport;
    dp_lwcore_t *lc = &t->cores[c->id];
    unsigned q = c->id;
    if (dp_dpdk_thread_init(t->dpdk)) DP_WARN("dpdk: cannot register core %u with EAL (no mempool cache)", q);
    dp_lw_rt_signals(SIG_UNBLOCK); /* net_tap's per-frame signal lands here (see setup) */
    dp_dpdk_pkt_t pkts[DP_LW_BURST];
    struct epoll_event evs[DP_LW_EPOLL_BATCH];
    int64_t busy_us = dp_lw_now_us();
    while (!dp_lw_may_exit(t, lc, c)) {
        int wait = dp_core_service(c, 100);
        unsigned n = dp_dpdk_rx(t->dpdk, q, pkts, DP_LW_BURST);
        int64_t now_us = dp_lw_now_us(), now_ms = now_us / 1000;
        bool timers = q == 0 && (now_ms >= t->next_timer_ms || now_ms >= t->next_link_ms);
        if (n || timers || uatomic_read(&lc->ready_hint) || !cds_list_empty(&lc->dirty)) {
            dp_lw_lock(t, q);
            dp_lw_input(t, lc, pkts, n, now_ms);
            if (timers) dp_lw_core0(t, now_ms);
            dp_lw_recved(lc);
            dp_lw_take(lc);
            dp_lw_unlock();
        }
        bool work = !cds_list_empty(&lc->work);
        c->now_ms = now_ms;
        dp_lw_deliver(c, lc);
        dp_dpdk_tx_flush(t->dpdk, q);
        /* Sleep only when this iteration found nothing to do and the core
         * has spun dpdk_spin_us since it last did. */
        int tmo = 0;
        if (n || work) busy_us = now_us;
        else if (now_us - busy_us >= (int64_t)t->spin_us && cds_list_empty(&lc->dirty)) {
            tmo = wait;
            if (q == 0) {
                int64_t next = t->next_timer_ms < t->next_link_ms ? t->next_timer_ms : t->next_link_ms;
                int64_t d = next - now_ms;
                if (d < tmo) tmo = d < 0 ? 0 : (int)d;
            }
            if (lc->rx_fd < 0 && tmo > DP_LW_NOFD_NAP_MS) tmo = DP_LW_NOFD_NAP_MS;
        }
        bool armed = tmo > 0;
        if (armed) {
            uatomic_set(&lc->sleeping, 1);
            cmm_smp_mb(); /* pairs with dp_lw_post: its store to ready_hint, then its read of sleeping */
            if (uatomic_read(&lc->ready_hint)) tmo = 0;
        }
        int ne = epoll_wait(c->epfd, evs, DP_LW_EPOLL_BATCH, tmo);
        if (armed) uatomic_set(&lc->sleeping, 0);
        if (ne < 0) {
            if (errno != EINTR) DP_ERR("epoll_wait: %s", strerror(errno));
            continue;
        }
        c->now_ms = dp_now_ms();
        for (int i = 0; i < ne; i++) dp_core_on_poll(c, evs[i].data.ptr, evs[i].events);
    }
}

/* ---- the ops the engines call (owner core) ---- */

static ssize_t dp_lw_recv(dp_conn_t *conn, void *buf, size_t len) {
    dp_lwconn_t *k = conn->pcb;
    if (!k) return DP_IO_ERROR;
    size_t got = 0;
    uint8_t *out = buf;
    while (got < len && k->rx_head) {
        struct pbuf *p = k->rx_head;
        size_t take = p->len - k->rx_off;
        if (take > len - got) take = len - got;
        memcpy(out + got, (const uint8_t *)p->payload + k->rx_off, take);
        got += take;
        k->rx_off += take;
        if (k->rx_off == p->len) {
            k->rx_head = p->next;
            if (!k->rx_head) k->rx_tail = NULL;
            p->next = NULL;
            k->rx_off = 0;
            pbuf_free(p); /* the mbuf goes back to the pool */
        }
    }
    if (got) {
        k->unrecved += got;
        if (cds_list_empty(&k->dirty_link)) cds_list_add_tail(&k->dirty_link, &k->t->cores[k->owner].dirty);
        return (ssize_t)got;
    }
    if (k->err) return DP_IO_ERROR;
    return k->fin ? DP_IO_EOF : DP_IO_AGAIN;
}

static ssize_t dp_lw_send(dp_conn_t *conn, const void *buf, size_t len) {
    dp_lwconn_t *k = conn->pcb;
    if (!k) return DP_IO_ERROR;
    dp_lw_t *t = k->t;
    dp_lw_lock(t, k->owner);
    if (!k->pcb) {
        dp_lw_unlock();
        return DP_IO_ERROR;
    }
    size_t n = tcp_sndbuf(k->pcb);
    if (n > len) n = len;
    if (n > 0xffff) n = 0xffff;
    err_t e = ERR_MEM;
    while (n && (e = tcp_write(k->pcb, buf, (u16_t)n, TCP_WRITE_FLAG_COPY)) == ERR_MEM && n > 1460)
        n /= 2; /* the segment queue is long: take less */
    if (e != ERR_OK && e != ERR_MEM) {
        dp_lw_unlock();
        return DP_IO_ERROR;
    }
    if (e != ERR_OK) n = 0;
    k->mem_blocked = e == ERR_MEM; /* the segment queue is full although the buffer has room */
    tcp_output(k->pcb);
    if (n < len) k->want_write = true;
    dp_lw_unlock();
    return n ? (ssize_t)n : DP_IO_AGAIN;
}

static void dp_lw_watch_write(dp_core_t *c, dp_conn_t *conn, void *owner) {
    (void)c, (void)owner;
    dp_lwconn_t *k = conn->pcb;
    if (!k) return;
    dp_lw_lock(k->t, k->owner);
    k->want_write = true;
    /* Room now: say so at once. After ERR_MEM, room in bytes is not room:
     * the next ACK (on_sent) reports it. */
    if (!k->pcb || (tcp_sndbuf(k->pcb) > 0 && !k->mem_blocked)) dp_lw_post(k, DP_LW_EV_WRITE);
    dp_lw_unlock();
}

/* dp_lw_close_conn ends a connection and recycles its object: the session
 * has gone (or never came). Unread data makes lwIP reset the connection,
 * as Linux does. Lock not held. */
static void dp_lw_close_conn(dp_lwconn_t *k) {
    dp_lw_free_chain(&k->rx_head, &k->rx_tail);
    cds_list_del(&k->work_link); /* a no-op when not on the list (self-linked) */
    dp_lw_t *t = k->t;
    dp_lw_lock(t, k->owner);
    cds_list_del(&k->dirty_link);
    if (k->pcb) {
        dp_lw_open_window(k);
        tcp_arg(k->pcb, NULL);
        tcp_recv(k->pcb, NULL);
        tcp_sent(k->pcb, NULL);
        tcp_err(k->pcb, NULL);
        if (tcp_close(k->pcb) != ERR_OK) tcp_abort(k->pcb);
        k->pcb = NULL;
    }
    dp_lw_free_chain(&k->in_head, &k->in_tail);
    if (k->queued) cds_list_del(&k->ready_link);
    k->next_free = t->free_conns;
    t->free_conns = k;
    dp_lw_unlock();
}

static void dp_lw_close(dp_core_t *c, dp_conn_t *conn) {
    (void)c;
    dp_lwconn_t *k = conn->pcb;
    conn->pcb = NULL;
    if (k) dp_lw_close_conn(k);
}

static void dp_lw_stop_listening(dp_core_t *c) {
    dp_lw_t *t = c->rt->xport;
    dp_lw_lock(t, c->id);
    for (int i = 0; i < 2; i++) /* shared by all cores: the first one closes them */
        if (t->lst[i].pcb) {
            tcp_accept(t->lst[i].pcb, NULL);
            tcp_close(t->lst[i].pcb);
            t->lst[i].pcb = NULL;
        }
    dp_lw_unlock();
}

static void dp_lw_log_stats(dp_core_t *c) {
    dp_lw_t *t = c->rt->xport;
    dp_lwcore_t *lc = &t->cores[c->id];
    const dp_dpdk_qstats_t *qs = dp_dpdk_qstats(t->dpdk, c->id);
    DP_INFO("dpdk core%u: rx_packets=%llu rx_bursts_full=%llu rx_multiseg=%llu tx_packets=%llu tx_nombuf=%llu "
            "tx_refused=%llu not_ours=%llu unsupported=%llu malformed=%llu syn_limited=%llu rx_copied=%llu "
            "rx_dropped=%llu accepted=%llu refused=%llu",
            c->id, (unsigned long long)qs->rx_packets, (unsigned long long)qs->rx_bursts_full,
            (unsigned long long)qs->rx_multiseg, (unsigned long long)qs->tx_packets,
            (unsigned long long)qs->tx_nombuf, (unsigned long long)qs->tx_refused,
            (unsigned long long)lc->st.not_ours, (unsigned long long)lc->st.unsupported,
            (unsigned long long)lc->st.malformed, (unsigned long long)lc->st.syn_limited,
            (unsigned long long)lc->st.rx_copied, (unsigned long long)lc->st.rx_dropped,
            (unsigned long long)lc->st.accepted, (unsigned long long)lc->st.refused);
    if (c->id != 0) return;
    dp_dpdk_port_t ps;
    dp_dpdk_port_stats(t->dpdk, &ps);
    DP_INFO("dpdk port: link=%s link_downs=%llu link_ups=%llu ipackets=%llu opackets=%llu imissed=%llu "
            "ierrors=%llu oerrors=%llu rx_nombuf=%llu mbufs_free=%u/%u",
            ps.link_up ? "up" : "down", (unsigned long long)t->link_downs, (unsigned long long)t->link_ups,
            (unsigned long long)ps.ipackets, (unsigned long long)ps.opackets, (unsigned long long)ps.imissed,
            (unsigned long long)ps.ierrors, (unsigned long long)ps.oerrors, (unsigned long long)ps.rx_nombuf,
            ps.pool_free, ps.pool_size);
}

/* ---- setup and cleanup (main thread) ---- */

/* dp_lw_port reads the port of a HOST:PORT setting. */
static int dp_lw_port(const char *spec, uint16_t *port) {
    const char *colon = strrchr(spec, ':');
    char *end;
    unsigned long v = colon ? strtoul(colon + 1, &end, 10) : 0;
    if (!colon || !colon[1] || *end || v == 0 || v > 65535) return -1;
    *port = (uint16_t)v;
    return 0;
}

static int dp_lw_addr(const dp_config_t *cfg, ip4_addr_t *ip, ip4_addr_t *mask, ip4_addr_t *gw, char *why,
                      size_t why_len) {
    char a[64];
    const char *slash = strchr(cfg->dpdk_addr, '/');
    char *end;
    unsigned long bits = slash ? strtoul(slash + 1, &end, 10) : 99;
    struct in_addr in;
    if (!slash || (size_t)(slash - cfg->dpdk_addr) >= sizeof(a) || !slash[1] || *end || bits < 1 || bits > 31) {
        snprintf(why, why_len, "dpdk_addr '%s' is not an IPv4 address with a prefix length 1-31, e.g. 10.77.0.2/24",
                 cfg->dpdk_addr);
        return -1;
    }
    memcpy(a, cfg->dpdk_addr, (size_t)(slash - cfg->dpdk_addr));
    a[slash - cfg->dpdk_addr] = 0;
    if (inet_pton(AF_INET, a, &in) != 1) {
        snprintf(why, why_len, "dpdk_addr '%s': '%s' is not an IPv4 address", cfg->dpdk_addr, a);
        return -1;
    }
    ip->addr = in.s_addr;
    mask->addr = htonl(0xffffffffu << (32 - bits));
    gw->addr = 0;
    if (cfg->dpdk_gateway[0]) {
        if (inet_pton(AF_INET, cfg->dpdk_gateway, &in) != 1) {
            snprintf(why, why_len, "dpdk_gateway '%s' is not an IPv4 address", cfg->dpdk_gateway);
            return -1;
        }
        gw->addr = in.s_addr;
        if ((gw->addr & mask->addr) != (ip->addr & mask->addr)) {
            snprintf(why, why_len, "dpdk_gateway %s is not in %s", cfg->dpdk_gateway, cfg->dpdk_addr);
            return -1;
        }
    }
    return 0;
}

static int dp_lw_listen(dp_lw_t *t, dp_lw_listener_t *l, char *why, size_t why_len) {
    struct tcp_pcb *pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
    if (!pcb || tcp_bind(pcb, IP4_ADDR_ANY, l->port) != ERR_OK) {
        if (pcb) tcp_abort(pcb);
        snprintf(why, why_len, "lwIP: cannot bind port %u", l->port);
        return -1;
    }
    l->pcb = tcp_listen_with_backlog(pcb, TCP_DEFAULT_LISTEN_BACKLOG);
    if (!l->pcb) {
        tcp_abort(pcb);
        snprintf(why, why_len, "lwIP: cannot listen on port %u", l->port);
        return -1;
    }
    l->t = t;
    tcp_arg(l->pcb, l);
    tcp_accept(l->pcb, dp_lw_on_accept);
    return 0;
}

static void dp_lw_cleanup(dp_runtime_t *rt);

static int dp_lw_setup_inner(dp_runtime_t *rt, char *why, size_t why_len) {
    const dp_config_t *cfg = &rt->cfg;
    ip4_addr_t ip, mask, gw;
    if (!cfg->dpdk_addr[0]) {
        snprintf(why, why_len, "transport dpdk needs dpdk_addr (the appliance's IPv4 address/prefix on the port)");
        return -1;
    }
    if (dp_lw_addr(cfg, &ip, &mask, &gw, why, why_len)) return -1;
    dp_lw_t *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    rt->xport = t;
    t->ncores = rt->num_cores;
    t->cores_running = (int)rt->num_cores;
    t->spin_us = cfg->dpdk_spin_us;
    t->lst[0] = (dp_lw_listener_t){.proto = DP_PROTO_EST};
    t->lst[1] = (dp_lw_listener_t){.proto = DP_PROTO_CAPF};
    if (dp_lw_port(cfg->est_listen, &t->lst[0].port) ||
        (cfg->capf_listen[0] && dp_lw_port(cfg->capf_listen, &t->lst[1].port))) {
        snprintf(why, why_len, "est_listen / capf_listen: no port to listen on");
        return -1;
    }
    if (posix_memalign((void **)&t->cores, 64, t->ncores * sizeof(dp_lwcore_t))) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    memset(t->cores, 0, t->ncores * sizeof(dp_lwcore_t));
    for (unsigned i = 0; i < t->ncores; i++) {
        dp_lwcore_t *lc = &t->cores[i];
        lc->poll_type = DP_POLL_XPORT;
        lc->wake_fd = lc->rx_fd = -1;
        CDS_INIT_LIST_HEAD(&lc->ready);
        CDS_INIT_LIST_HEAD(&lc->work);
        CDS_INIT_LIST_HEAD(&lc->dirty);
    }
    dp_dpdk_conf_t dc = {.eal = cfg->dpdk_eal, .port = cfg->dpdk_port, .queues = t->ncores,
                         .mbufs = cfg->dpdk_mbufs, .rx_desc = cfg->dpdk_rx_desc};
    /* net_tap (22.11) has the kernel send a real-time signal (the first free
     * one after SIGRTMIN) for every frame it queues; the handler bumps the
     * driver's receive trigger. Only polling cores take those signals (they
     * unblock them in dp_lw_run): on the main thread each one would end its
     * sigtimedwait, on a signer it would interrupt signing. Threads started
     * from here on (EAL's, the signers) inherit the block. */
    dp_lw_rt_signals(SIG_BLOCK);
    if (!(t->dpdk = dp_dpdk_open(&dc, why, why_len))) return -1;
    uint8_t mac[6];
    dp_dpdk_mac(t->dpdk, mac);
    if (dp_rxgate_init(&t->gate, mac, ntohl(ip.addr), ntohl(mask.addr), cfg->dpdk_syn_rate, 4096)) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < t->ncores; i++) {
        dp_core_t *c = &rt->cores[i];
        dp_lwcore_t *lc = &t->cores[i];
        if (dp_core_epoll_init(c, why, why_len)) return -1;
        lc->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = &lc->poll_type};
        if (lc->wake_fd < 0 || epoll_ctl(c->epfd, EPOLL_CTL_ADD, lc->wake_fd, &ev)) {
            snprintf(why, why_len, "eventfd: %s", strerror(errno));
            return -1;
        }
        int fd = dp_dpdk_rx_fd(t->dpdk, i);
        struct epoll_event rev = {.events = EPOLLIN, .data.ptr = &lc->poll_type}; /* level: frames waiting */
        if (fd >= 0 && epoll_ctl(c->epfd, EPOLL_CTL_ADD, fd, &rev) == 0) lc->rx_fd = fd;
    }
    lwip_init();
    if (sys_mutex_new(&lock_tcpip_core) != ERR_OK) { /* tcpip_init would make it; lwIP runs on our cores */
        snprintf(why, why_len, "lwIP: cannot create its core lock");
        return -1;
    }
    t->lwip_up = true;
    dp_lw_lock(t, 0); /* the main thread may use queue 0: core 0 has not started */
    sys_mark_tcpip_thread(); /* from now on an lwIP call without the lock aborts */
    int rc = 0;
    if (!netif_add(&t->nif, &ip, &mask, &gw, t, dp_lw_netif_init, ethernet_input)) {
        snprintf(why, why_len, "lwIP: netif_add failed");
        rc = -1;
    } else {
        netif_set_default(&t->nif);
        netif_set_up(&t->nif);
        t->link_up = dp_dpdk_link_up(t->dpdk);
        if (t->link_up) netif_set_link_up(&t->nif);
        rc = dp_lw_listen(t, &t->lst[0], why, why_len);
        if (!rc && cfg->capf_listen[0]) rc = dp_lw_listen(t, &t->lst[1], why, why_len);
    }
    dp_dpdk_tx_flush(t->dpdk, 0);
    dp_lw_unlock();
    if (rc) return -1;
    char desc[160], a[IP4ADDR_STRLEN_MAX];
    dp_dpdk_describe(t->dpdk, desc, sizeof(desc));
    ip4addr_ntoa_r(&ip, a, sizeof(a));
    snprintf(rt->est_where, sizeof(rt->est_where), "%s:%u", a, t->lst[0].port);
    if (cfg->capf_listen[0]) snprintf(rt->capf_where, sizeof(rt->capf_where), "%s:%u", a, t->lst[1].port);
    if (cfg->so_sndbuf)
        DP_WARN("so_sndbuf %u applies to the kernel transport only: lwIP's send buffer is fixed at 64 KiB",
                cfg->so_sndbuf);
    DP_INFO("dpdk: %s; lwIP %s/%s gateway %s; link %s; EST port %u%s%.0u", desc, a, strchr(cfg->dpdk_addr, '/') + 1,
            cfg->dpdk_gateway[0] ? cfg->dpdk_gateway : "none", t->link_up ? "up" : "down", t->lst[0].port,
            cfg->capf_listen[0] ? ", CAPF port " : "", cfg->capf_listen[0] ? t->lst[1].port : 0);
    return 0;
}

static int dp_lw_setup(dp_runtime_t *rt, char *why, size_t why_len) {
    int rc = dp_lw_setup_inner(rt, why, why_len);
    if (rc) dp_lw_cleanup(rt); /* removes the tap interface and EAL's runtime directory */
    return rc;
}

static void dp_lw_cleanup(dp_runtime_t *rt) {
    dp_lw_t *t = rt->xport;
    if (!t) return;
    if (t->lwip_up) {
        dp_lw_lock(t, 0);
        /* Connections still open at the hard deadline: reset them, so their
         * peers do not wait on a stack that is going away. Their err
         * callbacks drop the pcbs and queue the connections to their cores. */
        while (tcp_active_pcbs) tcp_abort(tcp_active_pcbs);
        for (unsigned i = 0; i < t->ncores; i++) { /* accepted, never delivered (stopping) */
            dp_lwcore_t *lc = &t->cores[i];
            dp_lw_take(lc);
            while (!cds_list_empty(&lc->work)) {
                dp_lwconn_t *k = cds_list_first_entry(&lc->work, dp_lwconn_t, work_link);
                cds_list_del(&k->work_link);
                dp_lw_free_chain(&k->rx_head, &k->rx_tail);
                free(k);
            }
        }
        while (t->free_conns) {
            dp_lwconn_t *k = t->free_conns;
            t->free_conns = k->next_free;
            free(k);
        }
        netif_set_down(&t->nif);
        netif_remove(&t->nif); /* lwIP's lists must not point into freed memory */
        dp_dpdk_tx_flush(t->dpdk, 0); /* the resets */
        dp_lw_unlock();
    }
    for (unsigned i = 0; t->cores && i < t->ncores; i++)
        if (t->cores[i].wake_fd >= 0) close(t->cores[i].wake_fd);
    dp_dpdk_close(t->dpdk);
    dp_rxgate_free(&t->gate);
    free(t->cores);
    free(t);
    rt->xport = NULL;
}

const dp_transport_ops_t dp_dpdk_transport = {
    .name = "dpdk",
    .setup = dp_lw_setup,
    .run = dp_lw_run,
    .recv = dp_lw_recv,
    .send = dp_lw_send,
    .close = dp_lw_close,
    .watch_write = dp_lw_watch_write,
    .stop_listening = dp_lw_stop_listening,
    .log_stats = dp_lw_log_stats,
    .cleanup = dp_lw_cleanup,
};
