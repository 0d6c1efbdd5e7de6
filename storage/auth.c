/* auth.c — the auth collection: each account's SCRAM keys, never its
 * password. Registration (c2s), password changes (sm) and hearthctl all
 * derive and store keys through here, with one iteration count. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "storage.h"

int auth_keys_make(const char *password, auth_keys_t *out)
{
    if (scram_keys_make("SHA-1", password, NULL, AUTH_ITERATIONS, &out->sha1) < 0 ||
        scram_keys_make("SHA-256", password, NULL, AUTH_ITERATIONS, &out->sha256) < 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

void auth_store(storage_t *st, const char *owner, const auth_keys_t *keys, bool is_new, st_cb cb,
                void *ud)
{
    char iter1[16], iter256[16], created[24];
    snprintf(iter1, sizeof iter1, "%u", keys->sha1.iterations);
    snprintf(iter256, sizeof iter256, "%u", keys->sha256.iterations);
    snprintf(created, sizeof created, "%lld", (long long)time(NULL));
    const char *params[10] = {owner,
                              keys->sha1.salt,
                              iter1,
                              keys->sha1.stored_key,
                              keys->sha1.server_key,
                              keys->sha256.salt,
                              iter256,
                              keys->sha256.stored_key,
                              keys->sha256.server_key,
                              created};
    if (is_new)
        storage_query(st,
                      "INSERT INTO auth (owner, sha1_salt, sha1_iter, sha1_stored, sha1_server,"
                      " sha256_salt, sha256_iter, sha256_stored, sha256_server, created)"
                      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                      10, params, cb, ud);
    else
        storage_query(st,
                      "UPDATE auth SET sha1_salt = $2, sha1_iter = $3, sha1_stored = $4,"
                      " sha1_server = $5, sha256_salt = $6, sha256_iter = $7,"
                      " sha256_stored = $8, sha256_server = $9 WHERE owner = $1",
                      9, params, cb, ud);
}

void auth_list(storage_t *st, const char *after, int limit, st_cb cb, void *ud)
{
    char count[24];
    snprintf(count, sizeof count, "%d", limit);
    const char *params[] = {after, count};
    storage_query(st,
                  "SELECT owner FROM auth WHERE owner > $1 ORDER BY owner "
                  "LIMIT CAST($2 AS INTEGER)",
                  2, params, cb, ud);
}

void auth_count(storage_t *st, st_cb cb, void *ud)
{
    storage_query(st, "SELECT COUNT(*) FROM auth", 0, NULL, cb, ud);
}
