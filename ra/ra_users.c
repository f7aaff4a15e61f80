/* ra_users: htpasswd-style EST users with crypt(3) hashes and per-worker
 * caches of verified credentials (see ra_users.h). */
#include "ra/ra_users.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/mem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RA_CACHE_SLOTS 64
#define RA_USER_MAX 128
#define RA_PASS_MAX 256

typedef struct {
    char *name;
    char *hash;
} ra_user_t;

typedef struct {
    uint8_t digest[SHA256_DIGEST_LENGTH];
    bool valid;
} ra_cache_slot_t;

typedef struct {
    ra_cache_slot_t slot[RA_CACHE_SLOTS];
} __attribute__((aligned(64))) ra_cache_t;

struct ra_users {
    ra_user_t *users;
    size_t num;
    unsigned num_workers;
    ra_cache_t *cache;  /* one per worker */
    char dummy_hash[128];
};

void ra_users_free(ra_users_t *u) {
    if (!u) return;
    for (size_t i = 0; i < u->num; i++) {
        free(u->users[i].name);
        free(u->users[i].hash);
    }
    free(u->users);
    free(u->cache);
    free(u);
}

size_t ra_users_count(const ra_users_t *u) { return u->num; }

static char *ra_trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

static ra_err_t ra_users_add(ra_users_t *u, const char *name, const char *hash) {
    ra_user_t *n = realloc(u->users, (u->num + 1) * sizeof(*n));
    if (!n) return RA_E_NOMEM;
    u->users = n;
    n[u->num].name = strdup(name);
    n[u->num].hash = strdup(hash);
    if (!n[u->num].name || !n[u->num].hash) {
        free(n[u->num].name);
        free(n[u->num].hash);
        return RA_E_NOMEM;
    }
    u->num++;
    return RA_OK;
}

ra_users_t *ra_users_load(const char *path, unsigned num_workers, char *why, size_t why_len) {
    ra_users_t *u = calloc(1, sizeof(*u));
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    if (!u) goto nomem;
    u->num_workers = num_workers ? num_workers : 1;
    if (posix_memalign((void **)&u->cache, 64, u->num_workers * sizeof(ra_cache_t))) {
        u->cache = NULL;
        goto nomem;
    }
    memset(u->cache, 0, u->num_workers * sizeof(ra_cache_t));
    /* A well-formed hash for unknown users, so they cost one crypt too. */
    char salt[64];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    if (!crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof(salt))) goto nomem;
    const char *dh = crypt_r("stampede-dummy", salt, &cd);
    snprintf(u->dummy_hash, sizeof(u->dummy_hash), "%s", dh && dh[0] != '*' ? dh : salt);

    f = fopen(path, "r");
    if (!f) {
        snprintf(why, why_len, "cannot read EST users file %s: %s", path, strerror(errno));
        goto fail;
    }
    int lineno = 0;
    while (getline(&line, &cap, f) >= 0) {
        lineno++;
        char *s = ra_trim(line);
        if (!*s || *s == '#') continue;
        char *colon = strchr(s, ':');
        if (!colon || colon == s || colon - s > RA_USER_MAX || !colon[1] || colon[1] == ':') {
            snprintf(why, why_len, "%s:%d: expected 'user:hash'", path, lineno);
            goto fail;
        }
        *colon = 0;
        char *hash = colon + 1;
        if (hash[0] != '$') {
            snprintf(why, why_len, "%s:%d: hash for '%s' is not a crypt(3) hash (use `openssl passwd -6`)",
                     path, lineno, s);
            goto fail;
        }
        if (ra_users_add(u, s, hash) != RA_OK) goto nomem;
    }
    free(line);
    fclose(f);
    return u;
nomem:
    snprintf(why, why_len, "out of memory loading EST users");
fail:
    free(line);
    if (f) fclose(f);
    ra_users_free(u);
    return NULL;
}

static int ra_write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return -1;
    size_t n = strlen(text);
    ssize_t w = write(fd, text, n);
    int ok = w == (ssize_t)n && fsync(fd) == 0;
    close(fd);
    return ok ? 0 : -1;
}

ra_err_t ra_users_create_initial(const char *path, const char *pw_path, const char *user,
                                 char *why, size_t why_len) {
    static const char alphabet[] = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    uint8_t rnd[24];
    char pw[sizeof(rnd) + 1];
    RAND_bytes(rnd, sizeof(rnd));
    for (size_t i = 0; i < sizeof(rnd); i++) pw[i] = alphabet[rnd[i] % (sizeof(alphabet) - 1)];
    pw[sizeof(rnd)] = 0;
    char salt[64];
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *h = NULL;
    if (crypt_gensalt_rn("$6$", 0, NULL, 0, salt, sizeof(salt))) h = crypt_r(pw, salt, &cd);
    if (!h || h[0] == '*') {
        snprintf(why, why_len, "crypt(3) cannot hash with SHA-512");
        return RA_E_IO;
    }
    char line[512], pwline[64];
    snprintf(line, sizeof(line), "# EST users: user:hash (crypt(3), e.g. openssl passwd -6)\n%s:%s\n",
             user, h);
    snprintf(pwline, sizeof(pwline), "%s\n", pw);
    if (ra_write_file(pw_path, pwline) != 0 || ra_write_file(path, line) != 0) {
        snprintf(why, why_len, "cannot create %s / %s: %s", path, pw_path, strerror(errno));
        return RA_E_IO;
    }
    OPENSSL_cleanse(pw, sizeof(pw));
    return RA_OK;
}

static void ra_cache_key(uint8_t out[SHA256_DIGEST_LENGTH], const char *user, size_t user_len,
                         const char *pass, size_t pass_len) {
    SHA256_CTX c;
    uint8_t sep = 0;
    SHA256_Init(&c);
    SHA256_Update(&c, user, user_len);
    SHA256_Update(&c, &sep, 1);
    SHA256_Update(&c, pass, pass_len);
    SHA256_Final(out, &c);
}

static const ra_user_t *ra_users_find(const ra_users_t *u, const char *user, size_t user_len) {
    const ra_user_t *found = NULL;
    for (size_t i = 0; i < u->num; i++)
        if (strlen(u->users[i].name) == user_len && memcmp(u->users[i].name, user, user_len) == 0)
            found = &u->users[i];
    return found;
}

bool ra_users_has(const ra_users_t *u, const char *user, size_t user_len) {
    return u && ra_users_find(u, user, user_len) != NULL;
}

ra_err_t ra_users_check(ra_users_t *u, unsigned worker, const char *user, size_t user_len,
                        const char *pass, size_t pass_len) {
    if (user_len > RA_USER_MAX || pass_len > RA_PASS_MAX) return RA_E_BAD_PASSWORD;
    const ra_user_t *found = ra_users_find(u, user, user_len);
    uint8_t key[SHA256_DIGEST_LENGTH];
    ra_cache_key(key, user, user_len, pass, pass_len);
    ra_cache_t *cache = &u->cache[worker % u->num_workers];
    ra_cache_slot_t *slot = &cache->slot[key[0] % RA_CACHE_SLOTS];
    if (found && slot->valid && CRYPTO_memcmp(slot->digest, key, sizeof(key)) == 0) return RA_OK;

    char pw[RA_PASS_MAX + 1];
    memcpy(pw, pass, pass_len);
    pw[pass_len] = 0;
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    const char *stored = found ? found->hash : u->dummy_hash;
    const char *h = crypt_r(pw, stored, &cd);
    OPENSSL_cleanse(pw, sizeof(pw));
    bool ok = h && h[0] != '*' && strlen(h) == strlen(stored) &&
              CRYPTO_memcmp(h, stored, strlen(stored)) == 0;
    if (!found) return RA_E_UNKNOWN_USER;
    if (!ok) return RA_E_BAD_PASSWORD;
    memcpy(slot->digest, key, sizeof(key));
    slot->valid = true;
    return RA_OK;
}
