/* cx_err: to-string table for cx_err_t. Thread: any thread. */
#include "crypto/cx_err.h"

static const char *const cx_err_text[CX_E__COUNT] = {
    [CX_OK] = "ok",
    [CX_E_NOMEM] = "out of memory",
    [CX_E_BUSY] = "signing pool saturated",
    [CX_E_BASE64] = "body is not valid base64",
    [CX_E_TOO_LARGE] = "input too large",
    [CX_E_NOT_CSR] = "not a PKCS#10 certificate request",
    [CX_E_CSR_VERSION] = "unsupported CSR version",
    [CX_E_CSR_ALG] = "unsupported CSR signature algorithm",
    [CX_E_CSR_KEY] = "unsupported or weak public key in CSR",
    [CX_E_CSR_SIG] = "CSR signature does not verify (no proof of possession)",
    [CX_E_CSR_SUBJECT] = "CSR subject is empty or malformed",
    [CX_E_CSR_EXT] = "CSR extension request is malformed",
    [CX_E_SIGN] = "signing failed",
    [CX_E_IO] = "file I/O failed",
    [CX_E_KEY] = "private key missing, unreadable or not matching",
    [CX_E_CERT] = "certificate missing, unreadable or invalid",
    [CX_E_CONFIG] = "invalid crypto configuration",
};

const char *cx_err_str(cx_err_t e) {
    return (unsigned)e < CX_E__COUNT && cx_err_text[e] ? cx_err_text[e] : "unknown";
}
