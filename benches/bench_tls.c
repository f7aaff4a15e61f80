/* bench_tls: the TLS client side of stampede-bench. One SSL_CTX, built at
 * startup, serves the preflight, every load connection and the client half of
 * the in-memory handshakes of the crypto measurement, so the measured
 * handshake is the one the load made. Also reads back what a handshake
 * negotiated, which the measurement then reproduces.
 * Thread: bench_tls_client_ctx at startup only; the rest from any thread. */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "benches/bench.h"
#include "crypto/cx_verify.h"

/* The server certificate is verified in full (chain to DIR/ca.crt, TLS
 * server purpose) the first time it is seen and pinned afterwards: later
 * connections that present the same bytes skip the chain signature check.
 * The handshake's own CertificateVerify is always checked by BoringSSL, so
 * every connection still proves possession of the pinned key. This keeps the
 * bench's CPU for the server's work on a machine it shares. */
static _Atomic(CRYPTO_BUFFER *) bench_tls_pinned;

static enum ssl_verify_result_t bench_tls_verify(SSL *ssl, uint8_t *out_alert) {
    const STACK_OF(CRYPTO_BUFFER) *chain = SSL_get0_peer_certificates(ssl);
    if (!chain || sk_CRYPTO_BUFFER_num(chain) == 0) {
        *out_alert = SSL_AD_CERTIFICATE_REQUIRED;
        return ssl_verify_invalid;
    }
    CRYPTO_BUFFER *leaf = sk_CRYPTO_BUFFER_value(chain, 0);
    CRYPTO_BUFFER *pin = atomic_load(&bench_tls_pinned);
    if (pin && CRYPTO_BUFFER_len(pin) == CRYPTO_BUFFER_len(leaf) &&
        memcmp(CRYPTO_BUFFER_data(pin), CRYPTO_BUFFER_data(leaf), CRYPTO_BUFFER_len(pin)) == 0)
        return ssl_verify_ok;
    X509_STORE *store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
    if (!cx_verify_chain(store, chain, X509_PURPOSE_SSL_SERVER, NULL, 0, NULL)) {
        *out_alert = SSL_AD_BAD_CERTIFICATE;
        return ssl_verify_invalid;
    }
    CRYPTO_BUFFER *expected = NULL;
    CRYPTO_BUFFER_up_ref(leaf);
    if (!atomic_compare_exchange_strong(&bench_tls_pinned, &expected, leaf))
        CRYPTO_BUFFER_free(leaf); /* another thread pinned first */
    return ssl_verify_ok;
}

SSL_CTX *bench_tls_client_ctx(const bench_cfg_t *cfg, char *why, size_t why_len) {
    uint16_t version = cfg->tls12 ? TLS1_2_VERSION : TLS1_3_VERSION;
    char ca_path[4096];
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        snprintf(why, why_len, "SSL_CTX_new failed");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, version) ||
        !SSL_CTX_set_max_proto_version(ctx, version)) {
        snprintf(why, why_len, "cannot restrict the TLS version");
        goto fail;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (cfg->no_verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    if (bench_path(ca_path, sizeof ca_path, cfg->data_dir, "ca.crt") != BENCH_OK ||
        !SSL_CTX_load_verify_locations(ctx, ca_path, NULL)) {
        ERR_clear_error();
        snprintf(why, why_len, "cannot load %s/ca.crt to verify the server "
                 "(give --data-dir, or --no-verify)", cfg->data_dir);
        goto fail;
    }
    SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, bench_tls_verify);
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

const char *bench_tls_sni(const bench_cfg_t *cfg) {
    uint8_t addr[16];
    if (inet_pton(AF_INET, cfg->host, addr) == 1 || inet_pton(AF_INET6, cfg->host, addr) == 1)
        return NULL;
    return cfg->host;
}

void bench_tls_params_get(bench_tls_params_t *out, const SSL *ssl) {
    out->version = (uint16_t)SSL_version(ssl);
    out->group = SSL_get_curve_id(ssl);
    out->sigalg = SSL_get_peer_signature_algorithm(ssl);
    out->cipher = SSL_get_current_cipher(ssl);
    out->hrr = SSL_used_hello_retry_request(ssl) == 1;
}

void bench_tls_params_str(char *out, size_t cap, const bench_tls_params_t *p) {
    const char *version = p->version == TLS1_3_VERSION   ? "TLSv1.3"
                          : p->version == TLS1_2_VERSION ? "TLSv1.2"
                                                         : "TLS?";
    const char *group = p->group ? SSL_get_curve_name(p->group) : NULL;
    const char *sigalg = p->sigalg ? SSL_get_signature_algorithm_name(p->sigalg, 0) : NULL;
    snprintf(out, cap, "%s %s %s %s%s", version, group ? group : "group?",
             p->cipher ? SSL_CIPHER_standard_name(p->cipher) : "cipher?",
             sigalg ? sigalg : "sigalg?", p->hrr ? " (HelloRetryRequest)" : "");
}

void bench_tls_error_str(char *out, size_t cap, const SSL *ssl) {
    char err[200] = "";
    uint32_t e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, err, sizeof err);
    ERR_clear_error();
    long vr = ssl && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED
                  ? SSL_get_verify_result(ssl)
                  : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(out, cap, "%s; certificate verify: %s", err[0] ? err : "handshake failed",
                 X509_verify_cert_error_string(vr));
    else
        snprintf(out, cap, "%s", err[0] ? err : "no BoringSSL error queued");
}
