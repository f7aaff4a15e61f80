/* ra_users_test: users file parsing, crypt(3) checks and the verified cache. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ra/ra_users.h"

static char dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/ra_users_test.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_initial_user_roundtrip(void **state) {
    (void)state;
    char path[128], pwpath[128], why[256], pw[64] = {0};
    snprintf(path, sizeof(path), "%s/est-users", dir);
    snprintf(pwpath, sizeof(pwpath), "%s/est-initial-password", dir);
    assert_int_equal(ra_users_create_initial(path, pwpath, "est", why, sizeof(why)), RA_OK);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(pwpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* A second create must not overwrite. */
    assert_int_equal(ra_users_create_initial(path, pwpath, "est", why, sizeof(why)), RA_E_IO);

    FILE *f = fopen(pwpath, "r");
    assert_non_null(f);
    assert_non_null(fgets(pw, sizeof(pw), f));
    fclose(f);
    pw[strcspn(pw, "\n")] = 0;
    assert_int_equal(strlen(pw), 24);

    ra_users_t *u = ra_users_load(path, 2, why, sizeof(why));
    assert_non_null(u);
    assert_int_equal(ra_users_count(u), 1);
    assert_int_equal(ra_users_check(u, 0, "est", 3, pw, strlen(pw)), RA_OK);
    assert_int_equal(ra_users_check(u, 0, "est", 3, pw, strlen(pw)), RA_OK); /* cached */
    assert_int_equal(ra_users_check(u, 1, "est", 3, pw, strlen(pw)), RA_OK);
    assert_int_equal(ra_users_check(u, 0, "est", 3, "wrong", 5), RA_E_BAD_PASSWORD);
    assert_int_equal(ra_users_check(u, 0, "es", 2, pw, strlen(pw)), RA_E_UNKNOWN_USER);
    assert_int_equal(ra_users_check(u, 0, "estx", 4, pw, strlen(pw)), RA_E_UNKNOWN_USER);
    /* Same password prefix must not match. */
    assert_int_equal(ra_users_check(u, 0, "est", 3, pw, strlen(pw) - 1), RA_E_BAD_PASSWORD);
    ra_users_free(u);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_file_syntax(void **state) {
    (void)state;
    char path[128], why[256], text[512], salt[64];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    assert_non_null(crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof(salt)));
    const char *h = crypt_r("s3cret", salt, &cd);
    assert_non_null(h);
    snprintf(path, sizeof(path), "%s/users2", dir);
    snprintf(text, sizeof(text), "# comment\n\nphone1:%s\r\n  admin:%s  \n", h, h);
    write_text(path, text);
    ra_users_t *u = ra_users_load(path, 1, why, sizeof(why));
    assert_non_null(u);
    assert_int_equal(ra_users_count(u), 2);
    assert_int_equal(ra_users_check(u, 0, "admin", 5, "s3cret", 6), RA_OK);
    ra_users_free(u);

    write_text(path, "nouserhash\n");
    assert_null(ra_users_load(path, 1, why, sizeof(why)));
    assert_non_null(strstr(why, ":1:"));
    write_text(path, "bob:plaintext\n");
    assert_null(ra_users_load(path, 1, why, sizeof(why)));
    assert_non_null(strstr(why, "openssl passwd"));
    assert_null(ra_users_load("/nonexistent/users", 1, why, sizeof(why)));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initial_user_roundtrip),
        cmocka_unit_test(test_file_syntax),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
