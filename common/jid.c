/* jid.c — Jabber IDs: split per RFC 7622, prepare with stringprep, compare.
 *
 * A JID is split as RFC 7622 §3.1 says: the resourcepart is everything
 * after the first '/', the localpart everything before the first '@' of
 * what remains, the domainpart the rest. Parts are then prepared as RFC
 * 6122 did, not with RFC 7622's PRECIS profiles: the XMPP stringprep
 * profiles of libidn (Nodeprep, Resourceprep; the domain label by label
 * with IDNA2003: A-labels are decoded, every label must pass ToASCII with
 * the STD3 rules, and what is kept is its Nameprep'd Unicode form, i.e.
 * ToUnicode and lower case). An IPv6 literal in brackets is kept in
 * inet_ntop's canonical form.
 *
 * Preparation is idempotent: what jid_new accepts prepares to itself
 * again, so a JID the server shows (in a roster, say) names the same
 * thing when a client sends it back. Stringprep and IDNA2003 alone are
 * not: Nameprep maps the label "xn--abc" U+017F (long s) to the ASCII
 * "xn--abcs", which is then read as an A-label that does not decode, and
 * "xn--bcher-kva" U+00AD (soft hyphen) to "xn--bcher-kva", which then
 * decodes to "bücher". So a part prepared by libidn is prepared a second
 * time, and refused unless it comes out unchanged.
 *
 * The router and the sm parse a JID for every stanza, so a part made of
 * ASCII only takes a table-driven fast path that gives the same result as
 * libidn would (test_jid checks it byte by byte against libidn); its
 * result is a fixed point by construction, so only the slow path pays for
 * the second preparation. Either way a jid_t is one allocation holding
 * every form as a C string.
 *
 * Unassigned code points (Unicode 3.2, libidn's tables) are accepted, as
 * stringprep allows for queries: otherwise every emoji and every script
 * newer than 2002 would be refused in MUC nicknames and resources. */
#include "jid.h"

#include <arpa/inet.h>
#include <idna.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>

#include "log.h"

struct jid {
    const char *node, *domain, *resource, *bare, *full;
    unsigned short node_len, domain_len, resource_len;
    size_t size; /* of the whole allocation, for jid_dup */
    char mem[];
};

/* Raw parts longer than this are refused before any preparation: mapping
 * can shrink a string, but not by four times in any real JID. */
#define RAW_PART_MAX (4 * JID_PART_MAX)

/* ---- ASCII fast path -----------------------------------------------------
 * For each byte: what it becomes in a prepared part, 0 if the part is
 * invalid with it, or SLOW if the part needs libidn (non-ASCII). */
#define SLOW 0x80

/* Nodeprep on ASCII: B.2 folds A-Z; C.1.1 (space), C.2.1 (controls) and
 * the Nodeprep table (" & ' / : < > @) are prohibited. */
static unsigned char node_map[256];
/* Resourceprep on ASCII: no mapping; C.2.1 (controls) prohibited; space
 * is allowed. */
static unsigned char resource_map[256];
/* A domain label in ASCII: letters (folded), digits and '-' (STD3). */
static unsigned char label_map[256];

__attribute__((constructor)) static void init_maps(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char n = (unsigned char)c, r = (unsigned char)c, l = 0;
        if (c >= 0x80) {
            n = r = l = SLOW;
        } else if (c < 0x20 || c == 0x7f) {
            n = r = 0;
        } else {
            if (c >= 'A' && c <= 'Z') n = (unsigned char)(c + 32);
            if (strchr(" \"&'/:<>@", c)) n = 0;
            if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') l = (unsigned char)c;
            if (c >= 'A' && c <= 'Z') l = (unsigned char)(c + 32);
        }
        node_map[c] = n;
        resource_map[c] = r;
        label_map[c] = l;
    }
}

/* Map s[0..len) through map into out. 1: done; 0: a byte is invalid;
 * -1: non-ASCII, take the slow path. */
static int map_ascii(const unsigned char *map, const char *s, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char m = map[(unsigned char)s[i]];
        if (m == 0) return 0;
        if (m == SLOW) return -1;
        out[i] = (char)m;
    }
    return 1;
}

/* ---- UTF-8 <-> UCS-4 ---------------------------------------------------- */

/* Strict: no overlong forms, surrogates or code points past U+10FFFF.
 * Returns the number of code points, or -1. out holds len entries. */
static long utf8_decode(const char *s, size_t len, uint32_t *out)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    long n = 0;
    while (p < end) {
        uint32_t c = *p++;
        int more;
        uint32_t min;
        if (c < 0x80) {
            more = 0, min = 0;
        } else if ((c & 0xe0) == 0xc0) {
            more = 1, min = 0x80, c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            more = 2, min = 0x800, c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            more = 3, min = 0x10000, c &= 0x07;
        } else {
            return -1;
        }
        if (end - p < more) return -1;
        for (int i = 0; i < more; i++) {
            if ((p[i] & 0xc0) != 0x80) return -1;
            c = (c << 6) | (p[i] & 0x3f);
        }
        p += more;
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return -1;
        out[n++] = c;
    }
    return n;
}

/* Encode n code points into out (cap bytes). Bytes written, or -1 if they
 * do not fit. */
static long utf8_encode(const uint32_t *cp, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = cp[i];
        size_t need = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
        if (o + need > cap) return -1;
        switch (need) {
        case 1:
            out[o++] = (char)c;
            break;
        case 2:
            out[o++] = (char)(0xc0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3f));
            break;
        case 3:
            out[o++] = (char)(0xe0 | (c >> 12));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (c & 0x3f));
            break;
        default:
            out[o++] = (char)(0xf0 | (c >> 18));
            out[o++] = (char)(0x80 | ((c >> 12) & 0x3f));
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3f));
            out[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    return (long)o;
}

static void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (!p) log_fatal("jid: out of memory");
    return p;
}

/* ---- localpart and resourcepart ---------------------------------------- */

enum part { NODE, RESOURCE };

static const char *const too_long[] = {"localpart too long", "resourcepart too long"};
static const char *const forbidden[] = {"forbidden character in localpart",
                                        "forbidden character in resourcepart"};

/* Prepare a non-ASCII localpart or resourcepart with libidn into out
 * (JID_PART_MAX bytes). Length written, or -1 with *why. */
static long prep_slow(enum part part, const char *s, size_t len, char *out, const char **why)
{
    static const char *const bidi[] = {"localpart violates the bidi rule",
                                       "resourcepart violates the bidi rule"};
    /* Mapping may grow a string (case folding up to three code points,
     * NFKC more), so leave room beyond the input. */
    size_t cap = 4 * len + 64;
    if (memchr(s, 0, len)) {
        /* U+0000 is prohibited, and libidn's NFKC would stop at it. */
        *why = forbidden[part];
        return -1;
    }
    uint32_t *ucs = xmalloc(cap * sizeof *ucs);
    long n = utf8_decode(s, len, ucs), written = -1;
    if (n < 0) {
        *why = "invalid UTF-8";
        goto done;
    }
    size_t ulen = (size_t)n;
    int rc = stringprep_4i(ucs, &ulen, cap, 0,
                           part == NODE ? stringprep_xmpp_nodeprep : stringprep_xmpp_resourceprep);
    switch (rc) {
    case STRINGPREP_OK:
        break;
    case STRINGPREP_CONTAINS_PROHIBITED:
        *why = forbidden[part];
        goto done;
    case STRINGPREP_BIDI_BOTH_L_AND_RAL:
    case STRINGPREP_BIDI_LEADTRAIL_NOT_RAL:
    case STRINGPREP_BIDI_CONTAINS_PROHIBITED:
        *why = bidi[part];
        goto done;
    case STRINGPREP_TOO_SMALL_BUFFER:
        *why = too_long[part];
        goto done;
    case STRINGPREP_MALLOC_ERROR:
        log_fatal("jid: out of memory in libidn");
    default:
        *why = part == NODE ? "invalid localpart" : "invalid resourcepart";
        goto done;
    }
    written = utf8_encode(ucs, ulen, out, JID_PART_MAX);
    if (written < 0) *why = too_long[part];
done:
    free(ucs);
    return written;
}

static bool is_ascii(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static long prep_part(enum part part, const char *s, size_t len, char *out, bool is_checked,
                      const char **why);

/* Is y (n bytes, what prep_part made of some input) prepared to itself
 * again? If not, *why says what is wrong with it. */
static bool is_fixed_point_part(enum part part, const char *y, size_t n, const char **why)
{
    static const char *const unstable[] = {"localpart changes when prepared again",
                                           "resourcepart changes when prepared again"};
    char again[JID_PART_MAX];
    const char *reason = NULL;
    long m = prep_part(part, y, n, again, false, &reason);
    if (m == (long)n && memcmp(again, y, n) == 0) return true;
    *why = m < 0 ? reason : unstable[part];
    return false;
}

/* Prepare a localpart or resourcepart into out (JID_PART_MAX bytes).
 * Length written, or -1 with *why. is_checked: refuse a result of the
 * slow path that is not a fixed point (see the top of this file). */
static long prep_part(enum part part, const char *s, size_t len, char *out, bool is_checked,
                      const char **why)
{
    static const char *const empty[] = {"empty localpart", "empty resourcepart"};
    if (len == 0) {
        *why = empty[part];
        return -1;
    }
    if (len > RAW_PART_MAX) {
        *why = too_long[part];
        return -1;
    }
    if (len <= JID_PART_MAX) {
        int rc = map_ascii(part == NODE ? node_map : resource_map, s, len, out);
        if (rc == 1) return (long)len;
        /* Invalid in ASCII; if the part has non-ASCII bytes further on,
         * let libidn give its reason (invalid UTF-8, say). */
        if (rc == 0 && is_ascii(s, len)) {
            *why = forbidden[part];
            return -1;
        }
    }
    long n = prep_slow(part, s, len, out, why);
    if (n == 0) {
        /* Everything mapped to nothing (soft hyphens, say). */
        *why = empty[part];
        return -1;
    }
    /* Input already prepared (the usual case: JIDs travel prepared) is a
     * fixed point for free. */
    if (n > 0 && is_checked && !((size_t)n == len && memcmp(out, s, len) == 0) &&
        !is_fixed_point_part(part, out, (size_t)n, why))
        return -1;
    return n;
}

/* ---- domainpart --------------------------------------------------------- */

static bool is_dot(uint32_t c)
{
    /* IDNA2003 §3.1: these separate labels like '.' does. */
    return c == 0x2e || c == 0x3002 || c == 0xff0e || c == 0xff61;
}

static bool is_ace(const uint32_t *l, size_t n)
{
    return n >= 4 && (l[0] | 0x20) == 'x' && (l[1] | 0x20) == 'n' && l[2] == '-' && l[3] == '-';
}

/* One label (n >= 1 code points) into out: its Nameprep'd Unicode form.
 * Bytes written, or -1 with *why. scratch holds 4n + 64 code points. */
static long prep_label(const uint32_t *label, size_t n, uint32_t *scratch, char *out, size_t cap,
                       const char **why)
{
    const int flags = IDNA_ALLOW_UNASSIGNED | IDNA_USE_STD3_ASCII_RULES;
    size_t scap = 4 * n + 64, ulen = scap;
    bool ascii = true;
    for (size_t i = 0; i < n; i++)
        ascii &= label[i] < 0x80;

    if (ascii && !is_ace(label, n)) {
        /* What ToASCII and Nameprep do to an ASCII label, in ToASCII's
         * order: LDH only, no '-' at either end, 63 bytes at most; then
         * fold case. */
        for (size_t i = 0; i < n; i++) {
            if (!label_map[label[i]]) {
                *why = "invalid character in domain";
                return -1;
            }
        }
        if (label[0] == '-' || label[n - 1] == '-') {
            *why = "domain label starts or ends with '-'";
            return -1;
        }
        if (n > 63) {
            *why = "domain label too long";
            return -1;
        }
        if (n > cap) {
            *why = "domain too long";
            return -1;
        }
        for (size_t i = 0; i < n; i++)
            out[i] = (char)label_map[label[i]];
        return (long)n;
    }
    if (ascii && is_ace(label, n)) {
        /* An A-label: keep its U-label, which must survive the round trip
         * through ToASCII (libidn's ToUnicode checks that). */
        if (idna_to_unicode_44i(label, n, scratch, &ulen, flags) != IDNA_SUCCESS) {
            *why = "invalid A-label in domain";
            return -1;
        }
    } else {
        memcpy(scratch, label, n * sizeof *label);
        ulen = n;
    }

    char ace[64];
    switch (idna_to_ascii_4i(scratch, ulen, ace, flags)) {
    case IDNA_SUCCESS:
        break;
    case IDNA_CONTAINS_NON_LDH:
    case IDNA_STRINGPREP_ERROR:
        *why = "invalid character in domain";
        return -1;
    case IDNA_CONTAINS_MINUS:
        *why = "domain label starts or ends with '-'";
        return -1;
    case IDNA_INVALID_LENGTH:
        *why = "domain label too long";
        return -1;
    case IDNA_MALLOC_ERROR:
        log_fatal("jid: out of memory in libidn");
    default:
        *why = "invalid domain";
        return -1;
    }

    /* ToASCII accepted it, so Nameprep does too: that is ToUnicode's
     * result (lower case; an A-label's Unicode form). */
    if (stringprep_4i(scratch, &ulen, scap, 0, stringprep_nameprep) != STRINGPREP_OK) {
        *why = "invalid domain";
        return -1;
    }
    long w = utf8_encode(scratch, ulen, out, cap);
    if (w < 0) *why = "domain too long";
    return w;
}

static long prep_domain(const char *s, size_t len, char *out, bool is_checked, const char **why);

/* Is y (n bytes, what prep_domain_slow made of some input) prepared to
 * itself again? If not, *why says what is wrong with it. */
static bool is_fixed_point_domain(const char *y, size_t n, const char **why)
{
    char again[JID_PART_MAX];
    const char *reason = NULL;
    long m = prep_domain(y, n, again, false, &reason);
    if (m == (long)n && memcmp(again, y, n) == 0) return true;
    *why = m < 0 ? reason : "domain changes when prepared again";
    return false;
}

/* A domain (len >= 1) with non-ASCII bytes, A-labels or more than
 * JID_PART_MAX bytes, into out (JID_PART_MAX bytes). has_root_dot: the
 * caller took off a trailing '.' already, so no other dot may go. */
static long prep_domain_slow(const char *s, size_t len, char *out, bool has_root_dot,
                             bool is_checked, const char **why)
{
    if (memchr(s, 0, len)) {
        /* Not LDH, and libidn's NFKC would stop at it. */
        *why = "invalid character in domain";
        return -1;
    }
    uint32_t *ucs = xmalloc((len + 4 * len + 64) * sizeof *ucs);
    uint32_t *scratch = ucs + len;
    long n = utf8_decode(s, len, ucs), o = 0;
    if (n < 0) {
        *why = "invalid UTF-8";
        goto fail;
    }
    /* The root's label, RFC 7622 §3.2: one dot, of any of the four. */
    if (!has_root_dot && n > 0 && is_dot(ucs[n - 1])) n--;
    if (n == 0) {
        *why = "empty domain";
        goto fail;
    }
    for (long start = 0; start <= n;) {
        long end = start;
        while (end < n && !is_dot(ucs[end]))
            end++;
        if (end == start) {
            *why = "empty label in domain";
            goto fail;
        }
        if (start > 0) {
            if (o >= JID_PART_MAX) {
                *why = "domain too long";
                goto fail;
            }
            out[o++] = '.';
        }
        long w = prep_label(ucs + start, (size_t)(end - start), scratch, out + o,
                            JID_PART_MAX - (size_t)o, why);
        if (w < 0) goto fail;
        o += w;
        start = end + 1;
    }
    free(ucs);
    /* Input already prepared is a fixed point for free. */
    if (is_checked && !((size_t)o == len && memcmp(out, s, len) == 0) &&
        !is_fixed_point_domain(out, (size_t)o, why))
        return -1;
    return o;
fail:
    free(ucs);
    return -1;
}

/* "[IPv6]", kept as inet_ntop writes it. */
static long prep_ipv6(const char *s, size_t len, char *out, const char **why)
{
    char text[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    if (len < 3 || s[len - 1] != ']' || len - 2 >= sizeof text) goto bad;
    memcpy(text, s + 1, len - 2);
    text[len - 2] = '\0';
    if (memchr(text, 0, len - 2) || inet_pton(AF_INET6, text, addr) != 1) goto bad;
    if (!inet_ntop(AF_INET6, addr, text, sizeof text)) goto bad;
    size_t n = strlen(text);
    out[0] = '[';
    memcpy(out + 1, text, n);
    out[n + 1] = ']';
    return (long)n + 2;
bad:
    *why = "invalid IPv6 literal in domain";
    return -1;
}

/* Prepare a domainpart into out (JID_PART_MAX bytes). is_checked: refuse
 * a result of the slow path that is not a fixed point. */
static long prep_domain(const char *s, size_t len, char *out, bool is_checked, const char **why)
{
    bool has_root_dot = len > 0 && s[len - 1] == '.';
    if (has_root_dot) len--; /* RFC 7622 §3.2: one trailing dot */
    if (len == 0) {
        *why = "empty domain";
        return -1;
    }
    if (s[0] == '[') return prep_ipv6(s, len, out, why);
    if (len > RAW_PART_MAX) {
        *why = "domain too long";
        return -1;
    }
    if (len > JID_PART_MAX) return prep_domain_slow(s, len, out, has_root_dot, is_checked, why);

    /* Fast path: LDH labels of 1 to 63 bytes, no '-' at either end, no
     * A-label (those are decoded by the slow path). */
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            size_t n = i - label;
            if (n == 0) {
                *why = "empty label in domain";
                return -1;
            }
            if (out[label] == '-' || out[i - 1] == '-') {
                *why = "domain label starts or ends with '-'";
                return -1;
            }
            if (n > 63) {
                *why = "domain label too long";
                return -1;
            }
            if (n >= 4 && out[label] == 'x' && out[label + 1] == 'n' && out[label + 2] == '-' &&
                out[label + 3] == '-')
                return prep_domain_slow(s, len, out, has_root_dot, is_checked, why);
            if (i < len) out[i] = '.';
            label = i + 1;
            continue;
        }
        unsigned char m = label_map[(unsigned char)s[i]];
        if (m == SLOW) return prep_domain_slow(s, len, out, has_root_dot, is_checked, why);
        if (m == 0) {
            /* Non-ASCII further on: libidn judges (and explains) it. */
            for (size_t j = i; j < len; j++)
                if ((unsigned char)s[j] >= 0x80)
                    return prep_domain_slow(s, len, out, has_root_dot, is_checked, why);
            *why = "invalid character in domain";
            return -1;
        }
        out[i] = (char)m;
    }
    return (long)len;
}

/* ---- whole JIDs --------------------------------------------------------- */

struct prepared {
    char full[JID_STRING_MAX]; /* node@domain/resource, NUL-terminated */
    size_t node_len, domain_len, resource_len;
    bool has_node, has_resource;
};

static int prepare(const char *node, size_t node_len, bool has_node, const char *domain,
                   size_t domain_len, const char *resource, size_t resource_len, bool has_resource,
                   struct prepared *p, const char **why)
{
    size_t o = 0;
    long n;
    p->has_node = has_node;
    p->has_resource = has_resource;
    p->node_len = p->resource_len = 0;
    if (has_node) {
        if ((n = prep_part(NODE, node, node_len, p->full, true, why)) < 0) return -1;
        p->node_len = (size_t)n;
        o = (size_t)n;
        p->full[o++] = '@';
    }
    if ((n = prep_domain(domain, domain_len, p->full + o, true, why)) < 0) return -1;
    if (n > JID_PART_MAX) {
        *why = "domain too long";
        return -1;
    }
    p->domain_len = (size_t)n;
    o += (size_t)n;
    if (has_resource) {
        p->full[o++] = '/';
        if ((n = prep_part(RESOURCE, resource, resource_len, p->full + o, true, why)) < 0)
            return -1;
        p->resource_len = (size_t)n;
        o += (size_t)n;
    }
    p->full[o] = '\0';
    return 0;
}

/* RFC 7622 §3.1: resourcepart after the first '/', localpart before the
 * first '@' of what remains. */
static int prepare_string(const char *s, size_t len, struct prepared *p, const char **why)
{
    const char *slash = memchr(s, '/', len);
    size_t head = slash ? (size_t)(slash - s) : len;
    const char *at = memchr(s, '@', head);
    const char *domain = at ? at + 1 : s;
    return prepare(s, at ? (size_t)(at - s) : 0, at != NULL, domain, (size_t)(s + head - domain),
                   slash ? slash + 1 : NULL, slash ? len - head - 1 : 0, slash != NULL, p, why);
}

/* Point j's fields into j->mem, laid out as full, then bare if it differs,
 * then node: "n@d/r\0n@d\0n\0". The domain lies at the end of bare, the
 * resource at the end of full. */
static void layout(jid_t *j)
{
    size_t head = j->node_len ? (size_t)j->node_len + 1 : 0;
    size_t bare_len = head + j->domain_len;
    char *m = j->mem;
    j->full = m;
    j->resource = j->resource_len ? m + bare_len + 1 : m + bare_len;
    if (j->resource_len) {
        j->bare = m + bare_len + 1 + j->resource_len + 1;
    } else {
        j->bare = m;
    }
    j->domain = j->bare + head;
    j->node = j->node_len ? j->bare + bare_len + 1 : j->bare + bare_len;
}

static jid_t *jid_from(const struct prepared *p)
{
    size_t head = p->has_node ? p->node_len + 1 : 0;
    size_t bare_len = head + p->domain_len;
    size_t full_len = bare_len + (p->has_resource ? p->resource_len + 1 : 0);
    size_t size = full_len + 1;
    if (p->has_resource) size += bare_len + 1;
    if (p->has_node) size += p->node_len + 1;

    jid_t *j = xmalloc(sizeof *j + size);
    j->node_len = (unsigned short)p->node_len;
    j->domain_len = (unsigned short)p->domain_len;
    j->resource_len = (unsigned short)p->resource_len;
    j->size = size;
    char *m = j->mem;
    memcpy(m, p->full, full_len + 1);
    m += full_len + 1;
    if (p->has_resource) {
        memcpy(m, p->full, bare_len);
        m[bare_len] = '\0';
        m += bare_len + 1;
    }
    if (p->has_node) {
        memcpy(m, p->full, p->node_len);
        m[p->node_len] = '\0';
    }
    layout(j);
    return j;
}

jid_t *jid_new(const char *s, size_t len, const char **why)
{
    const char *dummy;
    struct prepared p;
    if (!why) why = &dummy;
    if (!s) {
        *why = "empty domain";
        return NULL;
    }
    if (prepare_string(s, len, &p, why) < 0) return NULL;
    return jid_from(&p);
}

jid_t *jid_new_parts(const char *node, const char *domain, const char *resource, const char **why)
{
    const char *dummy;
    struct prepared p;
    if (!why) why = &dummy;
    if (!domain) domain = "";
    bool has_node = node && *node, has_resource = resource && *resource;
    if (prepare(node, has_node ? strlen(node) : 0, has_node, domain, strlen(domain), resource,
                has_resource ? strlen(resource) : 0, has_resource, &p, why) < 0)
        return NULL;
    return jid_from(&p);
}

int jid_prep(const char *s, size_t len, char *out, const char **why)
{
    const char *dummy;
    struct prepared p;
    if (!why) why = &dummy;
    if (!s) {
        *why = "empty domain";
        return -1;
    }
    if (prepare_string(s, len, &p, why) < 0) return -1;
    memcpy(out, p.full, strlen(p.full) + 1);
    return 0;
}

jid_t *jid_dup(const jid_t *j)
{
    if (!j) return NULL;
    jid_t *d = xmalloc(sizeof *d + j->size);
    memcpy(d, j, sizeof *d + j->size);
    layout(d);
    return d;
}

void jid_free(jid_t *j)
{
    free(j);
}

const char *jid_node(const jid_t *j)
{
    return j->node;
}

const char *jid_domain(const jid_t *j)
{
    return j->domain;
}

const char *jid_resource(const jid_t *j)
{
    return j->resource;
}

const char *jid_bare(const jid_t *j)
{
    return j->bare;
}

const char *jid_full(const jid_t *j)
{
    return j->full;
}

bool jid_has_node(const jid_t *j)
{
    return j->node_len != 0;
}

bool jid_has_resource(const jid_t *j)
{
    return j->resource_len != 0;
}

/* A full form names its parts unambiguously: the localpart holds no '@' or
 * '/', the domainpart neither. */
bool jid_equal(const jid_t *a, const jid_t *b)
{
    return a->node_len == b->node_len && a->domain_len == b->domain_len &&
           a->resource_len == b->resource_len && strcmp(a->full, b->full) == 0;
}

bool jid_equal_bare(const jid_t *a, const jid_t *b)
{
    return a->node_len == b->node_len && a->domain_len == b->domain_len &&
           strcmp(a->bare, b->bare) == 0;
}
