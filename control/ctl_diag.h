/* ctl_diag: the failure classes of the certsrv upstream (certsrv-protocol.md
 * §6) and, for each, the words an administrator needs: the cause and the
 * fix. One table (ctl_diag.c) holds a stable name (written to request
 * records as `ca_diag`, printed by `stampedectl doctor`), whether a retry
 * can help, and the fix text; the cause is formatted per failure with the
 * details (host, user, template, libcurl code, verify result, HRESULT).
 * Thread: pure; any thread. */
#ifndef CTL_DIAG_H
#define CTL_DIAG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum {
    CTL_D_OK = 0,
    CTL_D_CONFIG,            /* our settings are unusable (URL, bundle file, password file) */
    CTL_D_DNS,               /* CURLE_COULDNT_RESOLVE_HOST */
    CTL_D_CONNECT,           /* refused / unreachable */
    CTL_D_TLS_UNTRUSTED,     /* chain not trusted / missing intermediate (verify 2, 20, 21) */
    CTL_D_TLS_SELF_SIGNED,   /* self-signed IIS certificate (verify 18, 19) */
    CTL_D_TLS_NAME,          /* certificate does not cover the host (verify 62) */
    CTL_D_TLS_CLOCK,         /* not yet valid / expired (verify 9, 10): check NTP */
    CTL_D_TLS_OTHER,         /* any other TLS failure (handshake, protocol) */
    CTL_D_TIMEOUT_CONNECT,   /* connect/TLS phase timed out */
    CTL_D_TIMEOUT_LOGIN,     /* the authentication exchange timed out */
    CTL_D_TIMEOUT_SUBMIT,    /* the POST timed out or lost its connection after the body went out: outcome unknown */
    CTL_D_TIMEOUT_FETCH,     /* certificate / chain download timed out */
    CTL_D_AUTH,              /* 401 after a complete exchange: wrong user/password/scheme */
    CTL_D_AUTH_SCHEME,       /* the server does not offer the configured scheme (e.g. Negotiate only) */
    CTL_D_EPA,               /* NTLM/Negotiate rejected while credentials are right: Extended Protection
                                (said by ctl_doctor, which can try Basic; a call reports CTL_D_AUTH) */
    CTL_D_HTTPS_REQUIRED,    /* 403 on plain HTTP */
    CTL_D_REDIRECT,          /* 3xx where none is expected */
    CTL_D_HTTP,              /* other HTTP status (404, 500, 503, ...) */
    CTL_D_TEMPLATE,          /* 0x80094800 / 0x80094801 / 0x80094802 */
    CTL_D_PERMISSION,        /* 0x80094012: account may not enroll on the template */
    CTL_D_BAD_CSR,           /* "Error Parsing Request", 0x80094001, signature, key length */
    CTL_D_DENIED,            /* any other denial (policy, officer 0x80094014) */
    CTL_D_CA_DOWN,           /* the web server cannot reach the CA (0x800706BA, "not been started") */
    CTL_D_UNKNOWN_ID,        /* 0x80094004 on a poll: the CA does not know the request id */
    CTL_D_PAGE,              /* an answer none of the parsers recognise */
    CTL_D_OUTCOME_UNKNOWN,   /* two POSTs with unknown outcome: the request is given up */
    CTL_D__COUNT
} ctl_diag_t;

/* ctl_diag_name: stable short name, e.g. "tls-untrusted" ("ok" for CTL_D_OK). */
const char *ctl_diag_name(ctl_diag_t d);
/* ctl_diag_fix: the remedy in one sentence, for the log and doctor. */
const char *ctl_diag_fix(ctl_diag_t d);
/* ctl_diag_retryable: true if trying the same request later can succeed
 * without a change on the CA (network, timeouts, 5xx, CA down, auth: the
 * operator may fix the password without a restart). Denials are final. */
bool ctl_diag_retryable(ctl_diag_t d);
/* ctl_diag_from_hresult maps a CA HRESULT of a denial/error page to a class
 * (CTL_D_DENIED for codes it does not know). */
ctl_diag_t ctl_diag_from_hresult(unsigned long hresult);

#endif
