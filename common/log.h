/* log.h — one log per process: stderr (default), a file, or syslog, with a
 * level below which messages cost only a comparison. */
#ifndef HEARTH_LOG_H
#define HEARTH_LOG_H

#include <stdbool.h>

typedef enum log_level {
    LOGL_DEBUG = 0,
    LOGL_INFO,
    LOGL_NOTICE,
    LOGL_WARN,
    LOGL_ERR,
} log_level_t;

extern log_level_t log_threshold;

/* ident: the daemon's name; target: "stderr", "syslog" or a file path;
 * level: "debug", "info", "notice", "warn" or "error". Returns -1 (and
 * logs to stderr why) if the target can't be opened or level is unknown. */
int log_open(const char *ident, const char *target, const char *level);
void log_close(void);
/* Reopen a log file (after rotation, on SIGHUP). */
void log_reopen(void);
int log_level_parse(const char *name); /* -1 if unknown */
void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= log_threshold) log_write((level), __VA_ARGS__);                             \
    } while (0)
#define log_debug(...) log_at(LOGL_DEBUG, __VA_ARGS__)
#define log_info(...) log_at(LOGL_INFO, __VA_ARGS__)
#define log_notice(...) log_at(LOGL_NOTICE, __VA_ARGS__)
#define log_warn(...) log_at(LOGL_WARN, __VA_ARGS__)
#define log_err(...) log_at(LOGL_ERR, __VA_ARGS__)
/* True the first time key is given, false after: for a warning about a
 * peer that keeps repeating itself (a refused sender), logged once per
 * key. Remembers up to LOG_ONCE_MAX keys, then starts over. */
#define LOG_ONCE_MAX 1024
bool log_is_first(const char *key);

/* Out of memory and broken invariants: log and exit(1); the supervisor restarts. */
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
