/* ra_device: the device record of the registry (CUCM's per-device CAPF
 * provisioning record, capf-protocol.md 5.1) and its field codec: parse and
 * validate operator input, encode a record as the field/value pairs of the
 * Redis hash `stp:dev:{NAME}` and decode it back (docs/redis-schema.md).
 * Pure functions, no I/O; the Redis operations are in ra_registry.h.
 * Authentication strings are never stored: only their SHA-512 crypt(3) hash.
 * Thread: any thread. */
#ifndef RA_DEVICE_H
#define RA_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bytestring.h>

#include "ra/ra_err.h"

#define RA_DEVICE_NAME_MAX 64
#define RA_DEVICE_HASH_MAX 128
#define RA_DEVICE_REASON_MAX 256
#define RA_DEVICE_SERIAL_MAX 128 /* hex digits */
#define RA_DEVICE_NUM_FIELDS 15
#define RA_DEVICE_PIDSN_MAX 24  /* PID / SN: [A-Za-z0-9./+=-] */

typedef enum { RA_OP_NONE = 0, RA_OP_INSTALL, RA_OP_DELETE, RA_OP_TROUBLESHOOT, RA_OP__COUNT } ra_op_t;

/* CUCM: By Null String, By Authentication String, By Existing Certificate
 * (precedence to LSC), (precedence to MIC). */
typedef enum { RA_AUTH_NULL = 0, RA_AUTH_STRING, RA_AUTH_LSC, RA_AUTH_MIC, RA_AUTH__COUNT } ra_auth_t;

/* Key types in the order of preference the operator gives. */
typedef enum {
    RA_KEY_RSA2048 = 0, RA_KEY_RSA3072, RA_KEY_RSA4096, RA_KEY_EC256, RA_KEY_EC384, RA_KEY_EC521,
    RA_KEY_RSA1024, RA_KEY_RSA512, /* CUCM offers them for old phones; CAPF serves them only
                                      when capf_rsa_min_bits allows */
    RA_KEY__COUNT
} ra_key_t;

/* CUCM's certificate operation status, coarse; the detail of a failure
 * (e.g. "deadline passed") is in `reason`. */
typedef enum {
    RA_STATUS_NONE = 0, RA_STATUS_PENDING, RA_STATUS_SUCCESS, RA_STATUS_FAILED, RA_STATUS__COUNT
} ra_status_t;

typedef struct {
    char name[RA_DEVICE_NAME_MAX + 1];
    ra_op_t op;
    ra_auth_t auth;
    char auth_hash[RA_DEVICE_HASH_MAX]; /* only for RA_AUTH_STRING */
    ra_key_t keys[RA_KEY__COUNT];
    size_t num_keys;                    /* >= 1 */
    int64_t by;                         /* deadline, unix seconds; 0 = none */
    ra_status_t status;
    char reason[RA_DEVICE_REASON_MAX];  /* for RA_STATUS_FAILED */
    char lsc_serial[RA_DEVICE_SERIAL_MAX + 1]; /* hex, "" = no LSC */
    int64_t lsc_not_after;              /* unix seconds, 0 = no LSC */
    int64_t auth_failures;
    int64_t created, updated;           /* unix seconds */
    char pid[RA_DEVICE_PIDSN_MAX + 1];  /* model PID (e.g. CP-8861) and serial */
    char sn[RA_DEVICE_PIDSN_MAX + 1];   /* number: the CUCM-style LSC subject; "" = unknown */
    /* Written by CAPF sessions (ra_capf.h), read-only here: never encoded
     * by ra_device_encode, kept by a replace (ra_registry_add). */
    char lsc_md5[33];                   /* hex MD5 of the current LSC (Jabber's certHash) */
    char lsc_sha256[65];                /* hex SHA-256 of the current LSC */
    char lsc_unconfirmed[RA_DEVICE_SERIAL_MAX + 1]; /* issued, store not yet confirmed */
    int64_t stale_lscs;                 /* LSCs issued but never confirmed */
    int64_t auth_lock_until;            /* unix seconds; refused until then */
    int64_t last_session;               /* unix seconds of the last CAPF session */
    char last_peer[80];                 /* its address */
} ra_device_t;

/* Field/value pairs of one record, pointing into `_buf`. */
typedef struct {
    const char *field[RA_DEVICE_NUM_FIELDS];
    const char *value[RA_DEVICE_NUM_FIELDS];
    size_t num;
    char _buf[1024];
} ra_device_fields_t;

/* ra_device_init fills `d` with the defaults for `name` (not validated):
 * op none, auth null, keys rsa2048, no deadline, status none. */
void ra_device_init(ra_device_t *d, const char *name);

/* ra_device_name_valid: 1..64 characters of [A-Za-z0-9_.-]. */
bool ra_device_name_valid(const char *name);

/* ra_op_parse / ra_auth_parse / ra_status_parse map the schema's words to
 * enums. Return RA_OK or RA_E_BAD_OP / RA_E_BAD_AUTH / RA_E_BAD_RECORD. */
ra_err_t ra_op_parse(const char *s, ra_op_t *out);
ra_err_t ra_auth_parse(const char *s, ra_auth_t *out);
ra_err_t ra_status_parse(const char *s, ra_status_t *out);

/* ra_op_name / ra_auth_name / ra_status_name / ra_key_name return the
 * schema's word (static storage), "?" if out of range. */
const char *ra_op_name(ra_op_t op);
const char *ra_auth_name(ra_auth_t a);
const char *ra_status_name(ra_status_t s);
const char *ra_key_name(ra_key_t k);

/* ra_keys_parse appends the comma-separated key names in `list` to
 * keys[*num_keys..]. Returns RA_OK, or RA_E_BAD_KEYS for an empty item, an
 * unknown name or a key already in the list (nothing appended then). */
ra_err_t ra_keys_parse(ra_key_t keys[RA_KEY__COUNT], size_t *num_keys, const char *list);

/* ra_keys_format writes keys as a comma list into `buf` ("" if it does not
 * fit). */
void ra_keys_format(const ra_key_t *keys, size_t num_keys, char *buf, size_t buf_len);

/* ra_pidsn_valid: "" or 1..24 characters of [A-Za-z0-9./+=-] (a PID or a
 * serial number as a MIC subject carries them). */
bool ra_pidsn_valid(const char *s);

/* ra_auth_string_valid: 4..10 ASCII digits (CUCM's rule). */
bool ra_auth_string_valid(const char *s);

/* ra_auth_string_hash hashes `s` with SHA-512 crypt(3) and a fresh salt into
 * `out`. Returns RA_OK, RA_E_BAD_AUTH_STRING if !ra_auth_string_valid(s), or
 * RA_E_NOMEM if crypt fails. */
ra_err_t ra_auth_string_hash(const char *s, char *out, size_t out_len);

/* ra_auth_string_check: true if `s` hashes to `hash`. Costs one crypt. */
bool ra_auth_string_check(const char *s, const char *hash);

/* ra_time_parse reads `YYYY-MM-DDTHH:MM[:SS]` as local time, or with a
 * trailing `Z` as UTC, into unix seconds. Returns RA_OK or RA_E_BAD_TIME. */
ra_err_t ra_time_parse(const char *s, int64_t *out);

/* ra_cbs_get_i64 reads all of `v` (untrusted) as a non-negative decimal of
 * at most 18 digits. Returns 1, or 0 if it is anything else. */
int ra_cbs_get_i64(CBS *v, int64_t *out);

/* ra_device_validate checks a record before it is stored: name, enums, at
 * least one key, a crypt hash ('$...') if auth is string and no hash
 * otherwise.
 * Returns RA_OK or the RA_E_BAD_* of the first problem. */
ra_err_t ra_device_validate(const ra_device_t *d);

/* ra_device_encode fills `f` with all fields of `d` (auth_hash only for
 * RA_AUTH_STRING). `f` must not move while its pointers are used. */
void ra_device_encode(ra_device_fields_t *f, const ra_device_t *d);

/* ra_device_decode fills `d` from `num` field/value pairs of an HGETALL
 * reply (untrusted: lengths given, no NUL needed; unknown fields ignored,
 * missing ones take defaults). `name` is the record's device name.
 * Returns RA_OK or RA_E_BAD_RECORD (with the field in `why`). */
ra_err_t ra_device_decode(ra_device_t *d, const char *name, const char *const *fields,
                          const size_t *field_lens, const char *const *values,
                          const size_t *value_lens, size_t num, char *why, size_t why_len);

#endif
