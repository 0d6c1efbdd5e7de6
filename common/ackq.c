/* ackq.c — the queue of unacknowledged routes (ackq.h): a singly linked
 * list in seq order, one allocation per entry holding its bytes; and the
 * timing of a batch of acknowledgements. */
#include <stdlib.h>
#include <string.h>

#include "ackq.h"
#include "log.h"

void ackq_push(ackq_t *q, uint64_t seq, uint64_t at, const char *data, size_t len, void *token)
{
    ackq_entry_t *e = malloc(sizeof *e + len);
    if (!e) log_fatal("out of memory");
    e->next = NULL;
    e->seq = seq;
    e->at = at;
    e->token = token;
    e->len = len;
    memcpy(e->data, data, len);
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->bytes += len;
}

ackq_entry_t *ackq_pop(ackq_t *q)
{
    ackq_entry_t *e = q->head;
    if (!e) return NULL;
    q->head = e->next;
    if (!q->head) q->tail = NULL;
    q->bytes -= e->len;
    e->next = NULL;
    return e;
}

static size_t drop_while(ackq_t *q, uint64_t h, ackq_drop_fn fn, void *ud)
{
    size_t bytes = 0;
    while (q->head && q->head->seq <= h) {
        ackq_entry_t *e = ackq_pop(q);
        bytes += e->len;
        if (fn) fn(ud, e);
        free(e);
    }
    return bytes;
}

size_t ackq_ack(ackq_t *q, uint64_t h, ackq_drop_fn fn, void *ud)
{
    return drop_while(q, h, fn, ud);
}

size_t ackq_clear(ackq_t *q, ackq_drop_fn fn, void *ud)
{
    return drop_while(q, UINT64_MAX, fn, ud);
}

uint64_t ackq_first(const ackq_t *q)
{
    return q->head ? q->head->seq : 0;
}

/* ---- when a batch of acknowledgements leaves ----------------------------- */

static void on_batch_timer(uv_timer_t *t)
{
    ack_batch_flush(t->data);
}

void ack_batch_init(ack_batch_t *b, uv_loop_t *loop, void (*flush)(void *ud), void *ud)
{
    uv_timer_init(loop, &b->timer);
    b->timer.data = b;
    b->is_open = false;
    b->flush = flush;
    b->ud = ud;
}

void ack_batch_due(ack_batch_t *b)
{
    if (b->is_open) return;
    b->is_open = true;
    b->since = uv_now(b->timer.loop);
    uv_timer_start(&b->timer, on_batch_timer, ACK_BATCH_MAX_MS, 0);
}

void ack_batch_along(ack_batch_t *b)
{
    if (b->is_open && uv_now(b->timer.loop) - b->since >= ACK_BATCH_DELAY_MS) ack_batch_flush(b);
}

void ack_batch_flush(ack_batch_t *b)
{
    uv_timer_stop(&b->timer);
    b->is_open = false;
    b->flush(b->ud);
}

void ack_batch_close(ack_batch_t *b)
{
    uv_close((uv_handle_t *)&b->timer, NULL);
}
