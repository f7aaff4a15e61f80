/* dp_tls: BoringSSL glue: the transport BIO, the offloaded private key, and
 * listener configuration (see dp_tls.h). */
#include "dataplane/dp_tls.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"

/* Implemented in dp_sess.c: a key-operation slot for the session (NULL if
 * out of memory), and the state change once it is queued. */
dp_keyop_t *dp_sess_keyop(dp_sess_t *s);
void dp_sess_keyop_submitted(dp_sess_t *s);
int dp_sess_flush(dp_sess_t *s);

static BIO_METHOD *dp_bio_method(void);

/* ---- transport BIO ---- */

static int dp_bio_serve(uint8_t *from, size_t *off, size_t avail, char *out, int len) {
    size_t n = avail - *off < (size_t)len ? avail - *off : (size_t)len;
    memcpy(out, from + *off, n);
    *off += n;
    return (int)n;
}

static int dp_bio_read(BIO *bio, char *out, int len) {
    dp_sess_t *s = BIO_get_data(bio);
    dp_core_t *c = s->core;
    BIO_clear_retry_flags(bio);
    if (s->stash_off < s->stash_len) return dp_bio_serve(s->stash, &s->stash_off, s->stash_len, out, len);
    if (c->rx_owner == s && c->rx_off < c->rx_len) return dp_bio_serve(c->rx, &c->rx_off, c->rx_len, out, len);
    ssize_t n;
    if (c->rx_owner == s) { /* read ahead: take everything available at once */
        n = c->rt->transport->recv(&s->conn, c->rx, DP_RX_CAP);
        if (n > 0) {
            c->rx_off = 0;
            c->rx_len = (size_t)n;
            return dp_bio_serve(c->rx, &c->rx_off, c->rx_len, out, len);
        }
    } else {
        n = c->rt->transport->recv(&s->conn, out, (size_t)len);
    }
    if (n > 0) return (int)n;
    if (n == DP_IO_AGAIN) {
        BIO_set_retry_read(bio);
        return -1;
    }
    return n == DP_IO_EOF ? 0 : -1;
}

static int dp_bio_write(BIO *bio, const char *in, int len) {
    dp_sess_t *s = BIO_get_data(bio);
    dp_core_t *c = s->core;
    BIO_clear_retry_flags(bio);
    if (s->pending_len) { /* keep order: older bytes first */
        s->want_write = true;
        BIO_set_retry_write(bio);
        return -1;
    }
    if (c->tx_owner == s && c->tx_len + (size_t)len <= DP_TX_CAP) {
        memcpy(c->tx + c->tx_len, in, (size_t)len);
        c->tx_len += (size_t)len;
        return len;
    }
    if (c->tx_owner == s && dp_sess_flush(s) != 0) {
        s->want_write = true;
        BIO_set_retry_write(bio);
        return -1;
    }
    ssize_t n = c->rt->transport->send(&s->conn, in, (size_t)len);
    if (n > 0) return (int)n;
    if (n == DP_IO_AGAIN) {
        s->want_write = true;
        BIO_set_retry_write(bio);
    }
    return -1;
}

static long dp_bio_ctrl(BIO *bio, int cmd, long larg, void *parg) {
    (void)bio, (void)larg, (void)parg;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int dp_bio_create(BIO *bio) {
    BIO_set_init(bio, 1);
    return 1;
}

static BIO_METHOD *dp_bio_method(void) {
    static BIO_METHOD *m; /* written once at startup (dp_tls_ctx_new) */
    if (!m) {
        m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "stampede-transport");
        if (!m || !BIO_meth_set_read(m, dp_bio_read) || !BIO_meth_set_write(m, dp_bio_write) ||
            !BIO_meth_set_ctrl(m, dp_bio_ctrl) || !BIO_meth_set_create(m, dp_bio_create))
            return NULL;
    }
    return m;
}

/* ---- offloaded private key ---- */

static int dp_keyop_submit(SSL *ssl, int kind, uint16_t sigalg, const uint8_t *in, size_t in_len) {
    dp_sess_t *s = SSL_get_app_data(ssl);
    if (in_len > sizeof(((dp_keyop_t *)0)->in)) return -1;
    dp_keyop_t *k = dp_sess_keyop(s);
    if (!k) return -1;
    k->job.kind = (uint8_t)kind;
    k->sigalg = sigalg;
    memcpy(k->in, in, in_len);
    k->in_len = in_len;
    k->out_len = 0;
    k->job.result = -1;
    dp_core_t *c = s->core;
    /* A connection already accepted finishes its handshake: load is shed
     * at the request, with 503 + Retry-After, not with a TLS failure. */
    if (cx_pool_submit(c->rt->pool, c->id, &k->job, true) != CX_OK) return -1;
    dp_sess_keyop_submitted(s);
    return 0;
}

static enum ssl_private_key_result_t dp_key_sign(SSL *ssl, uint8_t *out, size_t *out_len,
                                                 size_t max_out, uint16_t sigalg,
                                                 const uint8_t *in, size_t in_len) {
    (void)out, (void)out_len, (void)max_out;
    return dp_keyop_submit(ssl, DP_JOB_KEY_SIGN, sigalg, in, in_len) ? ssl_private_key_failure
                                                                       : ssl_private_key_retry;
}

static enum ssl_private_key_result_t dp_key_decrypt(SSL *ssl, uint8_t *out, size_t *out_len,
                                                    size_t max_out, const uint8_t *in,
                                                    size_t in_len) {
    (void)out, (void)out_len, (void)max_out;
    return dp_keyop_submit(ssl, DP_JOB_KEY_DECRYPT, 0, in, in_len) ? ssl_private_key_failure
                                                                     : ssl_private_key_retry;
}

static enum ssl_private_key_result_t dp_key_complete(SSL *ssl, uint8_t *out, size_t *out_len,
                                                     size_t max_out) {
    dp_sess_t *s = SSL_get_app_data(ssl);
    dp_keyop_t *k = s->keyop;
    if (!k || s->state == DP_S_JOB) return ssl_private_key_retry;
    if (k->job.result != 0 || k->out_len > max_out) return ssl_private_key_failure;
    memcpy(out, k->out, k->out_len);
    *out_len = k->out_len;
    return ssl_private_key_success;
}

static const SSL_PRIVATE_KEY_METHOD dp_key_method = {dp_key_sign, dp_key_decrypt, dp_key_complete};

void dp_tls_keyop_run(dp_keyop_t *k, EVP_PKEY *key) {
    k->job.result = -1;
    if (k->job.kind == DP_JOB_KEY_DECRYPT) {
        RSA *rsa = EVP_PKEY_get0_RSA(key);
        size_t n;
        if (rsa && RSA_decrypt(rsa, &n, k->out, sizeof(k->out), k->in, k->in_len, RSA_NO_PADDING)) {
            k->out_len = n;
            k->job.result = 0;
        }
        return;
    }
    const EVP_MD *md = SSL_get_signature_algorithm_digest(k->sigalg);
    EVP_MD_CTX ctx;
    EVP_PKEY_CTX *pctx;
    size_t n = sizeof(k->out);
    EVP_MD_CTX_init(&ctx);
    if (EVP_DigestSignInit(&ctx, &pctx, md, NULL, key) &&
        (!SSL_is_signature_algorithm_rsa_pss(k->sigalg) ||
         (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) &&
          EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, -1))) &&
        EVP_DigestSign(&ctx, k->out, &n, k->in, k->in_len)) {
        k->out_len = n;
        k->job.result = 0;
    }
    EVP_MD_CTX_cleanup(&ctx);
}

/* ---- client certificates ---- */

static enum ssl_verify_result_t dp_verify_cb(SSL *ssl, uint8_t *out_alert) {
    /* Chain verification happens on a signer worker when a request relies
     * on the certificate (cx_verify_client_chain); the handshake itself
     * always proceeds, so a client whose certificate is not trusted can
     * still authenticate with HTTP Basic. */
    (void)ssl, (void)out_alert;
    return ssl_verify_ok;
}

void dp_tls_peer_info(SSL *ssl, const STACK_OF(CRYPTO_BUFFER) **chain, const uint8_t **der,
                      size_t *der_len) {
    *chain = SSL_get0_peer_certificates(ssl);
    *der = NULL;
    *der_len = 0;
    if (!*chain || sk_CRYPTO_BUFFER_num(*chain) == 0) {
        *chain = NULL;
        return;
    }
    CRYPTO_BUFFER *leaf = sk_CRYPTO_BUFFER_value(*chain, 0);
    *der = CRYPTO_BUFFER_data(leaf);
    *der_len = CRYPTO_BUFFER_len(leaf);
}

/* ---- context ---- */

static int dp_tls_version(const char *s, uint16_t *out) {
    static const struct { const char *name; uint16_t v; } vs[] = {
        {"1.0", TLS1_VERSION}, {"1.1", TLS1_1_VERSION}, {"1.2", TLS1_2_VERSION}, {"1.3", TLS1_3_VERSION}};
    for (size_t i = 0; i < 4; i++)
        if (!strcmp(s, vs[i].name)) {
            *out = vs[i].v;
            return 0;
        }
    return -1;
}

int dp_tls_store_fill(X509_STORE *st, const cx_ca_t *ca, const char *bundle, const char *setting, char *why,
                      size_t why_len) {
    if (ca) {
        const uint8_t *p = ca->ca_der;
        X509 *x = d2i_X509(NULL, &p, (long)ca->ca_der_len);
        int ok = x && X509_STORE_add_cert(st, x);
        X509_free(x);
        if (!ok) {
            snprintf(why, why_len, "cannot add the CA certificate to the %s trust store", setting);
            return -1;
        }
    }
    if (bundle[0] && !X509_STORE_load_locations(st, bundle, NULL)) {
        snprintf(why, why_len, "%s: cannot read PEM trust bundle %s", setting, bundle);
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static int dp_tls_trust(SSL_CTX *ctx, const dp_config_t *cfg, const cx_ca_t *ca, char *why,
                        size_t why_len) {
    if (dp_tls_store_fill(SSL_CTX_get_cert_store(ctx), ca, cfg->client_ca, "client_ca", why, why_len)) return -1;
    if (!strcmp(cfg->client_cert, "optional")) {
        SSL_CTX_set_custom_verify(ctx, SSL_VERIFY_PEER, dp_verify_cb);
    } else if (strcmp(cfg->client_cert, "off") != 0) {
        snprintf(why, why_len, "client_cert: '%s' is not 'optional' or 'off'", cfg->client_cert);
        return -1;
    }
    return 0;
}

SSL_CTX *dp_tls_ctx_new(const dp_config_t *cfg, const cx_ca_t *ca, const uint8_t *cert_der, size_t cert_len,
                        bool client_certs, char *why, size_t why_len) {
    uint16_t vmin, vmax;
    if (dp_tls_version(cfg->tls_min, &vmin) || dp_tls_version(cfg->tls_max, &vmax) || vmin > vmax ||
        vmax < TLS1_2_VERSION) {
        snprintf(why, why_len, "tls_min/tls_max: '%s'..'%s' is not a valid range (1.0..1.3, max >= 1.2)",
                 cfg->tls_min, cfg->tls_max);
        return NULL;
    }
    if (vmin < TLS1_2_VERSION && !cfg->tls_legacy) {
        snprintf(why, why_len, "tls_min %s needs tls_legacy = true", cfg->tls_min);
        return NULL;
    }
    if (!dp_bio_method()) {
        snprintf(why, why_len, "cannot create the transport BIO");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) goto nomem;
    SSL_CTX_set_min_proto_version(ctx, vmin);
    SSL_CTX_set_max_proto_version(ctx, vmax);
    const char *ciphers = cfg->tls_ciphers[0] ? cfg->tls_ciphers
                          : cfg->tls_legacy ? "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:AES128-SHA:AES256-SHA"
                                            : "ECDHE+AESGCM:ECDHE+CHACHA20";
    if (!SSL_CTX_set_strict_cipher_list(ctx, ciphers)) {
        snprintf(why, why_len, "tls_ciphers: '%s' is not a valid BoringSSL cipher list", ciphers);
        goto fail;
    }
    CRYPTO_BUFFER *leaf = CRYPTO_BUFFER_new(cert_der, cert_len, NULL);
    int ok = leaf && SSL_CTX_set_chain_and_key(ctx, &leaf, 1, NULL, &dp_key_method);
    CRYPTO_BUFFER_free(leaf);
    if (!ok) {
        snprintf(why, why_len, "cannot install the TLS server certificate");
        goto fail;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (client_certs && dp_tls_trust(ctx, cfg, ca, why, why_len)) goto fail;
    return ctx;
nomem:
    snprintf(why, why_len, "out of memory creating the TLS context");
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int dp_tls_session_new(SSL_CTX *ctx, dp_sess_t *s) {
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return -1;
    BIO *bio = BIO_new(dp_bio_method());
    if (!bio) {
        SSL_free(ssl);
        return -1;
    }
    BIO_set_data(bio, s);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_app_data(ssl, s);
    SSL_set_accept_state(ssl);
    SSL_set_shed_handshake_config(ssl, 1);
    s->ssl = ssl;
    return 0;
}
