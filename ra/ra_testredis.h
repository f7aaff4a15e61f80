/* ra_testredis: a private redis-server for unit tests (header-only, tests
 * only): started on a unix socket in a fresh temporary directory (no TCP
 * port, no persistence), connected with ra_redis_connect, killed and removed
 * afterwards. Every wait is bounded (10 s).
 * Thread: the test's main thread. */
#ifndef RA_TESTREDIS_H
#define RA_TESTREDIS_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ra/ra_redis.h"

typedef struct {
    char dir[64];          /* the server's DIR; socket DIR/redis.sock */
    pid_t pid;
} ra_testredis_t;

/* ra_testredis_start starts the server in /tmp/NAME.XXXXXX and waits until
 * it answers; *out (if not NULL) gets a connection the caller frees.
 * Returns 0, or -1 with a message on stderr. */
static inline int ra_testredis_start(ra_testredis_t *t, const char *name, redisContext **out) {
    char sock[128], why[256] = "";
    ra_redis_addr_t a;
    t->pid = -1;
    snprintf(t->dir, sizeof(t->dir), "/tmp/%s.XXXXXX", name);
    if (!mkdtemp(t->dir)) return -1;
    snprintf(sock, sizeof(sock), "%s/redis.sock", t->dir);
    if ((t->pid = fork()) == 0) {
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700",
               "--save", "", "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
        _exit(127);
    }
    if (t->pid < 0 || ra_redis_addr_data_dir(&a, t->dir) != RA_OK) return -1;
    for (int i = 0; i < 200; i++) {
        redisContext *c;
        if (ra_redis_connect(&c, &a, 1000, why, sizeof(why)) == RA_OK) {
            if (out) *out = c;
            else redisFree(c);
            return 0;
        }
        usleep(50000);
    }
    fprintf(stderr, "redis-server did not come up: %s\n", why);
    return -1;
}

/* ra_testredis_load_script loads `script` with SCRIPT LOAD and checks that
 * Redis names it `sha` (the SHA-1 the daemon computes). 0 or -1. */
static inline int ra_testredis_load_script(redisContext *c, const char *script, const char *sha) {
    const char *argv[] = {"SCRIPT", "LOAD", script};
    redisReply *r = redisCommandArgv(c, 3, argv, NULL);
    int ok = r && r->type == REDIS_REPLY_STRING && r->len == 40 && !memcmp(r->str, sha, 40);
    if (r) freeReplyObject(r);
    return ok ? 0 : -1;
}

/* ra_testredis_stop frees the connection *c (if `c` and *c), kills the
 * server and removes its directory. 0 or -1. */
static inline int ra_testredis_stop(ra_testredis_t *t, redisContext **c) {
    char cmd[128];
    if (c && *c) redisFree(*c);
    if (c) *c = NULL;
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
    }
    t->pid = -1;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", t->dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
