/* ra_err: to-string table for ra_err_t. Thread: any thread. */
#include "ra/ra_err.h"

static const char *const ra_err_text[RA_E__COUNT] = {
    [RA_OK] = "ok",
    [RA_E_NOMEM] = "out of memory",
    [RA_E_IO] = "file I/O failed",
    [RA_E_SYNTAX] = "malformed line",
    [RA_E_UNKNOWN_USER] = "unknown user",
    [RA_E_BAD_PASSWORD] = "wrong password",
};

const char *ra_err_str(ra_err_t e) {
    return (unsigned)e < RA_E__COUNT && ra_err_text[e] ? ra_err_text[e] : "unknown";
}
