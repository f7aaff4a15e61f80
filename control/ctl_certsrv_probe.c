/* ctl_certsrv_probe: a test driver of the certsrv connector (ctl_certsrv.h)
 * for tests/certsrv/test_ctl_certsrv.py; not installed. It fills a
 * ctl_config_t from its flags by hand (no ctl_config.c, no Redis), makes one
 * ctl_conn_t and runs the actions given after the flags, in order, on that
 * one connection, printing one JSON line per call on stdout:
 *
 *   login              ctl_certsrv_login
 *   submit             ctl_certsrv_submit of --csr
 *   fetch[:ID]         ctl_certsrv_fetch of ID (default: the last id seen), key checked
 *                      against --csr; --cert-out FILE receives the DER
 *   chain | chain-at:K ctl_certsrv_chain / ctl_certsrv_chain_at
 *   page:NAME          ctl_certsrv_get of /certsrv/NAME
 *   sleep:MS           pause (idle connection tests)
 *   doctor             ctl_doctor (its lines, then one JSON line with the problem count)
 *
 * Exit status: 0, or 1 if doctor found problems, 2 on a usage error.
 * The password comes from --password-file (never a flag). Thread: main only. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "control/ctl_certsrv.h"
#include "dataplane/dp_log.h"

#define PROBE_CSR_MAX (64 * 1024)

typedef struct {
    ctl_config_t cfg;
    const char *csr_path;
    const char *cert_out;
    uint8_t csr[PROBE_CSR_MAX];
    size_t csr_len;
    bool has_last_id;
    uint32_t last_id;
} probe_t;

static void probe_usage(FILE *f) {
    fprintf(f, "usage: ctl_certsrv_probe --url URL [--resolve HOST:PORT:ADDR[,...]] [--ca-bundle PEM]\n"
               "         [--auth basic|ntlm|negotiate|none] [--user USER] [--password-file FILE]\n"
               "         [--template NAME] [--user-agent UA] [--csr FILE] [--cert-out FILE]\n"
               "         [--connect-timeout-ms N] [--login-timeout-ms N] [--submit-timeout-ms N]\n"
               "         [--fetch-timeout-ms N] [--max-conn-age-s N] [--log-level L]\n"
               "         ACTION... (login submit fetch[:ID] chain chain-at:K page:NAME sleep:MS doctor)\n");
}

/* probe_json_str writes `s` as a JSON string. */
static void probe_json_str(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void probe_print(const char *call, const ctl_conn_t *c, const ctl_up_t *res,
                        const ctl_chain_t *ch) {
    printf("{\"call\": ");
    probe_json_str(call);
    printf(", \"kind\": \"%s\", \"diag\": \"%s\", \"retryable\": %s", ctl_up_kind_str(res->kind),
           ctl_diag_name(res->diag), ctl_diag_retryable(res->diag) ? "true" : "false");
    if (res->has_req_id)
        printf(", \"req_id\": %u", (unsigned)res->req_id);
    else
        printf(", \"req_id\": null");
    printf(", \"hresult\": \"0x%08X\", \"http\": %ld, \"curl\": %d, \"verify\": %ld, \"requests\": %u, "
           "\"conn_requests\": %lu, \"der_len\": %zu",
           (unsigned)res->hresult, res->http_status, res->curl_code, res->verify_result,
           res->requests, ctl_conn_requests(c), res->der_len);
    if (ch)
        printf(", \"renewal\": %u, \"chain_len\": %zu, \"ca_cert_len\": %zu", (unsigned)ch->renewal,
               ch->chain_len, ch->ca_cert_len);
    printf(", \"cause\": ");
    probe_json_str(res->cause);
    printf("}\n");
    fflush(stdout);
}

/* probe_read_file reads up to `cap` bytes; returns the length or -1. */
static long probe_read_file(const char *path, uint8_t *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    return more ? -1 : (long)n;
}

/* probe_load_csr: PEM (any label) is decoded; anything else is sent as is
 * (the garbage-CSR tests rely on that). */
static bool probe_load_csr(probe_t *p) {
    static uint8_t raw[PROBE_CSR_MAX];
    long n = probe_read_file(p->csr_path, raw, sizeof(raw));
    if (n < 0)
        return false;
    if (memmem(raw, (size_t)n, "-----BEGIN ", 11) != NULL) {
        BIO *bio = BIO_new_mem_buf(raw, (int)n);
        char *name = NULL, *hdr = NULL;
        unsigned char *der = NULL;
        long dl = 0;
        bool ok = bio && PEM_read_bio(bio, &name, &hdr, &der, &dl) == 1 && dl > 0 &&
                  (size_t)dl <= sizeof(p->csr);
        if (ok) {
            memcpy(p->csr, der, (size_t)dl);
            p->csr_len = (size_t)dl;
        }
        OPENSSL_free(name);
        OPENSSL_free(hdr);
        OPENSSL_free(der);
        BIO_free(bio);
        return ok;
    }
    memcpy(p->csr, raw, (size_t)n);
    p->csr_len = (size_t)n;
    return true;
}

static char *probe_password(const char *path) {
    static char buf[1024];
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    if (fgets(buf, sizeof(buf), f) == NULL)
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

static bool probe_u32(const char *s, uint32_t *out) {
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* probe_flags parses the flags; returns the index of the first action or -1. */
static int probe_flags(probe_t *p, int argc, char **argv) {
    ctl_config_t *cfg = &p->cfg;
    cfg->auth = "ntlm";
    cfg->auth_kind = CTL_AUTH_NTLM;
    cfg->connect_timeout_ms = 5000;
    cfg->login_timeout_ms = 10000;
    cfg->submit_timeout_ms = 60000;
    cfg->fetch_timeout_ms = 30000;
    cfg->max_conn_age_s = 100;
    cfg->template_name = "WebServer";
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *f = argv[i] + 2;
        if (i + 1 >= argc)
            return -1;
        const char *v = argv[++i];
        uint32_t *num = NULL;
        if (!strcmp(f, "url")) cfg->certsrv_url = (char *)v;
        else if (!strcmp(f, "resolve")) cfg->resolve = (char *)v;
        else if (!strcmp(f, "ca-bundle")) cfg->ca_bundle = (char *)v;
        else if (!strcmp(f, "user")) cfg->user = (char *)v;
        else if (!strcmp(f, "template")) cfg->template_name = (char *)v;
        else if (!strcmp(f, "user-agent")) cfg->user_agent = (char *)v;
        else if (!strcmp(f, "csr")) p->csr_path = v;
        else if (!strcmp(f, "cert-out")) p->cert_out = v;
        else if (!strcmp(f, "connect-timeout-ms")) num = &cfg->connect_timeout_ms;
        else if (!strcmp(f, "login-timeout-ms")) num = &cfg->login_timeout_ms;
        else if (!strcmp(f, "submit-timeout-ms")) num = &cfg->submit_timeout_ms;
        else if (!strcmp(f, "fetch-timeout-ms")) num = &cfg->fetch_timeout_ms;
        else if (!strcmp(f, "max-conn-age-s")) num = &cfg->max_conn_age_s;
        else if (!strcmp(f, "log-level")) {
            int l = dp_log_parse_level(v);
            if (l < 0)
                return -1;
            dp_log_set_level((dp_log_level_t)l);
        } else if (!strcmp(f, "password-file")) {
            cfg->password_file = (char *)v;
            cfg->password = probe_password(v);
        } else if (!strcmp(f, "auth")) {
            cfg->auth = (char *)v;
            if (!strcasecmp(v, "basic")) cfg->auth_kind = CTL_AUTH_BASIC;
            else if (!strcasecmp(v, "ntlm")) cfg->auth_kind = CTL_AUTH_NTLM;
            else if (!strcasecmp(v, "negotiate")) cfg->auth_kind = CTL_AUTH_NEGOTIATE;
            else if (!strcasecmp(v, "none")) cfg->auth_kind = CTL_AUTH_NONE;
            else return -1;
        } else
            return -1;
        if (num && !probe_u32(v, num))
            return -1;
    }
    return i < argc ? i : -1;
}

static void probe_write_cert(const probe_t *p, const ctl_up_t *res) {
    if (p->cert_out == NULL || res->der_len == 0)
        return;
    FILE *f = fopen(p->cert_out, "wb");
    if (f) {
        fwrite(res->der, 1, res->der_len, f);
        fclose(f);
    }
}

/* probe_action runs one action; returns false on a usage error. */
static bool probe_action(probe_t *p, ctl_conn_t *c, const char *a, ctl_up_t *res, ctl_chain_t *ch,
                         int *problems) {
    uint32_t n = 0;
    if (!strcmp(a, "login")) {
        ctl_certsrv_login(c, res);
        probe_print(a, c, res, NULL);
    } else if (!strcmp(a, "submit")) {
        ctl_certsrv_submit(c, p->csr, p->csr_len, res);
        probe_print(a, c, res, NULL);
    } else if (!strncmp(a, "fetch", 5)) {
        if (a[5] == ':') {
            if (!probe_u32(a + 6, &n))
                return false;
        } else if (a[5] == '\0' && p->has_last_id) {
            n = p->last_id;
        } else {
            return false;
        }
        ctl_certsrv_fetch(c, n, p->csr, p->csr_len, res);
        probe_write_cert(p, res);
        probe_print(a, c, res, NULL);
    } else if (!strcmp(a, "chain")) {
        ctl_certsrv_chain(c, ch, res);
        probe_print(a, c, res, ch);
    } else if (!strncmp(a, "chain-at:", 9)) {
        if (!probe_u32(a + 9, &n))
            return false;
        ctl_certsrv_chain_at(c, n, ch, res);
        probe_print(a, c, res, ch);
    } else if (!strncmp(a, "page:", 5)) {
        const uint8_t *body;
        size_t len;
        ctl_certsrv_get(c, a + 5, &body, &len, res);
        probe_print(a, c, res, NULL);
    } else if (!strncmp(a, "sleep:", 6)) {
        if (!probe_u32(a + 6, &n))
            return false;
        struct timespec ts = {.tv_sec = n / 1000, .tv_nsec = (long)(n % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        return true;
    } else if (!strcmp(a, "doctor")) {
        int np = ctl_doctor(&p->cfg, stdout);
        printf("{\"call\": \"doctor\", \"problems\": %d}\n", np);
        fflush(stdout);
        *problems += np;
        return true;
    } else {
        return false;
    }
    if (res->has_req_id) {
        p->has_last_id = true;
        p->last_id = res->req_id;
    }
    return true;
}

int main(int argc, char **argv) {
    static probe_t p;
    int first = probe_flags(&p, argc, argv);
    if (first < 0 || p.cfg.certsrv_url == NULL) {
        probe_usage(stderr);
        return 2;
    }
    if (p.csr_path && !probe_load_csr(&p)) {
        fprintf(stderr, "ctl_certsrv_probe: cannot read CSR %s\n", p.csr_path);
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 2;
    int rc = 0, problems = 0;
    ctl_conn_t *c = ctl_conn_new(&p.cfg);
    ctl_up_t *res = calloc(1, sizeof(*res));
    ctl_chain_t *ch = calloc(1, sizeof(*ch));
    if (c == NULL || res == NULL || ch == NULL) {
        rc = 2;
        goto out;
    }
    for (int i = first; i < argc; i++) {
        if (!probe_action(&p, c, argv[i], res, ch, &problems)) {
            fprintf(stderr, "ctl_certsrv_probe: bad action %s\n", argv[i]);
            probe_usage(stderr);
            rc = 2;
            goto out;
        }
    }
    rc = problems ? 1 : 0;
out:
    free(ch);
    free(res);
    ctl_conn_free(c);
    curl_global_cleanup();
    return rc;
}
