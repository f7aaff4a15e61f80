/* fuzz_capf_spki: libFuzzer target for capf_spki_check (the PUBLIC_KEY
 * value of KEY_GENERATE_RESPONSE is untrusted). The input is checked against
 * every key the server can ask for (RSA 512..4096 with the policy floor
 * lowered to 512, EC P-256/P-384/P-521). Invariants: at most one request is
 * met; an accepted key is one BoringSSL parses too, of the requested type
 * and size; its hash is SHA-256 of its canonical DER, which is accepted
 * again with the same hash; the default policy refuses RSA below 2048; no
 * error is left on the BoringSSL queue. Any mismatch aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>

#include "dataplane/capf_spki.h"

static const capf_keyspec_t specs[] = {
    {.type = CAPF_KEY_RSA, .rsa_bits = 512},  {.type = CAPF_KEY_RSA, .rsa_bits = 1024},
    {.type = CAPF_KEY_RSA, .rsa_bits = 2048}, {.type = CAPF_KEY_RSA, .rsa_bits = 3072},
    {.type = CAPF_KEY_RSA, .rsa_bits = 4096}, {.type = CAPF_KEY_EC, .curve = CAPF_CURVE_P256},
    {.type = CAPF_KEY_EC, .curve = CAPF_CURVE_P384}, {.type = CAPF_KEY_EC, .curve = CAPF_CURVE_P521},
};

/* check_accepted: invariants for a key accepted under `want`. */
static void check_accepted(const capf_spki_policy_t *pol, const capf_keyspec_t *want,
                           const uint8_t *data, size_t size, EVP_PKEY *key,
                           const uint8_t hash[CAPF_SPKI_HASH_LEN]) {
    uint8_t canon[1024], h2[CAPF_SPKI_HASH_LEN], want_hash[SHA256_DIGEST_LENGTH];
    size_t canon_len;
    CBB cbb;
    CBS in;

    if (key == NULL)
        abort();
    if (want->type == CAPF_KEY_RSA
            ? EVP_PKEY_id(key) != EVP_PKEY_RSA || EVP_PKEY_bits(key) != want->rsa_bits
            : EVP_PKEY_id(key) != EVP_PKEY_EC)
        abort();
    CBS_init(&in, data, size);
    EVP_PKEY *again = EVP_parse_public_key(&in);
    if (again == NULL || CBS_len(&in) != 0 || EVP_PKEY_cmp(again, key) != 1)
        abort();
    EVP_PKEY_free(again);
    if (!CBB_init_fixed(&cbb, canon, sizeof(canon)) || !EVP_marshal_public_key(&cbb, key) ||
        !CBB_finish(&cbb, NULL, &canon_len))
        abort();
    SHA256(canon, canon_len, want_hash);
    if (memcmp(hash, want_hash, CAPF_SPKI_HASH_LEN) != 0)
        abort();
    if (capf_spki_check(pol, want, canon, canon_len, NULL, h2) != CAPF_OK ||
        memcmp(h2, hash, CAPF_SPKI_HASH_LEN) != 0)
        abort();
    if (want->type == CAPF_KEY_RSA && want->rsa_bits < CAPF_SPKI_RSA_MIN_DEFAULT &&
        capf_spki_check(NULL, want, data, size, NULL, NULL) != CAPF_E_SPKI_RSA_SIZE)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const capf_spki_policy_t legacy = {.rsa_min_bits = 512};
    unsigned accepted = 0;

    for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); i++) {
        EVP_PKEY *key = NULL;
        uint8_t hash[CAPF_SPKI_HASH_LEN];
        capf_err_t err = capf_spki_check(&legacy, &specs[i], data, size, &key, hash);
        if (ERR_peek_error() != 0)
            abort();
        if (err != CAPF_OK) {
            if (key != NULL || err == CAPF_E_ARG || err == CAPF_E_BUFFER)
                abort();
            continue;
        }
        accepted++;
        check_accepted(&legacy, &specs[i], data, size, key, hash);
        EVP_PKEY_free(key);
    }
    if (accepted > 1)
        abort();
    return 0;
}
