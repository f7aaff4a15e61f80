/* bench_msg_test: unit tests for bench_msg, the bench's EST message codec:
 * response parsing (complete, partial, read-to-EOF, refused forms), header
 * values (Content-Type parameters, Retry-After, Connection), the certs-only
 * PKCS#7 check against what crypto/'s cx_pkcs7_certs_only writes, and the
 * simpleenroll request encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/mem.h>

#include "benches/bench.h"
#include "crypto/cx_b64.h"
#include "crypto/cx_cert.h"

static bench_msg_status_t parse(const char *s, bool eof, bench_msg_resp_t *out) {
    return bench_msg_parse_response(out, (const uint8_t *)s, strlen(s), eof);
}

static void test_complete_200(void **state) {
    (void)state;
    const char *s = "HTTP/1.1 200 OK\r\n"
                    "content-type: Application/PKCS7-MIME ; smime-type=\"certs-only\"\r\n"
                    "Content-Transfer-Encoding:  BASE64 \r\n"
                    "Content-Length: 4\r\n\r\nabcdEXTRA";
    bench_msg_resp_t r;
    assert_int_equal(parse(s, false, &r), BENCH_MSG_DONE);
    assert_int_equal(r.status, 200);
    assert_true(r.pkcs7 && r.certs_only && r.base64 && !r.close);
    assert_int_equal(CBS_len(&r.body), 4);
    assert_memory_equal(CBS_data(&r.body), "abcd", 4);
    assert_int_equal(r.len, strlen(s) - strlen("EXTRA"));
    assert_int_equal(r.retry_after_s, UINT32_MAX);
}

static void test_partial_then_done(void **state) {
    (void)state;
    const char *s = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n"
                    "Connection: close\r\nContent-Length: 5\r\n\r\nbusy\n";
    bench_msg_resp_t r;
    for (size_t n = 0; n < strlen(s); n++)
        assert_int_equal(bench_msg_parse_response(&r, (const uint8_t *)s, n, false),
                         BENCH_MSG_MORE);
    assert_int_equal(parse(s, false, &r), BENCH_MSG_DONE);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.retry_after_s, 7);
    assert_true(r.close);
    assert_false(r.pkcs7);
}

static void test_body_to_eof(void **state) {
    (void)state;
    const char *s = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nno";
    bench_msg_resp_t r;
    assert_int_equal(parse(s, false, &r), BENCH_MSG_MORE);
    assert_int_equal(parse(s, true, &r), BENCH_MSG_DONE);
    assert_int_equal(r.status, 400);
    assert_true(r.close);
    assert_int_equal(CBS_len(&r.body), 2);
}

static void test_refused(void **state) {
    (void)state;
    static const char *const bad[] = {
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 700 Odd\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
    };
    bench_msg_resp_t r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i], false, &r), BENCH_MSG_BAD);
        assert_non_null(r.why);
    }
    /* cut short by the server */
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", true, &r),
                     BENCH_MSG_BAD);
    assert_int_equal(parse("HTTP/1.1 200 O", true, &r), BENCH_MSG_BAD);
}

static void test_content_type_variants(void **state) {
    (void)state;
    bench_msg_resp_t r;
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mime\r\n"
                           "Content-Length: 0\r\n\r\n", false, &r), BENCH_MSG_DONE);
    assert_true(r.pkcs7);
    assert_false(r.certs_only);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mimeX; "
                           "smime-type=certs-only\r\nContent-Length: 0\r\n\r\n", false, &r),
                     BENCH_MSG_DONE);
    assert_false(r.pkcs7);
    assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mime;name=a.p7c;"
                           "SMIME-Type=Certs-Only\r\nRetry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n"
                           "Content-Length: 0\r\n\r\n", false, &r), BENCH_MSG_DONE);
    assert_true(r.pkcs7 && r.certs_only);
    assert_int_equal(r.retry_after_s, UINT32_MAX);
}

/* A minimal certificate-shaped TLV: SEQUENCE { SEQUENCE { [0] { INTEGER 2 },
 * INTEGER 0x0105 } } — enough for the serial extraction. */
static const uint8_t kFakeCert[] = {0x30, 0x0b, 0x30, 0x09, 0xa0, 0x03, 0x02, 0x01,
                                    0x02, 0x02, 0x02, 0x01, 0x05};

static void test_pkcs7_from_cx(void **state) {
    (void)state;
    CBB cbb;
    CBS certs[2], p7, serial;
    uint8_t *der;
    size_t der_len, num;
    const char *why = NULL;
    CBS_init(&certs[0], kFakeCert, sizeof kFakeCert);
    CBS_init(&certs[1], kFakeCert, sizeof kFakeCert);
    for (size_t want = 0; want <= 2; want++) {
        assert_true(CBB_init(&cbb, 64));
        assert_int_equal(cx_pkcs7_certs_only(&cbb, certs, want), CX_OK);
        assert_true(CBB_finish(&cbb, &der, &der_len));
        CBS_init(&p7, der, der_len);
        assert_int_equal(bench_msg_pkcs7_certs(p7, &num, &serial, &why), BENCH_OK);
        assert_int_equal(num, want);
        if (want > 0) {
            assert_int_equal(CBS_len(&serial), 2);
            assert_memory_equal(CBS_data(&serial), "\x01\x05", 2);
        }
        /* trailing garbage and truncation are refused */
        uint8_t *longer = OPENSSL_malloc(der_len + 1);
        memcpy(longer, der, der_len);
        longer[der_len] = 0;
        CBS_init(&p7, longer, der_len + 1);
        assert_int_equal(bench_msg_pkcs7_certs(p7, &num, &serial, &why), BENCH_E_CONTENT);
        CBS_init(&p7, der, der_len - 1);
        assert_int_equal(bench_msg_pkcs7_certs(p7, &num, &serial, &why), BENCH_E_CONTENT);
        OPENSSL_free(longer);
        OPENSSL_free(der);
    }
}

static void test_certs_body(void **state) {
    (void)state;
    CBB cbb;
    CBS cert, serial;
    uint8_t *der, body[512], scratch[512];
    size_t der_len, num;
    const char *why = NULL;
    char resp[1024];
    CBS_init(&cert, kFakeCert, sizeof kFakeCert);
    assert_true(CBB_init(&cbb, 64));
    assert_int_equal(cx_pkcs7_certs_only(&cbb, &cert, 1), CX_OK);
    assert_true(CBB_finish(&cbb, &der, &der_len));
    size_t body_len = cx_b64_encode(body, der, der_len);
    OPENSSL_free(der);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/pkcs7-mime; "
                     "smime-type=certs-only\r\nContent-Transfer-Encoding: base64\r\n"
                     "Content-Length: %zu\r\n\r\n%.*s", body_len, (int)body_len, body);
    bench_msg_resp_t r;
    assert_int_equal(bench_msg_parse_response(&r, (const uint8_t *)resp, (size_t)n, false),
                     BENCH_MSG_DONE);
    assert_int_equal(bench_msg_certs_body(&r, true, scratch, sizeof scratch, &num, &serial, &why),
                     BENCH_OK);
    assert_int_equal(num, 1);
    assert_int_equal(CBS_len(&serial), 2);
    /* too small a scratch buffer, missing smime-type, missing base64 CTE */
    assert_int_equal(bench_msg_certs_body(&r, true, scratch, 4, &num, &serial, &why),
                     BENCH_E_CONTENT);
    r.certs_only = false;
    assert_int_equal(bench_msg_certs_body(&r, true, scratch, sizeof scratch, &num, &serial, &why),
                     BENCH_E_CONTENT);
    assert_int_equal(bench_msg_certs_body(&r, false, scratch, sizeof scratch, &num, &serial, &why),
                     BENCH_OK);
    r.base64 = false;
    assert_int_equal(bench_msg_certs_body(&r, false, scratch, sizeof scratch, &num, &serial, &why),
                     BENCH_E_CONTENT);
}

static void test_encode_enroll(void **state) {
    (void)state;
    char prefix[1024];
    static const uint8_t der[100] = {0x30, 0x62};
    CBB cbb;
    uint8_t *req;
    size_t req_len;
    assert_int_equal(bench_msg_enroll_prefix(prefix, sizeof prefix, "127.0.0.1:8443", "est",
                                             "s3cret", true), BENCH_OK);
    assert_non_null(strstr(prefix, "Authorization: Basic ZXN0OnMzY3JldA==\r\n"));
    assert_non_null(strstr(prefix, "Connection: close\r\n"));
    assert_int_equal(bench_msg_enroll_prefix(prefix, 16, "h:1", "u", "p", false), BENCH_E_SETUP);
    assert_int_equal(bench_msg_enroll_prefix(prefix, sizeof prefix, "127.0.0.1:8443", "est",
                                             "s3cret", false), BENCH_OK);
    assert_null(strstr(prefix, "Connection:"));
    assert_true(CBB_init(&cbb, 64));
    assert_true(bench_msg_encode_enroll(&cbb, prefix, der, sizeof der));
    assert_true(CBB_add_u8(&cbb, 0));       /* NUL-terminate for strstr */
    assert_true(CBB_finish(&cbb, &req, &req_len));
    req_len--;
    /* The request's own Content-Length covers exactly the base64 body. */
    const char *blank = strstr((const char *)req, "\r\n\r\n");
    assert_non_null(blank);
    size_t head = (size_t)(blank + 4 - (const char *)req);
    size_t body = cx_b64_encoded_len(sizeof der);
    assert_int_equal(req_len, head + body);
    char want[64];
    snprintf(want, sizeof want, "Content-Length: %zu\r\n", body);
    assert_non_null(strstr((const char *)req, want));
    OPENSSL_free(req);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_complete_200),
        cmocka_unit_test(test_partial_then_done),
        cmocka_unit_test(test_body_to_eof),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_content_type_variants),
        cmocka_unit_test(test_pkcs7_from_cx),
        cmocka_unit_test(test_certs_body),
        cmocka_unit_test(test_encode_enroll),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
