/* json.h: a small strict JSON (RFC 8259) DOM parser and a string writer.
 * What it is: enough JSON for safetensors headers, config files and metadata, with hard
 * limits (depth, size) and error messages that give the byte position.
 * What it is not: a streaming parser, a general writer, or lenient (no comments, no trailing
 * commas, no NaN, no single quotes, no duplicate keys, no invalid UTF-8). */
#ifndef DF_JSON_H
#define DF_JSON_H

#include "diffuse.h"
#include <stddef.h>
#include <stdio.h>

#define DF_JSON_MAX_DEPTH 64                /* nesting of arrays and objects */
#define DF_JSON_MAX_BYTES ((size_t)1 << 30) /* input size (safetensors caps its header at 100 MB) */

typedef enum { DF_JSON_NULL, DF_JSON_BOOL, DF_JSON_NUMBER, DF_JSON_STRING, DF_JSON_ARRAY, DF_JSON_OBJECT } df_json_type;

/* One value. Fields used per type:
 *  BOOL: boolean (0/1).  NUMBER: number (double) and string = the literal exactly as written
 *  (so integers beyond 2^53 can be parsed exactly).  STRING: string (UTF-8, NUL-terminated;
 *  \u0000 is rejected since it could not be told apart from the end).
 *  ARRAY: count items.  OBJECT: count items and keys (keys[k] names items[k], in file order).
 * The root and everything under it are owned by the root; free it with df_json_free. */
typedef struct df_json {
    df_json_type type;
    int boolean;
    double number;
    char *string;
    int count;
    struct df_json *items;
    char **keys;
} df_json;

/* Parses text[0..len) (need not be NUL-terminated). The whole input must be one value with
 * optional surrounding whitespace. On success *out is a new tree; on failure *out = NULL and
 * DF_ERR_FORMAT with "JSON error at byte N: ..." (N 0-based), or DF_ERR_NOMEM. */
df_status df_json_parse(const char *text, size_t len, df_json **out);

/* Frees a tree from df_json_parse (NULL is fine). */
void df_json_free(df_json *j);

/* The member `key` of object `obj`, or NULL if absent or if obj is not an object. */
const df_json *df_json_get(const df_json *obj, const char *key);

/* Writes s as a JSON string literal: quoted, with ", \ and control characters escaped;
 * other bytes (UTF-8) are written as they are. */
void df_json_write_string(FILE *f, const char *s);

/* Writes v as JSON (numbers as their literal, as written). */
void df_json_write(FILE *f, const df_json *v);

/* v as JSON text for a message, cut to fit buf (cap bytes, NUL-terminated, "..." when cut); returns buf. */
const char *df_json_show(const df_json *v, char *buf, size_t cap);

/* Scalars equal in type and value (numbers by value, so 1 == 1.0); 0 for arrays and objects. */
int df_json_scalar_equal(const df_json *a, const df_json *b);

/* v is the string s (v may be NULL). */
int df_json_is_string(const df_json *v, const char *s);

#endif
