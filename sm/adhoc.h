/* adhoc.h — ad-hoc commands (XEP-0050), as the modules offering commands
 * see the framework of sm/mod_adhoc.c.
 *
 * A module hands adhoc_register() a table of commands; mod_adhoc lists
 * them in disco#items of the node http://jabber.org/protocol/commands of
 * the server's JID, and runs them. A command is an administrator's (only
 * a session of a bare JID listed in sm.admin sees it listed or may execute
 * it; everyone else gets forbidden) unless is_for_users: then every
 * session of this server may.
 *
 * A command has one form or none. Without one (ask NULL), execute runs it
 * at once. With one, execute answers status='executing' with the form that
 * ask filled in and a new sessionid; the requester's complete (or execute)
 * with the submitted form then runs it, and cancel drops it. Either way
 * run answers exactly once, now or after a storage call, with adhoc_done
 * (status='completed', a note and/or a result form) or adhoc_fail (a
 * stanza error); the request is freed by that answer. */
#ifndef HEARTH_SM_ADHOC_H
#define HEARTH_SM_ADHOC_H

#include "sm.h"

#define NS_COMMANDS "http://jabber.org/protocol/commands"
#define NS_DATA "jabber:x:data"

typedef struct adhoc_req adhoc_req_t;

typedef struct adhoc_cmd {
    const char *node; /* e.g. http://jabber.org/protocol/admin#add-user */
    const char *name; /* human-readable, shown by clients */
    /* Fill in the fields of the form (x, type='form') asked at execute;
     * NULL: the command takes no form. */
    void (*ask)(adhoc_req_t *req, elem_t *x);
    /* Run the command: form is the submitted <x type='submit'/>, NULL for
     * a command without form. Answers with adhoc_done or adhoc_fail. */
    void (*run)(adhoc_req_t *req, const elem_t *form);
    /* Every user of this server may run it (else administrators only). */
    bool is_for_users;
} adhoc_cmd_t;

/* Offer the commands of a table ending with {NULL}; the table must outlive
 * the sm. */
void adhoc_register(sm_t *sm, const adhoc_cmd_t *cmds);

sm_t *adhoc_sm(const adhoc_req_t *req);
/* The full JID that asked, and the server domain it asked (a local one). */
const jid_t *adhoc_requester(const adhoc_req_t *req);
const char *adhoc_domain(const adhoc_req_t *req);
/* An arena that lives as long as the request, for results. */
arena_t *adhoc_arena(const adhoc_req_t *req);

/* Answer status='completed' with a note of type info (NULL: none) and a
 * result form (NULL: none; copied), and free the request. */
void adhoc_done(adhoc_req_t *req, const char *note, const elem_t *result);
/* Answer with a stanza error (RFC 6120 condition, optional text) and free
 * the request. */
void adhoc_fail(adhoc_req_t *req, const char *condition, const char *text);

/* ---- data forms (XEP-0004) ------------------------------------------------ */

/* <x xmlns='jabber:x:data' type=TYPE> with a title (may be NULL) and the
 * hidden FORM_TYPE field form_type (may be NULL). */
elem_t *adhoc_form_new(arena_t *a, const char *type, const char *title, const char *form_type);
/* A field of the form; label and value may be NULL. */
elem_t *adhoc_field_add(elem_t *x, const char *type, const char *var, const char *label,
                        const char *value);
/* Another <value/> of a field. */
void adhoc_value_add(elem_t *field, const char *value);
/* The field var of a submitted form, or NULL. */
const elem_t *adhoc_field(const elem_t *form, const char *var);
/* The first value of a field var, NULL when absent; a text-multi's values
 * joined by newlines into the request's arena (adhoc_text). */
const char *adhoc_value(const elem_t *form, const char *var);
const char *adhoc_text(adhoc_req_t *req, const elem_t *form, const char *var);

#endif
