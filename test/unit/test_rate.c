/* test_rate.c — the token bucket (common/rate.h) that c2s.rate and s2s.rate
 * use: a full bucket lets a burst through, then the rate; the wait it
 * names is the time until a token is back; it never holds more than burst. */
#include "rate.h"
#include "tap.h"

int main(void)
{
    rate_bucket_t b;
    rate_init(&b, 3, 1000);
    int free_takes = 0;
    while (rate_take(&b, 10, 3, 1000) == 0)
        free_takes++;
    is_int(free_takes, 3, "a full bucket lets a burst of 3 through at once");
    /* the 4th took the bucket to -1: two tokens to come back at 10/s */
    rate_init(&b, 3, 1000);
    for (int i = 0; i < 3; i++)
        rate_take(&b, 10, 3, 1000);
    uint64_t wait = rate_take(&b, 10, 3, 1000);
    ok(wait >= 200 && wait <= 201, "over the rate: wait until a token is back (%llu ms)",
       (unsigned long long)wait);
    is_int(rate_take(&b, 10, 3, 1000 + wait), 0, "after that wait, a token again");
    is_int(rate_take(&b, 10, 3, 1000 + wait) > 0, 1, "and only one");

    rate_init(&b, 5, 0);
    for (int i = 0; i < 5; i++)
        rate_take(&b, 100, 5, 0);
    /* an hour later the bucket holds burst tokens, not 360,000 */
    int later = 0;
    while (rate_take(&b, 100, 5, 3600000) == 0)
        later++;
    is_int(later, 5, "an idle bucket fills up to burst, no more");

    /* at exactly the rate, nobody waits */
    rate_init(&b, 1, 0);
    int waits = 0;
    for (uint64_t t = 0; t < 10000; t += 10)
        waits += rate_take(&b, 100, 1, t) > 0;
    is_int(waits, 0, "a sender at the rate (every 10 ms at 100/s) never waits");
    return done_testing();
}
