/* bench_capf_msg: the simulated phone of `stampede-bench capf`, as an engine
 * that consumes whole server messages and emits client messages (style rule
 * 6): device names, the three client messages of an install
 * (capf-protocol.md §2.7.1, bytes as in §2.9), and the client session that
 * checks every server message on the way. Server messages are parsed with
 * the server's own codec (dataplane/capf_msg.h), so the bench and stampeded
 * agree on the wire format by construction; what the phone additionally
 * insists on (the step's opcode, the hello's session id, the exact key
 * request, the LSC for our key and device) is checked here.
 * Why a separate engine rather than a copy of capf_sess: that one is the
 * server side; a phone only needs the happy path and a strict eye.
 * Thread: any (a session belongs to one worker). Pure: no sockets, no
 * allocation, no shared state. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "benches/bench.h"
#include "crypto/cx_cert.h"
#include "dataplane/capf_msg.h"

#define CAPF_V2_KEY_BITS 2048

static const char *const bench_capf_stage_text[BENCH_CAPF_AFTER__COUNT] = {
    [BENCH_CAPF_AFTER_AUTH] = "AUTH_RESPONSE",
    [BENCH_CAPF_AFTER_KEY] = "KEY_GENERATE_RESPONSE",
    [BENCH_CAPF_AFTER_STORE] = "STORE_CERTIFICATE_RESPONSE",
};

static const char *const bench_capf_state_text[BENCH_CAPF_S__COUNT] = {
    [BENCH_CAPF_S_HELLO] = "AUTH_REQUEST",
    [BENCH_CAPF_S_KEYREQ] = "KEY_GENERATE_REQUEST",
    [BENCH_CAPF_S_STORE] = "STORE_CERTIFICATE_REQUEST",
    [BENCH_CAPF_S_END] = "END_SESSION",
    [BENCH_CAPF_S_ENDED] = "close",
};

const char *bench_capf_stage_str(bench_capf_stage_t st) {
    return (unsigned)st < BENCH_CAPF_AFTER__COUNT ? bench_capf_stage_text[st] : "unknown";
}

const char *bench_capf_state_str(bench_capf_state_t st) {
    return (unsigned)st < BENCH_CAPF_S__COUNT ? bench_capf_state_text[st] : "unknown";
}

/* ---- device names -------------------------------------------------------- */

/* capf_name_char: the characters stampeded accepts in a device name. */
static bool capf_name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
}

bench_err_t bench_capf_names_init(bench_capf_names_t *n, const char *prefix, uint64_t count,
                                  char *why, size_t why_len) {
    size_t len = strlen(prefix);
    uint64_t room = 1;
    memset(n, 0, sizeof *n);
    if (len == 0 || len >= BENCH_CAPF_NAME_MAX || prefix[0] == '.' || strstr(prefix, "..")) {
        snprintf(why, why_len, "--devices '%s': 1 to %d characters, not starting with '.', "
                 "no '..'", prefix, BENCH_CAPF_NAME_MAX - 1);
        return BENCH_E_SETUP;
    }
    for (size_t i = 0; i < len; i++)
        if (!capf_name_char(prefix[i])) {
            snprintf(why, why_len, "--devices '%s': only A-Z a-z 0-9 . _ - allowed", prefix);
            return BENCH_E_SETUP;
        }
    n->digits = (unsigned)(BENCH_CAPF_NAME_MAX - len);
    for (unsigned i = 0; i < n->digits && room <= count; i++)
        room *= 10;
    if (room <= count) {            /* devices 1..count need count <= 10^digits - 1 */
        snprintf(why, why_len, "--devices '%s' leaves %u digits: at most %llu devices, not %llu "
                 "(a shorter prefix)", prefix, n->digits, (unsigned long long)(room - 1),
                 (unsigned long long)count);
        return BENCH_E_SETUP;
    }
    memcpy(n->prefix, prefix, len + 1);
    return BENCH_OK;
}

void bench_capf_name(const bench_capf_names_t *n, uint64_t num, char out[BENCH_CAPF_NAME_MAX + 1]) {
    /* names_init made prefix + digits exactly BENCH_CAPF_NAME_MAX; the
     * digits are the low ones of `num`. */
    size_t len = strlen(n->prefix);
    memcpy(out, n->prefix, len);
    for (unsigned i = n->digits; i > 0; i--, num /= 10)
        out[len + i - 1] = (char)('0' + num % 10);
    out[len + n->digits] = '\0';
}

/* ---- client messages ----------------------------------------------------- */

/* capf_put_elem appends tag | u16 length | value to `body`. */
static int capf_put_elem(CBB *body, uint8_t tag, const uint8_t *value, size_t len) {
    CBB v;
    return CBB_add_u8(body, tag) && CBB_add_u16_length_prefixed(body, &v) &&
           CBB_add_bytes(&v, value, len) && CBB_flush(body);
}

static int capf_put_u8(CBB *body, uint8_t tag, uint8_t value) {
    return capf_put_elem(body, tag, &value, 1);
}

/* capf_put_header opens a message: magic, opcode, session id, and `body`
 * under the u16 length. The caller adds the elements and CBB_flush(out). */
static int capf_put_header(CBB *out, CBB *body, uint8_t op, uint32_t session_id) {
    return CBB_add_u8(out, CAPF_MAGIC) && CBB_add_u8(out, op) && CBB_add_u32(out, session_id) &&
           CBB_add_u16_length_prefixed(out, body);
}

int bench_capf_build_auth(CBB *out, uint32_t session_id, uint8_t version, const char *device) {
    CBB body;
    const uint8_t *name = (const uint8_t *)device;
    size_t name_len = strlen(device) + 1;               /* the 00 is counted (§2.2) */
    if (!capf_put_header(out, &body, CAPF_OP_AUTH_RESPONSE, session_id))
        return 0;
    if (version <= 2)                                   /* Jabber order */
        return capf_put_u8(&body, CAPF_TAG_VERSION, version) &&
               capf_put_elem(&body, CAPF_TAG_DEVICE_NAME, name, name_len) &&
               capf_put_u8(&body, CAPF_TAG_REASON, CAPF_REASON_UPDATE_CERTIFICATE) &&
               CBB_flush(out);
    return capf_put_u8(&body, CAPF_TAG_REASON, CAPF_REASON_UPDATE_CERTIFICATE) &&  /* phone order */
           capf_put_u8(&body, CAPF_TAG_VERSION, version) &&
           capf_put_elem(&body, CAPF_TAG_DEVICE_NAME, name, name_len) && CBB_flush(out);
}

int bench_capf_build_keygen(CBB *out, uint32_t session_id, CBS spki) {
    CBB body;
    return capf_put_header(out, &body, CAPF_OP_KEY_GENERATE_RESPONSE, session_id) &&
           capf_put_elem(&body, CAPF_TAG_PUBLIC_KEY, CBS_data(&spki), CBS_len(&spki)) &&
           CBB_flush(out);
}

int bench_capf_build_store(CBB *out, uint32_t session_id, uint8_t reason) {
    CBB body;
    return capf_put_header(out, &body, CAPF_OP_STORE_CERTIFICATE_RESPONSE, session_id) &&
           capf_put_u8(&body, CAPF_TAG_REASON, reason) && CBB_flush(out);
}

/* ---- the LSC ------------------------------------------------------------- */

/* capf_name_has_cn reports whether the Name TLV `name` holds a commonName
 * attribute whose value is `cn` (any string type). */
static bool capf_name_has_cn(CBS name, const char *cn) {
    static const uint8_t oid_cn[] = {0x55, 0x04, 0x03};    /* 2.5.4.3 */
    CBS rdns, rdn, atv, oid, value;
    size_t cn_len = strlen(cn);
    if (!CBS_get_asn1(&name, &rdns, CBS_ASN1_SEQUENCE))
        return false;
    while (CBS_len(&rdns) > 0) {
        if (!CBS_get_asn1(&rdns, &rdn, CBS_ASN1_SET))
            return false;
        while (CBS_len(&rdn) > 0) {
            if (!CBS_get_asn1(&rdn, &atv, CBS_ASN1_SEQUENCE) ||
                !CBS_get_asn1(&atv, &oid, CBS_ASN1_OBJECT) ||
                !CBS_get_any_asn1(&atv, &value, NULL))
                return false;
            if (CBS_mem_equal(&oid, oid_cn, sizeof oid_cn) &&
                CBS_mem_equal(&value, (const uint8_t *)cn, cn_len))
                return true;
        }
    }
    return false;
}

bench_err_t bench_capf_lsc_check(CBS der, CBS spki, const char *device, CBS *serial,
                                 const char **why) {
    CBS subject, cert_spki;
    if (cx_cert_parse_basic(CBS_data(&der), CBS_len(&der), &subject, &cert_spki, serial,
                            NULL) != CX_OK) {
        *why = "the LSC does not parse as an X.509 certificate";
        return BENCH_E_CONTENT;
    }
    if (!CBS_mem_equal(&cert_spki, CBS_data(&spki), CBS_len(&spki))) {
        *why = "the LSC does not carry the public key the phone sent";
        return BENCH_E_CONTENT;
    }
    if (!capf_name_has_cn(subject, device)) {
        *why = "the LSC subject has no CN equal to the device name";
        return BENCH_E_CONTENT;
    }
    if (CBS_len(serial) == 0 || CBS_len(serial) > BENCH_SERIAL_MAX) {
        *why = "the LSC serial is empty or longer than 20 bytes";
        return BENCH_E_CONTENT;
    }
    return BENCH_OK;
}

/* ---- the session --------------------------------------------------------- */

void bench_capf_sess_init(bench_capf_sess_t *s, uint8_t version, bench_keytype_t key_type,
                          const char *device, CBS spki) {
    memset(s, 0, sizeof *s);
    s->state = BENCH_CAPF_S_HELLO;
    s->version = version;
    s->key_type = key_type;
    s->spki = spki;
    snprintf(s->device, sizeof s->device, "%s", device);
}

__attribute__((format(printf, 2, 3)))
static bench_capf_step_t capf_bad(bench_capf_sess_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    return BENCH_CAPF_BAD;
}

/* capf_end reads END_SESSION's reason and ends the session. */
static bench_capf_step_t capf_end(bench_capf_sess_t *s, const capf_msg_t *m) {
    static const bench_capf_stage_t stage_of[BENCH_CAPF_S__COUNT] = {
        [BENCH_CAPF_S_KEYREQ] = BENCH_CAPF_AFTER_AUTH,
        [BENCH_CAPF_S_STORE] = BENCH_CAPF_AFTER_KEY,
        [BENCH_CAPF_S_END] = BENCH_CAPF_AFTER_STORE,
    };
    uint8_t reason;
    if (capf_msg_u8(m, CAPF_TAG_REASON, &reason) != CAPF_OK)
        return capf_bad(s, "END_SESSION without REASON");
    s->end_reason = reason;
    s->end_stage = stage_of[s->state];
    bool stored = s->state == BENCH_CAPF_S_END;
    s->state = BENCH_CAPF_S_ENDED;
    return stored && reason == CAPF_REASON_UPDATE_CERTIFICATE ? BENCH_CAPF_DONE
                                                              : BENCH_CAPF_DECLINED;
}

/* capf_key_request checks KEY_GENERATE_REQUEST against the provisioned key
 * (§2.7.1 "Version differences"). Returns NULL or a static cause. */
static const char *capf_key_request(const bench_capf_sess_t *s, const capf_msg_t *m) {
    uint16_t bits = 0;
    uint8_t type = 0, curve = 0;
    bool has_size = capf_msg_u16(m, CAPF_TAG_KEY_SIZE, &bits) == CAPF_OK;
    bool has_type = capf_msg_u8(m, CAPF_TAG_KEY_TYPE, &type) == CAPF_OK;
    bool has_curve = capf_msg_u8(m, CAPF_TAG_CURVE, &curve) == CAPF_OK;
    if (s->version <= 2) {
        if (has_type || has_curve)
            return "KEY_TYPE or CURVE sent to a version 2 client (RSA only, KEY_SIZE only)";
        return has_size && bits == CAPF_V2_KEY_BITS ? NULL : "not KEY_SIZE 2048";
    }
    if (!has_type)
        return "no KEY_TYPE for a version 3 client";
    if (s->key_type == BENCH_KEY_RSA2048)
        return type == CAPF_KEY_RSA && has_size && bits == CAPF_V2_KEY_BITS && !has_curve
                   ? NULL : "not KEY_TYPE RSA + KEY_SIZE 2048 (the provisioned key)";
    return type == CAPF_KEY_EC && has_curve && curve == CAPF_CURVE_P256 && !has_size
               ? NULL : "not KEY_TYPE EC + CURVE P-256 (the provisioned key)";
}

/* capf_on_store checks the LSC, keeps its serial and answers "stored". */
static bench_capf_step_t capf_on_store(bench_capf_sess_t *s, const capf_msg_t *m, CBB *out) {
    uint8_t type;
    capf_cert_type_t inner;
    CBS der, serial;
    const char *why = NULL;
    if (capf_msg_u8(m, CAPF_TAG_CERTIFICATE_TYPE, &type) != CAPF_OK || type != CAPF_CERT_LSC ||
        capf_msg_cert(m, &inner, &der) != CAPF_OK || inner != CAPF_CERT_LSC)
        return capf_bad(s, "STORE_CERTIFICATE_REQUEST: certificate type is not LSC (01, 0001)");
    if (bench_capf_lsc_check(der, s->spki, s->device, &serial, &why) != BENCH_OK)
        return capf_bad(s, "STORE_CERTIFICATE_REQUEST: %s", why);
    memcpy(s->serial, CBS_data(&serial), CBS_len(&serial));
    s->serial_len = (uint8_t)CBS_len(&serial);
    s->state = BENCH_CAPF_S_END;
    if (!bench_capf_build_store(out, s->session_id, CAPF_REASON_UPDATE_CERTIFICATE))
        return capf_bad(s, "STORE_CERTIFICATE_RESPONSE does not fit the write buffer");
    return BENCH_CAPF_SEND;
}

/* capf_expected checks the opcode and session id of `m` for the state.
 * Returns NULL or a cause written into s->why. */
static const char *capf_expected(bench_capf_sess_t *s, const capf_msg_t *m) {
    static const uint8_t want[BENCH_CAPF_S__COUNT] = {
        [BENCH_CAPF_S_HELLO] = CAPF_OP_AUTH_REQUEST,
        [BENCH_CAPF_S_KEYREQ] = CAPF_OP_KEY_GENERATE_REQUEST,
        [BENCH_CAPF_S_STORE] = CAPF_OP_STORE_CERTIFICATE_REQUEST,
        [BENCH_CAPF_S_END] = CAPF_OP_END_SESSION,
    };
    bool end_ok = s->state == BENCH_CAPF_S_KEYREQ || s->state == BENCH_CAPF_S_STORE;
    if (s->state == BENCH_CAPF_S_ENDED ||
        (m->op != want[s->state] && !(end_ok && m->op == CAPF_OP_END_SESSION))) {
        snprintf(s->why, sizeof s->why, "got %s (%02x) where %s was due", capf_op_str(m->op),
                 m->op, bench_capf_state_str(s->state));
        return s->why;
    }
    if (s->state != BENCH_CAPF_S_HELLO && m->session_id != s->session_id) {
        snprintf(s->why, sizeof s->why, "%s carries session id %08x, the hello had %08x",
                 capf_op_str(m->op), m->session_id, s->session_id);
        return s->why;
    }
    if (s->version <= 2 && CBS_len(&m->body) == 0) {
        snprintf(s->why, sizeof s->why, "%s without elements to a version 2 client (§1.1 "
                 "rule 3)", capf_op_str(m->op));
        return s->why;
    }
    return NULL;
}

bench_capf_step_t bench_capf_sess_on_msg(bench_capf_sess_t *s, const uint8_t *msg, size_t len,
                                         CBB *out) {
    capf_msg_t m;
    capf_err_t e = capf_msg_parse(&m, msg, len);
    const char *why;
    if (e != CAPF_OK)
        return capf_bad(s, "malformed %s: %s", bench_capf_state_str(s->state), capf_err_str(e));
    if (capf_expected(s, &m) != NULL)
        return BENCH_CAPF_BAD;
    if (m.op == CAPF_OP_END_SESSION)
        return capf_end(s, &m);
    switch (s->state) {
    case BENCH_CAPF_S_HELLO:
        s->session_id = m.session_id;
        s->state = BENCH_CAPF_S_KEYREQ;
        if (!bench_capf_build_auth(out, s->session_id, s->version, s->device))
            return capf_bad(s, "AUTH_RESPONSE does not fit the write buffer");
        return BENCH_CAPF_SEND;
    case BENCH_CAPF_S_KEYREQ:
        if ((why = capf_key_request(s, &m)) != NULL)
            return capf_bad(s, "KEY_GENERATE_REQUEST: %s", why);
        s->state = BENCH_CAPF_S_STORE;
        if (!bench_capf_build_keygen(out, s->session_id, s->spki))
            return capf_bad(s, "KEY_GENERATE_RESPONSE does not fit the write buffer");
        return BENCH_CAPF_SEND;
    default:                                /* BENCH_CAPF_S_STORE */
        return capf_on_store(s, &m, out);
    }
}
