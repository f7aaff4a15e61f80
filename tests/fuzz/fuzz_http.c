/* fuzz_http: libFuzzer target for the EST engine's HTTP request parser and
 * the Basic-credential decoder (untrusted bytes from every client). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/est_http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    est_http_req_t req;
    est_http_err_t e = est_http_parse(&req, data, size, 8192);
    if (e == EST_HTTP_OK) {
        if (req.header_len > size || req.header_len < 4) abort();
        if (CBS_data(&req.path) < data || CBS_data(&req.path) + CBS_len(&req.path) > data + size) abort();
        uint8_t buf[512];
        CBS user, pass;
        if (est_http_basic(&req.authorization, buf, sizeof(buf), &user, &pass) &&
            CBS_len(&user) + CBS_len(&pass) >= sizeof(buf))
            abort();
        (void)est_http_media_is(&req.content_type, "application/pkcs10");
    }
    return 0;
}
