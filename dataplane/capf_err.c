/* capf_err: to-string table for capf_err_t. Thread: any thread. */
#include "dataplane/capf_err.h"

static const char *const capf_err_text[CAPF_E__COUNT] = {
    [CAPF_OK] = "ok",
    [CAPF_PARTIAL] = "incomplete message",
    [CAPF_E_SHORT_HEADER] = "message shorter than the 8-byte header",
    [CAPF_E_MAGIC] = "bad protocol id (not 0x55)",
    [CAPF_E_OPCODE] = "unknown opcode",
    [CAPF_E_OVERSIZE] = "body length over the limit for the opcode",
    [CAPF_E_TRUNCATED] = "body shorter than its length field",
    [CAPF_E_TRAILING] = "trailing bytes after the message body",
    [CAPF_E_ELEMENT_TRUNCATED] = "element crosses the end of the body",
    [CAPF_E_TAG] = "invalid element tag 0",
    [CAPF_E_ELEMENT_LENGTH] = "element length not allowed for its tag",
    [CAPF_E_DUPLICATE] = "duplicate element",
    [CAPF_E_STRING] = "string element not terminated by a single 00",
    [CAPF_E_CERT_ELEMENT] = "malformed CERTIFICATE element",
    [CAPF_E_NESTED] = "malformed nested element",
    [CAPF_E_MISSING] = "mandatory element missing",
    [CAPF_E_ABSENT] = "element absent",
    [CAPF_E_ENUM] = "enumeration value out of range",
    [CAPF_E_NAME] = "invalid device name",
    [CAPF_E_ARG] = "invalid message to build",
    [CAPF_E_BUFFER] = "output buffer full",
    [CAPF_E_SPKI_DER] = "public key is not a DER SubjectPublicKeyInfo",
    [CAPF_E_SPKI_ALG] = "public key algorithm is neither RSA nor EC",
    [CAPF_E_SPKI_TYPE] = "public key type is not the one requested",
    [CAPF_E_SPKI_RSA_SIZE] = "RSA modulus size not requested or not allowed",
    [CAPF_E_SPKI_RSA_EXP] = "RSA public exponent not allowed",
    [CAPF_E_SPKI_CURVE] = "EC curve not requested or not allowed",
    [CAPF_E_SPKI_POINT] = "EC point invalid",
};

const char *capf_err_str(capf_err_t e) {
    return (unsigned)e < CAPF_E__COUNT && capf_err_text[e] ? capf_err_text[e] : "unknown";
}
