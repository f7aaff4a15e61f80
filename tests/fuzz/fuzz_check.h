/* fuzz_check: invariants the fuzz targets share (header-only, fuzzing
 * builds only). Thread: the fuzzer's. */
#ifndef FUZZ_CHECK_H
#define FUZZ_CHECK_H

#include <stdint.h>
#include <stdlib.h>

#include <openssl/bytestring.h>

/* fuzz_check_inside aborts unless the view `v` lies inside data[0..size). */
static inline void fuzz_check_inside(const CBS *v, const uint8_t *data, size_t size) {
    if (CBS_len(v) == 0)
        return;
    if (CBS_data(v) < data || CBS_len(v) > size ||
        (size_t)(CBS_data(v) - data) > size - CBS_len(v))
        abort();
}

#endif
