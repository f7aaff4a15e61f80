/* est_http: CBS-based HTTP/1.1 request-header parser and response writer
 * (see est_http.h). Strict on what matters for safety (CRLF line ends, one
 * Content-Length, token characters in names, sizes), tolerant of header order
 * and case. Thread: polling cores; pure functions. */
#include "dataplane/est_http.h"

#include <openssl/base64.h>
#include <stdio.h>
#include <string.h>

static const char *const est_http_err_text[EST_HTTP__COUNT] = {
    [EST_HTTP_OK] = "ok",
    [EST_HTTP_PARTIAL] = "incomplete request",
    [EST_HTTP_E_SYNTAX] = "malformed HTTP request",
    [EST_HTTP_E_HEADER_SIZE] = "request header too large",
    [EST_HTTP_E_VERSION] = "HTTP version not supported",
    [EST_HTTP_E_LENGTH] = "invalid Content-Length",
};

const char *est_http_err_str(est_http_err_t e) {
    return (unsigned)e < EST_HTTP__COUNT ? est_http_err_text[e] : "unknown";
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

bool est_http_ieq(const CBS *v, const char *s) {
    size_t n = strlen(s);
    if (CBS_len(v) != n) return false;
    const uint8_t *d = CBS_data(v);
    for (size_t i = 0; i < n; i++)
        if (lower(d[i]) != lower((unsigned char)s[i])) return false;
    return true;
}

/* cbs_find returns the offset of the first `c` in `v`, or -1 (safe on an
 * empty CBS, whose data pointer may be NULL). */
static long cbs_find(const CBS *v, uint8_t c) {
    if (CBS_len(v) == 0) return -1;
    const uint8_t *p = memchr(CBS_data(v), c, CBS_len(v));
    return p ? (long)(p - CBS_data(v)) : -1;
}

static void cbs_trim(CBS *v) {
    while (CBS_len(v) && (CBS_data(v)[0] == ' ' || CBS_data(v)[0] == '\t')) CBS_skip(v, 1);
    while (CBS_len(v) && (CBS_data(v)[CBS_len(v) - 1] == ' ' || CBS_data(v)[CBS_len(v) - 1] == '\t'))
        CBS_init(v, CBS_data(v), CBS_len(v) - 1);
}

bool est_http_media_is(const CBS *v, const char *type) {
    CBS t = *v;
    long semi = cbs_find(&t, ';');
    if (semi >= 0) CBS_init(&t, CBS_data(&t), (size_t)semi);
    cbs_trim(&t);
    return est_http_ieq(&t, type);
}

/* get_line splits the next CRLF-terminated line off `in`. */
static bool get_line(CBS *in, CBS *line) {
    const uint8_t *d = CBS_data(in);
    size_t n = CBS_len(in);
    for (size_t i = 0; i + 1 < n; i++) {
        if (d[i] == '\r') {
            if (d[i + 1] != '\n') return false;
            return CBS_get_bytes(in, line, i) && CBS_skip(in, 2);
        }
        if (d[i] == '\n') return false; /* bare LF */
    }
    return false;
}

/* get_until splits `in` at the first `sep` (consumed). */
static bool get_until(CBS *in, CBS *out, uint8_t sep) {
    long at = cbs_find(in, sep);
    return at >= 0 && CBS_get_bytes(in, out, (size_t)at) && CBS_skip(in, 1);
}

static bool is_tchar(uint8_t c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool all_tchars(const CBS *v) {
    if (CBS_len(v) == 0) return false;
    for (size_t i = 0; i < CBS_len(v); i++)
        if (!is_tchar(CBS_data(v)[i])) return false;
    return true;
}

static bool value_ok(const CBS *v) {
    for (size_t i = 0; i < CBS_len(v); i++) {
        uint8_t c = CBS_data(v)[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    }
    return true;
}

static est_http_err_t parse_request_line(est_http_req_t *req, CBS *line, bool *http11) {
    CBS method, target, version;
    if (!get_until(line, &method, ' ') || !get_until(line, &target, ' ')) return EST_HTTP_E_SYNTAX;
    version = *line;
    if (!all_tchars(&method) || CBS_len(&target) == 0 || CBS_data(&target)[0] != '/')
        return EST_HTTP_E_SYNTAX;
    for (size_t i = 0; i < CBS_len(&target); i++)
        if (CBS_data(&target)[i] <= ' ' || CBS_data(&target)[i] == 0x7f) return EST_HTTP_E_SYNTAX;
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT; a well-formed other version
     * is 505, anything else (e.g. a third space-separated word) is 400. */
    const uint8_t *v = CBS_data(&version);
    if (CBS_len(&version) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return EST_HTTP_E_SYNTAX;
    uint8_t minor = v[7];
    if (v[5] != '1' || (minor != '0' && minor != '1')) return EST_HTTP_E_VERSION;
    *http11 = minor == '1';
    req->method_text = method;
    req->method = est_http_ieq(&method, "GET") ? EST_M_GET
                  : est_http_ieq(&method, "POST") ? EST_M_POST
                  : est_http_ieq(&method, "HEAD") ? EST_M_HEAD : EST_M_OTHER;
    /* Methods are case-sensitive (RFC 9110 §9.1). */
    if (req->method != EST_M_OTHER && CBS_data(&method)[0] >= 'a') req->method = EST_M_OTHER;
    long q = cbs_find(&target, '?');
    if (q >= 0) CBS_init(&target, CBS_data(&target), (size_t)q);
    req->path = target;
    return EST_HTTP_OK;
}

static est_http_err_t parse_length(est_http_req_t *req, const CBS *v) {
    if (req->content_length >= 0 || CBS_len(v) == 0 || CBS_len(v) > 12) return EST_HTTP_E_LENGTH;
    int64_t n = 0;
    for (size_t i = 0; i < CBS_len(v); i++) {
        uint8_t c = CBS_data(v)[i];
        if (c < '0' || c > '9') return EST_HTTP_E_LENGTH;
        n = n * 10 + (c - '0');
    }
    req->content_length = n;
    return EST_HTTP_OK;
}

static est_http_err_t parse_header(est_http_req_t *req, CBS *line, bool *conn_close,
                                   bool *conn_keep) {
    CBS name, value;
    if (!get_until(line, &name, ':') || !all_tchars(&name)) return EST_HTTP_E_SYNTAX;
    value = *line;
    cbs_trim(&value);
    if (!value_ok(&value)) return EST_HTTP_E_SYNTAX;
    if (est_http_ieq(&name, "content-length")) return parse_length(req, &value);
    if (est_http_ieq(&name, "content-type")) req->content_type = value;
    else if (est_http_ieq(&name, "content-transfer-encoding")) req->transfer_encoding_cte = value;
    else if (est_http_ieq(&name, "authorization")) req->authorization = value;
    else if (est_http_ieq(&name, "transfer-encoding")) req->chunked = true;
    else if (est_http_ieq(&name, "expect")) req->expect_continue = est_http_ieq(&value, "100-continue");
    else if (est_http_ieq(&name, "connection")) {
        if (est_http_ieq(&value, "close")) *conn_close = true;
        else if (est_http_ieq(&value, "keep-alive")) *conn_keep = true;
    }
    return EST_HTTP_OK;
}

est_http_err_t est_http_parse(est_http_req_t *req, const uint8_t *buf, size_t len,
                              size_t max_header) {
    memset(req, 0, sizeof(*req));
    req->content_length = -1;
    size_t scan = len < max_header ? len : max_header;
    const uint8_t *end = memmem(buf, scan, "\r\n\r\n", 4);
    if (!end) return len >= max_header ? EST_HTTP_E_HEADER_SIZE : EST_HTTP_PARTIAL;
    req->header_len = (size_t)(end - buf) + 4;
    CBS in, line;
    CBS_init(&in, buf, req->header_len - 2); /* keep the last header's CRLF */
    bool http11 = false, conn_close = false, conn_keep = false;
    if (!get_line(&in, &line)) return EST_HTTP_E_SYNTAX;
    est_http_err_t e = parse_request_line(req, &line, &http11);
    if (e) return e;
    while (CBS_len(&in)) {
        if (!get_line(&in, &line)) return EST_HTTP_E_SYNTAX;
        if ((e = parse_header(req, &line, &conn_close, &conn_keep))) return e;
    }
    req->keep_alive = http11 ? !conn_close : conn_keep;
    return EST_HTTP_OK;
}

bool est_http_basic(const CBS *auth, uint8_t *buf, size_t cap, CBS *user, CBS *pass) {
    CBS v = *auth, scheme, cred;
    if (!get_until(&v, &scheme, ' ') || !est_http_ieq(&scheme, "basic")) return false;
    cbs_trim(&v);
    size_t out_len;
    if (CBS_len(&v) == 0 || !EVP_DecodedLength(&out_len, CBS_len(&v)) || out_len > cap ||
        !EVP_DecodeBase64(buf, &out_len, cap, CBS_data(&v), CBS_len(&v)))
        return false;
    CBS_init(&cred, buf, out_len);
    if (!get_until(&cred, user, ':') || CBS_len(user) == 0) return false;
    *pass = cred;
    return true;
}

const char *est_http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

size_t est_http_response(uint8_t *out, size_t cap, int status, const char *content_type,
                         const char *extra, bool keep_alive, const uint8_t *body, size_t body_len) {
    int n = snprintf((char *)out, cap,
                     "HTTP/1.1 %d %s\r\nServer: stampede\r\n%s%s%s%sContent-Length: %zu\r\n%s\r\n",
                     status, est_http_reason(status), content_type ? "Content-Type: " : "",
                     content_type ? content_type : "", content_type ? "\r\n" : "",
                     extra ? extra : "", body_len, keep_alive ? "" : "Connection: close\r\n");
    if (n < 0 || (size_t)n + body_len > cap) return 0;
    if (body_len) memcpy(out + n, body, body_len);
    return (size_t)n + body_len;
}
