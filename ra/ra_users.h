/* ra_users: EST HTTP Basic users from an htpasswd-style file of 'user:hash'
 * lines (hashes in crypt(3) format, e.g. from `openssl passwd -6`; blank lines
 * and lines starting with '#' ignored). Passwords are checked with libxcrypt's
 * crypt_rn. A crypt check costs milliseconds, so checks run on signer workers,
 * and each worker keeps a small cache of SHA-256(user, password) digests that
 * verified, so a rollout of thousands of requests with one account costs one
 * crypt per worker. Failed checks are never cached.
 * Thread: load/create at startup; ra_users_check on signer workers (each
 * worker touches only its own cache slot array). */
#ifndef RA_USERS_H
#define RA_USERS_H

#include <stdbool.h>
#include <stddef.h>

#include "ra/ra_err.h"

typedef struct ra_users ra_users_t;

/* ra_users_load reads `path`. `num_workers` sizes the per-worker caches.
 * Returns the table or NULL with a one-line cause (file and line) in `why`. */
ra_users_t *ra_users_load(const char *path, unsigned num_workers, char *why, size_t why_len);

/* ra_users_create_initial writes `path` (mode 0600, must not exist) with one
 * user `user` and a fresh random password, hashed with SHA-512 crypt, and
 * writes the clear password to `pw_path` (mode 0600) for the operator.
 * Returns RA_OK or RA_E_IO with the cause in `why`. Thread: startup only. */
ra_err_t ra_users_create_initial(const char *path, const char *pw_path, const char *user,
                                 char *why, size_t why_len);

/* ra_users_check checks `user`/`pass` (not NUL-terminated, untrusted).
 * Returns RA_OK, RA_E_UNKNOWN_USER or RA_E_BAD_PASSWORD; an unknown user
 * costs the same crypt as a known one. Thread: signer worker `worker`. */
ra_err_t ra_users_check(ra_users_t *u, unsigned worker, const char *user, size_t user_len,
                        const char *pass, size_t pass_len);

/* ra_users_count returns the number of users loaded. */
size_t ra_users_count(const ra_users_t *u);

/* ra_users_has says whether `user` (not NUL-terminated) is in the file; it
 * checks no password. Thread: any (the table is frozen). */
bool ra_users_has(const ra_users_t *u, const char *user, size_t user_len);

void ra_users_free(ra_users_t *u);

#endif
