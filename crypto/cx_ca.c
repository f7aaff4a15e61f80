/* cx_ca: the local CA and the TLS server identity in the data directory.
 * First start: generate ca.key + a self-signed ca.crt, then tls.key + a
 * tls.crt issued by the CA. Later starts: load and check them (key matches
 * certificate, TLS certificate issued by this CA, not expiring, names still
 * those configured) and reissue only the TLS certificate when needed.
 * Keys are PEM PKCS#8 files created 0600 through a temporary file, fsync and
 * rename (link for ca.key, so an existing CA key is never replaced).
 * Loading may use PEM and X509 helpers: this runs once, at startup.
 * Thread: startup only (key generation and file I/O block). */
#include "crypto/cx_ca.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/mem.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#define CX_CA_BACKDATE_S 300                 /* notBefore = now - 5 min */
#define CX_TLS_RENEW_S (30 * 86400LL)        /* reissue within 30 days of expiry */
#define CX_DNS_NAME_MAX 253
#define CX_DAY_S 86400LL

typedef struct {
    const char *name;
    const char *alias;
    int nid_or_bits;                         /* EC curve NID, or RSA bits */
    bool rsa;
} cx_keyspec_t;

static const cx_keyspec_t cx_keyspecs[CX_KEY__COUNT] = {
    [CX_KEY_EC256] = {"ec256", "p256", NID_X9_62_prime256v1, false},
    [CX_KEY_EC384] = {"ec384", "p384", NID_secp384r1, false},
    [CX_KEY_RSA2048] = {"rsa2048", NULL, 2048, true},
    [CX_KEY_RSA3072] = {"rsa3072", NULL, 3072, true},
    [CX_KEY_RSA4096] = {"rsa4096", NULL, 4096, true},
};

/* The four file paths of one data directory. */
typedef struct {
    const char *dir;
    char ca_key[PATH_MAX], ca_crt[PATH_MAX], tls_key[PATH_MAX], tls_crt[PATH_MAX];
} cx_paths_t;

__attribute__((format(printf, 3, 4)))
static void cx_why(char *why, size_t why_len, const char *fmt, ...) {
    va_list ap;
    if (why == NULL || why_len == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(why, why_len, fmt, ap);
    va_end(ap);
}

cx_err_t cx_keytype_parse(const char *s, cx_keytype_t *out) {
    for (int t = 0; s != NULL && t < CX_KEY__COUNT; t++) {
        const cx_keyspec_t *k = &cx_keyspecs[t];
        if (strcmp(s, k->name) == 0 || (k->alias != NULL && strcmp(s, k->alias) == 0)) {
            *out = (cx_keytype_t)t;
            return CX_OK;
        }
    }
    return CX_E_CONFIG;
}

const char *cx_keytype_str(cx_keytype_t t) {
    return (unsigned)t < CX_KEY__COUNT ? cx_keyspecs[t].name : "unknown";
}

static EVP_PKEY *cx_key_generate_ec(int nid) {
    EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
    EVP_PKEY *key = EVP_PKEY_new();
    if (ec == NULL || key == NULL || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(key, ec))
        goto fail;
    return key;
fail:
    EC_KEY_free(ec);
    EVP_PKEY_free(key);
    return NULL;
}

static EVP_PKEY *cx_key_generate_rsa(int bits) {
    RSA *rsa = RSA_new();
    BIGNUM *e = BN_new();
    EVP_PKEY *key = EVP_PKEY_new();
    if (rsa == NULL || e == NULL || key == NULL || !BN_set_word(e, RSA_F4) ||
        !RSA_generate_key_ex(rsa, bits, e, NULL) || !EVP_PKEY_assign_RSA(key, rsa))
        goto fail;
    BN_free(e);
    return key;
fail:
    RSA_free(rsa);
    BN_free(e);
    EVP_PKEY_free(key);
    return NULL;
}

EVP_PKEY *cx_key_generate(cx_keytype_t t) {
    if ((unsigned)t >= CX_KEY__COUNT)
        return NULL;
    const cx_keyspec_t *k = &cx_keyspecs[t];
    return k->rsa ? cx_key_generate_rsa(k->nid_or_bits) : cx_key_generate_ec(k->nid_or_bits);
}

/* ---- files ---- */

/* cx_path_state returns 1 if `path` exists, 0 if not, -1 on another error. */
static int cx_path_state(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0)
        return 1;
    return errno == ENOENT ? 0 : -1;
}

static bool cx_write_all(int fd, const uint8_t *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        data += n;
        len -= (size_t)n;
    }
    return true;
}

static void cx_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* cx_file_write writes `path` atomically: a new temporary file (mode `mode`,
 * O_EXCL), fsync, then rename over `path`, or, with `no_replace`, link (which
 * fails if `path` appeared meanwhile). */
static cx_err_t cx_file_write(const cx_paths_t *p, const char *path, const uint8_t *data,
                              size_t len, mode_t mode, bool no_replace, char *why,
                              size_t why_len) {
    char tmp[PATH_MAX + 8];
    int fd = -1;

    if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        goto fail;
    if (unlink(tmp) != 0 && errno != ENOENT)
        goto fail;
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0 || !cx_write_all(fd, data, len) || fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (no_replace ? link(tmp, path) != 0 : rename(tmp, path) != 0)
        goto fail;
    if (no_replace)
        unlink(tmp);
    cx_fsync_dir(p->dir);
    return CX_OK;
fail:
    cx_why(why, why_len, "%s: cannot write: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return CX_E_IO;
}

/* cx_pem_save writes `der` as one PEM block of type `label` to `path`. */
static cx_err_t cx_pem_save(const cx_paths_t *p, const char *path, const char *label,
                            const uint8_t *der, size_t der_len, mode_t mode,
                            bool no_replace, char *why, size_t why_len) {
    BIO *bio = BIO_new(BIO_s_mem());
    const uint8_t *pem;
    size_t pem_len;
    cx_err_t err;

    if (bio == NULL || PEM_write_bio(bio, label, "", der, (long)der_len) <= 0 ||
        !BIO_mem_contents(bio, &pem, &pem_len)) {
        cx_why(why, why_len, "%s: cannot encode PEM", path);
        err = CX_E_NOMEM;
    } else {
        err = cx_file_write(p, path, pem, pem_len, mode, no_replace, why, why_len);
        OPENSSL_cleanse((void *)pem, pem_len);
    }
    BIO_free(bio);
    return err;
}

/* cx_key_save writes `key` as PEM PKCS#8 ("PRIVATE KEY"), mode 0600. */
static cx_err_t cx_key_save(const cx_paths_t *p, const char *path, const EVP_PKEY *key,
                            bool no_replace, char *why, size_t why_len) {
    CBB cbb;
    uint8_t *der = NULL;
    size_t der_len = 0;
    cx_err_t err;

    if (!CBB_init(&cbb, 256) || !EVP_marshal_private_key(&cbb, key) ||
        !CBB_finish(&cbb, &der, &der_len)) {
        CBB_cleanup(&cbb);
        cx_why(why, why_len, "%s: cannot encode the private key", path);
        return CX_E_KEY;
    }
    err = cx_pem_save(p, path, "PRIVATE KEY", der, der_len, 0600, no_replace, why, why_len);
    OPENSSL_cleanse(der, der_len);
    OPENSSL_free(der);
    return err;
}

/* cx_key_load reads a PEM private key (PKCS#8 or traditional, unencrypted). */
static cx_err_t cx_key_load(const char *path, EVP_PKEY **out, char *why, size_t why_len) {
    BIO *bio = BIO_new_file(path, "r");
    *out = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (*out != NULL)
        return CX_OK;
    cx_why(why, why_len, "%s: cannot read a PEM private key", path);
    return bio ? CX_E_KEY : CX_E_IO;
}

/* cx_cert_load reads the first PEM CERTIFICATE of `path` into a new DER
 * buffer (OPENSSL_free) and checks it parses. */
static cx_err_t cx_cert_load(const char *path, uint8_t **der, size_t *der_len, char *why,
                             size_t why_len) {
    BIO *bio = BIO_new_file(path, "r");
    uint8_t *data = NULL;
    long len = 0;
    char *name = NULL;
    cx_err_t err = CX_E_IO;

    if (bio == NULL)
        goto fail;
    err = CX_E_CERT;
    if (!PEM_bytes_read_bio(&data, &len, &name, PEM_STRING_X509, bio, NULL, NULL) ||
        cx_cert_parse_basic(data, (size_t)len, NULL, NULL, NULL, NULL) != CX_OK)
        goto fail;
    BIO_free(bio);
    OPENSSL_free(name);
    *der = data;
    *der_len = (size_t)len;
    return CX_OK;
fail:
    cx_why(why, why_len, "%s: cannot read a PEM certificate", path);
    BIO_free(bio);
    OPENSSL_free(name);
    OPENSSL_free(data);
    return err;
}

/* ---- building ---- */

/* cx_issue builds a certificate for `key`'s public half under `iss` into a
 * new DER buffer (OPENSSL_free). */
static cx_err_t cx_issue(const cx_issuer_t *iss, const EVP_PKEY *key, cx_tbs_t *tbs,
                         uint8_t **der, size_t *der_len) {
    uint8_t serial[CX_SERIAL_LEN];
    CBB spki, out;
    cx_err_t err = CX_E_NOMEM;

    CBB_zero(&out);
    if (!CBB_init(&spki, 600) || !EVP_marshal_public_key(&spki, key) || !CBB_flush(&spki) ||
        !CBB_init(&out, 1024))
        goto fail;
    CBS_init(&tbs->spki, CBB_data(&spki), CBB_len(&spki));
    if ((err = cx_cert_build(&out, serial, iss, tbs)) != CX_OK)
        goto fail;
    if (!CBB_finish(&out, der, der_len)) {
        err = CX_E_NOMEM;
        goto fail;
    }
    CBB_cleanup(&spki);
    return CX_OK;
fail:
    CBB_cleanup(&spki);
    CBB_cleanup(&out);
    return err;
}

/* cx_ca_issue_self makes the self-signed CA certificate for ca->ca_key. */
static cx_err_t cx_ca_issue_self(cx_ca_t *ca, const cx_ca_config_t *cfg, int64_t now) {
    CBB name, spki;
    cx_issuer_t iss = {.key = ca->ca_key};
    cx_tbs_t tbs = {
        .not_before = now - CX_CA_BACKDATE_S,
        .not_after = now + (int64_t)cfg->ca_validity_days * CX_DAY_S,
        .key_usage = CX_KU_DIGITAL_SIGNATURE | CX_KU_KEY_CERT_SIGN | CX_KU_CRL_SIGN,
        .is_ca = true,
    };
    cx_err_t err = CX_E_NOMEM;

    CBB_zero(&spki);
    if (!CBB_init(&name, 128) || cx_name_build(&name, cfg->org, cfg->ca_name) != CX_OK ||
        !CBB_flush(&name) || !CBB_init(&spki, 600) ||
        !EVP_marshal_public_key(&spki, ca->ca_key) || !CBB_flush(&spki))
        goto done;
    CBS_init(&iss.subject, CBB_data(&name), CBB_len(&name));
    CBS_init(&tbs.subject, CBB_data(&name), CBB_len(&name));
    CBS_init(&tbs.san, NULL, 0);
    CBS_init(&tbs.spki, CBB_data(&spki), CBB_len(&spki));
    if ((err = cx_cert_ski(iss.ski, &tbs.spki)) != CX_OK)
        goto done;
    err = cx_issue(&iss, ca->ca_key, &tbs, &ca->ca_der, &ca->ca_der_len);
done:
    CBB_cleanup(&name);
    CBB_cleanup(&spki);
    return err;
}

/* cx_key_matches_cert: does the certificate DER carry `key`'s public key? */
static bool cx_key_matches_cert(const EVP_PKEY *key, const uint8_t *der, size_t der_len) {
    CBS spki;
    EVP_PKEY *pub;
    bool ok;
    if (cx_cert_parse_basic(der, der_len, NULL, &spki, NULL, NULL) != CX_OK)
        return false;
    pub = EVP_parse_public_key(&spki);
    ok = pub != NULL && CBS_len(&spki) == 0 && EVP_PKEY_cmp(pub, key) == 1;
    EVP_PKEY_free(pub);
    return ok;
}

/* cx_ca_issuer_fill points ca->issuer into ca_der and ca_key. */
static cx_err_t cx_ca_issuer_fill(cx_ca_t *ca) {
    CBS spki;
    if (cx_cert_parse_basic(ca->ca_der, ca->ca_der_len, &ca->issuer.subject, &spki, NULL,
                            &ca->issuer.not_after) != CX_OK ||
        cx_cert_ski(ca->issuer.ski, &spki) != CX_OK)
        return CX_E_CERT;
    ca->issuer.key = ca->ca_key;
    return CX_OK;
}

/* cx_ca_check_expiry refuses an expired CA certificate: nothing it would
 * issue could be verified. */
static cx_err_t cx_ca_check_expiry(const cx_ca_t *ca, const cx_paths_t *p, int64_t now,
                                   char *why, size_t why_len) {
    int64_t not_after;
    if (cx_cert_parse_basic(ca->ca_der, ca->ca_der_len, NULL, NULL, NULL, &not_after) != CX_OK)
        return CX_E_CERT;
    if (not_after > now)
        return CX_OK;
    cx_why(why, why_len, "%s: expired (remove it to self-sign %s again, or install a new CA)",
           p->ca_crt, p->ca_key);
    return CX_E_CERT;
}

/* cx_ca_setup loads or creates ca.key and ca.crt. */
static cx_err_t cx_ca_setup(cx_ca_t *ca, const cx_paths_t *p, const cx_ca_config_t *cfg,
                            int64_t now, char *why, size_t why_len) {
    int key_state, crt_state;
    cx_err_t err;

    if ((key_state = cx_path_state(p->ca_key)) < 0 ||
        (crt_state = cx_path_state(p->ca_crt)) < 0) {
        cx_why(why, why_len, "%s: %s", key_state < 0 ? p->ca_key : p->ca_crt, strerror(errno));
        return CX_E_IO;
    }
    if (key_state == 0 && crt_state == 1) {
        cx_why(why, why_len, "%s: missing while %s exists (restore the key or remove both)",
               p->ca_key, p->ca_crt);
        return CX_E_KEY;
    }
    if (key_state == 1) {
        if ((err = cx_key_load(p->ca_key, &ca->ca_key, why, why_len)) != CX_OK)
            return err;
    } else {
        if ((ca->ca_key = cx_key_generate(cfg->ca_key_type)) == NULL) {
            cx_why(why, why_len, "%s: %s key generation failed", p->ca_key,
                   cx_keytype_str(cfg->ca_key_type));
            return CX_E_KEY;
        }
        if ((err = cx_key_save(p, p->ca_key, ca->ca_key, true, why, why_len)) != CX_OK)
            return err;
    }
    if (crt_state == 1) {
        if ((err = cx_cert_load(p->ca_crt, &ca->ca_der, &ca->ca_der_len, why, why_len)) != CX_OK)
            return err;
        if (!cx_key_matches_cert(ca->ca_key, ca->ca_der, ca->ca_der_len)) {
            cx_why(why, why_len, "%s: does not match the key in %s", p->ca_crt, p->ca_key);
            return CX_E_KEY;
        }
        if ((err = cx_ca_check_expiry(ca, p, now, why, why_len)) != CX_OK)
            return err;
    } else {
        if (cfg->ca_name == NULL || cfg->ca_name[0] == '\0' || cfg->ca_validity_days == 0) {
            cx_why(why, why_len, "%s: CA name and validity must be set", p->ca_crt);
            return CX_E_CONFIG;
        }
        if ((err = cx_ca_issue_self(ca, cfg, now)) != CX_OK) {
            cx_why(why, why_len, "%s: cannot build the CA certificate: %s", p->ca_crt,
                   cx_err_str(err));
            return err;
        }
        if ((err = cx_pem_save(p, p->ca_crt, PEM_STRING_X509, ca->ca_der, ca->ca_der_len,
                               0644, false, why, why_len)) != CX_OK)
            return err;
        ca->created_ca = true;
    }
    if ((err = cx_ca_issuer_fill(ca)) != CX_OK)
        cx_why(why, why_len, "%s: unusable CA certificate", p->ca_crt);
    return err;
}

/* ---- the TLS identity ---- */

/* cx_tls_want: what tls.crt must contain according to the configuration. */
typedef struct {
    CBB subject;                             /* Name: O=org, CN=first name */
    CBB san;                                 /* GeneralNames from tls_names */
} cx_tls_want_t;

static bool cx_dns_name_ok(const char *s) {
    for (; *s != '\0'; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '*' || c == '_'))
            return false;
    }
    return true;
}

/* cx_add_general_name adds `name` as iPAddress [7] if it is an IPv4/IPv6
 * literal, else as dNSName [2]. */
static bool cx_add_general_name(CBB *names, const char *name) {
    uint8_t ip[16];
    size_t ip_len = 0;
    CBB gn;
    if (inet_pton(AF_INET, name, ip) == 1)
        ip_len = 4;
    else if (inet_pton(AF_INET6, name, ip) == 1)
        ip_len = 16;
    if (ip_len != 0)
        return CBB_add_asn1(names, &gn, CBS_ASN1_CONTEXT_SPECIFIC | 7) &&
               CBB_add_bytes(&gn, ip, ip_len) && CBB_flush(names);
    return cx_dns_name_ok(name) && CBB_add_asn1(names, &gn, CBS_ASN1_CONTEXT_SPECIFIC | 2) &&
           CBB_add_bytes(&gn, (const uint8_t *)name, strlen(name)) && CBB_flush(names);
}

/* cx_tls_want_build splits tls_names on commas (blanks trimmed, empty
 * entries skipped) into the wanted subject and SAN. */
static bool cx_tls_want_build(cx_tls_want_t *w, const cx_ca_config_t *cfg) {
    const char *s = cfg->tls_names;
    char name[CX_DNS_NAME_MAX + 1], first[CX_DNS_NAME_MAX + 1] = "";
    CBB names;

    if (s == NULL || !CBB_add_asn1(&w->san, &names, CBS_ASN1_SEQUENCE))
        return false;
    while (*s != '\0') {
        size_t n = strcspn(s, ",");
        const char *e = s + n;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) > CX_DNS_NAME_MAX)
            return false;
        if (e > s) {
            memcpy(name, s, (size_t)(e - s));
            name[e - s] = '\0';
            if (first[0] == '\0')
                memcpy(first, name, sizeof(first));
            if (!cx_add_general_name(&names, name))
                return false;
        }
        s += strcspn(s, ",");
        s += *s == ',';
    }
    return first[0] != '\0' && CBB_flush(&w->san) &&
           cx_name_build(&w->subject, cfg->org, first) == CX_OK && CBB_flush(&w->subject);
}

/* cx_tls_stale says why the loaded tls.crt must be reissued, or NULL if it
 * is fine: unparseable, expiring, not signed by this CA, not for tls.key, or
 * subject/SAN differing from the configuration. */
static const char *cx_tls_stale(const cx_ca_t *ca, const cx_tls_want_t *w, int64_t now) {
    const uint8_t *p = ca->tls_der;
    X509 *x = NULL;
    CBS subject;
    int64_t not_after;
    const char *stale = NULL;

    if (cx_cert_parse_basic(ca->tls_der, ca->tls_der_len, &subject, NULL, NULL,
                            &not_after) != CX_OK ||
        (x = d2i_X509(NULL, &p, (long)ca->tls_der_len)) == NULL)
        stale = "unreadable";
    else if (not_after - now < CX_TLS_RENEW_S)
        stale = "expires within 30 days";
    else if (!cx_key_matches_cert(ca->tls_key, ca->tls_der, ca->tls_der_len))
        stale = "does not match the TLS key";
    else if (X509_verify(x, ca->ca_key) != 1)
        stale = "not issued by the current CA";
    else if (!CBS_mem_equal(&subject, CBB_data(&w->subject), CBB_len(&w->subject)))
        stale = "subject differs from the configuration";
    else {
        int idx = X509_get_ext_by_NID(x, NID_subject_alt_name, -1);
        const ASN1_OCTET_STRING *v =
            idx >= 0 ? X509_EXTENSION_get_data(X509_get_ext(x, idx)) : NULL;
        if (v == NULL || (size_t)ASN1_STRING_length(v) != CBB_len(&w->san) ||
            memcmp(ASN1_STRING_get0_data(v), CBB_data(&w->san), CBB_len(&w->san)) != 0)
            stale = "names differ from the configuration";
    }
    X509_free(x);
    ERR_clear_error();
    return stale;
}

/* cx_tls_issue issues tls.crt for ca->tls_key under the CA; notAfter is
 * clamped to the CA's. */
static cx_err_t cx_tls_issue(cx_ca_t *ca, const cx_tls_want_t *w, const cx_ca_config_t *cfg,
                             int64_t now) {
    int64_t ca_not_after;
    cx_tbs_t tbs = {
        .not_before = now - CX_CA_BACKDATE_S,
        .not_after = now + (int64_t)cfg->tls_validity_days * CX_DAY_S,
        .key_usage = CX_KU_DIGITAL_SIGNATURE | CX_KU_KEY_ENCIPHERMENT,
        .eku = CX_EKU_SERVER_AUTH,
    };
    if (cx_cert_parse_basic(ca->ca_der, ca->ca_der_len, NULL, NULL, NULL, &ca_not_after) !=
        CX_OK)
        return CX_E_CERT;
    if (tbs.not_after > ca_not_after)
        tbs.not_after = ca_not_after;
    CBS_init(&tbs.subject, CBB_data(&w->subject), CBB_len(&w->subject));
    CBS_init(&tbs.san, CBB_data(&w->san), CBB_len(&w->san));
    OPENSSL_free(ca->tls_der);
    ca->tls_der = NULL;
    return cx_issue(&ca->issuer, ca->tls_key, &tbs, &ca->tls_der, &ca->tls_der_len);
}

/* cx_tls_key_setup loads tls.key, or generates and writes it. */
static cx_err_t cx_tls_key_setup(cx_ca_t *ca, const cx_paths_t *p, const cx_ca_config_t *cfg,
                                 char *why, size_t why_len) {
    int state = cx_path_state(p->tls_key);
    if (state < 0) {
        cx_why(why, why_len, "%s: %s", p->tls_key, strerror(errno));
        return CX_E_IO;
    }
    if (state == 1)
        return cx_key_load(p->tls_key, &ca->tls_key, why, why_len);
    if ((ca->tls_key = cx_key_generate(cfg->tls_key_type)) == NULL) {
        cx_why(why, why_len, "%s: %s key generation failed", p->tls_key,
               cx_keytype_str(cfg->tls_key_type));
        return CX_E_KEY;
    }
    return cx_key_save(p, p->tls_key, ca->tls_key, false, why, why_len);
}

/* cx_tls_setup loads or (re)creates tls.key and tls.crt. */
static cx_err_t cx_tls_setup(cx_ca_t *ca, const cx_paths_t *p, const cx_ca_config_t *cfg,
                             int64_t now, char *why, size_t why_len) {
    cx_tls_want_t w;
    const char *stale = "missing";
    cx_err_t err;

    CBB_zero(&w.subject);
    CBB_zero(&w.san);
    if (!CBB_init(&w.subject, 128) || !CBB_init(&w.san, 128) || !cx_tls_want_build(&w, cfg) ||
        cfg->tls_validity_days == 0) {
        cx_why(why, why_len, "%s: invalid TLS names \"%s\" or validity", p->tls_crt,
               cfg->tls_names ? cfg->tls_names : "");
        err = CX_E_CONFIG;
        goto done;
    }
    if ((err = cx_tls_key_setup(ca, p, cfg, why, why_len)) != CX_OK)
        goto done;
    if (cx_path_state(p->tls_crt) == 1)
        stale = cx_cert_load(p->tls_crt, &ca->tls_der, &ca->tls_der_len, NULL, 0) == CX_OK
                    ? cx_tls_stale(ca, &w, now)
                    : "unreadable";
    if (stale == NULL)
        goto done;
    if ((err = cx_tls_issue(ca, &w, cfg, now)) != CX_OK) {
        cx_why(why, why_len, "%s: cannot issue (%s): %s", p->tls_crt, stale, cx_err_str(err));
        goto done;
    }
    err = cx_pem_save(p, p->tls_crt, PEM_STRING_X509, ca->tls_der, ca->tls_der_len, 0644,
                      false, why, why_len);
    ca->created_tls = err == CX_OK;
done:
    CBB_cleanup(&w.subject);
    CBB_cleanup(&w.san);
    return err;
}

static cx_err_t cx_dir_check(const char *dir, char *why, size_t why_len) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        cx_why(why, why_len, "%s: %s", dir, strerror(errno));
        return CX_E_IO;
    }
    if (!S_ISDIR(st.st_mode)) {
        cx_why(why, why_len, "%s: not a directory", dir);
        return CX_E_IO;
    }
    return CX_OK;
}

static bool cx_paths_init(cx_paths_t *p, const char *dir) {
    p->dir = dir;
    return (size_t)snprintf(p->ca_key, PATH_MAX, "%s/ca.key", dir) < PATH_MAX &&
           (size_t)snprintf(p->ca_crt, PATH_MAX, "%s/ca.crt", dir) < PATH_MAX &&
           (size_t)snprintf(p->tls_key, PATH_MAX, "%s/tls.key", dir) < PATH_MAX &&
           (size_t)snprintf(p->tls_crt, PATH_MAX, "%s/tls.crt", dir) < PATH_MAX;
}

cx_err_t cx_ca_open(cx_ca_t *ca, const char *dir, const cx_ca_config_t *cfg, char *why,
                    size_t why_len) {
    cx_paths_t *p = NULL;
    int64_t now = (int64_t)time(NULL);
    cx_err_t err = CX_E_CONFIG;

    memset(ca, 0, sizeof(*ca));
    cx_why(why, why_len, "%s", "");
    if ((unsigned)cfg->ca_key_type >= CX_KEY__COUNT ||
        (unsigned)cfg->tls_key_type >= CX_KEY__COUNT) {
        cx_why(why, why_len, "%s: invalid key type", dir);
        goto fail;
    }
    if ((err = cx_dir_check(dir, why, why_len)) != CX_OK)
        goto fail;
    if ((p = OPENSSL_malloc(sizeof(*p))) == NULL) {
        err = CX_E_NOMEM;
        goto fail;
    }
    if (!cx_paths_init(p, dir)) {
        cx_why(why, why_len, "%s: path too long", dir);
        err = CX_E_CONFIG;
        goto fail;
    }
    if ((err = cx_ca_setup(ca, p, cfg, now, why, why_len)) != CX_OK ||
        (err = cx_tls_setup(ca, p, cfg, now, why, why_len)) != CX_OK)
        goto fail;
    OPENSSL_free(p);
    return CX_OK;
fail:
    OPENSSL_free(p);
    cx_ca_cleanup(ca);
    ERR_clear_error();
    return err;
}

void cx_ca_cleanup(cx_ca_t *ca) {
    EVP_PKEY_free(ca->ca_key);
    EVP_PKEY_free(ca->tls_key);
    OPENSSL_free(ca->ca_der);
    OPENSSL_free(ca->tls_der);
    memset(ca, 0, sizeof(*ca));
}
