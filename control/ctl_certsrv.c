/* ctl_certsrv: the certsrv connector (see ctl_certsrv.h). One libcurl easy
 * handle per ctl_conn_t, reused for every call, so the TCP/TLS connection
 * and its NTLM login (bound to the connection, certsrv-protocol.md §2.4)
 * survive between calls: a warm enrollment is POST certfnsh.asp + GET
 * certnew.cer. Pages are classified by ctl_page (own bounded cursor);
 * certificates and PKCS#7 are checked with OpenSSL's libcrypto, the one
 * libcurl loads (never BoringSSL in this process).
 *
 * Why the POST body goes through a read callback and not CURLOPT_POSTFIELDS:
 * libcurl silently resends a request on a fresh connection when a reused
 * connection dies before any answer byte ("Connection died, retrying a fresh
 * connect"), up to 5 times. For certfnsh.asp that is the duplicate
 * submission of §5.13 done behind our back. With a read callback libcurl
 * must rewind the body through our seek callback, and both refuse once the
 * whole body went out without an answer since: the call then ends in
 * CTL_UP_UNKNOWN. A rewind after an answer (a 401 asking to authenticate
 * again) is allowed: the server did not run the page.
 *
 * What each call counts: every request line libcurl writes (CURLINFO_HEADER_OUT
 * through CURLOPT_DEBUGFUNCTION, which libcurl only calls with CURLOPT_VERBOSE
 * on; nothing is printed), so the NTLM legs and the empty POST probe count.
 * Thread: a ctl_conn_t belongs to one thread at a time. */
#include "control/ctl_certsrv.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "control/ctl_page.h"
#include "dataplane/dp_log.h"

#define CTL_BODY_MAX (256u * 1024u) /* larger answers abort the transfer (CTL_D_PAGE) */
#define CTL_URL_MAX 1024
#define CTL_ATTRIB_MAX 1536         /* request attribute string limit (§5.22) */
#define CTL_UA_DEFAULT "Mozilla/5.0 (X11; Linux x86_64) stampede-control/1.0"

typedef enum { CTL_PH_LOGIN, CTL_PH_SUBMIT, CTL_PH_FETCH } ctl_phase_t;

struct ctl_conn {
    const ctl_config_t *cfg;
    CURL *h;
    struct curl_slist *resolve;
    struct curl_slist *post_hdrs;
    char base[CTL_URL_MAX];     /* scheme://host:port/.../certsrv, no trailing slash */
    char host[256];             /* for messages: host name without brackets */
    long port;
    bool https;
    char cfg_err[256];          /* non-empty: the settings cannot work (CTL_D_CONFIG) */
    unsigned long requests;     /* request lines sent, all calls */
    unsigned long auth_offered; /* CURLAUTH_* bits of the last 401 */
    char errbuf[CURL_ERROR_SIZE];
    /* the current transfer */
    uint8_t *body;              /* CTL_BODY_MAX: the last response's body */
    size_t body_len;
    bool body_overflow;
    uint8_t *pem;               /* CTL_BODY_MAX: PEM bodies decoded by ctl_page_body */
    const char *post;           /* the POST body being sent (borrowed) */
    size_t post_len, post_off;
    unsigned xfer_requests;     /* request lines sent by this transfer */
    bool body_sent;             /* POST body bytes were written */
    bool answer_since_body;     /* a final status line arrived after the last body bytes */
    int answer_status;          /* status of the last final status line, 0 if none */
    bool tls_started;           /* TLS handshake bytes were written (TCP was connected) */
    char url[CTL_URL_MAX + 160]; /* of the current transfer: base + page + query */
    const char *method;
};

static const char *const ctl_up_kind_names[CTL_UP__COUNT] = {
    [CTL_UP_ISSUED] = "issued", [CTL_UP_PENDING] = "pending", [CTL_UP_DENIED] = "denied",
    [CTL_UP_FAILED] = "failed", [CTL_UP_UNKNOWN] = "unknown"};

const char *ctl_up_kind_str(ctl_up_kind_t k) {
    return (unsigned)k < CTL_UP__COUNT ? ctl_up_kind_names[k] : "invalid";
}

const char *ctl_auth_name(ctl_auth_t a) {
    switch (a) {
    case CTL_AUTH_BASIC: return "basic";
    case CTL_AUTH_NTLM: return "ntlm";
    case CTL_AUTH_NEGOTIATE: return "negotiate";
    case CTL_AUTH_NONE: return "none";
    }
    return "unknown";
}

static unsigned long ctl_auth_bit(ctl_auth_t a) {
    switch (a) {
    case CTL_AUTH_BASIC: return CURLAUTH_BASIC;
    case CTL_AUTH_NTLM: return CURLAUTH_NTLM;
    case CTL_AUTH_NEGOTIATE: return CURLAUTH_NEGOTIATE;
    case CTL_AUTH_NONE: return 0;
    }
    return 0;
}

const char *ctl_auth_schemes_str(unsigned long bits, char *buf, size_t len) {
    static const struct {
        unsigned long bit;
        const char *name;
    } s[] = {{CURLAUTH_NEGOTIATE, "Negotiate"}, {CURLAUTH_NTLM, "NTLM"},
             {CURLAUTH_DIGEST, "Digest"},       {CURLAUTH_BASIC, "Basic"}};
    size_t n = 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        if (!(bits & s[i].bit))
            continue;
        int w = snprintf(buf + n, len - n, "%s%s", n ? ", " : "", s[i].name);
        if (w < 0 || (size_t)w >= len - n)
            break;
        n += (size_t)w;
    }
    if (n == 0)
        snprintf(buf, len, "none");
    return buf;
}

bool ctl_str_set(const char *s) { return s != NULL && s[0] != '\0'; }

static const char *ctl_user_str(const ctl_config_t *cfg) {
    return cfg->auth_kind == CTL_AUTH_NONE || !ctl_str_set(cfg->user) ? "(anonymous)" : cfg->user;
}

/* ---- cause lines */

typedef struct {
    char buf[1024];
    size_t len;
} ctl_text_t;

static void __attribute__((format(printf, 2, 3))) ctl_text_add(ctl_text_t *t, const char *fmt, ...) {
    if (t->len >= sizeof(t->buf) - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
    va_end(ap);
    if (w < 0)
        return;
    t->len += (size_t)w;
    if (t->len > sizeof(t->buf) - 1)
        t->len = sizeof(t->buf) - 1;
}

/* ctl_up_set writes the result: `kind`, `d`, and the cause "<text>; fix: <fix>",
 * the text shortened (with "...") so the fix always fits. Control characters
 * become spaces. */
static ctl_up_kind_t ctl_up_set(ctl_up_t *res, ctl_up_kind_t kind, ctl_diag_t d, const ctl_text_t *t) {
    const char *fix = ctl_diag_fix(d);
    size_t room = CTL_CAUSE_MAX - 1 - strlen("; fix: ") - strlen(fix);
    size_t n = t->len;
    res->kind = kind;
    res->diag = d;
    if (n > room) {
        n = room - 3;
        snprintf(res->cause, CTL_CAUSE_MAX, "%.*s...; fix: %s", (int)n, t->buf, fix);
    } else {
        snprintf(res->cause, CTL_CAUSE_MAX, "%.*s; fix: %s", (int)n, t->buf, fix);
    }
    for (char *p = res->cause; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    return kind;
}

/* ctl_up_ok fills a success line (no fix needed: the text alone). */
static ctl_up_kind_t ctl_up_ok(ctl_up_t *res, ctl_up_kind_t kind, const ctl_text_t *t) {
    res->kind = kind;
    res->diag = CTL_D_OK;
    snprintf(res->cause, CTL_CAUSE_MAX, "%.*s", (int)t->len, t->buf);
    return kind;
}

/* ctl_text_ctx appends ": <METHOD> <url> as <user> (<scheme>)[, template <t>]". */
static void ctl_text_ctx(ctl_text_t *t, const ctl_conn_t *c, bool with_template) {
    ctl_text_add(t, ": %s %s as %s (%s)", c->method ? c->method : "GET", c->url,
                 ctl_user_str(c->cfg), ctl_auth_name(c->cfg->auth_kind));
    if (with_template)
        ctl_text_add(t, ", template %s",
                     ctl_str_set(c->cfg->template_name) ? c->cfg->template_name : "(none)");
}

static void ctl_text_curl(ctl_text_t *t, const ctl_conn_t *c, CURLcode rc) {
    ctl_text_add(t, ", curl %d %s", (int)rc, curl_easy_strerror(rc));
    if (c->errbuf[0] && strcmp(c->errbuf, curl_easy_strerror(rc)) != 0)
        ctl_text_add(t, " (%s)", c->errbuf);
}

/* ---- construction */

/* ctl_conn_parse_url checks certsrv_url and builds c->base. */
static void ctl_conn_parse_url(ctl_conn_t *c) {
    const char *url = c->cfg->certsrv_url;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *user = NULL, *query = NULL;
    CURLU *u = NULL;
    if (!ctl_str_set(url)) {
        snprintf(c->cfg_err, sizeof(c->cfg_err), "certsrv_url is not set");
        return;
    }
    u = curl_url();
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        snprintf(c->cfg_err, sizeof(c->cfg_err), "certsrv_url %.200s is not a URL", url);
        goto out;
    }
    if (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0) {
        snprintf(c->cfg_err, sizeof(c->cfg_err), "certsrv_url %.200s: scheme %s is not https", url,
                 scheme);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(c->cfg_err, sizeof(c->cfg_err),
                 "certsrv_url must not carry a user name or password (use user and password_file)");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
        snprintf(c->cfg_err, sizeof(c->cfg_err), "certsrv_url %.200s must not have a query", url);
        goto out;
    }
    c->https = strcasecmp(scheme, "https") == 0;
    c->port = strtol(port, NULL, 10);
    const char *h = host;
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') { /* IPv6 literal */
        h = host + 1;
        hl -= 2;
    }
    snprintf(c->host, sizeof(c->host), "%.*s", (int)hl, h);
    /* path: trailing slashes off; the certsrv segment in lowercase (§5.15);
     * an empty path means the default application /certsrv */
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/')
        pl--;
    path[pl] = '\0';
    char *seg = strrchr(path, '/');
    if (seg != NULL && strcasecmp(seg + 1, "certsrv") == 0)
        for (char *p = seg + 1; *p; p++)
            *p = (char)tolower((unsigned char)*p);
    int w = snprintf(c->base, sizeof(c->base), "%s://%s:%ld%s", c->https ? "https" : "http", host,
                     c->port, path[0] ? path : "/certsrv");
    if (w < 0 || (size_t)w >= sizeof(c->base) - 64)
        snprintf(c->cfg_err, sizeof(c->cfg_err), "certsrv_url is too long");
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(user);
    curl_free(query);
    curl_url_cleanup(u);
}

/* ctl_conn_parse_resolve splits cfg->resolve (HOST:PORT:ADDR[,...]) into a list. */
bool ctl_resolve_next(const char **cursor, const char **entry, size_t *len) {
    const char *s = *cursor;
    while (*s == ',' || *s == ' ' || *s == '\t')
        s++;
    size_t n = strcspn(s, ",");
    *entry = s;
    *cursor = s + n;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    *len = n;
    return n > 0;
}

static bool ctl_conn_parse_resolve(ctl_conn_t *c) {
    const char *s = c->cfg->resolve, *e;
    size_t n;
    if (!ctl_str_set(s))
        return true;
    while (ctl_resolve_next(&s, &e, &n)) {
        char entry[300];
        if (n >= sizeof(entry)) {
            snprintf(c->cfg_err, sizeof(c->cfg_err), "resolve entry too long");
            return true;
        }
        snprintf(entry, sizeof(entry), "%.*s", (int)n, e);
        struct curl_slist *l = curl_slist_append(c->resolve, entry);
        if (l == NULL)
            return false;
        c->resolve = l;
    }
    return true;
}

static size_t ctl_on_body(char *ptr, size_t size, size_t nmemb, void *userdata) {
    ctl_conn_t *c = userdata;
    size_t n = size * nmemb;
    if (n > CTL_BODY_MAX - c->body_len) {
        c->body_overflow = true;
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    }
    memcpy(c->body + c->body_len, ptr, n);
    c->body_len += n;
    return n;
}

/* ctl_on_header: a final status line ("HTTP/1.1 200 ...", not 1xx) starts
 * a new response: keep only its body, note its status. */
static size_t ctl_on_header(char *ptr, size_t size, size_t nmemb, void *userdata) {
    ctl_conn_t *c = userdata;
    size_t n = size * nmemb;
    ctl_cur_t line;
    uint32_t code;
    ctl_cur_init(&line, ptr, n);
    if (ctl_cur_starts(&line, "HTTP/", false) && ctl_cur_find(&line, " ", false) &&
        ctl_cur_skip(&line, 1) && ctl_cur_get_u32(&line, &code) && code >= 200 && code <= 599) {
        c->answer_status = (int)code; /* 1xx and malformed lines are not the answer */
        c->body_len = 0;
        c->body_overflow = false;
        c->answer_since_body = true;
    }
    return n;
}

static int ctl_on_debug(CURL *h, curl_infotype type, char *data, size_t size, void *userdata) {
    ctl_conn_t *c = userdata;
    ctl_cur_t out;
    (void)h;
    ctl_cur_init(&out, data, size);
    if (type == CURLINFO_HEADER_OUT &&
        (ctl_cur_starts(&out, "GET ", false) || ctl_cur_starts(&out, "POST ", false) ||
         ctl_cur_starts(&out, "HEAD ", false))) {
        c->requests++;
        c->xfer_requests++;
    } else if (type == CURLINFO_DATA_OUT && size > 0) {
        c->body_sent = true;
        c->answer_since_body = false;
    } else if (type == CURLINFO_SSL_DATA_OUT) {
        c->tls_started = true; /* OpenSSL's message callback: a handshake record went out */
    }
    return 0;
}

/* ctl_on_read feeds the POST body. A resend of a body that went out without
 * an answer since is refused (see the top comment). */
static size_t ctl_on_read(char *buf, size_t size, size_t nitems, void *userdata) {
    ctl_conn_t *c = userdata;
    size_t cap = size * nitems;
    if (c->post_off == 0 && c->body_sent && !c->answer_since_body)
        return CURL_READFUNC_ABORT;
    size_t n = c->post_len - c->post_off;
    if (n > cap)
        n = cap;
    memcpy(buf, c->post + c->post_off, n);
    c->post_off += n;
    return n;
}

static int ctl_on_seek(void *userdata, curl_off_t offset, int origin) {
    ctl_conn_t *c = userdata;
    if (origin != SEEK_SET || offset < 0 || (curl_off_t)c->post_len < offset)
        return CURL_SEEKFUNC_FAIL;
    if (c->body_sent && !c->answer_since_body)
        return CURL_SEEKFUNC_FAIL; /* would resend a body the server may have acted on */
    c->post_off = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static bool ctl_conn_setup(ctl_conn_t *c) {
    const ctl_config_t *cfg = c->cfg;
    CURL *h = c->h;
    CURLcode rc = CURLE_OK;
#define SET(opt, val) \
    do { if (rc == CURLE_OK) rc = curl_easy_setopt(h, opt, val); } while (0)
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_PROTOCOLS_STR, "https,http");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_MAXCONNECTS, 1L);
    if (cfg->max_conn_age_s > 0) /* 0 would forbid any reuse: keep libcurl's default then */
        SET(CURLOPT_MAXAGE_CONN, (long)cfg->max_conn_age_s);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
    SET(CURLOPT_USERAGENT, ctl_str_set(cfg->user_agent) ? cfg->user_agent : CTL_UA_DEFAULT);
    SET(CURLOPT_ERRORBUFFER, c->errbuf);
    SET(CURLOPT_WRITEFUNCTION, ctl_on_body);
    SET(CURLOPT_WRITEDATA, c);
    SET(CURLOPT_HEADERFUNCTION, ctl_on_header);
    SET(CURLOPT_HEADERDATA, c);
    SET(CURLOPT_DEBUGFUNCTION, ctl_on_debug);
    SET(CURLOPT_DEBUGDATA, c);
    SET(CURLOPT_VERBOSE, 1L); /* for the debug callback only; it prints nothing */
    SET(CURLOPT_READFUNCTION, ctl_on_read);
    SET(CURLOPT_READDATA, c);
    SET(CURLOPT_SEEKFUNCTION, ctl_on_seek);
    SET(CURLOPT_SEEKDATA, c);
    if (ctl_str_set(cfg->ca_bundle))
        SET(CURLOPT_CAINFO, cfg->ca_bundle);
    if (c->resolve != NULL)
        SET(CURLOPT_RESOLVE, c->resolve);
    if (cfg->auth_kind != CTL_AUTH_NONE && ctl_str_set(cfg->user)) {
        SET(CURLOPT_HTTPAUTH, (long)ctl_auth_bit(cfg->auth_kind));
        SET(CURLOPT_USERNAME, cfg->user);
        SET(CURLOPT_PASSWORD, cfg->password ? cfg->password : "");
    }
#undef SET
    return rc == CURLE_OK;
}

ctl_conn_t *ctl_conn_new(const ctl_config_t *cfg) {
    ctl_conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->cfg = cfg;
    c->body = malloc(CTL_BODY_MAX);
    c->pem = malloc(CTL_BODY_MAX);
    c->h = curl_easy_init();
    if (c->body == NULL || c->pem == NULL || c->h == NULL)
        goto fail;
    ctl_conn_parse_url(c);
    if (!ctl_conn_parse_resolve(c))
        goto fail;
    struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    if (l == NULL)
        goto fail;
    c->post_hdrs = l;
    if ((l = curl_slist_append(c->post_hdrs, "Expect:")) == NULL)
        goto fail;
    c->post_hdrs = l;
    if (cfg->auth_kind > CTL_AUTH_NONE)
        snprintf(c->cfg_err, sizeof(c->cfg_err), "auth %d is not a known scheme", (int)cfg->auth_kind);
    else if (cfg->auth_kind != CTL_AUTH_NONE && !ctl_str_set(cfg->user))
        snprintf(c->cfg_err, sizeof(c->cfg_err), "user is not set (auth %s)",
                 ctl_auth_name(cfg->auth_kind));
    if (!ctl_conn_setup(c))
        goto fail;
    return c;
fail:
    ctl_conn_free(c);
    return NULL;
}

void ctl_conn_free(ctl_conn_t *c) {
    if (c == NULL)
        return;
    if (c->h)
        curl_easy_cleanup(c->h);
    curl_slist_free_all(c->resolve);
    curl_slist_free_all(c->post_hdrs);
    free(c->body);
    free(c->pem);
    free(c);
}

unsigned long ctl_conn_requests(const ctl_conn_t *c) { return c->requests; }

unsigned long ctl_conn_auth_offered(const ctl_conn_t *c) { return c->auth_offered; }

/* ---- one HTTP exchange */

/* ctl_begin starts an API call: clears `res`, checks the settings. Returns
 * false (res filled with CTL_D_CONFIG) if they cannot work. */
static bool ctl_begin(ctl_conn_t *c, ctl_up_t *res, unsigned long *start) {
    memset(res, 0, sizeof(*res));
    *start = c->requests;
    if (c->cfg_err[0] == '\0')
        return true;
    ctl_text_t t = {.len = 0};
    ctl_text_add(&t, "settings unusable: %s", c->cfg_err);
    ctl_up_set(res, CTL_UP_FAILED, CTL_D_CONFIG, &t);
    return false;
}

static ctl_up_kind_t ctl_end(ctl_conn_t *c, ctl_up_t *res, unsigned long start) {
    res->requests = (unsigned)(c->requests - start);
    return res->kind;
}

/* ctl_perform runs one exchange: GET `rel` (relative to the /certsrv/ base),
 * or POST it with `post` when non-NULL. Fills res->http_status/curl_code. */
static CURLcode ctl_perform(ctl_conn_t *c, ctl_phase_t ph, const char *rel, const char *post,
                            size_t post_len, ctl_up_t *res) {
    const ctl_config_t *cfg = c->cfg;
    uint32_t ms = ph == CTL_PH_LOGIN ? cfg->login_timeout_ms
                  : ph == CTL_PH_SUBMIT ? cfg->submit_timeout_ms : cfg->fetch_timeout_ms;
    snprintf(c->url, sizeof(c->url), "%s/%s", c->base, rel);
    c->method = post ? "POST" : "GET";
    c->body_len = 0;
    c->body_overflow = false;
    c->xfer_requests = 0;
    c->body_sent = false;
    c->answer_since_body = false;
    c->answer_status = 0;
    c->tls_started = false;
    c->errbuf[0] = '\0';
    c->post = post;
    c->post_len = post_len;
    c->post_off = 0;
    CURL *h = c->h;
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)ms);
    if (post) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post_len);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->post_hdrs);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    }
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    res->http_status = status;
    res->curl_code = (int)rc;
    if (status == 401) {
        long avail = 0;
        curl_easy_getinfo(h, CURLINFO_HTTPAUTH_AVAIL, &avail);
        c->auth_offered = (unsigned long)avail;
    }
    c->post = NULL;
    DP_DEBUG("certsrv: %s %s -> curl %d, HTTP %ld, %u request(s), %zu body bytes", c->method,
             c->url, (int)rc, status, c->xfer_requests, c->body_len);
    return rc;
}

static bool ctl_connected(ctl_conn_t *c) {
    curl_off_t tcp = 0, tls = 0;
    if (c->xfer_requests > 0)
        return true;
    curl_easy_getinfo(c->h, CURLINFO_CONNECT_TIME_T, &tcp);
    curl_easy_getinfo(c->h, CURLINFO_APPCONNECT_TIME_T, &tls);
    return tcp > 0 && (!c->https || tls > 0);
}

static ctl_diag_t ctl_tls_diag(long verify, const char *msg) {
    switch (verify) {
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return CTL_D_TLS_SELF_SIGNED;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return CTL_D_TLS_UNTRUSTED;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return CTL_D_TLS_NAME;
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return CTL_D_TLS_CLOCK;
    default:
        /* libcurl 7.88 checks the host name itself after OpenSSL verified
         * the chain: the verify result is then 0 or 1 (unspecified) and
         * only the message tells ("no alternative certificate subject name
         * matches target host name") */
        if (msg && (strstr(msg, "subject name") || strstr(msg, "host name") ||
                    strstr(msg, "does not match")))
            return CTL_D_TLS_NAME;
        return CTL_D_TLS_OTHER;
    }
}

static ctl_up_kind_t ctl_fail_tls(ctl_conn_t *c, CURLcode rc, ctl_up_t *res, bool tmpl) {
    long verify = 0;
    curl_easy_getinfo(c->h, CURLINFO_SSL_VERIFYRESULT, &verify);
    ctl_diag_t d = ctl_tls_diag(verify, c->errbuf);
    ctl_text_t t = {.len = 0};
    res->verify_result = verify;
    switch (d) {
    case CTL_D_TLS_SELF_SIGNED:
        ctl_text_add(&t, "IIS certificate of %s is self-signed and not trusted", c->host);
        break;
    case CTL_D_TLS_UNTRUSTED:
        ctl_text_add(&t, "IIS certificate of %s not trusted (chain incomplete or CA not in %s)",
                     c->host, ctl_str_set(c->cfg->ca_bundle) ? c->cfg->ca_bundle : "the system store");
        break;
    case CTL_D_TLS_NAME:
        ctl_text_add(&t, "IIS certificate does not cover %s", c->host);
        break;
    case CTL_D_TLS_CLOCK: {
        char now[32];
        time_t tt = time(NULL);
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%SZ", &tm);
        ctl_text_add(&t, "IIS certificate of %s %s at local time %s", c->host,
                     verify == X509_V_ERR_CERT_HAS_EXPIRED ? "has expired" : "is not yet valid", now);
        break;
    }
    default:
        ctl_text_add(&t, "TLS with %s:%ld failed", c->host, c->port);
        break;
    }
    ctl_text_ctx(&t, c, tmpl);
    ctl_text_curl(&t, c, rc);
    if (verify != X509_V_OK && verify != X509_V_ERR_UNSPECIFIED)
        ctl_text_add(&t, ", TLS verify %ld (%s)", verify, X509_verify_cert_error_string(verify));
    return ctl_up_set(res, CTL_UP_FAILED, d, &t);
}

static ctl_up_kind_t ctl_fail_timeout(ctl_conn_t *c, ctl_phase_t ph, CURLcode rc, ctl_up_t *res) {
    const ctl_config_t *cfg = c->cfg;
    curl_off_t total = 0, tcp = 0;
    curl_easy_getinfo(c->h, CURLINFO_TOTAL_TIME_T, &total);
    curl_easy_getinfo(c->h, CURLINFO_CONNECT_TIME_T, &tcp);
    /* libcurl 7.88 records the connect time only once TLS is up too: the
     * handshake's own records tell that TCP was connected */
    bool in_tls = tcp > 0 || c->tls_started;
    ctl_text_t t = {.len = 0};
    ctl_up_kind_t kind = CTL_UP_FAILED;
    ctl_diag_t d;
    double secs = (double)total / 1e6;
    bool tmpl = ph == CTL_PH_SUBMIT;
    if (!ctl_connected(c) && strstr(c->errbuf, "Resolving timed out") != NULL) {
        /* the name lookup itself ran out of time (the DNS servers do not
         * answer): a DNS problem, not the path to IIS (libcurl says so only
         * in its message; the code is 28 as for any timeout) */
        d = CTL_D_DNS;
        ctl_text_add(&t, "cannot resolve %s: the DNS servers did not answer within "
                     "connect_timeout_ms %u", c->host, cfg->connect_timeout_ms);
    } else if (!ctl_connected(c)) {
        d = CTL_D_TIMEOUT_CONNECT;
        ctl_text_add(&t, "timed out after %.1f s during the %s with %s:%ld (connect_timeout_ms %u)",
                     secs, in_tls ? "TLS handshake" : "TCP connect", c->host, c->port,
                     cfg->connect_timeout_ms);
    } else if (ph == CTL_PH_SUBMIT && c->body_sent) {
        d = CTL_D_TIMEOUT_SUBMIT;
        kind = CTL_UP_UNKNOWN;
        ctl_text_add(&t, "timed out after %.1f s waiting for the answer to the POST "
                     "(submit_timeout_ms %u): outcome unknown, the CA may have taken the request",
                     secs, cfg->submit_timeout_ms);
    } else if (ph == CTL_PH_LOGIN || ph == CTL_PH_SUBMIT) {
        d = CTL_D_TIMEOUT_LOGIN;
        ctl_text_add(&t, "timed out after %.1f s during authentication (%u request(s) sent, "
                     "%s %u ms)", secs, c->xfer_requests,
                     ph == CTL_PH_LOGIN ? "login_timeout_ms" : "submit_timeout_ms",
                     ph == CTL_PH_LOGIN ? cfg->login_timeout_ms : cfg->submit_timeout_ms);
    } else {
        d = CTL_D_TIMEOUT_FETCH;
        ctl_text_add(&t, "timed out after %.1f s during the download (fetch_timeout_ms %u)", secs,
                     cfg->fetch_timeout_ms);
    }
    ctl_text_ctx(&t, c, tmpl);
    ctl_text_curl(&t, c, rc);
    return ctl_up_set(res, kind, d, &t);
}

static ctl_up_kind_t ctl_fail_transport(ctl_conn_t *c, ctl_phase_t ph, CURLcode rc, ctl_up_t *res) {
    ctl_text_t t = {.len = 0};
    bool tmpl = ph == CTL_PH_SUBMIT;
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        return ctl_fail_timeout(c, ph, rc, res);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return ctl_fail_tls(c, rc, res, tmpl);
    default:
        break;
    }
    if (ph == CTL_PH_SUBMIT && c->body_sent && (!c->answer_since_body || c->answer_status == 200)) {
        /* the body went out and no answer (or a cut 200 page) came: the CA may have the request */
        ctl_text_add(&t, "connection to %s:%ld lost after the POST body was sent%s: outcome "
                     "unknown, the CA may have taken the request", c->host, c->port,
                     c->answer_since_body ? " (answer cut short)" : "");
        ctl_text_ctx(&t, c, tmpl);
        ctl_text_curl(&t, c, rc);
        return ctl_up_set(res, CTL_UP_UNKNOWN, CTL_D_TIMEOUT_SUBMIT, &t);
    }
    ctl_diag_t d;
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        d = CTL_D_DNS;
        ctl_text_add(&t, "cannot resolve %s", c->host);
        break;
    case CURLE_COULDNT_CONNECT:
        d = CTL_D_CONNECT;
        ctl_text_add(&t, "cannot connect to %s:%ld", c->host, c->port);
        break;
    case CURLE_SSL_CACERT_BADFILE:
        d = CTL_D_CONFIG;
        ctl_text_add(&t, "ca_bundle %s cannot be used",
                     ctl_str_set(c->cfg->ca_bundle) ? c->cfg->ca_bundle : "(system)");
        break;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        d = CTL_D_CONFIG;
        ctl_text_add(&t, "certsrv_url cannot be used");
        break;
    case CURLE_WRITE_ERROR:
        if (c->body_overflow) {
            d = CTL_D_PAGE;
            ctl_text_add(&t, "answer larger than %u KiB", CTL_BODY_MAX / 1024);
            if (ph == CTL_PH_SUBMIT) {
                ctl_text_add(&t, " to the POST: outcome unknown");
                ctl_text_ctx(&t, c, tmpl);
                return ctl_up_set(res, CTL_UP_UNKNOWN, d, &t);
            }
            break;
        }
        d = CTL_D_CONNECT;
        ctl_text_add(&t, "transfer from %s:%ld failed", c->host, c->port);
        break;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP_RETURNED_ERROR:
        d = CTL_D_HTTP;
        ctl_text_add(&t, "%s:%ld does not answer like an HTTP/1.1 server", c->host, c->port);
        break;
    default:
        d = CTL_D_CONNECT;
        ctl_text_add(&t, "connection to %s:%ld failed%s", c->host, c->port,
                     ctl_connected(c) ? " before an answer arrived" : "");
        break;
    }
    ctl_text_ctx(&t, c, tmpl);
    ctl_text_curl(&t, c, rc);
    return ctl_up_set(res, CTL_UP_FAILED, d, &t);
}

/* ctl_fail_status classifies a complete exchange whose status is not 200. */
static ctl_up_kind_t ctl_fail_status(ctl_conn_t *c, ctl_phase_t ph, ctl_up_t *res) {
    const ctl_config_t *cfg = c->cfg;
    long st = res->http_status;
    ctl_text_t t = {.len = 0};
    bool tmpl = ph == CTL_PH_SUBMIT;
    ctl_diag_t d;
    char offered[64];
    if (st == 401) {
        unsigned long want = ctl_auth_bit(cfg->auth_kind);
        ctl_auth_schemes_str(c->auth_offered, offered, sizeof(offered));
        if (want == 0 || (c->auth_offered != 0 && !(c->auth_offered & want))) {
            d = CTL_D_AUTH_SCHEME;
            ctl_text_add(&t, "server offers %s%s, auth is %s (HTTP 401)", offered,
                         c->auth_offered == CURLAUTH_NEGOTIATE ? " only (NTLM disabled)" : "",
                         ctl_auth_name(cfg->auth_kind));
        } else {
            d = CTL_D_AUTH;
            ctl_text_add(&t, "authentication failed as %s with %s", ctl_user_str(cfg),
                         ctl_auth_name(cfg->auth_kind));
            ctl_text_ctx(&t, c, tmpl);
            ctl_text_add(&t, ", HTTP 401 after %u request(s), server offers %s", c->xfer_requests,
                         offered);
            if (cfg->auth_kind == CTL_AUTH_NTLM || cfg->auth_kind == CTL_AUTH_NEGOTIATE)
                ctl_text_add(&t, "; if the password is right, IIS may require Extended Protection "
                             "(channel binding), which libcurl's %s does not send",
                             cfg->auth_kind == CTL_AUTH_NTLM ? "NTLM" : "Negotiate");
            if (cfg->auth_kind == CTL_AUTH_NEGOTIATE)
                ctl_text_add(&t, "; Negotiate needs a Kerberos ticket for HTTP/%s", c->host);
            return ctl_up_set(res, CTL_UP_FAILED, d, &t);
        }
    } else if (st == 403 && !c->https) {
        d = CTL_D_HTTPS_REQUIRED;
        ctl_text_add(&t, "server requires HTTPS (HTTP 403 on plain http)");
    } else if (st >= 300 && st < 400) {
        char *loc = NULL;
        curl_easy_getinfo(c->h, CURLINFO_REDIRECT_URL, &loc);
        d = CTL_D_REDIRECT;
        ctl_text_add(&t, "unexpected redirect (HTTP %ld) to %.200s, not followed", st,
                     loc ? loc : "(no Location)");
    } else {
        d = CTL_D_HTTP;
        ctl_text_add(&t, "server error: HTTP %ld", st);
    }
    ctl_text_ctx(&t, c, tmpl);
    if (st != 401)
        ctl_text_add(&t, ", HTTP %ld", st);
    /* A 5xx (but 503) to a POST whose body went out: the ASP page may have
     * failed after the CA took the request, so it is not a plain failure
     * (§5.13). 503 comes from HTTP.sys before any page runs (application
     * pool down or queue full): nothing reached the CA, retry normally. */
    if (ph == CTL_PH_SUBMIT && c->body_sent && st >= 500 && st != 503) {
        ctl_text_add(&t, "; outcome unknown: the CA may have taken the request");
        return ctl_up_set(res, CTL_UP_UNKNOWN, d, &t);
    }
    return ctl_up_set(res, CTL_UP_FAILED, d, &t);
}

/* ctl_exchange: perform and classify everything but a 200. Returns
 * CTL_UP__COUNT when the answer is a complete 200 (c->body holds it). */
static ctl_up_kind_t ctl_exchange(ctl_conn_t *c, ctl_phase_t ph, const char *rel, const char *post,
                                  size_t post_len, ctl_up_t *res) {
    CURLcode rc = ctl_perform(c, ph, rel, post, post_len, res);
    if (rc != CURLE_OK)
        return ctl_fail_transport(c, ph, rc, res);
    if (res->http_status != 200)
        return ctl_fail_status(c, ph, res);
    return CTL_UP__COUNT;
}

/* ---- login */

ctl_up_kind_t ctl_certsrv_login(ctl_conn_t *c, ctl_up_t *res) {
    unsigned long start;
    if (!ctl_begin(c, res, &start))
        return ctl_end(c, res, start);
    if (ctl_exchange(c, CTL_PH_LOGIN, "", NULL, 0, res) == CTL_UP__COUNT) {
        ctl_text_t t = {.len = 0};
        ctl_text_add(&t, "logged in");
        ctl_text_ctx(&t, c, false);
        ctl_text_add(&t, ", HTTP 200 after %u request(s)", c->xfer_requests);
        ctl_up_ok(res, CTL_UP_ISSUED, &t);
    }
    return ctl_end(c, res, start);
}

ctl_up_kind_t ctl_certsrv_get(ctl_conn_t *c, const char *page, const uint8_t **body, size_t *body_len,
                              ctl_up_t *res) {
    unsigned long start;
    *body = NULL;
    *body_len = 0;
    if (!ctl_begin(c, res, &start))
        return ctl_end(c, res, start);
    if (ctl_exchange(c, CTL_PH_FETCH, page, NULL, 0, res) == CTL_UP__COUNT) {
        ctl_text_t t = {.len = 0};
        ctl_text_add(&t, "HTTP 200, %zu bytes", c->body_len);
        ctl_text_ctx(&t, c, false);
        ctl_up_ok(res, CTL_UP_ISSUED, &t);
        *body = c->body;
        *body_len = c->body_len;
    }
    return ctl_end(c, res, start);
}

/* ---- submit */

/* ctl_pem_csr writes the CSR as PEM (64-column base64, CRLF) into a new string. */
static char *ctl_pem_csr(const uint8_t *der, size_t len) {
    static const char head[] = "-----BEGIN CERTIFICATE REQUEST-----\r\n";
    static const char tail[] = "-----END CERTIFICATE REQUEST-----\r\n";
    size_t b64 = 4 * ((len + 2) / 3);
    size_t lines = (b64 + 63) / 64;
    char *out = malloc(sizeof(head) + b64 + 2 * lines + sizeof(tail) + 1);
    if (out == NULL)
        return NULL;
    size_t n = 0;
    memcpy(out, head, sizeof(head) - 1);
    n += sizeof(head) - 1;
    for (size_t off = 0; off < len; off += 48) { /* 48 bytes -> 64 characters */
        size_t chunk = len - off < 48 ? len - off : 48;
        n += (size_t)EVP_EncodeBlock((unsigned char *)out + n, der + off, (int)chunk);
        out[n++] = '\r';
        out[n++] = '\n';
    }
    memcpy(out + n, tail, sizeof(tail));
    return out;
}

/* ctl_form builds the certfnsh.asp body (§1.1, §1.2): every value escaped. */
static char *ctl_form(ctl_conn_t *c, const uint8_t *p10, size_t p10_len, size_t *out_len) {
    char attrib[CTL_ATTRIB_MAX + 1];
    char *pem = NULL, *e_pem = NULL, *e_attr = NULL, *out = NULL;
    int an = snprintf(attrib, sizeof(attrib), "CertificateTemplate:%s\r\n", c->cfg->template_name);
    if (an < 0 || (size_t)an >= sizeof(attrib))
        return NULL;
    pem = ctl_pem_csr(p10, p10_len);
    if (pem == NULL)
        goto out;
    e_pem = curl_easy_escape(c->h, pem, (int)strlen(pem));
    e_attr = curl_easy_escape(c->h, attrib, an);
    if (e_pem == NULL || e_attr == NULL)
        goto out;
    static const char fmt[] = "Mode=newreq&CertRequest=%s&CertAttrib=%s"
                              "&FriendlyType=Saved-Request+Certificate&ThumbPrint="
                              "&TargetStoreFlags=0&SaveCert=yes";
    size_t cap = strlen(fmt) + strlen(e_pem) + strlen(e_attr) + 1;
    out = malloc(cap);
    if (out == NULL)
        goto out;
    int w = snprintf(out, cap, fmt, e_pem, e_attr);
    *out_len = (size_t)w;
out:
    free(pem);
    curl_free(e_pem);
    curl_free(e_attr);
    return out;
}

static void ctl_csr_hash(const uint8_t *p10, size_t len, char hex[65]) {
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(p10, len, md);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* ctl_text_page adds what an error/denial page said: its message (or the
 * start of its text) and its HRESULT. */
static void ctl_text_page(ctl_text_t *t, const ctl_page_t *pg) {
    if (pg->message[0])
        ctl_text_add(t, ", message \"%.200s\"", pg->message);
    else if (pg->text[0])
        ctl_text_add(t, ", page \"%.160s\"", pg->text);
    if (pg->has_hresult)
        ctl_text_add(t, ", HRESULT 0x%08X", (unsigned)pg->hresult);
}

/* ctl_page_denial fills `res` from a DENIED/ERROR page of certfnsh.asp or
 * certnew.*: the class from the HRESULT (or the markers), kind DENIED for a
 * final answer about this request and FAILED for CA down / unknown id /
 * an answer without any code. */
static ctl_up_kind_t ctl_page_denial(ctl_conn_t *c, const ctl_page_t *pg, ctl_phase_t ph,
                                     ctl_up_t *res) {
    const ctl_config_t *cfg = c->cfg;
    ctl_diag_t d;
    if (pg->has_req_id) {
        res->has_req_id = true;
        res->req_id = pg->req_id;
    }
    if (pg->has_hresult)
        res->hresult = pg->hresult;
    if (pg->ca_unreachable)
        d = CTL_D_CA_DOWN;
    else if (pg->unknown_id)
        d = CTL_D_UNKNOWN_ID;
    else if (pg->has_hresult)
        d = ctl_diag_from_hresult(pg->hresult);
    else if (strstr(pg->message, "Error Parsing Request"))
        d = CTL_D_BAD_CSR;
    else if (pg->kind == CTL_PAGE_DENIED || (pg->has_disposition && pg->disposition == 2))
        d = CTL_D_DENIED;
    else
        d = CTL_D_PAGE;
    ctl_up_kind_t kind = (d == CTL_D_CA_DOWN || d == CTL_D_UNKNOWN_ID || d == CTL_D_PAGE)
                             ? CTL_UP_FAILED : CTL_UP_DENIED;
    ctl_text_t t = {.len = 0};
    const char *tn = ctl_str_set(cfg->template_name) ? cfg->template_name : "(none)";
    switch (d) {
    case CTL_D_TEMPLATE:
        ctl_text_add(&t, "template %s unknown, missing or not published on the CA", tn);
        break;
    case CTL_D_PERMISSION:
        ctl_text_add(&t, "account %s may not enroll with template %s", ctl_user_str(cfg), tn);
        break;
    case CTL_D_BAD_CSR:
        ctl_text_add(&t, "the CA could not parse or accept the CSR");
        break;
    case CTL_D_CA_DOWN:
        ctl_text_add(&t, "the web enrollment server cannot reach the CA (service down or delegation)");
        break;
    case CTL_D_UNKNOWN_ID:
        ctl_text_add(&t, "the CA does not know request %u", res->req_id);
        break;
    case CTL_D_PAGE:
        ctl_text_add(&t, "%s page without a code the connector knows",
                     ctl_page_kind_str(pg->kind));
        break;
    default:
        ctl_text_add(&t, "the CA denied the request");
        break;
    }
    if (res->has_req_id && d != CTL_D_UNKNOWN_ID)
        ctl_text_add(&t, ", request %u", res->req_id);
    ctl_text_page(&t, pg);
    if (pg->has_disposition)
        ctl_text_add(&t, ", disposition %u", (unsigned)pg->disposition);
    ctl_text_ctx(&t, c, ph == CTL_PH_SUBMIT || d == CTL_D_TEMPLATE || d == CTL_D_PERMISSION);
    return ctl_up_set(res, kind, d, &t);
}

ctl_up_kind_t ctl_certsrv_submit(ctl_conn_t *c, const uint8_t *p10, size_t p10_len, ctl_up_t *res) {
    unsigned long start;
    size_t form_len = 0;
    char *form = NULL;
    ctl_text_t t = {.len = 0};
    if (!ctl_begin(c, res, &start))
        return ctl_end(c, res, start);
    snprintf(c->url, sizeof(c->url), "%s/certfnsh.asp", c->base);
    c->method = "POST";
    if (!ctl_str_set(c->cfg->template_name)) {
        ctl_text_add(&t, "template is not set");
        ctl_up_set(res, CTL_UP_FAILED, CTL_D_CONFIG, &t);
        return ctl_end(c, res, start);
    }
    if (p10 == NULL || p10_len == 0 || p10_len > 64 * 1024) {
        ctl_text_add(&t, "CSR is empty or larger than 64 KiB (%zu bytes), not submitted", p10_len);
        ctl_text_ctx(&t, c, true);
        ctl_up_set(res, CTL_UP_FAILED, CTL_D_BAD_CSR, &t);
        return ctl_end(c, res, start);
    }
    form = ctl_form(c, p10, p10_len, &form_len);
    if (form == NULL) {
        ctl_text_add(&t, "cannot build the form (out of memory, or template name longer than %d)",
                     CTL_ATTRIB_MAX - 24);
        ctl_text_ctx(&t, c, true);
        ctl_up_set(res, CTL_UP_FAILED, CTL_D_CONFIG, &t);
        return ctl_end(c, res, start);
    }
    if (ctl_exchange(c, CTL_PH_SUBMIT, "certfnsh.asp", form, form_len, res) == CTL_UP__COUNT) {
        ctl_page_t pg;
        ctl_page_result(c->body, c->body_len, &pg);
        switch (pg.kind) {
        case CTL_PAGE_ISSUED:
        case CTL_PAGE_PENDING:
            res->has_req_id = pg.has_req_id;
            res->req_id = pg.req_id;
            if (pg.kind == CTL_PAGE_ISSUED)
                ctl_text_add(&t, "issued: request %u", (unsigned)pg.req_id);
            else
                ctl_text_add(&t, "request %u pending CA manager approval", (unsigned)pg.req_id);
            ctl_text_ctx(&t, c, true);
            ctl_up_ok(res, pg.kind == CTL_PAGE_ISSUED ? CTL_UP_ISSUED : CTL_UP_PENDING, &t);
            break;
        case CTL_PAGE_DENIED:
        case CTL_PAGE_ERROR:
            ctl_page_denial(c, &pg, CTL_PH_SUBMIT, res);
            break;
        default:
            /* a 200 nobody recognises: the CA may have created the request */
            ctl_text_add(&t, "answer to the POST not recognised (outcome unknown): \"%.200s\"",
                         pg.text);
            ctl_text_ctx(&t, c, true);
            ctl_up_set(res, CTL_UP_UNKNOWN, CTL_D_PAGE, &t);
            break;
        }
    }
    if (res->kind == CTL_UP_UNKNOWN) { /* the caller logs it (stampede-control: with the request) */
        char hex[65];
        ctl_csr_hash(p10, p10_len, hex);
        DP_DEBUG("certsrv: outcome unknown for CSR sha256 %s: %s", hex, res->cause);
    }
    free(form);
    return ctl_end(c, res, start);
}

/* ---- fetch */

/* ctl_key_matches: true if certificate `x` carries the public key of the
 * PKCS#10 `p10`. *why explains a false. */
static bool ctl_key_matches(X509 *x, const uint8_t *p10, size_t p10_len, const char **why) {
    const unsigned char *p = p10;
    X509_REQ *req = p10 && p10_len ? d2i_X509_REQ(NULL, &p, (long)p10_len) : NULL;
    bool ok = false;
    if (req == NULL) {
        *why = "the CSR to compare with cannot be parsed";
        return false;
    }
    EVP_PKEY *a = X509_REQ_get0_pubkey(req);
    EVP_PKEY *b = X509_get0_pubkey(x);
    if (a == NULL || b == NULL)
        *why = "a public key cannot be read";
    else if (EVP_PKEY_eq(a, b) != 1)
        *why = "the certificate's public key is not the CSR's";
    else
        ok = true;
    X509_REQ_free(req);
    return ok;
}

/* ctl_body_cert parses the DER of a certnew.cer answer as one certificate. */
static X509 *ctl_body_cert(const uint8_t *der, size_t len) {
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x != NULL && (size_t)(p - der) != len) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* ctl_fail_body: a certnew.* answer that is neither HTML nor the expected DER. */
static ctl_up_kind_t ctl_fail_body(ctl_conn_t *c, const ctl_body_t *b, const char *what, ctl_up_t *res) {
    ctl_text_t t = {.len = 0};
    ctl_text_add(&t, "%s", what);
    if (b->kind == CTL_BODY_UNKNOWN && b->page.text[0])
        ctl_text_add(&t, ": \"%.160s\"", b->page.text);
    ctl_text_add(&t, " (%zu bytes)", c->body_len);
    ctl_text_ctx(&t, c, false);
    return ctl_up_set(res, CTL_UP_FAILED, CTL_D_PAGE, &t);
}

ctl_up_kind_t ctl_certsrv_fetch(ctl_conn_t *c, uint32_t req_id, const uint8_t *p10, size_t p10_len,
                                ctl_up_t *res) {
    unsigned long start;
    char rel[64];
    if (!ctl_begin(c, res, &start))
        return ctl_end(c, res, start);
    res->has_req_id = true;
    res->req_id = req_id;
    snprintf(rel, sizeof(rel), "certnew.cer?ReqID=%u&Enc=bin", (unsigned)req_id);
    if (ctl_exchange(c, CTL_PH_FETCH, rel, NULL, 0, res) != CTL_UP__COUNT)
        return ctl_end(c, res, start);
    ctl_body_t b;
    ctl_page_body(c->body, c->body_len, c->pem, CTL_BODY_MAX, &b);
    ctl_text_t t = {.len = 0};
    if (b.kind == CTL_BODY_HTML) {
        if (b.page.kind == CTL_PAGE_PENDING || (b.page.has_disposition && b.page.disposition == 5)) {
            ctl_text_add(&t, "request %u still pending CA manager approval", (unsigned)req_id);
            ctl_text_ctx(&t, c, false);
            ctl_up_ok(res, CTL_UP_PENDING, &t);
        } else {
            ctl_page_t pg = b.page;
            if (!pg.has_req_id) {
                pg.has_req_id = true;
                pg.req_id = req_id;
            }
            ctl_page_denial(c, &pg, CTL_PH_FETCH, res);
        }
        return ctl_end(c, res, start);
    }
    if (b.kind != CTL_BODY_DER) {
        ctl_fail_body(c, &b, "answer is neither a certificate nor an error page", res);
        return ctl_end(c, res, start);
    }
    X509 *x = ctl_body_cert(b.der, b.der_len);
    const char *why = NULL;
    if (x == NULL) {
        ctl_fail_body(c, &b, "answer does not parse as one X.509 certificate", res);
    } else if (b.der_len > sizeof(res->der)) {
        ctl_fail_body(c, &b, "certificate larger than 16 KiB", res);
    } else if (!ctl_key_matches(x, p10, p10_len, &why)) {
        ctl_text_add(&t, "certificate of request %u does not match the CSR: %s", (unsigned)req_id,
                     why);
        ctl_text_ctx(&t, c, false);
        ctl_up_set(res, CTL_UP_FAILED, CTL_D_PAGE, &t);
    } else {
        memcpy(res->der, b.der, b.der_len);
        res->der_len = b.der_len;
        ctl_text_add(&t, "certificate of request %u, %zu bytes", (unsigned)req_id, b.der_len);
        ctl_text_ctx(&t, c, false);
        ctl_up_ok(res, CTL_UP_ISSUED, &t);
    }
    X509_free(x);
    return ctl_end(c, res, start);
}

/* ---- chain */

/* ctl_fail_ca_page: an error page instead of a CA certificate or chain:
 * CA down, or a page the connector cannot use (never a denial). */
static ctl_up_kind_t ctl_fail_ca_page(ctl_conn_t *c, const ctl_page_t *pg, uint32_t k, ctl_up_t *res) {
    ctl_text_t t = {.len = 0};
    ctl_diag_t d = pg->ca_unreachable || (pg->has_hresult &&
                                          ctl_diag_from_hresult(pg->hresult) == CTL_D_CA_DOWN)
                       ? CTL_D_CA_DOWN : CTL_D_PAGE;
    if (pg->has_hresult)
        res->hresult = pg->hresult;
    if (d == CTL_D_CA_DOWN)
        ctl_text_add(&t, "the web enrollment server cannot reach the CA (service down or delegation)");
    else
        ctl_text_add(&t, "error page instead of CA certificate %u", (unsigned)k);
    ctl_text_page(&t, pg);
    ctl_text_ctx(&t, c, false);
    return ctl_up_set(res, CTL_UP_FAILED, d, &t);
}

/* ctl_fetch_ca GETs certnew.{p7b,cer}?ReqID=CACert&Renewal=k&Enc=bin into
 * `out` (`cap` bytes). Returns CTL_UP__COUNT when it got the object. */
static ctl_up_kind_t ctl_fetch_ca(ctl_conn_t *c, uint32_t k, bool p7b, uint8_t *out, size_t cap,
                                  size_t *out_len, ctl_up_t *res) {
    char rel[96];
    snprintf(rel, sizeof(rel), "certnew.%s?ReqID=CACert&Renewal=%u&Enc=bin", p7b ? "p7b" : "cer",
             (unsigned)k);
    if (ctl_exchange(c, CTL_PH_FETCH, rel, NULL, 0, res) != CTL_UP__COUNT)
        return res->kind;
    ctl_body_t b;
    ctl_page_body(c->body, c->body_len, c->pem, CTL_BODY_MAX, &b);
    if (b.kind == CTL_BODY_HTML)
        return ctl_fail_ca_page(c, &b.page, k, res);
    if (b.kind != CTL_BODY_DER)
        return ctl_fail_body(c, &b, p7b ? "CA chain answer is neither PKCS#7 nor an error page"
                                        : "CA certificate answer is neither DER nor an error page",
                             res);
    const unsigned char *p = b.der;
    bool ok;
    if (p7b) {
        PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)b.der_len);
        ok = p7 != NULL && (size_t)(p - b.der) == b.der_len && PKCS7_type_is_signed(p7) &&
             p7->d.sign != NULL && p7->d.sign->cert != NULL && sk_X509_num(p7->d.sign->cert) > 0;
        PKCS7_free(p7);
    } else {
        X509 *x = ctl_body_cert(b.der, b.der_len);
        ok = x != NULL;
        X509_free(x);
    }
    if (!ok)
        return ctl_fail_body(c, &b, p7b ? "CA chain is not a PKCS#7 signedData with certificates"
                                        : "CA certificate does not parse as X.509", res);
    if (b.der_len > cap)
        return ctl_fail_body(c, &b, p7b ? "CA chain larger than 64 KiB"
                                        : "CA certificate larger than 16 KiB", res);
    memcpy(out, b.der, b.der_len);
    *out_len = b.der_len;
    return CTL_UP__COUNT;
}

static ctl_up_kind_t ctl_chain_get(ctl_conn_t *c, uint32_t k, ctl_chain_t *out, ctl_up_t *res) {
    out->renewal = k;
    out->chain_len = out->ca_cert_len = 0;
    if (ctl_fetch_ca(c, k, true, out->chain, sizeof(out->chain), &out->chain_len, res) != CTL_UP__COUNT)
        return res->kind;
    if (ctl_fetch_ca(c, k, false, out->ca_cert, sizeof(out->ca_cert), &out->ca_cert_len, res) !=
        CTL_UP__COUNT)
        return res->kind;
    ctl_text_t t = {.len = 0};
    ctl_text_add(&t, "CA certificate %u (%zu bytes) and its chain (%zu bytes)", (unsigned)k,
                 out->ca_cert_len, out->chain_len);
    ctl_text_ctx(&t, c, false);
    return ctl_up_ok(res, CTL_UP_ISSUED, &t);
}

ctl_up_kind_t ctl_certsrv_chain_at(ctl_conn_t *c, uint32_t renewal, ctl_chain_t *out, ctl_up_t *res) {
    unsigned long start;
    if (ctl_begin(c, res, &start))
        ctl_chain_get(c, renewal, out, res);
    return ctl_end(c, res, start);
}

ctl_up_kind_t ctl_certsrv_chain(ctl_conn_t *c, ctl_chain_t *out, ctl_up_t *res) {
    unsigned long start;
    if (!ctl_begin(c, res, &start))
        return ctl_end(c, res, start);
    if (ctl_exchange(c, CTL_PH_FETCH, "certcarc.asp", NULL, 0, res) != CTL_UP__COUNT)
        return ctl_end(c, res, start);
    uint32_t k = 0;
    ctl_page_t pg;
    if (!ctl_page_renewals(c->body, c->body_len, &k, &pg)) {
        /* never fall back to Renewal=0 (§4): say why the index is missing */
        ctl_text_t t = {.len = 0};
        ctl_diag_t d = pg.ca_unreachable ? CTL_D_CA_DOWN : CTL_D_PAGE;
        if (d == CTL_D_CA_DOWN)
            ctl_text_add(&t, "the web enrollment server cannot reach the CA: certcarc.asp has no "
                         "nRenewals");
        else
            ctl_text_add(&t, "certcarc.asp has no nRenewals (current CA certificate unknown)");
        if (pg.message[0])
            ctl_text_add(&t, ", message \"%.200s\"", pg.message);
        else if (pg.text[0])
            ctl_text_add(&t, ", page \"%.200s\"", pg.text);
        if (pg.has_hresult)
            ctl_text_add(&t, ", HRESULT 0x%08X", (unsigned)pg.hresult);
        ctl_text_ctx(&t, c, false);
        ctl_up_set(res, CTL_UP_FAILED, d, &t);
        return ctl_end(c, res, start);
    }
    ctl_chain_get(c, k, out, res);
    return ctl_end(c, res, start);
}
