/* addr.c — what one c2s process knows of each client address: how many
 * connections it holds (c2s.max-connections-per-ip) and its recent login
 * failures, which delay the next failure's answer longer each time so that
 * guessing passwords from one address gets slow.
 *
 * A record lives while the address has connections or a failure younger
 * than FAILURE_MEMORY; the sweep timer (main.c) drops the others. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

#define FAILURE_MEMORY (10 * 60 * 1000) /* ms a failure counts against an address */
#define FIRST_DELAY 500                 /* ms, for the second failure in a row */
#define MAX_DELAY 8000                  /* ms */

static size_t hash_ip(const char *s)
{
    size_t h = 5381;
    while (*s)
        h = h * 33 + (unsigned char)*s++;
    return h;
}

/* "127.0.0.1:40000" -> "127.0.0.1"; "[::1]:40000" -> "::1". */
static void ip_of(const char *peer, char *out, size_t size)
{
    const char *start = peer, *end = strrchr(peer, ':');
    if (*peer == '[') {
        start = peer + 1;
        end = strchr(start, ']');
    }
    if (!end || strcmp(peer, "unix") == 0) end = peer + strlen(peer);
    size_t n = (size_t)(end - start);
    if (n >= size) n = size - 1;
    memcpy(out, start, n);
    out[n] = '\0';
}

addr_t *addr_get(c2s_t *c2s, const char *peer)
{
    if (!c2s->addrs) {
        c2s->addrs_size = 4096;
        c2s->addrs = calloc(c2s->addrs_size, sizeof(*c2s->addrs));
        if (!c2s->addrs) log_fatal("out of memory");
    }
    char ip[48];
    ip_of(peer, ip, sizeof ip);
    addr_t **slot = &c2s->addrs[hash_ip(ip) % c2s->addrs_size];
    for (addr_t *a = *slot; a; a = a->next) {
        if (strcmp(a->ip, ip) == 0) {
            a->connections++;
            return a;
        }
    }
    addr_t *a = calloc(1, sizeof(*a));
    if (!a) log_fatal("out of memory");
    snprintf(a->ip, sizeof a->ip, "%s", ip);
    a->connections = 1;
    a->next = *slot;
    *slot = a;
    return a;
}

void addr_release(c2s_t *c2s, addr_t *a)
{
    (void)c2s;
    if (a && a->connections) a->connections--;
}

uint64_t addr_failed(c2s_t *c2s, addr_t *a)
{
    uint64_t now = uv_now(c2s->loop);
    if (!a) return MAX_DELAY;
    if (a->failures && now - a->last_failure > FAILURE_MEMORY) a->failures = 0;
    a->failures++;
    a->last_failure = now;
    if (a->failures < 2) return 0;
    unsigned shift = a->failures - 2;
    uint64_t delay = shift >= 5 ? MAX_DELAY : (uint64_t)FIRST_DELAY << shift;
    return delay > MAX_DELAY ? MAX_DELAY : delay;
}

void addr_sweep(c2s_t *c2s)
{
    uint64_t now = uv_now(c2s->loop);
    for (size_t i = 0; i < c2s->addrs_size; i++) {
        addr_t **p = &c2s->addrs[i];
        while (*p) {
            addr_t *a = *p;
            if (a->connections == 0 && (!a->failures || now - a->last_failure > FAILURE_MEMORY)) {
                *p = a->next;
                free(a);
            } else {
                p = &a->next;
            }
        }
    }
}

void addr_table_free(c2s_t *c2s)
{
    for (size_t i = 0; i < c2s->addrs_size; i++) {
        while (c2s->addrs[i]) {
            addr_t *a = c2s->addrs[i];
            c2s->addrs[i] = a->next;
            free(a);
        }
    }
    free(c2s->addrs);
    c2s->addrs = NULL;
}
