/* bench_provision: the devices of a `stampede-bench capf` run. CUCM gives a
 * device its LSC once and then resets its operation, so every install of
 * the run needs its own device with an Install operation pending. They are
 * provisioned the way an operator bulk-provisions phones: one CSV line per
 * device (install, null-string authentication, the run's key type, no
 * deadline) fed to `stampedectl import --replace`, which resets devices left
 * by an earlier run with the same names. Runs are timed and everything the
 * tool prints is kept, so the report can say what provisioning cost.
 * Why the real tool and not Redis writes of our own: the registry format is
 * stampedectl's to define; the bench must not encode it a second time.
 * Thread: main thread, before the timed phase (it blocks on the child). */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "benches/bench.h"

/* The header stampedectl import requires (ra/stampedectl.c RA_CTL_CSV_HEADER). */
#define PROVISION_CSV_HEADER "name,op,auth,auth_string,keys,by"

bench_err_t bench_provision_csv(FILE *f, const bench_capf_names_t *names, uint64_t count,
                                bench_keytype_t t) {
    char name[BENCH_CAPF_NAME_MAX + 1];
    fputs(PROVISION_CSV_HEADER "\n", f);
    for (uint64_t i = 1; i <= count; i++) {
        bench_capf_name(names, i, name);
        fprintf(f, "%s,install,null,,%s,\n", name, bench_keytype_str(t));
    }
    return fflush(f) == 0 && !ferror(f) ? BENCH_OK : BENCH_E_SETUP;
}

bench_err_t bench_provision_tool(char *out, size_t cap, char *why, size_t why_len) {
    const char *env = getenv("STAMPEDECTL");
    char exe[4096];
    if (env != NULL && env[0] != '\0') {
        snprintf(out, cap, "%s", env);
    } else {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        char *slash = n > 0 ? memrchr(exe, '/', (size_t)n) : NULL;
        if (slash == NULL) {
            snprintf(why, why_len, "cannot find this program's directory; set STAMPEDECTL");
            return BENCH_E_SETUP;
        }
        *slash = '\0';
        if (snprintf(out, cap, "%s/../ra/stampedectl", exe) >= (int)cap) {
            snprintf(why, why_len, "path of stampedectl too long; set STAMPEDECTL");
            return BENCH_E_SETUP;
        }
    }
    if (access(out, X_OK) != 0) {
        snprintf(why, why_len, "stampedectl not found at %.300s (%s); set STAMPEDECTL", out,
                 strerror(errno));
        return BENCH_E_SETUP;
    }
    return BENCH_OK;
}

/* provision_write_csv writes the devices of `plan` to a new temporary file
 * whose name goes to `path` (the template is overwritten). */
static bench_err_t provision_write_csv(char *path, size_t cap, const bench_cfg_t *cfg,
                                       const bench_capf_plan_t *plan, char *why,
                                       size_t why_len) {
    const char *tmp = getenv("TMPDIR");
    snprintf(path, cap, "%s/stampede-bench-devices-XXXXXX.csv", tmp && tmp[0] ? tmp : "/tmp");
    int fd = mkstemps(path, 4);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        snprintf(why, why_len, "cannot create %.300s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return BENCH_E_SETUP;
    }
    bench_err_t err = bench_provision_csv(f, &plan->names, cfg->count, plan->key_type);
    if (fclose(f) != 0 || err != BENCH_OK) {
        snprintf(why, why_len, "cannot write %.300s", path);
        unlink(path);
        return BENCH_E_SETUP;
    }
    return BENCH_OK;
}

/* provision_collect reads the tool's output (stdout and stderr) from `fd`
 * until it closes: the summary line, and the first other lines. */
static void provision_collect(bench_provision_t *out, int fd) {
    FILE *f = fdopen(fd, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    if (f == NULL) {
        close(fd);
        return;
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        line[strcspn(line, "\r\n")] = '\0';
        if (sscanf(line, "imported %lu, failed %lu", &out->imported, &out->failed) == 2) {
            out->summary_seen = true;
            continue;
        }
        if (out->num_messages < BENCH_ERRORS_SHOWN)
            snprintf(out->messages[out->num_messages], sizeof out->messages[0], "%s", line);
        out->num_messages++;
    }
    free(line);
    fclose(f);
}

/* provision_run runs the tool on `csv` and fills `out`. */
static bench_err_t provision_run(bench_provision_t *out, const bench_cfg_t *cfg,
                                 const char *csv, char *why, size_t why_len) {
    bool url = cfg->redis != NULL && strcmp(cfg->redis, "off") != 0;
    char *argv[] = {out->tool, url ? "--redis" : "--data-dir",
                    (char *)(url ? cfg->redis : cfg->data_dir), "import", "--replace",
                    (char *)csv, NULL};
    posix_spawn_file_actions_t fa;
    int pipefd[2], status;
    pid_t pid;

    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(why, why_len, "pipe: %s", strerror(errno));
        return BENCH_E_SETUP;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
    uint64_t t0 = bench_now_ns();
    int e = posix_spawn(&pid, out->tool, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    if (e != 0) {
        close(pipefd[0]);
        snprintf(why, why_len, "cannot run %.300s: %s", out->tool, strerror(e));
        return BENCH_E_SETUP;
    }
    provision_collect(out, pipefd[0]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    out->seconds = (double)(bench_now_ns() - t0) / 1e9;
    out->exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return BENCH_OK;
}

bench_err_t bench_provision(bench_provision_t *out, const bench_cfg_t *cfg,
                            const bench_capf_plan_t *plan, char *why, size_t why_len) {
    char csv[4096];
    bench_err_t err;
    memset(out, 0, sizeof *out);
    out->exit_code = -1;
    if ((err = bench_provision_tool(out->tool, sizeof out->tool, why, why_len)) != BENCH_OK ||
        (err = provision_write_csv(csv, sizeof csv, cfg, plan, why, why_len)) != BENCH_OK)
        return err;
    err = provision_run(out, cfg, csv, why, why_len);
    unlink(csv);
    if (err != BENCH_OK)
        return err;
    if (out->exit_code != 0 || !out->summary_seen || out->failed > 0 ||
        out->imported != cfg->count) {
        snprintf(why, why_len, "stampedectl import exited %d: imported %lu of %llu devices, "
                 "%lu failed%s%.200s", out->exit_code, out->imported,
                 (unsigned long long)cfg->count, out->failed,
                 out->num_messages ? "; first message: " : "",
                 out->num_messages ? out->messages[0] : "");
        return BENCH_E_SETUP;
    }
    return BENCH_OK;
}
