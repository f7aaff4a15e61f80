/* ra_capf: the CAPF session script, its commands and its reply (see
 * ra_capf.h; the fields it writes are in docs/redis-schema.md). */
#include "ra/ra_capf.h"

#include <openssl/md5.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ra/ra_redis.h"
#include "ra/ra_registry.h"

#define RA_CAPF_STR_(x) #x
#define RA_CAPF_STR(x) RA_CAPF_STR_(x) /* a limit of ra_capf.h inside the Lua text */

/* KEYS[1] stp:audit, KEYS[2] stp:dev:{NAME}, KEYS[3] stp:capf:lock:{NAME},
 * KEYS[4] stp:req:{NAME}:SPKISHA (ISSUED and FINISH install-ok only),
 * KEYS[5] stp:capf:key:KEYHASH (ISSUED, optional: the key's owner).
 * SUBMIT: KEYS[4] the request record, KEYS[5] stp:reqs:open, KEYS[6]
 * stp:upstream, KEYS[7] stp:capf:key:KEYHASH (optional).
 * ARGV[1] verb, [2] token, [3] now, [4] peer, then per verb:
 *   BEGIN        [5] lock_ttl_ms
 *   AUTH_FAILED  [5] reason, [6] max_failures, [7] lockout_s
 *   ISSUED       [5] request id, [6] serial, [7] not_after, [8] cert MD5
 *                hex, [9] cert SHA-256 hex, [10] SPKI DER, [11] cert DER,
 *                [12] "1" when the certificate is the upstream CA's (online
 *                CA mode: the record is stampede-control's; optional)
 *   SUBMIT       [5] request id, [6] SPKI DER, [7] PKCS#10 DER, [8] notify
 *                channel, [9] lock_ttl_ms (the lock is extended to it)
 *   FINISH       [5] kind, [6] request id, [7] serial, [8] not_after,
 *                [9] MD5 hex, [10] SHA-256 hex (install-ok; else ""),
 *                [11] fetched cert DER (fetch-ok; else "")
 *   FAIL         [5] reason
 *   RELEASE      -
 * Reply {outcome, reason, failures, lock_until, fields}: fields are the
 * device's provisioning and LSC field/value pairs a session needs (not the
 * fetched certificate or the history) for BEGIN ok; for SUBMIT ok
 * {state, queued|pending|issued [, serial, S, not_after, T, cert, DER]};
 * else empty. Arguments
 * the script cannot use get an error reply "capf: bad ..." (nothing
 * written). */
static const char ra_capf_lua[] =
    "local verb, token = ARGV[1], ARGV[2]\n"
    "local function int(v)\n"
    "  if type(v) == 'string' and #v >= 1 and #v <= 15 and not v:find('%D') then return tonumber(v) end\n"
    "end\n"
    "local function hex(v, lo, hi)\n"
    "  return type(v) == 'string' and #v >= lo and #v <= hi and not v:find('[^0-9a-f]')\n"
    "end\n"
    "local function text(v, dflt)\n"
    "  local s = string.gsub(string.sub(v or '', 1, 199), '[^\\32-\\126]', '?')\n"
    "  if s == '' then return dflt end\n"
    "  return s\n"
    "end\n"
    "local function bad(what) return redis.error_reply('ERR capf: bad ' .. what) end\n"
    "local function sernorm(v)\n"
    "  v = string.lower(v or '')\n"
    "  while #v > 2 and string.sub(v, 1, 2) == '00' do v = string.sub(v, 3) end\n"
    "  return v\n"
    "end\n"
    "local now = int(ARGV[3])\n"
    "if not now then return bad('now') end\n"
    "if type(token) ~= 'string' or #token == 0 or #token > " RA_CAPF_STR(RA_CAPF_TOKEN_MAX) "\n"
    "    or token:find('[^\\33-\\126]') then\n"
    "  return bad('token')\n"
    "end\n"
    "local name = string.match(KEYS[2] or '', '^stp:dev:{([%w_.-]+)}$')\n"
    "if not name or KEYS[1] ~= 'stp:audit' or KEYS[3] ~= 'stp:capf:lock:{' .. name .. '}' then\n"
    "  return bad('keys')\n"
    "end\n"
    "local dev, lock, req, peer = KEYS[2], KEYS[3], KEYS[4], text(ARGV[4], '')\n"
    "local reqhex = req and string.sub(req, #name + 12)\n"
    "if req and (string.sub(req, 1, #name + 11) ~= 'stp:req:{' .. name .. '}:' or not hex(reqhex, 64, 64)) then\n"
    "  return bad('keys')\n"
    "end\n"
    "local holder = redis.call('GET', lock)\n"
    "local mine, other = holder == token, holder and holder ~= token\n"
    "local exists = redis.call('EXISTS', dev) == 1\n"
    "local lost = 'the session does not hold the device lock'\n"
    "local function utc(t)\n"
    "  local s = t % 86400\n"
    "  local z = (t - s) / 86400 + 719468\n"
    "  local era = math.floor(z / 146097)\n"
    "  local doe = z - era * 146097\n"
    "  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)\n"
    "    - math.floor(doe / 146096)) / 365)\n"
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))\n"
    "  local mp = math.floor((5 * doy + 2) / 153)\n"
    "  local d = doy - math.floor((153 * mp + 2) / 5) + 1\n"
    "  local m = mp < 10 and mp + 3 or mp - 9\n"
    "  local y = yoe + era * 400 + (m <= 2 and 1 or 0)\n"
    "  return string.format('%04d-%02d-%02dT%02d:%02d:%02dZ', y, m, d, math.floor(s / 3600),\n"
    "    math.floor(s % 3600 / 60), s % 60)\n"
    "end\n"
    "local function audit(event, reason, serial, request)\n"
    "  local e = {'event', event, 'time', ARGV[3], 'device', name}\n"
    "  if peer ~= '' then e[#e+1] = 'peer'; e[#e+1] = peer end\n"
    "  if reason and reason ~= '' then e[#e+1] = 'reason'; e[#e+1] = reason end\n"
    "  if serial and serial ~= '' then e[#e+1] = 'serial'; e[#e+1] = serial end\n"
    "  if request and request ~= '' then e[#e+1] = 'request'; e[#e+1] = request end\n"
    "  e[#e+1] = 'protocol'; e[#e+1] = 'capf'\n"
    "  redis.call('XADD', KEYS[1], '*', unpack(e))\n"
    "end\n"
    "local function reply(out, why, n, lu, fields) return {out, why or '', n or 0, lu or 0, fields or {}} end\n"
    "local function release() if mine then redis.call('DEL', lock) end end\n"
    "local function lsc_args(a)\n"
    "  return req and ARGV[a] == name .. ':' .. reqhex and hex(ARGV[a+1], 1, 64) and int(ARGV[a+2])\n"
    "    and hex(ARGV[a+3], 32, 32) and hex(ARGV[a+4], 64, 64)\n"
    "end\n"
    "if verb == 'BEGIN' then\n"
    "  local ttl = int(ARGV[5])\n"
    "  if not ttl or ttl == 0 then return bad('lock_ttl_ms') end\n"
    "  local function deny(out, why, lu) release(); audit('deny', why); return reply(out, why, 0, lu) end\n"
    "  if not exists then return deny('unknown', 'unknown device') end\n"
    "  if other then return deny('busy', 'another CAPF session for this device is active') end\n"
    "  local d = redis.call('HMGET', dev, 'op', 'by', 'auth_lock_until')\n"
    "  if d[1] ~= 'install' and d[1] ~= 'delete' and d[1] ~= 'troubleshoot' then\n"
    "    return deny('no-op', 'no certificate operation pending')\n"
    "  end\n"
    "  local by = tonumber(d[2]) or 0\n"
    "  if by ~= 0 and by < now then\n"
    "    redis.call('HSET', dev, 'status', 'failed', 'reason', 'deadline passed', 'updated', ARGV[3])\n"
    "    return deny('late', 'deadline passed')\n"
    "  end\n"
    "  local lu = tonumber(d[3]) or 0\n"
    "  if lu > now then return deny('locked-out', 'authentication locked out until ' .. utc(lu), lu) end\n"
    "  if mine then redis.call('PEXPIRE', lock, ttl) else redis.call('SET', lock, token, 'NX', 'PX', ttl) end\n"
    "  redis.call('HSET', dev, 'last_session', ARGV[3], 'last_peer', peer)\n"
    "  local want = {'op', 'auth', 'auth_hash', 'keys', 'by', 'status', 'reason', 'lsc_serial', 'lsc_not_after',\n"
    "    'lsc_md5', 'lsc_sha256', 'lsc_unconfirmed', 'auth_failures', 'created', 'updated', 'pid', 'sn'}\n"
    "  local v, f = redis.call('HMGET', dev, unpack(want)), {}\n"
    "  for i, k in ipairs(want) do if v[i] then f[#f+1] = k; f[#f+1] = v[i] end end\n"
    "  return reply('ok', '', 0, 0, f)\n"
    "elseif verb == 'AUTH_FAILED' then\n"
    "  local why, max, secs = text(ARGV[5], 'Invalid Credentials'), int(ARGV[6]), int(ARGV[7])\n"
    "  if not max or not secs then return bad('lockout') end\n"
    "  if not exists then release(); audit('deny', why); return reply('unknown', 'unknown device') end\n"
    "  local n = redis.call('HINCRBY', dev, 'auth_failures', 1)\n"
    "  local lu, note = 0, why\n"
    "  if max > 0 and n >= max then\n"
    "    lu = now + secs\n"
    "    redis.call('HSET', dev, 'auth_failures', 0, 'auth_lock_until', lu)\n"
    "    note = why .. '; authentication locked out until ' .. utc(lu)\n"
    "  end\n"
    "  local out = 'ok'\n"
    "  if other then out = 'lost-lock'\n"
    "  else redis.call('HSET', dev, 'status', 'failed', 'reason', why, 'updated', ARGV[3]) end\n"
    "  release()\n"
    "  audit('deny', note)\n"
    "  return reply(out, note, n, lu)\n"
    "elseif verb == 'ISSUED' then\n"
    "  local id, serial, spki, cert = ARGV[5], ARGV[6], ARGV[10], ARGV[11]\n"
    "  if not lsc_args(5) then return bad('lsc') end\n"
    "  if not spki or #spki == 0 or not cert or #cert == 0 then return bad('der') end\n"
    "  if not mine then return reply('lost-lock', lost) end\n"
    "  if not exists then return reply('unknown', 'unknown device') end\n"
    "  local d = redis.call('HMGET', dev, 'op', 'lsc_unconfirmed', 'stale_serials')\n"
    "  if d[1] ~= 'install' then return reply('no-op', 'no certificate operation pending') end\n"
    "  local keyidx = KEYS[5]\n"
    "  if keyidx then\n"
    "    if not string.match(keyidx, '^stp:capf:key:' .. string.rep('[0-9a-f]', 64) .. '$') then return bad('keys') end\n"
    "    local owner = redis.call('GET', keyidx)\n"
    "    if owner and owner ~= name then\n"
    "      return reply('key-in-use', 'public key already bound to device ' .. owner)\n"
    "    end\n"
    "  end\n"
    "  if ARGV[12] == '1' then\n"
    "    local r = redis.call('HMGET', req, 'state', 'cert')\n"
    "    if r[1] ~= 'issued' or r[2] ~= cert then\n"
    "      return reply('not-issued', 'the request record does not hold this certificate (state ' ..\n"
    "        text(r[1] or 'absent', '?') .. ')')\n"
    "    end\n"
    "    if keyidx then redis.call('SET', keyidx, name) end\n"
    "    redis.call('HSET', req, 'cert_md5', ARGV[8], 'cert_sha256', ARGV[9], 'confirmed', 0)\n"
    "  else\n"
    "  if keyidx then redis.call('SET', keyidx, name) end\n"
    "  local p = redis.call('HMGET', req, 'serial', 'received', 'attempts')\n"
    "  local received, attempts = ARGV[3], 0\n"
    "  if p[1] and p[1] ~= '' and p[1] ~= serial then\n"
    "    redis.call('RENAME', req, req .. ':' .. p[1])\n"
    "  elseif redis.call('EXISTS', req) == 1 then\n"
    "    received, attempts = p[2] or ARGV[3], tonumber(p[3]) or 0\n"
    "    redis.call('DEL', req)\n"
    "  end\n"
    "  redis.call('HSET', req, 'id', id, 'identity', name, 'protocol', 'capf', 'peer', peer, 'csr', spki,\n"
    "    'mode', 'local', 'received', received, 'updated', ARGV[3], 'attempts', attempts + 1,\n"
    "    'state', 'issued', 'serial', serial, 'not_after', ARGV[7], 'cert', cert,\n"
    "    'cert_md5', ARGV[8], 'cert_sha256', ARGV[9], 'confirmed', 0)\n"
    "  end\n"
    "  local f = {'lsc_unconfirmed', serial, 'auth_failures', 0, 'updated', ARGV[3]}\n"
    "  local prev = d[2] or ''\n"
    "  if prev ~= '' and prev ~= serial then\n"
    "    local list = {}\n"
    "    for s in string.gmatch(d[3] or '', '[^,]+') do list[#list+1] = s end\n"
    "    list[#list+1] = prev\n"
    "    while #list > " RA_CAPF_STR(RA_CAPF_STALE_MAX) " do table.remove(list, 1) end\n"
    "    f[#f+1] = 'stale_serials'; f[#f+1] = table.concat(list, ',')\n"
    "    redis.call('HINCRBY', dev, 'stale_lscs', 1)\n"
    "  end\n"
    "  redis.call('HSET', dev, unpack(f))\n"
    "  if ARGV[12] ~= '1' then audit('issue', '', serial, id) end\n"
    "  return reply('ok')\n"
    "elseif verb == 'SUBMIT' then\n"
    "  local id, spki, p10, notify, ttl = ARGV[5], ARGV[6], ARGV[7], ARGV[8], int(ARGV[9])\n"
    "  if not req or id ~= name .. ':' .. reqhex or KEYS[5] ~= 'stp:reqs:open' or KEYS[6] ~= 'stp:upstream' then\n"
    "    return bad('keys')\n"
    "  end\n"
    "  local keyidx = KEYS[7]\n"
    "  if keyidx and not string.match(keyidx, '^stp:capf:key:' .. string.rep('[0-9a-f]', 64) .. '$') then\n"
    "    return bad('keys')\n"
    "  end\n"
    "  if not spki or #spki == 0 or not p10 or #p10 == 0 then return bad('der') end\n"
    "  if type(notify) ~= 'string' or #notify > " RA_CAPF_STR(RA_CAPF_NOTIFY_MAX) " or notify:find('[^\\33-\\126]') then\n"
    "    return bad('notify')\n"
    "  end\n"
    "  if not ttl or ttl == 0 then return bad('lock_ttl_ms') end\n"
    "  if not mine then return reply('lost-lock', lost) end\n"
    "  if not exists then return reply('unknown', 'unknown device') end\n"
    "  if redis.call('HGET', dev, 'op') ~= 'install' then\n"
    "    return reply('no-op', 'no certificate operation pending')\n"
    "  end\n"
    "  if keyidx then\n"
    "    local owner = redis.call('GET', keyidx)\n"
    "    if owner and owner ~= name then\n"
    "      return reply('key-in-use', 'public key already bound to device ' .. owner)\n"
    "    end\n"
    "  end\n"
    "  if redis.call('PTTL', lock) < ttl then redis.call('PEXPIRE', lock, ttl) end\n"
    "  local p = redis.call('HMGET', req, 'state', 'serial', 'not_after', 'cert', 'received', 'attempts', 'mode')\n"
    "  local received, attempts = ARGV[3], 0\n"
    "  if p[1] == 'issued' then\n"
    "    local na = tonumber(p[3]) or 0\n"
    "    if p[7] == 'online' and na > now and p[4] and #p[4] > 0 and p[2] and p[2] ~= '' then\n"
    "      redis.call('HSET', req, 'last_seen', ARGV[3], 'last_peer', peer)\n"
    "      redis.call('HINCRBY', req, 'attempts', 1)\n"
    "      return reply('ok', '', 0, 0, {'state', 'issued', 'serial', p[2], 'not_after', p[3], 'cert', p[4]})\n"
    "    end\n"
    "    if p[2] and p[2] ~= '' then redis.call('RENAME', req, req .. ':' .. p[2]) else redis.call('DEL', req) end\n"
    "  elseif p[1] == 'pending' then\n"
    "    redis.call('HSET', req, 'notify', notify, 'last_seen', ARGV[3], 'last_peer', peer)\n"
    "    redis.call('HINCRBY', req, 'attempts', 1)\n"
    "    return reply('ok', '', 0, 0, {'state', 'pending'})\n"
    "  elseif p[1] then\n"
    "    received, attempts = p[5] or ARGV[3], tonumber(p[6]) or 0\n"
    "    redis.call('DEL', req)\n"
    "  end\n"
    "  redis.call('HSET', req, 'id', id, 'identity', name, 'protocol', 'capf', 'peer', peer, 'csr', spki,\n"
    "    'mode', 'online', 'received', received, 'updated', ARGV[3], 'attempts', attempts + 1,\n"
    "    'state', 'pending', 'ca_state', 'queued', 'p10', p10, 'notify', notify)\n"
    "  redis.call('ZADD', KEYS[5], ARGV[3], id)\n"
    "  redis.call('XADD', KEYS[6], '*', 'key', req, 'id', id)\n"
    "  return reply('ok', '', 0, 0, {'state', 'queued'})\n"
    "elseif verb == 'FINISH' then\n"
    "  local kind = ARGV[5]\n"
    "  local failed = {['install-failed'] = 'Upgrade Failed: phone could not store the certificate',\n"
    "    ['delete-failed'] = 'Delete Failed', ['fetch-failed'] = 'Troubleshoot Failed: no certificate'}\n"
    "  if kind ~= 'install-ok' and kind ~= 'delete-ok' and kind ~= 'fetch-ok' and not failed[kind] then\n"
    "    return bad('kind')\n"
    "  end\n"
    "  if kind == 'install-ok' and not lsc_args(6) then return bad('lsc') end\n"
    "  if kind == 'fetch-ok' and (not ARGV[11] or #ARGV[11] == 0) then return bad('der') end\n"
    "  if not exists then release(); return reply('unknown', 'unknown device') end\n"
    "  local d = redis.call('HMGET', dev, 'op', 'auth', 'lsc_serial', 'lsc_unconfirmed')\n"
    "  if failed[kind] then\n"
    "    if other then return reply('lost-lock', lost) end\n"
    "    redis.call('HSET', dev, 'status', 'failed', 'reason', failed[kind], 'auth_failures', 0,\n"
    "      'updated', ARGV[3])\n"
    "    release()\n"
    "    audit('deny', failed[kind])\n"
    "    return reply('ok')\n"
    "  end\n"
    "  local f = {'op', 'none', 'status', 'success', 'auth_failures', 0, 'updated', ARGV[3]}\n"
    "  local function put(k, v) f[#f+1] = k; f[#f+1] = v end\n"
    "  local event, note, serial, request = 'lsc-fetched', '', '', ''\n"
    "  if kind == 'install-ok' then\n"
    "    serial, request = ARGV[7], ARGV[6]\n"
    "    if not mine and d[4] ~= serial then return reply('lost-lock', lost) end\n"
    "    put('reason', 'Upgrade Success'); put('lsc_serial', serial); put('lsc_not_after', ARGV[8])\n"
    "    put('lsc_md5', ARGV[9]); put('lsc_sha256', ARGV[10])\n"
    "    if d[4] == serial then put('lsc_unconfirmed', '') end\n"
    "    local old = d[3] or ''\n"
    "    if old ~= '' and old ~= serial then put('superseded_serial', old); note = 'supersedes ' .. old end\n"
    "    if d[2] == 'string' then put('auth_hash', '" RA_CAPF_AUTH_HASH_USED "') end\n"
    "    if sernorm(redis.call('HGET', req, 'serial') or '') == sernorm(serial) then\n"
    "      redis.call('HSET', req, 'confirmed', 1, 'confirmed_at', ARGV[3])\n"
    "    end\n"
    "    event = 'lsc-installed'\n"
    "  elseif kind == 'delete-ok' then\n"
    "    if not mine and d[1] ~= 'delete' then return reply('lost-lock', lost) end\n"
    "    put('reason', 'Delete Success'); put('lsc_serial', ''); put('lsc_not_after', 0)\n"
    "    put('lsc_md5', ''); put('lsc_sha256', '')\n"
    "    event, serial = 'lsc-deleted', d[3] or ''\n"
    "  else\n"
    "    if not mine and d[1] ~= 'troubleshoot' then return reply('lost-lock', lost) end\n"
    "    put('reason', 'Troubleshoot Success'); put('fetched_cert', ARGV[11]); put('fetched_at', ARGV[3])\n"
    "  end\n"
    "  redis.call('HSET', dev, unpack(f))\n"
    "  release()\n"
    "  audit(event, note, serial, request)\n"
    "  return reply('ok')\n"
    "elseif verb == 'FAIL' then\n"
    "  local why = text(ARGV[5], 'Upgrade Failed')\n"
    "  if not exists then release(); audit('deny', why); return reply('unknown', 'unknown device') end\n"
    "  if other then return reply('lost-lock', lost) end\n"
    "  redis.call('HSET', dev, 'status', 'failed', 'reason', why, 'updated', ARGV[3])\n"
    "  release()\n"
    "  audit('deny', why)\n"
    "  return reply('ok', why)\n"
    "elseif verb == 'RELEASE' then\n"
    "  if not mine then return reply('lost-lock', lost) end\n"
    "  release()\n"
    "  return reply('ok')\n"
    "end\n"
    "return bad('verb')\n";

static const char *const ra_capf_outcome_text[RA_CAPF__COUNT] = {
    [RA_CAPF_OK] = "ok",          [RA_CAPF_UNKNOWN] = "unknown",         [RA_CAPF_BUSY] = "busy",
    [RA_CAPF_NO_OP] = "no-op",    [RA_CAPF_LATE] = "late",               [RA_CAPF_LOCKED_OUT] = "locked-out",
    [RA_CAPF_LOST_LOCK] = "lost-lock", [RA_CAPF_KEY_IN_USE] = "key-in-use",
    [RA_CAPF_NOT_ISSUED] = "not-issued",
};

static const char *const ra_capf_kind_text[RA_CAPF_KIND__COUNT] = {
    [RA_CAPF_INSTALL_OK] = "install-ok", [RA_CAPF_INSTALL_FAILED] = "install-failed",
    [RA_CAPF_DELETE_OK] = "delete-ok",   [RA_CAPF_DELETE_FAILED] = "delete-failed",
    [RA_CAPF_FETCH_OK] = "fetch-ok",     [RA_CAPF_FETCH_FAILED] = "fetch-failed",
};

const char *ra_capf_outcome_str(ra_capf_outcome_t o) {
    return (unsigned)o < RA_CAPF__COUNT ? ra_capf_outcome_text[o] : "?";
}

const char *ra_capf_kind_str(ra_capf_kind_t k) {
    return (unsigned)k < RA_CAPF_KIND__COUNT ? ra_capf_kind_text[k] : "?";
}

const char *ra_capf_script(void) { return ra_capf_lua; }

void ra_capf_script_sha(char out[41]) {
    uint8_t md[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)ra_capf_lua, sizeof(ra_capf_lua) - 1, md);
    ra_hex(out, md, sizeof(md));
}

ra_err_t ra_capf_lsc_init(ra_capf_lsc_t *l, const uint8_t *spki_der, size_t spki_len,
                          const uint8_t *cert_der, size_t cert_len, const char *serial_hex,
                          int64_t not_after) {
    size_t n = serial_hex ? strlen(serial_hex) : 0;
    memset(l, 0, sizeof(*l));
    if (n == 0 || n > RA_CAPF_SERIAL_MAX || !spki_der || !spki_len || !cert_der || !cert_len || not_after < 0)
        return RA_E_BAD_NAME;
    for (size_t i = 0; i < n; i++) {
        char ch = serial_hex[i];
        if (ch >= 'A' && ch <= 'F') ch = (char)(ch - 'A' + 'a');
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) return RA_E_BAD_NAME;
        l->serial[i] = ch;
    }
    SHA256(spki_der, spki_len, l->spki_sha256);
    MD5(cert_der, cert_len, l->cert_md5);
    SHA256(cert_der, cert_len, l->cert_sha256);
    l->not_after = not_after;
    l->spki_der = spki_der;
    l->spki_len = spki_len;
    l->cert_der = cert_der;
    l->cert_len = cert_len;
    return RA_OK;
}

/* ra_capf_token_valid: 1..RA_CAPF_TOKEN_MAX printable characters, no
 * spaces (the script checks the same). */
static bool ra_capf_token_valid(const char *t) {
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > RA_CAPF_TOKEN_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e) return false;
    return true;
}

/* ra_capf_text copies `in` (NULL = "") into out[cap], cut to cap - 1 bytes,
 * non-printable bytes replaced by '?'. */
static void ra_capf_text(char *out, size_t cap, const char *in) {
    ra_printable(out, cap, in ? in : "", in ? strnlen(in, cap - 1) : 0);
}

static void ra_capf_arg(ra_capf_cmd_t *c, const void *p, size_t len) {
    c->argv[c->argc] = p;
    c->argvlen[c->argc++] = len;
}

static void ra_capf_str(ra_capf_cmd_t *c, const char *s) { ra_capf_arg(c, s, strlen(s)); }

/* ra_capf_head validates the common arguments and lays out EVALSHA, the
 * keys (the request key if `spki_sha256`) and ARGV[1..4]. */
static ra_err_t ra_capf_head(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token, int64_t now,
                             const char *peer, const char *verb, const uint8_t *spki_sha256) {
    c->argc = 0;
    if (!ra_device_name_valid(name) || !ra_capf_token_valid(token) || now < 0) return RA_E_BAD_NAME;
    snprintf(c->_sha, sizeof(c->_sha), "%s", sha ? sha : "");
    snprintf(c->_numkeys, sizeof(c->_numkeys), "%d", spki_sha256 ? 4 : 3);
    ra_registry_key(c->_devkey, sizeof(c->_devkey), name);
    snprintf(c->_lockkey, sizeof(c->_lockkey), RA_CAPF_LOCK_PREFIX "{%s}", name);
    snprintf(c->_token, sizeof(c->_token), "%s", token);
    snprintf(c->_now, sizeof(c->_now), "%lld", (long long)now);
    ra_capf_text(c->_peer, sizeof(c->_peer), peer);
    ra_capf_str(c, "EVALSHA");
    ra_capf_str(c, c->_sha);
    ra_capf_str(c, c->_numkeys);
    ra_capf_str(c, "stp:audit");
    ra_capf_str(c, c->_devkey);
    ra_capf_str(c, c->_lockkey);
    if (spki_sha256) {
        ra_req_key(c->_reqkey, sizeof(c->_reqkey), name, spki_sha256);
        ra_req_id(c->_id, sizeof(c->_id), name, spki_sha256);
        ra_capf_str(c, c->_reqkey);
    }
    ra_capf_str(c, verb);
    ra_capf_str(c, c->_token);
    ra_capf_str(c, c->_now);
    ra_capf_str(c, c->_peer);
    return RA_OK;
}

/* ra_capf_add_key appends `key` (kept by the caller until the command was
 * sent) to the command's KEYS, before its ARGV. */
static void ra_capf_add_key(ra_capf_cmd_t *c, const char *key) {
    int nkeys = atoi(c->_numkeys), at = 3 + nkeys; /* EVALSHA sha n k1..kn | argv */
    for (int i = c->argc; i > at; i--) {
        c->argv[i] = c->argv[i - 1];
        c->argvlen[i] = c->argvlen[i - 1];
    }
    c->argv[at] = key;
    c->argvlen[at] = strlen(key);
    c->argc++;
    snprintf(c->_numkeys, sizeof(c->_numkeys), "%d", (nkeys + 1) & 63);
}

/* ra_capf_key_index names the key index stp:capf:key:HEX of `hash`. */
static const char *ra_capf_key_index(ra_capf_cmd_t *c, const uint8_t hash[32]) {
    char hexs[65];
    ra_hex(hexs, hash, 32);
    snprintf(c->_keyidx, sizeof(c->_keyidx), "stp:capf:key:%s", hexs);
    return c->_keyidx;
}

ra_err_t ra_capf_begin_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                           int64_t now, const char *peer, int64_t lock_ttl_ms) {
    if (lock_ttl_ms <= 0) return RA_E_BAD_NAME;
    ra_err_t e = ra_capf_head(c, sha, name, token, now, peer, "BEGIN", NULL);
    if (e != RA_OK) return e;
    snprintf(c->_n1, sizeof(c->_n1), "%lld", (long long)lock_ttl_ms);
    ra_capf_str(c, c->_n1);
    return RA_OK;
}

ra_err_t ra_capf_auth_failed_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                                 int64_t now, const char *peer, const char *reason, int64_t max_failures,
                                 int64_t lockout_s) {
    if (max_failures < 0 || lockout_s < 0) return RA_E_BAD_NAME;
    ra_err_t e = ra_capf_head(c, sha, name, token, now, peer, "AUTH_FAILED", NULL);
    if (e != RA_OK) return e;
    ra_capf_text(c->_reason, sizeof(c->_reason), reason);
    snprintf(c->_n1, sizeof(c->_n1), "%lld", (long long)max_failures);
    snprintf(c->_n2, sizeof(c->_n2), "%lld", (long long)lockout_s);
    ra_capf_str(c, c->_reason);
    ra_capf_str(c, c->_n1);
    ra_capf_str(c, c->_n2);
    return RA_OK;
}

/* ra_capf_lsc_digests writes the serial, not_after and the two
 * fingerprints of `l` into the command's storage (ISSUED, FINISH). */
static void ra_capf_lsc_digests(ra_capf_cmd_t *c, const ra_capf_lsc_t *l) {
    snprintf(c->_serial, sizeof(c->_serial), "%s", l->serial);
    snprintf(c->_n1, sizeof(c->_n1), "%lld", (long long)l->not_after);
    ra_hex(c->_md5, l->cert_md5, sizeof(l->cert_md5));
    ra_hex(c->_sha256, l->cert_sha256, sizeof(l->cert_sha256));
}

ra_err_t ra_capf_issued_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                            int64_t now, const char *peer, const ra_capf_lsc_t *lsc) {
    if (!lsc || !lsc->serial[0] || !lsc->spki_der || !lsc->spki_len || !lsc->cert_der || !lsc->cert_len ||
        lsc->not_after < 0)
        return RA_E_BAD_NAME;
    ra_err_t e = ra_capf_head(c, sha, name, token, now, peer, "ISSUED", lsc->spki_sha256);
    if (e != RA_OK) return e;
    if (lsc->has_key_hash) ra_capf_add_key(c, ra_capf_key_index(c, lsc->key_hash)); /* KEYS[5] */
    ra_capf_lsc_digests(c, lsc);
    ra_capf_str(c, c->_id);
    ra_capf_str(c, c->_serial);
    ra_capf_str(c, c->_n1);
    ra_capf_str(c, c->_md5);
    ra_capf_str(c, c->_sha256);
    ra_capf_arg(c, lsc->spki_der, lsc->spki_len); /* binary DER: never strlen */
    ra_capf_arg(c, lsc->cert_der, lsc->cert_len);
    if (lsc->online) ra_capf_str(c, "1");
    return RA_OK;
}

ra_err_t ra_capf_submit_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                            int64_t now, const char *peer, const ra_capf_submit_t *s) {
    uint8_t spki_sha256[32];
    if (!s || !s->spki_der || !s->spki_len || !s->p10_der || !s->p10_len || !s->notify ||
        strlen(s->notify) > RA_CAPF_NOTIFY_MAX || s->lock_ttl_ms <= 0)
        return RA_E_BAD_NAME;
    for (const char *p = s->notify; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) return RA_E_BAD_NAME;
    SHA256(s->spki_der, s->spki_len, spki_sha256);
    ra_err_t e = ra_capf_head(c, sha, name, token, now, peer, "SUBMIT", spki_sha256);
    if (e != RA_OK) return e;
    ra_capf_add_key(c, "stp:reqs:open");                                       /* KEYS[5] */
    ra_capf_add_key(c, "stp:upstream");                                        /* KEYS[6] */
    if (s->has_key_hash) ra_capf_add_key(c, ra_capf_key_index(c, s->key_hash)); /* KEYS[7] */
    snprintf(c->_notify, sizeof(c->_notify), "%s", s->notify);
    snprintf(c->_n1, sizeof(c->_n1), "%lld", (long long)s->lock_ttl_ms);
    ra_capf_str(c, c->_id);
    ra_capf_arg(c, s->spki_der, s->spki_len);
    ra_capf_arg(c, s->p10_der, s->p10_len);
    ra_capf_str(c, c->_notify);
    ra_capf_str(c, c->_n1);
    return RA_OK;
}

ra_err_t ra_capf_finish_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                            int64_t now, const char *peer, const ra_capf_finish_t *f) {
    if (!f || (unsigned)f->kind >= RA_CAPF_KIND__COUNT) return RA_E_BAD_NAME;
    bool install = f->kind == RA_CAPF_INSTALL_OK, fetch = f->kind == RA_CAPF_FETCH_OK;
    if ((install && (!f->lsc || !f->lsc->serial[0] || f->lsc->not_after < 0)) ||
        (fetch && (!f->cert_der || !f->cert_len)))
        return RA_E_BAD_NAME;
    ra_err_t e = ra_capf_head(c, sha, name, token, now, peer, "FINISH", install ? f->lsc->spki_sha256 : NULL);
    if (e != RA_OK) return e;
    ra_capf_str(c, ra_capf_kind_str(f->kind));
    if (install) {
        ra_capf_lsc_digests(c, f->lsc);
        ra_capf_str(c, c->_id);
        ra_capf_str(c, c->_serial);
        ra_capf_str(c, c->_n1);
        ra_capf_str(c, c->_md5);
        ra_capf_str(c, c->_sha256);
    } else {
        for (int i = 0; i < 5; i++) ra_capf_str(c, "");
    }
    if (fetch) ra_capf_arg(c, f->cert_der, f->cert_len);
    else ra_capf_str(c, "");
    return RA_OK;
}

ra_err_t ra_capf_fail_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token,
                          int64_t now, const char *peer, const char *reason) {
    ra_err_t e = ra_capf_head(c, sha, name, token, now, peer, "FAIL", NULL);
    if (e != RA_OK) return e;
    ra_capf_text(c->_reason, sizeof(c->_reason), reason);
    ra_capf_str(c, c->_reason);
    return RA_OK;
}

ra_err_t ra_capf_release_cmd(ra_capf_cmd_t *c, const char *sha, const char *name, const char *token) {
    return ra_capf_head(c, sha, name, token, 0, NULL, "RELEASE", NULL);
}

/* ---- replies ---- */

/* ra_capf_shape reports a reply of the wrong shape. */
static ra_err_t ra_capf_shape(char *why, size_t why_len) {
    snprintf(why, why_len, "CAPF script replied in an unexpected shape");
    return RA_E_REDIS;
}

ra_err_t ra_capf_parse(const redisReply *r, ra_capf_result_t *out, char *why, size_t why_len) {
    memset(out, 0, sizeof(*out));
    out->outcome = RA_CAPF__COUNT;
    if (!r) {
        snprintf(why, why_len, "no reply (connection lost)");
        return RA_E_REDIS;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        char msg[201];
        ra_capf_text(msg, sizeof(msg) < r->len + 1 ? sizeof(msg) : r->len + 1, r->str);
        snprintf(why, why_len, "CAPF script: %s", msg);
        return RA_E_REDIS;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5) return ra_capf_shape(why, why_len);
    const redisReply *const *e = (const redisReply *const *)r->element;
    if ((e[0]->type != REDIS_REPLY_STRING && e[0]->type != REDIS_REPLY_STATUS) || e[1]->type != REDIS_REPLY_STRING ||
        e[2]->type != REDIS_REPLY_INTEGER || e[3]->type != REDIS_REPLY_INTEGER || e[4]->type != REDIS_REPLY_ARRAY ||
        e[2]->integer < 0 || e[3]->integer < 0)
        return ra_capf_shape(why, why_len);
    for (int o = 0; o < RA_CAPF__COUNT; o++)
        if (e[0]->len == strlen(ra_capf_outcome_text[o]) && !memcmp(e[0]->str, ra_capf_outcome_text[o], e[0]->len))
            out->outcome = (ra_capf_outcome_t)o;
    if (out->outcome == RA_CAPF__COUNT) return ra_capf_shape(why, why_len);
    if (out->outcome != RA_CAPF_OK && e[4]->elements != 0) {
        out->outcome = RA_CAPF__COUNT;
        return ra_capf_shape(why, why_len);
    }
    size_t n = e[1]->len < sizeof(out->reason) - 1 ? e[1]->len : sizeof(out->reason) - 1;
    ra_capf_text(out->reason, n + 1, e[1]->str); /* stops at a NUL byte too */
    out->auth_failures = e[2]->integer;
    out->auth_lock_until = e[3]->integer;
    return RA_OK;
}

ra_err_t ra_capf_parse_begin(const redisReply *r, const char *name, ra_capf_result_t *out, ra_device_t *dev,
                             char *why, size_t why_len) {
    ra_err_t e = ra_capf_parse(r, out, why, why_len);
    if (e != RA_OK || out->outcome != RA_CAPF_OK) return e;
    e = ra_registry_decode_reply(r->element[4], name, dev, why, why_len);
    return e == RA_OK ? RA_OK : RA_E_BAD_RECORD; /* the lock is held: see ra_capf.h */
}

/* ra_capf_field_is: reply element `e` is the string `want`. */
static bool ra_capf_field_is(const redisReply *e, const char *want) {
    return e->type == REDIS_REPLY_STRING && e->len == strlen(want) && !memcmp(e->str, want, e->len);
}

ra_err_t ra_capf_parse_submit(const redisReply *r, ra_capf_result_t *out, ra_capf_submitted_t *sub, char *why,
                              size_t why_len) {
    memset(sub, 0, sizeof(*sub));
    ra_err_t e = ra_capf_parse(r, out, why, why_len);
    if (e != RA_OK || out->outcome != RA_CAPF_OK) return e;
    const redisReply *f = r->element[4];
    bool have_state = false, have_cert = false, have_serial = false;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];
        if (v->type != REDIS_REPLY_STRING) return ra_capf_shape(why, why_len);
        if (ra_capf_field_is(k, "state")) {
            have_state = true;
            if (ra_capf_field_is(v, "queued")) sub->state = RA_CAPF_SUBMIT_QUEUED;
            else if (ra_capf_field_is(v, "pending")) sub->state = RA_CAPF_SUBMIT_PENDING;
            else if (ra_capf_field_is(v, "issued")) sub->state = RA_CAPF_SUBMIT_ISSUED;
            else return ra_capf_shape(why, why_len);
        } else if (ra_capf_field_is(k, "cert") && v->len) {
            sub->cert = (const uint8_t *)v->str;
            sub->cert_len = v->len;
            have_cert = true;
        } else if (ra_capf_field_is(k, "serial") && v->len && v->len <= RA_CAPF_SERIAL_MAX) {
            ra_capf_text(sub->serial, v->len + 1, v->str);
            have_serial = true;
        } else if (ra_capf_field_is(k, "not_after")) {
            char num[24];
            char *end;
            ra_capf_text(num, v->len < sizeof(num) ? v->len + 1 : sizeof(num), v->str);
            long long n = strtoll(num, &end, 10);
            if (!num[0] || *end || n < 0) return ra_capf_shape(why, why_len);
            sub->not_after = n;
        }
    }
    if (f->elements % 2 || !have_state || (sub->state == RA_CAPF_SUBMIT_ISSUED && (!have_cert || !have_serial)))
        return ra_capf_shape(why, why_len);
    return RA_OK;
}

/* ---- start-up: locks of this instance's previous run ---- */

/* KEYS[1] a lock; ARGV[1] this instance's token prefix "host/inst:",
 * ARGV[2] the current run's "host/inst:boot:". Deletes the lock if an
 * earlier run of this instance holds it. */
static const char ra_capf_stale_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if v and string.sub(v, 1, #ARGV[1]) == ARGV[1] and string.sub(v, 1, #ARGV[2]) ~= ARGV[2] then\n"
    "  redis.call('DEL', KEYS[1]) return 1 end\n"
    "return 0\n";

ra_err_t ra_capf_release_stale(redisContext *c, const char *instance, const char *current, unsigned *released,
                               char *why, size_t why_len) {
    char cursor[32] = "0";
    *released = 0;
    do {
        redisReply *r = redisCommand(c, "SCAN %s MATCH " RA_CAPF_LOCK_PREFIX "* COUNT 1000", cursor);
        ra_err_t e = ra_redis_reply_err(c, r, why, why_len);
        if (e == RA_OK && (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                           r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY)) {
            snprintf(why, why_len, "SCAN: unexpected reply");
            e = RA_E_REDIS;
        }
        if (e != RA_OK) {
            if (r) freeReplyObject(r);
            return e;
        }
        snprintf(cursor, sizeof(cursor), "%.*s", (int)r->element[0]->len, r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const redisReply *k = r->element[1]->element[i];
            if (k->type != REDIS_REPLY_STRING) continue;
            const char *argv[] = {"EVAL", ra_capf_stale_lua, "1", k->str, instance, current};
            size_t lens[] = {4, strlen(ra_capf_stale_lua), 1, k->len, strlen(instance), strlen(current)};
            redisReply *d = redisCommandArgv(c, 6, argv, lens);
            e = ra_redis_reply_err(c, d, why, why_len);
            if (e == RA_OK && d->type == REDIS_REPLY_INTEGER && d->integer == 1) (*released)++;
            if (d) freeReplyObject(d);
            if (e != RA_OK) {
                freeReplyObject(r);
                return e;
            }
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return RA_OK;
}
