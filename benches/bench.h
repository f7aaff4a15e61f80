/* bench: shared declarations of stampede-bench, the load generator that plays
 * EST clients (`stampede-bench est`) or CAPF phones (`stampede-bench capf`)
 * against stampeded and sets stampeded's CPU time per enrollment beside the
 * cost of the crypto each enrollment cannot avoid, measured in the same run
 * (design.md, "Tests and measurement").
 *
 * Files, one concept each:
 *   bench_main.c       the command line (one option table), the run, the report
 *   bench_keys.c       client key pool (cached on disk) and the CSR set
 *   bench_msg.c        EST over HTTP/1.1 messages: encode, parse, PKCS#7 check
 *   bench_tls.c        the client TLS context and the negotiated parameters
 *   bench_load.c       the epoll load engine (worker threads, connect, TLS,
 *                      deadlines, results) both protocols run on
 *   bench_est.c        the EST client on the load engine (HTTP request and
 *                      response), preflight
 *   bench_capf_msg.c   the CAPF phone: device names, client messages, the
 *                      client session fed one server message at a time
 *   bench_capf.c       the CAPF phone on the load engine (moves the session's
 *                      messages), the plan, preflight
 *   bench_capf_keys.c  the CAPF key pool: one key per device, cached per prefix
 *   bench_provision.c  the CAPF devices: CSV and `stampedectl import`
 *   bench_crypto.c     the one-core crypto cost measurement (EST and CAPF)
 *   bench_stats.c      percentiles, serial uniqueness, /proc CPU times
 *   bench_redis.c      the Redis cost per enrollment (INFO before and after)
 *
 * The run state is one bench_run_t built by main() and passed down; the only
 * other mutable global is the signal flag pointer in bench_main.c. */
#ifndef BENCH_H
#define BENCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/bytestring.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

/* Unique CSRs are capped; enrollments beyond it cycle through them. */
#define BENCH_CSR_CAP 100000
/* Largest --count (result slots are reserved up front: 28 bytes each). */
#define BENCH_COUNT_MAX 10000000u
/* Largest HTTP response the engine accepts (headers + body). */
#define BENCH_RESP_MAX 16384
/* How many failures are printed with their cause. */
#define BENCH_ERRORS_SHOWN 5
/* Longest certificate serial kept (RFC 5280 §4.1.2.2: 20 octets). */
#define BENCH_SERIAL_MAX 20

/* bench_err_t: what went wrong, for setup steps and for one enrollment.
 * Enrollment failures are counted per cause in the summary. */
typedef enum {
    BENCH_OK = 0,
    BENCH_E_SETUP,     /* bad option, missing or unreadable file */
    BENCH_E_CONNECT,   /* TCP connect failed */
    BENCH_E_TLS,       /* TLS handshake or record layer failed */
    BENCH_E_CLOSED,    /* server closed before the response was complete */
    BENCH_E_TIMEOUT,   /* no complete response within --timeout */
    BENCH_E_HTTP,      /* response is not well-formed HTTP/1.1 */
    BENCH_E_STATUS,    /* HTTP status other than 200 and 503 */
    BENCH_E_CONTENT,   /* 200, but not a certs-only PKCS#7 holding one cert;
                          CAPF: the LSC is not a certificate for our key and device */
    BENCH_E_TOO_LARGE, /* response larger than BENCH_RESP_MAX (CAPF: a message
                          larger than BENCH_CAPF_RBUF) */
    BENCH_E_CAPF,      /* CAPF: a server message is not well-formed CAPF, or not
                          the one the step expects (opcode, session id, elements) */
    BENCH_E_DECLINED,  /* CAPF: END_SESSION with a reason other than 01 */
    BENCH_E_CRYPTO,    /* key, CSR or certificate operation failed */
    BENCH_E_REDIS,     /* Redis unreachable or its INFO unreadable (measurement only) */
    BENCH_E__COUNT
} bench_err_t;

/* bench_err_str returns a static name for `e` (never NULL). */
const char *bench_err_str(bench_err_t e);

typedef enum { BENCH_KEY_RSA2048 = 0, BENCH_KEY_EC256, BENCH_KEY__COUNT } bench_keytype_t;

/* bench_mode_t: the subcommand, which decides the protocol of the run. */
typedef enum { BENCH_MODE_EST = 0, BENCH_MODE_CAPF, BENCH_MODE__COUNT } bench_mode_t;

/* bench_keytype_str returns "rsa2048" or "ec256". */
const char *bench_keytype_str(bench_keytype_t t);

/* bench_cfg_t: the command line, frozen before any thread starts. Numeric
 * fields are uint64_t or double so one option table can fill them. */
typedef struct {
    bench_mode_t mode;          /* est or capf: argv[1] */
    const char *connect;        /* HOST:PORT as given */
    char host[256];             /* HOST without brackets */
    char port[8];
    const char *data_dir;
    const char *user;
    const char *password_file;  /* NULL: DIR/est-initial-password */
    const char *key_type_name;
    bench_keytype_t key_type;
    uint64_t count;
    uint64_t concurrency;
    uint64_t threads;
    uint64_t num_keys;          /* 0 until main fills the default of the mode */
    uint64_t pid;               /* 0: read DIR/stampeded.pid */
    const char *redis;          /* URL, "off", or NULL: DIR/redis.sock if it exists */
    double duration_s;          /* stop taking new enrollments after this */
    double timeout_s;           /* per attempt */
    bool keepalive;
    bool tls12;
    bool no_verify;
    bool progress;
    bool quiet;
    /* capf only */
    uint64_t capf_version;      /* --version: 2 or 3 */
    const char *devices;        /* --devices PREFIX */
    bool provision;             /* import the devices first (default; --no-provision) */
} bench_cfg_t;

/* bench_now_ns returns CLOCK_MONOTONIC in nanoseconds. Any thread. */
static inline uint64_t bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* bench_path joins `dir` and `name` into `out`. Returns BENCH_OK or
 * BENCH_E_SETUP if it does not fit. */
bench_err_t bench_path(char *out, size_t cap, const char *dir, const char *name);

/* ---- bench_keys.c APIs ------------------------------------------------- */

/* bench_keys_t: the client key pool. Owns the keys. */
typedef struct {
    EVP_PKEY **keys;
    size_t num_keys;
    size_t num_generated;       /* how many this run had to generate */
} bench_keys_t;

/* bench_keys_load fills `pool` with `num` keys of type `t`, reading them from
 * the PEM file `path` and generating (and appending to the file) any that are
 * missing. Keys of the other type in the file are kept in the file. A file
 * that cannot be written costs only the cache (a warning unless `quiet`).
 * Thread: startup only (RSA generation takes seconds).
 * Returns BENCH_OK, or BENCH_E_CRYPTO with a cause in `why`. */
bench_err_t bench_keys_load(bench_keys_t *pool, const char *path, bench_keytype_t t,
                            size_t num, bool quiet, char *why, size_t why_len);

/* bench_keys_cleanup frees the keys; safe on a zeroed pool. */
void bench_keys_cleanup(bench_keys_t *pool);

/* bench_req_t: one complete, pre-encoded simpleenroll request. */
typedef struct {
    const uint8_t *data;
    uint32_t len;
} bench_req_t;

/* bench_csrs_t: the enrollment requests of one run. Owns the arenas the
 * requests point into and a copy of the first CSR's DER (for the crypto
 * measurement). */
typedef struct {
    bench_req_t *reqs;
    size_t num_reqs;
    uint8_t *arena[2];
    uint8_t *csr0_der;
    size_t csr0_len;
    char run_id[9];             /* 8 hex digits, the <run> in bench-<run>-<i> */
} bench_csrs_t;

/* bench_csrs_build makes `num` CSRs with subject CN "bench-<run>-<i>", each
 * signed (SHA-256) by pool key i % num_keys, on two threads, and stores each
 * as a complete HTTP request: `prefix` (see bench_msg_enroll_prefix), its
 * Content-Length, and the base64 CSR body.
 * Thread: startup only. Returns BENCH_OK or BENCH_E_CRYPTO with `why`. */
bench_err_t bench_csrs_build(bench_csrs_t *out, const bench_keys_t *pool, size_t num,
                             const char *prefix, char *why, size_t why_len);

/* bench_csrs_cleanup frees everything `csrs` owns; safe on a zeroed struct. */
void bench_csrs_cleanup(bench_csrs_t *csrs);

/* ---- bench_msg.c APIs -------------------------------------------------- */

/* bench_msg_enroll_prefix writes the part of every simpleenroll request that
 * does not depend on the CSR (request line, Host, User-Agent, Content-Type,
 * Content-Transfer-Encoding, Authorization: Basic, Connection: close when
 * `close`) ending with "Content-Length: ", NUL-terminated, into `out`.
 * Returns BENCH_OK, or BENCH_E_SETUP if it does not fit in `cap`. */
bench_err_t bench_msg_enroll_prefix(char *out, size_t cap, const char *hostport,
                                    const char *user, const char *password, bool close);

/* bench_msg_encode_enroll appends one complete request to `out`: `prefix`,
 * the body length, the blank line, and the CSR `der` in base64 (cx_b64).
 * Returns one on success, zero if `out` failed (CBB convention). */
int bench_msg_encode_enroll(CBB *out, const char *prefix, const uint8_t *der, size_t der_len);

/* bench_msg_cacerts_request writes a GET cacerts request (Connection: close)
 * into `out`. Returns its length, or 0 if it does not fit. */
size_t bench_msg_cacerts_request(char *out, size_t cap, const char *hostport);

/* bench_msg_resp_t: one parsed HTTP/1.1 response; CBS point into the buffer
 * given to bench_msg_parse_response. */
typedef struct {
    int status;
    bool pkcs7;                 /* Content-Type: application/pkcs7-mime */
    bool certs_only;            /* ... with smime-type=certs-only */
    bool base64;                /* Content-Transfer-Encoding: base64 */
    bool close;                 /* the server will close after this response */
    uint32_t retry_after_s;     /* Retry-After delta-seconds, UINT32_MAX if none */
    CBS reason;                 /* reason phrase */
    CBS body;
    size_t len;                 /* bytes of the whole response */
    const char *why;            /* BENCH_MSG_BAD: what is wrong (static) */
} bench_msg_resp_t;

typedef enum {
    BENCH_MSG_DONE = 0,         /* a complete response is in `out` */
    BENCH_MSG_MORE,             /* need more bytes */
    BENCH_MSG_BAD,              /* not a well-formed response; out->why says why */
} bench_msg_status_t;

/* bench_msg_parse_response parses the response at the start of `buf`
 * (untrusted, read through CBS only). `eof`: the server has closed, so a
 * response without Content-Length ends here. Chunked bodies are refused.
 * Thread: any. No allocation. */
bench_msg_status_t bench_msg_parse_response(bench_msg_resp_t *out, const uint8_t *buf,
                                            size_t len, bool eof);

/* bench_msg_pkcs7_certs parses a DER certs-only PKCS#7 (ContentInfo of type
 * signedData, RFC 5652) and sets *num_certs and, if there is at least one
 * certificate, *first_serial to the first certificate's serialNumber INTEGER
 * contents (a view into `der`).
 * Returns BENCH_OK or BENCH_E_CONTENT with a static cause in *why. */
bench_err_t bench_msg_pkcs7_certs(CBS der, size_t *num_certs, CBS *first_serial,
                                  const char **why);

/* bench_msg_certs_body checks that the body of `resp` is a base64
 * (Content-Transfer-Encoding) application/pkcs7-mime, with
 * smime-type=certs-only if `want_certs_only`, decodes it into `scratch`
 * (`cap` bytes) and parses it with bench_msg_pkcs7_certs (whose views then
 * point into `scratch`). Returns BENCH_OK or BENCH_E_CONTENT with a static
 * cause in *why. */
bench_err_t bench_msg_certs_body(const bench_msg_resp_t *resp, bool want_certs_only,
                                 uint8_t *scratch, size_t cap, size_t *num_certs,
                                 CBS *first_serial, const char **why);

/* ---- bench_tls.c APIs -------------------------------------------------- */

/* bench_tls_params_t: what a handshake negotiated. version 0: none seen. */
typedef struct {
    uint16_t version;
    uint16_t group;
    uint16_t sigalg;
    const SSL_CIPHER *cipher;
    bool hrr;                   /* a HelloRetryRequest was needed */
} bench_tls_params_t;

/* bench_tls_client_ctx returns the SSL_CTX every bench client connection
 * uses: TLS 1.3 only (TLS 1.2 only with --tls12), BoringSSL's default groups
 * (X25519 first), no session resumption, and unless --no-verify the server
 * chain verified against DIR/ca.crt (no name check: the appliance may be
 * reached by any address). Thread: startup only; the context is then shared
 * read-only. Returns NULL with a cause in `why`. */
SSL_CTX *bench_tls_client_ctx(const bench_cfg_t *cfg, char *why, size_t why_len);

/* bench_tls_sni returns the SNI name clients send: the host if it is a DNS
 * name, NULL (none) for an IP literal. */
const char *bench_tls_sni(const bench_cfg_t *cfg);

/* bench_tls_params_get reads the negotiated parameters of `ssl`. */
void bench_tls_params_get(bench_tls_params_t *out, const SSL *ssl);

/* bench_tls_params_str writes e.g. "TLSv1.3 X25519 TLS_AES_128_GCM_SHA256
 * ecdsa_secp256r1_sha256" into `out`. */
void bench_tls_params_str(char *out, size_t cap, const bench_tls_params_t *p);

/* bench_tls_error_str writes the oldest queued BoringSSL error (and the
 * certificate verification result of `ssl`, if that failed) into `out`, and
 * clears the thread's error queue. */
void bench_tls_error_str(char *out, size_t cap, const SSL *ssl);

/* ---- bench_stats.c APIs ------------------------------------------------ */

/* bench_serial_t: the serial of one issued certificate and the CSR it was
 * issued for (a server may answer a repeated CSR with the same certificate);
 * for CAPF the install number (one device each), so any repeat counts. */
typedef struct {
    uint8_t bytes[BENCH_SERIAL_MAX];
    uint8_t len;
    uint32_t csr_index;
} bench_serial_t;

/* bench_stats_sort_u32 sorts `v` ascending. */
void bench_stats_sort_u32(uint32_t *v, size_t n);

/* bench_stats_percentile returns the nearest-rank p-th percentile (0 < p <=
 * 100) of the sorted `v`, 0 if n is 0. */
uint32_t bench_stats_percentile(const uint32_t *v, size_t n, double p);

/* bench_stats_duplicate_serials sorts `s` and returns how many entries repeat
 * the serial of an earlier entry issued for a different CSR. */
size_t bench_stats_duplicate_serials(bench_serial_t *s, size_t n);

/* bench_proc_cpu_us sets *us to utime+stime of process `pid` (fields 14 and
 * 15 of /proc/PID/stat). Returns BENCH_OK or BENCH_E_SETUP. */
bench_err_t bench_proc_cpu_us(uint64_t pid, uint64_t *us);

/* bench_proc_children_cpu_us returns utime+stime summed over the live
 * processes whose parent is `pid` (e.g. the embedded redis-server). */
uint64_t bench_proc_children_cpu_us(uint64_t pid);

/* bench_proc_listeners sets *total to the number of listening TCP sockets on
 * `port` (IPv4 and IPv6, this network namespace) and *owned to how many of
 * them process `pid` holds. More than one means SO_REUSEPORT: the load may be
 * split between processes. */
void bench_proc_listeners(uint64_t pid, unsigned port, unsigned *total, unsigned *owned);

/* ---- bench_capf_msg.c APIs --------------------------------------------- */

/* Longest device name (capf-protocol.md §2.10 rule 7: stampeded's default
 * capf_device_name_max, "SEP" + 12 hex digits). */
#define BENCH_CAPF_NAME_MAX 15
/* Largest client message the bench writes (KEY_GENERATE_RESPONSE with an
 * RSA-2048 SPKI: 305 bytes). */
#define BENCH_CAPF_WBUF 1024
/* Receive buffer per phone: one server message (at most 4096 bytes, §1.1)
 * and room for bytes that should not be there (a second message). */
#define BENCH_CAPF_RBUF 8192

/* bench_capf_stage_t: where the server ended a session early or late: the
 * client message its END_SESSION answered. */
typedef enum {
    BENCH_CAPF_AFTER_AUTH = 0,  /* END instead of KEY_GENERATE_REQUEST */
    BENCH_CAPF_AFTER_KEY,       /* END instead of STORE_CERTIFICATE_REQUEST */
    BENCH_CAPF_AFTER_STORE,     /* the final END_SESSION */
    BENCH_CAPF_AFTER__COUNT
} bench_capf_stage_t;

/* bench_capf_stage_str returns "AUTH_RESPONSE", "KEY_GENERATE_RESPONSE" or
 * "STORE_CERTIFICATE_RESPONSE" (static, never NULL). */
const char *bench_capf_stage_str(bench_capf_stage_t st);

/* bench_capf_names_t: device names of a run: `prefix` followed by the
 * device number zero-padded to `digits`, BENCH_CAPF_NAME_MAX characters in
 * all ("SEPBENCH" + 7 digits: SEPBENCH0000001). */
typedef struct {
    char prefix[BENCH_CAPF_NAME_MAX + 1];
    unsigned digits;
} bench_capf_names_t;

/* bench_capf_names_init checks `prefix` (1 to BENCH_CAPF_NAME_MAX-1
 * characters of [A-Za-z0-9._-], not starting with '.', no "..": what
 * stampeded accepts) and that devices 1..`count` fit the digits left.
 * Returns BENCH_OK, or BENCH_E_SETUP with a cause in `why`. */
bench_err_t bench_capf_names_init(bench_capf_names_t *n, const char *prefix, uint64_t count,
                                  char *why, size_t why_len);

/* bench_capf_name writes the name of device `num` (1-based) into `out`. */
void bench_capf_name(const bench_capf_names_t *n, uint64_t num,
                     char out[BENCH_CAPF_NAME_MAX + 1]);

/* Client message builders: each appends one whole message (header + body)
 * for one SSL_write (§1.1) to `out` and returns one, or zero if `out`
 * failed (CBB convention; nothing is flushed then).
 *   auth:   AUTH_RESPONSE (§2.9): version 2 in Jabber order VERSION,
 *           DEVICE_NAME, REASON=01; version 3 in phone order REASON=01,
 *           VERSION, DEVICE_NAME (null-string authentication: no PASSWORD);
 *   keygen: KEY_GENERATE_RESPONSE with PUBLIC_KEY = `spki` (copied);
 *   store:  STORE_CERTIFICATE_RESPONSE with REASON = `reason`. */
int bench_capf_build_auth(CBB *out, uint32_t session_id, uint8_t version, const char *device);
int bench_capf_build_keygen(CBB *out, uint32_t session_id, CBS spki);
int bench_capf_build_store(CBB *out, uint32_t session_id, uint8_t reason);

/* bench_capf_lsc_check checks that the certificate `der` (untrusted, CBS
 * only) carries `spki` byte for byte and a subject commonName equal to
 * `device`, and sets *serial to its serialNumber contents (a view into
 * `der`, at most BENCH_SERIAL_MAX bytes). No signature check.
 * Returns BENCH_OK or BENCH_E_CONTENT with a static cause in *why. */
bench_err_t bench_capf_lsc_check(CBS der, CBS spki, const char *device, CBS *serial,
                                 const char **why);

/* bench_capf_state_t: what the phone waits for. */
typedef enum {
    BENCH_CAPF_S_HELLO = 0,     /* AUTH_REQUEST */
    BENCH_CAPF_S_KEYREQ,        /* KEY_GENERATE_REQUEST (or END_SESSION) */
    BENCH_CAPF_S_STORE,         /* STORE_CERTIFICATE_REQUEST (or END_SESSION) */
    BENCH_CAPF_S_END,           /* END_SESSION */
    BENCH_CAPF_S_ENDED,         /* nothing: END_SESSION came */
    BENCH_CAPF_S__COUNT
} bench_capf_state_t;

/* bench_capf_state_str names the message `st` waits for (static). */
const char *bench_capf_state_str(bench_capf_state_t st);

/* bench_capf_step_t: what the phone does after a server message. */
typedef enum {
    BENCH_CAPF_SEND = 0,        /* a client message is in `out`: write it, read again */
    BENCH_CAPF_DONE,            /* END_SESSION 01 after the LSC was stored: success */
    BENCH_CAPF_DECLINED,        /* END_SESSION with another reason: end_reason, end_stage */
    BENCH_CAPF_BAD,             /* the server broke the protocol: why */
} bench_capf_step_t;

/* bench_capf_sess_t: one simulated phone's session (v2 or v3 install of
 * §2.7.1), an engine that consumes whole server messages and emits client
 * messages; it never sees a socket. Strict about the server like
 * tests/integration/capf_client.py: opcode per step, the hello's session
 * id in every message, the key request exactly the provisioned key
 * (v2: KEY_SIZE 2048 only; v3: KEY_TYPE + KEY_SIZE or KEY_TYPE + CURVE),
 * at least one element per message to a v2 client (§1.1 rule 3), the LSC
 * for our key and device name. */
typedef struct {
    bench_capf_state_t state;
    uint8_t version;            /* 2 or 3 */
    bench_keytype_t key_type;
    uint32_t session_id;        /* from the hello */
    CBS spki;                   /* the public key to send (not owned) */
    char device[BENCH_CAPF_NAME_MAX + 1];
    uint8_t end_reason;         /* DONE, DECLINED: END_SESSION's REASON */
    bench_capf_stage_t end_stage;
    uint8_t serial_len;         /* of the stored LSC (copied) */
    uint8_t serial[BENCH_SERIAL_MAX];
    char why[200];              /* BAD: the cause */
} bench_capf_sess_t;

/* bench_capf_sess_init starts a session of `device` (copied; at most
 * BENCH_CAPF_NAME_MAX characters) that will send `spki` (must outlive the
 * session). This function can't fail. */
void bench_capf_sess_init(bench_capf_sess_t *s, uint8_t version, bench_keytype_t key_type,
                          const char *device, CBS spki);

/* bench_capf_sess_on_msg feeds the session exactly one server message
 * (`msg`, `len` bytes: frame it with capf_msg_need first), parsed with the
 * server's own codec (capf_msg_parse). On BENCH_CAPF_SEND the answer has
 * been appended to `out` (a BENCH_CAPF_WBUF fixed CBB is enough). The
 * serial of the LSC is copied, so `msg` may be reused once this returns.
 * Thread: any (one session per thread). No allocation. */
bench_capf_step_t bench_capf_sess_on_msg(bench_capf_sess_t *s, const uint8_t *msg, size_t len,
                                         CBB *out);

/* ---- bench_capf.c APIs ------------------------------------------------- */

/* bench_capf_plan_t: what every phone of a CAPF run shares: protocol
 * version, key type, device names, and the DER SPKI of every pool key
 * (phone j sends key j % num_spkis). Owns the SPKIs. */
typedef struct {
    uint8_t version;
    bench_keytype_t key_type;
    bench_capf_names_t names;
    char device1[BENCH_CAPF_NAME_MAX + 1];  /* device number 1 (crypto measurement) */
    CBS *spkis;
    size_t num_spkis;
    uint8_t *arena;
} bench_capf_plan_t;

/* bench_capf_plan_build fills `plan` from the command line and the key pool.
 * Thread: startup only. Returns BENCH_OK, or BENCH_E_SETUP / BENCH_E_CRYPTO
 * with a cause in `why`. */
bench_err_t bench_capf_plan_build(bench_capf_plan_t *plan, const bench_cfg_t *cfg,
                                  const bench_keys_t *keys, char *why, size_t why_len);

/* bench_capf_plan_cleanup frees what `plan` owns; safe on a zeroed plan. */
void bench_capf_plan_cleanup(bench_capf_plan_t *plan);

/* ---- bench_capf_keys.c APIs -------------------------------------------- */

/* bench_capf_keys_load fills `keys` with the first cfg->num_keys keys of
 * type cfg->key_type of the pool of device prefix cfg->devices,
 * DIR/bench-capf-keys-PREFIX.pem, generating the missing ones on two
 * threads first. Device n sends key (n-1) mod num_keys, so a key serves one
 * device as long as num_keys >= the devices (stampeded refuses a key bound
 * to another device). Thread: startup only.
 * Returns BENCH_OK, or BENCH_E_SETUP / BENCH_E_CRYPTO with a cause in `why`. */
bench_err_t bench_capf_keys_load(bench_keys_t *keys, const bench_cfg_t *cfg, char *why,
                                 size_t why_len);

/* ---- bench_provision.c APIs -------------------------------------------- */

/* bench_provision_t: what `stampedectl import` did. */
typedef struct {
    char tool[4096];            /* the stampedectl run */
    double seconds;             /* wall time of the import */
    int exit_code;              /* of stampedectl; -1 if it did not run or died */
    bool summary_seen;          /* its "imported N, failed M" line */
    unsigned long imported, failed;
    unsigned long num_messages; /* other lines it printed (per-line errors...) */
    char messages[BENCH_ERRORS_SHOWN][256];
} bench_provision_t;

/* bench_provision_csv writes the import CSV of devices 1..`count` of
 * `names` to `f`: the header, then one line per device: install, null
 * authentication, the key of `t`, no deadline. Returns BENCH_OK or
 * BENCH_E_SETUP (write error). */
bench_err_t bench_provision_csv(FILE *f, const bench_capf_names_t *names, uint64_t count,
                                bench_keytype_t t);

/* bench_provision_tool finds stampedectl: $STAMPEDECTL, else ../ra/stampedectl
 * from the directory of this program (the build tree). Returns BENCH_OK with
 * the path in `out`, or BENCH_E_SETUP with a cause in `why`. */
bench_err_t bench_provision_tool(char *out, size_t cap, char *why, size_t why_len);

/* bench_provision runs `stampedectl (--data-dir DIR | --redis URL) import
 * --replace FILE` for the CSV of devices 1..cfg->count (a temporary file,
 * removed after) and fills `out` with its timing, summary and output.
 * Thread: main thread, startup only (blocks until stampedectl exits).
 * Returns BENCH_OK if every line was imported; BENCH_E_SETUP with `why`
 * otherwise (no tool, no temporary file, stampedectl failing or refusing
 * lines: `out` says what it printed). */
bench_err_t bench_provision(bench_provision_t *out, const bench_cfg_t *cfg,
                            const bench_capf_plan_t *plan, char *why, size_t why_len);

/* ---- bench_crypto.c input ----------------------------------------------- */

/* bench_crypto_in_t: what one enrollment's unavoidable crypto works on
 * (see bench_crypto.c). Pointers are not owned and must outlive its use. */
typedef struct {
    bench_mode_t mode;
    const char *tls_name;       /* the server's TLS credentials: DIR/NAME.crt and
                                   NAME.key, "tls" (NULL) or "ca" */
    const uint8_t *der;         /* EST: a CSR; CAPF: an SPKI */
    size_t der_len;
    const char *device;         /* CAPF: the LSC's device name */
    bench_keytype_t key_type;   /* CAPF: the key the SPKI must hold */
} bench_crypto_in_t;

/* ---- the run (bench_main.c builds it, bench_load.c runs it) -------------- */

typedef struct bench_load_worker bench_load_worker_t;

/* bench_run_t: one run of `stampede-bench est` or `capf`. main() fills the
 * inputs and the result arrays, bench_load_start starts the workers with
 * the ops of the subcommand. */
typedef struct {
    /* Inputs, read-only once workers start. */
    const bench_cfg_t *cfg;
    SSL_CTX *client_ctx;
    const char *sni;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const bench_csrs_t *csrs;   /* est */
    const bench_capf_plan_t *capf; /* capf */
    bench_crypto_in_t crypto_in;   /* what the crypto measurement works on */
    /* Results: slot i of both arrays is claimed with num_results. */
    uint32_t *latency_us;       /* [cfg->count] */
    bench_serial_t *serials;    /* [cfg->count] */
    _Atomic uint64_t num_results;
    /* Shared by workers. */
    _Atomic uint64_t next_job;
    _Atomic int stop;           /* 1: take no new jobs, drop waits; 2: abandon all */
    _Atomic unsigned workers_done;
    _Atomic int signals;        /* SIGINT/SIGTERM count, bumped by the handler */
    pthread_mutex_t mu;         /* guards the fields below */
    unsigned num_errors_shown;
    char errors_shown[BENCH_ERRORS_SHOWN][256];
    _Atomic bool tls_seen;
    bench_tls_params_t tls;     /* of the first handshake (preflight or load) */
    /* Owned by the load engine (bench_load.c). */
    bench_load_worker_t *workers;
    unsigned num_workers;
} bench_run_t;

/* bench_totals_t: the workers' counters summed. */
typedef struct {
    uint64_t ok;
    uint64_t errors;
    uint64_t retries;           /* 503 answers, each retried */
    uint64_t abandoned;         /* in flight or waiting when the run stopped */
    uint64_t connections;
    uint64_t handshakes;
    uint64_t errors_by[BENCH_E__COUNT];
    /* capf only, after join: END_SESSION reasons other than 01 by stage, and
     * server messages that were not exactly one TLS record (§1.1). */
    uint64_t declined_by[BENCH_CAPF_AFTER__COUNT][256];
    uint64_t split_msgs;        /* a message that took several records */
    uint64_t merged_msgs;       /* a record that held more than one message */
} bench_totals_t;

/* bench_run_note_tls records `ssl`'s parameters if none are recorded yet.
 * Thread: any. */
void bench_run_note_tls(bench_run_t *run, const SSL *ssl);

/* ---- bench_load.c APIs (the load engine) -------------------------------- */

/* The load engine runs the client connections of both subcommands: worker
 * threads, epoll, connect, the TLS handshake, deadlines, retries, the
 * first-errors list, result slots and counters. A protocol (bench_est.c,
 * bench_capf.c) fills one const bench_load_ops_t with what is its own;
 * main() picks the table once. A worker's connections and its scratch block
 * are touched by that worker only; the ops are called on it ("worker only"
 * below). */

/* bench_load_state_t: where one connection is. The engine serves IDLE, NEXT,
 * CONNECTING, HANDSHAKE and WAIT; ops->step serves the protocol's states
 * (SEND, RECV, CLOSING: each protocol uses those it needs). */
typedef enum {
    BENCH_LOAD_IDLE = 0,        /* no more work */
    BENCH_LOAD_NEXT,            /* take the next job at the timer pass */
    BENCH_LOAD_CONNECTING,
    BENCH_LOAD_HANDSHAKE,
    BENCH_LOAD_WAIT,            /* retry the same job at wake_ns (bench_load_retry) */
    BENCH_LOAD_SEND,            /* writing a request */
    BENCH_LOAD_RECV,            /* reading an answer */
    BENCH_LOAD_CLOSING,         /* the last answer read: waiting for the server's close */
    BENCH_LOAD__COUNT
} bench_load_state_t;

/* bench_load_state_str returns "idle", "next", "connecting", "handshake",
 * "waiting", "sending", "receiving" or "closing" (static, never NULL). */
const char *bench_load_state_str(bench_load_state_t st);

/* bench_load_conn_t: one connection slot, the first member of the protocol's
 * connection struct (ops->conn_size bytes each, zeroed at start, so a
 * protocol casts the bench_load_conn_t * it is given to its own type). The
 * protocol reads every field and may set `state` (to its own states, or via
 * the functions below); the rest is the engine's. */
typedef struct {
    bench_load_state_t state;
    int fd;
    uint32_t gen;               /* bumped per socket: stale epoll events are dropped */
    uint32_t index;
    SSL *ssl;
    bool established;           /* handshake done on this socket */
    uint64_t job;               /* 0-based job number */
    uint8_t *buf;               /* ops->buf_size bytes, in the worker's block */
    uint64_t t_start_ns;        /* latency start: the attempt (keepalive: the send) */
    uint64_t deadline_ns;       /* attempt timeout */
    uint64_t wake_ns;           /* WAIT: when to retry */
} bench_load_conn_t;

/* bench_load_ops_t: one protocol's part of the load engine. */
typedef struct {
    size_t conn_size;           /* sizeof the protocol's connection struct */
    size_t buf_size;            /* buffer bytes per connection (conn->buf) */
    size_t worker_size;         /* scratch bytes per worker, zeroed; 0: none */
    bench_load_state_t first;   /* the state after a handshake: SEND if the client
                                   speaks first, RECV if the server does */
    bool close_notify;          /* a connection retired or abandoned while
                                   established says close_notify first */
    /* begin (re)starts the session of conn->job for a new attempt, before
     * the connect (or the send on an established connection). */
    void (*begin)(bench_load_worker_t *w, bench_load_conn_t *c);
    /* step serves the protocol's states. Returns true to be called again
     * (the state moved on), false when it waits for the socket or has ended
     * the job (bench_load_done, _retry, _fail). */
    bool (*step)(bench_load_worker_t *w, bench_load_conn_t *c);
    /* expire fails the job whose deadline passed (bench_load_fail with
     * BENCH_E_TIMEOUT). */
    void (*expire)(bench_load_worker_t *w, bench_load_conn_t *c);
    /* job_str names the job of `c` for an error line ("enrollment 3 (CN
     * ...)"), NUL-terminated, at most `cap` bytes. Called under run->mu. */
    void (*job_str)(const bench_run_t *run, const bench_load_conn_t *c, char *out,
                    size_t cap);
    /* where_str says where `c` is for a TLS failure ("state receiving, 0
     * bytes received"), NUL-terminated, at most `cap` bytes. */
    void (*where_str)(const bench_load_conn_t *c, char *out, size_t cap);
    /* sum adds a worker's scratch counters to `out` after join; may be NULL.
     * Thread: main thread. */
    void (*sum)(const void *scratch, bench_totals_t *out);
} bench_load_ops_t;

/* bench_load_start starts cfg->threads workers sharing cfg->concurrency
 * connections that run jobs 0..cfg->count-1 with `ops` (must outlive the
 * run). Thread: main thread.
 * Returns BENCH_OK or BENCH_E_SETUP with a cause in `why` (nothing started). */
bench_err_t bench_load_start(bench_run_t *run, const bench_load_ops_t *ops, char *why,
                             size_t why_len);

/* bench_load_totals sums the live counters (relaxed reads; for progress).
 * Thread: main thread. This function can't fail. */
void bench_load_totals(const bench_run_t *run, bench_totals_t *out);

/* bench_load_join waits for the workers, sums every counter into `totals`
 * (may be NULL) and frees the workers; run->workers is NULL afterwards.
 * Thread: main thread. */
void bench_load_join(bench_run_t *run, bench_totals_t *totals);

/* bench_load_run returns the run `w` works for; bench_load_scratch returns
 * its ops->worker_size block (NULL if 0). Thread: worker only. */
bench_run_t *bench_load_run(const bench_load_worker_t *w);
void *bench_load_scratch(bench_load_worker_t *w);

/* bench_load_fail counts a failed job by `cause`, shows it (job_str, cause,
 * the formatted text) if it is among the first few, drops the connection
 * and moves on to the next job. Thread: worker only. */
__attribute__((format(printf, 4, 5)))
void bench_load_fail(bench_load_worker_t *w, bench_load_conn_t *c, bench_err_t cause,
                     const char *fmt, ...);

/* bench_load_ssl_blocked returns true if the SSL call on c->ssl that
 * returned `r` only has to wait for the socket; otherwise it fails the job
 * with `cause` ("what (where_str): the error") and returns false.
 * Call it right after the SSL call (it reads errno). Thread: worker only. */
bool bench_load_ssl_blocked(bench_load_worker_t *w, bench_load_conn_t *c, int r,
                            bench_err_t cause, const char *what);

/* bench_load_record books a success of c's job in the next result slot:
 * latency from c->t_start_ns to `end_ns`, `serial` (serial_len <=
 * BENCH_SERIAL_MAX bytes, copied) and `csr_index`, and counts it. The
 * connection stays as it is: close or keep it, then bench_load_done.
 * Thread: worker only. */
void bench_load_record(bench_load_worker_t *w, const bench_load_conn_t *c, uint64_t end_ns,
                       const uint8_t *serial, size_t serial_len, uint32_t csr_index);

/* bench_load_done ends c's job (its connection stays as it is: closed, or
 * kept for the next job); the timer pass takes the next one.
 * Thread: worker only. */
void bench_load_done(bench_load_worker_t *w, bench_load_conn_t *c, uint64_t now);

/* bench_load_retry counts a retry of c's job and runs it again (a new
 * attempt: begin, deadline) at `wake_ns`, or abandons it if the run stops
 * first. Thread: worker only. */
void bench_load_retry(bench_load_worker_t *w, bench_load_conn_t *c, uint64_t wake_ns);

/* bench_load_close drops c's SSL object and socket (close_notify first if
 * `graceful` and the handshake was done); the job and state stay.
 * This function can't fail. Thread: the connection's worker (or main
 * after join). */
void bench_load_close(bench_load_conn_t *c, bool graceful);

/* bench_load_dial_t: the blocking connection of a preflight and a scratch
 * buffer for its messages. */
typedef struct {
    SSL *ssl;
    int fd;
    uint8_t *buf;               /* buf_len bytes (bench_load_dial), uninitialised */
} bench_load_dial_t;

/* bench_load_dial opens the connection of a preflight into `out`: TCP to
 * run->addr with 5 s send and receive timeouts, a TLS handshake with
 * run->client_ctx, whose parameters it records (bench_run_note_tls), and
 * `buf_len` bytes of buffer. Ownership: on BENCH_OK the caller owns what
 * `out` holds (bench_load_hangup). Thread: main thread; blocks.
 * Returns BENCH_OK; BENCH_E_SETUP (no memory or socket), BENCH_E_CONNECT or
 * BENCH_E_TLS with a cause in `why` (nothing left open). */
bench_err_t bench_load_dial(bench_run_t *run, size_t buf_len, bench_load_dial_t *out,
                            char *why, size_t why_len);

/* bench_load_hangup frees what `d` holds (no close_notify) and clears the
 * thread's BoringSSL error queue. This function can't fail. */
void bench_load_hangup(bench_load_dial_t *d);

/* ---- bench_est.c APIs -------------------------------------------------- */

/* bench_est_preflight does one blocking GET cacerts on its own connection
 * before the timed phase: it proves the address, TLS and the CA file work,
 * and records the TLS parameters. Returns BENCH_OK; BENCH_E_CONNECT or
 * BENCH_E_TLS (fatal, cause in `why`); or BENCH_E_STATUS / BENCH_E_CONTENT /
 * BENCH_E_HTTP when only the cacerts answer is wrong (a warning).
 * `info` receives a one-line description. Thread: main thread. */
bench_err_t bench_est_preflight(bench_run_t *run, char *info, size_t info_len,
                                char *why, size_t why_len);

/* bench_est_load: the EST client for the load engine. Job j sends request
 * j % num_reqs of run->csrs (on a new connection, or with --keepalive on
 * the connection's persistent one) and expects one certificate. */
extern const bench_load_ops_t bench_est_load;

/* ---- bench_capf.c APIs (the phone on the load engine) ------------------- */

/* bench_capf_preflight runs one blocking CAPF session on its own connection
 * before the timed phase: TLS, the hello (AUTH_REQUEST), then an
 * AUTH_RESPONSE for a device that should not exist (BENCH_CAPF_PROBE),
 * which stampeded declines with END_SESSION 09. It proves the address, TLS,
 * the CA file and the server's registry path, and records the TLS
 * parameters and which credentials the server presents
 * (run->crypto_in.tls_name: "ca" for DIR/ca.crt, stampeded's default
 * capf_tls_cert; "tls" for DIR/tls.crt; NULL if neither). Returns
 * BENCH_OK; BENCH_E_CONNECT or BENCH_E_TLS (fatal,
 * cause in `why`); BENCH_E_CAPF / BENCH_E_CLOSED / BENCH_E_DECLINED when
 * only the answer to the probe is unexpected (a warning).
 * `info` receives a one-line description. Thread: main thread. */
#define BENCH_CAPF_PROBE "STPBENCHPROBE"
bench_err_t bench_capf_preflight(bench_run_t *run, char *info, size_t info_len,
                                 char *why, size_t why_len);

/* bench_capf_load: the CAPF phone for the load engine. Job j (0-based)
 * installs device j+1 of run->capf on a new connection. */
extern const bench_load_ops_t bench_capf_load;

/* ---- bench_crypto.c APIs ----------------------------------------------- */

/* bench_crypto_t: medians (µs of thread CPU time) of the crypto one
 * enrollment cannot avoid, measured on one core. */
typedef struct {
    double handshake_us;        /* server side of one full handshake */
    double csr_verify_us;       /* EST: cx_csr_parse + cx_csr_verify;
                                   CAPF: capf_spki_check of the phone's SPKI */
    double leaf_sign_us;        /* EST: cx_cert_issue_leaf; CAPF: cx_lsc_issue;
                                   both with DIR/ca.key */
    unsigned iterations;
    bench_tls_params_t tls;     /* what the measured handshakes negotiated */
} bench_crypto_t;

/* bench_crypto_measure measures, pinned to the CPU it runs on, the server
 * side of a handshake with DIR/tls.key + tls.crt (or in->tls_name's) using
 * the version, group and cipher of `tls` (the load's) over an in-memory BIO
 * pair, then for EST the CSR check of in->der and a leaf issued for it, for
 * CAPF the key check of the SPKI in->der and the LSC of in->device for it,
 * with DIR/ca.key + ca.crt. Thread: main thread, outside the load phase.
 * Returns BENCH_OK,
 * BENCH_E_SETUP (files) or BENCH_E_CRYPTO / BENCH_E_TLS with `why`. */
bench_err_t bench_crypto_measure(bench_crypto_t *out, const bench_cfg_t *cfg,
                                 const bench_tls_params_t *tls, const bench_crypto_in_t *in,
                                 char *why, size_t why_len);

/* bench_crypto_sampler_t: the same measurement one sample at a time, for
 * sampling while the load runs (each sample is one handshake + check +
 * signature, timed in the calling thread's CPU time). Owned by one thread.
 * bench_crypto_open loads the material and room for `cap` samples (BENCH_OK
 * or an error with `why`; `in` is copied, what it points to must outlive
 * the sampler); bench_crypto_sample runs one iteration and keeps it if
 * `keep` and there is room; bench_crypto_result gives the medians of the
 * kept samples (false if none); bench_crypto_close frees (NULL is fine). */
typedef struct bench_crypto_sampler bench_crypto_sampler_t;
bench_err_t bench_crypto_open(bench_crypto_sampler_t **out, const bench_cfg_t *cfg,
                              const bench_tls_params_t *tls, const bench_crypto_in_t *in,
                              size_t cap, char *why, size_t why_len);
bench_err_t bench_crypto_sample(bench_crypto_sampler_t *s, bool keep, char *why,
                                size_t why_len);
bool bench_crypto_result(bench_crypto_sampler_t *s, bench_crypto_t *out);
void bench_crypto_close(bench_crypto_sampler_t *s);

/* ---- bench_redis.c APIs ------------------------------------------------ */

/* Distinct commands kept per INFO commandstats reading (more are dropped). */
#define BENCH_REDIS_CMDS_MAX 128
/* Longest command name kept ("script|load"), NUL included. */
#define BENCH_REDIS_NAME_MAX 40

/* bench_redis_cmd_t: one `cmdstat_NAME:calls=N,...` line of INFO. */
typedef struct {
    char name[BENCH_REDIS_NAME_MAX];
    uint64_t calls;
} bench_redis_cmd_t;

/* bench_redis_snap_t: one reading of a Redis server's counters (INFO stats,
 * cpu, server, commandstats), plus what this reading cost on the wire. */
typedef struct {
    uint64_t commands;          /* total_commands_processed (script calls included) */
    uint64_t reads, writes;     /* total_reads/writes_processed (Redis >= 6.0) */
    bool rw_known;
    uint64_t net_in, net_out;   /* total_net_input/output_bytes */
    uint64_t cpu_us;            /* used_cpu_sys + used_cpu_user */
    uint64_t pid;               /* process_id, 0 if absent */
    size_t num_cmds;
    bench_redis_cmd_t cmds[BENCH_REDIS_CMDS_MAX];
    /* Filled by bench_redis_snap, not by the parser: */
    uint64_t own_in, own_out;   /* bytes of this INFO request and of its reply */
    bool proc_known;            /* the server is on this machine: proc_us is its */
    uint64_t proc_us;           /* utime+stime from /proc/PID/stat */
} bench_redis_snap_t;

/* bench_redis_cmd_cost_t: calls of one command per enrollment. top_level:
 * a command stampeded sends itself (the rest are made inside its script). */
typedef struct {
    char name[BENCH_REDIS_NAME_MAX];
    double per_enroll;
    bool top_level;
} bench_redis_cmd_cost_t;

/* bench_redis_cost_t: the Redis traffic of the load per enrollment, the
 * bench's own two INFO requests taken out. Negative: unknown. */
typedef struct {
    double client_cmds;         /* top-level commands (commandstats, see bench_redis.c) */
    double server_cmds;         /* total_commands_processed: script calls included */
    double reads, writes;       /* read/write calls on client sockets */
    double bytes_in, bytes_out;
    double cpu_us;              /* INFO cpu of redis-server */
    double proc_cpu_us;         /* /proc of redis-server */
    uint64_t pid;
    size_t num_cmds;            /* by per_enroll, descending */
    bench_redis_cmd_cost_t cmds[BENCH_REDIS_CMDS_MAX];
} bench_redis_cost_t;

/* bench_redis_parse_info fills the counters of `out` from the text of an INFO
 * reply `info` (untrusted, read through CBS only): `key:value` lines, `#`
 * section titles and blank lines; unknown keys are ignored.
 * Returns BENCH_OK, or BENCH_E_REDIS with a static cause in *why if a field
 * it needs is missing or not a number. */
bench_err_t bench_redis_parse_info(bench_redis_snap_t *out, const uint8_t *info, size_t len,
                                   const char **why);

/* bench_redis_cost sets `out` from the readings right before and right after
 * the load and the number of enrollments `n` (> 0).
 * Returns BENCH_OK, or BENCH_E_REDIS with a cause in `why` if the counters
 * went back (a restart or CONFIG RESETSTAT during the load). */
bench_err_t bench_redis_cost(bench_redis_cost_t *out, const bench_redis_snap_t *before,
                             const bench_redis_snap_t *after, uint64_t n, char *why,
                             size_t why_len);

/* bench_redis_t: one synchronous connection to the measured Redis. */
typedef struct bench_redis bench_redis_t;

/* bench_redis_open connects to the Redis of cfg->redis (NULL: DIR/redis.sock,
 * stampeded's embedded server, if that socket exists) and names it in `addr`.
 * Thread: main thread (blocking, 2 s timeout).
 * Returns BENCH_OK with *out set; BENCH_OK with *out NULL and the reason in
 * `why` when nothing is to be measured ("off", no socket, or the default
 * socket does not answer); BENCH_E_SETUP with `why` if an explicit --redis is
 * malformed or unreachable. The caller owns *out (bench_redis_close). */
bench_err_t bench_redis_open(bench_redis_t **out, const bench_cfg_t *cfg, char *addr,
                             size_t addr_len, char *why, size_t why_len);

/* bench_redis_snap reads the counters with one INFO request.
 * Returns BENCH_OK or BENCH_E_REDIS with a cause in `why`. */
bench_err_t bench_redis_snap(bench_redis_t *r, bench_redis_snap_t *out, char *why,
                             size_t why_len);

/* bench_redis_close closes the connection; NULL is fine. */
void bench_redis_close(bench_redis_t *r);

#endif
