/* cx_err: error codes of the crypto/ module (CSR checks, issuance, CA material,
 * signing pool) and their to-string table. 0 is success.
 * Thread: any thread. */
#ifndef CX_ERR_H
#define CX_ERR_H

typedef enum {
    CX_OK = 0,
    CX_E_NOMEM,        /* allocation failed */
    CX_E_BUSY,         /* signing pool saturated: nothing queued */
    CX_E_BASE64,       /* body is not valid base64 */
    CX_E_TOO_LARGE,    /* input over the configured limit */
    CX_E_NOT_CSR,      /* DER is not a PKCS#10 CertificationRequest */
    CX_E_CSR_VERSION,  /* CSR version is not v1 (0) */
    CX_E_CSR_ALG,      /* unsupported CSR signature algorithm */
    CX_E_CSR_KEY,      /* unsupported or too weak public key in the CSR */
    CX_E_CSR_SIG,      /* CSR signature does not verify (no proof of possession) */
    CX_E_CSR_SUBJECT,  /* CSR subject is empty or malformed */
    CX_E_CSR_EXT,      /* CSR extension request is malformed */
    CX_E_SIGN,         /* signing with the CA or TLS key failed */
    CX_E_IO,           /* reading or writing key/certificate files failed */
    CX_E_KEY,          /* key missing, unreadable, or not matching its certificate */
    CX_E_CERT,         /* certificate missing, unreadable or invalid */
    CX_E_CONFIG,       /* invalid crypto configuration value */
    CX_E__COUNT
} cx_err_t;

/* cx_err_str returns a static, human-readable string for `e` (never NULL). */
const char *cx_err_str(cx_err_t e);

#endif
