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
    RA_E__COUNT
} ra_err_t;

const char *ra_err_str(ra_err_t e);

#endif
