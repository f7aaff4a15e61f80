/* dp_config: the settings table of stampeded and its two readers, the INI
 * config file (libinih) and the command line. Adding a setting is one line in
 * dp_settings[] plus a field in dp_config_t. Thread: startup only. */
#include "dataplane/dp_config.h"

#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>

typedef enum { DP_T_STR, DP_T_UINT, DP_T_BOOL } dp_type_t;

typedef struct {
    const char *name;     /* file key; the flag is --name with '-' for '_' */
    dp_type_t type;
    size_t off;
    const char *def;      /* default as text (NULL: unset) */
    uint32_t min, max;    /* bounds for DP_T_UINT */
    const char *help;
} dp_setting_t;

#define S(n, t, d, lo, hi, h) {#n, t, offsetof(dp_config_t, n), d, lo, hi, h}
static const dp_setting_t dp_settings[] = {
    S(data_dir, DP_T_STR, NULL, 0, 0, "directory for keys, certificates and state (created 0700; required)"),
    S(est_listen, DP_T_STR, "127.0.0.1:8443", 0, 0, "EST listener HOST:PORT (IPv6 as [addr]:port)"),
    S(capf_listen, DP_T_STR, "127.0.0.1:3804", 0, 0, "CAPF listener HOST:PORT (Cisco phones: TCP 3804, TLS, no client certificate requested); empty = no CAPF. Needs the registry (not with redis = off)"),
    S(capf_tls_cert, DP_T_STR, "ca", 0, 0, "CAPF: the certificate the CAPF listener presents: ca = the CA certificate (the LSC issuer, CA:TRUE pathlen:0, as CUCM's CAPF certificate: the one certificate phones' ITL needs; the CA key then also signs CAPF handshakes) or tls = the TLS server certificate"),
    S(capf_max_keygen, DP_T_UINT, "20000", 1, 10000000, "CAPF: sessions that may wait for phones' key generation at once (a separate budget: at the limit new CAPF connections are refused before TLS, so parked phones never starve other handshakes); split across cores"),
    S(capf_lsc_issuers, DP_T_STR, "", 0, 0, "CAPF: PEM bundle of further LSC issuers whose LSCs authenticate phones (auth lsc), e.g. the previous CA during a rollover; our CA always does"),
    S(capf_mic_ca, DP_T_STR, "", 0, 0, "CAPF: PEM bundle of manufacturer CAs (Cisco MIC/SUDI roots) for auth mic, and for auth lsc's MIC fallback; empty = MICs are not accepted"),
    S(capf_accept_expired_mic, DP_T_BOOL, "false", 0, 0, "CAPF: accept an expired MIC (phones with expired MICs exist in the field; the issuing CAs must still be valid)"),
    S(capf_lsc_subject, DP_T_STR, "device", 0, 0, "CAPF: LSC subject: device = O/OU/L/ST/C of the CA and CN=<device>; cucm = serialNumber=PID:<pid> SN:<sn>, C/O/OU, CN=<pid>-<device> (as CUCM issues to hardware phones) for devices whose PID and SN are provisioned (stampedectl --pid --sn), device style for the others"),
    S(capf_auth_timeout, DP_T_UINT, "120", 10, 600, "CAPF: seconds from the hello to the phone's AUTH_RESPONSE (covers a user typing the authentication string)"),
    S(capf_keygen_timeout, DP_T_UINT, "600", 30, 3600, "CAPF: seconds a phone has to generate its key pair (status Key Generation Failed/Timeout after)"),
    S(capf_reply_timeout, DP_T_UINT, "120", 10, 600, "CAPF: seconds a phone has to answer STORE/FETCH/DELETE (status Phone Communication Failure after)"),
    S(capf_lsc_days, DP_T_UINT, "365", 1, 1825, "CAPF: LSC validity, days (CUCM's Duration Of Certificate Validity); notBefore is back-dated by leaf_backdate"),
    S(capf_rsa_min_bits, DP_T_UINT, "2048", 512, 4096, "CAPF: smallest RSA key accepted from phones (FIPS-mode phones need 2048)"),
    S(capf_device_name_max, DP_T_UINT, "15", 1, 64, "CAPF: longest device name accepted in AUTH_RESPONSE (SEP + 12 hex digits is 15)"),
    S(capf_max_auth_failures, DP_T_UINT, "5", 0, 1000, "CAPF: wrong authentication strings before a device is locked out (0 = never)"),
    S(capf_lockout_s, DP_T_UINT, "600", 1, 86400, "CAPF: seconds a locked-out device is refused"),
    S(capf_hello_auth_type, DP_T_BOOL, "true", 0, 0, "CAPF: the hello carries AUTH_TYPE=00 besides VERSION=3 (proven with phones; Jabber ignores it)"),
    S(capf_strict_version, DP_T_BOOL, "true", 0, 0, "CAPF: refuse an AUTH_RESPONSE without VERSION (else treat it as version 2)"),
    S(capf_status_reply, DP_T_BOOL, "true", 0, 0, "CAPF: answer a phone's STATUS_REQUEST with STATUS_RESPONSE 01 and keep the session where it is (capf-protocol.md 4.3.4; unverified with real phones); false: it ends the session as out of order"),
    S(capf_fetch_delete, DP_T_BOOL, "true", 0, 0, "CAPF: serve the Delete and Troubleshoot operations (version 3 clients; unverified with real phones)"),
    S(est_users, DP_T_STR, "", 0, 0, "htpasswd-style 'user:hash' file (hashes from `openssl passwd -6`); default DATA/est-users, created with a random password for user 'est' on first start"),
    S(ca_mode, DP_T_STR, "local", 0, 0, "who signs: local = this appliance's CA (signing pool); online = the upstream Microsoft CA through stampede-control (requests are recorded pending in Redis and queued on stp:upstream; needs the registry and a running stampede-control)"),
    S(online_wait_ms, DP_T_UINT, "5000", 0, 120000, "online mode, EST: how long an enrollment waits for the upstream CA before the answer is 202 Accepted + Retry-After (RFC 7030 4.2.3); the client's retry of the same CSR then gets the certificate"),
    S(online_retry_after, DP_T_UINT, "10", 1, 3600, "online mode, EST: Retry-After seconds sent with 202"),
    S(capf_online_timeout, DP_T_UINT, "120", 5, 3600, "online mode, CAPF: seconds a phone's session waits for the upstream CA's certificate; then END_SESSION 07, the device keeps its operation (the phone retries) and gets status failed, reason Upgrade Failed: online CA did not answer in time"),
    S(redis, DP_T_STR, "", 0, 0, "Redis to use: redis://host:port/db or a unix socket path; empty = start a private redis-server child on DATA/redis.sock (no TCP port, AOF on); off = no system of record (benchmark comparison only: nothing is recorded, no dedup, no registry devices)"),
    S(deadline_sweep_s, DP_T_UINT, "60", 0, 86400, "every this many seconds, devices whose pending install passed its deadline (--by) get status failed, reason \"deadline passed\" (0 = only when they next try)"),
    S(redis_timeout_ms, DP_T_UINT, "3000", 100, 600000, "a Redis reply later than this drops the connection: requests waiting on it get 503 + Retry-After, and the core reconnects (back-off 100 ms doubling to 2 s)"),
    S(redis_fsync, DP_T_STR, "everysec", 0, 0, "embedded Redis AOF fsync policy: everysec or always"),
    S(cores, DP_T_UINT, "0", 0, 256, "polling cores (threads with their own epoll loop); 0 = one per CPU"),
    S(signers, DP_T_UINT, "0", 0, 256, "signing pool workers; 0 = one per CPU"),
    S(ca_key, DP_T_STR, "ec256", 0, 0, "key type of a newly generated CA: ec256, ec384, rsa2048, rsa3072"),
    S(tls_key, DP_T_STR, "ec256", 0, 0, "key type of a newly generated TLS server key: ec256, ec384, rsa2048, rsa3072"),
    S(ca_name, DP_T_STR, "Stampede Local CA", 0, 0, "subject CN of a newly generated CA"),
    S(org, DP_T_STR, "Stampede", 0, 0, "subject O of generated CA and TLS certificates"),
    S(ca_days, DP_T_UINT, "3650", 1, 36500, "lifetime of a newly generated CA certificate, days"),
    S(tls_days, DP_T_UINT, "825", 1, 3650, "lifetime of the generated TLS server certificate, days"),
    S(tls_names, DP_T_STR, "localhost,127.0.0.1", 0, 0, "comma-separated DNS names / IPs for the TLS server certificate"),
    S(leaf_days, DP_T_UINT, "730", 1, 36500, "lifetime of issued certificates, days"),
    S(leaf_backdate, DP_T_UINT, "300", 0, 86400, "notBefore back-dating of issued certificates, seconds"),
    S(leaf_server_auth, DP_T_BOOL, "false", 0, 0, "add EKU serverAuth to issued certificates (clientAuth is always present)"),
    S(leaf_copy_san, DP_T_BOOL, "false", 0, 0, "copy the CSR's subjectAltName into issued certificates"),
    S(tls_min, DP_T_STR, "1.2", 0, 0, "lowest TLS version: 1.0, 1.1, 1.2, 1.3 (below 1.2 needs tls_legacy)"),
    S(tls_max, DP_T_STR, "1.3", 0, 0, "highest TLS version: 1.2 or 1.3"),
    S(tls_legacy, DP_T_BOOL, "false", 0, 0, "allow TLS 1.0/1.1 and RSA-key-exchange AES-CBC-SHA suites (old phones)"),
    S(tls_ciphers, DP_T_STR, "", 0, 0, "TLS 1.2 cipher list (BoringSSL syntax); empty = secure defaults"),
    S(client_ca, DP_T_STR, "", 0, 0, "PEM bundle of manufacturer CAs trusted for EST client-certificate auth (our CA is always trusted)"),
    S(client_cert, DP_T_STR, "optional", 0, 0, "TLS client certificates: optional (request, verify if sent) or off"),
    S(csrattrs, DP_T_STR, "", 0, 0, "comma-separated OIDs returned by /csrattrs; empty = 204 No Content"),
    S(max_body, DP_T_UINT, "16384", 256, 1048576, "largest accepted request body, bytes (413 above)"),
    S(max_header, DP_T_UINT, "8192", 512, 65536, "largest accepted request header block, bytes (431 above)"),
    S(handshake_timeout, DP_T_UINT, "10", 1, 3600, "seconds a client has to finish the TLS handshake"),
    S(header_timeout, DP_T_UINT, "10", 1, 3600, "seconds a client has to send a complete request header"),
    S(body_timeout, DP_T_UINT, "30", 1, 3600, "seconds a client has to send the request body"),
    S(idle_timeout, DP_T_UINT, "60", 1, 86400, "seconds an idle keep-alive connection is kept"),
    S(drain_timeout, DP_T_UINT, "10", 0, 3600, "seconds SIGTERM waits for in-flight requests"),
    S(queue_bound, DP_T_UINT, "4096", 16, 1048576, "signing jobs in flight before new enrollments get 503 + Retry-After"),
    S(max_sessions, DP_T_UINT, "100000", 16, 10000000, "concurrent connections per polling core"),
    S(max_per_address, DP_T_UINT, "0", 0, 10000000, "concurrent connections per client address per polling core, EST and CAPF (0 = no limit); more are refused before TLS. Phones behind one NAT share an address: size it for the largest site"),
    S(retry_after, DP_T_UINT, "1", 1, 3600, "Retry-After seconds sent with 503"),
    S(close_linger_ms, DP_T_UINT, "2000", 0, 60000, "after the last response of a connection, wait this long for the client to close first (it then keeps TIME_WAIT); 0 = close at once"),
    S(so_sndbuf, DP_T_UINT, "0", 0, 16777216, "socket send buffer per connection, bytes (SO_SNDBUF); 0 = kernel default and autotuning"),
    S(log_level, DP_T_STR, "info", 0, 0, "error, warn, info or debug"),
};
#undef S
#define DP_NSETTINGS (sizeof(dp_settings) / sizeof(dp_settings[0]))

static const char *const dp_cfg_err_text[DP_CFG__COUNT] = {
    [DP_CFG_OK] = "ok", [DP_CFG_EXIT_OK] = "exit",
    [DP_CFG_E_USAGE] = "usage error", [DP_CFG_E_VALUE] = "invalid value",
    [DP_CFG_E_FILE] = "config file error",
};

const char *dp_cfg_err_str(dp_cfg_err_t e) {
    return (unsigned)e < DP_CFG__COUNT ? dp_cfg_err_text[e] : "unknown";
}

static const dp_setting_t *dp_setting_find(const char *name) {
    char key[64];
    size_t n = strlen(name);
    if (n >= sizeof(key)) return NULL;
    for (size_t i = 0; i <= n; i++) key[i] = name[i] == '-' ? '_' : name[i];
    for (size_t i = 0; i < DP_NSETTINGS; i++)
        if (strcmp(dp_settings[i].name, key) == 0) return &dp_settings[i];
    return NULL;
}

static dp_cfg_err_t dp_setting_apply(dp_config_t *cfg, const dp_setting_t *s, const char *v,
                                     char *why, size_t why_len) {
    void *field = (char *)cfg + s->off;
    switch (s->type) {
    case DP_T_STR: {
        char *copy = strdup(v);
        if (!copy) return DP_CFG_E_VALUE;
        free(*(char **)field);
        *(char **)field = copy;
        return DP_CFG_OK;
    }
    case DP_T_UINT: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-' || x < s->min || x > s->max) {
            snprintf(why, why_len, "%s: '%s' is not a number in %u..%u", s->name, v, s->min, s->max);
            return DP_CFG_E_VALUE;
        }
        *(uint32_t *)field = (uint32_t)x;
        return DP_CFG_OK;
    }
    case DP_T_BOOL:
        if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
            *(bool *)field = true;
        else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
            *(bool *)field = false;
        else {
            snprintf(why, why_len, "%s: '%s' is not true/false", s->name, v);
            return DP_CFG_E_VALUE;
        }
        return DP_CFG_OK;
    }
    return DP_CFG_E_VALUE;
}

dp_cfg_err_t dp_config_set(dp_config_t *cfg, const char *name, const char *value,
                           char *why, size_t why_len) {
    const dp_setting_t *s = dp_setting_find(name);
    if (!s) {
        snprintf(why, why_len, "unknown setting '%s' (see --help)", name);
        return DP_CFG_E_USAGE;
    }
    return dp_setting_apply(cfg, s, value, why, why_len);
}

typedef struct {
    dp_config_t *cfg;
    char *why;
    size_t why_len;
    dp_cfg_err_t err;
} dp_ini_ctx_t;

static int dp_ini_handler(void *user, const char *section, const char *name, const char *value) {
    dp_ini_ctx_t *ctx = user;
    if (section[0] && strcmp(section, "stampeded") != 0) return 1; /* other programs' sections */
    dp_cfg_err_t e = dp_config_set(ctx->cfg, name, value, ctx->why, ctx->why_len);
    if (e != DP_CFG_OK) {
        ctx->err = e;
        return 0;
    }
    return 1;
}

void dp_config_help(FILE *out, const char *prog) {
    fprintf(out,
            "Usage: %s --data-dir DIR [options]\n"
            "stampeded: the Stampede enrollment daemon (EST, RFC 7030) with a local CA.\n\n"
            "Every setting below can be given as a flag (--name VALUE, '-' or '_') or in\n"
            "the config file as 'name = value' (top level or section [stampeded]).\n"
            "Flags override the file, the file overrides the defaults.\n\n"
            "  --config FILE          read settings from FILE (INI syntax)\n"
            "  --help                 print this help and exit\n"
            "  --version              print the version and exit\n"
            "  --dump-config          print every setting as a commented config file\n"
            "                         (after applying --config and flags) and exit\n",
            prog);
    for (size_t i = 0; i < DP_NSETTINGS; i++) {
        const dp_setting_t *s = &dp_settings[i];
        char flag[64];
        snprintf(flag, sizeof(flag), "--%s", s->name);
        for (char *p = flag + 2; *p; p++)
            if (*p == '_') *p = '-';
        const char *arg = s->type == DP_T_UINT ? " N" : s->type == DP_T_BOOL ? " BOOL" : " VALUE";
        fprintf(out, "  %s%s\n      %s", flag, arg, s->help);
        if (s->def && s->def[0]) fprintf(out, " [default: %s]", s->def);
        fputc('\n', out);
    }
}

void dp_config_dump(FILE *out, const dp_config_t *cfg) {
    fprintf(out, "# stampeded configuration (INI). Generated by `stampeded --dump-config`:\n"
                 "# every setting with its help text and its value. Any setting can also be\n"
                 "# given as a flag: --name value ('_' may be written '-').\n"
                 "[stampeded]\n");
    for (size_t i = 0; i < DP_NSETTINGS; i++) {
        const dp_setting_t *s = &dp_settings[i];
        const void *field = (const char *)cfg + s->off;
        fprintf(out, "\n# %s\n", s->help);
        if (s->type == DP_T_STR) {
            const char *v = *(char *const *)field;
            fprintf(out, "%s%s = %s\n", v && v[0] ? "" : "# ", s->name, v ? v : "");
        } else if (s->type == DP_T_UINT) {
            fprintf(out, "%s = %u\n", s->name, *(const uint32_t *)field);
        } else {
            fprintf(out, "%s = %s\n", s->name, *(const bool *)field ? "true" : "false");
        }
    }
}

static dp_cfg_err_t dp_config_defaults(dp_config_t *cfg, char *why, size_t why_len) {
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < DP_NSETTINGS; i++) {
        const dp_setting_t *s = &dp_settings[i];
        const char *d = s->def ? s->def : (s->type == DP_T_STR ? "" : "0");
        dp_cfg_err_t e = dp_setting_apply(cfg, s, d, why, why_len);
        if (e) return e;
    }
    return DP_CFG_OK;
}

/* flag_value returns the value of argv[*i] ("--x=v" or "--x v"), advancing *i. */
static const char *flag_value(int argc, char **argv, int *i, const char *eq) {
    if (eq) return eq + 1;
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}

dp_cfg_err_t dp_config_load(dp_config_t *cfg, int argc, char **argv, char *why, size_t why_len) {
    dp_cfg_err_t e = dp_config_defaults(cfg, why, why_len);
    if (e) return e;
    /* Pass 1: --help, --version, --config. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            dp_config_help(stdout, argv[0]);
            return DP_CFG_EXIT_OK;
        }
        if (!strcmp(a, "--version")) {
            printf("stampeded %s\n", STAMPEDE_VERSION);
            return DP_CFG_EXIT_OK;
        }
        if (!strncmp(a, "--config", 8) && (a[8] == 0 || a[8] == '=')) {
            const char *v = flag_value(argc, argv, &i, a[8] == '=' ? a + 8 : NULL);
            if (!v) {
                snprintf(why, why_len, "--config needs a file name");
                return DP_CFG_E_USAGE;
            }
            free(cfg->config_file);
            cfg->config_file = strdup(v);
        }
    }
    if (cfg->config_file) {
        dp_ini_ctx_t ctx = {cfg, why, why_len, DP_CFG_OK};
        int r = ini_parse(cfg->config_file, dp_ini_handler, &ctx);
        if (r < 0) {
            snprintf(why, why_len, "cannot read config file %s: %s", cfg->config_file, strerror(errno));
            return DP_CFG_E_FILE;
        }
        if (ctx.err) return ctx.err;
        if (r > 0) {
            snprintf(why, why_len, "%s:%d: malformed line", cfg->config_file, r);
            return DP_CFG_E_FILE;
        }
    }
    /* Pass 2: every other flag overrides. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            snprintf(why, why_len, "unexpected argument '%s' (see --help)", a);
            return DP_CFG_E_USAGE;
        }
        char name[64];
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof(name)) {
            snprintf(why, why_len, "unknown flag '%s' (see --help)", a);
            return DP_CFG_E_USAGE;
        }
        memcpy(name, a + 2, n);
        name[n] = 0;
        if (!strcmp(name, "dump-config")) continue;
        if (strcmp(name, "config") != 0 && !dp_setting_find(name)) {
            snprintf(why, why_len, "unknown flag '--%s' (see --help)", name);
            return DP_CFG_E_USAGE;
        }
        const char *v = flag_value(argc, argv, &i, eq);
        if (!strcmp(name, "config")) continue;
        if (!v) {
            snprintf(why, why_len, "--%s needs a value", name);
            return DP_CFG_E_USAGE;
        }
        e = dp_config_set(cfg, name, v, why, why_len);
        if (e) return e;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--dump-config")) {
            dp_config_dump(stdout, cfg);
            return DP_CFG_EXIT_OK;
        }
    if (!cfg->data_dir[0]) {
        snprintf(why, why_len, "--data-dir is required (see --help)");
        return DP_CFG_E_USAGE;
    }
    return DP_CFG_OK;
}

void dp_config_free(dp_config_t *cfg) {
    for (size_t i = 0; i < DP_NSETTINGS; i++)
        if (dp_settings[i].type == DP_T_STR) {
            char **f = (char **)((char *)cfg + dp_settings[i].off);
            free(*f);
            *f = NULL;
        }
    free(cfg->config_file);
    cfg->config_file = NULL;
}
