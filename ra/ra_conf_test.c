/* ra_conf_test: the settings-table engine on a table of its own: defaults,
 * bounds, bool spellings, unknown names, '-'/'_' equivalence, the INI file
 * (sections, bad lines), both argv passes (positional arguments, refused
 * flag, pairing of values), --help and --dump-config text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ra/ra_conf.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof(a[0])) - 1)

typedef struct {
    char *config_file;
    char *host_name;
    char *empty;
    uint32_t port;
    uint32_t count;
    uint32_t big;
    bool verbose;
    bool quiet;
} t_cfg_t;

#define S(n, t, d, lo, hi, h) {#n, t, offsetof(t_cfg_t, n), d, lo, hi, h}
static const ra_conf_setting_t t_settings[] = {
    S(host_name, RA_CONF_STR, "localhost", 0, 0, "host to use"),
    S(empty, RA_CONF_STR, NULL, 0, 0, "unset by default"),
    S(port, RA_CONF_UINT, "8443", 1, 65535, "TCP port"),
    S(count, RA_CONF_UINT, NULL, 0, 10, "a count"),
    S(big, RA_CONF_UINT, "7", 0, UINT32_MAX, "the whole uint32_t range"),
    S(verbose, RA_CONF_BOOL, "true", 0, 0, "say more"),
    S(quiet, RA_CONF_BOOL, NULL, 0, 0, "say less"),
};
#undef S

static const ra_conf_spec_t t_spec = {
    .prog = "tprog",
    .section = "tprog",
    .settings = t_settings,
    .n_settings = sizeof(t_settings) / sizeof(t_settings[0]),
    .synopsis = "[options]",
    .about = "tprog: a test.\n\n",
    .dump_means = "(the values)",
    .dump_header = "# tprog configuration\n",
};

/* t_spec_paired: as t_spec, plus pair_values_early and a refused flag. */
static ra_conf_spec_t t_spec_paired(void) {
    ra_conf_spec_t s = t_spec;
    s.pair_values_early = true;
    s.refused_flag = "secret";
    s.refused_why = "no --secret flag";
    return s;
}

static void t_init(t_cfg_t *c) {
    char why[128];
    memset(c, 0, sizeof(*c));
    assert_int_equal(ra_conf_defaults(&t_spec, c, why, sizeof(why)), RA_CONF_OK);
}

static void t_free(t_cfg_t *c) {
    ra_conf_free(&t_spec, c);
    free(c->config_file);
    c->config_file = NULL;
}

static const char *write_tmp(const char *text) {
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/ra_conf_test.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **state) {
    (void)state;
    t_cfg_t c;
    t_init(&c);
    assert_string_equal(c.host_name, "localhost");
    assert_string_equal(c.empty, ""); /* NULL default: an empty string, never NULL */
    assert_int_equal(c.port, 8443);
    assert_int_equal(c.count, 0);
    assert_int_equal(c.big, 7);
    assert_true(c.verbose);
    assert_false(c.quiet);
    /* applying the defaults again replaces (frees) the strings */
    char why[128];
    assert_int_equal(ra_conf_set(&t_spec, &c, "host_name", "other", why, sizeof(why)), RA_CONF_OK);
    assert_int_equal(ra_conf_defaults(&t_spec, &c, why, sizeof(why)), RA_CONF_OK);
    assert_string_equal(c.host_name, "localhost");
    t_free(&c);
    t_free(&c); /* twice is safe */
    assert_null(c.host_name);
    assert_string_equal(ra_conf_err_str(RA_CONF_OK), "ok");
    assert_string_equal(ra_conf_err_str(RA_CONF_E_FILE), "config file error");
    assert_string_equal(ra_conf_err_str(RA_CONF__COUNT), "unknown");
}

static void test_bounds(void **state) {
    (void)state;
    t_cfg_t c;
    t_init(&c);
    char why[128];
    static const char *const bad[] = {"0", "65536", "-1", "", "12x", "0x10", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why[0] = 0;
        assert_int_equal(ra_conf_set(&t_spec, &c, "port", bad[i], why, sizeof(why)), RA_CONF_E_VALUE);
        assert_non_null(strstr(why, "port: '"));
        assert_non_null(strstr(why, "is not a number in 1..65535"));
        assert_int_equal(c.port, 8443); /* unchanged */
    }
    assert_int_equal(ra_conf_set(&t_spec, &c, "port", "1", why, sizeof(why)), RA_CONF_OK);
    assert_int_equal(c.port, 1);
    assert_int_equal(ra_conf_set(&t_spec, &c, "port", "65535", why, sizeof(why)), RA_CONF_OK);
    assert_int_equal(c.port, 65535);
    assert_int_equal(ra_conf_set(&t_spec, &c, "big", "4294967295", why, sizeof(why)), RA_CONF_OK);
    assert_int_equal(c.big, UINT32_MAX);
    assert_int_equal(ra_conf_set(&t_spec, &c, "big", "4294967296", why, sizeof(why)), RA_CONF_E_VALUE);
    assert_string_equal(why, "big: '4294967296' is not a number in 0..4294967295");
    assert_int_equal(c.big, UINT32_MAX);
    t_free(&c);
}

static void test_bool(void **state) {
    (void)state;
    t_cfg_t c;
    t_init(&c);
    char why[128];
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(ra_conf_set(&t_spec, &c, "quiet", yes[i], why, sizeof(why)), RA_CONF_OK);
        assert_true(c.quiet);
        assert_int_equal(ra_conf_set(&t_spec, &c, "quiet", no[i], why, sizeof(why)), RA_CONF_OK);
        assert_false(c.quiet);
    }
    static const char *const bad[] = {"maybe", "TRUE", "", "2", "yes "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(ra_conf_set(&t_spec, &c, "verbose", bad[i], why, sizeof(why)), RA_CONF_E_VALUE);
        assert_true(c.verbose); /* unchanged */
    }
    assert_string_equal(why, "verbose: 'yes ' is not true/false");
    t_free(&c);
}

static void test_names(void **state) {
    (void)state;
    t_cfg_t c;
    t_init(&c);
    char why[128];
    assert_int_equal(ra_conf_set(&t_spec, &c, "nosuch", "1", why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "unknown setting 'nosuch' (see --help)");
    assert_int_equal(ra_conf_set(&t_spec, &c, "Port", "1", why, sizeof(why)), RA_CONF_E_USAGE);
    char longname[100];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_int_equal(ra_conf_set(&t_spec, &c, longname, "1", why, sizeof(why)), RA_CONF_E_USAGE);
    /* '-' and '_' are the same */
    assert_int_equal(ra_conf_set(&t_spec, &c, "host-name", "a", why, sizeof(why)), RA_CONF_OK);
    assert_string_equal(c.host_name, "a");
    assert_int_equal(ra_conf_set(&t_spec, &c, "host_name", "b", why, sizeof(why)), RA_CONF_OK);
    assert_string_equal(c.host_name, "b");
    char *argv[] = {"tprog", "--host-name=c", "--host_name", "d", "--count", "3", NULL};
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(argv), argv, NULL, NULL, why, sizeof(why)), RA_CONF_OK);
    assert_string_equal(c.host_name, "d");
    assert_int_equal(c.count, 3);
    t_free(&c);
}

static void test_file(void **state) {
    (void)state;
    t_cfg_t c;
    t_init(&c);
    char why[256];
    const char *p = write_tmp("; comment\nport = 1000\n[other]\nport = 2\nnosuch = 1\n"
                              "[tprog]\nhost-name = filehost\nquiet = yes\n");
    assert_int_equal(ra_conf_load_file(&t_spec, &c, p, why, sizeof(why)), RA_CONF_OK);
    assert_int_equal(c.port, 1000); /* [other] skipped */
    assert_string_equal(c.host_name, "filehost");
    assert_true(c.quiet);
    unlink(p);

    p = write_tmp("[tprog]\nport = 9\nthis line is malformed\n");
    assert_int_equal(ra_conf_load_file(&t_spec, &c, p, why, sizeof(why)), RA_CONF_E_FILE);
    char want[128];
    snprintf(want, sizeof(want), "%s:3: malformed line", p);
    assert_string_equal(why, want);
    unlink(p);

    p = write_tmp("count = 11\n");
    assert_int_equal(ra_conf_load_file(&t_spec, &c, p, why, sizeof(why)), RA_CONF_E_VALUE);
    assert_string_equal(why, "count: '11' is not a number in 0..10");
    unlink(p);

    p = write_tmp("nosuch = 1\n");
    assert_int_equal(ra_conf_load_file(&t_spec, &c, p, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "unknown setting 'nosuch' (see --help)");
    unlink(p);

    assert_int_equal(ra_conf_load_file(&t_spec, &c, "/nonexistent/x.conf", why, sizeof(why)), RA_CONF_E_FILE);
    assert_string_equal(why, "cannot read config file /nonexistent/x.conf: No such file or directory");
    t_free(&c);
}

/* run_early runs ra_conf_early with its output in *text (caller frees). */
static ra_conf_err_t run_early(const ra_conf_spec_t *spec, t_cfg_t *c, int argc, char **argv, char **text,
                               char *why, size_t why_len) {
    size_t len;
    FILE *out = open_memstream(text, &len);
    assert_non_null(out);
    ra_conf_err_t e = ra_conf_early(spec, c, argc, argv, out, &c->config_file, why, why_len);
    fclose(out);
    return e;
}

static void test_early(void **state) {
    (void)state;
    t_cfg_t c;
    t_init(&c);
    char why[256], *text;
    const char *p = write_tmp("port = 77\n");
    char path[64];
    snprintf(path, sizeof(path), "%s", p);
    char *a1[] = {"tprog", "--config", "/nonexistent", "--config", path, NULL}; /* the last one wins */
    assert_int_equal(run_early(&t_spec, &c, ARGC(a1), a1, &text, why, sizeof(why)), RA_CONF_OK);
    assert_string_equal(c.config_file, path);
    assert_int_equal(c.port, 77);
    free(text);
    char *a2[] = {"tprog", "--port", "5", "--version", NULL};
    assert_int_equal(run_early(&t_spec, &c, ARGC(a2), a2, &text, why, sizeof(why)), RA_CONF_EXIT_OK);
    assert_string_equal(text, "tprog " STAMPEDE_VERSION "\n");
    free(text);
    char *a3[] = {"tprog", "--config", NULL};
    assert_int_equal(run_early(&t_spec, &c, ARGC(a3), a3, &text, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "--config needs a file name");
    free(text);
    /* a value that looks like --help: looked at alone, or paired with its flag */
    char *a4[] = {"tprog", "--host-name", "--help", NULL};
    assert_int_equal(run_early(&t_spec, &c, ARGC(a4), a4, &text, why, sizeof(why)), RA_CONF_EXIT_OK);
    assert_non_null(strstr(text, "Usage: tprog [options]\n"));
    free(text);
    ra_conf_spec_t paired = t_spec_paired();
    assert_int_equal(run_early(&paired, &c, ARGC(a4), a4, &text, why, sizeof(why)), RA_CONF_OK);
    assert_string_equal(text, "");
    free(text);
    t_free(&c);
    unlink(path);
}

static void test_flags(void **state) {
    (void)state;
    t_cfg_t c;
    t_init(&c);
    char why[256];
    bool dump = false;
    const char *v[2];
    ra_conf_rest_t rest = {v, 2, 0};
    char *a1[] = {"tprog", "doctor", "--config", "f", "--dump-config", "--", "--verbose=off", NULL};
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a1), a1, &rest, &dump, why, sizeof(why)), RA_CONF_OK);
    assert_int_equal(rest.n, 2);
    assert_string_equal(v[0], "doctor");
    assert_string_equal(v[1], "--"); /* with `rest`, a bare "--" is positional */
    assert_true(dump);
    assert_false(c.verbose);
    char *a2[] = {"tprog", "a", "b", "c", NULL};
    rest.n = 0;
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a2), a2, &rest, NULL, why, sizeof(why)),
                     RA_CONF_E_USAGE);
    assert_string_equal(why, "unexpected argument 'c' (see --help)");
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a2), a2, NULL, NULL, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "unexpected argument 'a' (see --help)");
    char *a3[] = {"tprog", "--", NULL};
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a3), a3, NULL, NULL, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "unknown flag '--' (see --help)");
    char *a4[] = {"tprog", "--port", NULL};
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a4), a4, NULL, NULL, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "--port needs a value");
    char *a5[] = {"tprog", "--nosuch=1", NULL};
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a5), a5, NULL, NULL, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "unknown flag '--nosuch' (see --help)");
    char *a6[] = {"tprog", "--port", "0", NULL};
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a6), a6, NULL, NULL, why, sizeof(why)), RA_CONF_E_VALUE);
    assert_string_equal(why, "port: '0' is not a number in 1..65535");
    char *a7[] = {"tprog", "--secret", "x", NULL};
    assert_int_equal(ra_conf_flags(&t_spec, &c, ARGC(a7), a7, NULL, NULL, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "unknown flag '--secret' (see --help)");
    ra_conf_spec_t paired = t_spec_paired();
    assert_int_equal(ra_conf_flags(&paired, &c, ARGC(a7), a7, NULL, NULL, why, sizeof(why)), RA_CONF_E_USAGE);
    assert_string_equal(why, "no --secret flag");
    t_free(&c);
}

static char *capture_help(void) {
    char *text;
    size_t len;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    ra_conf_help(&t_spec, out, "./tprog");
    fclose(out);
    return text;
}

static void test_help_and_dump(void **state) {
    (void)state;
    char *text = capture_help();
    assert_non_null(strstr(text, "Usage: ./tprog [options]\ntprog: a test.\n\nEvery setting below"));
    assert_non_null(strstr(text, "(top level or section [tprog])"));
    assert_non_null(strstr(text, "                         (the values) and exit\n"));
    assert_non_null(strstr(text, "  --host-name VALUE\n      host to use [default: localhost]\n"));
    assert_non_null(strstr(text, "  --empty VALUE\n      unset by default\n"));
    assert_non_null(strstr(text, "  --port N\n      TCP port [default: 8443]\n"));
    assert_non_null(strstr(text, "  --quiet BOOL\n      say less\n"));
    free(text);

    t_cfg_t c;
    t_init(&c);
    c.port = 99;
    size_t len;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    ra_conf_dump(&t_spec, out, &c);
    ra_conf_dump(&t_spec, out, NULL);
    fclose(out);
    const char *one = "# tprog configuration\n[tprog]\n"
                      "\n# host to use\nhost_name = localhost\n"
                      "\n# unset by default\n# empty = \n"
                      "\n# TCP port\nport = %s\n"
                      "\n# a count\ncount = 0\n"
                      "\n# the whole uint32_t range\nbig = 7\n"
                      "\n# say more\nverbose = true\n"
                      "\n# say less\nquiet = false\n";
    char want[1024];
    int n = snprintf(want, sizeof(want), one, "99");
    snprintf(want + n, sizeof(want) - (size_t)n, one, "8443");
    assert_string_equal(text, want);
    free(text);
    t_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults), cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_bool),     cmocka_unit_test(test_names),
        cmocka_unit_test(test_file),     cmocka_unit_test(test_early),
        cmocka_unit_test(test_flags),    cmocka_unit_test(test_help_and_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
