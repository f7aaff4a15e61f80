/* dp_log: one-line log records to stderr, written with a single write(2) so
 * lines from different threads never interleave and no stdio lock is taken.
 * Format: "2026-11-22T17:00:00.123Z LEVEL [thread] message".
 * Thread: any thread. Never allocates. */
#ifndef DP_LOG_H
#define DP_LOG_H

#include <stdbool.h>

typedef enum { DP_LOG_ERROR = 0, DP_LOG_WARN, DP_LOG_INFO, DP_LOG_DEBUG } dp_log_level_t;

/* dp_log_set_level sets the most verbose level that is written. Startup only. */
void dp_log_set_level(dp_log_level_t level);
/* dp_log_parse_level maps "error" "warn" "info" "debug"; returns -1 if unknown. */
int dp_log_parse_level(const char *s);
/* dp_log_set_thread names the calling thread in its log lines ("core0", "signer1"). */
void dp_log_set_thread(const char *name);
/* dp_log_set_buffered makes the calling thread gather its lines in a
 * thread-local buffer, written (whole lines, one write) when it fills or at
 * dp_log_flush. Polling cores flush once per event-loop iteration and signer
 * workers before they sleep, so lines are late by at most one batch. */
void dp_log_set_buffered(bool on);
/* dp_log_flush writes the calling thread's buffered lines. */
void dp_log_flush(void);
/* dp_log_enabled says whether `level` would be written. */
int dp_log_enabled(dp_log_level_t level);

void dp_log(dp_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define DP_ERR(...) dp_log(DP_LOG_ERROR, __VA_ARGS__)
#define DP_WARN(...) dp_log(DP_LOG_WARN, __VA_ARGS__)
#define DP_INFO(...) dp_log(DP_LOG_INFO, __VA_ARGS__)
#define DP_DEBUG(...) \
    do { if (dp_log_enabled(DP_LOG_DEBUG)) dp_log(DP_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
