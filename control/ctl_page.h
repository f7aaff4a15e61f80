/* ctl_page: classification of the answers of the ADCS web-enrollment pages
 * (certsrv-protocol.md §3): the certfnsh.asp result page (issued / pending /
 * denied / error, with the request id, disposition message and HRESULT), the
 * body of certnew.cer / certnew.p7b (certificate, PKCS#7, or an error page in
 * the certrser layout), and certcarc.asp's current renewal index.
 *
 * Why its own cursor: stampede-control links libcurl, which brings OpenSSL,
 * and BoringSSL cannot share a process with it (same symbol names), so the
 * CBS type is not available here. ctl_cur_t follows CBS's discipline: a view
 * (data, len) that every read checks and shrinks; nothing here indexes a
 * buffer by hand. The pages are untrusted bytes from the network.
 *
 * Markers are the language-neutral element IDs of §3.2 first, English text
 * second. Numbers are unsigned 32-bit, at most 10 digits.
 * Thread: pure functions; any thread. Nothing allocates. */
#ifndef CTL_PAGE_H
#define CTL_PAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ctl_cur_t: a bounds-checked read cursor over borrowed bytes. */
typedef struct {
    const uint8_t *data;
    size_t len;
} ctl_cur_t;

void ctl_cur_init(ctl_cur_t *c, const void *data, size_t len);
/* ctl_cur_skip advances `n` bytes; false (cursor unchanged) if fewer remain. */
bool ctl_cur_skip(ctl_cur_t *c, size_t n);
/* ctl_cur_find: position `c` at the first occurrence of `needle` (case-
 * sensitive; `icase` true: ASCII case-insensitive). false (unchanged) if absent. */
bool ctl_cur_find(ctl_cur_t *c, const char *needle, bool icase);
/* ctl_cur_starts: true if the remaining bytes start with `s` (no advance). */
bool ctl_cur_starts(const ctl_cur_t *c, const char *s, bool icase);
/* ctl_cur_get_u32: reads 1..10 decimal digits (value <= UINT32_MAX) and
 * advances past them; false (unchanged) if there is no such number. */
bool ctl_cur_get_u32(ctl_cur_t *c, uint32_t *out);

typedef enum {
    CTL_PAGE_UNKNOWN = 0, /* none of the markers: `text` holds the page's start */
    CTL_PAGE_ISSUED,      /* `req_id` set */
    CTL_PAGE_PENDING,     /* `req_id` set (manager approval; disposition 5 on certnew pages) */
    CTL_PAGE_DENIED,      /* `req_id` if shown, `message`, `hresult` if found */
    CTL_PAGE_ERROR,       /* `message` (disposition message / result text), `hresult` */
    CTL_PAGE__COUNT
} ctl_page_kind_t;

#define CTL_PAGE_TEXT_MAX 512

/* ctl_page_t: what a page said. Strings are NUL-terminated plain text
 * (entities decoded, tags stripped, whitespace collapsed, non-printable
 * bytes replaced by '?'), truncated to fit. */
typedef struct {
    ctl_page_kind_t kind;
    bool has_req_id;
    uint32_t req_id;
    bool has_hresult;
    uint32_t hresult;          /* e.g. 0x80094800 */
    bool has_disposition;
    uint32_t disposition;      /* certrser layout: 1 error, 2 denied, 3 issued, 5 pending ... */
    bool unknown_id;           /* certnew: "requested property value is empty" / 0x80094004 */
    bool ca_unreachable;       /* 0x800706BA, or "Certification Authority Service has not been started" */
    char message[CTL_PAGE_TEXT_MAX];  /* disposition message (DENIED/ERROR) */
    char text[CTL_PAGE_TEXT_MAX];     /* UNKNOWN: start of the page as text; else the result text */
} ctl_page_t;

/* ctl_page_result classifies a certfnsh.asp answer body (§3.2 order: ISSUED,
 * DENIED, PENDING, ERROR, then the "disposition message is" fallback, which
 * is DENIED, then UNKNOWN). Never fails: anything unrecognised is UNKNOWN. */
void ctl_page_result(const uint8_t *body, size_t len, ctl_page_t *out);

typedef enum {
    CTL_BODY_UNKNOWN = 0, /* neither HTML nor a complete DER object: log `page.text` */
    CTL_BODY_HTML,        /* an error page (certrser layout): see `page` */
    CTL_BODY_DER,         /* `der`/`der_len`: one complete DER SEQUENCE, no trailing bytes */
    CTL_BODY__COUNT
} ctl_body_kind_t;

/* ctl_body_t: a certnew.cer / certnew.p7b answer. `der` points into the
 * caller's body (DER) or into `pem_buf` (decoded PEM). */
typedef struct {
    ctl_body_kind_t kind;
    const uint8_t *der;
    size_t der_len;
    ctl_page_t page;           /* CTL_BODY_HTML: kind PENDING (disposition 5 / Taken Under
                                  Submission), DENIED (disposition 2 / Denied by), ERROR
                                  (unknown_id, ca_unreachable, others) */
} ctl_body_t;

/* ctl_page_body classifies a certnew.* body by content (§3.5): '<' first ->
 * HTML error page; "-----BEGIN " -> PEM (label ignored), base64 decoded into
 * `pem_buf` (`pem_cap` bytes); else DER. Only the outer DER framing is
 * checked here (one SEQUENCE, definite length, exactly the whole body); the
 * caller parses the certificate or PKCS#7 with its X.509 library. */
void ctl_page_body(const uint8_t *body, size_t len, uint8_t *pem_buf, size_t pem_cap,
                   ctl_body_t *out);

/* ctl_page_renewals reads certcarc.asp's `var nRenewals=<k>;` (the index of
 * the current CA certificate). Returns true with *out set; false if the page
 * has no such declaration (then `page` says why: CA unreachable, error). */
bool ctl_page_renewals(const uint8_t *body, size_t len, uint32_t *out, ctl_page_t *page);

const char *ctl_page_kind_str(ctl_page_kind_t k);

#endif
