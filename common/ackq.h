/* ackq.h — what one side of a session has sent and the other side has not
 * yet acknowledged (the at-least-once delivery between c2s and sm: c2s's
 * session.c and sm's session.c tell the protocol).
 *
 * Entries are whole serialized routes, each with the sequence number it
 * carries and an opaque token of the caller's (the sm ties an entry to the
 * client stanza it came from). An acknowledgement of h drops every entry
 * up to h; what is left can be sent again, in order, after the link is
 * back. */
#ifndef HEARTH_ACKQ_H
#define HEARTH_ACKQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct ackq_entry {
    struct ackq_entry *next;
    uint64_t seq;
    uint64_t at;  /* the caller's clock when it was queued */
    void *token;  /* the caller's, or NULL */
    size_t len;
    char data[];
} ackq_entry_t;

typedef struct ackq {
    ackq_entry_t *head, *tail;
    size_t bytes;
} ackq_t;

/* Called for each entry an ack (or ackq_clear) drops. */
typedef void (*ackq_drop_fn)(void *ud, ackq_entry_t *e);

void ackq_push(ackq_t *q, uint64_t seq, uint64_t at, const char *data, size_t len, void *token);
/* Drop the entries whose seq is at most h; how many bytes went. */
size_t ackq_ack(ackq_t *q, uint64_t h, ackq_drop_fn fn, void *ud);
/* Drop every entry; how many bytes went. */
size_t ackq_clear(ackq_t *q, ackq_drop_fn fn, void *ud);
/* Unlink and return the first entry (the caller frees it), or NULL. */
ackq_entry_t *ackq_pop(ackq_t *q);
/* The seq of the first entry, or 0 when empty. */
uint64_t ackq_first(const ackq_t *q);

/* When acknowledgements leave (both c2s and sm batch theirs): a batch
 * gathers for at least ACK_BATCH_DELAY_MS and leaves with the next packet
 * its side routes after that, in the same write, so that at a light load
 * an acknowledgement costs no wake-up of its own; on a link with nothing
 * else to carry it, ACK_BATCH_MAX_MS after the first was due. The caller
 * keeps what is due; the batch only says when, by calling flush(ud). */
#define ACK_BATCH_DELAY_MS 5
#define ACK_BATCH_MAX_MS 50

typedef struct ack_batch {
    uv_timer_t timer;
    uint64_t since; /* loop time the first of the batch was due */
    bool is_open;   /* something is due */
    void (*flush)(void *ud);
    void *ud;
} ack_batch_t;

void ack_batch_init(ack_batch_t *b, uv_loop_t *loop, void (*flush)(void *ud), void *ud);
/* Something is due: the first of a batch starts its clock. */
void ack_batch_due(ack_batch_t *b);
/* A packet went out: a batch that has gathered long enough follows it. */
void ack_batch_along(ack_batch_t *b);
/* Send what is due now (flush(ud) is called even when nothing is). */
void ack_batch_flush(ack_batch_t *b);
void ack_batch_close(ack_batch_t *b);

#endif
