/* ctl_config: stampede-control's settings. One declarative table
 * (ctl_config.c) gives every setting its name, type, default, bounds and
 * help; the INI config file (libinih) and the command-line flags (--name,
 * '_' written as '-') derive from it, and so do --help and --dump-config
 * (docs/stampede-control.conf is generated from it), by the engine shared
 * with stampeded, ra/ra_conf. Precedence: built-in default < config file <
 * flag. The upstream password is read from `password_file` (never a flag,
 * never logged).
 * Thread: startup only; the ctl_config_t is frozen before workers start. */
#ifndef CTL_CONFIG_H
#define CTL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { CTL_AUTH_BASIC = 0, CTL_AUTH_NTLM, CTL_AUTH_NEGOTIATE, CTL_AUTH_NONE } ctl_auth_t;

typedef struct {
    char *config_file;
    char *data_dir;          /* embedded Redis socket DATA/redis.sock when `redis` is empty */
    char *redis;             /* redis://host:port/db, unix:/path, /path */
    char *certsrv_url;       /* e.g. https://adcs.example.com/certsrv (no trailing slash needed) */
    char *ca_bundle;         /* PEM file trusted for the IIS certificate; empty = system store */
    char *resolve;           /* HOST:PORT:ADDR[,...] pinned name resolution (CURLOPT_RESOLVE); empty = DNS */
    char *auth;              /* basic | ntlm | negotiate | none */
    ctl_auth_t auth_kind;    /* parsed from `auth` */
    char *user;              /* DOMAIN\user, user@domain or user */
    char *password_file;     /* first line = the password */
    char *password;          /* read from password_file at load time; never printed */
    char *template_name;     /* setting `template`: the template's name (cn), not its display name */
    char *user_agent;        /* must contain Mozilla and neither MSIE nor Trident (§3.1) */
    uint32_t connect_timeout_ms;
    uint32_t login_timeout_ms;
    uint32_t submit_timeout_ms;
    uint32_t fetch_timeout_ms;
    uint32_t pool_size;       /* workers = pooled upstream connections */
    uint32_t max_conn_age_s;  /* retire a pooled connection older than this (IIS idle timeout 120 s) */
    uint32_t retry_min_ms;
    uint32_t retry_max_ms;
    uint32_t poll_pending_s;  /* CA manager approval: poll interval */
    uint32_t claim_idle_ms;   /* take over stream entries idle this long (crashed consumer) */
    uint32_t lease_s;         /* wait-set lease of a taken record */
    uint32_t chain_refresh_s; /* re-read certcarc.asp / the CA chain */
    char *consumer;           /* consumer name prefix; empty = HOST:PID */
    char *log_level;          /* error, warn, info, debug */
} ctl_config_t;

typedef enum {
    CTL_CFG_OK = 0,
    CTL_CFG_EXIT_OK,   /* --help / --version / --dump-config printed: exit 0 */
    CTL_CFG_E_USAGE,
    CTL_CFG_E_VALUE,
    CTL_CFG_E_FILE,
    CTL_CFG__COUNT
} ctl_cfg_err_t;

const char *ctl_cfg_err_str(ctl_cfg_err_t e);

/* ctl_config_defaults fills `cfg` with the table's defaults. */
void ctl_config_defaults(ctl_config_t *cfg);
/* ctl_config_load: defaults, then --config FILE (if given), then flags,
 * then the password file and the derived fields. `out` receives --help and
 * --dump-config text. Returns CTL_CFG_OK, CTL_CFG_EXIT_OK, or an error with
 * a one-line cause in `why` (naming the setting). Positional arguments that
 * are not flags are left in argv order in `rest` (at most `rest_cap`;
 * *n_rest their count): the sub-command, e.g. "doctor". */
ctl_cfg_err_t ctl_config_load(ctl_config_t *cfg, int argc, char **argv, FILE *out,
                              const char **rest, size_t rest_cap, size_t *n_rest,
                              char *why, size_t why_len);
void ctl_config_free(ctl_config_t *cfg);
/* ctl_config_dump writes the whole table as a commented INI file. */
void ctl_config_dump(FILE *out);

#endif
