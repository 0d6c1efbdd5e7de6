/* rate.h — a token bucket for rate limits: each stanza takes a token, and
 * tokens come back at `rate` per second up to `burst`. A sender over its
 * rate is read more slowly, never cut off: the caller pauses reading for
 * the time rate_take() names. */
#ifndef HEARTH_RATE_H
#define HEARTH_RATE_H

#include <stdint.h>

typedef struct rate_bucket {
    double tokens;
    uint64_t at; /* ms (loop time) of the last refill */
} rate_bucket_t;

/* A full bucket at now (ms). */
void rate_init(rate_bucket_t *b, double burst, uint64_t now);
/* Take a token at now (ms): 0 if the bucket held one, else how many ms to
 * stop reading until it holds one again (the token is taken anyway: the
 * stanza is already read). */
uint64_t rate_take(rate_bucket_t *b, double rate, double burst, uint64_t now);

#endif
