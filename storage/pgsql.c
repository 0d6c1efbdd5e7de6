/* pgsql.c — the PostgreSQL driver: one libpq connection in pipeline mode,
 * driven by the loop.
 *
 * storage_open() connects with PQconnectdb and applies the migrations with
 * plain blocking calls (start-up only), then turns the same connection
 * non-blocking, enters pipeline mode and watches its socket with a
 * uv_poll. Each request is sent at once: its statements with
 * PQsendQueryParams (text parameters and results), then a pipeline sync.
 * Many requests are in flight; their results come back in order and close
 * at their sync, which is when the callback runs.
 *
 * Transactions: the statements between two syncs of a pipeline run in one
 * implicit transaction, committed at the sync, or rolled back at it when one
 * of them fails (the server then skips the rest). That is storage_tx's
 * all-or-nothing without a BEGIN/COMMIT pair: an explicit block that fails
 * would leave the session in an aborted transaction until a ROLLBACK, and
 * the requests already pipelined behind it would be aborted with it.
 *
 * When the connection drops, every request in flight fails with
 * ST_UNAVAILABLE, new ones fail at once while it is down, and a timer
 * reconnects (PQconnectStart/PQconnectPoll on the loop) with a backoff of
 * 100 ms doubling to 5 s. Each change of state is logged once. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "log.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_PARAMS 65535          /* the protocol's limit */
#define MIGRATION_LOCK 0x48656172 /* pg_advisory_xact_lock key: "Hear" */

typedef enum pg_state {
    PG_UP,         /* connected, pipeline mode */
    PG_DOWN,       /* waiting for the reconnect timer */
    PG_CONNECTING, /* PQconnectPoll in progress */
} pg_state_t;

typedef struct pg {
    storage_t *st;
    uv_loop_t *loop;
    char *conninfo;
    PGconn *conn;
    pg_state_t state;
    uv_poll_t *poll; /* on PQsocket(conn); its own allocation */
    int poll_fd, poll_events;
    uv_timer_t timer; /* reconnect */
    unsigned backoff_ms;
    st_req_t *inflight, **inflight_tail; /* sent, in order */
    int inflight_count;
    bool is_closing, is_dispatching, is_torn_down;
} pg_t;

static void go_down(pg_t *pg, const char *why);
static void maybe_finish_close(pg_t *pg);

static void on_notice(void *ud, const char *message)
{
    size_t n = strlen(message);
    while (n && message[n - 1] == '\n')
        n--;
    log_debug("storage: PostgreSQL says: %.*s", (int)n, message);
}

/* libpq's message on one line: its newlines and tabs (a DETAIL, a LINE
 * with a caret) become single spaces, the trailing ones go. */
static const char *trimmed(char *buf, size_t size, const char *message)
{
    if (!message || !*message) message = "unknown error";
    size_t n = 0;
    for (const char *p = message; *p && n + 1 < size; p++) {
        bool is_space = *p == '\n' || *p == '\t' || *p == ' ' || *p == '\r';
        if (is_space && (n == 0 || buf[n - 1] == ' ')) continue;
        buf[n++] = is_space ? ' ' : *p;
    }
    while (n && buf[n - 1] == ' ')
        n--;
    buf[n] = '\0';
    return buf;
}

static st_status_t status_of(const char *sqlstate)
{
    if (!sqlstate) return ST_FAILED;
    if (strncmp(sqlstate, "23", 2) == 0) return ST_CONSTRAINT;
    if (strncmp(sqlstate, "53", 2) == 0) return ST_FULL;
    if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P", 3) == 0) return ST_UNAVAILABLE;
    return ST_FAILED;
}

/* ---- the socket --------------------------------------------------------------- */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void unwatch(pg_t *pg)
{
    if (!pg->poll) return;
    uv_poll_stop(pg->poll);
    uv_close((uv_handle_t *)pg->poll, free_handle);
    pg->poll = NULL;
}

/* The store keeps the loop alive only while calls are in flight, as the
 * SQLite driver does: a program that runs its loop until nothing is left
 * to do (hearthctl) ends once its calls are answered. */
static void hold_loop(pg_t *pg)
{
    if (!pg->poll) return;
    if (pg->inflight)
        uv_ref((uv_handle_t *)pg->poll);
    else
        uv_unref((uv_handle_t *)pg->poll);
}

/* Watch fd for events; a new socket (libpq may open another while
 * connecting) gets a new handle. */
static void watch(pg_t *pg, int events, uv_poll_cb cb)
{
    int fd = PQsocket(pg->conn);
    if (pg->poll && pg->poll_fd != fd) unwatch(pg);
    if (!pg->poll) {
        if (!(pg->poll = malloc(sizeof *pg->poll))) log_fatal("out of memory");
        int rc = uv_poll_init_socket(pg->loop, pg->poll, fd);
        if (rc < 0)
            log_fatal("storage: uv_poll_init on the PostgreSQL socket: %s", uv_strerror(rc));
        pg->poll->data = pg;
        pg->poll_fd = fd;
        pg->poll_events = 0;
    }
    pg->poll_events = events;
    uv_poll_start(pg->poll, events, cb);
    hold_loop(pg);
}

/* ---- results -------------------------------------------------------------------- */

static void take_result(st_req_t *req, PGresult *r, PGconn *conn)
{
    st_result_t *res = &req->res;
    ExecStatusType status = PQresultStatus(r);
    if (res->status != ST_OK) return; /* the first failure is the result */
    switch (status) {
    case PGRES_EMPTY_QUERY: /* as the SQLite driver says */
        st_result_fail(res, ST_FAILED, "not one SQL statement");
        return;
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK: {
        int rows = PQntuples(r), cols = PQnfields(r);
        st_result_set_cols(res, cols);
        for (int i = 0; i < rows; i++)
            for (int c = 0; c < cols; c++)
                st_result_add_cell(res, PQgetisnull(r, i, c) ? NULL : PQgetvalue(r, i, c),
                                   PQgetlength(r, i, c));
        const char *cmd = PQcmdStatus(r);
        if (cmd && strncmp(cmd, "SELECT", 6) != 0) res->changes = strtoll(PQcmdTuples(r), NULL, 10);
        return;
    }
    case PGRES_FATAL_ERROR: {
        char msg[512];
        const char *sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        st_status_t st = status_of(sqlstate);
        if (!sqlstate && PQstatus(conn) == CONNECTION_BAD) st = ST_UNAVAILABLE;
        st_result_fail(res, st, "%s", trimmed(msg, sizeof msg, PQresultErrorMessage(r)));
        return;
    }
    case PGRES_PIPELINE_ABORTED:
        st_result_fail(res, ST_FAILED, "aborted with the pipeline");
        return;
    default:
        st_result_fail(res, ST_FAILED, "unexpected result %s", PQresStatus(status));
        return;
    }
}

/* Run the callbacks of every request whose results are all in. */
static void dispatch(pg_t *pg)
{
    int nulls = 0;
    pg->is_dispatching = true;
    while (pg->state == PG_UP && pg->inflight && !PQisBusy(pg->conn)) {
        PGresult *r = PQgetResult(pg->conn);
        if (!r) {
            /* one NULL ends each statement's results; two in a row: nothing more yet */
            if (++nulls > 1) break;
            continue;
        }
        nulls = 0;
        st_req_t *req = pg->inflight;
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (!(pg->inflight = req->next)) pg->inflight_tail = &pg->inflight;
            pg->inflight_count--;
            hold_loop(pg);
            st_req_done(req); /* may submit, close, or lose the connection */
            continue;
        }
        take_result(req, r, pg->conn);
        PQclear(r);
    }
    pg->is_dispatching = false;
}

static void flush(pg_t *pg);

static void on_io(uv_poll_t *h, int status, int events)
{
    pg_t *pg = h->data;
    if (status < 0) {
        go_down(pg, uv_strerror(status));
    } else {
        if (events & UV_READABLE) {
            if (!PQconsumeInput(pg->conn)) {
                char msg[256];
                go_down(pg, trimmed(msg, sizeof msg, PQerrorMessage(pg->conn)));
            } else {
                dispatch(pg);
                if (pg->state == PG_UP && PQstatus(pg->conn) == CONNECTION_BAD)
                    go_down(pg, "the connection broke");
            }
        }
        if (pg->state == PG_UP && (pg->poll_events & UV_WRITABLE)) flush(pg);
    }
    maybe_finish_close(pg);
}

/* Push libpq's output buffer; watch for writability while some is left. */
static void flush(pg_t *pg)
{
    int rc = PQflush(pg->conn);
    if (rc < 0) {
        char msg[256];
        go_down(pg, trimmed(msg, sizeof msg, PQerrorMessage(pg->conn)));
        return;
    }
    int want = UV_READABLE | (rc == 1 ? UV_WRITABLE : 0);
    if (want != pg->poll_events) watch(pg, want, on_io);
}

/* ---- connection state ----------------------------------------------------------- */

static void on_timer(uv_timer_t *t);

static void schedule_reconnect(pg_t *pg)
{
    pg->state = PG_DOWN;
    uv_timer_start(&pg->timer, on_timer, pg->backoff_ms, 0);
    pg->backoff_ms = pg->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : pg->backoff_ms * 2;
}

/* Forget the connection: what is in flight fails (on the next loop turn,
 * since this may run inside a submit), then reconnect later. */
static void go_down(pg_t *pg, const char *why)
{
    if (pg->state == PG_UP) log_warn("storage: PostgreSQL connection lost (%s); reconnecting", why);
    unwatch(pg);
    PQfinish(pg->conn);
    pg->conn = NULL;
    st_req_t *req = pg->inflight;
    pg->inflight = NULL;
    pg->inflight_tail = &pg->inflight;
    pg->inflight_count = 0;
    while (req) {
        st_req_t *next = req->next;
        if (req->res.status != ST_OK)
            st_req_fail_later(req, req->res.status, req->res.error ? req->res.error : "");
        else
            st_req_fail_later(req, ST_UNAVAILABLE, "the database connection was lost");
        req = next;
    }
    if (pg->is_closing) {
        pg->state = PG_DOWN;
        return;
    }
    schedule_reconnect(pg);
}

static void up(pg_t *pg, bool is_reconnect)
{
    if (PQsetnonblocking(pg->conn, 1) != 0 || !PQenterPipelineMode(pg->conn)) {
        char msg[256];
        pg->state = PG_UP;
        go_down(pg, trimmed(msg, sizeof msg, PQerrorMessage(pg->conn)));
        return;
    }
    pg->state = PG_UP;
    pg->backoff_ms = BACKOFF_MIN_MS;
    if (is_reconnect) log_notice("storage: PostgreSQL connection restored");
    watch(pg, UV_READABLE, on_io);
}

static void on_connecting(uv_poll_t *h, int status, int events)
{
    pg_t *pg = h->data;
    /* stop first: PQconnectPoll may close the socket and open another */
    uv_poll_stop(pg->poll);
    PostgresPollingStatusType poll = PQconnectPoll(pg->conn);
    switch (poll) {
    case PGRES_POLLING_READING:
        watch(pg, UV_READABLE, on_connecting);
        break;
    case PGRES_POLLING_WRITING:
        watch(pg, UV_WRITABLE, on_connecting);
        break;
    case PGRES_POLLING_OK:
        up(pg, true);
        break;
    default: {
        char msg[256];
        log_debug("storage: reconnecting to PostgreSQL: %s",
                  trimmed(msg, sizeof msg, PQerrorMessage(pg->conn)));
        unwatch(pg);
        PQfinish(pg->conn);
        pg->conn = NULL;
        schedule_reconnect(pg);
    }
    }
    maybe_finish_close(pg);
}

static void on_timer(uv_timer_t *t)
{
    pg_t *pg = t->data;
    if (!(pg->conn = PQconnectStart(pg->conninfo))) log_fatal("out of memory");
    PQsetNoticeProcessor(pg->conn, on_notice, pg);
    if (PQstatus(pg->conn) == CONNECTION_BAD) {
        char msg[256];
        log_debug("storage: reconnecting to PostgreSQL: %s",
                  trimmed(msg, sizeof msg, PQerrorMessage(pg->conn)));
        PQfinish(pg->conn);
        pg->conn = NULL;
        schedule_reconnect(pg);
        return;
    }
    pg->state = PG_CONNECTING;
    watch(pg, UV_WRITABLE, on_connecting);
}

/* ---- requests --------------------------------------------------------------------- */

static void pg_submit(void *impl, st_req_t *req)
{
    pg_t *pg = impl;
    if (pg->state != PG_UP) {
        st_req_fail_later(req, ST_UNAVAILABLE, "the database is unavailable");
        return;
    }
    for (int i = 0; i < req->n; i++) {
        if (req->stmts[i].nparams > MAX_PARAMS) {
            st_req_fail_later(req, ST_FAILED, "too many parameters");
            return;
        }
    }
    req->next = NULL;
    *pg->inflight_tail = req;
    pg->inflight_tail = &req->next;
    pg->inflight_count++;
    hold_loop(pg);
    for (int i = 0; i < req->n; i++) {
        const st_stmt_t *s = &req->stmts[i];
        if (!PQsendQueryParams(pg->conn, s->sql, s->nparams, NULL, s->params, NULL, NULL, 0))
            goto lost;
    }
    if (!PQpipelineSync(pg->conn)) goto lost;
    flush(pg);
    return;
lost : {
    char msg[256];
    go_down(pg, trimmed(msg, sizeof msg, PQerrorMessage(pg->conn)));
}
}

/* ---- closing ------------------------------------------------------------------------ */

static void on_timer_closed(uv_handle_t *h)
{
    pg_t *pg = h->data;
    storage_t *st = pg->st;
    free(pg->conninfo);
    free(pg);
    st_driver_closed(st);
}

static void maybe_finish_close(pg_t *pg)
{
    if (!pg->is_closing || pg->is_dispatching || pg->is_torn_down) return;
    if (pg->state == PG_UP && pg->inflight) return; /* their results are coming */
    pg->is_torn_down = true;
    unwatch(pg);
    if (pg->conn) PQfinish(pg->conn);
    pg->conn = NULL;
    uv_timer_stop(&pg->timer);
    uv_close((uv_handle_t *)&pg->timer, on_timer_closed);
}

static void pg_close(void *impl)
{
    pg_t *pg = impl;
    pg->is_closing = true;
    maybe_finish_close(pg);
}

/* ---- opening and migrations (blocking, at start) ------------------------------------ */

static bool exec_ok(PGconn *conn, PGresult *r, char **err, const char *what)
{
    ExecStatusType s = PQresultStatus(r);
    bool ok = s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
    if (!ok) {
        char msg[512];
        if (asprintf(err, "PostgreSQL: %s: %s", what,
                     trimmed(msg, sizeof msg, r ? PQresultErrorMessage(r) : PQerrorMessage(conn))) <
            0)
            *err = NULL;
    }
    return ok;
}

static bool exec(PGconn *conn, const char *sql, char **err, const char *what)
{
    PGresult *r = PQexec(conn, sql);
    bool ok = exec_ok(conn, r, err, what);
    PQclear(r);
    return ok;
}

/* Each migration in its own transaction, under an advisory lock so that
 * daemons starting together apply it once. */
static int migrate(PGconn *conn, char **err)
{
    int applied = 0, last = 0;
    for (const st_migration_t *m = st_migrations_pgsql; m->sql; m++) {
        if (m->version <= last)
            log_fatal("storage: pgsql migrations out of order at %03d", m->version);
        last = m->version;
        char what[128], version[16], lock[96];
        snprintf(what, sizeof what, "migration %03d-%s", m->version, m->name);
        snprintf(version, sizeof version, "%d", m->version);
        snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%d)", MIGRATION_LOCK);
        const char *params[1] = {version};
        if (!exec(conn, "BEGIN", err, what)) return -1;
        if (!exec(conn, lock, err, what) ||
            !exec(conn, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)",
                  err, what))
            goto fail;
        PGresult *r = PQexecParams(conn, "SELECT 1 FROM schema_version WHERE version = $1", 1, NULL,
                                   params, NULL, NULL, 0);
        bool ok = exec_ok(conn, r, err, what), has = ok && PQntuples(r) > 0;
        PQclear(r);
        if (!ok) goto fail;
        if (has) {
            if (!exec(conn, "COMMIT", err, what)) goto fail;
            continue;
        }
        if (!exec(conn, m->sql, err, what)) goto fail;
        r = PQexecParams(conn, "INSERT INTO schema_version (version) VALUES ($1)", 1, NULL, params,
                         NULL, NULL, 0);
        ok = exec_ok(conn, r, err, what);
        PQclear(r);
        if (!ok || !exec(conn, "COMMIT", err, what)) goto fail;
        log_info("storage: PostgreSQL: applied %s", what);
        applied++;
        continue;
    fail:
        PQclear(PQexec(conn, "ROLLBACK"));
        return -1;
    }
    log_debug("storage: PostgreSQL at schema version %d (%d applied now)", last, applied);
    return 0;
}

static void *pg_open(storage_t *st, uv_loop_t *loop, const config_t *config, char **err)
{
    char *dummy = NULL;
    if (!err) err = &dummy;
    *err = NULL;
    const char *conninfo = config_get(config, "storage.pgsql");
    PGconn *conn = PQconnectdb(conninfo ? conninfo : "");
    if (!conn) log_fatal("out of memory");
    PQsetNoticeProcessor(conn, on_notice, NULL);
    if (PQstatus(conn) != CONNECTION_OK) {
        char msg[512];
        if (asprintf(err, "PostgreSQL: %s", trimmed(msg, sizeof msg, PQerrorMessage(conn))) < 0)
            *err = NULL;
        PQfinish(conn);
        free(dummy);
        return NULL;
    }
    if (migrate(conn, err) < 0) {
        PQfinish(conn);
        free(dummy);
        return NULL;
    }
    pg_t *pg = calloc(1, sizeof *pg);
    if (!pg) log_fatal("out of memory");
    pg->st = st;
    pg->loop = loop;
    if (!(pg->conninfo = strdup(conninfo ? conninfo : ""))) log_fatal("out of memory");
    pg->conn = conn;
    pg->inflight_tail = &pg->inflight;
    pg->backoff_ms = BACKOFF_MIN_MS;
    uv_timer_init(loop, &pg->timer);
    uv_unref((uv_handle_t *)&pg->timer); /* reconnecting alone keeps no loop alive */
    pg->timer.data = pg;
    up(pg, false);
    free(dummy);
    return pg;
}

const st_driver_t st_driver_pgsql = {
    .name = "pgsql",
    .open = pg_open,
    .submit = pg_submit,
    .close = pg_close,
};
