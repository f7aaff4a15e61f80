/* bench_keys: the client key pool and the CSR set of stampede-bench.
 * Generating RSA keys takes seconds, so a pool of K keys is kept in
 * DIR/bench-keys.pem (PKCS#8 PEM, mode 0600; keys of both types may share the
 * file) and reused across runs. Every enrollment still gets its own CSR,
 * subject CN "bench-<run>-<i>", signed by pool key i % K before the timed
 * phase, on two threads, and stored as a complete pre-encoded HTTP request.
 * Thread: startup only (bench_csrs_build runs its own two workers). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "benches/bench.h"

#define CSR_THREADS 2

const char *bench_keytype_str(bench_keytype_t t) {
    return t == BENCH_KEY_EC256 ? "ec256" : "rsa2048";
}

/* keys_is_type reports whether `key` is of pool type `t`. */
static bool keys_is_type(EVP_PKEY *key, bench_keytype_t t) {
    if (t == BENCH_KEY_RSA2048)
        return EVP_PKEY_id(key) == EVP_PKEY_RSA && EVP_PKEY_bits(key) == 2048;
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(key);
    return ec != NULL && EC_GROUP_get_curve_name(EC_KEY_get0_group(ec)) == NID_X9_62_prime256v1;
}

/* keys_generate returns a new key of type `t`, or NULL. */
static EVP_PKEY *keys_generate(bench_keytype_t t) {
    EVP_PKEY *key = EVP_PKEY_new();
    if (key == NULL)
        return NULL;
    if (t == BENCH_KEY_RSA2048) {
        RSA *rsa = RSA_new();
        BIGNUM *e = BN_new();
        int ok = rsa && e && BN_set_word(e, RSA_F4) &&
                 RSA_generate_key_ex(rsa, 2048, e, NULL) && EVP_PKEY_assign_RSA(key, rsa);
        BN_free(e);
        if (!ok) {
            RSA_free(rsa);
            goto fail;
        }
    } else {
        EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
        if (ec == NULL || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(key, ec)) {
            EC_KEY_free(ec);
            goto fail;
        }
    }
    return key;
fail:
    EVP_PKEY_free(key);
    return NULL;
}

/* keys_read appends every private key in PEM file `path` to `all` (grown
 * with realloc). A missing file is an empty pool. */
static void keys_read(const char *path, EVP_PKEY ***all, size_t *num_all) {
    BIO *bio = BIO_new_file(path, "r");
    EVP_PKEY *key;
    if (bio == NULL) {
        ERR_clear_error();
        return;
    }
    while ((key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) != NULL) {
        EVP_PKEY **grown = realloc(*all, (*num_all + 1) * sizeof *grown);
        if (grown == NULL) {
            EVP_PKEY_free(key);
            break;
        }
        *all = grown;
        (*all)[(*num_all)++] = key;
    }
    ERR_clear_error();   /* the loop ends on "no start line" */
    BIO_free(bio);
}

/* keys_write replaces `path` with `all` (write to a temporary, rename).
 * Returns BENCH_OK or BENCH_E_SETUP. */
static bench_err_t keys_write(const char *path, EVP_PKEY *const *all, size_t num_all) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return BENCH_E_SETUP;
    BIO *bio = BIO_new_fd(fd, BIO_CLOSE);
    bool ok = bio != NULL;
    for (size_t i = 0; ok && i < num_all; i++)
        ok = PEM_write_bio_PrivateKey(bio, all[i], NULL, NULL, 0, NULL, NULL) == 1;
    ok = ok && BIO_flush(bio) == 1;
    if (bio != NULL)
        BIO_free(bio);
    else
        close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        ERR_clear_error();
        return BENCH_E_SETUP;
    }
    return BENCH_OK;
}

bench_err_t bench_keys_load(bench_keys_t *pool, const char *path, bench_keytype_t t,
                            size_t num, bool quiet, char *why, size_t why_len) {
    EVP_PKEY **all = NULL;
    size_t num_all = 0, have = 0;

    memset(pool, 0, sizeof *pool);
    pool->keys = calloc(num, sizeof *pool->keys);
    if (pool->keys == NULL)
        goto nomem;
    keys_read(path, &all, &num_all);
    for (size_t i = 0; i < num_all && have < num; i++)
        if (keys_is_type(all[i], t) && EVP_PKEY_up_ref(all[i]))
            pool->keys[have++] = all[i];
    if (have < num) {
        EVP_PKEY **grown = realloc(all, (num_all + num - have) * sizeof *grown);
        if (grown == NULL)
            goto nomem;
        all = grown;
        if (!quiet)
            fprintf(stderr, "stampede-bench: generating %zu %s keys (cached in %s)\n",
                    num - have, bench_keytype_str(t), path);
    }
    while (have < num) {
        EVP_PKEY *key = keys_generate(t);
        if (key == NULL) {
            snprintf(why, why_len, "generating a %s key failed", bench_keytype_str(t));
            goto fail;
        }
        EVP_PKEY_up_ref(key);
        pool->keys[have++] = key;
        all[num_all++] = key;
        pool->num_generated++;
    }
    pool->num_keys = num;
    if (pool->num_generated > 0 && keys_write(path, all, num_all) != BENCH_OK && !quiet)
        fprintf(stderr, "stampede-bench: warning: cannot write %s; keys not cached\n", path);
    for (size_t i = 0; i < num_all; i++)
        EVP_PKEY_free(all[i]);
    free(all);
    return BENCH_OK;

nomem:
    snprintf(why, why_len, "out of memory for the key pool");
fail:
    for (size_t i = 0; i < num_all; i++)
        EVP_PKEY_free(all[i]);
    free(all);
    pool->num_keys = num;
    bench_keys_cleanup(pool);
    return BENCH_E_CRYPTO;
}

void bench_keys_cleanup(bench_keys_t *pool) {
    for (size_t i = 0; pool->keys != NULL && i < pool->num_keys; i++)
        EVP_PKEY_free(pool->keys[i]);
    free(pool->keys);
    memset(pool, 0, sizeof *pool);
}

/* ---- CSR set -------------------------------------------------------------- */

/* csr_job_t: one CSR worker's share, the indices i with i % CSR_THREADS == t. */
typedef struct {
    const bench_keys_t *pool;
    const char *prefix;
    const char *run_id;
    size_t num;
    unsigned t;
    CBB out;                    /* this worker's arena */
    uint32_t *offsets;          /* [num]: where request i starts in its arena */
    bench_csrs_t *csrs;         /* for reqs[i].len and the CSR 0 copy */
    bool ok;
} csr_job_t;

/* csr_make returns the DER of a new CSR for CN `cn` signed by `key` in
 * *der (OPENSSL_free it). Returns its length, or 0 on failure. */
static size_t csr_make(uint8_t **der, const char *cn, EVP_PKEY *key) {
    X509_REQ *req = X509_REQ_new();
    int len = 0;
    *der = NULL;
    if (req != NULL && X509_REQ_set_version(req, 0) &&
        X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                   (const uint8_t *)cn, -1, -1, 0) &&
        X509_REQ_set_pubkey(req, key) && X509_REQ_sign(req, key, EVP_sha256()))
        len = i2d_X509_REQ(req, der);
    X509_REQ_free(req);
    return len > 0 ? (size_t)len : 0;
}

static void *csr_worker(void *arg) {
    csr_job_t *job = arg;
    char cn[64];
    for (size_t i = job->t; i < job->num; i += CSR_THREADS) {
        uint8_t *der;
        snprintf(cn, sizeof cn, "bench-%s-%zu", job->run_id, i);
        size_t der_len = csr_make(&der, cn, job->pool->keys[i % job->pool->num_keys]);
        size_t start = CBB_len(&job->out);
        bool ok = der_len > 0 && start <= UINT32_MAX &&
                  bench_msg_encode_enroll(&job->out, job->prefix, der, der_len);
        if (ok && i == 0) {
            job->csrs->csr0_der = OPENSSL_memdup(der, der_len);
            job->csrs->csr0_len = der_len;
            ok = job->csrs->csr0_der != NULL;
        }
        OPENSSL_free(der);
        if (!ok) {
            job->ok = false;
            return NULL;
        }
        job->offsets[i] = (uint32_t)start;
        job->csrs->reqs[i].len = (uint32_t)(CBB_len(&job->out) - start);
    }
    job->ok = true;
    return NULL;
}

bench_err_t bench_csrs_build(bench_csrs_t *out, const bench_keys_t *pool, size_t num,
                             const char *prefix, char *why, size_t why_len) {
    csr_job_t jobs[CSR_THREADS];
    pthread_t threads[CSR_THREADS];
    bool started[CSR_THREADS] = {false};
    uint8_t rnd[4];
    bool ok = true;
    uint32_t *offsets = calloc(num, sizeof *offsets);

    memset(out, 0, sizeof *out);
    memset(jobs, 0, sizeof jobs);
    out->reqs = calloc(num, sizeof *out->reqs);
    if (offsets == NULL || out->reqs == NULL || !RAND_bytes(rnd, sizeof rnd)) {
        free(offsets);
        snprintf(why, why_len, "out of memory for %zu requests", num);
        bench_csrs_cleanup(out);
        return BENCH_E_CRYPTO;
    }
    snprintf(out->run_id, sizeof out->run_id, "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    out->num_reqs = num;
    for (unsigned t = 0; t < CSR_THREADS; t++) {
        jobs[t] = (csr_job_t){.pool = pool, .prefix = prefix, .run_id = out->run_id,
                              .num = num, .t = t, .offsets = offsets, .csrs = out};
        CBB_zero(&jobs[t].out);
        if (!CBB_init(&jobs[t].out, (num / CSR_THREADS + 1) * 1400))
            continue;                       /* jobs[t].ok stays false */
        started[t] = pthread_create(&threads[t], NULL, csr_worker, &jobs[t]) == 0;
        if (!started[t])
            csr_worker(&jobs[t]);           /* no thread: do the share here */
    }
    for (unsigned t = 0; t < CSR_THREADS; t++) {
        size_t len;
        if (started[t])
            pthread_join(threads[t], NULL);
        ok = ok && jobs[t].ok && CBB_finish(&jobs[t].out, &out->arena[t], &len);
        CBB_cleanup(&jobs[t].out);
    }
    for (size_t i = 0; ok && i < num; i++)
        out->reqs[i].data = out->arena[i % CSR_THREADS] + offsets[i];
    free(offsets);
    if (!ok) {
        snprintf(why, why_len, "building CSRs failed");
        bench_csrs_cleanup(out);
        return BENCH_E_CRYPTO;
    }
    return BENCH_OK;
}

void bench_csrs_cleanup(bench_csrs_t *csrs) {
    for (unsigned t = 0; t < CSR_THREADS; t++)
        OPENSSL_free(csrs->arena[t]);
    OPENSSL_free(csrs->csr0_der);
    free(csrs->reqs);
    memset(csrs, 0, sizeof *csrs);
}
