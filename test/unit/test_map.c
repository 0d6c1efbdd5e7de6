/* test_map.c — the string-keyed hash table (common/map.h): puts,
 * replaces, deletes, growth past many entries, and iteration that survives
 * deleting the current entry. */
#include <stdio.h>
#include <stdlib.h>

#include "map.h"
#include "tap.h"

static void test_put_get_del(void)
{
    map_t m;
    map_init(&m);
    ok(map_get(&m, "alice@localhost") == NULL, "an empty map has nothing");
    int a = 1, b = 2;
    map_put(&m, "alice@localhost", &a);
    map_put(&m, "bob@localhost", &b);
    ok(map_get(&m, "alice@localhost") == &a, "get finds what put stored");
    map_put(&m, "alice@localhost", &b);
    ok(map_get(&m, "alice@localhost") == &b, "put replaces");
    is_int(m.count, 2, "replacing does not add");
    ok(map_del(&m, "alice@localhost") == &b, "del returns the value");
    ok(map_get(&m, "alice@localhost") == NULL, "del removes");
    ok(map_del(&m, "alice@localhost") == NULL, "del of a missing key is NULL");
    is_int(m.count, 1, "one left");
    map_free(&m);
}

static void test_growth(void)
{
    map_t m;
    map_init(&m);
    char key[32];
    static int values[5000];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "user%d@localhost", i);
        map_put(&m, key, &values[i]);
    }
    int wrong = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "user%d@localhost", i);
        if (map_get(&m, key) != &values[i]) wrong++;
    }
    is_int(wrong, 0, "5000 keys all found after the table grew");
    is_int(m.count, 5000, "count");
    map_free(&m);
}

static void test_iteration_with_deletion(void)
{
    map_t m;
    map_init(&m);
    char key[32];
    static int values[100];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        map_put(&m, key, &values[i]);
    }
    map_iter_t it;
    map_iter_init(&it, &m);
    const char *k;
    int seen = 0;
    while (map_iter_next(&it, &k)) {
        seen++;
        map_del(&m, k);
    }
    is_int(seen, 100, "iteration visits every entry while deleting each");
    is_int(m.count, 0, "and the map is empty after");
    map_free(&m);
}

int main(void)
{
    test_put_get_del();
    test_growth();
    test_iteration_with_deletion();
    return done_testing();
}
