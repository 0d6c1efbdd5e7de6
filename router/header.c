/* header.c — the route start tag, as the router reads and writes it.
 *
 * The router never parses a payload; what it does with a route is read its
 * start tag (the shallow parser gives the attributes) and write a few bytes
 * of its own around the sender's: the role mark in front of the sender's
 * attributes, or a bounce that swaps to and from and carries the payload
 * back as it came. These functions do that on bytes and buffers only, with
 * no connection in sight, so that test/fuzz/fuzz_route.c can check them on
 * any input: a marked route and a bounce always parse again, carry the
 * role they should, and keep the payload byte for byte. route.c and link.c
 * call them. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdio.h>
#include <string.h>

#include "router.h"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool header_is_markable(const elem_t *route, const xstream_raw_t *raw)
{
    return raw->len > 7 && memcmp(raw->data, "<route", 6) == 0 && is_blank(raw->data[6]) &&
           !elem_attr(route, "role");
}

size_t header_mark(char *out, size_t size, comp_role_t role)
{
    int n = snprintf(out, size, "<route role='%s'", comp_role_name(role));
    return n > 0 && (size_t)n < size ? (size_t)n : 0;
}

int header_bounce(buf_t *b, const elem_t *route, const xstream_raw_t *raw, const char *condition)
{
    /* The bounce is written anew from the attributes; namespaces declared
     * on the start tag would be lost, and a payload using them broken. */
    size_t tag_len = raw->inner_len ? raw->inner_off : raw->len;
    if (memmem(raw->data, tag_len, "xmlns", 5)) return -1;
    buf_appends(b, "<route role='router'");
    for (const attr_t *at = route->attrs; at; at = at->next) {
        const char *name = at->name;
        if (at->ns || strcmp(name, "type") == 0 || strcmp(name, "error") == 0 ||
            strcmp(name, "role") == 0)
            continue;
        if (strcmp(name, "to") == 0)
            name = "from";
        else if (strcmp(name, "from") == 0)
            name = "to";
        xml_attr(b, name, at->value);
    }
    buf_printf(b, " type='error' error='%s'>", condition);
    buf_append(b, raw->data + raw->inner_off, raw->inner_len);
    buf_appends(b, "</route>");
    return 0;
}

void header_payload(const xstream_raw_t *raw, const char **data, size_t *len)
{
    const char *p = raw->data + raw->inner_off;
    size_t n = raw->inner_len;
    while (n > 0 && is_blank(*p))
        p++, n--;
    while (n > 0 && is_blank(p[n - 1]))
        n--;
    *data = p;
    *len = n;
}
