/* tap.h — the Test Anything Protocol for the C unit tests (automake's TAP
 * driver reads it). A failing check prints the expected and actual values. */
#ifndef HEARTH_TAP_H
#define HEARTH_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

#define ok(cond, ...)                                                                              \
    tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

static inline int tap_ok(int pass, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#include <stdarg.h>
static inline int tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    tap_count++;
    if (!pass) tap_failed++;
    printf("%sok %d - ", pass ? "" : "not ", tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    if (!pass) printf("#   failed at %s:%d\n", file, line);
    fflush(stdout);
    return pass;
}

#define is_int(got, want, name)                                                                    \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (!ok(g_ == w_, "%s", name)) printf("#   got %lld, want %lld\n", g_, w_);                \
    } while (0)

#define is_str(got, want, name)                                                                    \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        int same_ = (g_ == NULL || w_ == NULL) ? g_ == w_ : strcmp(g_, w_) == 0;                   \
        if (!ok(same_, "%s", name))                                                                \
            printf("#   got '%s', want '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)");           \
    } while (0)

/* Print the plan at the end; the exit status says whether all passed. */
static inline int done_testing(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif
