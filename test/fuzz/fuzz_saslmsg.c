/* fuzz_saslmsg.c — libFuzzer target for the first SASL message parsers of
 * c2s (c2s/saslmsg.c): sasl_parse_scram_first and sasl_parse_plain.
 *
 * Each input goes to both parsers, NUL-terminated at its length as c2s
 * hands it over; and once more with a byte other than NUL after it, which
 * both must refuse (they may not read past len + 1). Besides the
 * sanitizers, the oracles:
 *   - every output string is NUL-terminated within its buffer, success or
 *     not; a refused PLAIN gives no password;
 *   - SCRAM: on success the flag is n, y or p, with a channel binding type
 *     exactly when it is p, and a non-empty user; writing user and authzid
 *     back with the saslname escapes makes a message that parses to the
 *     same result;
 *   - PLAIN: on success user and password are non-empty, the password
 *     points into the message, and authzid NUL user NUL password is the
 *     message, byte for byte.
 * Build and run: test/fuzz/run.sh (FUZZ_TARGETS=saslmsg). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_saslmsg: broken invariant: %s\n", what);
        abort();
    }
}

static void check_terminated(const sasl_first_t *f)
{
    check(memchr(f->user, 0, sizeof f->user) != NULL, "user is NUL-terminated in its buffer");
    check(memchr(f->authzid, 0, sizeof f->authzid) != NULL,
          "authzid is NUL-terminated in its buffer");
    check(memchr(f->cb_type, 0, sizeof f->cb_type) != NULL,
          "cb_type is NUL-terminated in its buffer");
}

/* s as a SCRAM saslname onto out. */
static char *escape(char *out, const char *s)
{
    for (; *s; s++) {
        if (*s == ',')
            out += sprintf(out, "=2C");
        else if (*s == '=')
            out += sprintf(out, "=3D");
        else
            *out++ = *s;
    }
    return out;
}

static void fuzz_scram(const char *m, size_t len)
{
    sasl_first_t f;
    int rc = sasl_parse_scram_first(m, len, &f);
    check(rc == 0 || rc == -1, "scram: 0 or -1");
    check_terminated(&f);
    if (rc != 0) return;
    check(f.flag == 'n' || f.flag == 'y' || f.flag == 'p', "scram: flag is n, y or p");
    check((f.flag == 'p') == (f.cb_type[0] != '\0'), "scram: a binding type exactly with p");
    check(f.user[0] != '\0', "scram: the user is not empty");
    check(!memchr(m, 0, len), "scram: accepted input has no NUL");

    /* Write it back: gs2 header, a=, n=, then r= and what followed. */
    const char *r = strstr(m, ",r=");
    char *again = malloc(3 * (sizeof f.user + sizeof f.authzid) + len + 64), *p = again;
    if (!again) abort();
    if (f.flag == 'p')
        p += sprintf(p, "p=%s,", f.cb_type);
    else
        p += sprintf(p, "%c,", f.flag);
    if (f.authzid[0]) p = escape(p + sprintf(p, "a="), f.authzid);
    p += sprintf(p, ",n=");
    p = escape(p, f.user);
    /* The user holds no ",r=" once escaped, so the first one in m is the
     * nonce's (the authzid's escapes hide its commas too). */
    check(r != NULL, "scram: accepted input has ,r=");
    p += sprintf(p, "%s", r);
    sasl_first_t g;
    check(sasl_parse_scram_first(again, (size_t)(p - again), &g) == 0,
          "scram: the message written back parses");
    check(g.flag == f.flag && strcmp(g.cb_type, f.cb_type) == 0 && strcmp(g.user, f.user) == 0 &&
              strcmp(g.authzid, f.authzid) == 0,
          "scram: the message written back gives the same result");
    free(again);
}

static void fuzz_plain(const char *m, size_t len)
{
    sasl_first_t f;
    const char *password = "unset";
    int rc = sasl_parse_plain(m, len, &f, &password);
    check(rc == 0 || rc == -1, "plain: 0 or -1");
    check_terminated(&f);
    if (rc != 0) {
        check(password == NULL, "plain: a refusal gives no password");
        return;
    }
    check(password > m && password < m + len, "plain: the password points into the message");
    size_t az = strlen(f.authzid), user = strlen(f.user), pw = strlen(password);
    check(user > 0 && pw > 0, "plain: user and password are not empty");
    check(az + 1 + user + 1 + pw == len, "plain: the three parts make the whole message");
    check(memcmp(m, f.authzid, az) == 0 && m[az] == '\0' && memcmp(m + az + 1, f.user, user) == 0 &&
              m[az + 1 + user] == '\0' && password == m + az + 1 + user + 1,
          "plain: authzid NUL user NUL password is the message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Exactly len + 1 bytes, so ASan sees any read past the NUL. */
    char *m = malloc(size + 1);
    if (!m) abort();
    if (size) memcpy(m, data, size);
    m[size] = '\0';
    fuzz_scram(m, size);
    fuzz_plain(m, size);

    /* Not NUL-terminated at len: both refuse. */
    sasl_first_t f;
    const char *password;
    m[size] = 'x';
    check(sasl_parse_scram_first(m, size, &f) == -1, "scram: refuses a message not ended by NUL");
    check(sasl_parse_plain(m, size, &f, &password) == -1,
          "plain: refuses a message not ended by NUL");
    free(m);
    return 0;
}
