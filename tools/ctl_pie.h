/* ctl_pie.h — what the files of hearthctl export and import share
 * (ctl_pie.c: the command, its files and telling the sm; ctl_pie_export.c;
 * ctl_pie_import.c: reading the files; ctl_pie_check.c: one user's data
 * checked and turned into statements). Private to them. */
#ifndef HEARTH_CTL_PIE_H
#define HEARTH_CTL_PIE_H

#include <libxml/xmlreader.h>
#include <stdio.h>
#include <string.h>

#include "hearthctl.h"
#include "storage.h"

#define NS_PIE "urn:xmpp:pie:0"
#define NS_PIE_OLD "http://www.xmpp.org/extensions/xep-0227.html#ns" /* before 1.0 */
#define NS_SCRAM "urn:xmpp:pie:0#scram"
#define NS_ROSTER "jabber:iq:roster"
#define NS_PRIVATE "jabber:iq:private"
#define NS_VCARD "vcard-temp"
#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_DELAY "urn:xmpp:delay"
#define NS_XINCLUDE "http://www.w3.org/2001/XInclude"

#define PAGE_ROWS 100          /* accounts read at a time by export */
#define PENDING_MAX 4096       /* a kept subscription request (sm/mod_roster.c) */
#define MAX_ITERATIONS 1000000 /* of imported SCRAM keys */
#define NOTIFY_TIMEOUT_MS 2000 /* to connect, then for the answers */

typedef struct pie {
    uv_loop_t *loop;
    config_t *config;
    storage_t *st;
    int status;
    /* export */
    FILE *out;
    const char *out_path; /* NULL: standard output */
    bool is_out_regular;  /* out_path is a regular file (else a device, a pipe) */
    int domain;           /* index of the domain being written */
    char domain_name[JID_STRING_MAX];
    char last[JID_STRING_MAX]; /* the last account of the page before */
    char **page;               /* rows of the page: owner + 8 key columns each */
    int page_rows, page_row;
    arena_t *arena; /* the user being written or imported */
    elem_t *user;
    bool has_read_error; /* export stopped: a query or a write failed */
    /* import */
    bool is_replace;
    int nfiles, file;
    int *fds;
    char **names;
    xmlTextReaderPtr reader;
    bool is_positioned; /* the reader is on the next node already */
    char error[512];    /* the parser's last message */
    char host[JID_STRING_MAX];
    bool is_host_ok;
    char owner[JID_STRING_MAX];
    int nstmts, stmts_cap;
    st_stmt_t *stmts;
    int imported, skipped, failed;
    /* telling the sm */
    ctl_link_t *link;
    bool is_asked;
    int nnotices, answered, unanswered, done;
    char **notices; /* "created BARE" or "deleted BARE" */
} pie_t;

/* "hearthctl: " and the message on standard error; the status becomes 1. */
void pie_error(pie_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static inline bool pie_is(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Free export's page of accounts (none: nothing). */
void pie_page_free(pie_t *p);
/* Close the file being read and go to the next one. */
void pie_file_close(pie_t *p);
/* Write the whole export to p->out; the loop runs its queries. */
void pie_export_start(pie_t *p);
/* Read the files on from where they are, a user at a time, until the last
 * one is written; then pie_notify_start(). */
void pie_import_next(pie_t *p);
/* user's statements into p->stmts (p->owner set); NULL, or why the user is
 * refused (a static or arena string). */
const char *pie_check_user(pie_t *p, const elem_t *user);
/* Tell the sm of p->notices, then let the loop end. */
void pie_notify_start(pie_t *p);

#endif
