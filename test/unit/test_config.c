/* test_config.c — hearth.xml loading, validation and lookups (common/config.h),
 * and the log that reports a misuse of them (common/log.h).
 *
 * The test brings its own cfg_settings table, so that every type (bool and
 * duration included) and a repeated section with children are covered
 * whatever the real table (settings.c) holds today; the linker then leaves
 * settings.o out. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "tap.h"

#define SECTION(p, rep)                                                                            \
    {                                                                                              \
        p, CFG_SECTION, NULL, rep, 0, 0, NULL, "test"                                              \
    }
#define STRING(p, d)                                                                               \
    {                                                                                              \
        p, CFG_STRING, d, false, 0, 0, NULL, "test"                                                \
    }
#define STRINGS(p, d)                                                                              \
    {                                                                                              \
        p, CFG_STRING, d, true, 0, 0, NULL, "test"                                                 \
    }
#define INT(p, d, lo, hi)                                                                          \
    {                                                                                              \
        p, CFG_INT, d, false, lo, hi, NULL, "test"                                                 \
    }
#define BOOL(p, d)                                                                                 \
    {                                                                                              \
        p, CFG_BOOL, d, false, 0, 0, NULL, "test"                                                  \
    }
#define SIZE(p, d)                                                                                 \
    {                                                                                              \
        p, CFG_SIZE, d, false, 0, 0, NULL, "test"                                                  \
    }
#define DURATION(p, d)                                                                             \
    {                                                                                              \
        p, CFG_DURATION, d, false, 0, 0, NULL, "test"                                              \
    }
#define CHOICE(p, d, c)                                                                            \
    {                                                                                              \
        p, CFG_CHOICE, d, false, 0, 0, c, "test"                                                   \
    }

const cfg_setting_t cfg_settings[] = {
    STRINGS("domain", "localhost"),
    STRING("statedir", "/var/lib/hearth"),
    SECTION("log", false),
    CHOICE("log@level", "info", "debug|info|notice|warn|error"),
    STRING("log@target", "stderr"),
    SECTION("router", false),
    STRING("router.listen", "127.0.0.1:5347"),
    STRING("router.password", NULL),
    SECTION("router.component", true),
    STRING("router.component@name", NULL),
    STRING("router.component@password", NULL),
    STRING("router.component@role", "component"),
    SIZE("router.max-stanza", "1M"),
    INT("router.max-connections", "1000", 1, 100000),
    SECTION("router.tls", false),
    STRING("router.tls@cert", NULL),
    SECTION("c2s", false),
    BOOL("c2s.register", "false"),
    DURATION("c2s.timeout", "30s"),
    INT("c2s.offset", "-5", -10, 10),
    STRINGS("c2s.mechanism", NULL),
    SECTION("muc", false),
    SECTION("muc.room", true),
    STRING("muc.room@name", NULL),
    STRING("muc.room.subject", "none"),
    BOOL("muc.room.persistent", "no"),
    {NULL, CFG_SECTION, NULL, false, 0, 0, NULL, NULL},
};

/* Parse text as "t.xml"; NULL on error with the message in last_err. */
static char last_err[1024];
static config_t *parse(const char *text)
{
    char *err = NULL;
    config_t *c = config_parse("t.xml", text, strlen(text), &err);
    snprintf(last_err, sizeof last_err, "%s", err ? err : "(no error)");
    if (c && err) snprintf(last_err, sizeof last_err, "error set on success: %s", err);
    free(err);
    return c;
}

/* text must be refused with exactly message want. */
static void refused(const char *text, const char *want, const char *name)
{
    config_t *c = parse(text);
    is_str(c ? "(accepted)" : last_err, want, name);
    config_free(c);
}

/* The value of path in a file holding only xml (inside <hearth>). */
static const char *value_in(const char *xml, const char *path)
{
    static char out[256];
    char text[1024];
    snprintf(text, sizeof text, "<hearth>%s</hearth>", xml);
    config_t *c = parse(text);
    if (!c) return last_err;
    const char *v = config_get(c, path);
    snprintf(out, sizeof out, "%s", v ? v : "(null)");
    config_free(c);
    return out;
}

static const char *full =
    "<?xml version='1.0' encoding='UTF-8'?>\n" /* 1 */
    "<!-- Hearth test configuration -->\n"     /* 2 */
    "<hearth>\n"                               /* 3 */
    "  <domain>example.com</domain>\n"         /* 4 */
    "  <domain>\n"                             /* 5 */
    "     example.net\n"                       /* 6 */
    "  </domain>\n"                            /* 7 */
    "  <log level='debug' target='syslog'/>\n" /* 8 */
    "  <router>\n"                             /* 9 */
    "    <listen>unix:/run/hearth</listen>\n"  /* 10 */
    "    <password>s&amp;cret</password>\n"    /* 11 */
    "    <component name='muc' password='p1'/>\n"
    "    <component name='upload'/>\n"
    "    <component password='p3' role='admin'/>\n"
    "    <max-stanza>64k</max-stanza>\n"
    "    <max-connections>42</max-connections>\n"
    "  </router>\n"
    "  <c2s><register>yes</register><timeout>250ms</timeout>"
    "<mechanism>SCRAM-SHA-256</mechanism><mechanism>PLAIN</mechanism></c2s>\n"
    "  <muc>\n"
    "    <room name='lobby'><subject>hi</subject><persistent>on</persistent></room>\n"
    "    <room name='cellar'/>\n"
    "  </muc>\n"
    "</hearth>\n";

static void test_lookups(void)
{
    config_t *c = parse(full);
    if (!ok(c != NULL, "a valid file loads")) {
        printf("#   %s\n", last_err);
        return;
    }
    is_str(config_file(c), "t.xml", "config_file names the file");
    is_str(config_get(c, "domain"), "example.com", "config_get returns the first occurrence");
    is_int(config_count(c, "domain"), 2, "config_count counts a repeated value element");
    is_str(config_get_at(c, "domain", 0), "example.com", "config_get_at 0 of a repeated value");
    is_str(config_get_at(c, "domain", 1), "example.net", "config_get_at 1, text trimmed");
    is_str(config_get_at(c, "domain", 2), NULL, "config_get_at past the end is NULL");
    is_str(config_get_at(c, "domain", -1), NULL, "config_get_at of a negative index is NULL");
    is_str(config_get(c, "log@level"), "debug", "attribute value");
    is_str(config_get(c, "log@target"), "syslog", "second attribute value");
    is_str(config_get(c, "router.listen"), "unix:/run/hearth", "value in a section");
    is_str(config_get(c, "router.password"), "s&cret", "predefined entity in a value");
    is_str(config_get(c, "router"), NULL, "a section has no value");

    is_int(config_count(c, "router.component"), 3, "config_count of a repeated section");
    is_int(config_count(c, "router.component@name"), 3,
           "config_count of an attribute counts its elements");
    is_str(config_get_at(c, "router.component@name", 0), "muc", "attribute of repetition 0");
    is_str(config_get_at(c, "router.component@name", 1), "upload", "attribute of repetition 1");
    is_str(config_get_at(c, "router.component@name", 2), NULL,
           "attribute absent from a repetition, no default: NULL");
    is_str(config_get_at(c, "router.component@password", 1), NULL,
           "other attribute absent from repetition 1: NULL");
    is_str(config_get_at(c, "router.component@password", 2), "p3", "attribute of repetition 2");
    is_str(config_get_at(c, "router.component@role", 0), "component",
           "attribute absent from a repetition: its default");
    is_str(config_get_at(c, "router.component@role", 2), "admin",
           "attribute present overrides the default");
    is_str(config_get_at(c, "router.component@name", 3), NULL, "attribute past the end is NULL");
    is_str(config_get(c, "router.component@name"), "muc", "config_get of a repeated attribute");

    is_int(config_size(c, "router.max-stanza"), 64 * 1024, "config_size 64k");
    is_int(config_int(c, "router.max-connections"), 42, "config_int");
    ok(config_bool(c, "c2s.register"), "config_bool yes");
    is_int(config_ms(c, "c2s.timeout"), 250, "config_ms 250ms");
    is_int(config_count(c, "c2s.mechanism"), 2, "config_count of a repeated value in a section");
    is_str(config_get_at(c, "c2s.mechanism", 1), "PLAIN", "config_get_at of a repeated value");

    is_int(config_count(c, "muc.room"), 2, "rooms counted");
    is_str(config_get_at(c, "muc.room@name", 1), "cellar", "second room's name");
    is_str(config_get(c, "muc.room.subject"), "hi", "child value of a repeated section");
    ok(config_bool(c, "muc.room.persistent"), "config_bool on");

    /* Defaults. */
    is_str(config_get(c, "statedir"), "/var/lib/hearth", "absent value: its default");
    is_int(config_int(c, "c2s.offset"), -5, "absent int: its default");
    is_str(config_get(c, "router.tls@cert"), NULL, "absent, no default: NULL");
    is_int(config_count(c, "router.tls"), 0, "absent section counts 0");
    is_int(config_count(c, "router.tls@cert"), 0, "attribute of an absent section counts 0");
    is_str(config_get_at(c, "router.tls@cert", 0), NULL, "get_at in an absent section is NULL");
    is_int(config_count(c, "router.listen"), 1, "a single value counts 1");
    config_free(c);

    c = parse("<hearth/>");
    ok(c != NULL, "an empty <hearth/> loads");
    is_str(config_get(c, "domain"), "localhost",
           "absent repeated value: config_get gives the default");
    is_int(config_count(c, "domain"), 0, "absent repeated value counts 0");
    is_str(config_get_at(c, "domain", 0), NULL, "absent repeated value: get_at is NULL");
    is_str(config_get(c, "log@level"), "info", "absent attribute: its default");
    is_int(config_size(c, "router.max-stanza"), 1024 * 1024, "absent size: default 1M");
    is_int(config_ms(c, "c2s.timeout"), 30000, "absent duration: default 30s");
    ok(!config_bool(c, "c2s.register"), "absent bool: default false");
    is_int(config_int(c, "router.max-connections"), 1000, "absent int: default");
    config_free(c);

    config_t *d = config_parse("t.xml", "<hearth/>", 9, NULL);
    ok(d != NULL, "a NULL err is allowed");
    config_free(d);
    d = config_parse("t.xml", "<nope/>", 7, NULL);
    ok(d == NULL, "a NULL err is allowed on failure");
    /* Text need not be NUL-terminated: only len bytes are read. */
    d = config_parse("t.xml", "<hearth/>garbage", 9, NULL);
    ok(d != NULL, "only len bytes are parsed");
    config_free(d);
}

static void test_values(void)
{
    is_str(value_in("<router><max-stanza>512</max-stanza></router>", "router.max-stanza"), "512",
           "size 512");
    struct {
        const char *text;
        unsigned long long want;
    } sizes[] = {{"512", 512},      {"64k", 65536},
                 {"64K", 65536},    {"10M", 10485760},
                 {"10m", 10485760}, {"1G", 1073741824},
                 {"0", 0},          {"16777216k", 17179869184ULL}},
      durations[] = {{"250ms", 250}, {"30s", 30000}, {"5m", 300000}, {"1h", 3600000},
                     {"7", 7000},    {"0", 0},       {"0ms", 0}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char xml[200], name[100];
        snprintf(xml, sizeof xml, "<hearth><router><max-stanza>%s</max-stanza></router></hearth>",
                 sizes[i].text);
        snprintf(name, sizeof name, "size '%s' is %llu bytes", sizes[i].text, sizes[i].want);
        config_t *c = parse(xml);
        is_int(c ? (long long)config_size(c, "router.max-stanza") : -1, (long long)sizes[i].want,
               name);
        config_free(c);
    }
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        char xml[200], name[100];
        snprintf(xml, sizeof xml, "<hearth><c2s><timeout>%s</timeout></c2s></hearth>",
                 durations[i].text);
        snprintf(name, sizeof name, "duration '%s' is %llu ms", durations[i].text,
                 durations[i].want);
        config_t *c = parse(xml);
        is_int(c ? (long long)config_ms(c, "c2s.timeout") : -1, (long long)durations[i].want, name);
        config_free(c);
    }
    const char *bools[] = {"true", "false", "yes", "no", "on", "off", "1", "0", "TRUE", "Off"};
    for (int i = 0; i < 10; i++) {
        char xml[200], name[100];
        snprintf(xml, sizeof xml, "<hearth><c2s><register>%s</register></c2s></hearth>", bools[i]);
        snprintf(name, sizeof name, "bool '%s' is %s", bools[i], i % 2 ? "false" : "true");
        config_t *c = parse(xml);
        is_int(c ? config_bool(c, "c2s.register") : -1, i % 2 == 0, name);
        config_free(c);
    }
    config_t *c = parse("<hearth><c2s><offset>-10</offset></c2s><router><max-connections>"
                        "100000</max-connections></router></hearth>");
    is_int(c ? config_int(c, "c2s.offset") : 0, -10, "int at its minimum");
    is_int(c ? config_int(c, "router.max-connections") : 0, 100000, "int at its maximum");
    config_free(c);
    is_str(value_in("<statedir>  /srv/hearth \n </statedir>", "statedir"), "/srv/hearth",
           "value text is trimmed");
    is_str(value_in("<statedir><![CDATA[/a<b>]]></statedir>", "statedir"), "/a<b>",
           "CDATA in a value");
    is_str(value_in("<statedir>/srv<!-- not this -->/x</statedir>", "statedir"), "/srv/x",
           "comments inside a value are skipped");
    is_str(value_in("<statedir/>", "statedir"), "", "an empty value element is \"\"");
    is_str(value_in("<log target=' spaced '/>", "log@target"), " spaced ",
           "attribute values are kept as written");
    is_str(value_in("<statedir>&#x263A;&lt;</statedir>", "statedir"), "\xe2\x98\xba<",
           "character references in a value");
}

static void test_errors(void)
{
    refused("<config/>", "t.xml:1: the root element must be <hearth>, not <config>",
            "root element must be <hearth>");
    refused("<x:hearth xmlns:x='urn:x'/>",
            "t.xml:1: the root element must be <hearth>, not <x:hearth>",
            "a namespaced root is refused");
    refused("<hearth>\n  <router>\n    <prot>1</prot>\n  </router>\n</hearth>",
            "t.xml:3: unknown setting router.prot", "unknown element, with its line");
    refused("<hearth>\n<nope/></hearth>", "t.xml:2: unknown setting nope",
            "unknown top-level element");
    refused("<hearth>\n<log levle='x'/></hearth>", "t.xml:2: unknown setting log@levle",
            "unknown attribute");
    refused("<hearth>\n<router\n   listen='x'/></hearth>", "t.xml:3: unknown setting router@listen",
            "unknown attribute on its own line");
    refused("<hearth\n  version='1'>\n</hearth>", "t.xml:2: unknown setting @version",
            "attribute on the root is unknown");
    refused("<hearth><router.listen>x</router.listen></hearth>",
            "t.xml:1: unknown setting router.listen", "a dotted element name is not a path");
    refused("<hearth xmlns:x='urn:x'><x:domain>a</x:domain></hearth>",
            "t.xml:1: unknown setting x:domain", "a namespaced element is unknown");
    refused("<hearth xmlns:x='urn:x'><log x:level='info'/></hearth>",
            "t.xml:1: unknown setting log@x:level", "a namespaced attribute is unknown");
    refused("<hearth><domain a='1'>x</domain></hearth>", "t.xml:1: unknown setting domain@a",
            "attribute on a value element");

    refused("<hearth>\n<router>\n<max-connections>abc</max-connections>\n</router></hearth>",
            "t.xml:3: router.max-connections: 'abc' is not an integer", "bad int");
    refused("<hearth><router>\n<max-connections>0</max-connections></router></hearth>",
            "t.xml:2: router.max-connections: 0 is out of range [1, 100000]", "int below min");
    refused("<hearth><router>\n<max-connections>100001</max-connections></router></hearth>",
            "t.xml:2: router.max-connections: 100001 is out of range [1, 100000]", "int above max");
    refused("<hearth><router><max-connections>99999999999999999999</max-connections></router>"
            "</hearth>",
            "t.xml:1: router.max-connections: '99999999999999999999' is not an integer",
            "int overflow");
    refused("<hearth><router><max-connections>4 2</max-connections></router></hearth>",
            "t.xml:1: router.max-connections: '4 2' is not an integer", "int with a space");
    refused("<hearth><router><max-connections></max-connections></router></hearth>",
            "t.xml:1: router.max-connections: '' is not an integer", "empty int");
    refused("<hearth><c2s>\n<register>maybe</register></c2s></hearth>",
            "t.xml:2: c2s.register: 'maybe' is not a boolean (true/false, yes/no, on/off, 1/0)",
            "bad bool");
    const char *bad_sizes[] = {"10X", "k",    "-1",           "1.5M",
                               "",    "64kb", "99999999999G", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
        char xml[200], want[200], name[100];
        snprintf(xml, sizeof xml, "<hearth><router><max-stanza>%s</max-stanza></router></hearth>",
                 bad_sizes[i]);
        snprintf(want, sizeof want,
                 "t.xml:1: router.max-stanza: '%s' is not a size (e.g. 512, 64k, 10M, 1G)",
                 bad_sizes[i]);
        snprintf(name, sizeof name, "bad size '%s'", bad_sizes[i]);
        refused(xml, want, name);
    }
    const char *bad_durations[] = {"5d", "ms",   "1.5s", "-1s",
                                   "",   "10 s", "5M",   "9999999999999999999h"};
    for (size_t i = 0; i < sizeof bad_durations / sizeof bad_durations[0]; i++) {
        char xml[200], want[200], name[100];
        snprintf(xml, sizeof xml, "<hearth><c2s><timeout>%s</timeout></c2s></hearth>",
                 bad_durations[i]);
        snprintf(want, sizeof want,
                 "t.xml:1: c2s.timeout: '%s' is not a duration (e.g. 250ms, 30s, 5m, 1h)",
                 bad_durations[i]);
        snprintf(name, sizeof name, "bad duration '%s'", bad_durations[i]);
        refused(xml, want, name);
    }
    refused("<hearth>\n\n<log level='loud'/></hearth>",
            "t.xml:3: log@level: 'loud' is not one of debug|info|notice|warn|error", "bad choice");
    refused("<hearth><log level='inf'/></hearth>",
            "t.xml:1: log@level: 'inf' is not one of debug|info|notice|warn|error",
            "a choice's prefix is not the choice");
    refused("<hearth><log level='INFO'/></hearth>",
            "t.xml:1: log@level: 'INFO' is not one of debug|info|notice|warn|error",
            "choices are case-sensitive");
    refused("<hearth>\n<log\n level='info'\n target='x'\n level2='debug'/></hearth>",
            "t.xml:5: unknown setting log@level2", "attribute line in a multi-line tag");

    refused("<hearth>\n<router/>\n<log/>\n<router/></hearth>",
            "t.xml:4: router given twice (first on line 2)", "a section given twice");
    refused("<hearth>\n<statedir>a</statedir>\n<statedir>b</statedir></hearth>",
            "t.xml:3: statedir given twice (first on line 2)", "a value given twice");
    refused("<hearth><muc><room>\n<subject>a</subject>\n<subject>b</subject></room></muc></hearth>",
            "t.xml:3: muc.room.subject given twice (first on line 2)",
            "a value given twice in one repetition");
    config_t *c = parse("<hearth><muc><room><subject>a</subject></room>"
                        "<room><subject>b</subject></room></muc></hearth>");
    ok(c != NULL, "the same value in two repetitions is fine");
    is_str(c ? config_get_at(c, "muc.room.subject", 1) : NULL, "b",
           "child value of the second repetition");
    config_free(c);

    refused("<hearth>\n<router>\n\n   hello\n</router></hearth>",
            "t.xml:4: router: a section holds elements, not text", "text in a section");
    refused("<hearth>\n  stray\n</hearth>", "t.xml:2: hearth: a section holds elements, not text",
            "text in the root");
    refused("<hearth><router><listen>x</listen>x<![CDATA[y]]></router></hearth>",
            "t.xml:1: router: a section holds elements, not text",
            "text after a child in a section");
    refused("<hearth><router>\n<![CDATA[y]]></router></hearth>",
            "t.xml:2: router: a section holds elements, not text", "CDATA in a section");
    refused("<hearth>\n<domain>a\n<b/>\n</domain></hearth>",
            "t.xml:3: domain: a value cannot hold elements (found <b>)", "element in a value");
    refused("<hearth><router><listen><port>1</port></listen></router></hearth>",
            "t.xml:1: router.listen: a value cannot hold elements (found <port>)",
            "element in a nested value");

    c = parse("<!-- before -->\n<hearth><!-- inside --><router><!-- deeper -->"
              "<listen>x</listen></router></hearth><!-- after -->");
    ok(c != NULL, "comments are allowed anywhere");
    config_free(c);

    refused("<?xml version='1.0'?>\n<!DOCTYPE hearth [\n<!ENTITY x 'boom'>\n]>\n<hearth/>",
            "t.xml:2: DOCTYPE not allowed (no DTD, no entity declarations)",
            "a DTD with entities is refused");
    refused("<!DOCTYPE hearth SYSTEM 'file:///etc/passwd'>\n<hearth/>",
            "t.xml:1: DOCTYPE not allowed (no DTD, no entity declarations)",
            "an external DTD is refused");
    refused("<!DOCTYPE hearth [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;'>]>"
            "<hearth><statedir>&b;</statedir></hearth>",
            "t.xml:1: DOCTYPE not allowed (no DTD, no entity declarations)",
            "entity expansion never happens");
    refused("<hearth>\n<statedir>&x;</statedir></hearth>", "t.xml:2: Entity 'x' not defined",
            "an undefined entity is refused with its line");
    refused("<hearth>\n<?php echo 1; ?></hearth>",
            "t.xml:2: processing instructions are not allowed", "a PI in a section is refused");
    refused("<hearth><statedir><?x y?></statedir></hearth>",
            "t.xml:1: processing instructions are not allowed", "a PI in a value is refused");
    refused("<?x y?><hearth/>", "t.xml:1: processing instructions are not allowed",
            "a PI before the root is refused");

    refused("<hearth>\n<router>\n</hearth>",
            "t.xml:3: Opening and ending tag mismatch: router line 2 and hearth",
            "not well-formed XML: libxml2's first error, with its line");
    c = parse("");
    ok(c == NULL && strncmp(last_err, "t.xml:", 6) == 0, "an empty file is refused (%s)", last_err);
    config_free(c);
    c = parse("<hearth/><hearth/>");
    ok(c == NULL && strncmp(last_err, "t.xml:1: ", 9) == 0, "two roots are refused (%s)", last_err);
    config_free(c);
}

/* Many lines: the numbers stay right beyond libxml2's 16-bit field. */
static void test_big_line_numbers(void)
{
    size_t lines = 70000, size = lines * 16 + 100, n = 0;
    char *text = malloc(size);
    n += (size_t)snprintf(text + n, size - n, "<hearth>\n");
    for (size_t i = 0; i < lines; i++)
        n += (size_t)snprintf(text + n, size - n, "<!-- %zu -->\n", i);
    snprintf(text + n, size - n, "<nope/></hearth>\n");
    refused(text, "t.xml:70002: unknown setting nope", "line numbers past 65535");
    free(text);
}

static void test_load(void)
{
    char path[] = "/tmp/hearth-test-config-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "<hearth>\n  <domain>file.example</domain>\n  <bad/>\n</hearth>\n";
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        ok(0, "cannot write a temporary file");
        return;
    }
    close(fd);
    char *err = NULL, want[200];
    config_t *c = config_load(path, &err);
    snprintf(want, sizeof want, "%s:3: unknown setting bad", path);
    is_str(c ? "(accepted)" : err, want, "config_load names the file and line");
    free(err);
    config_free(c);

    FILE *f = fopen(path, "w");
    fputs("<hearth><domain>file.example</domain></hearth>", f);
    fclose(f);
    err = NULL;
    c = config_load(path, &err);
    is_str(c ? config_get(c, "domain") : err, "file.example", "config_load reads a file");
    is_str(c ? config_file(c) : NULL, path, "config_file is the path loaded");
    config_free(c);
    unlink(path);

    err = NULL;
    c = config_load("/nonexistent/hearth.xml", &err);
    is_str(c ? "(accepted)" : err,
           "/nonexistent/hearth.xml: cannot open: No such file or directory",
           "a missing file is reported");
    free(err);
}

/* Run fn in a child; its exit status and what it wrote to stderr. */
static int in_child(void (*fn)(void), char *out, size_t size)
{
    int fds[2];
    if (pipe(fds) < 0) return -1;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        fn();
        _exit(99);
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < size && (r = read(fds[0], out + n, size - n - 1)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static config_t *child_config;
static void get_unknown(void)
{
    config_get(child_config, "router.nope");
}
static void count_unknown(void)
{
    config_count(child_config, "nope");
}
static void int_of_string(void)
{
    config_int(child_config, "statedir");
}
static void log_open_then_fatal(void)
{
    log_open("tester", "stderr", "warn");
    log_info("not shown");
    log_warn("line one\nline two");
    log_fatal("fatal %d", 42);
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ " at s. */
static int is_timestamp(const char *s)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ ";
    for (; *shape; shape++, s++) {
        if (*shape == 'd' ? (*s < '0' || *s > '9') : *s != *shape) return 0;
    }
    return 1;
}

static void test_fatal_misuse(void)
{
    char out[2048];
    child_config = parse("<hearth/>");
    is_int(in_child(get_unknown, out, sizeof out), 1,
           "config_get of a path not in the table exits 1");
    if (!ok(strstr(out, "error: config: no setting 'router.nope'") != NULL,
            "and logs the path at error level"))
        printf("#   got: %s", out);
    ok(is_timestamp(out), "log lines start with an ISO 8601 UTC timestamp with ms");
    ok(strstr(out, "Z hearth[") != NULL, "before log_open the ident is hearth");
    is_int(in_child(count_unknown, out, sizeof out), 1,
           "config_count of a path not in the table exits 1");
    is_int(in_child(int_of_string, out, sizeof out), 1, "config_int of a string setting exits 1");
    config_free(child_config);

    is_int(in_child(log_open_then_fatal, out, sizeof out), 1, "log_fatal exits 1");
    ok(strstr(out, "not shown") == NULL, "messages below the threshold are dropped");
    ok(strstr(out, " tester[") != NULL, "the ident is the one given to log_open");
    if (!ok(strstr(out, "warn: line one\\x0aline two\n") != NULL,
            "control characters in a message are escaped"))
        printf("#   got: %s", out);
    ok(strstr(out, "error: fatal 42\n") != NULL, "log_fatal logs at error level");
}

static void test_log_file(void)
{
    char path[] = "/tmp/hearth-test-log-XXXXXX", moved[64], buf[1024];
    int fd = mkstemp(path);
    close(fd);
    is_int(log_level_parse("notice"), LOGL_NOTICE, "log_level_parse notice");
    is_int(log_level_parse("loud"), -1, "log_level_parse of an unknown level is -1");
    is_int(log_threshold, LOGL_INFO, "log_threshold starts at info");
    is_int(log_open("t", path, "loud"), -1, "log_open refuses an unknown level");
    is_int(log_open("t", "/nonexistent/dir/log", "info"), -1,
           "log_open reports a file it cannot open");
    is_int(log_open("t", path, "debug"), 0, "log_open opens a file");
    is_int(log_threshold, LOGL_DEBUG, "log_open sets the threshold");
    log_debug("first %s", "line");
    snprintf(moved, sizeof moved, "%s.1", path);
    rename(path, moved);
    log_reopen();
    log_notice("second line");
    log_close();
    FILE *f = fopen(moved, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    ok(strstr(buf, " t[") && strstr(buf, "debug: first line\n"), "the file holds the first line");
    ok(strstr(buf, "second") == NULL, "after log_reopen the old file gets nothing more");
    f = fopen(path, "r");
    n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
    ok(strstr(buf, "notice: second line\n") != NULL, "log_reopen writes to the new file");
    unlink(path);
    unlink(moved);
    log_threshold = LOGL_INFO;
}

int main(void)
{
    test_lookups();
    test_values();
    test_errors();
    test_big_line_numbers();
    test_load();
    test_fatal_misuse();
    test_log_file();
    return done_testing();
}
