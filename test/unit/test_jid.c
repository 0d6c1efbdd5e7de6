/* test_jid.c — JID parsing and preparation (common/jid.h), RFC 7622.
 *
 * The examples of RFC 7622 §3.5, the limits, hostile input (NULs, bad
 * UTF-8, bidi), the forms and comparisons, and the ASCII fast path checked
 * byte by byte against libidn itself, and idempotence: what is accepted
 * prepares to itself again (known traps first, then every code point and
 * a property over random inputs). Ends with a timing of jid_new, printed
 * as a TAP comment. */
#include <idna.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stringprep.h>
#include <time.h>

#include "jid.h"
#include "tap.h"

/* The full form of s once prepared, or "INVALID". Static buffer. */
static const char *full_of(const char *s, size_t len)
{
    static char out[JID_STRING_MAX];
    jid_t *j = jid_new(s, len, NULL);
    if (!j) return "INVALID";
    snprintf(out, sizeof out, "%s", jid_full(j));
    jid_free(j);
    return out;
}

#define prepares_to(in, want)                                                                      \
    is_str(full_of(in, strlen(in)), want, "'" in "' prepares to '" want "'")
#define is_valid(in) prepares_to(in, in)

/* Invalid, with a reason. */
static void refuses(const char *s, size_t len, const char *name)
{
    const char *why = NULL;
    jid_t *j = jid_new(s, len, &why);
    if (!ok(j == NULL && why != NULL && *why, "%s is refused", name))
        printf("#   got '%s', reason '%s'\n", j ? jid_full(j) : "(null)", why ? why : "(null)");
    jid_free(j);
}
#define is_invalid(in) refuses(in, strlen(in), "'" in "'")

static void refuses_with(const char *s, const char *reason)
{
    const char *why = NULL;
    jid_t *j = jid_new(s, strlen(s), &why);
    char name[200];
    snprintf(name, sizeof name, "'%s' is refused: %s", s, reason);
    is_str(j ? "VALID" : why, reason, name);
    jid_free(j);
}

static void test_rfc7622_valid(void)
{
    /* RFC 7622 §3.5, valid JIDs. */
    is_valid("juliet@example.com");
    is_valid("juliet@example.com/foo");
    is_valid("juliet@example.com/foo bar");
    is_valid("juliet@example.com/foo@bar");
    is_valid("foo\\20bar@example.com");
    is_valid("fussball@example.com");
    /* Nodeprep's case folding (RFC 3454 B.2) maps ß to ss. */
    prepares_to("fu\xc3\x9f"
                "ball@example.com",
                "fussball@example.com");
    is_valid("\xcf\x80@example.com");                                    /* π */
    prepares_to("\xce\xa3@example.com/foo", "\xcf\x83@example.com/foo"); /* Σ -> σ */
    is_valid("\xcf\x83@example.com/foo");                                /* σ */
    is_valid("king@example.com/\xe2\x99\x9a");                           /* ♚ */
    is_valid("example.com");
    is_valid("example.com/foobar");
    is_valid("a.example.com/b@example.net");
}

static void test_rfc7622_invalid(void)
{
    /* RFC 7622 §3.5, invalid JIDs. */
    is_invalid("\"juliet\"@example.com");
    is_invalid("foo bar@example.com");
    is_invalid("juliet@@example.com");
    is_invalid("@example.com");
    is_invalid("juliet@");
    is_invalid("example.com/");
    is_invalid("juliet@example.com/");
    is_invalid("");
    is_invalid("@");
    is_invalid("/");
    is_invalid("@/");
    is_invalid("a@/r");
}

static void test_reasons(void)
{
    refuses_with("@example.com", "empty localpart");
    refuses_with("juliet@", "empty domain");
    refuses_with("juliet@example.com/", "empty resourcepart");
    refuses_with("", "empty domain");
    refuses_with("foo bar@example.com", "forbidden character in localpart");
    refuses_with("juliet@example.com/a\tb", "forbidden character in resourcepart");
    refuses_with("juliet@exa_mple.com", "invalid character in domain");
    refuses_with("juliet@-example.com", "domain label starts or ends with '-'");
    refuses_with("juliet@example-.com", "domain label starts or ends with '-'");
    refuses_with("juliet@example..com", "empty label in domain");
    refuses_with("juliet@.example.com", "empty label in domain");
    refuses_with("juliet@.", "empty domain");
    refuses_with("juliet@[::1", "invalid IPv6 literal in domain");
    refuses_with("\xff@example.com", "invalid UTF-8");
}

static void test_forbidden_localpart_chars(void)
{
    /* RFC 7622 §3.3.1: " & ' / : < > @ are excluded from localparts;
     * '/' and '@' split the JID instead, so test them through parts. */
    const char *forbidden = "\"&':<> ";
    for (const char *c = forbidden; *c; c++) {
        char s[32], name[64];
        snprintf(s, sizeof s, "a%cb@example.com", *c);
        snprintf(name, sizeof name, "localpart with '%c'", *c);
        refuses(s, strlen(s), name);
    }
    const char *why = NULL;
    jid_t *j = jid_new_parts("a@b", "example.com", NULL, &why);
    ok(j == NULL, "localpart part with '@' is refused");
    jid_free(j);
    j = jid_new_parts("a/b", "example.com", NULL, &why);
    ok(j == NULL, "localpart part with '/' is refused");
    jid_free(j);
}

static void test_case_and_dots(void)
{
    prepares_to("JULIET@EXAMPLE.COM/Balcony", "juliet@example.com/Balcony");
    prepares_to("juliet@example.com.", "juliet@example.com");
    prepares_to("juliet@example.com./r", "juliet@example.com/r");
    is_invalid("juliet@example.com..");
    is_invalid("juliet@.");
    prepares_to("192.0.2.1", "192.0.2.1");
    prepares_to("a/b/c", "a/b/c");
    prepares_to("a/b@c", "a/b@c");
    prepares_to("r@a/b@c/d", "r@a/b@c/d");
}

static void test_ipv6(void)
{
    prepares_to("juliet@[::1]/r", "juliet@[::1]/r");
    prepares_to("[2001:DB8:0:0::1]", "[2001:db8::1]");
    prepares_to("[2001:db8::1].", "[2001:db8::1]");
    is_invalid("[::1");
    is_invalid("[zz::1]");
    is_invalid("[]");
    is_invalid("[::1%eth0]");
    is_invalid("[::1]x");
    is_invalid("x[::1]");
}

static void test_idn(void)
{
    is_valid("juliet@b\xc3\xbc"
             "cher.example"); /* bücher */
    prepares_to("juliet@B\xc3\x9c"
                "CHER.example",
                "juliet@b\xc3\xbc"
                "cher.example");
    /* A-labels become U-labels (ToUnicode). */
    prepares_to("juliet@xn--bcher-kva.example", "juliet@b\xc3\xbc"
                                                "cher.example");
    prepares_to("juliet@XN--BCHER-KVA.example", "juliet@b\xc3\xbc"
                                                "cher.example");
    is_invalid("juliet@xn--.example");
    is_invalid("juliet@xn--a-ecp.example"); /* punycode of an ASCII-only string */
    is_invalid("juliet@xn--zz\xc3\xbc.example");
    /* Ideographic full stop separates labels. */
    prepares_to("juliet@b\xc3\xbc"
                "cher\xe3\x80\x82"
                "example",
                "juliet@b\xc3\xbc"
                "cher.example");
    is_invalid("juliet@b\xc3\xbc"
               "ch er.example");
    is_invalid("juliet@b\xc3\xbc"
               "cher..example");
    is_invalid("juliet@-b\xc3\xbc"
               "cher.example");
}

static void test_stringprep_mappings(void)
{
    /* Stringprep, not PRECIS: NFKC maps the roman numeral four to "iv". */
    prepares_to("henry\xe2\x85\xa3@example.com", "henryiv@example.com");
    /* Soft hyphen maps to nothing (B.1). */
    prepares_to("ju\xc2\xad"
                "liet@example.com",
                "juliet@example.com");
    is_invalid("\xc2\xad@example.com");
    is_invalid("juliet@example.com/\xc2\xad");
    /* The resource keeps its case but is NFKC-normalized. */
    prepares_to("juliet@example.com/\xef\xbc\xa1", "juliet@example.com/A"); /* fullwidth A */
    prepares_to("juliet@example.com/\xc3\x84", "juliet@example.com/\xc3\x84");
    /* NFKC maps a no-break space to a space, which resources allow. */
    prepares_to("juliet@example.com/a\xc2\xa0"
                "b",
                "juliet@example.com/a b");
    /* Private use (C.3) is prohibited. */
    is_invalid("juliet@example.com/a\xee\x80\x80");
    is_invalid("a\xee\x80\x80@example.com");
}

static void test_hostile(void)
{
    refuses("jul\0iet@example.com", 19, "NUL in the localpart");
    refuses("juliet@exa\0mple.com", 19, "NUL in the domain");
    refuses("juliet@example.com/r\0x", 22, "NUL in the resource");
    refuses("\xc3\xbc\0x@example.com", 16, "NUL after non-ASCII in the localpart");
    refuses("juliet@example.com/\xc3\xbc\0x", 23, "NUL after non-ASCII in the resource");
    refuses("juliet@b\xc3\xbc\0x.example", 20, "NUL after non-ASCII in the domain");
    refuses("\0", 1, "a lone NUL");
    is_invalid("\xff@example.com");
    is_invalid("juliet@example.com/\xc3");
    is_invalid("\xc0\xaf@example.com");         /* overlong '/' */
    is_invalid("\xed\xa0\x80@example.com");     /* surrogate */
    is_invalid("\xf4\x90\x80\x80@example.com"); /* past U+10FFFF */
    is_invalid("juliet@ex\xffmple.com");
    is_invalid("a\x7f"
               "b@example.com");
    is_invalid("juliet@example.com/a\x01");
    /* Bidi (RFC 3454 §6): a part with RandALCat characters must not hold
     * LCat ones and must start and end with RandALCat. */
    is_valid("\xd7\x90\xd7\x91@example.com"); /* alef bet */
    is_invalid("\xd7\x90"
               "a@example.com"); /* alef a */
    is_invalid("\xd7\x90"
               "1@example.com"); /* alef 1 */
    is_invalid("juliet@example.com/\xd7\x90"
               "a");
    is_invalid("juliet@\xd7\x90"
               "a.example");
    refuses_with("\xd7\x90"
                 "a@example.com",
                 "localpart violates the bidi rule");
}

/* A domain of 1023 bytes: 16 labels of 63 bytes. */
static void make_domain(char *s)
{
    for (int i = 0; i < 16; i++) {
        memset(s + i * 64, 'd', 63);
        s[i * 64 + 63] = '.';
    }
    s[1023] = '\0';
}

static void test_lengths(void)
{
    static char s[8192], want[8192];
    char name[100];

    memset(s, 'a', 1023);
    strcpy(s + 1023, "@example.com");
    is_str(full_of(s, strlen(s)), s, "localpart of 1023 bytes is valid");
    memset(s, 'a', 1024);
    strcpy(s + 1024, "@example.com");
    refuses_with(s, "localpart too long");

    strcpy(s, "juliet@example.com/");
    memset(s + 19, 'r', 1023);
    s[19 + 1023] = '\0';
    is_str(full_of(s, strlen(s)), s, "resourcepart of 1023 bytes is valid");
    strcpy(s + 19 + 1023, "r");
    refuses_with(s, "resourcepart too long");

    make_domain(s);
    is_int(strlen(s), 1023, "domain test string is 1023 bytes");
    is_str(full_of(s, strlen(s)), s, "domain of 1023 bytes is valid");
    strcpy(want, s);
    strcat(s, ".");
    is_str(full_of(s, strlen(s)), want, "domain of 1023 bytes with a trailing dot is valid");
    strcpy(s, want);
    strcat(s, ".d");
    refuses_with(s, "domain too long");

    memset(s, 'd', 63);
    strcpy(s + 63, ".example");
    is_str(full_of(s, strlen(s)), s, "domain label of 63 bytes is valid");
    memset(s, 'd', 64);
    strcpy(s + 64, ".example");
    refuses_with(s, "domain label too long");

    /* Non-ASCII: 341 × "ü" = 682 bytes fits, 512 × = 1024 does not. */
    s[0] = '\0';
    for (int i = 0; i < 511; i++)
        strcat(s, "\xc3\xbc");
    strcat(s, "x@example.com");
    is_int(strlen(full_of(s, strlen(s))), 1023 + 12, "non-ASCII localpart of 1023 bytes is valid");
    s[0] = '\0';
    for (int i = 0; i < 512; i++)
        strcat(s, "\xc3\xbc");
    strcat(s, "@example.com");
    refuses_with(s, "localpart too long");
    /* Mapping may grow a part past the limit: ß -> ss. */
    s[0] = '\0';
    for (int i = 0; i < 400; i++)
        strcat(s, "\xc3\x9f");
    strcat(s, "@example.com");
    snprintf(name, sizeof name, "localpart of 800 bytes that maps to 800 is valid");
    is_int(strlen(full_of(s, strlen(s))), 800 + 12, name);
    s[0] = '\0';
    for (int i = 0; i < 512; i++)
        strcat(s, "\xc3\x9f");
    strcat(s, "@example.com");
    refuses_with(s, "localpart too long");

    memset(s, 'a', 5000);
    s[5000] = '\0';
    strcat(s, "@example.com");
    refuses_with(s, "localpart too long");
}

/* The ASCII fast path must agree with libidn on every byte. */
static void test_fast_path_matches_libidn(void)
{
    int node_diff = 0, resource_diff = 0, domain_diff = 0;
    for (int c = 1; c < 128; c++) {
        char part[8], ref[64];
        snprintf(part, sizeof part, "a%cB", c);

        /* Localpart: Nodeprep. */
        snprintf(ref, sizeof ref, "%s", part);
        int ref_ok = stringprep_xmpp_nodeprep(ref, sizeof ref) == STRINGPREP_OK && *ref;
        jid_t *j = jid_new_parts(part, "example.com", NULL, NULL);
        if ((j != NULL) != ref_ok || (j && strcmp(jid_node(j), ref) != 0)) {
            printf("# localpart 0x%02x: jid '%s', libidn %s '%s'\n", c, j ? jid_node(j) : "-",
                   ref_ok ? "ok" : "refuses", ref);
            node_diff++;
        }
        jid_free(j);

        /* Resourcepart: Resourceprep. */
        snprintf(ref, sizeof ref, "%s", part);
        ref_ok = stringprep_xmpp_resourceprep(ref, sizeof ref) == STRINGPREP_OK && *ref;
        j = jid_new_parts(NULL, "example.com", part, NULL);
        if ((j != NULL) != ref_ok || (j && strcmp(jid_resource(j), ref) != 0)) {
            printf("# resourcepart 0x%02x: jid '%s', libidn %s '%s'\n", c,
                   j ? jid_resource(j) : "-", ref_ok ? "ok" : "refuses", ref);
            resource_diff++;
        }
        jid_free(j);

        /* Domain: ToASCII with the STD3 rules, then lower case. Labels
         * with c inside, first and last. */
        for (int where = 0; where < 6; where++) {
            /* The last three have a non-ASCII label too: the slow path,
             * whose ASCII labels must come out the same. */
            const char *rest = where < 3 ? "example"
                                         : "b\xc3\xbc"
                                           "cher";
            char dom[32];
            if (where % 3 == 0) snprintf(dom, sizeof dom, "a%cB.%s", c, rest);
            if (where % 3 == 1) snprintf(dom, sizeof dom, "%cab.%s", c, rest);
            if (where % 3 == 2) snprintf(dom, sizeof dom, "ab%c.%s", c, rest);
            if (c == '.' || c == '[' || c == '/' || c == '@') continue;
            char *ascii = NULL;
            ref_ok =
                idna_to_ascii_8z(dom, &ascii, IDNA_ALLOW_UNASSIGNED | IDNA_USE_STD3_ASCII_RULES) ==
                IDNA_SUCCESS;
            if (ref_ok)
                for (char *p = ascii; *p; p++)
                    if (*p >= 'A' && *p <= 'Z') *p += 32;
            /* Compare the label that holds c: libidn gives the rest as an
             * A-label, jid.c as a U-label. */
            if (ref_ok) *strchr(ascii, '.') = '\0';
            j = jid_new_parts(NULL, dom, NULL, NULL);
            const char *got = j ? jid_domain(j) : "";
            size_t got_len = strcspn(got, ".");
            if ((j != NULL) != ref_ok ||
                (j && (got_len != strlen(ascii) || strncmp(got, ascii, got_len) != 0))) {
                printf("# domain '%s': jid '%s', libidn %s '%s'\n", dom, j ? jid_domain(j) : "-",
                       ref_ok ? "ok" : "refuses", ascii ? ascii : "");
                domain_diff++;
            }
            jid_free(j);
            free(ascii);
        }
    }
    is_int(node_diff, 0, "ASCII localparts: fast path agrees with libidn Nodeprep");
    is_int(resource_diff, 0, "ASCII resourceparts: fast path agrees with libidn Resourceprep");
    is_int(domain_diff, 0, "ASCII domains: fast path agrees with libidn ToASCII");
    /* The same string through the fast and the slow path: adding a
     * non-ASCII letter forces libidn, and must not change the ASCII. */
    prepares_to("JuLiEt\xc3\xbc@ExAmPle.CoM/ReS", "juliet\xc3\xbc@example.com/ReS");
    prepares_to("JuLiEt@\xc3\xbc"
                "ExAmPle.CoM/ReS",
                "juliet@\xc3\xbc"
                "example.com/ReS");
    prepares_to("JuLiEt@ExAmPle.CoM/ReS\xc3\xbc", "juliet@example.com/ReS\xc3\xbc");
}

static void test_forms(void)
{
    jid_t *j = jid_new("Juliet@Example.com/Balcony", 26, NULL);
    is_str(jid_node(j), "juliet", "node of a full JID");
    is_str(jid_domain(j), "example.com", "domain of a full JID");
    is_str(jid_resource(j), "Balcony", "resource of a full JID");
    is_str(jid_bare(j), "juliet@example.com", "bare form of a full JID");
    is_str(jid_full(j), "juliet@example.com/Balcony", "full form of a full JID");
    ok(jid_has_node(j), "full JID has a node");
    ok(jid_has_resource(j), "full JID has a resource");

    jid_t *d = jid_dup(j);
    jid_free(j);
    is_str(jid_full(d), "juliet@example.com/Balcony",
           "dup keeps the full form after the original is freed");
    is_str(jid_bare(d), "juliet@example.com", "dup keeps the bare form");
    is_str(jid_node(d), "juliet", "dup keeps the node");
    is_str(jid_domain(d), "example.com", "dup keeps the domain");
    is_str(jid_resource(d), "Balcony", "dup keeps the resource");
    jid_free(d);

    j = jid_new("example.com", 11, NULL);
    is_str(jid_node(j), "", "absent node is empty");
    is_str(jid_resource(j), "", "absent resource is empty");
    is_str(jid_bare(j), "example.com", "bare form of a domain JID");
    is_str(jid_full(j), "example.com", "full form of a domain JID");
    ok(!jid_has_node(j), "domain JID has no node");
    ok(!jid_has_resource(j), "domain JID has no resource");
    jid_free(j);

    j = jid_new("example.com/r", 13, NULL);
    is_str(jid_bare(j), "example.com", "bare form of domain/resource");
    is_str(jid_domain(j), "example.com", "domain of domain/resource");
    is_str(jid_resource(j), "r", "resource of domain/resource");
    ok(!jid_has_node(j), "domain/resource has no node");
    jid_free(j);

    j = jid_new("juliet@example.com", 18, NULL);
    is_str(jid_bare(j), "juliet@example.com", "bare form of a bare JID");
    is_str(jid_full(j), "juliet@example.com", "full form of a bare JID");
    ok(jid_has_node(j) && !jid_has_resource(j), "bare JID has a node and no resource");
    jid_free(j);

    /* Length is honoured: the rest of the buffer is not part of the JID. */
    j = jid_new("juliet@example.com/balcony", 18, NULL);
    is_str(jid_full(j), "juliet@example.com", "only len bytes are read");
    jid_free(j);
    ok(jid_new(NULL, 0, NULL) == NULL, "NULL string is refused");
}

static void test_parts(void)
{
    const char *why = NULL;
    jid_t *j = jid_new_parts("Juliet", "Example.COM.", "balcony/east", &why);
    is_str(j ? jid_full(j) : NULL, "juliet@example.com/balcony/east",
           "from parts: prepared, '/' allowed in resource");
    jid_free(j);
    j = jid_new_parts(NULL, "example.com", NULL, &why);
    is_str(j ? jid_full(j) : NULL, "example.com", "from parts: domain only");
    jid_free(j);
    j = jid_new_parts("", "example.com", "", &why);
    is_str(j ? jid_full(j) : NULL, "example.com",
           "from parts: empty node and resource mean absent");
    jid_free(j);
    why = NULL;
    j = jid_new_parts("juliet", NULL, NULL, &why);
    ok(j == NULL && why, "from parts: no domain is refused");
    jid_free(j);
    j = jid_new_parts("juliet", "exa/mple.com", NULL, &why);
    ok(j == NULL, "from parts: '/' in the domain is refused");
    jid_free(j);
    j = jid_new_parts("juliet", "exa@mple.com", NULL, &why);
    ok(j == NULL, "from parts: '@' in the domain is refused");
    jid_free(j);
}

static void test_compare(void)
{
    jid_t *a = jid_new("Juliet@Example.com/balcony", 26, NULL);
    jid_t *b = jid_new("juliet@EXAMPLE.COM./balcony", 27, NULL);
    jid_t *c = jid_new("juliet@example.com/Balcony", 26, NULL);
    jid_t *d = jid_new("juliet@example.com", 18, NULL);
    jid_t *e = jid_new("romeo@example.com/balcony", 25, NULL);
    jid_t *f = jid_new("fu\xc3\x9f"
                       "ball@example.com",
                       20, NULL);
    jid_t *g = jid_new("FUSSBALL@example.com", 20, NULL);
    ok(jid_equal(a, b), "equal after preparation");
    ok(!jid_equal(a, c), "resources compare case-sensitively");
    ok(jid_equal_bare(a, c), "bare forms equal despite resources");
    ok(!jid_equal(a, d), "full differs from bare");
    ok(jid_equal_bare(a, d), "bare equal to full's bare");
    ok(!jid_equal_bare(a, e), "different nodes differ");
    ok(jid_equal(f, g), "fußball equals FUSSBALL");
    jid_free(a), jid_free(b), jid_free(c), jid_free(d), jid_free(e), jid_free(f), jid_free(g);
}

static void test_prep(void)
{
    char out[JID_STRING_MAX];
    const char *why = NULL;
    is_int(jid_prep("Juliet@Example.com./Balcony", 27, out, &why), 0,
           "jid_prep accepts a valid JID");
    is_str(out, "juliet@example.com/Balcony", "jid_prep writes the prepared full form");
    is_int(jid_prep("@example.com", 12, out, &why), -1, "jid_prep refuses an invalid JID");
    is_str(why, "empty localpart", "jid_prep gives the reason");

    /* The longest JID fills the buffer exactly. */
    static char s[JID_STRING_MAX + 10];
    memset(s, 'a', 1023);
    s[1023] = '@';
    make_domain(s + 1024);
    s[2047] = '/';
    memset(s + 2048, 'r', 1023);
    s[3071] = '\0';
    is_int(strlen(s), JID_STRING_MAX - 1, "longest JID is JID_STRING_MAX - 1 bytes");
    is_int(jid_prep(s, strlen(s), out, &why), 0, "jid_prep accepts the longest JID");
    is_str(out, s, "jid_prep writes the longest JID");
}

/* s is accepted, and its prepared form y is accepted back as y: through
 * jid_new, jid_prep, and jid_new_parts from y's parts. 1 if so, else 0
 * with what went wrong in detail. */
static int is_fixed_point(const char *s, size_t len, char *detail, size_t cap)
{
    jid_t *j = jid_new(s, len, NULL);
    if (!j) {
        snprintf(detail, cap, "refused");
        return 0;
    }
    const char *why = NULL;
    char again[JID_STRING_MAX];
    int good = 1;
    if (jid_prep(jid_full(j), strlen(jid_full(j)), again, &why) != 0) {
        snprintf(detail, cap, "'%s' is refused: %s", jid_full(j), why);
        good = 0;
    } else if (strcmp(again, jid_full(j)) != 0) {
        snprintf(detail, cap, "'%s' prepares to '%s'", jid_full(j), again);
        good = 0;
    } else {
        jid_t *k = jid_new_parts(jid_node(j), jid_domain(j), jid_resource(j), &why);
        if (!k || !jid_equal(j, k)) {
            snprintf(detail, cap, "the parts of '%s' give '%s'", jid_full(j),
                     k ? jid_full(k) : why);
            good = 0;
        }
        jid_free(k);
    }
    jid_free(j);
    return good;
}

/* prepares_to, and the result prepares to itself. */
#define prepares_stably_to(in, want)                                                               \
    do {                                                                                           \
        char detail_[2 * JID_STRING_MAX + 100];                                                    \
        prepares_to(in, want);                                                                     \
        if (!ok(is_fixed_point(in, strlen(in), detail_, sizeof detail_),                           \
                "'" in "' prepares to a fixed point"))                                             \
            printf("#   %s\n", detail_);                                                           \
    } while (0)

/* RFC 3490's ToASCII runs Nameprep before it looks for the ACE prefix, so
 * a label with non-ASCII characters can come out as an ASCII "xn--" label
 * that is no A-label at all, or one that decodes to something else. Such
 * labels are refused: otherwise the server would show a JID it then
 * refuses (a roster item nobody can remove), or reads as another one. */
static void test_idempotent_ace(void)
{
    /* U+017F LATIN SMALL LETTER LONG S folds to 's', and "xn--abcs" does
     * not decode. */
    refuses_with("x@xn--abc\xc5\xbf.test", "invalid A-label in domain");
    refuses_with("x@XN--ABC\xc5\xbf.test", "invalid A-label in domain");
    refuses_with("x@xn--abc\xc5\xbf.test/r", "invalid A-label in domain");
    const char *why = NULL;
    jid_t *j = jid_new_parts("x", "xn--abc\xc5\xbf.test", NULL, &why);
    ok(j == NULL, "from parts: domain 'xn--abc\\u017f.test' is refused");
    jid_free(j);
    char out[JID_STRING_MAX];
    is_int(jid_prep("x@xn--abc\xc5\xbf.test", 16, out, &why), -1,
           "jid_prep refuses 'x@xn--abc\\u017f.test'");
    /* ß folds to "ss", superscript two to '2', soft hyphen (even inside
     * the prefix) to nothing. */
    refuses_with("x@xn--\xc3\x9f.test", "invalid A-label in domain");
    refuses_with("x@xn--abc\xc2\xb2.test", "invalid A-label in domain");
    refuses_with("x@xn--abc\xc2\xad.test", "invalid A-label in domain");
    refuses_with("x@x\xc2\xadn--abc.test", "invalid A-label in domain");
    refuses_with("x@\xc2\xadxn--abc.test", "invalid A-label in domain");
    /* Labels that map to a valid A-label would change on the next
     * preparation: "xn--bcher-kva" is "bücher", "xn--bcher-kvaa"
     * "büücher". */
    refuses_with("x@xn--bcher-kva\xc2\xad.test", "domain changes when prepared again");
    refuses_with("x@xn--bcher-kva\xc2\xaa.test", "domain changes when prepared again");
    refuses_with("x@\xef\xbd\x98\xef\xbd\x8e\xef\xbc\x8d\xef\xbc\x8d" /* fullwidth "xn--" */
                 "bcher-kva.test",
                 "domain changes when prepared again");
    /* The A-label itself, and labels mapped to ASCII without a prefix,
     * are fine. */
    prepares_stably_to("x@xn--bcher-kva.test", "x@b\xc3\xbc"
                                               "cher.test");
    prepares_stably_to("x@\xef\xbd\x85\xef\xbd\x98" /* fullwidth "ex" */
                       "ample.com",
                       "x@example.com");
    prepares_stably_to("x@ex\xc2\xad"
                       "ample.com",
                       "x@example.com");
    prepares_stably_to("x@b\xc3\xbc"
                       "cher.xn--bcher-kva.test",
                       "x@b\xc3\xbc"
                       "cher.b\xc3\xbc"
                       "cher.test");
    /* One root dot, of any of the four kinds, not two. */
    prepares_stably_to("x@b\xc3\xbc"
                       "cher.test\xe3\x80\x82",
                       "x@b\xc3\xbc"
                       "cher.test");
    refuses_with("x@b\xc3\xbc"
                 "cher.test\xe3\x80\x82.",
                 "empty label in domain");
    refuses_with("x@example.com\xe3\x80\x82.", "empty label in domain");
}

/* Characters that Nodeprep and Resourceprep map to ASCII: the result is
 * judged as if it had been sent in ASCII, and prepares to itself. */
static void test_idempotent_mapped_to_ascii(void)
{
    prepares_stably_to("\xef\xbd\x8a\xef\xbd\x95\xef\xbc\xac" /* fullwidth "juL" */
                       "iet@example.com",
                       "juliet@example.com");
    prepares_stably_to("\xef\xac\x80@example.com", "ff@example.com"); /* ﬀ ligature */
    prepares_stably_to("henry\xe2\x85\xa3@example.com", "henryiv@example.com");
    prepares_stably_to("x@example.com/\xef\xbd\x92\xef\xbc\xa5s", "x@example.com/rEs");
    /* Mapped to a character the localpart forbids: refused. */
    refuses_with("\xef\xbc\xa0@example.com", "forbidden character in localpart"); /* fullwidth @ */
    refuses_with("a\xef\xbc\x8f"
                 "b@example.com",
                 "forbidden character in localpart");                             /* fullwidth / */
    refuses_with("\xe2\x84\x80@example.com", "forbidden character in localpart"); /* ℀: a/c */
    refuses_with("a\xef\xbc\x9a"
                 "b@example.com",
                 "forbidden character in localpart"); /* fullwidth : */
    /* The resourcepart allows them. */
    prepares_stably_to("x@example.com/\xef\xbc\xa0", "x@example.com/@");
    prepares_stably_to("x@example.com/\xef\xbc\x8f", "x@example.com//");
    prepares_stably_to("x@example.com/\xe2\x84\x80", "x@example.com/a/c");
    /* Mapped to controls or to nothing: refused. */
    refuses_with("x@example.com/\xc2\xad", "empty resourcepart");
    refuses_with("\xe2\x80\x8b@example.com", "empty localpart"); /* zero width space */
}

/* Every code point of the BMP alone, and inside an "xn--" label, in each
 * part: what is accepted prepares to itself. */
static void test_idempotent_every_code_point(void)
{
    static const char *const templates[] = {
        "%s@example.com",   "a%sb@example.com", "x@example.com/%s",       "x@a%sb.test",
        "x@xn--abc%s.test", "x@x%sn--abc.test", "x@xn--bcher-kva%s.test",
    };
    for (size_t t = 0; t < sizeof templates / sizeof templates[0]; t++) {
        int valid = 0, bad = 0;
        for (unsigned c = 0x80; c <= 0xffff; c++) {
            if (c >= 0xd800 && c <= 0xdfff) continue;
            char u[4], s[64], detail[2 * JID_STRING_MAX + 100];
            int n = c < 0x800 ? 2 : 3;
            if (n == 2) {
                u[0] = (char)(0xc0 | (c >> 6));
                u[1] = (char)(0x80 | (c & 0x3f));
            } else {
                u[0] = (char)(0xe0 | (c >> 12));
                u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
                u[2] = (char)(0x80 | (c & 0x3f));
            }
            u[n] = '\0';
            snprintf(s, sizeof s, templates[t], u);
            jid_t *j = jid_new(s, strlen(s), NULL);
            if (!j) continue;
            jid_free(j);
            valid++;
            if (!is_fixed_point(s, strlen(s), detail, sizeof detail) && bad++ < 5)
                printf("# U+%04X in '%s': %s\n", c, templates[t], detail);
        }
        char name[100];
        snprintf(name, sizeof name, "every BMP code point in '%s' (%d valid): idempotent",
                 templates[t], valid);
        is_int(bad, 0, name);
    }
}

/* Random JIDs made of tokens that are known to interact (ACE prefixes,
 * characters that fold or map to nothing, dots of every kind, the
 * separators): what is accepted prepares to itself. */
static void test_idempotent_property(void)
{
    static const char *const tokens[] = {
        "xn--",
        "XN--",
        "\xef\xbd\x98\xef\xbd\x8e\xef\xbc\x8d\xef\xbc\x8d",
        "bcher-kva",
        "abc",
        "\xc5\xbf",
        "\xc2\xaa",
        "\xc2\xad",
        "\xc3\x9f",
        "\xc3\xbc",
        "\xc3\x9c",
        "\xc2\xb2",
        "-",
        ".",
        "\xe3\x80\x82",
        "\xef\xbc\x8e",
        "@",
        "/",
        "\xef\xbc\xa0",
        "\xef\xbc\x8f",
        "a",
        "Z",
        "x",
        "n",
        "\xe2\x85\xa3",
        "\xef\xac\x80",
        "\xe2\x84\x80",
        "\xe2\x80\x8b",
        "\xcd\x85",
        "\xc4\xb0",
        "\xce\xa3",
        "\xd7\x90",
        " ",
        "[::1]",
        "9",
    };
    const size_t ntokens = sizeof tokens / sizeof tokens[0];
    unsigned seed = 2024;
    int valid = 0, bad = 0;
    for (int n = 0; n < 60000; n++) {
        char s[200], detail[2 * JID_STRING_MAX + 100];
        size_t len = 0;
        seed = seed * 1103515245 + 12345;
        int count = 1 + (int)((seed >> 16) % 8);
        for (int i = 0; i < count; i++) {
            seed = seed * 1103515245 + 12345;
            const char *tok = tokens[(seed >> 16) % ntokens];
            size_t tl = strlen(tok);
            memcpy(s + len, tok, tl);
            len += tl;
        }
        /* Half of them get a localpart, so the domain is exercised. */
        if (n % 2 && !memchr(s, '@', len)) {
            memmove(s + 2, s, len);
            memcpy(s, "u@", 2);
            len += 2;
        }
        jid_t *j = jid_new(s, len, NULL);
        if (!j) continue;
        jid_free(j);
        valid++;
        if (!is_fixed_point(s, len, detail, sizeof detail) && bad++ < 5)
            printf("# '%.*s': %s\n", (int)len, s, detail);
    }
    ok(valid > 5000, "token JIDs: enough are valid (%d)", valid);
    is_int(bad, 0, "token JIDs: preparation is idempotent");
}

/* Random bytes never crash, and what is valid stays the same when
 * prepared again. */
static void test_random(void)
{
    static const char alphabet[] =
        "aaaaaaaaaaaaaaaaaaaaaZZZZ999@@//..-_ \x01\xc3\xbc\xc3\x9f\xd7\x90"
        "\xe2\x85\xa3\xef\xbc\xa1\xff\0[]:";
    unsigned seed = 12345;
    int valid = 0, unstable = 0;
    for (int n = 0; n < 200000; n++) {
        char s[24];
        size_t len = (seed = seed * 1103515245 + 12345) % sizeof s;
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245 + 12345;
            s[i] = alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        jid_t *j = jid_new(s, len, NULL);
        if (j) {
            valid++;
            char again[JID_STRING_MAX];
            if (jid_prep(jid_full(j), strlen(jid_full(j)), again, NULL) != 0 ||
                strcmp(again, jid_full(j)) != 0) {
                if (unstable++ < 5) printf("# not stable: '%s'\n", jid_full(j));
            }
        }
        jid_free(j);
    }
    ok(valid > 1000, "random input: some valid JIDs (%d)", valid);
    is_int(unstable, 0, "random input: preparation is idempotent");
}

static double ns_per_jid_new(const char *s, int rounds)
{
    struct timespec t0, t1;
    size_t len = strlen(s);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < rounds; i++) {
        jid_t *j = jid_new(s, len, NULL);
        if (!j) return -1;
        jid_free(j);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / rounds;
}

static void bench(void)
{
    printf("# jid_new+jid_free ASCII  'alice@example.com/phone': %.0f ns\n",
           ns_per_jid_new("alice@example.com/phone", 1000000));
    printf("# jid_new+jid_free UTF-8  'ålice@example.com/phone': %.0f ns\n",
           ns_per_jid_new("\xc3\xa5lice@example.com/phone", 100000));
    printf("# jid_new+jid_free UTF-8  'alice@bücher.example/phöne': %.0f ns\n",
           ns_per_jid_new("alice@b\xc3\xbc"
                          "cher.example/ph\xc3\xb6ne",
                          100000));
}

int main(void)
{
    test_rfc7622_valid();
    test_rfc7622_invalid();
    test_reasons();
    test_forbidden_localpart_chars();
    test_case_and_dots();
    test_ipv6();
    test_idn();
    test_stringprep_mappings();
    test_hostile();
    test_lengths();
    test_fast_path_matches_libidn();
    test_forms();
    test_parts();
    test_compare();
    test_prep();
    test_idempotent_ace();
    test_idempotent_mapped_to_ascii();
    test_idempotent_every_code_point();
    test_idempotent_property();
    test_random();
    if (!getenv("HEARTH_NO_BENCH")) bench();
    return done_testing();
}
