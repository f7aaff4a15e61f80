/* ctl_doctor: the on-demand checks behind `stampedectl doctor` (see
 * ctl_doctor in ctl_certsrv.h). Each check prints one line, "ok    <check>:
 * <detail>" or "PROBLEM <check>: <cause>; fix: <fix>", in the order a request
 * meets the obstacles: settings, DNS, TCP, TLS, authentication, the
 * web-enrollment pages, the CA behind IIS and its chain, the template. A
 * check that later ones depend on stops the run when it fails (no DNS, no
 * TCP, no TLS, no login).
 *
 * EPA (certsrv-protocol.md §2.6): libcurl's NTLM sends no channel binding,
 * so an IIS that requires Extended Protection refuses a right password with
 * a plain 401. The connector itself cannot tell that from a wrong password
 * (its cause line names both); the doctor can: when an NTLM/Negotiate login
 * gets a 401 and the server also offers Basic, it tries Basic once with the
 * same credentials. Basic accepted => CTL_D_EPA (and the remaining checks run
 * over Basic); Basic refused too => CTL_D_AUTH (wrong user or password).
 * Never submits a request. Thread: any thread, blocking (bounded by the
 * configured timeouts). */
#include "control/ctl_certsrv.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "control/ctl_page.h"

#define CTL_DOC_ADDRS 8

typedef struct {
    const ctl_config_t *cfg;
    FILE *out;
    int problems;
    char host[256];
    char port[16];
    bool https;
    char pinned[64];          /* address from cfg->resolve, "" if none */
    struct sockaddr_storage addrs[CTL_DOC_ADDRS];
    socklen_t addr_lens[CTL_DOC_ADDRS];
    int n_addrs;
} ctl_doc_t;

static void ctl_doc_ok(ctl_doc_t *d, const char *check, const char *detail) {
    fprintf(d->out, "ok    %s: %s\n", check, detail);
}

/* ctl_doc_problem prints a PROBLEM line; `cause` has no "; fix:" yet. */
static void ctl_doc_problem(ctl_doc_t *d, const char *check, const char *cause, ctl_diag_t diag) {
    fprintf(d->out, "PROBLEM %s: %s; fix: %s\n", check, cause, ctl_diag_fix(diag));
    d->problems++;
}

/* ctl_doc_problem2 prints a PROBLEM line whose cause names two classes (the
 * doctor cannot tell them apart): both fixes. */
static void ctl_doc_problem2(ctl_doc_t *d, const char *check, const char *cause, ctl_diag_t a,
                             ctl_diag_t b) {
    fprintf(d->out, "PROBLEM %s: %s; fix: %s; or %s\n", check, cause, ctl_diag_fix(a), ctl_diag_fix(b));
    d->problems++;
}

/* ctl_doc_problem_res prints a connector result (its cause ends in the fix). */
static void ctl_doc_problem_res(ctl_doc_t *d, const char *check, const ctl_up_t *res) {
    fprintf(d->out, "PROBLEM %s: %s\n", check, res->cause);
    d->problems++;
}

/* ---- configuration */

/* ctl_doc_url splits certsrv_url; false with `why` if unusable. */
static bool ctl_doc_url(ctl_doc_t *d, char *why, size_t why_len) {
    const char *url = d->cfg->certsrv_url;
    char *scheme = NULL, *host = NULL, *port = NULL, *user = NULL;
    bool ok = false;
    CURLU *u = curl_url();
    if (!ctl_str_set(url)) {
        snprintf(why, why_len, "certsrv_url is not set");
    } else if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
               curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
               curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
               curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        snprintf(why, why_len, "certsrv_url %.200s does not parse as a URL", url);
    } else if (strcasecmp(scheme, "https") != 0 && strcasecmp(scheme, "http") != 0) {
        snprintf(why, why_len, "certsrv_url %.200s: scheme %s is not https", url, scheme);
    } else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        snprintf(why, why_len, "certsrv_url carries a user name (use user and password_file)");
    } else {
        size_t hl = strlen(host);
        const char *h = host;
        if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
            h++;
            hl -= 2;
        }
        snprintf(d->host, sizeof(d->host), "%.*s", (int)hl, h);
        snprintf(d->port, sizeof(d->port), "%s", port);
        d->https = strcasecmp(scheme, "https") == 0;
        ok = true;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_url_cleanup(u);
    return ok;
}

/* ctl_doc_pin finds the resolve entry for host:port; false if an entry is malformed. */
static bool ctl_doc_pin(ctl_doc_t *d, char *why, size_t why_len) {
    const char *s = d->cfg->resolve, *span;
    size_t n;
    d->pinned[0] = '\0';
    if (!ctl_str_set(s))
        return true;
    while (ctl_resolve_next(&s, &span, &n)) {
        char e[300];
        snprintf(e, sizeof(e), "%.*s", (int)(n < sizeof(e) ? n : sizeof(e) - 1), span);
        char *entry = e[0] == '+' ? e + 1 : e;
        char *c1 = strchr(entry, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c1 == NULL || c2 == NULL || c2[1] == '\0' || c1 == entry) {
            snprintf(why, why_len, "resolve entry \"%.100s\" is not HOST:PORT:ADDR", e);
            return false;
        }
        *c1 = *c2 = '\0';
        char *addr = c2 + 1;
        size_t al = strlen(addr);
        while (al > 0 && (addr[al - 1] == ' ' || addr[al - 1] == '\t'))
            addr[--al] = '\0';
        if (al >= 2 && addr[0] == '[' && addr[al - 1] == ']') {
            addr[al - 1] = '\0';
            addr++;
        }
        if (strcasecmp(entry, d->host) == 0 && strcmp(c1 + 1, d->port) == 0)
            snprintf(d->pinned, sizeof(d->pinned), "%s", addr);
    }
    return true;
}

/* ctl_doc_config: one line; false if the URL is unusable (nothing else can run). */
static bool ctl_doc_config(ctl_doc_t *d) {
    const ctl_config_t *cfg = d->cfg;
    char why[400];
    const char *an = ctl_auth_name(cfg->auth_kind);
    ctl_diag_t diag = CTL_D_CONFIG;
    why[0] = '\0';
    if (!ctl_doc_url(d, why, sizeof(why))) {
        ctl_doc_problem(d, "config", why, CTL_D_CONFIG);
        return false;
    }
    /* the pin is read whatever else is wrong: the DNS check below uses it */
    char pin_why[400];
    bool pin_ok = ctl_doc_pin(d, pin_why, sizeof(pin_why));
    if (!d->https) {
        snprintf(why, sizeof(why), "certsrv_url %.200s is plain http", cfg->certsrv_url);
        diag = CTL_D_HTTPS_REQUIRED;
    } else if (!pin_ok) {
        snprintf(why, sizeof(why), "%s", pin_why);
    } else if ((unsigned)cfg->auth_kind > CTL_AUTH_NONE ||
               (ctl_str_set(cfg->auth) && strcasecmp(cfg->auth, an) != 0)) {
        snprintf(why, sizeof(why), "auth \"%.40s\" is not basic, ntlm, negotiate or none",
                 cfg->auth ? cfg->auth : "");
    } else if (cfg->auth_kind != CTL_AUTH_NONE && !ctl_str_set(cfg->user)) {
        snprintf(why, sizeof(why), "user is not set (auth %s)", an);
    } else if (cfg->auth_kind != CTL_AUTH_NONE && !ctl_str_set(cfg->password)) {
        snprintf(why, sizeof(why), "no password (password_file %.200s missing, unreadable or empty)",
                 ctl_str_set(cfg->password_file) ? cfg->password_file : "not set");
    } else if (!ctl_str_set(cfg->template_name)) {
        snprintf(why, sizeof(why), "template is not set");
    } else if (ctl_str_set(cfg->ca_bundle) && access(cfg->ca_bundle, R_OK) != 0) {
        snprintf(why, sizeof(why), "ca_bundle %.200s is not readable: %s", cfg->ca_bundle,
                 strerror(errno));
    } else if (ctl_str_set(cfg->user_agent) &&
               (strstr(cfg->user_agent, "Mozilla") == NULL || strstr(cfg->user_agent, "MSIE") ||
                strstr(cfg->user_agent, "Trident"))) {
        snprintf(why, sizeof(why), "user_agent must contain Mozilla and neither MSIE nor Trident");
    }
    if (why[0]) {
        ctl_doc_problem(d, "config", why, diag);
        return true; /* the network checks still tell something */
    }
    char ok[600];
    snprintf(ok, sizeof(ok), "%.200s, auth %s%s%.100s, template %.100s, trust %.150s", cfg->certsrv_url,
             an, cfg->auth_kind == CTL_AUTH_NONE ? "" : " as ",
             cfg->auth_kind == CTL_AUTH_NONE ? "" : cfg->user, cfg->template_name,
             ctl_str_set(cfg->ca_bundle) ? cfg->ca_bundle : "system store");
    ctl_doc_ok(d, "config", ok);
    return true;
}

/* ---- DNS and TCP */

static void ctl_doc_addr_str(const struct sockaddr *sa, char *buf, size_t len) {
    const void *a = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                              : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (inet_ntop(sa->sa_family, a, buf, (socklen_t)len) == NULL)
        snprintf(buf, len, "?");
}

static bool ctl_doc_dns(ctl_doc_t *d) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *ai = NULL;
    const char *name = d->pinned[0] ? d->pinned : d->host;
    if (d->pinned[0])
        hints.ai_flags = AI_NUMERICHOST;
    int rc = getaddrinfo(name, d->port, &hints, &ai);
    char line[512];
    if (rc != 0) {
        if (d->pinned[0]) {
            snprintf(line, sizeof(line), "resolve pins %s:%s to \"%s\", which is not an IP address (%s)",
                     d->host, d->port, d->pinned, gai_strerror(rc));
            ctl_doc_problem(d, "dns", line, CTL_D_CONFIG);
        } else {
            snprintf(line, sizeof(line), "cannot resolve %s: %s", d->host, gai_strerror(rc));
            ctl_doc_problem(d, "dns", line, CTL_D_DNS);
        }
        return false;
    }
    d->n_addrs = 0;
    size_t n = 0;
    n += (size_t)snprintf(line, sizeof(line), "%s %s ", d->host, d->pinned[0] ? "pinned by resolve to"
                                                                             : "resolves to");
    for (struct addrinfo *p = ai; p && d->n_addrs < CTL_DOC_ADDRS; p = p->ai_next) {
        if (p->ai_addrlen > sizeof(d->addrs[0]))
            continue;
        memcpy(&d->addrs[d->n_addrs], p->ai_addr, p->ai_addrlen);
        d->addr_lens[d->n_addrs] = p->ai_addrlen;
        char a[INET6_ADDRSTRLEN];
        ctl_doc_addr_str(p->ai_addr, a, sizeof(a));
        if (n < sizeof(line))
            n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s", d->n_addrs ? ", " : "", a);
        d->n_addrs++;
    }
    freeaddrinfo(ai);
    ctl_doc_ok(d, "dns", line);
    return d->n_addrs > 0;
}

/* ctl_doc_connect_one: 0 connected, else an errno (ETIMEDOUT for the timeout). */
static int ctl_doc_connect_one(const struct sockaddr_storage *sa, socklen_t len, uint32_t ms) {
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    int err = 0;
    if (connect(fd, (const struct sockaddr *)sa, len) != 0) {
        err = errno;
        if (err == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int r = poll(&p, 1, ms ? (int)ms : 10000);
            socklen_t el = sizeof(err);
            if (r == 0)
                err = ETIMEDOUT;
            else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
                err = errno;
        }
    }
    close(fd);
    return err;
}

static bool ctl_doc_tcp(ctl_doc_t *d) {
    char line[512], a[INET6_ADDRSTRLEN];
    int err = 0;
    for (int i = 0; i < d->n_addrs; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        err = ctl_doc_connect_one(&d->addrs[i], d->addr_lens[i], d->cfg->connect_timeout_ms);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        ctl_doc_addr_str((const struct sockaddr *)&d->addrs[i], a, sizeof(a));
        if (err == 0) {
            long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
            snprintf(line, sizeof(line), "connected to %s port %s (%s) in %ld ms", d->host, d->port,
                     a, ms);
            ctl_doc_ok(d, "tcp", line);
            return true;
        }
    }
    snprintf(line, sizeof(line), "cannot connect to %s:%s (%s): %s", d->host, d->port, a,
             err == ETIMEDOUT ? "no answer within connect_timeout_ms" : strerror(err));
    ctl_doc_problem(d, "tcp", line, err == ETIMEDOUT ? CTL_D_TIMEOUT_CONNECT : CTL_D_CONNECT);
    return false;
}

/* ---- TLS, authentication, pages */

/* ctl_doc_tls: GET /certsrv/ without credentials; any HTTP answer means the
 * handshake and the verification passed. *offered: schemes of its 401. */
static bool ctl_doc_tls(ctl_doc_t *d, unsigned long *offered) {
    ctl_config_t anon = *d->cfg;
    anon.auth_kind = CTL_AUTH_NONE;
    anon.auth = NULL;
    ctl_up_t *res = calloc(1, sizeof(*res));
    ctl_conn_t *c = ctl_conn_new(&anon);
    bool ok = false;
    if (res == NULL || c == NULL) {
        fprintf(d->out, "PROBLEM tls: out of memory\n");
        d->problems++;
        goto out;
    }
    const uint8_t *body;
    size_t len;
    ctl_certsrv_get(c, "", &body, &len, res);
    *offered = ctl_conn_auth_offered(c);
    if (res->http_status == 0) { /* no HTTP answer: TLS (or the path to it) failed */
        ctl_doc_problem_res(d, "tls", res);
        goto out;
    }
    if (!d->https) {
        ctl_doc_ok(d, "tls", "not used: certsrv_url is plain http");
    } else {
        char line[400];
        snprintf(line, sizeof(line), "IIS certificate verified for %s against %s (HTTP %ld without "
                 "credentials)", d->host,
                 ctl_str_set(d->cfg->ca_bundle) ? d->cfg->ca_bundle : "the system store",
                 res->http_status);
        ctl_doc_ok(d, "tls", line);
    }
    ok = true;
out:
    ctl_conn_free(c);
    free(res);
    return ok;
}

/* ctl_doc_auth logs in; returns the logged-in connection (the caller frees
 * it) or NULL. `basic_cfg` holds the Basic copy of the settings when the EPA
 * rule switched to it. */
static ctl_conn_t *ctl_doc_auth(ctl_doc_t *d, unsigned long offered, ctl_config_t *basic_cfg) {
    const ctl_config_t *cfg = d->cfg;
    char line[900], schemes[64];
    ctl_up_t *res = calloc(1, sizeof(*res));
    ctl_conn_t *c = ctl_conn_new(cfg);
    if (res == NULL || c == NULL) {
        fprintf(d->out, "PROBLEM auth: out of memory\n");
        d->problems++;
        goto fail;
    }
    ctl_certsrv_login(c, res);
    if (offered == 0)
        offered = ctl_conn_auth_offered(c);
    ctl_auth_schemes_str(offered, schemes, sizeof(schemes));
    if (res->kind == CTL_UP_ISSUED) {
        snprintf(line, sizeof(line), "logged in as %s with %s in %u request(s); server offers %s",
                 cfg->auth_kind == CTL_AUTH_NONE ? "(anonymous)" : cfg->user,
                 ctl_auth_name(cfg->auth_kind), res->requests, schemes);
        ctl_doc_ok(d, "auth", line);
        free(res);
        return c;
    }
    bool multi = cfg->auth_kind == CTL_AUTH_NTLM || cfg->auth_kind == CTL_AUTH_NEGOTIATE;
    if (res->diag != CTL_D_AUTH || !multi || !(offered & CURLAUTH_BASIC)) {
        ctl_doc_problem_res(d, "auth", res);
        goto fail;
    }
    /* the EPA rule: try Basic once with the same credentials */
    *basic_cfg = *cfg;
    basic_cfg->auth_kind = CTL_AUTH_BASIC;
    basic_cfg->auth = "basic";
    ctl_conn_t *b = ctl_conn_new(basic_cfg);
    ctl_up_t *bres = calloc(1, sizeof(*bres));
    if (b != NULL && bres != NULL && ctl_certsrv_login(b, bres) == CTL_UP_ISSUED) {
        snprintf(line, sizeof(line), "%s login as %s refused with HTTP 401 while Basic with the same "
                 "credentials works: the server may require Extended Protection (channel binding), "
                 "which libcurl's %s does not send; server offers %s (checks below use Basic)",
                 ctl_auth_name(cfg->auth_kind), cfg->user,
                 cfg->auth_kind == CTL_AUTH_NTLM ? "NTLM" : "Negotiate", schemes);
        ctl_doc_problem(d, "auth", line, CTL_D_EPA);
        free(bres);
        free(res);
        ctl_conn_free(c);
        return b;
    }
    snprintf(line, sizeof(line), "authentication failed as %s with %s and with basic (HTTP 401): "
             "wrong user or password; server offers %s", cfg->user,
             ctl_auth_name(cfg->auth_kind), schemes);
    ctl_doc_problem(d, "auth", line, CTL_D_AUTH);
    free(bres);
    ctl_conn_free(b);
fail:
    free(res);
    ctl_conn_free(c);
    return NULL;
}

/* ---- CA and chain */

static int ctl_doc_chain_count(const uint8_t *der, size_t len) {
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    int n = -1;
    if (p7 != NULL && PKCS7_type_is_signed(p7) && p7->d.sign && p7->d.sign->cert)
        n = sk_X509_num(p7->d.sign->cert);
    PKCS7_free(p7);
    return n;
}

static void ctl_doc_subject(const uint8_t *der, size_t len, char *buf, size_t buf_len) {
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    BIO *bio = BIO_new(BIO_s_mem());
    snprintf(buf, buf_len, "?");
    if (x != NULL && bio != NULL &&
        X509_NAME_print_ex(bio, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(bio, buf, (int)buf_len - 1);
        buf[n > 0 ? n : 0] = '\0';
    }
    BIO_free(bio);
    X509_free(x);
}

static void ctl_doc_ca(ctl_doc_t *d, ctl_conn_t *c) {
    ctl_chain_t *ch = calloc(1, sizeof(*ch));
    ctl_up_t *res = calloc(1, sizeof(*res));
    if (ch == NULL || res == NULL) {
        fprintf(d->out, "PROBLEM ca: out of memory\n");
        d->problems++;
    } else if (ctl_certsrv_chain(c, ch, res) != CTL_UP_ISSUED) {
        ctl_doc_problem_res(d, "ca", res);
    } else {
        char subj[256], line[600];
        ctl_doc_subject(ch->ca_cert, ch->ca_cert_len, subj, sizeof(subj));
        snprintf(line, sizeof(line), "CA reachable behind IIS; current CA certificate is renewal %u: "
                 "%s; chain of %d certificate(s)", (unsigned)ch->renewal, subj,
                 ctl_doc_chain_count(ch->chain, ch->chain_len));
        ctl_doc_ok(d, "ca", line);
    }
    free(res);
    free(ch);
}

/* ---- template (certrqxt.asp) */

/* ctl_doc_field: field `idx` of the ';'-separated `val`, as a cursor. */
static bool ctl_doc_field(ctl_cur_t val, int idx, ctl_cur_t *out) {
    for (int i = 0;; i++) {
        ctl_cur_t end = val;
        bool more = ctl_cur_find(&end, ";", false);
        size_t n = more ? val.len - end.len : val.len;
        if (i == idx) {
            ctl_cur_init(out, val.data, n);
            return true;
        }
        if (!more || !ctl_cur_skip(&end, 1))
            return false;
        val = end;
    }
}

static bool ctl_doc_field_is(ctl_cur_t f, const char *s) {
    return f.len == strlen(s) && ctl_cur_starts(&f, s, true);
}

typedef struct {
    int options;         /* option values seen */
    bool none;           /* the single "X" option: nothing for this account */
    bool found;          /* name (field 1) matches */
    bool by_display;     /* display name (field 13) matches: name in real_name */
    char real_name[128];
    char names[200];     /* the first names, for the message */
} ctl_doc_tpl_t;

/* ctl_doc_templates scans <select name=lbCertTemplate ...> for option values
 * E;<name>;...;<display> (§1 #2). false if the page has no such list. */
static bool ctl_doc_templates(const uint8_t *body, size_t len, const char *want, ctl_doc_tpl_t *r) {
    ctl_cur_t sel, end;
    memset(r, 0, sizeof(*r));
    ctl_cur_init(&sel, body, len);
    if (!ctl_cur_find(&sel, "lbCertTemplate", true))
        return false;
    end = sel;
    if (ctl_cur_find(&end, "</select", true))
        ctl_cur_init(&sel, sel.data, sel.len - end.len);
    while (ctl_cur_find(&sel, "value=", true) && ctl_cur_skip(&sel, strlen("value="))) {
        bool quoted = ctl_cur_starts(&sel, "\"", false);
        if (quoted)
            ctl_cur_skip(&sel, 1);
        ctl_cur_t stop = sel;
        if (!ctl_cur_find(&stop, quoted ? "\"" : ">", false))
            break;
        ctl_cur_t val;
        ctl_cur_init(&val, sel.data, sel.len - stop.len);
        sel = stop;
        r->options++;
        if (ctl_doc_field_is(val, "X")) {
            r->none = true;
            continue;
        }
        ctl_cur_t name, disp;
        if (!ctl_doc_field(val, 1, &name))
            continue;
        size_t nl = strlen(r->names);
        if (nl + name.len + 3 < sizeof(r->names))
            snprintf(r->names + nl, sizeof(r->names) - nl, "%s%.*s", nl ? ", " : "", (int)name.len,
                     (const char *)name.data);
        if (ctl_doc_field_is(name, want))
            r->found = true;
        else if (ctl_doc_field(val, 13, &disp) && ctl_doc_field_is(disp, want)) {
            r->by_display = true;
            snprintf(r->real_name, sizeof(r->real_name), "%.*s", (int)name.len,
                     (const char *)name.data);
        }
    }
    return true;
}

static void ctl_doc_template(ctl_doc_t *d, ctl_conn_t *c) {
    const ctl_config_t *cfg = d->cfg;
    ctl_up_t *res = calloc(1, sizeof(*res));
    const uint8_t *body = NULL;
    size_t len = 0;
    char line[700];
    ctl_doc_tpl_t r;
    if (res == NULL) {
        fprintf(d->out, "PROBLEM template: out of memory\n");
        d->problems++;
        return;
    }
    const char *want = ctl_str_set(cfg->template_name) ? cfg->template_name : "";
    if (ctl_certsrv_get(c, "certrqxt.asp", &body, &len, res) != CTL_UP_ISSUED) {
        ctl_doc_problem_res(d, "template", res);
    } else if (!ctl_doc_templates(body, len, want, &r) || (r.options == 0)) {
        snprintf(line, sizeof(line), "cannot tell: certrqxt.asp has no template list (standalone CA "
                 "or another page layout); template %s is checked at the first request", want);
        ctl_doc_ok(d, "template", line);
    } else if (r.found) {
        snprintf(line, sizeof(line), "%s is offered to %s by certrqxt.asp", want,
                 cfg->auth_kind == CTL_AUTH_NONE ? "(anonymous)" : cfg->user);
        ctl_doc_ok(d, "template", line);
    } else if (r.by_display) {
        snprintf(line, sizeof(line), "\"%s\" is the display name of template %s; the request needs "
                 "the name", want, r.real_name);
        ctl_doc_problem(d, "template", line, CTL_D_TEMPLATE);
    } else if (r.none) {
        snprintf(line, sizeof(line), "certrqxt.asp offers no template at all to %s (template %s)",
                 cfg->user ? cfg->user : "(anonymous)", want);
        ctl_doc_problem(d, "template", line, CTL_D_PERMISSION);
    } else {
        snprintf(line, sizeof(line), "template %s is not among those certrqxt.asp offers to %s (%s): "
                 "unknown, not published on this CA, or no Enroll permission", want,
                 cfg->user ? cfg->user : "(anonymous)", r.names);
        ctl_doc_problem2(d, "template", line, CTL_D_TEMPLATE, CTL_D_PERMISSION);
    }
    free(res);
}

int ctl_doctor(const ctl_config_t *cfg, FILE *out) {
    ctl_doc_t d = {.cfg = cfg, .out = out};
    ctl_config_t basic_cfg;
    unsigned long offered = 0;
    if (!ctl_doc_config(&d) || !ctl_doc_dns(&d) || !ctl_doc_tcp(&d) || !ctl_doc_tls(&d, &offered))
        goto out;
    ctl_conn_t *c = ctl_doc_auth(&d, offered, &basic_cfg);
    if (c == NULL)
        goto out;
    char line[300];
    snprintf(line, sizeof(line), "web enrollment welcome page answered (HTTP 200), %lu request(s) on "
             "this connection", ctl_conn_requests(c));
    ctl_doc_ok(&d, "pages", line);
    ctl_doc_ca(&d, c);
    ctl_doc_template(&d, c);
    ctl_conn_free(c);
out:
    fflush(out);
    return d.problems;
}
