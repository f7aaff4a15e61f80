/* ctl_certsrv: the certsrv connector, one pooled upstream connection to a
 * Microsoft AD CS web-enrollment server (certsrv-protocol.md). A ctl_conn_t
 * is one libcurl easy handle: it keeps its TCP/TLS connection alive between
 * calls, so an NTLM login (bound to the connection, §2.4) is done once and a
 * warm enrollment costs 2 HTTP requests: POST certfnsh.asp, GET certnew.cer.
 *
 * Rules it keeps (§1.2, §2, §5): form fields URL-encoded
 * (application/x-www-form-urlencoded, never multipart); HTTP/1.1; the auth
 * scheme chosen explicitly (CURLAUTH_BASIC / _NTLM / _NEGOTIATE), user and
 * password through CURLOPT_USERNAME / CURLOPT_PASSWORD; no cookies; never a
 * redirect followed on the POST; lowercase /certsrv/ paths; Enc=bin;
 * `Renewal` always sent; a browser-like User-Agent; connections retired
 * after max_conn_age_s (CURLOPT_MAXAGE_CONN); separate connect, login,
 * submit and fetch timeouts. A POST that times out after its body was sent
 * returns CTL_UP_UNKNOWN: the caller must not blindly resubmit (§5.13).
 *
 * Every failure is classified (ctl_diag.h) with one line naming the cause,
 * the details (URL, libcurl code, HTTP status, TLS verify result, offered
 * auth schemes, HRESULT) and the fix. A 401 to NTLM/Negotiate is CTL_D_AUTH
 * whose cause also names Extended Protection (libcurl sends no channel
 * binding, §2.6); only ctl_doctor, which tries Basic once, says CTL_D_EPA.
 * Thread: a ctl_conn_t belongs to one thread at a time; calls block for at
 * most the configured timeouts.
 * Startup: the process calls curl_global_init(CURL_GLOBAL_DEFAULT) once, before
 * any thread makes a ctl_conn_t (ctl_main and ctl_certsrv_probe do). */
#ifndef CTL_CERTSRV_H
#define CTL_CERTSRV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "control/ctl_config.h"
#include "control/ctl_diag.h"

#define CTL_CAUSE_MAX 640
#define CTL_CERT_MAX 16384
#define CTL_CHAIN_MAX 65536

typedef struct ctl_conn ctl_conn_t;

typedef enum {
    CTL_UP_ISSUED = 0, /* req_id; after fetch: the certificate in `der` */
    CTL_UP_PENDING,    /* req_id: the CA holds it for manager approval */
    CTL_UP_DENIED,     /* the CA refused: final for this CSR (diag, cause, hresult, req_id if shown) */
    CTL_UP_FAILED,     /* no answer from the CA about this request: see diag (retryable or not) */
    CTL_UP_UNKNOWN,    /* the POST timed out or the connection died after the body was sent */
    CTL_UP__COUNT
} ctl_up_kind_t;

/* ctl_up_t: the result of one call. */
typedef struct {
    ctl_up_kind_t kind;
    ctl_diag_t diag;             /* CTL_D_OK for ISSUED / PENDING */
    bool has_req_id;
    uint32_t req_id;
    uint32_t hresult;            /* 0 if none */
    long http_status;            /* last HTTP status seen, 0 if none */
    int curl_code;               /* last CURLcode, 0 if none */
    long verify_result;          /* CURLINFO_SSL_VERIFYRESULT of a TLS failure, else 0 */
    unsigned requests;           /* HTTP requests this call sent (auth legs included) */
    char cause[CTL_CAUSE_MAX];   /* one line: cause + details + fix (no secrets) */
    uint8_t der[CTL_CERT_MAX];   /* fetch: the certificate (DER) */
    size_t der_len;
} ctl_up_t;

/* ctl_conn_new makes a connection object for `cfg` (no I/O yet).
 * Ownership: the caller frees it with ctl_conn_free; `cfg` must outlive it.
 * Returns NULL on allocation failure. */
ctl_conn_t *ctl_conn_new(const ctl_config_t *cfg);
void ctl_conn_free(ctl_conn_t *c);

/* ctl_conn_requests: HTTP requests this connection object sent so far. */
unsigned long ctl_conn_requests(const ctl_conn_t *c);

/* ctl_conn_auth_offered: the schemes the server offered in the last 401 it
 * sent on `c` (CURLINFO_HTTPAUTH_AVAIL: CURLAUTH_* bits), 0 if none yet. */
unsigned long ctl_conn_auth_offered(const ctl_conn_t *c);

/* ctl_auth_schemes_str writes CURLAUTH_* `bits` as "Negotiate, NTLM"
 * ("none" for 0) into `buf` (`len` bytes, truncated). Returns `buf`. */
const char *ctl_auth_schemes_str(unsigned long bits, char *buf, size_t len);

/* ctl_certsrv_login: GET /certsrv/ (authenticates the connection: with NTLM
 * that is the login handshake). CTL_UP_ISSUED (meaning "ok") or CTL_UP_FAILED
 * with a diagnosis. A warm connection answers with one request. */
ctl_up_kind_t ctl_certsrv_login(ctl_conn_t *c, ctl_up_t *res);

/* ctl_certsrv_submit POSTs the PKCS#10 `p10` (DER) to certfnsh.asp with
 * Mode=newreq and CertAttrib=CertificateTemplate:<template>. Returns
 * ISSUED / PENDING (req_id set), DENIED, FAILED (nothing was submitted, or
 * the CA did not take it: e.g. 401, 5xx, connection refused) or UNKNOWN
 * (diag CTL_D_TIMEOUT_SUBMIT: timeout or connection lost after the body was
 * sent; CTL_D_PAGE: a 200 answer none of the parsers recognise, or one too
 * large to read). The body is never resent on a new connection once it went
 * out without an answer (libcurl would do that on a dead reused connection). */
ctl_up_kind_t ctl_certsrv_submit(ctl_conn_t *c, const uint8_t *p10, size_t p10_len, ctl_up_t *res);

/* ctl_certsrv_fetch GETs certnew.cer?ReqID=<req_id>&Enc=bin. ISSUED with
 * the certificate in res->der (its public key checked equal to the CSR's
 * `p10`), PENDING (disposition 5), DENIED (disposition 2 / denied by), or
 * FAILED (unknown id -> CTL_D_UNKNOWN_ID, transport, page). */
ctl_up_kind_t ctl_certsrv_fetch(ctl_conn_t *c, uint32_t req_id, const uint8_t *p10, size_t p10_len,
                                ctl_up_t *res);

/* ctl_chain_t: the upstream CA as certcarc.asp / certnew.p7b describe it. */
typedef struct {
    uint32_t renewal;            /* nRenewals: index of the current CA certificate */
    uint8_t chain[CTL_CHAIN_MAX]; /* DER PKCS#7 certs-only: chain of CA certificate `renewal` */
    size_t chain_len;
    uint8_t ca_cert[CTL_CERT_MAX]; /* DER of CA certificate `renewal` */
    size_t ca_cert_len;
} ctl_chain_t;

/* ctl_certsrv_chain reads the current renewal index (certcarc.asp; a page
 * without nRenewals is an error, never a fallback to 0), then
 * certnew.p7b?ReqID=CACert&Renewal=<k>&Enc=bin and
 * certnew.cer?ReqID=CACert&Renewal=<k>&Enc=bin. ISSUED ("ok") or FAILED. */
ctl_up_kind_t ctl_certsrv_chain(ctl_conn_t *c, ctl_chain_t *out, ctl_up_t *res);

/* ctl_certsrv_chain_at: the chain of CA certificate `renewal` only (the
 * previous CA during a rollover). ISSUED or FAILED. */
ctl_up_kind_t ctl_certsrv_chain_at(ctl_conn_t *c, uint32_t renewal, ctl_chain_t *out, ctl_up_t *res);

/* ctl_certsrv_get GETs /certsrv/<page> (e.g. "certrqxt.asp"; "" for the
 * welcome page) with the fetch timeout: for ctl_doctor's page checks.
 * ISSUED with *body / *body_len set to the answer on HTTP 200 (owned by `c`,
 * valid until its next call), or FAILED with a diagnosis (*body NULL). */
ctl_up_kind_t ctl_certsrv_get(ctl_conn_t *c, const char *page, const uint8_t **body,
                              size_t *body_len, ctl_up_t *res);

/* ctl_doctor runs the checks of `stampedectl doctor` against the configured
 * upstream and prints one line per check to `out`: "ok    <check>: <detail>"
 * or "PROBLEM <check>: <cause>; fix: <fix>". Checks, in order, each only if
 * the previous ones passed where it depends on them: configuration, DNS,
 * TCP connect, TLS (trust, name, clock), authentication (offered schemes,
 * credentials, EPA hint), web enrollment pages (welcome page), CA reachable
 * behind IIS and its chain (certcarc.asp nRenewals, certnew.p7b), template
 * (certrqxt.asp lists it for this account). Never submits a request.
 * Returns the number of problems (0 = all ok). */
int ctl_doctor(const ctl_config_t *cfg, FILE *out);

const char *ctl_up_kind_str(ctl_up_kind_t k);

/* ctl_auth_name: "basic", "ntlm", "negotiate", "none" ("unknown" for a
 * value outside ctl_auth_t). */
const char *ctl_auth_name(ctl_auth_t a);

/* ctl_str_set: the setting `s` is given (not NULL, not empty). */
bool ctl_str_set(const char *s);

/* ctl_resolve_next walks the `resolve` setting (HOST:PORT:ADDR entries
 * separated by commas, blanks around them ignored): from *cursor it sets
 * *entry and *len to the next entry without its trailing blanks and moves
 * *cursor past it. Returns false (and *len 0) when there is none left. */
bool ctl_resolve_next(const char **cursor, const char **entry, size_t *len);

#endif
