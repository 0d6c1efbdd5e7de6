/* config.h — hearth.xml, the one config file of every daemon.
 *
 * The file is XML: a <hearth> root with shared settings at the top and a
 * section per daemon. Every element and attribute allowed anywhere in it is
 * listed in one table (settings.c) with its type and default, so each daemon
 * validates the whole file: an unknown or invalid setting stops it at start
 * with a message naming the file and line. Values are looked up by dotted
 * path; "router.component@name" is the name attribute of router/component.
 *
 * Example:
 *   <hearth>
 *     <domain>localhost</domain>
 *     <router><port>5347</port></router>
 *   </hearth>
 */
#ifndef HEARTH_CONFIG_H
#define HEARTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum cfg_type {
    CFG_SECTION,  /* an element that only groups others */
    CFG_STRING,
    CFG_INT,      /* decimal, within [min, max] */
    CFG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    CFG_SIZE,     /* bytes: 512, 64k, 10M, 1G */
    CFG_DURATION, /* milliseconds: 250ms, 30s, 5m, 1h; a bare number is seconds */
    CFG_CHOICE,   /* one of the words in `choices`, separated by '|' */
} cfg_type_t;

typedef struct cfg_setting {
    const char *path;    /* "router.port", "router.component@name" */
    cfg_type_t type;
    const char *dflt;    /* as written in a file; NULL: no default */
    bool repeats;        /* the element may appear more than once */
    long long min, max;  /* CFG_INT bounds */
    const char *choices; /* CFG_CHOICE words */
    const char *help;    /* one line, shown in errors and templates */
} cfg_setting_t;

/* The table of every setting (settings.c), ended by a NULL path. */
extern const cfg_setting_t cfg_settings[];

typedef struct config config_t;

/* Load and validate path. NULL on error with *err (malloc'ed, the caller
 * frees) such as "hearth.xml:12: unknown setting router.prot". */
config_t *config_load(const char *path, char **err);
/* The same from a string (tests); name is used in messages. */
config_t *config_parse(const char *name, const char *text, size_t len, char **err);
void config_free(config_t *c);

/* The value at path (the first occurrence), else its default, else NULL.
 * Asking for a path that is not in the table is a programming error and
 * fatal. */
const char *config_get(const config_t *c, const char *path);
/* The SQLite store's file: storage.sqlite, else STATEDIR/hearth.sqlite
 * (written into buf, of size bytes). */
const char *config_sqlite_file(const config_t *c, char *buf, size_t size);
long long config_int(const config_t *c, const char *path);
bool config_bool(const config_t *c, const char *path);
unsigned long long config_size(const config_t *c, const char *path);
unsigned long long config_ms(const config_t *c, const char *path);

/* Repeated elements: how many "router.component" there are, and the value
 * at "router.component@name" of the i-th one (NULL if absent there; the
 * default if it has one). The path's element part picks the repetition. */
int config_count(const config_t *c, const char *path);
const char *config_get_at(const config_t *c, const char *path, int i);

/* The file the config came from. */
const char *config_file(const config_t *c);

/* A secret (a password, a shared key) set inline at path or, better, kept
 * in the file named at file_path (its first line): of the i-th repetition
 * of a repeated element when i >= 0. Malloc'ed, the caller wipes and frees
 * it. NULL when neither is set (*err NULL), or on error (*err says why:
 * both set, the file unreadable or empty). A secret file that group or
 * others may read is warned about in the log. */
char *config_secret(const config_t *c, const char *path, const char *file_path, int i, char **err);
/* The first line of a secret file, as config_secret reads it (and warns
 * about); NULL with *err on failure. */
char *config_secret_file(const char *file, char **err);

#endif
