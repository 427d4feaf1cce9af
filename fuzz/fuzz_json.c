/* fuzz_json.c: libFuzzer harness for the JSON parser (src/core/json.c).
 * Besides memory safety it checks a round trip: a parsed tree, written back as JSON (numbers as
 * their literal text, strings through df_json_write_string), parses to the same tree. */
#include "fuzz_common.h"
#include "json.h"

static void write_value(FILE *f, const df_json *v) {
    switch (v->type) {
    case DF_JSON_NULL: fputs("null", f); break;
    case DF_JSON_BOOL: fputs(v->boolean ? "true" : "false", f); break;
    case DF_JSON_NUMBER: fputs(v->string, f); break;
    case DF_JSON_STRING: df_json_write_string(f, v->string); break;
    case DF_JSON_ARRAY:
    case DF_JSON_OBJECT:
        fputc(v->type == DF_JSON_ARRAY ? '[' : '{', f);
        for (int k = 0; k < v->count; k++) {
            if (k) fputc(',', f);
            if (v->type == DF_JSON_OBJECT) {
                df_json_write_string(f, v->keys[k]);
                fputc(':', f);
            }
            write_value(f, &v->items[k]);
        }
        fputc(v->type == DF_JSON_ARRAY ? ']' : '}', f);
        break;
    }
}

static int same(const df_json *a, const df_json *b) {
    if (a->type != b->type || a->count != b->count) return 0;
    switch (a->type) {
    case DF_JSON_NULL: return 1;
    case DF_JSON_BOOL: return a->boolean == b->boolean;
    case DF_JSON_NUMBER: return strcmp(a->string, b->string) == 0 && (a->number == b->number);
    case DF_JSON_STRING: return strcmp(a->string, b->string) == 0;
    default:
        for (int k = 0; k < a->count; k++) {
            if (a->type == DF_JSON_OBJECT && strcmp(a->keys[k], b->keys[k]) != 0) return 0;
            if (!same(&a->items[k], &b->items[k])) return 0;
        }
        return 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    df_json *j = NULL;
    if (fuzz_note("df_json_parse", df_json_parse((const char *)data, size, &j)) != DF_OK) {
        FUZZ_CHECK(j == NULL);
        return 0;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) abort();
    write_value(f, j);
    fclose(f);
    df_json *again = NULL;
    FUZZ_CHECK(df_json_parse(text, len, &again) == DF_OK);
    FUZZ_CHECK(same(j, again));
    if (j->type == DF_JSON_OBJECT)
        for (int k = 0; k < j->count; k++) FUZZ_CHECK(df_json_get(j, j->keys[k]) == &j->items[k]);
    df_json_free(again);
    df_json_free(j);
    free(text);
    return 0;
}
