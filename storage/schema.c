/* schema.c — which schema version a store holds, read without changing it:
 * for hearthctl check, which must tell "run the sm once to migrate" from
 * "this store is newer than this build" before any daemon touches it.
 *
 * Unlike storage_open(), nothing here creates, migrates or writes: a
 * SQLite file is opened read-only (a missing one is reported, not made),
 * and PostgreSQL is asked one SELECT. The version is the highest row of
 * schema_version, the table both drivers' migrate() keep (0 when the store
 * has none yet). Blocking, on the caller's thread: a command-line tool's
 * call, never a daemon's. */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "driver.h"
#include "log.h"

#define PG_CONNECT_TIMEOUT "5" /* seconds, unless the connection string says */

static int fail(char **err, const char *fmt, const char *a, const char *b)
{
    if (asprintf(err, fmt, a, b) < 0) log_fatal("out of memory");
    return -1;
}

static int last_version(const st_migration_t *m)
{
    int last = 0;
    for (; m->sql; m++)
        last = m->version;
    return last;
}

/* One line of a libpq message (they end with a newline). */
static const char *first_line(char *buf, size_t size, const char *message)
{
    snprintf(buf, size, "%s", message && *message ? message : "unknown error");
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

static int sqlite_version(const config_t *config, int *version, char **err)
{
    char buf[4096];
    const char *path = config_sqlite_file(config, buf, sizeof buf);
    if (access(path, F_OK) < 0) return 1;
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        int r = fail(err, "%s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return r;
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *stmt = NULL;
    rc = sqlite3_prepare_v2(db, "SELECT name FROM sqlite_master WHERE name = 'schema_version'", -1,
                            &stmt, NULL);
    int step = rc == SQLITE_OK ? sqlite3_step(stmt) : rc;
    bool has_table = step == SQLITE_ROW;
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        int r = fail(err, "%s: %s", path, sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        sqlite3_close(db);
        return r;
    }
    sqlite3_finalize(stmt);
    stmt = NULL;
    *version = 0;
    if (has_table) {
        rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_version", -1,
                                &stmt, NULL);
        if (rc != SQLITE_OK || sqlite3_step(stmt) != SQLITE_ROW) {
            int r = fail(err, "%s: schema_version: %s", path, sqlite3_errmsg(db));
            sqlite3_finalize(stmt);
            sqlite3_close(db);
            return r;
        }
        *version = sqlite3_column_int(stmt, 0);
        sqlite3_finalize(stmt);
    }
    sqlite3_close(db);
    return 0;
}

static int pgsql_version(const config_t *config, int *version, char **err)
{
    const char *conninfo = config_get(config, "storage.pgsql");
    /* connect_timeout first: one in the connection string overrides it. */
    const char *const keys[] = {"connect_timeout", "dbname", NULL};
    const char *const values[] = {PG_CONNECT_TIMEOUT, conninfo ? conninfo : "", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (!conn) log_fatal("out of memory");
    char msg[512];
    if (PQstatus(conn) != CONNECTION_OK) {
        int r = fail(err, "PostgreSQL (%s): %s", conninfo ? conninfo : "",
                     first_line(msg, sizeof msg, PQerrorMessage(conn)));
        PQfinish(conn);
        return r;
    }
    PGresult *res = PQexec(conn, "SELECT coalesce(max(version), 0) FROM schema_version");
    int rc = 0;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        *version = atoi(PQgetvalue(res, 0, 0));
    } else {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "42P01") == 0) /* undefined_table: no schema yet */
            *version = 0;
        else
            rc = fail(err, "PostgreSQL (%s): schema_version: %s", conninfo ? conninfo : "",
                      first_line(msg, sizeof msg, PQerrorMessage(conn)));
    }
    PQclear(res);
    PQfinish(conn);
    return rc;
}

int storage_schema_version(const config_t *config, int *version, int *expected, char **err)
{
    *err = NULL;
    *version = 0;
    bool is_pgsql = strcmp(config_get(config, "storage.driver"), "pgsql") == 0;
    *expected = last_version(is_pgsql ? st_migrations_pgsql : st_migrations_sqlite);
    return is_pgsql ? pgsql_version(config, version, err) : sqlite_version(config, version, err);
}
