/* ra_err: to-string table for ra_err_t. Thread: any thread. */
#include "ra/ra_err.h"

static const char *const ra_err_text[RA_E__COUNT] = {
    [RA_OK] = "ok",
    [RA_E_NOMEM] = "out of memory",
    [RA_E_IO] = "file I/O failed",
    [RA_E_SYNTAX] = "malformed line",
    [RA_E_UNKNOWN_USER] = "unknown user",
    [RA_E_BAD_PASSWORD] = "wrong password",
    [RA_E_REDIS_URL] = "malformed Redis URL (redis://host:port[/db], unix:/path or /path)",
    [RA_E_REDIS_CONNECT] = "Redis unreachable",
    [RA_E_REDIS] = "Redis command failed",
    [RA_E_EXISTS] = "device already exists (use --replace)",
    [RA_E_NOT_FOUND] = "no such device",
    [RA_E_BAD_NAME] = "bad device name (1..64 characters of A-Z a-z 0-9 _ . -)",
    [RA_E_BAD_OP] = "bad operation (install, delete, troubleshoot or none)",
    [RA_E_BAD_AUTH] = "bad authentication mode (null, string, lsc or mic; string needs --auth-string)",
    [RA_E_BAD_AUTH_STRING] = "bad authentication string (4 to 10 digits)",
    [RA_E_BAD_KEYS] = "bad key list (rsa2048 rsa3072 rsa4096 ec256 ec384 ec521 rsa1024 rsa512, each once)",
    [RA_E_BAD_TIME] = "bad date (YYYY-MM-DDTHH:MM[:SS][Z])",
    [RA_E_BAD_RECORD] = "malformed device record in Redis",
};

const char *ra_err_str(ra_err_t e) {
    return (unsigned)e < RA_E__COUNT && ra_err_text[e] ? ra_err_text[e] : "unknown";
}
