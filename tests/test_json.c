/* test_json.c: the strict JSON parser: values, escapes, UTF-8, numbers, limits, and error
 * positions; and the string writer round trip. */
#include "check.h"
#include "common.h"
#include "json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static df_json *parse_ok(const char *s) {
    df_json *j = NULL;
    df_status st = df_json_parse(s, strlen(s), &j);
    CHECK(st == DF_OK, "expected %s to parse, got: %s", s, df_last_error());
    return j;
}

/* Expects a DF_ERR_FORMAT whose message contains "at byte <pos>" (pos >= 0) and `what`. */
static void parse_bad_len(const char *s, size_t len, long pos, const char *what) {
    df_json *j = (df_json *)1;
    df_status st = df_json_parse(s, len, &j);
    char want[64];
    snprintf(want, sizeof want, "at byte %ld:", pos);
    const char *msg = df_last_error();
    CHECK(st == DF_ERR_FORMAT && j == NULL && (pos < 0 || strstr(msg, want)) && strstr(msg, what),
          "input %.40s: want FORMAT error '%s' %s, got status %d (%s): %s", s, what, want, (int)st, df_status_name(st),
          msg);
}

static void parse_bad(const char *s, long pos, const char *what) { parse_bad_len(s, strlen(s), pos, what); }

static void test_values(void) {
    df_json *j = parse_ok(" {\"b\": true, \"a\": [1, -2.5e2, null, false, \"x\"], \"o\": {}, \"e\": []}\n");
    if (!j) return;
    CHECK(j->type == DF_JSON_OBJECT && j->count == 4);
    CHECK(strcmp(j->keys[0], "b") == 0 && strcmp(j->keys[1], "a") == 0); /* file order kept */
    const df_json *b = df_json_get(j, "b");
    CHECK(b && b->type == DF_JSON_BOOL && b->boolean == 1);
    const df_json *a = df_json_get(j, "a");
    CHECK(a && a->type == DF_JSON_ARRAY && a->count == 5);
    if (a && a->count == 5) {
        CHECK(a->items[0].type == DF_JSON_NUMBER && a->items[0].number == 1.0);
        CHECK(a->items[1].number == -250.0 && strcmp(a->items[1].string, "-2.5e2") == 0);
        CHECK(a->items[2].type == DF_JSON_NULL);
        CHECK(a->items[3].type == DF_JSON_BOOL && a->items[3].boolean == 0);
        CHECK(a->items[4].type == DF_JSON_STRING && strcmp(a->items[4].string, "x") == 0);
    }
    CHECK(df_json_get(j, "o")->type == DF_JSON_OBJECT && df_json_get(j, "o")->count == 0);
    CHECK(df_json_get(j, "e")->type == DF_JSON_ARRAY && df_json_get(j, "e")->count == 0);
    CHECK(df_json_get(j, "missing") == NULL);
    CHECK(df_json_get(a, "x") == NULL); /* not an object */
    CHECK(df_json_get(NULL, "x") == NULL);
    df_json_free(j);

    /* Scalars at the top level are JSON texts too (RFC 8259 section 2). */
    j = parse_ok("42");
    CHECK(j && j->type == DF_JSON_NUMBER && j->number == 42.0);
    df_json_free(j);
    j = parse_ok("\"top\"");
    CHECK(j && j->type == DF_JSON_STRING && strcmp(j->string, "top") == 0);
    df_json_free(j);
}

static void test_numbers(void) {
    static const struct {
        const char *text;
        double value;
    } cases[] = {{"0", 0.0},       {"-0", -0.0},        {"0.5", 0.5},   {"1E3", 1000.0},   {"1e-2", 0.01},
                 {"-12.25", -12.25}, {"2E+2", 200.0}, {"1e-400", 0.0}, {"123456789", 123456789.0}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        df_json *j = parse_ok(cases[k].text);
        /* Exact: strtod rounds correctly and every value here is exactly representable or 0. */
        CHECK(j && j->type == DF_JSON_NUMBER && j->number == cases[k].value);
        CHECK(j && strcmp(j->string, cases[k].text) == 0);
        df_json_free(j);
    }
    df_json *j = parse_ok("18446744073709551617");
    CHECK(j && strcmp(j->string, "18446744073709551617") == 0); /* literal kept for exact integers */
    df_json_free(j);
    parse_bad("01", 0, "leading zero");
    parse_bad("-", 0, "invalid number");
    parse_bad("+1", 0, "unexpected character");
    parse_bad(".5", 0, "unexpected character");
    parse_bad("1.", 0, "digits after '.'");
    parse_bad("1e", 0, "exponent");
    parse_bad("[1e999]", 1, "out of range");
    parse_bad("NaN", 0, "unexpected character");
    parse_bad("Infinity", 0, "unexpected character");
    parse_bad("-Infinity", 0, "invalid number");
}

static void test_strings(void) {
    df_json *j = parse_ok("\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t\"");
    CHECK(j && strcmp(j->string, "q\" b\\ s/ \b\f\n\r\t") == 0);
    df_json_free(j);
    j = parse_ok("\"\\u00e9\\u20AC\\ud83d\\ude00A\"");
    CHECK(j && strcmp(j->string, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" "A") == 0);
    df_json_free(j);
    j = parse_ok("\"raw \xc3\xa9 \xf0\x9f\x98\x80\""); /* valid UTF-8 passes through */
    CHECK(j && strcmp(j->string, "raw \xc3\xa9 \xf0\x9f\x98\x80") == 0);
    df_json_free(j);

    parse_bad("\"abc", 0, "unterminated string");
    parse_bad("[\"a\\x\"]", 3, "invalid escape");
    parse_bad("\"\\u12\"", 1, "4 hex digits");
    parse_bad("\"\\ud800\"", 1, "low surrogate");
    parse_bad("\"\\ud800\\u0041\"", 1, "low surrogate");
    parse_bad("\"\\udc00\"", 1, "unpaired low surrogate");
    parse_bad("\"a\\u0000\"", 2, "\\u0000");
    parse_bad("\"tab\there\"", 4, "control character");
    parse_bad("\"\xff\"", 1, "invalid UTF-8");
    parse_bad("\"\xc0\xaf\"", 1, "invalid UTF-8");          /* overlong '/' */
    parse_bad("\"\xed\xa0\x80\"", 1, "invalid UTF-8");      /* encoded surrogate */
    parse_bad("\"\xf4\x90\x80\x80\"", 1, "invalid UTF-8");  /* above U+10FFFF */
    parse_bad("\"\xe2\x82\"", 1, "invalid UTF-8");          /* cut sequence */
    parse_bad("'single'", 0, "unexpected character");
}

static void test_structure_errors(void) {
    parse_bad("", 0, "unexpected end of input");
    parse_bad("   ", 3, "unexpected end of input");
    parse_bad("[1,2,]", 5, "unexpected character");
    parse_bad("{\"a\":1,}", 7, "expected a string key");
    parse_bad("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'");
    parse_bad("{\"a\" 1}", 5, "expected ':'");
    parse_bad("{a:1}", 1, "expected a string key");
    parse_bad("[1 2]", 3, "expected ',' or ']'");
    parse_bad("[1,2", 0, "unterminated array");
    parse_bad("{\"a\":1", 0, "unterminated object");
    parse_bad("{\"a\":1,\"a\":2}", 7, "duplicate key \"a\"");
    parse_bad("[1] x", 4, "unexpected data after");
    parse_bad("tru", 0, "unexpected character");
    parse_bad("nul", 0, "unexpected character");
    parse_bad("[1] // comment", 4, "unexpected data after");
    parse_bad_len("[1]\0", 4, 3, "unexpected data after"); /* an embedded NUL is not whitespace */

    /* Depth: 64 nested arrays parse, 65 do not. */
    char deep[200];
    memset(deep, '[', 64);
    memset(deep + 64, ']', 64);
    df_json *j = NULL;
    CHECK(df_json_parse(deep, 128, &j) == DF_OK);
    df_json_free(j);
    memset(deep, '[', 65);
    memset(deep + 65, ']', 65);
    parse_bad_len(deep, 130, 64, "deeper than 64");
    /* Hostile depth far beyond the limit must fail cleanly, not overflow the stack. */
    size_t big = 1 << 20;
    char *s = malloc(big);
    memset(s, '[', big);
    parse_bad_len(s, big, 64, "deeper than 64");
    free(s);
}

static void test_large_object(void) {
    /* 20000 keys: exercises the key hash set growth; then a duplicate far from its twin. */
    int n = 20000;
    size_t cap = (size_t)n * 24 + 64;
    char *s = malloc(cap);
    size_t len = 0;
    s[len++] = '{';
    for (int k = 0; k < n; k++) len += (size_t)snprintf(s + len, cap - len, "%s\"key%d\":%d", k ? "," : "", k, k);
    s[len++] = '}';
    df_json *j = NULL;
    CHECK(df_json_parse(s, len, &j) == DF_OK);
    CHECK(j && j->count == n);
    const df_json *v = df_json_get(j, "key12345");
    CHECK(v && v->number == 12345.0);
    df_json_free(j);
    len--; /* replace the closing brace by a duplicate of key7 */
    size_t at = len + 1;
    len += (size_t)snprintf(s + len, cap - len, ",\"key7\":0}");
    parse_bad_len(s, len, (long)at, "duplicate key \"key7\"");
    free(s);
}

static void test_write_string(void) {
    const char *orig = "quote\" back\\ nl\n tab\t bell\x07 esc\x1b utf8 \xc3\xa9 end";
    FILE *f = tmpfile();
    CHECK(f != NULL);
    if (!f) return;
    df_json_write_string(f, orig);
    long len = ftell(f);
    rewind(f);
    char buf[256] = {0};
    CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    CHECK(strstr(buf, "\\u0007") && strstr(buf, "\\u001b") && strstr(buf, "\\n") && strstr(buf, "\\\""));
    df_json *j = parse_ok(buf);
    CHECK(j && j->type == DF_JSON_STRING && strcmp(j->string, orig) == 0);
    df_json_free(j);
}

int main(void) {
    test_values();
    test_numbers();
    test_strings();
    test_structure_errors();
    test_large_object();
    test_write_string();
    return check_exit_code("test_json");
}
