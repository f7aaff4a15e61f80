/* stampeded: the enrollment daemon. main() builds the one runtime struct
 * (configuration, CA material, signing pool, TLS context, EST context,
 * polling cores), starts the threads, then waits for signals on the main
 * thread (sigwaitinfo: no handler, no global). SIGTERM/SIGINT stop accepting
 * connections, let in-flight requests finish within drain_timeout, and exit 0.
 * Thread: main thread only. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urcu/uatomic.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>


#include "crypto/cx_ca.h"
#include "crypto/cx_pool.h"
#include "dataplane/dp_config.h"
#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"
#include "dataplane/dp_tls.h"
#include "ra/ra_capf.h"
#include "ra/ra_users.h"

static int dp_fail(const char *what, const char *why) {
    DP_ERR("%s: %s", what, why);
    return 1;
}

/* dp_data_dir creates the data directory (mode 0700) if needed. */
static int dp_data_dir(const char *dir, char *why, size_t why_len) {
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(path, 0755) && errno != EEXIST) goto fail;
        *p = '/';
    }
    if (mkdir(path, 0700) && errno != EEXIST) goto fail;
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) goto fail;
    if (st.st_mode & 077) {
        if (chmod(path, 0700)) goto fail;
        DP_WARN("data directory %s was accessible to other users; set to 0700", path);
    }
    return 0;
fail:
    snprintf(why, why_len, "cannot create data directory %.300s: %s", path, strerror(errno));
    return -1;
}

static ra_users_t *dp_users(dp_runtime_t *rt, unsigned signers, char *why, size_t why_len) {
    char path[4096], pw[4096];
    const char *p = rt->cfg.est_users;
    if (!p[0]) {
        snprintf(path, sizeof(path), "%s/est-users", rt->cfg.data_dir);
        snprintf(pw, sizeof(pw), "%s/est-initial-password", rt->cfg.data_dir);
        if (access(path, F_OK) != 0) {
            if (ra_users_create_initial(path, pw, "est", why, why_len) != RA_OK) return NULL;
            DP_INFO("created EST user 'est' in %s; its password is in %s", path, pw);
        }
        p = path;
    }
    return ra_users_load(p, signers, why, why_len);
}

static int dp_crypto(dp_runtime_t *rt, char *why, size_t why_len) {
    cx_ca_config_t cc = {
        .ca_name = rt->cfg.ca_name,
        .org = rt->cfg.org[0] ? rt->cfg.org : NULL,
        .ca_validity_days = rt->cfg.ca_days,
        .tls_validity_days = rt->cfg.tls_days,
        .tls_names = rt->cfg.tls_names,
    };
    if (cx_keytype_parse(rt->cfg.ca_key, &cc.ca_key_type) ||
        cx_keytype_parse(rt->cfg.tls_key, &cc.tls_key_type)) {
        snprintf(why, why_len, "ca_key/tls_key: use ec256, ec384, rsa2048 or rsa3072");
        return -1;
    }
    cx_err_t e = cx_ca_open(&rt->ca, rt->cfg.data_dir, &cc, why, why_len);
    if (e) return -1;
    if (rt->ca.created_ca) DP_INFO("generated local CA (%s) in %s/ca.crt", rt->cfg.ca_key, rt->cfg.data_dir);
    if (rt->ca.created_tls) DP_INFO("issued TLS server certificate %s/tls.crt for %s", rt->cfg.data_dir, rt->cfg.tls_names);
    rt->est.issuer = rt->ca.issuer;
    rt->est.policy = (cx_leaf_policy_t){
        .validity_days = rt->cfg.leaf_days,
        .backdate_s = rt->cfg.leaf_backdate,
        .server_auth = rt->cfg.leaf_server_auth,
        .copy_san = rt->cfg.leaf_copy_san,
    };
    rt->est.max_body = rt->cfg.max_body;
    return est_ctx_init(&rt->est, rt->ca.ca_der, rt->ca.ca_der_len, rt->cfg.csrattrs, why, why_len);
}

/* dp_capf_check_cert checks the CA certificate that the CAPF listener
 * presents against what phones expect of a CAPF certificate
 * (capf-protocol.md §3.4, §6.5 F5) and warns, naming the setting to change. */
static void dp_capf_check_cert(const dp_runtime_t *rt) {
    const uint8_t *p = rt->ca.ca_der;
    X509 *x = d2i_X509(NULL, &p, (long)rt->ca.ca_der_len);
    if (!x) return;
    uint32_t ku = X509_get_key_usage(x);
    if (!(X509_get_extension_flags(x) & EXFLAG_CA) || X509_get_pathlen(x) != 0)
        DP_WARN("CAPF certificate (the CA, %s/ca.crt) is not CA:TRUE pathlen:0: CUCM 14SU2-class phones refuse it",
                rt->cfg.data_dir);
    if (!(ku & KU_DIGITAL_SIGNATURE) || !(ku & KU_KEY_CERT_SIGN))
        DP_WARN("CAPF certificate lacks keyUsage digitalSignature + keyCertSign: CUCM 14SU2-class phones refuse it");
    char cn[128] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    if (strncmp(cn, "CAPF-", 5) != 0)
        DP_WARN("CAPF certificate CN '%s' does not start with 'CAPF-' as phones' ITL entries expect "
                "(a new CA with ca_name = CAPF-<8 hex digits>, or capf_tls_cert = tls)", cn);
    EVP_PKEY *k = X509_get_pubkey(x);
    if (k && (EVP_PKEY_id(k) != EVP_PKEY_RSA || EVP_PKEY_bits(k) != 2048))
        DP_WARN("CAPF certificate key is %s-%d: phones expect RSA-2048 (FIPS phones refuse less, ITLs take at most "
                "2048; ca_key = rsa2048 for a new CA)", EVP_PKEY_id(k) == EVP_PKEY_RSA ? "RSA" : "EC", EVP_PKEY_bits(k));
    EVP_PKEY_free(k);
    X509_free(x);
}

/* dp_capf_store builds a trust store of our CA plus the PEM bundle `file`
 * (may be ""); with `with_ca` false only the bundle (NULL if it is empty).
 * Returns 0 or -1 with a cause naming the setting. */
static int dp_capf_store(X509_STORE **out, const dp_runtime_t *rt, bool with_ca, const char *file,
                         const char *setting, char *why, size_t why_len) {
    *out = NULL;
    if (!with_ca && !file[0]) return 0;
    X509_STORE *st = X509_STORE_new();
    if (!st) {
        snprintf(why, why_len, "out of memory building the %s trust store", setting);
        return -1;
    }
    if (dp_tls_store_fill(st, with_ca ? &rt->ca : NULL, file, setting, why, why_len)) {
        X509_STORE_free(st);
        return -1;
    }
    *out = st;
    return 0;
}

/* dp_capf_trust prepares authentication by existing certificate: LSC
 * issuers (our CA + capf_lsc_issuers) and manufacturer CAs (capf_mic_ca). */
static int dp_capf_trust(dp_runtime_t *rt, char *why, size_t why_len) {
    const dp_config_t *cfg = &rt->cfg;
    capf_certauth_ctx_t *a = &rt->capf_certauth;
    memset(a, 0, sizeof(*a));
    if (dp_capf_store(&a->lsc_trust, rt, true, cfg->capf_lsc_issuers, "capf_lsc_issuers", why, why_len) ||
        dp_capf_store(&a->mic_trust, rt, false, cfg->capf_mic_ca, "capf_mic_ca", why, why_len))
        return -1;
    a->accept_expired_mic = cfg->capf_accept_expired_mic;
    a->lsc_cucm_cn = rt->capf_lsc.subject == CX_LSC_SUBJECT_CUCM;
    return 0;
}

/* dp_node_setup names this run: INSTANCE:BOOT. Session tokens (the owners
 * of CAPF device locks) are INSTANCE:BOOT:ID, and online-mode notices come
 * on stp:done:INSTANCE:BOOT:CORE. INSTANCE (host and data directory)
 * survives a restart, so the next run can release the locks a killed run
 * left (dp_capf_release_stale). */
static void dp_node_setup(dp_runtime_t *rt) {
    uint8_t rnd[8], dir[SHA256_DIGEST_LENGTH];
    RAND_bytes(rnd, sizeof(rnd));
    char host[48] = "node", real[4096];
    gethostname(host, sizeof(host) - 1);
    host[strcspn(host, " :/")] = 0;
    const char *d = realpath(rt->cfg.data_dir, real) ? real : rt->cfg.data_dir;
    SHA256((const uint8_t *)d, strlen(d), dir);
    snprintf(rt->capf_node, sizeof(rt->capf_node), "%s/%02x%02x%02x%02x:%02x%02x%02x%02x", host, dir[0], dir[1],
             dir[2], dir[3], rnd[0], rnd[1], rnd[2], rnd[3]);
    rt->capf_id_base = (uint32_t)rnd[4] << 24 | (uint32_t)rnd[5] << 16 | (uint32_t)rnd[6] << 8 | rnd[7];
}

/* dp_mode_setup reads ca_mode: online needs the registry (the pending
 * records and the stp:upstream stream are the hand-over to
 * stampede-control). */
static int dp_mode_setup(dp_runtime_t *rt, char *why, size_t why_len) {
    const dp_config_t *cfg = &rt->cfg;
    if (!strcmp(cfg->ca_mode, "online")) {
        if (!rt->est.registry) {
            snprintf(why, why_len, "ca_mode = online needs Redis (redis = off records nothing)");
            return -1;
        }
        rt->est.online = true;
        rt->est.retry_after = cfg->online_retry_after;
        DP_INFO("ca_mode online: enrollments are forwarded to the upstream CA through stampede-control "
                "(stp:upstream); EST waits up to %u ms, then 202 + Retry-After %u",
                cfg->online_wait_ms, cfg->online_retry_after);
    } else if (strcmp(cfg->ca_mode, "local") != 0) {
        snprintf(why, why_len, "ca_mode: '%s' is not 'local' or 'online'", cfg->ca_mode);
        return -1;
    }
    return 0;
}

/* dp_capf_setup prepares the CAPF listener's settings and TLS context.
 * CAPF needs the device registry: with redis = off it is not served. */
static int dp_capf_setup(dp_runtime_t *rt, char *why, size_t why_len) {
    const dp_config_t *cfg = &rt->cfg;
    if (!cfg->capf_listen[0]) return 0;
    if (!rt->est.registry) {
        DP_WARN("redis = off: CAPF needs the device registry; not listening on %s", cfg->capf_listen);
        rt->cfg.capf_listen[0] = 0;
        return 0;
    }
    capf_conf_default(&rt->capf);
    rt->capf.hello_auth_type = cfg->capf_hello_auth_type;
    rt->capf.strict_version = cfg->capf_strict_version;
    rt->capf.device_name_max = cfg->capf_device_name_max;
    rt->capf.fetch_delete = cfg->capf_fetch_delete;
    rt->capf.status_reply = cfg->capf_status_reply;
    rt->capf_spki.rsa_min_bits = (uint16_t)cfg->capf_rsa_min_bits;
    cx_lsc_policy_default(&rt->capf_lsc);
    rt->capf_lsc.validity_days = cfg->capf_lsc_days;
    rt->capf_lsc.backdate_s = cfg->leaf_backdate;
    if (!strcmp(cfg->capf_lsc_subject, "cucm")) {
        rt->capf_lsc.subject = CX_LSC_SUBJECT_CUCM;
    } else if (strcmp(cfg->capf_lsc_subject, "device") != 0) {
        snprintf(why, why_len, "capf_lsc_subject: '%s' is not 'device' or 'cucm'", cfg->capf_lsc_subject);
        return -1;
    }
    if (cx_lsc_policy_check(&rt->capf_lsc) != CX_OK) {
        snprintf(why, why_len, "capf_lsc_days / leaf_backdate out of range for an LSC");
        return -1;
    }
    ra_capf_script_sha(rt->capf_sha);
    if (dp_capf_trust(rt, why, why_len)) return -1;
    if (!strcmp(cfg->capf_tls_cert, "ca")) {
        rt->capf_tls_ca = true;
        dp_capf_check_cert(rt);
    } else if (strcmp(cfg->capf_tls_cert, "tls") != 0) {
        snprintf(why, why_len, "capf_tls_cert: '%s' is not 'ca' or 'tls'", cfg->capf_tls_cert);
        return -1;
    }
    const uint8_t *der = rt->capf_tls_ca ? rt->ca.ca_der : rt->ca.tls_der;
    size_t len = rt->capf_tls_ca ? rt->ca.ca_der_len : rt->ca.tls_der_len;
    if (!(rt->capf_tls = dp_tls_ctx_new(cfg, &rt->ca, der, len, false, why, why_len))) return -1;
    return 0;
}

/* dp_capf_release_stale frees the device locks an earlier run of this
 * instance left behind (it was killed mid-session), so those phones can
 * retry at once. Start-up only; a Redis that is not reachable yet only
 * costs the locks' TTL. */
static void dp_capf_release_stale(dp_runtime_t *rt) {
    if (!rt->cfg.capf_listen[0]) return;
    char instance[96], current[100], why[256];
    size_t n = strcspn(rt->capf_node, ":");
    snprintf(instance, sizeof(instance), "%.*s:", (int)n, rt->capf_node);
    snprintf(current, sizeof(current), "%s:", rt->capf_node);
    redisContext *c = NULL;
    unsigned released = 0;
    if (ra_redis_connect(&c, &rt->redis_addr, 2000, why, sizeof(why)) != RA_OK ||
        ra_capf_release_stale(c, instance, current, &released, why, sizeof(why)) != RA_OK)
        DP_WARN("CAPF: could not release device locks of an earlier run: %s", why);
    else if (released)
        DP_INFO("CAPF: released %u device lock(s) left by an earlier run of this instance", released);
    if (c) redisFree(c);
}

static void dp_worker_init(unsigned id) {
    char name[16];
    snprintf(name, sizeof(name), "signer%u", id);
    dp_log_set_thread(name);
    pthread_setname_np(pthread_self(), name);
    dp_log_set_buffered(true);
}

static void dp_worker_idle(unsigned id) {
    (void)id;
    dp_log_flush();
}

static void dp_pidfile(const dp_runtime_t *rt, bool create) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/stampeded.pid", rt->cfg.data_dir);
    if (!create) {
        unlink(path);
        return;
    }
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
}

/* dp_wait_signals blocks until SIGTERM or SIGINT, then starts the drain. */
static void dp_wait_signals(dp_runtime_t *rt, const sigset_t *set) {
    for (;;) {
        siginfo_t si;
        int due = dp_redis_child_tick(&rt->redis);
        struct timespec ts = {due < 0 ? 3600 : due / 1000, due < 0 ? 0 : (long)(due % 1000) * 1000000};
        int sig = sigtimedwait(set, &si, &ts);
        if (sig == SIGCHLD) {
            dp_redis_child_reaped(&rt->redis);
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT) {
            DP_INFO("%s: draining in-flight requests (up to %us)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                    rt->cfg.drain_timeout);
            rt->stop_deadline_ms = dp_now_ms() + (int64_t)rt->cfg.drain_timeout * 1000;
            uatomic_set(&rt->stop, 1);
            return;
        }
        if (sig == SIGHUP) DP_INFO("SIGHUP: configuration reload is not supported yet; restart to apply changes");
        if (sig == SIGUSR1) uatomic_inc(&rt->stats_req); /* every core logs its counters */
    }
}

int main(int argc, char **argv) {
    static dp_runtime_t rt; /* the one runtime struct; static only for its size */
    char why[512] = "";
    dp_cfg_err_t ce = dp_config_load(&rt.cfg, argc, argv, why, sizeof(why));
    if (ce == DP_CFG_EXIT_OK) return 0;
    if (ce) {
        fprintf(stderr, "stampeded: %s\n", why);
        return 2;
    }
    int lvl = dp_log_parse_level(rt.cfg.log_level);
    if (lvl < 0) {
        fprintf(stderr, "stampeded: log_level: '%s' is not error, warn, info or debug\n", rt.cfg.log_level);
        return 2;
    }
    dp_log_set_level((dp_log_level_t)lvl);

    /* Block the signals before any thread starts; main collects them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    rt.num_cores = rt.cfg.cores ? rt.cfg.cores : (unsigned)(ncpu > 0 ? ncpu : 1);
    unsigned signers = rt.cfg.signers ? rt.cfg.signers : (unsigned)(ncpu > 0 ? ncpu : 1);
    if (!strcmp(rt.cfg.transport, "kernel")) rt.transport = &dp_kernel_transport;
    else if (!strcmp(rt.cfg.transport, "dpdk")) rt.transport = &dp_dpdk_transport;
    else {
        fprintf(stderr, "stampeded: transport: '%s' is not kernel or dpdk\n", rt.cfg.transport);
        return 2;
    }
    snprintf(rt.est_where, sizeof(rt.est_where), "%s", rt.cfg.est_listen);
    snprintf(rt.capf_where, sizeof(rt.capf_where), "%s", rt.cfg.capf_listen);

    if (dp_data_dir(rt.cfg.data_dir, why, sizeof(why))) return dp_fail("data directory", why);
    if (dp_crypto(&rt, why, sizeof(why))) return dp_fail("CA", why);
    if (!(rt.est.users = dp_users(&rt, signers, why, sizeof(why)))) return dp_fail("EST users", why);
    unsigned bound = rt.cfg.queue_bound / rt.num_cores;
    if (!(rt.pool = cx_pool_new(signers, rt.num_cores, bound ? bound : 1)))
        return dp_fail("signing pool", "out of memory");
    if (!(rt.est_tls = dp_tls_ctx_new(&rt.cfg, &rt.ca, rt.ca.tls_der, rt.ca.tls_der_len, true, why, sizeof(why))))
        return dp_fail("TLS", why);
    rt.est.trust = SSL_CTX_get_cert_store(rt.est_tls);
    rt.est.ca_der = rt.ca.ca_der;
    rt.est.ca_der_len = rt.ca.ca_der_len;
    rt.est.registry = strcmp(rt.cfg.redis, "off") != 0;
    if (rt.est.registry && rt.cfg.redis[0] && ra_redis_parse_url(&rt.redis_addr, rt.cfg.redis) != RA_OK)
        return dp_fail("redis", "not redis://host[:port][/db], unix:/path[?db=N] or an absolute socket path");
    if (rt.est.registry && !rt.cfg.redis[0] && ra_redis_addr_data_dir(&rt.redis_addr, rt.cfg.data_dir) != RA_OK)
        return dp_fail("redis", "data directory path too long for a unix socket");
    dp_node_setup(&rt);
    if (dp_mode_setup(&rt, why, sizeof(why))) return dp_fail("ca_mode", why);
    if (dp_capf_setup(&rt, why, sizeof(why))) return dp_fail("CAPF", why);
    if (posix_memalign((void **)&rt.cores, 64, rt.num_cores * sizeof(dp_core_t)))
        return dp_fail("cores", "out of memory");
    for (unsigned i = 0; i < rt.num_cores; i++)
        if (dp_core_init(&rt.cores[i], &rt, i)) return dp_fail("cores", "out of memory");
    if (rt.transport->setup(&rt, why, sizeof(why))) return dp_fail("transport", why);
    /* Last step that can fail before threads start: a failed start never
     * leaves a redis-server behind. */
    if (!rt.est.registry) {
        DP_WARN("redis = off: NOTHING IS RECORDED (no request records, no audit, no dedup, no registry "
                "devices); for benchmark comparisons only");
    } else if (!rt.cfg.redis[0]) {
        if (dp_redis_child_start(&rt.redis, rt.cfg.data_dir, rt.cfg.redis_fsync, why, sizeof(why)))
            return dp_fail("embedded Redis", why);
    } else {
        char addr[300];
        ra_redis_addr_str(&rt.redis_addr, addr, sizeof(addr));
        DP_INFO("Redis: external %s", addr);
    }
    dp_capf_release_stale(&rt);
    if (cx_pool_start(rt.pool, dp_worker_init, dp_worker_idle) != CX_OK) {
        dp_redis_child_stop(&rt.redis);
        return dp_fail("signing pool", "cannot start workers");
    }
    for (unsigned i = 0; i < rt.num_cores; i++)
        if (dp_core_start(&rt.cores[i])) {
            dp_redis_child_stop(&rt.redis);
            return dp_fail("cores", "cannot start thread");
        }
    /* The ready line means "enrollments work": wait (bounded) for every
     * core's registry connection. */
    for (int i = 0; rt.est.registry && i < 500 && uatomic_read(&rt.redis_cores_up) < (int)rt.num_cores; i++)
        usleep(10000);
    if (rt.est.registry && uatomic_read(&rt.redis_cores_up) < (int)rt.num_cores)
        DP_WARN("Redis not reachable yet: enrollments get 503 + Retry-After until it is");
    dp_pidfile(&rt, true);
    DP_INFO("stampeded %s: EST on https://%s/.well-known/est/ transport=%s cores=%u signers=%u users=%zu ca=%s/ca.crt",
            STAMPEDE_VERSION, rt.est_where, rt.transport->name, rt.num_cores, signers,
            ra_users_count(rt.est.users), rt.cfg.data_dir);
    if (rt.cfg.capf_listen[0])
        DP_INFO("CAPF on %s (TLS; session ids from %08x; node %s)", rt.capf_where, rt.capf_id_base,
                rt.capf_node);

    dp_wait_signals(&rt, &set);
    for (unsigned i = 0; i < rt.num_cores; i++) pthread_join(rt.cores[i].thread, NULL);
    if (rt.transport->cleanup) rt.transport->cleanup(&rt);
    cx_pool_free(rt.pool);
    dp_redis_child_stop(&rt.redis);
    for (unsigned i = 0; i < rt.num_cores; i++) {
        close(rt.cores[i].epfd);
        dp_core_cleanup(&rt.cores[i]);
    }
    free(rt.cores);
    SSL_CTX_free(rt.est_tls);
    SSL_CTX_free(rt.capf_tls);
    X509_STORE_free(rt.capf_certauth.lsc_trust);
    X509_STORE_free(rt.capf_certauth.mic_trust);
    ra_users_free(rt.est.users);
    est_ctx_cleanup(&rt.est);
    cx_ca_cleanup(&rt.ca);
    dp_pidfile(&rt, false);
    dp_config_free(&rt.cfg);
    DP_INFO("stopped");
    return 0;
}
