/* pace.c — evenly spaced wake-ups of a libuv loop (pace.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>

#include "pace.h"

struct pace {
    uv_async_t async;
    uv_thread_t thread;
    atomic_bool is_stopping;
    double interval_ns;
    void (*tick)(void *ud);
    void *ud;
};

static void on_async(uv_async_t *a)
{
    pace_t *p = a->data;
    if (!atomic_load(&p->is_stopping)) p->tick(p->ud);
}

static void run(void *arg)
{
    pace_t *p = arg;
    /* The default 50 µs of slack is a quarter of the spacing at 5,000/s. */
    prctl(PR_SET_TIMERSLACK, 1UL);
    uint64_t start = uv_hrtime();
    for (uint64_t k = 1; !atomic_load(&p->is_stopping); k++) {
        uint64_t at = start + (uint64_t)((double)k * p->interval_ns);
        struct timespec ts = {.tv_sec = (time_t)(at / 1000000000u),
                              .tv_nsec = (long)(at % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
        uv_async_send(&p->async);
    }
}

pace_t *pace_start(uv_loop_t *loop, double per_second, void (*tick)(void *ud), void *ud)
{
    pace_t *p = calloc(1, sizeof *p);
    if (!p) abort();
    p->interval_ns = 1e9 / per_second;
    p->tick = tick;
    p->ud = ud;
    atomic_init(&p->is_stopping, false);
    uv_async_init(loop, &p->async, on_async);
    p->async.data = p;
    if (uv_thread_create(&p->thread, run, p) != 0) {
        fprintf(stderr, "pace: no thread\n");
        exit(2);
    }
    return p;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

void pace_stop(pace_t *p)
{
    atomic_store(&p->is_stopping, true);
    uv_thread_join(&p->thread);
    uv_close((uv_handle_t *)&p->async, on_closed);
}
