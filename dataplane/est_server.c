/* est_server: EST (RFC 7030) routing on polling cores and enrollment on
 * signer workers (see est_server.h). Every answer carries a short text/plain
 * reason, and every denial is logged with the peer and the cause. */
#include "dataplane/est_server.h"

#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crypto/cx_b64.h"
#include "crypto/cx_csr.h"
#include "crypto/cx_verify.h"
#include "dataplane/dp_log.h"

#define EST_PREFIX "/.well-known/est/"
#define EST_P7_TYPE "application/pkcs7-mime; smime-type=certs-only"
#define EST_B64_HDR "Content-Transfer-Encoding: base64\r\n"
#define EST_AUTH_HDR "WWW-Authenticate: Basic realm=\"stampede-est\"\r\n"

typedef enum { OP_UNKNOWN, OP_CACERTS, OP_CSRATTRS, OP_ENROLL, OP_REENROLL, OP_UNSUPPORTED } est_op_t;

static est_op_t est_op(const CBS *path) {
    static const struct { const char *name; est_op_t op; } ops[] = {
        {"cacerts", OP_CACERTS},       {"csrattrs", OP_CSRATTRS},
        {"simpleenroll", OP_ENROLL},   {"simplereenroll", OP_REENROLL},
        {"serverkeygen", OP_UNSUPPORTED}, {"fullcmc", OP_UNSUPPORTED},
    };
    size_t plen = strlen(EST_PREFIX);
    if (CBS_len(path) <= plen || memcmp(CBS_data(path), EST_PREFIX, plen) != 0) return OP_UNKNOWN;
    const uint8_t *op = CBS_data(path) + plen;
    size_t n = CBS_len(path) - plen;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strlen(ops[i].name) == n && memcmp(ops[i].name, op, n) == 0) return ops[i].op;
    return OP_UNKNOWN;
}

size_t est_error_body(char *out, size_t cap, const char *reason) {
    int n = snprintf(out, cap, "%s\n", reason);
    return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

static est_action_t reply_text(est_reply_t *r, int status, const char *reason, const char *extra,
                               bool close) {
    r->status = status;
    r->content_type = "text/plain";
    r->extra_headers = extra;
    r->body = (const uint8_t *)reason;
    r->body_len = strlen(reason);
    r->close = close;
    r->log_reason = reason;
    return EST_REPLY;
}

static est_action_t route_get(const est_ctx_t *est, est_op_t op, est_reply_t *r) {
    if (op == OP_CACERTS) {
        *r = (est_reply_t){200, EST_P7_TYPE, EST_B64_HDR, est->cacerts_b64, est->cacerts_b64_len,
                           false, NULL};
        return EST_REPLY;
    }
    if (est->csrattrs_b64) {
        *r = (est_reply_t){200, "application/csrattrs", EST_B64_HDR, est->csrattrs_b64,
                           est->csrattrs_b64_len, false, NULL};
        return EST_REPLY;
    }
    *r = (est_reply_t){204, NULL, NULL, NULL, 0, false, NULL};
    return EST_REPLY;
}

est_action_t est_route(const est_ctx_t *est, const est_http_req_t *req, CBS body,
                       const est_peer_t *peer, est_reply_t *r, est_enroll_t *e) {
    est_op_t op = est_op(&req->path);
    if (op == OP_UNKNOWN) return reply_text(r, 404, "not found: EST operations are under /.well-known/est/\n", NULL, false);
    if (op == OP_UNSUPPORTED) return reply_text(r, 501, "EST operation not supported by this server\n", NULL, false);
    if (op == OP_CACERTS || op == OP_CSRATTRS) {
        if (req->method != EST_M_GET)
            return reply_text(r, 405, "method not allowed: use GET\n", "Allow: GET\r\n", false);
        return route_get(est, op, r);
    }
    if (req->method != EST_M_POST)
        return reply_text(r, 405, "method not allowed: use POST\n", "Allow: POST\r\n", false);
    if (req->chunked)
        return reply_text(r, 411, "length required: chunked bodies are not accepted, send Content-Length\n", NULL, true);
    if (req->content_length < 0)
        return reply_text(r, 411, "length required: send Content-Length\n", NULL, true);
    if ((size_t)req->content_length > est->max_body)
        return reply_text(r, 413, "request body too large\n", NULL, true);
    if (!est_http_media_is(&req->content_type, "application/pkcs10"))
        return reply_text(r, 415, "unsupported media type: send Content-Type: application/pkcs10\n", NULL, false);
    if (CBS_len(&req->transfer_encoding_cte) && !est_http_ieq(&req->transfer_encoding_cte, "base64"))
        return reply_text(r, 415, "unsupported Content-Transfer-Encoding: bodies must be base64\n", NULL, false);

    memset(e, 0, offsetof(est_enroll_t, basic_buf));
    if (CBS_len(&req->authorization)) {
        if (!est_http_basic(&req->authorization, e->basic_buf, sizeof(e->basic_buf), &e->user, &e->pass))
            return reply_text(r, 401, "unauthorized: malformed Basic credentials\n", EST_AUTH_HDR, false);
        e->basic = true;
        e->device_lookup = est->registry && !ra_users_has(est->users, (const char *)CBS_data(&e->user),
                                                          CBS_len(&e->user));
    } else if (!peer->chain) {
        return reply_text(r, 401, "unauthorized: send HTTP Basic credentials or a trusted TLS client certificate\n",
                          EST_AUTH_HDR, false);
    }
    if (op == OP_REENROLL && !peer->chain)
        return reply_text(r, 403, "forbidden: simplereenroll needs a TLS client certificate issued by this CA\n",
                          NULL, false);
    if ((size_t)req->content_length != CBS_len(&body)) return EST_ENROLL; /* caller reads the body */
    e->reenroll = op == OP_REENROLL;
    e->keep_alive = req->keep_alive;
    e->body = body;
    e->peer = *peer;
    return EST_ENROLL;
}

/* est_respond writes a complete HTTP response into e->out. */
static void est_respond(est_enroll_t *e, int status, const char *ctype, const char *extra,
                        const uint8_t *body, size_t body_len) {
    e->status = status;
    e->out_len = est_http_response(e->out, e->out_cap, status, ctype, extra, e->keep_alive, body, body_len);
}

static const char *est_who(const est_enroll_t *e, int *len) {
    if (e->identity[0]) {
        *len = (int)strlen(e->identity);
        return e->identity;
    }
    *len = e->basic ? (int)CBS_len(&e->user) : 4;
    return e->basic ? (const char *)CBS_data(&e->user) : "cert";
}

void est_deny_response(est_enroll_t *e, int status, const char *reason) {
    char text[RA_REQ_REASON_MAX + 2];
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
    size_t n = est_error_body(text, sizeof(text), reason);
    est_respond(e, status, "text/plain", status == 401 ? EST_AUTH_HDR : NULL, (const uint8_t *)text, n);
    e->issued = false;
}

static void est_deny(est_enroll_t *e, int status, const char *reason) {
    est_deny_response(e, status, reason);
    int n;
    const char *who = est_who(e, &n);
    DP_INFO("EST denied peer=%s identity=%.*s cn=%s status=%d: %s", e->peer.addr, n, who,
            e->subject_cn[0] ? e->subject_cn : "-", status, reason);
}

void est_cert_response(est_enroll_t *e, const uint8_t *der, size_t der_len) {
    CBB cbb;
    uint8_t *p7 = NULL, *b64 = NULL;
    size_t p7_len;
    CBS certs[1];
    CBS_init(&certs[0], der, der_len);
    e->out_len = 0;
    if (!CBB_init(&cbb, der_len + 64) || cx_pkcs7_certs_only(&cbb, certs, 1) || !CBB_finish(&cbb, &p7, &p7_len) ||
        !(b64 = malloc(cx_b64_encoded_len(p7_len)))) {
        CBB_cleanup(&cbb);
        OPENSSL_free(p7);
        return;
    }
    size_t b64_len = cx_b64_encode(b64, p7, p7_len);
    est_respond(e, 200, EST_P7_TYPE, EST_B64_HDR, b64, b64_len);
    OPENSSL_free(p7);
    free(b64);
}

/* est_reenroll_matches: RFC 7030 §4.2.2: the CSR's subject and
 * subjectAltName must equal those of the certificate being renewed. When
 * policy does not copy SANs our certificates carry none, so only the
 * subject is compared. */
static bool est_reenroll_matches(const est_ctx_t *est, const est_enroll_t *e, const cx_csr_t *csr) {
    CBS subject;
    if (cx_cert_parse_basic(e->peer.cert_der, e->peer.cert_der_len, &subject, NULL, NULL, NULL) != CX_OK ||
        !CBS_mem_equal(&subject, CBS_data(&csr->subject), CBS_len(&csr->subject)))
        return false;
    if (!est->policy.copy_san) return true;
    const uint8_t *p = e->peer.cert_der;
    X509 *x = d2i_X509(NULL, &p, (long)e->peer.cert_der_len);
    if (!x) return false;
    int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
    const ASN1_OCTET_STRING *v = idx >= 0 ? X509_EXTENSION_get_data(X509_get_ext(x, idx)) : NULL;
    bool same = v ? CBS_mem_equal(&csr->san, ASN1_STRING_get0_data(v), (size_t)ASN1_STRING_length(v))
                  : CBS_len(&csr->san) == 0;
    X509_free(x);
    return same;
}

/* est_serial_hex writes a serial's magnitude in hex without leading zero
 * bytes, so a serial read back from a certificate compares equal to the
 * one we generated. */
static void est_serial_hex(char *out, size_t cap, const uint8_t *b, size_t n) {
    while (n > 1 && b[0] == 0) b++, n--;
    size_t w = 0;
    for (size_t i = 0; i < n && w + 3 <= cap; i++, w += 2) snprintf(out + w, 3, "%02x", b[i]);
    out[w] = 0;
}

/* est_set_identity records who asked: a users-file user or a device by
 * name, or for certificate authentication the CN (or, if the CN cannot name
 * a key, "cert-" + the certificate's SHA-256 prefix). */
static void est_set_identity(est_enroll_t *e, const char *name, size_t len) {
    if (ra_req_identity_valid(name, len)) {
        snprintf(e->identity, sizeof(e->identity), "%.*s", (int)len, name);
        e->record = true;
        return;
    }
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(e->peer.cert_der ? e->peer.cert_der : (const uint8_t *)name,
           e->peer.cert_der ? e->peer.cert_der_len : len, md);
    int w = snprintf(e->identity, sizeof(e->identity), "%s-", e->basic ? "user" : "cert");
    for (int i = 0; i < 8; i++) snprintf(e->identity + w + 2 * i, 3, "%02x", md[i]);
    e->record = true;
}

/* est_auth_device authenticates a registry device by its mode (null
 * string: empty password; authentication string: crypt(3) check; LSC/MIC:
 * a TLS client certificate for the device) and checks its pending
 * operation and deadline. Returns NULL or the denial (status in *status). */
static const char *est_auth_device(const est_enroll_t *e, bool cert_ok, int *status) {
    const ra_device_t *d = &e->device;
    *status = 401;
    if (!e->device_found) return ra_err_str(RA_E_UNKNOWN_USER);
    char pw[RA_DEVICE_HASH_MAX];
    switch (d->auth) {
    case RA_AUTH_NULL:
        if (CBS_len(&e->pass)) return "device uses null-string authentication: send an empty password";
        break;
    case RA_AUTH_STRING:
        if (CBS_len(&e->pass) >= sizeof(pw)) return "Invalid Authentication String";
        memcpy(pw, CBS_data(&e->pass), CBS_len(&e->pass));
        pw[CBS_len(&e->pass)] = 0;
        bool ok = ra_auth_string_check(pw, d->auth_hash);
        OPENSSL_cleanse(pw, sizeof(pw));
        if (!ok) return "Invalid Authentication String";
        break;
    case RA_AUTH_LSC:
    case RA_AUTH_MIC: {
        char cn[RA_DEVICE_NAME_MAX + 1] = "";
        CBS subject;
        if (cert_ok && cx_cert_parse_basic(e->peer.cert_der, e->peer.cert_der_len, &subject, NULL, NULL, NULL) == CX_OK)
            cx_name_cn(&subject, cn, sizeof(cn));
        if (!cert_ok || strcmp(cn, d->name) != 0)
            return "device authenticates by existing certificate: present it as the TLS client certificate";
        /* LSC (our CA) or MIC (client_ca): precedence only matters to a
         * client holding both; EST presents one. */
        break;
    }
    default:
        return "device authentication mode unsupported";
    }
    *status = 403;
    if (d->op != RA_OP_INSTALL) return "no certificate operation pending for this device";
    if (d->by && d->by < (int64_t)time(NULL)) return "deadline passed";
    return NULL;
}

/* est_keep appends `len` bytes after what e->out holds (the response) and
 * returns where they went, or NULL if out is full. */
static const uint8_t *est_keep(est_enroll_t *e, size_t *used, const uint8_t *p, size_t len) {
    if (*used + len > e->out_cap) return NULL;
    uint8_t *dst = e->out + *used;
    memcpy(dst, p, len);
    *used += len;
    return dst;
}

void est_enroll_run(const est_ctx_t *est, est_enroll_t *e, unsigned worker) {
    uint8_t der[CX_CSR_MAX_DER];
    size_t der_len;
    cx_csr_t csr;
    cx_err_t err;
    int status;
    bool ours = false;
    bool cert_ok = e->peer.chain &&
                   cx_verify_client_chain(est->trust, e->peer.chain, est->ca_der, est->ca_der_len, &ours);
    const char *policy = NULL; /* a device's operation/deadline refusal, decided after the CSR is hashed */
    if (e->basic && e->device_lookup) {
        policy = est_auth_device(e, cert_ok, &status);
        if (policy && status == 401) return est_deny(e, 401, policy);
        est_set_identity(e, e->device.name, strlen(e->device.name));
        e->is_device = true;
    } else if (e->basic) {
        ra_err_t re = est->users ? ra_users_check(est->users, worker, (const char *)CBS_data(&e->user),
                                                  CBS_len(&e->user), (const char *)CBS_data(&e->pass),
                                                  CBS_len(&e->pass))
                                 : RA_E_UNKNOWN_USER;
        if (re != RA_OK) return est_deny(e, 401, ra_err_str(re));
        est_set_identity(e, (const char *)CBS_data(&e->user), CBS_len(&e->user));
    } else {
        if (!cert_ok) return est_deny(e, 401, "TLS client certificate is not trusted (and no Basic credentials)");
        CBS subject;
        char cn[RA_REQ_IDENTITY_MAX + 2] = "";
        if (cx_cert_parse_basic(e->peer.cert_der, e->peer.cert_der_len, &subject, NULL, NULL, NULL) == CX_OK)
            cx_name_cn(&subject, cn, sizeof(cn));
        est_set_identity(e, cn, strlen(cn));
    }
    if (e->reenroll && !(cert_ok && ours))
        return est_deny(e, 403, "simplereenroll needs a TLS client certificate issued by this CA");
    if (e->reenroll) {
        CBS serial;
        if (cx_cert_parse_basic(e->peer.cert_der, e->peer.cert_der_len, NULL, NULL, &serial, NULL) == CX_OK)
            est_serial_hex(e->renew_serial_hex, sizeof(e->renew_serial_hex), CBS_data(&serial), CBS_len(&serial));
    }
    if ((err = cx_b64_decode(der, &der_len, sizeof(der), CBS_data(&e->body), CBS_len(&e->body)))) {
        e->record = false; /* nothing to key a request record on */
        return est_deny(e, 400, cx_err_str(err));
    }
    SHA256(der, der_len, e->csr_sha256);
    /* Keep the DER for the request record at the end of out[]; the
     * response is written at its start. */
    if (der_len <= e->out_cap / 2) {
        e->out_cap -= der_len;
        memcpy(e->out + e->out_cap, der, der_len);
        e->csr_der = e->out + e->out_cap;
        e->csr_len = der_len;
    } else {
        e->record = false;
    }
    if ((err = cx_csr_parse(&csr, der, der_len))) return est_deny(e, 400, cx_err_str(err));
    cx_name_cn(&csr.subject, e->subject_cn, sizeof(e->subject_cn));
    if ((err = cx_csr_verify(&csr, NULL))) return est_deny(e, 400, cx_err_str(err));
    if (csr.subject_empty && !(est->policy.copy_san && CBS_len(&csr.san)))
        return est_deny(e, 400, "CSR subject is empty");
    if (e->reenroll && !est_reenroll_matches(est, e, &csr))
        return est_deny(e, 403, "CSR subject or subjectAltName differs from the client certificate (RFC 7030 4.2.2)");
    /* Not signed, but recorded under this CSR: if the same CSR was issued
     * before (a retry after a lost answer), the request script returns that
     * certificate instead of this refusal. */
    if (policy) return est_deny(e, 403, policy);
    if (est->online) { /* the upstream CA signs: record it pending, nothing to sign here */
        e->online_accept = true;
        DP_DEBUG("EST %s accepted for the upstream CA cn=%s peer=%s identity=%s",
                 e->reenroll ? "simplereenroll" : "simpleenroll", e->subject_cn, e->peer.addr, e->identity);
        return;
    }

    /* Worker-side buffers grow as needed: a CSR with a long subject or many
     * SANs makes a long certificate. */
    CBB cbb;
    uint8_t *cert = NULL;
    size_t cert_len;
    int64_t now = time(NULL);
    if (!CBB_init(&cbb, 2048) || (err = cx_cert_issue_leaf(&cbb, e->serial, &est->issuer, &csr, &est->policy, now)) ||
        !CBB_finish(&cbb, &cert, &cert_len)) {
        CBB_cleanup(&cbb);
        return est_deny(e, 500, err ? cx_err_str(err) : "out of memory");
    }
    est_cert_response(e, cert, cert_len);
    size_t used = e->out_len;
    if (e->out_len) e->cert_der = est_keep(e, &used, cert, cert_len);
    if (cx_cert_parse_basic(cert, cert_len, NULL, NULL, NULL, &e->not_after) != CX_OK) e->not_after = 0;
    OPENSSL_free(cert);
    if (!e->out_len || !e->cert_der) /* cannot happen with the sized buffers; never send half */
        return est_deny(e, 413, "the certificate for this CSR is too large to return");
    e->cert_len = cert_len;
    e->issued = true;
    est_serial_hex(e->serial_hex, sizeof(e->serial_hex), e->serial, CX_SERIAL_LEN);
    DP_DEBUG("EST %s signed serial=%s cn=%s peer=%s identity=%s auth=%s", e->reenroll ? "simplereenroll" : "simpleenroll",
            e->serial_hex, e->subject_cn, e->peer.addr, e->identity,
            e->is_device ? "device" : e->basic ? "basic" : "tls-client-cert");
}

void est_accepted_response(est_enroll_t *e, unsigned retry_after) {
    char hdr[48], text[] = "request is pending at the certification authority: retry the same request later\n";
    snprintf(hdr, sizeof(hdr), "Retry-After: %u\r\n", retry_after);
    snprintf(e->reason, sizeof(e->reason), "pending at the upstream CA");
    est_respond(e, 202, "text/plain", hdr, (const uint8_t *)text, sizeof(text) - 1);
    e->issued = false;
}

void est_log_issued(const est_enroll_t *e, const char *serial) {
    DP_INFO("EST %s issued serial=%s cn=%s peer=%s identity=%s auth=%s", e->reenroll ? "simplereenroll" : "simpleenroll",
            serial, e->subject_cn, e->peer.addr, e->identity,
            e->is_device ? "device" : e->basic ? "basic" : "tls-client-cert");
}

static int est_b64_dup(uint8_t **out, size_t *out_len, const uint8_t *der, size_t der_len) {
    *out = malloc(cx_b64_encoded_len(der_len));
    if (!*out) return -1;
    *out_len = cx_b64_encode(*out, der, der_len);
    return 0;
}

static int est_build_csrattrs(est_ctx_t *est, const char *oids, char *why, size_t why_len) {
    CBB cbb, seq;
    uint8_t *der = NULL;
    size_t der_len;
    char *list = strdup(oids), *save = NULL;
    if (!list || !CBB_init(&cbb, 64) || !CBB_add_asn1(&cbb, &seq, CBS_ASN1_SEQUENCE)) goto fail;
    for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        CBB oid;
        if (!CBB_add_asn1(&seq, &oid, CBS_ASN1_OBJECT) ||
            !CBB_add_asn1_oid_from_text(&oid, tok, strlen(tok))) {
            snprintf(why, why_len, "csrattrs: '%s' is not a dotted OID", tok);
            goto fail;
        }
    }
    if (!CBB_finish(&cbb, &der, &der_len) || est_b64_dup(&est->csrattrs_b64, &est->csrattrs_b64_len, der, der_len))
        goto fail;
    OPENSSL_free(der);
    free(list);
    return 0;
fail:
    CBB_cleanup(&cbb);
    free(list);
    if (!why[0]) snprintf(why, why_len, "csrattrs: cannot encode");
    return -1;
}

int est_ctx_init(est_ctx_t *est, const uint8_t *ca_der, size_t ca_der_len, const char *csrattrs_oids,
                 char *why, size_t why_len) {
    CBB cbb;
    uint8_t *p7 = NULL;
    size_t p7_len;
    CBS cert;
    why[0] = 0;
    CBS_init(&cert, ca_der, ca_der_len);
    if (!CBB_init(&cbb, ca_der_len + 64) || cx_pkcs7_certs_only(&cbb, &cert, 1) ||
        !CBB_finish(&cbb, &p7, &p7_len)) {
        CBB_cleanup(&cbb);
        snprintf(why, why_len, "cannot build /cacerts PKCS#7");
        return -1;
    }
    int r = est_b64_dup(&est->cacerts_b64, &est->cacerts_b64_len, p7, p7_len);
    OPENSSL_free(p7);
    if (r) return -1;
    if (csrattrs_oids && csrattrs_oids[0]) return est_build_csrattrs(est, csrattrs_oids, why, why_len);
    return 0;
}

void est_ctx_cleanup(est_ctx_t *est) {
    free(est->cacerts_b64);
    free(est->csrattrs_b64);
    est->cacerts_b64 = est->csrattrs_b64 = NULL;
}
