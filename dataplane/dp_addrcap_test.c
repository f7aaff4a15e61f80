/* dp_addrcap_test: the per-address connection table against a simple
 * model, under random takes and puts that force long probe runs and
 * wrap-around (a table of 16 slots), plus the key's port blindness. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "dataplane/dp_addrcap.h"

static void test_key(void **state) {
    (void)state;
    assert_int_equal(dp_addrcap_key("10.0.0.1:5060"), dp_addrcap_key("10.0.0.1:40000"));
    assert_int_not_equal(dp_addrcap_key("10.0.0.1:5060"), dp_addrcap_key("10.0.0.2:5060"));
    assert_int_equal(dp_addrcap_key("[::1]:1"), dp_addrcap_key("[::1]:2"));
    assert_int_not_equal(dp_addrcap_key("[::1]:1"), dp_addrcap_key("[::2]:1"));
    assert_int_not_equal(dp_addrcap_key(""), 0);
}

static void test_limit(void **state) {
    (void)state;
    dp_addrcap_t t;
    assert_int_equal(dp_addrcap_init(&t, 100), 0);
    uint64_t k = dp_addrcap_key("192.0.2.7:1000");
    for (int i = 0; i < 3; i++) assert_true(dp_addrcap_take(&t, k, 3));
    assert_false(dp_addrcap_take(&t, k, 3));
    assert_int_equal(dp_addrcap_count(&t, k), 3);
    dp_addrcap_put(&t, k);
    assert_true(dp_addrcap_take(&t, k, 3));
    for (int i = 0; i < 3; i++) dp_addrcap_put(&t, k);
    assert_int_equal(dp_addrcap_count(&t, k), 0);
    assert_int_equal(t.used, 0);
    assert_false(dp_addrcap_take(&t, k, 0)); /* limit 0 takes nothing */
    dp_addrcap_free(&t);
}

/* Colliding keys (same home slot) in a tiny table, against a model. */
static void test_model(void **state) {
    (void)state;
    dp_addrcap_t t;
    assert_int_equal(dp_addrcap_init(&t, 8), 0); /* 16 slots, at most 8 keys */
    assert_int_equal(t.mask, 15);
    uint64_t keys[8];
    uint32_t model[8] = {0};
    for (int i = 0; i < 8; i++) keys[i] = (uint64_t)(i % 3 == 0 ? 16 * (i + 1) : 5 + 16 * i) + 1; /* few homes */
    srand(7);
    for (int step = 0; step < 20000; step++) {
        int i = rand() % 8;
        if (rand() % 2) {
            bool ok = dp_addrcap_take(&t, keys[i], 4);
            assert_int_equal(ok, model[i] < 4);
            if (ok) model[i]++;
        } else if (model[i]) {
            dp_addrcap_put(&t, keys[i]);
            model[i]--;
        }
        size_t used = 0;
        for (int k = 0; k < 8; k++) {
            assert_int_equal(dp_addrcap_count(&t, keys[k]), model[k]);
            used += model[k] > 0;
        }
        assert_int_equal(t.used, used);
    }
    dp_addrcap_free(&t);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_key), cmocka_unit_test(test_limit),
                                       cmocka_unit_test(test_model)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
