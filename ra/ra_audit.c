/* ra_audit: XADD of audit entries (see ra_audit.h). */
#include "ra/ra_audit.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ra/ra_redis.h"

/* ra_audit_entry_t: one entry; NULL or empty optional fields are left out. */
typedef struct {
    const char *event, *device, *peer, *reason, *serial, *request, *protocol;
    int64_t time; /* unix seconds */
} ra_audit_entry_t;

/* ra_audit_cmd_t: the XADD argv, pointing into the entry's strings. */
typedef struct {
    const char *argv[20];
    size_t argvlen[20];
    int argc;
    char time[24];
} ra_audit_cmd_t;

static void ra_audit_cmd(ra_audit_cmd_t *cmd, const ra_audit_entry_t *e) {
    int n = 0;
    snprintf(cmd->time, sizeof(cmd->time), "%lld", (long long)e->time);
    const char *fixed[] = {"XADD", RA_AUDIT_KEY, "*", "event", e->event, "time", cmd->time};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) cmd->argv[n++] = fixed[i];
    const char *opt[][2] = {{"device", e->device}, {"peer", e->peer},         {"reason", e->reason},
                            {"serial", e->serial}, {"request", e->request}, {"protocol", e->protocol}};
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
        if (!opt[i][1] || !opt[i][1][0]) continue;
        cmd->argv[n++] = opt[i][0];
        cmd->argv[n++] = opt[i][1];
    }
    for (int i = 0; i < n; i++) cmd->argvlen[i] = strlen(cmd->argv[i]);
    cmd->argc = n;
}

ra_err_t ra_audit_append(redisContext *c, const char *event, const char *device, const char *peer,
                         const char *reason, const char *serial) {
    ra_audit_entry_t e = {.event = event, .device = device, .peer = peer, .reason = reason,
                          .serial = serial, .time = (int64_t)time(NULL)};
    ra_audit_cmd_t cmd;
    ra_audit_cmd(&cmd, &e);
    return redisAppendCommandArgv(c, cmd.argc, cmd.argv, cmd.argvlen) == REDIS_OK ? RA_OK : RA_E_NOMEM;
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
