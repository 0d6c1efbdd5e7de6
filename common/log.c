/* log.c — the one log of a process: stderr, a file, or syslog.
 *
 * Each message becomes one line, written with one call so that lines from
 * the thread pool or from several processes sharing a file never
 * interleave:
 *
 *   2025-01-31T12:00:00.123Z router[4242] notice: listening on 127.0.0.1:5347
 *
 * Control characters in a message (a peer's bytes, say) are written as \xHH
 * so that nobody can forge a log line. A file is opened for append and
 * line-buffered; log_reopen opens it again after rotation. Before log_open,
 * and after log_close, messages go to stderr under the ident "hearth". */
#include "log.h"
#include "map.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

log_level_t log_threshold = LOGL_INFO;

enum log_target { TARGET_STDERR, TARGET_FILE, TARGET_SYSLOG };

static enum log_target target = TARGET_STDERR;
static char ident[64] = "hearth";
static char *file_path; /* TARGET_FILE: the path, for log_reopen */
static FILE *file;      /* TARGET_FILE: the open file */

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error"};

int log_level_parse(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < (int)(sizeof level_names / sizeof level_names[0]); i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

static int syslog_priority(log_level_t level)
{
    switch (level) {
    case LOGL_DEBUG:
        return LOG_DEBUG;
    case LOGL_INFO:
        return LOG_INFO;
    case LOGL_NOTICE:
        return LOG_NOTICE;
    case LOGL_WARN:
        return LOG_WARNING;
    case LOGL_ERR:
        return LOG_ERR;
    }
    return LOG_ERR;
}

static FILE *open_file(const char *path)
{
    FILE *f = fopen(path, "a");
    if (!f) return NULL;
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

void log_close(void)
{
    if (target == TARGET_FILE && file) fclose(file);
    if (target == TARGET_SYSLOG) closelog();
    file = NULL;
    free(file_path);
    file_path = NULL;
    target = TARGET_STDERR;
    snprintf(ident, sizeof ident, "hearth");
}

int log_open(const char *new_ident, const char *new_target, const char *level)
{
    int lv = log_level_parse(level ? level : "info");
    if (lv < 0) {
        fprintf(stderr, "%s: unknown log level '%s' (debug, info, notice, warn, error)\n",
                new_ident ? new_ident : "hearth", level);
        return -1;
    }
    if (!new_target) new_target = "stderr";

    FILE *f = NULL;
    char *path = NULL;
    if (strcmp(new_target, "stderr") != 0 && strcmp(new_target, "syslog") != 0) {
        f = open_file(new_target);
        if (!f) {
            fprintf(stderr, "%s: cannot open log file %s: %s\n", new_ident ? new_ident : "hearth",
                    new_target, strerror(errno));
            return -1;
        }
        path = strdup(new_target);
        if (!path) {
            fclose(f);
            fprintf(stderr, "%s: out of memory\n", new_ident ? new_ident : "hearth");
            return -1;
        }
    }

    log_close();
    snprintf(ident, sizeof ident, "%s", new_ident ? new_ident : "hearth");
    log_threshold = (log_level_t)lv;
    if (f) {
        target = TARGET_FILE;
        file = f;
        file_path = path;
    } else if (strcmp(new_target, "syslog") == 0) {
        target = TARGET_SYSLOG;
        /* openlog keeps the pointer: ident is static. */
        openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    }
    return 0;
}

void log_reopen(void)
{
    if (target != TARGET_FILE) return;
    FILE *f = open_file(file_path);
    if (!f) {
        /* Keep the old file: a log that goes on somewhere beats none. */
        log_err("cannot reopen log file %s: %s", file_path, strerror(errno));
        return;
    }
    fclose(file);
    file = f;
}

/* Copy msg into out (size > 4), escaping control characters except tab and
 * dropping one trailing newline; truncates rather than overflows. */
static void escape(const char *msg, char *out, size_t size)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = strlen(msg), o = 0;
    if (len && msg[len - 1] == '\n') len--;
    for (size_t i = 0; i < len && o + 5 < size; i++) {
        unsigned char c = (unsigned char)msg[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

static void log_vwrite(log_level_t level, const char *fmt, va_list ap)
{
    int saved_errno = errno;
    char msg[4096], clean[4096 + 64];

    vsnprintf(msg, sizeof msg, fmt, ap);
    escape(msg, clean, sizeof clean);

    if (target == TARGET_SYSLOG) {
        syslog(syslog_priority(level), "%s", clean);
        errno = saved_errno;
        return;
    }

    struct timespec now;
    struct tm tm;
    char stamp[32];
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", now.tv_nsec / 1000000);

    unsigned lv = (unsigned)level < 5 ? (unsigned)level : LOGL_ERR;
    char line[sizeof clean + 160];
    int len = snprintf(line, sizeof line, "%s %s[%ld] %s: %s\n", stamp, ident, (long)getpid(),
                       level_names[lv], clean);
    if (len < 0) len = 0;
    if ((size_t)len >= sizeof line) {
        len = (int)sizeof line - 1;
        line[len - 1] = '\n';
    }
    FILE *out = target == TARGET_FILE && file ? file : stderr;
    fwrite(line, 1, (size_t)len, out);
    errno = saved_errno;
}

void log_write(log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

void log_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(LOGL_ERR, fmt, ap);
    va_end(ap);
    if (target == TARGET_FILE && file) fflush(file);
    exit(1);
}

static map_t seen;
static bool is_seen_init;

bool log_is_first(const char *key)
{
    if (!is_seen_init) {
        map_init(&seen);
        is_seen_init = true;
    }
    if (map_get(&seen, key)) return false;
    if (seen.count >= LOG_ONCE_MAX) {
        map_free(&seen);
        map_init(&seen);
    }
    map_put(&seen, key, (void *)1);
    return true;
}
