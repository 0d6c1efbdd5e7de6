/* test_storage.c — storage.h against both drivers: the same checks on
 * SQLite (a file in a temporary directory) and on PostgreSQL (a throwaway
 * cluster that test/pg-cluster starts and stops; skipped, with the reason,
 * when no PostgreSQL binaries are installed).
 *
 * Checks: migrations create every table and a second open applies nothing;
 * NULLs, integers, quotes and UTF-8 round-trip; callbacks run in the order
 * of the calls and never inside a call; storage_tx is all or nothing;
 * constraint violations are ST_CONSTRAINT; storage_delete_owner empties one
 * owner everywhere; storage_close runs what is queued. For PostgreSQL also:
 * the server stopped mid-test gives ST_UNAVAILABLE, and the store serves
 * again once the server is back, without being reopened. For SQLite also:
 * a file an older version left in WAL mode leaves it (and storage_open
 * says why it cannot while another process holds it so). */
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "config.h"
#include "driver.h"
#include "log.h"
#include "storage.h"
#include "tap.h"

#define MAX_CELLS 64

static uv_loop_t loop;
static storage_t *st;
static const char *drv;  /* "sqlite" or "pgsql": prefixes every check's name */
static bool in_call;     /* set around every storage_* call */
static int inside_calls; /* callbacks that ran inside a call (must stay 0) */

/* ---- waiting on the loop ------------------------------------------------------ */

static bool timed_out;
static void on_timeout(uv_timer_t *t)
{
    timed_out = true;
}

/* Run the loop until *flag is non-zero or ms pass; false on timeout. */
static bool run_until(const int *flag, unsigned ms)
{
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    timed_out = false;
    uv_timer_start(&t, on_timeout, ms, 0);
    while (!*flag && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return *flag != 0;
}

static void sleep_ms(unsigned ms)
{
    int never = 0;
    run_until(&never, ms);
}

/* ---- results as plain values -------------------------------------------------- */

typedef struct snap {
    int calls;
    st_status_t status;
    char error[256];
    int rows, cols;
    long long changes;
    char *cell[MAX_CELLS]; /* row-major, NULL for SQL NULL */
    long long num[MAX_CELLS];
} snap_t;

static void snap_clear(snap_t *s)
{
    for (int i = 0; i < MAX_CELLS; i++)
        free(s->cell[i]);
    memset(s, 0, sizeof *s);
}

static void snap_take(void *ud, const st_result_t *res)
{
    snap_t *s = ud;
    if (in_call) inside_calls++;
    s->calls++;
    s->status = st_status(res);
    snprintf(s->error, sizeof s->error, "%s", st_error(res));
    s->rows = st_rows(res);
    s->cols = st_cols(res);
    s->changes = st_changes(res);
    for (int r = 0, i = 0; r < s->rows; r++) {
        for (int c = 0; c < s->cols && i < MAX_CELLS; c++, i++) {
            const char *t = st_text(res, r, c);
            s->cell[i] = t ? strdup(t) : NULL;
            s->num[i] = st_int(res, r, c);
        }
    }
}

static const char *cell(const snap_t *s, int r, int c)
{
    int i = r * s->cols + c;
    return r < s->rows && c < s->cols && i < MAX_CELLS ? s->cell[i] : "(out of range)";
}

/* One statement with n text parameters, waited for. */
static snap_t *q(const char *sql, int n, ...)
{
    static snap_t s;
    const char *params[16];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        params[i] = va_arg(ap, const char *);
    va_end(ap);
    snap_clear(&s);
    in_call = true;
    storage_query(st, sql, n, params, snap_take, &s);
    in_call = false;
    if (!run_until(&s.calls, 20000)) printf("# %s: no callback for %s\n", drv, sql);
    return &s;
}

static snap_t *tx(int n, const st_stmt_t *stmts)
{
    static snap_t s;
    snap_clear(&s);
    in_call = true;
    storage_tx(st, n, stmts, snap_take, &s);
    in_call = false;
    run_until(&s.calls, 20000);
    return &s;
}

#define check_status(s, want, what)                                                                \
    do {                                                                                           \
        const snap_t *s_ = (s);                                                                    \
        if (!ok(s_->calls == 1 && s_->status == (want), "%s: %s", drv, what))                      \
            printf("#   calls %d, status %d (%s), want status %d\n", s_->calls, s_->status,        \
                   s_->error, (want));                                                             \
    } while (0)

static char name_buf[256];
static const char *named(const char *what)
{
    snprintf(name_buf, sizeof name_buf, "%s: %s", drv, what);
    return name_buf;
}

/* ---- opening ---------------------------------------------------------------------- */

static config_t *config_for(const char *driver, const char *where)
{
    char xml[1024], *err = NULL;
    if (strcmp(driver, "sqlite") == 0)
        snprintf(xml, sizeof xml,
                 "<hearth><storage><driver>sqlite</driver><sqlite>%s</sqlite></storage></hearth>",
                 where);
    else
        snprintf(xml, sizeof xml,
                 "<hearth><storage><driver>pgsql</driver><pgsql>%s</pgsql></storage></hearth>",
                 where);
    config_t *c = config_parse("test", xml, strlen(xml), &err);
    if (!c) {
        printf("Bail out! config: %s\n", err);
        exit(1);
    }
    return c;
}

static storage_t *open_store(const char *where, char **err)
{
    config_t *c = config_for(drv, where);
    storage_t *s = storage_open(&loop, c, err);
    config_free(c);
    return s;
}

static int closed_count;
static void on_closed(void *ud)
{
    closed_count++;
}

/* Close st and run the loop until done ran. */
static bool close_store(void)
{
    int before = closed_count;
    storage_close(st, on_closed, NULL);
    st = NULL;
    int done = 0;
    while (closed_count == before && !done)
        done = uv_run(&loop, UV_RUN_ONCE) == 0;
    return closed_count == before + 1;
}

/* ---- the checks --------------------------------------------------------------------- */

static const char *const tables[] = {
    "auth",    "roster_items", "roster_version", "offline",        "vcard",
    "private", "blocklist",    "last_activity",  "schema_version", NULL};
/* Tables of later migrations. */
static const char *const tables_002[] = {"motd", "tokens", "uploads", NULL};

/* How many migrations the driver has (storage/sql/DRIVER/), as text: the
 * count and the newest version both. */
static const char *migrations(void)
{
    static char text[16];
    const st_migration_t *m =
        strcmp(drv, "sqlite") == 0 ? st_migrations_sqlite : st_migrations_pgsql;
    int n = 0;
    while (m[n].sql)
        n++;
    snprintf(text, sizeof text, "%d", n);
    return text;
}

static void check_tables(void)
{
    const char *sql = strcmp(drv, "sqlite") == 0
                          ? "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
                          : "SELECT count(*) FROM information_schema.tables "
                            "WHERE table_schema = 'public' AND table_name = $1";
    for (int i = 0; tables[i]; i++) {
        char what[96];
        snprintf(what, sizeof what, "the migrations created table %s", tables[i]);
        is_str(cell(q(sql, 1, tables[i]), 0, 0), "1", named(what));
    }
    for (int i = 0; tables_002[i]; i++) {
        char what[96];
        snprintf(what, sizeof what, "the migrations created table %s", tables_002[i]);
        is_str(cell(q(sql, 1, tables_002[i]), 0, 0), "1", named(what));
    }
    snap_t *s = q("SELECT count(*), max(version) FROM schema_version", 0);
    is_str(cell(s, 0, 0), migrations(), named("schema_version holds one row per migration"));
    is_str(cell(s, 0, 1), migrations(), named("schema_version is at the newest migration"));
}

static void check_reopen(const char *where)
{
    q("INSERT INTO vcard (owner, data) VALUES ('kept@example.com', '<vCard/>')", 0);
    ok(close_store(), "%s: storage_close calls done", drv);
    char *err = NULL;
    st = open_store(where, &err);
    if (!ok(st != NULL, "%s: a second open succeeds", drv)) {
        printf("#   %s\n", err);
        printf("Bail out! cannot reopen\n");
        exit(1);
    }
    is_str(cell(q("SELECT count(*) FROM schema_version", 0), 0, 0), migrations(),
           named("a second open applies no migration again"));
    is_str(cell(q("SELECT data FROM vcard WHERE owner = 'kept@example.com'", 0), 0, 0), "<vCard/>",
           named("data survive closing and opening"));
}

static void check_values(void)
{
    snap_t *s = q("INSERT INTO roster_items (owner, jid, name, ask) VALUES ($1, $2, $3, $4)", 4,
                  "alice@example.com", "bob@example.com", NULL, "1");
    check_status(s, ST_OK, "insert with a NULL parameter");
    is_int(s->changes, 1, named("st_changes of an INSERT is 1"));
    s = q("SELECT name, ask, subscription, preapproved, groups, pending_in FROM roster_items "
          "WHERE owner = $1 AND jid = $2",
          2, "alice@example.com", "bob@example.com");
    is_int(s->rows, 1, named("select finds the row"));
    is_int(s->cols, 6, named("select has its columns"));
    ok(s->rows == 1 && s->cell[0] == NULL, "%s: a NULL reads back as NULL", drv);
    ok(s->rows == 1 && s->num[1] == 1 && strcmp(s->cell[1], "1") == 0,
       "%s: an integer reads back as decimal text and st_int", drv);
    is_str(cell(s, 0, 2), "none", named("subscription defaults to none"));
    is_str(cell(s, 0, 3), "0", named("preapproved defaults to 0"));
    is_str(cell(s, 0, 4), "", named("groups default to the empty string"));
    is_int(s->changes, 0, named("st_changes of a SELECT is 0"));

    s = q("INSERT INTO offline (owner, stamp, stanza) VALUES ($1, $2, $3) RETURNING id", 3,
          "alice@example.com", "1700000000123", "<message/>");
    check_status(s, ST_OK, "insert .. returning");
    ok(s->rows == 1 && s->num[0] > 0, "%s: RETURNING gives the new id (%s)", drv, cell(s, 0, 0));
    char id[32];
    snprintf(id, sizeof id, "%lld", s->num[0]);
    s = q("SELECT stamp, stanza FROM offline WHERE id = $1", 1, id);
    is_str(cell(s, 0, 0), "1700000000123", named("a BIGINT round-trips"));
    ok(s->rows == 1 && s->num[0] == 1700000000123LL, "%s: st_int reads a BIGINT", drv);

    s = q("UPDATE roster_items SET ask = 0 WHERE owner = $1", 1, "alice@example.com");
    is_int(s->changes, 1, named("st_changes of an UPDATE counts its rows"));
    s = q("SELECT name FROM roster_items WHERE owner = $1", 1, "nobody@example.com");
    check_status(s, ST_OK, "a select that finds nothing is ST_OK");
    is_int(s->rows, 0, named("... with no rows"));
}

static void check_text(void)
{
    const char *owner = "o'brien\"--;@example.com";
    const char *data = "h\xc3\xa9llo \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 "
                       "'quoted' \"double\" back\\slash $1 ?";
    check_status(q("INSERT INTO private (owner, ns, data) VALUES ($1, $2, $3)", 3, owner,
                   "jabber:x:quotes", data),
                 ST_OK, "insert with quotes and UTF-8");
    snap_t *s =
        q("SELECT data FROM private WHERE owner = $1 AND ns = $2", 2, owner, "jabber:x:quotes");
    is_str(cell(s, 0, 0), data, named("quotes, backslashes and UTF-8 round-trip unchanged"));
    s = q("SELECT count(*) FROM private WHERE owner = $1", 1, "o'brien");
    is_str(cell(s, 0, 0), "0", named("a quote in a parameter does not end it"));
    /* $2 used before $1, and a parameter used twice */
    s = q("SELECT CAST($2 AS TEXT) || CAST($1 AS TEXT) || CAST($2 AS TEXT)", 2, "b", "a");
    is_str(cell(s, 0, 0), "aba", named("parameters bind by number, in any order, more than once"));
}

typedef struct order {
    int next, wrong, calls, failures;
} order_t;
static order_t order;

static void on_ordered(void *ud, const st_result_t *res)
{
    int i = (int)(intptr_t)ud;
    if (in_call) inside_calls++;
    if (i != order.next) order.wrong++;
    order.next = i + 1;
    order.calls++;
    if (st_status(res) != ST_OK) order.failures++;
}

static void check_order(void)
{
    memset(&order, 0, sizeof order);
    enum { N = 300 };
    char owner[64];
    for (int i = 0; i < N; i++) {
        snprintf(owner, sizeof owner, "order%d@example.com", (i / 3) % 40);
        const char *p[2] = {owner, "x"};
        in_call = true;
        if (i % 3 == 0) {
            /* 100 inserts over 40 owners: 60 duplicates fail */
            storage_query(st, "INSERT INTO vcard (owner, data) VALUES ($1, $2)", 2, p, on_ordered,
                          (void *)(intptr_t)i);
        } else if (i % 3 == 1) {
            storage_query(st, "SELECT data FROM vcard WHERE owner = $1", 1, p, on_ordered,
                          (void *)(intptr_t)i);
        } else {
            st_stmt_t s[2] = {{"UPDATE vcard SET data = $2 WHERE owner = $1", 2, p},
                              {"SELECT count(*) FROM vcard", 0, NULL}};
            storage_tx(st, 2, s, on_ordered, (void *)(intptr_t)i);
        }
        in_call = false;
    }
    int n = N;
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    timed_out = false;
    uv_timer_start(&t, on_timeout, 20000, 0);
    while (order.calls < n && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    is_int(order.calls, N, named("every one of 300 pipelined calls gets its callback"));
    is_int(order.wrong, 0, named("callbacks run in the order of the calls"));
    int dup = N / 3 - 40;
    is_int(order.failures, dup, named("only the duplicate inserts among them failed"));
}

/* Calls made together run together (SQLite: in one transaction per
 * batch): a storage_tx among them that fails undoes only its own writes. */
static void check_tx_among_calls(void)
{
    static snap_t first, a, t, c;
    snap_clear(&first);
    snap_clear(&a);
    snap_clear(&t);
    snap_clear(&c);
    const char *pa[2] = {"batch-a@example.com", "a"}, *pb[2] = {"batch-b@example.com", "b"},
               *pc[2] = {"batch-c@example.com", "c"};
    const char *insert = "INSERT INTO vcard (owner, data) VALUES ($1, $2)";
    st_stmt_t both[2] = {{insert, 2, pb}, {insert, 2, pa}}; /* the second is a duplicate */
    in_call = true;
    /* SQLite runs this one at once, alone; the next three wait together */
    storage_query(st, "SELECT 1", 0, NULL, snap_take, &first);
    storage_query(st, insert, 2, pa, snap_take, &a);
    storage_tx(st, 2, both, snap_take, &t);
    storage_query(st, insert, 2, pc, snap_take, &c);
    in_call = false;
    run_until(&c.calls, 20000);
    check_status(&a, ST_OK, "a write made with others is stored");
    check_status(&t, ST_CONSTRAINT, "a failing storage_tx among them fails");
    check_status(&c, ST_OK, "the write after it is stored");
    snap_t *r = q("SELECT owner FROM vcard WHERE owner LIKE 'batch-%' ORDER BY owner", 0);
    is_int(r->rows, 2, named("the failed storage_tx left nothing, the others stayed"));
    is_str(cell(r, 0, 0), "batch-a@example.com", named("the first write stayed"));
    is_str(cell(r, 1, 0), "batch-c@example.com", named("the last write stayed"));
}

static void check_not_inside(void)
{
    snap_t s = {0};
    in_call = true;
    storage_query(st, "SELECT 1", 0, NULL, snap_take, &s);
    int calls_at_return = s.calls;
    in_call = false;
    is_int(calls_at_return, 0, named("storage_query returns before its callback runs"));
    run_until(&s.calls, 20000);
    is_int(s.calls, 1, named("the callback runs exactly once, later"));
    snap_clear(&s);
    in_call = true;
    storage_query(st, "SELECT * FROM no_such_table", 0, NULL, snap_take, &s);
    calls_at_return = s.calls;
    in_call = false;
    is_int(calls_at_return, 0, named("a failing call returns before its callback too"));
    run_until(&s.calls, 20000);
    check_status(&s, ST_FAILED, "a bad statement is ST_FAILED");
    ok(s.error[0] != '\0', "%s: ... with the driver's message (%s)", drv, s.error);
    snap_clear(&s);
    check_status(q("SELECT 1; DELETE FROM vcard", 0), ST_FAILED,
                 "two statements in one call are refused");
    check_status(q("SELECT 1;", 0), ST_OK, "one statement with a trailing semicolon runs");
    check_status(q(" ", 0), ST_FAILED, "an empty statement is refused");
}

/* A program that runs its loop until nothing is left (hearthctl) must
 * end: the store holds the loop only while calls are pending. A store
 * that held it for good would hang here; the alarm in main bails out. */
static void check_loop_ends(void)
{
    snap_t s = {0};
    storage_query(st, "SELECT 1", 0, NULL, snap_take, &s);
    uv_run(&loop, UV_RUN_DEFAULT);
    is_int(s.calls, 1, named("uv_run returns once the calls are answered"));
    snap_clear(&s);
}

static void check_tx(void)
{
    check_status(q("INSERT INTO auth (owner, created) VALUES ('taken@example.com', 1)", 0), ST_OK,
                 "insert an auth row");
    snap_t *s = q("INSERT INTO auth (owner, created) VALUES ('taken@example.com', 2)", 0);
    check_status(s, ST_CONSTRAINT, "a duplicate primary key is ST_CONSTRAINT");
    s = q("INSERT INTO roster_items (owner, jid, subscription) VALUES ('a@x', 'b@x', 'maybe')", 0);
    check_status(s, ST_CONSTRAINT, "a CHECK violation is ST_CONSTRAINT");
    s = q("INSERT INTO auth (owner) VALUES ('nocreated@example.com')", 0);
    check_status(s, ST_CONSTRAINT, "a NOT NULL violation is ST_CONSTRAINT");

    const char *owner[1] = {"tx@example.com"};
    st_stmt_t fail[2] = {
        {"INSERT INTO vcard (owner, data) VALUES ($1, 'first')", 1, owner},
        {"INSERT INTO auth (owner, created) VALUES ('taken@example.com', 3)", 0, NULL},
    };
    s = tx(2, fail);
    check_status(s, ST_CONSTRAINT, "a transaction whose second statement fails reports it");
    s = q("SELECT count(*) FROM vcard WHERE owner = $1", 1, owner[0]);
    is_str(cell(s, 0, 0), "0", named("... and its first statement left nothing written"));

    st_stmt_t bad[2] = {
        {"INSERT INTO vcard (owner, data) VALUES ($1, 'first')", 1, owner},
        {"INSERT INTO no_such_table VALUES (1)", 0, NULL},
    };
    check_status(tx(2, bad), ST_FAILED, "a transaction with a bad second statement fails");
    is_str(cell(q("SELECT count(*) FROM vcard WHERE owner = $1", 1, owner[0]), 0, 0), "0",
           named("... and writes nothing"));

    st_stmt_t good[3] = {
        {"INSERT INTO vcard (owner, data) VALUES ($1, 'v')", 1, owner},
        {"INSERT INTO private (owner, ns, data) VALUES ($1, 'ns', 'p')", 1, owner},
        {"SELECT v.data, p.data FROM vcard v, private p WHERE v.owner = $1 AND p.owner = $1", 1,
         owner},
    };
    s = tx(3, good);
    check_status(s, ST_OK, "a transaction that succeeds");
    ok(s->rows == 1 && strcmp(cell(s, 0, 0), "v") == 0 && strcmp(cell(s, 0, 1), "p") == 0,
       "%s: ... gives its last statement's rows, which see the earlier ones", drv);

    /* a failed transaction and a call right behind it, both in flight */
    snap_t a = {0}, b = {0};
    const char *p2[1] = {"after-tx@example.com"};
    in_call = true;
    storage_tx(st, 2, fail, snap_take, &a);
    storage_query(st, "INSERT INTO vcard (owner, data) VALUES ($1, 'x')", 1, p2, snap_take, &b);
    in_call = false;
    run_until(&b.calls, 20000);
    check_status(&a, ST_CONSTRAINT, "a failed transaction in flight");
    check_status(&b, ST_OK, "... does not fail the call sent right after it");
    snap_clear(&a);
    snap_clear(&b);
}

static void check_delete_owner(void)
{
    const char *inserts[] = {
        "INSERT INTO auth (owner, created) VALUES ($1, 1)",
        "INSERT INTO roster_items (owner, jid) VALUES ($1, 'peer@example.com')",
        "INSERT INTO roster_version (owner, version) VALUES ($1, 7)",
        "INSERT INTO offline (owner, stamp, stanza) VALUES ($1, 1, '<message/>')",
        "INSERT INTO vcard (owner, data) VALUES ($1, '<vCard/>')",
        "INSERT INTO private (owner, ns, data) VALUES ($1, 'ns', '<x/>')",
        "INSERT INTO blocklist (owner, jid) VALUES ($1, 'spam@example.com')",
        "INSERT INTO last_activity (owner, stamp) VALUES ($1, 1)",
        "INSERT INTO tokens (hash, kind, domain, owner, expires) VALUES ($1, 'reset', 'd', $1, 1)",
        "INSERT INTO uploads (id, owner, put_hash, filename, size, content_type, created, expires) "
        "VALUES ($1, $1, 'h', 'f', 1, '', 1, 1)",
        NULL,
    };
    const char *owners[] = {"gone@example.com", "stays@example.com"};
    int failed = 0;
    for (int o = 0; o < 2; o++)
        for (int i = 0; inserts[i]; i++)
            if (q(inserts[i], 1, owners[o])->status != ST_OK) failed++;
    is_int(failed, 0, named("rows for two owners in every table"));

    snap_t s = {0};
    in_call = true;
    storage_delete_owner(st, owners[0], snap_take, &s);
    in_call = false;
    run_until(&s.calls, 20000);
    check_status(&s, ST_OK, "storage_delete_owner");

    /* every table with an owner column, from the schema itself: a table
     * missing from storage/sql/owner-tables shows up here */
    snap_t *t = q(strcmp(drv, "sqlite") == 0
                      ? "SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) c "
                        "WHERE m.type = 'table' AND c.name = 'owner' ORDER BY 1"
                      : "SELECT table_name FROM information_schema.columns WHERE "
                        "table_schema = 'public' AND column_name = 'owner' ORDER BY 1",
                  0);
    int ntables = t->rows;
    char *names[MAX_CELLS];
    for (int i = 0; i < ntables; i++)
        names[i] = strdup(t->cell[i]);
    is_int(ntables, 10, named("ten tables have an owner column"));
    for (int i = 0; i < ntables; i++) {
        char sql[128], what[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE owner = $1", names[i]);
        snprintf(what, sizeof what, "storage_delete_owner emptied %s for the owner", names[i]);
        is_str(cell(q(sql, 1, owners[0]), 0, 0), "0", named(what));
        snprintf(what, sizeof what, "... and left the other owner's rows in %s", names[i]);
        is_str(cell(q(sql, 1, owners[1]), 0, 0), "1", named(what));
        free(names[i]);
    }
    snap_clear(&s);
}

typedef struct closing {
    int calls, ok, unavailable, done_at; /* done_at: calls seen when done ran */
    snap_t late;
} closing_t;
static closing_t closing;

static void on_closing_call(void *ud, const st_result_t *res)
{
    closing.calls++;
    if (st_status(res) == ST_OK) closing.ok++;
    if (closing.calls == 1) {
        /* a call made while the store closes */
        storage_query((storage_t *)ud, "SELECT 1", 0, NULL, snap_take, &closing.late);
    }
}

static void on_closing_done(void *ud)
{
    closing.done_at = closing.calls + closing.late.calls;
}

static void check_close(const char *where)
{
    memset(&closing, 0, sizeof closing);
    closing.done_at = -1;
    char *err = NULL;
    storage_t *s = open_store(where, &err);
    if (!ok(s != NULL, "%s: open a second store on the same database", drv)) {
        printf("#   %s\n", err);
        free(err);
        return;
    }
    for (int i = 0; i < 20; i++) {
        char owner[64];
        snprintf(owner, sizeof owner, "close%d@example.com", i);
        const char *p[1] = {owner};
        storage_query(s, "INSERT INTO vcard (owner, data) VALUES ($1, 'c')", 1, p, on_closing_call,
                      s);
    }
    storage_close(s, on_closing_done, NULL);
    for (int i = 0; i < 1000 && closing.done_at < 0; i++)
        uv_run(&loop, UV_RUN_ONCE);
    is_int(closing.calls, 20, named("storage_close runs the callbacks of queued calls"));
    is_int(closing.ok, 20, named("... and finishes them"));
    check_status(&closing.late, ST_UNAVAILABLE, "a call made while closing is ST_UNAVAILABLE");
    is_int(closing.done_at, 21, named("done runs after every callback"));
    snap_clear(&closing.late);
    is_str(cell(q("SELECT count(*) FROM vcard WHERE owner LIKE 'close%'", 0), 0, 0), "20",
           named("the queued writes were stored"));
}

/* The whole suite on one driver; where: the SQLite file or conninfo. */
static void suite(const char *driver, const char *where)
{
    drv = driver;
    char *err = NULL;
    st = open_store(where, &err);
    if (!ok(st != NULL, "%s: storage_open", drv)) {
        printf("#   %s\n", err ? err : "(no message)");
        free(err);
        return;
    }
    is_str(storage_driver(st), driver, named("storage_driver names the driver"));
    check_tables();
    check_reopen(where);
    check_values();
    check_text();
    check_not_inside();
    check_loop_ends();
    check_order();
    check_tx_among_calls();
    check_tx();
    check_delete_owner();
    check_close(where);
}

/* ---- PostgreSQL: the cluster, and the server going away ------------------------------ */

static char pg_script[1024], pg_dir[64];

static int pg_run(const char *cmd, const char *arg, char *out, size_t outlen)
{
    char line[2048];
    snprintf(line, sizeof line, "bash '%s' %s %s %s 2>&1", pg_script, cmd, pg_dir, arg ? arg : "");
    FILE *p = popen(line, "r");
    if (!p) return -1;
    size_t n = out ? fread(out, 1, outlen - 1, p) : 0;
    if (out) out[n] = '\0';
    if (!out) {
        char sink[512];
        while (fread(sink, 1, sizeof sink, p) > 0) {
        }
    }
    int status = pclose(p);
    return status;
}

static void pg_outage(void)
{
    /* in flight when the server stops */
    snap_t s = {0};
    storage_query(st, "SELECT pg_sleep(30)", 0, NULL, snap_take, &s);
    sleep_ms(100);
    uint64_t t0 = uv_hrtime();
    ok(pg_run("pause", NULL, NULL, 0) == 0, "pgsql: pg_ctl stop -m fast");
    run_until(&s.calls, 10000);
    check_status(&s, ST_UNAVAILABLE, "a call in flight when the server stops is ST_UNAVAILABLE");
    snap_clear(&s);

    in_call = true;
    storage_query(st, "SELECT 1", 0, NULL, snap_take, &s);
    in_call = false;
    is_int(s.calls, 0, named("while down, a call still returns before its callback"));
    run_until(&s.calls, 10000);
    check_status(&s, ST_UNAVAILABLE, "a call while the server is down is ST_UNAVAILABLE");
    snap_clear(&s);
    const char *p[1] = {"down@example.com"};
    st_stmt_t w[1] = {{"INSERT INTO vcard (owner, data) VALUES ($1, 'x')", 1, p}};
    check_status(tx(1, w), ST_UNAVAILABLE, "a transaction while down is ST_UNAVAILABLE");

    ok(pg_run("resume", NULL, NULL, 0) == 0, "pgsql: the server starts again");
    uint64_t t1 = uv_hrtime();
    st_status_t status = ST_UNAVAILABLE;
    while (status != ST_OK && uv_hrtime() - t1 < 15000000000ULL) {
        status = q("SELECT 1", 0)->status;
        if (status != ST_OK) sleep_ms(50);
    }
    is_int(status, ST_OK, named("calls succeed again once the server is back, without reopening"));
    printf("# pgsql: down %.2f s; back %.2f s after the server started\n", (t1 - t0) / 1e9,
           (uv_hrtime() - t1) / 1e9);
    check_status(q("INSERT INTO vcard (owner, data) VALUES ('back@example.com', 'x')", 0), ST_OK,
                 "a write after the reconnect");
    is_str(cell(q("SELECT count(*) FROM vcard WHERE owner = 'down@example.com'", 0), 0, 0), "0",
           named("the write refused while down was not stored"));

    /* the server stops while the connection is idle */
    ok(pg_run("pause", NULL, NULL, 0) == 0, "pgsql: stop the server again, connection idle");
    sleep_ms(200);
    check_status(q("SELECT 1", 0), ST_UNAVAILABLE, "an idle connection's loss is noticed");
    ok(pg_run("resume", NULL, NULL, 0) == 0, "pgsql: and start it again");
    t1 = uv_hrtime();
    status = ST_UNAVAILABLE;
    while (status != ST_OK && uv_hrtime() - t1 < 15000000000ULL) {
        status = q("SELECT 1", 0)->status;
        if (status != ST_OK) sleep_ms(50);
    }
    is_int(status, ST_OK, named("the store reconnects a second time"));
}

static void pg_suite(void)
{
    const char *srcdir = getenv("HEARTH_SRCDIR");
    snprintf(pg_script, sizeof pg_script, "%s/test/pg-cluster", srcdir ? srcdir : "..");
    char out[1024];
    snprintf(pg_dir, sizeof pg_dir, "/tmp/hearth-test-pg-XXXXXX");
    if (pg_run("bindir", NULL, out, sizeof out) != 0) {
        tap_count++;
        printf("ok %d # SKIP pgsql: no PostgreSQL binaries installed (%s)\n", tap_count,
               strtok(out, "\n") ? out : "pg-cluster bindir failed");
        return;
    }
    if (!mkdtemp(pg_dir)) {
        ok(0, "pgsql: mkdtemp %s", pg_dir);
        return;
    }
    if (!ok(pg_run("start", NULL, out, sizeof out) == 0, "pgsql: test/pg-cluster start")) {
        printf("#   %s\n", out);
        return;
    }
    char conninfo[1024];
    snprintf(conninfo, sizeof conninfo, "%s", out);
    conninfo[strcspn(conninfo, "\n")] = '\0';
    char *db = strstr(conninfo, "dbname=postgres");
    if (db) strcpy(db, "dbname=hearth_test");
    ok(pg_run("createdb", "hearth_test", NULL, 0) == 0, "pgsql: createdb hearth_test");

    suite("pgsql", conninfo);
    if (st) pg_outage();
    if (st) ok(close_store(), "%s: storage_close after the outage", drv);

    char *err = NULL;
    pg_run("stop", NULL, NULL, 0);
    drv = "pgsql";
    storage_t *s = open_store(conninfo, &err);
    ok(s == NULL && err && *err, "pgsql: storage_open fails when the server is unreachable (%s)",
       err ? err : "no message");
    free(err);
}

/* The driver keeps a rollback journal: a file in WAL mode (an older
 * Hearth's) leaves it at open, which SQLite allows only to a process alone
 * on it. */
static void sqlite_wal_checks(const char *dir)
{
    char file[128], wal[160], *err = NULL;
    snprintf(file, sizeof file, "%s/wal.sqlite", dir);
    snprintf(wal, sizeof wal, "%s-wal", file);
    sqlite3 *old = NULL;
    int rc = sqlite3_open(file, &old);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(old,
                          "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)",
                          NULL, NULL, NULL);
    if (!ok(rc == SQLITE_OK, "sqlite: a file in WAL mode made (%s)", sqlite3_errstr(rc))) {
        sqlite3_close(old);
        return;
    }
    drv = "sqlite";
    storage_t *s = open_store(file, &err);
    ok(s == NULL && err && strstr(err, "WAL mode"),
       "sqlite: storage_open fails, saying why, on a file another process holds in WAL mode (%s)",
       err ? err : "opened");
    free(err);
    err = NULL;
    sqlite3_close(old);
    st = open_store(file, &err);
    if (!ok(st != NULL, "sqlite: a file left in WAL mode opens once no other process holds it (%s)",
            err ? err : "opened")) {
        free(err);
        return;
    }
    snap_t *r = q("SELECT x FROM t", 0);
    check_status(r, ST_OK, "its rows are read");
    is_str(cell(r, 0, 0), "1", "sqlite: the row written in WAL mode is there");
    check_status(q("INSERT INTO t VALUES (2)", 0), ST_OK, "a write after leaving WAL mode");
    ok(access(wal, F_OK) < 0, "sqlite: no -wal after a write (rollback journal)");
    ok(close_store(), "sqlite: storage_close");
}

static void sqlite_suite(void)
{
    char dir[] = "/tmp/hearth-test-sqlite-XXXXXX", file[128];
    if (!mkdtemp(dir)) {
        ok(0, "sqlite: mkdtemp");
        return;
    }
    snprintf(file, sizeof file, "%s/hearth.sqlite", dir);
    suite("sqlite", file);
    if (st) ok(close_store(), "sqlite: storage_close");

    char *err = NULL;
    drv = "sqlite";
    storage_t *s = open_store("/nonexistent/dir/hearth.sqlite", &err);
    ok(s == NULL && err && *err, "sqlite: storage_open fails for a file it cannot create (%s)",
       err ? err : "no message");
    free(err);
    sqlite_wal_checks(dir);

    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
}

static void on_alarm(int sig)
{
    static const char msg[] = "Bail out! test_storage did not finish in 300 s\n";
    (void)sig;
    if (write(1, msg, sizeof msg - 1) < 0) _exit(2);
    _exit(1);
}

int main(void)
{
    signal(SIGALRM, on_alarm);
    alarm(300);
    log_open("test_storage", "stderr", getenv("HEARTH_TEST_DEBUG") ? "debug" : "warn");
    uv_loop_init(&loop);
    sqlite_suite();
    pg_suite();
    is_int(inside_calls, 0, "no callback ran inside a storage call");
    ok(uv_loop_close(&loop) == 0, "the loop closes clean: every handle released");
    return done_testing();
}
