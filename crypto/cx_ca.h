/* cx_ca: the local CA and the TLS server identity on disk in the data
 * directory. On first start it generates the CA key + self-signed CA
 * certificate (basicConstraints CA:TRUE pathlen:0, keyUsage
 * digitalSignature+keyCertSign+cRLSign) and a TLS server key + certificate
 * issued by that CA; afterwards it loads and reuses them. Private keys are
 * PEM PKCS#8 files with mode 0600.
 *
 * Files: ca.key ca.crt tls.key tls.crt (all PEM) in `dir`.
 * Thread: startup only (key generation blocks). */
#ifndef CX_CA_H
#define CX_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#include "crypto/cx_cert.h"
#include "crypto/cx_err.h"

typedef enum {
    CX_KEY_EC256 = 0,
    CX_KEY_EC384,
    CX_KEY_RSA2048,
    CX_KEY_RSA3072,
    CX_KEY_RSA4096,
    CX_KEY__COUNT
} cx_keytype_t;

/* cx_keytype_parse maps "ec256" "ec384" "rsa2048" "rsa3072" "rsa4096"
 * (also "p256", "p384") to a cx_keytype_t. Returns CX_OK or CX_E_CONFIG. */
cx_err_t cx_keytype_parse(const char *s, cx_keytype_t *out);
/* cx_keytype_str returns the canonical name of `t`. */
const char *cx_keytype_str(cx_keytype_t t);

/* cx_key_generate returns a new private key of type `t`, or NULL.
 * Thread: any (blocks: RSA generation takes up to seconds). */
EVP_PKEY *cx_key_generate(cx_keytype_t t);

typedef struct {
    cx_keytype_t ca_key_type;      /* default CX_KEY_EC256 */
    cx_keytype_t tls_key_type;     /* default CX_KEY_EC256 */
    const char *ca_name;           /* CA subject CN, e.g. "Stampede Local CA" */
    const char *org;               /* subject O for CA and TLS cert, or NULL */
    uint32_t ca_validity_days;     /* e.g. 3650 */
    uint32_t tls_validity_days;    /* e.g. 825 */
    const char *tls_names;         /* comma-separated DNS names and IP
                                      addresses for the TLS certificate SAN,
                                      e.g. "localhost,127.0.0.1" */
} cx_ca_config_t;

/* cx_ca_t: loaded CA and TLS material. Owns everything it points to. */
typedef struct {
    EVP_PKEY *ca_key;
    uint8_t *ca_der;            /* CA certificate DER */
    size_t ca_der_len;
    cx_issuer_t issuer;         /* views into ca_der + ca_key */
    EVP_PKEY *tls_key;
    uint8_t *tls_der;           /* TLS server certificate DER */
    size_t tls_der_len;
    bool created_ca;            /* CA generated on this start */
    bool created_tls;           /* TLS certificate generated on this start */
} cx_ca_t;

/* cx_ca_open loads the CA and TLS identity from `dir` (which must exist),
 * generating whatever is missing per `cfg`. A TLS certificate that expires
 * within 30 days, or that was not issued by the current CA, is reissued.
 * Never overwrites an existing CA key. On failure writes a one-line cause
 * naming the file into `why`.
 * Details: ca.key without ca.crt gets a new self-signed certificate for that
 * key (recovery from a crash between the two writes); ca.crt without ca.key
 * is CX_E_KEY; ca.key not matching ca.crt is CX_E_KEY; an expired ca.crt
 * is CX_E_CERT (it is never replaced silently). tls.crt is also
 * reissued (with the existing tls.key, or a new one if tls.key is missing)
 * when unreadable, not for tls.key, or when its subject/SAN differ from
 * `cfg` (org, tls_names); its notAfter never passes the CA's. tls_names
 * entries are trimmed of blanks; IPv4/IPv6 literals become iPAddress, other
 * entries dNSName ([A-Za-z0-9.*_-] only). Certificates are written 0644,
 * keys 0600. `why` may be NULL; it is "" on success. `ca` is zeroed first
 * and cleaned up on failure.
 * Returns CX_OK, CX_E_IO, CX_E_KEY, CX_E_CERT, CX_E_CONFIG, CX_E_SIGN or
 * CX_E_NOMEM. */
cx_err_t cx_ca_open(cx_ca_t *ca, const char *dir, const cx_ca_config_t *cfg,
                    char *why, size_t why_len);

/* cx_ca_cleanup frees everything `ca` owns; safe on a zeroed struct. */
void cx_ca_cleanup(cx_ca_t *ca);

#endif
