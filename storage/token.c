/* token.c — the one-time tokens of the tokens collection (hearthctl invite
 * and reset, checked by c2s): made here, and stored only as a hash, so
 * that a copy of the store lets nobody register. */
#include <gnutls/crypto.h>
#include <stdio.h>
#include <string.h>

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
