/* bench_crypto: the cost of the crypto one enrollment cannot avoid, measured
 * in the same run as the load so that stampeded's CPU time per enrollment can
 * be read as a multiple of it (a ratio that survives noisy machines):
 *   - the server side of one full TLS handshake with the server's own key and
 *     certificate (DIR/tls.key, tls.crt; for CAPF whichever the listener
 *     presents: by default the CA's, DIR/ca.key and ca.crt, as CUCM's CAPF
 *     certificate is the LSC issuer), the version, key-exchange group and
 *     cipher the load negotiated, no session tickets, done in memory over a
 *     BIO pair; only the server's SSL_do_handshake calls are timed;
 *   - the request check: EST: cx_csr_parse + cx_csr_verify of a bench CSR;
 *     CAPF: capf_spki_check of a phone's SubjectPublicKeyInfo against the
 *     key asked for (what stampeded's signer runs before signing; CAPF has
 *     no CSR signature to verify, capf-protocol.md §3.1);
 *   - the signature: EST: cx_cert_issue_leaf for that CSR; CAPF:
 *     cx_lsc_issue, the LSC of the device for that key (§3.3, default
 *     policy); both with DIR/ca.key and ca.crt.
 * Each is timed with CLOCK_THREAD_CPUTIME_ID, pinned to one CPU, after a
 * warm-up; the medians are reported.
 * Thread: main thread (before and after the load) or bench_main.c's sampler
 * thread during it. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "benches/bench.h"
#include "crypto/cx_cert.h"
#include "crypto/cx_csr.h"
#include "crypto/cx_lsc.h"
#include "dataplane/capf_spki.h"

#define CRYPTO_ITERATIONS 300
#define CRYPTO_WARMUP 20
#define CRYPTO_MAX_ROUNDS 16     /* handshake flights before giving up */

/* crypto_material_t: what the measurement loads from the data directory. */
typedef struct {
    SSL_CTX *server_ctx;
    SSL_CTX *client_ctx;
    EVP_PKEY *ca_key;
    uint8_t *ca_der;
    cx_issuer_t issuer;
} crypto_material_t;

static uint64_t crypto_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int crypto_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double crypto_median_us(uint64_t *ns, size_t n) {
    qsort(ns, n, sizeof *ns, crypto_cmp_u64);
    return (double)(n % 2 ? ns[n / 2] : (ns[n / 2 - 1] + ns[n / 2]) / 2) / 1000.0;
}

static void crypto_material_cleanup(crypto_material_t *m) {
    SSL_CTX_free(m->server_ctx);
    SSL_CTX_free(m->client_ctx);
    EVP_PKEY_free(m->ca_key);
    OPENSSL_free(m->ca_der);
    memset(m, 0, sizeof *m);
}

/* crypto_tls_ctxs builds the server context from DIR/`name`.crt and .key
 * (tls, or ca for a CAPF listener that presents the CA) and a client
 * context like the load's, held to the parameters of `tls`: the version on
 * both sides, the group on the server side (the client keeps its default
 * list: in TLS 1.2 that list also admits the server's ECDSA curve, and in
 * TLS 1.3 it decides the first key share, so the load's HelloRetryRequest, if
 * any, recurs), the cipher on the client side (TLS 1.2 only; TLS 1.3 suites
 * are fixed in BoringSSL). */
static bench_err_t crypto_tls_ctxs(crypto_material_t *m, const bench_cfg_t *cfg,
                                   const bench_tls_params_t *tls, const char *name, char *why,
                                   size_t why_len) {
    char crt[4096], key[4096], file[64];
    const char *group = SSL_get_curve_name(tls->group);
    snprintf(file, sizeof file, "%s.crt", name);
    if (bench_path(crt, sizeof crt, cfg->data_dir, file) != BENCH_OK)
        return BENCH_E_SETUP;
    snprintf(file, sizeof file, "%s.key", name);
    if (bench_path(key, sizeof key, cfg->data_dir, file) != BENCH_OK)
        return BENCH_E_SETUP;
    m->server_ctx = SSL_CTX_new(TLS_method());
    if (m->server_ctx == NULL ||
        !SSL_CTX_use_certificate_chain_file(m->server_ctx, crt) ||
        !SSL_CTX_use_PrivateKey_file(m->server_ctx, key, SSL_FILETYPE_PEM) ||
        !SSL_CTX_check_private_key(m->server_ctx)) {
        snprintf(why, why_len, "cannot load %s and %s", crt, key);
        return BENCH_E_SETUP;
    }
    /* Session tickets and caching are avoidable work (stampeded turns them off). */
    SSL_CTX_set_session_cache_mode(m->server_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(m->server_ctx, 0);
    SSL_CTX_set_options(m->server_ctx, SSL_OP_NO_TICKET);
    m->client_ctx = bench_tls_client_ctx(cfg, why, why_len);
    if (m->client_ctx == NULL)
        return BENCH_E_SETUP;
    if (!SSL_CTX_set_min_proto_version(m->server_ctx, tls->version) ||
        !SSL_CTX_set_max_proto_version(m->server_ctx, tls->version) ||
        (group != NULL && !SSL_CTX_set1_curves_list(m->server_ctx, group)) ||
        (tls->version == TLS1_2_VERSION && tls->cipher != NULL &&
         !SSL_CTX_set_strict_cipher_list(m->client_ctx, SSL_CIPHER_get_name(tls->cipher)))) {
        snprintf(why, why_len, "cannot hold the handshake to the load's parameters");
        return BENCH_E_TLS;
    }
    return BENCH_OK;
}

/* crypto_issuer loads DIR/ca.key and the issuer view of DIR/ca.crt. */
static bench_err_t crypto_issuer(crypto_material_t *m, const bench_cfg_t *cfg, char *why,
                                 size_t why_len) {
    char crt[4096], key[4096];
    CBS subject, spki;
    if (bench_path(crt, sizeof crt, cfg->data_dir, "ca.crt") != BENCH_OK ||
        bench_path(key, sizeof key, cfg->data_dir, "ca.key") != BENCH_OK)
        return BENCH_E_SETUP;
    BIO *kb = BIO_new_file(key, "r"), *cb = BIO_new_file(crt, "r");
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    m->ca_key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    int len = x ? i2d_X509(x, &m->ca_der) : -1;
    BIO_free(kb);
    BIO_free(cb);
    X509_free(x);
    if (m->ca_key == NULL || len <= 0) {
        snprintf(why, why_len, "cannot load %s and %s", crt, key);
        return BENCH_E_SETUP;
    }
    if (cx_cert_parse_basic(m->ca_der, (size_t)len, &subject, &spki, NULL, NULL) != CX_OK ||
        cx_cert_ski(m->issuer.ski, &spki) != CX_OK) {
        snprintf(why, why_len, "cannot parse %s", crt);
        return BENCH_E_SETUP;
    }
    m->issuer.subject = subject;
    m->issuer.key = m->ca_key;
    return BENCH_OK;
}

/* crypto_handshake runs one handshake in memory and adds the server's CPU
 * time to *server_ns. `out` receives the server's view of the parameters. */
static bench_err_t crypto_handshake(const crypto_material_t *m, const char *sni,
                                    uint64_t *server_ns, bench_tls_params_t *out,
                                    char *why, size_t why_len) {
    SSL *client = SSL_new(m->client_ctx), *server = SSL_new(m->server_ctx);
    BIO *cbio = NULL, *sbio = NULL;
    bench_err_t err = BENCH_E_TLS;
    bool client_done = false, server_done = false;
    uint64_t t = 0;

    if (client == NULL || server == NULL || !BIO_new_bio_pair(&cbio, 0, &sbio, 0) ||
        (sni != NULL && !SSL_set_tlsext_host_name(client, sni))) {
        snprintf(why, why_len, "cannot set up an in-memory handshake");
        BIO_free(cbio);
        BIO_free(sbio);
        goto out;
    }
    SSL_set_bio(client, cbio, cbio);
    SSL_set_bio(server, sbio, sbio);
    SSL_set_connect_state(client);
    SSL_set_accept_state(server);
    for (int round = 0; round < CRYPTO_MAX_ROUNDS && !(client_done && server_done); round++) {
        int r;
        if (!client_done) {
            r = SSL_do_handshake(client);
            client_done = r == 1;
            if (r != 1 && SSL_get_error(client, r) != SSL_ERROR_WANT_READ)
                goto tls_fail;
        }
        if (!server_done) {
            uint64_t t0 = crypto_cpu_ns();
            r = SSL_do_handshake(server);
            t += crypto_cpu_ns() - t0;
            server_done = r == 1;
            if (r != 1 && SSL_get_error(server, r) != SSL_ERROR_WANT_READ)
                goto tls_fail;
        }
    }
    if (!(client_done && server_done)) {
        snprintf(why, why_len, "in-memory handshake did not finish");
        goto out;
    }
    bench_tls_params_get(out, client);
    *server_ns += t;
    err = BENCH_OK;
    goto out;
tls_fail:
    {
        char msg[200];
        bench_tls_error_str(msg, sizeof msg, client);
        snprintf(why, why_len, "in-memory handshake failed: %s", msg);
    }
out:
    SSL_free(client);
    SSL_free(server);
    return err;
}

/* crypto_csr_and_leaf times one CSR check and one leaf issuance. */
static bench_err_t crypto_csr_and_leaf(const crypto_material_t *m, const uint8_t *der,
                                       size_t der_len, uint64_t *verify_ns, uint64_t *sign_ns,
                                       char *why, size_t why_len) {
    static const cx_leaf_policy_t pol = {.validity_days = 365, .backdate_s = 300};
    uint8_t serial[CX_SERIAL_LEN];
    cx_csr_t csr;
    CBB cert;
    cx_err_t e;

    uint64_t t0 = crypto_cpu_ns();
    e = cx_csr_parse(&csr, der, der_len);
    if (e == CX_OK)
        e = cx_csr_verify(&csr, NULL);
    *verify_ns = crypto_cpu_ns() - t0;
    if (e != CX_OK) {
        snprintf(why, why_len, "cx_csr_parse/cx_csr_verify: %s", cx_err_str(e));
        return BENCH_E_CRYPTO;
    }
    if (!CBB_init(&cert, 2048)) {
        snprintf(why, why_len, "out of memory");
        return BENCH_E_CRYPTO;
    }
    t0 = crypto_cpu_ns();
    e = cx_cert_issue_leaf(&cert, serial, &m->issuer, &csr, &pol, (int64_t)time(NULL));
    *sign_ns = crypto_cpu_ns() - t0;
    CBB_cleanup(&cert);
    if (e != CX_OK) {
        snprintf(why, why_len, "cx_cert_issue_leaf: %s", cx_err_str(e));
        return BENCH_E_CRYPTO;
    }
    return BENCH_OK;
}

/* crypto_spki_and_lsc times one CAPF key check and one LSC issuance, as
 * stampeded's signer does them (capf_sign_lsc). */
static bench_err_t crypto_spki_and_lsc(const crypto_material_t *m, const bench_crypto_in_t *in,
                                       uint64_t *check_ns, uint64_t *sign_ns, char *why,
                                       size_t why_len) {
    capf_keyspec_t want = in->key_type == BENCH_KEY_EC256
                              ? (capf_keyspec_t){CAPF_KEY_EC, 0, CAPF_CURVE_P256}
                              : (capf_keyspec_t){CAPF_KEY_RSA, 2048, 0};
    uint8_t serial[CX_SERIAL_LEN];
    cx_lsc_policy_t pol;
    CBS spki;
    CBB cert;

    cx_lsc_policy_default(&pol);
    uint64_t t0 = crypto_cpu_ns();
    capf_err_t ce = capf_spki_check(NULL, &want, in->der, in->der_len, NULL, NULL);
    *check_ns = crypto_cpu_ns() - t0;
    if (ce != CAPF_OK) {
        snprintf(why, why_len, "capf_spki_check: %s", capf_err_str(ce));
        return BENCH_E_CRYPTO;
    }
    if (!CBB_init(&cert, 2048)) {
        snprintf(why, why_len, "out of memory");
        return BENCH_E_CRYPTO;
    }
    CBS_init(&spki, in->der, in->der_len);
    t0 = crypto_cpu_ns();
    cx_err_t e = cx_lsc_issue(&cert, serial, &m->issuer, &spki, in->device, NULL, NULL, &pol,
                              (int64_t)time(NULL));
    *sign_ns = crypto_cpu_ns() - t0;
    CBB_cleanup(&cert);
    if (e != CX_OK) {
        snprintf(why, why_len, "cx_lsc_issue: %s", cx_err_str(e));
        return BENCH_E_CRYPTO;
    }
    return BENCH_OK;
}

/* crypto_pin pins the calling thread to the CPU it is on; `saved` keeps the
 * old mask for crypto_unpin. */
static void crypto_pin(cpu_set_t *saved) {
    cpu_set_t one;
    int cpu = sched_getcpu();
    CPU_ZERO(saved);
    sched_getaffinity(0, sizeof *saved, saved);
    CPU_ZERO(&one);
    CPU_SET(cpu < 0 ? 0 : cpu, &one);
    sched_setaffinity(0, sizeof one, &one);
}

/* bench_crypto_sampler: the material plus room for `cap` samples. */
struct bench_crypto_sampler {
    crypto_material_t m;
    const char *sni;
    bench_tls_params_t want;    /* the load's parameters */
    bench_tls_params_t got;     /* what the in-memory handshakes negotiated */
    size_t cap, n;
    uint64_t *hs, *verify, *sign;
    bench_crypto_in_t in;       /* what is checked and signed */
};

void bench_crypto_close(bench_crypto_sampler_t *s) {
    if (s == NULL)
        return;
    free(s->hs);
    crypto_material_cleanup(&s->m);
    free(s);
    ERR_clear_error();
}

bench_err_t bench_crypto_open(bench_crypto_sampler_t **out, const bench_cfg_t *cfg,
                              const bench_tls_params_t *tls, const bench_crypto_in_t *in,
                              size_t cap, char *why, size_t why_len) {
    bench_crypto_sampler_t *s = calloc(1, sizeof *s);
    bench_err_t err = BENCH_E_SETUP;
    *out = NULL;
    snprintf(why, why_len, "out of memory");
    if (s == NULL)
        return BENCH_E_SETUP;
    s->hs = calloc(3 * cap, sizeof *s->hs);
    if (s->hs != NULL) {
        s->verify = s->hs + cap;
        s->sign = s->hs + 2 * cap;
        s->cap = cap;
        s->sni = bench_tls_sni(cfg);
        s->want = *tls;
        s->in = *in;
        err = crypto_tls_ctxs(&s->m, cfg, tls, in->tls_name ? in->tls_name : "tls", why,
                              why_len);
        if (err == BENCH_OK)
            err = crypto_issuer(&s->m, cfg, why, why_len);
    }
    if (err != BENCH_OK) {
        bench_crypto_close(s);
        return err;
    }
    why[0] = '\0';                      /* no stale cause for a later "why not" */
    *out = s;
    return BENCH_OK;
}

bench_err_t bench_crypto_sample(bench_crypto_sampler_t *s, bool keep, char *why,
                                size_t why_len) {
    uint64_t h = 0, v = 0, g = 0;
    bench_err_t err = crypto_handshake(&s->m, s->sni, &h, &s->got, why, why_len);
    if (err == BENCH_OK && s->in.mode == BENCH_MODE_CAPF)
        err = crypto_spki_and_lsc(&s->m, &s->in, &v, &g, why, why_len);
    else if (err == BENCH_OK)
        err = crypto_csr_and_leaf(&s->m, s->in.der, s->in.der_len, &v, &g, why, why_len);
    if (err == BENCH_OK && (s->got.version != s->want.version ||
                            (s->want.group != 0 && s->got.group != s->want.group))) {
        snprintf(why, why_len, "the in-memory handshake negotiated other parameters than the load");
        err = BENCH_E_TLS;
    }
    if (err == BENCH_OK && keep && s->n < s->cap) {
        s->hs[s->n] = h;
        s->verify[s->n] = v;
        s->sign[s->n] = g;
        s->n++;
    }
    return err;
}

bool bench_crypto_result(bench_crypto_sampler_t *s, bench_crypto_t *out) {
    memset(out, 0, sizeof *out);
    if (s->n == 0)
        return false;
    out->handshake_us = crypto_median_us(s->hs, s->n);
    out->csr_verify_us = crypto_median_us(s->verify, s->n);
    out->leaf_sign_us = crypto_median_us(s->sign, s->n);
    out->iterations = (unsigned)s->n;
    out->tls = s->got;
    return true;
}

bench_err_t bench_crypto_measure(bench_crypto_t *out, const bench_cfg_t *cfg,
                                 const bench_tls_params_t *tls, const bench_crypto_in_t *in,
                                 char *why, size_t why_len) {
    bench_crypto_sampler_t *s;
    cpu_set_t saved;
    memset(out, 0, sizeof *out);
    bench_err_t err = bench_crypto_open(&s, cfg, tls, in, CRYPTO_ITERATIONS, why, why_len);
    if (err != BENCH_OK)
        return err;
    crypto_pin(&saved);
    for (size_t i = 0; err == BENCH_OK && i < CRYPTO_WARMUP + CRYPTO_ITERATIONS; i++)
        err = bench_crypto_sample(s, i >= CRYPTO_WARMUP, why, why_len);
    sched_setaffinity(0, sizeof saved, &saved);
    if (err == BENCH_OK)
        bench_crypto_result(s, out);
    bench_crypto_close(s);
    return err;
}
