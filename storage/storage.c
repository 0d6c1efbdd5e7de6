/* storage.c — the storage API over its two drivers (see storage.h).
 *
 * Copies each call into one request block (statements, parameters and all),
 * hands it to the driver the config names, and frees it after its callback.
 * Holds what both drivers share: results, the deferred failures (a
 * uv_idle handle runs them on the next loop turn, so no callback ever runs
 * inside a call), storage_delete_owner's statements, and closing. The SQL
 * itself, the connections and the migrations are the drivers'. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"
#include "log.h"
#include "metrics.h"

/* Counted here, at the API, so that both drivers are (docs/metrics.md):
 * requests by outcome, and the time from submission to the callback. */
static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static metric_counter_t requests_ok, requests_constraint, requests_error;
static metric_histogram_t latency = {
    latency_bounds, sizeof latency_bounds / sizeof(double), {0}, 0, 0};
static bool has_metrics;

static void register_metrics(void)
{
    if (has_metrics) return;
    has_metrics = true;
    const char *help = "storage requests (queries and transactions) by outcome";
    metrics_counter("hearth_storage_requests_total", help, &requests_ok, "result", "ok", NULL);
    metrics_counter("hearth_storage_requests_total", help, &requests_constraint, "result",
                    "constraint", NULL);
    metrics_counter("hearth_storage_requests_total", help, &requests_error, "result", "error",
                    NULL);
    metrics_histogram("hearth_storage_request_seconds",
                      "time from a storage request's submission to its answer", &latency, NULL);
}

struct storage {
    uv_loop_t *loop;
    const st_driver_t *driver;
    void *impl;
    uv_idle_t idle; /* runs the deferred callbacks */
    st_req_t *deferred, **deferred_tail;
    bool is_closing, is_driver_closed;
    void (*done)(void *ud);
    void *done_ud;
    char **delete_sql; /* "DELETE FROM t WHERE owner = $1" per owner table */
    int ndelete;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) log_fatal("out of memory");
    return p;
}

/* ---- results ---------------------------------------------------------------- */

st_status_t st_status(const st_result_t *res)
{
    return res->status;
}
const char *st_error(const st_result_t *res)
{
    return res->error ? res->error : "";
}
int st_rows(const st_result_t *res)
{
    return res->rows;
}
int st_cols(const st_result_t *res)
{
    return res->cols;
}
long long st_changes(const st_result_t *res)
{
    return res->changes;
}

const char *st_text(const st_result_t *res, int r, int c)
{
    if (r < 0 || r >= res->rows || c < 0 || c >= res->cols) return NULL;
    size_t off = res->cells[(size_t)r * res->cols + c];
    return off == CELL_NULL ? NULL : res->data + off;
}

long long st_int(const st_result_t *res, int r, int c)
{
    const char *s = st_text(res, r, c);
    return s ? strtoll(s, NULL, 10) : 0;
}

void st_result_reset(st_result_t *res)
{
    res->rows = res->cols = 0;
    res->pending_cells = 0;
    res->data_len = 0;
    res->changes = 0;
}

void st_result_set_cols(st_result_t *res, int cols)
{
    st_result_reset(res);
    res->cols = cols;
}

void st_result_add_cell(st_result_t *res, const char *text, size_t len)
{
    size_t ncells = (size_t)res->rows * res->cols + res->pending_cells;
    if (res->cells_cap <= ncells) {
        size_t cap = res->cells_cap ? res->cells_cap * 2 : 64;
        size_t *cells = realloc(res->cells, cap * sizeof(*cells));
        if (!cells) log_fatal("out of memory");
        res->cells = cells;
        res->cells_cap = cap;
    }
    size_t off = CELL_NULL;
    if (text) {
        if (res->data_cap < res->data_len + len + 1) {
            size_t cap = res->data_cap ? res->data_cap * 2 : 256;
            while (cap < res->data_len + len + 1)
                cap *= 2;
            char *data = realloc(res->data, cap);
            if (!data) log_fatal("out of memory");
            res->data = data;
            res->data_cap = cap;
        }
        off = res->data_len;
        memcpy(res->data + off, text, len);
        res->data[off + len] = '\0';
        res->data_len += len + 1;
    }
    /* a row counts once its last cell is in */
    res->cells[ncells] = off;
    res->pending_cells++;
    if (res->pending_cells == (size_t)res->cols) {
        res->rows++;
        res->pending_cells = 0;
    }
}

void st_result_fail(st_result_t *res, st_status_t status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    st_result_reset(res);
    res->status = status;
    free(res->error);
    if (!(res->error = strdup(msg))) log_fatal("out of memory");
}

void st_result_free(st_result_t *res)
{
    free(res->error);
    free(res->cells);
    free(res->data);
    memset(res, 0, sizeof *res);
}

/* ---- requests --------------------------------------------------------------- */

static size_t text_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

static char *copy_text(char **at, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *dst = memcpy(*at, s, n);
    *at += n;
    return dst;
}

/* One block: the request, its statements, their parameter arrays, then the
 * text of every SQL string and parameter. */
static st_req_t *req_new(storage_t *st, int n, const st_stmt_t *stmts, bool is_tx, st_cb cb,
                         void *ud)
{
    size_t nparams = 0, text = 0;
    for (int i = 0; i < n; i++) {
        nparams += stmts[i].nparams;
        text += text_size(stmts[i].sql);
        for (int k = 0; k < stmts[i].nparams; k++)
            text += text_size(stmts[i].params[k]);
    }
    size_t head = sizeof(st_req_t) + n * sizeof(st_stmt_t) + nparams * sizeof(char *);
    st_req_t *req = xmalloc(head + text);
    memset(req, 0, sizeof *req);
    req->st = st;
    req->n = n;
    req->is_tx = is_tx;
    req->cb = cb;
    req->ud = ud;
    req->started = uv_hrtime();
    req->stmts = (st_stmt_t *)(req + 1);
    const char **params = (const char **)(req->stmts + n);
    char *at = (char *)req + head;
    for (int i = 0; i < n; i++) {
        st_stmt_t *s = &req->stmts[i];
        s->sql = copy_text(&at, stmts[i].sql ? stmts[i].sql : "");
        s->nparams = stmts[i].nparams;
        s->params = params;
        for (int k = 0; k < s->nparams; k++)
            params[k] = copy_text(&at, stmts[i].params[k]);
        params += s->nparams;
    }
    return req;
}

void st_req_done(st_req_t *req)
{
    st_status_t status = st_status(&req->res);
    metric_inc(status == ST_OK           ? &requests_ok
               : status == ST_CONSTRAINT ? &requests_constraint
                                         : &requests_error);
    metric_observe(&latency, (double)(uv_hrtime() - req->started) / 1e9);
    if (req->cb) req->cb(req->ud, &req->res);
    st_result_free(&req->res);
    free(req);
}

static void on_idle(uv_idle_t *idle);

void st_req_fail_later(st_req_t *req, st_status_t status, const char *message)
{
    storage_t *st = req->st;
    st_result_fail(&req->res, status, "%s", message);
    req->next = NULL;
    *st->deferred_tail = req;
    st->deferred_tail = &req->next;
    uv_idle_start(&st->idle, on_idle);
}

static void on_closed(uv_handle_t *h)
{
    storage_t *st = h->data;
    void (*done)(void *) = st->done;
    void *ud = st->done_ud;
    for (int i = 0; i < st->ndelete; i++)
        free(st->delete_sql[i]);
    free(st->delete_sql);
    free(st);
    if (done) done(ud);
}

static void finish_close_if_idle(storage_t *st)
{
    if (st->is_driver_closed && !st->deferred && !uv_is_closing((uv_handle_t *)&st->idle))
        uv_close((uv_handle_t *)&st->idle, on_closed);
}

static void on_idle(uv_idle_t *idle)
{
    storage_t *st = idle->data;
    /* take the list: callbacks may defer more, which run on the next turn */
    st_req_t *req = st->deferred;
    st->deferred = NULL;
    st->deferred_tail = &st->deferred;
    while (req) {
        st_req_t *next = req->next;
        st_req_done(req);
        req = next;
    }
    if (!st->deferred) {
        uv_idle_stop(&st->idle);
        finish_close_if_idle(st);
    }
}

void st_driver_closed(storage_t *st)
{
    st->is_driver_closed = true;
    finish_close_if_idle(st);
}

static void submit(storage_t *st, st_req_t *req)
{
    if (st->is_closing)
        st_req_fail_later(req, ST_UNAVAILABLE, "the store is closing");
    else
        st->driver->submit(st->impl, req);
}

/* ---- the API ---------------------------------------------------------------- */

storage_t *storage_open(uv_loop_t *loop, const config_t *config, char **err)
{
    const char *name = config_get(config, "storage.driver");
    const st_driver_t *driver = NULL;
    if (name && strcmp(name, "sqlite") == 0)
        driver = &st_driver_sqlite;
    else if (name && strcmp(name, "pgsql") == 0)
        driver = &st_driver_pgsql;
    if (!driver) {
        if (err && asprintf(err, "storage.driver: unknown driver '%s'", name ? name : "") < 0)
            *err = NULL;
        return NULL;
    }
    storage_t *st = xmalloc(sizeof *st);
    memset(st, 0, sizeof *st);
    st->loop = loop;
    st->driver = driver;
    st->deferred_tail = &st->deferred;
    if (!(st->impl = driver->open(st, loop, config, err))) {
        free(st);
        return NULL;
    }
    uv_idle_init(loop, &st->idle);
    st->idle.data = st;
    register_metrics();

    while (st_owner_tables[st->ndelete])
        st->ndelete++;
    st->delete_sql = xmalloc(st->ndelete * sizeof(char *));
    for (int i = 0; i < st->ndelete; i++)
        if (asprintf(&st->delete_sql[i], "DELETE FROM %s WHERE owner = $1", st_owner_tables[i]) < 0)
            log_fatal("out of memory");
    return st;
}

void storage_close(storage_t *st, void (*done)(void *ud), void *ud)
{
    if (st->is_closing) log_fatal("storage_close called twice");
    st->is_closing = true;
    st->done = done;
    st->done_ud = ud;
    st->driver->close(st->impl);
}

const char *storage_driver(const storage_t *st)
{
    return st->driver->name;
}

void storage_query(storage_t *st, const char *sql, int nparams, const char *const *params, st_cb cb,
                   void *ud)
{
    st_stmt_t stmt = {sql, nparams, params};
    submit(st, req_new(st, 1, &stmt, false, cb, ud));
}

void storage_tx(storage_t *st, int n, const st_stmt_t *stmts, st_cb cb, void *ud)
{
    submit(st, req_new(st, n, stmts, true, cb, ud));
}

void storage_delete_owner(storage_t *st, const char *owner, st_cb cb, void *ud)
{
    st_stmt_t stmts[st->ndelete];
    const char *params[1] = {owner};
    for (int i = 0; i < st->ndelete; i++)
        stmts[i] = (st_stmt_t){st->delete_sql[i], 1, params};
    submit(st, req_new(st, st->ndelete, stmts, true, cb, ud));
}

const char *const *storage_delete_owner_sql(const storage_t *st, int *n)
{
    *n = st->ndelete;
    return (const char *const *)st->delete_sql;
}
