/* ack.c — the sm's stanzas for remote servers, acknowledged.
 *
 * The sm keeps each stanza it routes to us until we acknowledge it, and
 * sends again what we did not after the router or we restarted (sm/ack.c).
 * Such a route carries seq='N' and link='SM-ID' (the sm instance, one
 * sequence per instance: several sm shards send from the same domain); we
 * take each seq of a link once, and answer, ACK_DELAY_MS after the first
 * is due,
 *   <route to='DOMAIN' from='s2s' user='BARE'>
 *     <ack xmlns='urn:hearth:session:1' link='SM-ID' h='N'/></route>
 * with the user of that link's last route, so it reaches that shard. Only
 * routes the router marked role='sm' count; from anyone else seq and link
 * mean nothing. Taken means put in the stream's queue for its peer: what
 * we had not yet written to a peer when killed is lost (s2s.h). */
#include <stdlib.h>
#include <string.h>

#include "s2s.h"

#define ACK_DELAY_MS 5
#define LINKS_MAX 1024

typedef struct sm_link {
    uint64_t h;
    bool is_due;
    char domain[JID_STRING_MAX];
    char user[JID_STRING_MAX];
} sm_link_t;

static void on_ack_timer(uv_timer_t *t)
{
    s2s_t *s = t->data;
    map_iter_t it;
    map_iter_init(&it, &s->sm_links);
    const char *name;
    buf_t *b = &s->scratch;
    for (sm_link_t *l; (l = map_iter_next(&it, &name));) {
        if (!l->is_due) continue;
        l->is_due = false;
        buf_reset(b);
        buf_appends(b, "<route to='");
        xml_escape(b, l->domain, strlen(l->domain), true);
        buf_appends(b, "' from='");
        xml_escape(b, s->id, strlen(s->id), true);
        buf_appends(b, "' user='");
        xml_escape(b, l->user, strlen(l->user), true);
        buf_appends(b, "'><ack xmlns='urn:hearth:session:1' link='");
        xml_escape(b, name, strlen(name), true);
        buf_printf(b, "' h='%llu'/></route>", (unsigned long long)l->h);
        comp_send_raw(s->comp, b->data, b->len);
    }
}

void ack_init(s2s_t *s)
{
    map_init(&s->sm_links);
    uv_timer_init(s->loop, &s->ack_timer);
    s->ack_timer.data = s;
}

void ack_close(s2s_t *s)
{
    if (s->comp) on_ack_timer(&s->ack_timer); /* what is due goes first */
    map_iter_t it;
    map_iter_init(&it, &s->sm_links);
    for (sm_link_t *l; (l = map_iter_next(&it, NULL));)
        free(l);
    map_free(&s->sm_links);
    uv_close((uv_handle_t *)&s->ack_timer, NULL);
}

bool ack_is_new(s2s_t *s, const elem_t *route)
{
    const char *seq = elem_attr(route, "seq"), *link = elem_attr(route, "link");
    const char *domain = elem_attr(route, "from"), *user = elem_attr(route, "user");
    if (!seq || !link || !domain || comp_route_role(route) != ROLE_SM) return true;
    sm_link_t *l = map_get(&s->sm_links, link);
    if (!l) {
        if (s->sm_links.count >= LINKS_MAX) return true;
        if (!(l = calloc(1, sizeof *l))) log_fatal("out of memory");
        map_put(&s->sm_links, link, l);
    }
    snprintf(l->domain, sizeof l->domain, "%s", domain);
    snprintf(l->user, sizeof l->user, "%s", user ? user : "");
    l->is_due = true;
    if (!uv_is_active((uv_handle_t *)&s->ack_timer))
        uv_timer_start(&s->ack_timer, on_ack_timer, ACK_DELAY_MS, 0);
    uint64_t n = strtoull(seq, NULL, 10);
    if (n <= l->h) return false; /* sent again after a restart: had it */
    l->h = n;
    return true;
}
