/* safetensors.c: validating reader, float32 getter and atomic writer for safetensors files.
 * The reader follows the checks of the reference implementation (huggingface/safetensors,
 * `validate`): tensors sorted by offsets must tile the byte buffer exactly, and every size is
 * computed with overflow checks, so a hostile header cannot make us read out of bounds.
 * Not here: memory mapping, lazy loading, or conversion of integer dtypes. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"
#include "common.h"
#include "json.h"
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

static const struct {
    const char *name;
    int size;
} dtype_info[DF_DTYPE_COUNT] = {
    [DF_DTYPE_F32] = {"F32", 4},  [DF_DTYPE_F16] = {"F16", 2}, [DF_DTYPE_BF16] = {"BF16", 2},
    [DF_DTYPE_F64] = {"F64", 8},  [DF_DTYPE_I64] = {"I64", 8}, [DF_DTYPE_I32] = {"I32", 4},
    [DF_DTYPE_I16] = {"I16", 2},  [DF_DTYPE_I8] = {"I8", 1},   [DF_DTYPE_U8] = {"U8", 1},
    [DF_DTYPE_BOOL] = {"BOOL", 1}, [DF_DTYPE_U16] = {"U16", 2}, [DF_DTYPE_U32] = {"U32", 4},
    [DF_DTYPE_U64] = {"U64", 8},  [DF_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [DF_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
};

const char *df_dtype_name(df_dtype d) {
    return (unsigned)d < DF_DTYPE_COUNT ? dtype_info[d].name : "?";
}

int df_dtype_size(df_dtype d) { return (unsigned)d < DF_DTYPE_COUNT ? dtype_info[d].size : 0; }

static int dtype_from_name(const char *s, df_dtype *out) {
    for (int d = 0; d < DF_DTYPE_COUNT; d++)
        if (strcmp(s, dtype_info[d].name) == 0) {
            *out = (df_dtype)d;
            return 1;
        }
    return 0;
}

static uint64_t load_le64(const uint8_t *b) {
    uint64_t v = 0;
    for (int k = 7; k >= 0; k--) v = (v << 8) | b[k];
    return v;
}

/* "[a,b,c]" into buf. */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int k = 0; k < ndim && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", k ? "," : "", (long long)shape[k]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

void df_st_free(df_st_file *f) {
    if (!f) return;
    for (int k = 0; k < f->n_tensors; k++) free(f->tensors[k].name);
    for (int k = 0; k < f->n_meta; k++) {
        free(f->meta_keys[k]);
        free(f->meta_values[k]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    df_free(f->priv);
    memset(f, 0, sizeof *f);
}

const df_st_tensor *df_st_find(const df_st_file *f, const char *name) {
    for (int k = 0; k < f->n_tensors; k++)
        if (strcmp(f->tensors[k].name, name) == 0) return &f->tensors[k];
    return NULL;
}

const char *df_st_meta(const df_st_file *f, const char *key) {
    for (int k = 0; k < f->n_meta; k++)
        if (strcmp(f->meta_keys[k], key) == 0) return f->meta_values[k];
    return NULL;
}

/* ------------------------------------------------------------------ reading */

/* A JSON number that is a plain non-negative integer literal (digits only) fitting in `max`. */
static int json_uint(const df_json *v, uint64_t max, uint64_t *out) {
    if (!v || v->type != DF_JSON_NUMBER || !v->string) return 0;
    const char *s = v->string;
    if (!*s) return 0;
    uint64_t x = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return 0;
        if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, (uint64_t)(*s - '0'), &x)) return 0;
    }
    if (x > max) return 0;
    *out = x;
    return 1;
}

/* Fills t from one header entry; checks its types, sizes and that it lies in the buffer. */
static df_status parse_entry(const char *path, const char *name, const df_json *e, uint64_t data_size,
                             df_st_tensor *t) {
    char sb[256];
    if (e->type != DF_JSON_OBJECT)
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": header entry is not an object", path, name);
    /* Members other than these three are ignored, as the reference parser does. */
    const df_json *dt = df_json_get(e, "dtype");
    const df_json *sh = df_json_get(e, "shape");
    const df_json *off = df_json_get(e, "data_offsets");
    if (!dt || dt->type != DF_JSON_STRING)
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": missing or non-string \"dtype\"", path, name);
    if (!dtype_from_name(dt->string, &t->dtype))
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name, dt->string);
    if (!sh || sh->type != DF_JSON_ARRAY)
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": missing or non-array \"shape\"", path, name);
    if (sh->count > DF_ST_MAX_NDIM)
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": %d dimensions, more than the supported %d", path, name,
                       sh->count, DF_ST_MAX_NDIM);
    if (!off || off->type != DF_JSON_ARRAY || off->count != 2)
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": missing \"data_offsets\" or not a pair [begin, end]",
                       path, name);
    t->ndim = sh->count;
    uint64_t numel = 1;
    int overflow = 0;
    for (int k = 0; k < sh->count; k++) {
        uint64_t dim;
        if (!json_uint(&sh->items[k], INT64_MAX, &dim))
            return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] = %s is not a non-negative integer", path,
                           name, k, sh->items[k].type == DF_JSON_NUMBER ? sh->items[k].string : "(not a number)");
        t->shape[k] = (int64_t)dim;
        overflow |= __builtin_mul_overflow(numel, dim, &numel);
    }
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)df_dtype_size(t->dtype), &nbytes);
    /* A zero dim makes the product 0 whatever the others are; overflow before it still counts. */
    if (overflow)
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": shape %s of %s overflows 64-bit byte counts", path, name,
                       shape_str(sb, sizeof sb, t->ndim, t->shape), dt->string);
    if (!json_uint(&off->items[0], UINT64_MAX, &t->begin) || !json_uint(&off->items[1], UINT64_MAX, &t->end))
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": data_offsets are not non-negative integers", path, name);
    if (t->end < t->begin)
        return df_fail(DF_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] end before they begin", path,
                       name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != nbytes)
        return df_fail(DF_ERR_FORMAT,
                       "%s: tensor \"%s\": shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] hold %llu",
                       path, name, shape_str(sb, sizeof sb, t->ndim, t->shape), dt->string,
                       (unsigned long long)nbytes, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)(t->end - t->begin));
    if (t->end > data_size)
        return df_fail(DF_ERR_FORMAT,
                       "%s: tensor \"%s\": data_offsets [%llu, %llu] run past the end of the data buffer "
                       "(%llu bytes; file truncated?)",
                       path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)data_size);
    return DF_OK;
}

static int by_offsets(const void *a, const void *b) {
    const df_st_tensor *x = *(const df_st_tensor *const *)a, *y = *(const df_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* The tensors, sorted by offsets, must tile [0, data_size) exactly: no overlap, no gap. */
static df_status check_tiling(const char *path, const df_st_file *f) {
    if (f->n_tensors == 0) {
        if (f->data_size != 0)
            return df_fail(DF_ERR_FORMAT, "%s: %llu bytes of data but no tensors in the header", path,
                           (unsigned long long)f->data_size);
        return DF_OK;
    }
    const df_st_tensor **order = malloc((size_t)f->n_tensors * sizeof *order);
    if (!order) return df_fail(DF_ERR_NOMEM, "%s: out of memory checking tensor offsets", path);
    for (int k = 0; k < f->n_tensors; k++) order[k] = &f->tensors[k];
    qsort(order, (size_t)f->n_tensors, sizeof *order, by_offsets);
    uint64_t pos = 0;
    const df_st_tensor *last = NULL; /* the tensor that ends at pos */
    df_status st = DF_OK;
    for (int k = 0; k < f->n_tensors && st == DF_OK; k++) {
        const df_st_tensor *t = order[k];
        if (t->begin < pos)
            st = df_fail(DF_ERR_FORMAT, "%s: tensors \"%s\" [%llu, %llu] and \"%s\" [%llu, %llu] overlap", path,
                         last->name, (unsigned long long)last->begin, (unsigned long long)last->end, t->name,
                         (unsigned long long)t->begin, (unsigned long long)t->end);
        else if (t->begin > pos)
            st = df_fail(DF_ERR_FORMAT, "%s: bytes [%llu, %llu) of the data buffer belong to no tensor", path,
                         (unsigned long long)pos, (unsigned long long)t->begin);
        if (t->end >= pos) {
            pos = t->end;
            last = t;
        }
    }
    free(order);
    if (st == DF_OK && pos != f->data_size)
        st = df_fail(DF_ERR_FORMAT, "%s: the last %llu bytes of the data buffer belong to no tensor", path,
                     (unsigned long long)(f->data_size - pos));
    return st;
}

static df_status parse_header(const char *path, const char *hdr, uint64_t hlen, df_st_file *f) {
    df_json *root = NULL;
    if (df_json_parse(hdr, (size_t)hlen, &root) != DF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", df_last_error());
        return df_fail(DF_ERR_FORMAT, "%s: header is not valid JSON: %s", path, msg);
    }
    df_status st = DF_OK;
    if (root->type != DF_JSON_OBJECT) {
        st = df_fail(DF_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    const df_json *meta = df_json_get(root, "__metadata__");
    int n_tensors = root->count - (meta ? 1 : 0);
    if (meta) {
        if (meta->type != DF_JSON_OBJECT) {
            st = df_fail(DF_ERR_FORMAT, "%s: __metadata__ is not an object of strings", path);
            goto done;
        }
        f->meta_keys = calloc((size_t)meta->count + 1, sizeof(char *));
        f->meta_values = calloc((size_t)meta->count + 1, sizeof(char *));
        if (!f->meta_keys || !f->meta_values) goto nomem;
        for (int k = 0; k < meta->count; k++) {
            if (meta->items[k].type != DF_JSON_STRING) {
                st = df_fail(DF_ERR_FORMAT, "%s: __metadata__ value of \"%s\" is not a string", path, meta->keys[k]);
                goto done;
            }
            f->meta_keys[k] = strdup(meta->keys[k]);
            f->meta_values[k] = strdup(meta->items[k].string);
            f->n_meta = k + 1;
            if (!f->meta_keys[k] || !f->meta_values[k]) goto nomem;
        }
    }
    f->tensors = calloc((size_t)n_tensors + 1, sizeof *f->tensors);
    if (!f->tensors) goto nomem;
    for (int k = 0; k < root->count; k++) {
        const char *name = root->keys[k];
        if (strcmp(name, "__metadata__") == 0) continue;
        df_st_tensor *t = &f->tensors[f->n_tensors];
        t->name = strdup(name);
        f->n_tensors++;
        if (!t->name) goto nomem;
        st = parse_entry(path, name, &root->items[k], f->data_size, t);
        if (st) goto done;
    }
    st = check_tiling(path, f);
    goto done;
nomem:
    st = df_fail(DF_ERR_NOMEM, "%s: out of memory reading the header", path);
done:
    df_json_free(root);
    return st;
}

df_status df_st_read(const char *path, df_st_file *f) {
    ASSERT(path && f);
    memset(f, 0, sizeof *f);
    df_status st = DF_OK;
    FILE *fp = fopen(path, "rb");
    if (!fp) return df_fail(DF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        st = df_fail(DF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        goto close_file;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = df_fail(DF_ERR_IO, "cannot read %s: not a regular file", path);
        goto close_file;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < 8) {
        st = df_fail(DF_ERR_FORMAT, "%s: truncated: file has %llu bytes, less than the 8-byte header length", path,
                     (unsigned long long)size);
        goto close_file;
    }
    if (size > SIZE_MAX - 64) {
        st = df_fail(DF_ERR_NOMEM, "%s: file of %llu bytes is too large to load", path, (unsigned long long)size);
        goto close_file;
    }
    uint8_t *buf = df_alloc((size_t)size, path);
    if (!buf) {
        st = DF_ERR_NOMEM;
        goto close_file;
    }
    f->priv = buf;
    if (fread(buf, 1, (size_t)size, fp) != (size_t)size) {
        st = df_fail(DF_ERR_IO, "cannot read %s: %s", path, ferror(fp) ? strerror(errno) : "file shrank while reading");
        goto close_file;
    }
    fclose(fp);
    fp = NULL;

    uint64_t hlen = load_le64(buf);
    if (hlen < 2) {
        st = df_fail(DF_ERR_FORMAT, "%s: header length %llu is too small (a header is at least \"{}\")", path,
                     (unsigned long long)hlen);
        goto fail;
    }
    if (hlen > DF_ST_MAX_HEADER) {
        st = df_fail(DF_ERR_FORMAT, "%s: header length %llu is over the 100 MB limit (not a safetensors file?)",
                     path, (unsigned long long)hlen);
        goto fail;
    }
    if (hlen > size - 8) {
        st = df_fail(DF_ERR_FORMAT, "%s: truncated: header says %llu bytes but file has %llu after the length",
                     path, (unsigned long long)hlen, (unsigned long long)(size - 8));
        goto fail;
    }
    if (buf[8] != '{') {
        st = df_fail(DF_ERR_FORMAT, "%s: header is not a JSON object (it does not start with '{'; not a safetensors file?)", path);
        goto fail;
    }
    f->data = buf + 8 + hlen;
    f->data_size = size - 8 - hlen;
    f->path = strdup(path);
    if (!f->path) {
        st = df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
        goto fail;
    }
    st = parse_header(path, (const char *)buf + 8, hlen, f);
    if (st) goto fail;
    return DF_OK;
close_file:
    if (fp) fclose(fp);
fail:
    df_st_free(f);
    return st;
}

/* ------------------------------------------------------------------ float conversion */

/* IEEE 754 binary16 to binary32, exact (every half is a float). */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        float v = (float)man * 0x1p-24f; /* zero or subnormal: man * 2^-24 */
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13); /* inf or NaN (payload kept) */
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13); /* rebias 15 -> 127 */
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

df_status df_st_get_f32(const df_st_file *f, const char *name, int ndim, const int64_t *shape, float *out) {
    const df_st_tensor *t = df_st_find(f, name);
    if (!t) return df_fail(DF_ERR_FORMAT, "%s: missing tensor %s", f->path ? f->path : "safetensors", name);
    int same = t->ndim == ndim;
    for (int k = 0; same && k < ndim; k++) same = t->shape[k] == shape[k];
    if (!same) {
        char a[256], b[256];
        return df_fail(DF_ERR_SHAPE, "%s: tensor %s has shape %s but the model needs %s",
                       f->path ? f->path : "safetensors", name, shape_str(a, sizeof a, t->ndim, t->shape),
                       shape_str(b, sizeof b, ndim, shape));
    }
    const uint8_t *src = f->data + t->begin;
    size_t n = (size_t)((t->end - t->begin) / (uint64_t)df_dtype_size(t->dtype));
    /* Bytes are assembled explicitly: little-endian on any host, any alignment. */
    switch (t->dtype) {
    case DF_DTYPE_F32:
        for (size_t i = 0; i < n; i++) {
            const uint8_t *b = src + 4 * i;
            uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&out[i], &u, 4);
        }
        return DF_OK;
    case DF_DTYPE_F16:
        for (size_t i = 0; i < n; i++) out[i] = half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
        return DF_OK;
    case DF_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint32_t u = ((uint32_t)src[2 * i] | (uint32_t)src[2 * i + 1] << 8) << 16; /* bf16 = top half of f32 */
            memcpy(&out[i], &u, 4);
        }
        return DF_OK;
    case DF_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t u = load_le64(src + 8 * i);
            double d;
            memcpy(&d, &u, 8);
            out[i] = (float)d;
        }
        return DF_OK;
    default:
        return df_fail(DF_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; only F32, F16, BF16 and F64 load as float",
                       f->path ? f->path : "safetensors", name, df_dtype_name(t->dtype));
    }
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *name;
    df_dtype dtype;
    int ndim;
    int64_t shape[DF_ST_MAX_NDIM];
    const void *data;
    uint64_t nbytes;
} writer_tensor;

struct df_st_writer {
    writer_tensor *t;
    int n, cap;
    char **meta_keys, **meta_values;
    int n_meta, cap_meta;
    char error[512]; /* the first bad argument, reported by write */
};

df_st_writer *df_st_writer_new(void) {
    df_st_writer *w = calloc(1, sizeof *w);
    if (!w) df_fail(DF_ERR_NOMEM, "out of memory creating a safetensors writer");
    return w;
}

void df_st_writer_free(df_st_writer *w) {
    if (!w) return;
    for (int k = 0; k < w->n; k++) free(w->t[k].name);
    for (int k = 0; k < w->n_meta; k++) {
        free(w->meta_keys[k]);
        free(w->meta_values[k]);
    }
    free(w->t);
    free(w->meta_keys);
    free(w->meta_values);
    free(w);
}

static void writer_error(df_st_writer *w, const char *msg, const char *name) {
    if (!w->error[0]) snprintf(w->error, sizeof w->error, "safetensors writer: tensor \"%s\": %s", name, msg);
}

void df_st_writer_add(df_st_writer *w, const char *name, df_dtype dtype, int ndim, const int64_t *shape,
                      const void *data) {
    ASSERT(w && name);
    if ((unsigned)dtype >= DF_DTYPE_COUNT) { writer_error(w, "unknown dtype", name); return; }
    if (ndim < 0 || ndim > DF_ST_MAX_NDIM) { writer_error(w, "ndim must be 0..8", name); return; }
    if (strcmp(name, "__metadata__") == 0) { writer_error(w, "the name is reserved", name); return; }
    for (int k = 0; k < w->n; k++)
        if (strcmp(w->t[k].name, name) == 0) { writer_error(w, "added twice", name); return; }
    writer_tensor t = {.dtype = dtype, .ndim = ndim, .data = data};
    uint64_t numel = 1;
    int overflow = 0;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0) { writer_error(w, "negative dimension", name); return; }
        t.shape[k] = shape[k];
        overflow |= __builtin_mul_overflow(numel, (uint64_t)shape[k], &numel);
    }
    overflow |= __builtin_mul_overflow(numel, (uint64_t)df_dtype_size(dtype), &t.nbytes);
    if (overflow) { writer_error(w, "size overflows", name); return; }
    if (!data && t.nbytes) { writer_error(w, "no data", name); return; }
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        writer_tensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) { writer_error(w, "out of memory", name); return; }
        w->t = nt;
        w->cap = cap;
    }
    t.name = strdup(name);
    if (!t.name) { writer_error(w, "out of memory", name); return; }
    w->t[w->n++] = t;
}

void df_st_writer_meta(df_st_writer *w, const char *key, const char *value) {
    ASSERT(w && key && value);
    char *v = strdup(value);
    if (!v) { writer_error(w, "out of memory for metadata", key); return; }
    for (int k = 0; k < w->n_meta; k++)
        if (strcmp(w->meta_keys[k], key) == 0) {
            free(w->meta_values[k]);
            w->meta_values[k] = v;
            return;
        }
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? 2 * w->cap_meta : 8;
        char **nk = realloc(w->meta_keys, (size_t)cap * sizeof *nk);
        if (nk) w->meta_keys = nk;
        char **nv = realloc(w->meta_values, (size_t)cap * sizeof *nv);
        if (nv) w->meta_values = nv;
        if (!nk || !nv) {
            free(v);
            { writer_error(w, "out of memory for metadata", key); return; }
        }
        w->cap_meta = cap;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        { writer_error(w, "out of memory for metadata", key); return; }
    }
    w->meta_keys[w->n_meta] = k;
    w->meta_values[w->n_meta] = v;
    w->n_meta++;
}

/* The JSON header, padded with spaces to a multiple of 8 bytes so the data buffer that follows
 * the 8-byte length stays 8-byte aligned (as the Python writer does). */
static df_status build_header(const df_st_writer *w, char **out, size_t *out_len) {
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m) return df_fail(DF_ERR_NOMEM, "out of memory building a safetensors header");
    fputc('{', m);
    int first = 1;
    if (w->n_meta) {
        fputs("\"__metadata__\":{", m);
        for (int k = 0; k < w->n_meta; k++) {
            if (k) fputc(',', m);
            df_json_write_string(m, w->meta_keys[k]);
            fputc(':', m);
            df_json_write_string(m, w->meta_values[k]);
        }
        fputc('}', m);
        first = 0;
    }
    uint64_t offset = 0;
    for (int k = 0; k < w->n; k++) {
        const writer_tensor *t = &w->t[k];
        if (!first) fputc(',', m);
        first = 0;
        df_json_write_string(m, t->name);
        fprintf(m, ":{\"dtype\":\"%s\",\"shape\":[", df_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++) fprintf(m, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                (unsigned long long)(offset + t->nbytes));
        offset += t->nbytes;
    }
    fputc('}', m);
    while ((len = (size_t)ftello(m)) % 8 != 0) fputc(' ', m);
    if (fclose(m) != 0 || !buf) {
        free(buf);
        return df_fail(DF_ERR_NOMEM, "out of memory building a safetensors header");
    }
    *out = buf;
    *out_len = len;
    return DF_OK;
}

df_status df_st_writer_write(df_st_writer *w, const char *path) {
    ASSERT(w && path);
    if (w->error[0]) return df_fail(DF_ERR_ARG, "cannot write %s: %s", path, w->error);
    char *hdr = NULL;
    size_t hlen = 0;
    df_status st = build_header(w, &hdr, &hlen);
    if (st) return st;
    char tmp[4096];
    FILE *fp = df_atomic_open(path, tmp, sizeof tmp);
    if (!fp) {
        free(hdr);
        return DF_ERR_IO;
    }
    uint8_t lenbytes[8];
    for (int k = 0; k < 8; k++) lenbytes[k] = (uint8_t)((uint64_t)hlen >> (8 * k));
    fwrite(lenbytes, 1, 8, fp);
    fwrite(hdr, 1, hlen, fp);
    free(hdr);
    for (int k = 0; k < w->n && !ferror(fp); k++)
        if (w->t[k].nbytes) fwrite(w->t[k].data, 1, (size_t)w->t[k].nbytes, fp);
    return df_atomic_commit(fp, tmp, path);
}
