/* ctl_page: the parsers of the ADCS web-enrollment answers
 * (certsrv-protocol.md §3, §4): the certfnsh.asp result page, the body of
 * certnew.cer / certnew.p7b, and certcarc.asp's renewal index.
 *
 * Layers, bottom up:
 *   cursor   ctl_cur_t and its helpers: the only code here that moves or
 *            dereferences a pointer into the page (bounds-checked);
 *   html     bounded forward scans over cursors: element IDs as whole
 *            tokens, the content of an element up to the next block tag, the
 *            <DD> after a label, and ctl_text, the one function that copies
 *            page bytes out (as plain text, into the caller's fixed buffer);
 *   pages    the classifiers of §3.2 (result), §3.4/§3.5 (error page, body)
 *            and §4 (certcarc).
 * Every loop consumes at least one byte of its cursor per turn, so every
 * scan ends; the cost is a small constant number of passes over the page.
 * Nothing allocates, nothing is global. Thread: pure functions; any thread. */
#include "control/ctl_page.h"

#include <string.h>

/* ------------------------------------------------------------------ cursor */

void ctl_cur_init(ctl_cur_t *c, const void *data, size_t len) {
    c->data = data;
    c->len = data != NULL ? len : 0;
}

bool ctl_cur_skip(ctl_cur_t *c, size_t n) {
    if (n > c->len)
        return false;
    if (n > 0) {            /* never offset a NULL pointer, even by 0 */
        c->data += n;
        c->len -= n;
    }
    return true;
}

static uint8_t ctl_lower(uint8_t b) {
    return b >= 'A' && b <= 'Z' ? (uint8_t)(b + ('a' - 'A')) : b;
}

bool ctl_cur_starts(const ctl_cur_t *c, const char *s, bool icase) {
    size_t n = strlen(s);
    if (n > c->len)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t a = c->data[i], b = (uint8_t)s[i];
        if (a != b && (!icase || ctl_lower(a) != ctl_lower(b)))
            return false;
    }
    return true;
}

bool ctl_cur_find(ctl_cur_t *c, const char *needle, bool icase) {
    ctl_cur_t t = *c;
    size_t n = strlen(needle);
    while (t.len >= n) {
        if (!icase && n > 0) {       /* fast path: jump to the first byte */
            const uint8_t *p = memchr(t.data, (uint8_t)needle[0], t.len - n + 1);
            if (p == NULL)
                return false;
            (void)ctl_cur_skip(&t, (size_t)(p - t.data));
        }
        if (ctl_cur_starts(&t, needle, icase)) {
            *c = t;
            return true;
        }
        (void)ctl_cur_skip(&t, 1);
    }
    return false;
}

bool ctl_cur_get_u32(ctl_cur_t *c, uint32_t *out) {
    uint64_t v = 0;
    size_t k = 0;
    while (k < c->len && c->data[k] >= '0' && c->data[k] <= '9') {
        if (k == 10)
            return false;            /* an 11th digit: not a 32-bit number */
        v = v * 10 + (uint64_t)(c->data[k] - '0');
        k++;
    }
    if (k == 0 || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return ctl_cur_skip(c, k);
}

static bool ctl_cur_get_u8(ctl_cur_t *c, uint8_t *b) {
    if (c->len == 0)
        return false;
    *b = c->data[0];
    return ctl_cur_skip(c, 1);
}

static bool ctl_cur_peek(const ctl_cur_t *c, uint8_t *b) {
    if (c->len == 0)
        return false;
    *b = c->data[0];
    return true;
}

/* ctl_cur_find_byte positions `c` at the first `b`; false (unchanged) if none. */
static bool ctl_cur_find_byte(ctl_cur_t *c, uint8_t b) {
    const uint8_t *p = c->len > 0 ? memchr(c->data, b, c->len) : NULL;
    if (p == NULL)
        return false;
    return ctl_cur_skip(c, (size_t)(p - c->data));
}

/* ctl_cur_end moves `c` to its end (an empty view). */
static void ctl_cur_end(ctl_cur_t *c) {
    (void)ctl_cur_skip(c, c->len);
}

/* ctl_cur_upto: the bytes from `from` up to `to`, where `to` is `from`
 * advanced (as every cursor derived by the scans below is). */
static ctl_cur_t ctl_cur_upto(ctl_cur_t from, const ctl_cur_t *to) {
    from.len = to->len <= from.len ? from.len - to->len : 0;
    return from;
}

/* ----------------------------------------------------------------- html */

static bool ctl_is_space(uint32_t b) {
    return b == ' ' || (b >= '\t' && b <= '\r');   /* [[:space:]]: \t \n \v \f \r */
}

static bool ctl_is_digit(uint8_t b) {
    return b >= '0' && b <= '9';
}

static bool ctl_is_alpha(uint8_t b) {
    return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z');
}

static int ctl_hex_val(uint8_t b) {
    if (ctl_is_digit(b))
        return b - '0';
    b = ctl_lower(b);
    return b >= 'a' && b <= 'f' ? b - 'a' + 10 : -1;
}

static void ctl_skip_space(ctl_cur_t *c) {
    uint8_t b;
    while (ctl_cur_peek(c, &b) && ctl_is_space(b))
        (void)ctl_cur_skip(c, 1);
}

/* ctl_get_hex reads a run of 1..`max` hex digits; false (unchanged) if the
 * run is empty or longer. */
static bool ctl_get_hex(ctl_cur_t *c, size_t max, uint32_t *out) {
    ctl_cur_t t = *c;
    uint32_t v = 0;
    size_t k = 0;
    uint8_t b;
    while (ctl_cur_peek(&t, &b) && ctl_hex_val(b) >= 0) {
        if (k == max)
            return false;
        v = v << 4 | (uint32_t)ctl_hex_val(b);
        k++;
        (void)ctl_cur_skip(&t, 1);
    }
    if (k == 0)
        return false;
    *out = v;
    *c = t;
    return true;
}

/* ctl_next_hresult finds the next `0x` + 1..8 hex digits (ASCII case-
 * insensitive) and leaves `c` past it; false if there is none. */
static bool ctl_next_hresult(ctl_cur_t *c, uint32_t *out) {
    while (ctl_cur_find(c, "0x", true)) {
        (void)ctl_cur_skip(c, 2);
        if (ctl_get_hex(c, 8, out))
            return true;
    }
    return false;
}

/* ctl_has_code: the page shows `code` as `0x...` anywhere. */
static bool ctl_has_code(ctl_cur_t c, uint32_t code) {
    uint32_t v;
    while (ctl_next_hresult(&c, &v))
        if (v == code)
            return true;
    return false;
}

static bool ctl_has_phrase(ctl_cur_t c, const char *s, bool icase) {
    return ctl_cur_find(&c, s, icase);
}

/* ctl_tag_named: `c` is at a tag's name; true if the name is `name` (ASCII
 * case-insensitive) and ends there. */
static bool ctl_tag_named(const ctl_cur_t *c, const char *name) {
    ctl_cur_t t = *c;
    uint8_t b;
    if (!ctl_cur_starts(&t, name, true))
        return false;
    (void)ctl_cur_skip(&t, strlen(name));
    return !ctl_cur_peek(&t, &b) || ctl_is_space(b) || b == '>' || b == '/';
}

/* Tags that open or close a block: they end an element's text. */
static const char *const ctl_block_tags[] = {
    "p",  "dt", "dd", "dl",    "div",   "table", "tr",     "td", "th", "form", "body",
    "head", "html", "title", "script", "style", "ul", "ol", "li",  "hr", "h1", "h2",
    "h3", "h4", "h5", "h6", "pre", "center", "blockquote", NULL};

/* ctl_at_block: `c` starts with an opening or closing block tag. */
static bool ctl_at_block(const ctl_cur_t *c) {
    ctl_cur_t t = *c;
    uint8_t b;
    if (!ctl_cur_get_u8(&t, &b) || b != '<')
        return false;
    if (ctl_cur_peek(&t, &b) && b == '/')
        (void)ctl_cur_skip(&t, 1);
    for (size_t i = 0; ctl_block_tags[i] != NULL; i++)
        if (ctl_tag_named(&t, ctl_block_tags[i]))
            return true;
    return false;
}

/* ctl_after_tag: `c` is inside a tag; the bytes after its '>' (empty if the
 * tag never ends). */
static ctl_cur_t ctl_after_tag(ctl_cur_t c) {
    if (ctl_cur_find_byte(&c, '>'))
        (void)ctl_cur_skip(&c, 1);
    else
        ctl_cur_end(&c);
    return c;
}

/* ctl_until_block: the bytes of `c` before the next block tag (all of `c`
 * if there is none). */
static ctl_cur_t ctl_until_block(ctl_cur_t c) {
    ctl_cur_t start = c;
    for (;;) {
        if (!ctl_cur_find_byte(&c, '<')) {
            ctl_cur_end(&c);
            break;
        }
        if (ctl_at_block(&c))
            break;
        (void)ctl_cur_skip(&c, 1);
    }
    return ctl_cur_upto(start, &c);
}

/* ctl_id_attr: `c` follows a whitespace byte; true if it holds the attribute
 * ID=`name` (any case, spaces around '=', value optionally quoted) with the
 * value ending right after `name`: closing quote, or '>', '/', whitespace or
 * the end. `at` is then just past the value. */
static bool ctl_id_attr(const ctl_cur_t *c, const char *name, ctl_cur_t *at) {
    ctl_cur_t t = *c;
    uint8_t b, q = 0;
    if (!ctl_cur_starts(&t, "id", true))
        return false;
    (void)ctl_cur_skip(&t, 2);
    ctl_skip_space(&t);
    if (!ctl_cur_get_u8(&t, &b) || b != '=')
        return false;
    ctl_skip_space(&t);
    if (ctl_cur_peek(&t, &b) && (b == '"' || b == '\'')) {
        q = b;
        (void)ctl_cur_skip(&t, 1);
    }
    if (!ctl_cur_starts(&t, name, true))
        return false;
    (void)ctl_cur_skip(&t, strlen(name));
    if (q != 0) {
        if (!ctl_cur_get_u8(&t, &b) || b != q)
            return false;
    } else if (ctl_cur_peek(&t, &b) && !ctl_is_space(b) && b != '>' && b != '/') {
        return false;                /* locInfoReqID inside locInfoReqIDandReason */
    }
    *at = t;
    return true;
}

/* ctl_find_id finds the first element with ID=`name` as a whole token; `at`
 * is inside its start tag, just past the attribute. */
static bool ctl_find_id(const ctl_cur_t *page, const char *name, ctl_cur_t *at) {
    ctl_cur_t c = *page;
    uint8_t b;
    while (ctl_cur_get_u8(&c, &b))
        if (ctl_is_space(b) && ctl_id_attr(&c, name, at))
            return true;
    return false;
}

/* ctl_marker finds the first of `ids` (element IDs), else the first of
 * `phrases` (English, case-sensitive). `at` is where the marker's text
 * starts: after the element's start tag, or at the phrase. */
static bool ctl_marker(const ctl_cur_t *page, const char *const *ids, const char *const *phrases,
                       ctl_cur_t *at) {
    for (size_t i = 0; ids[i] != NULL; i++) {
        if (ctl_find_id(page, ids[i], at)) {
            *at = ctl_after_tag(*at);
            return true;
        }
    }
    for (size_t i = 0; phrases[i] != NULL; i++) {
        *at = *page;
        if (ctl_cur_find(at, phrases[i], false))
            return true;
    }
    return false;
}

/* ctl_tag_start: `c` is just past a '<'; true if a tag, a closing tag, a
 * comment or a declaration starts there (else the '<' is text). */
static bool ctl_tag_start(const ctl_cur_t *c) {
    uint8_t b;
    return ctl_cur_peek(c, &b) && (ctl_is_alpha(b) || b == '/' || b == '!' || b == '?');
}

/* ctl_skip_tag: `c` is just past a '<' that starts a tag; skips the tag, a
 * whole comment, or a whole script/style element. */
static void ctl_skip_tag(ctl_cur_t *c) {
    const char *raw_end = NULL;
    if (ctl_cur_starts(c, "!--", false)) {
        (void)ctl_cur_skip(c, 3);
        if (ctl_cur_find(c, "-->", false))
            (void)ctl_cur_skip(c, 3);
        else
            ctl_cur_end(c);
        return;
    }
    if (ctl_tag_named(c, "script"))
        raw_end = "</script";
    else if (ctl_tag_named(c, "style"))
        raw_end = "</style";
    *c = ctl_after_tag(*c);
    if (raw_end == NULL)
        return;
    if (ctl_cur_find(c, raw_end, true))
        *c = ctl_after_tag(*c);
    else
        ctl_cur_end(c);
}

/* ctl_entity: `c` is just past a '&'. If an entity of §3.2 follows (&amp;
 * &lt; &gt; &quot; &apos; &nbsp; &#NN; &#xHH;), consumes it and returns its
 * code point (0x110000 if out of range); else returns -1, consuming nothing. */
static int32_t ctl_entity(ctl_cur_t *c) {
    static const struct {
        const char *name;
        char ch;
    } named[] = {{"amp;", '&'},   {"lt;", '<'},    {"gt;", '>'},
                 {"quot;", '"'},  {"apos;", '\''}, {"nbsp;", ' '}};
    ctl_cur_t t = *c;
    uint32_t v;
    uint8_t b;
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        if (ctl_cur_starts(c, named[i].name, false)) {
            (void)ctl_cur_skip(c, strlen(named[i].name));
            return named[i].ch;
        }
    }
    if (!ctl_cur_get_u8(&t, &b) || b != '#')
        return -1;
    if (ctl_cur_peek(&t, &b) && (b == 'x' || b == 'X')) {
        (void)ctl_cur_skip(&t, 1);
        if (!ctl_get_hex(&t, 8, &v))
            return -1;
    } else if (!ctl_cur_peek(&t, &b) || !ctl_is_digit(b) || !ctl_cur_get_u32(&t, &v)) {
        return -1;
    }
    if (!ctl_cur_get_u8(&t, &b) || b != ';')
        return -1;
    *c = t;
    return v > 0x10FFFF ? 0x110000 : (int32_t)v;
}

/* ctl_text writes the text of `src` into `out` (`cap` bytes, NUL-terminated):
 * entities decoded, tags, comments and scripts dropped (a tag separates
 * words), whitespace collapsed and trimmed, anything else outside printable
 * ASCII replaced by '?' (one '?' per UTF-8 sequence); truncated to fit. */
static void ctl_text(ctl_cur_t src, char *out, size_t cap) {
    bool gap = false, in_utf8 = false;
    size_t n = 0;
    uint8_t b;
    if (cap == 0)
        return;
    while (n + 1 < cap && ctl_cur_get_u8(&src, &b)) {
        int32_t ch = b;
        if (b == '<' && ctl_tag_start(&src)) {
            ctl_skip_tag(&src);
            gap = true;
            in_utf8 = false;
            continue;
        }
        if (b >= 0x80) {
            if (in_utf8 && b < 0xC0)
                continue;            /* continuation byte: one '?' per sequence */
            in_utf8 = true;
        } else {
            in_utf8 = false;
        }
        if (b == '&') {
            int32_t e = ctl_entity(&src);
            if (e >= 0)
                ch = e;
        }
        if (ctl_is_space((uint32_t)ch)) {
            gap = true;
            continue;
        }
        if (ch < 0x20 || ch >= 0x7f)
            ch = '?';
        if (gap && n > 0) {
            if (n + 2 >= cap)
                break;               /* no room for the space and a character */
            out[n++] = ' ';
        }
        gap = false;
        out[n++] = (char)ch;
    }
    out[n] = '\0';
}

/* ctl_skip_gap skips what may separate a label from its number: whitespace,
 * &nbsp; and tags. */
static void ctl_skip_gap(ctl_cur_t *c) {
    uint8_t b;
    while (ctl_cur_peek(c, &b)) {
        if (ctl_is_space(b)) {
            (void)ctl_cur_skip(c, 1);
        } else if (ctl_cur_starts(c, "&nbsp;", false)) {
            (void)ctl_cur_skip(c, 6);
        } else if (b == '<') {
            *c = ctl_after_tag(*c);
        } else {
            return;
        }
    }
}

/* ctl_first_u32: the first integer in the text of `c` (tags and entities
 * skipped); false if the first digit run is no 32-bit number or there is none. */
static bool ctl_first_u32(ctl_cur_t c, uint32_t *out) {
    uint8_t b;
    while (ctl_cur_peek(&c, &b)) {
        if (ctl_is_digit(b))
            return ctl_cur_get_u32(&c, out);
        (void)ctl_cur_skip(&c, 1);
        if (b == '<' && ctl_tag_start(&c))
            ctl_skip_tag(&c);
        else if (b == '&')
            (void)ctl_entity(&c);
    }
    return false;
}

/* ctl_label_dd: the content of the <DD> after the label with ID `id` (or,
 * failing the ID, after the English label text), if no other <DT> and no
 * </DL> comes first. */
static bool ctl_label_dd(const ctl_cur_t *page, const char *id, const char *english,
                         ctl_cur_t *dd) {
    ctl_cur_t c;
    uint8_t b;
    if (!ctl_find_id(page, id, &c)) {
        c = *page;
        if (!ctl_cur_find(&c, english, false))
            return false;
        (void)ctl_cur_skip(&c, strlen(english));
    }
    while (ctl_cur_find_byte(&c, '<')) {
        (void)ctl_cur_skip(&c, 1);
        if (ctl_tag_named(&c, "dd")) {
            *dd = ctl_until_block(ctl_after_tag(c));
            return true;
        }
        if (ctl_tag_named(&c, "dt"))
            return false;
        if (ctl_cur_peek(&c, &b) && b == '/') {
            ctl_cur_t t = c;
            (void)ctl_cur_skip(&t, 1);
            if (ctl_tag_named(&t, "dl"))
                return false;
        }
    }
    return false;
}

/* ----------------------------------------------------------------- pages */

static const char *const ctl_kind_text[CTL_PAGE__COUNT] = {
    [CTL_PAGE_UNKNOWN] = "unknown", [CTL_PAGE_ISSUED] = "issued",
    [CTL_PAGE_PENDING] = "pending", [CTL_PAGE_DENIED] = "denied",
    [CTL_PAGE_ERROR] = "error"};

const char *ctl_page_kind_str(ctl_page_kind_t k) {
    return (unsigned)k < CTL_PAGE__COUNT ? ctl_kind_text[k] : "?";
}

#define CTL_REQ_ID_PHRASE "Your Request Id is"
#define CTL_DISP_MSG_PHRASE "The disposition message is \""

static const char *const ctl_denied_ids[] = {"locDenied", "locIssRev", NULL};
static const char *const ctl_denied_phrases[] = {"Your certificate request was denied",
                                                 "Certificate Request Denied", NULL};
static const char *const ctl_pending_ids[] = {"locInfoNewReq", "locInfoChkPnd", "locInfoReqID",
                                              NULL};
static const char *const ctl_pending_phrases[] = {"Certificate Pending", NULL};
/* locErrorMsg: the one-paragraph error page (certcarc.asp and friends). */
static const char *const ctl_error_ids[] = {"locDispMsgLabel", "locResultLabel", "locReqFailed",
                                            "locErrorMsg", NULL};
static const char *const ctl_error_phrases[] = {"Your request failed", "Disposition message:",
                                                "Result:", "LastStatus:", NULL};
static const char *const ctl_intro_ids[] = {"locReqFailed", "locErrorMsg", NULL};
static const char *const ctl_intro_phrases[] = {"Your request failed", NULL};
static const char *const ctl_none[] = {NULL};

/* ctl_find_issued: the id of the first `certnew.cer?ReqID=` + 1..10 digits +
 * `&` (never ReqID=CACert, never an 11-digit or > UINT32_MAX number). */
static bool ctl_find_issued(ctl_cur_t c, uint32_t *id) {
    static const char marker[] = "certnew.cer?ReqID=";
    while (ctl_cur_find(&c, marker, false)) {
        ctl_cur_t t;
        uint32_t v;
        (void)ctl_cur_skip(&c, sizeof(marker) - 1);
        t = c;
        if (ctl_cur_get_u32(&t, &v) && ctl_cur_starts(&t, "&", false)) {
            *id = v;
            return true;
        }
    }
    return false;
}

/* ctl_req_id: the integer after "Your Request Id is", else the first integer
 * of the paragraph with ID `para_id`. */
static void ctl_req_id(const ctl_cur_t *page, const char *para_id, ctl_page_t *out) {
    ctl_cur_t c = *page, at;
    if (ctl_cur_find(&c, CTL_REQ_ID_PHRASE, false)) {
        (void)ctl_cur_skip(&c, strlen(CTL_REQ_ID_PHRASE));
        ctl_skip_gap(&c);
        out->has_req_id = ctl_cur_get_u32(&c, &out->req_id);
    } else if (ctl_find_id(page, para_id, &at)) {
        out->has_req_id = ctl_first_u32(ctl_until_block(ctl_after_tag(at)), &out->req_id);
    }
    if (!out->has_req_id)
        out->req_id = 0;
}

/* ctl_denial_message: the bytes between `The disposition message is "` and
 * the next '"' (or the end of that paragraph), else the reason paragraph,
 * else the marker's paragraph `marker`. */
static ctl_cur_t ctl_denial_message(const ctl_cur_t *page, const ctl_cur_t *marker) {
    ctl_cur_t c = *page, at;
    if (ctl_cur_find(&c, CTL_DISP_MSG_PHRASE, false)) {
        ctl_cur_t blk, q;
        (void)ctl_cur_skip(&c, strlen(CTL_DISP_MSG_PHRASE));
        blk = ctl_until_block(c);
        q = blk;
        return ctl_cur_find_byte(&q, '"') ? ctl_cur_upto(blk, &q) : blk;
    }
    if (ctl_find_id(page, "locInfoReqIDandReason", &at))
        return ctl_until_block(ctl_after_tag(at));
    return ctl_until_block(*marker);
}

/* ctl_fill_denied fills a DENIED result; `from` is where `text` starts. */
static void ctl_fill_denied(const ctl_cur_t *page, const ctl_cur_t *from, ctl_page_t *out) {
    ctl_cur_t msg = ctl_denial_message(page, from);
    out->kind = CTL_PAGE_DENIED;
    ctl_req_id(page, "locInfoReqIDandReason", out);
    ctl_text(msg, out->message, sizeof(out->message));
    out->has_hresult = ctl_next_hresult(&msg, &out->hresult);
    if (!out->has_hresult)
        out->hresult = 0;
    ctl_text(*from, out->text, sizeof(out->text));
}

/* ctl_disposition reads the hex code that starts the <DD> after the
 * Disposition: label ("5 - Under Submission"); it must stand alone as a
 * word, so "(none)" or "Denied" are not codes. */
static void ctl_disposition(const ctl_cur_t *page, ctl_page_t *out) {
    char buf[32];
    ctl_cur_t dd, t;
    uint8_t b;
    uint32_t v;
    if (!ctl_label_dd(page, "locDispLabel", "Disposition:", &dd))
        return;
    ctl_text(dd, buf, sizeof(buf));
    ctl_cur_init(&t, buf, strlen(buf));
    if (!ctl_get_hex(&t, 8, &v) || (ctl_cur_peek(&t, &b) && (ctl_is_alpha(b) || ctl_is_digit(b))))
        return;
    out->has_disposition = true;
    out->disposition = v;
}

/* ctl_error_fill reads an error page (§3.4): disposition; message = the
 * first of Disposition message, Result, LastStatus that says something other
 * than "(none)", else the intro paragraph; hresult = the first nonzero code
 * in those three values (0 if they only show 0x0); the two flags; and
 * `text` from the intro paragraph on (else from the start). `kind` is left
 * to the caller. */
static void ctl_error_fill(const ctl_cur_t *page, ctl_page_t *out) {
    static const char *const labels[][2] = {{"locDispMsgLabel", "Disposition message:"},
                                            {"locResultLabel", "Result:"},
                                            {"locLastStatLabel", "LastStatus:"}};
    bool zero = false;
    ctl_cur_t dd, at;
    uint32_t v;
    ctl_disposition(page, out);
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        if (!ctl_label_dd(page, labels[i][0], labels[i][1], &dd))
            continue;
        if (out->message[0] == '\0') {
            ctl_text(dd, out->message, sizeof(out->message));
            if (strcmp(out->message, "(none)") == 0)
                out->message[0] = '\0';
        }
        if (!out->has_hresult && ctl_next_hresult(&dd, &v)) {
            out->has_hresult = v != 0;
            out->hresult = v;
            zero = zero || v == 0;
        }
    }
    if (!out->has_hresult)
        out->has_hresult = zero;      /* hresult is 0 here */
    if (ctl_marker(page, ctl_intro_ids, ctl_intro_phrases, &at)) {
        if (out->message[0] == '\0')
            ctl_text(ctl_until_block(at), out->message, sizeof(out->message));
        ctl_text(at, out->text, sizeof(out->text));
    } else {
        ctl_text(*page, out->text, sizeof(out->text));
    }
    out->ca_unreachable = ctl_has_code(*page, 0x800706BAu) ||
                          ctl_has_phrase(*page, "has not been started", true);
    out->unknown_id = ctl_has_code(*page, 0x80094004u) ||
                      ctl_has_phrase(*page, "requested property value is empty", true);
}

/* ctl_error_page classifies a page that should be in the certrser layout
 * (certnew.* answers, a certcarc.asp without nRenewals): disposition 5 (or,
 * without a disposition, "Taken Under Submission") is PENDING; disposition 2
 * or a "Denied by" message is DENIED; anything else is ERROR. */
static void ctl_error_page(const ctl_cur_t *page, ctl_page_t *out) {
    ctl_cur_t msg;
    memset(out, 0, sizeof(*out));
    ctl_error_fill(page, out);
    ctl_cur_init(&msg, out->message, strlen(out->message));
    if (out->has_disposition && out->disposition == 5)
        out->kind = CTL_PAGE_PENDING;
    else if (out->has_disposition && out->disposition == 2)
        out->kind = CTL_PAGE_DENIED;
    else if (!out->has_disposition && ctl_has_phrase(msg, "Taken Under Submission", false))
        out->kind = CTL_PAGE_PENDING;
    else if (ctl_has_phrase(msg, "Denied by", false))
        out->kind = CTL_PAGE_DENIED;
    else
        out->kind = CTL_PAGE_ERROR;
}

/* ctl_page_result: `text` starts at the marker's element (ISSUED: the
 * locInfoIssued paragraph); an ERROR keeps its disposition but is not
 * re-mapped by it (§3.2 order; ctl_page_body maps certnew error pages). */
void ctl_page_result(const uint8_t *body, size_t len, ctl_page_t *out) {
    ctl_cur_t page, at;
    memset(out, 0, sizeof(*out));
    ctl_cur_init(&page, body, len);
    if (ctl_find_issued(page, &out->req_id)) {
        static const char *const issued_ids[] = {"locInfoIssued", NULL};
        out->kind = CTL_PAGE_ISSUED;
        out->has_req_id = true;
        if (!ctl_marker(&page, issued_ids, ctl_none, &at))
            at = page;
        ctl_text(at, out->text, sizeof(out->text));
    } else if (ctl_marker(&page, ctl_denied_ids, ctl_denied_phrases, &at)) {
        ctl_fill_denied(&page, &at, out);
    } else if (ctl_marker(&page, ctl_pending_ids, ctl_pending_phrases, &at)) {
        out->kind = CTL_PAGE_PENDING;
        ctl_req_id(&page, "locInfoReqID", out);
        ctl_text(at, out->text, sizeof(out->text));
    } else if (ctl_marker(&page, ctl_error_ids, ctl_error_phrases, &at)) {
        ctl_error_fill(&page, out);
        out->kind = CTL_PAGE_ERROR;
    } else if (ctl_has_phrase(page, CTL_DISP_MSG_PHRASE, false)) {
        ctl_fill_denied(&page, &page, out);   /* §3.2: a failed request */
    } else {
        ctl_text(page, out->text, sizeof(out->text));
    }
}

/* ------------------------------------------------------------------ bodies */

/* ctl_der_whole: `c` is exactly one DER SEQUENCE with a definite length
 * (short form, or long form with 1..4 length bytes, minimal or not). */
static bool ctl_der_whole(ctl_cur_t c) {
    uint8_t tag, l, b;
    uint32_t n = 0;
    if (!ctl_cur_get_u8(&c, &tag) || tag != 0x30 || !ctl_cur_get_u8(&c, &l))
        return false;
    if (l < 0x80) {
        n = l;
    } else {
        unsigned k = l & 0x7fu;
        if (k == 0 || k > 4)          /* indefinite, or more than 32 bits */
            return false;
        while (k-- > 0) {
            if (!ctl_cur_get_u8(&c, &b))
                return false;
            n = n << 8 | b;
        }
    }
    return c.len == n;
}

/* ctl_pem_payload: the bytes between the first `-----BEGIN <label>-----`
 * (label on one line, ignored) and the next `-----END`. */
static bool ctl_pem_payload(ctl_cur_t c, ctl_cur_t *b64) {
    ctl_cur_t label, start;
    if (!ctl_cur_find(&c, "-----BEGIN ", false))
        return false;
    (void)ctl_cur_skip(&c, 11);
    label = c;
    if (!ctl_cur_find(&c, "-----", false))
        return false;
    label = ctl_cur_upto(label, &c);
    if (ctl_cur_find_byte(&label, '\n') || ctl_cur_find_byte(&label, '\r'))
        return false;
    (void)ctl_cur_skip(&c, 5);
    start = c;
    if (!ctl_cur_find(&c, "-----END", false))
        return false;
    *b64 = ctl_cur_upto(start, &c);
    return true;
}

static int ctl_b64_val(uint8_t b) {
    if (b >= 'A' && b <= 'Z')
        return b - 'A';
    if (b >= 'a' && b <= 'z')
        return b - 'a' + 26;
    if (ctl_is_digit(b))
        return b - '0' + 52;
    if (b == '+')
        return 62;
    return b == '/' ? 63 : -1;
}

/* ctl_b64_decode decodes `src` (RFC 4648 alphabet, whitespace ignored,
 * complete quanta, '=' only to pad the last one, zero padding bits) into
 * out[cap]. false on any deviation or if it does not fit. */
static bool ctl_b64_decode(ctl_cur_t src, uint8_t *out, size_t cap, size_t *out_len) {
    uint32_t acc = 0;
    unsigned nq = 0, pad = 0;
    size_t n = 0;
    uint8_t b;
    while (ctl_cur_get_u8(&src, &b)) {
        if (ctl_is_space(b))
            continue;
        if (b == '=') {
            if (nq < 2)
                return false;
            pad++;
            acc <<= 6;
        } else {
            int v = ctl_b64_val(b);
            if (v < 0 || pad > 0)
                return false;         /* bad character, or data after '=' */
            acc = acc << 6 | (uint32_t)v;
        }
        if (++nq < 4)
            continue;
        if ((pad == 1 && (acc & 0xff) != 0) || (pad == 2 && (acc & 0xffff) != 0) ||
            3 - pad > cap - n)        /* nonzero padding bits, or no room */
            return false;
        for (unsigned i = 0; i < 3 - pad; i++)
            out[n++] = (uint8_t)(acc >> (16 - 8 * i));
        nq = 0;
        acc = 0;
    }
    if (nq != 0)
        return false;
    *out_len = n;
    return true;
}

/* ctl_page_body sniffs in the order HTML, DER, PEM: an exact DER SEQUENCE is
 * tried before the PEM search because a certificate may carry the bytes
 * "-----BEGIN " in a name, while a PEM body can never frame as DER. */
void ctl_page_body(const uint8_t *body, size_t len, uint8_t *pem_buf, size_t pem_cap,
                   ctl_body_t *out) {
    ctl_cur_t all, c, b64, der;
    size_t n;
    uint8_t b;
    memset(out, 0, sizeof(*out));
    ctl_cur_init(&all, body, len);
    c = all;
    if (ctl_cur_starts(&c, "\xEF\xBB\xBF", false))   /* UTF-8 BOM */
        (void)ctl_cur_skip(&c, 3);
    ctl_skip_space(&c);
    if (ctl_cur_peek(&c, &b) && b == '<') {
        out->kind = CTL_BODY_HTML;
        ctl_error_page(&all, &out->page);
        return;
    }
    if (ctl_der_whole(all)) {
        out->kind = CTL_BODY_DER;
        out->der = all.data;
        out->der_len = all.len;
        return;
    }
    if (pem_buf != NULL && ctl_pem_payload(all, &b64) &&
        ctl_b64_decode(b64, pem_buf, pem_cap, &n)) {
        ctl_cur_init(&der, pem_buf, n);
        if (ctl_der_whole(der)) {
            out->kind = CTL_BODY_DER;
            out->der = pem_buf;
            out->der_len = n;
            return;
        }
    }
    ctl_text(all, out->page.text, sizeof(out->page.text));
}

/* ----------------------------------------------------------------- certcarc */

/* ctl_renewals_decl: `c` is just past a "var"; true if
 * [[:space:]]+nRenewals[[:space:]]*=[[:space:]]*([0-9]{1,5})[[:space:]]*;
 * follows. */
static bool ctl_renewals_decl(ctl_cur_t c, uint32_t *out) {
    uint32_t v = 0;
    size_t k = 0;
    uint8_t b;
    if (!ctl_cur_peek(&c, &b) || !ctl_is_space(b))
        return false;
    ctl_skip_space(&c);
    if (!ctl_cur_starts(&c, "nRenewals", false))
        return false;
    (void)ctl_cur_skip(&c, 9);
    ctl_skip_space(&c);
    if (!ctl_cur_get_u8(&c, &b) || b != '=')
        return false;
    ctl_skip_space(&c);
    while (ctl_cur_peek(&c, &b) && ctl_is_digit(b)) {
        if (k == 5)
            return false;
        v = v * 10 + (uint32_t)(b - '0');
        k++;
        (void)ctl_cur_skip(&c, 1);
    }
    ctl_skip_space(&c);
    if (k == 0 || !ctl_cur_get_u8(&c, &b) || b != ';')
        return false;
    *out = v;
    return true;
}

/* ctl_page_renewals: the first declaration that matches wins; on success
 * `page` is cleared (kind UNKNOWN), on failure it is the page classified as
 * an error page (PENDING / DENIED / ERROR, always one of them). */
bool ctl_page_renewals(const uint8_t *body, size_t len, uint32_t *out, ctl_page_t *page) {
    ctl_cur_t all, c;
    ctl_cur_init(&all, body, len);
    c = all;
    while (ctl_cur_find(&c, "var", false)) {
        (void)ctl_cur_skip(&c, 3);
        if (ctl_renewals_decl(c, out)) {
            memset(page, 0, sizeof(*page));
            return true;
        }
    }
    ctl_error_page(&all, page);
    return false;
}
