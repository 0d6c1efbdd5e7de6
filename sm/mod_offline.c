/* mod_offline.c — messages for users who are not online (XEP-0160).
 *
 * Stores a chat or normal message no session could take (the core hands it
 * over on SM_CHAIN_UNDELIVERED) in `offline`, with a XEP-0203 <delay/>,
 * up to sm.offline-quota messages per user: a full queue answers
 * service-unavailable, a failed write internal-server-error or
 * resource-constraint; nothing is dropped silently. What is kept
 * (choose_for, below): a message with content, bodyless or not (chat
 * markers, receipts, the call signalling of XEP-0353 Jingle Message
 * Initiation, encrypted payloads), and any with a XEP-0334 <store/> hint;
 * never one with <no-store/>, which is answered service-unavailable like
 * any message the server does not keep (RFC 6121 §8.5.2.2.1). Messages with
 * nothing worth keeping (chat states alone) are dropped, as XEP-0160 §3
 * says.
 * When a session sends available presence of non-negative priority
 * (SM_CHAIN_AVAILABLE), the queue goes to it oldest first, in chunks that
 * are deleted once the client has read them (below). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "map.h"
#include "metrics.h"
#include "sm.h"

#define NS_DELAY "urn:xmpp:delay"

static long long quota;
static metric_counter_t stored_total, delivered_total;
static map_t flushing; /* owner -> flush_t while its queue is being sent */

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

typedef enum choice {
    OFFLINE_STORE,  /* kept for the next session */
    OFFLINE_DROP,   /* nothing worth keeping: gone, and nobody is told */
    OFFLINE_REFUSE, /* the sender asked that it not be kept: the core answers */
} choice_t;

/* What to do with a chat or normal message no session took.
 * XEP-0160 §3: one with content is kept, and content is anything but chat
 * states (XEP-0085 content alone SHOULD NOT be stored), a <thread/> or
 * hints; so chat markers, receipts and XEP-0353 <propose/>, <proceed/>, …
 * are kept without a body. XEP-0334 §4: <store/> keeps a message whatever
 * it holds (XEP-0353 puts it on every call message); <no-store/> forbids
 * keeping it even for an offline user, and wins over <store/>. A chat state
 * with <no-store/> is still dropped in silence: nobody wants an error for
 * a chat state. */
static choice_t choose_for(const elem_t *message)
{
    bool has_content = false, wants_store = false, forbids_store = false;
    for (const elem_t *e = elem_first(message); e; e = elem_next(e, NULL, NULL)) {
        if (e->ns && is(e->ns, NS_HINTS)) {
            if (is(e->name, "store")) wants_store = true;
            if (is(e->name, "no-store")) forbids_store = true;
        } else if (!(e->ns && is(e->ns, NS_CHATSTATES)) && !is(e->name, "thread")) {
            has_content = true;
        }
    }
    if (!has_content && !wants_store) return OFFLINE_DROP;
    return forbids_store ? OFFLINE_REFUSE : OFFLINE_STORE;
}

typedef struct store {
    sm_t *sm;
    sm_pkt_t *pkt;
} store_t;

static void stored(void *ud, const st_result_t *res)
{
    store_t *s = ud;
    st_status_t status = st_status(res);
    if (status != ST_OK) {
        log_warn("offline message for %s not stored: %s", jid_bare(s->pkt->to), st_error(res));
        sm_reply_error(s->sm, s->pkt,
                       status == ST_FULL ? "resource-constraint" : "internal-server-error");
    } else if (st_changes(res) < 1) {
        log_info("offline queue of %s is full", jid_bare(s->pkt->to));
        sm_reply_error(s->sm, s->pkt, "service-unavailable");
    } else {
        metric_inc(&stored_total);
    }
    sm_pkt_release(s->pkt);
    free(s);
}

static sm_verdict_t on_undelivered(sm_t *sm, sm_pkt_t *pkt)
{
    if (!is(pkt->kind, "message")) return SM_PASS;
    if (!is(pkt->type, "") && !is(pkt->type, "chat") && !is(pkt->type, "normal")) return SM_PASS;
    choice_t choice = choose_for(pkt->stanza);
    if (choice == OFFLINE_DROP) return SM_HANDLED;
    if (choice == OFFLINE_REFUSE || quota <= 0) return SM_PASS; /* service-unavailable */

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char stamp[64], stamp_ms[24], limit[24];
    snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(now.tv_nsec / 1000000));
    snprintf(stamp_ms, sizeof(stamp_ms), "%lld", ms);
    snprintf(limit, sizeof(limit), "%lld", quota);

    /* XEP-0203: when it reached the server, said by the server. */
    arena_t *a = arena_new(0);
    elem_t *copy = elem_copy(a, pkt->stanza);
    elem_t *delay = elem_add(copy, NS_DELAY, "delay");
    elem_set_attr(delay, "from", jid_domain(pkt->to));
    elem_set_attr(delay, "stamp", stamp);
    buf_t xml = BUF_INIT;
    elem_serialize(copy, NS_CLIENT, &xml);
    arena_free(a);

    store_t *s = calloc(1, sizeof(*s));
    if (!s) log_fatal("out of memory");
    s->sm = sm;
    s->pkt = sm_pkt_hold(pkt);
    const char *params[] = {jid_bare(pkt->to), stamp_ms, xml.data, limit};
    /* The quota check and the insert are one statement: no window between. */
    storage_query(sm_storage(sm),
                  "INSERT INTO offline (owner, stamp, stanza) "
                  "SELECT $1, CAST($2 AS BIGINT), $3 "
                  "WHERE (SELECT COUNT(*) FROM offline WHERE owner = $1) < CAST($4 AS BIGINT)",
                  4, params, stored, s);
    buf_free(&xml);
    return SM_HANDLED;
}

/* ---- replay ----------------------------------------------------------- */

/* The queue goes out in chunks of at most CHUNK_BYTES (a message at least),
 * each followed by an XEP-0199 ping to the session; a chunk is deleted
 * only when the client answers that ping (result or error: RFC 6120 §8.2.3
 * wants an answer either way), which it can do only after reading the
 * chunk. Then the next chunk goes. So a client never has more than one
 * chunk waiting for it (c2s cuts a client off at c2s.max-queue), and what
 * a client that goes away did not confirm waits for its next session:
 * at worst a message arrives twice, never not at all. */
#define CHUNK_BYTES (256 * 1024)
#define CHUNK_ROWS 64
#define NS_PING "urn:xmpp:ping"

typedef struct flush {
    sm_t *sm;
    jid_t *full;
    char last_id[24]; /* the last message sent of the chunk out now */
    char done_id[24]; /* the last message confirmed and deleted */
    char ping_id[40]; /* the ping behind the chunk, "" when none is out */
    bool is_busy;     /* a storage call holds the flush */
    bool is_gone;     /* the session ended: free once not busy */
} flush_t;

static void flush_free(flush_t *f)
{
    map_del(&flushing, jid_bare(f->full));
    jid_free(f->full);
    free(f);
}

static void fetch_next(flush_t *f);

/* After a storage call: false (and f freed) if the session went away. */
static bool still_wanted(flush_t *f)
{
    f->is_busy = false;
    if (!f->is_gone && sm_session(f->sm, f->full)) return true;
    flush_free(f);
    return false;
}

static void deleted(void *ud, const st_result_t *res)
{
    flush_t *f = ud;
    if (st_status(res) != ST_OK) {
        log_warn("offline messages of %s read but not deleted: %s", jid_bare(f->full),
                 st_error(res));
        f->is_busy = false;
        flush_free(f); /* they come again at the next session */
        return;
    }
    memcpy(f->done_id, f->last_id, sizeof f->done_id);
    if (still_wanted(f)) fetch_next(f);
}

static void send_ping(flush_t *f, sess_t *s)
{
    char random[17];
    random_hex(random, 8);
    snprintf(f->ping_id, sizeof f->ping_id, "offline-%s", random);
    arena_t *a = arena_new(0);
    elem_t *iq = elem_new(a, NS_CLIENT, "iq");
    elem_set_attr(iq, "type", "get");
    elem_set_attr(iq, "id", f->ping_id);
    elem_set_attr(iq, "from", jid_domain(f->full));
    elem_set_attr(iq, "to", jid_full(f->full));
    elem_add(iq, NS_PING, "ping");
    sm_send_to_sess(f->sm, s, iq);
    arena_free(a);
}

static void fetched(void *ud, const st_result_t *res)
{
    flush_t *f = ud;
    if (st_status(res) != ST_OK) {
        log_warn("offline messages of %s not read: %s", jid_bare(f->full), st_error(res));
        f->is_busy = false;
        flush_free(f);
        return;
    }
    if (!still_wanted(f)) return;
    int n = st_rows(res);
    if (n == 0) {
        flush_free(f); /* all sent and confirmed */
        return;
    }
    sess_t *s = sm_session(f->sm, f->full);
    size_t bytes = 0;
    int sent = 0;
    for (int i = 0; i < n && (sent == 0 || bytes < CHUNK_BYTES); i++) {
        const char *xml = st_text(res, i, 1);
        arena_t *a = arena_new(0);
        elem_t *m = xml ? xml_parse_fragment(a, xml, strlen(xml), NS_CLIENT) : NULL;
        if (m) {
            sm_send_to_sess(f->sm, s, m);
            metric_inc(&delivered_total);
        } else
            log_warn("offline message %s of %s does not parse: dropped", st_text(res, i, 0),
                     jid_bare(f->full));
        arena_free(a);
        bytes += xml ? strlen(xml) : 0;
        snprintf(f->last_id, sizeof f->last_id, "%s", st_text(res, i, 0));
        sent++;
    }
    log_info("%d offline message(s) sent to %s, waiting for it to read them", sent,
             jid_full(f->full));
    send_ping(f, s);
}

static void fetch_next(flush_t *f)
{
    char limit[16];
    snprintf(limit, sizeof limit, "%d", CHUNK_ROWS);
    const char *params[] = {jid_bare(f->full), f->done_id, limit};
    f->is_busy = true;
    f->ping_id[0] = '\0';
    storage_query(sm_storage(f->sm),
                  "SELECT id, stanza FROM offline WHERE owner = $1 AND id > CAST($2 AS BIGINT) "
                  "ORDER BY id LIMIT CAST($3 AS BIGINT)",
                  3, params, fetched, f);
}

static sm_verdict_t on_available(sm_t *sm, sm_pkt_t *pkt)
{
    if (!pkt->sess || pkt->sess->priority < 0) return SM_PASS;
    const char *bare = jid_bare(pkt->from);
    if (map_get(&flushing, bare)) return SM_PASS;
    flush_t *f = calloc(1, sizeof(*f));
    if (!f) log_fatal("out of memory");
    f->sm = sm;
    f->full = jid_dup(pkt->from);
    snprintf(f->done_id, sizeof f->done_id, "0");
    map_put(&flushing, bare, f);
    fetch_next(f);
    return SM_PASS;
}

/* The client's answer to the ping behind a chunk: that chunk was read. */
static sm_verdict_t on_session_iq(sm_t *sm, sm_pkt_t *pkt)
{
    if (!is(pkt->kind, "iq") || (!is(pkt->type, "result") && !is(pkt->type, "error")))
        return SM_PASS;
    flush_t *f = map_get(&flushing, jid_bare(pkt->from));
    const char *id = elem_attr(pkt->stanza, "id");
    if (!f || !f->ping_id[0] || !id || !is(id, f->ping_id) || !jid_equal(pkt->from, f->full))
        return SM_PASS;
    f->ping_id[0] = '\0';
    f->is_busy = true;
    const char *params[] = {jid_bare(f->full), f->last_id};
    storage_query(sm_storage(sm),
                  "DELETE FROM offline WHERE owner = $1 AND id <= CAST($2 AS BIGINT)", 2, params,
                  deleted, f);
    return SM_HANDLED;
}

/* The session the queue was going to ended: the rest waits for another. */
static sm_verdict_t on_session_end(sm_t *sm, sm_pkt_t *pkt)
{
    (void)sm;
    flush_t *f = pkt->sess ? map_get(&flushing, jid_bare(pkt->sess->jid)) : NULL;
    if (!f || !jid_equal(f->full, pkt->sess->jid)) return SM_PASS;
    if (f->is_busy)
        f->is_gone = true;
    else
        flush_free(f);
    return SM_PASS;
}

void mod_offline_init(sm_t *sm); /* listed in modules.c */

void mod_offline_init(sm_t *sm)
{
    quota = config_int(sm_config(sm), "sm.offline-quota");
    map_init(&flushing);
    metrics_counter("hearth_sm_offline_messages_total", "offline messages stored and delivered",
                    &stored_total, "event", "stored", NULL);
    metrics_counter("hearth_sm_offline_messages_total", "offline messages stored and delivered",
                    &delivered_total, "event", "delivered", NULL);
    sm_hook(sm, SM_CHAIN_UNDELIVERED, 500, on_undelivered);
    sm_hook(sm, SM_CHAIN_AVAILABLE, 500, on_available);
    sm_hook(sm, SM_CHAIN_IN_SESS, 150, on_session_iq);
    sm_hook(sm, SM_CHAIN_SESS_END, 500, on_session_end);
    sm_feature(sm, "msgoffline");
}
