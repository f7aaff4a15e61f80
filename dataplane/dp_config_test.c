/* dp_config_test: defaults, config file, flag precedence and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/dp_config.h"

static void test_defaults_and_flags(void **state) {
    (void)state;
    dp_config_t c;
    char why[256];
    char *argv[] = {"stampeded", "--data-dir", "/tmp/x", "--cores=3", "--leaf-copy-san", "true", NULL};
    assert_int_equal(dp_config_load(&c, 6, argv, why, sizeof(why)), DP_CFG_OK);
    assert_string_equal(c.data_dir, "/tmp/x");
    assert_string_equal(c.est_listen, "127.0.0.1:8443");
    assert_int_equal(c.cores, 3);
    assert_true(c.leaf_copy_san);
    assert_int_equal(c.max_body, 16384);
    dp_config_free(&c);
}

static void test_file_then_flags(void **state) {
    (void)state;
    char path[] = "/tmp/dp_config_test.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\nsigners = 5\n[stampeded]\nest_listen = 0.0.0.0:9443\n"
                       "[stampede-control]\nunknown_elsewhere = 1\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    dp_config_t c;
    char why[256];
    char *argv[] = {"stampeded", "--config", path, "--data-dir", "/d", "--signers", "7", NULL};
    assert_int_equal(dp_config_load(&c, 7, argv, why, sizeof(why)), DP_CFG_OK);
    assert_int_equal(c.signers, 7);
    assert_string_equal(c.est_listen, "0.0.0.0:9443");
    dp_config_free(&c);
    unlink(path);
}

static void test_errors(void **state) {
    (void)state;
    dp_config_t c;
    char why[256];
    char *a1[] = {"stampeded", "--cores", "x", "--data-dir", "/d", NULL};
    assert_int_equal(dp_config_load(&c, 5, a1, why, sizeof(why)), DP_CFG_E_VALUE);
    dp_config_free(&c);
    char *a2[] = {"stampeded", "--bogus", "1", NULL};
    assert_int_equal(dp_config_load(&c, 3, a2, why, sizeof(why)), DP_CFG_E_USAGE);
    assert_non_null(strstr(why, "bogus"));
    dp_config_free(&c);
    char *a6[] = {"stampeded", "--data-dir", "/d", "--bogus", NULL};
    assert_int_equal(dp_config_load(&c, 4, a6, why, sizeof(why)), DP_CFG_E_USAGE);
    assert_non_null(strstr(why, "unknown flag"));
    dp_config_free(&c);
    char *a3[] = {"stampeded", NULL};
    assert_int_equal(dp_config_load(&c, 1, a3, why, sizeof(why)), DP_CFG_E_USAGE);
    assert_non_null(strstr(why, "--data-dir"));
    dp_config_free(&c);
    char *a4[] = {"stampeded", "--config", "/nonexistent.ini", NULL};
    assert_int_equal(dp_config_load(&c, 3, a4, why, sizeof(why)), DP_CFG_E_FILE);
    dp_config_free(&c);
    char *a5[] = {"stampeded", "--data-dir", "/d", "--cores", "999", NULL};
    assert_int_equal(dp_config_load(&c, 5, a5, why, sizeof(why)), DP_CFG_E_VALUE);
    dp_config_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_flags),
        cmocka_unit_test(test_file_then_flags),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
