/* mod_offline.c — messages for users who are not online (XEP-0160).
 *
 * Stores a chat or normal message no session could take (the core hands it
 * over on SM_CHAIN_UNDELIVERED) in `offline`, with a XEP-0203 <delay/>,
 * up to sm.offline-quota messages per user: a full queue answers
 * service-unavailable, a failed write internal-server-error or
 * resource-constraint; nothing is dropped silently. Messages with nothing
 * worth keeping (chat states alone) are dropped, as XEP-0160 §3 says.
 * When a session sends available presence of non-negative priority
 * (SM_CHAIN_AVAILABLE), the queue goes to it oldest first and is then
 * deleted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "map.h"
#include "sm.h"

#define NS_DELAY "urn:xmpp:delay"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"

static long long quota;
static map_t flushing; /* owner -> (void *)1 while its queue is being sent */

static bool is(const char *a, const char *b)
{
    return strcmp(a, b) == 0;
}

/* XEP-0160 §3: a message with content: a body, a subject, or anything but
 * chat states. */
static bool is_worth_keeping(const elem_t *message)
{
    for (const elem_t *e = elem_first(message); e; e = elem_next(e, NULL, NULL)) {
        if (e->ns && is(e->ns, NS_CHATSTATES)) continue;
        if (is(e->name, "thread")) continue;
        return true;
    }
    return false;
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
    }
    sm_pkt_release(s->pkt);
    free(s);
}

static sm_verdict_t on_undelivered(sm_t *sm, sm_pkt_t *pkt)
{
    if (!is(pkt->kind, "message")) return SM_PASS;
    if (!is(pkt->type, "") && !is(pkt->type, "chat") && !is(pkt->type, "normal")) return SM_PASS;
    if (!is_worth_keeping(pkt->stanza)) return SM_HANDLED;
    if (quota <= 0) return SM_PASS;

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

typedef struct flush {
    sm_t *sm;
    jid_t *full;
    char *last_id;
} flush_t;

static void flush_free(flush_t *f)
{
    map_del(&flushing, jid_bare(f->full));
    jid_free(f->full);
    free(f->last_id);
    free(f);
}

static void deleted(void *ud, const st_result_t *res)
{
    flush_t *f = ud;
    if (st_status(res) != ST_OK)
        log_warn("offline messages of %s sent but not deleted: %s", jid_bare(f->full),
                 st_error(res));
    flush_free(f);
}

static void fetched(void *ud, const st_result_t *res)
{
    flush_t *f = ud;
    sm_t *sm = f->sm;
    sess_t *s = sm_session(sm, f->full);
    if (st_status(res) != ST_OK) {
        log_warn("offline messages of %s not read: %s", jid_bare(f->full), st_error(res));
        flush_free(f);
        return;
    }
    int n = st_rows(res);
    if (!s || n == 0) {
        /* The session left meanwhile: the messages wait for the next one. */
        flush_free(f);
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *xml = st_text(res, i, 1);
        arena_t *a = arena_new(0);
        elem_t *m = xml ? xml_parse_fragment(a, xml, strlen(xml), NS_CLIENT) : NULL;
        if (m)
            sm_send_to_sess(sm, s, m);
        else
            log_warn("offline message %s of %s does not parse: dropped", st_text(res, i, 0),
                     jid_bare(f->full));
        arena_free(a);
    }
    if (!(f->last_id = strdup(st_text(res, n - 1, 0)))) log_fatal("out of memory");
    log_info("%d offline message(s) sent to %s", n, jid_full(f->full));
    const char *params[] = {jid_bare(f->full), f->last_id};
    storage_query(sm_storage(sm),
                  "DELETE FROM offline WHERE owner = $1 AND id <= CAST($2 AS BIGINT)", 2, params,
                  deleted, f);
}

static sm_verdict_t on_available(sm_t *sm, sm_pkt_t *pkt)
{
    if (!pkt->sess || pkt->sess->priority < 0) return SM_PASS;
    const char *bare = jid_bare(pkt->from);
    if (map_get(&flushing, bare)) return SM_PASS;
    map_put(&flushing, bare, (void *)1);
    flush_t *f = calloc(1, sizeof(*f));
    if (!f) log_fatal("out of memory");
    f->sm = sm;
    f->full = jid_dup(pkt->from);
    const char *params[] = {bare};
    storage_query(sm_storage(sm), "SELECT id, stanza FROM offline WHERE owner = $1 ORDER BY id", 1,
                  params, fetched, f);
    return SM_PASS;
}

void mod_offline_init(sm_t *sm); /* listed in modules.c */

void mod_offline_init(sm_t *sm)
{
    quota = config_int(sm_config(sm), "sm.offline-quota");
    map_init(&flushing);
    sm_hook(sm, SM_CHAIN_UNDELIVERED, 500, on_undelivered);
    sm_hook(sm, SM_CHAIN_AVAILABLE, 500, on_available);
    sm_feature(sm, "msgoffline");
}
