/* xmpp.c — stream errors and stanza errors (RFC 6120 §4.9 and §8.3).
 *
 * Every error the server sends is written here, so its namespace, its type
 * and its shape are right in one place. Callers pass the condition's name
 * ("policy-violation", "service-unavailable"). */
#include "xmpp.h"

#include <stdbool.h>
#include <string.h>

/* A condition is an XML name from a fixed list; anything else would break
 * the output, so it becomes undefined-condition. */
static const char *checked_condition(const char *condition)
{
    if (!condition || !*condition) return "undefined-condition";
    for (const char *p = condition; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '-')) return "undefined-condition";
    return condition;
}

void xmpp_stream_error(buf_t *out, const char *condition, const char *text)
{
    buf_appends(out, "<stream:error><");
    buf_appends(out, checked_condition(condition));
    buf_appends(out, " xmlns='" NS_STREAM_ERRORS "'/>");
    if (text && *text) {
        buf_appends(out, "<text xmlns='" NS_STREAM_ERRORS "'>");
        xml_escape(out, text, strlen(text), false);
        buf_appends(out, "</text>");
    }
    buf_appends(out, "</stream:error>");
}

void xmpp_sasl_failure(buf_t *out, const char *condition)
{
    buf_appends(out, "<failure xmlns='" NS_SASL "'><");
    buf_appends(out, checked_condition(condition));
    buf_appends(out, "/></failure>");
}

/* RFC 6120 §8.3.3: the error type each defined condition goes with. */
static const struct {
    const char *condition;
    const char *type;
} error_types[] = {
    {"bad-request", "modify"},
    {"conflict", "cancel"},
    {"feature-not-implemented", "cancel"},
    {"forbidden", "auth"},
    {"gone", "cancel"},
    {"internal-server-error", "cancel"},
    {"item-not-found", "cancel"},
    {"jid-malformed", "modify"},
    {"not-acceptable", "modify"},
    {"not-allowed", "cancel"},
    {"not-authorized", "auth"},
    {"policy-violation", "modify"},
    {"recipient-unavailable", "wait"},
    {"redirect", "modify"},
    {"registration-required", "auth"},
    {"remote-server-not-found", "cancel"},
    {"remote-server-timeout", "wait"},
    {"resource-constraint", "wait"},
    {"service-unavailable", "cancel"},
    {"subscription-required", "auth"},
    {"undefined-condition", "cancel"},
    {"unexpected-request", "wait"},
};

const char *xmpp_error_type(const char *condition)
{
    if (condition)
        for (size_t i = 0; i < sizeof error_types / sizeof error_types[0]; i++)
            if (strcmp(error_types[i].condition, condition) == 0) return error_types[i].type;
    return "cancel";
}

int xmpp_stanza_error(elem_t *stanza, const char *condition, const char *text)
{
    const char *type = elem_attr(stanza, "type");
    /* RFC 6120 §8.3.1: an error is never answered with an error. */
    if (type && strcmp(type, "error") == 0) return -1;
    condition = checked_condition(condition);

    /* The arena keeps the old values alive while the attributes change. */
    const char *to = elem_attr(stanza, "to");
    const char *from = elem_attr(stanza, "from");
    elem_set_attr(stanza, "to", from);
    elem_set_attr(stanza, "from", to);
    elem_set_attr(stanza, "type", "error");

    elem_t *error = elem_add(stanza, NULL, "error");
    elem_set_attr(error, "type", xmpp_error_type(condition));
    elem_add(error, NS_STANZA_ERRORS, condition);
    if (text && *text) {
        elem_t *t = elem_add(error, NS_STANZA_ERRORS, "text");
        elem_add_text(t, text, strlen(text));
    }
    return 0;
}

elem_t *xmpp_iq_result(const elem_t *iq)
{
    elem_t *r = elem_new(iq->arena, NS_CLIENT, "iq");
    elem_set_attr(r, "type", "result");
    elem_set_attr(r, "id", elem_attr(iq, "id"));
    elem_set_attr(r, "to", elem_attr(iq, "from"));
    elem_set_attr(r, "from", elem_attr(iq, "to"));
    return r;
}
