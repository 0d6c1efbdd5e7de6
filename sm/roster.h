/* roster.h — rosters in memory, shared by mod_roster.c (roster IQs and the
 * subscription state machine) and mod_presence.c (who gets a broadcast,
 * who is probed, who may probe).
 *
 * A user's roster is loaded from roster_items and roster_version at the
 * first operation on it and kept while the user has sessions. Operations
 * on one user's roster run one at a time, in the order asked
 * (roster_with), so a read-modify-write never races another: an
 * operation gets the roster, may change items and save them
 * (roster_save), and calls roster_done() when finished. A failed save
 * drops the roster from memory; the next operation reloads it, so memory
 * never holds what the store refused. */
#ifndef HEARTH_SM_ROSTER_H
#define HEARTH_SM_ROSTER_H

#include "map.h"
#include "sm.h"

/* Subscription bits (RFC 6121 §3): none 0, to 1, from 2, both 3. */
#define SUB_TO 1u
#define SUB_FROM 2u

typedef struct ritem ritem_t;
struct ritem {
    char *jid;        /* the contact, prepared */
    char *name;       /* NULL: none */
    char *groups;     /* group names joined by '\n'; "" for none */
    unsigned sub;     /* SUB_TO | SUB_FROM */
    bool ask;         /* our subscribe request is pending */
    bool preapproved; /* RFC 6121 §3.4 */
    char *pending_in; /* their subscribe request awaiting an answer (XML) */
    ritem_t *next;
};

typedef struct roster_op roster_op_t;
typedef struct roster {
    char *owner;
    long long version; /* XEP-0237 */
    bool is_loaded;    /* false when loading failed: the op answers an error */
    ritem_t *items;
    map_t index; /* jid -> ritem_t */
    roster_op_t *head, *tail;
    bool is_busy; /* an op runs (or the roster loads) */
    enum { LOAD_NONE, LOAD_RUNNING, LOAD_DONE } load_state;
} roster_t;

typedef void (*roster_fn)(sm_t *sm, roster_t *r, void *ud);
/* Run fn on owner's roster once it is loaded and every earlier op on it
 * is done; fn must call roster_done() once, maybe later. */
void roster_with(sm_t *sm, const char *owner, roster_fn fn, void *ud);
void roster_done(sm_t *sm, roster_t *r);
/* The user's last session is ending: the roster may leave memory. */
void roster_forget_if_idle(sm_t *sm, const char *owner);

ritem_t *roster_find(const roster_t *r, const char *jid);
/* A new item (subscription none) for jid, not saved yet. */
ritem_t *roster_add(roster_t *r, const char *jid);
/* Whether an item shows in the roster: not one that only holds an inbound
 * request (RFC 6121 §3.1.3: a request does not add the contact). */
bool ritem_is_visible(const ritem_t *it);
void ritem_set(char **field, const char *value);

/* Write item (after changing it in memory), or delete it from the store
 * and memory (is_removal), with the next roster version, in one
 * transaction. cb gets ST_OK (r->version is the new one) or the failure
 * (the roster then left memory). */
typedef void (*roster_saved_fn)(sm_t *sm, roster_t *r, void *ud, st_status_t status);
void roster_save(sm_t *sm, roster_t *r, ritem_t *it, bool is_removal, roster_saved_fn cb, void *ud);

/* Send owner's current presence to `to` on its behalf: the last presence of
 * each available session (from its full JID), or, with is_unavailable or
 * when none is available, unavailable presence (from the bare JID when no
 * session is available). Through sm_deliver, so SM_CHAIN_OUT applies. */
void presence_send_current(sm_t *sm, const char *owner, const char *to, bool is_unavailable);

#endif
