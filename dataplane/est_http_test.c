/* est_http_test: request-header parsing (good, partial, hostile) and
 * response formatting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "dataplane/est_http.h"

static est_http_err_t parse(const char *s, est_http_req_t *r) {
    return est_http_parse(r, (const uint8_t *)s, strlen(s), 8192);
}

static void test_enroll_request(void **state) {
    (void)state;
    est_http_req_t r;
    const char *s = "POST /.well-known/est/simpleenroll?x=1 HTTP/1.1\r\nHost: a\r\n"
                    "Content-Type: application/pkcs10; charset=x\r\nContent-Length: 12\r\n"
                    "content-transfer-encoding:  base64 \r\nAuthorization: Basic ZXN0OnB3\r\n"
                    "Expect: 100-continue\r\n\r\nBODYBODYBODY";
    assert_int_equal(parse(s, &r), EST_HTTP_OK);
    assert_int_equal(r.method, EST_M_POST);
    assert_true(est_http_ieq(&r.path, "/.well-known/est/simpleenroll"));
    assert_true(est_http_media_is(&r.content_type, "application/pkcs10"));
    assert_true(est_http_ieq(&r.transfer_encoding_cte, "BASE64"));
    assert_int_equal(r.content_length, 12);
    assert_true(r.keep_alive);
    assert_true(r.expect_continue);
    assert_int_equal(r.header_len, strlen(s) - 12);
    uint8_t buf[64];
    CBS user, pass;
    assert_true(est_http_basic(&r.authorization, buf, sizeof(buf), &user, &pass));
    assert_true(est_http_ieq(&user, "est"));
    assert_true(est_http_ieq(&pass, "pw"));
}

static void test_partial_and_limits(void **state) {
    (void)state;
    est_http_req_t r;
    assert_int_equal(parse("GET /.well-known/est/cacerts HTTP/1.1\r\nHost: a\r\n", &r), EST_HTTP_PARTIAL);
    assert_int_equal(parse("", &r), EST_HTTP_PARTIAL);
    char big[9000];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    assert_int_equal(est_http_parse(&r, (const uint8_t *)big, sizeof(big), 8192), EST_HTTP_E_HEADER_SIZE);
}

static void test_hostile(void **state) {
    (void)state;
    est_http_req_t r;
    assert_int_equal(parse("GET / HTTP/2.0\r\n\r\n", &r), EST_HTTP_E_VERSION);
    assert_int_equal(parse("GET / FOO/1.1\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("GET / HTTP/1.1 extra\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("GET / HTTP/1.x\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("GET / HTTP/1.2\r\n\r\n", &r), EST_HTTP_E_VERSION);
    assert_int_equal(parse("GET noslash HTTP/1.1\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("GET / HTTP/1.1\nHost: a\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("GET / HTTP/1.1\r\nBad Name: a\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", &r),
                     EST_HTTP_E_LENGTH);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &r), EST_HTTP_E_LENGTH);
    assert_int_equal(parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n", &r),
                     EST_HTTP_E_LENGTH);
    assert_int_equal(parse("\r\n\r\n", &r), EST_HTTP_E_SYNTAX);
    assert_int_equal(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), EST_HTTP_OK);
    assert_true(r.chunked);
    assert_int_equal(r.content_length, -1);
}

static void test_connection_semantics(void **state) {
    (void)state;
    est_http_req_t r;
    assert_int_equal(parse("GET / HTTP/1.0\r\n\r\n", &r), EST_HTTP_OK);
    assert_false(r.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r), EST_HTTP_OK);
    assert_true(r.keep_alive);
    assert_int_equal(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &r), EST_HTTP_OK);
    assert_false(r.keep_alive);
    assert_int_equal(parse("get / HTTP/1.1\r\n\r\n", &r), EST_HTTP_OK);
    assert_int_equal(r.method, EST_M_OTHER);
}

static void test_basic_rejects(void **state) {
    (void)state;
    uint8_t buf[64];
    CBS a, u, p;
    CBS_init(&a, (const uint8_t *)"Bearer abc", 10);
    assert_false(est_http_basic(&a, buf, sizeof(buf), &u, &p));
    CBS_init(&a, (const uint8_t *)"Basic !!!!", 10);
    assert_false(est_http_basic(&a, buf, sizeof(buf), &u, &p));
    CBS_init(&a, (const uint8_t *)"Basic bm9jb2xvbg==", 18); /* "nocolon" */
    assert_false(est_http_basic(&a, buf, sizeof(buf), &u, &p));
}

static void test_response(void **state) {
    (void)state;
    uint8_t out[256];
    size_t n = est_http_response(out, sizeof(out), 404, "text/plain", NULL, false, (const uint8_t *)"no\n", 3);
    assert_true(n > 0);
    out[n] = 0;
    assert_non_null(strstr((char *)out, "HTTP/1.1 404 Not Found\r\n"));
    assert_non_null(strstr((char *)out, "Content-Length: 3\r\n"));
    assert_non_null(strstr((char *)out, "Connection: close\r\n\r\nno\n"));
    assert_int_equal(est_http_response(out, 10, 200, NULL, NULL, true, NULL, 0), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enroll_request),   cmocka_unit_test(test_partial_and_limits),
        cmocka_unit_test(test_hostile),          cmocka_unit_test(test_connection_semantics),
        cmocka_unit_test(test_basic_rejects),    cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
