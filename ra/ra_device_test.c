/* ra_device_test: device record codec, validation, auth-string hashing,
 * deadline parsing and Redis URL parsing (pure functions, no server). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ra/ra_device.h"
#include "ra/ra_redis.h"

static void test_names(void **state) {
    (void)state;
    char long_name[70];
    assert_true(ra_device_name_valid("SEP74A02FC0A675"));
    assert_true(ra_device_name_valid("CSFjdoe.x_1-2"));
    assert_false(ra_device_name_valid(""));
    assert_false(ra_device_name_valid(NULL));
    assert_false(ra_device_name_valid("SEP 1"));
    assert_false(ra_device_name_valid("a{b}"));
    assert_false(ra_device_name_valid("a:b"));
    memset(long_name, 'A', 64);
    long_name[64] = '\0';
    assert_true(ra_device_name_valid(long_name));
    long_name[64] = 'A';
    long_name[65] = '\0';
    assert_false(ra_device_name_valid(long_name));
}

static void test_words(void **state) {
    (void)state;
    ra_op_t op;
    ra_auth_t a;
    ra_status_t s;
    assert_int_equal(ra_op_parse("troubleshoot", &op), RA_OK);
    assert_int_equal(op, RA_OP_TROUBLESHOOT);
    assert_int_equal(ra_op_parse("upgrade", &op), RA_E_BAD_OP);
    assert_int_equal(ra_op_parse("Install", &op), RA_E_BAD_OP);
    assert_int_equal(ra_auth_parse("mic", &a), RA_OK);
    assert_int_equal(a, RA_AUTH_MIC);
    assert_int_equal(ra_auth_parse("", &a), RA_E_BAD_AUTH);
    assert_int_equal(ra_status_parse("failed", &s), RA_OK);
    assert_string_equal(ra_status_name(s), "failed");
    assert_string_equal(ra_op_name((ra_op_t)99), "?");
}

static void test_keys(void **state) {
    (void)state;
    ra_key_t k[RA_KEY__COUNT];
    size_t n = 0;
    char buf[64];
    assert_int_equal(ra_keys_parse(k, &n, "ec256,rsa2048"), RA_OK);
    assert_int_equal(ra_keys_parse(k, &n, "rsa4096"), RA_OK);
    assert_int_equal(n, 3);
    ra_keys_format(k, n, buf, sizeof(buf));
    assert_string_equal(buf, "ec256,rsa2048,rsa4096");
    assert_int_equal(ra_keys_parse(k, &n, "ec384,ec256"), RA_E_BAD_KEYS); /* repeated */
    assert_int_equal(n, 3);                                              /* nothing appended */
    n = 0;
    assert_int_equal(ra_keys_parse(k, &n, "rsa1536"), RA_E_BAD_KEYS); /* not a size CUCM offers */
    assert_int_equal(ra_keys_parse(k, &n, ""), RA_E_BAD_KEYS);
    assert_int_equal(ra_keys_parse(k, &n, "rsa2048,"), RA_E_BAD_KEYS);
    assert_int_equal(ra_keys_parse(k, &n, "rsa2048,rsa3072,rsa4096,ec256,ec384,ec521,rsa1024,rsa512"), RA_OK);
    assert_int_equal(n, RA_KEY__COUNT);
}

static void test_auth_string(void **state) {
    (void)state;
    char h[RA_DEVICE_HASH_MAX];
    assert_true(ra_auth_string_valid("1234"));
    assert_true(ra_auth_string_valid("1234567890"));
    assert_false(ra_auth_string_valid("123"));
    assert_false(ra_auth_string_valid("12345678901"));
    assert_false(ra_auth_string_valid("12a4"));
    assert_false(ra_auth_string_valid("-1234"));
    assert_int_equal(ra_auth_string_hash("12x45", h, sizeof(h)), RA_E_BAD_AUTH_STRING);
    assert_int_equal(ra_auth_string_hash("424242", h, sizeof(h)), RA_OK);
    assert_memory_equal(h, "$6$", 3);
    assert_null(strstr(h, "424242"));
    assert_true(ra_auth_string_check("424242", h));
    assert_false(ra_auth_string_check("424243", h));
    assert_false(ra_auth_string_check("424242", "*0"));
}

static void test_time(void **state) {
    (void)state;
    int64_t t;
    assert_int_equal(ra_time_parse("2026-12-31T23:00Z", &t), RA_OK);
    assert_int_equal(t, 1798758000);
    assert_int_equal(ra_time_parse("2026-12-31T23:00:59Z", &t), RA_OK);
    assert_int_equal(t, 1798758059);
    setenv("TZ", "UTC", 1);
    tzset();
    assert_int_equal(ra_time_parse("2026-12-31T23:00", &t), RA_OK);
    assert_int_equal(t, 1798758000);
    assert_int_equal(ra_time_parse("2026-12-31", &t), RA_E_BAD_TIME);
    assert_int_equal(ra_time_parse("2026-12-31T23:00+01", &t), RA_E_BAD_TIME);
    assert_int_equal(ra_time_parse("2026-02-30T10:00", &t), RA_E_BAD_TIME);
    assert_int_equal(ra_time_parse("yesterday", &t), RA_E_BAD_TIME);
    assert_int_equal(ra_time_parse("", &t), RA_E_BAD_TIME);
}

/* decode_fields runs ra_device_decode over encoded pairs. */
static ra_err_t decode_fields(ra_device_t *out, const char *name, const ra_device_fields_t *f) {
    size_t fl[RA_DEVICE_NUM_FIELDS], vl[RA_DEVICE_NUM_FIELDS];
    char why[128];
    for (size_t i = 0; i < f->num; i++) {
        fl[i] = strlen(f->field[i]);
        vl[i] = strlen(f->value[i]);
    }
    return ra_device_decode(out, name, f->field, fl, f->value, vl, f->num, why, sizeof(why));
}

static void test_encode_decode(void **state) {
    (void)state;
    ra_device_t d, back;
    ra_device_fields_t f;
    size_t n = 0;
    ra_device_init(&d, "SEP74A02FC0A675");
    d.op = RA_OP_INSTALL;
    d.auth = RA_AUTH_STRING;
    assert_int_equal(ra_device_validate(&d), RA_E_BAD_AUTH); /* no hash yet */
    assert_int_equal(ra_auth_string_hash("1234", d.auth_hash, sizeof(d.auth_hash)), RA_OK);
    assert_int_equal(ra_keys_parse(d.keys, &n, "ec384,rsa3072"), RA_OK);
    d.num_keys = n;
    d.by = 1798758000;
    d.status = RA_STATUS_FAILED;
    snprintf(d.reason, sizeof(d.reason), "deadline passed");
    snprintf(d.lsc_serial, sizeof(d.lsc_serial), "0A1b");
    d.lsc_not_after = 1900000000;
    d.auth_failures = 2;
    d.created = 1;
    d.updated = 2;
    assert_int_equal(ra_device_validate(&d), RA_OK);
    ra_device_encode(&f, &d);
    assert_int_equal(f.num, 12);
    assert_int_equal(decode_fields(&back, d.name, &f), RA_OK);
    assert_memory_equal(&back, &d, sizeof(d));
    d.auth = RA_AUTH_LSC; /* a hash without string auth is not written */
    d.auth_hash[0] = '\0';
    ra_device_encode(&f, &d);
    assert_int_equal(f.num, 11);
    for (size_t i = 0; i < f.num; i++) assert_string_not_equal(f.field[i], "auth_hash");
}

static void test_decode_rejects(void **state) {
    (void)state;
    ra_device_t d;
    char why[128];
    const char *f1[] = {"op", "by"}, *v1[] = {"install", "12x"};
    size_t fl1[] = {2, 2}, vl1[] = {7, 3};
    assert_int_equal(ra_device_decode(&d, "A", f1, fl1, v1, vl1, 2, why, sizeof(why)), RA_E_BAD_RECORD);
    assert_non_null(strstr(why, "'by'"));
    const char *f2[] = {"status"}, *v2[] = {"pending\0x"};
    size_t fl2[] = {6}, vl2[] = {9}; /* embedded NUL */
    assert_int_equal(ra_device_decode(&d, "A", f2, fl2, v2, vl2, 1, why, sizeof(why)), RA_E_BAD_RECORD);
    const char *f3[] = {"lsc_serial"}, *v3[] = {"zz"};
    size_t fl3[] = {10}, vl3[] = {2};
    assert_int_equal(ra_device_decode(&d, "A", f3, fl3, v3, vl3, 1, why, sizeof(why)), RA_E_BAD_RECORD);
    const char *f4[] = {"auth"}, *v4[] = {"string"}; /* string without hash */
    size_t fl4[] = {4}, vl4[] = {6};
    assert_int_equal(ra_device_decode(&d, "A", f4, fl4, v4, vl4, 1, why, sizeof(why)), RA_E_BAD_RECORD);
    const char *f5[] = {"future_field", "op"}, *v5[] = {"x", "delete"};
    size_t fl5[] = {12, 2}, vl5[] = {1, 6};
    assert_int_equal(ra_device_decode(&d, "A", f5, fl5, v5, vl5, 2, why, sizeof(why)), RA_OK);
    assert_int_equal(d.op, RA_OP_DELETE);
    assert_int_equal(d.num_keys, 1); /* default rsa2048 */
    assert_int_equal(ra_device_decode(&d, "a b", f5, fl5, v5, vl5, 2, why, sizeof(why)), RA_E_BAD_RECORD);
}

static void test_redis_url(void **state) {
    (void)state;
    ra_redis_addr_t a;
    char s[256];
    assert_int_equal(ra_redis_parse_url(&a, "redis://10.0.0.5:6380/2"), RA_OK);
    assert_int_equal(a.kind, RA_REDIS_TCP);
    assert_string_equal(a.host, "10.0.0.5");
    assert_int_equal(a.port, 6380);
    assert_int_equal(a.db, 2);
    assert_int_equal(ra_redis_parse_url(&a, "redis://cache"), RA_OK);
    assert_int_equal(a.port, 6379);
    assert_int_equal(a.db, 0);
    assert_int_equal(ra_redis_parse_url(&a, "redis://[::1]:7000"), RA_OK);
    assert_string_equal(a.host, "::1");
    ra_redis_addr_str(&a, s, sizeof(s));
    assert_string_equal(s, "redis://[::1]:7000/0");
    assert_int_equal(ra_redis_parse_url(&a, "unix:/run/r.sock?db=3"), RA_OK);
    assert_int_equal(a.kind, RA_REDIS_UNIX);
    assert_string_equal(a.path, "/run/r.sock");
    assert_int_equal(a.db, 3);
    assert_int_equal(ra_redis_parse_url(&a, "/tmp/x.sock"), RA_OK);
    assert_string_equal(a.path, "/tmp/x.sock");
    assert_int_equal(ra_redis_addr_data_dir(&a, "/var/lib/stampede"), RA_OK);
    assert_string_equal(a.path, "/var/lib/stampede/redis.sock");
    const char *bad[] = {"redis://", "redis://h:0", "redis://h:70000", "redis://h:1x", "redis://h/x",
                         "http://h", "unix:rel", "relative.sock", "redis://[::1", "unix:/a?db=x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ra_redis_parse_url(&a, bad[i]), RA_E_REDIS_URL);
    char longdir[200];
    memset(longdir, 'd', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    assert_int_equal(ra_redis_addr_data_dir(&a, longdir), RA_E_REDIS_URL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_words),
        cmocka_unit_test(test_keys),          cmocka_unit_test(test_auth_string),
        cmocka_unit_test(test_time),          cmocka_unit_test(test_encode_decode),
        cmocka_unit_test(test_decode_rejects), cmocka_unit_test(test_redis_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
