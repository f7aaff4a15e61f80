/* dp_redis_child: supervision of the embedded redis-server (see
 * dp_redis_child.h). Thread: main thread only. */
#include "dataplane/dp_redis_child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/dp_log.h"
#include "dataplane/dp_runtime.h"

#define DP_REDIS_BACKOFF_MAX_MS 30000
#define DP_REDIS_HEALTHY_MS 60000

bool dp_redis_ping(const char *sock, int timeout_ms) {
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sa.sun_path)) return false;
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    bool ok = false;
    char buf[16] = {0};
    struct pollfd p = {fd, POLLIN, 0};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && write(fd, "PING\r\n", 6) == 6 &&
        poll(&p, 1, timeout_ms) == 1 && read(fd, buf, sizeof(buf) - 1) >= 5)
        ok = strncmp(buf, "+PONG", 5) == 0;
    close(fd);
    return ok;
}

/* dp_redis_spawn forks and execs redis-server. Returns the pid or -1. */
static pid_t dp_redis_spawn(const dp_redis_child_t *rc) {
    char logfile[600];
    snprintf(logfile, sizeof(logfile), "%s/redis.log", rc->dir);
    pid_t pid = fork();
    if (pid != 0) return pid;
    /* child: die with stampeded; default signal mask for redis */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char *argv[] = {"redis-server", "--port", "0", "--unixsocket", (char *)rc->sock, "--unixsocketperm",
                    "700", "--dir", (char *)rc->dir, "--appendonly", "yes", "--appendfsync",
                    rc->fsync_always ? "always" : "everysec", "--save", "", "--daemonize", "no",
                    "--logfile", logfile, "--protected-mode", "yes",
                    /* request records (two DER blobs + ~14 small fields) stay one
                     * compact listpack: 1.9 KiB instead of 2.6 KiB each */
                    "--hash-max-listpack-value", "4096", NULL};
    execvp("redis-server", argv);
    _exit(127);
}

int dp_redis_child_start(dp_redis_child_t *rc, const char *data_dir, const char *fsync, char *why,
                         size_t why_len) {
    memset(rc, 0, sizeof(*rc));
    if (strcmp(fsync, "everysec") && strcmp(fsync, "always")) {
        snprintf(why, why_len, "redis_fsync: '%s' is not everysec or always", fsync);
        return -1;
    }
    rc->fsync_always = !strcmp(fsync, "always");
    snprintf(rc->sock, sizeof(rc->sock), "%s/redis.sock", data_dir);
    snprintf(rc->dir, sizeof(rc->dir), "%s/redis", data_dir);
    if (strlen(rc->sock) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        snprintf(why, why_len, "data directory path too long for a unix socket: %.300s", rc->sock);
        return -1;
    }
    if (mkdir(rc->dir, 0700) && errno != EEXIST) {
        snprintf(why, why_len, "cannot create %.300s: %s", rc->dir, strerror(errno));
        return -1;
    }
    /* A Redis still answering may be the child of a stampeded that just died
     * (it gets SIGTERM from the kernel and exits in a moment): wait for it. */
    for (int i = 0; i < 50 && dp_redis_ping(rc->sock, 100); i++) {
        struct timespec ts = {0, 100 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (dp_redis_ping(rc->sock, 200)) {
        snprintf(why, why_len, "a Redis already answers on %.300s (another stampeded on this data directory?)",
                 rc->sock);
        return -1;
    }
    rc->pid = dp_redis_spawn(rc);
    if (rc->pid < 0) {
        snprintf(why, why_len, "cannot fork redis-server: %s", strerror(errno));
        rc->pid = 0;
        return -1;
    }
    for (int i = 0; i < 200; i++) { /* 10 s */
        if (dp_redis_ping(rc->sock, 50)) {
            rc->started_ms = dp_now_ms();
            DP_INFO("embedded Redis pid %d on unix:%s (AOF appendfsync %s, data %s)", (int)rc->pid,
                    rc->sock, rc->fsync_always ? "always" : "everysec", rc->dir);
            return 0;
        }
        int st;
        if (waitpid(rc->pid, &st, WNOHANG) == rc->pid) {
            rc->pid = 0;
            snprintf(why, why_len, "redis-server exited at start (%s %d); see %.300s/redis.log (is the redis-server package installed?)",
                     WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                     rc->dir);
            return -1;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    dp_redis_child_stop(rc);
    snprintf(why, why_len, "redis-server did not answer on %.300s within 10 s", rc->sock);
    return -1;
}

void dp_redis_child_reaped(dp_redis_child_t *rc) {
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid != rc->pid) continue;
        rc->pid = 0;
        int64_t now = dp_now_ms();
        if (now - rc->started_ms > DP_REDIS_HEALTHY_MS) rc->restarts = 0;
        int64_t delay = 1000;
        for (unsigned i = 0; i < rc->restarts && delay < DP_REDIS_BACKOFF_MAX_MS; i++) delay *= 2;
        if (delay > DP_REDIS_BACKOFF_MAX_MS) delay = DP_REDIS_BACKOFF_MAX_MS;
        rc->restarts++;
        rc->next_start_ms = now + delay;
        DP_ERR("embedded Redis (pid %d) %s %d; restarting in %lld ms (see %s/redis.log)", (int)pid,
               WIFEXITED(st) ? "exited with status" : "was killed by signal",
               WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), (long long)delay, rc->dir);
    }
}

int dp_redis_child_tick(dp_redis_child_t *rc) {
    if (!rc->next_start_ms) return -1;
    int64_t now = dp_now_ms();
    if (now < rc->next_start_ms) return (int)(rc->next_start_ms - now);
    rc->next_start_ms = 0;
    rc->pid = dp_redis_spawn(rc);
    if (rc->pid <= 0) {
        rc->pid = 0;
        rc->next_start_ms = now + DP_REDIS_BACKOFF_MAX_MS;
        DP_ERR("cannot fork redis-server: %s; retrying in %d s", strerror(errno), DP_REDIS_BACKOFF_MAX_MS / 1000);
        return DP_REDIS_BACKOFF_MAX_MS;
    }
    rc->started_ms = now;
    DP_INFO("embedded Redis restarted: pid %d on unix:%s", (int)rc->pid, rc->sock);
    return -1;
}

void dp_redis_child_stop(dp_redis_child_t *rc) {
    rc->next_start_ms = 0;
    if (rc->pid <= 0) return;
    kill(rc->pid, SIGTERM);
    for (int i = 0; i < 100; i++) { /* 5 s */
        if (waitpid(rc->pid, NULL, WNOHANG) == rc->pid) {
            rc->pid = 0;
            return;
        }
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    DP_WARN("embedded Redis pid %d did not stop within 5 s; killing it", (int)rc->pid);
    kill(rc->pid, SIGKILL);
    waitpid(rc->pid, NULL, 0);
    rc->pid = 0;
}
