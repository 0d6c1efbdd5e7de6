/* fuzz_jid.c — libFuzzer target for JID preparation (jid.h).
 *
 * The first byte picks what the rest is: a whole JID for jid_new and
 * jid_prep, or three parts for jid_new_parts (two bytes of lengths, then
 * the bytes; parts are C strings, so a NUL ends one early). Besides the
 * sanitizers, the oracles:
 *   - jid_new and jid_prep agree: both refuse (with a reason), or both
 *     give the same full form;
 *   - idempotence: a prepared JID is accepted back, by jid_new, jid_prep
 *     and jid_new_parts from its own parts, and comes out unchanged;
 *   - the forms hang together: bare is node@domain (or domain), full is
 *     bare/resource (or bare), each part is 1 to JID_PART_MAX bytes when
 *     present, jid_dup and jid_equal agree;
 *   - parts without separators give the same JID as the string they make.
 * Build and run: test/fuzz/run.sh (FUZZ_TARGETS=jid). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jid.h"

static void check(int cond, const char *what, const char *jid)
{
    if (!cond) {
        fprintf(stderr, "fuzz_jid: broken invariant: %s (JID '%s')\n", what, jid ? jid : "");
        abort();
    }
}

/* j is a valid JID: its forms, and what it prepares to again. */
static void check_prepared(const jid_t *j)
{
    const char *full = jid_full(j), *bare = jid_bare(j);
    const char *node = jid_node(j), *domain = jid_domain(j), *resource = jid_resource(j);
    size_t nl = strlen(node), dl = strlen(domain), rl = strlen(resource);
    char want[JID_STRING_MAX];

    check(dl >= 1 && dl <= JID_PART_MAX, "domain is 1 to 1023 bytes", full);
    check(nl <= JID_PART_MAX && rl <= JID_PART_MAX, "parts are at most 1023 bytes", full);
    check(jid_has_node(j) == (nl > 0), "has_node says whether there is a node", full);
    check(jid_has_resource(j) == (rl > 0), "has_resource says whether there is a resource", full);
    check(!strpbrk(node, "@/") && !strpbrk(domain, "@/"), "node and domain hold no '@' or '/'",
          full);
    snprintf(want, sizeof want, "%s%s%s", node, nl ? "@" : "", domain);
    check(strcmp(bare, want) == 0, "bare is node@domain", full);
    snprintf(want, sizeof want, "%s%s%s", bare, rl ? "/" : "", resource);
    check(strcmp(full, want) == 0, "full is bare/resource", full);
    check(strlen(full) < JID_STRING_MAX, "full fits JID_STRING_MAX", full);

    jid_t *d = jid_dup(j);
    check(jid_equal(j, d) && jid_equal_bare(j, d) && strcmp(jid_full(d), full) == 0,
          "a dup is equal", full);
    jid_free(d);

    /* Idempotence, three ways in. */
    const char *why = NULL;
    char again[JID_STRING_MAX];
    check(jid_prep(full, strlen(full), again, &why) == 0, "the prepared form is accepted back",
          full);
    check(strcmp(again, full) == 0, "the prepared form prepares to itself", full);
    jid_t *k = jid_new(full, strlen(full), NULL);
    check(k && jid_equal(j, k), "jid_new of the prepared form gives the same JID", full);
    jid_free(k);
    k = jid_new_parts(node, domain, resource, NULL);
    check(k && jid_equal(j, k), "jid_new_parts of the prepared parts gives the same JID", full);
    jid_free(k);
    k = jid_new(bare, strlen(bare), NULL);
    check(k && jid_equal_bare(j, k) && !jid_has_resource(k), "the bare form is a JID", full);
    jid_free(k);
}

static void fuzz_string(const char *s, size_t len)
{
    const char *why = NULL, *why_prep = NULL;
    char out[JID_STRING_MAX];
    jid_t *j = jid_new(s, len, &why);
    int rc = jid_prep(s, len, out, &why_prep);
    check((j != NULL) == (rc == 0), "jid_new and jid_prep agree on validity", j ? jid_full(j) : "");
    if (!j) {
        check(why && *why && why_prep && strcmp(why, why_prep) == 0,
              "a refusal has a reason, the same both ways", "");
        return;
    }
    check(strcmp(out, jid_full(j)) == 0, "jid_new and jid_prep give the same form", jid_full(j));
    check_prepared(j);
    jid_free(j);
}

static void fuzz_parts(const uint8_t *data, size_t size)
{
    if (size < 2) return;
    size_t rest = size - 2;
    size_t nl = data[0] % (rest + 1);
    size_t dl = data[1] % (rest - nl + 1);
    size_t rl = rest - nl - dl;
    char *node = strndup((const char *)data + 2, nl);
    char *domain = strndup((const char *)data + 2 + nl, dl);
    char *resource = strndup((const char *)data + 2 + nl + dl, rl);
    if (!node || !domain || !resource) abort();

    const char *why = NULL;
    jid_t *j = jid_new_parts(node, domain, resource, &why);
    if (j) {
        check_prepared(j);
    } else {
        check(why && *why, "a refusal has a reason", "");
    }

    /* Without separators in the node and domain, the parts make a string
     * that splits back into them. */
    if (!strpbrk(node, "@/") && !strpbrk(domain, "@/")) {
        size_t n = strlen(node), d = strlen(domain), r = strlen(resource);
        char *s = malloc(n + d + r + 3), *p = s;
        if (!s) abort();
        if (n) p += sprintf(p, "%s@", node);
        p += sprintf(p, "%s", domain);
        if (r) p += sprintf(p, "/%s", resource);
        jid_t *k = jid_new(s, (size_t)(p - s), NULL);
        check((j == NULL) == (k == NULL), "parts and their string agree on validity", s);
        if (j) check(jid_equal(j, k), "parts and their string give the same JID", s);
        jid_free(k);
        free(s);
    }
    jid_free(j);
    free(node);
    free(domain);
    free(resource);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 1)
        fuzz_parts(data + 1, size - 1);
    else
        fuzz_string((const char *)data + 1, size - 1);
    return 0;
}
