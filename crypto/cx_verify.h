/* cx_verify: verification of a TLS client's certificate chain (EST
 * certificate authentication) against a trust store holding our CA and the
 * configured manufacturer CAs. It costs signature verifications, so it runs
 * on signer workers, never on a polling core.
 * Thread: signer worker (X509_STORE is safe for concurrent verification). */
#ifndef CX_VERIFY_H
#define CX_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/pool.h>
#include <openssl/x509.h>

/* cx_verify_chain verifies `chain` (leaf first, as received in TLS) for
 * `purpose` (X509_PURPOSE_SSL_CLIENT or _SSL_SERVER) against `store` at the
 * current time. If `ours` is not NULL, on success it says whether the leaf
 * was issued directly by the CA certificate `ca_der` (may be NULL then).
 * Returns true if the chain verified. */
bool cx_verify_chain(X509_STORE *store, const STACK_OF(CRYPTO_BUFFER) *chain, int purpose,
                     const uint8_t *ca_der, size_t ca_der_len, bool *ours);

/* cx_verify_client_chain is cx_verify_chain for a TLS client's chain
 * (EST certificate authentication); `ours` is required. */
bool cx_verify_client_chain(X509_STORE *store, const STACK_OF(CRYPTO_BUFFER) *chain,
                            const uint8_t *ca_der, size_t ca_der_len, bool *ours);

#endif
