/* addr.c — client addresses in this process: the key the limits count an
 * address by, and how many connections each key holds here
 * (c2s.max-connections-per-ip) and how many of those have not
 * authenticated yet (c2s.max-pending-per-ip).
 *
 * A key is an IPv4 address, or an IPv6 address cut to its first
 * c2s.ipv6-prefix bits: one customer usually gets a whole /64, so counting
 * single IPv6 addresses would give each customer 2^64 budgets. A record
 * lives while its key has connections here. What every process of the
 * host must share (login schedules, registrations) is limits.c's. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c2s.h"

static size_t hash_key(const addr_key_t *k)
{
    size_t h = 5381;
    for (size_t i = 0; i < sizeof k->b; i++)
        h = h * 33 + k->b[i];
    return h;
}

void addr_key_of(const char *peer, unsigned prefix, addr_key_t *key, char *text, size_t size)
{
    memset(key, 0, sizeof *key);
    char ip[INET6_ADDRSTRLEN + 8];
    const char *start = peer, *end = strrchr(peer, ':');
    if (*peer == '[') {
        start = peer + 1;
        end = strchr(start, ']');
    }
    size_t n = end ? (size_t)(end - start) : 0;
    if (n >= sizeof ip) n = 0;
    memcpy(ip, start, n);
    ip[n] = '\0';
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, ip, &v4) == 1) {
        key->b[10] = key->b[11] = 0xff;
        memcpy(key->b + 12, &v4, 4);
        snprintf(text, size, "%s", ip);
    } else if (inet_pton(AF_INET6, ip, &v6) == 1) {
        memcpy(key->b, &v6, 16);
        if (IN6_IS_ADDR_V4MAPPED(&v6)) { /* an IPv4 client on a [::] listener */
            inet_ntop(AF_INET, key->b + 12, ip, sizeof ip);
            snprintf(text, size, "%s", ip);
            return;
        }
        for (unsigned bit = prefix; bit < 128; bit++)
            key->b[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
        inet_ntop(AF_INET6, key->b, ip, sizeof ip);
        if (prefix < 128)
            snprintf(text, size, "%s/%u", ip, prefix);
        else
            snprintf(text, size, "%s", ip);
    } else {
        snprintf(text, size, "%s", peer); /* "unix": every local socket is one key */
    }
}

addr_t *addr_get(c2s_t *c2s, const addr_key_t *key, const char *text)
{
    if (!c2s->addrs) {
        c2s->addrs_size = 4096;
        c2s->addrs = calloc(c2s->addrs_size, sizeof(*c2s->addrs));
        if (!c2s->addrs) log_fatal("out of memory");
    }
    addr_t **slot = &c2s->addrs[hash_key(key) % c2s->addrs_size];
    for (addr_t *a = *slot; a; a = a->next)
        if (memcmp(&a->key, key, sizeof *key) == 0) return a;
    addr_t *a = calloc(1, sizeof(*a));
    if (!a) log_fatal("out of memory");
    a->key = *key;
    snprintf(a->ip, sizeof a->ip, "%s", text);
    a->next = *slot;
    *slot = a;
    return a;
}

void addr_release(c2s_t *c2s, addr_t *a)
{
    if (!a || (a->connections && --a->connections)) return;
    for (addr_t **p = &c2s->addrs[hash_key(&a->key) % c2s->addrs_size]; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            free(a);
            return;
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
