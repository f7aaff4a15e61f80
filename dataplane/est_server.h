/* est_server: the EST engine (RFC 7030) at /.well-known/est/. It decides
 * what a complete HTTP request gets: a ready answer (cacerts, csrattrs,
 * 4xx errors) computed on the polling core without crypto, or an enrollment
 * job for the signing pool (Basic-auth check, base64, CSR parse and proof of
 * possession, issuance, PKCS#7, the whole HTTP response), which the worker
 * writes into the session's buffer. It never touches sockets or TLS records.
 * Thread: est_route on polling cores; est_enroll_run on signer workers. */
#ifndef EST_SERVER_H
#define EST_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>
#include <openssl/x509.h>

#include "crypto/cx_cert.h"
#include "crypto/cx_pool.h"
#include "dataplane/est_http.h"
#include "ra/ra_device.h"
#include "ra/ra_req.h"
#include "ra/ra_users.h"

/* est_ctx_t: frozen at startup. */
typedef struct {
    uint8_t *cacerts_b64;       /* base64 certs-only PKCS#7 of the CA chain */
    size_t cacerts_b64_len;
    uint8_t *csrattrs_b64;      /* base64 CsrAttrs, or NULL -> 204 */
    size_t csrattrs_b64_len;
    ra_users_t *users;          /* HTTP Basic users (may be NULL: none) */
    cx_issuer_t issuer;         /* local CA */
    cx_leaf_policy_t policy;
    X509_STORE *trust;          /* client-certificate trust (our CA + client_ca) */
    const uint8_t *ca_der;      /* our CA certificate */
    size_t ca_der_len;
    size_t max_body;
    bool registry;              /* Redis is the system of record (not "off"):
                                   Basic users not in the users file are
                                   looked up as registry devices */
    bool online;                /* ca_mode online: accepted requests go to the
                                   upstream CA (nothing is signed here) */
    unsigned retry_after;       /* online: Retry-After seconds of a 202 */
} est_ctx_t;

/* est_peer_t: what the transport and TLS layers know about the client. */
typedef struct {
    const char *addr;           /* "ip:port" */
    const STACK_OF(CRYPTO_BUFFER) *chain; /* client certificates, or NULL */
    const uint8_t *cert_der;    /* leaf DER (valid while the TLS session lives) */
    size_t cert_der_len;
} est_peer_t;

/* est_enroll_t: an enrollment handed to the signing pool. Views point into
 * the session's buffer or TLS session, which outlive the job. */
typedef struct {
    bool reenroll;
    bool keep_alive;
    bool basic;                 /* check user/pass (else cert-authenticated) */
    CBS user, pass;
    CBS body;                   /* base64 PKCS#10 */
    est_peer_t peer;
    uint8_t *out;               /* where the worker writes the HTTP response */
    size_t out_cap;
    size_t out_len;             /* result: response bytes */
    int status;                 /* result: HTTP status */
    char subject_cn[64];        /* result: for the log line */
    char reason[96];            /* result: denial cause */
    uint8_t serial[CX_SERIAL_LEN];
    /* Registry device: est_route sets device_lookup when the Basic user is
     * not in the users file; the core then reads the device from Redis into
     * `device` (device_found) before the job runs. */
    bool device_lookup;
    bool device_found;
    ra_device_t device;
    /* For the request record (worker results; the core writes them to
     * Redis before anything is sent). */
    bool record;                /* an authenticated identity: record the outcome */
    bool issued;                /* a certificate was signed (cert_* valid) */
    bool is_device;             /* identity is a registry device */
    char identity[RA_REQ_IDENTITY_MAX + 1];
    uint8_t csr_sha256[32];
    const uint8_t *csr_der;     /* in out[], after the response */
    size_t csr_len;
    const uint8_t *cert_der;    /* in out[], after the CSR */
    size_t cert_len;
    char serial_hex[2 * CX_SERIAL_LEN + 1];
    char renew_serial_hex[2 * CX_SERIAL_LEN + 3]; /* simplereenroll: the client cert's */
    int64_t not_after;
    /* Online CA mode: the worker accepted the request for the upstream CA
     * (authenticated, CSR verified, device policy passed; nothing signed);
     * the core records it pending and, if the record says so, waits. */
    bool online_accept;
    bool online_wait;           /* core: the record is pending at the upstream CA */
    bool online_reread;         /* core: it was pending before: read it once after parking
                                   (its answer may have come before this session parked) */
    uint8_t basic_buf[512];     /* decoded Basic credentials */
} est_enroll_t;

typedef enum { EST_REPLY = 0, EST_ENROLL } est_action_t;

/* est_reply_t: a ready answer. Body points to static or est_ctx_t memory. */
typedef struct est_reply {
    int status;
    const char *content_type;
    const char *extra_headers;  /* CRLF-terminated lines or NULL */
    const uint8_t *body;
    size_t body_len;
    bool close;                 /* close the connection after it */
    const char *log_reason;     /* for 4xx: logged with the peer */
} est_reply_t;

/* est_ctx_init builds the precomputed bodies: /cacerts from `ca_der`, and
 * /csrattrs from `csrattrs_oids` (comma-separated dotted OIDs, "" = 204).
 * Returns 0, or -1 with a cause in `why`. Startup only. */
int est_ctx_init(est_ctx_t *est, const uint8_t *ca_der, size_t ca_der_len,
                 const char *csrattrs_oids, char *why, size_t why_len);
void est_ctx_cleanup(est_ctx_t *est);

/* est_route answers `req` (whose body, if any, is `body`) or prepares
 * `enroll`. Thread: polling core. Never blocks, never allocates. */
est_action_t est_route(const est_ctx_t *est, const est_http_req_t *req, CBS body,
                       const est_peer_t *peer, est_reply_t *reply, est_enroll_t *enroll);

/* est_enroll_run performs `e` on a signer worker: auth, CSR checks,
 * issuance, PKCS#7 and the HTTP response into e->out.
 * Thread: signer worker `worker`. */
void est_enroll_run(const est_ctx_t *est, est_enroll_t *e, unsigned worker);

/* est_cert_response writes the 200 response carrying certificate `der`
 * (certs-only PKCS#7, base64) into e->out; e->out_len 0 if it does not fit
 * or encoding failed. Thread: signer worker, or a polling core for a
 * certificate read back from Redis (no signing involved). */
void est_cert_response(est_enroll_t *e, const uint8_t *der, size_t der_len);

/* est_deny_response writes a text/plain denial `reason` with `status` into
 * e->out (and e->reason), as the worker does; used by the core when Redis
 * refuses a request. */
void est_deny_response(est_enroll_t *e, int status, const char *reason);

/* est_accepted_response writes 202 Accepted with Retry-After (RFC 7030
 * 4.2.3: the client repeats the same request later) into e->out.
 * Thread: polling core. */
void est_accepted_response(est_enroll_t *e, unsigned retry_after);

/* est_log_issued writes the one info line of an issuance (after it is
 * recorded, or at once when nothing is recorded). `serial` is hex. */
void est_log_issued(const est_enroll_t *e, const char *serial);

/* est_error_body formats a short text/plain reason "<reason>\n" into `out`.
 * Returns its length. */
size_t est_error_body(char *out, size_t cap, const char *reason);

#endif
