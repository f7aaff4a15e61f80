/* fuzz_capf_msg: libFuzzer target for the CAPF codec (dataplane/capf_msg: every
 * byte a CAPF client sends goes through it). Checks that capf_msg_need and
 * capf_msg_parse agree on the header, parses the first whole message of the
 * input (what a session would do with pipelined bytes), checks that every
 * view lies inside the input and that every accessor keeps its promises, and
 * for a server message rebuilds it: the rebuild must parse to the same
 * values, must be byte-identical to the input when the input had no unknown
 * tag and its tags in ascending order, and must be a fixed point. Any
 * mismatch aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/capf_msg.h"
#include "tests/fuzz/fuzz_check.h"

/* check_need: capf_msg_need and capf_msg_parse agree on the whole input. */
static void check_need(const uint8_t *data, size_t size) {
    capf_msg_t m;
    size_t need;
    capf_err_t ne = capf_msg_need(data, size, &need);
    capf_err_t e = capf_msg_parse(&m, data, size);
    if (e == CAPF_OK && (ne != CAPF_OK || need != size))
        abort();
    if (ne == CAPF_OK && need < size && e != CAPF_E_TRAILING)
        abort();
    if (ne == CAPF_PARTIAL &&
        e != (size < CAPF_HEADER_LEN ? CAPF_E_SHORT_HEADER : CAPF_E_TRUNCATED))
        abort();
    if (ne != CAPF_OK && ne != CAPF_PARTIAL && (e != ne || need != 0))
        abort();
    if (e != CAPF_OK && m.present != 0)
        abort();
}

/* sorted_known: the body has no unknown tag and its tags ascend. */
static bool sorted_known(const capf_msg_t *m) {
    CBS body = m->body, v;
    uint8_t tag, prev = 0;
    while (CBS_get_u8(&body, &tag) && CBS_get_u16_length_prefixed(&body, &v)) {
        if (tag <= prev)
            return false;
        prev = tag;
    }
    return m->num_unknown == 0;
}

/* check_accessors: what each accessor returns is consistent with `present`. */
static void check_accessors(const capf_msg_t *m, const uint8_t *data, size_t size) {
    static const uint8_t u8_tags[] = {CAPF_TAG_REASON, CAPF_TAG_VERSION, CAPF_TAG_AUTH_TYPE,
                                      CAPF_TAG_CERTIFICATE_TYPE, CAPF_TAG_KEY_TYPE, CAPF_TAG_CURVE};
    uint8_t b;
    uint16_t w;
    CBS s, der;
    capf_cert_type_t ct;
    capf_hash_t h;

    fuzz_check_inside(&m->body, data, size);
    if (CBS_len(&m->body) + CAPF_HEADER_LEN != size)
        abort();
    if (m->present & ~(uint32_t)0x1f3ffe)      /* tags 01..0d, 10..14 only */
        abort();
    if ((m->num_unknown == 0) != (m->first_unknown == 0))
        abort();
    for (unsigned t = 0; t <= CAPF_TAG__MAX; t++) {
        fuzz_check_inside(&m->elem[t], data, size);
        if (!capf_msg_has(m, t) && CBS_len(&m->elem[t]) != 0)
            abort();
    }
    for (size_t i = 0; i < sizeof(u8_tags); i++) {
        capf_err_t err = capf_msg_u8(m, u8_tags[i], &b);
        if (capf_msg_has(m, u8_tags[i]) ? (err != CAPF_OK && err != CAPF_E_ENUM)
                                        : err != CAPF_E_ABSENT)
            abort();
    }
    if ((capf_msg_u16(m, CAPF_TAG_KEY_SIZE, &w) == CAPF_OK) != capf_msg_has(m, CAPF_TAG_KEY_SIZE))
        abort();
    static const uint8_t str_tags[] = {CAPF_TAG_DEVICE_NAME, CAPF_TAG_PASSWORD};
    for (size_t i = 0; i < sizeof(str_tags); i++) {
        if (capf_msg_string(m, str_tags[i], &s) != CAPF_OK)
            continue;
        CBS rest = s, before;
        if (CBS_get_until_first(&rest, &before, 0) ||
            CBS_len(&s) + 1 != CBS_len(&m->elem[str_tags[i]]))
            abort();
    }
    if (capf_msg_device_name(m, 0, &s) == CAPF_OK) {
        uint8_t c, prev = 0;
        if (CBS_len(&s) == 0 || CBS_len(&s) > CAPF_DEVICE_NAME_MAX)
            abort();
        while (CBS_get_u8(&s, &c)) {
            bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-' || (c == '.' && prev != 0 && prev != '.');
            if (!ok)
                abort();
            prev = c;
        }
    }
    capf_err_t err = capf_msg_cert(m, &ct, &der);
    if (capf_msg_has(m, CAPF_TAG_CERTIFICATE) ? (err != CAPF_OK && err != CAPF_E_ENUM)
                                              : err != CAPF_E_ABSENT)
        abort();
    if (err == CAPF_OK && (CBS_len(&der) < 2 || CBS_len(&der) + 5 != CBS_len(&m->elem[CAPF_TAG_CERTIFICATE])))
        abort();
    err = capf_msg_sha2_signed(m, &h, &s);
    if (err == CAPF_OK && CBS_len(&s) == 0)
        abort();
}

/* out_of fills a build description from a parsed message. */
static void out_of(const capf_msg_t *m, capf_msg_out_t *o) {
    uint8_t b;
    capf_cert_type_t inner = 0;
    memset(o, 0, sizeof(*o));
    o->op = m->op;
    o->session_id = m->session_id;
    o->present = m->present;
    if (capf_msg_u8(m, CAPF_TAG_REASON, &b) == CAPF_OK) o->reason = b;
    if (capf_msg_u8(m, CAPF_TAG_VERSION, &b) == CAPF_OK) o->version = b;
    o->auth_type = capf_msg_u8(m, CAPF_TAG_AUTH_TYPE, &b) == CAPF_OK ? b : 0xff;
    o->key_type = capf_msg_u8(m, CAPF_TAG_KEY_TYPE, &b) == CAPF_OK ? b : 0xff;
    o->curve = capf_msg_u8(m, CAPF_TAG_CURVE, &b) == CAPF_OK ? b : 0xff;
    o->cert_type = capf_msg_u8(m, CAPF_TAG_CERTIFICATE_TYPE, &b) == CAPF_OK ? b : 0xff;
    (void)capf_msg_u16(m, CAPF_TAG_KEY_SIZE, &o->key_size);
    if (capf_msg_cert(m, &inner, &o->cert_der) == CAPF_OK && inner != o->cert_type)
        o->cert_type = 0xff;       /* the builder writes one type for both */
}

static bool same_out(const capf_msg_out_t *a, const capf_msg_out_t *b) {
    return a->op == b->op && a->session_id == b->session_id && a->present == b->present &&
           a->reason == b->reason && a->version == b->version && a->auth_type == b->auth_type &&
           a->key_size == b->key_size && a->key_type == b->key_type && a->curve == b->curve &&
           a->cert_type == b->cert_type && CBS_len(&a->cert_der) == CBS_len(&b->cert_der) &&
           (CBS_len(&a->cert_der) == 0 ||
            memcmp(CBS_data(&a->cert_der), CBS_data(&b->cert_der), CBS_len(&a->cert_der)) == 0);
}

/* build: capf_msg_build into `buf` (CAPF_SERVER_MSG_MAX bytes). */
static capf_err_t build(const capf_msg_out_t *o, uint8_t *buf, size_t *len) {
    CBB cbb;
    if (!CBB_init_fixed(&cbb, buf, CAPF_SERVER_MSG_MAX))
        abort();
    capf_err_t err = capf_msg_build(&cbb, o);
    if (err == CAPF_OK && !CBB_finish(&cbb, NULL, len))
        abort();
    CBB_cleanup(&cbb);
    return err;
}

/* check_rebuild: a server message parsed from the input, rebuilt. */
static void check_rebuild(const capf_msg_t *m, const uint8_t *data, size_t size) {
    static uint8_t buf1[CAPF_SERVER_MSG_MAX], buf2[CAPF_SERVER_MSG_MAX];
    capf_msg_out_t o, o2;
    capf_msg_t m2;
    size_t len1, len2;

    out_of(m, &o);
    capf_err_t err = build(&o, buf1, &len1);
    if (err == CAPF_E_ARG)
        return;                        /* not a message the server would send */
    if (err != CAPF_OK)                /* parsed => fits: never OVERSIZE/BUFFER */
        abort();
    if (capf_msg_parse(&m2, buf1, len1) != CAPF_OK || m2.num_unknown != 0)
        abort();
    out_of(&m2, &o2);
    if (!same_out(&o, &o2))
        abort();
    if (sorted_known(m) && (len1 != size || memcmp(buf1, data, size) != 0))
        abort();
    if (build(&o2, buf2, &len2) != CAPF_OK || len2 != len1 || memcmp(buf1, buf2, len1) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    capf_msg_t m;
    size_t need;

    check_need(data, size);
    if (capf_msg_need(data, size, &need) != CAPF_OK)
        return 0;
    /* Every shorter prefix is incomplete. */
    for (size_t len = 0; len < need; len += (len < 10 || len + 1 == need) ? 1 : need - len - 1) {
        size_t n2;
        if (capf_msg_need(data, len, &n2) != CAPF_PARTIAL ||
            n2 != (len < CAPF_HEADER_LEN ? CAPF_HEADER_LEN : need))
            abort();
    }
    /* The first message, as a session would cut it from pipelined bytes. */
    if (capf_msg_parse(&m, data, need) != CAPF_OK)
        return 0;
    check_accessors(&m, data, need);
    if (capf_op_dir(m.op) == CAPF_DIR_TO_CLIENT)
        check_rebuild(&m, data, need);
    return 0;
}
