/* capf_err: error codes of the CAPF engine (the CAPF wire codec of
 * capf_msg, the public-key checks of capf_spki and the certificate
 * authentication of capf_certauth) and their to-string
 * table. 0 is success; CAPF_PARTIAL is a status, not a failure ("need more
 * bytes"). Each code names one precise cause for logs and status records;
 * on the wire every failure becomes END_SESSION REASON=07
 * (capf-protocol.md §2.7.3), which is the session's job, not this module's.
 * Thread: any thread. */
#ifndef CAPF_ERR_H
#define CAPF_ERR_H

typedef enum {
    CAPF_OK = 0,
    CAPF_PARTIAL,            /* message incomplete: read more bytes */
    /* header (§2.1, §2.10 rule 1) */
    CAPF_E_SHORT_HEADER,     /* fewer than the 8 header bytes */
    CAPF_E_MAGIC,            /* protocol id is not 0x55 */
    CAPF_E_OPCODE,           /* opcode 00, 18..ff: never assigned */
    CAPF_E_OVERSIZE,         /* body length over the maximum for the opcode */
    CAPF_E_TRUNCATED,        /* fewer body bytes than the length field says */
    CAPF_E_TRAILING,         /* bytes after the body the length field covers */
    /* elements (§2.2, §2.10 rules 4 to 6) */
    CAPF_E_ELEMENT_TRUNCATED, /* element header or value crosses the body end */
    CAPF_E_TAG,              /* element tag 00 (invalid, §4.3) */
    CAPF_E_ELEMENT_LENGTH,   /* element length not allowed for its tag */
    CAPF_E_DUPLICATE,        /* a known tag appears twice */
    CAPF_E_STRING,           /* string without its final 00, or with another 00 */
    CAPF_E_CERT_ELEMENT,     /* CERTIFICATE wrapper malformed (§2.6) */
    CAPF_E_NESTED,           /* SUDI_DATA / SHA2_SIGNED_DATA blocks malformed */
    CAPF_E_MISSING,          /* an element the opcode requires is absent */
    /* accessors */
    CAPF_E_ABSENT,           /* the element asked for is not in the message */
    CAPF_E_ENUM,             /* enumeration value outside its table (§2.5) */
    CAPF_E_NAME,             /* device name: bad length or character (§2.10 rule 7) */
    /* builder */
    CAPF_E_ARG,              /* not a server message of §2.9 / bad value given */
    CAPF_E_BUFFER,           /* the output CBB refused the bytes (full / no memory) */
    /* public key (§3.2) */
    CAPF_E_SPKI_DER,         /* not exactly one DER SubjectPublicKeyInfo */
    CAPF_E_SPKI_ALG,         /* key algorithm neither RSA nor EC */
    CAPF_E_SPKI_TYPE,        /* key type is not the one requested */
    CAPF_E_SPKI_RSA_SIZE,    /* modulus size not the requested one or out of policy */
    CAPF_E_SPKI_RSA_EXP,     /* exponent even, below 3 or above 2^32 */
    CAPF_E_SPKI_CURVE,       /* curve unknown, not allowed or not the requested one */
    CAPF_E_SPKI_POINT,       /* EC point malformed, off the curve or at infinity */
    /* authentication by existing certificate (§2.8, capf_certauth) */
    CAPF_E_CERTAUTH_NO_CREDENTIALS, /* no CERTIFICATE element: "Invalid Credentials" */
    CAPF_E_CERTAUTH_CERT,           /* certificate element type or X.509 malformed */
    CAPF_E_CERTAUTH_UNTRUSTED,      /* no chain to a trusted LSC / manufacturer CA */
    CAPF_E_CERTAUTH_EXPIRED,        /* a certificate of the chain expired at `now` */
    CAPF_E_CERTAUTH_NOT_YET_VALID,  /* a certificate of the chain not valid yet */
    CAPF_E_CERTAUTH_NAME,           /* subject CN is not the device's */
    CAPF_E_CERTAUTH_KEY,            /* key neither RSA (<= 4096 bits) nor EC */
    CAPF_E_CERTAUTH_NO_SHA2,        /* SHA2_SIGNED_DATA missing */
    CAPF_E_CERTAUTH_HASH_ID,        /* SHA2_SIGNED_DATA hash id not 02 or 03 */
    CAPF_E_CERTAUTH_SIG_SHA1,       /* SIGNED_DATA does not verify */
    CAPF_E_CERTAUTH_SIG_SHA256,     /* SHA2_SIGNED_DATA (id 02) does not verify */
    CAPF_E_CERTAUTH_SIG_SHA512,     /* SHA2_SIGNED_DATA (id 03) does not verify */
    CAPF_E_CERTAUTH_SUDI_FORMAT,    /* SUDI_DATA blocks not 00 cert, 01 sig, 02|03 sig */
    CAPF_E_CERTAUTH_SUDI_CERT,      /* SUDI certificate malformed, a CA, or not RSA */
    CAPF_E_CERTAUTH_SUDI_UNTRUSTED, /* SUDI certificate: no chain to a manufacturer CA,
                                       or outside its validity */
    CAPF_E_CERTAUTH_SUDI_SIG,       /* a SUDI signature does not verify */
    CAPF_E__COUNT
} capf_err_t;

/* capf_err_str returns a static, human-readable string for `e` (never NULL;
 * "unknown" for values outside the enum). This function can't fail. */
const char *capf_err_str(capf_err_t e);

#endif
