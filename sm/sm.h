/* sm.h — the session manager's core, as its modules see it.
 *
 * The core (sm/core.c, sm/session.c, sm/deliver.c, sm/main.c) keeps the
 * sessions the c2s daemons open (DESIGN.md, "The session protocol"), runs
 * every stanza through named chains of hooks, and delivers what no hook
 * took. Each feature is one file sm/mod_NAME.c exposing one function,
 * `void mod_NAME_init(sm_t *sm)`, listed once in sm/modules.c; it registers
 * hooks and disco features and knows nothing of the other modules.
 *
 * Stanzas reach hooks as packets (sm_pkt_t): the tree, its parsed to/from,
 * and for client stanzas the session. The core stamps every client stanza's
 * from with the session's full JID before any hook sees it, so no module
 * ever trusts a client's from. A hook returns SM_PASS to let the next hook
 * (and finally the core) see the packet, or SM_HANDLED when it took it; a
 * hook that answers later (after a storage call) holds the packet with
 * sm_pkt_hold() and releases it when done. */
#ifndef HEARTH_SM_H
#define HEARTH_SM_H

#include <stdbool.h>

#include "common.h"
#include "storage.h"

typedef struct sm sm_t;
typedef struct sess sess_t;
typedef struct sm_pkt sm_pkt_t;
typedef struct origin origin_t; /* a client stanza not yet acknowledged (ack.c) */

#define SM_SLOTS 16

/* One client session: a bound resource on some c2s. */
struct sess {
    jid_t *jid;           /* the full JID */
    char *c2s;            /* the c2s instance holding the connection: "c2s-1" */
    char *cid;            /* its connection id there: "c2s-1:42" */
    char sid[33];         /* our id for it: random hex */
    char *route_head;     /* "<route to from user cid sid" of what goes to it,
                           * written once (sm_send_to_sess) */
    int priority;         /* of its last available presence (RFC 6121 §4.7.2.3) */
    bool is_available;    /* has sent available presence and not unavailable */
    bool is_interested;   /* has asked for the roster: gets roster pushes */
    elem_t *presence;     /* its last available presence (own arena), or NULL */
    void *slots[SM_SLOTS];/* per-module data, see sm_slot() */
    sess_t *next;         /* the user's next session */
    /* at-least-once delivery with its c2s (ack.c): the core's own */
    uint64_t in_h;        /* the highest seq taken from the c2s */
    uint64_t acked_in;    /* the highest one acknowledged */
    uint64_t out_seq;     /* the last seq routed to the c2s */
    ackq_t oq;            /* routed to the c2s, not acknowledged yet */
    origin_t *origins, *origins_tail;
    bool is_ack_due;
    sess_t *ack_next;
};

struct sm_pkt {
    elem_t *stanza;       /* owns its arena; lives as long as the packet */
    const char *kind;     /* "message", "presence" or "iq" */
    const char *type;     /* its type attribute, "" when absent */
    jid_t *from;          /* prepared; never NULL (the core refuses a stanza without a valid from) */
    jid_t *to;            /* prepared; NULL when the stanza is for the server (no to) */
    sess_t *sess;         /* the sending session (SM_CHAIN_IN_SESS only); valid during the hook call only */
    comp_role_t role;     /* who routed it to us, as the router marked it (s2s, sm,
                           * component, admin); ROLE_NONE for stanzas of our own
                           * sessions and modules */
    origin_t *origin;     /* the client stanza it was made from (the core's) */
    unsigned refs;
};

typedef enum sm_chain {
    /* A stanza from one of our sessions, from already stamped. Next, the
     * core sends it on by its to (sm_deliver). */
    SM_CHAIN_IN_SESS,
    /* A stanza for a local account, bare or full JID, from anyone (another
     * local user, a remote server, a component). Next, the core applies
     * RFC 6121 §8.5 (to a session, to sessions by priority, or
     * SM_CHAIN_UNDELIVERED). The account is known to exist. */
    SM_CHAIN_IN_USER,
    /* A stanza for the server itself (to = a local domain, or no to from
     * a session). Next, the core answers an IQ with service-unavailable. */
    SM_CHAIN_IN_SERVER,
    /* A message for a local account none of whose sessions can take it.
     * Next, the core answers service-unavailable (RFC 6121 §8.5.2.2). */
    SM_CHAIN_UNDELIVERED,
    /* A stanza the server is about to send on behalf of a local account
     * (sm_deliver with a local from: presence broadcasts, probe answers,
     * relayed messages). SM_HANDLED drops it (XEP-0191 blocking). */
    SM_CHAIN_OUT,
    /* A session sent its first available presence (pkt is that presence,
     * already broadcast). */
    SM_CHAIN_AVAILABLE,
    /* A session started (pkt->stanza is the session request) or is about
     * to end (the <session action='end'/>, or the core's own reason). The
     * session is pkt->sess; it still exists during the hook. */
    SM_CHAIN_SESS_START,
    SM_CHAIN_SESS_END,
    /* An account event a c2s reported: pkt->stanza is its <account
     * xmlns='urn:hearth:session:1' action='created|invited' jid='BARE'
     * [contact='BARE']/>, from its jid: an account made by in-band
     * registration (contact: the user whose invitation it used), or the
     * user whose invitation someone used (contact: the new account). */
    SM_CHAIN_ACCOUNT,
    SM_CHAINS
} sm_chain_t;

typedef enum sm_verdict { SM_PASS = 0, SM_HANDLED = 1 } sm_verdict_t;
typedef sm_verdict_t (*sm_hook_fn)(sm_t *sm, sm_pkt_t *pkt);

/* Register a hook; lower order runs first (modules use 100..900; the core's
 * own work is after every hook). */
void sm_hook(sm_t *sm, sm_chain_t chain, int order, sm_hook_fn fn);
/* Announce a feature in the server's disco#info (XEP-0030). */
void sm_feature(sm_t *sm, const char *var);
/* Features announced so far, NULL-terminated. */
const char *const *sm_features(const sm_t *sm);
/* A per-session slot number for a module's data (sess->slots[n]); the
 * module frees its data on SM_CHAIN_SESS_END. */
int sm_slot(sm_t *sm);

/* A packet around stanza, taking it (its arena is freed with the packet);
 * NULL (and the arena freed) when its from is missing or from or to is not
 * a valid JID. pkt->sess is NULL: set it for a session's chains. */
sm_pkt_t *sm_pkt_new(sm_t *sm, elem_t *stanza);
/* The same with its from and to JIDs already parsed (to NULL: none); it
 * takes them. */
sm_pkt_t *sm_pkt_new_jids(sm_t *sm, elem_t *stanza, jid_t *from, jid_t *to);
/* Keep a packet beyond the hook call; every hold needs a release. */
sm_pkt_t *sm_pkt_hold(sm_pkt_t *pkt);
void sm_pkt_release(sm_pkt_t *pkt);

/* Send a stanza on by its to: a local account (through SM_CHAIN_IN_USER
 * when this sm is the only one, sm.shards = 1; else through the router,
 * which picks the shard owning the account), the server, or anything else
 * through the router (s2s, components). SM_CHAIN_OUT runs first when from
 * is a local account. The tree is not taken; it is serialized or copied
 * before the call returns. */
void sm_deliver(sm_t *sm, const elem_t *stanza);
/* Whether message_to_user (RFC 6121 §8.5.2.1.1, §8.5.3) gives a message
 * for a local account (pkt->to) to its session s. */
bool sm_message_goes_to(sm_t *sm, const sm_pkt_t *pkt, const sess_t *s);
/* Send a stanza to one session's client. */
void sm_send_to_sess(sm_t *sm, sess_t *sess, const elem_t *stanza);
/* Around a loop that sends one stanza, unchanged, to several sessions (a
 * message to a bare JID, presence, a roster push): it is serialized once,
 * at the first sm_send_to_sess, and every route shares the bytes. One at a
 * time: a fan-out begun inside another serializes per session. */
void sm_fanout_begin(sm_t *sm, const elem_t *stanza);
void sm_fanout_end(sm_t *sm, const elem_t *stanza);
/* Answer pkt's stanza with a stanza error (nothing for an error). */
void sm_reply_error(sm_t *sm, sm_pkt_t *pkt, const char *condition);
/* Send an answer to pkt (built by the caller): straight to the asking
 * session when it is one of ours, else delivered like any stanza. Takes
 * the arena of answer. */
void sm_send_answer(sm_t *sm, const sm_pkt_t *pkt, elem_t *answer);
/* An IQ result for pkt's IQ (to/from swapped, same id), with payload (may
 * be NULL) as its child; sent to the session or delivered. */
void sm_reply_result(sm_t *sm, sm_pkt_t *pkt, const elem_t *payload);

/* End a session from the server's side (resource conflict, account
 * deleted, admin kick): its c2s gets <session action='ended' reason=…/>
 * and closes the client's stream with that stream error condition
 * ("conflict", "not-authorized", "policy-violation", ...); then
 * SM_CHAIN_SESS_END runs (the unavailable broadcast among its hooks) and
 * the session is freed: sess is invalid after the call. */
void sm_end_session(sm_t *sm, sess_t *sess, const char *reason);
/* Call fn for every session of this sm (fn must not end sessions). */
void sm_each_session(sm_t *sm, void (*fn)(sess_t *sess, void *ud), void *ud);
/* Run the hooks of a chain on a packet (for modules that raise a chain:
 * mod_presence runs SM_CHAIN_AVAILABLE). SM_HANDLED if a hook took it. */
sm_verdict_t sm_chain_run(sm_t *sm, sm_chain_t chain, sm_pkt_t *pkt);

/* Names the router advertises as bound now (components, daemons),
 * NULL-terminated; valid until the next advert. */
const char *const *sm_components(const sm_t *sm);

/* Forget that an account exists (after it was removed: mod_register), so
 * stanzas to it are answered as to a nonexistent account. */
void sm_account_forget(sm_t *sm, const char *bare);
/* An account was just created (by c2s registration, or hearthctl): forget
 * that it was known not to exist. */
void sm_account_created(sm_t *sm, const char *bare);

/* The account a request is about, for modules serving accounts (vCard,
 * private storage, disco, last activity), hooked on SM_CHAIN_IN_SESS and
 * SM_CHAIN_IN_USER alike: from a session with no to or to its own bare
 * JID, the sender's account (*is_own true); for an account's bare JID, that
 * account (*is_own when the sender is it). NULL for a full JID, and for a
 * session's request to another account (its SM_CHAIN_IN_USER pass answers). */
const char *sm_iq_account(const sm_pkt_t *pkt, bool *is_own);
/* A session's request to its own server, which answers for its account:
 * no to, its own bare JID, or its domain (the IQs of XEP-0280, XEP-0215). */
bool sm_is_to_own_server(const sm_pkt_t *pkt);
/* Sessions of a bare JID (NULL if none). */
sess_t *sm_sessions(sm_t *sm, const char *bare);
/* The session of a full JID, or NULL. */
sess_t *sm_session(sm_t *sm, const jid_t *full);
bool sm_is_local(const sm_t *sm, const char *domain);
/* The first configured domain (the server's own JID). */
const char *sm_domain(const sm_t *sm);

storage_t *sm_storage(sm_t *sm);
const config_t *sm_config(const sm_t *sm);
uv_loop_t *sm_loop(sm_t *sm);
/* The sm is stopping: once its sessions are ended and fn (below) ran, the
 * store takes no new work. */
bool sm_is_stopping(const sm_t *sm);
/* Call fn when the sm stops, after its sessions ended and before the store
 * closes (a module writes what it held back, stops its timers). */
void sm_at_stop(sm_t *sm, void (*fn)(sm_t *sm));

/* Accounts (account.c), for every asker (XEP-0077, the admin API): the
 * store's keys and the core's account cache changed together. done runs
 * once, maybe before the call returns. */
#define SM_PASSWORD_MAX 1023
typedef enum sm_account_result {
    SM_ACCOUNT_OK = 0,
    SM_ACCOUNT_EXISTS,       /* add: the account is there already */
    SM_ACCOUNT_NOT_FOUND,    /* password, remove: no such account */
    SM_ACCOUNT_BAD_PASSWORD, /* empty, over SM_PASSWORD_MAX, or refused by SASLprep */
    SM_ACCOUNT_FULL,         /* the store is full */
    SM_ACCOUNT_FAILED,       /* the store failed (logged) */
} sm_account_result_t;
typedef void (*sm_account_done)(sm_t *sm, void *ud, sm_account_result_t result);
/* A new account bare (a prepared bare JID) with password. */
void sm_account_add(sm_t *sm, const char *bare, const char *password, sm_account_done done,
                    void *ud);
void sm_account_set_password(sm_t *sm, const char *bare, const char *password, sm_account_done done,
                             void *ud);
/* Delete everything the account owns; after done(OK), its sessions end
 * with not-authorized. */
void sm_account_remove(sm_t *sm, const char *bare, sm_account_done done, void *ud);
/* End the sessions of bare (only the one of that resource unless
 * resource is NULL) with a stream error condition; how many ended. */
int sm_end_user_sessions(sm_t *sm, const char *bare, const char *resource, const char *reason);
/* The JID text names an account of a local domain (a bare JID with a
 * node): the JID (jid_free it), else NULL. */
jid_t *sm_local_account(const sm_t *sm, const char *text);

/* The modules, in sm/modules.c. */
typedef struct sm_module {
    const char *name;
    void (*init)(sm_t *sm);
} sm_module_t;
extern const sm_module_t sm_modules[];

#endif
