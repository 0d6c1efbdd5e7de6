/* test_ackq.c — the queue of unacknowledged routes (common/ackq.h): what
 * an acknowledgement drops and hands to its callback, what is left to send
 * again and in which order, and its byte count; and when a batch of
 * acknowledgements leaves (ack_batch_t), on a real libuv loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ackq.h"
#include "tap.h"

static int dropped;
static size_t dropped_tokens;

static void on_drop(void *ud, ackq_entry_t *e)
{
    (void)ud;
    dropped++;
    dropped_tokens += (size_t)(uintptr_t)e->token;
}

static int flushes;

static void on_flush(void *ud)
{
    (*(int *)ud)++;
}

/* The batch's timing: loop time stands still between uv_update_time calls,
 * so "not yet" is asked without a race. */
static void batch_tests(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    ack_batch_t b;
    ack_batch_init(&b, &loop, on_flush, &flushes);
    ack_batch_along(&b);
    is_int(flushes, 0, "nothing due: a packet going out takes nothing along");
    ack_batch_due(&b);
    ack_batch_due(&b);
    ack_batch_along(&b);
    is_int(flushes, 0, "a batch just opened does not leave with the next packet");
    uv_sleep(ACK_BATCH_DELAY_MS + 1);
    uv_update_time(&loop);
    ack_batch_along(&b);
    is_int(flushes, 1, "once it has gathered ACK_BATCH_DELAY_MS it leaves with the next packet");
    ok(!uv_is_active((uv_handle_t *)&b.timer), "and its fallback timer is stopped");
    ack_batch_along(&b);
    is_int(flushes, 1, "a batch leaves once");

    uint64_t t0 = uv_now(&loop);
    ack_batch_due(&b);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_update_time(&loop);
    is_int(flushes, 2, "with no packet to carry it, the batch leaves by itself");
    ok(uv_now(&loop) - t0 >= ACK_BATCH_MAX_MS, "after ACK_BATCH_MAX_MS");

    ack_batch_due(&b);
    ack_batch_flush(&b);
    is_int(flushes, 3, "a flush sends at once");
    ok(!uv_is_active((uv_handle_t *)&b.timer), "and stops the timer");
    ack_batch_close(&b);
    uv_run(&loop, UV_RUN_DEFAULT);
    ok(uv_loop_close(&loop) == 0, "closing the batch releases its timer");
}

static void push(ackq_t *q, uint64_t seq, const char *text)
{
    ackq_push(q, seq, seq * 10, text, strlen(text), (void *)(uintptr_t)seq);
}

int main(void)
{
    ackq_t q = {0};
    ok(ackq_first(&q) == 0 && ackq_pop(&q) == NULL, "an empty queue has nothing");
    push(&q, 1, "<route>one</route>");
    push(&q, 2, "<route>two</route>");
    push(&q, 3, "<route>three</route>");
    is_int(q.bytes, 18 + 18 + 20, "bytes count what is kept");
    is_int(ackq_first(&q), 1, "the oldest is first");

    is_int(ackq_ack(&q, 2, on_drop, NULL), 36, "an ack of 2 drops 1 and 2");
    is_int(dropped, 2, "each dropped entry goes through the callback");
    is_int(dropped_tokens, 3, "with its token");
    is_int(ackq_first(&q), 3, "3 is left");
    is_int(ackq_ack(&q, 2, on_drop, NULL), 0, "an old ack drops nothing");

    push(&q, 4, "<route>four</route>");
    const char *want[] = {"<route>three</route>", "<route>four</route>"};
    int i = 0, in_order = 1;
    for (ackq_entry_t *e = q.head; e; e = e->next, i++)
        in_order &= i < 2 && e->len == strlen(want[i]) && !memcmp(e->data, want[i], e->len) &&
                    e->at == e->seq * 10;
    ok(in_order && i == 2, "what is left is there to send again, in order, as it was");

    ackq_entry_t *e = ackq_pop(&q);
    ok(e && e->seq == 3 && q.bytes == 19 && ackq_first(&q) == 4, "pop takes the first");
    free(e);
    dropped = 0;
    is_int(ackq_clear(&q, on_drop, NULL), 19, "clear drops the rest");
    is_int(dropped, 1, "through the callback");
    ok(q.head == NULL && q.tail == NULL && q.bytes == 0, "and leaves it empty");
    push(&q, 5, "<route>five</route>");
    ok(q.head && q.head == q.tail && ackq_first(&q) == 5, "an emptied queue takes more");
    ackq_clear(&q, NULL, NULL);
    batch_tests();
    return done_testing();
}
