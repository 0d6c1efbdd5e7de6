/* settings-man.c — the SETTINGS section of hearth.xml(5), printed as roff
 * from the one table of settings (common/settings.c), so that the manual
 * never drifts from what the daemons accept.
 *
 * A build-time program, never installed: `make` runs it after the
 * hand-written head (docs/man/hearth.xml.5.in) to make hearth.xml.5. Each
 * top-level section becomes a subsection (.SS); every other entry one .TP
 * paragraph: its path as --get takes it, its type, whether it repeats, its
 * default, and its help line. */
#include <stdio.h>
#include <string.h>

#include "config.h"

/* s as roff text: a backslash is \e, a hyphen \- (so groff neither breaks
 * nor curls it), and a line never starts with a control character. */
static void put_text(const char *s)
{
    if (*s == '.' || *s == '\'') fputs("\\&", stdout);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", stdout);
        else if (*s == '-')
            fputs("\\-", stdout);
        else
            putchar(*s);
    }
}

/* A help line (a fragment, as in the table), with its full stop. */
static void put_help(const char *help)
{
    put_text(help);
    puts(".");
}

static void put_type(const cfg_setting_t *s)
{
    switch (s->type) {
    case CFG_SECTION:
        fputs("section", stdout);
        break;
    case CFG_STRING:
        fputs("string", stdout);
        break;
    case CFG_INT:
        printf("integer from %lld to %lld", s->min, s->max);
        break;
    case CFG_BOOL:
        fputs("boolean", stdout);
        break;
    case CFG_SIZE:
        fputs("size", stdout);
        break;
    case CFG_DURATION:
        fputs("duration", stdout);
        break;
    case CFG_CHOICE:
        fputs("one of ", stdout);
        put_text(s->choices);
        break;
    }
}

int main(void)
{
    puts(".SH SETTINGS");
    puts("Every setting the daemons accept, in the order of the table they check the file");
    puts("against.");
    puts("A path reads as the elements from the root, joined by dots, and an attribute");
    puts("after");
    puts(".BR @ :");
    puts(".B router.account@role");
    puts("is the");
    puts(".B role");
    puts("attribute of");
    puts(".B <account>");
    puts("inside");
    puts(".BR <router> .");
    for (const cfg_setting_t *s = cfg_settings; s->path; s++) {
        bool is_top = !strchr(s->path, '.') && !strchr(s->path, '@');
        if (s->type == CFG_SECTION && is_top) {
            printf(".SS %s\n", s->path);
            put_help(s->help);
            continue;
        }
        puts(".TP");
        printf(".B ");
        put_text(s->path);
        putchar('\n');
        fputs(".I ", stdout);
        put_type(s);
        if (s->repeats) fputs(", repeatable", stdout);
        if (s->dflt && *s->dflt) {
            fputs("; default\n.B \"", stdout);
            put_text(s->dflt);
            fputs("\"\n", stdout);
        } else if (s->type != CFG_SECTION) {
            fputs(s->dflt ? "; empty by default\n" : "; no default\n", stdout);
        } else {
            putchar('\n');
        }
        puts(".br");
        put_help(s->help);
    }
    return ferror(stdout) ? 1 : 0;
}
