/* fuzz_device: libFuzzer target for ra_device_decode (device records read
 * from Redis are untrusted). The input is split at '\n' into alternating
 * field and value, each copied into an exactly-sized heap buffer without a
 * NUL (so ASan sees any over-read). A record that decodes must validate and
 * survive encode -> decode unchanged. Any mismatch aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ra/ra_device.h"

#define MAXF 32

static int same(const ra_device_t *a, const ra_device_t *b) {
    return !strcmp(a->name, b->name) && a->op == b->op && a->auth == b->auth &&
           !strcmp(a->auth_hash, b->auth_hash) && a->num_keys == b->num_keys &&
           !memcmp(a->keys, b->keys, a->num_keys * sizeof(a->keys[0])) && a->by == b->by &&
           a->status == b->status && !strcmp(a->reason, b->reason) && !strcmp(a->lsc_serial, b->lsc_serial) &&
           a->lsc_not_after == b->lsc_not_after && a->auth_failures == b->auth_failures &&
           a->created == b->created && a->updated == b->updated;
}

static void round_trip(const ra_device_t *d) {
    ra_device_fields_t f;
    ra_device_t back;
    size_t fl[RA_DEVICE_NUM_FIELDS], vl[RA_DEVICE_NUM_FIELDS];
    char why[256];
    if (ra_device_validate(d) != RA_OK) abort();
    ra_device_encode(&f, d);
    for (size_t i = 0; i < f.num; i++) {
        fl[i] = strlen(f.field[i]);
        vl[i] = strlen(f.value[i]);
    }
    if (ra_device_decode(&back, d->name, f.field, fl, f.value, vl, f.num, why, sizeof(why)) != RA_OK ||
        !same(d, &back))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *part[2 * MAXF];
    size_t len[2 * MAXF], made = 0, start = 0;
    for (size_t i = 0; i <= size && made < 2 * MAXF; i++) {
        if (i < size && data[i] != '\n') continue;
        len[made] = i - start;
        part[made] = malloc(len[made] ? len[made] : 1);
        if (!part[made]) abort();
        memcpy(part[made], data + start, len[made]);
        made++;
        start = i + 1;
    }
    const char *fields[MAXF], *values[MAXF];
    size_t flen[MAXF], vlen[MAXF], num = made / 2;
    for (size_t i = 0; i < num; i++) {
        fields[i] = part[2 * i];
        flen[i] = len[2 * i];
        values[i] = part[2 * i + 1];
        vlen[i] = len[2 * i + 1];
    }
    ra_device_t d;
    char why[256];
    if (ra_device_decode(&d, "SEP74A02FC0A675", fields, flen, values, vlen, num, why, sizeof(why)) == RA_OK)
        round_trip(&d);
    for (size_t i = 0; i < made; i++) free(part[i]);
    return 0;
}
