/* ra_capf: what a CAPF session does to the registry (capf-protocol.md 5.2-5.10,
 * docs/redis-schema.md "CAPF sessions"), as ONE Lua script with the verb in
 * ARGV, plus pure functions that build its EVALSHA argv and read its reply.
 *
 *   BEGIN        decide (5.2 rows 1-4 + lockout) and take the device lock
 *   AUTH_FAILED  count a failed authentication, lock the device out after
 *                `max_failures`, status failed; releases the lock
 *   ISSUED       durability step 1 (5.10): request record + lsc_unconfirmed,
 *                before STORE_CERTIFICATE_REQUEST is sent; needs the lock
 *   SUBMIT       online CA mode: the request record written pending and
 *                queued for stampede-control (stp:upstream) instead of a
 *                local signature; needs the lock, keeps it
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
#define RA_CAPF_ARGC_MAX 24
#define RA_CAPF_NOTIFY_MAX 159     /* notify channel, without the NUL */
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
    RA_CAPF_KEY_IN_USE,   /* ISSUED, SUBMIT: the public key is bound to another device (§3.2 rule 4) */
    RA_CAPF_NOT_ISSUED,   /* ISSUED online: the request record does not hold this certificate */
    RA_CAPF__COUNT
} ra_capf_outcome_t;

/* ra_capf_outcome_str returns the outcome's word as the script writes it
 * ("ok", "unknown", "busy", "no-op", "late", "locked-out", "lost-lock",
 * "key-in-use", "not-issued");
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
    bool online;              /* the upstream CA signed it (online CA mode): ISSUED leaves
                                 the request record to stampede-control and audits nothing */
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
    char _keyidx[96], _notify[RA_CAPF_NOTIFY_MAX + 1];
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

/* ISSUED with lsc->online (online CA mode: `lsc` describes the certificate
 * the upstream CA put in the request record, read back from it) differs
 * only in the request record: the record must be `issued` with exactly
 * lsc->cert_der (else NOT_ISSUED, nothing written), and it is not
 * rewritten (stampede-control's fields stay: mode online, p10, ca_req_id,
 * ...); only cert_md5, cert_sha256 and confirmed 0 are added. No audit
 * entry: stampede-control's COMPLETE already appended the `issue` entry.
 * The device side (lsc_unconfirmed, stale LSCs, auth_failures, the key
 * index) is as in local mode. */

/* ra_capf_submit_t: SUBMIT's input (online CA mode). */
typedef struct {
    const uint8_t *spki_der;  /* the public key the phone sent (borrowed): names the record */
    size_t spki_len;
    const uint8_t *p10_der;   /* the PKCS#10 for the upstream CA (cx_lsc_request; borrowed) */
    size_t p10_len;
    bool has_key_hash;        /* key_hash set: a key bound to another device is refused */
    uint8_t key_hash[32];
    const char *notify;       /* the waiting core's channel (printable, no space, at
                                 most RA_CAPF_NOTIFY_MAX; "" = nobody waits) */
    int64_t lock_ttl_ms;      /* the lock is extended to at least this (> 0) */
} ra_capf_submit_t;

/* ra_capf_submit_cmd: SUBMIT (online CA mode), in place of the local
 * signature and ISSUED, after the key passed capf_spki_check. Without the
 * lock: LOST_LOCK; device gone: UNKNOWN; op not install: NO_OP; the key
 * bound to another device: KEY_IN_USE (nothing written in any of those).
 * Else the lock's TTL is raised to s->lock_ttl_ms if it is lower (the wait
 * for the CA must not outlive the lock), and the request record
 * `stp:req:{NAME}:SPKISHA`:
 *   issued, mode online, not expired: nothing else is written but
 *     attempts+1, last_seen, last_peer; the reply carries its certificate
 *     (state issued: the session goes on with ISSUED at once);
 *   pending: notify = s->notify, attempts+1, last_seen, last_peer; nothing
 *     is queued again (state pending);
 *   absent, or any other state (rejected: a new submission; an issued
 *     record of local mode or expired: archived as `...:SERIAL`): written
 *     whole as a pending online record (id identity protocol=capf peer
 *     csr=SPKI mode=online received updated attempts state=pending
 *     ca_state=queued p10 notify; received and attempts carry over from an
 *     open record), its id ZADDed to stp:reqs:open and `key K id ID`
 *     XADDed to stp:upstream (state queued).
 * No audit entry (stampede-control audits the CA's answer). Keeps the lock.
 * RA_E_BAD_NAME also for empty DERs, a bad notify or lock_ttl_ms <= 0. */
ra_err_t ra_capf_submit_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                            int64_t now, const char *peer, const ra_capf_submit_t *s);

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

/* ra_capf_submit_state_t: what SUBMIT found or did with the record. */
typedef enum {
    RA_CAPF_SUBMIT_QUEUED = 0, /* written pending and queued for stampede-control */
    RA_CAPF_SUBMIT_PENDING,    /* already pending: notify updated, not queued again */
    RA_CAPF_SUBMIT_ISSUED,     /* already issued by the upstream CA: cert in the reply */
} ra_capf_submit_state_t;

/* ra_capf_submitted_t: SUBMIT's answer for an OK outcome. `cert` points
 * into the reply (valid until it is freed: copy it first). */
typedef struct {
    ra_capf_submit_state_t state;
    char serial[RA_CAPF_SERIAL_MAX + 1]; /* ISSUED: the record's serial (printable) */
    int64_t not_after;                   /* ISSUED */
    const uint8_t *cert;                 /* ISSUED: the certificate DER */
    size_t cert_len;
} ra_capf_submitted_t;

/* ra_capf_parse_submit is ra_capf_parse for SUBMIT, and on RA_CAPF_OK also
 * reads the state (and for ISSUED the certificate) into `sub`. Returns
 * RA_OK, or RA_E_REDIS as ra_capf_parse, also for an OK reply whose fields
 * are not of that shape (an issued state without a certificate). */
ra_err_t ra_capf_parse_submit(const redisReply *r, ra_capf_result_t *out, ra_capf_submitted_t *sub, char *why,
                              size_t why_len);

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
