/* fuzz_b64: libFuzzer target for cx_b64 (EST request bodies are untrusted
 * base64). Decodes the input into an exactly-sized heap buffer (so ASan sees
 * any overrun), checks the capacity contract, and round-trips: the input as
 * bytes must survive encode -> decode, and a successful decode must survive
 * encode -> decode too. Any mismatch aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/cx_b64.h"

/* round_trip encodes `in` and decodes it back; aborts unless identical. */
static void round_trip(const uint8_t *in, size_t len) {
    size_t enc_len = cx_b64_encoded_len(len), dec_len = 0;
    uint8_t *enc = malloc(enc_len ? enc_len : 1), *dec = malloc(len ? len : 1);
    if (enc == NULL || dec == NULL)
        abort();
    if (cx_b64_encode(enc, in, len) != enc_len ||
        cx_b64_decode(dec, &dec_len, len, enc, enc_len) != CX_OK || dec_len != len ||
        (len && memcmp(dec, in, len) != 0))
        abort();
    free(enc);
    free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t cap = size / 4 * 3 + 3, out_len = 0;
    uint8_t *out = malloc(cap);
    if (out == NULL)
        abort();
    cx_err_t err = cx_b64_decode(out, &out_len, cap, data, size);
    if (err == CX_E_TOO_LARGE)
        abort();                       /* cap is always enough */
    if (err == CX_OK) {
        if (out_len > cap)
            abort();
        /* Exactly enough room works; one byte less is CX_E_TOO_LARGE. */
        uint8_t *exact = malloc(out_len ? out_len : 1);
        size_t n = 0;
        if (exact == NULL || cx_b64_decode(exact, &n, out_len, data, size) != CX_OK ||
            n != out_len || (n && memcmp(exact, out, n) != 0))
            abort();
        if (out_len > 0 && cx_b64_decode(exact, &n, out_len - 1, data, size) != CX_E_TOO_LARGE)
            abort();
        free(exact);
        round_trip(out, out_len);
    } else if (err != CX_E_BASE64 || out_len != 0) {
        abort();
    }
    round_trip(data, size);
    free(out);
    return 0;
}
