/* ctl_pie.c — hearthctl export and import: the accounts of every local
 * domain and what they own, as XEP-0227 (Portable Import/Export Format,
 * namespace urn:xmpp:pie:0), to move users between Hearth installations or
 * from another server.
 *
 *   hearthctl [-c FILE] export [FILE|-]
 *   hearthctl [-c FILE] import [--replace] [FILE...|-]
 *
 * What a <user/> holds, in both directions:
 *   - SCRAM keys, never a password: one <scram-credentials
 *     xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1|SCRAM-SHA-256'>
 *     per hash with <iter-count/>, <salt/>, <server-key/>, <stored-key/>
 *     (base64), as XEP-0227 1.1 §4.3 and Prosody's mod_storage_xep0227
 *     write them. Import also takes the 'password' attribute of older
 *     files (and Prosody's plaintext storage), and derives both key sets
 *     from it; keys of only one hash are stored as they are (c2s/auth.c
 *     says how such an account logs in);
 *   - the roster, <query xmlns='jabber:iq:roster'> as a roster result
 *     (RFC 6121 §2.1: jid, name, subscription, ask, approved, groups), and
 *     each contact's subscription request still unanswered as the
 *     <presence xmlns='jabber:client' type='subscribe'/> it sent;
 *   - the vCard, <vCard xmlns='vcard-temp'/> (XEP-0054);
 *   - private XML storage, <query xmlns='jabber:iq:private'> with one
 *     element per namespace (XEP-0049);
 *   - offline messages, <offline-messages> with the stored <message/>s
 *     oldest first, each with its <delay xmlns='urn:xmpp:delay'/>: the
 *     stamp of when it first reached a server, which import keeps (a
 *     message without one gets the time of the import);
 *   - the block list, <blocklist xmlns='urn:xmpp:blocking'> with an <item
 *     jid/> per blocked JID (XEP-0191's own element: XEP-0227 has none for
 *     it; XEP-0227 §4 lets a file carry elements of other namespaces).
 * Elements import does not know are reported and skipped. XInclude
 * (XEP-0227 §5) is not followed: a file that uses it is refused; import
 * takes several files instead (Prosody's exporter writes one per user).
 *
 * Export writes one <host/> per configured domain, users in the order of
 * their JIDs, to FILE (made 0600, an existing file too: it holds every
 * account's keys) or standard output, through common/xml.h's serializer,
 * which escapes everything; the accounts are read a page at a time and one
 * user's data at a time, so memory stays that of one user.
 *
 * Import reads with libxml2's xmlTextReader, one <user/> at a time (memory
 * is that of the largest user), with no network and no DTD: a file with a
 * <!DOCTYPE> or an entity reference is refused before any user of it is
 * read (so no entity expansion ever happens). Each user is checked against
 * the limits the sm enforces (sm.roster-max, sm.offline-quota,
 * sm.vcard-max, sm.private-max, sm.private-count, sm.blocklist-max) and
 * written in one transaction: a user whose data fail a check or a write
 * is not imported at all, and is named on standard error; the others are
 * imported. An account that exists already is skipped with a message,
 * unless --replace: then everything it owned is deleted in the same
 * transaction. A file that breaks off (truncated, not well-formed) stops
 * at that point: the users before it are imported, the one it breaks in
 * is not. Users of a domain this server does not serve are not imported.
 *
 * A running sm is then told, as after adduser, through the router with the
 * admin account: <created/> for each new account, <deleted/> then
 * <created/> for each replaced one (its sessions end: what it had in
 * memory is gone). Best effort: without a router or an sm the import
 * stands.
 *
 * Exit status: 0 every user exported or imported (existing accounts
 * skipped included), 1 something failed (the reasons on standard error),
 * 2 usage.
 *
 * This file holds the command (arguments, files, store) and the notices to
 * the sm; ctl_pie_export.c writes, ctl_pie_import.c reads the files,
 * ctl_pie_check.c checks one user's data. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_pie.h"

void pie_error(pie_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctl_vfail(&p->status, fmt, ap);
    va_end(ap);
}

static int usage(void)
{
    fprintf(stderr, "usage: hearthctl [-c FILE] export [FILE|-]\n"
                    "       hearthctl [-c FILE] import [--replace] [FILE...|-]\n");
    return 2;
}

/* ---- telling the sm ------------------------------------------------------- */

static void on_notice_answer(void *ud, const elem_t *iq, ctl_problem_t problem, const char *detail)
{
    (void)iq, (void)detail;
    pie_t *p = ud;
    /* Bounced: no sm runs; no router: none either. Neither has anything
     * to forget. */
    if (problem == CTL_ANSWERED || problem == CTL_BOUNCED)
        p->answered++;
    else if (problem == CTL_NO_ANSWER)
        p->unanswered++;
    if (++p->done == p->nnotices && p->unanswered)
        fprintf(stderr,
                "hearthctl: warning: the sm answered %d of %d notices about the imported "
                "accounts: it may refuse stanzas to the others for 30 s, and sessions of "
                "replaced ones last until they log out\n",
                p->answered, p->nnotices);
}

void pie_notify_start(pie_t *p)
{
    if (!p->link || p->nnotices == 0) return;
    p->is_asked = true;
    for (int i = 0; i < p->nnotices; i++) {
        const char *action = p->notices[i], *jid = strchr(action, ' ') + 1,
                   *domain = strrchr(jid, '@') + 1;
        ctl_request_t req = {
            .to = domain,
            .role = ROLE_SM,
            .user = jid,
            .is_set = true,
            .name = strncmp(action, "created", 7) == 0 ? "created" : "deleted",
            .jid = jid,
            /* a millisecond more for each */
            .timeout_ms = NOTIFY_TIMEOUT_MS + (uint64_t)p->nnotices,
        };
        ctl_link_ask(p->link, &req, on_notice_answer, p);
    }
}

/* ---- main ----------------------------------------------------------------- */

static void on_closed(void *ud)
{
    (void)ud;
}

/* The files, opened before the switch of user (they may be root's). */
static int open_files(pie_t *p, int argc, char **argv, bool is_export)
{
    if (is_export) {
        p->out = stdout;
        if (argc == 1 && strcmp(argv[0], "-") != 0) {
            p->out_path = argv[0];
            int fd = open(p->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            struct stat sb;
            /* A file that was there keeps its mode unless we set it: the
             * export holds keys. A device or a pipe is left as it is. */
            p->is_out_regular = fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode);
            if (p->is_out_regular && fchmod(fd, 0600) < 0) {
                pie_error(p, "cannot make %s private (0600): %s", p->out_path, strerror(errno));
                close(fd);
                return -1;
            }
            if (fd < 0 || !(p->out = fdopen(fd, "w"))) {
                pie_error(p, "cannot write %s: %s", p->out_path, strerror(errno));
                if (fd >= 0) close(fd);
                p->out = NULL;
                return -1;
            }
        }
        return 0;
    }
    p->nfiles = argc > 0 ? argc : 1;
    p->fds = calloc((size_t)p->nfiles, sizeof *p->fds);
    p->names = calloc((size_t)p->nfiles, sizeof *p->names);
    if (!p->fds || !p->names) log_fatal("out of memory");
    for (int i = 0; i < p->nfiles; i++) {
        const char *name = argc > 0 ? argv[i] : "-";
        p->names[i] = strcmp(name, "-") == 0 ? "standard input" : (char *)name;
        p->fds[i] = strcmp(name, "-") == 0 ? STDIN_FILENO : open(name, O_RDONLY | O_CLOEXEC);
        if (p->fds[i] < 0) {
            pie_error(p, "cannot read %s: %s", name, strerror(errno));
            return -1;
        }
    }
    return 0;
}

int pie_main(const char *config_path, int argc, char **argv)
{
    bool is_export = strcmp(argv[0], "export") == 0;
    argc--, argv++;
    pie_t pie = {0}, *p = &pie;
    if (is_export && argc > 1) return usage();
    if (!is_export && argc > 0 && strcmp(argv[0], "--replace") == 0) {
        p->is_replace = true;
        argc--, argv++;
    }
    for (int i = 0; i < argc; i++)
        if (argv[i][0] == '-' && argv[i][1]) return usage();
    char *err = NULL;
    if (!(p->config = ctl_config_load(config_path))) return 1;
    LIBXML_TEST_VERSION
    p->loop = uv_default_loop();
    if (!is_export) p->link = ctl_link_new(p->loop, p->config);
    if (open_files(p, argc, argv, is_export) < 0) goto done;
    /* As root, become the daemons' user before the store is opened. */
    if (daemon_switch_user(p->config, &err) < 0) {
        pie_error(p, "%s", err);
        free(err);
        goto done;
    }
    if (!(p->st = storage_open(p->loop, p->config, &err))) {
        pie_error(p, "cannot open the store: %s", err);
        free(err);
        goto done;
    }
    if (is_export)
        pie_export_start(p);
    else
        pie_import_next(p);
    uv_run(p->loop, UV_RUN_DEFAULT);

done:
    if (!p->is_asked) ctl_link_free(p->link);
    if (p->st) storage_close(p->st, on_closed, NULL);
    uv_run(p->loop, UV_RUN_DEFAULT);
    uv_loop_close(p->loop);
    if (p->out && p->out != stdout) {
        if (fclose(p->out) != 0) {
            pie_error(p, "cannot write %s: %s", p->out_path, strerror(errno));
            p->has_read_error = true;
        }
        /* A file that stopped half-way goes (never a device or a pipe);
         * one that only lacks a row that did not parse (reported) stays. */
        if (p->has_read_error && p->is_out_regular) unlink(p->out_path);
    } else if (p->out) {
        fflush(p->out);
    }
    while (p->reader || (p->fds && p->file < p->nfiles))
        pie_file_close(p);
    for (int i = 0; i < p->nnotices; i++)
        free(p->notices[i]);
    free(p->notices);
    free(p->fds);
    free(p->names);
    free(p->stmts);
    pie_page_free(p);
    if (p->arena) arena_free(p->arena);
    config_free(p->config);
    xmlCleanupParser();
    log_close();
    return p->status;
}
