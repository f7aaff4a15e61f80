/* capf_msg: CAPF header + TLV codec (capf-protocol.md §2.1-2.6, §2.9,
 * §2.10). Two tables drive it: one row per opcode (name, direction, body
 * limit, required elements) and one row per known tag (name, kind, length
 * bounds, enumeration range), so the rules of §2.10 are read in one place
 * rather than spread through code. Client bytes are read only with CBS
 * cursors (every read bounds-checked, no pointer arithmetic); the parser
 * returns views and allocates nothing. The builder validates a whole
 * message description before it writes a byte, then writes header and
 * body into the caller's CBB in one go (one message = one SSL_write, §1.1).
 * Thread: any thread (polling cores); no shared mutable state. */
#include "dataplane/capf_msg.h"

#include <string.h>

/* capf_kind_t: how a known tag's value is laid out. */
typedef enum {
    CAPF_K_UNKNOWN = 0, /* gap in the numbering (0e, 0f): skipped like 15..ff */
    CAPF_K_U8,          /* one byte, any value */
    CAPF_K_ENUM8,       /* one byte within [enum_min, enum_max] */
    CAPF_K_U16,         /* two bytes, big-endian */
    CAPF_K_STRING,      /* text + 00, no other 00 */
    CAPF_K_BYTES,       /* opaque, non-empty */
    CAPF_K_OPAQUE,      /* format unknown: any length, kept as a view */
    CAPF_K_CERT,        /* 01 | u16 len | u16 type | DER (§2.6) */
    CAPF_K_BLOCKS,      /* one or more: u8 id | u16 len | data (SUDI_DATA) */
    CAPF_K_BLOCK1,      /* exactly one such block (SHA2_SIGNED_DATA) */
} capf_kind_t;

typedef struct {
    const char *name;
    uint8_t kind;       /* capf_kind_t */
    uint16_t min_len, max_len;
    uint8_t enum_min, enum_max;
} capf_tag_info_t;

/* Per-tag rules (§2.4, §2.10 rule 5). Strings: 2..65 bytes per rule 5,
 * except PASSWORD which may be the empty string "00" (§2.8, null string
 * as sent by usecallmanagernz's client). */
static const capf_tag_info_t capf_tags[CAPF_TAG__MAX + 1] = {
    [CAPF_TAG_REASON] = {"REASON", CAPF_K_U8, 1, 1, 0, 0},
    [CAPF_TAG_REASON_INFO] = {"REASON_INFO", CAPF_K_OPAQUE, 0, UINT16_MAX, 0, 0},
    [CAPF_TAG_CERTIFICATE_TYPE] = {"CERTIFICATE_TYPE", CAPF_K_ENUM8, 1, 1, CAPF_CERT_LSC, CAPF_CERT__MAX},
    [CAPF_TAG_CERTIFICATE] = {"CERTIFICATE", CAPF_K_CERT, 7, UINT16_MAX, 0, 0},
    [CAPF_TAG_CERTIFICATE_ID] = {"CERTIFICATE_ID", CAPF_K_OPAQUE, 0, UINT16_MAX, 0, 0},
    [CAPF_TAG_SIGNED_DATA] = {"SIGNED_DATA", CAPF_K_BYTES, 1, UINT16_MAX, 0, 0},
    [CAPF_TAG_VERSION] = {"VERSION", CAPF_K_U8, 1, 1, 0, 0},
    [CAPF_TAG_AUTH_TYPE] = {"AUTH_TYPE", CAPF_K_ENUM8, 1, 1, 0, CAPF_AUTH__MAX},
    [CAPF_TAG_PUBLIC_KEY] = {"PUBLIC_KEY", CAPF_K_BYTES, 1, UINT16_MAX, 0, 0},
    [CAPF_TAG_KEY_SIZE] = {"KEY_SIZE", CAPF_K_U16, 2, 2, 0, 0},
    [CAPF_TAG_PASSWORD] = {"PASSWORD", CAPF_K_STRING, 1, 65, 0, 0},
    [CAPF_TAG_RETRY_DELAY] = {"RETRY_DELAY", CAPF_K_OPAQUE, 0, UINT16_MAX, 0, 0},
    [CAPF_TAG_DEVICE_NAME] = {"DEVICE_NAME", CAPF_K_STRING, 2, 65, 0, 0},
    [CAPF_TAG_SUDI_DATA] = {"SUDI_DATA", CAPF_K_BLOCKS, 4, UINT16_MAX, 0, 0},
    [CAPF_TAG_KEY_TYPE] = {"KEY_TYPE", CAPF_K_ENUM8, 1, 1, 0, CAPF_KEY__MAX},
    [CAPF_TAG_CURVE] = {"CURVE", CAPF_K_ENUM8, 1, 1, 0, CAPF_CURVE__MAX},
    [CAPF_TAG_DIGEST_TYPE] = {"DIGEST_TYPE", CAPF_K_OPAQUE, 0, UINT16_MAX, 0, 0},
    [CAPF_TAG_SHA2_SIGNED_DATA] = {"SHA2_SIGNED_DATA", CAPF_K_BLOCK1, 4, UINT16_MAX, 0, 0},
};

typedef struct {
    const char *name;
    uint8_t dir;          /* capf_dir_t */
    uint16_t max_body;
    uint32_t need_all;    /* every one of these tags */
    uint32_t need_any;    /* at least one of these tags (0: no rule) */
} capf_op_info_t;

#define B(t) CAPF_BIT(CAPF_TAG_##t)
#define CAPF_BODY_SMALL 64  /* §2.10 rule 1: "all others 64 bytes" */

/* Per-opcode rules (§2.3, §2.10 rule 1). STORE_CERTIFICATE_REQUEST is
 * server-sent and bounded by §1.1 rule 2 (whole message <= 4096), not by the
 * 64 bytes §2.10 gives client messages; directions marked "?" in §2.3 follow
 * the doc's guess. */
static const capf_op_info_t capf_ops[CAPF_OP__MAX + 1] = {
    [CAPF_OP_AUTH_REQUEST] = {"AUTH_REQUEST", CAPF_DIR_TO_CLIENT, CAPF_BODY_SMALL, B(VERSION), 0},
    [CAPF_OP_AUTH_RESPONSE] = {"AUTH_RESPONSE", CAPF_DIR_TO_SERVER, 16384, B(DEVICE_NAME), 0},
    [CAPF_OP_KEY_GENERATE_REQUEST] = {"KEY_GENERATE_REQUEST", CAPF_DIR_TO_CLIENT, CAPF_BODY_SMALL,
                                      0, B(KEY_SIZE) | B(KEY_TYPE)},
    [CAPF_OP_KEY_GENERATE_RESPONSE] = {"KEY_GENERATE_RESPONSE", CAPF_DIR_TO_SERVER, 2048,
                                       0, B(PUBLIC_KEY) | B(REASON)},
    [CAPF_OP_ENCRYPT_RESPONSE] = {"ENCRYPT_RESPONSE", CAPF_DIR_UNKNOWN, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_ENCRYPT_REQUEST] = {"ENCRYPT_REQUEST", CAPF_DIR_UNKNOWN, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_DECRYPT_REQUEST] = {"DECRYPT_REQUEST", CAPF_DIR_UNKNOWN, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_DECRYPT_RESPONSE] = {"DECRYPT_RESPONSE", CAPF_DIR_UNKNOWN, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_STORE_CERTIFICATE_REQUEST] = {"STORE_CERTIFICATE_REQUEST", CAPF_DIR_TO_CLIENT,
                                           CAPF_SERVER_MSG_MAX - CAPF_HEADER_LEN,
                                           B(CERTIFICATE_TYPE) | B(CERTIFICATE), 0},
    [CAPF_OP_STORE_CERTIFICATE_RESPONSE] = {"STORE_CERTIFICATE_RESPONSE", CAPF_DIR_TO_SERVER,
                                            CAPF_BODY_SMALL, B(REASON), 0},
    [CAPF_OP_FETCH_CERTIFICATE_REQUEST] = {"FETCH_CERTIFICATE_REQUEST", CAPF_DIR_TO_CLIENT,
                                           CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_FETCH_CERTIFICATE_RESPONSE] = {"FETCH_CERTIFICATE_RESPONSE", CAPF_DIR_TO_SERVER,
                                            8192, B(REASON), 0},
    [CAPF_OP_DELETE_CERTIFICATE_REQUEST] = {"DELETE_CERTIFICATE_REQUEST", CAPF_DIR_TO_CLIENT,
                                            CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_DELETE_CERTIFICATE_RESPONSE] = {"DELETE_CERTIFICATE_RESPONSE", CAPF_DIR_TO_SERVER,
                                             CAPF_BODY_SMALL, B(REASON), 0},
    [CAPF_OP_END_SESSION] = {"END_SESSION", CAPF_DIR_TO_CLIENT, CAPF_BODY_SMALL, B(REASON), 0},
    [CAPF_OP_RETRY_LATER] = {"RETRY_LATER", CAPF_DIR_TO_CLIENT, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_REQUEST_IN_PROGRESS] = {"REQUEST_IN_PROGRESS", CAPF_DIR_TO_SERVER, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_STATUS_REQUEST] = {"STATUS_REQUEST", CAPF_DIR_TO_SERVER, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_STATUS_RESPONSE] = {"STATUS_RESPONSE", CAPF_DIR_TO_CLIENT, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_ABORT_REQUEST] = {"ABORT_REQUEST", CAPF_DIR_TO_SERVER, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_ABORT_RESPONSE] = {"ABORT_RESPONSE", CAPF_DIR_TO_CLIENT, CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_SIGN_CERTIFICATE_REQUEST] = {"SIGN_CERTIFICATE_REQUEST", CAPF_DIR_UNKNOWN,
                                          CAPF_BODY_SMALL, 0, 0},
    [CAPF_OP_SIGN_CERTIFICATE_RESPONSE] = {"SIGN_CERTIFICATE_RESPONSE", CAPF_DIR_UNKNOWN,
                                           CAPF_BODY_SMALL, 0, 0},
};

static const char *const capf_reason_text[CAPF_REASON__MAX + 1] = {
    [CAPF_REASON_NO_ACTION] = "NO_ACTION",
    [CAPF_REASON_UPDATE_CERTIFICATE] = "UPDATE_CERTIFICATE",
    [CAPF_REASON_INVALID_ELEMENT] = "INVALID_ELEMENT",
    [CAPF_REASON_UNKNOWN_DEVICE] = "UNKNOWN_DEVICE",
};
static const char *const capf_auth_text[CAPF_AUTH__MAX + 1] = {
    "NONE", "PASSWORD", "NULL_STRING", "LSC", "MIC"};
static const char *const capf_cert_text[CAPF_CERT__MAX + 1] = {NULL, "LSC", "MIC"};
static const char *const capf_key_text[CAPF_KEY__MAX + 1] = {"RSA", "EC"};
static const char *const capf_curve_text[CAPF_CURVE__MAX + 1] = {"P-256", "P-384", "P-521"};
static const char *const capf_hash_text[CAPF_HASH__MAX + 1] = {NULL, "SHA-1", "SHA-256", "SHA-512"};

/* capf_name picks table[v] if it exists, else "unknown". */
static const char *capf_name(const char *const *table, size_t n, unsigned v) {
    return v < n && table[v] != NULL ? table[v] : "unknown";
}
#define CAPF_NAME(t, v) capf_name((t), sizeof(t) / sizeof((t)[0]), (v))

const char *capf_op_str(unsigned op) {
    return op <= CAPF_OP__MAX && capf_ops[op].name ? capf_ops[op].name : "unknown";
}
const char *capf_tag_str(unsigned tag) {
    return tag <= CAPF_TAG__MAX && capf_tags[tag].name ? capf_tags[tag].name : "unknown";
}
const char *capf_reason_str(unsigned v) { return CAPF_NAME(capf_reason_text, v); }
const char *capf_auth_type_str(unsigned v) { return CAPF_NAME(capf_auth_text, v); }
const char *capf_cert_type_str(unsigned v) { return CAPF_NAME(capf_cert_text, v); }
const char *capf_key_type_str(unsigned v) { return CAPF_NAME(capf_key_text, v); }
const char *capf_curve_str(unsigned v) { return CAPF_NAME(capf_curve_text, v); }
const char *capf_hash_str(unsigned v) { return CAPF_NAME(capf_hash_text, v); }

capf_dir_t capf_op_dir(unsigned op) {
    return op <= CAPF_OP__MAX ? (capf_dir_t)capf_ops[op].dir : CAPF_DIR_UNKNOWN;
}

size_t capf_op_max_body(unsigned op) {
    return op <= CAPF_OP__MAX ? capf_ops[op].max_body : 0;
}

/* capf_known_tag returns the rules of a known tag, or NULL (00, gaps, 15..ff). */
static const capf_tag_info_t *capf_known_tag(unsigned tag) {
    if (tag > CAPF_TAG__MAX || capf_tags[tag].kind == CAPF_K_UNKNOWN)
        return NULL;
    return &capf_tags[tag];
}

/* ---- parsing ----------------------------------------------------------- */

capf_err_t capf_msg_need(const uint8_t *buf, size_t len, size_t *need) {
    CBS in;
    uint8_t magic, op;
    uint32_t sid;
    uint16_t body_len;

    *need = CAPF_HEADER_LEN;
    CBS_init(&in, buf, len);
    if (!CBS_get_u8(&in, &magic))
        return CAPF_PARTIAL;
    if (magic != CAPF_MAGIC)
        goto bad_magic;
    if (!CBS_get_u8(&in, &op))
        return CAPF_PARTIAL;
    if (capf_op_max_body(op) == 0)
        goto bad_op;
    if (!CBS_get_u32(&in, &sid) || !CBS_get_u16(&in, &body_len))
        return CAPF_PARTIAL;
    if (body_len > capf_op_max_body(op)) {
        *need = 0;
        return CAPF_E_OVERSIZE;
    }
    *need = CAPF_HEADER_LEN + (size_t)body_len;
    return CBS_len(&in) >= body_len ? CAPF_OK : CAPF_PARTIAL;
bad_magic:
    *need = 0;
    return CAPF_E_MAGIC;
bad_op:
    *need = 0;
    return CAPF_E_OPCODE;
}

/* capf_check_string: text followed by the only 00 (the first 00 is last). */
static bool capf_check_string(const CBS *v) {
    CBS rest = *v, text;
    return CBS_get_until_first(&rest, &text, 0) && CBS_len(&rest) == 1;
}

/* capf_cert_split splits a CERTIFICATE value (§2.6): inner tag 01, inner
 * length == outer - 3, 16-bit type, then exactly one DER element. */
static bool capf_cert_split(const CBS *v, uint16_t *type, CBS *der) {
    CBS in = *v, inner;
    uint8_t itag;
    return CBS_get_u8(&in, &itag) && itag == 0x01 &&
           CBS_get_u16_length_prefixed(&in, &inner) && CBS_len(&in) == 0 &&
           CBS_get_u16(&inner, type) &&
           CBS_get_asn1_element(&inner, der, CBS_ASN1_SEQUENCE) && CBS_len(&inner) == 0;
}

/* capf_block_get reads one block: id (1) | length (2) | non-empty data. */
static bool capf_block_get(CBS *in, uint8_t *id, CBS *data) {
    return CBS_get_u8(in, id) && CBS_get_u16_length_prefixed(in, data) && CBS_len(data) > 0;
}

/* capf_check_blocks: `max_blocks` 1 for SHA2_SIGNED_DATA, 0 for any number. */
static bool capf_check_blocks(const CBS *v, unsigned max_blocks) {
    CBS in = *v, data;
    uint8_t id;
    unsigned n = 0;
    while (CBS_len(&in) > 0) {
        if (!capf_block_get(&in, &id, &data))
            return false;
        n++;
    }
    return n > 0 && (max_blocks == 0 || n <= max_blocks);
}

/* capf_check_value applies the layout rule of a known tag to its value. */
static capf_err_t capf_check_value(const capf_tag_info_t *ti, const CBS *v) {
    uint16_t type;
    CBS der;
    switch ((capf_kind_t)ti->kind) {
    case CAPF_K_STRING:
        return capf_check_string(v) ? CAPF_OK : CAPF_E_STRING;
    case CAPF_K_CERT:
        return capf_cert_split(v, &type, &der) ? CAPF_OK : CAPF_E_CERT_ELEMENT;
    case CAPF_K_BLOCKS:
        return capf_check_blocks(v, 0) ? CAPF_OK : CAPF_E_NESTED;
    case CAPF_K_BLOCK1:
        return capf_check_blocks(v, 1) ? CAPF_OK : CAPF_E_NESTED;
    default:
        return CAPF_OK;     /* fixed sizes: the length check was enough */
    }
}

/* capf_elements walks the body (§2.10 rules 4 to 6). */
static capf_err_t capf_elements(capf_msg_t *out) {
    CBS body = out->body;
    while (CBS_len(&body) > 0) {
        uint8_t tag;
        CBS v;
        if (!CBS_get_u8(&body, &tag) || !CBS_get_u16_length_prefixed(&body, &v))
            return CAPF_E_ELEMENT_TRUNCATED;
        if (tag == 0)
            return CAPF_E_TAG;
        const capf_tag_info_t *ti = capf_known_tag(tag);
        if (ti == NULL) {
            if (out->num_unknown++ == 0)
                out->first_unknown = tag;
            continue;
        }
        if (CBS_len(&v) < ti->min_len || CBS_len(&v) > ti->max_len)
            return CAPF_E_ELEMENT_LENGTH;
        if (out->present & CAPF_BIT(tag))
            return CAPF_E_DUPLICATE;
        capf_err_t err = capf_check_value(ti, &v);
        if (err != CAPF_OK)
            return err;
        out->present |= CAPF_BIT(tag);
        out->elem[tag] = v;
    }
    return CAPF_OK;
}

/* capf_parse_body reads header fields and elements of a message whose
 * header capf_msg_need accepted and whose length is exact. */
static capf_err_t capf_parse_body(capf_msg_t *out, const uint8_t *buf, size_t len) {
    CBS in;
    uint8_t magic, op;
    CBS_init(&in, buf, len);
    if (!CBS_get_u8(&in, &magic) || !CBS_get_u8(&in, &op) ||
        !CBS_get_u32(&in, &out->session_id) ||
        !CBS_get_u16_length_prefixed(&in, &out->body) || CBS_len(&in) != 0)
        return CAPF_E_TRUNCATED;           /* not reached: capf_msg_need agreed */
    out->op = (capf_op_t)op;
    capf_err_t err = capf_elements(out);
    if (err != CAPF_OK)
        return err;
    const capf_op_info_t *oi = &capf_ops[op];
    if ((out->present & oi->need_all) != oi->need_all ||
        (oi->need_any != 0 && (out->present & oi->need_any) == 0))
        return CAPF_E_MISSING;
    return CAPF_OK;
}

capf_err_t capf_msg_parse(capf_msg_t *out, const uint8_t *buf, size_t len) {
    size_t need;
    capf_err_t err;

    memset(out, 0, sizeof(*out));
    err = capf_msg_need(buf, len, &need);
    if (err == CAPF_PARTIAL)
        err = len < CAPF_HEADER_LEN ? CAPF_E_SHORT_HEADER : CAPF_E_TRUNCATED;
    else if (err == CAPF_OK && need != len)
        err = CAPF_E_TRAILING;
    else if (err == CAPF_OK)
        err = capf_parse_body(out, buf, len);
    if (err != CAPF_OK)
        memset(out, 0, sizeof(*out));
    return err;
}

/* ---- accessors --------------------------------------------------------- */

bool capf_msg_has(const capf_msg_t *m, unsigned tag) {
    return tag <= CAPF_TAG__MAX && (m->present & CAPF_BIT(tag)) != 0;
}

capf_err_t capf_msg_get(const capf_msg_t *m, unsigned tag, CBS *out) {
    if (!capf_msg_has(m, tag)) {
        CBS_init(out, NULL, 0);
        return CAPF_E_ABSENT;
    }
    *out = m->elem[tag];
    return CAPF_OK;
}

/* capf_kind_of returns the layout of `tag`, CAPF_K_UNKNOWN if not known. */
static capf_kind_t capf_kind_of(unsigned tag) {
    const capf_tag_info_t *ti = capf_known_tag(tag);
    return ti ? (capf_kind_t)ti->kind : CAPF_K_UNKNOWN;
}

capf_err_t capf_msg_u8(const capf_msg_t *m, unsigned tag, uint8_t *out) {
    capf_kind_t kind = capf_kind_of(tag);
    CBS v;
    uint8_t b;
    if (kind != CAPF_K_U8 && kind != CAPF_K_ENUM8)
        return CAPF_E_ARG;
    if (capf_msg_get(m, tag, &v) != CAPF_OK)
        return CAPF_E_ABSENT;
    if (!CBS_get_u8(&v, &b))
        return CAPF_E_ELEMENT_LENGTH;      /* not reached: parser checked */
    if (kind == CAPF_K_ENUM8 && (b < capf_tags[tag].enum_min || b > capf_tags[tag].enum_max))
        return CAPF_E_ENUM;
    *out = b;
    return CAPF_OK;
}

capf_err_t capf_msg_u16(const capf_msg_t *m, unsigned tag, uint16_t *out) {
    CBS v;
    if (capf_kind_of(tag) != CAPF_K_U16)
        return CAPF_E_ARG;
    if (capf_msg_get(m, tag, &v) != CAPF_OK)
        return CAPF_E_ABSENT;
    return CBS_get_u16(&v, out) ? CAPF_OK : CAPF_E_ELEMENT_LENGTH;
}

capf_err_t capf_msg_string(const capf_msg_t *m, unsigned tag, CBS *out) {
    CBS v;
    if (capf_kind_of(tag) != CAPF_K_STRING)
        return CAPF_E_ARG;
    if (capf_msg_get(m, tag, &v) != CAPF_OK) {
        *out = v;
        return CAPF_E_ABSENT;
    }
    /* The parser guaranteed a final 00: the text is everything before it. */
    return CBS_get_bytes(&v, out, CBS_len(&v) - 1) ? CAPF_OK : CAPF_E_STRING;
}

/* capf_name_char: [A-Za-z0-9._-] (§2.10 rule 7). */
static bool capf_name_char(uint8_t c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

capf_err_t capf_msg_device_name(const capf_msg_t *m, size_t max_len, CBS *out) {
    CBS name, walk;
    uint8_t c, prev = 0;
    capf_err_t err = capf_msg_string(m, CAPF_TAG_DEVICE_NAME, &name);
    CBS_init(out, NULL, 0);
    if (err != CAPF_OK)
        return err;
    if (max_len == 0)
        max_len = CAPF_DEVICE_NAME_MAX;
    if (CBS_len(&name) == 0 || CBS_len(&name) > max_len)
        return CAPF_E_NAME;
    walk = name;
    while (CBS_get_u8(&walk, &c)) {
        /* A leading '.' or ".." anywhere: never a path component. */
        if (!capf_name_char(c) || (c == '.' && (prev == 0 || prev == '.')))
            return CAPF_E_NAME;
        prev = c;
    }
    *out = name;
    return CAPF_OK;
}

capf_err_t capf_msg_cert(const capf_msg_t *m, capf_cert_type_t *type, CBS *der) {
    CBS v;
    uint16_t t;
    CBS_init(der, NULL, 0);
    if (capf_msg_get(m, CAPF_TAG_CERTIFICATE, &v) != CAPF_OK)
        return CAPF_E_ABSENT;
    if (!capf_cert_split(&v, &t, der))
        return CAPF_E_CERT_ELEMENT;        /* not reached: parser checked */
    if (t < CAPF_CERT_LSC || t > CAPF_CERT__MAX) {
        CBS_init(der, NULL, 0);
        return CAPF_E_ENUM;
    }
    *type = (capf_cert_type_t)t;
    return CAPF_OK;
}

capf_err_t capf_msg_sha2_signed(const capf_msg_t *m, capf_hash_t *hash, CBS *sig) {
    CBS v;
    uint8_t id;
    CBS_init(sig, NULL, 0);
    if (capf_msg_get(m, CAPF_TAG_SHA2_SIGNED_DATA, &v) != CAPF_OK)
        return CAPF_E_ABSENT;
    if (!capf_block_get(&v, &id, sig))
        return CAPF_E_NESTED;              /* not reached: parser checked */
    if (id < CAPF_HASH_SHA1 || id > CAPF_HASH__MAX) {
        CBS_init(sig, NULL, 0);
        return CAPF_E_ENUM;
    }
    *hash = (capf_hash_t)id;
    return CAPF_OK;
}

/* ---- building ---------------------------------------------------------- */

/* capf_out_shape: is `m->present` one of the element sets of §2.9 for
 * `m->op`? KEY_GENERATE_REQUEST also ties KEY_TYPE to KEY_SIZE / CURVE. */
static bool capf_out_shape(const capf_msg_out_t *m) {
    uint32_t p = m->present;
    switch (m->op) {
    case CAPF_OP_AUTH_REQUEST:
        return p == B(VERSION) || p == (B(VERSION) | B(AUTH_TYPE));
    case CAPF_OP_KEY_GENERATE_REQUEST:
        return p == B(KEY_SIZE) ||
               (p == (B(KEY_SIZE) | B(KEY_TYPE)) && m->key_type == CAPF_KEY_RSA) ||
               (p == (B(KEY_TYPE) | B(CURVE)) && m->key_type == CAPF_KEY_EC);
    case CAPF_OP_STORE_CERTIFICATE_REQUEST:
        return p == (B(CERTIFICATE_TYPE) | B(CERTIFICATE));
    case CAPF_OP_FETCH_CERTIFICATE_REQUEST:
    case CAPF_OP_DELETE_CERTIFICATE_REQUEST:
        return p == 0;
    case CAPF_OP_END_SESSION:
        return p == B(REASON);
    case CAPF_OP_STATUS_RESPONSE: /* only in answer to a STATUS_REQUEST (§4.3.4) */
        return p == B(REASON) && m->reason == CAPF_REASON_UPDATE_CERTIFICATE;
    default:
        return false;   /* not a message the server sends (§4.3 rule 1) */
    }
}

/* capf_out_values checks the value of every present element. */
static bool capf_out_values(const capf_msg_out_t *m) {
    uint32_t p = m->present;
    uint16_t ks = m->key_size;
    CBS der = m->cert_der, elem;
    if ((p & B(REASON)) && m->reason != CAPF_REASON_UPDATE_CERTIFICATE &&
        m->reason != CAPF_REASON_INVALID_ELEMENT && m->reason != CAPF_REASON_UNKNOWN_DEVICE)
        return false;
    if ((p & B(VERSION)) && m->version != 2 && m->version != 3)
        return false;
    if ((p & B(AUTH_TYPE)) && (unsigned)m->auth_type > CAPF_AUTH__MAX)
        return false;
    if ((p & B(KEY_SIZE)) && ks != 512 && ks != 1024 && ks != 2048 && ks != 3072 && ks != 4096)
        return false;
    if ((p & B(KEY_TYPE)) && (unsigned)m->key_type > CAPF_KEY__MAX)
        return false;
    if ((p & B(CURVE)) && (unsigned)m->curve > CAPF_CURVE__MAX)
        return false;
    if ((p & (B(CERTIFICATE_TYPE) | B(CERTIFICATE))) &&
        (m->cert_type < CAPF_CERT_LSC || m->cert_type > CAPF_CERT__MAX))
        return false;
    if ((p & B(CERTIFICATE)) &&
        (!CBS_get_asn1_element(&der, &elem, CBS_ASN1_SEQUENCE) || CBS_len(&der) != 0))
        return false;
    return true;
}

/* capf_out_body_len: bytes of the body `m` describes (shape already valid). */
static size_t capf_out_body_len(const capf_msg_out_t *m) {
    size_t n = 0;
    for (unsigned tag = 1; tag <= CAPF_TAG__MAX; tag++) {
        if (!(m->present & CAPF_BIT(tag)))
            continue;
        if (tag == CAPF_TAG_CERTIFICATE)
            n += 3 + 3 + 2 + CBS_len(&m->cert_der);
        else
            n += 3 + capf_tags[tag].min_len;   /* fixed-size elements */
    }
    return n;
}

/* capf_out_value writes the value of `tag` into `v`. */
static bool capf_out_value(CBB *v, const capf_msg_out_t *m, unsigned tag) {
    CBB inner;
    switch (tag) {
    case CAPF_TAG_REASON: return CBB_add_u8(v, m->reason);
    case CAPF_TAG_CERTIFICATE_TYPE: return CBB_add_u8(v, (uint8_t)m->cert_type);
    case CAPF_TAG_VERSION: return CBB_add_u8(v, m->version);
    case CAPF_TAG_AUTH_TYPE: return CBB_add_u8(v, (uint8_t)m->auth_type);
    case CAPF_TAG_KEY_SIZE: return CBB_add_u16(v, m->key_size);
    case CAPF_TAG_KEY_TYPE: return CBB_add_u8(v, (uint8_t)m->key_type);
    case CAPF_TAG_CURVE: return CBB_add_u8(v, (uint8_t)m->curve);
    case CAPF_TAG_CERTIFICATE:
        return CBB_add_u8(v, 0x01) && CBB_add_u16_length_prefixed(v, &inner) &&
               CBB_add_u16(&inner, (uint16_t)m->cert_type) &&
               CBB_add_bytes(&inner, CBS_data(&m->cert_der), CBS_len(&m->cert_der));
    default:
        return false;
    }
}

capf_err_t capf_msg_build(CBB *out, const capf_msg_out_t *m) {
    CBB body, v;

    if (!capf_out_shape(m))
        return CAPF_E_ARG;
    if (CBS_len(&m->cert_der) > CAPF_SERVER_MSG_MAX ||
        CAPF_HEADER_LEN + capf_out_body_len(m) > CAPF_SERVER_MSG_MAX)
        return CAPF_E_OVERSIZE;
    if (!capf_out_values(m))
        return CAPF_E_ARG;
    if (!CBB_add_u8(out, CAPF_MAGIC) || !CBB_add_u8(out, (uint8_t)m->op) ||
        !CBB_add_u32(out, m->session_id) || !CBB_add_u16_length_prefixed(out, &body))
        return CAPF_E_BUFFER;
    for (unsigned tag = 1; tag <= CAPF_TAG__MAX; tag++) {
        if (!(m->present & CAPF_BIT(tag)))
            continue;
        if (!CBB_add_u8(&body, (uint8_t)tag) || !CBB_add_u16_length_prefixed(&body, &v) ||
            !capf_out_value(&v, m, tag))
            return CAPF_E_BUFFER;
    }
    return CBB_flush(out) ? CAPF_OK : CAPF_E_BUFFER;
}
