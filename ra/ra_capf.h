/* ra_capf: what a CAPF session does to the registry (capf-protocol.md 5.2-5.10,
 * docs/redis-schema.md "CAPF sessions"), as ONE Lua script with the verb in
 * ARGV, plus pure functions that build its EVALSHA argv and read its reply.
 *
 *   BEGIN        decide (5.2 rows 1-4 + lockout) and take the device lock
 *   AUTH_FAILED  count a failed authentication, lock the device out after
 *                `max_failures`, status failed; releases the lock
 *   ISSUED       durability step 1 (5.10): request record + lsc_unconfirmed,
 *                before STORE_CERTIFICATE_REQUEST is sent; needs the lock
 *   FINISH       the phone's answer (install/delete/fetch, ok/failed);
 *                releases the lock
 *   FAIL         any other failure after BEGIN; releases the lock
 *   RELEASE      drop the lock (only if this session holds it)
 *
 * Why one script: the daemon loads one more script (SCRIPT LOAD on every
 * connect, like ra_req's), each step is one atomic EVALSHA, and the
 * decision, the record and the audit entry of a step cannot be separated.
 * The per-device lock `stp:capf:lock:{NAME}` (value: the session's token,
 * with a TTL) keeps a second session for the same device out from BEGIN to
 * FINISH/FAIL (5.10 rule 4); a crashed node's lock expires by itself.
 * A successful authentication resets `auth_failures`: ISSUED and every
 * FINISH do it (each implies the phone was authenticated), so there is no
 * separate round trip for it.
 *
 * Keys: every key of a call shares the hash tag {NAME}: `stp:dev:{NAME}`,
 * `stp:capf:lock:{NAME}`, `stp:req:{NAME}:SPKISHA256`, plus `stp:audit`,
 * the one cross-slot key (as for ra_req: standalone Redis and Sentinel are
 * what stampeded supports; on a Cluster the audit entry would need a
 * per-slot stream).
 *
 * No I/O here: send `argv`/`argvlen` with any hiredis flavour
 * (redisAsyncCommandArgv in the daemon, redisCommandArgv in tests and
 * tools) and hand the reply to ra_capf_parse / ra_capf_parse_begin.
 * Thread: any thread (pure functions; a command belongs to its caller). */
#ifndef RA_CAPF_H
#define RA_CAPF_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "ra/ra_device.h"
#include "ra/ra_err.h"
#include "ra/ra_req.h"

#define RA_CAPF_LOCK_PREFIX "stp:capf:lock:"
#define RA_CAPF_TOKEN_MAX 128      /* printable, no spaces */
#define RA_CAPF_PEER_MAX 80        /* with the NUL; longer peers are cut */
#define RA_CAPF_REASON_MAX 200     /* with the NUL; longer reasons are cut */
#define RA_CAPF_SERIAL_MAX RA_REQ_SERIAL_MAX /* lower-case hex digits */
#define RA_CAPF_STALE_MAX 10       /* serials kept in `stale_serials` */
#define RA_CAPF_ARGC_MAX 20
/* the value that replaces a used authentication string's hash */
#define RA_CAPF_AUTH_HASH_USED "$used"

/* ra_capf_outcome_t: the script's answer. */
typedef enum {
    RA_CAPF_OK = 0,       /* done as asked (BEGIN: locked, device in the reply) */
    RA_CAPF_UNKNOWN,      /* no such device; nothing written but the audit entry */
    RA_CAPF_BUSY,         /* BEGIN: another session holds the device lock */
    RA_CAPF_NO_OP,        /* BEGIN/ISSUED: no certificate operation pending */
    RA_CAPF_LATE,         /* BEGIN: the deadline passed; status failed written */
    RA_CAPF_LOCKED_OUT,   /* BEGIN: too many failed authentications, until auth_lock_until */
    RA_CAPF_LOST_LOCK,    /* the session does not hold the lock: nothing written */
    RA_CAPF_KEY_IN_USE,   /* ISSUED: the public key is bound to another device (§3.2 rule 4) */
    RA_CAPF__COUNT
} ra_capf_outcome_t;

/* ra_capf_outcome_str returns the outcome's word as the script writes it
 * ("ok", "unknown", "busy", "no-op", "late", "locked-out", "lost-lock");
 * "?" if out of range. Static storage; can't fail. */
const char *ra_capf_outcome_str(ra_capf_outcome_t o);

/* ra_capf_kind_t: what FINISH records (the phone's answer, 5.4). */
typedef enum {
    RA_CAPF_INSTALL_OK = 0, /* 0a with REASON 01 */
    RA_CAPF_INSTALL_FAILED, /* 0a with another REASON */
    RA_CAPF_DELETE_OK,      /* 0e with REASON 01 */
    RA_CAPF_DELETE_FAILED,  /* 0e with another REASON */
    RA_CAPF_FETCH_OK,       /* 0c with a certificate */
    RA_CAPF_FETCH_FAILED,   /* 0c without one */
    RA_CAPF_KIND__COUNT
} ra_capf_kind_t;

/* ra_capf_kind_str returns the kind's word in the script ("install-ok",
 * "install-failed", "delete-ok", ...); "?" if out of range. */
const char *ra_capf_kind_str(ra_capf_kind_t k);

/* ra_capf_lsc_t: an LSC as ISSUED records it and FINISH install-ok
 * confirms it. Fill it with ra_capf_lsc_init. The digests and serial are
 * copies (keep the struct for FINISH, ~200 bytes); the DER views are
 * borrowed and read by ra_capf_issued_cmd only, so they may be dropped
 * (set to NULL) once ISSUED was built. */
typedef struct {
    uint8_t spki_sha256[32];  /* names the request record stp:req:{NAME}:HEX */
    uint8_t cert_md5[16];
    uint8_t cert_sha256[32];
    char serial[RA_CAPF_SERIAL_MAX + 1];
    int64_t not_after;        /* unix seconds */
    const uint8_t *spki_der;  /* the public key the phone sent (the "CSR") */
    size_t spki_len;
    const uint8_t *cert_der;  /* the LSC */
    size_t cert_len;
    bool has_key_hash;        /* key_hash set: ISSUED checks and records the key's owner */
    uint8_t key_hash[32];     /* SHA-256 of the key's canonical SPKI (capf_spki_check) */
} ra_capf_lsc_t;

/* ra_capf_lsc_init fills `l` from the phone's SubjectPublicKeyInfo and the
 * signed LSC (both binary DER; not copied, see ra_capf_lsc_t) with the
 * LSC's serial (hex, upper or lower case; stored lower case) and notAfter.
 * Returns RA_OK, or RA_E_BAD_NAME if the serial is not 1..64 hex digits,
 * a DER is empty or not_after is negative (`l` unspecified then). */
ra_err_t ra_capf_lsc_init(ra_capf_lsc_t *l, const uint8_t *spki_der, size_t spki_len,
                          const uint8_t *cert_der, size_t cert_len, const char *serial_hex,
                          int64_t not_after);

/* ra_capf_finish_t: FINISH's input. */
typedef struct {
    ra_capf_kind_t kind;
    const ra_capf_lsc_t *lsc;   /* INSTALL_OK: the LSC given to ISSUED (digests, serial) */
    const uint8_t *cert_der;    /* FETCH_OK: the certificate the phone returned (borrowed) */
    size_t cert_len;
} ra_capf_finish_t;

/* ra_capf_cmd_t: one EVALSHA, argv ready for redis*CommandArgv. Fields
 * starting with `_` are the storage argv points into: the struct must not
 * move or be reused until the command was handed to hiredis (which copies
 * it). DER inputs are borrowed: they too must stay valid until then. */
typedef struct {
    const char *argv[RA_CAPF_ARGC_MAX];
    size_t argvlen[RA_CAPF_ARGC_MAX];
    int argc;
    char _sha[41], _numkeys[4], _now[24], _n1[24], _n2[24];
    char _devkey[RA_DEVICE_NAME_MAX + 16];
    char _lockkey[RA_DEVICE_NAME_MAX + 24];
    char _reqkey[RA_REQ_KEY_MAX], _id[RA_REQ_ID_MAX];
    char _token[RA_CAPF_TOKEN_MAX + 1], _peer[RA_CAPF_PEER_MAX], _reason[RA_CAPF_REASON_MAX];
    char _serial[RA_CAPF_SERIAL_MAX + 1], _md5[33], _sha256[65];
    char _keyidx[96];
} ra_capf_cmd_t;

/* ra_capf_script returns the Lua text (for SCRIPT LOAD; static storage);
 * ra_capf_script_sha writes its SHA-1 in hex (41 bytes with the NUL), the
 * name EVALSHA uses. Neither can fail. */
const char *ra_capf_script(void);
void ra_capf_script_sha(char out[41]);

/* Builders. Common arguments:
 *   c      the command to fill (any previous content is overwritten)
 *   sha    ra_capf_script_sha's output
 *   name   the device (ra_device_name_valid: it becomes the hash tag)
 *   token  the session's token, unique per CAPF session and never reused,
 *          e.g. "node:core:sessionid": 1..128 printable characters, no
 *          spaces. Copied.
 *   now    unix seconds (>= 0)
 *   peer   the phone's address "ip:port" for the device and the audit
 *          entry; NULL = "". Copied; non-printable bytes become '?', cut
 *          to RA_CAPF_PEER_MAX - 1.
 * Each returns RA_OK with c->argc/argv/argvlen set, or RA_E_BAD_NAME if
 * name, token or another identifier argument is unusable (documented per
 * builder; `c` unspecified then). Free text (reasons) is sanitised, never
 * refused. */

/* ra_capf_begin_cmd: BEGIN (5.2 rows 1-4, then the lockout). In order:
 * no device -> UNKNOWN; the lock held by another token -> BUSY; op none ->
 * NO_OP (status unchanged); `by` != 0 and by < now -> LATE (status failed,
 * reason "deadline passed", the wording of the EST path and the deadline
 * sweep); auth_lock_until > now -> LOCKED_OUT; else the lock is taken
 * (SET PX lock_ttl_ms; the same token again just renews the TTL),
 * last_session/last_peer are written and the reply carries the device
 * (ra_capf_parse_begin). Every refusal appends an audit `deny`.
 * lock_ttl_ms (> 0) must cover the whole session (S2 to S8). */
ra_err_t ra_capf_begin_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                           int64_t now, const char *peer, int64_t lock_ttl_ms);

/* ra_capf_auth_failed_cmd: AUTH_FAILED. `reason` is the status detail,
 * e.g. "Invalid Authentication String", "Invalid LSC", "Invalid
 * Credentials" (NULL/"" = "Invalid Credentials"). auth_failures += 1, and
 * when it reaches max_failures (0 = never) auth_lock_until = now +
 * lockout_s and the counter restarts at 0. Status failed with `reason`
 * (not written if another session holds the lock: outcome LOST_LOCK, the
 * counter still counts); audit `deny`; the lock is released if held.
 * The result carries the failures counted (including this one) and
 * auth_lock_until (0 if this failure did not start a lockout). */
ra_err_t ra_capf_auth_failed_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                                 int64_t now, const char *peer, const char *reason, int64_t max_failures,
                                 int64_t lockout_s);

/* ra_capf_issued_cmd: ISSUED, durability step 1 of 5.10: send
 * STORE_CERTIFICATE_REQUEST only after its OK. Without the lock:
 * LOST_LOCK; device gone: UNKNOWN; op not install: NO_OP (nothing written
 * in any of those). Else writes the request record
 * `stp:req:{NAME}:SPKISHA` (protocol capf, state issued, confirmed 0; an
 * earlier record for the same key with another serial is archived as
 * `...:SERIAL`), the device's lsc_unconfirmed (a different earlier one
 * becomes stale), auth_failures 0, and an audit `issue`. Keeps the lock.
 * `lsc` from ra_capf_lsc_init with its DER views set (RA_E_BAD_NAME if
 * they are not). With lsc->has_key_hash, the key index
 * `stp:capf:key:HEX` (the canonical key hash; outside the {NAME} slot, like
 * stp:audit) names the device the key belongs to: a key already bound to
 * another device is refused with KEY_IN_USE (nothing written; the lock is
 * kept: the session follows up with FAIL, which audits the refusal), else
 * the index is set to this device. */
ra_err_t ra_capf_issued_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                            int64_t now, const char *peer, const ra_capf_lsc_t *lsc);

/* ra_capf_finish_cmd: FINISH with the phone's answer `f`:
 *   INSTALL_OK     op none, status success "Upgrade Success", lsc_* of
 *                  f->lsc, lsc_unconfirmed "", previous LSC kept as
 *                  superseded_serial, request record confirmed 1, a used
 *                  authentication string is consumed (auth_hash becomes
 *                  RA_CAPF_AUTH_HASH_USED, which no string matches); audit
 *                  `lsc-installed`. Also applied without the lock when the
 *                  device's lsc_unconfirmed is still f->lsc's serial (the
 *                  phone has it; a stale session cannot overwrite a newer
 *                  issuance), else LOST_LOCK.
 *   DELETE_OK      op none, status success "Delete Success", lsc_* cleared;
 *                  audit `lsc-deleted`. Without the lock only while op is
 *                  still delete.
 *   FETCH_OK       op none, status success "Troubleshoot Success",
 *                  fetched_cert = f->cert_der, fetched_at; audit
 *                  `lsc-fetched`. Without the lock only while op is still
 *                  troubleshoot.
 *   *_FAILED       status failed ("Upgrade Failed: phone could not store
 *                  the certificate" / "Delete Failed" / "Troubleshoot
 *                  Failed: no certificate"), op kept; audit `deny`. Not
 *                  written while another session holds the lock (LOST_LOCK).
 * Every kind resets auth_failures when it writes, and releases the lock if
 * held. RA_E_BAD_NAME also for an unknown kind, INSTALL_OK without `lsc`,
 * FETCH_OK without a certificate. */
ra_err_t ra_capf_finish_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                            int64_t now, const char *peer, const ra_capf_finish_t *f);

/* ra_capf_fail_cmd: FAIL, any other failure after BEGIN succeeded, with
 * the status text as CUCM words it, e.g. "Upgrade Failed: Key Generation
 * Failed/Timeout", "Upgrade Failed: Phone Communication Failure"
 * (NULL/"" = "Upgrade Failed"). Status failed with `reason`, op kept,
 * audit `deny`, the lock released if held. Not written while another
 * session holds the lock (LOST_LOCK); UNKNOWN if the device is gone. */
ra_err_t ra_capf_fail_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                          int64_t now, const char *peer, const char *reason);

/* ra_capf_release_cmd: RELEASE: deletes the lock if `token` holds it (OK),
 * else LOST_LOCK (the lock, if any, is kept). No audit entry. */
ra_err_t ra_capf_release_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token);

/* ra_capf_result_t: a parsed reply. */
typedef struct {
    ra_capf_outcome_t outcome;
    char reason[RA_CAPF_REASON_MAX]; /* the refusal's cause as audited, "" if none */
    int64_t auth_failures;           /* AUTH_FAILED: failures counted, this one included */
    int64_t auth_lock_until;         /* AUTH_FAILED, LOCKED_OUT: end of the lockout; else 0 */
} ra_capf_result_t;

/* ra_capf_parse reads the reply `r` (untrusted shape; NULL = connection
 * lost) of any verb into `out`. A BEGIN OK's device is not decoded (use
 * ra_capf_parse_begin). Returns RA_OK, or RA_E_REDIS for no reply, an
 * error reply (a bad argument the script refused, NOSCRIPT, WRONGTYPE...)
 * or a reply of the wrong shape (cause in `why`). */
ra_err_t ra_capf_parse(const redisReply *r, ra_capf_result_t *out, char *why, size_t why_len);

/* ra_capf_parse_begin is ra_capf_parse for BEGIN, and on RA_CAPF_OK also
 * decodes the device `name` from the reply into `dev` (ra_device_decode:
 * unknown fields, i.e. the CAPF fields of this module, are ignored).
 * Returns RA_OK, RA_E_REDIS as above, or RA_E_BAD_RECORD (cause in `why`)
 * if the record cannot be decoded: the lock IS held then, so the caller
 * sends FAIL or RELEASE. */
ra_err_t ra_capf_parse_begin(const redisReply *r, const char *name, ra_capf_result_t *out, ra_device_t *dev,
                             char *why, size_t why_len);

/* ra_capf_release_stale deletes the device locks still held by an earlier
 * run of this stampeded instance (killed before its sessions ended), so
 * those phones can retry at once instead of waiting for the locks' TTL
 * (capf-protocol.md §6.4 R14). Tokens are "INSTANCE:BOOT:SESSION":
 * `instance` is "INSTANCE:" (the same across restarts: host and data
 * directory), `current` is "INSTANCE:BOOT:" of this run; locks of other
 * instances and of this run are left alone. Walks every lock with SCAN
 * (start-up only: synchronous). *released gets the number deleted.
 * Returns RA_OK or RA_E_REDIS* with the cause in `why`. */
ra_err_t ra_capf_release_stale(redisContext *c, const char *instance, const char *current, unsigned *released,
                               char *why, size_t why_len);

#endif
