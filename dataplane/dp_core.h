/* dp_core: a polling core and the sessions it owns. One thread per core,
 * pinned; it owns its listener(s), sessions, timers, buffer pools and its
 * completion queue from the signing pool, and locks nothing. Sessions never
 * move between cores.
 *
 * Timers: every session deadline of one kind has the same duration, so a
 * list per kind, appended at the tail, is always sorted: arming, disarming
 * and expiry are O(1) (liburcu's intrusive cds_list).
 *
 * Buffers: a session holds a pooled dp_buf_t only while it has a partial
 * request, a job in the signing pool or an unsent response; idle keep-alive
 * sessions hold none, so thousands of them stay small.
 * Thread: polling core only, except where noted. */
#ifndef DP_CORE_H
#define DP_CORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <urcu/list.h>

#include "crypto/cx_pool.h"
#include "dataplane/dp_online.h"
#include "dataplane/dp_redis.h"
#include "dataplane/capf_sess.h"
#include "dataplane/dp_addrcap.h"
#include "dataplane/capf_sign.h"
#include "dataplane/dp_transport.h"
#include "dataplane/est_server.h"
#include "ra/ra_capf.h"

typedef enum {
    DP_T_HANDSHAKE = 0,
    DP_T_HEADER,
    DP_T_BODY,
    DP_T_IDLE,
    DP_T_WRITE,
    DP_T_LINGER,
    DP_T_CAPF_AUTH,      /* CAPF S1: waiting for AUTH_RESPONSE */
    DP_T_CAPF_KEYGEN,    /* CAPF S3: the phone generates its key */
    DP_T_CAPF_REPLY,     /* CAPF S5-S7: waiting for the store/fetch/delete answer */
    DP_T_ONLINE,         /* EST, online CA mode: waiting for the upstream CA (online_wait_ms) */
    DP_T_CAPF_ONLINE,    /* CAPF, online CA mode: waiting for the upstream CA (capf_online_timeout) */
    DP_T__COUNT,
    DP_T_NONE = DP_T__COUNT
} dp_timer_kind_t;

typedef enum {
    DP_S_HANDSHAKE = 0,  /* TLS handshake in progress */
    DP_S_READ,           /* reading a request */
    DP_S_JOB,            /* request in the signing pool */
    DP_S_RA,             /* waiting for Redis (device lookup, or the record) */
    DP_S_WRITE,          /* response partly sent, waiting for the socket */
    DP_S_LINGER,         /* last response and close_notify sent: waiting
                            briefly for the client to close first */
    DP_S_CLOSED,         /* socket gone; freed when its job returns */
    DP_S_ONLINE,         /* parked until the upstream CA answers (dp_online.c) */
} dp_state_t;

/* Job kinds (cx_job_t.kind). */
enum { DP_JOB_KEY_SIGN = 1, DP_JOB_KEY_DECRYPT, DP_JOB_ENROLL, DP_JOB_CAPF_AUTH, DP_JOB_CAPF_SIGN,
       DP_JOB_CAPF_CERTAUTH, DP_JOB_CAPF_REQUEST /* online CA mode: the upstream PKCS#10 */ };

/* Protocols a listener serves (dp_listener_t.proto, dp_sess_t.proto). */
enum { DP_PROTO_EST = 0, DP_PROTO_CAPF };

typedef struct dp_sess dp_sess_t;
typedef struct dp_ra_flight dp_ra_flight_t;

/* dp_keyop_t: a pooled TLS private-key operation (handshake signature or
 * RSA decryption) on its way to and from the signing pool. Small, so every
 * handshaking session can have one. */
typedef struct dp_keyop {
    struct dp_keyop *next_free;
    cx_job_t job;
    dp_sess_t *sess;          /* owner (set while in use) */
    uint16_t sigalg;
    size_t in_len, out_len;
    uint8_t in[1024];
    uint8_t out[1024];
} dp_keyop_t;

/* dp_buf_t: a pooled work buffer: the request, the enrollment job and its
 * result, and an unsent response. Large; bounded by queue_bound. */
typedef struct dp_buf {
    struct dp_buf *next_free;
    cx_job_t job;
    dp_sess_t *sess;          /* owner (set while in use) */
    est_enroll_t enroll;      /* EST enrollment job */
    struct {                  /* CAPF: the step in progress (dp_capf.c) */
        CBB out;              /* the server message being built */
        bool out_live;        /* `out` holds BoringSSL state: finish or clean up */
        size_t in_used;       /* bytes of data[] that held client messages (wiped on release) */
        capf_result_t r;      /* the engine's result (views into data) */
        ra_device_t dev;      /* the device BEGIN returned */
        capf_job_t job;       /* the signer's job */
        ra_capf_lsc_t lsc;    /* the LSC as ISSUED recorded it (for FINISH) */
    } capf;
    dp_redis_req_t rreq;      /* the device lookup in flight (dp_ra.c), or the
                                 record read of an online wait (dp_online.c) */
    struct {                  /* online CA mode: a parked enrollment (dp_online.c) */
        char key[RA_REQ_KEY_MAX]; /* its request record */
        char id[RA_REQ_ID_MAX];   /* CAPF: its request id (for the log) */
        struct dp_buf *next;  /* chain in the core's wait table */
        bool parked;          /* in the table */
        bool expired;         /* the wait ran out while a read was in flight */
        bool capf;            /* a CAPF session (dp_capf.c answers), else EST */
    } online;
    /* request / response bookkeeping */
    size_t len;               /* request bytes buffered in data */
    size_t consumed;          /* bytes of the current request (header + body) */
    size_t resp_off, resp_len;/* response bytes in data (after the request) */
    uint8_t data[];           /* capacity: dp_core_t.buf_cap */
} dp_buf_t;

struct dp_sess {
    uint8_t poll_type;        /* must be first: DP_POLL_SESS */
    uint8_t state;            /* dp_state_t */
    uint8_t timer;            /* dp_timer_kind_t armed, or DP_T_NONE */
    bool keep_alive;          /* keep the connection after this response */
    bool want_write;          /* waiting for the transport to accept bytes */
    bool closing;             /* close after the current response */
    uint8_t proto;            /* DP_PROTO_EST or DP_PROTO_CAPF */
    bool capf_eof;            /* CAPF: the phone closed; record, then close */
    bool capf_parked;         /* CAPF: counted in dp_core_t.capf_parked (S3) */
    bool capf_in_close;       /* CAPF: dp_capf_lost runs inside sess_close */
    uint64_t addr_key;        /* counted in dp_core_t.addrs (max_per_address), or 0 */
    struct cds_list_head timer_link;
    int64_t deadline_ms;
    dp_sess_t *next_free;
    dp_core_t *core;
    dp_conn_t conn;
    SSL *ssl;
    dp_buf_t *buf;
    dp_keyop_t *keyop;        /* handshake key operation, while one runs */
    uint8_t *stash;           /* read-ahead bytes left over when the session
                                 paused (rare); malloc'd, served first */
    size_t stash_len, stash_off;
    uint8_t *pending;         /* TLS bytes the transport did not take yet
                                 (rare: a full socket buffer); malloc'd */
    size_t pending_len;
    char peer[48];            /* "addr:port" for logs */
    capf_sess_t capf;         /* CAPF: the engine's state (no buffers) */
};

/* Size of the per-core output coalescing buffer. */
#define DP_TX_CAP 32768
/* Size of the per-core read-ahead buffer (one TLS record and a bit). */
#define DP_RX_CAP 18432

enum { DP_POLL_LISTENER = 1, DP_POLL_EVENT, DP_POLL_SESS, DP_POLL_REDIS,
       DP_POLL_XPORT /* a transport's own wake-up fd: only ends the wait */ };

typedef struct {
    uint8_t poll_type;        /* DP_POLL_LISTENER */
    uint8_t proto;            /* DP_PROTO_EST or DP_PROTO_CAPF */
    int fd;
} dp_listener_t;

typedef struct {
    uint64_t accepted, closed, handshakes, hs_failed, requests, enrolled, denied,
        shed, timeouts, bad_requests, reissued, unrecorded;
} dp_core_stats_t;

struct dp_core {
    unsigned id;
    dp_runtime_t *rt;
    pthread_t thread;
    int epfd;
    dp_listener_t est_listener;
    dp_listener_t capf_listener;
    uint32_t capf_seq;        /* CAPF session ids handed out by this core */
    unsigned capf_parked;     /* CAPF sessions waiting for a phone's key generation */
    unsigned capf_max_parked; /* this core's share of capf_max_keygen */
    int64_t capf_shed_log_ms; /* next time a refusal may be logged */
    dp_addrcap_t addrs;       /* connections per client address (max_per_address) */
    struct dp_capf_deferred *capf_deferred; /* dp_capf.c: FAILs waiting for Redis */
    size_t capf_num_deferred;
    int64_t addr_shed_log_ms; /* next time a per-address refusal may be logged */
    dp_redis_req_t capf_orphan; /* FAILs sent for sessions that closed meanwhile */
    uint8_t event_poll_type;  /* DP_POLL_EVENT (completion eventfd) */
    bool draining;
    int stats_seen;           /* last rt->stats_req this core logged for */
    struct cds_list_head timers[DP_T__COUNT];
    int64_t timeout_ms[DP_T__COUNT];
    int64_t now_ms;
    dp_sess_t *free_sess;
    dp_buf_t *free_bufs;
    dp_keyop_t *free_keyops;
    unsigned num_sess;        /* live sessions */
    unsigned num_bufs;        /* buffers allocated (in use + free) */
    size_t buf_cap;           /* dp_buf_t data capacity */
    uint8_t *scratch;         /* per-core read / response scratch */
    size_t scratch_cap;
    /* Output coalescing: while a session is driven, its TLS records are
     * gathered here and sent with one transport write at the end, so a
     * handshake flight or a response + close_notify is one segment. */
    dp_sess_t *tx_owner;
    uint8_t *tx;
    size_t tx_len;
    /* Read-ahead: BoringSSL asks for a record header, then its body; the
     * transport BIO reads whatever is available into this buffer once and
     * serves those asks from it, saving a system call per request. */
    dp_sess_t *rx_owner;
    uint8_t *rx;
    size_t rx_off, rx_len;
    dp_redis_t redis;         /* this core's connection to the registry */
    dp_online_t online;       /* online CA mode: parked enrollments, notices */
    dp_ra_flight_t *ra_open;  /* dp_ra.c: the batch of records being filled */
    dp_ra_flight_t *ra_free, *ra_all;
    ra_req_batch_t *ra_batch; /* scratch for building a batch command */
    dp_redis_req_t sweep_req; /* core 0: the deadline sweep (dp_ra.c) */
    bool sweep_busy;
    int64_t next_sweep_ms;
    dp_core_stats_t stats;
} __attribute__((aligned(64)));

/* dp_core_init prepares `core` (no thread yet). Returns 0 or -1. Startup only. */
int dp_core_init(dp_core_t *core, dp_runtime_t *rt, unsigned id);
/* dp_core_start runs the core's loop on a new pinned thread. Startup only. */
int dp_core_start(dp_core_t *core);
/* dp_core_cleanup frees what the core owns after its thread has ended. */
void dp_core_cleanup(dp_core_t *core);

/* Transport callbacks: */
/* dp_core_accepted creates a session of protocol `proto` (DP_PROTO_*) for
 * a new connection `conn` from `peer`. Returns the session or NULL (connection must be closed by caller). */
dp_sess_t *dp_core_accepted(dp_core_t *core, dp_conn_t conn, const char *peer, unsigned proto);
/* dp_sess_on_io drives a session after its transport said readable/writable
 * or hung up. */
void dp_sess_on_io(dp_sess_t *s, bool readable, bool writable, bool hangup);
/* dp_core_service runs completed jobs and expired timers; returns the
 * milliseconds until the next deadline (capped at `max_wait_ms`). */
int dp_core_service(dp_core_t *core, int max_wait_ms);
/* dp_core_on_completions drains the core's completion queue. */
void dp_core_on_completions(dp_core_t *core);
/* dp_ra_flush sends the core's open batch of request records (dp_ra.c);
 * dp_ra_cleanup frees the core's batches at exit. */
void dp_ra_flush(dp_core_t *core);
/* dp_ra_sweep runs the device deadline sweep when due (core 0 only). */
void dp_ra_sweep(dp_core_t *core);
void dp_ra_cleanup(dp_core_t *core);
/* dp_core_epoll_init creates the core's epoll instance with its completion
 * eventfd in it. Startup only (a transport's setup). Returns 0 or -1 with
 * the cause in `why`. */
int dp_core_epoll_init(dp_core_t *core, char *why, size_t why_len);
/* dp_core_on_poll handles a readiness event of the fds every transport
 * shares (completion eventfd, Redis connections). Returns false if `ptr`
 * is none of them (the transport's own). */
bool dp_core_on_poll(dp_core_t *core, void *ptr, uint32_t events);
/* dp_core_log_stats logs the core's counters (and the transport's), with
 * `what` ("stopped", "counters") leading the line. */
void dp_core_log_stats(dp_core_t *core, const char *what);
/* dp_core_should_exit says the core has drained after a stop request. */
bool dp_core_should_exit(dp_core_t *core);

#endif
