/* hearthctl.h — what hearthctl.c shares with the files of its other
 * subcommands (tools/ctl_*.c). */
#ifndef HEARTH_HEARTHCTL_H
#define HEARTH_HEARTHCTL_H

#include <stdarg.h>
#include <stdbool.h>

#include "common.h"

/* The daemons' admin requests (sm/mod_admin.c, s2s/main.c). */
#define NS_ADMIN "urn:hearth:admin:1"

/* A subcommand's main returns this for a usage error: hearthctl prints its
 * usage and exits 2. */
#define CTL_USAGE (-1)

/* "hearthctl: " and the message on standard error; *status becomes 1. */
void ctl_fail(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ctl_vfail(int *status, const char *fmt, va_list ap);
/* hearth.xml at path, and hearthctl's log on standard error; NULL (the
 * reason said on standard error) if the file does not load. */
config_t *ctl_config_load(const char *path);
/* Is domain (prepared) one of the configured domains? */
bool is_local_domain(const config_t *config, const char *domain);
/* Is there a router account for hearthctl (role admin, or the shared one of
 * older configs)? */
bool has_admin_account(const config_t *config);

/* The JID argument of a subcommand, prepared: an account of a configured
 * domain (user alone: in the first one), with a resource only when
 * may_be_full. NULL, with the reason on standard error, if it is not. */
jid_t *ctl_jid_of(const config_t *config, const char *arg, bool may_be_full);

/* disable, enable, kick (ctl_account.c): argv[0] is the subcommand. */
bool ctl_account_handles(const char *cmd);
int ctl_account_main(const char *config_path, int argc, char **argv);

/* invite, reset (ctl_invite.c). */
bool ctl_invite_handles(const char *cmd);
int ctl_invite_main(const char *config_path, int argc, char **argv);

/* uploads, uploads purge (ctl_uploads.c): argv[0] is "uploads". */
int ctl_uploads_main(const char *config_path, int argc, char **argv);

/* hearthctl export / import (ctl_pie.c): argv[0] is the subcommand; the
 * exit status. */
int pie_main(const char *config_path, int argc, char **argv);

/* Requests to the running sm or s2s through the router (ctl_link.c). */
typedef struct ctl_link ctl_link_t;
typedef enum ctl_problem {
    CTL_ANSWERED,  /* iq is the answer: a result, or an error (ctl_link_error) */
    CTL_BOUNCED,   /* nobody serves the name; detail: the router's error */
    CTL_NO_ANSWER, /* the router took the request; no answer by the deadline */
    CTL_NO_ROUTER, /* the router was not reached by the deadline */
} ctl_problem_t;
typedef struct ctl_request {
    const char *to;      /* the sm's domain, or "s2s" */
    comp_role_t role;    /* whose answer counts: ROLE_SM or ROLE_S2S */
    const char *user;    /* the account it is about (picks the shard), or NULL */
    bool is_set;         /* an iq set (a notice, an action), else get */
    const char *name;    /* the urn:hearth:admin:1 element: online, s2s, created, ... */
    const char *jid;     /* its jid attribute, or NULL */
    uint64_t timeout_ms; /* from now */
} ctl_request_t;
/* iq lives during the call only. */
typedef void (*ctl_answer_fn)(void *ud, const elem_t *iq, ctl_problem_t problem,
                              const char *detail);
/* The link, before the switch of user (its secret may be root's); NULL
 * when the config has no router account hearthctl may use. */
ctl_link_t *ctl_link_new(uv_loop_t *loop, const config_t *config);
/* Ask; fn is called once. The link frees itself after the last answer. */
void ctl_link_ask(ctl_link_t *l, const ctl_request_t *req, ctl_answer_fn fn, void *ud);
/* A link nothing was asked on (NULL: nothing). */
void ctl_link_free(ctl_link_t *l);
/* An answer's error condition, or NULL for a result. */
const char *ctl_link_error(const elem_t *iq);
/* The answer's urn:hearth:admin:1 element of that name, or NULL. */
const elem_t *ctl_link_answer(const elem_t *iq, const char *name);

#endif
