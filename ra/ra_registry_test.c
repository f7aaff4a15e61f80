/* ra_registry_test: registry operations against a private redis-server
 * (unix socket in a temp dir, no TCP, no persistence), started by the group
 * setup and killed by its teardown. Skipped (exit 77) without redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ra/ra_redis.h"
#include "ra/ra_testredis.h"
#include "ra/ra_registry.h"

static ra_testredis_t srv;
static redisContext *rc;

static int start_server(void **state) {
    (void)state;
    if (ra_testredis_start(&srv, "ra_registry_test", &rc) != 0) return -1;
    return 0;
}

static int stop_server(void **state) {
    (void)state;
    return ra_testredis_stop(&srv, &rc);
}

static void add_device(const char *name, ra_op_t op, bool replace, ra_err_t want) {
    ra_device_t d;
    char why[256];
    ra_device_init(&d, name);
    d.op = op;
    d.status = op == RA_OP_NONE ? RA_STATUS_NONE : RA_STATUS_PENDING;
    assert_int_equal(ra_registry_add(rc, &d, replace, "test", why, sizeof(why)), want);
}

static void test_add_get_replace(void **state) {
    (void)state;
    ra_device_t d;
    char why[256];
    add_device("R1", RA_OP_INSTALL, false, RA_OK);
    add_device("R1", RA_OP_DELETE, false, RA_E_EXISTS);
    assert_int_equal(ra_registry_get(rc, "R1", &d, why, sizeof(why)), RA_OK);
    assert_int_equal(d.op, RA_OP_INSTALL);
    redisReply *r = redisCommand(rc, "HSET stp:dev:{R1} created 1000 stale_field x lsc_serial 0abc "
                                         "lsc_not_after 2000000000 lsc_unconfirmed 0def auth_failures 3");
    freeReplyObject(r);
    add_device("R1", RA_OP_DELETE, true, RA_OK);
    assert_int_equal(ra_registry_get(rc, "R1", &d, why, sizeof(why)), RA_OK);
    assert_int_equal(d.op, RA_OP_DELETE);
    assert_int_equal(d.created, 1000); /* kept on replace */
    /* the device's certificates survive re-provisioning; the counters do not */
    assert_string_equal(d.lsc_serial, "0abc");
    assert_int_equal(d.lsc_not_after, 2000000000);
    assert_int_equal(d.auth_failures, 0);
    r = redisCommand(rc, "HGET stp:dev:{R1} lsc_unconfirmed");
    assert_string_equal(r->str, "0def");
    freeReplyObject(r);
    r = redisCommand(rc, "HEXISTS stp:dev:{R1} stale_field");
    assert_int_equal(r->integer, 0); /* whole record rewritten */
    freeReplyObject(r);
    assert_int_equal(ra_registry_get(rc, "NOPE", &d, why, sizeof(why)), RA_E_NOT_FOUND);
    assert_int_equal(ra_registry_get(rc, "a b", &d, why, sizeof(why)), RA_E_BAD_NAME);
}

static void test_set_status(void **state) {
    (void)state;
    ra_device_t d;
    char why[256];
    add_device("S1", RA_OP_INSTALL, false, RA_OK);
    assert_int_equal(ra_registry_set_status(rc, "S1", RA_STATUS_FAILED, "deadline passed", why, sizeof(why)), RA_OK);
    assert_int_equal(ra_registry_get(rc, "S1", &d, why, sizeof(why)), RA_OK);
    assert_int_equal(d.status, RA_STATUS_FAILED);
    assert_string_equal(d.reason, "deadline passed");
    assert_int_equal(d.op, RA_OP_INSTALL);
    assert_int_equal(ra_registry_set_status(rc, "S2", RA_STATUS_SUCCESS, "", why, sizeof(why)), RA_E_NOT_FOUND);
    redisReply *r = redisCommand(rc, "EXISTS stp:dev:{S2}");
    assert_int_equal(r->integer, 0); /* not created by a status update */
    freeReplyObject(r);
}

static int count_cb(const char *name, void *arg) {
    (void)name;
    ++*(int *)arg;
    return 0;
}

static void test_list_batch_delete(void **state) {
    (void)state;
    char why[256];
    int before = 0, after = 0;
    assert_int_equal(ra_registry_list(rc, count_cb, &before, why, sizeof(why)), RA_OK);
    add_device("B1", RA_OP_INSTALL, false, RA_OK);
    add_device("B2", RA_OP_NONE, false, RA_OK);
    redisReply *r = redisCommand(rc, "SET stp:dev:{B3} notahash");
    freeReplyObject(r);
    const char *names[] = {"B1", "B2", "B3", "B4", "b d"};
    ra_device_t out[5];
    ra_err_t errs[5];
    assert_int_equal(ra_registry_get_batch(rc, names, 5, out, errs, why, sizeof(why)), RA_OK);
    assert_int_equal(errs[0], RA_OK);
    assert_int_equal(out[0].op, RA_OP_INSTALL);
    assert_int_equal(errs[1], RA_OK);
    assert_int_equal(out[1].status, RA_STATUS_NONE);
    assert_int_equal(errs[2], RA_E_BAD_RECORD); /* WRONGTYPE */
    assert_int_equal(errs[3], RA_E_NOT_FOUND);
    assert_int_equal(errs[4], RA_E_BAD_NAME);
    assert_int_equal(ra_registry_list(rc, count_cb, &after, why, sizeof(why)), RA_OK);
    assert_int_equal(after, before + 2);
    assert_int_equal(ra_registry_delete(rc, "B1", "test", why, sizeof(why)), RA_OK);
    assert_int_equal(ra_registry_delete(rc, "B1", "test", why, sizeof(why)), RA_E_NOT_FOUND);
    r = redisCommand(rc, "SISMEMBER " RA_REGISTRY_SET " B1");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
}

int main(void) {
    if (system("command -v redis-server >/dev/null 2>&1") != 0) return 77; /* meson: skipped */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_get_replace),
        cmocka_unit_test(test_set_status),
        cmocka_unit_test(test_list_batch_delete),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
