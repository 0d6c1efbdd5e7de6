/* rate.c — the token bucket of rate.h. */
#include "rate.h"

void rate_init(rate_bucket_t *b, double burst, uint64_t now)
{
    b->tokens = burst;
    b->at = now;
}

uint64_t rate_take(rate_bucket_t *b, double rate, double burst, uint64_t now)
{
    b->tokens += (double)(now - b->at) * rate / 1000.0;
    if (b->tokens > burst) b->tokens = burst;
    b->at = now;
    b->tokens -= 1.0;
    if (b->tokens >= 0) return 0;
    return (uint64_t)((1.0 - b->tokens) * 1000.0 / rate) + 1;
}
