/* strophe-login — logs in to a Hearth c2s with libstrophe, a real client
 * library, and sends one chat message; test_c2s_strophe.py drives it.
 *
 *   strophe-login HOST PORT JID PASSWORD CAFILE TO BODY
 *
 * STARTTLS is mandatory and the server's certificate must verify against
 * CAFILE for the JID's domain; libstrophe picks the SASL mechanism (its
 * strongest: SCRAM with channel binding). Once bound it prints
 * "bound FULLJID", sends BODY to TO, then pings the server and, on the
 * answer (so the message was read before), prints "sent" and closes.
 * Exit status 0 on success, 1 with "error ..." on stdout otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strophe.h>

static const char *to, *body;
static int status = 1;

static int on_pong(xmpp_conn_t *conn, xmpp_stanza_t *stanza, void *ud)
{
    (void)ud;
    const char *type = xmpp_stanza_get_type(stanza);
    if (type && strcmp(type, "result") == 0) {
        printf("sent\n");
        status = 0;
    } else {
        printf("error: ping answered with %s\n", type ? type : "(no type)");
    }
    fflush(stdout);
    xmpp_disconnect(conn);
    return 0;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t event, int error,
                    xmpp_stream_error_t *stream_error, void *ud)
{
    xmpp_ctx_t *ctx = ud;
    if (event == XMPP_CONN_CONNECT) {
        printf("bound %s\n", xmpp_conn_get_bound_jid(conn));
        fflush(stdout);
        xmpp_stanza_t *msg = xmpp_message_new(ctx, "chat", to, "m1");
        xmpp_message_set_body(msg, body);
        xmpp_send(conn, msg);
        xmpp_stanza_release(msg);

        xmpp_stanza_t *iq = xmpp_iq_new(ctx, "get", "ping1");
        xmpp_stanza_t *ping = xmpp_stanza_new(ctx);
        xmpp_stanza_set_name(ping, "ping");
        xmpp_stanza_set_ns(ping, "urn:xmpp:ping");
        xmpp_stanza_add_child(iq, ping);
        xmpp_stanza_release(ping);
        xmpp_id_handler_add(conn, on_pong, "ping1", NULL);
        xmpp_send(conn, iq);
        xmpp_stanza_release(iq);
        return;
    }
    if (status != 0) {
        printf("error: %s (error %d%s%s)\n",
               event == XMPP_CONN_FAIL ? "connection failed" : "disconnected", error,
               stream_error ? ", stream error " : "",
               stream_error && stream_error->text ? stream_error->text : "");
        fflush(stdout);
    }
    xmpp_stop(ctx);
}

int main(int argc, char **argv)
{
    if (argc != 8) {
        fprintf(stderr, "usage: strophe-login HOST PORT JID PASSWORD CAFILE TO BODY\n");
        return 2;
    }
    to = argv[6];
    body = argv[7];
    xmpp_initialize();
    xmpp_log_t *log = xmpp_get_default_logger(XMPP_LEVEL_DEBUG); /* on stderr */
    xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, log);
    xmpp_conn_t *conn = xmpp_conn_new(ctx);
    xmpp_conn_set_flags(conn, XMPP_CONN_FLAG_MANDATORY_TLS | XMPP_CONN_FLAG_DISABLE_SM);
    xmpp_conn_set_cafile(conn, argv[5]);
    xmpp_conn_set_jid(conn, argv[3]);
    xmpp_conn_set_pass(conn, argv[4]);
    if (xmpp_connect_client(conn, argv[1], (unsigned short)atoi(argv[2]), on_conn, ctx) !=
        XMPP_EOK) {
        printf("error: cannot connect\n");
        return 1;
    }
    xmpp_run(ctx);
    xmpp_conn_release(conn);
    xmpp_ctx_free(ctx);
    xmpp_shutdown();
    return status;
}
