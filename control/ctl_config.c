/* ctl_config: the settings table of stampede-control and what only
 * stampede-control does with it: the text of --help and --dump-config, the
 * positional sub-command, the refused --password flag, the password file and
 * the checks across settings. The engine (names, types, bounds, the INI
 * file, the flags, help and dump printing) is ra/ra_conf, shared with
 * stampeded. Adding a setting is one line in ctl_settings[] and a field in
 * ctl_config_t; --help, --dump-config (docs/stampede-control.conf) and the
 * flags follow from the table. Thread: startup only. */
#include "control/ctl_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dataplane/dp_log.h"
#include "ra/ra_conf.h"

#define CTL_UA_DEFAULT "Mozilla/5.0 (X11; Linux x86_64) stampede-control/" STAMPEDE_VERSION
#define CTL_PASSWORD_MAX 1024

#define S(n, f, t, d, lo, hi, h) {#n, t, offsetof(ctl_config_t, f), d, lo, hi, h}
static const ra_conf_setting_t ctl_settings[] = {
    S(data_dir, data_dir, RA_CONF_STR, "", 0, 0,
      "stampeded's data directory: with redis empty, stampede-control uses the embedded Redis that "
      "stampeded started there (DATA/redis.sock)"),
    S(redis, redis, RA_CONF_STR, "", 0, 0,
      "Redis to use, the same one stampeded uses: redis://host:port/db, unix:/path?db=N or a socket "
      "path; empty = DATA/redis.sock of data_dir"),
    S(certsrv_url, certsrv_url, RA_CONF_STR, "", 0, 0,
      "the upstream CA's web enrollment base URL, e.g. https://adcs.example.com/certsrv (https: the "
      "service account's credentials go over it). Required to run"),
    S(ca_bundle, ca_bundle, RA_CONF_STR, "", 0, 0,
      "PEM file of the CA certificates trusted for the IIS server certificate (the issuer of IIS's "
      "TLS certificate, usually your enterprise root); empty = the system trust store"),
    S(resolve, resolve, RA_CONF_STR, "", 0, 0,
      "pinned name resolution HOST:PORT:ADDR[,...] (as curl --resolve), e.g. "
      "adcs.example.com:443:10.0.0.5 when DNS is not usable; the URL keeps the name the IIS "
      "certificate was issued to. Empty = DNS"),
    S(auth, auth, RA_CONF_STR, "ntlm", 0, 0,
      "how to log in to IIS: ntlm (the IIS default for /certsrv; bound to the connection, so "
      "pooled connections log in once), negotiate (Kerberos; needs a ticket for HTTP/host), basic "
      "(only over https, if enabled on IIS) or none (anonymous)"),
    S(user, user, RA_CONF_STR, "", 0, 0,
      "the service account that enrolls: DOMAIN\\user, user@domain.example or user. It needs Read "
      "and Enroll on the template"),
    S(password_file, password_file, RA_CONF_STR, "", 0, 0,
      "file whose first line is the service account's password (there is no flag for the password "
      "itself, and it is never logged). Keep it mode 0600: a file readable by group or others is "
      "warned about"),
    S(template, template_name, RA_CONF_STR, "", 0, 0,
      "the certificate template's NAME (its cn, e.g. WebServer or StampedeLSC), not its display name "
      "(\"Web Server\"): the CA matches names only and denies an unknown one with 0x80094800. "
      "Required to run"),
    S(user_agent, user_agent, RA_CONF_STR, CTL_UA_DEFAULT, 0, 0,
      "User-Agent sent to IIS: certsrv serves other pages and content types to non-browsers, so it "
      "must contain Mozilla, and neither MSIE nor Trident (those select the ActiveX page variant)"),
    S(connect_timeout_ms, connect_timeout_ms, RA_CONF_UINT, "5000", 100, 600000,
      "milliseconds for the TCP connect and TLS handshake to IIS. Separate from the others because "
      "a dead server should be noticed fast while a slow CA must not be cut off (CUCM's single fixed "
      "10 s timeout fails on both counts)"),
    S(login_timeout_ms, login_timeout_ms, RA_CONF_UINT, "15000", 100, 600000,
      "milliseconds for the authentication exchange (the NTLM/Negotiate legs of a new connection; "
      "a domain controller can be slow)"),
    S(submit_timeout_ms, submit_timeout_ms, RA_CONF_UINT, "60000", 1000, 3600000,
      "milliseconds for the certificate request POST (certfnsh.asp): the CA builds and signs the "
      "certificate inside it, which can take far longer than a login. A POST that times out has an "
      "unknown outcome: the request is resubmitted at most once, and that is audited"),
    S(fetch_timeout_ms, fetch_timeout_ms, RA_CONF_UINT, "30000", 100, 600000,
      "milliseconds for a download: the issued certificate (certnew.cer) or the CA chain "
      "(certcarc.asp, certnew.p7b)"),
    S(pool_size, pool_size, RA_CONF_UINT, "4", 1, 64,
      "worker threads, each with its own kept-alive upstream connection (so NTLM logs in once per "
      "connection) and its own Redis connection: the number of requests in flight to the CA"),
    S(max_conn_age_s, max_conn_age_s, RA_CONF_UINT, "100", 1, 86400,
      "seconds after which a pooled connection is not reused but replaced; keep it below IIS's "
      "connection idle timeout (120 s by default), or a request meets a connection IIS just closed"),
    S(retry_min_ms, retry_min_ms, RA_CONF_UINT, "1000", 10, 3600000,
      "first retry delay of a request after a retryable failure (unreachable, timeout, 5xx, "
      "authentication, CA service down); it doubles with every consecutive failure of that request"),
    S(retry_max_ms, retry_max_ms, RA_CONF_UINT, "60000", 10, 86400000,
      "longest retry delay (the doubling stops here); not below retry_min_ms"),
    S(poll_pending_s, poll_pending_s, RA_CONF_UINT, "30", 1, 86400,
      "seconds between polls (certnew.cer?ReqID=N) of a request the CA holds for CA manager "
      "approval"),
    S(claim_idle_ms, claim_idle_ms, RA_CONF_UINT, "30000", 1000, 86400000,
      "stream entries (stp:upstream) that another consumer read but did not acknowledge for this "
      "long are taken over (XAUTOCLAIM): that consumer crashed between reading an entry and handing "
      "its request to the wait set. Also how often each worker looks for such entries"),
    S(lease_s, lease_s, RA_CONF_UINT, "120", 5, 86400,
      "seconds a worker owns a request it works on (its stp:upstream:wait score is moved this far "
      "ahead); a crashed worker's requests are taken over after it. Must exceed "
      "connect_timeout_ms + login_timeout_ms + submit_timeout_ms + fetch_timeout_ms"),
    S(chain_refresh_s, chain_refresh_s, RA_CONF_UINT, "3600", 1, 604800,
      "seconds between reads of the CA's current renewal index and chain (certcarc.asp, "
      "certnew.p7b), published in stp:ca:upstream; also read at start-up"),
    S(consumer, consumer, RA_CONF_STR, "", 0, 0,
      "consumer name in the stp:upstream consumer group (worker N uses NAME/wN); unique per running "
      "instance. Empty = HOST:PID"),
    S(log_level, log_level, RA_CONF_STR, "info", 0, 0, "error, warn, info or debug"),
};
#undef S
#define CTL_NSETTINGS (sizeof(ctl_settings) / sizeof(ctl_settings[0]))

static const ra_conf_spec_t ctl_conf = {
    .prog = "stampede-control",
    .section = "stampede-control",
    .settings = ctl_settings,
    .n_settings = CTL_NSETTINGS,
    .synopsis = "[--config FILE] [options] [run | doctor]",
    .about = "stampede-control: Stampede's control plane. In online CA mode it submits the\n"
             "requests stampeded queued (Redis stream stp:upstream) to a Microsoft AD CS web\n"
             "enrollment server (/certsrv), stores the certificates (or the CA's answer) in the\n"
             "request records, and publishes the upstream CA chain (stp:ca:upstream).\n\n"
             "Commands:\n"
             "  run      (default) work until SIGTERM/SIGINT\n"
             "  doctor   check the upstream step by step (DNS, TCP, TLS, login, pages, CA,\n"
             "           chain, template) and print one line per check; submits nothing\n\n"
             "Exit status: 0 done (run: stopped by a signal; doctor: no problem found),\n"
             "  1 doctor found a problem, or run could not start (Redis unreachable),\n"
             "  2 usage or configuration error.\n\n",
    .dump_means = "(the built-in defaults)",
    .dump_header = "# stampede-control configuration (INI). Generated by `stampede-control\n"
                   "# --dump-config`: every setting with its help text and its default. Any\n"
                   "# setting can also be given as a flag: --name value ('_' may be written '-').\n"
                   "# The upstream password is read from password_file, never from here.\n",
    /* "--name VALUE": VALUE is never read as --help, --version or --config */
    .pair_values_early = true,
    .refused_flag = "password",
    .refused_why = "there is no --password flag: put the password in a file (mode 0600) "
                   "and give --password-file",
};

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

/* ctl_cfg_err_t is the engine's ra_conf_err_t, value for value (its own
 * texts), so an engine result is returned as it is. */
_Static_assert((int)CTL_CFG_EXIT_OK == (int)RA_CONF_EXIT_OK && (int)CTL_CFG_E_USAGE == (int)RA_CONF_E_USAGE &&
                   (int)CTL_CFG_E_VALUE == (int)RA_CONF_E_VALUE && (int)CTL_CFG_E_FILE == (int)RA_CONF_E_FILE &&
                   (int)CTL_CFG__COUNT == (int)RA_CONF__COUNT,
               "ctl_cfg_err_t must mirror ra_conf_err_t");
static ctl_cfg_err_t ctl_cfg_err(ra_conf_err_t e) { return (ctl_cfg_err_t)e; }

void ctl_config_defaults(ctl_config_t *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    char why[128];
    /* the table's defaults are valid; only allocation can fail here */
    if (ra_conf_defaults(&ctl_conf, cfg, why, sizeof(why)) != RA_CONF_OK) abort();
    cfg->auth_kind = CTL_AUTH_NTLM;
}

void ctl_config_dump(FILE *out) {
    ra_conf_dump(&ctl_conf, out, NULL);
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

ctl_cfg_err_t ctl_config_load(ctl_config_t *cfg, int argc, char **argv, FILE *out, const char **rest,
                              size_t rest_cap, size_t *n_rest, char *why, size_t why_len) {
    ctl_config_defaults(cfg);
    *n_rest = 0;
    why[0] = 0;
    ra_conf_err_t e = ra_conf_early(&ctl_conf, cfg, argc, argv, out, &cfg->config_file, why, why_len);
    if (e) return ctl_cfg_err(e);
    ra_conf_rest_t r = {rest, rest_cap, 0};
    bool dump = false;
    e = ra_conf_flags(&ctl_conf, cfg, argc, argv, &r, &dump, why, why_len);
    *n_rest = r.n;
    if (e) return ctl_cfg_err(e);
    if (dump) {
        ctl_config_dump(out);
        return CTL_CFG_EXIT_OK;
    }
    return ctl_config_derive(cfg, why, why_len);
}

void ctl_config_free(ctl_config_t *cfg) {
    ra_conf_free(&ctl_conf, cfg);
    if (cfg->password) {
        explicit_bzero(cfg->password, strlen(cfg->password));
        free(cfg->password);
        cfg->password = NULL;
    }
    free(cfg->config_file);
    cfg->config_file = NULL;
}
