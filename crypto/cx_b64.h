/* cx_b64: base64 as EST (RFC 7030 §4) uses it: bodies with
 * Content-Transfer-Encoding: base64. Decoding accepts line breaks and spaces
 * between groups (CR, LF, SP, TAB), nothing else; encoding writes 64-character
 * lines ending in CRLF (what `openssl base64 -d` reads).
 * Thread: any thread. No allocation. */
#ifndef CX_B64_H
#define CX_B64_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/cx_err.h"

/* cx_b64_decode decodes `in` into `out` (capacity `out_cap`; `out` may be
 * NULL when `out_cap` is 0). CR LF SP TAB are skipped anywhere; '=' only ends
 * the last 4-character group, and its unused bits must be zero (canonical).
 * Returns CX_OK with *out_len set, CX_E_BASE64 on any invalid character,
 * bad padding or truncated group, CX_E_TOO_LARGE if `out_cap` is too small
 * (detected while decoding, so it may win over a later bad character).
 * On error *out_len is 0 and `out` may hold partial output. Empty input (or
 * only whitespace) decodes to 0 bytes. */
cx_err_t cx_b64_decode(uint8_t *out, size_t *out_len, size_t out_cap,
                       const uint8_t *in, size_t in_len);

/* cx_b64_encoded_len returns the bytes cx_b64_encode writes for `in_len` bytes. */
size_t cx_b64_encoded_len(size_t in_len);

/* cx_b64_encode writes base64 of `in` into `out` (which must hold
 * cx_b64_encoded_len(in_len) bytes) in 64-char lines each ending with CRLF.
 * Returns the number of bytes written (0 for empty input: no line). */
size_t cx_b64_encode(uint8_t *out, const uint8_t *in, size_t in_len);

#endif
