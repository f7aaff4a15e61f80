/* ctl_config: the settings table of stampede-control and its readers, the
 * INI config file (libinih) and the command line, plus the password file.
 * Adding a setting is one line in ctl_settings[] and a field in
 * ctl_config_t; --help, --dump-config (docs/stampede-control.conf) and the
 * flags follow from the table. Thread: startup only. */
#include "control/ctl_config.h"

#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataplane/dp_log.h"

#define CTL_UA_DEFAULT "Mozilla/5.0 (X11; Linux x86_64) stampede-control/" STAMPEDE_VERSION
#define CTL_PASSWORD_MAX 1024

typedef enum { CTL_T_STR, CTL_T_UINT } ctl_type_t;

typedef struct {
    const char *name; /* file key; the flag is --name with '-' for '_' */
    ctl_type_t type;
    size_t off;
    const char *def;   /* default as text */
    uint32_t min, max; /* bounds for CTL_T_UINT */
    const char *help;
} ctl_setting_t;

#define S(n, f, t, d, lo, hi, h) {#n, t, offsetof(ctl_config_t, f), d, lo, hi, h}
static const ctl_setting_t ctl_settings[] = {
    S(data_dir, data_dir, CTL_T_STR, "", 0, 0,
      "stampeded's data directory: with redis empty, stampede-control uses the embedded Redis that "
      "stampeded started there (DATA/redis.sock)"),
    S(redis, redis, CTL_T_STR, "", 0, 0,
      "Redis to use, the same one stampeded uses: redis://host:port/db, unix:/path?db=N or a socket "
      "path; empty = DATA/redis.sock of data_dir"),
    S(certsrv_url, certsrv_url, CTL_T_STR, "", 0, 0,
      "the upstream CA's web enrollment base URL, e.g. https://adcs.example.com/certsrv (https: the "
      "service account's credentials go over it). Required to run"),
    S(ca_bundle, ca_bundle, CTL_T_STR, "", 0, 0,
      "PEM file of the CA certificates trusted for the IIS server certificate (the issuer of IIS's "
      "TLS certificate, usually your enterprise root); empty = the system trust store"),
    S(resolve, resolve, CTL_T_STR, "", 0, 0,
      "pinned name resolution HOST:PORT:ADDR[,...] (as curl --resolve), e.g. "
      "adcs.example.com:443:10.0.0.5 when DNS is not usable; the URL keeps the name the IIS "
      "certificate was issued to. Empty = DNS"),
    S(auth, auth, CTL_T_STR, "ntlm", 0, 0,
      "how to log in to IIS: ntlm (the IIS default for /certsrv; bound to the connection, so "
      "pooled connections log in once), negotiate (Kerberos; needs a ticket for HTTP/host), basic "
      "(only over https, if enabled on IIS) or none (anonymous)"),
    S(user, user, CTL_T_STR, "", 0, 0,
      "the service account that enrolls: DOMAIN\\user, user@domain.example or user. It needs Read "
      "and Enroll on the template"),
    S(password_file, password_file, CTL_T_STR, "", 0, 0,
      "file whose first line is the service account's password (there is no flag for the password "
      "itself, and it is never logged). Keep it mode 0600: a file readable by group or others is "
      "warned about"),
    S(template, template_name, CTL_T_STR, "", 0, 0,
      "the certificate template's NAME (its cn, e.g. WebServer or StampedeLSC), not its display name "
      "(\"Web Server\"): the CA matches names only and denies an unknown one with 0x80094800. "
      "Required to run"),
    S(user_agent, user_agent, CTL_T_STR, CTL_UA_DEFAULT, 0, 0,
      "User-Agent sent to IIS: certsrv serves other pages and content types to non-browsers, so it "
      "must contain Mozilla, and neither MSIE nor Trident (those select the ActiveX page variant)"),
    S(connect_timeout_ms, connect_timeout_ms, CTL_T_UINT, "5000", 100, 600000,
      "milliseconds for the TCP connect and TLS handshake to IIS. Separate from the others because "
      "a dead server should be noticed fast while a slow CA must not be cut off (CUCM's single fixed "
      "10 s timeout fails on both counts)"),
    S(login_timeout_ms, login_timeout_ms, CTL_T_UINT, "15000", 100, 600000,
      "milliseconds for the authentication exchange (the NTLM/Negotiate legs of a new connection; "
      "a domain controller can be slow)"),
    S(submit_timeout_ms, submit_timeout_ms, CTL_T_UINT, "60000", 1000, 3600000,
      "milliseconds for the certificate request POST (certfnsh.asp): the CA builds and signs the "
      "certificate inside it, which can take far longer than a login. A POST that times out has an "
      "unknown outcome: the request is resubmitted at most once, and that is audited"),
    S(fetch_timeout_ms, fetch_timeout_ms, CTL_T_UINT, "30000", 100, 600000,
      "milliseconds for a download: the issued certificate (certnew.cer) or the CA chain "
      "(certcarc.asp, certnew.p7b)"),
    S(pool_size, pool_size, CTL_T_UINT, "4", 1, 64,
      "worker threads, each with its own kept-alive upstream connection (so NTLM logs in once per "
      "connection) and its own Redis connection: the number of requests in flight to the CA"),
    S(max_conn_age_s, max_conn_age_s, CTL_T_UINT, "100", 1, 86400,
      "seconds after which a pooled connection is not reused but replaced; keep it below IIS's "
      "connection idle timeout (120 s by default), or a request meets a connection IIS just closed"),
    S(retry_min_ms, retry_min_ms, CTL_T_UINT, "1000", 10, 3600000,
      "first retry delay of a request after a retryable failure (unreachable, timeout, 5xx, "
      "authentication, CA service down); it doubles with every consecutive failure of that request"),
    S(retry_max_ms, retry_max_ms, CTL_T_UINT, "60000", 10, 86400000,
      "longest retry delay (the doubling stops here); not below retry_min_ms"),
    S(poll_pending_s, poll_pending_s, CTL_T_UINT, "30", 1, 86400,
      "seconds between polls (certnew.cer?ReqID=N) of a request the CA holds for CA manager "
      "approval"),
    S(claim_idle_ms, claim_idle_ms, CTL_T_UINT, "30000", 1000, 86400000,
      "stream entries (stp:upstream) that another consumer read but did not acknowledge for this "
      "long are taken over (XAUTOCLAIM): that consumer crashed between reading an entry and handing "
      "its request to the wait set. Also how often each worker looks for such entries"),
    S(lease_s, lease_s, CTL_T_UINT, "120", 5, 86400,
      "seconds a worker owns a request it works on (its stp:upstream:wait score is moved this far "
      "ahead); a crashed worker's requests are taken over after it. Must exceed "
      "connect_timeout_ms + login_timeout_ms + submit_timeout_ms + fetch_timeout_ms"),
    S(chain_refresh_s, chain_refresh_s, CTL_T_UINT, "3600", 1, 604800,
      "seconds between reads of the CA's current renewal index and chain (certcarc.asp, "
      "certnew.p7b), published in stp:ca:upstream; also read at start-up"),
    S(consumer, consumer, CTL_T_STR, "", 0, 0,
      "consumer name in the stp:upstream consumer group (worker N uses NAME/wN); unique per running "
      "instance. Empty = HOST:PID"),
    S(log_level, log_level, CTL_T_STR, "info", 0, 0, "error, warn, info or debug"),
};
#undef S
#define CTL_NSETTINGS (sizeof(ctl_settings) / sizeof(ctl_settings[0]))

static const char *const ctl_cfg_err_text[CTL_CFG__COUNT] = {
    [CTL_CFG_OK] = "ok", [CTL_CFG_EXIT_OK] = "exit",
    [CTL_CFG_E_USAGE] = "usage error", [CTL_CFG_E_VALUE] = "invalid value",
    [CTL_CFG_E_FILE] = "file error",
};

const char *ctl_cfg_err_str(ctl_cfg_err_t e) {
    return (unsigned)e < CTL_CFG__COUNT ? ctl_cfg_err_text[e] : "unknown";
}

static const char *const ctl_auth_names[] = {
    [CTL_AUTH_BASIC] = "basic", [CTL_AUTH_NTLM] = "ntlm",
    [CTL_AUTH_NEGOTIATE] = "negotiate", [CTL_AUTH_NONE] = "none",
};

static const ctl_setting_t *ctl_setting_find(const char *name) {
    char key[64];
    size_t n = strlen(name);
    if (n >= sizeof(key)) return NULL;
    for (size_t i = 0; i <= n; i++) key[i] = name[i] == '-' ? '_' : name[i];
    for (size_t i = 0; i < CTL_NSETTINGS; i++)
        if (strcmp(ctl_settings[i].name, key) == 0) return &ctl_settings[i];
    return NULL;
}

static ctl_cfg_err_t ctl_setting_apply(ctl_config_t *cfg, const ctl_setting_t *s, const char *v,
                                       char *why, size_t why_len) {
    void *field = (char *)cfg + s->off;
    if (s->type == CTL_T_STR) {
        char *copy = strdup(v);
        if (!copy) {
            snprintf(why, why_len, "%s: out of memory", s->name);
            return CTL_CFG_E_VALUE;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return CTL_CFG_OK;
    }
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-' || x < s->min || x > s->max) {
        snprintf(why, why_len, "%s: '%s' is not a number in %u..%u", s->name, v, s->min, s->max);
        return CTL_CFG_E_VALUE;
    }
    *(uint32_t *)field = (uint32_t)x;
    return CTL_CFG_OK;
}

static ctl_cfg_err_t ctl_config_set(ctl_config_t *cfg, const char *name, const char *value, char *why,
                                    size_t why_len) {
    const ctl_setting_t *s = ctl_setting_find(name);
    if (!s) {
        snprintf(why, why_len, "unknown setting '%s' (see --help)", name);
        return CTL_CFG_E_USAGE;
    }
    return ctl_setting_apply(cfg, s, value, why, why_len);
}

typedef struct {
    ctl_config_t *cfg;
    char *why;
    size_t why_len;
    ctl_cfg_err_t err;
} ctl_ini_ctx_t;

static int ctl_ini_handler(void *user, const char *section, const char *name, const char *value) {
    ctl_ini_ctx_t *ctx = user;
    if (section[0] && strcmp(section, "stampede-control") != 0) return 1; /* other programs' sections */
    ctl_cfg_err_t e = ctl_config_set(ctx->cfg, name, value, ctx->why, ctx->why_len);
    if (e != CTL_CFG_OK) {
        ctx->err = e;
        return 0;
    }
    return 1;
}

static void ctl_config_help(FILE *out, const char *prog) {
    fprintf(out,
            "Usage: %s [--config FILE] [options] [run | doctor]\n"
            "stampede-control: Stampede's control plane. In online CA mode it submits the\n"
            "requests stampeded queued (Redis stream stp:upstream) to a Microsoft AD CS web\n"
            "enrollment server (/certsrv), stores the certificates (or the CA's answer) in the\n"
            "request records, and publishes the upstream CA chain (stp:ca:upstream).\n\n"
            "Commands:\n"
            "  run      (default) work until SIGTERM/SIGINT\n"
            "  doctor   check the upstream step by step (DNS, TCP, TLS, login, pages, CA,\n"
            "           chain, template) and print one line per check; submits nothing\n\n"
            "Exit status: 0 done (run: stopped by a signal; doctor: no problem found),\n"
            "  1 doctor found a problem, or run could not start (Redis unreachable),\n"
            "  2 usage or configuration error.\n\n"
            "Every setting below can be given as a flag (--name VALUE, '-' or '_') or in\n"
            "the config file as 'name = value' (top level or section [stampede-control]).\n"
            "Flags override the file, the file overrides the defaults.\n\n"
            "  --config FILE          read settings from FILE (INI syntax)\n"
            "  --help                 print this help and exit\n"
            "  --version              print the version and exit\n"
            "  --dump-config          print every setting as a commented config file\n"
            "                         (the built-in defaults) and exit\n",
            prog);
    for (size_t i = 0; i < CTL_NSETTINGS; i++) {
        const ctl_setting_t *s = &ctl_settings[i];
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", s->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        fprintf(out, "  %s%s\n      %s", flag, s->type == CTL_T_UINT ? " N" : " VALUE", s->help);
        if (s->def[0]) fprintf(out, " [default: %s]", s->def);
        fputc('\n', out);
    }
}

void ctl_config_dump(FILE *out) {
    fprintf(out, "# stampede-control configuration (INI). Generated by `stampede-control\n"
                 "# --dump-config`: every setting with its help text and its default. Any\n"
                 "# setting can also be given as a flag: --name value ('_' may be written '-').\n"
                 "# The upstream password is read from password_file, never from here.\n"
                 "[stampede-control]\n");
    for (size_t i = 0; i < CTL_NSETTINGS; i++) {
        const ctl_setting_t *s = &ctl_settings[i];
        fprintf(out, "\n# %s\n%s%s = %s\n", s->help, s->def[0] ? "" : "# ", s->name, s->def);
    }
}

void ctl_config_defaults(ctl_config_t *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    char why[128];
    for (size_t i = 0; i < CTL_NSETTINGS; i++) {
        /* the table's defaults are valid; only allocation can fail here */
        if (ctl_setting_apply(cfg, &ctl_settings[i], ctl_settings[i].def, why, sizeof(why)) != CTL_CFG_OK)
            abort();
    }
    cfg->auth_kind = CTL_AUTH_NTLM;
}

/* ctl_read_password reads the first line of `password_file` into
 * cfg->password (trailing CR/LF removed) and warns if the file can be read
 * by group or others. */
static ctl_cfg_err_t ctl_read_password(ctl_config_t *cfg, char *why, size_t why_len) {
    const char *path = cfg->password_file;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(why, why_len, "password_file %s: cannot read: %s", path, strerror(errno));
        return CTL_CFG_E_FILE;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        DP_WARN("password_file %s is readable by group or others (mode %03o): chmod 600 it", path,
                (unsigned)(st.st_mode & 0777));
    char *line = calloc(1, CTL_PASSWORD_MAX + 2);
    if (!line) {
        fclose(f);
        snprintf(why, why_len, "password_file: out of memory");
        return CTL_CFG_E_FILE;
    }
    bool got = fgets(line, CTL_PASSWORD_MAX + 2, f) != NULL;
    fclose(f);
    size_t n = got ? strcspn(line, "\r\n") : 0;
    if (got && n > CTL_PASSWORD_MAX) {
        free(line);
        snprintf(why, why_len, "password_file %s: the first line is longer than %d bytes", path,
                 CTL_PASSWORD_MAX);
        return CTL_CFG_E_FILE;
    }
    line[n] = 0;
    if (n == 0) {
        free(line);
        snprintf(why, why_len, "password_file %s: the first line is empty (it must hold the password)", path);
        return CTL_CFG_E_FILE;
    }
    free(cfg->password);
    cfg->password = line;
    return CTL_CFG_OK;
}

/* ctl_config_derive checks the values that have a fixed vocabulary or
 * depend on each other, and fills the derived fields. */
static ctl_cfg_err_t ctl_config_derive(ctl_config_t *cfg, char *why, size_t why_len) {
    size_t k;
    for (k = 0; k < sizeof(ctl_auth_names) / sizeof(ctl_auth_names[0]); k++)
        if (!strcmp(cfg->auth, ctl_auth_names[k])) break;
    if (k == sizeof(ctl_auth_names) / sizeof(ctl_auth_names[0])) {
        snprintf(why, why_len, "auth: '%s' is not one of basic, ntlm, negotiate, none", cfg->auth);
        return CTL_CFG_E_VALUE;
    }
    cfg->auth_kind = (ctl_auth_t)k;
    if (dp_log_parse_level(cfg->log_level) < 0) {
        snprintf(why, why_len, "log_level: '%s' is not one of error, warn, info, debug", cfg->log_level);
        return CTL_CFG_E_VALUE;
    }
    if (cfg->retry_max_ms < cfg->retry_min_ms) {
        snprintf(why, why_len, "retry_max_ms (%u) is below retry_min_ms (%u)", cfg->retry_max_ms,
                 cfg->retry_min_ms);
        return CTL_CFG_E_VALUE;
    }
    uint64_t busy_ms = (uint64_t)cfg->connect_timeout_ms + cfg->login_timeout_ms + cfg->submit_timeout_ms +
                       cfg->fetch_timeout_ms;
    if ((uint64_t)cfg->lease_s * 1000 <= busy_ms) {
        snprintf(why, why_len,
                 "lease_s (%u) must exceed connect_timeout_ms + login_timeout_ms + submit_timeout_ms + "
                 "fetch_timeout_ms (%llu ms): a request's lease would run out while its worker still "
                 "waits for the CA, and another worker would take it over",
                 cfg->lease_s, (unsigned long long)busy_ms);
        return CTL_CFG_E_VALUE;
    }
    if (!strstr(cfg->user_agent, "Mozilla") || strstr(cfg->user_agent, "MSIE") ||
        strstr(cfg->user_agent, "Trident")) {
        snprintf(why, why_len, "user_agent: must contain Mozilla and neither MSIE nor Trident (certsrv "
                               "varies its pages by browser)");
        return CTL_CFG_E_VALUE;
    }
    if (cfg->certsrv_url[0] && strncmp(cfg->certsrv_url, "https://", 8) != 0 &&
        strncmp(cfg->certsrv_url, "http://", 7) != 0) {
        snprintf(why, why_len, "certsrv_url: '%s' is not an https:// (or http://) URL", cfg->certsrv_url);
        return CTL_CFG_E_VALUE;
    }
    if (cfg->password_file[0]) return ctl_read_password(cfg, why, why_len);
    return CTL_CFG_OK;
}

/* flag_value returns the value of argv[*i] ("--x=v" or "--x v"), advancing *i. */
static const char *flag_value(int argc, char **argv, int *i, const char *eq) {
    if (eq) return eq + 1;
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

/* ctl_config_pass1 handles --help, --version and --config. */
static ctl_cfg_err_t ctl_config_pass1(ctl_config_t *cfg, int argc, char **argv, FILE *out, char *why,
                                      size_t why_len) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            ctl_config_help(out, argv[0]);
            return CTL_CFG_EXIT_OK;
        }
        if (!strcmp(a, "--version")) {
            fprintf(out, "stampede-control %s\n", STAMPEDE_VERSION);
            return CTL_CFG_EXIT_OK;
        }
        if (!strncmp(a, "--config", 8) && (a[8] == 0 || a[8] == '=')) {
            const char *v = flag_value(argc, argv, &i, a[8] == '=' ? a + 8 : NULL);
            if (!v) {
                snprintf(why, why_len, "--config needs a file name");
                return CTL_CFG_E_USAGE;
            }
            free(cfg->config_file);
            cfg->config_file = strdup(v);
        } else if (!strncmp(a, "--", 2) && a[2] && !strchr(a, '=') && strcmp(a, "--dump-config") != 0) {
            i++; /* a setting's separate value: never the sub-command */
        }
    }
    if (!cfg->config_file) return CTL_CFG_OK;
    ctl_ini_ctx_t ctx = {cfg, why, why_len, CTL_CFG_OK};
    int r = ini_parse(cfg->config_file, ctl_ini_handler, &ctx);
    if (r < 0) {
        snprintf(why, why_len, "cannot read config file %s: %s", cfg->config_file, strerror(errno));
        return CTL_CFG_E_FILE;
    }
    if (ctx.err) return ctx.err;
    if (r > 0) {
        snprintf(why, why_len, "%s:%d: malformed line", cfg->config_file, r);
        return CTL_CFG_E_FILE;
    }
    return CTL_CFG_OK;
}

/* ctl_config_pass2 applies every other flag and collects positional
 * arguments into `rest`. */
static ctl_cfg_err_t ctl_config_pass2(ctl_config_t *cfg, int argc, char **argv, const char **rest,
                                      size_t rest_cap, size_t *n_rest, bool *dump, char *why, size_t why_len) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            if (*n_rest >= rest_cap) {
                snprintf(why, why_len, "unexpected argument '%s' (see --help)", a);
                return CTL_CFG_E_USAGE;
            }
            rest[(*n_rest)++] = a;
            continue;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof(name)) {
            snprintf(why, why_len, "unknown flag '%s' (see --help)", a);
            return CTL_CFG_E_USAGE;
        }
        memcpy(name, a + 2, n);
        name[n] = 0;
        if (!strcmp(name, "dump-config")) {
            *dump = true;
            continue;
        }
        if (!strcmp(name, "password")) {
            snprintf(why, why_len, "there is no --password flag: put the password in a file (mode 0600) "
                                   "and give --password-file");
            return CTL_CFG_E_USAGE;
        }
        if (strcmp(name, "config") != 0 && !ctl_setting_find(name)) {
            snprintf(why, why_len, "unknown flag '--%s' (see --help)", name);
            return CTL_CFG_E_USAGE;
        }
        const char *v = flag_value(argc, argv, &i, eq);
        if (!strcmp(name, "config")) continue;
        if (!v) {
            snprintf(why, why_len, "--%s needs a value", name);
            return CTL_CFG_E_USAGE;
        }
        ctl_cfg_err_t e = ctl_config_set(cfg, name, v, why, why_len);
        if (e) return e;
    }
    return CTL_CFG_OK;
}

ctl_cfg_err_t ctl_config_load(ctl_config_t *cfg, int argc, char **argv, FILE *out, const char **rest,
                              size_t rest_cap, size_t *n_rest, char *why, size_t why_len) {
    ctl_config_defaults(cfg);
    *n_rest = 0;
    why[0] = 0;
    ctl_cfg_err_t e = ctl_config_pass1(cfg, argc, argv, out, why, why_len);
    if (e) return e;
    bool dump = false;
    e = ctl_config_pass2(cfg, argc, argv, rest, rest_cap, n_rest, &dump, why, why_len);
    if (e) return e;
    if (dump) {
        ctl_config_dump(out);
        return CTL_CFG_EXIT_OK;
    }
    return ctl_config_derive(cfg, why, why_len);
}

void ctl_config_free(ctl_config_t *cfg) {
    for (size_t i = 0; i < CTL_NSETTINGS; i++)
        if (ctl_settings[i].type == CTL_T_STR) {
            char **f = (char **)((char *)cfg + ctl_settings[i].off);
            free(*f);
            *f = NULL;
        }
    if (cfg->password) {
        explicit_bzero(cfg->password, strlen(cfg->password));
        free(cfg->password);
        cfg->password = NULL;
    }
    free(cfg->config_file);
    cfg->config_file = NULL;
}
