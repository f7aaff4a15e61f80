/* ctl_diag_test: unit tests for ctl_diag (every class has a name and a fix,
 * names are unique, lower-case-with-dashes and stable, the retry rule, the
 * HRESULT mapping of certsrv-protocol.md §3.3, out-of-range values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "control/ctl_diag.h"

static void test_every_class_has_name_and_fix(void **state) {
    (void)state;
    for (int d = 0; d < CTL_D__COUNT; d++) {
        const char *name = ctl_diag_name((ctl_diag_t)d);
        const char *fix = ctl_diag_fix((ctl_diag_t)d);
        assert_non_null(name);
        assert_non_null(fix);
        assert_true(strlen(name) > 0);
        assert_true(strlen(fix) > 5);
        assert_true(strlen(fix) < 240); /* fits a cause line (CTL_CAUSE_MAX 640) */
        assert_string_not_equal(name, "unknown");
        for (const char *p = name; *p; p++)
            assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-');
        assert_true(name[0] != '-' && name[strlen(name) - 1] != '-');
        assert_null(strchr(fix, '\n'));
    }
}

static void test_names_unique(void **state) {
    (void)state;
    for (int a = 0; a < CTL_D__COUNT; a++)
        for (int b = a + 1; b < CTL_D__COUNT; b++)
            assert_string_not_equal(ctl_diag_name((ctl_diag_t)a), ctl_diag_name((ctl_diag_t)b));
}

/* The names are written to request records: they must not change. */
static void test_names_stable(void **state) {
    (void)state;
    assert_string_equal(ctl_diag_name(CTL_D_OK), "ok");
    assert_string_equal(ctl_diag_name(CTL_D_TLS_UNTRUSTED), "tls-untrusted");
    assert_string_equal(ctl_diag_name(CTL_D_TLS_SELF_SIGNED), "tls-self-signed");
    assert_string_equal(ctl_diag_name(CTL_D_TIMEOUT_SUBMIT), "timeout-submit");
    assert_string_equal(ctl_diag_name(CTL_D_AUTH_SCHEME), "auth-scheme");
    assert_string_equal(ctl_diag_name(CTL_D_EPA), "epa");
    assert_string_equal(ctl_diag_name(CTL_D_BAD_CSR), "bad-csr");
    assert_string_equal(ctl_diag_name(CTL_D_CA_DOWN), "ca-down");
    assert_string_equal(ctl_diag_name(CTL_D_UNKNOWN_ID), "unknown-id");
    assert_string_equal(ctl_diag_name(CTL_D_OUTCOME_UNKNOWN), "outcome-unknown");
}

static void test_out_of_range(void **state) {
    (void)state;
    assert_string_equal(ctl_diag_name(CTL_D__COUNT), "unknown");
    assert_string_equal(ctl_diag_name((ctl_diag_t)-1), "unknown");
    assert_non_null(ctl_diag_fix(CTL_D__COUNT));
    assert_false(ctl_diag_retryable(CTL_D__COUNT));
    assert_false(ctl_diag_retryable((ctl_diag_t)-1));
}

static void test_retryable(void **state) {
    (void)state;
    static const ctl_diag_t yes[] = {CTL_D_DNS, CTL_D_CONNECT, CTL_D_TLS_UNTRUSTED,
                                     CTL_D_TLS_CLOCK, CTL_D_TIMEOUT_CONNECT, CTL_D_TIMEOUT_LOGIN,
                                     CTL_D_TIMEOUT_SUBMIT, CTL_D_TIMEOUT_FETCH, CTL_D_AUTH,
                                     CTL_D_HTTP, CTL_D_CA_DOWN};
    static const ctl_diag_t no[] = {CTL_D_OK, CTL_D_TEMPLATE, CTL_D_PERMISSION, CTL_D_BAD_CSR,
                                    CTL_D_DENIED, CTL_D_UNKNOWN_ID, CTL_D_OUTCOME_UNKNOWN};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(ctl_diag_retryable(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(ctl_diag_retryable(no[i]));
}

static void test_hresult_mapping(void **state) {
    (void)state;
    static const struct {
        unsigned long hr;
        ctl_diag_t want;
    } v[] = {
        {0x80094800UL, CTL_D_TEMPLATE},   {0x80094801UL, CTL_D_TEMPLATE},
        {0x80094802UL, CTL_D_TEMPLATE},   {0x80094012UL, CTL_D_PERMISSION},
        {0x80094001UL, CTL_D_BAD_CSR},    {0x80090006UL, CTL_D_BAD_CSR},
        {0x80094811UL, CTL_D_BAD_CSR},    {0x8009310BUL, CTL_D_BAD_CSR},
        {0x80094014UL, CTL_D_DENIED},     {0x800706BAUL, CTL_D_CA_DOWN},
        {0x80070005UL, CTL_D_CA_DOWN},    {0x80094004UL, CTL_D_UNKNOWN_ID},
        {0x80094003UL, CTL_D_DENIED},     {0x80070057UL, CTL_D_DENIED},
        {0x00000000UL, CTL_D_DENIED},     {0xFFFFFFFFUL, CTL_D_DENIED},
        {0x180094800UL, CTL_D_DENIED}, /* not a 32-bit code: not template */
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal(ctl_diag_from_hresult(v[i].hr), v[i].want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_class_has_name_and_fix),
        cmocka_unit_test(test_names_unique),
        cmocka_unit_test(test_names_stable),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_retryable),
        cmocka_unit_test(test_hresult_mapping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
