/* fuzz_ctl_page: libFuzzer target for control/ctl_page (every byte the ADCS
 * web-enrollment pages send goes through it). Runs the three entry points
 * (ctl_page_result, ctl_page_body with a roomy, a tiny and no PEM buffer,
 * ctl_page_renewals) and the cursor on the input, and checks what the header
 * promises: known kinds, NUL-terminated printable strings with collapsed
 * spaces, has_* flags consistent with their values, an ISSUED id that the
 * input spells, a DER view that is the whole body or lies inside the PEM
 * buffer and starts a SEQUENCE, an HTML body classified as PENDING / DENIED /
 * ERROR, a renewal index of at most 5 digits, and identical results on a
 * second run. Any mismatch aborts. Links no TLS library (neither may
 * ctl_page). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_page.h"

#define PEM_CAP 8192
#define PEM_TINY 16

/* check_text: NUL-terminated inside `s`, printable ASCII, no leading,
 * trailing or doubled space. */
static void check_text(const char *s) {
    const char *end = memchr(s, '\0', CTL_PAGE_TEXT_MAX);
    if (end == NULL)
        abort();
    size_t n = (size_t)(end - s);
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x20 || s[i] > 0x7e)
            abort();
        if (s[i] == ' ' && (i == 0 || i + 1 == n || s[i + 1] == ' '))
            abort();
    }
}

static void check_page(const ctl_page_t *p) {
    if ((unsigned)p->kind >= CTL_PAGE__COUNT || ctl_page_kind_str(p->kind)[0] == '?')
        abort();
    if ((!p->has_req_id && p->req_id != 0) || (!p->has_hresult && p->hresult != 0) ||
        (!p->has_disposition && p->disposition != 0))
        abort();
    check_text(p->message);
    check_text(p->text);
}

/* spelled: the input holds `certnew.cer?ReqID=` + digits worth `id` + '&'. */
static bool spelled(const uint8_t *data, size_t size, uint32_t id) {
    static const char m[] = "certnew.cer?ReqID=";
    const size_t ml = sizeof(m) - 1;
    for (size_t i = 0; i + ml <= size; i++) {
        if (memcmp(data + i, m, ml) != 0)
            continue;
        uint64_t v = 0;
        size_t k = 0;
        while (i + ml + k < size && data[i + ml + k] >= '0' && data[i + ml + k] <= '9' && k < 11)
            v = v * 10 + (uint64_t)(data[i + ml + k++] - '0');
        if (k >= 1 && k <= 10 && v == id && i + ml + k < size && data[i + ml + k] == '&')
            return true;
    }
    return false;
}

static void check_result(const uint8_t *data, size_t size) {
    ctl_page_t p, q;
    ctl_page_result(data, size, &p);
    check_page(&p);
    if (p.kind == CTL_PAGE_ISSUED && (!p.has_req_id || !spelled(data, size, p.req_id)))
        abort();
    if (p.kind != CTL_PAGE_ERROR && (p.unknown_id || p.ca_unreachable || p.has_disposition))
        abort();
    ctl_page_result(data, size, &q);
    if (memcmp(&p, &q, sizeof(p)) != 0)
        abort();
}

/* check_body: one ctl_page_body call with `pem`/`cap`; returns its view. */
static ctl_body_t check_body(const uint8_t *data, size_t size, uint8_t *pem, size_t cap) {
    ctl_body_t b;
    ctl_page_body(data, size, pem, cap, &b);
    check_page(&b.page);
    switch (b.kind) {
    case CTL_BODY_DER:
        if (b.der_len < 2 || b.der[0] != 0x30)
            abort();
        if (b.der == data) {
            if (b.der_len != size)
                abort();
        } else if (b.der != pem || pem == NULL || b.der_len > cap) {
            abort();
        }
        if (b.page.kind != CTL_PAGE_UNKNOWN || b.page.text[0] != '\0')
            abort();
        break;
    case CTL_BODY_HTML:
        if (b.der != NULL || b.der_len != 0 ||
            (b.page.kind != CTL_PAGE_PENDING && b.page.kind != CTL_PAGE_DENIED &&
             b.page.kind != CTL_PAGE_ERROR))
            abort();
        break;
    case CTL_BODY_UNKNOWN:
        if (b.der != NULL || b.der_len != 0 || b.page.kind != CTL_PAGE_UNKNOWN)
            abort();
        break;
    default:
        abort();
    }
    return b;
}

static void check_bodies(const uint8_t *data, size_t size) {
    static uint8_t pem[PEM_CAP], tiny[PEM_TINY];
    ctl_body_t big = check_body(data, size, pem, sizeof(pem));
    ctl_body_t small = check_body(data, size, tiny, sizeof(tiny));
    ctl_body_t none = check_body(data, size, NULL, 0);
    /* A smaller buffer can only lose a PEM body, never change the others. */
    if (big.kind != CTL_BODY_DER || big.der == data) {
        if (small.kind != big.kind || none.kind != big.kind || small.der != big.der)
            abort();
    } else {
        if (none.kind != CTL_BODY_UNKNOWN)
            abort();
        if (small.kind == CTL_BODY_DER &&
            (small.der_len != big.der_len || memcmp(small.der, big.der, big.der_len) != 0))
            abort();
        if (small.kind != CTL_BODY_DER && big.der_len <= PEM_TINY)
            abort();
    }
}

static void check_renewals(const uint8_t *data, size_t size) {
    ctl_page_t p;
    uint32_t k = 123456;
    if (ctl_page_renewals(data, size, &k, &p)) {
        if (k > 99999 || p.kind != CTL_PAGE_UNKNOWN)
            abort();
        return;
    }
    if (k != 123456)
        abort();
    check_page(&p);
    if (p.kind != CTL_PAGE_PENDING && p.kind != CTL_PAGE_DENIED && p.kind != CTL_PAGE_ERROR)
        abort();
}

/* check_cursor: find/starts/get_u32 agree with each other, with the first
 * bytes of the input as the needle. */
static void check_cursor(const uint8_t *data, size_t size) {
    char needle[5] = {0};
    ctl_cur_t c, d;
    uint32_t v;
    size_t nl = 0;
    while (nl < size && nl < sizeof(needle) - 1 && data[nl] != 0) {
        needle[nl] = (char)data[nl];
        nl++;
    }
    ctl_cur_init(&c, data, size);
    if (!ctl_cur_skip(&c, nl < size ? 1 : 0))
        abort();
    for (int icase = 0; icase < 2; icase++) {
        d = c;
        if (ctl_cur_find(&d, needle, icase != 0)) {
            if (!ctl_cur_starts(&d, needle, icase != 0) || d.len > c.len || d.len < nl)
                abort();
        } else if (d.data != c.data || d.len != c.len) {
            abort();
        }
    }
    d = c;
    if (ctl_cur_find(&d, "0", false) || ctl_cur_find(&d, "1", false)) {
        size_t before = d.len;
        if (ctl_cur_get_u32(&d, &v) ? (before - d.len < 1 || before - d.len > 10)
                                    : d.len != before)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_result(data, size);
    check_bodies(data, size);
    check_renewals(data, size);
    check_cursor(data, size);
    return 0;
}
