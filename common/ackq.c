/* ackq.c — the queue of unacknowledged routes (ackq.h): a singly linked
 * list in seq order, one allocation per entry holding its bytes. */
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
