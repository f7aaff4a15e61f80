/* bench_redis_test: unit tests for bench_redis, the Redis cost per
 * enrollment: the INFO parser (fields, commandstats, CPU seconds, refused and
 * truncated input), the cost arithmetic (the bench's own INFO taken out,
 * client vs server commands), and, against a private redis-server (unix
 * socket in a temp dir; skipped without redis-server), that two readings with
 * nothing between them cost exactly zero and that a pipelined EVAL + XADD
 * costs exactly what was sent and received. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "benches/bench.h"
#include "ra/ra_redis.h"
#include "ra/ra_testredis.h"

static const char info_text[] =
    "# Server\r\n"
    "redis_version:7.0.15\r\n"
    "process_id:4242\r\n"
    "\r\n"
    "# Stats\r\n"
    "total_connections_received:3\r\n"
    "total_commands_processed:1000\r\n"
    "total_net_input_bytes:50000\r\n"
    "total_net_output_bytes:60000\r\n"
    "total_reads_processed:700\r\n"
    "total_writes_processed:650\r\n"
    "\r\n"
    "# CPU\r\n"
    "used_cpu_sys:1.250000\r\n"
    "used_cpu_user:0.000042\r\n"
    "used_cpu_sys_children:0.000000\r\n"
    "\r\n"
    "# Commandstats\r\n"
    "cmdstat_evalsha:calls=100,usec=900,usec_per_call=9.00,rejected_calls=0,failed_calls=0\r\n"
    "cmdstat_script|load:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n"
    "cmdstat_hset:calls=200,usec=300,usec_per_call=1.50\r\n"
    "cmdstat_info:calls=1,usec=50,usec_per_call=50.00\r\n"
    "cmdstat_broken:usec=1\r\n"
    "\r\n"
    "# Keyspace\r\n"
    "db0:keys=10,expires=0,avg_ttl=0\r\n";

static bench_err_t parse(const char *s, bench_redis_snap_t *out) {
    const char *why = NULL;
    bench_err_t e = bench_redis_parse_info(out, (const uint8_t *)s, strlen(s), &why);
    if (e != BENCH_OK)
        assert_non_null(why);
    return e;
}

static void test_parse_info(void **state) {
    (void)state;
    bench_redis_snap_t s;
    assert_int_equal(parse(info_text, &s), BENCH_OK);
    assert_int_equal(s.commands, 1000);
    assert_int_equal(s.net_in, 50000);
    assert_int_equal(s.net_out, 60000);
    assert_true(s.rw_known);
    assert_int_equal(s.reads, 700);
    assert_int_equal(s.writes, 650);
    assert_int_equal(s.cpu_us, 1250042);
    assert_int_equal(s.pid, 4242);
    assert_int_equal(s.num_cmds, 4);       /* cmdstat_broken has no calls= */
    assert_string_equal(s.cmds[0].name, "evalsha");
    assert_int_equal(s.cmds[0].calls, 100);
    assert_string_equal(s.cmds[1].name, "script|load");
    assert_int_equal(s.cmds[1].calls, 2);
}

static void test_parse_lf_and_old_redis(void **state) {
    (void)state;
    bench_redis_snap_t s;
    /* LF only, no reads/writes counters (Redis < 6), CPU without decimals */
    assert_int_equal(parse("total_commands_processed:5\ntotal_net_input_bytes:1\n"
                           "total_net_output_bytes:2\nused_cpu_sys:3\nused_cpu_user:0.5", &s),
                     BENCH_OK);
    assert_false(s.rw_known);
    assert_int_equal(s.cpu_us, 3500000);
    assert_int_equal(s.pid, 0);
    /* digits past the sixth decimal are dropped */
    assert_int_equal(parse("total_commands_processed:5\ntotal_net_input_bytes:1\n"
                           "total_net_output_bytes:2\nused_cpu_sys:1.2345678\nused_cpu_user:0", &s),
                     BENCH_OK);
    assert_int_equal(s.cpu_us, 1234567);
}

static void test_parse_refused(void **state) {
    (void)state;
    bench_redis_snap_t s;
    assert_int_equal(parse("", &s), BENCH_E_REDIS);
    assert_int_equal(parse("-ERR unknown command\r\n", &s), BENCH_E_REDIS);
    assert_int_equal(parse("total_commands_processed:5x\ntotal_net_input_bytes:1\n"
                           "total_net_output_bytes:2\nused_cpu_sys:3\nused_cpu_user:0", &s),
                     BENCH_E_REDIS);
    assert_int_equal(parse("total_commands_processed:5\ntotal_net_input_bytes:1\n"
                           "total_net_output_bytes:2\nused_cpu_sys:3.\nused_cpu_user:0", &s),
                     BENCH_E_REDIS);
    assert_int_equal(parse("total_commands_processed:99999999999999999999\n"
                           "total_net_input_bytes:1\ntotal_net_output_bytes:2\n"
                           "used_cpu_sys:3\nused_cpu_user:0", &s),
                     BENCH_E_REDIS);
}

/* Every truncation of a valid reply parses or is refused; none overruns
 * (run under ASan to see it). */
static void test_parse_truncated(void **state) {
    (void)state;
    bench_redis_snap_t s;
    const char *why;
    size_t len = strlen(info_text);
    for (size_t n = 0; n <= len; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, info_text, n);
        bench_err_t e = bench_redis_parse_info(&s, copy, n, &why);
        assert_true(e == BENCH_OK || e == BENCH_E_REDIS);
        free(copy);
    }
}

static void snap_cmd(bench_redis_snap_t *s, const char *name, uint64_t calls) {
    snprintf(s->cmds[s->num_cmds].name, BENCH_REDIS_NAME_MAX, "%s", name);
    s->cmds[s->num_cmds++].calls = calls;
}

static void test_cost(void **state) {
    (void)state;
    bench_redis_snap_t a = {0}, b = {0};
    bench_redis_cost_t c;
    char why[128];
    a = (bench_redis_snap_t){.commands = 100, .reads = 50, .writes = 40, .rw_known = true,
                             .net_in = 1000, .net_out = 2000, .cpu_us = 5000, .pid = 7,
                             .own_in = 23, .own_out = 4000};
    snap_cmd(&a, "info", 3);
    snap_cmd(&a, "evalsha", 10);
    b = a;
    b.num_cmds = 0;
    b.own_in = 23;
    b.own_out = 4100;
    /* 10 enrollments: one evalsha each (the script's xadd, hmget, del and 2
     * hset are inner calls),
     * 8 reads; plus the bench's first INFO (command, write, its reply) and the
     * second INFO's request (read, its bytes in). */
    b.commands = 100 + 60 + 1;
    b.reads = 50 + 8 + 1;
    b.writes = 40 + 10 + 1;
    b.net_in = 1000 + 9000 + 23;
    b.net_out = 2000 + 500 + 4000;
    b.cpu_us = 5000 + 250;
    snap_cmd(&b, "info", 4);
    snap_cmd(&b, "evalsha", 20);
    snap_cmd(&b, "xadd", 10);
    snap_cmd(&b, "hmget", 10);
    snap_cmd(&b, "del", 10);
    snap_cmd(&b, "hset", 20);
    assert_int_equal(bench_redis_cost(&c, &a, &b, 10, why, sizeof why), BENCH_OK);
    assert_true(c.client_cmds == 1.0);
    assert_true(c.server_cmds == 6.0);
    assert_true(c.reads == 0.8);
    assert_true(c.writes == 1.0);
    assert_true(c.bytes_in == 900.0);
    assert_true(c.bytes_out == 50.0);
    assert_true(c.cpu_us == 25.0);
    assert_true(c.proc_cpu_us < 0);
    assert_int_equal(c.num_cmds, 5);       /* info: only the bench's own call, gone */
    assert_string_equal(c.cmds[0].name, "hset");    /* 2.00 first, then ties by name */
    assert_false(c.cmds[0].top_level);
    assert_string_equal(c.cmds[1].name, "del");
    assert_string_equal(c.cmds[2].name, "evalsha");
    assert_true(c.cmds[2].top_level);

    b.commands = 99;                       /* CONFIG RESETSTAT during the load */
    assert_int_equal(bench_redis_cost(&c, &a, &b, 10, why, sizeof why), BENCH_E_REDIS);
}

/* ---- against a private redis-server ------------------------------------- */

static ra_testredis_t srv;

static int start_server(void **state) {
    (void)state;
    return ra_testredis_start(&srv, "bench_redis_test", NULL);
}

static int stop_server(void **state) {
    (void)state;
    return ra_testredis_stop(&srv, NULL);
}

static bench_redis_t *open_default(void) {
    bench_cfg_t cfg = {.data_dir = srv.dir};   /* --redis not given: DIR/redis.sock */
    bench_redis_t *r = NULL;
    char addr[256], why[256];
    assert_int_equal(bench_redis_open(&r, &cfg, addr, sizeof addr, why, sizeof why), BENCH_OK);
    assert_non_null(r);
    assert_non_null(strstr(addr, "redis.sock"));
    return r;
}

static void test_live_idle_costs_nothing(void **state) {
    (void)state;
    bench_redis_t *r = open_default();
    bench_redis_snap_t a, b;
    bench_redis_cost_t c;
    char why[256];
    assert_int_equal(bench_redis_snap(r, &a, why, sizeof why), BENCH_OK);
    assert_int_equal(bench_redis_snap(r, &b, why, sizeof why), BENCH_OK);
    assert_int_equal(bench_redis_cost(&c, &a, &b, 1, why, sizeof why), BENCH_OK);
    assert_true(c.server_cmds == 0 && c.client_cmds == 0 && c.reads == 0 && c.writes == 0);
    assert_true(c.bytes_in == 0 && c.bytes_out == 0);
    assert_int_equal(c.num_cmds, 0);
    assert_true(b.proc_known);             /* a local redis-server */
    assert_int_equal(b.pid, srv.pid);
    bench_redis_close(r);
}

static void test_live_pipeline(void **state) {
    (void)state;
    bench_redis_t *r = open_default();
    bench_redis_snap_t a, b;
    bench_redis_cost_t c;
    ra_redis_addr_t addr;
    redisContext *rc;
    redisReply *rep[2];
    char *cmd[2], why[256];
    int len[2];
    uint64_t out_bytes = 4;                /* ":1\r\n" */
    assert_int_equal(ra_redis_addr_data_dir(&addr, srv.dir), RA_OK);
    assert_int_equal(ra_redis_connect(&rc, &addr, 1000, why, sizeof why), RA_OK);
    len[0] = redisFormatCommand(&cmd[0], "EVAL %s 1 k",
                                "redis.call('HSET', KEYS[1], 'a', '1') return 1");
    len[1] = redisFormatCommand(&cmd[1], "XADD s * a b");
    assert_int_equal(bench_redis_snap(r, &a, why, sizeof why), BENCH_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(redisAppendFormattedCommand(rc, cmd[i], (size_t)len[i]), REDIS_OK);
        redisFreeCommand(cmd[i]);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(redisGetReply(rc, (void **)&rep[i]), REDIS_OK);
    out_bytes += (uint64_t)snprintf(why, sizeof why, "$%zu\r\n", rep[1]->len) + rep[1]->len + 2;
    assert_int_equal(bench_redis_snap(r, &b, why, sizeof why), BENCH_OK);
    assert_int_equal(bench_redis_cost(&c, &a, &b, 1, why, sizeof why), BENCH_OK);
    assert_true(c.client_cmds == 1);       /* eval; the XADD is counted as an inner call */
    assert_true(c.server_cmds == 3);       /* + the script's hset */
    assert_true(c.reads >= 1 && c.reads <= 2); /* one pipelined batch, unless split */
    assert_true(c.bytes_in == (double)(len[0] + len[1]));
    assert_true(c.bytes_out == (double)out_bytes);
    freeReplyObject(rep[0]);
    freeReplyObject(rep[1]);
    redisFree(rc);
    bench_redis_close(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_info),
        cmocka_unit_test(test_parse_lf_and_old_redis),
        cmocka_unit_test(test_parse_refused),
        cmocka_unit_test(test_parse_truncated),
        cmocka_unit_test(test_cost),
    };
    const struct CMUnitTest live[] = {
        cmocka_unit_test(test_live_idle_costs_nothing),
        cmocka_unit_test(test_live_pipeline),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (system("command -v redis-server >/dev/null 2>&1") != 0)
        return failed;                     /* the live tests need redis-server */
    return failed + cmocka_run_group_tests_name("live", live, start_server, stop_server);
}
