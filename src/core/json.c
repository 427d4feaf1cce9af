/* json.c: strict recursive-descent JSON parser (RFC 8259) producing a DOM of df_json values.
 * Recursion depth is bounded by DF_JSON_MAX_DEPTH, so hostile input cannot exhaust the stack.
 * Not a writer beyond df_json_write_string: callers print their own structure. */
#include "json.h"
#include "common.h"
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const unsigned char *s;
    size_t len, pos;
    int depth;
    df_status status; /* DF_OK until the first error, which is the one reported */
} parser;

static df_status parse_error(parser *p, size_t at, const char *what) {
    if (p->status == DF_OK) p->status = df_fail(DF_ERR_FORMAT, "JSON error at byte %zu: %s", at, what);
    return p->status;
}

static df_status parse_nomem(parser *p) {
    if (p->status == DF_OK)
        p->status = df_fail(DF_ERR_NOMEM, "out of memory parsing JSON (%zu bytes of input)", p->len);
    return p->status;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static void free_contents(df_json *v) {
    free(v->string);
    for (int k = 0; k < v->count; k++) {
        free_contents(&v->items[k]);
        if (v->keys) free(v->keys[k]);
    }
    free(v->items);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

void df_json_free(df_json *j) {
    if (!j) return;
    free_contents(j);
    free(j);
}

const df_json *df_json_get(const df_json *obj, const char *key) {
    if (!obj || obj->type != DF_JSON_OBJECT || !key) return NULL;
    for (int k = 0; k < obj->count; k++)
        if (strcmp(obj->keys[k], key) == 0) return &obj->items[k];
    return NULL;
}

/* ------------------------------------------------------------------ strings */

/* A growable byte buffer for decoded strings. */
typedef struct {
    char *b;
    size_t n, cap;
} strbuf;

static int sb_put(strbuf *sb, const void *src, size_t n) {
    if (sb->n + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 32;
        while (sb->n + n + 1 > cap) cap *= 2;
        char *b = realloc(sb->b, cap);
        if (!b) return 0;
        sb->b = b;
        sb->cap = cap;
    }
    memcpy(sb->b + sb->n, src, n);
    sb->n += n;
    sb->b[sb->n] = 0;
    return 1;
}

static int hex4(const unsigned char *s, uint32_t *out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        unsigned char c = s[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t utf8_encode(uint32_t cp, unsigned char out[4]) {
    if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the well-formed UTF-8 sequence at s[0..avail), or 0 if it is not one
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_valid_len(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (avail < n) return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* Parses the string literal at p->pos (which is '"') into a new NUL-terminated buffer. */
static df_status parse_string(parser *p, char **out) {
    strbuf sb = {0};
    size_t start = p->pos;
    p->pos++; /* opening quote */
    if (!sb_put(&sb, "", 0)) return parse_nomem(p);
    for (;;) {
        if (p->pos >= p->len) {
            free(sb.b);
            return parse_error(p, start, "unterminated string");
        }
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            *out = sb.b;
            return DF_OK;
        }
        if (c < 0x20) {
            free(sb.b);
            return parse_error(p, p->pos, "control character in string (must be escaped)");
        }
        if (c == '\\') {
            size_t esc = p->pos;
            if (p->pos + 1 >= p->len) {
                free(sb.b);
                return parse_error(p, esc, "unterminated escape in string");
            }
            unsigned char e = p->s[p->pos + 1];
            const char *simple = NULL;
            switch (e) {
            case '"': simple = "\""; break;
            case '\\': simple = "\\"; break;
            case '/': simple = "/"; break;
            case 'b': simple = "\b"; break;
            case 'f': simple = "\f"; break;
            case 'n': simple = "\n"; break;
            case 'r': simple = "\r"; break;
            case 't': simple = "\t"; break;
            case 'u': break;
            default: free(sb.b); return parse_error(p, esc, "invalid escape in string");
            }
            if (simple) {
                if (!sb_put(&sb, simple, 1)) { free(sb.b); return parse_nomem(p); }
                p->pos += 2;
                continue;
            }
            uint32_t cp;
            if (p->pos + 6 > p->len || !hex4(p->s + p->pos + 2, &cp)) {
                free(sb.b);
                return parse_error(p, esc, "\\u must be followed by 4 hex digits");
            }
            p->pos += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                free(sb.b);
                return parse_error(p, esc, "unpaired low surrogate in \\u escape");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (p->pos + 6 > p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
                    !hex4(p->s + p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    free(sb.b);
                    return parse_error(p, esc, "high surrogate in \\u escape not followed by a low surrogate");
                }
                p->pos += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp == 0) {
                free(sb.b);
                return parse_error(p, esc, "\\u0000 in strings is not supported");
            }
            unsigned char u[4];
            size_t n = utf8_encode(cp, u);
            if (!sb_put(&sb, u, n)) { free(sb.b); return parse_nomem(p); }
            continue;
        }
        /* A run of plain bytes: validate UTF-8 and copy. */
        size_t n = utf8_valid_len(p->s + p->pos, p->len - p->pos);
        if (n == 0) {
            free(sb.b);
            return parse_error(p, p->pos, "invalid UTF-8 in string");
        }
        if (!sb_put(&sb, p->s + p->pos, n)) { free(sb.b); return parse_nomem(p); }
        p->pos += n;
    }
}

/* ------------------------------------------------------------------ numbers */

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* RFC 8259 section 6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static df_status parse_number(parser *p, df_json *v) {
    size_t start = p->pos, i = p->pos;
    const unsigned char *s = p->s;
    if (i < p->len && s[i] == '-') i++;
    if (i >= p->len || !is_digit(s[i])) return parse_error(p, start, "invalid number");
    if (s[i] == '0') {
        i++;
        if (i < p->len && is_digit(s[i])) return parse_error(p, start, "number with a leading zero");
    } else {
        while (i < p->len && is_digit(s[i])) i++;
    }
    if (i < p->len && s[i] == '.') {
        i++;
        if (i >= p->len || !is_digit(s[i])) return parse_error(p, start, "number needs digits after '.'");
        while (i < p->len && is_digit(s[i])) i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= p->len || !is_digit(s[i])) return parse_error(p, start, "number needs digits in the exponent");
        while (i < p->len && is_digit(s[i])) i++;
    }
    size_t n = i - start;
    char *lit = malloc(n + 1);
    char *conv = malloc(n + 1);
    if (!lit || !conv) {
        free(lit);
        free(conv);
        return parse_nomem(p);
    }
    memcpy(lit, s + start, n);
    lit[n] = 0;
    /* strtod follows LC_NUMERIC; JSON always uses '.', so swap in the locale's point. */
    memcpy(conv, lit, n + 1);
    const char *dp = localeconv()->decimal_point;
    if (dp && dp[0] && dp[0] != '.' && dp[1] == 0) {
        char *dot = strchr(conv, '.');
        if (dot) *dot = dp[0];
    }
    double d = strtod(conv, NULL);
    free(conv);
    if (!isfinite(d)) {
        free(lit);
        return parse_error(p, start, "number out of range of a double");
    }
    v->type = DF_JSON_NUMBER;
    v->number = d;
    v->string = lit;
    p->pos = i;
    return DF_OK;
}

/* ------------------------------------------------------------------ values */

static df_status parse_value(parser *p, df_json *v);

static df_status grow_items(parser *p, df_json *v, int *cap, int with_keys) {
    if (v->count < *cap) return DF_OK;
    if (*cap >= INT_MAX / 2) return parse_error(p, p->pos, "too many members");
    int ncap = *cap ? *cap * 2 : 4;
    df_json *items = realloc(v->items, (size_t)ncap * sizeof *items);
    if (!items) return parse_nomem(p);
    v->items = items;
    if (with_keys) {
        char **keys = realloc(v->keys, (size_t)ncap * sizeof *keys);
        if (!keys) return parse_nomem(p);
        v->keys = keys;
    }
    *cap = ncap;
    return DF_OK;
}

static df_status parse_array(parser *p, df_json *v) {
    size_t start = p->pos;
    int cap = 0;
    v->type = DF_JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        return DF_OK;
    }
    for (;;) {
        if (grow_items(p, v, &cap, 0)) return p->status;
        df_json *item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        v->count++; /* counted before filling so that a failure frees what was built */
        if (parse_value(p, item)) return p->status;
        skip_ws(p);
        if (p->pos >= p->len) return parse_error(p, start, "unterminated array");
        unsigned char c = p->s[p->pos];
        if (c == ']') { p->pos++; return DF_OK; }
        if (c != ',') return parse_error(p, p->pos, "expected ',' or ']' in array");
        p->pos++;
        skip_ws(p);
    }
}

static uint64_t hash_key(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* An open-addressing set of member indices, for finding duplicate keys in O(1) each. */
typedef struct {
    int *slot; /* -1 = empty */
    size_t mask;
} keyset;

static int keyset_grow(keyset *ks, const df_json *obj, int needed) {
    size_t size = ks->slot ? ks->mask + 1 : 16;
    while (size < 2 * (size_t)needed) size *= 2;
    if (ks->slot && size == ks->mask + 1) return 1;
    int *slot = malloc(size * sizeof *slot);
    if (!slot) return 0;
    for (size_t k = 0; k < size; k++) slot[k] = -1;
    for (int m = 0; m < needed - 1; m++) {
        size_t h = hash_key(obj->keys[m]) & (size - 1);
        while (slot[h] >= 0) h = (h + 1) & (size - 1);
        slot[h] = m;
    }
    free(ks->slot);
    ks->slot = slot;
    ks->mask = size - 1;
    return 1;
}

/* Adds member m (its key already stored); returns 0 if the key was there already. */
static int keyset_insert(keyset *ks, const df_json *obj, int m) {
    size_t h = hash_key(obj->keys[m]) & ks->mask;
    while (ks->slot[h] >= 0) {
        if (strcmp(obj->keys[ks->slot[h]], obj->keys[m]) == 0) return 0;
        h = (h + 1) & ks->mask;
    }
    ks->slot[h] = m;
    return 1;
}

static df_status parse_object(parser *p, df_json *v) {
    size_t start = p->pos;
    int cap = 0;
    keyset ks = {0};
    v->type = DF_JSON_OBJECT;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        return DF_OK;
    }
    for (;;) {
        if (p->pos >= p->len) goto unterminated;
        if (p->s[p->pos] != '"') {
            parse_error(p, p->pos, "expected a string key in object");
            goto fail;
        }
        size_t key_at = p->pos;
        if (grow_items(p, v, &cap, 1)) goto fail;
        char *key = NULL;
        if (parse_string(p, &key)) goto fail;
        df_json *item = &v->items[v->count];
        memset(item, 0, sizeof *item);
        v->keys[v->count] = key;
        v->count++;
        if (!keyset_grow(&ks, v, v->count)) {
            parse_nomem(p);
            goto fail;
        }
        if (!keyset_insert(&ks, v, v->count - 1)) {
            char msg[160];
            snprintf(msg, sizeof msg, "duplicate key \"%.100s\"", key);
            parse_error(p, key_at, msg);
            goto fail;
        }
        skip_ws(p);
        if (p->pos >= p->len) goto unterminated;
        if (p->s[p->pos] != ':') {
            parse_error(p, p->pos, "expected ':' after object key");
            goto fail;
        }
        p->pos++;
        skip_ws(p);
        if (parse_value(p, item)) goto fail;
        skip_ws(p);
        if (p->pos >= p->len) goto unterminated;
        unsigned char c = p->s[p->pos];
        if (c == '}') {
            p->pos++;
            free(ks.slot);
            return DF_OK;
        }
        if (c != ',') {
            parse_error(p, p->pos, "expected ',' or '}' in object");
            goto fail;
        }
        p->pos++;
        skip_ws(p);
    }
unterminated:
    parse_error(p, start, "unterminated object");
fail:
    free(ks.slot);
    return p->status;
}

static int match_word(parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, w, n) != 0) return 0;
    p->pos += n;
    return 1;
}

static df_status parse_value(parser *p, df_json *v) {
    if (p->pos >= p->len) return parse_error(p, p->pos, "unexpected end of input, expected a value");
    unsigned char c = p->s[p->pos];
    switch (c) {
    case '{':
    case '[': {
        if (p->depth >= DF_JSON_MAX_DEPTH) return parse_error(p, p->pos, "nesting deeper than 64 levels");
        p->depth++;
        df_status st = c == '{' ? parse_object(p, v) : parse_array(p, v);
        p->depth--;
        return st;
    }
    case '"':
        v->type = DF_JSON_STRING;
        return parse_string(p, &v->string);
    case 't':
        if (!match_word(p, "true")) break;
        v->type = DF_JSON_BOOL;
        v->boolean = 1;
        return DF_OK;
    case 'f':
        if (!match_word(p, "false")) break;
        v->type = DF_JSON_BOOL;
        v->boolean = 0;
        return DF_OK;
    case 'n':
        if (!match_word(p, "null")) break;
        v->type = DF_JSON_NULL;
        return DF_OK;
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        break;
    }
    return parse_error(p, p->pos, "unexpected character, expected a value");
}

df_status df_json_parse(const char *text, size_t len, df_json **out) {
    ASSERT(out);
    *out = NULL;
    if (!text) return df_fail(DF_ERR_FORMAT, "JSON error at byte 0: no input");
    if (len > DF_JSON_MAX_BYTES)
        return df_fail(DF_ERR_FORMAT, "JSON error at byte 0: input of %zu bytes is larger than the limit of %zu",
                       len, DF_JSON_MAX_BYTES);
    parser p = {(const unsigned char *)text, len, 0, 0, DF_OK};
    df_json *root = calloc(1, sizeof *root);
    if (!root) return parse_nomem(&p);
    skip_ws(&p);
    if (parse_value(&p, root) == DF_OK) {
        skip_ws(&p);
        if (p.pos != p.len) parse_error(&p, p.pos, "unexpected data after the JSON value");
    }
    if (p.status != DF_OK) {
        df_json_free(root);
        return p.status;
    }
    *out = root;
    return DF_OK;
}

void df_json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*c < 0x20) fprintf(f, "\\u%04x", *c);
            else fputc(*c, f);
        }
    }
    fputc('"', f);
}

/* ---------------------------------------------------------------- values */

void df_json_write(FILE *f, const df_json *v) {
    switch (v->type) {
    case DF_JSON_NULL: fputs("null", f); break;
    case DF_JSON_BOOL: fputs(v->boolean ? "true" : "false", f); break;
    case DF_JSON_NUMBER: fputs(v->string, f); break;  /* the literal as written */
    case DF_JSON_STRING: df_json_write_string(f, v->string); break;
    case DF_JSON_ARRAY:
        fputc('[', f);
        for (int i = 0; i < v->count; i++) {
            if (i) fputs(", ", f);
            df_json_write(f, &v->items[i]);
        }
        fputc(']', f);
        break;
    case DF_JSON_OBJECT:
        fputc('{', f);
        for (int i = 0; i < v->count; i++) {
            if (i) fputs(", ", f);
            df_json_write_string(f, v->keys[i]);
            fputs(": ", f);
            df_json_write(f, &v->items[i]);
        }
        fputc('}', f);
        break;
    }
}

/* v as JSON text for a message, cut to fit buf (NUL-terminated). */
const char *df_json_show(const df_json *v, char *buf, size_t cap) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    buf[0] = 0;
    if (!f) return buf;
    df_json_write(f, v);
    fclose(f);
    if (len < cap) snprintf(buf, cap, "%s", text);
    else snprintf(buf, cap, "%.*s...", (int)(cap - 4), text);
    free(text);
    return buf;
}

/* Scalars equal in type and value (numbers by value, so 1 == 1.0). */
int df_json_scalar_equal(const df_json *a, const df_json *b) {
    if (a->type != b->type) return 0;
    switch (a->type) {
    case DF_JSON_NULL: return 1;
    case DF_JSON_BOOL: return a->boolean == b->boolean;
    case DF_JSON_NUMBER: return a->number == b->number;
    case DF_JSON_STRING: return strcmp(a->string, b->string) == 0;
    default: return 0;
    }
}

int df_json_is_string(const df_json *v, const char *s) {
    return v && v->type == DF_JSON_STRING && strcmp(v->string, s) == 0;
}
