/* sqlite.c — the SQLite driver: one connection to one file, used by one
 * thread at a time.
 *
 * storage_open() opens the file (journal_mode=TRUNCATE, synchronous=FULL,
 * mmap_size=0, busy_timeout, foreign keys) and applies the migrations on
 * the caller's thread. After that every statement runs on libuv's thread
 * pool: requests wait in a queue, and one uv_work at a time takes a batch
 * of them, runs them in submission order in one transaction (on_work: one
 * commit for all their writes) and copies their rows into their results;
 * the after-callback runs their callbacks in the same order, then starts
 * the next batch. So the connection is never used by two threads at
 * once and the loop never waits for the disk.
 *
 * Prepared statements are cached by SQL text (the callers' SQL is a fixed
 * set of strings); "$1".."$n" are bound by name.
 *
 * No memory maps. WAL keeps its index in a -shm file that every process
 * maps shared; when the file system turns read-only or the files
 * immutable under a running daemon, the kernel refuses the first store
 * into a page it has written back, and the process dies of SIGBUS (seen
 * on ext4 with chattr +i: the sm, restarting the WAL after a checkpoint,
 * writes the -shm header). A rollback journal is only read and written,
 * so every failure is an error code; mmap_size=0 keeps the database file
 * out of memory too. synchronous=FULL syncs the journal and the file at
 * each commit: a committed write survives a power cut. The journal is
 * truncated to 0 bytes at the end of every transaction, committed or
 * rolled back, so nothing stays behind on a full disk, which works again
 * as soon as it has room. Readers wait (busy_timeout) while a commit
 * writes the file. A file that an older Hearth left in WAL mode leaves it
 * at the first open by a process that is alone on it; while another
 * process holds it in WAL mode, storage_open() fails and says so.
 *
 * Faults. A statement that fails with SQLITE_READONLY*, SQLITE_IOERR*,
 * SQLITE_CANTOPEN or SQLITE_FULL starts an episode: its request fails
 * (ST_UNAVAILABLE; ST_FULL for a full disk), the loop logs one error line
 * naming the file and the cause, and nothing more until the episode ends
 * at the first write that succeeds, logged too. Except for a full disk
 * the connection itself may be what is broken (SQLite that finds the file
 * read-only opens it for reading, and stays so): a timer, 100 ms doubling
 * to 5 s, has the worker open a new connection (read-write, never
 * creating: a file that vanished is not replaced by an empty one) and
 * take it in place of the old one once it opens for writing at this
 * build's schema version; the old one serves the reads until then. A file
 * read-only at start is opened read-only, in an episode from the start,
 * unless migrations are pending: then storage_open() fails, since nothing
 * could apply them. */
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
#define BUSY_POLL_US 200
#define BACKOFF_MIN_MS 100 /* between reopen attempts, doubling */
#define BACKOFF_MAX_MS 5000

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

    /* Faults: the worker sets these while is_running, the loop reads and
     * clears the news in after_work. */
    bool is_faulty;     /* an episode is on */
    bool needs_reopen;  /* the connection may be the cause */
    bool is_reopen_due; /* reopen before this batch */
    bool has_reopened;  /* in this episode */
    int fault_rc;       /* the episode's first failure */
    int fault_errno;    /* and the system's error under it, or 0 */
    char fault[256];
    bool is_fault_news, is_reopen_news, is_recovery_news;
    char reopen_error[256]; /* the last attempt's, for the debug log */
    uint64_t fault_since;   /* uv_hrtime() */
    uv_timer_t timer;       /* reopen */
    unsigned backoff_ms;
    bool is_reopen_asked; /* the loop's: the timer fired, for the next batch */
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

/* ---- opening a connection (start-up, or the worker when reopening) ------------ */

static int fail_with(char **err, const char *path, const char *what, const char *message)
{
    if (asprintf(err, "%s: %s%s%s", path, what, *what ? ": " : "", message) < 0) *err = NULL;
    return -1;
}

static int exec_all(sqlite3 *db, const char *path, const char *sql, char **err, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) fail_with(err, path, what, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

/* journal_mode=TRUNCATE, and see that SQLite took it: a file in WAL mode
 * stays so, without an error, when it cannot leave it. */
static int set_journal_mode(sqlite3 *db, const char *path, char **err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = TRUNCATE", -1, &stmt, NULL);
    /* Another process of a starting server holds the new file in a
     * transaction (its migrations): the pragma's lock is refused at once,
     * not waited for by the busy handler, so it is tried again here (at
     * open, or on the worker when reopening; never on the loop). */
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    for (int waited = 0; (rc & 0xff) == SQLITE_BUSY && waited < BUSY_TIMEOUT_MS; waited += 20) {
        sqlite3_reset(stmt);
        sqlite3_sleep(20);
        rc = sqlite3_step(stmt);
    }
    const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 0) : "";
    int r = 0;
    if (rc != SQLITE_ROW || !mode || strcmp(mode, "truncate") != 0) {
        /* SQLite cannot open the -shm of a WAL file it may not write, nor
         * leave WAL mode while another connection holds the file so */
        bool is_wal =
            rc == SQLITE_ROW || (rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_BUSY;
        r = fail_with(err, path, "journal_mode",
                      !is_wal ? sqlite3_errmsg(db)
                      : sqlite3_db_readonly(db, "main") == 1
                          ? "the file is read-only and in WAL mode (an older Hearth's): make it "
                            "writable once, so that it leaves WAL mode"
                      : (rc & 0xff) == SQLITE_BUSY
                          ? "the file is in WAL mode and another process has it open (a daemon "
                            "or hearthctl of an older Hearth?): stop it, then start again"
                          : "SQLite keeps the file in WAL mode");
    }
    sqlite3_finalize(stmt);
    return r;
}

/* Another process commits (it holds the file for the milliseconds of its
 * syncs): SQLite's own handler sleeps 1, 2, 5, 10 ms and more between
 * tries, so a reader oversleeps a short commit by several milliseconds;
 * this one tries again every BUSY_POLL_US, for BUSY_TIMEOUT_MS in all. It
 * runs where the statement does: the worker, or the opening thread. */
static int on_busy(void *ud, int tries)
{
    (void)ud;
    if ((long long)tries * BUSY_POLL_US >= BUSY_TIMEOUT_MS * 1000LL) return 0;
    usleep(BUSY_POLL_US);
    return 1;
}

/* A connection set up for this driver, or NULL with *err. Without
 * is_create a missing file is an error, not a new database. */
static sqlite3 *connect_file(const char *path, bool is_create, char **err)
{
    sqlite3 *db = NULL;
    /* NOMUTEX: the connection is used by one thread at a time (the queue) */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (is_create ? SQLITE_OPEN_CREATE : 0);
    int rc = sqlite3_open_v2(path, &db, flags, NULL);
    if (rc != SQLITE_OK) {
        fail_with(err, path, "", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_handler(db, on_busy, NULL);
    if (set_journal_mode(db, path, err) < 0 ||
        exec_all(db, path, "PRAGMA synchronous = FULL", err, "synchronous") != SQLITE_OK ||
        exec_all(db, path, "PRAGMA mmap_size = 0", err, "mmap_size") != SQLITE_OK ||
        exec_all(db, path, "PRAGMA foreign_keys = ON", err, "foreign_keys") != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static int has_version(sqlite3 *db, const char *path, int version, bool *has, char **err)
{
    sqlite3_stmt *stmt = NULL;
    int rc =
        sqlite3_prepare_v2(db, "SELECT 1 FROM schema_version WHERE version = ?1", -1, &stmt, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(stmt, 1, version);
        rc = sqlite3_step(stmt);
        *has = rc == SQLITE_ROW;
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    if (rc != SQLITE_OK) fail_with(err, path, "schema_version", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    return rc;
}

/* How many of this build's migrations db lacks, read without writing:
 * 0 or more, or -1 with *err. */
static int count_pending(sqlite3 *db, const char *path, char **err)
{
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'", -1,
        &stmt, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    bool has_table = rc == SQLITE_ROW;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail_with(err, path, "", sqlite3_errmsg(db));
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return -1;
    int pending = 0;
    for (const st_migration_t *m = st_migrations_sqlite; m->sql; m++) {
        bool has = false;
        if (has_table && has_version(db, path, m->version, &has, err) != SQLITE_OK) return -1;
        pending += !has;
    }
    return pending;
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

/* ---- faults (worker thread) -------------------------------------------------- */

static bool is_fault(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_READONLY:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
        return true;
    default:
        return false;
    }
}

/* A statement failed with rc; the connection's message is still rc's. */
static void note_failure(sq_t *sq, int rc)
{
    if (!is_fault(rc)) return;
    /* a full disk is the disk's: the connection is fine */
    if ((rc & 0xff) != SQLITE_FULL) sq->needs_reopen = true;
    if (sq->is_faulty) return;
    sq->is_faulty = sq->is_fault_news = true;
    sq->fault_rc = rc;
    sq->fault_errno = sqlite3_system_errno(sq->db);
    sq->fault_since = uv_hrtime();
    snprintf(sq->fault, sizeof sq->fault, "%s",
             rc == SQLITE_READONLY_DBMOVED ? "the file was deleted or moved away"
                                           : sqlite3_errmsg(sq->db));
}

/* A request that wrote has committed: the connection works. */
static void note_write(sq_t *sq)
{
    if (!sq->is_faulty) return;
    sq->is_faulty = sq->needs_reopen = false;
    sq->is_recovery_news = true;
}

/* Take a new connection in place of the old one if it opens for writing
 * at this build's schema version; keep the old one otherwise. */
static void reopen(sq_t *sq)
{
    char *err = NULL;
    sqlite3 *db = connect_file(sq->path, false, &err);
    if (db && sqlite3_db_readonly(db, "main") == 1) {
        fail_with(&err, sq->path, "", "still read-only");
    } else if (db) {
        int pending = count_pending(db, sq->path, &err);
        if (pending > 0) {
            char what[64];
            snprintf(what, sizeof what, "%d migration(s) missing", pending);
            fail_with(&err, sq->path, "", what);
        }
    }
    if (err) {
        snprintf(sq->reopen_error, sizeof sq->reopen_error, "%s", err);
        free(err);
        sqlite3_close(db);
        return;
    }
    cache_clear(sq); /* the old connection's statements */
    int rc = sqlite3_close(sq->db);
    if (rc != SQLITE_OK)
        snprintf(sq->reopen_error, sizeof sq->reopen_error, "closing the old connection: %s",
                 sqlite3_errstr(rc));
    sq->db = db;
    sq->needs_reopen = false;
    sq->has_reopened = sq->is_reopen_news = true;
}

/* ---- running requests (worker thread) --------------------------------------- */

static int run_stmt(sq_t *sq, const st_stmt_t *s, st_result_t *res, bool *wrote)
{
    int rc = SQLITE_OK;
    sqlite3_stmt *stmt = cache_get(sq, s->sql, &rc);
    if (!stmt) {
        st_result_fail(res, status_of(rc), "%s",
                       rc == SQLITE_MISUSE ? "not one SQL statement" : sqlite3_errmsg(sq->db));
        note_failure(sq, rc);
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
            bool is_write = !sqlite3_stmt_readonly(stmt);
            res->changes = is_write ? sqlite3_changes64(sq->db) : 0;
            *wrote |= is_write;
        }
    }
    if (rc != SQLITE_OK) {
        st_result_fail(res, status_of(rc), "%s", sqlite3_errmsg(sq->db));
        note_failure(sq, rc);
    }
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    return rc;
}

static int exec_plain(sq_t *sq, const char *sql, st_result_t *res)
{
    st_stmt_t s = {sql, 0, NULL};
    bool wrote = false;
    return run_stmt(sq, &s, res, &wrote);
}

static void run_req(sq_t *sq, st_req_t *req)
{
    st_result_t *res = &req->res;
    if (req->is_tx && exec_plain(sq, "BEGIN IMMEDIATE", res) != SQLITE_OK) return;
    int rc = SQLITE_OK;
    bool wrote = false;
    for (int i = 0; i < req->n && rc == SQLITE_OK; i++)
        rc = run_stmt(sq, &req->stmts[i], res, &wrote);
    if (req->is_tx && rc == SQLITE_OK) {
        /* COMMIT has no rows: keep the last statement's */
        st_result_t commit = {0};
        rc = exec_plain(sq, "COMMIT", &commit);
        if (rc != SQLITE_OK) st_result_fail(res, commit.status, "%s", st_error(&commit));
        st_result_free(&commit);
    }
    if (req->is_tx && rc != SQLITE_OK && !sqlite3_get_autocommit(sq->db)) {
        st_result_t rollback = {0};
        exec_plain(sq, "ROLLBACK", &rollback);
        st_result_free(&rollback);
    }
    if (rc == SQLITE_OK && wrote) note_write(sq);
}

/* Whether a statement of req writes: prepared now, run from the cache
 * later (one that does not prepare fails when it runs). */
static bool is_writer(sq_t *sq, const st_req_t *req)
{
    for (int i = 0; i < req->n; i++) {
        int rc = SQLITE_OK;
        sqlite3_stmt *stmt = cache_get(sq, req->stmts[i].sql, &rc);
        if (stmt && !sqlite3_stmt_readonly(stmt)) return true;
    }
    return false;
}

/* req inside the batch's transaction: a storage_tx in a savepoint of its
 * own, rolled back alone when it fails. Whether it left a write in the
 * transaction. */
static bool run_in_batch(sq_t *sq, st_req_t *req)
{
    st_result_t *res = &req->res;
    if (req->is_tx && exec_plain(sq, "SAVEPOINT req", res) != SQLITE_OK) return false;
    int rc = SQLITE_OK;
    bool wrote = false;
    for (int i = 0; i < req->n && rc == SQLITE_OK; i++)
        rc = run_stmt(sq, &req->stmts[i], res, &wrote);
    if (!req->is_tx || sqlite3_get_autocommit(sq->db)) return wrote;
    st_result_t end = {0};
    if (rc != SQLITE_OK) {
        exec_plain(sq, "ROLLBACK TO req", &end);
        wrote = false;
    }
    exec_plain(sq, "RELEASE req", &end);
    st_result_free(&end);
    return wrote;
}

/* from .. to (excluded) ran in a transaction that did not commit: they
 * fail as `why` did, also the reads, which may have seen its writes. */
static void fail_uncommitted(st_req_t *from, const st_req_t *to, const st_result_t *why)
{
    for (st_req_t *req = from; req != to; req = req->next)
        if (req->res.status == ST_OK)
            st_result_fail(&req->res, why->status, "not written: %s", st_error(why));
}

/* One transaction per batch: its reads take the file's lock once, and
 * its writes share one commit (and its syncs), after which their callbacks
 * run, as they always do. When the transaction cannot commit (or SQLite
 * rolls it back midway, as it does on a full disk or an I/O error), the
 * requests from its first write on fail: none of its writes is in the
 * file, and what came after may have read them. */
static void on_work(uv_work_t *work)
{
    sq_t *sq = work->data;
    if (sq->is_reopen_due) {
        sq->is_reopen_due = false;
        reopen(sq);
    }
    st_req_t *req = sq->batch, *writer = NULL;
    if (!req) return;
    if (!req->next) {
        run_req(sq, req);
        return;
    }
    for (; req && !writer; req = req->next)
        if (is_writer(sq, req)) writer = req;
    st_result_t end = {0};
    if (exec_plain(sq, writer ? "BEGIN IMMEDIATE" : "BEGIN", &end) != SQLITE_OK) {
        /* no write lock (read-only, busy past the timeout): the writes fail
         * as BEGIN did, the reads run alone */
        for (req = sq->batch; req; req = req->next)
            if (is_writer(sq, req))
                st_result_fail(&req->res, end.status, "%s", st_error(&end));
            else
                run_req(sq, req);
        st_result_free(&end);
        return;
    }
    bool wrote = false, is_past_writer = false;
    for (req = sq->batch; req; req = req->next) {
        is_past_writer |= req == writer;
        wrote |= run_in_batch(sq, req);
        if (sqlite3_get_autocommit(sq->db)) {
            if (is_past_writer) fail_uncommitted(writer, req, &req->res);
            for (req = req->next; req; req = req->next)
                run_req(sq, req);
            st_result_free(&end);
            return;
        }
    }
    if (exec_plain(sq, "COMMIT", &end) != SQLITE_OK) {
        if (!sqlite3_get_autocommit(sq->db)) {
            st_result_t rollback = {0};
            exec_plain(sq, "ROLLBACK", &rollback);
            st_result_free(&rollback);
        }
        if (writer) fail_uncommitted(writer, NULL, &end);
    } else if (wrote) {
        note_write(sq);
    }
    st_result_free(&end);
}

/* ---- the loop's side --------------------------------------------------------- */

static void after_work(uv_work_t *work, int status);
static void on_timer(uv_timer_t *timer);

static void on_timer_closed(uv_handle_t *handle)
{
    sq_t *sq = handle->data;
    storage_t *st = sq->st;
    free(sq->path);
    free(sq);
    st_driver_closed(st);
}

static void finish_close(sq_t *sq)
{
    cache_clear(sq);
    int rc = sqlite3_close(sq->db);
    if (rc != SQLITE_OK) log_warn("storage: closing %s: %s", sq->path, sqlite3_errstr(rc));
    uv_close((uv_handle_t *)&sq->timer, on_timer_closed);
}

static void start_batch(sq_t *sq)
{
    if (sq->is_running) return;
    if (!sq->queue && (!sq->is_reopen_asked || sq->is_closing)) {
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
    sq->is_reopen_due = sq->is_reopen_asked;
    sq->is_reopen_asked = false;
    sq->is_running = true;
    int rc = uv_queue_work(sq->loop, &sq->work, on_work, after_work);
    if (rc < 0) log_fatal("storage: uv_queue_work: %s", uv_strerror(rc));
}

/* Log what the worker saw (once per change) and time the next reopen. */
static void report_faults(sq_t *sq)
{
    if (sq->is_fault_news) {
        sq->is_fault_news = false;
        char cause[160] = "";
        if (sq->fault_errno) snprintf(cause, sizeof cause, ", %s", strerror(sq->fault_errno));
        if ((sq->fault_rc & 0xff) == SQLITE_FULL)
            log_err("storage: %s: %s (SQLite code %d%s): writes fail until the disk has room",
                    sq->path, sq->fault, sq->fault_rc, cause);
        else
            log_err("storage: %s: %s (SQLite code %d%s): writes fail; reopening it until it is "
                    "writable again",
                    sq->path, sq->fault, sq->fault_rc, cause);
    }
    if (sq->reopen_error[0]) {
        log_debug("storage: reopening: %s", sq->reopen_error);
        sq->reopen_error[0] = '\0';
    }
    if (sq->is_reopen_news) {
        sq->is_reopen_news = false;
        log_info("storage: %s reopened for writing", sq->path);
    }
    if (sq->is_recovery_news) {
        sq->is_recovery_news = false;
        log_notice("storage: %s: writes work again after %.1f s%s", sq->path,
                   (double)(uv_hrtime() - sq->fault_since) / 1e9,
                   sq->has_reopened ? " (reopened)" : "");
        sq->has_reopened = false;
        sq->backoff_ms = BACKOFF_MIN_MS;
        uv_timer_stop(&sq->timer);
    }
    if (sq->needs_reopen && !sq->is_closing && !uv_is_active((uv_handle_t *)&sq->timer)) {
        uv_timer_start(&sq->timer, on_timer, sq->backoff_ms, 0);
        sq->backoff_ms = sq->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : sq->backoff_ms * 2;
    }
}

static void on_timer(uv_timer_t *timer)
{
    sq_t *sq = timer->data;
    sq->is_reopen_asked = true;
    start_batch(sq); /* or the batch running now: its after_work starts it */
}

static void after_work(uv_work_t *work, int status)
{
    sq_t *sq = work->data;
    st_req_t *req = sq->batch;
    sq->batch = NULL;
    report_faults(sq);
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

/* ---- migrations (the caller's thread, before any work) ---------------------- */

/* Each migration in its own transaction; BEGIN IMMEDIATE takes the write
 * lock first, so daemons starting together apply each one once. */
static int migrate(sq_t *sq, char **err)
{
    sqlite3 *db = sq->db;
    const char *path = sq->path;
    if (exec_all(db, path,
                 "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)", err,
                 "schema_version") != SQLITE_OK)
        return -1;
    int applied = 0, last = 0;
    for (const st_migration_t *m = st_migrations_sqlite; m->sql; m++) {
        if (m->version <= last)
            log_fatal("storage: sqlite migrations out of order at %03d", m->version);
        last = m->version;
        char what[128], insert[96];
        snprintf(what, sizeof what, "migration %03d-%s", m->version, m->name);
        if (exec_all(db, path, "BEGIN IMMEDIATE", err, what) != SQLITE_OK) return -1;
        bool has = false;
        if (has_version(db, path, m->version, &has, err) != SQLITE_OK) goto fail;
        if (has) {
            exec_all(db, path, "COMMIT", err, what);
            continue;
        }
        snprintf(insert, sizeof insert, "INSERT INTO schema_version (version) VALUES (%d)",
                 m->version);
        if (exec_all(db, path, m->sql, err, what) != SQLITE_OK ||
            exec_all(db, path, insert, err, what) != SQLITE_OK ||
            exec_all(db, path, "COMMIT", err, what) != SQLITE_OK)
            goto fail;
        log_info("storage: %s applied %s", path, what);
        applied++;
        continue;
    fail:
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    log_debug("storage: %s at schema version %d (%d applied now)", path, last, applied);
    return 0;
}

/* A file SQLite could open only for reading: the daemon serves what can be
 * read, in an episode from the start, if no migration is pending. */
static int start_read_only(sq_t *sq, char **err)
{
    int pending = count_pending(sq->db, sq->path, err);
    if (pending < 0) return -1;
    if (pending > 0) {
        char what[160];
        snprintf(what, sizeof what,
                 "%d migration(s) pending and the file is read-only: make it writable, then "
                 "start again",
                 pending);
        return fail_with(err, sq->path, "", what);
    }
    sq->is_faulty = sq->needs_reopen = true;
    sq->fault_rc = SQLITE_READONLY;
    sq->fault_since = uv_hrtime();
    log_err("storage: %s is read-only: reads work, writes fail; reopening it until it is "
            "writable again",
            sq->path);
    return 0;
}

/* Daemons and hearthctl open the store once they run as the daemons' user
 * (daemon.h); one that stays root (<user>root</user>) and creates the file
 * in a directory another user owns gives it to that owner, so the daemons
 * can still open it should they run as that user again, with the
 * -journal that the migrations left (SQLite gives the journal it creates
 * later to the database file's owner). */
static void give_to_directory_owner(const char *path)
{
    if (geteuid() != 0) return;
    char *copy = strdup(path);
    if (!copy) log_fatal("out of memory");
    struct stat dir;
    int rc = stat(dirname(copy), &dir);
    free(copy);
    if (rc < 0 || dir.st_uid == 0) return;
    const char *suffixes[] = {"", "-journal"};
    for (int i = 0; i < 2; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        if (chown(file, dir.st_uid, dir.st_gid) < 0 && i == 0)
            log_warn("storage: chown %s: %s", file, strerror(errno));
    }
}

/* The store holds SCRAM keys, rosters and offline mail: its owner's only,
 * whatever the caller's umask (hearthctl's is the shell's). SQLite makes
 * the -journal with the database file's mode, so making the file first,
 * empty (an empty file is an empty database), is enough; one that an older
 * version left readable by others (with its -wal and -shm) is closed. */
static void make_private(const char *path)
{
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
        if (fchmod(fd, 0600) < 0) log_warn("storage: chmod %s: %s", path, strerror(errno));
        close(fd);
        return;
    }
    const char *suffixes[] = {"", "-journal", "-wal", "-shm"};
    for (int i = 0; i < 4; i++) {
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
    sq->backoff_ms = BACKOFF_MIN_MS;
    if (!(sq->db = connect_file(sq->path, true, err))) goto fail;
    if (sqlite3_db_readonly(sq->db, "main") == 1 ? start_read_only(sq, err) < 0
                                                 : migrate(sq, err) < 0)
        goto fail;
    if (!existed) give_to_directory_owner(sq->path);
    uv_timer_init(loop, &sq->timer);
    uv_unref((uv_handle_t *)&sq->timer); /* reopening alone keeps no loop alive */
    sq->timer.data = sq;
    report_faults(sq); /* a read-only start times the first reopen */
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
