/* test_json.c — common/json.h and the rendering of common/metrics.h: JSON
 * strings escaped per RFC 8259 (and invalid UTF-8 replaced), the strict
 * reader of flat objects (what it accepts, every kind of input it refuses),
 * the Prometheus text format (HELP/TYPE once per name, label and help
 * escaping, cumulative histogram buckets), and the address of each
 * instance of a daemon (http_instance_address). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "json.h"
#include "metrics.h"
#include "tap.h"

static void writes(const char *in, size_t len, const char *want, const char *name)
{
    buf_t b = BUF_INIT;
    json_string(&b, in, len);
    is_str(b.data, want, name);
    buf_free(&b);
}

static void test_writer(void)
{
    writes("plain", 5, "\"plain\"", "a plain string is quoted");
    writes("a\"b\\c", 5, "\"a\\\"b\\\\c\"", "quote and backslash are escaped");
    writes("l\nt\tr\r", 6, "\"l\\nt\\tr\\r\"", "line feed, tab, return by name");
    writes("\x01\x1f", 2, "\"\\u0001\\u001f\"", "other control characters as \\u00XX");
    writes("caf\xc3\xa9 \xf0\x9f\x94\xa5", 10, "\"caf\xc3\xa9 \xf0\x9f\x94\xa5\"",
           "valid UTF-8 passes through");
    writes("a\xff"
           "b",
           3,
           "\"a\xef\xbf\xbd"
           "b\"",
           "an invalid byte becomes U+FFFD");
    writes("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"", "an overlong form is not UTF-8");
    writes("\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"",
           "a surrogate is not UTF-8");
    writes("a\0b", 3, "\"a\\u0000b\"", "a NUL inside the length is escaped");
}

static int reads(const char *text, json_object_t *o, const char **err)
{
    return json_read_object(text, strlen(text), o, err);
}

static void test_reader_accepts(void)
{
    json_object_t o;
    const char *err = NULL;
    ok(reads(" {\"jid\" : \"a@b\",\n\"password\":\"p w\"} ", &o, &err) == 0,
       "an object of strings");
    is_int(o.n, 2, "two members");
    is_str(json_object_get(&o, "jid"), "a@b", "jid");
    is_str(json_object_get(&o, "password"), "p w", "password");
    ok(json_object_get(&o, "other") == NULL, "an absent member is NULL");
    json_object_free(&o);

    ok(reads("{}", &o, &err) == 0 && o.n == 0, "the empty object");
    json_object_free(&o);

    ok(reads("{\"e\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\udd25\"}", &o, &err) == 0,
       "every escape");
    is_str(json_object_get(&o, "e"), "\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x94\xa5", "decoded");
    json_object_free(&o);
}

static void test_reader_refuses(void)
{
    static const char *const bad[] = {
        "",
        "[]",
        "\"s\"",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1}",
        "{\"a\":true}",
        "{\"a\":null}",
        "{\"a\":{\"b\":\"c\"}}",
        "{\"a\":[\"b\"]}",
        "{\"a\":\"b\",}",
        "{\"a\":\"b\"} x",
        "{\"a\":\"b\"}{}",
        "{\"a\":\"b\",\"a\":\"c\"}",
        "{\"a\":\"line\nfeed\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\":\"\\ud83d\"}",
        "{\"a\":\"\\udd25\"}",
        "{\"a\":\"\xff\"}",
        "{\"a\":\"unterminated}",
        "{a:\"b\"}",
        "{'a':'b'}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_object_t o;
        const char *err = NULL;
        int rc = reads(bad[i], &o, &err);
        ok(rc < 0 && err && *err && o.n == 0, "refused: %s (%s)", bad[i], err ? err : "no error");
        json_object_free(&o);
    }
    buf_t many = BUF_INIT;
    buf_appends(&many, "{");
    for (int i = 0; i <= JSON_MAX_MEMBERS; i++)
        buf_printf(&many, "%s\"k%d\":\"v\"", i ? "," : "", i);
    buf_appends(&many, "}");
    json_object_t o;
    const char *err = NULL;
    int rc = json_read_object(many.data, many.len, &o, &err);
    ok(rc < 0 && err, "more than JSON_MAX_MEMBERS: %s", err ? err : "accepted");
    json_object_free(&o);
    buf_free(&many);
    const char nul[] = "{\"a\":\"b\"}\0";
    ok(json_read_object(nul, sizeof nul - 1, &o, &err) < 0, "a NUL after the object");
    json_object_free(&o);
}

static double forty_two(void *ud)
{
    return 42.5;
}

static void test_metrics_rendering(void)
{
    static metric_counter_t in, out, plain;
    static metric_gauge_t g;
    static const double bounds[] = {0.1, 1};
    static metric_histogram_t h = {bounds, 2, {0}, 0, 0};
    metrics_counter("hearth_test_total", "a help with \\ and\nline", &in, "dir", "in", NULL);
    metrics_counter("hearth_test_total", "a help with \\ and\nline", &out, "dir", "o\"u\\t\n",
                    NULL);
    metrics_counter("hearth_plain_total", "no labels", &plain, NULL);
    metrics_gauge("hearth_gauge", "a gauge", &g, NULL);
    metrics_gauge_fn("hearth_fn", "a callback", forty_two, NULL, NULL);
    metrics_histogram("hearth_seconds", "a histogram", &h, "op", "x", NULL);
    metric_inc(&in);
    metric_add(&out, 3);
    metric_gauge_set(&g, -2);
    metric_observe(&h, 0.05);
    metric_observe(&h, 0.5);
    metric_observe(&h, 5);
    buf_t b = BUF_INIT;
    metrics_render(&b);
    const char *want = "# HELP hearth_test_total a help with \\\\ and\\nline\n"
                       "# TYPE hearth_test_total counter\n"
                       "hearth_test_total{dir=\"in\"} 1\n"
                       "hearth_test_total{dir=\"o\\\"u\\\\t\\n\"} 3\n"
                       "# HELP hearth_plain_total no labels\n"
                       "# TYPE hearth_plain_total counter\n"
                       "hearth_plain_total 0\n"
                       "# HELP hearth_gauge a gauge\n"
                       "# TYPE hearth_gauge gauge\n"
                       "hearth_gauge -2\n"
                       "# HELP hearth_fn a callback\n"
                       "# TYPE hearth_fn gauge\n"
                       "hearth_fn 42.5\n"
                       "# HELP hearth_seconds a histogram\n"
                       "# TYPE hearth_seconds histogram\n"
                       "hearth_seconds_bucket{op=\"x\",le=\"0.1\"} 1\n"
                       "hearth_seconds_bucket{op=\"x\",le=\"1\"} 2\n"
                       "hearth_seconds_bucket{op=\"x\",le=\"+Inf\"} 3\n"
                       "hearth_seconds_sum{op=\"x\"} 5.55\n"
                       "hearth_seconds_count{op=\"x\"} 3\n";
    is_str(b.data, want, "the exposition, byte for byte");
    buf_free(&b);
    is_int(metric_kind("presence"), 1, "presence is kind 1");
    is_int(metric_kind("stream"), -1, "not a stanza");
    is_int(metrics_instance_index("c2s-3"), 3, "c2s-3 is instance 3");
    is_int(metrics_instance_index("sm"), 1, "sm is instance 1");
    is_int(metrics_instance_index("c2s-x"), 1, "a name that is not numbered is 1");
    metrics_close();
}

static void test_instance_address(void)
{
    char out[64];
    ok(http_instance_address("127.0.0.1:9301", 1, out, sizeof out) == 0, "instance 1");
    is_str(out, "127.0.0.1:9301", "instance 1 keeps the port");
    http_instance_address("127.0.0.1:9301", 3, out, sizeof out);
    is_str(out, "127.0.0.1:9303", "instance 3: port + 2");
    http_instance_address("[::1]:9301", 2, out, sizeof out);
    is_str(out, "[::1]:9302", "IPv6");
    http_instance_address("unix:/run/m.sock", 2, out, sizeof out);
    is_str(out, "unix:/run/m.sock-2", "a Unix socket gets -N");
    ok(http_instance_address("127.0.0.1:65535", 2, out, sizeof out) < 0, "past port 65535");
    ok(http_instance_address("nonsense", 2, out, sizeof out) < 0, "not an address");
}

int main(void)
{
    test_writer();
    test_reader_accepts();
    test_reader_refuses();
    test_metrics_rendering();
    test_instance_address();
    return done_testing();
}
