/* capf_msg: the CAPF wire codec (capf-protocol.md §2): the 8-byte header
 * (magic 0x55, opcode, session id, body length) and the TLV elements of the
 * body. Client bytes are untrusted and are read only with CBS cursors; the
 * parser never allocates and returns views into the caller's buffer. The
 * builder writes one whole server message per call into a CBB, so a session
 * can hand it to a single SSL_write (§1.1: one message, one TLS record).
 * Codecs never touch sockets: a session reads the header, asks
 * capf_msg_need how many bytes the message has, reads them, then calls
 * capf_msg_parse on exactly that many bytes (§2.10 rules 1 and 3).
 * The parser checks structure only (header, per-opcode body limits, TLV
 * framing, per-tag lengths, duplicates, required elements, the CERTIFICATE
 * wrapper of §2.6); values are checked by the accessors (enumeration ranges,
 * device-name characters) and by the session (state, session id, policy).
 * Thread: any thread (polling cores); pure functions, no shared state. */
#ifndef CAPF_MSG_H
#define CAPF_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/bytestring.h>

#include "dataplane/capf_err.h"

/* Wire constants (§2.1, §1.1). */
#define CAPF_MAGIC 0x55
#define CAPF_HEADER_LEN 8
/* Largest server message: Jabber4Linux-class clients read one recv(4096). */
#define CAPF_SERVER_MSG_MAX 4096
/* Default longest device name, without its 00 (§2.10 rule 7). */
#define CAPF_DEVICE_NAME_MAX 15

/* capf_op_t: opcodes (§2.3, usecallmanagernz names). 00 and 18..ff are
 * unknown and rejected by the parser (CAPF_E_OPCODE). */
typedef enum {
    CAPF_OP_AUTH_REQUEST = 0x01,               /* S->C hello */
    CAPF_OP_AUTH_RESPONSE = 0x02,              /* C->S */
    CAPF_OP_KEY_GENERATE_REQUEST = 0x03,       /* S->C */
    CAPF_OP_KEY_GENERATE_RESPONSE = 0x04,      /* C->S */
    CAPF_OP_ENCRYPT_RESPONSE = 0x05,           /* use unknown */
    CAPF_OP_ENCRYPT_REQUEST = 0x06,            /* use unknown */
    CAPF_OP_DECRYPT_REQUEST = 0x07,            /* use unknown */
    CAPF_OP_DECRYPT_RESPONSE = 0x08,           /* use unknown */
    CAPF_OP_STORE_CERTIFICATE_REQUEST = 0x09,  /* S->C */
    CAPF_OP_STORE_CERTIFICATE_RESPONSE = 0x0a, /* C->S */
    CAPF_OP_FETCH_CERTIFICATE_REQUEST = 0x0b,  /* S->C */
    CAPF_OP_FETCH_CERTIFICATE_RESPONSE = 0x0c, /* C->S */
    CAPF_OP_DELETE_CERTIFICATE_REQUEST = 0x0d, /* S->C */
    CAPF_OP_DELETE_CERTIFICATE_RESPONSE = 0x0e, /* C->S */
    CAPF_OP_END_SESSION = 0x0f,                /* S->C, last message */
    CAPF_OP_RETRY_LATER = 0x10,                /* S->C?, never sent (§4.3.6) */
    CAPF_OP_REQUEST_IN_PROGRESS = 0x11,        /* C->S, empty body */
    CAPF_OP_STATUS_REQUEST = 0x12,             /* C->S? (§4.3.4) */
    CAPF_OP_STATUS_RESPONSE = 0x13,            /* S->C? */
    CAPF_OP_ABORT_REQUEST = 0x14,              /* C->S? (§4.3.4) */
    CAPF_OP_ABORT_RESPONSE = 0x15,             /* S->C? */
    CAPF_OP_SIGN_CERTIFICATE_REQUEST = 0x16,   /* use unknown */
    CAPF_OP_SIGN_CERTIFICATE_RESPONSE = 0x17,  /* use unknown */
} capf_op_t;
#define CAPF_OP__MAX 0x17

/* capf_tag_t: element tags (§2.4). 00 is invalid (CAPF_E_TAG); 0e, 0f and
 * 15..ff are unknown: the parser skips and counts them (§2.10 rule 6). */
typedef enum {
    CAPF_TAG_REASON = 0x01,           /* u8, capf_reason_t */
    CAPF_TAG_REASON_INFO = 0x02,      /* opaque bytes, meaning unknown */
    CAPF_TAG_CERTIFICATE_TYPE = 0x03, /* u8, capf_cert_type_t */
    CAPF_TAG_CERTIFICATE = 0x04,      /* nested, §2.6: capf_msg_cert */
    CAPF_TAG_CERTIFICATE_ID = 0x05,   /* opaque, format unknown */
    CAPF_TAG_SIGNED_DATA = 0x06,      /* signature bytes (§2.8) */
    CAPF_TAG_VERSION = 0x07,          /* u8 protocol version */
    CAPF_TAG_AUTH_TYPE = 0x08,        /* u8, capf_auth_type_t */
    CAPF_TAG_PUBLIC_KEY = 0x09,       /* DER SubjectPublicKeyInfo (§3) */
    CAPF_TAG_KEY_SIZE = 0x0a,         /* u16 bits */
    CAPF_TAG_PASSWORD = 0x0b,         /* string + 00, may be empty */
    CAPF_TAG_RETRY_DELAY = 0x0c,      /* opaque, format unknown */
    CAPF_TAG_DEVICE_NAME = 0x0d,      /* string + 00 */
    CAPF_TAG_SUDI_DATA = 0x10,        /* blocks u8 | u16 len | data (§2.8) */
    CAPF_TAG_KEY_TYPE = 0x11,         /* u8, capf_key_type_t */
    CAPF_TAG_CURVE = 0x12,            /* u8, capf_curve_t */
    CAPF_TAG_DIGEST_TYPE = 0x13,      /* opaque, format unknown */
    CAPF_TAG_SHA2_SIGNED_DATA = 0x14, /* one block: hash id | u16 len | sig */
} capf_tag_t;
#define CAPF_TAG__MAX 0x14
/* CAPF_BIT: the bit of a tag in capf_msg_t.present / capf_msg_out_t.present. */
#define CAPF_BIT(tag) (UINT32_C(1) << (tag))

/* capf_reason_t: REASON values (§2.5.1). Clients may send others; the
 * builder sends only UPDATE_CERTIFICATE, INVALID_ELEMENT, UNKNOWN_DEVICE. */
typedef enum {
    CAPF_REASON_NO_ACTION = 0x00,
    CAPF_REASON_UPDATE_CERTIFICATE = 0x01, /* success / proceed */
    CAPF_REASON_INVALID_ELEMENT = 0x07,    /* every refusal but unknown device */
    CAPF_REASON_UNKNOWN_DEVICE = 0x09,
} capf_reason_t;
#define CAPF_REASON__MAX 0x09

/* capf_auth_type_t: AUTH_TYPE values (§2.5.2). */
typedef enum {
    CAPF_AUTH_NONE = 0,
    CAPF_AUTH_PASSWORD = 1,   /* authentication string */
    CAPF_AUTH_NULL_STRING = 2,
    CAPF_AUTH_LSC = 3,        /* LSC, falls back to MIC */
    CAPF_AUTH_MIC = 4,
} capf_auth_type_t;
#define CAPF_AUTH__MAX 4

/* capf_cert_type_t: CERTIFICATE_TYPE and the 16-bit type inside the
 * CERTIFICATE element (§2.6). */
typedef enum { CAPF_CERT_LSC = 1, CAPF_CERT_MIC = 2 } capf_cert_type_t;
#define CAPF_CERT__MAX 2

/* capf_key_type_t: KEY_TYPE values. */
typedef enum { CAPF_KEY_RSA = 0, CAPF_KEY_EC = 1 } capf_key_type_t;
#define CAPF_KEY__MAX 1

/* capf_curve_t: CURVE values. */
typedef enum { CAPF_CURVE_P256 = 0, CAPF_CURVE_P384 = 1, CAPF_CURVE_P521 = 2 } capf_curve_t;
#define CAPF_CURVE__MAX 2

/* capf_hash_t: hash ids of SHA2_SIGNED_DATA and SUDI blocks. */
typedef enum { CAPF_HASH_SHA1 = 1, CAPF_HASH_SHA256 = 2, CAPF_HASH_SHA512 = 3 } capf_hash_t;
#define CAPF_HASH__MAX 3

/* capf_dir_t: which side sends an opcode, as far as it is known (§2.3). */
typedef enum {
    CAPF_DIR_UNKNOWN = 0,   /* name only; no known use */
    CAPF_DIR_TO_CLIENT,     /* server -> client */
    CAPF_DIR_TO_SERVER,     /* client -> server */
} capf_dir_t;

/* To-string functions for logs. Each returns a static string, the
 * doc's name of the value ("AUTH_RESPONSE", "P-384", ...), or "unknown"
 * for values without a name. None can fail. Thread: any thread. */
const char *capf_op_str(unsigned op);
const char *capf_tag_str(unsigned tag);
const char *capf_reason_str(unsigned reason);
const char *capf_auth_type_str(unsigned auth_type);
const char *capf_cert_type_str(unsigned cert_type);
const char *capf_key_type_str(unsigned key_type);
const char *capf_curve_str(unsigned curve);
const char *capf_hash_str(unsigned hash);

/* capf_op_dir says who sends `op` (§2.3, §4.3.4); CAPF_DIR_UNKNOWN for
 * opcodes with no known use and for unassigned values. A session uses it to
 * refuse server-only opcodes from a client (§6.3 M13). */
capf_dir_t capf_op_dir(unsigned op);

/* capf_op_max_body returns the largest body length accepted for `op`
 * (§2.10 rule 1: AUTH_RESPONSE 16384, KEY_GENERATE_RESPONSE 2048,
 * FETCH_CERTIFICATE_RESPONSE 8192, STORE_CERTIFICATE_REQUEST 4088 (§1.1:
 * whole message <= 4096), every other known opcode 64), or 0 for an unknown
 * opcode. */
size_t capf_op_max_body(unsigned op);

/* capf_msg_need looks at the start of a receive buffer (`len` bytes so far)
 * and says how long the message there is. The header is checked as soon as
 * its bytes are there: magic from byte 1, opcode from byte 2, the body
 * length against capf_op_max_body from byte 8, so an oversize length is
 * refused before any body byte is read (§2.10 rule 1, §6.3 M3).
 * Ownership: `buf` is only read. `buf` may be NULL when `len` is 0.
 * Returns CAPF_PARTIAL with *need = bytes needed to go on (8 while the header
 * is incomplete, then 8 + body length); CAPF_OK with *need = the whole
 * message length (<= len; bytes after it belong to the next message, §6.3
 * M14); or CAPF_E_MAGIC, CAPF_E_OPCODE, CAPF_E_OVERSIZE (*need = 0). */
capf_err_t capf_msg_need(const uint8_t *buf, size_t len, size_t *need);

/* capf_msg_t: one parsed message. Every CBS points into the buffer given to
 * capf_msg_parse, which must outlive the capf_msg_t. */
typedef struct {
    capf_op_t op;
    uint32_t session_id;          /* checking it is the session's job */
    CBS body;                     /* the body (all elements) */
    uint32_t present;             /* CAPF_BIT(tag) for every known tag seen */
    CBS elem[CAPF_TAG__MAX + 1];  /* value of known tag t at [t]; empty if absent */
    unsigned num_unknown;         /* unknown-tag elements skipped (rule 6) */
    uint8_t first_unknown;        /* tag of the first one, for logs; 0 if none */
} capf_msg_t;

/* capf_msg_parse parses exactly one message: `buf` must hold the 8-byte
 * header and exactly the body length it announces (use capf_msg_need to
 * find that length). It checks, in this order: header (magic, known opcode,
 * body limit, length), element framing, tag 00, per-tag length (1 for
 * REASON, VERSION, AUTH_TYPE, KEY_TYPE, CURVE, CERTIFICATE_TYPE; 2 for
 * KEY_SIZE; DEVICE_NAME 2..65 and PASSWORD 1..65 bytes ending in the only
 * 00; PUBLIC_KEY and SIGNED_DATA non-empty), duplicate known tags, the
 * nested layouts (CERTIFICATE wrapper of §2.6 around one DER element,
 * SHA2_SIGNED_DATA and SUDI_DATA blocks), then the elements the opcode needs
 * (AUTH_REQUEST: VERSION; AUTH_RESPONSE: DEVICE_NAME; KEY_GENERATE_REQUEST:
 * KEY_SIZE or KEY_TYPE; KEY_GENERATE_RESPONSE: PUBLIC_KEY or REASON;
 * STORE_CERTIFICATE_REQUEST: CERTIFICATE_TYPE and CERTIFICATE;
 * STORE/FETCH/DELETE_CERTIFICATE_RESPONSE and END_SESSION: REASON).
 * Unknown tags are skipped and counted. Element order is free.
 * It does not check the direction of the opcode, the session id or
 * enumeration values (accessors do).
 * Ownership: `out` gets views into `buf` (not copied, nothing allocated).
 * `out` is zeroed first, so it never holds stale views.
 * Returns CAPF_OK or the first failure: CAPF_E_SHORT_HEADER, CAPF_E_MAGIC,
 * CAPF_E_OPCODE, CAPF_E_OVERSIZE, CAPF_E_TRUNCATED, CAPF_E_TRAILING,
 * CAPF_E_ELEMENT_TRUNCATED, CAPF_E_TAG, CAPF_E_ELEMENT_LENGTH,
 * CAPF_E_STRING, CAPF_E_DUPLICATE, CAPF_E_CERT_ELEMENT, CAPF_E_NESTED,
 * CAPF_E_MISSING. */
capf_err_t capf_msg_parse(capf_msg_t *out, const uint8_t *buf, size_t len);

/* capf_msg_has says whether the known tag `tag` was in the message. */
bool capf_msg_has(const capf_msg_t *m, unsigned tag);

/* capf_msg_get sets *out to the raw value of known tag `tag` (a view; for
 * PUBLIC_KEY the SPKI DER, for SUDI_DATA the block list).
 * Returns CAPF_OK or CAPF_E_ABSENT (*out empty). */
capf_err_t capf_msg_get(const capf_msg_t *m, unsigned tag, CBS *out);

/* capf_msg_u8 reads a one-byte element (REASON, VERSION, AUTH_TYPE,
 * CERTIFICATE_TYPE, KEY_TYPE, CURVE). For AUTH_TYPE, CERTIFICATE_TYPE,
 * KEY_TYPE and CURVE the value must be in its table of §2.5.2; REASON and
 * VERSION may hold any value (the session decides, §4.2).
 * Returns CAPF_OK, CAPF_E_ABSENT, CAPF_E_ENUM (value out of its table), or
 * CAPF_E_ARG (`tag` is not a one-byte tag). *out is set only on CAPF_OK. */
capf_err_t capf_msg_u8(const capf_msg_t *m, unsigned tag, uint8_t *out);

/* capf_msg_u16 reads a two-byte big-endian element (KEY_SIZE).
 * Returns CAPF_OK, CAPF_E_ABSENT or CAPF_E_ARG (not a two-byte tag). */
capf_err_t capf_msg_u16(const capf_msg_t *m, unsigned tag, uint16_t *out);

/* capf_msg_string sets *out to a string element (DEVICE_NAME, PASSWORD)
 * without its final 00 (a view; PASSWORD may be empty, §2.8 null string).
 * The parser has already checked there is no other 00.
 * Returns CAPF_OK, CAPF_E_ABSENT or CAPF_E_ARG (not a string tag). */
capf_err_t capf_msg_string(const capf_msg_t *m, unsigned tag, CBS *out);

/* capf_msg_device_name sets *out to the device name without its 00 after
 * checking it (§2.10 rule 7, §6.3 M9): 1 to `max_len` characters (0 means
 * CAPF_DEVICE_NAME_MAX) from [A-Za-z0-9._-], not starting with '.' and
 * without "..", so it is safe in file names and logs.
 * Returns CAPF_OK, CAPF_E_ABSENT or CAPF_E_NAME. */
capf_err_t capf_msg_device_name(const capf_msg_t *m, size_t max_len, CBS *out);

/* capf_msg_cert reads the CERTIFICATE element (§2.6): *type gets the 16-bit
 * type (1 LSC, 2 MIC), *der the certificate DER (a view: one DER element,
 * nothing after it, as the parser checked; the X.509 contents are for the
 * certificate verifier to judge).
 * Returns CAPF_OK, CAPF_E_ABSENT or CAPF_E_ENUM (type not 1 or 2). */
capf_err_t capf_msg_cert(const capf_msg_t *m, capf_cert_type_t *type, CBS *der);

/* capf_msg_sha2_signed reads SHA2_SIGNED_DATA (§2.8): *hash the hash id,
 * *sig the signature (a view, non-empty).
 * Returns CAPF_OK, CAPF_E_ABSENT or CAPF_E_ENUM (hash id not 1..3). */
capf_err_t capf_msg_sha2_signed(const capf_msg_t *m, capf_hash_t *hash, CBS *sig);

/* capf_msg_out_t: one server message to build. `present` selects the
 * elements (CAPF_BIT(tag)); the fields of absent elements are ignored.
 * Elements are written in ascending tag order, which is the order of every
 * example in §2.9. */
typedef struct {
    capf_op_t op;
    uint32_t session_id;
    uint32_t present;
    uint8_t reason;               /* REASON: 01, 07 or 09 only (§2.5.1) */
    uint8_t version;              /* VERSION: 02 or 03 */
    capf_auth_type_t auth_type;   /* AUTH_TYPE */
    uint16_t key_size;            /* KEY_SIZE: 512, 1024, 2048, 3072, 4096 */
    capf_key_type_t key_type;     /* KEY_TYPE */
    capf_curve_t curve;           /* CURVE */
    capf_cert_type_t cert_type;   /* CERTIFICATE_TYPE and the type inside CERTIFICATE */
    CBS cert_der;                 /* CERTIFICATE: one DER element (not copied) */
} capf_msg_out_t;

/* capf_msg_build appends one whole server message (header + body) to `out`,
 * for one SSL_write. Only the combinations the server sends (§2.9, §2.7,
 * §4.3 rule 1) are accepted:
 *   AUTH_REQUEST                 VERSION [+ AUTH_TYPE]
 *   KEY_GENERATE_REQUEST         KEY_SIZE (v2) | KEY_SIZE + KEY_TYPE=RSA
 *                                | KEY_TYPE=EC + CURVE (v3)
 *   STORE_CERTIFICATE_REQUEST    CERTIFICATE_TYPE + CERTIFICATE
 *   FETCH/DELETE_CERTIFICATE_REQUEST  no element
 *   END_SESSION                  REASON
 *   STATUS_RESPONSE              REASON=01 (only as the answer to a client's
 *                                STATUS_REQUEST, §4.3.4)
 * and the whole message must fit CAPF_SERVER_MSG_MAX (a DER of at most 4076
 * bytes in a STORE_CERTIFICATE_REQUEST). Messages to version-2 clients need
 * at least one element (§1.1 rule 3): FETCH/DELETE are for phones only.
 * Ownership: nothing in `m` is kept. `out` is initialised by the caller
 * (CBB_init_fixed on a per-connection buffer needs no allocation).
 * Nothing is written unless `m` is valid; after CAPF_E_BUFFER the CBB is in
 * its error state and must be cleaned up.
 * Returns CAPF_OK, CAPF_E_ARG (opcode, element set or value not allowed),
 * CAPF_E_OVERSIZE or CAPF_E_BUFFER. */
capf_err_t capf_msg_build(CBB *out, const capf_msg_out_t *m);

#endif
