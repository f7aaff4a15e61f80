/* ra_device: device record codec (see ra_device.h). Words and fields follow
 * docs/redis-schema.md; decoding reads untrusted Redis bytes through CBS. */
#include "ra/ra_device.h"

#include <crypt.h>
#include <inttypes.h>
#include <openssl/bytestring.h>
#include <openssl/mem.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const ra_op_words[RA_OP__COUNT] = {
    [RA_OP_NONE] = "none", [RA_OP_INSTALL] = "install", [RA_OP_DELETE] = "delete",
    [RA_OP_TROUBLESHOOT] = "troubleshoot"};
static const char *const ra_auth_words[RA_AUTH__COUNT] = {
    [RA_AUTH_NULL] = "null", [RA_AUTH_STRING] = "string", [RA_AUTH_LSC] = "lsc", [RA_AUTH_MIC] = "mic"};
static const char *const ra_status_words[RA_STATUS__COUNT] = {
    [RA_STATUS_NONE] = "none", [RA_STATUS_PENDING] = "pending", [RA_STATUS_SUCCESS] = "success",
    [RA_STATUS_FAILED] = "failed"};
static const char *const ra_key_words[RA_KEY__COUNT] = {
    [RA_KEY_RSA2048] = "rsa2048", [RA_KEY_RSA3072] = "rsa3072", [RA_KEY_RSA4096] = "rsa4096",
    [RA_KEY_EC256] = "ec256", [RA_KEY_EC384] = "ec384", [RA_KEY_EC521] = "ec521",
    [RA_KEY_RSA1024] = "rsa1024", [RA_KEY_RSA512] = "rsa512"};

/* ra_word_find returns the index of the `len` bytes at `s` in `words`, or -1. */
static int ra_word_find(const char *const *words, int n, const char *s, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(words[i]) == len && !memcmp(words[i], s, len)) return i;
    return -1;
}

static const char *ra_word(const char *const *words, int n, int v) {
    return v >= 0 && v < n ? words[v] : "?";
}

const char *ra_op_name(ra_op_t op) { return ra_word(ra_op_words, RA_OP__COUNT, (int)op); }
const char *ra_auth_name(ra_auth_t a) { return ra_word(ra_auth_words, RA_AUTH__COUNT, (int)a); }
const char *ra_status_name(ra_status_t s) { return ra_word(ra_status_words, RA_STATUS__COUNT, (int)s); }
const char *ra_key_name(ra_key_t k) { return ra_word(ra_key_words, RA_KEY__COUNT, (int)k); }

ra_err_t ra_op_parse(const char *s, ra_op_t *out) {
    int i = s ? ra_word_find(ra_op_words, RA_OP__COUNT, s, strlen(s)) : -1;
    if (i < 0) return RA_E_BAD_OP;
    *out = (ra_op_t)i;
    return RA_OK;
}

ra_err_t ra_auth_parse(const char *s, ra_auth_t *out) {
    int i = s ? ra_word_find(ra_auth_words, RA_AUTH__COUNT, s, strlen(s)) : -1;
    if (i < 0) return RA_E_BAD_AUTH;
    *out = (ra_auth_t)i;
    return RA_OK;
}

ra_err_t ra_status_parse(const char *s, ra_status_t *out) {
    int i = s ? ra_word_find(ra_status_words, RA_STATUS__COUNT, s, strlen(s)) : -1;
    if (i < 0) return RA_E_BAD_RECORD;
    *out = (ra_status_t)i;
    return RA_OK;
}

void ra_device_init(ra_device_t *d, const char *name) {
    memset(d, 0, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name ? name : "");
    d->keys[0] = RA_KEY_RSA2048;
    d->num_keys = 1;
}

static bool ra_name_char(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

bool ra_device_name_valid(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > RA_DEVICE_NAME_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if (!ra_name_char(name[i])) return false;
    return true;
}

ra_err_t ra_keys_parse(ra_key_t keys[RA_KEY__COUNT], size_t *num_keys, const char *list) {
    ra_key_t tmp[RA_KEY__COUNT];
    size_t n = *num_keys;
    const char *p = list;
    if (!list || n > RA_KEY__COUNT) return RA_E_BAD_KEYS;
    memcpy(tmp, keys, n * sizeof(tmp[0]));
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int k = ra_word_find(ra_key_words, RA_KEY__COUNT, p, len);
        if (k < 0) return RA_E_BAD_KEYS;
        for (size_t i = 0; i < n; i++)
            if (tmp[i] == (ra_key_t)k) return RA_E_BAD_KEYS;
        tmp[n++] = (ra_key_t)k; /* at most RA_KEY__COUNT distinct keys */
        if (!comma) break;
        p = comma + 1;
    }
    memcpy(keys, tmp, n * sizeof(tmp[0]));
    *num_keys = n;
    return RA_OK;
}

void ra_keys_format(const ra_key_t *keys, size_t num_keys, char *buf, size_t buf_len) {
    size_t off = 0;
    if (!buf_len) return;
    buf[0] = '\0';
    for (size_t i = 0; i < num_keys; i++) {
        int n = snprintf(buf + off, buf_len - off, "%s%s", i ? "," : "", ra_key_name(keys[i]));
        if (n < 0 || (size_t)n >= buf_len - off) {
            buf[0] = '\0';
            return;
        }
        off += (size_t)n;
    }
}

bool ra_auth_string_valid(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n < 4 || n > 10) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

ra_err_t ra_auth_string_hash(const char *s, char *out, size_t out_len) {
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    struct crypt_data cd;
    if (!ra_auth_string_valid(s)) return RA_E_BAD_AUTH_STRING;
    memset(&cd, 0, sizeof(cd));
    if (!crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof(salt))) return RA_E_NOMEM;
    const char *h = crypt_rn(s, salt, &cd, sizeof(cd));
    if (!h || h[0] != '$' || strlen(h) >= out_len) return RA_E_NOMEM;
    memcpy(out, h, strlen(h) + 1);
    explicit_bzero(&cd, sizeof(cd));
    return RA_OK;
}

bool ra_auth_string_check(const char *s, const char *hash) {
    struct crypt_data cd;
    if (!s || !hash || hash[0] != '$') return false;
    memset(&cd, 0, sizeof(cd));
    const char *h = crypt_rn(s, hash, &cd, sizeof(cd));
    /* constant time: the comparison does not leak how much of the hash matched */
    bool ok = h && h[0] == '$' && strlen(h) == strlen(hash) && CRYPTO_memcmp(h, hash, strlen(hash)) == 0;
    explicit_bzero(&cd, sizeof(cd));
    return ok;
}

ra_err_t ra_time_parse(const char *s, int64_t *out) {
    static const char *const fmts[] = {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"};
    for (size_t i = 0; s && i < sizeof(fmts) / sizeof(fmts[0]); i++) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(s, fmts[i], &tm);
        if (!end || (end[0] && strcmp(end, "Z"))) continue;
        if (strlen(s) < 16 || s[4] != '-' || s[7] != '-') continue; /* 4-digit year, 2-digit fields */
        int mday = tm.tm_mday, mon = tm.tm_mon;
        tm.tm_isdst = -1;
        time_t t = end[0] == 'Z' ? timegm(&tm) : mktime(&tm);
        if (t == (time_t)-1 || tm.tm_mday != mday || tm.tm_mon != mon) return RA_E_BAD_TIME;
        *out = (int64_t)t;
        return RA_OK;
    }
    return RA_E_BAD_TIME;
}

bool ra_pidsn_valid(const char *s) {
    size_t n = strlen(s);
    return n <= RA_DEVICE_PIDSN_MAX && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./+=-") == n;
}

ra_err_t ra_device_validate(const ra_device_t *d) {
    if (!ra_device_name_valid(d->name)) return RA_E_BAD_NAME;
    if ((unsigned)d->op >= RA_OP__COUNT) return RA_E_BAD_OP;
    if ((unsigned)d->auth >= RA_AUTH__COUNT) return RA_E_BAD_AUTH;
    if (d->auth == RA_AUTH_STRING ? d->auth_hash[0] != '$' : d->auth_hash[0] != '\0') return RA_E_BAD_AUTH;
    if (d->num_keys == 0 || d->num_keys > RA_KEY__COUNT) return RA_E_BAD_KEYS;
    for (size_t i = 0; i < d->num_keys; i++)
        if ((unsigned)d->keys[i] >= RA_KEY__COUNT) return RA_E_BAD_KEYS;
    if ((unsigned)d->status >= RA_STATUS__COUNT || d->by < 0) return RA_E_BAD_RECORD;
    if (!ra_pidsn_valid(d->pid) || !ra_pidsn_valid(d->sn)) return RA_E_BAD_RECORD;
    return RA_OK;
}

/* ra_fields_put appends field `name` = printf(fmt, ...) into f->_buf. */
__attribute__((format(printf, 3, 4)))
static void ra_fields_put(ra_device_fields_t *f, const char *name, const char *fmt, ...) {
    size_t used = 0;
    if (f->num) {
        const char *last = f->value[f->num - 1];
        used = (size_t)(last - f->_buf) + strlen(last) + 1;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(f->_buf + used, sizeof(f->_buf) - used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(f->_buf) - used) return; /* cannot happen: fields are bounded */
    f->field[f->num] = name;
    f->value[f->num++] = f->_buf + used;
}

void ra_device_encode(ra_device_fields_t *f, const ra_device_t *d) {
    char keys[64];
    f->num = 0;
    ra_keys_format(d->keys, d->num_keys, keys, sizeof(keys));
    ra_fields_put(f, "op", "%s", ra_op_name(d->op));
    ra_fields_put(f, "auth", "%s", ra_auth_name(d->auth));
    if (d->auth == RA_AUTH_STRING) ra_fields_put(f, "auth_hash", "%s", d->auth_hash);
    ra_fields_put(f, "keys", "%s", keys);
    ra_fields_put(f, "by", "%" PRId64, d->by);
    ra_fields_put(f, "status", "%s", ra_status_name(d->status));
    ra_fields_put(f, "reason", "%s", d->reason);
    ra_fields_put(f, "lsc_serial", "%s", d->lsc_serial);
    ra_fields_put(f, "lsc_not_after", "%" PRId64, d->lsc_not_after);
    ra_fields_put(f, "auth_failures", "%" PRId64, d->auth_failures);
    ra_fields_put(f, "created", "%" PRId64, d->created);
    ra_fields_put(f, "updated", "%" PRId64, d->updated);
    if (d->pid[0]) ra_fields_put(f, "pid", "%s", d->pid);
    if (d->sn[0]) ra_fields_put(f, "sn", "%s", d->sn);
}

int ra_cbs_get_i64(CBS *v, int64_t *out) {
    uint8_t c;
    int64_t x = 0;
    if (CBS_len(v) == 0 || CBS_len(v) > 18) return 0; /* no overflow below 10^18 */
    while (CBS_get_u8(v, &c)) {
        if (c < '0' || c > '9') return 0;
        x = x * 10 + (c - '0');
    }
    *out = x;
    return 1;
}

/* ra_cbs_get_text copies all of `v` (printable ASCII; hex only if `hex`)
 * into out[out_len] with a NUL. */
static int ra_cbs_get_text(CBS *v, char *out, size_t out_len, int hex) {
    uint8_t c;
    size_t n = 0;
    if (CBS_len(v) >= out_len) return 0;
    while (CBS_get_u8(v, &c)) {
        int ok = hex ? ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
                     : (c >= 0x20 && c < 0x7f);
        if (!ok) return 0;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return 1;
}

static int ra_cbs_get_word(CBS *v, const char *const *words, int n, int *out) {
    int i = ra_word_find(words, n, (const char *)CBS_data(v), CBS_len(v));
    if (i < 0) return 0;
    *out = i;
    return 1;
}

/* ra_decode_field stores one field of a record; 1 if valid or unknown. */
static int ra_decode_field(ra_device_t *d, const char *f, CBS *v) {
    int w;
    char keys[64];
    if (!strcmp(f, "op")) return ra_cbs_get_word(v, ra_op_words, RA_OP__COUNT, &w) && ((d->op = (ra_op_t)w), 1);
    if (!strcmp(f, "auth"))
        return ra_cbs_get_word(v, ra_auth_words, RA_AUTH__COUNT, &w) && ((d->auth = (ra_auth_t)w), 1);
    if (!strcmp(f, "status"))
        return ra_cbs_get_word(v, ra_status_words, RA_STATUS__COUNT, &w) && ((d->status = (ra_status_t)w), 1);
    if (!strcmp(f, "auth_hash")) return ra_cbs_get_text(v, d->auth_hash, sizeof(d->auth_hash), 0);
    if (!strcmp(f, "reason")) return ra_cbs_get_text(v, d->reason, sizeof(d->reason), 0);
    if (!strcmp(f, "lsc_serial")) return ra_cbs_get_text(v, d->lsc_serial, sizeof(d->lsc_serial), 1);
    if (!strcmp(f, "by")) return ra_cbs_get_i64(v, &d->by);
    if (!strcmp(f, "lsc_not_after")) return ra_cbs_get_i64(v, &d->lsc_not_after);
    if (!strcmp(f, "auth_failures")) return ra_cbs_get_i64(v, &d->auth_failures);
    if (!strcmp(f, "created")) return ra_cbs_get_i64(v, &d->created);
    if (!strcmp(f, "pid")) return ra_cbs_get_text(v, d->pid, sizeof(d->pid), 0);
    if (!strcmp(f, "sn")) return ra_cbs_get_text(v, d->sn, sizeof(d->sn), 0);
    if (!strcmp(f, "lsc_md5")) return ra_cbs_get_text(v, d->lsc_md5, sizeof(d->lsc_md5), 1);
    if (!strcmp(f, "lsc_sha256")) return ra_cbs_get_text(v, d->lsc_sha256, sizeof(d->lsc_sha256), 1);
    if (!strcmp(f, "lsc_unconfirmed")) return ra_cbs_get_text(v, d->lsc_unconfirmed, sizeof(d->lsc_unconfirmed), 1);
    if (!strcmp(f, "stale_lscs")) return ra_cbs_get_i64(v, &d->stale_lscs);
    if (!strcmp(f, "auth_lock_until")) return ra_cbs_get_i64(v, &d->auth_lock_until);
    if (!strcmp(f, "last_session")) return ra_cbs_get_i64(v, &d->last_session);
    if (!strcmp(f, "last_peer")) return ra_cbs_get_text(v, d->last_peer, sizeof(d->last_peer), 0);
    if (!strcmp(f, "updated")) return ra_cbs_get_i64(v, &d->updated);
    if (!strcmp(f, "keys")) {
        d->num_keys = 0;
        return ra_cbs_get_text(v, keys, sizeof(keys), 0) && ra_keys_parse(d->keys, &d->num_keys, keys) == RA_OK;
    }
    return 1; /* unknown fields: written by a newer version */
}

ra_err_t ra_device_decode(ra_device_t *d, const char *name, const char *const *fields,
                          const size_t *field_lens, const char *const *values,
                          const size_t *value_lens, size_t num, char *why, size_t why_len) {
    ra_device_init(d, name);
    if (!ra_device_name_valid(name)) {
        snprintf(why, why_len, "device name not valid");
        return RA_E_BAD_RECORD;
    }
    for (size_t i = 0; i < num; i++) {
        char f[32];
        CBS fv, v;
        CBS_init(&fv, (const uint8_t *)fields[i], field_lens[i]);
        CBS_init(&v, (const uint8_t *)values[i], value_lens[i]);
        if (!ra_cbs_get_text(&fv, f, sizeof(f), 0)) continue; /* not one of ours */
        if (!ra_decode_field(d, f, &v)) {
            snprintf(why, why_len, "malformed record: field '%s' of %s", f, name);
            return RA_E_BAD_RECORD;
        }
    }
    if (ra_device_validate(d) != RA_OK) {
        snprintf(why, why_len, "malformed record: fields of %s inconsistent (auth/auth_hash or keys)", name);
        return RA_E_BAD_RECORD;
    }
    return RA_OK;
}
