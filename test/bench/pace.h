/* pace.h — a steady rate for the load generators (hearth-bench-c2s rate,
 * hearth-bench-floor).
 *
 * A libuv timer fires at most once a millisecond, so a loop paced by one
 * sends a light load as bursts: at 5,000 messages/s, five messages at once
 * every millisecond, each waiting behind the others at every hop, which is
 * not how independent clients send. pace runs a thread that sleeps until
 * each of evenly spaced instants (clock_nanosleep, CLOCK_MONOTONIC, as
 * uv_hrtime) and wakes the loop then (uv_async_send). The loop's tick
 * callback may run fewer times than the instants passed (libuv coalesces
 * wake-ups), so it sends what the elapsed time asks for, not one. */
#ifndef HEARTH_BENCH_PACE_H
#define HEARTH_BENCH_PACE_H

#include <uv.h>

typedef struct pace pace_t;

/* Calls tick(ud) on loop's thread about per_second times a second. */
pace_t *pace_start(uv_loop_t *loop, double per_second, void (*tick)(void *ud), void *ud);
/* Stops the thread and releases its handle (freed in its close callback,
 * so the loop can end). */
void pace_stop(pace_t *p);

#endif
