/* ra_req: the request lifecycle in Redis (docs/redis-schema.md): one hash
 * `stp:req:{IDENTITY}:SHA256` per enrollment request, where SHA256 is the
 * hex digest of the CSR's DER, so the same CSR from the same identity always
 * lands on the same record, and the set `stp:reqs:open` of requests that did
 * not end issued (for `stampedectl requests`).
 *
 * The decision is one script, run after the signing pool has checked the
 * CSR and (for an issuance) signed the certificate, and before anything is
 * sent. Per request:
 *   - the CSR already has an issued, still-valid certificate (a retry after
 *     a lost response) -> outcome EXISTING with that certificate; the new
 *     signature is discarded, never recorded, never sent;
 *   - a registry device whose operation is not install, or past its
 *     deadline -> outcome REFUSED (recorded as rejected; the signature is
 *     discarded);
 *   - else the request is recorded as issued (or rejected, for a denial) and
 *     for a device its status/LSC fields are updated;
 * then, in the same script, the stp:reqs:open index is updated and the
 * audit entry (issue / reissue / deny) is appended to stp:audit. One script
 * call carries a batch of requests (a polling core sends one per loop
 * iteration), so the record and its audit entry are one atomic step and the
 * Lua call cost is shared; requests whose identity could not be
 * established are batched as audit-only denials. An error on one request
 * (e.g. a key of the wrong type) is caught and reported for that request
 * only.
 * A simplereenroll that presents the very certificate recorded for this CSR
 * is a renewal, not a retry: the old record is kept as
 * `stp:req:{IDENTITY}:SHA256:SERIAL` and a new one is written.
 * Redis Cluster: a request and its device share the hash tag {IDENTITY};
 * a batch spans several slots plus stp:audit, so on a Cluster batches would
 * have to be grouped per slot with a per-slot audit stream (not done:
 * hiredis's async API has no Cluster support either). Standalone Redis and
 * Sentinel deployments are what stampeded supports.
 * The caller answers the client only after the script's reply: a
 * certificate is in Redis and the audit stream before it leaves the process.
 * Thread: pure functions; any thread. */
#ifndef RA_REQ_H
#define RA_REQ_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ra/ra_device.h"
#include "ra/ra_err.h"

#define RA_REQ_OPEN_SET "stp:reqs:open"
#define RA_REQ_UPSTREAM_STREAM "stp:upstream" /* online CA mode: work for stampede-control */
#define RA_REQ_IDENTITY_MAX 64
#define RA_REQ_ID_MAX (RA_REQ_IDENTITY_MAX + 1 + 64 + 1)
#define RA_REQ_KEY_MAX (RA_REQ_ID_MAX + 16)
#define RA_REQ_SERIAL_MAX 64 /* hex */
#define RA_REQ_REASON_MAX 160

/* ra_req_identity_valid: 1..64 characters of [A-Za-z0-9_.@-] (a user
 * name, device name or certificate CN usable inside a key's hash tag). */
bool ra_req_identity_valid(const char *s, size_t len);

/* ra_hex writes the `n` bytes `in` as 2n lower-case hex digits and a NUL
 * to `out` (2n + 1 bytes). This function can't fail. Thread: any. */
void ra_hex(char *out, const uint8_t *in, size_t n);

/* ra_req_id writes "IDENTITY:SHA256HEX" (the request id operators see);
 * ra_req_key writes its key "stp:req:{IDENTITY}:SHA256HEX". */
void ra_req_id(char *buf, size_t buf_len, const char *identity, const uint8_t sha256[32]);
void ra_req_key(char *buf, size_t buf_len, const char *identity, const uint8_t sha256[32]);
/* ra_req_key_of_id turns an id back into its key; RA_E_BAD_NAME if `id` is
 * not IDENTITY:64-hex. */
ra_err_t ra_req_key_of_id(char *buf, size_t buf_len, const char *id);

/* ra_req_record_t: what the caller asks the script to record. Strings and
 * buffers must outlive the ra_req_cmd_t built from it. */
typedef struct {
    const char *identity;       /* ra_req_identity_valid */
    bool device;                /* identity is a registry device (policy applies) */
    const char *protocol;       /* "est" | "capf" */
    const char *peer;           /* requester address */
    uint8_t csr_sha256[32];
    const uint8_t *csr_der;
    size_t csr_len;
    bool issue;                 /* true: cert_* set; false: a rejection with reason */
    const char *reason;         /* rejection cause */
    const uint8_t *cert_der;
    size_t cert_len;
    const char *serial_hex;
    int64_t not_after;          /* unix seconds */
    const char *renew_serial_hex; /* simplereenroll: serial of the client certificate, else "" */
    /* Online CA mode (docs/redis-schema.md "Online CA mode"): an accepted
     * request (issue true, no cert_*) is recorded pending and queued on
     * stp:upstream; outcome RA_REQ_OUT_PENDING. */
    bool online;
    const char *notify;         /* channel of the waiting core */
    const uint8_t *p10_der;     /* the PKCS#10 to send upstream; NULL: csr_der */
    size_t p10_len;
    int64_t now;                /* unix seconds */
} ra_req_record_t;

/* ra_req_denial_t: an audit-only denial (no identity established, e.g. a
 * wrong password): `who` is the name claimed (printable), may be "". */
typedef struct {
    const char *who;
    const char *peer;
    const char *protocol;
    const char *reason;
} ra_req_denial_t;

#define RA_REQ_BATCH_MAX 64
#define RA_REQ_ITEM_ARGS 16
#define RA_REQ_BATCH_ARGC (6 + RA_REQ_BATCH_MAX * (2 + RA_REQ_ITEM_ARGS))

/* ra_req_batch_t: the EVALSHA argv for up to RA_REQ_BATCH_MAX requests.
 * Large (~40 KiB): one per thread that builds batches. */
typedef struct {
    char key[RA_REQ_KEY_MAX], devkey[RA_DEVICE_NAME_MAX + 16], id[RA_REQ_ID_MAX], not_after[24];
} ra_req_batch_item_t;

typedef struct {
    const char *argv[RA_REQ_BATCH_ARGC];
    size_t argvlen[RA_REQ_BATCH_ARGC];
    int argc;
    size_t n;
    char sha[41], now[24], count[8], numkeys[8];
    ra_req_batch_item_t item[RA_REQ_BATCH_MAX];
    /* keys and args are gathered apart, then laid out by ra_req_batch_cmd */
    const char *keys[2 * RA_REQ_BATCH_MAX];
    const char *args[RA_REQ_BATCH_MAX * RA_REQ_ITEM_ARGS];
    size_t args_len[RA_REQ_BATCH_MAX * RA_REQ_ITEM_ARGS];
} ra_req_batch_t;

/* ra_req_script returns the Lua text of the batch script (for SCRIPT LOAD);
 * ra_req_script_sha writes its SHA-1 in hex (41 bytes with the NUL). */
const char *ra_req_script(void);
void ra_req_script_sha(char out[41]);

/* ra_req_batch_init empties `b` for script `sha` at time `now`. */
void ra_req_batch_init(ra_req_batch_t *b, const char *sha, int64_t now);
/* ra_req_batch_add appends a request (strings must outlive the command).
 * Returns RA_OK, RA_E_BAD_NAME (identity unusable) or RA_E_NOMEM (full). */
ra_err_t ra_req_batch_add(ra_req_batch_t *b, const ra_req_record_t *r);
/* ra_req_batch_add_denial appends an audit-only denial. RA_OK or RA_E_NOMEM. */
ra_err_t ra_req_batch_add_denial(ra_req_batch_t *b, const ra_req_denial_t *d);
/* ra_req_batch_cmd lays out the argv (b->argc, b->argv, b->argvlen). */
void ra_req_batch_cmd(ra_req_batch_t *b);

/* ra_req_cmd_t / ra_req_record_cmd: a batch of one request (tools, tests). */
typedef ra_req_batch_t ra_req_cmd_t;
ra_err_t ra_req_record_cmd(ra_req_cmd_t *cmd, const char *sha, const ra_req_record_t *r);

typedef enum {
    RA_REQ_OUT_ISSUED = 0,  /* recorded as issued: send the new certificate */
    RA_REQ_OUT_EXISTING,    /* same CSR already issued: send that certificate */
    RA_REQ_OUT_REFUSED,     /* device policy refused: recorded as rejected */
    RA_REQ_OUT_REJECTED,    /* the rejection asked for was recorded */
    RA_REQ_OUT_PENDING,     /* online mode: queued for (or already at) the upstream CA */
    RA_REQ_OUT__COUNT
} ra_req_outcome_t;

/* ra_req_result_t: the script's reply. cert points into the reply. */
typedef struct {
    ra_req_outcome_t outcome;
    const uint8_t *cert;        /* RA_REQ_OUT_EXISTING: its DER */
    size_t cert_len;
    char serial[RA_REQ_SERIAL_MAX + 1];
    int64_t not_after;
    char reason[RA_REQ_REASON_MAX];
    bool was_open;              /* the record was in stp:reqs:open before */
} ra_req_result_t;

/* ra_req_batch_parse reads result `i` of a batch reply of `n` requests
 * (untrusted shape). Returns RA_OK, or RA_E_REDIS for an error reply, a
 * reply of the wrong shape, or an error the script caught for this request
 * (cause in `why`). */
ra_err_t ra_req_batch_parse(const redisReply *rep, size_t n, size_t i, ra_req_result_t *out, char *why,
                            size_t why_len);

/* ra_req_record_parse reads the reply of a batch of one, or one result
 * element itself. Same returns. */
ra_err_t ra_req_record_parse(const redisReply *rep, ra_req_result_t *out, char *why,
                             size_t why_len);

const char *ra_req_outcome_str(ra_req_outcome_t o);

#endif
