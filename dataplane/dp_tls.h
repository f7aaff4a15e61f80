/* dp_tls: the TLS engine on BoringSSL. A custom BIO moves record bytes
 * through the session's transport ops (so TLS never sees a socket), and the
 * server key lives behind SSL_PRIVATE_KEY_METHOD: the sign/decrypt callbacks
 * queue the operation in the signing pool and return "retry"; when the worker
 * is done the polling core re-drives the handshake, which collects the result
 * through the complete callback. A polling core therefore never performs a
 * private-key operation, and an RSA server key never stalls it.
 * Session caching is off (BoringSSL's server cache takes a lock); handshake
 * configuration is shed after the handshake to keep idle sessions small.
 * Thread: dp_tls_ctx_new at startup; the rest on the session's polling core,
 * except dp_tls_keyop_run on signer workers. */
#ifndef DP_TLS_H
#define DP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/ssl.h>

#include "crypto/cx_ca.h"
#include "dataplane/dp_config.h"
#include "dataplane/dp_core.h"

/* dp_tls_ctx_new builds a listener's SSL_CTX from `cfg` (versions,
 * ciphers, client-certificate policy, trust bundle), the server certificate
 * `cert_der` (whose private key the signing pool uses: the TLS key, or for
 * CAPF the CA key, see capf_tls_cert) and `ca` (our CA is always trusted
 * for client certificates). With
 * `client_certs` false no client certificate is requested (CAPF: devices
 * prove themselves inside the protocol, capf-protocol.md §1). Session
 * tickets are off either way (CAPF §1.1 rule 4).
 * Returns the context or NULL with a cause in `why`. Startup only. */
SSL_CTX *dp_tls_ctx_new(const dp_config_t *cfg, const cx_ca_t *ca, const uint8_t *cert_der, size_t cert_len,
                        bool client_certs, char *why, size_t why_len);

/* dp_tls_store_fill adds our CA certificate (if `ca` is not NULL) and the
 * PEM certificates of `bundle` (if not "") to `st`. Returns 0, or -1 with a
 * cause naming `setting` in `why`. Startup only. */
int dp_tls_store_fill(X509_STORE *st, const cx_ca_t *ca, const char *bundle, const char *setting, char *why,
                      size_t why_len);

/* dp_tls_session_new creates the SSL object of session `s`. Returns 0 or -1. */
int dp_tls_session_new(SSL_CTX *ctx, dp_sess_t *s);

/* dp_tls_keyop_run performs the queued private-key operation `k` with the
 * server key. Thread: signer worker. */
void dp_tls_keyop_run(dp_keyop_t *k, EVP_PKEY *key);

/* dp_tls_peer_info returns the client's certificate chain as received
 * (NULL if none) and its leaf DER; both stay valid while the SSL lives.
 * Nothing is verified here (see cx_verify). Thread: polling core. */
void dp_tls_peer_info(SSL *ssl, const STACK_OF(CRYPTO_BUFFER) **chain, const uint8_t **der,
                      size_t *der_len);

#endif
