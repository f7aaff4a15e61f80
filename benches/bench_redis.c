/* bench_redis: the Redis cost per enrollment. stampeded records every
 * enrollment in Redis (the request script by EVALSHA, then an XADD to the
 * audit stream; see ra/ra_req.h); this reads the Redis server's own counters
 * with one INFO request right before and right after the load, over one
 * synchronous hiredis connection, and turns the difference into figures per
 * enrollment: commands, read and write calls on the server's client sockets
 * (a read is one batch of pipelined commands arriving: a round trip), bytes
 * in and out, and redis-server CPU (INFO cpu, and /proc/PID/stat when the
 * server runs on this machine).
 *
 * Why INFO: it costs the load nothing (no proxy, no MONITOR) and it is what
 * the server itself counts. Its limits: the counters cover every client of
 * that server during the load, not only stampeded; and Redis counts the
 * calls a script makes (HMGET, DEL, HSET...) as commands, under their own
 * names, so "client commands" come from INFO commandstats: the calls of the
 * commands stampeded sends itself (redis_top_level below) - a script that
 * called one of those would be miscounted.
 *
 * The bench's own traffic is taken out exactly. Redis bumps
 * total_commands_processed and the command's calls after the command runs,
 * total_reads_processed and total_net_input_bytes when it reads the request,
 * and total_writes_processed and total_net_output_bytes when it writes the
 * reply. So between the two readings lie: the first INFO (1 command, 1 info
 * call, its reply: 1 write and its bytes out) and the second INFO's request
 * (1 read and its bytes in).
 * Thread: main thread. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bytestring.h>

#include "benches/bench.h"
#include "ra/ra_redis.h"

#define REDIS_TIMEOUT_MS 2000
#define REDIS_INFO_CMD "INFO all"   /* one request; "all" exists since Redis 2.6 */

/* The commands stampeded sends on its own connections (dataplane/dp_redis.c,
 * dp_ra.c): the batched request script, device lookups, SCRIPT LOAD and
 * SELECT at connect. XADD/ZADD/ZREM/HSET... run inside the script and count
 * as its inner calls. Redis >= 7 names subcommands "script|load". */
static const char *const redis_top_level[] = {
    "evalsha", "eval", "hgetall", "script", "script|load", "select", "ping",
};
#define REDIS_NUM_TOP_LEVEL (sizeof redis_top_level / sizeof redis_top_level[0])

struct bench_redis {
    redisContext *c;
    bool local;                 /* /proc of this machine shows the server */
};

/* ---- INFO parsing ------------------------------------------------------- */

typedef enum { REDIS_F_U64, REDIS_F_SECONDS } redis_field_kind_t;

/* redis_info_t: the INFO fields read, before sys and user CPU are summed. */
typedef struct {
    uint64_t commands, reads, writes, net_in, net_out, cpu_sys_us, cpu_user_us, pid;
} redis_info_t;

/* redis_field_t: one INFO field: its key, how its value is written, where it
 * goes, and whether a reading without it is useless. */
typedef struct {
    const char *key;
    redis_field_kind_t kind;
    size_t offset;
    bool required;
} redis_field_t;

#define FIELD(f) offsetof(redis_info_t, f)
static const redis_field_t redis_fields[] = {
    {"total_commands_processed", REDIS_F_U64, FIELD(commands), true},
    {"total_reads_processed", REDIS_F_U64, FIELD(reads), false},     /* Redis >= 6.0 */
    {"total_writes_processed", REDIS_F_U64, FIELD(writes), false},
    {"total_net_input_bytes", REDIS_F_U64, FIELD(net_in), true},
    {"total_net_output_bytes", REDIS_F_U64, FIELD(net_out), true},
    {"used_cpu_sys", REDIS_F_SECONDS, FIELD(cpu_sys_us), true},
    {"used_cpu_user", REDIS_F_SECONDS, FIELD(cpu_user_us), true},
    {"process_id", REDIS_F_U64, FIELD(pid), false},
};
#define REDIS_NUM_FIELDS (sizeof redis_fields / sizeof redis_fields[0])
#define REDIS_SEEN(i) (1u << (i))

/* redis_get_u64 reads all of `v` as a decimal of at most 19 digits. */
static bool redis_get_u64(CBS v, uint64_t *out) {
    uint64_t x = 0;
    uint8_t d;
    if (CBS_len(&v) == 0 || CBS_len(&v) > 19)
        return false;
    while (CBS_get_u8(&v, &d)) {
        if (d < '0' || d > '9')
            return false;
        x = x * 10 + (uint64_t)(d - '0');
    }
    *out = x;
    return true;
}

/* redis_get_seconds_us reads "S[.FFFFFF]" (Redis writes CPU seconds with six
 * decimals) as microseconds; digits past the sixth are dropped. */
static bool redis_get_seconds_us(CBS v, uint64_t *out) {
    CBS whole;
    uint64_t s, frac = 0;
    uint8_t d;
    if (!CBS_get_until_first(&v, &whole, '.')) {
        whole = v;
        CBS_init(&v, NULL, 0);
    } else if (!CBS_skip(&v, 1) || CBS_len(&v) == 0) {
        return false;
    }
    if (!redis_get_u64(whole, &s) || s > UINT64_MAX / 2000000u)
        return false;
    for (unsigned i = 0; i < 6; i++) {
        if (!CBS_get_u8(&v, &d))
            d = '0';
        if (d < '0' || d > '9')
            return false;
        frac = frac * 10 + (uint64_t)(d - '0');
    }
    while (CBS_get_u8(&v, &d))
        if (d < '0' || d > '9')
            return false;
    *out = s * 1000000u + frac;
    return true;
}

/* redis_get_prefix advances `s` over `prefix` if it starts with it. */
static bool redis_get_prefix(CBS *s, const char *prefix) {
    CBS copy = *s, head;
    size_t len = strlen(prefix);
    if (!CBS_get_bytes(&copy, &head, len) || !CBS_mem_equal(&head, (const uint8_t *)prefix, len))
        return false;
    *s = copy;
    return true;
}

/* redis_parse_cmdstat reads "calls=N,usec=..." for command `name`
 * ("cmdstat_" already taken off) into out->cmds. Lines that are not of this
 * shape, names too long, and commands past BENCH_REDIS_CMDS_MAX are dropped. */
static void redis_parse_cmdstat(bench_redis_snap_t *out, CBS name, CBS value) {
    CBS calls;
    uint64_t n;
    if (!CBS_get_until_first(&value, &calls, ','))
        calls = value;
    if (CBS_len(&name) == 0 || CBS_len(&name) >= BENCH_REDIS_NAME_MAX ||
        out->num_cmds >= BENCH_REDIS_CMDS_MAX || !redis_get_prefix(&calls, "calls=") ||
        !redis_get_u64(calls, &n))
        return;
    bench_redis_cmd_t *c = &out->cmds[out->num_cmds++];
    memcpy(c->name, CBS_data(&name), CBS_len(&name));
    c->name[CBS_len(&name)] = '\0';
    c->calls = n;
}

/* redis_parse_field stores `value` if `key` is one of redis_fields. Returns
 * false if it is, but its value is not a number. */
static bool redis_parse_field(redis_info_t *info, uint32_t *seen, CBS key, CBS value) {
    for (size_t i = 0; i < REDIS_NUM_FIELDS; i++) {
        const redis_field_t *f = &redis_fields[i];
        if (!CBS_mem_equal(&key, (const uint8_t *)f->key, strlen(f->key)))
            continue;
        uint64_t *dst = (uint64_t *)(void *)((char *)info + f->offset);
        bool ok = f->kind == REDIS_F_U64 ? redis_get_u64(value, dst)
                                         : redis_get_seconds_us(value, dst);
        *seen |= ok ? REDIS_SEEN(i) : 0;
        return ok;
    }
    return true;
}

bench_err_t bench_redis_parse_info(bench_redis_snap_t *out, const uint8_t *info, size_t len,
                                   const char **why) {
    redis_info_t f = {0};
    uint32_t seen = 0;
    CBS in, line, key, body;

    memset(out, 0, sizeof *out);
    CBS_init(&in, info, len);
    while (CBS_len(&in) > 0) {
        if (!CBS_get_until_first(&in, &line, '\n')) {
            line = in;
            CBS_init(&in, NULL, 0);
        } else {
            CBS_skip(&in, 1);
        }
        if (CBS_get_until_first(&line, &body, '\r'))
            line = body;
        if (CBS_len(&line) == 0 || redis_get_prefix(&line, "#") ||
            !CBS_get_until_first(&line, &key, ':'))
            continue;                       /* blank, section title, or no key */
        CBS_skip(&line, 1);
        if (redis_get_prefix(&key, "cmdstat_")) {
            redis_parse_cmdstat(out, key, line);
        } else if (!redis_parse_field(&f, &seen, key, line)) {
            *why = "an INFO counter is not a number";
            return BENCH_E_REDIS;
        }
    }
    for (size_t i = 0; i < REDIS_NUM_FIELDS; i++)
        if (redis_fields[i].required && !(seen & REDIS_SEEN(i))) {
            *why = "INFO lacks total_commands_processed, total_net_*_bytes or used_cpu_*";
            return BENCH_E_REDIS;
        }
    out->commands = f.commands;
    out->rw_known = (seen & REDIS_SEEN(1)) && (seen & REDIS_SEEN(2));
    out->reads = f.reads;
    out->writes = f.writes;
    out->net_in = f.net_in;
    out->net_out = f.net_out;
    out->cpu_us = f.cpu_sys_us + f.cpu_user_us;
    out->pid = f.pid;
    return BENCH_OK;
}

/* ---- the cost ----------------------------------------------------------- */

static bool redis_is_top_level(const char *name) {
    for (size_t i = 0; i < REDIS_NUM_TOP_LEVEL; i++)
        if (strcmp(name, redis_top_level[i]) == 0)
            return true;
    return false;
}

static uint64_t redis_calls_of(const bench_redis_snap_t *s, const char *name) {
    for (size_t i = 0; i < s->num_cmds; i++)
        if (strcmp(s->cmds[i].name, name) == 0)
            return s->cmds[i].calls;
    return 0;
}

/* redis_sub returns b - a - own, or 0 if that is negative. */
static double redis_sub(uint64_t b, uint64_t a, uint64_t own) {
    return b >= a + own ? (double)(b - a - own) : 0;
}

static int redis_cmp_cost(const void *x, const void *y) {
    const bench_redis_cmd_cost_t *a = x, *b = y;
    if (a->per_enroll != b->per_enroll)
        return a->per_enroll < b->per_enroll ? 1 : -1;
    return strcmp(a->name, b->name);
}

bench_err_t bench_redis_cost(bench_redis_cost_t *out, const bench_redis_snap_t *before,
                             const bench_redis_snap_t *after, uint64_t n, char *why,
                             size_t why_len) {
    const bench_redis_snap_t *a = before, *b = after;
    double dn = (double)(n > 0 ? n : 1);

    memset(out, 0, sizeof *out);
    if (b->commands < a->commands || b->net_in < a->net_in || b->net_out < a->net_out ||
        b->cpu_us < a->cpu_us || a->pid != b->pid) {
        snprintf(why, why_len, "the counters went back during the load (restart or "
                 "CONFIG RESETSTAT)");
        return BENCH_E_REDIS;
    }
    out->server_cmds = redis_sub(b->commands, a->commands, 1) / dn;
    out->reads = b->rw_known && a->rw_known ? redis_sub(b->reads, a->reads, 1) / dn : -1;
    out->writes = b->rw_known && a->rw_known ? redis_sub(b->writes, a->writes, 1) / dn : -1;
    out->bytes_in = redis_sub(b->net_in, a->net_in, b->own_in) / dn;
    out->bytes_out = redis_sub(b->net_out, a->net_out, a->own_out) / dn;
    out->cpu_us = (double)(b->cpu_us - a->cpu_us) / dn;
    out->proc_cpu_us = a->proc_known && b->proc_known && b->proc_us >= a->proc_us
                           ? (double)(b->proc_us - a->proc_us) / dn : -1;
    out->pid = b->pid;
    for (size_t i = 0; i < b->num_cmds; i++) {
        const char *name = b->cmds[i].name;
        uint64_t own = strcmp(name, "info") == 0 ? 1 : 0;
        double calls = redis_sub(b->cmds[i].calls, redis_calls_of(a, name), own);
        if (calls == 0)
            continue;
        bench_redis_cmd_cost_t *c = &out->cmds[out->num_cmds++];
        snprintf(c->name, sizeof c->name, "%s", name);
        c->per_enroll = calls / dn;
        c->top_level = redis_is_top_level(name);
        if (c->top_level)
            out->client_cmds += c->per_enroll;
    }
    qsort(out->cmds, out->num_cmds, sizeof out->cmds[0], redis_cmp_cost);
    return BENCH_OK;
}

/* ---- the connection ----------------------------------------------------- */

/* redis_is_local: the address is on this machine, so INFO's process_id is a
 * pid this machine's /proc shows. */
static bool redis_is_local(const ra_redis_addr_t *a) {
    return a->kind == RA_REDIS_UNIX || strcmp(a->host, "localhost") == 0 ||
           strcmp(a->host, "::1") == 0 || strncmp(a->host, "127.", 4) == 0;
}

bench_err_t bench_redis_open(bench_redis_t **out, const bench_cfg_t *cfg, char *addr,
                             size_t addr_len, char *why, size_t why_len) {
    ra_redis_addr_t a;
    struct stat st;
    redisContext *c;
    char cause[512];

    *out = NULL;
    snprintf(addr, addr_len, "-");
    if (cfg->redis != NULL && strcmp(cfg->redis, "off") == 0) {
        snprintf(why, why_len, "--redis off");
        return BENCH_OK;
    }
    if (cfg->redis == NULL) {
        if (ra_redis_addr_data_dir(&a, cfg->data_dir) != RA_OK ||
            stat(a.path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
            snprintf(why, why_len, "no socket %.300s/redis.sock; give --redis", cfg->data_dir);
            return BENCH_OK;
        }
    } else if (ra_redis_parse_url(&a, cfg->redis) != RA_OK) {
        snprintf(why, why_len, "--redis wants redis://host[:port][/db], unix:/path, an "
                 "absolute socket path or off, got '%.200s'", cfg->redis);
        return BENCH_E_SETUP;
    }
    ra_redis_addr_str(&a, addr, addr_len);
    if (ra_redis_connect(&c, &a, REDIS_TIMEOUT_MS, cause, sizeof cause) != RA_OK) {
        snprintf(why, why_len, "%s", cause);
        return cfg->redis == NULL ? BENCH_OK : BENCH_E_SETUP;
    }
    if ((*out = calloc(1, sizeof **out)) == NULL) {
        redisFree(c);
        snprintf(why, why_len, "out of memory");
        return BENCH_E_SETUP;
    }
    (*out)->c = c;
    (*out)->local = redis_is_local(&a);
    return BENCH_OK;
}

/* redis_proc_is_server: /proc/PID/comm names redis-server. */
static bool redis_proc_is_server(uint64_t pid) {
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%llu/comm", (unsigned long long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ok = fgets(comm, sizeof comm, f) != NULL;
    fclose(f);
    return ok && strncmp(comm, "redis-server", 12) == 0;
}

/* redis_wire_len: bytes of a RESP2 bulk string of `len` bytes on the wire. */
static uint64_t redis_wire_len(size_t len) {
    char head[32];
    return (uint64_t)snprintf(head, sizeof head, "$%zu\r\n", len) + len + 2;
}

bench_err_t bench_redis_snap(bench_redis_t *r, bench_redis_snap_t *out, char *why,
                             size_t why_len) {
    char *cmd;
    void *reply = NULL;
    const char *cause = NULL;
    int len = redisFormatCommand(&cmd, REDIS_INFO_CMD);

    if (len < 0) {
        snprintf(why, why_len, "out of memory");
        return BENCH_E_REDIS;
    }
    int sent = redisAppendFormattedCommand(r->c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (sent == REDIS_OK)
        redisGetReply(r->c, &reply);
    redisReply *rep = reply;
    if (ra_redis_reply_err(r->c, rep, why, why_len) != RA_OK)
        goto fail;
    if (rep->type != REDIS_REPLY_STRING) {
        snprintf(why, why_len, "INFO replied with type %d", rep->type);
        goto fail;
    }
    if (bench_redis_parse_info(out, (const uint8_t *)rep->str, rep->len, &cause) != BENCH_OK) {
        snprintf(why, why_len, "%s", cause);
        goto fail;
    }
    out->own_in = (uint64_t)len;
    out->own_out = redis_wire_len(rep->len);
    out->proc_known = r->local && out->pid != 0 && redis_proc_is_server(out->pid) &&
                      bench_proc_cpu_us(out->pid, &out->proc_us) == BENCH_OK;
    freeReplyObject(rep);
    return BENCH_OK;
fail:
    if (rep != NULL)
        freeReplyObject(rep);
    return BENCH_E_REDIS;
}

void bench_redis_close(bench_redis_t *r) {
    if (r == NULL)
        return;
    redisFree(r->c);
    free(r);
}
