/* ctl_uploads.c — hearthctl's view of hearth-upload's files (XEP-0363):
 *
 *   hearthctl [-c FILE] uploads [JID]
 *   hearthctl [-c FILE] uploads purge JID|ID|--expired
 *
 * uploads lists the slots and files, oldest first (of one account with
 * JID), one line each:
 *   ID OWNER SIZE UPLOADED EXPIRES NAME
 * (UPLOADED and EXPIRES in UTC, XEP-0082; UPLOADED is "pending" for a slot
 * whose file has not come). purge deletes files and their rows: every one
 * of an account, the one of an ID, or every one whose time is over; it
 * prints how many. Each file is unlinked (DIR/ID and DIR/tmp/ID, DIR being
 * upload.dir, else STATEDIR/upload) before its rows go, as the daemon's
 * sweep does (components/upload/sweep.c): a failure in between leaves a
 * file the sweep removes, never a row without a file. Works with the
 * server running or stopped; run as root, it becomes the daemons' user
 * first. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "hearthctl.h"
#include "storage.h"

typedef struct uploads {
    uv_loop_t *loop;
    config_t *config;
    storage_t *st;
    char dir[4096];
    const char *what; /* purge: "owner", "id" or "expired"; NULL: list */
    char *arg;        /* the owner or id */
    char now[32];
    int status;
} uploads_t;

static void stamp(char *out, size_t size, long long t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void on_listed(void *ud, const st_result_t *res)
{
    uploads_t *c = ud;
    if (st_status(res) != ST_OK) {
        ctl_fail(&c->status, "cannot read the uploads: %s", st_error(res));
        return;
    }
    for (int i = 0; i < st_rows(res); i++) {
        char done[32] = "pending", expires[32];
        if (st_text(res, i, 3)) stamp(done, sizeof done, st_int(res, i, 3));
        stamp(expires, sizeof expires, st_int(res, i, 4));
        printf("%s %s %s %s %s %s\n", st_text(res, i, 0), st_text(res, i, 1), st_text(res, i, 2),
               done, expires, st_text(res, i, 5));
    }
}

static void on_deleted(void *ud, const st_result_t *res)
{
    uploads_t *c = ud;
    if (st_status(res) != ST_OK) {
        ctl_fail(&c->status, "cannot delete the uploads: %s", st_error(res));
        return;
    }
    printf("%lld purged\n", st_changes(res));
}

static const char *const where[][2] = {
    {"owner", "owner = $1"},
    {"id", "id = $1"},
    {"expired", "expires <= CAST($1 AS BIGINT)"},
};

static const char *condition(const uploads_t *c)
{
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++)
        if (strcmp(where[i][0], c->what) == 0) return where[i][1];
    return NULL;
}

static void unlink_file(uploads_t *c, const char *id, bool is_tmp)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", c->dir, is_tmp ? "tmp/" : "", id);
    if (unlink(path) < 0 && errno != ENOENT)
        ctl_fail(&c->status, "cannot remove %s: %s", path, strerror(errno));
}

/* The ids to purge: their files go, then (if all went) their rows. */
static void on_found(void *ud, const st_result_t *res)
{
    uploads_t *c = ud;
    if (st_status(res) != ST_OK) {
        ctl_fail(&c->status, "cannot read the uploads: %s", st_error(res));
        return;
    }
    if (st_rows(res) == 0 && strcmp(c->what, "id") == 0) {
        ctl_fail(&c->status, "no upload %s", c->arg);
        return;
    }
    for (int i = 0; i < st_rows(res); i++) {
        const char *id = st_text(res, i, 0);
        /* ids are the daemon's, but the path must never leave DIR */
        if (strspn(id, "0123456789abcdef") != strlen(id)) continue;
        unlink_file(c, id, false);
        unlink_file(c, id, true);
    }
    if (c->status) return;
    char sql[128];
    snprintf(sql, sizeof sql, "DELETE FROM uploads WHERE %s", condition(c));
    const char *params[] = {c->arg};
    storage_query(c->st, sql, 1, params, on_deleted, c);
}

static void on_closed(void *ud)
{
    (void)ud;
}

/* The purge's target: an id (32 hex), --expired, or an account. */
static int parse_target(uploads_t *c, const char *arg)
{
    if (strcmp(arg, "--expired") == 0) {
        c->what = "expired";
        c->arg = strdup(c->now);
    } else if (strlen(arg) == TOKEN_LEN && strspn(arg, "0123456789abcdef") == TOKEN_LEN) {
        c->what = "id";
        c->arg = strdup(arg);
    } else {
        jid_t *j = ctl_jid_of(c->config, arg, false);
        if (!j) return -1;
        c->what = "owner";
        c->arg = strdup(jid_bare(j));
        jid_free(j);
    }
    if (!c->arg) log_fatal("out of memory");
    return 0;
}

int ctl_uploads_main(const char *path, int argc, char **argv)
{
    bool is_purge = argc >= 2 && strcmp(argv[1], "purge") == 0;
    if (is_purge ? argc != 3 : argc > 2) return CTL_USAGE;
    uploads_t ctl = {0}, *c = &ctl;
    if (!(c->config = ctl_config_load(path))) return 1;
    c->loop = uv_default_loop();
    snprintf(c->now, sizeof c->now, "%lld", (long long)time(NULL));
    const char *dir = config_get(c->config, "upload.dir");
    snprintf(c->dir, sizeof c->dir, "%s%s", dir && *dir ? dir : config_get(c->config, "statedir"),
             dir && *dir ? "" : "/upload");
    char *err = NULL;
    jid_t *owner = NULL;
    if (daemon_switch_user(c->config, &err) < 0) {
        ctl_fail(&c->status, "%s", err);
        free(err);
    } else if (is_purge && parse_target(c, argv[2]) < 0) {
        c->status = 1;
    } else if (!is_purge && argc == 2 && !(owner = ctl_jid_of(c->config, argv[1], false))) {
        c->status = 1;
    } else if (!(c->st = storage_open(c->loop, c->config, &err))) {
        ctl_fail(&c->status, "cannot open the store: %s", err);
        free(err);
    } else if (is_purge) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT id FROM uploads WHERE %s", condition(c));
        const char *params[] = {c->arg};
        storage_query(c->st, sql, 1, params, on_found, c);
    } else {
        const char *params[] = {owner ? jid_bare(owner) : NULL};
        storage_query(c->st,
                      owner ? "SELECT id, owner, size, done, expires, filename FROM uploads "
                              "WHERE owner = $1 ORDER BY created, id"
                            : "SELECT id, owner, size, done, expires, filename FROM uploads "
                              "ORDER BY created, id",
                      owner ? 1 : 0, params, on_listed, c);
    }
    uv_run(c->loop, UV_RUN_DEFAULT);
    if (c->st) storage_close(c->st, on_closed, NULL);
    uv_run(c->loop, UV_RUN_DEFAULT);
    uv_loop_close(c->loop);
    jid_free(owner);
    free(c->arg);
    config_free(c->config);
    log_close();
    return c->status;
}
