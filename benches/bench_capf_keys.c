/* bench_capf_keys: the key pool of the simulated phones. stampeded binds a
 * public key to the device whose LSC carries it and refuses it to any other
 * device (capf-protocol.md §3.2 rule 4, the index stp:capf:key:HASH), so
 * unlike the EST pool the CAPF pool needs one key per device: device n sends
 * pool key (n-1) mod K, and K defaults to --count. The pool is cached per
 * device prefix, in DIR/bench-capf-keys-PREFIX.pem (bench_keys.c's format;
 * both key types may share a file): a rerun with the same devices sends the
 * same keys (allowed: same owner), devices of another prefix never meet
 * them. RSA-2048 generation takes ~0.1 s a key, so missing keys are made on
 * CAPF_KEYS_THREADS threads, each filling a part file with bench_keys_load,
 * and the parts are appended to the pool file.
 * Thread: main thread, startup only (it runs and joins its own workers). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/nid.h>
#include <openssl/pem.h>

#include "benches/bench.h"

#define CAPF_KEYS_THREADS 2

/* capf_keys_job_t: one generator's share, written to its own part file. */
typedef struct {
    char path[4200];
    bench_keytype_t type;
    size_t num;
    bench_err_t err;
    char why[200];
} capf_keys_job_t;

static void *capf_keys_worker(void *arg) {
    capf_keys_job_t *job = arg;
    bench_keys_t part;
    job->err = bench_keys_load(&part, job->path, job->type, job->num, true, job->why,
                               sizeof job->why);
    bench_keys_cleanup(&part);
    return NULL;
}

/* capf_keys_is_type mirrors bench_keys.c: RSA-2048 or EC P-256. */
static bool capf_keys_is_type(EVP_PKEY *key, bench_keytype_t t) {
    if (t == BENCH_KEY_RSA2048)
        return EVP_PKEY_id(key) == EVP_PKEY_RSA && EVP_PKEY_bits(key) == 2048;
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
    return ec != NULL && EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) == NID_X9_62_prime256v1;
}

/* capf_keys_count returns how many keys of type `t` the PEM file holds. */
static size_t capf_keys_count(const char *path, bench_keytype_t t) {
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key;
    size_t n = 0;
    while (bio != NULL && (key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) != NULL) {
        n += capf_keys_is_type(key, t);
        EVP_PKEY_free(key);
    }
    BIO_free(bio);
    ERR_clear_error();               /* missing file, or the loop's "no start line" */
    return n;
}

/* capf_keys_append appends the bytes of file `part` to `path` (0600 if new). */
static bench_err_t capf_keys_append(const char *path, const char *part) {
    char buf[65536];
    ssize_t n = 0;
    int in = open(part, O_RDONLY | O_CLOEXEC);
    int out = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    bool ok = in >= 0 && out >= 0;
    while (ok && (n = read(in, buf, sizeof buf)) > 0)
        ok = write(out, buf, (size_t)n) == n;
    ok = ok && n == 0;
    if (in >= 0)
        close(in);
    if (out >= 0 && close(out) != 0)
        ok = false;
    return ok ? BENCH_OK : BENCH_E_SETUP;
}

/* capf_keys_generate adds `missing` keys of type `t` to `path`. */
static bench_err_t capf_keys_generate(const char *path, bench_keytype_t t, size_t missing,
                                      char *why, size_t why_len) {
    capf_keys_job_t jobs[CAPF_KEYS_THREADS];
    pthread_t threads[CAPF_KEYS_THREADS];
    bool started[CAPF_KEYS_THREADS] = {false};
    bench_err_t err = BENCH_OK;

    memset(jobs, 0, sizeof jobs);
    for (unsigned i = 0; i < CAPF_KEYS_THREADS; i++) {
        capf_keys_job_t *job = &jobs[i];
        snprintf(job->path, sizeof job->path, "%s.part%u.%ld", path, i, (long)getpid());
        unlink(job->path);
        job->type = t;
        job->num = missing / CAPF_KEYS_THREADS + (i < missing % CAPF_KEYS_THREADS);
        if (job->num == 0)
            continue;
        started[i] = pthread_create(&threads[i], NULL, capf_keys_worker, job) == 0;
        if (!started[i])
            capf_keys_worker(job);          /* no thread: do the share here */
    }
    for (unsigned i = 0; i < CAPF_KEYS_THREADS; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        if (jobs[i].num > 0 && err == BENCH_OK && jobs[i].err != BENCH_OK) {
            snprintf(why, why_len, "%s", jobs[i].why);
            err = jobs[i].err;
        }
    }
    for (unsigned i = 0; i < CAPF_KEYS_THREADS; i++) {
        if (jobs[i].num > 0 && err == BENCH_OK && capf_keys_append(path, jobs[i].path) != BENCH_OK) {
            snprintf(why, why_len, "cannot append %.300s to %.300s: %s", jobs[i].path, path,
                     strerror(errno));
            err = BENCH_E_SETUP;
        }
        unlink(jobs[i].path);
    }
    return err;
}

bench_err_t bench_capf_keys_load(bench_keys_t *keys, const bench_cfg_t *cfg, char *why,
                                 size_t why_len) {
    char path[4096], file[64];
    snprintf(file, sizeof file, "bench-capf-keys-%s.pem", cfg->devices);
    if (bench_path(path, sizeof path, cfg->data_dir, file) != BENCH_OK) {
        snprintf(why, why_len, "--data-dir too long");
        return BENCH_E_SETUP;
    }
    size_t num = (size_t)cfg->num_keys, have = capf_keys_count(path, cfg->key_type);
    if (have < num) {
        uint64_t t0 = bench_now_ns();
        if (!cfg->quiet)
            fprintf(stderr, "stampede-bench: generating %zu %s keys on %d threads (one per "
                    "device; cached in %s)\n", num - have, bench_keytype_str(cfg->key_type),
                    CAPF_KEYS_THREADS, path);
        bench_err_t err = capf_keys_generate(path, cfg->key_type, num - have, why, why_len);
        if (err != BENCH_OK)
            return err;
        if (!cfg->quiet)
            fprintf(stderr, "stampede-bench: %zu keys generated in %.1f s\n", num - have,
                    (double)(bench_now_ns() - t0) / 1e9);
    }
    return bench_keys_load(keys, path, cfg->key_type, num, cfg->quiet, why, why_len);
}
