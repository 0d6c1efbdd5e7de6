/* token.c — the one-time tokens of the tokens collection (hearthctl invite
 * and reset, the invitation commands of sm/mod_invite.c, checked by c2s):
 * made here, stored only as a hash, so that a copy of the store lets
 * nobody register, and handed out as XMPP URIs (RFC 5122, XEP-0401). */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "storage.h"

int token_new(char out[TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[TOKEN_LEN / 2];
    /* A credential: GnuTLS's level for keys, not random_hex()'s nonces. */
    if (gnutls_rnd(GNUTLS_RND_KEY, raw, sizeof raw) < 0) return -1;
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[TOKEN_LEN] = '\0';
    explicit_bzero(raw, sizeof raw);
    return 0;
}

int token_hash(const char *token, char out[65])
{
    unsigned char digest[32];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, token, strlen(token), digest) < 0) return -1;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

void token_store(storage_t *st, const token_row_t *row, st_cb cb, void *ud)
{
    char now[24], expires[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    snprintf(expires, sizeof expires, "%lld", row->expires);
    const char *params[] = {row->hash, row->kind, row->domain, row->owner, expires, row->inviter};
    const char *expired[] = {now};
    /* nothing else deletes expired tokens */
    st_stmt_t stmts[] = {
        {"DELETE FROM tokens WHERE expires <= $1", 1, expired},
        {"INSERT INTO tokens (hash, kind, domain, owner, expires, inviter) "
         "VALUES ($1, $2, $3, $4, $5, $6)",
         6, params},
    };
    storage_tx(st, 2, stmts, cb, ud);
}

/* RFC 5122 §2.2: a JID in an XMPP URI, each byte outside the unreserved
 * characters and '@' percent-encoded. */
static void uri_jid(buf_t *b, const char *jid)
{
    for (const unsigned char *p = (const unsigned char *)jid; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~@", *p))
            buf_printf(b, "%c", *p);
        else
            buf_printf(b, "%%%02X", *p);
    }
}

void token_uri(buf_t *b, const char *jid, const char *action, const char *token, bool is_ibr)
{
    buf_appends(b, "xmpp:");
    uri_jid(b, jid);
    buf_printf(b, "?%s;preauth=%s%s", action, token, is_ibr ? ";ibr=y" : "");
}
