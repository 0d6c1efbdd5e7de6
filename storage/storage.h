/* storage.h — the asynchronous store of every daemon (DESIGN.md, "Storage").
 *
 * Data are collections: one SQL table per collection type (auth,
 * roster_items, offline, vcard, ...) with typed columns and an `owner`
 * column holding a bare JID. The schema lives in versioned migration files
 * under storage/sql/<driver>/NNN-name.sql, applied in order at
 * storage_open() and recorded in the table schema_version.
 *
 * Callers write SQL with $1..$n placeholders; the same text runs on both
 * drivers (SQLite binds "$1" as a named parameter). Parameters and results
 * are text (NULL for SQL NULL): integers are written and read as decimal.
 * Every call is asynchronous: the callback runs later on the caller's loop,
 * never from inside the call, exactly once, also when the database is down
 * (status ST_UNAVAILABLE) or the store is closing.
 *
 * Drivers:
 *   sqlite  the embedded default: a file (storage.sqlite, default
 *           STATEDIR/hearth.sqlite) with a rollback journal (no WAL, no
 *           memory maps); statements run on libuv's thread pool, one at a
 *           time per store, in submission order. A read-only, vanished or
 *           full file fails calls (ST_UNAVAILABLE, ST_FULL) and the driver
 *           reopens it by itself with backoff (sqlite.c, "Faults").
 *   pgsql   libpq's non-blocking API on the loop (storage.pgsql, a
 *           connection string); statements are pipelined in submission
 *           order. When the server goes away, calls fail with
 *           ST_UNAVAILABLE and the driver reconnects by itself with
 *           backoff.
 * A transaction (storage_tx) commits all its statements or none. */
#ifndef HEARTH_STORAGE_H
#define HEARTH_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "sasl.h"

typedef enum st_status {
    ST_OK = 0,
    ST_UNAVAILABLE = -1, /* no database (down, unreachable, closing) */
    ST_CONSTRAINT = -2,  /* a unique or foreign key constraint refused it */
    ST_FULL = -3,        /* disk full, quota, too big */
    ST_FAILED = -4,      /* anything else (a bad statement: a bug) */
} st_status_t;

typedef struct st_result st_result_t;

/* The outcome of a call. res and everything it points to live until the
 * callback returns. */
typedef void (*st_cb)(void *ud, const st_result_t *res);

st_status_t st_status(const st_result_t *res);
/* The driver's message for a failure ("" on success). */
const char *st_error(const st_result_t *res);
int st_rows(const st_result_t *res);
int st_cols(const st_result_t *res);
/* Row r, column c as text, or NULL for SQL NULL. */
const char *st_text(const st_result_t *res, int r, int c);
/* The same as an integer (0 for NULL or not a number). */
long long st_int(const st_result_t *res, int r, int c);
/* Rows changed by an INSERT, UPDATE or DELETE (the last one of a tx). */
long long st_changes(const st_result_t *res);

typedef struct st_stmt {
    const char *sql;
    int nparams;
    const char *const *params; /* nparams values, NULL for SQL NULL */
} st_stmt_t;

typedef struct storage storage_t;

/* Open the store the config names (storage.driver: sqlite or pgsql) and
 * apply pending migrations before returning (start-up may block here; this
 * is the only call that does). NULL with *err (malloc'ed) on failure; for
 * pgsql an unreachable server at start is a failure too. */
storage_t *storage_open(uv_loop_t *loop, const config_t *config, char **err);
/* Finish queued calls (their callbacks run), then free the store; done
 * runs after (may be NULL). */
void storage_close(storage_t *st, void (*done)(void *ud), void *ud);
/* "sqlite" or "pgsql". */
const char *storage_driver(const storage_t *st);

/* Run one statement. Parameters are copied: they need not outlive the call. */
void storage_query(storage_t *st, const char *sql, int nparams, const char *const *params,
                   st_cb cb, void *ud);
/* Run n statements in one transaction; the result is the last statement's
 * rows, or the first failure (then nothing was written). */
void storage_tx(storage_t *st, int n, const st_stmt_t *stmts, st_cb cb, void *ud);
/* Delete every row owner has in every collection, in one transaction. */
void storage_delete_owner(storage_t *st, const char *owner, st_cb cb, void *ud);
/* The statements storage_delete_owner runs ("DELETE FROM t WHERE owner =
 * $1", one per table with an owner column), for a caller that empties an
 * account inside a transaction of its own; *n is set to their number. */
const char *const *storage_delete_owner_sql(const storage_t *st, int *n);

/* ---- the auth collection (auth.c) ------------------------------------- */

/* PBKDF2 iterations of new keys (RFC 7677 asks for at least 4096). */
#define AUTH_ITERATIONS 4096

typedef struct auth_keys {
    scram_keys_t sha1, sha256;
} auth_keys_t;

/* Both key sets from a password, with fresh salts. 0, or -1 for a
 * password SASLprep refuses. PBKDF2: run it off the loop (uv_queue_work). */
int auth_keys_make(const char *password, auth_keys_t *out);
/* Store an account's keys: a new account (is_new: ST_CONSTRAINT if it
 * exists) or new keys for an existing one (st_changes 0 if there is none). */
void auth_store(storage_t *st, const char *owner, const auth_keys_t *keys, bool is_new, st_cb cb,
                void *ud);
/* The accounts after `after` ("" from the first), in order, at most limit
 * of them: one column, the owner. */
void auth_list(storage_t *st, const char *after, int limit, st_cb cb, void *ud);
/* How many accounts there are: one row, one column. */
void auth_count(storage_t *st, st_cb cb, void *ud);

/* ---- the schema, without opening the store (schema.c) ------------------ */

/* The schema version of the store config names, read without migrating,
 * creating or writing anything: *version is the highest migration it has
 * (0: none yet), *expected the highest this build has. Blocking: for
 * command-line tools (hearthctl check), never a daemon's loop. 0; 1 when
 * the SQLite file does not exist yet (the daemons make it); -1 with *err
 * (malloc'ed) when the store cannot be opened or read. */
int storage_schema_version(const config_t *config, int *version, int *expected, char **err);

/* ---- the tokens collection (token.c) ------------------------------------ */

/* Characters of a token: 128 random bits in hex. */
#define TOKEN_LEN 32

/* A new random token: 0, or -1 if GnuTLS has no random numbers. */
int token_new(char out[TOKEN_LEN + 1]);
/* The hash kept in tokens.hash: SHA-256, hex. 0, or -1 if GnuTLS fails. */
int token_hash(const char *token, char out[65]);
typedef struct token_row {
    const char *hash;    /* token_hash() of the token */
    const char *kind;    /* "invite" or "reset" */
    const char *domain;  /* where it registers, prepared */
    const char *owner;   /* the account it is for, or NULL (any name) */
    const char *inviter; /* the user who made it, or NULL (an administrator) */
    long long expires;   /* unix seconds */
} token_row_t;
/* Store a token, and delete the expired ones, in one transaction. */
void token_store(storage_t *st, const token_row_t *row, st_cb cb, void *ud);
/* Append xmpp:JID?ACTION;preauth=TOKEN[;ibr=y] (RFC 5122, XEP-0401). */
void token_uri(buf_t *b, const char *jid, const char *action, const char *token, bool is_ibr);

#endif
