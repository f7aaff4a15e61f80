/* dp_log: lock-free line logging to stderr (see dp_log.h). The level is set
 * once at startup; the thread name is thread-local. Thread: any thread. */
#include "dataplane/dp_log.h"

#include <errno.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int dp_log_level = DP_LOG_INFO;
static _Thread_local char dp_log_thread[16] = "main";
static _Thread_local bool dp_log_buffered;
static _Thread_local size_t dp_log_buf_len;
static _Thread_local char dp_log_buf[8192];

void dp_log_set_buffered(bool on) { dp_log_buffered = on; }

void dp_log_flush(void) {
    size_t off = 0;
    while (off < dp_log_buf_len) {
        ssize_t w = write(STDERR_FILENO, dp_log_buf + off, dp_log_buf_len - off);
        if (w < 0 && errno == EINTR) continue; /* a signal (net_tap's per-frame one) before any byte */
        if (w <= 0) break;
        off += (size_t)w;
    }
    dp_log_buf_len = 0;
}

static const char *const dp_log_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void dp_log_set_level(dp_log_level_t level) { dp_log_level = (int)level; }

int dp_log_enabled(dp_log_level_t level) { return (int)level <= dp_log_level; }

int dp_log_parse_level(const char *s) {
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

void dp_log_set_thread(const char *name) {
    snprintf(dp_log_thread, sizeof(dp_log_thread), "%s", name);
}

void dp_log(dp_log_level_t level, const char *fmt, ...) {
    if (!dp_log_enabled(level)) return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, dp_log_names[level], dp_log_thread);
    if (n < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    line[len++] = '\n';
    if (dp_log_buffered) {
        if (dp_log_buf_len + len > sizeof(dp_log_buf)) dp_log_flush();
        memcpy(dp_log_buf + dp_log_buf_len, line, len);
        dp_log_buf_len += len;
        if (level <= DP_LOG_WARN) dp_log_flush(); /* problems are not delayed */
        return;
    }
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
