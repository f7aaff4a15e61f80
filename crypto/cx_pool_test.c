/* cx_pool_test: the signing pool delivers every job exactly once, back to the
 * core that submitted it, and refuses work past a core's bound. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <pthread.h>
#include <urcu/compiler.h>

#include "crypto/cx_pool.h"

#define NJOBS 20000

typedef struct {
    cx_job_t job;
    unsigned seq;
    unsigned ran_on;
    int runs;
} test_job_t;

static void test_fn(cx_job_t *job, unsigned worker) {
    test_job_t *t = caa_container_of(job, test_job_t, job);
    t->ran_on = worker;
    t->runs++;
    job->result = (int)(t->seq * 3u);
}

typedef struct {
    cx_pool_t *pool;
    unsigned core;
    test_job_t *jobs;
    unsigned done;
    unsigned wrong;
} core_arg_t;

static void *core_thread(void *arg) {
    core_arg_t *c = arg;
    unsigned next = 0;
    while (c->done < NJOBS) {
        while (next < NJOBS) {
            test_job_t *t = &c->jobs[next];
            t->seq = next;
            t->job.fn = test_fn;
            if (cx_pool_submit(c->pool, c->core, &t->job, false) != CX_OK) break;
            next++;
        }
        cx_pool_kick(c->pool, c->core);
        struct pollfd pfd = {cx_pool_core_fd(c->pool, c->core), POLLIN, 0};
        poll(&pfd, 1, 100);
        cx_pool_core_ack(c->pool, c->core);
        cx_job_t *j;
        while ((j = cx_pool_poll(c->pool, c->core)) != NULL) {
            test_job_t *t = caa_container_of(j, test_job_t, job);
            if (j->core != c->core || j->result != (int)(t->seq * 3u) || t->runs != 1) c->wrong++;
            c->done++;
        }
    }
    return NULL;
}

static void test_pool_delivers_each_job_once(void **state) {
    (void)state;
    cx_pool_t *pool = cx_pool_new(2, 2, 64);
    assert_non_null(pool);
    assert_int_equal(cx_pool_start(pool, NULL, NULL), CX_OK);
    core_arg_t cores[2];
    pthread_t th[2];
    for (unsigned i = 0; i < 2; i++) {
        cores[i] = (core_arg_t){pool, i, calloc(NJOBS, sizeof(test_job_t)), 0, 0};
        assert_non_null(cores[i].jobs);
        pthread_create(&th[i], NULL, core_thread, &cores[i]);
    }
    for (unsigned i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(cores[i].done, NJOBS);
        assert_int_equal(cores[i].wrong, 0);
        assert_int_equal(cx_pool_inflight(pool, i), 0);
        free(cores[i].jobs);
    }
    cx_pool_free(pool);
}

static void test_pool_bound_refuses(void **state) {
    (void)state;
    cx_pool_t *pool = cx_pool_new(1, 1, 4);
    assert_non_null(pool);
    /* Workers not started: jobs stay queued, so the bound is reached. */
    test_job_t jobs[6] = {0};
    for (int i = 0; i < 4; i++) {
        jobs[i].job.fn = test_fn;
        assert_int_equal(cx_pool_submit(pool, 0, &jobs[i].job, false), CX_OK);
    }
    jobs[4].job.fn = test_fn;
    assert_int_equal(cx_pool_submit(pool, 0, &jobs[4].job, false), CX_E_BUSY);
    jobs[5].job.fn = test_fn;
    assert_int_equal(cx_pool_submit(pool, 0, &jobs[5].job, true), CX_OK);
    assert_int_equal(cx_pool_inflight(pool, 0), 5);
    assert_int_equal(cx_pool_start(pool, NULL, NULL), CX_OK);
    cx_pool_kick(pool, 0);
    unsigned got = 0;
    while (got < 5) {
        struct pollfd pfd = {cx_pool_core_fd(pool, 0), POLLIN, 0};
        poll(&pfd, 1, 100);
        cx_pool_core_ack(pool, 0);
        while (cx_pool_poll(pool, 0)) got++;
    }
    assert_int_equal(jobs[4].runs, 0);
    assert_int_equal(jobs[5].runs, 1);
    cx_pool_free(pool);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_delivers_each_job_once),
        cmocka_unit_test(test_pool_bound_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
