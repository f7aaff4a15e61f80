/* fuzz_csr: libFuzzer target for cx_csr (PKCS#10 DER from untrusted
 * clients). Parses; on success checks that every view lies inside the input,
 * extracts the CN, runs cx_csr_verify (key policy + signature) and, for a
 * request that verifies (seed corpora hold real ones), issues a leaf with a
 * fixed test CA and parses it back. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/ec_key.h>
#include <openssl/nid.h>

#include "crypto/cx_cert.h"
#include "crypto/cx_csr.h"
#include "tests/fuzz/fuzz_check.h"

/* The harness's issuer: a P-256 key made once per process. */
static EVP_PKEY *fuzz_issuer_key(void) {
    static EVP_PKEY *key;
    if (key == NULL) {
        EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
        key = EVP_PKEY_new();
        if (!ec || !key || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(key, ec))
            abort();
    }
    return key;
}

/* issue_leaf signs a leaf for a verified `csr` and checks it reads back. */
static void issue_leaf(const cx_csr_t *csr) {
    static const uint8_t issuer_name[] = {0x30, 0x0f, 0x31, 0x0d, 0x30, 0x0b, 0x06, 0x03, 0x55,
                                          0x04, 0x03, 0x0c, 0x04, 'f', 'u', 'z', 'z'};
    cx_issuer_t iss = {.key = fuzz_issuer_key()};
    cx_leaf_policy_t pol = {.validity_days = 30, .backdate_s = 60, .copy_san = true};
    uint8_t buf[8192], serial[CX_SERIAL_LEN];
    CBB cbb;
    CBS subject;
    size_t len;

    CBS_init(&iss.subject, issuer_name, sizeof(issuer_name));
    if (!CBB_init_fixed(&cbb, buf, sizeof(buf)))
        abort();
    cx_err_t err = cx_cert_issue_leaf(&cbb, serial, &iss, csr, &pol, 1700000000);
    if (err == CX_OK) {
        if (!CBB_finish(&cbb, NULL, &len) ||
            cx_cert_parse_basic(buf, len, &subject, NULL, NULL, NULL) != CX_OK ||
            !CBS_mem_equal(&subject, CBS_data(&csr->subject), CBS_len(&csr->subject)))
            abort();
    } else if (err != CX_E_CSR_KEY && err != CX_E_NOMEM) {
        abort();
    }
    CBB_cleanup(&cbb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cx_csr_t csr;
    EVP_PKEY *key = NULL;
    char cn[65];

    if (cx_csr_parse(&csr, data, size) != CX_OK)
        return 0;
    fuzz_check_inside(&csr.der, data, size);
    fuzz_check_inside(&csr.info, data, size);
    fuzz_check_inside(&csr.subject, data, size);
    fuzz_check_inside(&csr.spki, data, size);
    fuzz_check_inside(&csr.san, data, size);
    fuzz_check_inside(&csr.sig_alg, data, size);
    fuzz_check_inside(&csr.sig, data, size);
    if (CBS_len(&csr.der) != size)
        abort();
    (void)cx_name_cn(&csr.subject, cn, sizeof(cn));
    if (cx_csr_verify(&csr, &key) == CX_OK) {
        if (key == NULL)
            abort();
        EVP_PKEY_free(key);
        issue_leaf(&csr);
    } else if (key != NULL) {
        abort();
    }
    return 0;
}
