/* ra_audit: the audit stream `stp:audit` (docs/redis-schema.md): one XADD
 * entry per operator action, issuance or denial, with event, device, peer,
 * reason, serial, request id and time. Never trimmed by this code.
 * ra_audit_cmd builds the command for any hiredis flavour (the polling cores
 * send it on their async connection); ra_audit_append/_add use a
 * synchronous context.
 * Thread: any thread owning the redisContext / the ra_audit_cmd_t. */
#ifndef RA_AUDIT_H
#define RA_AUDIT_H

#include <hiredis/hiredis.h>
#include <stddef.h>
#include <stdint.h>

#include "ra/ra_err.h"

#define RA_AUDIT_KEY "stp:audit"

/* ra_audit_entry_t: one entry. NULL or empty optional fields are left out.
 * The strings must outlive the ra_audit_cmd_t built from them. */
typedef struct {
    const char *event;     /* "issue", "deny", "reissue", "device-add", ... */
    const char *device;    /* device or EST identity */
    const char *peer;      /* requester address, or stampedectl:<user> */
    const char *reason;
    const char *serial;    /* hex */
    const char *request;   /* request id (ra_req.h) */
    const char *protocol;  /* "est", "capf" */
    int64_t time;          /* unix seconds */
} ra_audit_entry_t;

/* ra_audit_cmd_t: the XADD argv, pointing into the entry's strings. */
typedef struct {
    const char *argv[20];
    size_t argvlen[20];
    int argc;
    char time[24];
} ra_audit_cmd_t;

/* ra_audit_cmd fills `cmd` with the XADD for `e` (pure function). */
void ra_audit_cmd(ra_audit_cmd_t *cmd, const ra_audit_entry_t *e);

/* ra_audit_append queues the XADD (pipeline; read its reply with
 * redisGetReply). Time is now. Returns RA_OK or RA_E_NOMEM. */
ra_err_t ra_audit_append(redisContext *c, const char *event, const char *device, const char *peer,
                         const char *reason, const char *serial);

/* ra_audit_add appends one entry and waits for its reply.
 * Returns RA_OK, or RA_E_REDIS / RA_E_REDIS_CONNECT with the cause in `why`. */
ra_err_t ra_audit_add(redisContext *c, const char *event, const char *device, const char *peer,
                      const char *reason, const char *serial, char *why, size_t why_len);

#endif
