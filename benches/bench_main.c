/* bench_main: the stampede-bench program: its command line (one option table
 * for both subcommands, from which parsing and --help both come), the order
 * of a run (preflight, key pool, CSRs or devices, timed load, crypto
 * measurement) and the report whose last line is the one scripts read. It
 * owns the run state and passes it down. The subcommand picks the protocol
 * the load engine (bench_load.c) runs, bench_est.c's or bench_capf.c's ops
 * table, once.
 * Thread: main thread; the load runs on the engine's workers meanwhile. */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "benches/bench.h"
#include "dataplane/capf_msg.h"

#define MAIN_NS 1000000000ull
#define MAIN_POLL_NS 20000000ull        /* how often the main thread looks */
#define MAIN_SAMPLE_GAP_NS 10000000ull  /* in-load crypto: one sample per 10 ms */
#define MAIN_SAMPLE_WARMUP 5            /* in-load samples dropped first */
#define MAIN_SAMPLE_CAP 4000
#define MAIN_SAMPLE_MIN 30              /* fewer: fall back to the quiet figure */

static const char *const bench_err_text[BENCH_E__COUNT] = {
    [BENCH_OK] = "ok",
    [BENCH_E_SETUP] = "setup",
    [BENCH_E_CONNECT] = "connect",
    [BENCH_E_TLS] = "tls",
    [BENCH_E_CLOSED] = "closed",
    [BENCH_E_TIMEOUT] = "timeout",
    [BENCH_E_HTTP] = "http",
    [BENCH_E_STATUS] = "status",
    [BENCH_E_CONTENT] = "content",
    [BENCH_E_TOO_LARGE] = "too-large",
    [BENCH_E_CAPF] = "capf",
    [BENCH_E_DECLINED] = "declined",
    [BENCH_E_CRYPTO] = "crypto",
    [BENCH_E_REDIS] = "redis",
};

const char *bench_err_str(bench_err_t e) {
    return (unsigned)e < BENCH_E__COUNT && bench_err_text[e] ? bench_err_text[e] : "unknown";
}

bench_err_t bench_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= cap ? BENCH_E_SETUP : BENCH_OK;
}

/* ---- command line -------------------------------------------------------- */

typedef enum { OPT_STR, OPT_U64, OPT_DBL, OPT_FLAG, OPT_FLAG_OFF, OPT_HELP } opt_type_t;

/* Which subcommands take an option (bench_opt_t.modes). */
#define MODE_EST (1u << BENCH_MODE_EST)
#define MODE_CAPF (1u << BENCH_MODE_CAPF)
#define MODE_ALL (MODE_EST | MODE_CAPF)

static const char *const main_mode_name[BENCH_MODE__COUNT] = {
    [BENCH_MODE_EST] = "est", [BENCH_MODE_CAPF] = "capf"};

/* bench_opt_t: one option of stampede-bench: the subcommands that take it,
 * where it goes in bench_cfg_t, its bounds, and its --help line (which
 * states the default). OPT_FLAG sets a bool, OPT_FLAG_OFF clears it. */
typedef struct {
    const char *name;
    unsigned modes;
    opt_type_t type;
    size_t offset;
    double min, max;
    const char *metavar;
    const char *help;
} bench_opt_t;

#define CFG(f) offsetof(bench_cfg_t, f)
static const bench_opt_t bench_opts[] = {
    {"connect", MODE_ALL, OPT_STR, CFG(connect), 0, 0, "HOST:PORT",
     "the server (default est: 127.0.0.1:8443, capf: 127.0.0.1:3804; [v6]:port for IPv6)"},
    {"data-dir", MODE_ALL, OPT_STR, CFG(data_dir), 0, 0, "DIR",
     "stampeded's data directory (default ./stampede-data): ca.crt verifies the server; "
     "tls.key, tls.crt, ca.key, ca.crt feed the crypto measurement; stampeded.pid names "
     "the server process; est-initial-password; bench-keys.pem caches the client keys; "
     "capf: stampedectl --data-dir DIR provisions the devices (unless --redis URL)"},
    {"user", MODE_EST, OPT_STR, CFG(user), 0, 0, "USER", "EST user for HTTP Basic (default est)"},
    {"password-file", MODE_EST, OPT_STR, CFG(password_file), 0, 0, "FILE",
     "first line is the password (default DIR/est-initial-password)"},
    {"count", MODE_ALL, OPT_U64, CFG(count), 1, BENCH_COUNT_MAX, "N",
     "enrollments to attempt (default 10000; capf: one device each)"},
    {"duration", MODE_ALL, OPT_DBL, CFG(duration_s), 0.1, 86400, "SECONDS",
     "take no new enrollments after this long (default 120, the safety bound); enrollments "
     "in flight finish or time out"},
    {"concurrency", MODE_ALL, OPT_U64, CFG(concurrency), 1, 10000, "C",
     "enrollments in flight = client connections (default 64)"},
    {"threads", MODE_ALL, OPT_U64, CFG(threads), 1, 64, "T",
     "client threads, each driving C/T connections with epoll (default: one per CPU)"},
    {"keepalive", MODE_EST, OPT_FLAG, CFG(keepalive), 0, 0, NULL,
     "C persistent connections sending requests back to back (default: a new TCP+TLS "
     "connection per enrollment, `Connection: close`)"},
    {"key-type", MODE_EST, OPT_STR, CFG(key_type_name), 0, 0, "rsa2048|ec256",
     "key type of the client CSRs (default rsa2048)"},
    {"version", MODE_CAPF, OPT_U64, CFG(capf_version), 2, 3, "2|3",
     "CAPF protocol version the phones speak (default 2, Jabber-like: RSA only; 3: phones, "
     "RSA or EC)"},
    {"key", MODE_CAPF, OPT_STR, CFG(key_type_name), 0, 0, "rsa2048|ec256",
     "key the devices are provisioned for and the phones send (default rsa2048; ec256 "
     "needs --version 3)"},
    {"devices", MODE_CAPF, OPT_STR, CFG(devices), 0, 0, "PREFIX",
     "device names: PREFIX + the device number zero-padded to 15 characters, one device "
     "per enrollment, numbered from 1 (default SEPBENCH: SEPBENCH0000001...)"},
    {"provision", MODE_CAPF, OPT_FLAG, CFG(provision), 0, 0, NULL,
     "before the timed phase, write a CSV of the --count devices (install, auth null, the "
     "--key key) and run `stampedectl import --replace` on it, timed (the default; "
     "stampedectl: $STAMPEDECTL, else ../ra/stampedectl relative to this program's "
     "directory, as in the build tree)"},
    {"no-provision", MODE_CAPF, OPT_FLAG_OFF, CFG(provision), 0, 0, NULL,
     "the devices are already provisioned with an Install operation pending"},
    {"keys", MODE_ALL, OPT_U64, CFG(num_keys), 1, BENCH_COUNT_MAX, "K",
     "size of the client key pool (est: default 32, cached in DIR/bench-keys.pem; capf: "
     "default --count, one key per device, as stampeded refuses a key bound to another "
     "device; cached per device prefix in DIR/bench-capf-keys-PREFIX.pem, device n sends "
     "key (n-1) % K; missing keys are generated on two threads, RSA-2048 at ~0.1 s each)"},
    {"tls12", MODE_ALL, OPT_FLAG, CFG(tls12), 0, 0, NULL, "TLS 1.2 instead of TLS 1.3"},
    {"no-verify", MODE_ALL, OPT_FLAG, CFG(no_verify), 0, 0, NULL,
     "do not verify the server certificate (by default it is verified in full "
     "against DIR/ca.crt the first time and pinned: later connections presenting the "
     "same certificate skip the chain check; CertificateVerify is always checked)"},
    {"timeout", MODE_ALL, OPT_DBL, CFG(timeout_s), 0.1, 3600, "SECONDS",
     "limit for one attempt, connect to last response byte (default 15; capf: to the "
     "server's close after END_SESSION)"},
    {"pid", MODE_ALL, OPT_U64, CFG(pid), 1, 4194304, "PID",
     "server process for the CPU figure (default: DIR/stampeded.pid)"},
    {"redis", MODE_ALL, OPT_STR, CFG(redis), 0, 0, "URL|off",
     "Redis whose cost per enrollment is reported (INFO right before and right after the "
     "load): redis://host[:port][/db], unix:/path[?db=N] or an absolute socket path, as "
     "stampeded takes it; off: not measured (default: DIR/redis.sock, stampeded's embedded "
     "Redis, if that socket exists; an explicit URL that does not answer is a setup error)"},
    {"progress", MODE_ALL, OPT_FLAG, CFG(progress), 0, 0, NULL,
     "a progress line on stderr every second"},
    {"quiet", MODE_ALL, OPT_FLAG, CFG(quiet), 0, 0, NULL,
     "print only the result line (and errors on stderr)"},
    {"help", MODE_ALL, OPT_HELP, 0, 0, 0, NULL, "this text"},
};
#define NUM_OPTS (sizeof bench_opts / sizeof bench_opts[0])

static const char bench_usage_head[] =
    "usage: stampede-bench est [OPTIONS]\n"
    "       stampede-bench capf [OPTIONS]\n"
    "       stampede-bench [est|capf] --help\n"
    "\n";

static const char bench_usage_est[] =
    "stampede-bench est plays C concurrent EST (RFC 7030) clients against stampeded: each\n"
    "enrollment POSTs /.well-known/est/simpleenroll with its own CSR (subject CN\n"
    "bench-<run>-<i>, at most 100000 unique, then cycled; all made before the timed phase)\n"
    "and checks that the answer is 200 with a certs-only PKCS#7 holding one certificate.\n"
    "A 503 is a retry, not an error: the same request is sent again after Retry-After (at\n"
    "most 1 s). Latency is measured from connect (with --keepalive: from sending the\n"
    "request) to the last response byte, for the attempt that succeeded.\n"
    "Its crypto per enrollment: the server side of one full TLS handshake, one CSR check\n"
    "(cx_csr_parse + cx_csr_verify) and one leaf signature (cx_cert_issue_leaf).\n"
    "With --keepalive the handshake is amortised: crypto = CSR check + signature +\n"
    "handshake / requests per connection.\n"
    "\n";

static const char bench_usage_capf[] =
    "stampede-bench capf plays C concurrent CAPF phones (capf-protocol.md) against\n"
    "stampeded's CAPF listener: each enrollment is a new TCP connection and full TLS\n"
    "handshake (no resumption, as real phones) and one install (§2.7.1) of its own device:\n"
    "hello, AUTH_RESPONSE (version 2 or 3, null-string authentication), the key request\n"
    "(checked against --key), KEY_GENERATE_RESPONSE with a pool key's SubjectPublicKeyInfo,\n"
    "the LSC (checked: our key, CN = the device, serial kept), STORE_CERTIFICATE_RESPONSE\n"
    "01, END_SESSION; then the phone waits for the server's close. END_SESSION 01 is a\n"
    "success; any other reason is an error of cause \"declined\", counted per step and\n"
    "reason. Every server message must be exactly one well-formed message (parsed with\n"
    "stampeded's codec); messages that were not exactly one TLS record are counted (§1.1).\n"
    "Latency is measured from connect to END_SESSION. CUCM gives a device its LSC once,\n"
    "so each enrollment needs its own provisioned device: by default the bench imports\n"
    "them first (--provision) and reports how long that took; it is not in the timed phase.\n"
    "Its crypto per enrollment: the server side of one full TLS handshake, the check of\n"
    "the phone's public key (capf_spki_check: CAPF sends a bare SPKI, no CSR signature)\n"
    "and one LSC signature (cx_lsc_issue for the device, default LSC policy).\n"
    "\n";

static const char bench_usage_common[] =
    "Around the timed phase it reads the server's utime+stime (/proc/PID/stat) and measures\n"
    "on one core the crypto each enrollment cannot avoid (above) with the server's own keys:\n"
    "the handshake with DIR/tls.key (capf: the key of the certificate the listener presents,\n"
    "DIR/ca.key by default), same version, group and cipher as the load, no session\n"
    "tickets, in memory; the signature with DIR/ca.key. It is sampled during the load (one\n"
    "sample per 10 ms, medians), and quietly right before and right after it (medians of\n"
    "300 runs, averaged); both are printed. overhead = server CPU per enrollment / crypto\n"
    "per enrollment: a ratio that survives noisy machines better than the rates do.\n"
    "\n"
    "With --redis (by default stampeded's embedded Redis on DIR/redis.sock) it reads the\n"
    "Redis server's INFO right before and right after the load and reports per enrollment:\n"
    "client commands (calls in INFO commandstats of the commands stampeded sends itself:\n"
    "evalsha (the batched request script), eval, hgetall, script, select, ping), server\n"
    "commands (total_commands_processed, which also counts the HMGET/HSET/XADD... the\n"
    "script makes),\n"
    "reads and writes on the server's sockets (a read is one batch of pipelined commands:\n"
    "a round trip), bytes in and out, and redis-server CPU (used_cpu_sys + used_cpu_user;\n"
    "/proc/PID/stat too when the server runs here). The bench's own two INFO requests are\n"
    "taken out; every other client of that Redis during the load is counted.\n"
    "\n"
    "options:\n";

static const char bench_usage_tail[] =
    "\n"
    "The last line of stdout is, for both subcommands,\n"
    "  enrollments=N errors=E seconds=S rate=R/s p50_ms=X p99_ms=Y\n"
    "  server_cpu_us_per_enroll=A crypto_us_per_enroll=B overhead=A/B\n"
    "  crypto_quiet_us=Q overhead_quiet=A/Q\n"
    "  redis_cmds_per_enroll=C redis_reads_per_enroll=R redis_cpu_us_per_enroll=U\n"
    "(on one line; \"na\" where a figure is unknown; C counts client commands, R the\n"
    "server's socket reads, U is redis-server CPU from INFO cpu). Exit status 0 only if\n"
    "there were no errors (duplicate serials count as errors) and at least one enrollment\n"
    "succeeded; 1 otherwise, 2 for a usage or setup error. Ctrl-C stops taking enrollments,\n"
    "twice abandons those in flight.\n";

/* main_print_wrapped prints `text` from column 8, wrapped before column 80. */
static void main_print_wrapped(FILE *f, const char *text) {
    const char *p = text;
    while (*p != '\0') {
        size_t len = strlen(p), cut = len;
        if (len > 72) {
            cut = 72;
            while (cut > 0 && p[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = 72;
        }
        fprintf(f, "        %.*s\n", (int)cut, p);
        p += cut;
        while (*p == ' ')
            p++;
    }
}

/* main_usage prints the help of the subcommands in `modes` (their options
 * only; an option of one of several is marked with it). */
static void main_usage(FILE *f, unsigned modes) {
    fputs(bench_usage_head, f);
    if (modes & MODE_EST)
        fputs(bench_usage_est, f);
    if (modes & MODE_CAPF)
        fputs(bench_usage_capf, f);
    fputs(bench_usage_common, f);
    for (size_t i = 0; i < NUM_OPTS; i++) {
        const bench_opt_t *o = &bench_opts[i];
        if (!(o->modes & modes))
            continue;
        bool only = (o->modes & modes) != modes;
        fprintf(f, "  --%s%s%s%s%s\n", o->name, o->metavar ? " " : "",
                o->metavar ? o->metavar : "", only ? "    " : "",
                only ? (o->modes & MODE_EST ? "(est)" : "(capf)") : "");
        main_print_wrapped(f, o->help);
    }
    fputs(bench_usage_tail, f);
}

/* main_set_opt stores `arg` for option `o`. Returns false if it is invalid. */
static bool main_set_opt(bench_cfg_t *cfg, const bench_opt_t *o, const char *arg) {
    char *base = (char *)cfg + o->offset, *end;
    double d;
    errno = 0;
    switch (o->type) {
    case OPT_STR:
        *(const char **)(void *)base = arg;
        return arg[0] != '\0';
    case OPT_FLAG:
    case OPT_FLAG_OFF:
        *(bool *)(void *)base = o->type == OPT_FLAG;
        return true;
    case OPT_U64:
        d = strtod(arg, &end);
        if (errno || *end || d < o->min || d > o->max || d != (double)(uint64_t)d)
            return false;
        *(uint64_t *)(void *)base = (uint64_t)d;
        return true;
    case OPT_DBL:
        d = strtod(arg, &end);
        if (errno || *end || !(d >= o->min && d <= o->max))
            return false;
        *(double *)(void *)base = d;
        return true;
    default:
        return false;
    }
}

/* main_split_hostport fills cfg->host and cfg->port from cfg->connect. */
static bool main_split_hostport(bench_cfg_t *cfg) {
    const char *s = cfg->connect, *colon, *host = s;
    size_t host_len;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return false;
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return false;
        host_len = (size_t)(colon - s);
    }
    if (host_len == 0 || host_len >= sizeof cfg->host || strlen(colon + 1) == 0 ||
        strlen(colon + 1) >= sizeof cfg->port || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return false;
    memcpy(cfg->host, host, host_len);
    cfg->host[host_len] = '\0';
    snprintf(cfg->port, sizeof cfg->port, "%s", colon + 1);
    return true;
}

/* main_mode reads the subcommand. Returns -1 and sets cfg->mode, or an exit
 * code (help printed or an unknown command). */
static int main_mode(bench_cfg_t *cfg, int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_usage(argc < 2 ? stderr : stdout, MODE_ALL);
        return argc < 2 ? 2 : 0;
    }
    for (unsigned m = 0; m < BENCH_MODE__COUNT; m++)
        if (strcmp(argv[1], main_mode_name[m]) == 0) {
            cfg->mode = (bench_mode_t)m;
            return -1;
        }
    fprintf(stderr, "stampede-bench: unknown command '%s' (est or capf; try --help)\n", argv[1]);
    return 2;
}

/* main_check checks the options together once they are all read. Returns
 * -1 to go on, else an exit code. */
static int main_check(bench_cfg_t *cfg) {
    bool capf = cfg->mode == BENCH_MODE_CAPF;
    if (cfg->connect == NULL)
        cfg->connect = capf ? "127.0.0.1:3804" : "127.0.0.1:8443";
    if (!main_split_hostport(cfg)) {
        fprintf(stderr, "stampede-bench: --connect wants HOST:PORT, got '%s'\n", cfg->connect);
        return 2;
    }
    if (strcmp(cfg->key_type_name, "rsa2048") == 0)
        cfg->key_type = BENCH_KEY_RSA2048;
    else if (strcmp(cfg->key_type_name, "ec256") == 0)
        cfg->key_type = BENCH_KEY_EC256;
    else {
        fprintf(stderr, "stampede-bench: --%s is rsa2048 or ec256\n", capf ? "key" : "key-type");
        return 2;
    }
    if (capf && cfg->capf_version < 3 && cfg->key_type != BENCH_KEY_RSA2048) {
        fprintf(stderr, "stampede-bench: --key ec256 needs --version 3 (version 2 clients "
                "are RSA only)\n");
        return 2;
    }
    bench_capf_names_t names;
    char why[300];
    if (capf && bench_capf_names_init(&names, cfg->devices, cfg->count, why, sizeof why) !=
                    BENCH_OK) {
        fprintf(stderr, "stampede-bench: %s\n", why);
        return 2;
    }
    if (cfg->num_keys == 0)
        cfg->num_keys = capf ? cfg->count : 32;
    if (!capf && cfg->num_keys > BENCH_CSR_CAP) {
        fprintf(stderr, "stampede-bench: --keys is at most %d for est\n", BENCH_CSR_CAP);
        return 2;
    }
    if (cfg->threads > cfg->concurrency)
        cfg->threads = cfg->concurrency;
    return -1;
}

/* main_parse fills `cfg` from argv. Returns -1 to go on, else an exit code. */
static int main_parse(bench_cfg_t *cfg, int argc, char **argv) {
    struct option longopts[NUM_OPTS + 1];
    char prog[64];
    int rc = main_mode(cfg, argc, argv), c;
    if (rc >= 0)
        return rc;
    unsigned mode = 1u << cfg->mode;
    memset(longopts, 0, sizeof longopts);
    for (size_t i = 0; i < NUM_OPTS; i++)
        longopts[i] = (struct option){bench_opts[i].name,
                                      bench_opts[i].metavar ? required_argument : no_argument,
                                      NULL, (int)(256 + i)};
    optind = 1;
    snprintf(prog, sizeof prog, "stampede-bench %s", argv[1]);
    argv[1] = prog;                         /* getopt's messages name it */
    while ((c = getopt_long(argc - 1, argv + 1, "h", longopts, NULL)) != -1) {
        if (c < 256 && c != 'h') {
            fprintf(stderr, "stampede-bench: try --help\n");
            return 2;
        }
        const bench_opt_t *o = c == 'h' ? NULL : &bench_opts[c - 256];
        if (o == NULL || o->type == OPT_HELP) {
            main_usage(stdout, mode);
            return 0;
        }
        if (!(o->modes & mode)) {
            fprintf(stderr, "%s: --%s is an option of stampede-bench %s\n", prog, o->name,
                    o->modes & MODE_EST ? "est" : "capf");
            return 2;
        }
        if (!main_set_opt(cfg, o, optarg)) {
            fprintf(stderr, "stampede-bench: invalid --%s '%s'\n", o->name, optarg);
            return 2;
        }
    }
    if (optind < argc - 1) {
        fprintf(stderr, "stampede-bench: unexpected argument '%s'\n", argv[optind + 1]);
        return 2;
    }
    return main_check(cfg);
}

static void main_defaults(bench_cfg_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->connect = NULL;                    /* per subcommand, in main_check */
    cfg->data_dir = "./stampede-data";
    cfg->user = "est";
    cfg->key_type_name = "rsa2048";
    cfg->count = 10000;
    cfg->concurrency = 64;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = ncpu > 0 ? (uint64_t)ncpu : 1;
    cfg->num_keys = 0;                      /* per subcommand, in main_check */
    cfg->duration_s = 120;
    cfg->timeout_s = 15;
    cfg->capf_version = 2;
    cfg->devices = "SEPBENCH";
    cfg->provision = true;
}

/* ---- setup --------------------------------------------------------------- */

static _Atomic int *main_signal_count;   /* &run.signals, for the handler */

static void main_on_signal(int sig) {
    (void)sig;
    atomic_fetch_add(main_signal_count, 1);
}

/* main_signals turns SIGINT and SIGTERM into stop requests for the timed
 * phase (before it they still end the program). */
static void main_signals(bench_run_t *run) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    main_signal_count = &run->signals;
    sa.sa_handler = main_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* main_read_line reads the first line of `path` (without CR/LF) into `out`. */
static bench_err_t main_read_line(const char *path, char *out, size_t cap) {
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return BENCH_E_SETUP;
    bool ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (!ok)
        return BENCH_E_SETUP;
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] != '\0' ? BENCH_OK : BENCH_E_SETUP;
}

/* main_server_pid returns --pid, or the pid in DIR/stampeded.pid, if that
 * process exists and listens on the --connect port (or nothing in the kernel
 * does: a kernel-bypass server); else 0 (with a warning).
 * It also warns when other sockets listen on that port too. */
static uint64_t main_server_pid(const bench_cfg_t *cfg) {
    char path[4096], line[32];
    uint64_t us, pid = cfg->pid;
    unsigned total, owned;
    if (pid == 0) {
        if (bench_path(path, sizeof path, cfg->data_dir, "stampeded.pid") != BENCH_OK ||
            main_read_line(path, line, sizeof line) != BENCH_OK)
            return 0;
        pid = strtoull(line, NULL, 10);
    }
    if (pid == 0 || bench_proc_cpu_us(pid, &us) != BENCH_OK) {
        if (!cfg->quiet)
            fprintf(stderr, "stampede-bench: warning: server pid %llu is not running; "
                    "server CPU not measured\n", (unsigned long long)pid);
        return 0;
    }
    bench_proc_listeners(pid, (unsigned)strtoul(cfg->port, NULL, 10), &total, &owned);
    /* No kernel socket listens on the port at all: the server carries it on
     * its own stack (stampeded --transport dpdk), so the pid stands. */
    if (total == 0)
        return pid;
    if (owned == 0) {
        if (!cfg->quiet)
            fprintf(stderr, "stampede-bench: warning: pid %llu does not listen on port %s "
                    "(%s); server CPU not measured\n", (unsigned long long)pid, cfg->port,
                    cfg->pid ? "--pid" : "stale stampeded.pid?");
        return 0;
    }
    if (total > owned && !cfg->quiet)
        fprintf(stderr, "stampede-bench: warning: %u other listening socket(s) on port %s: "
                "with SO_REUSEPORT the load may be split between processes\n",
                total - owned, cfg->port);
    return pid;
}

static bench_err_t main_resolve(bench_run_t *run, char *why, size_t why_len) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int e = getaddrinfo(run->cfg->host, run->cfg->port, &hints, &res);
    if (e != 0) {
        snprintf(why, why_len, "cannot resolve %s: %s", run->cfg->host, gai_strerror(e));
        return BENCH_E_SETUP;
    }
    memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
    run->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    return BENCH_OK;
}

static void main_raise_nofile(uint64_t need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need + 64) {
        rl.rlim_cur = need + 64 < rl.rlim_max ? need + 64 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* main_prepare_common does what both subcommands need first: file limit,
 * SIGPIPE, address, TLS context. */
static bench_err_t main_prepare_common(bench_run_t *run, char *why, size_t why_len) {
    bench_err_t err;
    main_raise_nofile(run->cfg->concurrency);
    signal(SIGPIPE, SIG_IGN);               /* a write to a closed socket is an error */
    if ((err = main_resolve(run, why, why_len)) != BENCH_OK)
        return err;
    run->sni = bench_tls_sni(run->cfg);
    if ((run->client_ctx = bench_tls_client_ctx(run->cfg, why, why_len)) == NULL)
        return BENCH_E_SETUP;
    return BENCH_OK;
}

/* main_prepare_keys loads the client key pool (DIR/bench-keys.pem). */
static bench_err_t main_prepare_keys(const bench_cfg_t *cfg, bench_keys_t *keys, char *why,
                                     size_t why_len) {
    char path[4096];
    if (bench_path(path, sizeof path, cfg->data_dir, "bench-keys.pem") != BENCH_OK ||
        bench_keys_load(keys, path, cfg->key_type, cfg->num_keys, cfg->quiet, why,
                        why_len) != BENCH_OK)
        return BENCH_E_SETUP;
    return BENCH_OK;
}

/* main_prepare_results reserves the result slots. */
static bench_err_t main_prepare_results(bench_run_t *run, char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    run->latency_us = calloc(cfg->count, sizeof *run->latency_us);
    run->serials = calloc(cfg->count, sizeof *run->serials);
    if (run->latency_us == NULL || run->serials == NULL) {
        snprintf(why, why_len, "out of memory for %llu results", (unsigned long long)cfg->count);
        return BENCH_E_SETUP;
    }
    return BENCH_OK;
}

/* main_prepare_est does everything before an EST timed phase: password,
 * preflight, key pool, CSRs, result slots. */
static bench_err_t main_prepare_est(bench_run_t *run, bench_keys_t *keys, bench_csrs_t *csrs,
                                    char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    char path[4096], password[256], prefix[1024], info[300];
    bench_err_t err;

    if (cfg->password_file == NULL &&
        bench_path(path, sizeof path, cfg->data_dir, "est-initial-password") != BENCH_OK)
        return BENCH_E_SETUP;
    if (main_read_line(cfg->password_file ? cfg->password_file : path, password,
                       sizeof password) != BENCH_OK) {
        snprintf(why, why_len, "cannot read the password from %.300s (give --password-file)",
                 cfg->password_file ? cfg->password_file : path);
        return BENCH_E_SETUP;
    }
    if ((err = main_prepare_common(run, why, why_len)) != BENCH_OK)
        return err;
    err = bench_est_preflight(run, info, sizeof info, why, why_len);
    if (err == BENCH_E_CONNECT || err == BENCH_E_TLS || err == BENCH_E_SETUP)
        return err;
    if (!cfg->quiet)
        fprintf(stderr, "stampede-bench: %s%s%s\n", info, err ? ": " : "", err ? why : "");
    if (main_prepare_keys(cfg, keys, why, why_len) != BENCH_OK)
        return BENCH_E_SETUP;
    if (bench_msg_enroll_prefix(prefix, sizeof prefix, cfg->connect, cfg->user, password,
                                !cfg->keepalive) != BENCH_OK) {
        snprintf(why, why_len, "user or password too long");
        return BENCH_E_SETUP;
    }
    uint64_t t0 = bench_now_ns();
    size_t num = cfg->count < BENCH_CSR_CAP ? cfg->count : BENCH_CSR_CAP;
    if (bench_csrs_build(csrs, keys, num, prefix, why, why_len) != BENCH_OK)
        return BENCH_E_SETUP;
    if (!cfg->quiet)
        fprintf(stderr, "stampede-bench: %zu CSRs (%s, run %s) ready in %.2f s\n", num,
                bench_keytype_str(cfg->key_type), csrs->run_id,
                (double)(bench_now_ns() - t0) / 1e9);
    run->csrs = csrs;
    run->crypto_in = (bench_crypto_in_t){.mode = BENCH_MODE_EST, .tls_name = "tls",
                                         .der = csrs->csr0_der, .der_len = csrs->csr0_len};
    return main_prepare_results(run, why, why_len);
}

/* main_prepare_capf does everything before a CAPF timed phase: preflight
 * (first: key generation may take minutes), key pool, the plan (names,
 * SPKIs), the devices (stampedectl import), result slots. */
static bench_err_t main_prepare_capf(bench_run_t *run, bench_keys_t *keys,
                                     bench_capf_plan_t *plan, bench_provision_t *prov,
                                     char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    char info[400];
    bench_err_t err;

    if ((err = main_prepare_common(run, why, why_len)) != BENCH_OK)
        return err;
    err = bench_capf_preflight(run, info, sizeof info, why, why_len);
    if (err == BENCH_E_CONNECT || err == BENCH_E_TLS || err == BENCH_E_SETUP)
        return err;
    if (!cfg->quiet)
        fprintf(stderr, "stampede-bench: %s%s%s\n", info, err ? ": " : "", err ? why : "");
    if (cfg->num_keys < cfg->count && !cfg->quiet)
        fprintf(stderr, "stampede-bench: warning: --keys %llu < --count %llu: devices past the "
                "first %llu send keys bound to other devices, which stampeded refuses "
                "(END_SESSION 07 after KEY_GENERATE_RESPONSE)\n",
                (unsigned long long)cfg->num_keys, (unsigned long long)cfg->count,
                (unsigned long long)cfg->num_keys);
    if (bench_capf_keys_load(keys, cfg, why, why_len) != BENCH_OK ||
        bench_capf_plan_build(plan, cfg, keys, why, why_len) != BENCH_OK)
        return BENCH_E_SETUP;
    run->capf = plan;
    if (cfg->provision) {
        err = bench_provision(prov, cfg, plan, why, why_len);
        for (unsigned long i = 0; i < prov->num_messages && i < BENCH_ERRORS_SHOWN; i++)
            fprintf(stderr, "stampede-bench: stampedectl: %s\n", prov->messages[i]);
        if (err != BENCH_OK)
            return err;
        char last[BENCH_CAPF_NAME_MAX + 1];
        bench_capf_name(&plan->names, cfg->count, last);
        if (!cfg->quiet)
            fprintf(stderr, "stampede-bench: %lu devices %s..%s (install, %s) provisioned by "
                    "stampedectl import in %.2f s\n", prov->imported, plan->device1, last,
                    bench_keytype_str(plan->key_type), prov->seconds);
    }
    run->crypto_in.mode = BENCH_MODE_CAPF;      /* tls_name: set by the preflight */
    run->crypto_in.der = CBS_data(&plan->spkis[0]);
    run->crypto_in.der_len = CBS_len(&plan->spkis[0]);
    run->crypto_in.device = plan->device1;
    run->crypto_in.key_type = plan->key_type;
    return main_prepare_results(run, why, why_len);
}

/* ---- the timed phase ----------------------------------------------------- */

/* main_protocols: the load engine's ops of a subcommand, picked once at
 * startup. */
static const bench_load_ops_t *const main_protocols[BENCH_MODE__COUNT] = {
    [BENCH_MODE_EST] = &bench_est_load,
    [BENCH_MODE_CAPF] = &bench_capf_load,
};

/* main_watch runs while the workers do: it turns the duration and signals
 * into stop requests and prints progress. */
static void main_watch(bench_run_t *run, uint64_t t_start) {
    const bench_cfg_t *cfg = run->cfg;
    uint64_t duration_ns = (uint64_t)(cfg->duration_s * 1e9);
    uint64_t grace_ns = (uint64_t)(cfg->timeout_s * 1e9) + MAIN_NS;
    uint64_t next_print = t_start + MAIN_NS, last_t = t_start, last_ok = 0, stop_at = 0;
    struct timespec nap = {.tv_nsec = MAIN_POLL_NS};

    while (atomic_load(&run->workers_done) < run->num_workers) {
        nanosleep(&nap, NULL);
        uint64_t now = bench_now_ns();
        int signals = atomic_load(&run->signals), stop = atomic_load(&run->stop);
        int want = signals >= 2 ? 2 : signals == 1 ? 1 : stop;
        if (now - t_start >= duration_ns && want < 1) {
            want = 1;
            if (!cfg->quiet)
                fprintf(stderr, "stampede-bench: --duration %.1f s reached\n", cfg->duration_s);
        }
        if (want >= 1 && stop_at == 0)
            stop_at = now;
        if (stop_at != 0 && now - stop_at >= grace_ns)
            want = 2;
        if (want > stop)
            atomic_store(&run->stop, want);
        if (cfg->progress && !cfg->quiet && now >= next_print) {
            bench_totals_t t;
            bench_load_totals(run, &t);
            fprintf(stderr, "progress: %llu/%llu enrolled  %.0f/s  errors=%llu  retries=%llu\n",
                    (unsigned long long)t.ok, (unsigned long long)cfg->count,
                    (double)(t.ok - last_ok) * 1e9 / (double)(now - last_t),
                    (unsigned long long)t.errors, (unsigned long long)t.retries);
            last_ok = t.ok;
            last_t = now;
            next_print += MAIN_NS;
        }
    }
}

/* ---- report -------------------------------------------------------------- */

/* main_result: the figures of the report. */
typedef struct {
    bench_totals_t t;
    double seconds;
    size_t duplicates;
    uint64_t pid;
    bool cpu_known;
    uint64_t server_us, children_us;
    uint64_t client_us;                 /* this program's CPU during the load */
    bool crypto_known;
    bool crypto_twice;                  /* measured before and after the load */
    bench_crypto_t crypto;              /* what the ratio uses: in-load if known */
    bench_crypto_t crypto_quiet;        /* mean of before and after */
    bench_crypto_t crypto_before, crypto_after;
    bool crypto_in_load;                /* r->crypto was sampled during the load */
    bool load_sampled;                  /* the sampler got enough samples: */
    bench_crypto_t crypto_load;         /* their medians */
    char load_why[300];                 /* else why not (may be empty) */
    char crypto_why[300];
    bool redis_known;                   /* r->redis holds the Redis cost */
    bench_redis_cost_t redis;
    char redis_addr[400];
    char redis_why[300];                /* why it is not known */
    const bench_provision_t *prov;      /* capf: the import, if it ran */
} main_result_t;

/* main_sampler_t: the in-load crypto sampler thread and what it found. */
typedef struct {
    bench_run_t *run;
    pthread_t thread;
    bool started;
    bool ok;
    bench_crypto_t result;
    char why[300];
} main_sampler_t;

/* main_sampler_thread: while the load runs, every MAIN_SAMPLE_GAP_NS, one
 * in-memory handshake + request check + signature (EST: CSR check + leaf;
 * CAPF: SPKI check + LSC) with the load's TLS parameters,
 * timed in this thread's CPU time. It measures the crypto under the same
 * machine speed and cache pressure as the server's crypto at that moment,
 * which the before/after figures cannot when the host's speed drifts.
 * Cost: one sample (~0.3 ms) per 10 ms of one core, ~1.5% of the machine. */
static void *main_sampler_thread(void *arg) {
    main_sampler_t *ms = arg;
    bench_run_t *run = ms->run;
    bench_crypto_sampler_t *s = NULL;
    struct timespec gap = {.tv_nsec = MAIN_SAMPLE_GAP_NS};
    bench_err_t err = BENCH_OK;

    while (!atomic_load(&run->tls_seen) && atomic_load(&run->workers_done) < run->num_workers)
        nanosleep(&gap, NULL);
    if (atomic_load(&run->tls_seen))
        err = bench_crypto_open(&s, run->cfg, &run->tls, &run->crypto_in, MAIN_SAMPLE_CAP,
                                ms->why, sizeof ms->why);
    for (unsigned i = 0; s != NULL && err == BENCH_OK &&
                         atomic_load(&run->workers_done) < run->num_workers &&
                         atomic_load(&run->stop) == 0; i++) {
        err = bench_crypto_sample(s, i >= MAIN_SAMPLE_WARMUP, ms->why, sizeof ms->why);
        nanosleep(&gap, NULL);
    }
    ms->ok = s != NULL && err == BENCH_OK && bench_crypto_result(s, &ms->result) &&
             ms->result.iterations >= MAIN_SAMPLE_MIN;
    bench_crypto_close(s);
    return NULL;
}

static double main_div(double a, double b) {
    return b > 0 ? a / b : 0;
}

static void main_fmt(char *out, size_t cap, bool known, double v) {
    if (known)
        snprintf(out, cap, "%.2f", v);
    else
        snprintf(out, cap, "na");
}

/* main_redis_cmds lists "name calls/enrollment" of the commands in `c` that
 * are (`top_level`) or are not stampeded's own. */
static void main_redis_cmds(char *out, size_t cap, const bench_redis_cost_t *c, bool top_level) {
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < c->num_cmds && len < cap; i++) {
        if (c->cmds[i].top_level != top_level)
            continue;
        int n = snprintf(out + len, cap - len, "%s%s %.2f", len ? " " : "", c->cmds[i].name,
                         c->cmds[i].per_enroll);
        len += n > 0 ? (size_t)n : 0;
    }
    if (out[0] == '\0')
        snprintf(out, cap, "none");
}

/* main_report_redis prints the Redis cost per enrollment (non-quiet report). */
static void main_report_redis(const main_result_t *r) {
    const bench_redis_cost_t *c = &r->redis;
    char top[512], inner[512], reads[32], writes[32], proc[32];
    if (!r->redis_known) {
        printf("  redis: not measured (%s)\n", r->redis_why);
        return;
    }
    main_redis_cmds(top, sizeof top, c, true);
    main_redis_cmds(inner, sizeof inner, c, false);
    main_fmt(reads, sizeof reads, c->reads >= 0, c->reads);
    main_fmt(writes, sizeof writes, c->writes >= 0, c->writes);
    main_fmt(proc, sizeof proc, c->proc_cpu_us >= 0, c->proc_cpu_us);
    printf("  redis: %.2f client commands/enrollment (%s), %.2f server commands incl. script "
           "calls, %s reads (round trips: pipelined batches)/enrollment, %.0f B in + %.0f B out "
           "per enrollment, %.2f us redis-server CPU/enrollment\n",
           c->client_cmds, top, c->server_cmds, reads, c->bytes_in, c->bytes_out, c->cpu_us);
    printf("  redis: %s, pid %llu; client commands = stampeded's own (evalsha eval "
           "hgetall script select ping) from INFO commandstats; the rest (in scripts, "
           "or other clients): %s; %s writes/enrollment; CPU from /proc: %s us/enrollment\n",
           r->redis_addr, (unsigned long long)c->pid, inner, writes, proc);
}

/* main_crypto_parts names the two non-handshake parts of the crypto. */
static const char *const main_crypto_parts[BENCH_MODE__COUNT][2] = {
    [BENCH_MODE_EST] = {"csr_verify", "leaf_sign"},
    [BENCH_MODE_CAPF] = {"spki_check", "lsc_sign"},
};

/* main_report_est prints the EST-specific lines of the report. */
static void main_report_est(const bench_run_t *run, const main_result_t *r, uint64_t errors) {
    const bench_cfg_t *cfg = run->cfg;
    printf("stampede-bench est: %s, %s, concurrency %llu, threads %llu\n", cfg->connect,
           cfg->keepalive ? "keep-alive connections" : "a new connection per enrollment",
           (unsigned long long)cfg->concurrency, (unsigned long long)cfg->threads);
    printf("  client: %llu %s keys, %zu unique CSRs (run %s)\n",
           (unsigned long long)cfg->num_keys, bench_keytype_str(cfg->key_type),
           run->csrs->num_reqs, run->csrs->run_id);
    printf("  enrollments=%llu errors=%llu retries=%llu abandoned=%llu duplicate_serials=%zu\n",
           (unsigned long long)r->t.ok, (unsigned long long)errors,
           (unsigned long long)r->t.retries, (unsigned long long)r->t.abandoned, r->duplicates);
}

/* main_report_declines prints the END_SESSION reasons other than 01, by the
 * client message they answered. */
static void main_report_declines(const bench_totals_t *t) {
    for (unsigned st = 0; st < BENCH_CAPF_AFTER__COUNT; st++) {
        bool any = false;
        for (unsigned reason = 0; reason < 256; reason++) {
            if (t->declined_by[st][reason] == 0)
                continue;
            if (!any)
                printf("  declined after %s:", bench_capf_stage_str(st));
            any = true;
            printf(" END_SESSION %02x (%s) x%llu", reason, capf_reason_str(reason),
                   (unsigned long long)t->declined_by[st][reason]);
        }
        if (any)
            printf("\n");
    }
}

/* main_report_capf prints the CAPF-specific lines of the report. */
static void main_report_capf(const bench_run_t *run, const main_result_t *r, uint64_t errors) {
    const bench_cfg_t *cfg = run->cfg;
    const bench_capf_plan_t *plan = run->capf;
    char last[BENCH_CAPF_NAME_MAX + 1];
    bench_capf_name(&plan->names, cfg->count, last);
    printf("stampede-bench capf: %s, version %u phones, %s keys, a new connection and full "
           "handshake per enrollment, concurrency %llu, threads %llu\n", cfg->connect,
           plan->version, bench_keytype_str(plan->key_type),
           (unsigned long long)cfg->concurrency, (unsigned long long)cfg->threads);
    printf("  client: devices %s..%s, %zu %s pool keys (device n sends key (n-1) %% %zu), "
           "TLS server certificate DIR/%s.crt\n", plan->device1, last, plan->num_spkis,
           bench_keytype_str(plan->key_type), plan->num_spkis,
           run->crypto_in.tls_name ? run->crypto_in.tls_name : "?");
    if (r->prov != NULL)
        printf("  devices provisioned: %lu by `stampedectl import --replace` in %.2f s "
               "(%.0f devices/s; before the timed phase)\n", r->prov->imported,
               r->prov->seconds, main_div((double)r->prov->imported, r->prov->seconds));
    else
        printf("  devices provisioned: not by this run (--no-provision)\n");
    printf("  enrollments=%llu errors=%llu declined=%llu abandoned=%llu duplicate_serials=%zu\n",
           (unsigned long long)r->t.ok, (unsigned long long)errors,
           (unsigned long long)r->t.errors_by[BENCH_E_DECLINED],
           (unsigned long long)r->t.abandoned, r->duplicates);
    main_report_declines(&r->t);
    printf("  framing: %llu server messages took more than one TLS record, %llu records held "
           "more than one message (capf-protocol.md §1.1: both should be 0)\n",
           (unsigned long long)r->t.split_msgs, (unsigned long long)r->t.merged_msgs);
}

static void main_report(const bench_run_t *run, main_result_t *r) {
    const bench_cfg_t *cfg = run->cfg;
    size_t n = (size_t)r->t.ok;
    uint64_t errors = r->t.errors + r->duplicates;
    double per_conn = main_div((double)r->t.ok, (double)r->t.handshakes);
    double hs_share = cfg->keepalive ? main_div(1.0, per_conn) : 1.0;
    double crypto_us = r->crypto.csr_verify_us + r->crypto.leaf_sign_us +
                       r->crypto.handshake_us * hs_share;
    double quiet_us = r->crypto_quiet.csr_verify_us + r->crypto_quiet.leaf_sign_us +
                      r->crypto_quiet.handshake_us * hs_share;
    double cpu_us = main_div((double)r->server_us, (double)n);
    char a[32], b[32], o[32], p50s[32], p99s[32], tls[160];

    bench_stats_sort_u32(run->latency_us, n);
    double p50 = bench_stats_percentile(run->latency_us, n, 50) / 1000.0;
    double p90 = bench_stats_percentile(run->latency_us, n, 90) / 1000.0;
    double p99 = bench_stats_percentile(run->latency_us, n, 99) / 1000.0;
    double pmax = bench_stats_percentile(run->latency_us, n, 100) / 1000.0;
    bool cpu_known = r->cpu_known && n > 0;
    bool crypto_known = r->crypto_known && crypto_us > 0;
    main_fmt(a, sizeof a, cpu_known, cpu_us);
    main_fmt(b, sizeof b, crypto_known, crypto_us);
    main_fmt(o, sizeof o, cpu_known && crypto_known, main_div(cpu_us, crypto_us));
    char q[32], qo[32];
    bool quiet_known = r->crypto_quiet.iterations > 0 && quiet_us > 0;
    main_fmt(q, sizeof q, quiet_known, quiet_us);
    main_fmt(qo, sizeof qo, cpu_known && quiet_known, main_div(cpu_us, quiet_us));
    main_fmt(p50s, sizeof p50s, n > 0, p50);
    main_fmt(p99s, sizeof p99s, n > 0, p99);
    char rc[32], rr[32], ru[32];
    main_fmt(rc, sizeof rc, r->redis_known, r->redis.client_cmds);
    main_fmt(rr, sizeof rr, r->redis_known && r->redis.reads >= 0, r->redis.reads);
    main_fmt(ru, sizeof ru, r->redis_known, r->redis.cpu_us);

    const char *const *part = main_crypto_parts[cfg->mode];
    if (!cfg->quiet) {
        bench_tls_params_str(tls, sizeof tls, &run->tls);
        if (cfg->mode == BENCH_MODE_CAPF)
            main_report_capf(run, r, errors);
        else
            main_report_est(run, r, errors);
        printf("  tls: %s, server %s\n", atomic_load(&run->tls_seen) ? tls : "none negotiated",
               cfg->no_verify ? "not verified" : "verified against DIR/ca.crt once, then pinned");
        if (r->t.errors > 0) {
            printf("  errors by cause:");
            for (unsigned e = 1; e < BENCH_E__COUNT; e++)
                if (r->t.errors_by[e] > 0)
                    printf(" %s=%llu", bench_err_str(e), (unsigned long long)r->t.errors_by[e]);
            printf("\n");
        }
        if (cfg->mode == BENCH_MODE_EST)
            printf("  connections=%llu handshakes=%llu requests_per_connection=%.2f\n",
                   (unsigned long long)r->t.connections, (unsigned long long)r->t.handshakes,
                   per_conn);
        else
            printf("  connections=%llu handshakes=%llu\n", (unsigned long long)r->t.connections,
                   (unsigned long long)r->t.handshakes);
        printf("  rate: %.2f enrollments/s over %.2f s\n", main_div((double)n, r->seconds),
               r->seconds);
        printf("  latency_ms: p50=%.2f p90=%.2f p99=%.2f max=%.2f\n", p50, p90, p99, pmax);
        printf("  bench: %.2f s CPU = %.2f us/enrollment, %.0f%% of one core (it shares "
               "the machine)\n", (double)r->client_us / 1e6,
               main_div((double)r->client_us, (double)n),
               main_div((double)r->client_us / 1e4, r->seconds));
        if (r->cpu_known)
            printf("  server: pid %llu, %.2f s CPU = %s us/enrollment%s; its children %.2f s "
                   "(%.2f us/enrollment, not in the ratio)\n",
                   (unsigned long long)r->pid, (double)r->server_us / 1e6, a,
                   r->server_us < 20 * 10000 ? " (coarse: /proc counts in clock ticks, "
                                               "use a larger --count)" : "",
                   (double)r->children_us / 1e6, main_div((double)r->children_us, (double)n));
        else
            printf("  server: pid unknown (no --pid, no live DIR/stampeded.pid): CPU not measured\n");
        if (r->crypto_known) {
            const char *share = cfg->keepalive ? " / requests_per_connection" : "";
            if (r->crypto_in_load)
                printf("  crypto during the load (medians of %u samples, one per %llu ms): "
                       "handshake %.2f%s + %s %.2f + %s %.2f = %.2f us/enrollment\n",
                       r->crypto.iterations, MAIN_SAMPLE_GAP_NS / 1000000ull,
                       r->crypto.handshake_us, share, part[0], r->crypto.csr_verify_us,
                       part[1], r->crypto.leaf_sign_us, crypto_us);
            else
                printf("  crypto during the load: not sampled (%s); the quiet figure is used\n",
                       r->crypto_why[0] ? r->crypto_why : "run too short");
            if (quiet_known)
                printf("  crypto quiet (one core, medians of %u; mean of before and after the load): "
                   "handshake %.2f%s + %s %.2f + %s %.2f = %.2f us/enrollment\n",
                   r->crypto_quiet.iterations, r->crypto_quiet.handshake_us, share, part[0],
                   r->crypto_quiet.csr_verify_us, part[1], r->crypto_quiet.leaf_sign_us,
                   quiet_us);
            if (r->crypto_twice)
                printf("  crypto before the load: handshake %.2f + %s %.2f + %s %.2f; "
                       "after: %.2f + %.2f + %.2f (us, unamortised)\n",
                       r->crypto_before.handshake_us, part[0], r->crypto_before.csr_verify_us,
                       part[1],
                       r->crypto_before.leaf_sign_us, r->crypto_after.handshake_us,
                       r->crypto_after.csr_verify_us, r->crypto_after.leaf_sign_us);
        } else
            printf("  crypto: not measured: %s\n", r->crypto_why);
        printf("  overhead (server CPU / crypto): %s (against the quiet crypto: %s)\n", o, qo);
        main_report_redis(r);
    }
    printf("enrollments=%llu errors=%llu seconds=%.2f rate=%.2f/s p50_ms=%s p99_ms=%s "
           "server_cpu_us_per_enroll=%s crypto_us_per_enroll=%s overhead=%s "
           "crypto_quiet_us=%s overhead_quiet=%s redis_cmds_per_enroll=%s "
           "redis_reads_per_enroll=%s redis_cpu_us_per_enroll=%s\n",
           (unsigned long long)r->t.ok, (unsigned long long)errors, r->seconds,
           main_div((double)n, r->seconds), p50s, p99s, a, b, o, q, qo, rc, rr, ru);
    fflush(stdout);
}

/* main_measure_crypto measures the crypto quietly (the bench idle) with the
 * load's TLS parameters. It runs twice, right before and right after the
 * load, and keeps the mean of the two medians per component in
 * r->crypto_quiet; both are printed. */
static void main_measure_crypto(const bench_run_t *run, main_result_t *r) {
    bench_tls_params_t tls = {.version = run->cfg->tls12 ? TLS1_2_VERSION : TLS1_3_VERSION};
    if (atomic_load(&run->tls_seen))
        tls = run->tls;
    bench_crypto_t c;
    if (bench_crypto_measure(&c, run->cfg, &tls, &run->crypto_in, r->crypto_why,
                             sizeof r->crypto_why) != BENCH_OK)
        return;
    if (!r->crypto_known) {
        r->crypto_quiet = c;
        r->crypto_before = c;
        r->crypto_known = true;
        return;
    }
    r->crypto_after = c;
    r->crypto_twice = true;
    r->crypto_quiet.handshake_us = (r->crypto_before.handshake_us + c.handshake_us) / 2;
    r->crypto_quiet.csr_verify_us = (r->crypto_before.csr_verify_us + c.csr_verify_us) / 2;
    r->crypto_quiet.leaf_sign_us = (r->crypto_before.leaf_sign_us + c.leaf_sign_us) / 2;
    r->crypto_quiet.tls = c.tls;
}

/* main_pick_crypto sets r->crypto, the figure the ratio uses: the in-load
 * samples when there are enough of them, else the quiet figure. */
static void main_pick_crypto(main_result_t *r) {
    r->crypto = r->crypto_quiet;
    if (r->load_sampled) {
        r->crypto = r->crypto_load;
        r->crypto_in_load = true;
        r->crypto_known = true;
    } else if (r->load_why[0] != '\0') {
        snprintf(r->crypto_why, sizeof r->crypto_why, "%s", r->load_why);
    }
}

/* main_self_cpu_us returns this process's user+system CPU time. */
static uint64_t main_self_cpu_us(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* main_redis_snap takes one Redis reading into `snap`; if that fails the
 * measurement is dropped (*redis closed) with the cause in r->redis_why. */
static void main_redis_snap(bench_redis_t **redis, bench_redis_snap_t *snap, main_result_t *r) {
    if (*redis == NULL)
        return;
    if (bench_redis_snap(*redis, snap, r->redis_why, sizeof r->redis_why) != BENCH_OK) {
        bench_redis_close(*redis);
        *redis = NULL;
    }
}

/* main_redis_open connects to the measured Redis (none is fine, said unless
 * --quiet). Returns BENCH_OK or BENCH_E_SETUP (printed). */
static bench_err_t main_redis_open(bench_redis_t **redis, const bench_cfg_t *cfg,
                                   main_result_t *r) {
    if (bench_redis_open(redis, cfg, r->redis_addr, sizeof r->redis_addr, r->redis_why,
                         sizeof r->redis_why) != BENCH_OK) {
        fprintf(stderr, "stampede-bench: %s\n", r->redis_why);
        return BENCH_E_SETUP;
    }
    if (*redis == NULL && !cfg->quiet && (cfg->redis == NULL || strcmp(cfg->redis, "off") != 0))
        fprintf(stderr, "stampede-bench: redis cost not measured: %s\n", r->redis_why);
    return BENCH_OK;
}

/* main_inputs_t: what a run prepares besides the run state, owned by
 * main_run. */
typedef struct {
    bench_keys_t keys;
    bench_csrs_t csrs;          /* est */
    bench_capf_plan_t plan;     /* capf */
    bench_provision_t prov;     /* capf with --provision */
} main_inputs_t;

static bench_err_t main_prepare(bench_run_t *run, main_inputs_t *in, main_result_t *r,
                                char *why, size_t why_len) {
    if (run->cfg->mode == BENCH_MODE_EST)
        return main_prepare_est(run, &in->keys, &in->csrs, why, why_len);
    if (run->cfg->provision)
        r->prov = &in->prov;
    return main_prepare_capf(run, &in->keys, &in->plan, &in->prov, why, why_len);
}

/* main_timed runs the timed phase: server CPU and Redis readings around the
 * engine's workers and the in-load crypto sampler. */
static bench_err_t main_timed(bench_run_t *run, main_result_t *r, bench_redis_t **redis,
                              char *why, size_t why_len) {
    const bench_cfg_t *cfg = run->cfg;
    bench_redis_snap_t snap[2];
    uint64_t cpu0 = 0, cpu1 = 0;

    r->pid = main_server_pid(cfg);
    r->cpu_known = r->pid != 0 && bench_proc_cpu_us(r->pid, &cpu0) == BENCH_OK;
    uint64_t child0 = r->cpu_known ? bench_proc_children_cpu_us(r->pid) : 0;
    main_signals(run);
    main_redis_snap(redis, &snap[0], r);
    uint64_t self0 = main_self_cpu_us();
    uint64_t t0 = bench_now_ns();
    if (bench_load_start(run, main_protocols[cfg->mode], why, why_len) != BENCH_OK)
        return BENCH_E_SETUP;
    main_sampler_t sampler = {.run = run};
    sampler.started = pthread_create(&sampler.thread, NULL, main_sampler_thread, &sampler) == 0;
    main_watch(run, t0);
    bench_load_join(run, &r->t);
    main_redis_snap(redis, &snap[1], r);
    if (sampler.started)
        pthread_join(sampler.thread, NULL);
    r->seconds = (double)(bench_now_ns() - t0) / 1e9;
    r->client_us = main_self_cpu_us() - self0;
    r->cpu_known = r->cpu_known && bench_proc_cpu_us(r->pid, &cpu1) == BENCH_OK;
    if (r->cpu_known) {
        uint64_t child1 = bench_proc_children_cpu_us(r->pid);
        r->server_us = cpu1 - cpu0;
        r->children_us = child1 > child0 ? child1 - child0 : 0;
    }
    if (!r->cpu_known && r->pid != 0 && !cfg->quiet)
        fprintf(stderr, "stampede-bench: warning: server pid %llu vanished during the run\n",
                (unsigned long long)r->pid);
    if (*redis != NULL && r->t.ok == 0)
        snprintf(r->redis_why, sizeof r->redis_why, "no enrollment succeeded");
    else if (*redis != NULL)
        r->redis_known = bench_redis_cost(&r->redis, &snap[0], &snap[1], r->t.ok, r->redis_why,
                                          sizeof r->redis_why) == BENCH_OK;
    r->load_sampled = sampler.ok;
    r->crypto_load = sampler.result;
    snprintf(r->load_why, sizeof r->load_why, "%s", sampler.why);
    return BENCH_OK;
}

/* main_run: one run of either subcommand, from setup to the report.
 * Returns the exit status. */
static int main_run(const bench_cfg_t *cfg) {
    bench_run_t run;
    main_inputs_t *in = calloc(1, sizeof *in);
    main_result_t r;
    bench_redis_t *redis = NULL;
    char why[512] = "";
    int rc = 2;

    memset(&run, 0, sizeof run);
    memset(&r, 0, sizeof r);
    pthread_mutex_init(&run.mu, NULL);
    run.cfg = cfg;
    if (in == NULL || main_redis_open(&redis, cfg, &r) != BENCH_OK)
        goto out;
    if (main_prepare(&run, in, &r, why, sizeof why) != BENCH_OK) {
        fprintf(stderr, "stampede-bench: %s\n", why[0] ? why : "setup failed");
        goto out;
    }
    main_measure_crypto(&run, &r); /* before the load (again after it) */
    if (main_timed(&run, &r, &redis, why, sizeof why) != BENCH_OK) {
        fprintf(stderr, "stampede-bench: %s\n", why);
        goto out;
    }
    r.duplicates = bench_stats_duplicate_serials(run.serials, (size_t)r.t.ok);
    main_measure_crypto(&run, &r);
    main_pick_crypto(&r);
    main_report(&run, &r);
    rc = r.t.errors == 0 && r.duplicates == 0 && r.t.ok > 0 ? 0 : 1;
out:
    bench_redis_close(redis);
    SSL_CTX_free(run.client_ctx);
    if (in != NULL) {
        bench_csrs_cleanup(&in->csrs);
        bench_capf_plan_cleanup(&in->plan);
        bench_keys_cleanup(&in->keys);
        free(in);
    }
    free(run.latency_us);
    free(run.serials);
    pthread_mutex_destroy(&run.mu);
    return rc;
}

int main(int argc, char **argv) {
    bench_cfg_t cfg;
    main_defaults(&cfg);
    int rc = main_parse(&cfg, argc, argv);
    return rc >= 0 ? rc : main_run(&cfg);
}
