/* est_http: the HTTP/1.1 request parser and response writer of the EST
 * engine. Requests are untrusted bytes and are parsed with CBS cursors only.
 * The parser is incremental in the simplest way: it is called on everything
 * buffered so far and answers "partial" until the header block is complete.
 * It never allocates; results are views into the caller's buffer.
 * Thread: any (polling cores). */
#ifndef EST_HTTP_H
#define EST_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>

typedef enum {
    EST_HTTP_OK = 0,        /* header block complete; req filled */
    EST_HTTP_PARTIAL,       /* need more bytes */
    EST_HTTP_E_SYNTAX,      /* malformed request line or header (400) */
    EST_HTTP_E_HEADER_SIZE, /* header block over the limit (431) */
    EST_HTTP_E_VERSION,     /* not HTTP/1.0 or HTTP/1.1 (505) */
    EST_HTTP_E_LENGTH,      /* bad or conflicting Content-Length (400) */
    EST_HTTP__COUNT
} est_http_err_t;

const char *est_http_err_str(est_http_err_t e);

typedef enum { EST_M_OTHER = 0, EST_M_GET, EST_M_HEAD, EST_M_POST } est_method_t;

/* est_http_req_t: one parsed request header. All CBS point into the buffer
 * passed to est_http_parse. */
typedef struct {
    est_method_t method;
    CBS method_text;
    CBS path;               /* request-target without the query string */
    CBS content_type;       /* value, trimmed; len 0 if absent */
    CBS transfer_encoding_cte; /* Content-Transfer-Encoding value */
    CBS authorization;      /* Authorization value */
    int64_t content_length; /* -1 if absent */
    bool chunked;           /* Transfer-Encoding present (we require a length) */
    bool keep_alive;        /* connection persists after the response */
    bool expect_continue;   /* Expect: 100-continue */
    size_t header_len;      /* bytes of request line + headers + CRLFCRLF */
} est_http_req_t;

/* est_http_parse parses the header block at the start of `buf`.
 * `max_header` bounds the header block. Returns EST_HTTP_OK (req filled,
 * body starts at buf + req->header_len), EST_HTTP_PARTIAL, or an error. */
est_http_err_t est_http_parse(est_http_req_t *req, const uint8_t *buf, size_t len,
                              size_t max_header);

/* est_http_ieq says whether `v` equals the NUL-terminated `s`, ignoring ASCII case. */
bool est_http_ieq(const CBS *v, const char *s);

/* est_http_media_is says whether a Content-Type value names media type `type`
 * (case-insensitive, parameters after ';' ignored). */
bool est_http_media_is(const CBS *v, const char *type);

/* est_http_basic decodes an "Authorization: Basic ..." value into user and
 * password (copied into `buf`, cap `cap`). Returns false if it is not Basic
 * or not valid base64 "user:pass". */
bool est_http_basic(const CBS *auth, uint8_t *buf, size_t cap, CBS *user, CBS *pass);

/* est_http_response writes a full response (status line, Date-less fixed
 * headers, Content-Length, optional extra header lines, body) into `out`.
 * `extra` is NULL or CRLF-terminated header lines. Returns the length, or 0
 * if `cap` is too small. */
size_t est_http_response(uint8_t *out, size_t cap, int status, const char *content_type,
                         const char *extra, bool keep_alive, const uint8_t *body, size_t body_len);

/* est_http_reason returns the standard reason phrase for `status`. */
const char *est_http_reason(int status);

#endif
