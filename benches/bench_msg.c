/* bench_msg: EST (RFC 7030) over HTTP/1.1 as stampede-bench speaks it:
 * the pre-encoded simpleenroll requests, the response parser, and the check
 * of the certs-only PKCS#7 the server returns. It never touches a socket: the
 * EST client (bench_est.c, on the load engine) and the preflight hand it bytes.
 * Response bytes are untrusted and are read only through CBS.
 * Thread: any thread. Allocates only through the CBB it is given. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/base64.h>

#include "benches/bench.h"
#include "crypto/cx_b64.h"

#define EST_PATH "/.well-known/est/"
#define USER_AGENT "stampede-bench/" STAMPEDE_VERSION

bench_err_t bench_msg_enroll_prefix(char *out, size_t cap, const char *hostport,
                                    const char *user, const char *password, bool close) {
    char cred[512];
    uint8_t cred_b64[700];
    int n = snprintf(cred, sizeof cred, "%s:%s", user, password);
    if (n < 0 || (size_t)n >= sizeof cred)
        return BENCH_E_SETUP;
    EVP_EncodeBlock(cred_b64, (const uint8_t *)cred, (size_t)n);  /* one line, NUL-terminated */
    n = snprintf(out, cap,
                 "POST " EST_PATH "simpleenroll HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "User-Agent: " USER_AGENT "\r\n"
                 "Content-Type: application/pkcs10\r\n"
                 "Content-Transfer-Encoding: base64\r\n"
                 "Authorization: Basic %s\r\n"
                 "%s"
                 "Content-Length: ",
                 hostport, (const char *)cred_b64, close ? "Connection: close\r\n" : "");
    OPENSSL_cleanse(cred, sizeof cred);
    return n < 0 || (size_t)n >= cap ? BENCH_E_SETUP : BENCH_OK;
}

int bench_msg_encode_enroll(CBB *out, const char *prefix, const uint8_t *der, size_t der_len) {
    char len_line[32];
    size_t body_len = cx_b64_encoded_len(der_len);
    int n = snprintf(len_line, sizeof len_line, "%zu\r\n\r\n", body_len);
    uint8_t *body;
    if (!CBB_add_bytes(out, (const uint8_t *)prefix, strlen(prefix)) ||
        !CBB_add_bytes(out, (const uint8_t *)len_line, (size_t)n) ||
        !CBB_add_space(out, &body, body_len))
        return 0;
    return cx_b64_encode(body, der, der_len) == body_len;
}

size_t bench_msg_cacerts_request(char *out, size_t cap, const char *hostport) {
    int n = snprintf(out, cap,
                     "GET " EST_PATH "cacerts HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "User-Agent: " USER_AGENT "\r\n"
                     "Connection: close\r\n\r\n",
                     hostport);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

/* ---- response parsing ---------------------------------------------------- */

/* msg_get_line moves the next line (without CRLF or LF) of `in` into `line`.
 * Returns false if `in` holds no complete line. */
static bool msg_get_line(CBS *in, CBS *line) {
    const uint8_t *nl = memchr(CBS_data(in), '\n', CBS_len(in));
    if (nl == NULL)
        return false;
    size_t n = (size_t)(nl - CBS_data(in));
    if (!CBS_get_bytes(in, line, n) || !CBS_skip(in, 1))
        return false;
    if (n > 0 && CBS_data(line)[n - 1] == '\r')
        CBS_init(line, CBS_data(line), n - 1);
    return true;
}

/* msg_trim strips spaces and tabs at both ends of `s`. */
static void msg_trim(CBS *s) {
    const uint8_t *p = CBS_data(s);
    size_t n = CBS_len(s), start = 0;
    while (start < n && (p[start] == ' ' || p[start] == '\t'))
        start++;
    while (n > start && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    CBS_init(s, p + start, n - start);
}

/* msg_eq reports whether `s` equals the lowercase `lit`, ignoring case. */
static bool msg_eq(const CBS *s, const char *lit) {
    size_t n = strlen(lit);
    return CBS_len(s) == n && strncasecmp((const char *)CBS_data(s), lit, n) == 0;
}

/* msg_get_token moves everything of `in` before the first `sep` (or all of
 * it) into `tok`, trimmed, and skips the separator. */
static void msg_get_token(CBS *in, CBS *tok, uint8_t sep) {
    const uint8_t *p = memchr(CBS_data(in), sep, CBS_len(in));
    size_t n = p ? (size_t)(p - CBS_data(in)) : CBS_len(in);
    CBS_get_bytes(in, tok, n);
    CBS_skip(in, p ? 1 : 0);
    msg_trim(tok);
}

/* msg_parse_u64 parses 1..10 decimal digits. */
static bool msg_parse_u64(const CBS *s, uint64_t *out) {
    CBS c = *s;
    uint64_t v = 0;
    uint8_t d;
    if (CBS_len(&c) == 0 || CBS_len(&c) > 10)
        return false;
    while (CBS_get_u8(&c, &d)) {
        if (d < '0' || d > '9')
            return false;
        v = v * 10 + (uint64_t)(d - '0');
    }
    *out = v;
    return true;
}

/* msg_content_type sets pkcs7/certs_only from a Content-Type value. */
static void msg_content_type(bench_msg_resp_t *out, CBS value) {
    CBS media, param, name;
    msg_get_token(&value, &media, ';');
    out->pkcs7 = msg_eq(&media, "application/pkcs7-mime");
    while (CBS_len(&value) > 0) {
        msg_get_token(&value, &param, ';');
        msg_get_token(&param, &name, '=');
        msg_trim(&param);
        if (CBS_len(&param) >= 2 && CBS_data(&param)[0] == '"' &&
            CBS_data(&param)[CBS_len(&param) - 1] == '"')
            CBS_init(&param, CBS_data(&param) + 1, CBS_len(&param) - 2);
        if (msg_eq(&name, "smime-type") && msg_eq(&param, "certs-only"))
            out->certs_only = true;
    }
}

/* msg_status_line parses "HTTP/1.x SP 3DIGIT [SP reason]". */
static bool msg_status_line(bench_msg_resp_t *out, CBS line, bool *http10) {
    CBS version, code;
    uint64_t status;
    uint8_t sp;
    if (!CBS_get_bytes(&line, &version, 8) ||
        memcmp(CBS_data(&version), "HTTP/1.", 7) != 0 ||
        (CBS_data(&version)[7] != '0' && CBS_data(&version)[7] != '1') ||
        !CBS_get_u8(&line, &sp) || sp != ' ' || !CBS_get_bytes(&line, &code, 3) ||
        !msg_parse_u64(&code, &status) || status < 100 || status > 599 ||
        (CBS_len(&line) > 0 && (!CBS_get_u8(&line, &sp) || sp != ' ')))
        return false;
    *http10 = CBS_data(&version)[7] == '0';
    out->status = (int)status;
    out->reason = line;
    return true;
}

/* msg_header applies one "Name: value" line. Returns false if malformed. */
static bool msg_header(bench_msg_resp_t *out, CBS line, uint64_t *content_length,
                       bool *keep_alive) {
    CBS name, value = line;
    uint64_t v;
    if (memchr(CBS_data(&line), ':', CBS_len(&line)) == NULL) {
        out->why = "header line without ':'";
        return false;
    }
    msg_get_token(&value, &name, ':');
    msg_trim(&value);
    if (msg_eq(&name, "content-length")) {
        if (!msg_parse_u64(&value, &v) ||
            (*content_length != UINT64_MAX && *content_length != v)) {
            out->why = "bad or repeated Content-Length";
            return false;
        }
        *content_length = v;
    } else if (msg_eq(&name, "transfer-encoding")) {
        out->why = "Transfer-Encoding (chunked) is not supported";
        return false;
    } else if (msg_eq(&name, "content-type")) {
        msg_content_type(out, value);
    } else if (msg_eq(&name, "content-transfer-encoding")) {
        out->base64 = msg_eq(&value, "base64");
    } else if (msg_eq(&name, "connection")) {
        if (msg_eq(&value, "close"))
            out->close = true;
        else if (msg_eq(&value, "keep-alive"))
            *keep_alive = true;
    } else if (msg_eq(&name, "retry-after")) {
        if (msg_parse_u64(&value, &v))   /* an HTTP-date counts as absent */
            out->retry_after_s = v > UINT32_MAX - 1 ? UINT32_MAX - 1 : (uint32_t)v;
    }
    return true;
}

bench_msg_status_t bench_msg_parse_response(bench_msg_resp_t *out, const uint8_t *buf,
                                            size_t len, bool eof) {
    CBS in, line;
    uint64_t content_length = UINT64_MAX;
    bool http10 = false, keep_alive = false;

    memset(out, 0, sizeof *out);
    out->retry_after_s = UINT32_MAX;
    CBS_init(&in, buf, len);
    if (!msg_get_line(&in, &line))
        goto more;
    if (!msg_status_line(out, line, &http10)) {
        out->why = "bad status line";
        return BENCH_MSG_BAD;
    }
    if (out->status < 200) {
        out->why = "unexpected 1xx response";
        return BENCH_MSG_BAD;
    }
    for (;;) {
        if (!msg_get_line(&in, &line))
            goto more;
        if (CBS_len(&line) == 0)
            break;
        if (!msg_header(out, line, &content_length, &keep_alive))
            return BENCH_MSG_BAD;
    }
    if (http10 && !keep_alive)
        out->close = true;
    if (out->status == 204 || out->status == 304)
        content_length = 0;
    if (content_length == UINT64_MAX) {          /* body runs to EOF */
        if (!eof)
            return BENCH_MSG_MORE;
        content_length = CBS_len(&in);
        out->close = true;
    }
    if (content_length > CBS_len(&in))
        goto more;
    CBS_get_bytes(&in, &out->body, (size_t)content_length);
    out->len = len - CBS_len(&in);
    return BENCH_MSG_DONE;

more:
    if (eof) {
        out->why = "connection closed inside the response";
        return BENCH_MSG_BAD;
    }
    return BENCH_MSG_MORE;
}

/* ---- certs-only PKCS#7 ---------------------------------------------------- */

/* 1.2.840.113549.1.7.2 signedData */
static const uint8_t kOidSignedData[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};

/* msg_cert_serial sets *serial to the serialNumber contents of Certificate `cert`. */
static bool msg_cert_serial(CBS cert, CBS *serial) {
    CBS body, tbs;
    return CBS_get_asn1(&cert, &body, CBS_ASN1_SEQUENCE) && CBS_len(&cert) == 0 &&
           CBS_get_asn1(&body, &tbs, CBS_ASN1_SEQUENCE) &&
           CBS_get_optional_asn1(&tbs, NULL, NULL,
                                 CBS_ASN1_CONSTRUCTED | CBS_ASN1_CONTEXT_SPECIFIC | 0) &&
           CBS_get_asn1(&tbs, serial, CBS_ASN1_INTEGER) && CBS_len(serial) > 0;
}

bench_err_t bench_msg_pkcs7_certs(CBS der, size_t *num_certs, CBS *first_serial,
                                  const char **why) {
    CBS ci, oid, wrap, sd, version, algs, encap, certs, cert;
    int has_certs = 0;
    *num_certs = 0;
    if (!CBS_get_asn1(&der, &ci, CBS_ASN1_SEQUENCE) || CBS_len(&der) != 0 ||
        !CBS_get_asn1(&ci, &oid, CBS_ASN1_OBJECT) ||
        !CBS_mem_equal(&oid, kOidSignedData, sizeof kOidSignedData) ||
        !CBS_get_asn1(&ci, &wrap, CBS_ASN1_CONSTRUCTED | CBS_ASN1_CONTEXT_SPECIFIC | 0) ||
        CBS_len(&ci) != 0 ||
        !CBS_get_asn1(&wrap, &sd, CBS_ASN1_SEQUENCE) || CBS_len(&wrap) != 0) {
        *why = "body is not a DER ContentInfo of type signedData";
        return BENCH_E_CONTENT;
    }
    if (!CBS_get_asn1(&sd, &version, CBS_ASN1_INTEGER) ||
        !CBS_get_asn1(&sd, &algs, CBS_ASN1_SET) ||
        !CBS_get_asn1(&sd, &encap, CBS_ASN1_SEQUENCE) ||
        !CBS_get_optional_asn1(&sd, &certs, &has_certs,
                               CBS_ASN1_CONSTRUCTED | CBS_ASN1_CONTEXT_SPECIFIC | 0)) {
        *why = "malformed SignedData";
        return BENCH_E_CONTENT;
    }
    if (!has_certs)
        return BENCH_OK;
    while (CBS_len(&certs) > 0) {
        if (!CBS_get_asn1_element(&certs, &cert, CBS_ASN1_SEQUENCE)) {
            *why = "malformed certificates SET";
            return BENCH_E_CONTENT;
        }
        if (*num_certs == 0 && !msg_cert_serial(cert, first_serial)) {
            *why = "certificate without a serialNumber";
            return BENCH_E_CONTENT;
        }
        (*num_certs)++;
    }
    return BENCH_OK;
}

bench_err_t bench_msg_certs_body(const bench_msg_resp_t *resp, bool want_certs_only,
                                 uint8_t *scratch, size_t cap, size_t *num_certs,
                                 CBS *first_serial, const char **why) {
    size_t len;
    CBS der;
    *num_certs = 0;
    if (!resp->pkcs7 || (want_certs_only && !resp->certs_only)) {
        *why = want_certs_only ? "Content-Type is not application/pkcs7-mime; smime-type=certs-only"
                               : "Content-Type is not application/pkcs7-mime";
        return BENCH_E_CONTENT;
    }
    if (!resp->base64) {
        *why = "no Content-Transfer-Encoding: base64";
        return BENCH_E_CONTENT;
    }
    cx_err_t e = cx_b64_decode(scratch, &len, cap, CBS_data(&resp->body), CBS_len(&resp->body));
    if (e != CX_OK) {
        *why = cx_err_str(e);
        return BENCH_E_CONTENT;
    }
    CBS_init(&der, scratch, len);
    return bench_msg_pkcs7_certs(der, num_certs, first_serial, why);
}
