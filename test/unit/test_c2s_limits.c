/* test_c2s_limits — the keys client addresses are counted by (c2s/addr.c)
 * and the table every c2s of a host shares (c2s/limits.c): the login
 * schedule of an address, seen by two mappings of one file as two
 * processes see it, the refund of a success, the registration budgets,
 * and a stale file replaced. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../c2s/c2s.h"
#include "tap.h"

static addr_key_t key_of(const char *peer, unsigned prefix, char *text, size_t size)
{
    addr_key_t k;
    addr_key_of(peer, prefix, &k, text, size);
    return k;
}

static void keys(void)
{
    char t1[64], t2[64];
    addr_key_t a = key_of("192.0.2.7:4000", 64, t1, sizeof t1);
    addr_key_t b = key_of("192.0.2.7:5000", 64, t2, sizeof t2);
    ok(memcmp(&a, &b, sizeof a) == 0, "key: the port does not count");
    is_str(t1, "192.0.2.7", "key: IPv4 printed as it is");
    b = key_of("192.0.2.8:4000", 64, t2, sizeof t2);
    ok(memcmp(&a, &b, sizeof a) != 0, "key: each IPv4 address is its own");
    b = key_of("[::ffff:192.0.2.7]:4000", 64, t2, sizeof t2);
    ok(memcmp(&a, &b, sizeof a) == 0, "key: an IPv4-mapped IPv6 peer is its IPv4 address");
    is_str(t2, "192.0.2.7", "key: and printed as such");

    a = key_of("[2001:db8:1:2:aaaa::1]:4000", 64, t1, sizeof t1);
    b = key_of("[2001:db8:1:2:bbbb::9]:4000", 64, t2, sizeof t2);
    ok(memcmp(&a, &b, sizeof a) == 0, "key: IPv6 counts by its /64");
    is_str(t1, "2001:db8:1:2::/64", "key: the /64 printed");
    b = key_of("[2001:db8:1:3::1]:4000", 64, t2, sizeof t2);
    ok(memcmp(&a, &b, sizeof a) != 0, "key: another /64 is another key");
    a = key_of("[2001:db8:1:2::1]:4000", 48, t1, sizeof t1);
    b = key_of("[2001:db8:1:3::1]:4000", 48, t2, sizeof t2);
    ok(memcmp(&a, &b, sizeof a) == 0, "key: with c2s.ipv6-prefix 48 they share a key");
    is_str(t1, "2001:db8:1::/48", "key: the /48 printed");
    key_of("[2001:db8::1]:4000", 128, t1, sizeof t1);
    is_str(t1, "2001:db8::1", "key: a /128 is the address");
    a = key_of("unix", 64, t1, sizeof t1);
    b = key_of("unknown", 64, t2, sizeof t2);
    ok(memcmp(&a, &b, sizeof a) == 0, "key: peers without an address share one key");
}

static const limits_opts_t opts = {
    .auth_rate = 6, .auth_burst = 1, .registration_rate = 2, .registration_total = 3};

static void logins(const char *dir)
{
    /* Two mappings of one file, as two c2s processes have. */
    limits_t *one = limits_open(dir, &opts), *two = limits_open(dir, &opts);
    char text[64];
    addr_key_t k = key_of("198.51.100.1:1", 64, text, sizeof text);
    uint64_t now = limits_now(), turn = 0, latest = now + 30000;
    bool is_on = limits_login_begin(one, &k, latest, &turn);
    ok(is_on && turn <= now + 5, "login: the first at once");
    is_on = limits_login_begin(two, &k, latest, &turn);
    ok(is_on && turn >= now + 495 && turn <= now + 510,
       "login: a second, in another process, waits 0.5 s (turn in %lld ms)",
       (long long)(turn - now));
    is_on = limits_login_begin(one, &k, latest, &turn);
    ok(is_on && turn >= now + 1495 && turn <= now + 1510,
       "login: the third 1 s after the second (turn in %lld ms)", (long long)(turn - now));
    is_on = limits_login_begin(two, &k, latest, &turn);
    ok(is_on && turn >= now + 3495 && turn <= now + 3510,
       "login: the fourth 2 s after (turn in %lld ms)", (long long)(turn - now));
    uint64_t last = turn;
    ok(!limits_login_begin(one, &k, now + 5000, &turn),
       "login: a turn after the caller's deadline is refused");
    is_on = limits_login_begin(one, &k, latest, &turn);
    ok(is_on && turn >= last + 3995 && turn <= last + 4010,
       "login: the refusal counted nothing: the next is 4 s after (%lld ms)",
       (long long)(turn - last));

    addr_key_t other = key_of("198.51.100.2:1", 64, text, sizeof text);
    ok(limits_login_begin(two, &other, latest, &turn) && turn <= limits_now() + 5,
       "login: another address is not held up");
    limits_login_succeeded(two, &other);
    ok(limits_login_begin(one, &other, latest, &turn) && turn <= limits_now() + 5,
       "login: after a success the next is at once too");
    limits_login_succeeded(one, &other);
    for (int i = 0; i < 20; i++) {
        limits_login_begin(one, &other, latest, &turn);
        limits_login_succeeded(two, &other);
    }
    ok(turn <= limits_now() + 5, "login: successes one after another never wait");
    limits_close(one);
    limits_close(two);
}

static void registrations(const char *dir)
{
    limits_t *one = limits_open(dir, &opts), *two = limits_open(dir, &opts);
    char text[64];
    addr_key_t a = key_of("203.0.113.1:1", 64, text, sizeof text);
    addr_key_t b = key_of("203.0.113.2:1", 64, text, sizeof text);
    is_int(limits_registration(one, &a), LIMITS_OK, "registration: one from a");
    is_int(limits_registration(two, &a), LIMITS_OK, "registration: two from a, other process");
    is_int(limits_registration(one, &a), LIMITS_ADDRESS,
           "registration: a third from a is past c2s.registration-rate");
    is_int(limits_registration(two, &b), LIMITS_OK, "registration: one from b");
    is_int(limits_registration(one, &b), LIMITS_HOST,
           "registration: a fourth in all is past c2s.registration-rate-total");
    limits_close(one);
    limits_close(two);
}

static void stale_file(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/run/c2s-limits", dir);
    int fd = open(path, O_WRONLY | O_TRUNC);
    ok(fd >= 0 && write(fd, "not a table", 11) == 11, "stale: the file spoilt");
    close(fd);
    limits_t *l = limits_open(dir, &opts);
    char text[64];
    addr_key_t k = key_of("198.51.100.1:1", 64, text, sizeof text);
    uint64_t turn = 0;
    ok(limits_login_begin(l, &k, limits_now() + 30000, &turn) && turn <= limits_now() + 5,
       "stale: a new table, empty");
    struct stat st;
    ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "stale: the new file is mode 0600");
    limits_close(l);
}

int main(void)
{
    keys();
    char dir[] = "/tmp/test_c2s_limits.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    logins(dir);
    char dir2[] = "/tmp/test_c2s_limits.XXXXXX";
    if (!mkdtemp(dir2)) return 1;
    registrations(dir2);
    stale_file(dir);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s %s", dir, dir2);
    if (system(cmd) != 0) return 1;
    return done_testing();
}
