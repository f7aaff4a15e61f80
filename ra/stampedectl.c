/* stampedectl: the operator CLI of the device registry. It talks to the
 * Redis system of record directly (the embedded server's socket in
 * --data-dir, or --redis URL) through a synchronous hiredis connection:
 * device add/show/list/delete, bulk import from CSV (like CUCM's bulk
 * administration), the CAPF report and the list of enrollment requests;
 * `doctor` runs stampede-control's upstream CA checks (ra_ctl_doctor).
 * Every change is audited in `stp:audit`. Exit codes are part of the
 * interface (see RA_CTL_EXIT_*).
 * Single-threaded; owns one connection for its whole run. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ra/ra_audit.h"
#include "ra/ra_capf.h"
#include "ra/ra_device.h"
#include "ra/ra_redis.h"
#include "ra/ra_registry.h"
#include "ra/ra_reqlist.h"

enum {
    RA_CTL_EXIT_OK = 0,
    RA_CTL_EXIT_NOT_FOUND = 1,
    RA_CTL_EXIT_USAGE = 2,
    RA_CTL_EXIT_PARTIAL = 3,
    RA_CTL_EXIT_REDIS = 4,
};

#define RA_CTL_TIMEOUT_MS 3000
#define RA_CTL_WHY 512

/* The run's state, built by main and passed down. */
typedef struct {
    ra_redis_addr_t addr;
    char url[RA_REDIS_HOST_MAX + RA_REDIS_PATH_MAX + 32];
    redisContext *redis; /* opened by ra_ctl_connect */
    char peer[96];       /* audit actor: stampedectl:<user> */
} ra_ctl_t;

typedef struct {
    const char *name; /* "device add" */
    int (*run)(ra_ctl_t *ctl, int argc, char **argv);
    const char *usage;
    const char *help;
} ra_ctl_cmd_t;

static const char ra_ctl_exits[] =
    "Exit codes: 0 ok, 1 device not found, 2 usage or invalid input, 3 import partly failed,\n"
    "            4 Redis unreachable or failed.\n";

/* ra_ctl_fail prints "stampedectl: <msg>" and returns `code`. */
__attribute__((format(printf, 2, 3)))
static int ra_ctl_fail(int code, const char *fmt, ...) {
    va_list ap;
    fputs("stampedectl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

static int ra_ctl_connect(ra_ctl_t *ctl) {
    char why[RA_CTL_WHY];
    if (ctl->redis) return RA_CTL_EXIT_OK;
    ra_err_t e = ra_redis_connect(&ctl->redis, &ctl->addr, RA_CTL_TIMEOUT_MS, why, sizeof(why));
    return e == RA_OK ? RA_CTL_EXIT_OK : ra_ctl_fail(RA_CTL_EXIT_REDIS, "%s", why);
}

/* ra_ctl_redis_fail reports a Redis failure naming the server. */
static int ra_ctl_redis_fail(const ra_ctl_t *ctl, const char *what, const char *why) {
    return ra_ctl_fail(RA_CTL_EXIT_REDIS, "%s: Redis at %s: %s", what, ctl->url, why);
}

/* ra_ctl_opt matches argv[*i] against option `name` (`--name value` or
 * `--name=value`). Returns 1 and the value in *val (advancing *i), 0 if not
 * this option, -1 if the value is missing. */
static int ra_ctl_opt(int argc, char **argv, int *i, const char *name, const char **val) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n)) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n]) return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

static bool ra_ctl_is_help(const char *a) { return !strcmp(a, "--help") || !strcmp(a, "-h"); }

/* ---- building a device from operator strings (CLI and CSV) ---- */

typedef struct {
    const char *name, *op, *auth, *auth_string, *keys, *by, *pid, *sn;
} ra_ctl_input_t;

/* ra_ctl_build validates `in` into `d`. On error returns it with the cause
 * (naming the field and value) in `why`. Sets *past if `by` is past. */
static ra_err_t ra_ctl_build(ra_device_t *d, const ra_ctl_input_t *in, bool *past, char *why,
                             size_t why_len) {
    ra_err_t e;
    *past = false;
    ra_device_init(d, in->name);
    if (!ra_device_name_valid(in->name)) {
        snprintf(why, why_len, "device name '%s': %s", in->name ? in->name : "", ra_err_str(RA_E_BAD_NAME));
        return RA_E_BAD_NAME;
    }
    if ((e = ra_op_parse(in->op, &d->op)) != RA_OK) {
        snprintf(why, why_len, "device %s: operation '%s': %s", in->name, in->op ? in->op : "(missing)", ra_err_str(e));
        return e;
    }
    if ((e = ra_auth_parse(in->auth, &d->auth)) != RA_OK) {
        snprintf(why, why_len, "device %s: auth '%s': %s", in->name, in->auth ? in->auth : "(missing)", ra_err_str(e));
        return e;
    }
    bool has_str = in->auth_string && in->auth_string[0];
    if (d->auth == RA_AUTH_STRING && !has_str) {
        snprintf(why, why_len, "device %s: auth string needs an authentication string (4 to 10 digits)", in->name);
        return RA_E_BAD_AUTH;
    }
    if (d->auth != RA_AUTH_STRING && has_str) {
        snprintf(why, why_len, "device %s: an authentication string is only used with auth string, not %s",
                 in->name, ra_auth_name(d->auth));
        return RA_E_BAD_AUTH;
    }
    if (has_str && (e = ra_auth_string_hash(in->auth_string, d->auth_hash, sizeof(d->auth_hash))) != RA_OK) {
        snprintf(why, why_len, "device %s: %s", in->name, ra_err_str(e)); /* never echo the string */
        return e;
    }
    if (in->keys && in->keys[0]) {
        d->num_keys = 0;
        if ((e = ra_keys_parse(d->keys, &d->num_keys, in->keys)) != RA_OK) {
            snprintf(why, why_len, "device %s: keys '%s': %s", in->name, in->keys, ra_err_str(e));
            return e;
        }
    }
    if (in->by && in->by[0]) {
        if ((e = ra_time_parse(in->by, &d->by)) != RA_OK) {
            snprintf(why, why_len, "device %s: deadline '%s': %s", in->name, in->by, ra_err_str(e));
            return e;
        }
        *past = d->by <= (int64_t)time(NULL);
    }
    if ((in->pid && !ra_pidsn_valid(in->pid)) || (in->sn && !ra_pidsn_valid(in->sn))) {
        snprintf(why, why_len, "device %s: --pid/--sn: 1 to %d characters of A-Z a-z 0-9 . / + = -", in->name,
                 RA_DEVICE_PIDSN_MAX);
        return RA_E_BAD_RECORD;
    }
    if (in->pid) snprintf(d->pid, sizeof(d->pid), "%s", in->pid);
    if (in->sn) snprintf(d->sn, sizeof(d->sn), "%s", in->sn);
    d->status = d->op == RA_OP_NONE ? RA_STATUS_NONE : RA_STATUS_PENDING;
    return RA_OK;
}

/* ---- device add ---- */

/* ra_ctl_add_keys appends one --key value (comma lists allowed) to `buf`. */
static bool ra_ctl_add_keys(char *buf, size_t buf_len, const char *v) {
    size_t used = strlen(buf);
    int n = snprintf(buf + used, buf_len - used, "%s%s", used ? "," : "", v);
    return n >= 0 && (size_t)n < buf_len - used;
}

static int ra_ctl_device_add(ra_ctl_t *ctl, int argc, char **argv) {
    ra_ctl_input_t in = {0};
    char keys[256] = "", why[RA_CTL_WHY];
    bool replace = false, past;
    ra_device_t d;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int r;
        if ((r = ra_ctl_opt(argc, argv, &i, "--op", &in.op)) ||
            (r = ra_ctl_opt(argc, argv, &i, "--auth-string", &in.auth_string)) ||
            (r = ra_ctl_opt(argc, argv, &i, "--auth", &in.auth)) ||
            (r = ra_ctl_opt(argc, argv, &i, "--by", &in.by)) || (r = ra_ctl_opt(argc, argv, &i, "--pid", &in.pid)) ||
            (r = ra_ctl_opt(argc, argv, &i, "--sn", &in.sn))) {
            if (r < 0) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device add: %s needs a value", argv[i]);
        } else if ((r = ra_ctl_opt(argc, argv, &i, "--key", &v))) {
            if (r < 0 || !ra_ctl_add_keys(keys, sizeof(keys), v))
                return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device add: --key needs a key name");
        } else if (!strcmp(argv[i], "--replace")) {
            replace = true;
        } else if (argv[i][0] == '-' || in.name) {
            return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device add: unexpected argument '%s' (see --help)", argv[i]);
        } else {
            in.name = argv[i];
        }
    }
    if (!in.name) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device add: NAME missing (see --help)");
    in.keys = keys;
    ra_err_t e = ra_ctl_build(&d, &in, &past, why, sizeof(why));
    if (e != RA_OK) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device add: %s", why);
    if (past) fprintf(stderr, "stampedectl: warning: device %s: deadline %s is in the past\n", d.name, in.by);
    int rc = ra_ctl_connect(ctl);
    if (rc) return rc;
    e = ra_registry_add(ctl->redis, &d, replace, ctl->peer, why, sizeof(why));
    if (e == RA_E_EXISTS) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device add: %s", why);
    if (e != RA_OK) return ra_ctl_redis_fail(ctl, "device add", why);
    printf("device %s %s: operation %s, auth %s, status %s\n", d.name, replace ? "stored" : "added",
           ra_op_name(d.op), ra_auth_name(d.auth), ra_status_name(d.status));
    return RA_CTL_EXIT_OK;
}

/* ---- device show ---- */

/* ra_ctl_time formats unix seconds as local ISO 8601, or `none`. */
static const char *ra_ctl_time(int64_t t, const char *none, char *buf, size_t buf_len) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !localtime_r(&tt, &tm) || !strftime(buf, buf_len, "%Y-%m-%dT%H:%M:%S%z", &tm)) return none;
    return buf;
}

/* ra_ctl_json_str prints `s` as a JSON string (decode keeps it printable). */
static void ra_ctl_json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        putchar(*s);
    }
    putchar('"');
}

static void ra_ctl_show_json(const ra_device_t *d) {
    printf("{\"name\": ");
    ra_ctl_json_str(d->name);
    printf(", \"op\": \"%s\", \"auth\": \"%s\", \"auth_string_set\": %s, \"keys\": [", ra_op_name(d->op),
           ra_auth_name(d->auth), d->auth_hash[0] ? "true" : "false");
    for (size_t i = 0; i < d->num_keys; i++) printf("%s\"%s\"", i ? ", " : "", ra_key_name(d->keys[i]));
    printf("], \"by\": %" PRId64 ", \"status\": \"%s\", \"reason\": ", d->by, ra_status_name(d->status));
    ra_ctl_json_str(d->reason);
    printf(", \"lsc_serial\": \"%s\", \"lsc_not_after\": %" PRId64 ", \"lsc_md5\": \"%s\", \"lsc_unconfirmed\": \"%s\""
           ", \"stale_lscs\": %" PRId64 ", \"auth_failures\": %" PRId64 ", \"auth_lock_until\": %" PRId64
           ", \"last_session\": %" PRId64 ", \"last_peer\": ",
           d->lsc_serial, d->lsc_not_after, d->lsc_md5, d->lsc_unconfirmed, d->stale_lscs, d->auth_failures,
           d->auth_lock_until, d->last_session);
    ra_ctl_json_str(d->last_peer);
    printf(", \"created\": %" PRId64 ", \"updated\": %" PRId64 "}\n", d->created, d->updated);
}

static void ra_ctl_show_human(const ra_device_t *d) {
    char keys[64], t1[40], t2[40], t3[40], t4[40];
    ra_keys_format(d->keys, d->num_keys, keys, sizeof(keys));
    printf("device          %s\n", d->name);
    printf("operation       %s\n", ra_op_name(d->op));
    printf("authentication  %s%s\n", ra_auth_name(d->auth),
           !d->auth_hash[0]                     ? ""
           : !strcmp(d->auth_hash, RA_CAPF_AUTH_HASH_USED) ? " (string used: set a new one to schedule again)"
                                                           : " (string set)");
    printf("keys            %s\n", keys);
    if (d->pid[0] || d->sn[0]) printf("PID / SN        %s / %s\n", d->pid[0] ? d->pid : "?", d->sn[0] ? d->sn : "?");
    printf("completes by    %s\n", ra_ctl_time(d->by, "none", t1, sizeof(t1)));
    printf("status          %s%s%s\n", ra_status_name(d->status), d->reason[0] ? ": " : "", d->reason);
    printf("LSC serial      %s\n", d->lsc_serial[0] ? d->lsc_serial : "NA");
    printf("LSC expires     %s\n", ra_ctl_time(d->lsc_not_after, "NA", t2, sizeof(t2)));
    if (d->lsc_md5[0]) printf("LSC MD5         %s\n", d->lsc_md5);
    if (d->lsc_unconfirmed[0]) printf("unconfirmed LSC %s (issued; the phone has not confirmed storing it)\n", d->lsc_unconfirmed);
    if (d->stale_lscs) printf("stale LSCs      %" PRId64 "\n", d->stale_lscs);
    printf("auth failures   %" PRId64 "\n", d->auth_failures);
    if (d->auth_lock_until > (int64_t)time(NULL))
        printf("locked out until %s\n", ra_ctl_time(d->auth_lock_until, "", t1, sizeof(t1)));
    if (d->last_session)
        printf("last session    %s from %s\n", ra_ctl_time(d->last_session, "", t1, sizeof(t1)),
               d->last_peer[0] ? d->last_peer : "?");
    printf("created         %s\n", ra_ctl_time(d->created, "unknown", t3, sizeof(t3)));
    printf("updated         %s\n", ra_ctl_time(d->updated, "unknown", t4, sizeof(t4)));
}

static int ra_ctl_device_show(ra_ctl_t *ctl, int argc, char **argv) {
    const char *name = NULL;
    bool json = false;
    char why[RA_CTL_WHY];
    ra_device_t d;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (argv[i][0] == '-' || name)
            return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device show: unexpected argument '%s'", argv[i]);
        else name = argv[i];
    }
    if (!name) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device show: NAME missing");
    if (!ra_device_name_valid(name))
        return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device show: device name '%s': %s", name, ra_err_str(RA_E_BAD_NAME));
    int rc = ra_ctl_connect(ctl);
    if (rc) return rc;
    ra_err_t e = ra_registry_get(ctl->redis, name, &d, why, sizeof(why));
    if (e == RA_E_NOT_FOUND) return ra_ctl_fail(RA_CTL_EXIT_NOT_FOUND, "device show: no device %s", name);
    if (e != RA_OK) return ra_ctl_redis_fail(ctl, "device show", why);
    if (json) ra_ctl_show_json(&d);
    else ra_ctl_show_human(&d);
    return RA_CTL_EXIT_OK;
}

/* ---- device list, collected and sorted ---- */

typedef struct {
    char **names;
    size_t num, cap;
    bool nomem;
} ra_ctl_names_t;

static int ra_ctl_collect(const char *name, void *arg) {
    ra_ctl_names_t *n = arg;
    if (n->num == n->cap) {
        size_t cap = n->cap ? 2 * n->cap : 256;
        char **p = realloc(n->names, cap * sizeof(*p));
        if (!p) return (n->nomem = true), 1;
        n->names = p;
        n->cap = cap;
    }
    if (!(n->names[n->num] = strdup(name))) return (n->nomem = true), 1;
    n->num++;
    return 0;
}

static int ra_ctl_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void ra_ctl_names_free(ra_ctl_names_t *n) {
    for (size_t i = 0; i < n->num; i++) free(n->names[i]);
    free(n->names);
}

/* ra_ctl_names loads all device names, sorted and unique. */
static int ra_ctl_names(ra_ctl_t *ctl, const char *what, ra_ctl_names_t *n) {
    char why[RA_CTL_WHY];
    memset(n, 0, sizeof(*n));
    int rc = ra_ctl_connect(ctl);
    if (rc) return rc;
    ra_err_t e = ra_registry_list(ctl->redis, ra_ctl_collect, n, why, sizeof(why));
    if (e == RA_OK && n->nomem) return ra_ctl_fail(RA_CTL_EXIT_REDIS, "%s: out of memory", what);
    if (e != RA_OK) return ra_ctl_redis_fail(ctl, what, why);
    if (n->num) qsort(n->names, n->num, sizeof(char *), ra_ctl_cmp);
    size_t out = 0;
    for (size_t i = 0; i < n->num; i++) {
        if (out && !strcmp(n->names[out - 1], n->names[i])) free(n->names[i]);
        else n->names[out++] = n->names[i];
    }
    n->num = out;
    return RA_CTL_EXIT_OK;
}

static int ra_ctl_device_list(ra_ctl_t *ctl, int argc, char **argv) {
    ra_ctl_names_t n;
    if (argc > 0) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device list: unexpected argument '%s'", argv[0]);
    int rc = ra_ctl_names(ctl, "device list", &n);
    for (size_t i = 0; !rc && i < n.num; i++) puts(n.names[i]);
    ra_ctl_names_free(&n);
    return rc;
}

/* ---- device delete ---- */

static int ra_ctl_device_delete(ra_ctl_t *ctl, int argc, char **argv) {
    char why[RA_CTL_WHY];
    if (argc != 1 || argv[0][0] == '-')
        return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device delete: exactly one NAME expected");
    if (!ra_device_name_valid(argv[0]))
        return ra_ctl_fail(RA_CTL_EXIT_USAGE, "device delete: device name '%s': %s", argv[0],
                           ra_err_str(RA_E_BAD_NAME));
    int rc = ra_ctl_connect(ctl);
    if (rc) return rc;
    ra_err_t e = ra_registry_delete(ctl->redis, argv[0], ctl->peer, why, sizeof(why));
    if (e == RA_E_NOT_FOUND) return ra_ctl_fail(RA_CTL_EXIT_NOT_FOUND, "device delete: no device %s", argv[0]);
    if (e != RA_OK) return ra_ctl_redis_fail(ctl, "device delete", why);
    printf("device %s deleted\n", argv[0]);
    return RA_CTL_EXIT_OK;
}

/* ---- import FILE.csv ---- */

#define RA_CTL_CSV_HEADER "name,op,auth,auth_string,keys,by"
#define RA_CTL_CSV_COLS 6
/* the same with the PID and serial number of the CUCM-style LSC subject */
#define RA_CTL_CSV_HEADER_PIDSN RA_CTL_CSV_HEADER ",pid,sn"
#define RA_CTL_CSV_COLS_MAX 8

/* ra_ctl_csv_split splits `line` in place into at most RA_CTL_CSV_COLS_MAX
 * fields; a field may be "double-quoted" (with "" for a quote) to hold
 * commas, e.g. a key list. Returns the field count found (-1 if a quote
 * is not closed). */
static int ra_ctl_csv_split(char *line, char *col[RA_CTL_CSV_COLS_MAX]) {
    int n = 0;
    char *r = line, *w = line;
    for (;;) {
        if (n == RA_CTL_CSV_COLS_MAX) return n + 1; /* too many */
        col[n++] = w;
        if (*r == '"') {
            for (r++;; r++) {
                if (!*r) return -1;
                if (*r == '"' && r[1] == '"') *w++ = *r++;
                else if (*r == '"') break;
                else *w++ = *r;
            }
            r++;
            if (*r && *r != ',') return -1;
        } else {
            while (*r && *r != ',') *w++ = *r++;
        }
        if (!*r) {
            *w = '\0';
            return n;
        }
        *w++ = '\0';
        r++;
        w = r;
    }
}

/* ra_ctl_chomp strips a trailing newline / CR and surrounding blanks. */
static char *ra_ctl_chomp(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = '\0';
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

/* ra_ctl_import_line stores one data line. Returns RA_OK, a validation
 * error (cause in `why`), or RA_E_REDIS* (the import stops). */
static ra_err_t ra_ctl_import_line(ra_ctl_t *ctl, char *line, int cols, bool replace, char *why, size_t why_len) {
    char *col[RA_CTL_CSV_COLS_MAX];
    ra_device_t d;
    bool past;
    int n = ra_ctl_csv_split(line, col);
    if (n != cols) {
        snprintf(why, why_len, n < 0 ? "unterminated quote" : "%d fields, expected %d (as the header)", n, cols);
        return RA_E_SYNTAX;
    }
    for (int i = 0; i < cols; i++) col[i] = ra_ctl_chomp(col[i]);
    for (char *k = col[4]; *k; k++)
        if (*k == ';' || *k == ' ') *k = ','; /* "rsa2048;ec256" also accepted */
    ra_ctl_input_t in = {col[0], col[1], col[2], col[3], col[4], col[5], NULL, NULL};
    if (cols == RA_CTL_CSV_COLS_MAX) { /* empty pid/sn: unknown */
        in.pid = col[6][0] ? col[6] : NULL;
        in.sn = col[7][0] ? col[7] : NULL;
    }
    ra_err_t e = ra_ctl_build(&d, &in, &past, why, why_len);
    if (e != RA_OK) return e;
    e = ra_registry_add(ctl->redis, &d, replace, ctl->peer, why, why_len);
    if (e == RA_OK && past)
        fprintf(stderr, "stampedectl: warning: device %s: deadline %s is in the past\n", d.name, in.by);
    return e;
}

/* ra_ctl_import_file imports every data line of `f`, counting results. */
static int ra_ctl_import_file(ra_ctl_t *ctl, FILE *f, const char *path, bool replace, unsigned *ok,
                              unsigned *bad) {
    char *buf = NULL, why[RA_CTL_WHY];
    size_t cap = 0;
    unsigned lineno = 0;
    int rc = RA_CTL_EXIT_OK, cols = RA_CTL_CSV_COLS;
    while (getline(&buf, &cap, f) >= 0) {
        char *line = ra_ctl_chomp(buf);
        if (++lineno == 1) {
            if (!strcmp(line, RA_CTL_CSV_HEADER_PIDSN)) {
                cols = RA_CTL_CSV_COLS_MAX;
            } else if (strcmp(line, RA_CTL_CSV_HEADER)) {
                rc = ra_ctl_fail(RA_CTL_EXIT_USAGE, "%s:1: header must be '%s' or '%s'", path, RA_CTL_CSV_HEADER,
                                 RA_CTL_CSV_HEADER_PIDSN);
                break;
            }
            continue;
        }
        if (!line[0] || line[0] == '#') continue;
        ra_err_t e = ra_ctl_import_line(ctl, line, cols, replace, why, sizeof(why));
        if (e == RA_E_REDIS || e == RA_E_REDIS_CONNECT || e == RA_E_NOMEM) {
            rc = ra_ctl_fail(RA_CTL_EXIT_REDIS, "%s:%u: Redis at %s: %s (import stopped)", path, lineno,
                             ctl->url, why);
            break;
        }
        if (e == RA_OK) {
            (*ok)++;
        } else {
            fprintf(stderr, "%s:%u: %s\n", path, lineno, why);
            (*bad)++;
        }
    }
    if (lineno == 0 && !rc) rc = ra_ctl_fail(RA_CTL_EXIT_USAGE, "%s: empty file (header '%s' expected)", path,
                                             RA_CTL_CSV_HEADER);
    free(buf);
    return rc;
}

static int ra_ctl_import(ra_ctl_t *ctl, int argc, char **argv) {
    const char *path = NULL;
    bool replace = false;
    char why[RA_CTL_WHY], summary[64];
    unsigned ok = 0, bad = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--replace")) replace = true;
        else if ((argv[i][0] == '-' && argv[i][1]) || path)
            return ra_ctl_fail(RA_CTL_EXIT_USAGE, "import: unexpected argument '%s'", argv[i]);
        else path = argv[i];
    }
    if (!path) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "import: FILE missing");
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "import: cannot read %s: %m", path);
    int rc = ra_ctl_connect(ctl);
    if (!rc) rc = ra_ctl_import_file(ctl, f, path, replace, &ok, &bad);
    if (f != stdin) fclose(f);
    if (rc == RA_CTL_EXIT_USAGE || (rc == RA_CTL_EXIT_REDIS && !ctl->redis)) return rc;
    snprintf(summary, sizeof(summary), "imported %u, failed %u", ok, bad);
    printf("%s\n", summary);
    if (rc) return rc;
    if (ra_audit_add(ctl->redis, "import", NULL, ctl->peer, summary, NULL, why, sizeof(why)) != RA_OK)
        return ra_ctl_redis_fail(ctl, "import", why);
    return bad ? RA_CTL_EXIT_PARTIAL : RA_CTL_EXIT_OK;
}

/* ---- report ---- */

/* ra_ctl_csv_field prints `s` quoted if it holds a comma or quote. */
static void ra_ctl_csv_field(const char *s, bool last) {
    if (strpbrk(s, ",\"")) {
        putchar('"');
        for (; *s; s++) {
            if (*s == '"') putchar('"');
            putchar(*s);
        }
        putchar('"');
    } else {
        fputs(s, stdout);
    }
    putchar(last ? '\n' : ',');
}

static void ra_ctl_report_row(const ra_device_t *d, int64_t now, bool csv) {
    char after[40], by[40], days[24] = "NA";
    const char *na = ra_ctl_time(d->lsc_not_after, "NA", after, sizeof(after));
    const char *bys = ra_ctl_time(d->by, "none", by, sizeof(by));
    if (d->lsc_not_after > 0) {
        int64_t left = d->lsc_not_after - now;
        snprintf(days, sizeof(days), "%" PRId64, left >= 0 ? left / 86400 : -((-left + 86399) / 86400));
    }
    const char *serial = d->lsc_serial[0] ? d->lsc_serial : "NA";
    if (!csv) {
        printf("%-20s %-13s %-7s %-8s %-24s %-25s %9s  %s\n", d->name, ra_op_name(d->op), ra_auth_name(d->auth),
               ra_status_name(d->status), serial, na, days, d->reason);
        return;
    }
    const char *cols[] = {d->name, ra_op_name(d->op), ra_auth_name(d->auth), ra_status_name(d->status),
                          d->reason, serial, na, days, bys};
    for (size_t i = 0; i < 9; i++) ra_ctl_csv_field(cols[i], i == 8);
}

#define RA_CTL_BATCH 256

/* ra_ctl_report_batch prints the rows of names[0..num) (one round trip). */
static int ra_ctl_report_batch(ra_ctl_t *ctl, char *const *names, size_t num, int64_t now, long days,
                               bool csv) {
    static ra_device_t devs[RA_CTL_BATCH];
    ra_err_t errs[RA_CTL_BATCH];
    char why[RA_CTL_WHY];
    ra_err_t e = ra_registry_get_batch(ctl->redis, (const char *const *)names, num, devs, errs, why, sizeof(why));
    if (e != RA_OK) return ra_ctl_redis_fail(ctl, "report", why);
    for (size_t i = 0; i < num; i++) {
        const ra_device_t *d = &devs[i];
        if (errs[i] == RA_E_BAD_RECORD) fprintf(stderr, "stampedectl: report: skipped %s: malformed record\n", names[i]);
        if (errs[i] != RA_OK) continue; /* deleted meanwhile, or a stale index entry */
        if (days < 0 || (d->lsc_not_after > 0 && d->lsc_not_after <= now + (int64_t)days * 86400))
            ra_ctl_report_row(d, now, csv);
    }
    return RA_CTL_EXIT_OK;
}

static int ra_ctl_report(ra_ctl_t *ctl, int argc, char **argv) {
    bool csv = false;
    long days = -1;
    const char *v;
    char *end;
    for (int i = 0; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--csv")) csv = true;
        else if ((r = ra_ctl_opt(argc, argv, &i, "--expiring-days", &v))) {
            if (r < 0 || !*v || (days = strtol(v, &end, 10), *end) || days < 0 || days > 36500)
                return ra_ctl_fail(RA_CTL_EXIT_USAGE, "report: --expiring-days needs a number of days (0..36500)");
        } else return ra_ctl_fail(RA_CTL_EXIT_USAGE, "report: unexpected argument '%s'", argv[i]);
    }
    ra_ctl_names_t n;
    int rc = ra_ctl_names(ctl, "report", &n);
    int64_t now = (int64_t)time(NULL);
    if (!rc && csv) puts("device,operation,auth,status,reason,lsc_serial,lsc_not_after,days_left,completes_by");
    if (!rc && !csv)
        printf("%-20s %-13s %-7s %-8s %-24s %-25s %9s  %s\n", "DEVICE", "OPERATION", "AUTH", "STATUS",
               "LSC SERIAL", "LSC EXPIRES", "DAYS LEFT", "REASON");
    for (size_t i = 0; !rc && i < n.num; i += RA_CTL_BATCH)
        rc = ra_ctl_report_batch(ctl, n.names + i, n.num - i < RA_CTL_BATCH ? n.num - i : RA_CTL_BATCH, now,
                                 days, csv);
    ra_ctl_names_free(&n);
    return rc;
}

/* ---- requests ---- */

static const char *const ra_ctl_req_states[] = {"pending", "issued",   "rejected", "failed",
                                                "expired", "archived", "missing"};

#define RA_CTL_REQ_CSV_HEADER "id,identity,protocol,state,reason,peer,received,updated,attempts,serial,not_after,note"

typedef struct {
    bool csv, all;
    const char *state; /* filter, or NULL */
    size_t stale; /* stale index entries seen and not pruned */
} ra_ctl_reqs_t;

/* ra_ctl_utc formats unix seconds as ISO 8601 UTC, or `none`. */
static const char *ra_ctl_utc(int64_t t, const char *none, char *buf, size_t buf_len) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, buf_len, "%Y-%m-%dT%H:%M:%SZ", &tm)) return none;
    return buf;
}

static const char *ra_ctl_dash(const char *s) { return s[0] ? s : "-"; }

/* ra_ctl_req_state is the state shown (and filtered on) for an entry. */
static const char *ra_ctl_req_state(const ra_reqlist_entry_t *e) {
    if (e->kind == RA_REQLIST_ARCHIVED) return "archived";
    if (e->kind == RA_REQLIST_MISSING) return "missing";
    return e->state;
}

/* ra_ctl_req_row prints one request (ra_reqlist_cb). */
static int ra_ctl_req_row(const ra_reqlist_entry_t *e, void *arg) {
    ra_ctl_reqs_t *q = arg;
    char upd[32], rcv[32], na[32], attempts[24], id[RA_REQ_ID_MAX];
    if (e->kind == RA_REQLIST_BAD_RECORD) {
        fprintf(stderr, "stampedectl: requests: skipped %s: %s\n", e->key[0] ? e->key : e->id, e->why);
        return 0;
    }
    if (e->stale && !e->pruned) q->stale++;
    const char *state = ra_ctl_req_state(e), *note = e->pruned ? "pruned" : e->stale ? "stale" : "";
    if (q->state && strcmp(q->state, state)) return 0;
    if (e->kind == RA_REQLIST_MISSING) attempts[0] = '\0';
    else snprintf(attempts, sizeof(attempts), "%" PRId64, e->attempts);
    if (q->csv) {
        const char *cols[] = {e->id, e->identity, e->protocol, state, e->reason, e->peer,
                              ra_ctl_utc(e->received, "", rcv, sizeof(rcv)),
                              ra_ctl_utc(e->updated, "", upd, sizeof(upd)), attempts, e->serial,
                              ra_ctl_utc(e->not_after, "", na, sizeof(na)), note};
        for (size_t i = 0; i < 12; i++) ra_ctl_csv_field(cols[i], i == 11);
        return 0;
    }
    if (e->hash[0]) snprintf(id, sizeof(id), "%s:%.16s", e->identity, e->hash);
    else snprintf(id, sizeof(id), "%s", e->id);
    printf("%-32s %-20s %-5s %-9s %-20s %8s %-22s ", id, ra_ctl_dash(e->identity), ra_ctl_dash(e->protocol), state,
           ra_ctl_utc(e->updated, "-", upd, sizeof(upd)), ra_ctl_dash(attempts), ra_ctl_dash(e->peer));
    if (q->all) printf("%-32s %-20s ", ra_ctl_dash(e->serial), ra_ctl_utc(e->not_after, "-", na, sizeof(na)));
    else printf("%-6s ", ra_ctl_dash(note));
    printf("%s\n", e->reason);
    return 0;
}

/* ra_ctl_requests_args parses the options of `requests`. */
static int ra_ctl_requests_args(ra_ctl_reqs_t *q, bool *prune, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        int r;
        if (!strcmp(argv[i], "--csv")) q->csv = true;
        else if (!strcmp(argv[i], "--all")) q->all = true;
        else if (!strcmp(argv[i], "--prune")) *prune = true;
        else if ((r = ra_ctl_opt(argc, argv, &i, "--state", &q->state))) {
            size_t k = 0, n = sizeof(ra_ctl_req_states) / sizeof(ra_ctl_req_states[0]);
            while (r > 0 && k < n && strcmp(q->state, ra_ctl_req_states[k])) k++;
            if (r < 0 || k == n)
                return ra_ctl_fail(RA_CTL_EXIT_USAGE, "requests: --state needs one of pending, issued, rejected, "
                                                      "failed, expired, archived, missing");
        } else return ra_ctl_fail(RA_CTL_EXIT_USAGE, "requests: unexpected argument '%s' (see --help)", argv[i]);
    }
    if (q->all && *prune)
        return ra_ctl_fail(RA_CTL_EXIT_USAGE, "requests: --prune cleans the open index; it does not go with --all");
    return RA_CTL_EXIT_OK;
}

static int ra_ctl_requests(ra_ctl_t *ctl, int argc, char **argv) {
    ra_ctl_reqs_t q = {0};
    bool prune = false;
    size_t pruned = 0;
    char why[RA_CTL_WHY], summary[96];
    int rc = ra_ctl_requests_args(&q, &prune, argc, argv);
    if (!rc) rc = ra_ctl_connect(ctl);
    if (rc) return rc;
    if (q.csv) puts(RA_CTL_REQ_CSV_HEADER);
    else if (q.all)
        printf("%-32s %-20s %-5s %-9s %-20s %8s %-22s %-32s %-20s %s\n", "ID", "IDENTITY", "PROTO", "STATE",
               "UPDATED", "ATTEMPTS", "PEER", "SERIAL", "NOT AFTER", "REASON");
    else
        printf("%-32s %-20s %-5s %-9s %-20s %8s %-22s %-6s %s\n", "ID", "IDENTITY", "PROTO", "STATE", "UPDATED",
               "ATTEMPTS", "PEER", "NOTE", "REASON");
    ra_err_t e = q.all ? ra_reqlist_all(ctl->redis, ra_ctl_req_row, &q, why, sizeof(why))
                       : ra_reqlist_open(ctl->redis, prune, ra_ctl_req_row, &q, &pruned, why, sizeof(why));
    fflush(stdout);
    if (pruned) { /* audited even if the walk failed later: those entries are gone */
        snprintf(summary, sizeof(summary), "removed %zu stale entries from " RA_REQ_OPEN_SET, pruned);
        fprintf(stderr, "stampedectl: requests: %s\n", summary);
        char why2[RA_CTL_WHY];
        if (ra_audit_add(ctl->redis, "index-prune", NULL, ctl->peer, summary, NULL, why2, sizeof(why2)) != RA_OK &&
            e == RA_OK)
            return ra_ctl_redis_fail(ctl, "requests", why2);
    }
    if (e != RA_OK) return ra_ctl_redis_fail(ctl, "requests", why);
    if (q.stale)
        fprintf(stderr, "stampedectl: requests: %zu stale index entr%s (record gone or already issued); --prune "
                        "removes them\n", q.stale, q.stale == 1 ? "y" : "ies");
    return RA_CTL_EXIT_OK;
}

/* ---- commands, help, main ---- */

static const ra_ctl_cmd_t ra_ctl_cmds[] = {
    {"device add", ra_ctl_device_add,
     "device add NAME --op install|delete|troubleshoot|none --auth null|string|lsc|mic\n"
     "           [--auth-string DIGITS] [--key KEY ...] [--by YYYY-MM-DDTHH:MM[:SS][Z]]\n"
     "           [--pid PID --sn SERIAL] [--replace]",
     "Schedules an operation for device NAME (1..64 of A-Z a-z 0-9 _ . -). --auth string needs\n"
     "--auth-string (4 to 10 digits; stored only as a SHA-512 crypt hash). --key is repeatable or a\n"
     "comma list, in order of preference, from rsa2048 rsa3072 rsa4096 ec256 ec384 ec521 rsa1024 rsa512 (default\n"
     "rsa2048). --by is the deadline, local time (UTC with Z); a past deadline is accepted with a\n"
     "warning. --pid/--sn (model and serial number, e.g. CP-8861 FCH18198CNQ) give the CUCM-style\n"
     "LSC subject (capf_lsc_subject = cucm). An existing device is refused (exit 2) unless --replace.\n"},
    {"device show", ra_ctl_device_show, "device show NAME [--json]",
     "Prints the record of NAME (never the authentication string). Exit 1 if there is none.\n"},
    {"device list", ra_ctl_device_list, "device list", "Prints all device names, sorted, one per line.\n"},
    {"device delete", ra_ctl_device_delete, "device delete NAME",
     "Deletes the record of NAME (audited as device-delete-record). Exit 1 if there is none.\n"},
    {"import", ra_ctl_import, "import [--replace] FILE.csv",
     "Bulk add. First line: " RA_CTL_CSV_HEADER " (or " RA_CTL_CSV_HEADER_PIDSN ")\n"
     "Columns as for device add; empty auth_string/keys/by take the defaults; a key list with commas\n"
     "must be \"quoted\" (or use ';'). Errors are printed as FILE:LINE: cause and the other lines\n"
     "are imported; then 'imported N, failed M'. Exit 0 if M is 0, 3 if some lines failed, 2 for a\n"
     "missing file or header, 4 if Redis failed (import stopped at that line).\n"},
    {"report", ra_ctl_report, "report [--csv] [--expiring-days N]",
     "CAPF report: device, operation, auth, status, reason, LSC serial, LSC expiry (NA if none),\n"
     "days left, deadline. A table by default, CSV with --csv. --expiring-days N lists only the\n"
     "devices whose LSC expires within N days (expired ones included).\n"},
    {"requests", ra_ctl_requests, "requests [--all | --prune] [--state STATE] [--csv]",
     "Lists the open enrollment requests (the index stp:reqs:open: requests that did not end\n"
     "issued), one line each: id (identity:first 16 hex digits of the CSR's SHA-256), identity,\n"
     "protocol, state, last update (UTC), attempts, peer, note, reason. --all lists every request\n"
     "record instead, issued ones too, with serial and not-after (UTC); the record of a\n"
     "certificate replaced by a renewal shows as archived. --state STATE keeps one state: pending,\n"
     "issued, rejected, failed, expired, archived, missing. An index entry whose record is gone\n"
     "(missing) or already issued is noted stale; --prune removes those entries (audited as\n"
     "index-prune; an entry whose request was rejected again meanwhile is kept). With --csv the\n"
     "columns are " RA_CTL_REQ_CSV_HEADER "\n"
     "(full id, times in UTC). Unordered; exit 0 also when nothing is listed.\n"},
};
#define RA_CTL_NUM_CMDS (sizeof(ra_ctl_cmds) / sizeof(ra_ctl_cmds[0]))

static void ra_ctl_usage(FILE *out) {
    fprintf(out, "Usage: stampedectl [--data-dir DIR | --redis URL] COMMAND ...\n"
                 "       stampedectl --version | --help | COMMAND --help\n\n"
                 "  --data-dir DIR  the embedded Redis of stampeded: unix socket DIR/redis.sock\n"
                 "  --redis URL     redis://host[:port][/db], unix:/path[?db=N] or /path (a socket)\n\n"
                 "Commands:\n");
    for (size_t i = 0; i < RA_CTL_NUM_CMDS; i++) fprintf(out, "  %s\n", ra_ctl_cmds[i].usage);
    fprintf(out, "  doctor [--config FILE] [stampede-control settings]   (online CA upstream checks;\n"
                 "         see doctor --help: its own exit codes)\n");
    fprintf(out, "\n%s", ra_ctl_exits);
}

static void ra_ctl_cmd_help(const ra_ctl_cmd_t *c) {
    printf("Usage: stampedectl [--data-dir DIR | --redis URL] %s\n\n%s\n%s", c->usage, c->help, ra_ctl_exits);
}

/* ra_ctl_global parses the options before COMMAND. Returns the index of
 * COMMAND, or -1 after printing a message / help (exit code in *rc). */
static int ra_ctl_global(ra_ctl_t *ctl, int argc, char **argv, int *rc) {
    const char *dir = NULL, *url = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        int r;
        if (ra_ctl_is_help(argv[i])) return ra_ctl_usage(stdout), *rc = RA_CTL_EXIT_OK, -1;
        if (!strcmp(argv[i], "--version")) return printf("stampedectl %s\n", STAMPEDE_VERSION), *rc = 0, -1;
        if (!(r = ra_ctl_opt(argc, argv, &i, "--data-dir", &dir)) && !(r = ra_ctl_opt(argc, argv, &i, "--redis", &url)))
            return *rc = ra_ctl_fail(RA_CTL_EXIT_USAGE, "unknown option '%s' (see --help)", argv[i]), -1;
        if (r < 0) return *rc = ra_ctl_fail(RA_CTL_EXIT_USAGE, "%s needs a value", argv[i]), -1;
    }
    if (i >= argc) return ra_ctl_usage(stderr), *rc = RA_CTL_EXIT_USAGE, -1;
    for (int j = i; j < argc; j++)
        if (ra_ctl_is_help(argv[j])) return i; /* COMMAND --help: no Redis needed */
    if (argc - i == 1 && !strcmp(argv[i], "device")) return i; /* reported as an unknown command */
    if (dir && url) return *rc = ra_ctl_fail(RA_CTL_EXIT_USAGE, "give --data-dir or --redis, not both"), -1;
    if (!dir && !url) return *rc = ra_ctl_fail(RA_CTL_EXIT_USAGE, "give --data-dir DIR or --redis URL"), -1;
    ra_err_t e = url ? ra_redis_parse_url(&ctl->addr, url) : ra_redis_addr_data_dir(&ctl->addr, dir);
    if (e != RA_OK) return *rc = ra_ctl_fail(RA_CTL_EXIT_USAGE, "'%s': %s", url ? url : dir, ra_err_str(e)), -1;
    ra_redis_addr_str(&ctl->addr, ctl->url, sizeof(ctl->url));
    return i;
}

/* ra_ctl_find matches "device add" (two words) or "import" (one). */
static const ra_ctl_cmd_t *ra_ctl_find(int argc, char **argv, int *words) {
    for (size_t i = 0; i < RA_CTL_NUM_CMDS; i++) {
        const char *n = ra_ctl_cmds[i].name, *sp = strchr(n, ' ');
        if (!sp && !strcmp(argv[0], n)) return *words = 1, &ra_ctl_cmds[i];
        if (sp && argc >= 2 && strlen(argv[0]) == (size_t)(sp - n) && !strncmp(argv[0], n, (size_t)(sp - n)) &&
            !strcmp(argv[1], sp + 1))
            return *words = 2, &ra_ctl_cmds[i];
    }
    return NULL;
}

/* ---- doctor: the upstream CA checks live in stampede-control ---- */

static const char ra_ctl_doctor_help[] =
    "Usage: stampedectl doctor [--config FILE] [stampede-control settings ...]\n\n"
    "Checks the online CA's upstream (Microsoft AD CS web enrollment, /certsrv) the way\n"
    "stampede-control will use it, and prints one line per check: 'ok    CHECK: detail' or\n"
    "'PROBLEM CHECK: cause; fix: remedy'. Checks: configuration, DNS, TCP connect, TLS\n"
    "(trust, host name, clock), authentication (offered schemes, credentials, Extended\n"
    "Protection), the web enrollment pages, the CA behind IIS and its chain, the template.\n"
    "Never submits a request. The checks are stampede-control's own (`stampede-control doctor`,\n"
    "which this runs: $STAMPEDE_CONTROL, else stampede-control next to stampedectl or in PATH)\n"
    "with the same settings (e.g. --config /etc/stampede/stampede-control.conf).\n"
    "Exit codes: 0 every check ok, 1 a problem was found, 2 usage or configuration error.\n";

/* ra_ctl_doctor_path finds stampede-control: $STAMPEDE_CONTROL, then beside
 * this program (installed), then ../control/ (a build tree), else PATH. */
static void ra_ctl_doctor_path(char *out, size_t cap) {
    const char *env = getenv("STAMPEDE_CONTROL");
    if (env && env[0]) {
        snprintf(out, cap, "%s", env);
        return;
    }
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        self[n] = 0;
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = 0;
            static const char *const rel[] = {"/stampede-control", "/../control/stampede-control"};
            for (size_t i = 0; i < 2; i++) {
                snprintf(out, cap, "%s%s", self, rel[i]);
                if (access(out, X_OK) == 0) return;
            }
        }
    }
    snprintf(out, cap, "stampede-control");
}

/* ra_ctl_doctor runs `stampede-control [settings] doctor` in place of this
 * process; `args` are the settings (stampedectl's --data-dir/--redis are
 * passed on: stampede-control reads the same ones). */
static int ra_ctl_doctor(int argc, char **argv) {
    for (int i = 0; i < argc; i++)
        if (ra_ctl_is_help(argv[i])) return fputs(ra_ctl_doctor_help, stdout), RA_CTL_EXIT_OK;
    char path[4200];
    ra_ctl_doctor_path(path, sizeof(path));
    char **av = calloc((size_t)argc + 3, sizeof(*av));
    if (!av) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "doctor: out of memory");
    av[0] = path;
    for (int i = 0; i < argc; i++) av[1 + i] = argv[i];
    av[1 + argc] = "doctor";
    fflush(NULL);
    if (strchr(path, '/')) execv(path, av);
    else execvp(path, av);
    int err = errno;
    free(av);
    return ra_ctl_fail(RA_CTL_EXIT_USAGE, "doctor: cannot run %s: %s (install stampede-control or set "
                       "STAMPEDE_CONTROL)", path, strerror(err));
}

/* ra_ctl_doctor_argv: if the command is `doctor`, gathers everything else
 * (global options included) as its settings and runs it. Returns -1 if the
 * command is another one. */
static int ra_ctl_doctor_argv(int argc, char **argv) {
    int at = 1;
    while (at < argc && argv[at][0] == '-') at += (!strcmp(argv[at], "--data-dir") || !strcmp(argv[at], "--redis")) ? 2 : 1;
    if (at >= argc || strcmp(argv[at], "doctor") != 0) return -1;
    char **rest = calloc((size_t)argc, sizeof(*rest));
    if (!rest) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "doctor: out of memory");
    int n = 0;
    for (int i = 1; i < argc; i++)
        if (i != at) rest[n++] = argv[i];
    int rc = ra_ctl_doctor(n, rest);
    free(rest);
    return rc;
}

int main(int argc, char **argv) {
    int drc = ra_ctl_doctor_argv(argc, argv);
    if (drc >= 0) return drc;
    ra_ctl_t ctl;
    int rc = 0, words = 0;
    memset(&ctl, 0, sizeof(ctl));
    const struct passwd *pw = getpwuid(geteuid());
    snprintf(ctl.peer, sizeof(ctl.peer), "stampedectl:%s", pw ? pw->pw_name : "?");
    int at = ra_ctl_global(&ctl, argc, argv, &rc);
    if (at < 0) return rc;
    const ra_ctl_cmd_t *cmd = ra_ctl_find(argc - at, argv + at, &words);
    if (!cmd) {
        ra_ctl_fail(RA_CTL_EXIT_USAGE, "unknown command '%s%s%s'", argv[at], at + 1 < argc ? " " : "",
                    at + 1 < argc ? argv[at + 1] : "");
        ra_ctl_usage(stderr);
        return RA_CTL_EXIT_USAGE;
    }
    for (int i = at + words; i < argc; i++)
        if (ra_ctl_is_help(argv[i])) return ra_ctl_cmd_help(cmd), RA_CTL_EXIT_OK;
    if (!ctl.url[0]) return ra_ctl_fail(RA_CTL_EXIT_USAGE, "give --data-dir DIR or --redis URL");
    rc = cmd->run(&ctl, argc - at - words, argv + at + words);
    if (ctl.redis) redisFree(ctl.redis);
    return rc;
}
