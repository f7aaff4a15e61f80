/* ra_req: the request record script, its command and its reply (see
 * ra_req.h). */
#include "ra/ra_req.h"
#include "ra/ra_redis.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

/* KEYS[1] stp:audit, KEYS[2] stp:reqs:open, KEYS[3] stp:upstream; per
 * request i: KEYS[2+2i] request key, KEYS[3+2i] device key.
 * ARGV[1] now, ARGV[2] n; per request i the RA_REQ_ITEM_ARGS values from
 * ARGV[3 + (i-1)*16]: +0 kind (R record, A audit-only denial), +1 id,
 * +2 identity, +3 protocol, +4 peer, +5 csr, +6 issue (1/0), +7 reason,
 * +8 cert, +9 serial, +10 not_after, +11 renew_serial, +12 device (1/0),
 * +13 online (1/0: an accepted request is queued for the upstream CA
 * instead of issued), +14 notify channel, +15 p10 (upstream request; empty:
 * the csr).
 * Reply: per request {outcome, reason, cert, serial, not_after, was_open},
 * outcome "error" with the message if that request's commands failed.
 * Outcome "pending" (online mode) is not audited: stampede-control audits
 * the CA's answer. A pending record is never deleted or rewritten here (the
 * upstream CA may hold it under its ca_req_id): an attempt that is not an
 * online acceptance (a policy refusal now, or local mode) is refused with
 * its reason and the record is left as it is. */
static const char ra_req_lua[] =
    "local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local function record(k, dk, a)\n"
    "  local p = redis.call('HMGET', k, 'state', 'serial', 'not_after', 'cert', 'received', 'attempts')\n"
    "  local was_open, received, attempts = 0, ARGV[1], 0\n"
    "  if p[1] == 'issued' then\n"
    "    local na = tonumber(p[3]) or 0\n"
    "    if p[2] ~= ARGV[a+11] and na > now then\n"
    "      redis.call('HSET', k, 'last_seen', ARGV[1], 'last_peer', ARGV[a+4])\n"
    "      redis.call('HINCRBY', k, 'attempts', 1)\n"
    "      return {'existing', '', p[4], p[2], na, 0}\n"
    "    end\n"
    "    redis.call('RENAME', k, k .. ':' .. p[2])\n"
    "  elseif p[1] == 'pending' then\n"
    "    if ARGV[a+13] == '1' and ARGV[a+6] == '1' then\n"
    "      redis.call('HSET', k, 'notify', ARGV[a+14], 'last_seen', ARGV[1], 'last_peer', ARGV[a+4])\n"
    "      redis.call('HINCRBY', k, 'attempts', 1)\n"
    "      return {'pending', '', '', '', 0, 1}\n"
    "    end\n"
    "    local why = ARGV[a+7] ~= '' and ARGV[a+7] or 'request pending at the upstream CA'\n"
    "    return {'refused', why, '', '', 0, 1}\n"
    "  elseif p[1] then\n"
    "    was_open, received, attempts = 1, p[5] or ARGV[1], tonumber(p[6]) or 0\n"
    "    redis.call('DEL', k)\n"
    "  end\n"
    "  local issue, reason, out = ARGV[a+6] == '1', ARGV[a+7], 'rejected'\n"
    "  if ARGV[a+12] == '1' then\n"
    "    local d = redis.call('HMGET', dk, 'op', 'by')\n"
    "    if issue then\n"
    "      if not d[1] then reason = 'device is not registered'\n"
    "      elseif d[1] ~= 'install' then reason = 'no certificate operation pending for this device'\n"
    "      elseif (tonumber(d[2]) or 0) ~= 0 and tonumber(d[2]) < now then reason = 'deadline passed' end\n"
    "      if reason ~= '' then issue, out = false, 'refused' end\n"
    "    end\n"
    "    if not issue and d[1] == 'install' then\n"
    "      redis.call('HSET', dk, 'status', 'failed', 'reason', reason, 'updated', ARGV[1])\n"
    "    end\n"
    "  end\n"
    "  local f = {'id', ARGV[a+1], 'identity', ARGV[a+2], 'protocol', ARGV[a+3], 'peer', ARGV[a+4],\n"
    "    'csr', ARGV[a+5], 'mode', 'local', 'received', received, 'updated', ARGV[1],\n"
    "    'attempts', attempts + 1}\n"
    "  if not issue then\n"
    "    f[#f+1] = 'state'; f[#f+1] = 'rejected'; f[#f+1] = 'reason'; f[#f+1] = reason\n"
    "    redis.call('HSET', k, unpack(f))\n"
    "    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[a+1])\n"
    "    return {out, reason, '', '', 0, was_open}\n"
    "  end\n"
    "  if ARGV[a+13] == '1' then\n"
    "    f[12] = 'online'\n"
    "    local p10 = ARGV[a+15] ~= '' and ARGV[a+15] or ARGV[a+5]\n"
    "    f[#f+1] = 'state'; f[#f+1] = 'pending'; f[#f+1] = 'ca_state'; f[#f+1] = 'queued'\n"
    "    f[#f+1] = 'p10'; f[#f+1] = p10; f[#f+1] = 'notify'; f[#f+1] = ARGV[a+14]\n"
    "    redis.call('HSET', k, unpack(f))\n"
    "    redis.call('ZADD', KEYS[2], ARGV[1], ARGV[a+1])\n"
    "    redis.call('XADD', KEYS[3], '*', 'key', k, 'id', ARGV[a+1])\n"
    "    return {'pending', '', '', '', 0, was_open}\n"
    "  end\n"
    "  f[#f+1] = 'state'; f[#f+1] = 'issued'; f[#f+1] = 'serial'; f[#f+1] = ARGV[a+9]\n"
    "  f[#f+1] = 'not_after'; f[#f+1] = ARGV[a+10]; f[#f+1] = 'cert'; f[#f+1] = ARGV[a+8]\n"
    "  redis.call('HSET', k, unpack(f))\n"
    "  if was_open == 1 then redis.call('ZREM', KEYS[2], ARGV[a+1]) end\n"
    "  if ARGV[a+12] == '1' then\n"
    "    redis.call('HSET', dk, 'op', 'none', 'status', 'success', 'reason', '',\n"
    "      'lsc_serial', ARGV[a+9], 'lsc_not_after', ARGV[a+10], 'updated', ARGV[1])\n"
    "  end\n"
    "  return {'issued', '', '', ARGV[a+9], tonumber(ARGV[a+10]), was_open}\n"
    "end\n"
    "local events = {issued = 'issue', existing = 'reissue'}\n"
    "local res = {}\n"
    "for i = 1, n do\n"
    "  local a = 3 + (i - 1) * 16\n"
    "  local r\n"
    "  if ARGV[a] == 'A' then\n"
    "    r = {'rejected', ARGV[a+7], '', '', 0, 0}\n"
    "  else\n"
    "    local ok, v = pcall(record, KEYS[2 + 2 * i], KEYS[3 + 2 * i], a)\n"
    "    if ok then r = v else\n"
    "      r = {'error', type(v) == 'table' and v.err or tostring(v), '', '', 0, 0}\n"
    "    end\n"
    "  end\n"
    "  if r[1] ~= 'error' and r[1] ~= 'pending' then\n"
    "    local e = {'event', events[r[1]] or 'deny', 'time', ARGV[1], 'device', ARGV[a+2], 'peer', ARGV[a+4]}\n"
    "    if r[2] ~= '' then e[#e+1] = 'reason'; e[#e+1] = r[2] end\n"
    "    if r[4] ~= '' then e[#e+1] = 'serial'; e[#e+1] = r[4] end\n"
    "    if ARGV[a+1] ~= '' then e[#e+1] = 'request'; e[#e+1] = ARGV[a+1] end\n"
    "    e[#e+1] = 'protocol'; e[#e+1] = ARGV[a+3]\n"
    "    redis.call('XADD', KEYS[1], '*', unpack(e))\n"
    "  end\n"
    "  res[i] = r\n"
    "end\n"
    "return res\n";

static const char *const ra_req_outcome_text[RA_REQ_OUT__COUNT] = {
    [RA_REQ_OUT_ISSUED] = "issued",
    [RA_REQ_OUT_EXISTING] = "existing",
    [RA_REQ_OUT_REFUSED] = "refused",
    [RA_REQ_OUT_REJECTED] = "rejected",
    [RA_REQ_OUT_PENDING] = "pending",
};

const char *ra_req_outcome_str(ra_req_outcome_t o) {
    return o < RA_REQ_OUT__COUNT ? ra_req_outcome_text[o] : "unknown";
}

const char *ra_req_script(void) { return ra_req_lua; }

void ra_hex(char *out, const uint8_t *in, size_t n) {
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

void ra_req_batch_init(ra_req_batch_t *b, const char *sha, int64_t now) {
    b->n = 0;
    b->argc = 0;
    snprintf(b->sha, sizeof(b->sha), "%s", sha);
    snprintf(b->now, sizeof(b->now), "%lld", (long long)now);
}

/* ra_item_args returns where request `i`'s values go, and sets its keys. */
static const char **ra_item_args(ra_req_batch_t *b, size_t **lens, const char *key, const char *devkey) {
    size_t i = b->n++;
    b->keys[2 * i] = key;
    b->keys[2 * i + 1] = devkey;
    *lens = &b->args_len[i * RA_REQ_ITEM_ARGS];
    return &b->args[i * RA_REQ_ITEM_ARGS];
}

ra_err_t ra_req_batch_add(ra_req_batch_t *b, const ra_req_record_t *r) {
    if (!ra_req_identity_valid(r->identity, strlen(r->identity))) return RA_E_BAD_NAME;
    if (b->n >= RA_REQ_BATCH_MAX) return RA_E_NOMEM;
    ra_req_batch_item_t *it = &b->item[b->n];
    ra_req_key(it->key, sizeof(it->key), r->identity, r->csr_sha256);
    ra_req_id(it->id, sizeof(it->id), r->identity, r->csr_sha256);
    snprintf(it->devkey, sizeof(it->devkey), "stp:dev:{%s}", r->identity);
    snprintf(it->not_after, sizeof(it->not_after), "%lld", (long long)(r->issue ? r->not_after : 0));
    size_t *len;
    const char **v = ra_item_args(b, &len, it->key, it->devkey);
    const char *vals[RA_REQ_ITEM_ARGS] = {
        "R", it->id, r->identity, r->protocol, r->peer ? r->peer : "", (const char *)r->csr_der,
        r->issue ? "1" : "0", r->issue || !r->reason ? "" : r->reason,
        r->issue ? (const char *)r->cert_der : "", r->issue ? r->serial_hex : "", it->not_after,
        r->renew_serial_hex ? r->renew_serial_hex : "", r->device ? "1" : "0", r->online ? "1" : "0",
        r->online && r->notify ? r->notify : "", r->online && r->p10_der ? (const char *)r->p10_der : ""};
    for (int k = 0; k < RA_REQ_ITEM_ARGS; k++) {
        v[k] = vals[k] ? vals[k] : "";
        /* the CSR, certificate and upstream request are binary DER, not strings */
        len[k] = k == 5    ? (r->csr_der ? r->csr_len : 0)
                 : k == 8  ? (r->issue && r->cert_der ? r->cert_len : 0)
                 : k == 15 ? (r->online && r->p10_der ? r->p10_len : 0)
                           : strlen(v[k]);
    }
    return RA_OK;
}

ra_err_t ra_req_batch_add_denial(ra_req_batch_t *b, const ra_req_denial_t *d) {
    if (b->n >= RA_REQ_BATCH_MAX) return RA_E_NOMEM;
    size_t *len;
    /* placeholder keys: the audit stream itself (an audit-only item touches nothing else) */
    const char **v = ra_item_args(b, &len, "stp:audit", "stp:audit");
    const char *vals[RA_REQ_ITEM_ARGS] = {"A", "", d->who, d->protocol, d->peer, "", "0", d->reason,
                                          "", "", "0", "", "0", "0", "", ""};
    for (int k = 0; k < RA_REQ_ITEM_ARGS; k++) {
        v[k] = vals[k] ? vals[k] : "";
        len[k] = strlen(v[k]);
    }
    return RA_OK;
}

void ra_req_batch_cmd(ra_req_batch_t *b) {
    int n = 0;
    snprintf(b->count, sizeof(b->count), "%zu", b->n);
    snprintf(b->numkeys, sizeof(b->numkeys), "%zu", 3 + 2 * b->n);
#define ARG(p, l) (b->argv[n] = (p), b->argvlen[n] = (l), n++)
    ARG("EVALSHA", 7);
    ARG(b->sha, strlen(b->sha));
    ARG(b->numkeys, strlen(b->numkeys));
    ARG("stp:audit", 9);
    ARG(RA_REQ_OPEN_SET, strlen(RA_REQ_OPEN_SET));
    ARG(RA_REQ_UPSTREAM_STREAM, strlen(RA_REQ_UPSTREAM_STREAM));
    for (size_t i = 0; i < 2 * b->n; i++) ARG(b->keys[i], strlen(b->keys[i]));
    ARG(b->now, strlen(b->now));
    ARG(b->count, strlen(b->count));
    for (size_t i = 0; i < b->n * RA_REQ_ITEM_ARGS; i++) ARG(b->args[i], b->args_len[i]);
#undef ARG
    b->argc = n;
}

ra_err_t ra_req_record_cmd(ra_req_cmd_t *cmd, const char *sha, const ra_req_record_t *r) {
    ra_req_batch_init(cmd, sha, r->now);
    ra_err_t e = ra_req_batch_add(cmd, r);
    if (e == RA_OK) ra_req_batch_cmd(cmd);
    return e;
}

/* ra_copy_str copies a string reply element into a bounded buffer. */
static bool ra_copy_str(char *out, size_t cap, const redisReply *e) {
    if (e->type != REDIS_REPLY_STRING && e->type != REDIS_REPLY_STATUS) return false;
    ra_redis_text(out, cap, e);
    return true;
}

/* ra_parse_item reads one result {outcome, reason, cert, serial, not_after,
 * was_open}. */
static ra_err_t ra_parse_item(const redisReply *rep, ra_req_result_t *out, char *why, size_t why_len) {
    memset(out, 0, sizeof(*out));
    char outcome[16];
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 6) goto shape;
    const redisReply *const *e = (const redisReply *const *)rep->element;
    if (!ra_copy_str(outcome, sizeof(outcome), e[0]) || !ra_copy_str(out->reason, sizeof(out->reason), e[1]) ||
        e[2]->type != REDIS_REPLY_STRING || !ra_copy_str(out->serial, sizeof(out->serial), e[3]) ||
        e[4]->type != REDIS_REPLY_INTEGER || e[5]->type != REDIS_REPLY_INTEGER)
        goto shape;
    if (!strcmp(outcome, "error")) {
        snprintf(why, why_len, "request script: %s", out->reason);
        return RA_E_REDIS;
    }
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

/* ra_reply_error reports a NULL or error reply. */
static bool ra_reply_error(const redisReply *rep, char *why, size_t why_len) {
    if (!rep) {
        snprintf(why, why_len, "no reply (connection lost)");
        return true;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        snprintf(why, why_len, "request script: %.*s", (int)(rep->len < 200 ? rep->len : 200), rep->str);
        return true;
    }
    return false;
}

ra_err_t ra_req_batch_parse(const redisReply *rep, size_t n, size_t i, ra_req_result_t *out, char *why,
                            size_t why_len) {
    memset(out, 0, sizeof(*out));
    if (ra_reply_error(rep, why, why_len)) return RA_E_REDIS;
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != n || i >= n) {
        snprintf(why, why_len, "request script replied in an unexpected shape");
        return RA_E_REDIS;
    }
    return ra_parse_item(rep->element[i], out, why, why_len);
}

ra_err_t ra_req_record_parse(const redisReply *rep, ra_req_result_t *out, char *why, size_t why_len) {
    memset(out, 0, sizeof(*out));
    if (ra_reply_error(rep, why, why_len)) return RA_E_REDIS;
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1) return ra_req_batch_parse(rep, 1, 0, out, why, why_len);
    return ra_parse_item(rep, out, why, why_len);
}
