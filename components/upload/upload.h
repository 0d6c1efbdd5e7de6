/* upload.h — hearth-upload, HTTP file upload (XEP-0363): what its files
 * share.
 *
 * The daemon binds upload.DOMAIN for every local domain. A user's client
 * asks it for a slot over XMPP (slot.c): the answer is a PUT URL with an
 * Authorization header only that client gets, and the GET URL to share.
 * The file then travels over HTTP (files.c): PUT to disk, GET and HEAD
 * from it, both streamed, never held whole. What is known of each file is
 * a row of the uploads table of the store (storage/sql/.../004-uploads.sql);
 * the bytes are the file DIR/ID, written first as DIR/tmp/ID and renamed
 * once complete, so a file that exists under its name is whole. A sweep
 * (files.c) deletes what expired, and files whose row is gone (the
 * account was deleted).
 *
 * The URLs: BASE/upload/ID/NAME, where ID is the slot's 128 random bits in
 * hex and NAME the file name, %-encoded, kept for the clients that show
 * it. Knowing ID is what lets one download: that is the XEP's model (the
 * GET URL goes into a message). Uploading takes the slot's PUT token as
 * well ("Authorization: Bearer TOKEN"), of which the store keeps only a
 * hash. */
#ifndef HEARTH_UPLOAD_H
#define HEARTH_UPLOAD_H

#include <stdint.h>
#include <uv.h>

#include "common.h"
#include "component.h"
#include "http.h"
#include "metrics.h"
#include "storage.h"

#define NS_UPLOAD "urn:xmpp:http:upload:0"

typedef struct upload {
    uv_loop_t *loop;
    comp_t *comp;
    storage_t *st;
    char **domains; /* the local domains: their users may upload */
    int ndomains;
    char *dir;      /* where the files are */
    char *base_url; /* "https://localhost:5281", no trailing '/' */
    uint64_t max_file_size, user_quota, total_quota;
    uint64_t slot_lifetime, expiry; /* seconds; expiry 0: never */
    http_server_t *https, *http;
    tls_ctx_t *tls;
    uv_timer_t sweep;
    bool is_sweeping;
    map_t busy;         /* put_t of the uploads under way, by id */
    unsigned transfers; /* PUTs and GETs under way */
} upload_t;

/* slot.c: a route from the router (an IQ to upload.DOMAIN). */
void slot_on_route(upload_t *u, elem_t *route);

/* files.c: the HTTP side on server s, and the sweep (every minute, and
 * once at start). */
void files_route(upload_t *u, http_server_t *s);
void files_sweep_start(upload_t *u);

/* Append s %-encoded (RFC 3986 §2.1): letters, digits and the bytes of
 * keep stay as they are (files.c). */
void upload_percent_encode(buf_t *b, const char *s, const char *keep);
/* strdup, fatal when out of memory (main.c). */
char *upload_strdup(const char *s);

/* The path of file id (complete, or is_tmp: being written) into out. */
void files_path(const upload_t *u, const char *id, bool is_tmp, char *out, size_t size);

/* Metrics (main.c registers them). */
typedef struct upload_metrics {
    metric_counter_t slots, refused, puts, gets, bytes_in, bytes_out, swept;
} upload_metrics_t;
extern upload_metrics_t upload_metrics;

#endif
