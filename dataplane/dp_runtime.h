/* dp_runtime: the one runtime struct of stampeded. main() builds it, freezes
 * the configuration, and passes it down; there is no other mutable global
 * state. It holds the configuration, the CA material, the signing pool, the
 * TLS context, the EST engine context and one cache-aligned dp_core_t per
 * polling core (touched by that core only). Signals flip `stop`.
 * Thread: built at startup; read-only afterwards except `stop` (atomic) and
 * each core's own dp_core_t. */
#ifndef DP_RUNTIME_H
#define DP_RUNTIME_H

#include <openssl/ssl.h>

#include "crypto/cx_ca.h"
#include "crypto/cx_pool.h"
#include "crypto/cx_lsc.h"
#include "dataplane/capf_sess.h"
#include "dataplane/dp_config.h"
#include "dataplane/dp_core.h"
#include "dataplane/dp_redis_child.h"
#include "dataplane/dp_transport.h"
#include "dataplane/est_server.h"
#include "ra/ra_redis.h"

struct dp_runtime {
    dp_config_t cfg;
    cx_ca_t ca;
    cx_pool_t *pool;
    SSL_CTX *est_tls;
    est_ctx_t est;
    SSL_CTX *capf_tls;          /* CAPF listener: no client certificates */
    bool capf_tls_ca;           /* it presents the CA certificate (CA key signs handshakes) */
    capf_conf_t capf;           /* CAPF engine settings */
    capf_spki_policy_t capf_spki;
    cx_lsc_policy_t capf_lsc;
    capf_certauth_ctx_t capf_certauth; /* trust stores and settings (now per job) */
    char capf_sha[41];          /* the ra_capf script */
    char capf_node[96];         /* "host:boot" prefix of session tokens (device locks) */
    uint32_t capf_id_base;      /* random start of CAPF session ids */
    const dp_transport_ops_t *transport;
    void *xport;                /* the transport's own state (dp_lwip.c), or NULL */
    char est_where[64];         /* where EST listens, for the ready line */
    char capf_where[64];        /* where CAPF listens (empty: no CAPF) */
    unsigned num_cores;
    dp_core_t *cores;
    dp_redis_child_t redis;  /* embedded Redis (main thread only) */
    ra_redis_addr_t redis_addr; /* where the cores connect (unless registry off) */
    int stop;                /* atomic: 1 after SIGTERM/SIGINT */
    int stats_req;           /* atomic: bumped by SIGUSR1; each core then logs its counters */
    int redis_cores_up;      /* atomic: cores whose Redis connection came up once */
    int64_t stop_deadline_ms;/* drain deadline (monotonic ms), set with stop */
};

/* dp_now_ms returns CLOCK_MONOTONIC in milliseconds. Thread: any. */
int64_t dp_now_ms(void);

#endif
