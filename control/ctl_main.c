/* ctl_main: the stampede-control program. `run` (the default) starts the
 * online-CA workers and the chain thread (ctl_work.h) and waits for
 * SIGTERM/SIGINT; `doctor` checks the upstream once (ctl_doctor) and exits.
 * Signals are blocked in every thread and taken by main with sigtimedwait,
 * so no handler runs concurrently with anything; the only state shared
 * between threads is the ctl_rt_t built here.
 * Exit status: 0 done, 1 doctor found problems or run could not start,
 * 2 usage or configuration error. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/ctl_certsrv.h"
#include "control/ctl_config.h"
#include "control/ctl_work.h"
#include "dataplane/dp_log.h"

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_SUMMARY_S 60

/* check_run: the settings `run` cannot work without; false with `why`. */
static bool check_run(const ctl_config_t *cfg, char *why, size_t why_len) {
    if (!cfg->certsrv_url[0])
        snprintf(why, why_len, "certsrv_url is required (e.g. https://adcs.example.com/certsrv)");
    else if (!cfg->template_name[0])
        snprintf(why, why_len, "template is required: the certificate template's name (cn), not its display name");
    else if (cfg->auth_kind != CTL_AUTH_NONE && !cfg->user[0])
        snprintf(why, why_len, "user is required with auth = %s", cfg->auth);
    else if (cfg->auth_kind != CTL_AUTH_NONE && cfg->auth_kind != CTL_AUTH_NEGOTIATE && !cfg->password)
        snprintf(why, why_len, "password_file is required with auth = %s", cfg->auth);
    else if (!cfg->redis[0] && !cfg->data_dir[0])
        snprintf(why, why_len, "set redis (or data_dir, for stampeded's embedded Redis)");
    else
        return true;
    return false;
}

/* run_workers starts the threads, waits for a signal (logging the summary
 * every CTL_SUMMARY_S), stops and joins them. */
static int run_workers(ctl_rt_t *rt, const sigset_t *sigs) {
    const ctl_config_t *cfg = rt->cfg;
    ctl_worker_t *workers = calloc(cfg->pool_size, sizeof(*workers));
    pthread_t chain;
    if (!workers) {
        DP_ERR("out of memory");
        return CTL_EXIT_FAIL;
    }
    unsigned started = 0;
    for (; started < cfg->pool_size; started++) {
        workers[started].rt = rt;
        workers[started].index = started;
        if (pthread_create(&workers[started].thread, NULL, ctl_work_worker_main, &workers[started]) != 0) break;
    }
    bool chain_up = started == cfg->pool_size && pthread_create(&chain, NULL, ctl_work_chain_main, rt) == 0;
    int code = CTL_EXIT_OK;
    if (!chain_up) {
        DP_ERR("cannot start threads (%u of %u workers started)", started, cfg->pool_size);
        code = CTL_EXIT_FAIL;
    } else {
        fprintf(stderr, "stampede-control %s ready: upstream %s, template %s, %u workers, redis %s, consumer %s\n",
                STAMPEDE_VERSION, cfg->certsrv_url, cfg->template_name, cfg->pool_size, rt->redis_str,
                rt->consumer);
        time_t next_summary = time(NULL) + CTL_SUMMARY_S;
        for (;;) {
            struct timespec tick = {1, 0};
            int sig = sigtimedwait(sigs, NULL, &tick);
            if (sig == SIGTERM || sig == SIGINT) {
                DP_INFO("signal %d: stopping (calls in flight finish first)", sig);
                break;
            }
            if (time(NULL) >= next_summary) {
                ctl_work_log_summary(rt, "every 60 s");
                next_summary = time(NULL) + CTL_SUMMARY_S;
            }
        }
    }
    atomic_store(&rt->stop, true);
    for (unsigned i = 0; i < started; i++) pthread_join(workers[i].thread, NULL);
    if (chain_up) pthread_join(chain, NULL);
    free(workers);
    ctl_work_log_summary(rt, "at exit");
    return code;
}

static int cmd_run(const ctl_config_t *cfg) {
    char why[512];
    if (!check_run(cfg, why, sizeof(why))) {
        fprintf(stderr, "stampede-control: %s (see --help)\n", why);
        return CTL_EXIT_USAGE;
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread started later inherits it */
    signal(SIGPIPE, SIG_IGN);
    ctl_rt_t *rt = calloc(1, sizeof(*rt));
    if (!rt) return CTL_EXIT_FAIL;
    ctl_work_err_t e = ctl_work_init(rt, cfg, why, sizeof(why));
    int code;
    if (e != CTL_W_OK) {
        DP_ERR("cannot start: %s", why);
        code = e == CTL_W_E_CONFIG ? CTL_EXIT_USAGE : CTL_EXIT_FAIL;
    } else {
        code = run_workers(rt, &sigs);
    }
    free(rt);
    return code;
}

int main(int argc, char **argv) {
    ctl_config_t cfg;
    const char *rest[2];
    size_t n_rest = 0;
    char why[512];
    ctl_cfg_err_t ce = ctl_config_load(&cfg, argc, argv, stdout, rest, 2, &n_rest, why, sizeof(why));
    if (ce == CTL_CFG_EXIT_OK) {
        ctl_config_free(&cfg);
        return CTL_EXIT_OK;
    }
    const char *cmd = n_rest ? rest[0] : "run";
    if (ce == CTL_CFG_OK && (n_rest > 1 || (strcmp(cmd, "run") != 0 && strcmp(cmd, "doctor") != 0))) {
        snprintf(why, sizeof(why), "unknown command '%s' (run or doctor; see --help)", n_rest > 1 ? rest[1] : cmd);
        ce = CTL_CFG_E_USAGE;
    }
    if (ce != CTL_CFG_OK) {
        fprintf(stderr, "stampede-control: %s\n", why);
        ctl_config_free(&cfg);
        return CTL_EXIT_USAGE;
    }
    dp_log_set_level((dp_log_level_t)dp_log_parse_level(cfg.log_level));
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "stampede-control: libcurl initialisation failed\n");
        ctl_config_free(&cfg);
        return CTL_EXIT_FAIL;
    }
    int code;
    if (!strcmp(cmd, "doctor")) {
        int problems = ctl_doctor(&cfg, stdout);
        fflush(stdout);
        code = problems == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    } else {
        code = cmd_run(&cfg);
    }
    curl_global_cleanup();
    ctl_config_free(&cfg);
    return code;
}
