/* ra_req: the request record script, its command and its reply (see
 * ra_req.h). */
#include "ra/ra_req.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

/* KEYS[1] request; KEYS[2] device (only for a registry device).
 * ARGV: 1 now, 2 id, 3 identity, 4 protocol, 5 peer, 6 csr, 7 issue ("1"/"0"),
 *       8 reason, 9 cert, 10 serial, 11 not_after, 12 renew_serial.
 * Reply: {outcome, reason, cert, serial, not_after, was_open}. */
static const char ra_req_lua[] =
    "local k, now = KEYS[1], tonumber(ARGV[1])\n"
    "local p = redis.call('HMGET', k, 'state', 'serial', 'not_after', 'cert', 'received', 'attempts')\n"
    "local was_open, received, attempts = 0, ARGV[1], 0\n"
    "if p[1] == 'issued' then\n"
    "  local na = tonumber(p[3]) or 0\n"
    "  if p[2] ~= ARGV[12] and na > now then\n"
    "    redis.call('HSET', k, 'last_seen', ARGV[1], 'last_peer', ARGV[5])\n"
    "    redis.call('HINCRBY', k, 'attempts', 1)\n"
    "    return {'existing', '', p[4], p[2], na, 0}\n"
    "  end\n"
    "  redis.call('RENAME', k, k .. ':' .. p[2])\n"
    "elseif p[1] then\n"
    "  was_open, received, attempts = 1, p[5] or ARGV[1], tonumber(p[6]) or 0\n"
    "end\n"
    "local issue, reason, out = ARGV[7] == '1', ARGV[8], 'rejected'\n"
    "if #KEYS > 1 then\n"
    "  local d = redis.call('HMGET', KEYS[2], 'op', 'by')\n"
    "  if issue then\n"
    "    if not d[1] then reason = 'device is not registered'\n"
    "    elseif d[1] ~= 'install' then reason = 'no certificate operation pending for this device'\n"
    "    elseif (tonumber(d[2]) or 0) ~= 0 and tonumber(d[2]) < now then reason = 'deadline passed' end\n"
    "    if reason ~= '' then issue, out = false, 'refused' end\n"
    "  end\n"
    "  if not issue and d[1] == 'install' then\n"
    "    redis.call('HSET', KEYS[2], 'status', 'failed', 'reason', reason, 'updated', ARGV[1])\n"
    "  end\n"
    "end\n"
    "redis.call('DEL', k)\n"
    "redis.call('HSET', k, 'id', ARGV[2], 'identity', ARGV[3], 'protocol', ARGV[4], 'peer', ARGV[5],\n"
    "  'csr', ARGV[6], 'mode', 'local', 'received', received, 'updated', ARGV[1],\n"
    "  'attempts', attempts + 1)\n"
    "if not issue then\n"
    "  redis.call('HSET', k, 'state', 'rejected', 'reason', reason)\n"
    "  return {out, reason, '', '', 0, was_open}\n"
    "end\n"
    "redis.call('HSET', k, 'state', 'issued', 'serial', ARGV[10], 'not_after', ARGV[11], 'cert', ARGV[9])\n"
    "if #KEYS > 1 then\n"
    "  redis.call('HSET', KEYS[2], 'op', 'none', 'status', 'success', 'reason', '',\n"
    "    'lsc_serial', ARGV[10], 'lsc_not_after', ARGV[11], 'updated', ARGV[1])\n"
    "end\n"
    "return {'issued', '', '', ARGV[10], tonumber(ARGV[11]), was_open}\n";

static const char *const ra_req_outcome_text[RA_REQ_OUT__COUNT] = {
    [RA_REQ_OUT_ISSUED] = "issued",
    [RA_REQ_OUT_EXISTING] = "existing",
    [RA_REQ_OUT_REFUSED] = "refused",
    [RA_REQ_OUT_REJECTED] = "rejected",
};

const char *ra_req_outcome_str(ra_req_outcome_t o) {
    return o < RA_REQ_OUT__COUNT ? ra_req_outcome_text[o] : "unknown";
}

const char *ra_req_script(void) { return ra_req_lua; }

static void ra_hex(char *out, const uint8_t *in, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

void ra_req_script_sha(char out[41]) {
    uint8_t md[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)ra_req_lua, sizeof(ra_req_lua) - 1, md);
    ra_hex(out, md, sizeof(md));
}

bool ra_req_identity_valid(const char *s, size_t len) {
    if (len == 0 || len > RA_REQ_IDENTITY_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '@' || c == '-';
        if (!ok) return false;
    }
    return true;
}

void ra_req_id(char *buf, size_t buf_len, const char *identity, const uint8_t sha256[32]) {
    char hex[65];
    ra_hex(hex, sha256, 32);
    snprintf(buf, buf_len, "%s:%s", identity, hex);
}

void ra_req_key(char *buf, size_t buf_len, const char *identity, const uint8_t sha256[32]) {
    char hex[65];
    ra_hex(hex, sha256, 32);
    snprintf(buf, buf_len, "stp:req:{%s}:%s", identity, hex);
}

ra_err_t ra_req_key_of_id(char *buf, size_t buf_len, const char *id) {
    const char *colon = strrchr(id, ':');
    if (!colon || !ra_req_identity_valid(id, (size_t)(colon - id)) || strlen(colon + 1) != 64 ||
        strspn(colon + 1, "0123456789abcdef") != 64)
        return RA_E_BAD_NAME;
    snprintf(buf, buf_len, "stp:req:{%.*s}:%s", (int)(colon - id), id, colon + 1);
    return RA_OK;
}

ra_err_t ra_req_record_cmd(ra_req_cmd_t *cmd, const char *sha, const ra_req_record_t *r) {
    if (!ra_req_identity_valid(r->identity, strlen(r->identity))) return RA_E_BAD_NAME;
    ra_req_key(cmd->key, sizeof(cmd->key), r->identity, r->csr_sha256);
    ra_req_id(cmd->id, sizeof(cmd->id), r->identity, r->csr_sha256);
    snprintf(cmd->devkey, sizeof(cmd->devkey), "stp:dev:{%s}", r->identity);
    snprintf(cmd->now, sizeof(cmd->now), "%lld", (long long)r->now);
    snprintf(cmd->not_after, sizeof(cmd->not_after), "%lld", (long long)(r->issue ? r->not_after : 0));
    int n = 0;
#define ARG(p, l) (cmd->argv[n] = (const char *)(p), cmd->argvlen[n] = (l), n++)
#define ARGS(s) ARG((s), strlen(s))
    ARGS("EVALSHA");
    ARGS(sha);
    ARGS(r->device ? "2" : "1");
    ARGS(cmd->key);
    if (r->device) ARGS(cmd->devkey);
    ARGS(cmd->now);
    ARGS(cmd->id);
    ARGS(r->identity);
    ARGS(r->protocol);
    ARGS(r->peer ? r->peer : "");
    ARG(r->csr_der, r->csr_len);
    ARGS(r->issue ? "1" : "0");
    ARGS(r->issue || !r->reason ? "" : r->reason);
    ARG(r->issue ? r->cert_der : (const uint8_t *)"", r->issue ? r->cert_len : 0);
    ARGS(r->issue ? r->serial_hex : "");
    ARGS(cmd->not_after);
    ARGS(r->renew_serial_hex ? r->renew_serial_hex : "");
#undef ARGS
#undef ARG
    cmd->argc = n;
    return RA_OK;
}

/* ra_copy_str copies a string reply element into a bounded buffer. */
static bool ra_copy_str(char *out, size_t cap, const redisReply *e) {
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS) return false;
    size_t n = e->len < cap - 1 ? e->len : cap - 1;
    memcpy(out, e->str, n);
    out[n] = 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20 || (unsigned char)out[i] > 0x7e) out[i] = '?';
    return true;
}

ra_err_t ra_req_record_parse(const redisReply *rep, ra_req_result_t *out, char *why, size_t why_len) {
    memset(out, 0, sizeof(*out));
    if (!rep) {
        snprintf(why, why_len, "no reply (connection lost)");
        return RA_E_REDIS;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(why, why_len, "request script: %.*s", (int)(rep->len < 200 ? rep->len : 200), rep->str);
        return RA_E_REDIS;
    }
    char outcome[16];
    const redisReply *const *e = (const redisReply *const *)rep->element;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 6 || !ra_copy_str(outcome, sizeof(outcome), e[0]) ||
        !ra_copy_str(out->reason, sizeof(out->reason), e[1]) || e[2]->type != REDIS_REPLY_STRING ||
        !ra_copy_str(out->serial, sizeof(out->serial), e[3]) || e[4]->type != REDIS_REPLY_INTEGER ||
        e[5]->type != REDIS_REPLY_INTEGER)
        goto shape;
    out->outcome = RA_REQ_OUT__COUNT;
    for (int o = 0; o < RA_REQ_OUT__COUNT; o++)
        if (!strcmp(outcome, ra_req_outcome_text[o])) out->outcome = (ra_req_outcome_t)o;
    if (out->outcome == RA_REQ_OUT__COUNT) goto shape;
    out->cert = (const uint8_t *)e[2]->str;
    out->cert_len = e[2]->len;
    out->not_after = e[4]->integer;
    out->was_open = e[5]->integer != 0;
    if (out->outcome == RA_REQ_OUT_EXISTING && out->cert_len == 0) goto shape;
    return RA_OK;
shape:
    snprintf(why, why_len, "request script replied in an unexpected shape");
    return RA_E_REDIS;
}

bool ra_req_index_cmd(const ra_req_result_t *res, const char *id, const char *score,
                      const char *argv[4], size_t argvlen[4], int *argc) {
    if (res->outcome == RA_REQ_OUT_REFUSED || res->outcome == RA_REQ_OUT_REJECTED) {
        argv[0] = "ZADD", argv[1] = RA_REQ_OPEN_SET, argv[2] = score, argv[3] = id;
        *argc = 4;
    } else if (res->outcome == RA_REQ_OUT_ISSUED && res->was_open) {
        argv[0] = "ZREM", argv[1] = RA_REQ_OPEN_SET, argv[2] = id;
        *argc = 3;
    } else {
        return false;
    }
    for (int i = 0; i < *argc; i++) argvlen[i] = strlen(argv[i]);
    return true;
}
