/* ra_audit: the audit stream `stp:audit` (docs/redis-schema.md): one XADD
 * entry per operator action, issuance or denial, with event, device, peer,
 * reason, serial, request id and time. Never trimmed by this code. The
 * daemon's own entries (issue, reissue, deny, deadline-passed) are appended
 * inside its scripts (ra_req.c, ra_registry.c); this is the synchronous
 * path of stampedectl.
 * Thread: any thread owning the redisContext. */
#ifndef RA_AUDIT_H
#define RA_AUDIT_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "ra/ra_err.h"

#define RA_AUDIT_KEY "stp:audit"

/* ra_audit_append queues the XADD (pipeline; read its reply with
 * redisGetReply). Time is now. Returns RA_OK or RA_E_NOMEM. */
ra_err_t ra_audit_append(redisContext *c, const char *event, const char *device, const char *peer,
                         const char *reason, const char *serial);

/* ra_audit_add appends one entry and waits for its reply.
 * Returns RA_OK, or RA_E_REDIS / RA_E_REDIS_CONNECT with the cause in `why`. */
ra_err_t ra_audit_add(redisContext *c, const char *event, const char *device, const char *peer,
                      const char *reason, const char *serial, char *why, size_t why_len);

#endif
