/* files.c — the HTTP side of hearth-upload: PUT, GET, HEAD and OPTIONS
 * under /upload/ID/NAME (upload.h tells the URLs).
 *
 * PUT (streamed: common/http.h) is refused before a byte of the body is
 * read unless it carries the slot's token (401 without one, 403 for
 * another), the slot is unused (409 when uploaded or being uploaded) and
 * unexpired (403), Content-Length is the slot's size (411 without, 413
 * above, 400 below: XEP-0363 §5 says MUST) and Content-Type the slot's
 * when it named one (415). The body goes to DIR/tmp/ID, at most
 * PUT_BUFFER bytes ahead of the disk (reading pauses beyond), then is
 * synced, renamed to DIR/ID and only then marked done in the store:
 * 201. A connection that breaks, times out or fills the disk (507) leaves
 * no file behind, and the slot may be tried again while it lasts.
 *
 * GET and HEAD serve a done file with its Content-Type, an ETag (its id:
 * the bytes never change), If-None-Match (304), one Range (206; 416 when
 * it starts past the end; several ranges get the whole file), and
 * Content-Disposition: attachment for every type a browser would run or
 * render as a page (only images, audio, video and plain text are shown
 * inline), with X-Content-Type-Options: nosniff and a Content-Security-
 * Policy that runs nothing. Pieces of PIECE bytes are read from disk on
 * libuv's thread pool as the client takes them. Every answer carries
 * Access-Control-Allow-Origin: * (the URL is the credential, never a
 * cookie), and OPTIONS answers the CORS preflight of web clients. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "upload.h"

#define PUT_BUFFER (128 * 1024)
#define PIECE (32 * 1024)
#define PLAIN "text/plain; charset=utf-8"

static void add_cors(http_req_t *r)
{
    http_resp_header(r, "Access-Control-Allow-Origin", "*");
}

static void answer(http_req_t *r, int status, const char *text)
{
    char body[160];
    int n = snprintf(body, sizeof body, "%s\n", text);
    http_respond(r, status, PLAIN, body, (size_t)n);
}

/* The ID of /upload/ID/NAME, or false. */
static bool id_of(const char *path, char id[TOKEN_LEN + 1])
{
    const char *p = path + strlen("/upload/");
    if (strlen(p) < TOKEN_LEN + 2 || p[TOKEN_LEN] != '/' ||
        strspn(p, "0123456789abcdef") != TOKEN_LEN)
        return false;
    memcpy(id, p, TOKEN_LEN);
    id[TOKEN_LEN] = '\0';
    return true;
}

void files_path(const upload_t *u, const char *id, bool is_tmp, char *out, size_t size)
{
    snprintf(out, size, "%s/%s%s", u->dir, is_tmp ? "tmp/" : "", id);
}

/* The media type of a Content-Type value, without parameters, into out. */
static void media_type(const char *value, char *out, size_t size)
{
    size_t n = strcspn(value ? value : "", "; \t");
    if (n >= size) n = size - 1;
    memcpy(out, value ? value : "", n);
    out[n] = '\0';
}

/* ---- PUT ------------------------------------------------------------------ */

typedef struct put {
    upload_t *u;
    http_req_t *r;
    char id[TOKEN_LEN + 1];
    char path[4096], tmp[4096];
    uv_fs_t fs;
    uv_file fd;
    buf_t pending, writing; /* arrived, and being written */
    int64_t offset;
    uint64_t size, received;
    bool is_writing, is_ended, is_reading;
    bool is_failing, is_aborted; /* given up; because the connection broke */
    int error;                   /* the HTTP status to answer when failing */
} put_t;

static void put_free(put_t *p)
{
    map_del(&p->u->busy, p->id);
    p->u->transfers--;
    buf_free(&p->pending);
    buf_free(&p->writing);
    free(p);
}

static void put_write_more(put_t *p);

/* The end of a failed upload: the fd closed, the temporary file removed,
 * then the answer (none to give for a broken connection). */
static void on_tmp_unlinked(uv_fs_t *fs)
{
    put_t *p = fs->data;
    uv_fs_req_cleanup(fs);
    if (p->is_aborted)
        http_respond(p->r, 500, NULL, NULL, 0); /* frees it: nobody reads it */
    else if (p->error == 413)
        answer(p->r, 413, "more bytes than the slot's size");
    else
        answer(p->r, p->error, p->error == 507 ? "the server's disk is full" : "upload failed");
    put_free(p);
}

static void on_failed_closed(uv_fs_t *fs)
{
    put_t *p = fs->data;
    uv_fs_req_cleanup(fs);
    uv_fs_unlink(p->u->loop, &p->fs, p->tmp, on_tmp_unlinked);
}

static void put_clean_up(put_t *p)
{
    if (p->fd < 0) {
        uv_fs_unlink(p->u->loop, &p->fs, p->tmp, on_tmp_unlinked);
        return;
    }
    uv_file fd = p->fd;
    p->fd = -1;
    uv_fs_close(p->u->loop, &p->fs, fd, on_failed_closed);
}

/* Give up: reading stops, and once the disk is idle the file goes. */
static void put_fail(put_t *p, int status)
{
    if (!p->error) p->error = status;
    if (p->is_failing) return;
    p->is_failing = true;
    if (p->is_reading) http_req_pause_body(p->r);
    if (!p->is_writing) put_clean_up(p);
}

static void on_marked(void *ud, const st_result_t *res)
{
    put_t *p = ud;
    if (st_status(res) != ST_OK || st_changes(res) != 1) {
        log_warn("upload: %s not recorded as uploaded (%s): the file is removed", p->id,
                 st_status(res) == ST_OK ? "its slot is gone" : st_error(res));
        /* Not done in the store, so never served; the sweep removes it
         * with its slot (or as a file no row accounts for). */
        answer(p->r, 500, "the file store failed; ask for a new slot");
        put_free(p);
        return;
    }
    metric_inc(&upload_metrics.puts);
    metric_add(&upload_metrics.bytes_in, p->size);
    log_info("upload: %s uploaded, %llu bytes", p->id, (unsigned long long)p->size);
    answer(p->r, 201, "created");
    put_free(p);
}

static void on_renamed(uv_fs_t *fs)
{
    put_t *p = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    if (rc < 0) {
        log_err("upload: rename %s: %s", p->tmp, uv_strerror((int)rc));
        put_fail(p, 500);
        return;
    }
    char now[32], expires[32];
    long long t = (long long)time(NULL);
    snprintf(now, sizeof now, "%lld", t);
    /* Expiry 0: kept until deleted by hand (or with the account). */
    snprintf(expires, sizeof expires, "%lld",
             p->u->expiry ? t + (long long)p->u->expiry : 4000000000000LL);
    const char *params[] = {p->id, now, expires};
    storage_query(p->u->st,
                  "UPDATE uploads SET done = CAST($2 AS BIGINT), expires = CAST($3 AS BIGINT) "
                  "WHERE id = $1 AND done IS NULL",
                  3, params, on_marked, p);
}

static void on_closed(uv_fs_t *fs)
{
    put_t *p = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    if (rc < 0) {
        put_fail(p, 500);
        return;
    }
    uv_fs_rename(p->u->loop, &p->fs, p->tmp, p->path, on_renamed);
}

static void on_synced(uv_fs_t *fs)
{
    put_t *p = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    if (rc < 0) {
        put_fail(p, rc == UV_ENOSPC ? 507 : 500);
        return;
    }
    uv_file fd = p->fd;
    p->fd = -1;
    uv_fs_close(p->u->loop, &p->fs, fd, on_closed);
}

/* Whatever the disk was doing is done: go on. */
static void put_next(put_t *p)
{
    if (p->pending.len) {
        put_write_more(p);
        return;
    }
    if (p->is_reading) http_req_resume_body(p->r);
    /* The answer says the file is kept: it must be on disk. */
    if (p->is_ended) uv_fs_fdatasync(p->u->loop, &p->fs, p->fd, on_synced);
}

static void on_written(uv_fs_t *fs)
{
    put_t *p = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    p->is_writing = false;
    if (p->is_failing) {
        put_clean_up(p);
        return;
    }
    if (rc < 0 || (size_t)rc != p->writing.len) {
        if (rc < 0) log_warn("upload: writing %s: %s", p->tmp, uv_strerror((int)rc));
        /* A short write means a full disk too. */
        put_fail(p, rc == UV_ENOSPC || rc >= 0 ? 507 : 500);
        return;
    }
    p->offset += rc;
    buf_reset(&p->writing);
    put_next(p);
}

static void put_write_more(put_t *p)
{
    buf_t t = p->writing;
    p->writing = p->pending;
    p->pending = t;
    p->is_writing = true;
    uv_buf_t b = uv_buf_init(p->writing.data, (unsigned)p->writing.len);
    uv_fs_write(p->u->loop, &p->fs, p->fd, &b, 1, p->offset, on_written);
}

static void on_put_data(http_req_t *r, const char *data, size_t len, void *ud)
{
    put_t *p = ud;
    if (p->is_failing) return;
    p->received += len;
    if (p->received > p->size) { /* never with a right Content-Length */
        put_fail(p, 413);
        return;
    }
    buf_append(&p->pending, data, len);
    if (p->pending.len >= PUT_BUFFER) http_req_pause_body(r);
    if (!p->is_writing) put_write_more(p);
}

static void on_put_end(http_req_t *r, void *ud)
{
    put_t *p = ud;
    (void)r;
    p->is_reading = false;
    p->is_ended = true;
    if (!p->is_writing && !p->is_failing) put_next(p);
}

static void on_put_abort(http_req_t *r, void *ud)
{
    put_t *p = ud;
    (void)r;
    log_info("upload: %s: the upload broke off after %llu of %llu bytes", p->id,
             (unsigned long long)p->received, (unsigned long long)p->size);
    p->is_reading = false;
    p->is_aborted = true;
    put_fail(p, 500);
}

static const http_body_cb_t put_body = {on_put_data, on_put_end, on_put_abort};

static void on_tmp_opened(uv_fs_t *fs)
{
    put_t *p = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    if (rc < 0) {
        log_err("upload: cannot create %s: %s", p->tmp, uv_strerror((int)rc));
        answer(p->r, rc == UV_ENOSPC ? 507 : 500, "cannot store the file");
        put_free(p);
        return;
    }
    p->fd = (uv_file)rc;
    p->is_reading = true;
    http_req_read_body(p->r, &put_body, p);
}

/* Slot: put_hash, size, content_type, expires, done. */
static void on_slot_for_put(void *ud, const st_result_t *res)
{
    put_t *p = ud;
    http_req_t *r = p->r;
    const char *token = http_req_header(r, "Authorization");
    char hash[65] = "";
    if (token && strncasecmp(token, "Bearer ", 7) == 0) token_hash(token + 7, hash);
    int status = 0;
    const char *why = NULL;
    if (st_status(res) != ST_OK) {
        status = 503, why = "the file store is unavailable; try again";
    } else if (st_rows(res) != 1) {
        status = 404, why = "no such slot";
    } else if (!tls_equal(hash, strlen(hash), st_text(res, 0, 0), strlen(st_text(res, 0, 0)))) {
        status = 403, why = "this slot is not yours";
    } else if (st_text(res, 0, 4)) {
        status = 409, why = "already uploaded";
    } else if (st_int(res, 0, 3) < (long long)time(NULL)) {
        status = 403, why = "the slot has expired: ask for a new one";
    } else if (http_req_content_length(r) < 0) {
        status = 411, why = "Content-Length is required";
    } else if ((uint64_t)http_req_content_length(r) != (uint64_t)st_int(res, 0, 1)) {
        bool is_over = (uint64_t)http_req_content_length(r) > (uint64_t)st_int(res, 0, 1);
        status = is_over ? 413 : 400, why = "Content-Length is not the slot's size";
    } else {
        char want[128], got[128];
        media_type(st_text(res, 0, 2), want, sizeof want);
        media_type(http_req_header(r, "Content-Type"), got, sizeof got);
        if (*want && strcasecmp(want, got) != 0)
            status = 415, why = "Content-Type is not the slot's";
    }
    if (!status && map_get(&p->u->busy, p->id)) status = 409, why = "being uploaded already";
    explicit_bzero(hash, sizeof hash);
    if (status) {
        log_info("upload: PUT %s from %s refused: %s", p->id, http_req_peer(r), why);
        answer(r, status, why);
        free(p);
        return;
    }
    p->size = (uint64_t)st_int(res, 0, 1);
    map_put(&p->u->busy, p->id, p);
    p->u->transfers++;
    uv_fs_open(p->u->loop, &p->fs, p->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640,
               on_tmp_opened);
}

static void on_put(http_req_t *r, void *ud)
{
    upload_t *u = ud;
    add_cors(r);
    char id[TOKEN_LEN + 1];
    if (!id_of(http_req_path(r), id)) {
        answer(r, 404, "not found");
        return;
    }
    if (!http_req_header(r, "Authorization")) {
        http_resp_header(r, "WWW-Authenticate", "Bearer");
        answer(r, 401, "the slot's Authorization header is missing");
        return;
    }
    put_t *p = calloc(1, sizeof *p);
    if (!p) log_fatal("out of memory");
    p->u = u;
    p->r = r;
    p->fd = -1;
    p->fs.data = p;
    memcpy(p->id, id, sizeof id);
    files_path(u, id, false, p->path, sizeof p->path);
    files_path(u, id, true, p->tmp, sizeof p->tmp);
    const char *params[] = {id};
    storage_query(u->st,
                  "SELECT put_hash, size, content_type, expires, done FROM uploads WHERE id = $1",
                  1, params, on_slot_for_put, p);
}

/* ---- GET and HEAD ---------------------------------------------------------- */

typedef struct get {
    upload_t *u;
    http_req_t *r; /* NULL once the answer is done */
    uv_fs_t fs;
    uv_file fd;
    int64_t offset;
    uint64_t left;
    rbuf_t *piece; /* being read into */
    bool is_reading, is_done;
} get_t;

static void on_closed_quietly(uv_fs_t *fs)
{
    uv_fs_req_cleanup(fs);
    free(fs);
}

/* Close fd on the thread pool, nobody waiting. */
static void close_quietly(uv_loop_t *loop, uv_file fd)
{
    uv_fs_t *fs = malloc(sizeof *fs);
    if (!fs) log_fatal("out of memory");
    uv_fs_close(loop, fs, fd, on_closed_quietly);
}

static void on_get_closed(uv_fs_t *fs)
{
    get_t *g = fs->data;
    uv_fs_req_cleanup(fs);
    g->u->transfers--;
    free(g);
}

static void get_close(get_t *g)
{
    uv_fs_close(g->u->loop, &g->fs, g->fd, on_get_closed);
}

static void on_piece_read(uv_fs_t *fs)
{
    get_t *g = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    g->is_reading = false;
    rbuf_t *piece = g->piece;
    g->piece = NULL;
    /* Short of what the file promised (it shrank, or the disk failed): an
     * empty piece cuts the connection. */
    piece->len = rc > 0 ? (size_t)rc : 0;
    if (rc <= 0) log_warn("upload: reading a file failed: %s", rc ? uv_strerror((int)rc) : "EOF");
    g->offset += (int64_t)piece->len;
    g->left -= piece->len;
    metric_add(&upload_metrics.bytes_out, piece->len);
    /* on_done may run inside: the fd is closed there. */
    http_resp_write(g->r, piece);
}

static void on_get_writable(http_req_t *r, void *ud)
{
    get_t *g = ud;
    (void)r;
    size_t n = g->left < PIECE ? (size_t)g->left : PIECE;
    g->piece = rbuf_alloc(n);
    g->is_reading = true;
    uv_buf_t b = uv_buf_init(g->piece->data, (unsigned)n);
    uv_fs_read(g->u->loop, &g->fs, g->fd, &b, 1, g->offset, on_piece_read);
}

static void on_get_done(http_req_t *r, bool is_complete, void *ud)
{
    get_t *g = ud;
    (void)r;
    if (is_complete) metric_inc(&upload_metrics.gets);
    g->r = NULL;
    get_close(g);
}

static const http_out_cb_t get_out = {on_get_writable, on_get_done};

/* Types a browser shows without running anything; every other one is a
 * download (text/html, SVG, XML, PDF... would run or render as a page of
 * this origin). */
static bool is_inline(const char *type)
{
    static const char *const safe[] = {"image/png",  "image/jpeg", "image/gif",
                                       "image/webp", "text/plain", NULL};
    if (strncasecmp(type, "audio/", 6) == 0 || strncasecmp(type, "video/", 6) == 0) return true;
    for (const char *const *t = safe; *t; t++)
        if (strcasecmp(type, *t) == 0) return true;
    return false;
}

void upload_percent_encode(buf_t *b, const char *s, const char *keep)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr(keep, *p)) {
            buf_append(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            buf_append(b, e, 3);
        }
    }
}

/* Content-Disposition with the name as RFC 6266 §4.3 (filename*, UTF-8,
 * %-encoded: attr-char stays), so no byte of it can break the header. */
static void add_disposition(http_req_t *r, const char *type, const char *filename)
{
    buf_t b = BUF_INIT;
    buf_appends(&b, is_inline(type) ? "inline" : "attachment");
    buf_appends(&b, "; filename*=UTF-8''");
    upload_percent_encode(&b, filename, "!#$&+-.^_`|~");
    http_resp_header(r, "Content-Disposition", b.data);
    buf_free(&b);
}

/* One byte range of a file of size bytes (RFC 9110 §14.1.2): 1 and
 * [*first, *last] when the Range header asks for one that the file has, 0
 * to send the whole file (none, several, or one we do not parse), -1 when
 * it starts beyond the end (416). */
static int parse_range(const char *range, uint64_t size, uint64_t *first, uint64_t *last)
{
    if (!range || strncmp(range, "bytes=", 6) != 0 || strchr(range, ',')) return 0;
    const char *p = range + 6, *dash = strchr(p, '-');
    if (!dash || dash == p + strlen(p)) return 0;
    char *end;
    if (dash == p) { /* the last N bytes */
        unsigned long long n = strtoull(dash + 1, &end, 10);
        if (*end || !dash[1] || n == 0) return n == 0 && dash[1] ? -1 : 0;
        *first = n >= size ? 0 : size - n;
        *last = size - 1;
        return size ? 1 : -1;
    }
    unsigned long long a = strtoull(p, &end, 10);
    if (end != dash) return 0;
    unsigned long long b = size ? size - 1 : 0;
    if (dash[1]) {
        b = strtoull(dash + 1, &end, 10);
        if (*end || b < a) return 0;
        if (b >= size) b = size ? size - 1 : 0;
    }
    if (a >= size) return -1;
    *first = a;
    *last = b;
    return 1;
}

typedef struct lookup {
    upload_t *u;
    http_req_t *r;
    char id[TOKEN_LEN + 1];
    char *filename, *type;
    uint64_t size;
    uv_fs_t fs;
} lookup_t;

static void lookup_free(lookup_t *l)
{
    free(l->filename);
    free(l->type);
    free(l);
}

static void on_file_opened(uv_fs_t *fs)
{
    lookup_t *l = fs->data;
    ssize_t rc = fs->result;
    uv_fs_req_cleanup(fs);
    http_req_t *r = l->r;
    if (rc < 0) {
        /* Swept between the lookup and now, or the disk failed. */
        answer(r, rc == UV_ENOENT ? 404 : 500, rc == UV_ENOENT ? "not found" : "cannot read it");
        lookup_free(l);
        return;
    }
    uint64_t first = 0, last = l->size ? l->size - 1 : 0;
    int range = parse_range(http_req_header(r, "Range"), l->size, &first, &last);
    char value[96];
    if (range < 0) {
        snprintf(value, sizeof value, "bytes */%llu", (unsigned long long)l->size);
        http_resp_header(r, "Content-Range", value);
        close_quietly(l->u->loop, (uv_file)rc);
        answer(r, 416, "range not satisfiable");
        lookup_free(l);
        return;
    }
    if (range > 0) {
        snprintf(value, sizeof value, "bytes %llu-%llu/%llu", (unsigned long long)first,
                 (unsigned long long)last, (unsigned long long)l->size);
        http_resp_header(r, "Content-Range", value);
    }
    get_t *g = calloc(1, sizeof *g);
    if (!g) log_fatal("out of memory");
    g->u = l->u;
    g->r = r;
    g->fd = (uv_file)rc;
    g->fs.data = g;
    g->offset = (int64_t)first;
    g->left = l->size ? last - first + 1 : 0;
    l->u->transfers++;
    add_disposition(r, l->type, l->filename);
    http_respond_stream(r, range > 0 ? 206 : 200, l->type, g->left, &get_out, g);
    lookup_free(l);
}

/* filename, size, content_type of a done, unexpired file. */
static void on_file_found(void *ud, const st_result_t *res)
{
    lookup_t *l = ud;
    http_req_t *r = l->r;
    if (st_status(res) != ST_OK || st_rows(res) != 1) {
        if (st_status(res) == ST_OK)
            answer(r, 404, "not found");
        else
            answer(r, 503, "the file store is unavailable; try again");
        lookup_free(l);
        return;
    }
    const char *type = st_text(res, 0, 2);
    l->filename = upload_strdup(st_text(res, 0, 0));
    l->type = upload_strdup(type && *type ? type : "application/octet-stream");
    l->size = (uint64_t)st_int(res, 0, 1);
    char etag[TOKEN_LEN + 3];
    snprintf(etag, sizeof etag, "\"%s\"", l->id);
    http_resp_header(r, "ETag", etag);
    http_resp_header(r, "Accept-Ranges", "bytes");
    http_resp_header(r, "Cache-Control", "public, max-age=31536000, immutable");
    http_resp_header(r, "X-Content-Type-Options", "nosniff");
    http_resp_header(r, "Content-Security-Policy", "default-src 'none'; sandbox");
    const char *match = http_req_header(r, "If-None-Match");
    if (match && (strstr(match, etag) || strcmp(match, "*") == 0)) {
        http_respond(r, 304, NULL, NULL, 0);
        lookup_free(l);
        return;
    }
    char path[4096];
    files_path(l->u, l->id, false, path, sizeof path);
    l->fs.data = l;
    uv_fs_open(l->u->loop, &l->fs, path, O_RDONLY | O_CLOEXEC, 0, on_file_opened);
}

static void on_get(http_req_t *r, void *ud)
{
    upload_t *u = ud;
    add_cors(r);
    lookup_t *l = calloc(1, sizeof *l);
    if (!l) log_fatal("out of memory");
    if (!id_of(http_req_path(r), l->id)) {
        answer(r, 404, "not found");
        free(l);
        return;
    }
    l->u = u;
    l->r = r;
    char now[32];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    const char *params[] = {l->id, now};
    storage_query(u->st,
                  "SELECT filename, size, content_type FROM uploads WHERE id = $1 "
                  "AND done IS NOT NULL AND expires > CAST($2 AS BIGINT)",
                  2, params, on_file_found, l);
}

/* The CORS preflight of a web client's PUT or GET (Fetch standard). */
static void on_options(http_req_t *r, void *ud)
{
    (void)ud;
    add_cors(r);
    http_resp_header(r, "Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS");
    http_resp_header(r, "Access-Control-Allow-Headers", "Authorization, Content-Type");
    http_resp_header(r, "Access-Control-Max-Age", "86400");
    http_respond(r, 204, NULL, NULL, 0);
}

void files_route(upload_t *u, http_server_t *s)
{
    http_route_stream(s, "PUT", "/upload/", on_put, u);
    http_route(s, "GET", "/upload/", on_get, u);
    http_route(s, "OPTIONS", "/upload/", on_options, u);
}
