/* ra_registry: device records in Redis through synchronous hiredis (see
 * ra_registry.h for the atomicity argument). */
#include "ra/ra_registry.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ra/ra_audit.h"
#include "ra/ra_redis.h"

/* KEYS[1] record; ARGV[1] "1" = replace; ARGV[2..] field/value pairs.
 * Returns 0 if it exists and replace is off, 1 if created, 2 if replaced.
 * A replace rewrites the provisioning (operation, authentication, keys,
 * deadline, status) but keeps what the device's sessions established: its
 * certificates (current, unconfirmed, stale, superseded, fetched), its last
 * session, and `created` (re-scheduling Install/Upgrade keeps the current
 * LSC in the report, as CUCM does). */
static const char ra_add_script[] =
    "local ex = redis.call('EXISTS', KEYS[1]) == 1\n"
    "if ex and ARGV[1] ~= '1' then return 0 end\n"
    "local keep = {'created', 'lsc_serial', 'lsc_not_after', 'lsc_md5', 'lsc_sha256', 'lsc_unconfirmed',\n"
    "  'stale_lscs', 'stale_serials', 'superseded_serial', 'last_session', 'last_peer', 'fetched_cert',\n"
    "  'fetched_at', 'pid', 'sn'}\n"
    "local old = ex and redis.call('HMGET', KEYS[1], unpack(keep)) or {}\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 2))\n"
    "for i, f in ipairs(keep) do\n"
    "  if old[i] then redis.call('HSET', KEYS[1], f, old[i]) end\n"
    "end\n"
    "return ex and 2 or 1\n";

/* KEYS[1] record; ARGV: status, reason, updated. 0 if no such record. */
static const char ra_status_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'status', ARGV[1], 'reason', ARGV[2], 'updated', ARGV[3])\n"
    "return 1\n";

/* KEYS[1] stp:deadlines, KEYS[2] stp:audit; ARGV[1] now, ARGV[2] at most
 * this many devices. Reply {marked failed, looked at}. The device keys are
 * derived from the members (standalone Redis; see docs/redis-schema.md). */
static const char ra_sweep_script[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))\n"
    "local n = 0\n"
    "for _, name in ipairs(due) do\n"
    "  local k = 'stp:dev:{' .. name .. '}'\n"
    "  local d = redis.call('HMGET', k, 'op', 'status', 'by')\n"
    "  local by = tonumber(d[3] or '0') or 0\n"
    "  if d[1] == 'install' and d[2] ~= 'failed' and by ~= 0 and by <= tonumber(ARGV[1]) then\n"
    "    redis.call('HSET', k, 'status', 'failed', 'reason', 'deadline passed', 'updated', ARGV[1])\n"
    "    redis.call('XADD', KEYS[2], '*', 'event', 'deadline-passed', 'time', ARGV[1], 'device', name,\n"
    "      'reason', 'deadline passed')\n"
    "    n = n + 1\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[1], name)\n"
    "end\n"
    "return {n, #due}\n";

void ra_registry_sweep_cmd(ra_registry_sweep_cmd_t *cmd, int64_t now, unsigned limit) {
    snprintf(cmd->now, sizeof(cmd->now), "%lld", (long long)now);
    snprintf(cmd->limit, sizeof(cmd->limit), "%u", limit);
    const char *argv[] = {"EVAL", ra_sweep_script, "2", RA_REGISTRY_DEADLINES, RA_AUDIT_KEY, cmd->now, cmd->limit};
    for (int i = 0; i < 7; i++) cmd->argv[i] = argv[i];
    cmd->argc = 7;
}

void ra_registry_key(char *buf, size_t buf_len, const char *name) {
    snprintf(buf, buf_len, "stp:dev:{%s}", name);
}

/* ra_named_key validates a device name from a caller and writes its record
 * key. Returns RA_OK or RA_E_BAD_NAME (cause in `why`). */
static ra_err_t ra_named_key(char *key, size_t key_len, const char *name, char *why, size_t why_len) {
    if (!ra_device_name_valid(name)) {
        snprintf(why, why_len, "%s", ra_err_str(RA_E_BAD_NAME));
        return RA_E_BAD_NAME;
    }
    ra_registry_key(key, key_len, name);
    return RA_OK;
}

/* ra_reply_take reads one pipelined reply, checking for errors. */
static ra_err_t ra_reply_take(redisContext *c, redisReply **out, char *why, size_t why_len) {
    redisReply *r = NULL;
    if (redisGetReply(c, (void **)&r) != REDIS_OK) r = NULL;
    ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
    if (e != RA_OK && r) {
        freeReplyObject(r);
        r = NULL;
    }
    *out = r;
    return e;
}

/* ra_reply_int runs the queued command and returns its integer in *out. */
static ra_err_t ra_reply_int(redisContext *c, long long *out, char *why, size_t why_len) {
    redisReply *r;
    ra_err_t e = ra_reply_take(c, &r, why, why_len);
    if (e != RA_OK) return e;
    if (r->type != REDIS_REPLY_INTEGER) {
        snprintf(why, why_len, "unexpected reply type %d", r->type);
        e = RA_E_REDIS;
    } else {
        *out = r->integer;
    }
    freeReplyObject(r);
    return e;
}

/* ra_index_and_audit adds or removes `name` in the index set and in the
 * deadline set (score `deadline`, 0 = remove), and appends an audit entry,
 * in one round trip. */
static ra_err_t ra_index_and_audit(redisContext *c, bool add, int64_t deadline, const char *event,
                                   const char *name, const char *peer, const char *reason, char *why,
                                   size_t why_len) {
    const char *argv[] = {add ? "SADD" : "SREM", RA_REGISTRY_SET, name};
    char score[24];
    snprintf(score, sizeof(score), "%lld", (long long)deadline);
    const char *dl_add[] = {"ZADD", RA_REGISTRY_DEADLINES, score, name};
    const char *dl_rem[] = {"ZREM", RA_REGISTRY_DEADLINES, name};
    long long n;
    if (redisAppendCommandArgv(c, 3, argv, NULL) != REDIS_OK ||
        (deadline ? redisAppendCommandArgv(c, 4, dl_add, NULL) : redisAppendCommandArgv(c, 3, dl_rem, NULL)) !=
            REDIS_OK ||
        ra_audit_append(c, event, name, peer, reason, NULL) != RA_OK) {
        snprintf(why, why_len, "out of memory");
        return RA_E_NOMEM;
    }
    ra_err_t e = ra_reply_int(c, &n, why, why_len);
    for (int i = 0; i < 2; i++) { /* always drain the pipeline */
        redisReply *r = NULL;
        ra_err_t e2 = ra_reply_take(c, &r, why, why_len);
        if (r) freeReplyObject(r);
        if (e == RA_OK) e = e2;
    }
    return e;
}

ra_err_t ra_registry_add(redisContext *c, const ra_device_t *d, bool replace, const char *peer,
                         char *why, size_t why_len) {
    ra_device_t rec = *d;
    ra_device_fields_t f;
    char key[RA_DEVICE_NAME_MAX + 16];
    const char *argv[6 + 2 * RA_DEVICE_NUM_FIELDS];
    int argc = 0;
    long long n = 0;
    ra_err_t e = ra_device_validate(&rec);
    if (e != RA_OK) {
        snprintf(why, why_len, "%s", ra_err_str(e));
        return e;
    }
    rec.created = rec.updated = (int64_t)time(NULL);
    ra_device_encode(&f, &rec);
    ra_registry_key(key, sizeof(key), rec.name);
    argv[argc++] = "EVAL";
    argv[argc++] = ra_add_script;
    argv[argc++] = "1";
    argv[argc++] = key;
    argv[argc++] = replace ? "1" : "0";
    for (size_t i = 0; i < f.num; i++) {
        argv[argc++] = f.field[i];
        argv[argc++] = f.value[i];
    }
    if (redisAppendCommandArgv(c, argc, argv, NULL) != REDIS_OK) {
        snprintf(why, why_len, "out of memory");
        return RA_E_NOMEM;
    }
    if ((e = ra_reply_int(c, &n, why, why_len)) != RA_OK) return e;
    if (n == 0) {
        snprintf(why, why_len, "device %s already exists (use --replace)", rec.name);
        return RA_E_EXISTS;
    }
    /* Only a pending install can miss its deadline. */
    int64_t deadline = rec.op == RA_OP_INSTALL ? rec.by : 0;
    return ra_index_and_audit(c, true, deadline, "device-add", rec.name, peer, n == 2 ? "replaced" : "created",
                              why, why_len);
}

ra_err_t ra_registry_decode_reply(const redisReply *r, const char *name, ra_device_t *out, char *why,
                              size_t why_len) {
    enum { MAXF = 64 };
    const char *fields[MAXF], *values[MAXF];
    size_t flens[MAXF], vlens[MAXF], num = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        snprintf(why, why_len, "HGETALL of %s: unexpected reply", name);
        return RA_E_REDIS;
    }
    if (r->elements == 0) {
        snprintf(why, why_len, "no device %s", name);
        return RA_E_NOT_FOUND;
    }
    for (size_t i = 0; i + 1 < r->elements && num < MAXF; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
        fields[num] = k->str;
        flens[num] = k->len;
        values[num] = v->str;
        vlens[num++] = v->len;
    }
    return ra_device_decode(out, name, fields, flens, values, vlens, num, why, why_len);
}

ra_err_t ra_registry_get(redisContext *c, const char *name, ra_device_t *out, char *why,
                         size_t why_len) {
    char key[RA_DEVICE_NAME_MAX + 16];
    if (ra_named_key(key, sizeof(key), name, why, why_len) != RA_OK) return RA_E_BAD_NAME;
    redisReply *r = redisCommand(c, "HGETALL %s", key);
    ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
    if (e == RA_OK) e = ra_registry_decode_reply(r, name, out, why, why_len);
    if (r) freeReplyObject(r);
    return e;
}

ra_err_t ra_registry_get_batch(redisContext *c, const char *const *names, size_t num,
                               ra_device_t *out, ra_err_t *errs, char *why, size_t why_len) {
    char key[RA_DEVICE_NAME_MAX + 16], cause[256];
    for (size_t i = 0; i < num; i++) {
        errs[i] = ra_device_name_valid(names[i]) ? RA_OK : RA_E_BAD_NAME;
        if (errs[i] != RA_OK) continue;
        ra_registry_key(key, sizeof(key), names[i]);
        if (redisAppendCommand(c, "HGETALL %s", key) != REDIS_OK) {
            snprintf(why, why_len, "out of memory");
            return RA_E_NOMEM; /* the context is unusable after a partial pipeline */
        }
    }
    for (size_t i = 0; i < num; i++) {
        redisReply *r = NULL;
        if (errs[i] != RA_OK) continue;
        if (redisGetReply(c, (void **)&r) != REDIS_OK) return ra_redis_reply_err(c, NULL, why, why_len);
        if (r->type == REDIS_REPLY_ERROR) errs[i] = RA_E_BAD_RECORD; /* e.g. WRONGTYPE */
        else errs[i] = ra_registry_decode_reply(r, names[i], &out[i], cause, sizeof(cause));
        if (errs[i] == RA_E_REDIS) errs[i] = RA_E_BAD_RECORD;
        freeReplyObject(r);
    }
    return RA_OK;
}

/* ra_list_page hands one SSCAN page to `cb`; sets *stop if it asked to. */
static ra_err_t ra_list_page(const redisReply *r, char *cursor, size_t cursor_len,
                             ra_registry_list_cb cb, void *arg, int *stop, char *why, size_t why_len) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[1]->type != REDIS_REPLY_ARRAY || r->element[0]->len >= cursor_len) {
        snprintf(why, why_len, "SSCAN: unexpected reply");
        return RA_E_REDIS;
    }
    memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
    const redisReply *names = r->element[1];
    for (size_t i = 0; i < names->elements && !*stop; i++) {
        const redisReply *n = names->element[i];
        if (n->type != REDIS_REPLY_STRING || strlen(n->str) != n->len || !ra_device_name_valid(n->str))
            continue; /* not a name this code wrote */
        *stop = cb(n->str, arg);
    }
    return RA_OK;
}

ra_err_t ra_registry_list(redisContext *c, ra_registry_list_cb cb, void *arg, char *why,
                          size_t why_len) {
    char cursor[32] = "0";
    int stop = 0;
    do {
        redisReply *r = redisCommand(c, "SSCAN %s %s COUNT 500", RA_REGISTRY_SET, cursor);
        ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
        if (e == RA_OK) e = ra_list_page(r, cursor, sizeof(cursor), cb, arg, &stop, why, why_len);
        if (r) freeReplyObject(r);
        if (e != RA_OK) return e;
    } while (!stop && strcmp(cursor, "0") != 0);
    return RA_OK;
}

ra_err_t ra_registry_delete(redisContext *c, const char *name, const char *peer, char *why,
                            size_t why_len) {
    char key[RA_DEVICE_NAME_MAX + 16];
    long long n = 0;
    if (ra_named_key(key, sizeof(key), name, why, why_len) != RA_OK) return RA_E_BAD_NAME;
    redisReply *r = redisCommand(c, "DEL %s", key);
    ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
    if (e == RA_OK && r->type == REDIS_REPLY_INTEGER) n = r->integer;
    if (r) freeReplyObject(r);
    if (e != RA_OK) return e;
    if (n == 0) {
        redisReply *s = redisCommand(c, "SREM %s %s", RA_REGISTRY_SET, name); /* stale index entry */
        if (s) freeReplyObject(s);
        snprintf(why, why_len, "no device %s", name);
        return RA_E_NOT_FOUND;
    }
    return ra_index_and_audit(c, false, 0, "device-delete-record", name, peer, NULL, why, why_len);
}

ra_err_t ra_registry_set_status(redisContext *c, const char *name, ra_status_t status,
                                const char *reason, char *why, size_t why_len) {
    char key[RA_DEVICE_NAME_MAX + 16], now[24];
    if (ra_named_key(key, sizeof(key), name, why, why_len) != RA_OK) return RA_E_BAD_NAME;
    snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
    const char *argv[] = {"EVAL", ra_status_script, "1", key, ra_status_name(status),
                          reason ? reason : "", now};
    long long n = 0;
    if (redisAppendCommandArgv(c, 7, argv, NULL) != REDIS_OK) {
        snprintf(why, why_len, "out of memory");
        return RA_E_NOMEM;
    }
    ra_err_t e = ra_reply_int(c, &n, why, why_len);
    if (e == RA_OK && n == 0) {
        snprintf(why, why_len, "no device %s", name);
        e = RA_E_NOT_FOUND;
    }
    return e;
}
