/* sweep.c — what hearth-upload deletes by itself: every minute the files
 * and unused slots whose time is over (upload.expiry after the upload,
 * upload.slot-lifetime after the slot for one never used), SWEEP_BATCH at
 * a time; at start and every hour, the files of DIR and DIR/tmp that no
 * row accounts for (the account was deleted, so storage_delete_owner took
 * its rows, or the daemon died during an upload), before the expired.
 * A file is unlinked
 * before its row goes, so a crash in between leaves an orphan for the
 * next pass rather than a row without a file. Uploads under way are left
 * alone. One pass at a time, each step on the thread pool or the store:
 * the loop never waits on the disk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "upload.h"

#define SWEEP_EVERY_MS 60000
#define SWEEP_BATCH 100
#define ORPHANS_EVERY 60 /* passes */

typedef struct pass {
    upload_t *u;
    uv_fs_t fs;
    char **ids; /* to unlink, then delete the rows of */
    int nids, next;
    bool is_tmp;  /* on DIR/tmp now */
    char **names; /* orphans: the directory's entries, checked one by one */
    int nnames;
    char path[4096];
} pass_t;

static unsigned passes;

static void pass_free(pass_t *p)
{
    for (int i = 0; i < p->nids; i++)
        free(p->ids[i]);
    free(p->ids);
    for (int i = 0; i < p->nnames; i++)
        free(p->names[i]);
    free(p->names);
    p->u->is_sweeping = false;
    free(p);
}

/* ---- expired rows -------------------------------------------------------- */

static void unlink_next(pass_t *p);

static void on_row_deleted(void *ud, const st_result_t *res)
{
    pass_t *p = ud;
    if (st_status(res) != ST_OK) {
        log_warn("upload: sweep: %s", st_error(res));
        pass_free(p);
        return;
    }
    unlink_next(p);
}

static void on_unlinked(uv_fs_t *fs)
{
    pass_t *p = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    const char *id = p->ids[p->next];
    if (rc < 0 && rc != UV_ENOENT) {
        log_warn("upload: sweep: cannot remove %s: %s", p->path, uv_strerror((int)rc));
        pass_free(p);
        return;
    }
    /* DIR/ID, then DIR/tmp/ID (a slot whose upload broke), then the row. */
    if (!p->is_tmp) {
        p->is_tmp = true;
        files_path(p->u, id, true, p->path, sizeof p->path);
        uv_fs_unlink(p->u->loop, &p->fs, p->path, on_unlinked);
        return;
    }
    p->is_tmp = false;
    p->next++;
    metric_inc(&upload_metrics.swept);
    const char *params[] = {id};
    storage_query(p->u->st, "DELETE FROM uploads WHERE id = $1", 1, params, on_row_deleted, p);
}

static void unlink_next(pass_t *p)
{
    while (p->next < p->nids && map_get(&p->u->busy, p->ids[p->next]))
        p->next++;
    if (p->next == p->nids) {
        pass_free(p);
        return;
    }
    files_path(p->u, p->ids[p->next], false, p->path, sizeof p->path);
    uv_fs_unlink(p->u->loop, &p->fs, p->path, on_unlinked);
}

static void on_expired(void *ud, const st_result_t *res)
{
    pass_t *p = ud;
    if (st_status(res) != ST_OK) {
        log_warn("upload: sweep: %s", st_error(res));
        pass_free(p);
        return;
    }
    p->next = 0;
    p->nids = st_rows(res);
    p->ids = calloc((size_t)p->nids + 1, sizeof *p->ids);
    if (!p->ids) log_fatal("out of memory");
    for (int i = 0; i < p->nids; i++)
        p->ids[i] = upload_strdup(st_text(res, i, 0));
    if (p->nids) log_info("upload: sweep: %d expired", p->nids);
    unlink_next(p);
}

/* ---- orphans ------------------------------------------------------------- */

static void check_next(pass_t *p);
static void find_expired(pass_t *p);

static bool is_id(const char *name)
{
    return strlen(name) == TOKEN_LEN && strspn(name, "0123456789abcdef") == TOKEN_LEN;
}

static void on_orphan_unlinked(uv_fs_t *fs)
{
    pass_t *p = fs->data;
    uv_fs_req_cleanup(fs);
    metric_inc(&upload_metrics.swept);
    p->next++;
    check_next(p);
}

static void on_row_checked(void *ud, const st_result_t *res)
{
    pass_t *p = ud;
    if (st_status(res) != ST_OK) {
        pass_free(p);
        return;
    }
    const char *name = p->names[p->next];
    if (st_rows(res) == 0 && !map_get(&p->u->busy, name)) {
        log_info("upload: sweep: %s%s belongs to no slot: removed", p->is_tmp ? "tmp/" : "", name);
        files_path(p->u, name, p->is_tmp, p->path, sizeof p->path);
        uv_fs_unlink(p->u->loop, &p->fs, p->path, on_orphan_unlinked);
        return;
    }
    p->next++;
    check_next(p);
}

static void list_dir(pass_t *p);

static void check_next(pass_t *p)
{
    while (p->next < p->nnames && !is_id(p->names[p->next]))
        p->next++;
    if (p->next < p->nnames) {
        const char *params[] = {p->names[p->next]};
        storage_query(p->u->st, "SELECT id FROM uploads WHERE id = $1", 1, params, on_row_checked,
                      p);
        return;
    }
    if (!p->is_tmp) { /* DIR done: now DIR/tmp */
        p->is_tmp = true;
        list_dir(p);
        return;
    }
    p->is_tmp = false;
    find_expired(p);
}

static void on_listed(uv_fs_t *fs)
{
    pass_t *p = fs->data;
    for (int i = 0; i < p->nnames; i++)
        free(p->names[i]);
    p->nnames = p->next = 0;
    if (fs->result >= 0) {
        free(p->names);
        p->names = calloc((size_t)fs->result + 1, sizeof *p->names);
        if (!p->names) log_fatal("out of memory");
        uv_dirent_t ent;
        while (uv_fs_scandir_next(fs, &ent) != UV_EOF)
            if (ent.type == UV_DIRENT_FILE || ent.type == UV_DIRENT_UNKNOWN)
                p->names[p->nnames++] = upload_strdup(ent.name);
    }
    uv_fs_req_cleanup(fs);
    check_next(p);
}

static void list_dir(pass_t *p)
{
    snprintf(p->path, sizeof p->path, "%s%s", p->u->dir, p->is_tmp ? "/tmp" : "");
    uv_fs_scandir(p->u->loop, &p->fs, p->path, 0, on_listed);
}

/* ---- passes -------------------------------------------------------------- */

static void on_sweep_timer(uv_timer_t *t)
{
    upload_t *u = t->data;
    if (u->is_sweeping) return;
    pass_t *p = calloc(1, sizeof *p);
    if (!p) log_fatal("out of memory");
    p->u = u;
    p->fs.data = p;
    u->is_sweeping = true;
    if (passes++ % ORPHANS_EVERY == 0)
        list_dir(p); /* then find_expired */
    else
        find_expired(p);
}

static void find_expired(pass_t *p)
{
    char now[32], limit[16];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    snprintf(limit, sizeof limit, "%d", SWEEP_BATCH);
    const char *params[] = {now, limit};
    storage_query(p->u->st,
                  "SELECT id FROM uploads WHERE expires <= CAST($1 AS BIGINT) ORDER BY expires "
                  "LIMIT CAST($2 AS BIGINT)",
                  2, params, on_expired, p);
}

void files_sweep_start(upload_t *u)
{
    uv_timer_init(u->loop, &u->sweep);
    u->sweep.data = u;
    uv_timer_start(&u->sweep, on_sweep_timer, 0, SWEEP_EVERY_MS);
}
