/* bench_stats: the arithmetic of the report: latency percentiles, the
 * uniqueness of issued serials, and what /proc says about the server: its CPU
 * time (utime + stime, in clock ticks of sysconf(_SC_CLK_TCK), so the
 * resolution is usually 10 ms: runs should last well over a second) and
 * whether it is the process listening on the port the load goes to.
 * Thread: main thread, after the workers are joined. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "benches/bench.h"

static int stats_cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void bench_stats_sort_u32(uint32_t *v, size_t n) {
    qsort(v, n, sizeof *v, stats_cmp_u32);
}

uint32_t bench_stats_percentile(const uint32_t *v, size_t n, double p) {
    if (n == 0)
        return 0;
    double r = p / 100.0 * (double)n;
    size_t rank = (size_t)r;                /* nearest rank: ceil(p/100 * n) */
    if ((double)rank < r)
        rank++;
    if (rank < 1)
        rank = 1;
    return v[(rank > n ? n : rank) - 1];
}

static int stats_cmp_serial(const void *a, const void *b) {
    const bench_serial_t *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    int c = memcmp(x->bytes, y->bytes, x->len);
    if (c != 0)
        return c;
    return (x->csr_index > y->csr_index) - (x->csr_index < y->csr_index);
}

size_t bench_stats_duplicate_serials(bench_serial_t *s, size_t n) {
    size_t dups = 0;
    qsort(s, n, sizeof *s, stats_cmp_serial);
    for (size_t i = 1; i < n; i++)
        if (s[i].len == s[i - 1].len && memcmp(s[i].bytes, s[i - 1].bytes, s[i].len) == 0 &&
            s[i].csr_index != s[i - 1].csr_index)
            dups++;
    return dups;
}

/* stats_read_stat reads /proc/PID/stat and returns ppid and utime+stime in
 * clock ticks. Returns false if the process is gone or the line is odd. */
static bool stats_read_stat(const char *pid, long *ppid, unsigned long long *ticks) {
    char path[64], line[1024];
    unsigned long long utime, stime;
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    bool ok = fgets(line, sizeof line, f) != NULL;
    fclose(f);
    /* Field 2 (comm) is in parentheses and may hold spaces: scan after the
     * last ')'. Then: 3 state, 4 ppid, 5..13, 14 utime, 15 stime. */
    char *p = ok ? strrchr(line, ')') : NULL;
    if (p == NULL ||
        sscanf(p + 1, " %*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", ppid, &utime,
               &stime) != 3)
        return false;
    *ticks = utime + stime;
    return true;
}

static uint64_t stats_ticks_to_us(unsigned long long ticks) {
    long hz = sysconf(_SC_CLK_TCK);
    return (uint64_t)ticks * 1000000u / (uint64_t)(hz > 0 ? hz : 100);
}

bench_err_t bench_proc_cpu_us(uint64_t pid, uint64_t *us) {
    char name[24];
    long ppid;
    unsigned long long ticks;
    snprintf(name, sizeof name, "%llu", (unsigned long long)pid);
    if (!stats_read_stat(name, &ppid, &ticks))
        return BENCH_E_SETUP;
    *us = stats_ticks_to_us(ticks);
    return BENCH_OK;
}

uint64_t bench_proc_children_cpu_us(uint64_t pid) {
    unsigned long long sum = 0, ticks;
    long ppid;
    struct dirent *e;
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        if (stats_read_stat(e->d_name, &ppid, &ticks) && (uint64_t)ppid == pid)
            sum += ticks;
    }
    closedir(d);
    return stats_ticks_to_us(sum);
}

/* stats_port_inodes collects into `inodes` the socket inodes of listening
 * TCP sockets on `port` in /proc/net/`file`. */
static void stats_port_inodes(const char *file, unsigned port, unsigned long *inodes,
                              unsigned *num, unsigned cap) {
    char path[64], line[512];
    unsigned local_port, state;
    unsigned long inode;
    snprintf(path, sizeof path, "/proc/net/%s", file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f) != NULL) {
        /* sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %*u %*u %lu",
                   &local_port, &state, &inode) == 3 &&
            state == 0x0A && local_port == port && *num < cap)
            inodes[(*num)++] = inode;
    }
    fclose(f);
}

void bench_proc_listeners(uint64_t pid, unsigned port, unsigned *total, unsigned *owned) {
    unsigned long inodes[64], inode;
    char dir[64], path[PATH_MAX], target[128];
    struct dirent *e;
    *total = *owned = 0;
    stats_port_inodes("tcp", port, inodes, total, 64);
    stats_port_inodes("tcp6", port, inodes, total, 64);
    snprintf(dir, sizeof dir, "/proc/%llu/fd", (unsigned long long)pid);
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (sscanf(target, "socket:[%lu]", &inode) != 1)
            continue;
        for (unsigned i = 0; i < *total; i++)
            if (inodes[i] == inode)
                (*owned)++;
    }
    closedir(d);
}
