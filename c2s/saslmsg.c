/* saslmsg.c — reading a client's first SASL message (RFC 5802 §7 for
 * SCRAM, RFC 4616 for PLAIN) far enough to know who claims to log in, so
 * that auth.c can fetch that user's keys before the exchange runs. The
 * exchange itself (and every check of the proof) is common/sasl.c's.
 * Peer input: every length is checked, nothing trusts a NUL. */
#include <string.h>

#include "c2s.h"

/* A SCRAM saslname ("=2C" is ',' and "=3D" is '='); -1 if malformed. */
static int unescape_saslname(const char *s, size_t n, char *out, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '=') {
            if (i + 3 > n) return -1;
            if (strncmp(s + i, "=2C", 3) == 0)
                c = ',';
            else if (strncmp(s + i, "=3D", 3) == 0)
                c = '=';
            else
                return -1;
            i += 2;
        }
        if (o + 1 >= size) return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int sasl_parse_scram_first(const char *m, size_t len, sasl_first_t *out)
{
    memset(out, 0, sizeof *out);
    if (memchr(m, '\0', len) || m[len] != '\0') return -1;
    const char *p = m, *comma = strchr(p, ',');
    if (!comma) return -1;
    size_t n = (size_t)(comma - p);
    if (n == 1 && (*p == 'n' || *p == 'y')) {
        out->flag = *p;
    } else if (n > 2 && strncmp(p, "p=", 2) == 0 && n - 2 < sizeof out->cb_type) {
        out->flag = 'p';
        memcpy(out->cb_type, p + 2, n - 2);
    } else {
        return -1;
    }
    p = comma + 1;
    if (!(comma = strchr(p, ','))) return -1;
    if (comma > p) {
        if (strncmp(p, "a=", 2) != 0 || unescape_saslname(p + 2, (size_t)(comma - p - 2),
                                                          out->authzid, sizeof out->authzid) < 0)
            return -1;
    }
    p = comma + 1;
    if (strncmp(p, "n=", 2) != 0) return -1;
    p += 2;
    comma = strchr(p, ',');
    if (!comma || comma == p || strncmp(comma + 1, "r=", 2) != 0 || comma[3] == '\0') return -1;
    return unescape_saslname(p, (size_t)(comma - p), out->user, sizeof out->user);
}

int sasl_parse_plain(const char *m, size_t len, sasl_first_t *out, const char **password)
{
    memset(out, 0, sizeof *out);
    *password = NULL;
    if (m[len] != '\0') return -1;
    const char *n1 = memchr(m, '\0', len);
    if (!n1) return -1;
    const char *n2 = memchr(n1 + 1, '\0', len - (size_t)(n1 + 1 - m));
    if (!n2) return -1;
    size_t az = (size_t)(n1 - m), user = (size_t)(n2 - n1 - 1), pw = len - (size_t)(n2 + 1 - m);
    if (user == 0 || pw == 0 || memchr(n2 + 1, '\0', pw)) return -1;
    if (az >= sizeof out->authzid || user >= sizeof out->user) return -1;
    memcpy(out->authzid, m, az);
    memcpy(out->user, n1 + 1, user);
    *password = n2 + 1;
    return 0;
}
