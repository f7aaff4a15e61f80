/* capf_spki: checks the client's new public key before the LSC is signed
 * (capf-protocol.md §3.1-3.2). CAPF's "CSR" is a bare DER
 * SubjectPublicKeyInfo with no signature, so there is no proof of
 * possession: all the server can do is insist that the key is well formed
 * and exactly what the session asked for in KEY_GENERATE_REQUEST.
 * Not covered here (they need the registry): the deny-list of known weak
 * moduli and "key already bound to another device" (§3.2 rules 3 and 4);
 * capf_spki_check hands back the hash the registry needs for the latter.
 * Thread: any thread; pure functions (public-key parsing only, no
 * private-key operation), no shared state. It allocates (the EVP_PKEY), so
 * it runs where the session may allocate, e.g. with the signing job. */
#ifndef CAPF_SPKI_H
#define CAPF_SPKI_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#include "dataplane/capf_err.h"
#include "dataplane/capf_msg.h"

/* Default RSA bounds. §5.1 lets an operator provision 512..4096; below 2048
 * must be an explicit setting (FIPS phones refuse < 2048, §1). */
#define CAPF_SPKI_RSA_MIN_DEFAULT 2048
#define CAPF_SPKI_RSA_MAX 4096
/* Length of the key hash (SHA-256). */
#define CAPF_SPKI_HASH_LEN 32

/* capf_keyspec_t: the key the session asked for in KEY_GENERATE_REQUEST:
 * RSA of `rsa_bits` (version 2 clients: always RSA), or EC on `curve`. */
typedef struct {
    capf_key_type_t type;
    uint16_t rsa_bits;       /* RSA: exact modulus size requested */
    capf_curve_t curve;      /* EC: the curve requested */
} capf_keyspec_t;

/* capf_spki_policy_t: operator bounds, from settings. */
typedef struct {
    uint16_t rsa_min_bits;   /* 0: CAPF_SPKI_RSA_MIN_DEFAULT */
} capf_spki_policy_t;

/* capf_spki_check validates the PUBLIC_KEY value `der` against `want`
 * (§3.2 rules 1 to 3), in this order:
 *  1. exactly one DER SubjectPublicKeyInfo, nothing after it;
 *  2. algorithm rsaEncryption or id-ecPublicKey, and the one requested;
 *  3. RSA: modulus bits == want->rsa_bits and within [policy minimum,
 *     CAPF_SPKI_RSA_MAX]; exponent odd, >= 3, <= 2^32 (so 3 is accepted);
 *     EC: named curve P-256/P-384/P-521 equal to want->curve; point
 *     decodes, lies on the curve and is not the point at infinity
 *     (compressed points are accepted).
 * `pol` may be NULL (defaults).
 * Ownership: `der` is only read. If `out_key` is not NULL, on success
 * *out_key gets a new EVP_PKEY (caller frees with EVP_PKEY_free) and is NULL
 * on failure. If `out_hash` is not NULL, on success it gets the SHA-256 of
 * the key's canonical DER SPKI (EVP_marshal_public_key: one value per key
 * whatever the point encoding), for the registry's duplicate-key check.
 * Returns CAPF_OK, CAPF_E_SPKI_DER, CAPF_E_SPKI_ALG, CAPF_E_SPKI_TYPE,
 * CAPF_E_SPKI_RSA_SIZE, CAPF_E_SPKI_RSA_EXP, CAPF_E_SPKI_CURVE,
 * CAPF_E_SPKI_POINT, CAPF_E_ARG (`want->type` or `want->curve` not in their
 * tables) or CAPF_E_BUFFER (allocation failed). The BoringSSL error queue is
 * left empty. */
capf_err_t capf_spki_check(const capf_spki_policy_t *pol, const capf_keyspec_t *want,
                           const uint8_t *der, size_t der_len,
                           EVP_PKEY **out_key, uint8_t out_hash[CAPF_SPKI_HASH_LEN]);

#endif
