/* cx_verify: client certificate chain verification (see cx_verify.h). */
#include "crypto/cx_verify.h"

#include <openssl/mem.h>
#include <openssl/x509v3.h>
#include <string.h>

static X509 *cx_x509_from_buffer(const CRYPTO_BUFFER *b) {
    const uint8_t *p = CRYPTO_BUFFER_data(b);
    return d2i_X509(NULL, &p, (long)CRYPTO_BUFFER_len(b));
}

bool cx_verify_client_chain(X509_STORE *store, const STACK_OF(CRYPTO_BUFFER) *chain,
                            const uint8_t *ca_der, size_t ca_der_len, bool *ours) {
    return cx_verify_chain(store, chain, X509_PURPOSE_SSL_CLIENT, ca_der, ca_der_len, ours);
}

bool cx_verify_chain(X509_STORE *store, const STACK_OF(CRYPTO_BUFFER) *chain, int purpose,
                     const uint8_t *ca_der, size_t ca_der_len, bool *ours) {
    if (ours) *ours = false;
    if (!chain || sk_CRYPTO_BUFFER_num(chain) == 0) return false;
    bool ok = false;
    X509 *leaf = cx_x509_from_buffer(sk_CRYPTO_BUFFER_value(chain, 0));
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!leaf || !untrusted || !ctx) goto done;
    for (size_t i = 1; i < sk_CRYPTO_BUFFER_num(chain); i++) {
        X509 *x = cx_x509_from_buffer(sk_CRYPTO_BUFFER_value(chain, i));
        if (!x || !sk_X509_push(untrusted, x)) {
            X509_free(x);
            goto done;
        }
    }
    if (!X509_STORE_CTX_init(ctx, store, leaf, untrusted)) goto done;
    X509_STORE_CTX_set_purpose(ctx, purpose);
    if (X509_verify_cert(ctx) != 1) goto done;
    ok = true;
    if (ours && ca_der) {
        STACK_OF(X509) *vchain = X509_STORE_CTX_get0_chain(ctx);
        X509 *issuer = vchain && sk_X509_num(vchain) >= 2 ? sk_X509_value(vchain, 1) : NULL;
        uint8_t *der = NULL;
        int len = issuer ? i2d_X509(issuer, &der) : -1;
        *ours = len > 0 && (size_t)len == ca_der_len && memcmp(der, ca_der, ca_der_len) == 0;
        OPENSSL_free(der);
    }
done:
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    return ok;
}
