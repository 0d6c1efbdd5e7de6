/* sqlite.c — the SQLite driver: one connection to one file, used by one
 * thread at a time.
 *
 * storage_open() opens the file (WAL, busy_timeout, foreign keys,
 * synchronous=NORMAL) and applies the migrations on the caller's thread.
 * After that every statement runs on libuv's thread pool: requests wait in
 * a queue, and one uv_work at a time takes a batch of them, runs them in
 * submission order and copies their rows into their results; the
 * after-callback runs their callbacks in the same order, then starts the
 * next batch. So the connection is never used by two threads at once and
 * the loop never waits for the disk.
 *
 * Prepared statements are cached by SQL text (the callers' SQL is a fixed
 * set of strings); "$1".."$n" are bound by name. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "log.h"

#define BATCH_MAX 64 /* requests per uv_work */
#define CACHE_BUCKETS 256
#define CACHE_MAX 1024 /* statements kept; past that the cache starts over */
#define BUSY_TIMEOUT_MS 5000

typedef struct cached {
    struct cached *next;
    sqlite3_stmt *stmt;
    char sql[];
} cached_t;

typedef struct sq {
    storage_t *st;
    uv_loop_t *loop;
    sqlite3 *db;
    char *path;
    st_req_t *queue, **queue_tail; /* waiting, in submission order */
    st_req_t *batch;               /* owned by the worker while is_running */
    uv_work_t work;
    bool is_running, is_closing;
    cached_t *cache[CACHE_BUCKETS]; /* touched by the worker only */
    int ncached;
} sq_t;

static st_status_t status_of(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        return ST_CONSTRAINT;
    case SQLITE_FULL:
    case SQLITE_TOOBIG:
        return ST_FULL;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
    case SQLITE_READONLY:
        return ST_UNAVAILABLE;
    default:
        return ST_FAILED;
    }
}

/* ---- the statement cache (worker thread) ------------------------------------ */

static unsigned hash(const char *s)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void cache_clear(sq_t *sq)
{
    for (int i = 0; i < CACHE_BUCKETS; i++) {
        while (sq->cache[i]) {
            cached_t *c = sq->cache[i];
            sq->cache[i] = c->next;
            sqlite3_finalize(c->stmt);
            free(c);
        }
    }
    sq->ncached = 0;
}

/* The prepared statement for sql, or NULL with rc set. */
static sqlite3_stmt *cache_get(sq_t *sq, const char *sql, int *rc)
{
    cached_t **bucket = &sq->cache[hash(sql) % CACHE_BUCKETS];
    for (cached_t *c = *bucket; c; c = c->next)
        if (strcmp(c->sql, sql) == 0) return c->stmt;
    if (sq->ncached >= CACHE_MAX) cache_clear(sq);
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    *rc = sqlite3_prepare_v3(sq->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (*rc != SQLITE_OK) return NULL;
    while (tail &&
           (*tail == ';' || *tail == ' ' || *tail == '\n' || *tail == '\t' || *tail == '\r'))
        tail++;
    if (!stmt || (tail && *tail)) {
        /* nothing, or more than one statement: PostgreSQL refuses both too */
        sqlite3_finalize(stmt);
        *rc = SQLITE_MISUSE;
        return NULL;
    }
    size_t n = strlen(sql) + 1;
    cached_t *c = malloc(sizeof *c + n);
    if (!c) log_fatal("out of memory");
    memcpy(c->sql, sql, n);
    c->stmt = stmt;
    c->next = *bucket;
    *bucket = c;
    sq->ncached++;
    return stmt;
}

/* ---- running requests (worker thread) --------------------------------------- */

static int run_stmt(sq_t *sq, const st_stmt_t *s, st_result_t *res)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *stmt = cache_get(sq, s->sql, &rc);
    if (!stmt) {
        st_result_fail(res, status_of(rc), "%s",
                       rc == SQLITE_MISUSE ? "not one SQL statement" : sqlite3_errmsg(sq->db));
        return rc;
    }
    for (int k = 0; k < s->nparams; k++) {
        char name[16];
        snprintf(name, sizeof name, "$%d", k + 1);
        int index = sqlite3_bind_parameter_index(stmt, name);
        if (index == 0) continue; /* not used by this statement */
        rc = s->params[k] ? sqlite3_bind_text(stmt, index, s->params[k], -1, SQLITE_STATIC)
                          : sqlite3_bind_null(stmt, index);
        if (rc != SQLITE_OK) break;
    }
    if (rc == SQLITE_OK) {
        int cols = sqlite3_column_count(stmt);
        st_result_set_cols(res, cols);
        while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
            for (int c = 0; c < cols; c++) {
                if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
                    st_result_add_cell(res, NULL, 0);
                } else {
                    const char *text = (const char *)sqlite3_column_text(stmt, c);
                    st_result_add_cell(res, text ? text : "", sqlite3_column_bytes(stmt, c));
                }
            }
        }
        if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
            res->changes = sqlite3_stmt_readonly(stmt) ? 0 : sqlite3_changes64(sq->db);
        }
    }
    if (rc != SQLITE_OK) st_result_fail(res, status_of(rc), "%s", sqlite3_errmsg(sq->db));
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc;
}

static int exec_plain(sq_t *sq, const char *sql, st_result_t *res)
{
    st_stmt_t s = {sql, 0, NULL};
    return run_stmt(sq, &s, res);
}

static void run_req(sq_t *sq, st_req_t *req)
{
    st_result_t *res = &req->res;
    if (req->is_tx && exec_plain(sq, "BEGIN IMMEDIATE", res) != SQLITE_OK) return;
    int rc = SQLITE_OK;
    for (int i = 0; i < req->n && rc == SQLITE_OK; i++)
        rc = run_stmt(sq, &req->stmts[i], res);
    if (!req->is_tx) return;
    if (rc == SQLITE_OK) {
        /* COMMIT has no rows: keep the last statement's */
        st_result_t commit = {0};
        rc = exec_plain(sq, "COMMIT", &commit);
        if (rc != SQLITE_OK) st_result_fail(res, commit.status, "%s", st_error(&commit));
        st_result_free(&commit);
    }
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(sq->db)) {
        st_result_t rollback = {0};
        exec_plain(sq, "ROLLBACK", &rollback);
        st_result_free(&rollback);
    }
}

static void on_work(uv_work_t *work)
{
    sq_t *sq = work->data;
    for (st_req_t *req = sq->batch; req; req = req->next)
        run_req(sq, req);
}

/* ---- the loop's side --------------------------------------------------------- */

static void after_work(uv_work_t *work, int status);

static void finish_close(sq_t *sq)
{
    storage_t *st = sq->st;
    cache_clear(sq);
    int rc = sqlite3_close(sq->db);
    if (rc != SQLITE_OK) log_warn("storage: closing %s: %s", sq->path, sqlite3_errstr(rc));
    free(sq->path);
    free(sq);
    st_driver_closed(st);
}

static void start_batch(sq_t *sq)
{
    if (sq->is_running) return;
    if (!sq->queue) {
        if (sq->is_closing) finish_close(sq);
        return;
    }
    /* take up to BATCH_MAX requests off the queue */
    st_req_t **end = &sq->queue;
    for (int n = 0; *end && n < BATCH_MAX; n++)
        end = &(*end)->next;
    sq->batch = sq->queue;
    sq->queue = *end;
    *end = NULL;
    if (!sq->queue) sq->queue_tail = &sq->queue;
    sq->is_running = true;
    int rc = uv_queue_work(sq->loop, &sq->work, on_work, after_work);
    if (rc < 0) log_fatal("storage: uv_queue_work: %s", uv_strerror(rc));
}

static void after_work(uv_work_t *work, int status)
{
    sq_t *sq = work->data;
    st_req_t *req = sq->batch;
    sq->batch = NULL;
    /* is_running stays set through the callbacks: what they submit waits
     * for the next batch, behind the rest of this one */
    while (req) {
        st_req_t *next = req->next;
        if (status < 0) st_result_fail(&req->res, ST_FAILED, "%s", uv_strerror(status));
        st_req_done(req);
        req = next;
    }
    sq->is_running = false;
    start_batch(sq);
}

static void sq_submit(void *impl, st_req_t *req)
{
    sq_t *sq = impl;
    req->next = NULL;
    *sq->queue_tail = req;
    sq->queue_tail = &req->next;
    start_batch(sq);
}

static void sq_close(void *impl)
{
    sq_t *sq = impl;
    sq->is_closing = true;
    start_batch(sq); /* finishes at once when nothing is queued or running */
}

/* ---- opening and migrations (the caller's thread, before any work) ---------- */

static int exec_all(sq_t *sq, const char *sql, char **err, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(sq->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        if (asprintf(err, "%s: %s: %s", sq->path, what, msg ? msg : sqlite3_errstr(rc)) < 0)
            *err = NULL;
    }
    sqlite3_free(msg);
    return rc;
}

static int has_version(sq_t *sq, int version, bool *has, char **err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(sq->db, "SELECT 1 FROM schema_version WHERE version = ?1", -1,
                                &stmt, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(stmt, 1, version);
        rc = sqlite3_step(stmt);
        *has = rc == SQLITE_ROW;
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc != SQLITE_OK &&
        asprintf(err, "%s: schema_version: %s", sq->path, sqlite3_errmsg(sq->db)) < 0)
        *err = NULL;
    sqlite3_finalize(stmt);
    return rc;
}

/* Each migration in its own transaction; BEGIN IMMEDIATE takes the write
 * lock first, so daemons starting together apply each one once. */
static int migrate(sq_t *sq, char **err)
{
    if (exec_all(sq, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)", err,
                 "schema_version") != SQLITE_OK)
        return -1;
    int applied = 0, last = 0;
    for (const st_migration_t *m = st_migrations_sqlite; m->sql; m++) {
        if (m->version <= last)
            log_fatal("storage: sqlite migrations out of order at %03d", m->version);
        last = m->version;
        char what[128], insert[96];
        snprintf(what, sizeof what, "migration %03d-%s", m->version, m->name);
        if (exec_all(sq, "BEGIN IMMEDIATE", err, what) != SQLITE_OK) return -1;
        bool has = false;
        if (has_version(sq, m->version, &has, err) != SQLITE_OK) goto fail;
        if (has) {
            exec_all(sq, "COMMIT", err, what);
            continue;
        }
        snprintf(insert, sizeof insert, "INSERT INTO schema_version (version) VALUES (%d)",
                 m->version);
        if (exec_all(sq, m->sql, err, what) != SQLITE_OK ||
            exec_all(sq, insert, err, what) != SQLITE_OK ||
            exec_all(sq, "COMMIT", err, what) != SQLITE_OK)
            goto fail;
        log_info("storage: %s applied %s", sq->path, what);
        applied++;
        continue;
    fail:
        sqlite3_exec(sq->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    log_debug("storage: %s at schema version %d (%d applied now)", sq->path, last, applied);
    return 0;
}

/* Daemons and hearthctl open the store once they run as the daemons' user
 * (daemon.h); one that stays root (<user>root</user>) and creates the file
 * in a directory another user owns gives it to that owner, so the daemons
 * can still open it should they run as that user again. SQLite itself
 * gives the -wal and -shm files it creates later to the database file's
 * owner. */
static void give_to_directory_owner(const char *path)
{
    if (geteuid() != 0) return;
    char *copy = strdup(path);
    if (!copy) log_fatal("out of memory");
    struct stat dir;
    int rc = stat(dirname(copy), &dir);
    free(copy);
    if (rc < 0 || dir.st_uid == 0) return;
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        if (chown(file, dir.st_uid, dir.st_gid) < 0 && i == 0)
            log_warn("storage: chown %s: %s", file, strerror(errno));
    }
}

/* The store holds SCRAM keys, rosters and offline mail: its owner's only,
 * whatever the caller's umask (hearthctl's is the shell's). SQLite makes
 * the -wal and -shm files with the database file's mode, so making the
 * file first, empty (an empty file is an empty database), is enough; one
 * that an older version left readable by others is closed. */
static void make_private(const char *path)
{
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (fchmod(fd, 0600) < 0) log_warn("storage: chmod %s: %s", path, strerror(errno));
        close(fd);
        return;
    }
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        struct stat st;
        if (lstat(file, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
            !(st.st_mode & 077))
            continue;
        if (chmod(file, st.st_mode & 0700) < 0)
            log_warn("storage: %s is readable by others, and chmod failed: %s", file,
                     strerror(errno));
        else
            log_notice("storage: %s was readable by others (mode %04o): now 0%o", file,
                       (unsigned)(st.st_mode & 07777), (unsigned)(st.st_mode & 0700));
    }
}

static void *sq_open(storage_t *st, uv_loop_t *loop, const config_t *config, char **err)
{
    char *dummy = NULL;
    if (!err) err = &dummy;
    *err = NULL;
    if (!sqlite3_threadsafe()) {
        *err = strdup("SQLite was built without thread support");
        return NULL;
    }
    sq_t *sq = calloc(1, sizeof *sq);
    if (!sq) log_fatal("out of memory");
    sq->st = st;
    sq->loop = loop;
    sq->queue_tail = &sq->queue;
    sq->work.data = sq;
    char file[4096];
    if (!(sq->path = strdup(config_sqlite_file(config, file, sizeof file))))
        log_fatal("out of memory");

    bool existed = access(sq->path, F_OK) == 0;
    make_private(sq->path);
    /* NOMUTEX: the connection is used by one thread at a time (the queue) */
    int rc = sqlite3_open_v2(
        sq->path, &sq->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        if (asprintf(err, "%s: %s", sq->path,
                     sq->db ? sqlite3_errmsg(sq->db) : sqlite3_errstr(rc)) < 0)
            *err = NULL;
        goto fail;
    }
    sqlite3_extended_result_codes(sq->db, 1);
    sqlite3_busy_timeout(sq->db, BUSY_TIMEOUT_MS);
    if (exec_all(sq, "PRAGMA journal_mode = WAL", err, "journal_mode") != SQLITE_OK ||
        exec_all(sq, "PRAGMA synchronous = NORMAL", err, "synchronous") != SQLITE_OK ||
        exec_all(sq, "PRAGMA foreign_keys = ON", err, "foreign_keys") != SQLITE_OK ||
        migrate(sq, err) < 0)
        goto fail;
    if (!existed) give_to_directory_owner(sq->path);
    free(dummy);
    return sq;

fail:
    sqlite3_close(sq->db);
    free(sq->path);
    free(sq);
    free(dummy);
    return NULL;
}

const st_driver_t st_driver_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .submit = sq_submit,
    .close = sq_close,
};
