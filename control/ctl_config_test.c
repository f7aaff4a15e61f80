/* ctl_config_test: defaults, config file and flag precedence, bound errors
 * naming the setting, the password file, auth parsing, the sub-command
 * left in `rest`, --help / --dump-config / --version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/ctl_config.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof(a[0])) - 1)

typedef struct {
    ctl_config_t cfg;
    const char *rest[4];
    size_t n_rest;
    char why[512];
    char *out;
    size_t out_len;
} load_t;

static ctl_cfg_err_t load(load_t *l, int argc, char **argv) {
    memset(l, 0, sizeof(*l));
    FILE *out = open_memstream(&l->out, &l->out_len);
    assert_non_null(out);
    ctl_cfg_err_t e = ctl_config_load(&l->cfg, argc, argv, out, l->rest, 4, &l->n_rest, l->why, sizeof(l->why));
    fclose(out);
    return e;
}

static void done(load_t *l) {
    ctl_config_free(&l->cfg);
    free(l->out);
}

/* write_file writes `text` to a new temporary file with `mode`; returns its
 * path (static buffer per slot). */
static const char *write_file(int slot, const char *text, mode_t mode) {
    static char paths[4][64];
    snprintf(paths[slot], sizeof(paths[slot]), "/tmp/ctl_config_test.%d.XXXXXX", slot);
    int fd = mkstemp(paths[slot]);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return paths[slot];
}

static void test_defaults(void **state) {
    (void)state;
    load_t l;
    char *argv[] = {"stampede-control", NULL};
    assert_int_equal(load(&l, ARGC(argv), argv), CTL_CFG_OK);
    ctl_config_t *c = &l.cfg;
    assert_string_equal(c->auth, "ntlm");
    assert_int_equal(c->auth_kind, CTL_AUTH_NTLM);
    assert_string_equal(c->template_name, "");
    assert_string_equal(c->redis, "");
    assert_string_equal(c->certsrv_url, "");
    assert_null(c->password);
    assert_non_null(strstr(c->user_agent, "Mozilla/5.0"));
    assert_non_null(strstr(c->user_agent, "stampede-control/" STAMPEDE_VERSION));
    assert_int_equal(c->connect_timeout_ms, 5000);
    assert_int_equal(c->login_timeout_ms, 15000);
    assert_int_equal(c->submit_timeout_ms, 60000);
    assert_int_equal(c->fetch_timeout_ms, 30000);
    assert_int_equal(c->pool_size, 4);
    assert_int_equal(c->max_conn_age_s, 100);
    assert_int_equal(c->retry_min_ms, 1000);
    assert_int_equal(c->retry_max_ms, 60000);
    assert_int_equal(c->poll_pending_s, 30);
    assert_int_equal(c->claim_idle_ms, 30000);
    assert_int_equal(c->lease_s, 120);
    assert_int_equal(c->chain_refresh_s, 3600);
    assert_string_equal(c->consumer, "");
    assert_string_equal(c->log_level, "info");
    assert_int_equal(l.n_rest, 0);
    done(&l);
}

static void test_file_then_flags(void **state) {
    (void)state;
    const char *ini = write_file(0,
                                 "# comment\npool_size = 8\ntemplate = Ignored\n"
                                 "[stampede-control]\ncertsrv_url = https://adcs.test/certsrv\n"
                                 "template = WebServer\nretry_min_ms = 200\n"
                                 "[stampeded]\nsigners = 5\n",
                                 0600);
    load_t l;
    char *argv[] = {"stampede-control", "--config", (char *)ini, "--pool-size", "2",
                    "--retry_min_ms=300", "--auth", "basic", NULL};
    assert_int_equal(load(&l, ARGC(argv), argv), CTL_CFG_OK);
    assert_int_equal(l.cfg.pool_size, 2);             /* flag over file */
    assert_int_equal(l.cfg.retry_min_ms, 300);        /* flag with '=' and '_' */
    assert_string_equal(l.cfg.template_name, "WebServer"); /* the section's later line */
    assert_string_equal(l.cfg.certsrv_url, "https://adcs.test/certsrv");
    assert_int_equal(l.cfg.auth_kind, CTL_AUTH_BASIC);
    assert_int_equal(l.cfg.lease_s, 120);             /* default kept */
    assert_string_equal(l.cfg.config_file, ini);
    done(&l);
    unlink(ini);
}

static void test_bounds_name_the_setting(void **state) {
    (void)state;
    load_t l;
    char *a1[] = {"stampede-control", "--pool-size", "65", NULL};
    assert_int_equal(load(&l, ARGC(a1), a1), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "pool_size"));
    assert_non_null(strstr(l.why, "1..64"));
    done(&l);
    char *a2[] = {"stampede-control", "--pool-size", "0", NULL};
    assert_int_equal(load(&l, ARGC(a2), a2), CTL_CFG_E_VALUE);
    done(&l);
    char *a3[] = {"stampede-control", "--submit-timeout-ms", "ten", NULL};
    assert_int_equal(load(&l, ARGC(a3), a3), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "submit_timeout_ms"));
    done(&l);
    char *a4[] = {"stampede-control", "--retry-min-ms", "5000", "--retry-max-ms", "2000", NULL};
    assert_int_equal(load(&l, ARGC(a4), a4), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "retry_max_ms"));
    done(&l);
    char *a5[] = {"stampede-control", "--lease-s", "60", NULL};
    assert_int_equal(load(&l, ARGC(a5), a5), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "lease_s"));
    done(&l);
    char *a6[] = {"stampede-control", "--user-agent", "curl/8", NULL};
    assert_int_equal(load(&l, ARGC(a6), a6), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "user_agent"));
    done(&l);
    char *a7[] = {"stampede-control", "--log-level", "loud", NULL};
    assert_int_equal(load(&l, ARGC(a7), a7), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "log_level"));
    done(&l);
    char *a8[] = {"stampede-control", "--certsrv-url", "ftp://x/certsrv", NULL};
    assert_int_equal(load(&l, ARGC(a8), a8), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "certsrv_url"));
    done(&l);
    const char *ini = write_file(0, "[stampede-control]\nlease_s = 1\n", 0600);
    char *a9[] = {"stampede-control", "--config", (char *)ini, NULL};
    assert_int_equal(load(&l, ARGC(a9), a9), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "lease_s"));
    done(&l);
    unlink(ini);
}

static void test_usage_errors(void **state) {
    (void)state;
    load_t l;
    char *a1[] = {"stampede-control", "--bogus", "1", NULL};
    assert_int_equal(load(&l, ARGC(a1), a1), CTL_CFG_E_USAGE);
    assert_non_null(strstr(l.why, "bogus"));
    done(&l);
    char *a2[] = {"stampede-control", "--password", "secret", NULL};
    assert_int_equal(load(&l, ARGC(a2), a2), CTL_CFG_E_USAGE);
    assert_non_null(strstr(l.why, "password-file"));
    assert_null(strstr(l.why, "secret"));
    done(&l);
    char *a3[] = {"stampede-control", "--template", NULL};
    assert_int_equal(load(&l, ARGC(a3), a3), CTL_CFG_E_USAGE);
    assert_non_null(strstr(l.why, "--template"));
    done(&l);
    char *a4[] = {"stampede-control", "--config", "/nonexistent/ctl.ini", NULL};
    assert_int_equal(load(&l, ARGC(a4), a4), CTL_CFG_E_FILE);
    assert_non_null(strstr(l.why, "/nonexistent/ctl.ini"));
    done(&l);
    const char *ini = write_file(0, "[stampede-control]\nno_such_setting = 1\n", 0600);
    char *a5[] = {"stampede-control", "--config", (char *)ini, NULL};
    assert_int_equal(load(&l, ARGC(a5), a5), CTL_CFG_E_USAGE);
    assert_non_null(strstr(l.why, "no_such_setting"));
    done(&l);
    unlink(ini);
    char *a6[] = {"stampede-control", "run", "doctor", "a", "b", "c", NULL}; /* rest_cap 4 */
    assert_int_equal(load(&l, ARGC(a6), a6), CTL_CFG_E_USAGE);
    done(&l);
}

static void test_password_file(void **state) {
    (void)state;
    const char *pw = write_file(1, "s3cret pass\r\nsecond line\n", 0600);
    load_t l;
    char *a1[] = {"stampede-control", "--password-file", (char *)pw, NULL};
    assert_int_equal(load(&l, ARGC(a1), a1), CTL_CFG_OK);
    assert_string_equal(l.cfg.password, "s3cret pass");
    done(&l);
    /* group/world readable: accepted with a warning on stderr */
    assert_int_equal(chmod(pw, 0644), 0);
    assert_int_equal(load(&l, ARGC(a1), a1), CTL_CFG_OK);
    assert_string_equal(l.cfg.password, "s3cret pass");
    done(&l);
    unlink(pw);
    /* an absent file is a clear error naming the setting and the path */
    char *a2[] = {"stampede-control", "--password-file", "/nonexistent/pw", NULL};
    assert_int_equal(load(&l, ARGC(a2), a2), CTL_CFG_E_FILE);
    assert_non_null(strstr(l.why, "password_file"));
    assert_non_null(strstr(l.why, "/nonexistent/pw"));
    assert_non_null(strstr(l.why, "No such file"));
    done(&l);
    const char *empty = write_file(2, "\nlater\n", 0600);
    char *a3[] = {"stampede-control", "--password-file", (char *)empty, NULL};
    assert_int_equal(load(&l, ARGC(a3), a3), CTL_CFG_E_FILE);
    assert_non_null(strstr(l.why, "empty"));
    done(&l);
    unlink(empty);
    /* a password without a newline at the end */
    const char *bare = write_file(3, "pw", 0400);
    char *a4[] = {"stampede-control", "--password-file", (char *)bare, NULL};
    assert_int_equal(load(&l, ARGC(a4), a4), CTL_CFG_OK);
    assert_string_equal(l.cfg.password, "pw");
    done(&l);
    unlink(bare);
}

static void test_auth_parsing(void **state) {
    (void)state;
    static const struct {
        const char *name;
        ctl_auth_t kind;
    } cases[] = {{"basic", CTL_AUTH_BASIC}, {"ntlm", CTL_AUTH_NTLM},
                 {"negotiate", CTL_AUTH_NEGOTIATE}, {"none", CTL_AUTH_NONE}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        load_t l;
        char *argv[] = {"stampede-control", "--auth", (char *)cases[i].name, NULL};
        assert_int_equal(load(&l, ARGC(argv), argv), CTL_CFG_OK);
        assert_int_equal(l.cfg.auth_kind, cases[i].kind);
        done(&l);
    }
    load_t l;
    char *bad[] = {"stampede-control", "--auth", "NTLM", NULL}; /* names are lower case */
    assert_int_equal(load(&l, ARGC(bad), bad), CTL_CFG_E_VALUE);
    assert_non_null(strstr(l.why, "auth"));
    assert_non_null(strstr(l.why, "negotiate"));
    done(&l);
}

static void test_rest_args(void **state) {
    (void)state;
    load_t l;
    char *a1[] = {"stampede-control", "--template", "doctor", "doctor", "--pool-size=3", NULL};
    assert_int_equal(load(&l, ARGC(a1), a1), CTL_CFG_OK);
    assert_int_equal(l.n_rest, 1);
    assert_string_equal(l.rest[0], "doctor");
    assert_string_equal(l.cfg.template_name, "doctor"); /* a flag's value is not a sub-command */
    assert_int_equal(l.cfg.pool_size, 3);
    done(&l);
    char *a2[] = {"stampede-control", "run", NULL};
    assert_int_equal(load(&l, ARGC(a2), a2), CTL_CFG_OK);
    assert_int_equal(l.n_rest, 1);
    assert_string_equal(l.rest[0], "run");
    done(&l);
}

static void test_help_version_dump(void **state) {
    (void)state;
    load_t l;
    char *a1[] = {"stampede-control", "--pool-size", "2", "--help", NULL};
    assert_int_equal(load(&l, ARGC(a1), a1), CTL_CFG_EXIT_OK);
    assert_non_null(strstr(l.out, "--certsrv-url"));
    assert_non_null(strstr(l.out, "--password-file"));
    assert_non_null(strstr(l.out, "doctor"));
    assert_non_null(strstr(l.out, "Exit status"));
    assert_non_null(strstr(l.out, "not its display name"));
    done(&l);
    char *a2[] = {"stampede-control", "--version", NULL};
    assert_int_equal(load(&l, ARGC(a2), a2), CTL_CFG_EXIT_OK);
    assert_string_equal(l.out, "stampede-control " STAMPEDE_VERSION "\n");
    done(&l);
    char *a3[] = {"stampede-control", "--dump-config", NULL};
    assert_int_equal(load(&l, ARGC(a3), a3), CTL_CFG_EXIT_OK);
    assert_non_null(strstr(l.out, "[stampede-control]\n"));
    assert_non_null(strstr(l.out, "\npool_size = 4\n"));
    assert_non_null(strstr(l.out, "\n# template = \n"));
    assert_non_null(strstr(l.out, "\nauth = ntlm\n"));
    done(&l);
}

static void test_cfg_err_str(void **state) {
    (void)state;
    assert_string_equal(ctl_cfg_err_str(CTL_CFG_OK), "ok");
    assert_string_equal(ctl_cfg_err_str(CTL_CFG_E_VALUE), "invalid value");
    assert_string_equal(ctl_cfg_err_str(CTL_CFG__COUNT), "unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_then_flags),
        cmocka_unit_test(test_bounds_name_the_setting),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_password_file),
        cmocka_unit_test(test_auth_parsing),
        cmocka_unit_test(test_rest_args),
        cmocka_unit_test(test_help_version_dump),
        cmocka_unit_test(test_cfg_err_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
