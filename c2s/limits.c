/* limits.c — the login and registration limits that every c2s process of
 * the host shares, in a small table in shared memory.
 *
 * Per client address (addr.c makes the key: an IPv4 address, or an IPv6
 * prefix of c2s.ipv6-prefix bits) it keeps the schedule of login attempts
 * and a registration budget; for the host, one more registration budget.
 * auth.c asks before it evaluates a login, register.c before it derives
 * the keys of a new account. Connection counts are not here: they are per
 * process (addr.c), since a process that dies could not give its back.
 *
 * The table is the file STATEDIR/run/c2s-limits, created 0600 (before the
 * process drops its privileges) and mapped MAP_SHARED by every c2s. Its
 * header names a magic number, the layout's version, the number of slots,
 * the entry size and the boot it was made in; a file that does not match
 * (another build, a crash while it was made, a reboot: the times below are
 * CLOCK_MONOTONIC milliseconds, uv_hrtime(), one clock for the whole host
 * that restarts at boot) is replaced by a new one, made under flock(), so
 * two processes starting together agree on one file. The header also holds
 * a robust, process-shared mutex taken around each operation (a lookup in
 * PROBE slots and a few assignments); when a process dies holding it, the
 * next one takes it over (EOWNERDEAD) and goes on: at worst one entry is
 * half-updated, and every entry expires by time, so nothing a crashed
 * process left lasts.
 *
 * Slots: NSLOTS of them, open addressing; a key is looked for in the PROBE
 * slots from its hash (seeded per file, so nobody picks which addresses
 * collide). A new key takes an expired slot there, else evicts the one
 * that expires first: a flood of new addresses pushes out the oldest
 * knowledge and never blocks a lookup. An entry expires once its login
 * debt is forgiven, its schedule has passed and its registration budget
 * is full again.
 *
 * Logins (c2s.auth-rate per minute, after c2s.auth-burst): every attempt
 * counts as a failure from the moment it starts, so hanging up early
 * changes nothing: it adds one unit of debt to its address, forgiven
 * 60/rate seconds later, and a success gives its own unit back. The
 * attempts of an address are evaluated one after another on one schedule:
 * an attempt's turn is the previous turn plus spacing(k), k being the units
 * still owed counting this attempt: nothing up to the burst, then 0.5 s,
 * doubling up to 60/rate s. So a sustained guesser gets `rate` evaluations
 * a minute however many connections it opens, and success and failure
 * answer at the same turn. An attempt whose turn would come after the
 * caller's deadline is refused at once and costs nothing. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "c2s.h"

#define LIMITS_MAGIC 0x48454152544c494dULL /* "HEARTLIM" */
#define LIMITS_VERSION 1
#define NSLOTS 16384 /* addresses remembered at once (1 MiB) */
#define PROBE 16
#define FIRST_SPACING 500 /* ms, the first wait past the burst */
#define HOUR (3600 * 1000)
#define NAME "c2s-limits" /* in STATEDIR/run */

typedef struct entry {
    addr_key_t key;
    uint64_t expires;    /* ms; 0: never used */
    uint64_t login_debt; /* when the address's counted attempts are all forgiven */
    uint64_t login_last; /* the turn of its latest attempt */
    uint64_t reg_at;     /* reg_tokens as of then */
    double reg_tokens;
    uint8_t pad[8];
} entry_t;

typedef struct header {
    uint64_t magic;
    uint32_t version, nslots, entry_size, header_size;
    char boot_id[48];
    uint64_t seed;
    pthread_mutex_t lock;
    uint64_t total_at; /* the host's registration budget as of then (0: full) */
    double total_tokens;
} header_t;

#define HEADER_SIZE ((sizeof(header_t) + 63) & ~(size_t)63)
#define FILE_SIZE (HEADER_SIZE + NSLOTS * sizeof(entry_t))

struct limits {
    header_t *h;
    entry_t *slots;
    uint64_t login_interval; /* ms: 60 s / c2s.auth-rate */
    unsigned login_burst;
    double reg_rate, reg_total; /* per hour */
};

uint64_t limits_now(void)
{
    return uv_hrtime() / 1000000;
}

static void boot_id(char *out, size_t size)
{
    memset(out, 0, size);
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f) return;
    if (!fgets(out, (int)size, f)) out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

static bool header_matches(const header_t *h)
{
    char boot[sizeof h->boot_id];
    boot_id(boot, sizeof boot);
    return h->magic == LIMITS_MAGIC && h->version == LIMITS_VERSION && h->nslots == NSLOTS &&
           h->entry_size == sizeof(entry_t) && h->header_size == HEADER_SIZE &&
           strncmp(h->boot_id, boot, sizeof boot) == 0;
}

/* A new file (all zeros): the header, the magic number last. */
static void header_init(header_t *h)
{
    h->version = LIMITS_VERSION;
    h->nslots = NSLOTS;
    h->entry_size = sizeof(entry_t);
    h->header_size = HEADER_SIZE;
    boot_id(h->boot_id, sizeof h->boot_id);
    char hex[17];
    random_hex(hex, 8);
    h->seed = strtoull(hex, NULL, 16);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    if (pthread_mutex_init(&h->lock, &attr) != 0) log_fatal("limits: cannot make the table's lock");
    pthread_mutexattr_destroy(&attr);
    __atomic_store_n(&h->magic, LIMITS_MAGIC, __ATOMIC_RELEASE);
}

/* Open (or make) the table file and map it; NULL with errno, or with
 * errno 0 when the file is not a valid table (the caller replaces it). */
static void *map_file(int fd, bool *is_new)
{
    struct stat st;
    if (fstat(fd, &st) < 0) return NULL;
    *is_new = st.st_size == 0;
    if (*is_new && ftruncate(fd, (off_t)FILE_SIZE) < 0) return NULL;
    if (!*is_new && (size_t)st.st_size != FILE_SIZE) {
        errno = 0;
        return NULL;
    }
    void *p = mmap(NULL, FILE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return NULL;
    if (*is_new) header_init(p);
    if (header_matches(p)) return p;
    munmap(p, FILE_SIZE);
    errno = 0;
    return NULL;
}

/* Is fd still the file NAME in dir (nobody replaced it meanwhile)? */
static bool is_current(int fd, int dir)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && fstatat(dir, NAME, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* STATEDIR/run, made if missing. Under hearthd the daemons' user owns
 * STATEDIR but not run/: it must be ours (or root's) and closed to others'
 * writes, or whoever could write there could swap the table's file. */
static int open_rundir(const char *statedir, char *path, size_t size)
{
    snprintf(path, size, "%s/run", statedir);
    if (mkdir(statedir, 0750) < 0 && errno != EEXIST)
        log_fatal("limits: cannot create %s: %s", statedir, strerror(errno));
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        log_fatal("limits: cannot create %s: %s", path, strerror(errno));
    int dir = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (dir < 0 || fstat(dir, &st) < 0)
        log_fatal("limits: cannot open %s: %s", path, strerror(errno));
    if ((st.st_uid != geteuid() && st.st_uid != 0) || (st.st_mode & (S_IWGRP | S_IWOTH)))
        log_fatal("limits: %s must belong to this user or root and be closed to others' writes",
                  path);
    return dir;
}

limits_t *limits_open(const char *statedir, const limits_opts_t *opts)
{
    char path[4096];
    int dir = open_rundir(statedir, path, sizeof path);
    void *p = NULL;
    for (int tries = 0; !p; tries++) {
        if (tries == 10) log_fatal("limits: %s/" NAME " keeps changing under us", path);
        int fd = openat(dir, NAME, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) log_fatal("limits: cannot open %s/" NAME ": %s", path, strerror(errno));
        if (flock(fd, LOCK_EX) < 0)
            log_fatal("limits: cannot lock %s/" NAME ": %s", path, strerror(errno));
        if (is_current(fd, dir)) {
            bool is_new = false;
            p = map_file(fd, &is_new);
            if (!p && errno) log_fatal("limits: cannot map %s/" NAME ": %s", path, strerror(errno));
            if (!p) {
                log_notice("limits: %s/" NAME " is from another build or boot; making a new one",
                           path);
                unlinkat(dir, NAME, 0);
            } else if (is_new) {
                log_info("limits: made %s/" NAME, path);
            }
        }
        /* The mapping holds the open file, and the lock with it: let go. */
        flock(fd, LOCK_UN);
        close(fd);
    }
    close(dir);
    limits_t *l = calloc(1, sizeof *l);
    if (!l) log_fatal("out of memory");
    l->h = p;
    l->slots = (entry_t *)((char *)p + HEADER_SIZE);
    limits_set(l, opts);
    return l;
}

void limits_set(limits_t *l, const limits_opts_t *opts)
{
    l->login_interval = 60000 / (opts->auth_rate ? opts->auth_rate : 1);
    l->login_burst = opts->auth_burst;
    l->reg_rate = opts->registration_rate;
    l->reg_total = opts->registration_total;
}

void limits_close(limits_t *l)
{
    if (!l) return;
    munmap(l->h, FILE_SIZE);
    free(l);
}

static void lock(limits_t *l)
{
    int rc = pthread_mutex_lock(&l->h->lock);
    if (rc == EOWNERDEAD) {
        log_warn("limits: a c2s died while holding the table's lock; taking it over");
        pthread_mutex_consistent(&l->h->lock);
    } else if (rc != 0) {
        log_fatal("limits: cannot take the table's lock: %s", strerror(rc));
    }
}

static void unlock(limits_t *l)
{
    pthread_mutex_unlock(&l->h->lock);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static size_t slot_of(const limits_t *l, const addr_key_t *k)
{
    uint64_t a, b;
    memcpy(&a, k->b, 8);
    memcpy(&b, k->b + 8, 8);
    return (size_t)(mix(mix(a ^ l->h->seed) ^ b) % NSLOTS);
}

/* The registration budget of the hour, refilled up to its size (full
 * when new: at 0). */
static void refill(double *tokens, uint64_t *at, double per_hour, uint64_t now)
{
    if (!*at)
        *tokens = per_hour;
    else if (now > *at)
        *tokens += (double)(now - *at) * per_hour / HOUR;
    if (*tokens > per_hour) *tokens = per_hour;
    *at = now;
}

static void set_expiry(const limits_t *l, entry_t *e)
{
    uint64_t t = e->login_debt > e->login_last ? e->login_debt : e->login_last;
    uint64_t full = e->reg_at;
    if (e->reg_tokens < l->reg_rate)
        full += (uint64_t)((l->reg_rate - e->reg_tokens) * HOUR / l->reg_rate) + 1;
    e->expires = (t > full ? t : full) + 1;
}

/* key's entry; with is_claiming, a new one if there is none. */
static entry_t *entry_get(limits_t *l, const addr_key_t *k, uint64_t now, bool is_claiming)
{
    size_t first = slot_of(l, k);
    entry_t *victim = NULL;
    for (size_t i = 0; i < PROBE; i++) {
        entry_t *e = &l->slots[(first + i) % NSLOTS];
        bool is_live = e->expires > now;
        if (is_live && memcmp(&e->key, k, sizeof *k) == 0) return e;
        if (!victim || (victim->expires > now && (!is_live || e->expires < victim->expires)))
            victim = e;
    }
    if (!is_claiming) return NULL;
    memset(victim, 0, sizeof *victim);
    victim->key = *k;
    victim->reg_tokens = l->reg_rate;
    victim->reg_at = now;
    return victim;
}

static uint64_t spacing(const limits_t *l, uint64_t k)
{
    if (k <= l->login_burst) return 0;
    uint64_t shift = k - l->login_burst - 1;
    if (shift >= 32) return l->login_interval;
    uint64_t d = (uint64_t)FIRST_SPACING << shift;
    return d < l->login_interval ? d : l->login_interval;
}

bool limits_login_begin(limits_t *l, const addr_key_t *k, uint64_t latest, uint64_t *turn)
{
    uint64_t now = limits_now(), interval = l->login_interval;
    lock(l);
    entry_t *e = entry_get(l, k, now, true);
    uint64_t owed = e->login_debt > now ? (e->login_debt - now + interval - 1) / interval : 0;
    uint64_t at = e->login_last + spacing(l, owed + 1); /* this one counted */
    if (at < now) at = now;
    bool is_scheduled = at <= latest;
    if (is_scheduled) {
        e->login_debt = (e->login_debt > now ? e->login_debt : now) + interval;
        e->login_last = at;
        set_expiry(l, e);
        *turn = at;
    }
    unlock(l);
    return is_scheduled;
}

void limits_login_succeeded(limits_t *l, const addr_key_t *k)
{
    uint64_t now = limits_now();
    lock(l);
    entry_t *e = entry_get(l, k, now, false);
    if (e && e->login_debt > now) {
        e->login_debt =
            e->login_debt - now > l->login_interval ? e->login_debt - l->login_interval : now;
        set_expiry(l, e);
    }
    unlock(l);
}

limits_verdict_t limits_registration(limits_t *l, const addr_key_t *k)
{
    uint64_t now = limits_now();
    limits_verdict_t verdict = LIMITS_OK;
    lock(l);
    entry_t *e = entry_get(l, k, now, true);
    refill(&e->reg_tokens, &e->reg_at, l->reg_rate, now);
    refill(&l->h->total_tokens, &l->h->total_at, l->reg_total, now);
    if (e->reg_tokens < 1)
        verdict = LIMITS_ADDRESS;
    else if (l->h->total_tokens < 1)
        verdict = LIMITS_HOST;
    if (verdict == LIMITS_OK) {
        e->reg_tokens -= 1;
        l->h->total_tokens -= 1;
    }
    set_expiry(l, e);
    unlock(l);
    return verdict;
}
