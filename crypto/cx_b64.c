/* cx_b64: base64 (RFC 4648 §4 alphabet) for EST bodies. The decoder reads
 * untrusted request bodies through a CBS cursor, one byte at a time, skipping
 * CR LF SP TAB between characters and nothing else; padding is strict (only
 * at the end, full 4-character groups, zero pad bits). It never allocates:
 * the caller gives the output buffer. The encoder writes 64-character lines,
 * each (the last too) ending with CRLF.
 * Thread: any thread. No state. */
#include "crypto/cx_b64.h"

#include <stdbool.h>

#include <openssl/bytestring.h>

#define CX_B64_LINE 64  /* characters per encoded line, CRLF not counted */

static const char cx_b64_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* cx_b64_value maps one alphabet character to 0..63, '=' to 64,
 * whitespace to 65 and anything else to -1. */
enum { CX_B64_PAD = 64, CX_B64_SPACE = 65 };
static int cx_b64_value(uint8_t c) {
    /* 256-entry table built at compile time: 0..63, PAD, SPACE, or -1 (0 in
     * the table means "invalid"; valid entries are stored as value + 1). */
    static const uint8_t table[256] = {
        ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
        ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
        ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
        ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
        ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
        ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
        ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
        ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
        ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
        ['/'] = 64, ['='] = CX_B64_PAD + 1, ['\r'] = CX_B64_SPACE + 1, ['\n'] = CX_B64_SPACE + 1,
        [' '] = CX_B64_SPACE + 1, ['\t'] = CX_B64_SPACE + 1,
    };
    return (int)table[c] - 1;
}

/* cx_b64_flush emits the bytes of one complete group of `num_chars` (2..4)
 * significant characters held in `acc` (6 bits each, first in the high bits
 * of a 24-bit value). Refuses non-zero pad bits. */
static cx_err_t cx_b64_flush(uint8_t *out, size_t *pos, size_t out_cap,
                             uint32_t acc, unsigned num_chars) {
    size_t n = num_chars - 1;          /* 4 chars -> 3 bytes, 3 -> 2, 2 -> 1 */
    uint8_t b[3] = {(uint8_t)(acc >> 16), (uint8_t)(acc >> 8), (uint8_t)acc};

    if ((n == 1 && (acc & 0xffff) != 0) || (n == 2 && (acc & 0xff) != 0))
        return CX_E_BASE64;            /* non-canonical: pad bits set */
    if (out_cap - *pos < n)
        return CX_E_TOO_LARGE;
    for (size_t i = 0; i < n; i++)
        out[(*pos)++] = b[i];
    return CX_OK;
}

cx_err_t cx_b64_decode(uint8_t *out, size_t *out_len, size_t out_cap,
                       const uint8_t *in, size_t in_len) {
    CBS cbs;
    uint32_t acc = 0;
    unsigned num_chars = 0;            /* characters in the current group */
    unsigned num_pad = 0;              /* '=' seen in the current group */
    bool done = false;                 /* a padded group ended the data */
    size_t pos = 0;
    cx_err_t err;

    *out_len = 0;
    CBS_init(&cbs, in, in_len);
    /* The cursor's bytes are read by index below [0, CBS_len): one bounds
     * check per byte without a library call per byte (this runs for every
     * enrollment body). */
    const uint8_t *data = CBS_data(&cbs);
    size_t len = CBS_len(&cbs);
    for (size_t i = 0; i < len; i++) {
        int v = cx_b64_value(data[i]);
        if (v == CX_B64_SPACE)
            continue;
        if (v < 0 || done)
            return CX_E_BASE64;        /* bad character, or data after '=' */
        if (v == CX_B64_PAD) {
            if (num_chars < 2)
                return CX_E_BASE64;    /* "=" may only be 3rd or 4th */
            num_pad++;
            v = 0;
        } else if (num_pad > 0) {
            return CX_E_BASE64;        /* "x=x" */
        }
        acc = (acc << 6) | (uint32_t)v;
        if (++num_chars < 4)
            continue;
        err = cx_b64_flush(out, &pos, out_cap, acc, 4 - num_pad);
        if (err != CX_OK)
            return err;
        done = num_pad > 0;
        acc = 0;
        num_chars = 0;
        num_pad = 0;
    }
    if (num_chars != 0)
        return CX_E_BASE64;            /* truncated group */
    *out_len = pos;
    return CX_OK;
}

size_t cx_b64_encoded_len(size_t in_len) {
    size_t chars = (in_len / 3 + (in_len % 3 != 0)) * 4;
    size_t lines = chars / CX_B64_LINE + (chars % CX_B64_LINE != 0);
    return chars + 2 * lines;
}

/* cx_b64_put writes one character, and a CRLF when a line is full. */
static void cx_b64_put(uint8_t *out, size_t *pos, size_t *col, char c) {
    out[(*pos)++] = (uint8_t)c;
    if (++*col == CX_B64_LINE) {
        out[(*pos)++] = '\r';
        out[(*pos)++] = '\n';
        *col = 0;
    }
}

size_t cx_b64_encode(uint8_t *out, const uint8_t *in, size_t in_len) {
    size_t pos = 0, col = 0;

    for (size_t i = 0; i < in_len; i += 3) {
        size_t n = in_len - i < 3 ? in_len - i : 3;
        uint32_t acc = (uint32_t)in[i] << 16;
        if (n > 1)
            acc |= (uint32_t)in[i + 1] << 8;
        if (n > 2)
            acc |= in[i + 2];
        cx_b64_put(out, &pos, &col, cx_b64_alphabet[(acc >> 18) & 63]);
        cx_b64_put(out, &pos, &col, cx_b64_alphabet[(acc >> 12) & 63]);
        cx_b64_put(out, &pos, &col, n > 1 ? cx_b64_alphabet[(acc >> 6) & 63] : '=');
        cx_b64_put(out, &pos, &col, n > 2 ? cx_b64_alphabet[acc & 63] : '=');
    }
    if (col != 0) {
        out[pos++] = '\r';
        out[pos++] = '\n';
    }
    return pos;
}
