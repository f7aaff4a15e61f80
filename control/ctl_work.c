/* ctl_work: the online-CA work loop (see ctl_work.h): the record script,
 * the worker threads (stream, XAUTOCLAIM, wait-set leases, certsrv calls)
 * and the chain thread. Thread: each worker and the chain thread own their
 * ctl_conn_t, their Redis connection and their buffers; they share only
 * the ctl_rt_t (frozen config, stop flag, atomic counters). */
#include "control/ctl_work.h"

#include <errno.h>
#include <openssl/asn1.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/ctl_certsrv.h"
#include "dataplane/dp_log.h"

#define CTL_KEY_MAX 200
#define CTL_REDIS_TIMEOUT_MS 5000 /* above XREADGROUP's BLOCK 1000 */
#define CTL_BACKOFF_MIN_MS 100
#define CTL_BACKOFF_MAX_MS 2000
#define CTL_CLAIM_COUNT "8"
#define CTL_LEASE_BURST 8 /* wait-set members taken (one at a time) per loop turn */
#define CTL_P10_MAX (64 * 1024)
#define CTL_CHAIN_CHECK_MS 10000 /* the chain thread checks stp:ca:upstream is still there */

/* The record script. Verbs and their keys:
 *   LEASE     KEYS[1] stp:upstream:wait. ARGV[3] lease_ms, [4] n.
 *             Takes at most n members due at now (score <= now), moves each
 *             one's score to now + lease; replies {next, members...} where
 *             next is the earliest score left in the set ("" if empty).
 *   CA        KEYS[1] stp:ca:upstream, [2] stp:audit. ARGV[3] renewal,
 *             [4] chain, [5] ca_cert, [6] previous, [7] url, [8] "1" if
 *             `previous` is given. Replies {first|same|rollover, old renewal};
 *             a rollover is audited upstream-ca-rollover.
 *   record verbs: KEYS[1] the record, [2] stp:upstream:wait, [3] stp:audit,
 *             [4] stp:reqs:open, [5] stp:dev:{IDENTITY} (the record's hash
 *             tag). A record that is missing, not `mode online` or not
 *             `state pending` is left alone ({gone, state}; its wait-set
 *             member is removed), except that COMPLETE on an issued record
 *             and REJECT on a rejected one reply {done}.
 *   TAKE      ARGV[3] lease_ms, [4] stream|leased. From the stream, a
 *             record whose wait-set score lies ahead is owned by someone
 *             else ({busy}); else the member gets score now + lease. Replies
 *             {ok, id, identity, protocol, ca_req_id, ca_state, p10}.
 *   SUBMIT    ARGV[3] lease_ms, [4] upstream url, [5] CSR SHA-256 hex.
 *             {poll, ca_req_id} if the CA's id is stored (never POST again);
 *             ca_state submitting (the last POST's outcome is unknown):
 *             unknown_submits + 1, at 2 the record is rejected ({gave-up,
 *             reason}), else audited upstream-resubmit ({resubmit, n}); else
 *             {post, n}. Both set ca_state submitting, submits n, renew the
 *             lease.
 *   ACKID     ARGV[3] lease_ms, [4] CA request id, [5] submitted|approval.
 *             Stores the id (rule 2) -> {ok, id}; a different stored id
 *             wins -> {conflict, stored id}.
 *   COMPLETE  ARGV[3] CA request id, [4] serial, [5] not_after, [6] cert.
 *   REJECT    ARGV[3] diag, [4] reason, [5] CA request id or "".
 *   WAIT      ARGV[3] approval|retry|unknown, [4] diag, [5] reason,
 *             [6] retry_min_ms, [7] retry_max_ms, [8] poll_ms. Replies
 *             {waiting, due_ms, retries}.
 * ARGV[1] is the verb, ARGV[2] the caller's time in unix milliseconds.
 * Arguments the script cannot use get an error reply "ctl: bad ..." and
 * nothing is written. */
/* The script keeps 640 characters of a reason (text(..., 640) in REJECT and
 * WAIT): a whole connector cause line, whose fix comes last. */
_Static_assert(CTL_CAUSE_MAX <= 640, "the record script cuts reasons at 640 characters");
static const char ctl_lua[] =
    "local verb, now_ms = ARGV[1], tonumber(ARGV[2])\n"
    "local function bad(what) return redis.error_reply('ERR ctl: bad ' .. what) end\n"
    "if not now_ms then return bad('now') end\n"
    "local now = tostring(math.floor(now_ms / 1000))\n"
    "local function num(v) return tonumber(v or '') or 0 end\n"
    "local function secs(ms) return string.format('%.3f', ms / 1000) end\n"
    "local function text(v, n) return (string.gsub(string.sub(v or '', 1, n), '[^\\32-\\126]', '?')) end\n"
    "if verb == 'LEASE' then\n"
    "  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', secs(now_ms), 'LIMIT', 0, num(ARGV[4]))\n"
    "  for _, m in ipairs(due) do redis.call('ZADD', KEYS[1], secs(now_ms + num(ARGV[3])), m) end\n"
    "  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')\n"
    "  local out = {first[2] or ''}\n"
    "  for _, m in ipairs(due) do out[#out+1] = m end\n"
    "  return out\n"
    "end\n"
    "if verb == 'CA' then\n"
    "  local old = redis.call('HGET', KEYS[1], 'renewal')\n"
    "  redis.call('HSET', KEYS[1], 'renewal', ARGV[3], 'chain', ARGV[4], 'ca_cert', ARGV[5], 'url', ARGV[7],\n"
    "    'updated', now)\n"
    "  if ARGV[8] == '1' then redis.call('HSET', KEYS[1], 'previous', ARGV[6]) end\n"
    "  if old and old ~= ARGV[3] then\n"
    "    redis.call('XADD', KEYS[2], '*', 'event', 'upstream-ca-rollover', 'time', now, 'reason',\n"
    "      'upstream CA renewal ' .. text(old, 10) .. ' -> ' .. text(ARGV[3], 10) .. ' at ' .. text(ARGV[7], 300))\n"
    "    return {'rollover', old}\n"
    "  end\n"
    "  return {old and 'same' or 'first', old or ''}\n"
    "end\n"
    "local key, wait, audit, open, dev = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]\n"
    "local tag = string.match(key or '', '^stp:req:{([%w_.@-]+)}:')\n"
    "if not tag or not dev or dev ~= 'stp:dev:{' .. tag .. '}' or not wait or not audit or not open then\n"
    "  return bad('keys')\n"
    "end\n"
    "local f = redis.call('HMGET', key, 'mode', 'state', 'ca_state', 'ca_req_id', 'id', 'identity',\n"
    "  'protocol', 'peer', 'notify', 'submits', 'unknown_submits', 'retries', 'submit_turn')\n"
    "local mode, state, ca_state, req_id = f[1], f[2], f[3] or '', f[4] or ''\n"
    "local id, identity, protocol, peer, notify = f[5] or '', f[6] or '', f[7] or '', f[8] or '', f[9] or ''\n"
    "local pending = mode == 'online' and state == 'pending'\n"
    "local function gone()\n"
    "  redis.call('ZREM', wait, key)\n"
    "  return {'gone', state or ''}\n"
    "end\n"
    "local function lease() redis.call('ZADD', wait, secs(now_ms + num(ARGV[3])), key) end\n"
    "local function audit_add(event, reason, serial)\n"
    "  local e = {'event', event, 'time', now}\n"
    "  local function put(k, v) if v ~= '' then e[#e+1] = k; e[#e+1] = v end end\n"
    "  put('device', identity); put('peer', peer); put('reason', reason); put('serial', serial)\n"
    "  put('request', id); put('protocol', protocol)\n"
    "  redis.call('XADD', audit, '*', unpack(e))\n"
    "end\n"
    "local function reject(reason, diag, rid)\n"
    "  redis.call('HSET', key, 'state', 'rejected', 'reason', reason, 'ca_diag', diag, 'ca_state', 'done',\n"
    "    'updated', now)\n"
    "  if rid ~= '' and req_id == '' then redis.call('HSET', key, 'ca_req_id', rid) end\n"
    "  redis.call('HDEL', key, 'next_try')\n"
    "  if id ~= '' then redis.call('ZADD', open, now, id) end\n"
    "  redis.call('ZREM', wait, key)\n"
    "  audit_add('deny', reason, '')\n"
    "  if protocol == 'est' and redis.call('HGET', dev, 'op') == 'install' then\n"
    "    redis.call('HSET', dev, 'status', 'failed', 'reason', string.sub(reason, 1, 250), 'updated', now)\n"
    "  end\n"
    "  if notify ~= '' then redis.call('PUBLISH', notify, key) end\n"
    "end\n"
    "if verb == 'TAKE' then\n"
    "  if not pending then return gone() end\n"
    "  if ARGV[4] == 'stream' then\n"
    "    local s = redis.call('ZSCORE', wait, key)\n"
    "    if s and tonumber(s) * 1000 > now_ms then return {'busy', s} end\n"
    "  end\n"
    "  lease()\n"
    "  return {'ok', id, identity, protocol, req_id, ca_state, redis.call('HGET', key, 'p10') or ''}\n"
    "elseif verb == 'SUBMIT' then\n"
    "  if not pending then return gone() end\n"
    "  if req_id ~= '' then lease(); return {'poll', req_id} end\n"
    "  if ca_state == 'submitting' and ARGV[6] ~= '' and f[13] == ARGV[6] then\n"
    "    lease(); return {'post', tostring(num(f[10]))}\n"  /* our own call again: its reply was lost */
    "  end\n"
    "  local verdict = 'post'\n"
    "  if ca_state == 'submitting' then\n"
    "    local unk = num(f[11]) + 1\n"
    "    redis.call('HSET', key, 'unknown_submits', tostring(unk))\n"
    "    if unk >= 2 then\n"
    "      local reason = 'outcome of ' .. unk .. ' submissions unknown: look up the request on the CA by CSR '\n"
    "        .. 'hash (SHA-256 ' .. text(ARGV[5], 64) .. ') and revoke duplicates; present the CSR again to retry'\n"
    "      reject(reason, 'outcome-unknown', '')\n"
    "      return {'gave-up', reason}\n"
    "    end\n"
    "    audit_add('upstream-resubmit', 'outcome unknown: possible duplicate issuance', '')\n"
    "    verdict = 'resubmit'\n"
    "  end\n"
    "  local n = num(f[10]) + 1\n"
    "  redis.call('HSET', key, 'ca_state', 'submitting', 'submits', tostring(n), 'upstream_url', ARGV[4],\n"
    "    'submit_turn', ARGV[6] or '', 'updated', now)\n"
    "  lease()\n"
    "  return {verdict, tostring(n)}\n"
    "elseif verb == 'ACKID' then\n"
    "  if not string.match(ARGV[4] or '', '^%d%d?%d?%d?%d?%d?%d?%d?%d?%d?$') then return bad('request id') end\n"
    "  if ARGV[5] ~= 'submitted' and ARGV[5] ~= 'approval' then return bad('ca_state') end\n"
    "  if not pending then return gone() end\n"
    "  lease()\n"
    "  if req_id ~= '' and req_id ~= ARGV[4] then return {'conflict', req_id} end\n"
    "  redis.call('HSET', key, 'ca_req_id', ARGV[4], 'ca_state', ARGV[5], 'updated', now)\n"
    "  return {'ok', ARGV[4]}\n"
    "elseif verb == 'COMPLETE' then\n"
    "  if mode == 'online' and state == 'issued' then redis.call('ZREM', wait, key); return {'done', ''} end\n"
    "  if not pending then return gone() end\n"
    "  local rid, serial, na = ARGV[3], text(ARGV[4], 64), ARGV[5]\n"
    "  redis.call('HSET', key, 'state', 'issued', 'cert', ARGV[6], 'serial', serial, 'not_after', na,\n"
    "    'ca_state', 'done', 'ca_req_id', rid, 'updated', now)\n"
    "  redis.call('HDEL', key, 'reason', 'ca_diag', 'next_try')\n"
    "  if id ~= '' then redis.call('ZREM', open, id) end\n"
    "  redis.call('ZREM', wait, key)\n"
    "  audit_add('issue', 'online CA request ' .. text(rid, 10), serial)\n"
    "  if protocol == 'est' and redis.call('HGET', dev, 'op') == 'install' then\n"
    "    redis.call('HSET', dev, 'op', 'none', 'status', 'success', 'reason', '', 'lsc_serial', serial,\n"
    "      'lsc_not_after', na, 'updated', now)\n"
    "  end\n"
    "  if notify ~= '' then redis.call('PUBLISH', notify, key) end\n"
    "  return {'issued', ''}\n"
    "elseif verb == 'REJECT' then\n"
    "  if mode == 'online' and state == 'rejected' and ca_state == 'done' then return {'done', ''} end\n"
    "  if not pending then return gone() end\n"
    "  reject(text(ARGV[4], 640), text(ARGV[3], 40), text(ARGV[5], 10))\n"
    "  return {'rejected', ''}\n"
    "elseif verb == 'WAIT' then\n"
    "  local states = {approval = 'approval', retry = 'retry', unknown = 'submitting'}\n"
    "  local cs = states[ARGV[3] or '']\n"
    "  if not cs then return bad('kind') end\n"
    "  if not pending then return gone() end\n"
    "  local retries, delay = num(f[12]), num(ARGV[6])\n"
    "  if ARGV[3] == 'approval' then\n"
    "    delay, retries = num(ARGV[8]), 0\n"
    "  else\n"
    "    for _ = 1, retries do\n"
    "      if delay >= num(ARGV[7]) then break end\n"
    "      delay = delay * 2\n"
    "    end\n"
    "    delay, retries = math.min(delay, num(ARGV[7])), retries + 1\n"
    "  end\n"
    "  local due = now_ms + delay\n"
    "  redis.call('HSET', key, 'ca_state', cs, 'reason', text(ARGV[5], 640), 'next_try',\n"
    "    tostring(math.ceil(due / 1000)), 'retries', tostring(retries), 'updated', now)\n"
    "  if ARGV[4] ~= '' then redis.call('HSET', key, 'ca_diag', text(ARGV[4], 40))\n"
    "  else redis.call('HDEL', key, 'ca_diag') end\n"
    "  redis.call('ZADD', wait, secs(due), key)\n"
    "  return {'waiting', tostring(due), tostring(retries)}\n"
    "end\n"
    "return bad('verb')\n";

static const char *const ctl_work_err_text[CTL_W__COUNT] = {
    [CTL_W_OK] = "ok", [CTL_W_E_CONFIG] = "configuration", [CTL_W_E_REDIS] = "redis",
    [CTL_W_E_SCRIPT] = "script", [CTL_W_E_NOMEM] = "out of memory",
};

const char *ctl_work_err_str(ctl_work_err_t e) {
    return (unsigned)e < CTL_W__COUNT ? ctl_work_err_text[e] : "unknown";
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool rt_stopping(ctl_rt_t *rt) { return atomic_load_explicit(&rt->stop, memory_order_relaxed); }

/* rt_sleep sleeps `ms` in short slices; false if stop was set meanwhile. */
static bool rt_sleep(ctl_rt_t *rt, int64_t ms) {
    int64_t end = mono_ms() + ms;
    while (!rt_stopping(rt)) {
        int64_t left = end - mono_ms();
        if (left <= 0) return true;
        struct timespec ts = {0, (left > 50 ? 50 : left) * 1000000L};
        nanosleep(&ts, NULL);
    }
    return false;
}

#define COUNT(rt, field, v) atomic_fetch_add_explicit(&(rt)->n.field, (v), memory_order_relaxed)

static void hex_lower(char *out, const uint8_t *in, size_t n) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}

bool ctl_work_cert_facts(const uint8_t *der, size_t der_len, char *out, size_t out_len, int64_t *not_after) {
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)der_len);
    bool ok = false;
    if (!x || p != der + der_len) goto done;
    const ASN1_INTEGER *sn = X509_get_serialNumber(x);
    const unsigned char *d = ASN1_STRING_get0_data(sn);
    size_t n = (size_t)ASN1_STRING_length(sn);
    while (n > 1 && d[0] == 0) {
        d++;
        n--;
    }
    struct tm tm;
    if (n == 0 || 2 * n + 1 > out_len || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm)) goto done;
    hex_lower(out, d, n);
    *not_after = (int64_t)timegm(&tm);
    ok = true;
done:
    X509_free(x);
    return ok;
}

/* ------------------------------------------------------------ Redis */

/* ctl_redis_t: one thread's Redis connection with the script loaded. */
typedef struct {
    ctl_rt_t *rt;
    redisContext *rc;
    char sha[41];
    int64_t backoff_ms;
    bool warned;
} ctl_redis_t;

static void rd_drop(ctl_redis_t *r) {
    if (r->rc) redisFree(r->rc);
    r->rc = NULL;
}

/* rd_load loads the script on the current connection; false with `why`. */
static bool rd_load(ctl_redis_t *r, char *why, size_t why_len) {
    redisReply *rep = redisCommand(r->rc, "SCRIPT LOAD %s", ctl_lua);
    bool ok = rep && rep->type == REDIS_REPLY_STRING && rep->len == 40;
    if (ok) memcpy(r->sha, rep->str, 41);
    else if (rep && rep->type == REDIS_REPLY_ERROR)
        snprintf(why, why_len, "SCRIPT LOAD: %.*s", (int)(rep->len > 300 ? 300 : rep->len), rep->str);
    else
        snprintf(why, why_len, "SCRIPT LOAD: %s", rep ? "unexpected reply" : r->rc->errstr);
    if (rep) freeReplyObject(rep);
    return ok;
}

/* rd_ensure connects (after the back-off of an earlier failure) unless
 * connected; false if there is no connection now. */
static bool rd_ensure(ctl_redis_t *r) {
    if (r->rc) return true;
    if (r->backoff_ms && !rt_sleep(r->rt, r->backoff_ms)) return false;
    char why[320];
    if (ra_redis_connect(&r->rc, &r->rt->redis, CTL_REDIS_TIMEOUT_MS, why, sizeof(why)) == RA_OK &&
        rd_load(r, why, sizeof(why))) {
        if (r->warned) DP_INFO("redis %s: connected again", r->rt->redis_str);
        r->warned = false;
        r->backoff_ms = 0;
        return true;
    }
    rd_drop(r);
    if (!r->warned) DP_WARN("redis %s: %s; retrying with back-off", r->rt->redis_str, why);
    r->warned = true;
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : CTL_BACKOFF_MIN_MS;
    if (r->backoff_ms > CTL_BACKOFF_MAX_MS) r->backoff_ms = CTL_BACKOFF_MAX_MS;
    return false;
}

/* rd_cmd sends one command; a lost connection is dropped (NULL returned).
 * Error replies are returned to the caller. */
static redisReply *rd_cmd(ctl_redis_t *r, int argc, const char **argv, const size_t *lens) {
    if (!rd_ensure(r)) return NULL;
    redisReply *rep = redisCommandArgv(r->rc, argc, argv, lens);
    if (!rep) {
        if (!r->warned) DP_WARN("redis %s: %s; reconnecting", r->rt->redis_str, r->rc->errstr);
        r->warned = true;
        rd_drop(r);
    }
    return rep;
}

static bool rep_error(const redisReply *rep, const char *prefix) {
    return rep && rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, prefix, strlen(prefix)) == 0;
}

#define CTL_EVAL_MAX 16

/* rd_eval runs the script with `nkeys` keys and `nargs` arguments. A lost
 * connection is retried (reconnecting) until `deadline` (monotonic ms) or
 * stop; NOSCRIPT (a restarted or flushed Redis) reloads it once. Returns
 * the reply (caller frees; may be an error reply) or NULL. */
static redisReply *rd_eval(ctl_redis_t *r, int nkeys, const char *const *keys, int nargs, const char *const *args,
                           const size_t *arg_lens, int64_t deadline) {
    const char *argv[3 + CTL_EVAL_MAX];
    size_t lens[3 + CTL_EVAL_MAX];
    char numkeys[8];
    snprintf(numkeys, sizeof(numkeys), "%d", nkeys);
    int argc = 0;
    argv[argc] = "EVALSHA", lens[argc++] = 7;
    argv[argc] = r->sha, lens[argc++] = 40;
    argv[argc] = numkeys, lens[argc++] = strlen(numkeys);
    for (int i = 0; i < nkeys; i++) argv[argc] = keys[i], lens[argc++] = strlen(keys[i]);
    for (int i = 0; i < nargs; i++) argv[argc] = args[i], lens[argc++] = arg_lens ? arg_lens[i] : strlen(args[i]);
    for (int attempt = 0;; attempt++) {
        redisReply *rep = rd_cmd(r, argc, argv, lens);
        if (rep && rep_error(rep, "NOSCRIPT") && attempt == 0) {
            freeReplyObject(rep);
            char why[320];
            if (!rd_load(r, why, sizeof(why))) {
                DP_WARN("redis %s: %s", r->rt->redis_str, why);
                return NULL;
            }
            continue;
        }
        if (rep || rt_stopping(r->rt) || mono_ms() >= deadline) return rep;
    }
}

/* rep_elem: element i of an array reply if it has `type`, else NULL. */
static const redisReply *rep_elem(const redisReply *rep, size_t i, int type) {
    if (!rep || rep->type != REDIS_REPLY_ARRAY || i >= rep->elements) return NULL;
    const redisReply *e = rep->element[i];
    return e->type == type ? e : NULL;
}

static bool rep_is(const redisReply *rep, size_t i, const char *s) {
    const redisReply *e = rep_elem(rep, i, REDIS_REPLY_STRING);
    return e && e->len == strlen(s) && memcmp(e->str, s, e->len) == 0;
}

/* rep_word: element 0 of a script's reply (its verdict) for messages. */
static const char *rep_word(const redisReply *rep) {
    const redisReply *e = rep_elem(rep, 0, REDIS_REPLY_STRING);
    return e ? e->str : "?";
}

/* rep_copy copies element i (a string) as printable text into out[cap]. */
static void rep_copy(const redisReply *rep, size_t i, char *out, size_t cap) {
    ra_redis_text(out, cap, rep_elem(rep, i, REDIS_REPLY_STRING));
}

/* rep_u32 parses element i as a decimal of 1..10 digits. */
static bool rep_u32(const redisReply *rep, size_t i, uint32_t *out) {
    const redisReply *e = rep_elem(rep, i, REDIS_REPLY_STRING);
    if (!e || e->len == 0 || e->len > 10) return false;
    uint64_t v = 0;
    for (size_t k = 0; k < e->len; k++) {
        if (e->str[k] < '0' || e->str[k] > '9') return false;
        v = v * 10 + (uint64_t)(e->str[k] - '0');
    }
    if (v > UINT32_MAX) return false;
    *out = (uint32_t)v;
    return true;
}

/* ------------------------------------------------------------ records */

/* ctl_job_t: the record a worker drives. */
typedef struct {
    char key[CTL_KEY_MAX];
    char devkey[CTL_KEY_MAX];
    char id[CTL_KEY_MAX];
    char identity[72];
    char protocol[16];
    char ca_state[16];
    bool has_req_id;
    uint32_t req_id;
    uint8_t *p10;
    size_t p10_len;
    char csr_sha[65];
    unsigned http;           /* upstream requests spent on it in this turn */
} ctl_job_t;

/* ctl_wk_t: one worker thread's state. */
typedef struct {
    ctl_rt_t *rt;
    const ctl_config_t *cfg;
    unsigned index;
    char consumer[CTL_CONSUMER_MAX + 16];
    ctl_redis_t redis;
    ctl_conn_t *conn;
    int64_t next_claim;      /* monotonic ms */
    char claim_cursor[64];
    int64_t next_due;        /* wall ms when the wait set's next member is due; 0 = none */
    uint64_t turns;          /* SUBMIT calls made (their turn tokens) */
    ctl_job_t job;
    ctl_up_t res;
} ctl_wk_t;

/* key_ok checks a record key from the stream or the wait set
 * ("stp:req:{IDENTITY}:..." with a valid identity, printable) and writes
 * the device key of its hash tag. */
static bool key_ok(const char *key, size_t len, char *devkey, size_t devkey_len) {
    static const char prefix[] = "stp:req:{";
    if (len >= CTL_KEY_MAX || len < sizeof(prefix) || memcmp(key, prefix, sizeof(prefix) - 1) != 0) return false;
    for (size_t i = 0; i < len; i++)
        if (key[i] < 0x21 || key[i] > 0x7e) return false;
    const char *tag = key + sizeof(prefix) - 1;
    const char *end = memchr(tag, '}', len - (size_t)(tag - key));
    if (!end || end == tag || end - tag > 64 || (size_t)(end - key) + 2 > len || end[1] != ':') return false;
    for (const char *p = tag; p < end; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '@' || c == '-'))
            return false;
    }
    snprintf(devkey, devkey_len, "stp:dev:{%.*s}", (int)(end - tag), tag);
    return true;
}

/* wk_record_eval runs a record verb on w->job with `args` after the verb
 * and the time; state-changing verbs retry a lost Redis for half a lease. */
static redisReply *wk_record_eval(ctl_wk_t *w, const char *verb, int nargs, const char *const *args,
                                  const size_t *lens) {
    ctl_job_t *j = &w->job;
    const char *keys[] = {j->key, CTL_WAIT_SET, "stp:audit", "stp:reqs:open", j->devkey};
    const char *argv[CTL_EVAL_MAX];
    size_t argl[CTL_EVAL_MAX];
    char now[24];
    snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
    argv[0] = verb, argl[0] = strlen(verb);
    argv[1] = now, argl[1] = strlen(now);
    for (int i = 0; i < nargs; i++) argv[2 + i] = args[i], argl[2 + i] = lens ? lens[i] : strlen(args[i]);
    int64_t deadline = mono_ms() + (int64_t)w->cfg->lease_s * 500;
    redisReply *rep = rd_eval(&w->redis, 5, keys, 2 + nargs, argv, argl, deadline);
    if (!rep) {
        DP_WARN("request %s: %s not recorded (Redis unreachable); the record's lease will run out and it is "
                "taken up again", j->id[0] ? j->id : j->key, verb);
    } else if (rep->type == REDIS_REPLY_ERROR) {
        DP_ERR("request %s: %s script error: %.*s", j->id[0] ? j->id : j->key, verb,
               (int)(rep->len > 300 ? 300 : rep->len), rep->str);
        freeReplyObject(rep);
        rep = NULL;
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
        DP_ERR("request %s: %s script replied in an unexpected shape", j->key, verb);
        freeReplyObject(rep);
        rep = NULL;
    }
    return rep;
}

static void wk_reject(ctl_wk_t *w, ctl_diag_t diag, const char *cause, bool with_id, uint32_t req_id) {
    ctl_job_t *j = &w->job;
    char rid[16] = "";
    if (with_id) snprintf(rid, sizeof(rid), "%u", req_id);
    const char *args[] = {ctl_diag_name(diag), cause, rid};
    redisReply *rep = wk_record_eval(w, "REJECT", 3, args, NULL);
    if (!rep) return;
    if (rep_is(rep, 0, "rejected")) {
        COUNT(w->rt, denied, 1);
        DP_WARN("request %s identity=%s: rejected%s%s [%s]: %s", j->id, j->identity, with_id ? ", CA request " : "",
                rid, ctl_diag_name(diag), cause);
    } else {
        DP_DEBUG("request %s: REJECT: %s (nothing to do)", j->id, rep_word(rep));
    }
    freeReplyObject(rep);
}

/* wk_wait puts the record back in the wait set: kind approval, retry or
 * unknown (the POST's outcome). */
static void wk_wait(ctl_wk_t *w, const char *kind, ctl_diag_t diag, const char *cause) {
    ctl_job_t *j = &w->job;
    const ctl_config_t *cfg = w->cfg;
    char lo[16], hi[16], poll[24];
    snprintf(lo, sizeof(lo), "%u", cfg->retry_min_ms);
    snprintf(hi, sizeof(hi), "%u", cfg->retry_max_ms);
    snprintf(poll, sizeof(poll), "%llu", (unsigned long long)cfg->poll_pending_s * 1000);
    const char *args[] = {kind, diag == CTL_D_OK ? "" : ctl_diag_name(diag), cause, lo, hi, poll};
    redisReply *rep = wk_record_eval(w, "WAIT", 6, args, NULL);
    if (!rep) return;
    if (rep_is(rep, 0, "waiting")) {
        char due[24], tries[12];
        rep_copy(rep, 1, due, sizeof(due));
        rep_copy(rep, 2, tries, sizeof(tries));
        double in_s = (double)(strtoll(due, NULL, 10) - wall_ms()) / 1000.0;
        char what[160];
        /* outcome unknown: the one line names the CSR hash, to find the request on the CA (§5.13) */
        if (!strcmp(kind, "unknown"))
            snprintf(what, sizeof(what), "outcome of the POST of CSR sha256 %s unknown (resubmitted at most once)",
                     j->csr_sha);
        else
            snprintf(what, sizeof(what), "upstream failed");
        if (!strcmp(kind, "approval"))
            DP_INFO("request %s identity=%s: %s; next poll in %.0f s", j->id, j->identity, cause, in_s);
        else
            DP_WARN("request %s identity=%s: %s, attempt %s, next in %.1f s [%s]: %s", j->id, j->identity, what,
                    tries, in_s, ctl_diag_name(diag), cause);
    }
    freeReplyObject(rep);
}

static void wk_approval(ctl_wk_t *w, uint32_t req_id) {
    char cause[96];
    snprintf(cause, sizeof(cause), "CA request %u pending CA manager approval", req_id);
    COUNT(w->rt, approval, 1);
    wk_wait(w, "approval", CTL_D_OK, cause);
}

/* wk_failed routes a failed call: retryable classes wait, others reject. */
static void wk_failed(ctl_wk_t *w, const ctl_up_t *res) {
    if (ctl_diag_retryable(res->diag)) {
        COUNT(w->rt, retried, 1);
        wk_wait(w, "retry", res->diag, res->cause);
    } else {
        wk_reject(w, res->diag, res->cause, res->has_req_id, res->req_id);
    }
}

static void wk_complete(ctl_wk_t *w, uint32_t req_id, const ctl_up_t *res) {
    ctl_job_t *j = &w->job;
    char serial[48], na[24], rid[16];
    int64_t not_after;
    if (!ctl_work_cert_facts(res->der, res->der_len, serial, sizeof(serial), &not_after)) {
        char cause[200];
        snprintf(cause, sizeof(cause), "the certificate of CA request %u does not parse as X.509 (DER)", req_id);
        wk_reject(w, CTL_D_PAGE, cause, true, req_id);
        return;
    }
    snprintf(na, sizeof(na), "%lld", (long long)not_after);
    snprintf(rid, sizeof(rid), "%u", req_id);
    const char *args[] = {rid, serial, na, (const char *)res->der};
    const size_t lens[] = {strlen(rid), strlen(serial), strlen(na), res->der_len};
    redisReply *rep = wk_record_eval(w, "COMPLETE", 4, args, lens);
    if (!rep) return;
    if (rep_is(rep, 0, "issued")) {
        COUNT(w->rt, issued, 1);
        DP_INFO("request %s identity=%s: issued by the CA as request %u, serial %s, %u upstream HTTP requests", j->id,
                j->identity, req_id, serial, j->http);
    } else {
        DP_DEBUG("request %s: COMPLETE: %s (nothing to do)", j->id, rep_word(rep));
    }
    freeReplyObject(rep);
}

/* wk_poll fetches the certificate of the stored CA request id. */
static void wk_poll(ctl_wk_t *w, uint32_t req_id) {
    ctl_job_t *j = &w->job;
    ctl_up_t *res = &w->res;
    ctl_up_kind_t k = ctl_certsrv_fetch(w->conn, req_id, j->p10, j->p10_len, res);
    COUNT(w->rt, http_requests, res->requests);
    j->http += res->requests;
    switch (k) {
    case CTL_UP_ISSUED:
        wk_complete(w, req_id, res);
        return;
    case CTL_UP_PENDING:
        wk_approval(w, req_id);
        return;
    case CTL_UP_DENIED:
        wk_reject(w, res->diag, res->cause, true, req_id);
        return;
    case CTL_UP_UNKNOWN: /* a GET: safe to repeat */
        COUNT(w->rt, retried, 1);
        wk_wait(w, "retry", res->diag, res->cause);
        return;
    default:
        /* An answer we could not read (a proxy's page, a cut body, a key that
         * does not match) is not the CA's refusal: the request may be issued,
         * and dropping it would make a retry POST a duplicate. A GET is safe
         * to repeat, so it waits with back-off like a transport failure. */
        if (res->diag == CTL_D_PAGE) {
            COUNT(w->rt, retried, 1);
            wk_wait(w, "retry", res->diag, res->cause);
            return;
        }
        wk_failed(w, res);
    }
}

/* wk_ackid stores the CA's request id (rule 2); false if the record is no
 * longer ours to finish. A different stored id wins (*req_id updated). */
static bool wk_ackid(ctl_wk_t *w, uint32_t *req_id, const char *ca_state) {
    ctl_job_t *j = &w->job;
    char rid[16], lease[24];
    snprintf(rid, sizeof(rid), "%u", *req_id);
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)w->cfg->lease_s * 1000);
    const char *args[] = {lease, rid, ca_state};
    redisReply *rep = wk_record_eval(w, "ACKID", 3, args, NULL);
    if (!rep) return false;
    bool ok = rep_is(rep, 0, "ok");
    if (rep_is(rep, 0, "gone"))
        DP_WARN("request %s identity=%s: the CA took it as request %u, but the record is no longer pending (%s): "
                "nothing stored", j->id, j->identity, *req_id, rep_elem(rep, 1, REDIS_REPLY_STRING) ? rep->element[1]->str : "");
    if (rep_is(rep, 0, "conflict")) {
        uint32_t stored;
        if (rep_u32(rep, 1, &stored)) {
            DP_WARN("request %s identity=%s: the CA answered with request %u but request %u is stored: possible "
                    "duplicate on the CA; polling %u",
                    j->id, j->identity, *req_id, stored, stored);
            *req_id = stored;
            ok = true;
        }
    }
    freeReplyObject(rep);
    if (ok) {
        j->has_req_id = true;
        j->req_id = *req_id;
    }
    return ok;
}

/* wk_submit POSTs the record's PKCS#10 after SUBMIT allowed it. */
static void wk_submit(ctl_wk_t *w, bool again) {
    ctl_job_t *j = &w->job;
    ctl_up_t *res = &w->res;
    COUNT(w->rt, submitted, 1);
    if (again) {
        COUNT(w->rt, resubmitted, 1);
        DP_WARN("request %s identity=%s: submitting again: the outcome of the last POST is unknown (possible "
                "duplicate issuance; audited upstream-resubmit)", j->id, j->identity);
    }
    ctl_up_kind_t k = ctl_certsrv_submit(w->conn, j->p10, j->p10_len, res);
    COUNT(w->rt, http_requests, res->requests);
    j->http += res->requests;
    if ((k == CTL_UP_ISSUED || k == CTL_UP_PENDING) && !res->has_req_id) {
        snprintf(res->cause, sizeof(res->cause), "the CA's answer (%s) carries no request id", ctl_up_kind_str(k));
        res->diag = CTL_D_PAGE;
        k = CTL_UP_UNKNOWN;
    }
    uint32_t rid = res->req_id;
    switch (k) {
    case CTL_UP_ISSUED:
        if (wk_ackid(w, &rid, "submitted")) wk_poll(w, rid);
        return;
    case CTL_UP_PENDING:
        if (wk_ackid(w, &rid, "approval")) wk_approval(w, rid);
        return;
    case CTL_UP_DENIED:
        wk_reject(w, res->diag, res->cause, res->has_req_id, res->req_id);
        return;
    case CTL_UP_UNKNOWN:
        COUNT(w->rt, unknown, 1);
        wk_wait(w, "unknown", res->diag == CTL_D_OK ? CTL_D_TIMEOUT_SUBMIT : res->diag, res->cause);
        return;
    default:
        wk_failed(w, res);
    }
}

/* wk_drive takes the record from TAKE's verdict to its next state. */
static void wk_drive(ctl_wk_t *w) {
    ctl_job_t *j = &w->job;
    if (j->p10_len == 0) {
        wk_reject(w, CTL_D_BAD_CSR, "the request record has no p10 (the PKCS#10 to submit upstream)", false, 0);
        return;
    }
    if (j->has_req_id) {
        wk_poll(w, j->req_id);
        return;
    }
    char lease[24], turn[CTL_CONSUMER_MAX + 48];
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)w->cfg->lease_s * 1000);
    /* names this SUBMIT call: if its reply is lost and the call is sent again,
     * the script knows no POST happened in between (not an unknown outcome) */
    snprintf(turn, sizeof(turn), "%s:%llu", w->consumer, (unsigned long long)++w->turns);
    const char *args[] = {lease, w->cfg->certsrv_url, j->csr_sha, turn};
    redisReply *rep = wk_record_eval(w, "SUBMIT", 4, args, NULL);
    if (!rep) return;
    uint32_t rid;
    if (rep_is(rep, 0, "poll") && rep_u32(rep, 1, &rid)) {
        freeReplyObject(rep);
        j->has_req_id = true;
        j->req_id = rid;
        wk_poll(w, rid);
    } else if (rep_is(rep, 0, "post") || rep_is(rep, 0, "resubmit")) {
        bool again = rep_is(rep, 0, "resubmit");
        freeReplyObject(rep);
        wk_submit(w, again);
    } else if (rep_is(rep, 0, "gave-up")) {
        char reason[400];
        rep_copy(rep, 1, reason, sizeof(reason));
        freeReplyObject(rep);
        COUNT(w->rt, denied, 1);
        DP_WARN("request %s identity=%s: rejected [outcome-unknown]: %s", j->id, j->identity, reason);
    } else {
        DP_DEBUG("request %s: SUBMIT: %s (nothing to do)", j->id, rep_word(rep));
        freeReplyObject(rep);
    }
}

/* wk_ack acknowledges and deletes stream entry `id`. */
static void wk_ack(ctl_wk_t *w, const char *id) {
    const char *ack[] = {"XACK", CTL_STREAM, CTL_GROUP, id};
    const char *del[] = {"XDEL", CTL_STREAM, id};
    redisReply *rep = rd_cmd(&w->redis, 4, ack, NULL);
    if (rep) freeReplyObject(rep);
    rep = rep ? rd_cmd(&w->redis, 3, del, NULL) : NULL;
    if (rep) freeReplyObject(rep);
}

/* wk_take_fields copies TAKE's {ok, id, identity, protocol, ca_req_id,
 * ca_state, p10} into the job. */
static bool wk_take_fields(ctl_job_t *j, const redisReply *rep) {
    const redisReply *p10 = rep_elem(rep, 6, REDIS_REPLY_STRING);
    if (!p10 || rep->elements != 7) return false;
    rep_copy(rep, 1, j->id, sizeof(j->id));
    rep_copy(rep, 2, j->identity, sizeof(j->identity));
    rep_copy(rep, 3, j->protocol, sizeof(j->protocol));
    rep_copy(rep, 5, j->ca_state, sizeof(j->ca_state));
    const redisReply *rid = rep_elem(rep, 4, REDIS_REPLY_STRING);
    if (rid && rid->len) {
        if (!rep_u32(rep, 4, &j->req_id)) return false;
        j->has_req_id = true;
    }
    if (!j->id[0]) snprintf(j->id, sizeof(j->id), "%s", j->key);
    if (p10->len > CTL_P10_MAX) return false;
    if (p10->len) {
        j->p10 = malloc(p10->len);
        if (!j->p10) return false;
        memcpy(j->p10, p10->str, p10->len);
        j->p10_len = p10->len;
        uint8_t md[SHA256_DIGEST_LENGTH];
        SHA256(j->p10, j->p10_len, md);
        hex_lower(j->csr_sha, md, sizeof(md));
    }
    return true;
}

/* wk_record takes the record `key` (from stream entry `entry_id`, or from
 * the wait set when `leased`) and drives it. A stream entry is
 * acknowledged once the record is in the wait set under our lease (or
 * needs nothing); if Redis fails before that it stays pending for
 * XAUTOCLAIM. */
static void wk_record(ctl_wk_t *w, const char *key, size_t key_len, const char *entry_id, bool leased) {
    ctl_job_t *j = &w->job;
    memset(j, 0, sizeof(*j));
    if (!key_ok(key, key_len, j->devkey, sizeof(j->devkey))) {
        DP_WARN("%s names no request record (key '%.*s'); dropped", entry_id ? "stream entry" : "wait-set member",
                (int)(key_len > 100 ? 100 : key_len), key);
        if (entry_id) wk_ack(w, entry_id);
        else {
            const char *zrem[] = {"ZREM", CTL_WAIT_SET, key};
            const size_t lens[] = {4, strlen(CTL_WAIT_SET), key_len};
            redisReply *rep = rd_cmd(&w->redis, 3, zrem, lens);
            if (rep) freeReplyObject(rep);
        }
        return;
    }
    memcpy(j->key, key, key_len);
    j->key[key_len] = 0;
    char lease[24];
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)w->cfg->lease_s * 1000);
    const char *args[] = {lease, leased ? "leased" : "stream"};
    redisReply *rep = wk_record_eval(w, "TAKE", 2, args, NULL);
    if (!rep) return;
    if (!rep_is(rep, 0, "ok")) {
        DP_DEBUG("record %s: %s (nothing to do)", j->key, rep_word(rep));
        freeReplyObject(rep);
        if (entry_id) wk_ack(w, entry_id);
        return;
    }
    bool ok = wk_take_fields(j, rep);
    freeReplyObject(rep);
    if (entry_id) wk_ack(w, entry_id); /* the wait set holds it now, under our lease */
    if (!ok) {
        DP_ERR("request %s: record unusable (request id or p10 malformed); its lease will run out", j->key);
    } else {
        wk_drive(w);
    }
    free(j->p10);
    j->p10 = NULL;
}

/* wk_entry handles one stream entry [id, [field, value, ...]]. */
static void wk_entry(ctl_wk_t *w, const redisReply *e) {
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) return;
    const char *id = e->element[0]->str;
    const redisReply *fv = e->element[1];
    if (fv->type != REDIS_REPLY_ARRAY) { /* deleted meanwhile */
        wk_ack(w, id);
        return;
    }
    for (size_t i = 0; i + 1 < fv->elements; i += 2) {
        const redisReply *f = fv->element[i], *v = fv->element[i + 1];
        if (f->type == REDIS_REPLY_STRING && f->len == 3 && !memcmp(f->str, "key", 3) && v->type == REDIS_REPLY_STRING) {
            wk_record(w, v->str, v->len, id, false);
            return;
        }
    }
    wk_record(w, "", 0, id, false);
}

/* wk_read reads one new stream entry, waiting at most 1000 ms, less if
 * the wait set's next member is due sooner; not at all if `busy`. */
static void wk_read(ctl_wk_t *w, bool busy) {
    int64_t block = 1000;
    if (w->next_due) {
        int64_t left = w->next_due - wall_ms();
        block = left < 1 ? 1 : left < block ? left : block;
    }
    char block_s[16];
    snprintf(block_s, sizeof(block_s), "%lld", (long long)block);
    const char *argv[] = {"XREADGROUP", "GROUP", CTL_GROUP, w->consumer, "COUNT", "1",
                          "BLOCK", block_s, "STREAMS", CTL_STREAM, ">"};
    const char *nb[] = {"XREADGROUP", "GROUP", CTL_GROUP, w->consumer, "COUNT", "1", "STREAMS", CTL_STREAM, ">"};
    redisReply *rep = busy ? rd_cmd(&w->redis, 9, nb, NULL) : rd_cmd(&w->redis, 11, argv, NULL);
    if (!rep) return;
    if (rep_error(rep, "NOGROUP")) { /* the stream was deleted: create it again */
        freeReplyObject(rep);
        const char *mk[] = {"XGROUP", "CREATE", CTL_STREAM, CTL_GROUP, "0", "MKSTREAM"};
        rep = rd_cmd(&w->redis, 6, mk, NULL);
        if (rep) freeReplyObject(rep);
        rt_sleep(w->rt, 100);
        return;
    }
    const redisReply *s = rep_elem(rep, 0, REDIS_REPLY_ARRAY);
    const redisReply *entries = s && s->elements == 2 ? s->element[1] : NULL;
    if (entries && entries->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < entries->elements; i++) wk_entry(w, entries->element[i]);
    freeReplyObject(rep);
}

/* wk_claim takes over entries idle for claim_idle_ms (XAUTOCLAIM); their
 * consumer died between reading them and handing them to the wait set. */
static void wk_claim(ctl_wk_t *w) {
    char idle[16];
    snprintf(idle, sizeof(idle), "%u", w->cfg->claim_idle_ms);
    const char *argv[] = {"XAUTOCLAIM", CTL_STREAM, CTL_GROUP, w->consumer, idle, w->claim_cursor,
                          "COUNT", CTL_CLAIM_COUNT};
    redisReply *rep = rd_cmd(&w->redis, 8, argv, NULL);
    if (!rep) return;
    const redisReply *entries = rep_elem(rep, 1, REDIS_REPLY_ARRAY);
    rep_copy(rep, 0, w->claim_cursor, sizeof(w->claim_cursor));
    if (!w->claim_cursor[0] || !entries) snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    if (entries && entries->elements)
        DP_INFO("took over %zu stream entries unacknowledged for %u ms (their consumer stopped)", entries->elements,
                w->cfg->claim_idle_ms);
    for (size_t i = 0; entries && i < entries->elements && !rt_stopping(w->rt); i++) wk_entry(w, entries->element[i]);
    freeReplyObject(rep);
}

/* wk_lease takes one due wait-set member and drives it; false if none.
 * Notes in w->next_due (wall ms, 0 = none) when the set's next member is
 * due, so the stream read blocks no longer than that. */
static bool wk_lease(ctl_wk_t *w) {
    const char *keys[] = {CTL_WAIT_SET};
    char now[24], lease[24];
    snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)w->cfg->lease_s * 1000);
    const char *args[] = {"LEASE", now, lease, "1"};
    redisReply *rep = rd_eval(&w->redis, 1, keys, 4, args, NULL, 0);
    if (!rep) return false;
    if (rep->type == REDIS_REPLY_ERROR) DP_ERR("LEASE script error: %s", rep->str);
    const redisReply *next = rep_elem(rep, 0, REDIS_REPLY_STRING);
    w->next_due = next && next->len ? (int64_t)(strtod(next->str, NULL) * 1000.0) : 0;
    bool got = next && rep->elements > 1;
    for (size_t i = 1; got && i < rep->elements; i++) {
        const redisReply *m = rep->element[i];
        if (m->type == REDIS_REPLY_STRING) wk_record(w, m->str, m->len, NULL, true);
    }
    freeReplyObject(rep);
    return got;
}

/* wk_leave removes this worker's consumer from the group if it holds no
 * pending entry (a stopped instance's name would otherwise stay listed). */
static void wk_leave(ctl_wk_t *w) {
    if (!w->redis.rc) return;
    const char *pend[] = {"XPENDING", CTL_STREAM, CTL_GROUP, "-", "+", "1", w->consumer};
    redisReply *rep = redisCommandArgv(w->redis.rc, 7, pend, NULL);
    bool empty = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 0;
    if (rep) freeReplyObject(rep);
    if (!empty) return;
    const char *del[] = {"XGROUP", "DELCONSUMER", CTL_STREAM, CTL_GROUP, w->consumer};
    rep = redisCommandArgv(w->redis.rc, 5, del, NULL);
    if (rep) freeReplyObject(rep);
}

void *ctl_work_worker_main(void *arg) {
    ctl_worker_t *me = arg;
    ctl_rt_t *rt = me->rt;
    char name[16];
    snprintf(name, sizeof(name), "worker%u", me->index);
    dp_log_set_thread(name);
    pthread_setname_np(pthread_self(), name);
    ctl_wk_t *w = calloc(1, sizeof(*w));
    if (w) w->conn = ctl_conn_new(rt->cfg);
    if (!w || !w->conn) {
        DP_ERR("out of memory: worker not started");
        free(w);
        return NULL;
    }
    w->rt = rt;
    w->cfg = rt->cfg;
    w->index = me->index;
    w->redis.rt = rt;
    snprintf(w->consumer, sizeof(w->consumer), "%s/w%u", rt->consumer, me->index);
    snprintf(w->claim_cursor, sizeof(w->claim_cursor), "0-0");
    w->next_claim = mono_ms(); /* at start-up: a predecessor's unhanded entries */
    while (!rt_stopping(rt)) {
        if (!rd_ensure(&w->redis)) continue;
        bool busy = false;
        if (mono_ms() >= w->next_claim) {
            wk_claim(w);
            w->next_claim = mono_ms() + w->cfg->claim_idle_ms;
        }
        for (int i = 0; i < CTL_LEASE_BURST && !rt_stopping(rt) && wk_lease(w); i++) busy = true;
        if (!rt_stopping(rt)) wk_read(w, busy);
    }
    wk_leave(w);
    rd_drop(&w->redis);
    ctl_conn_free(w->conn);
    free(w);
    return NULL;
}

/* ------------------------------------------------------------ chain */

typedef struct {
    ctl_rt_t *rt;
    ctl_conn_t *conn;
    ctl_redis_t redis;
    ctl_chain_t cur, prev;
    ctl_up_t res;
    bool published;
    uint32_t renewal;        /* last published renewal index */
} ctl_chainer_t;

/* chain_publish runs the CA verb; false if Redis failed. */
static bool chain_publish(ctl_chainer_t *c, bool with_prev) {
    const ctl_config_t *cfg = c->rt->cfg;
    const char *keys[] = {CTL_CA_KEY, "stp:audit"};
    char now[24], ren[16];
    snprintf(now, sizeof(now), "%lld", (long long)wall_ms());
    snprintf(ren, sizeof(ren), "%u", c->cur.renewal);
    const char *args[] = {"CA", now, ren, (const char *)c->cur.chain, (const char *)c->cur.ca_cert,
                          (const char *)c->prev.chain, cfg->certsrv_url, with_prev ? "1" : "0"};
    const size_t lens[] = {2, strlen(now), strlen(ren), c->cur.chain_len, c->cur.ca_cert_len,
                           with_prev && c->cur.renewal > 0 ? c->prev.chain_len : 0, strlen(cfg->certsrv_url), 1};
    redisReply *rep = rd_eval(&c->redis, 2, keys, 8, args, lens, mono_ms() + 10000);
    if (!rep || rep->type != REDIS_REPLY_ARRAY) {
        if (rep) DP_ERR("CA script error: %s", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        if (rep) freeReplyObject(rep);
        return false;
    }
    char old[16];
    rep_copy(rep, 1, old, sizeof(old));
    if (rep_is(rep, 0, "rollover"))
        DP_WARN("upstream CA rollover: renewal %s -> %u; published %s with the previous chain (audited "
                "upstream-ca-rollover)", old, c->cur.renewal, CTL_CA_KEY);
    else if (!c->published)
        DP_INFO("upstream CA: renewal %u, chain %zu bytes, published in %s", c->cur.renewal, c->cur.chain_len,
                CTL_CA_KEY);
    freeReplyObject(rep);
    c->published = true;
    c->renewal = c->cur.renewal;
    return true;
}

/* chain_once reads and publishes the chain; false on any failure (logged). */
static bool chain_once(ctl_chainer_t *c) {
    ctl_up_kind_t k = ctl_certsrv_chain(c->conn, &c->cur, &c->res);
    COUNT(c->rt, http_requests, c->res.requests);
    if (k != CTL_UP_ISSUED) {
        DP_WARN("upstream CA chain not read [%s]: %s", ctl_diag_name(c->res.diag), c->res.cause);
        return false;
    }
    bool with_prev = !c->published || c->renewal != c->cur.renewal;
    c->prev.chain_len = 0;
    if (with_prev && c->cur.renewal > 0) {
        k = ctl_certsrv_chain_at(c->conn, c->cur.renewal - 1, &c->prev, &c->res);
        COUNT(c->rt, http_requests, c->res.requests);
        if (k != CTL_UP_ISSUED) {
            DP_WARN("upstream CA chain of renewal %u (previous) not read [%s]: %s", c->cur.renewal - 1,
                    ctl_diag_name(c->res.diag), c->res.cause);
            return false;
        }
    }
    return chain_publish(c, with_prev);
}

/* chain_sleep waits `ms`, but looks every CTL_CHAIN_CHECK_MS whether the
 * published hash is still in Redis (a Redis that came back empty must not
 * wait chain_refresh_s for it); false if stop was set. */
static bool chain_sleep(ctl_chainer_t *c, int64_t ms) {
    int64_t end = mono_ms() + ms;
    for (;;) {
        int64_t left = end - mono_ms();
        if (left <= 0) return !rt_stopping(c->rt);
        if (!rt_sleep(c->rt, left < CTL_CHAIN_CHECK_MS ? left : CTL_CHAIN_CHECK_MS)) return false;
        if (!c->published || mono_ms() >= end) continue;
        const char *argv[] = {"EXISTS", CTL_CA_KEY};
        redisReply *rep = rd_cmd(&c->redis, 2, argv, NULL);
        bool gone = rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 0;
        if (rep) freeReplyObject(rep);
        if (gone) {
            DP_WARN("%s is gone from Redis: reading the chain again now", CTL_CA_KEY);
            c->published = false; /* republish with `previous` */
            return !rt_stopping(c->rt);
        }
    }
}

void *ctl_work_chain_main(void *arg) {
    ctl_rt_t *rt = arg;
    dp_log_set_thread("chain");
    pthread_setname_np(pthread_self(), "chain");
    ctl_chainer_t *c = calloc(1, sizeof(*c));
    if (c) c->conn = ctl_conn_new(rt->cfg);
    if (!c || !c->conn) {
        DP_ERR("out of memory: chain thread not started");
        free(c);
        return NULL;
    }
    c->rt = rt;
    c->redis.rt = rt;
    int64_t delay = 0, backoff = 0;
    while (chain_sleep(c, delay)) {
        if (chain_once(c)) {
            backoff = 0;
            delay = (int64_t)rt->cfg->chain_refresh_s * 1000;
            continue;
        }
        backoff = backoff ? backoff * 2 : rt->cfg->retry_min_ms;
        if (backoff > rt->cfg->retry_max_ms) backoff = rt->cfg->retry_max_ms;
        delay = backoff;
    }
    rd_drop(&c->redis);
    ctl_conn_free(c->conn);
    free(c);
    return NULL;
}

/* ------------------------------------------------------------ start-up */

ctl_work_err_t ctl_work_init(ctl_rt_t *rt, const ctl_config_t *cfg, char *why, size_t why_len) {
    memset(rt, 0, sizeof(*rt));
    rt->cfg = cfg;
    atomic_init(&rt->stop, false);
    ra_err_t e = cfg->redis[0] ? ra_redis_parse_url(&rt->redis, cfg->redis)
                 : cfg->data_dir[0] ? ra_redis_addr_data_dir(&rt->redis, cfg->data_dir)
                                    : RA_E_REDIS_URL;
    if (e != RA_OK) {
        snprintf(why, why_len, cfg->redis[0] || cfg->data_dir[0] ? "redis: cannot use '%s' as a Redis address"
                                                                 : "set redis (or data_dir, for stampeded's "
                                                                   "embedded Redis)%s",
                 cfg->redis[0] ? cfg->redis : cfg->data_dir);
        return CTL_W_E_CONFIG;
    }
    ra_redis_addr_str(&rt->redis, rt->redis_str, sizeof(rt->redis_str));
    if (cfg->consumer[0]) {
        if (strlen(cfg->consumer) >= sizeof(rt->consumer) || strpbrk(cfg->consumer, " \t\r\n")) {
            snprintf(why, why_len, "consumer: at most %d characters, no spaces", CTL_CONSUMER_MAX - 1);
            return CTL_W_E_CONFIG;
        }
        snprintf(rt->consumer, sizeof(rt->consumer), "%s", cfg->consumer);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = 0;
        snprintf(rt->consumer, sizeof(rt->consumer), "%s:%ld", host, (long)getpid());
    }
    redisContext *rc;
    if (ra_redis_connect(&rc, &rt->redis, CTL_REDIS_TIMEOUT_MS, why, why_len) != RA_OK) return CTL_W_E_REDIS;
    ctl_work_err_t err = CTL_W_OK;
    redisReply *rep = redisCommand(rc, "XGROUP CREATE %s %s 0 MKSTREAM", CTL_STREAM, CTL_GROUP);
    if (!rep || (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "BUSYGROUP", 9) != 0)) {
        snprintf(why, why_len, "redis %s: XGROUP CREATE %s %s: %s", rt->redis_str, CTL_STREAM, CTL_GROUP,
                 rep ? rep->str : rc->errstr);
        err = CTL_W_E_REDIS;
    }
    if (rep) freeReplyObject(rep);
    ctl_redis_t probe = {.rt = rt, .rc = rc};
    if (!err && !rd_load(&probe, why, why_len)) err = CTL_W_E_SCRIPT;
    redisFree(rc);
    return err;
}

void ctl_work_log_summary(ctl_rt_t *rt, const char *when) {
#define N(f) atomic_load_explicit(&rt->n.f, memory_order_relaxed)
    unsigned long issued = N(issued), http = N(http_requests);
    DP_INFO("summary %s: submitted %lu (resubmitted %lu), issued %lu, rejected %lu, pending approval answers %lu, "
            "retries %lu, unknown outcomes %lu, upstream HTTP requests %lu",
            when, N(submitted), N(resubmitted), issued, N(denied), N(approval), N(retried), N(unknown), http);
#undef N
}
