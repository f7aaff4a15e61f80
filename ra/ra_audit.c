/* ra_audit: XADD of audit entries (see ra_audit.h). */
#include "ra/ra_audit.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ra/ra_redis.h"

ra_err_t ra_audit_append(redisContext *c, const char *event, const char *device, const char *peer,
                         const char *reason, const char *serial) {
    const char *argv[16];
    size_t n = 0;
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    argv[n++] = "XADD";
    argv[n++] = RA_AUDIT_KEY;
    argv[n++] = "*";
    argv[n++] = "event";
    argv[n++] = event;
    argv[n++] = "time";
    argv[n++] = now;
    const char *opt[][2] = {{"device", device}, {"peer", peer}, {"reason", reason}, {"serial", serial}};
    for (size_t i = 0; i < 4; i++) {
        if (!opt[i][1] || !opt[i][1][0]) continue;
        argv[n++] = opt[i][0];
        argv[n++] = opt[i][1];
    }
    return redisAppendCommandArgv(c, (int)n, argv, NULL) == REDIS_OK ? RA_OK : RA_E_NOMEM;
}

ra_err_t ra_audit_add(redisContext *c, const char *event, const char *device, const char *peer,
                      const char *reason, const char *serial, char *why, size_t why_len) {
    redisReply *r = NULL;
    if (ra_audit_append(c, event, device, peer, reason, serial) != RA_OK) {
        snprintf(why, why_len, "out of memory");
        return RA_E_NOMEM;
    }
    if (redisGetReply(c, (void **)&r) != REDIS_OK) r = NULL;
    ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
    if (r) freeReplyObject(r);
    return e;
}
