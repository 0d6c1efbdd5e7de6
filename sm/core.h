/* core.h — the sm core's private parts, shared by main.c, core.c,
 * session.c and deliver.c. Modules include sm.h only. */
#ifndef HEARTH_SM_CORE_H
#define HEARTH_SM_CORE_H

#include "map.h"
#include "metrics.h"
#include "sm.h"

typedef struct hook {
    int order;
    sm_hook_fn fn;
} hook_t;

typedef struct chain {
    hook_t *hooks;
    int n;
} chain_t;

#define SM_AT_STOP_MAX 8

typedef struct away away_t;

struct sm {
    uv_loop_t *loop;
    const config_t *config;
    storage_t *st;
    comp_t *comp;
    const char *id; /* this instance, "sm" or "sm-2" */
    const char **domains;
    int ndomains;
    int shards; /* sm.shards */
    bool is_stopping;
    void (*at_stop[SM_AT_STOP_MAX])(sm_t *sm); /* sm_at_stop() */
    int nat_stop;

    chain_t chains[SM_CHAINS];
    const char **features; /* NULL-terminated */
    int nfeatures;
    int nslots;

    map_t sessions_by_sid; /* sid -> sess_t */
    map_t users;           /* bare JID -> first sess_t of the user */
    map_t accounts;        /* bare JID -> (void *)1: known to exist */
    map_t checking;        /* bare JID -> check_t: an account lookup in flight */
    map_t absent;          /* bare JID -> expiry (loop ms): known not to exist */
    unsigned long nsessions;
    char **components; /* advertised names, NULL-terminated */
    int ncomponents;
    bool was_down;     /* the router link was lost since the last on_ready */
    bool has_linked;   /* on_ready came once */
    bool had_s2s;      /* s2s was advertised once: one restarting is waited for */

    away_t *away;        /* c2s instances out of sight (hold.c) */
    size_t held_bytes, hold_max; /* in every session's queue (ack.c) */
    uint64_t c2s_grace;  /* ms */
    uv_timer_t hold_timer;
    origin_t *origin;    /* the client stanza being processed (ack.c) */
    sess_t *acks;        /* sessions with an acknowledgement due */
    ack_batch_t ack_batch;
    ackq_t s2sq;       /* routed to s2s, not acknowledged yet (ack.c) */
    uint64_t s2s_seq;
    bool is_gathering;     /* a new sm, c2s still re-announcing (hold.c) */
    char **gather;         /* the c2s not done yet */
    int ngather;
    sm_pkt_t **gathered;   /* messages waiting for the gathering's end */
    int ngathered, gathered_cap;
    uv_timer_t gather_timer;
    struct out_wait *outs, **outs_tail; /* stanzas waiting for the router or s2s */
    unsigned nouts;
    uint64_t out_wait; /* ms: s2s.connect-timeout */
    uv_timer_t out_timer;

    buf_t out; /* scratch for serializing routes */
    const elem_t *fan_of; /* the stanza of the fan-out under way (sm_fanout_begin) */
    buf_t fan;            /* its serialization, once made (empty before) */
};

/* Stanza namespaces we accept from routes; every stanza the sm handles is
 * moved to jabber:client first (deliver.c). */
void sm_stanza_normalize(elem_t *stanza);

/* What the core counts (metrics.c, docs/metrics.md). */
typedef struct sm_metrics {
    metric_counter_t from_sess[METRIC_KINDS], from_router[METRIC_KINDS], to_sess[METRIC_KINDS];
    metric_counter_t account_hits, account_misses;
    metric_counter_t messages_routed; /* messages from sessions sent on */
} sm_metrics_t;
extern sm_metrics_t sm_metrics;
void sm_metrics_init(sm_t *sm);
/* The HTTP admin API (http_api.c), when sm.api-listen is set. */
void sm_api_start(sm_t *sm);
void sm_api_stop(void);

/* Routes from the router (core.c). */
void sm_on_route(comp_t *c, elem_t *route, const xstream_raw_t *raw);
void sm_on_advert(comp_t *c, const char *name, bool available);
void sm_on_direct_down(comp_t *c, const char *name);

/* Sessions (session.c). */
void sess_on_request(sm_t *sm, const elem_t *route, elem_t *request);
/* The session a client route names (by sid, checked against from and
 * cid), or NULL. */
sess_t *sess_of_route(sm_t *sm, const elem_t *route);
/* End every session on a c2s (why: the log's reason). */
void sess_end_c2s(sm_t *sm, const char *c2s, const char *why);
/* Ask a c2s which of our sessions on it it still holds (session.c); how
 * many batches were sent. */
unsigned sess_check_c2s(sm_t *sm, const char *c2s);
/* Is the name advertised by the router now? */
bool sm_is_advertised(const sm_t *sm, const char *name);

/* hold.c: c2s instances out of sight and what waits for them. */
void hold_init(sm_t *sm);
void hold_close(sm_t *sm);
/* Keep the sessions of c2s and hold what is sent to them. */
void hold_c2s_away(sm_t *sm, const char *c2s);
/* Is c2s out of sight (its sessions' routes only queued)? */
bool hold_is_away(const sm_t *sm, const char *c2s);
/* c2s is advertised again: check its sessions; once it answered every
 * batch (hold_c2s_checked), send what was held. */
void hold_c2s_back(sm_t *sm, const char *c2s);
void hold_c2s_checked(sm_t *sm, const char *c2s);
/* c2s went away for good: its sessions end; held messages go anew. */
void hold_c2s_gone(sm_t *sm, const char *c2s);
/* The router link is up again: the c2s it advertises are back. */
void hold_linked(sm_t *sm);
/* A new sm is linked: wait for the advertised c2s to re-announce. */
void hold_gather(sm_t *sm);
/* A c2s said action='resumed'. */
void hold_c2s_resumed(sm_t *sm, const char *c2s);
/* Keep a message for a user without a session while gathering (true). */
bool hold_gathering(sm_t *sm, sm_pkt_t *pkt);
/* A stanza for the router that cannot go now (no router link, no s2s for
 * a remote domain while one restarts, or, bounced, for a user of an sm
 * shard that is restarting): it waits for them (hold.c), up to
 * s2s.connect-timeout, then is answered remote-server-timeout. */
void hold_out(sm_t *sm, sm_pkt_t *pkt, const char *user);
/* The router link is up, or s2s is there again: what waited goes. */
void hold_out_flush(sm_t *sm);
/* Route a stanza on (deliver.c); user: the route's shard key. */
void deliver_route_out(sm_t *sm, sm_pkt_t *pkt, const char *user);
/* A message kept while gathering, delivered now (deliver.c). */
void deliver_waiting(sm_t *sm, sm_pkt_t *pkt);
/* A message that could not reach its session: delivered again as if it
 * came from the router now (deliver.c). */
void deliver_again(sm_t *sm, const elem_t *message);

/* ack.c: at-least-once delivery with the c2s processes. */
void ack_init(sm_t *sm);
void ack_close(sm_t *sm);
/* Send the acknowledgements that are due now (stopping). */
void ack_flush(sm_t *sm);
/* After the sm wrote a route: the acknowledgements due that have gathered
 * long enough go along in the same write. */
void ack_along(sm_t *sm);
/* A client stanza of s with seq: one reference, released by the caller
 * once it is processed. */
origin_t *origin_new(sm_t *sm, sess_t *s, uint64_t seq);
origin_t *origin_ref(origin_t *o);
/* " origin='CID SEQ'" for a message made of o (nothing for NULL): the
 * receiving c2s drops a copy it had, which a new sm can make again when the
 * old one died before acknowledging o. A message makes one copy per
 * session; presence can make several for one session, so it has none. */
void origin_attr(const origin_t *o, buf_t *b);
void origin_unref(origin_t *o);
/* Acknowledge s's client stanzas again (a duplicate came). */
void ack_again(sm_t *sm, sess_t *s);
/* Keep a route to s (carrying seq) until its c2s acknowledges it. */
void ack_keep(sm_t *sm, sess_t *s, uint64_t seq, const char *data, size_t len);
/* s's c2s took everything up to h. */
void ack_taken(sm_t *sm, sess_t *s, uint64_t h);
/* Send s's queue again, in order. */
void ack_resend(sm_t *sm, sess_t *s);
/* s ends: its queue goes (its messages delivered anew when redeliver),
 * its origins forget it. */
void ack_session_ends(sm_t *sm, sess_t *s, bool redeliver);
/* <ack/> from a c2s. */
void ack_from_c2s(sm_t *sm, const char *c2s, const elem_t *ack);
/* Route a stanza for a remote server to s2s, kept until s2s acknowledges
 * it (s2s/ack.c), and <ack/> from s2s. */
void ack_to_s2s(sm_t *sm, const char *to, const char *from, const char *user,
                const elem_t *stanza);
void ack_from_s2s(sm_t *sm, const elem_t *ack);
/* s2s is there (again): what it did not acknowledge goes again. */
void ack_resend_s2s(sm_t *sm);
void sess_end_all(sm_t *sm);
/* The sm stops: what modules asked with sm_at_stop(), store still open. */
void sm_run_at_stop(sm_t *sm);

/* Delivery (deliver.c). Both take a stanza of the route sm_on_route is
 * handling, and its packet keeps that route's arena (comp_keep_route)
 * rather than a copy: the caller uses nothing of the route after them. */
/* A stanza from a session, from stamped. */
void deliver_from_sess(sm_t *sm, sess_t *sess, elem_t *stanza);
/* A stanza from elsewhere (another component, s2s, another shard), routed
 * by a daemon of that role under the name sender. */
void deliver_inbound(sm_t *sm, elem_t *stanza, comp_role_t role, const char *sender);
/* Refuse what a sender (its bound name and role) routed to us: logged
 * once per sender. */
void sm_refuse(comp_role_t role, const char *sender, const char *why);
/* A route that came back as an error (the payload is what we sent). */
void deliver_bounced(sm_t *sm, const elem_t *route, elem_t *stanza);
/* Does the local account bare exist? cb gets 1 (yes), 0 (no) or -1 (the
 * store failed), at once when known, else after a storage lookup; the
 * answers for one account come in the order they were asked. Positive
 * answers are cached until sm_account_forget(), negative ones for
 * ACCOUNT_ABSENT_TTL or until sm_account_created(). */
typedef void (*account_cb)(sm_t *sm, void *ud, int exists);
void sm_account_check(sm_t *sm, const char *bare, account_cb cb, void *ud);
/* The same, always asking the store (a session proves nothing). */
void sm_account_verify(sm_t *sm, const char *bare, account_cb cb, void *ud);

#endif
