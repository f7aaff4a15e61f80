/* ra_err: error codes of the registration-authority module (ra/) and their
 * to-string table. 0 is success. Thread: any thread. */
#ifndef RA_ERR_H
#define RA_ERR_H

typedef enum {
    RA_OK = 0,
    RA_E_NOMEM,
    RA_E_IO,            /* users file unreadable / unwritable */
    RA_E_SYNTAX,        /* users file line malformed */
    RA_E_UNKNOWN_USER,  /* no such user */
    RA_E_BAD_PASSWORD,  /* password does not match */
    RA_E_REDIS_URL,     /* Redis URL malformed */
    RA_E_REDIS_CONNECT, /* Redis unreachable (connect or timeout) */
    RA_E_REDIS,         /* Redis command failed or replied unexpectedly */
    RA_E_EXISTS,        /* device record exists (add without replace) */
    RA_E_NOT_FOUND,     /* no such device record */
    RA_E_BAD_NAME,      /* device name not 1..64 of [A-Za-z0-9_.-] */
    RA_E_BAD_OP,        /* operation not install|delete|troubleshoot|none */
    RA_E_BAD_AUTH,      /* auth mode not null|string|lsc|mic, or string/mode mismatch */
    RA_E_BAD_AUTH_STRING, /* authentication string not 4..10 digits */
    RA_E_BAD_KEYS,      /* key list empty, unknown or repeated key */
    RA_E_BAD_TIME,      /* date/time not YYYY-MM-DDTHH:MM[:SS][Z] */
    RA_E_BAD_RECORD,    /* stored device record malformed */
    RA_E__COUNT
} ra_err_t;

const char *ra_err_str(ra_err_t e);

#endif
