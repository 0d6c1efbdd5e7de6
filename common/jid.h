/* jid.h — Jabber IDs: split, prepare, compare.
 *
 * Split as RFC 7622 says; prepared as RFC 6122 did, with libidn's XMPP
 * stringprep profiles (Nodeprep, Resourceprep) and the domain with IDNA2003
 * (Nameprep; ToASCII, then the Unicode form is kept), not with RFC 7622's
 * PRECIS profiles. Each part must be 1 to 1023 bytes after preparation.
 * Preparation is idempotent: a prepared JID prepares to itself, and input
 * whose prepared form would not is refused. ASCII input takes a fast path
 * with the same result. Invalid input is reported with a reason, never
 * crashed on. */
#ifndef HEARTH_JID_H
#define HEARTH_JID_H

#include <stdbool.h>
#include <stddef.h>

#define JID_PART_MAX 1023

typedef struct jid jid_t;

/* Parse and prepare len bytes of s. NULL if invalid, with *why (if not
 * NULL) set to a static reason such as "empty domain". */
jid_t *jid_new(const char *s, size_t len, const char **why);
/* Build from parts (node and resource may be NULL or ""). */
jid_t *jid_new_parts(const char *node, const char *domain, const char *resource,
                     const char **why);
jid_t *jid_dup(const jid_t *j);
void jid_free(jid_t *j);

/* The parts and forms, prepared, NUL-terminated, valid while j lives.
 * Absent parts are "". */
const char *jid_node(const jid_t *j);
const char *jid_domain(const jid_t *j);
const char *jid_resource(const jid_t *j);
const char *jid_bare(const jid_t *j); /* node@domain or domain */
const char *jid_full(const jid_t *j); /* with /resource when there is one */
bool jid_has_node(const jid_t *j);
bool jid_has_resource(const jid_t *j);

/* Equality of prepared forms. */
bool jid_equal(const jid_t *a, const jid_t *b);
bool jid_equal_bare(const jid_t *a, const jid_t *b);

/* Prepare a JID string into out (a caller buffer of JID_STRING_MAX bytes):
 * 0 on success, -1 if invalid. For checks that need no object. */
#define JID_STRING_MAX (3 * JID_PART_MAX + 3)
int jid_prep(const char *s, size_t len, char *out, const char **why);

#endif
