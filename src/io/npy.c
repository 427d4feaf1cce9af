/* npy.c: .npy writer and float32 reader.
 * Layout (numpy.lib.format): "\x93NUMPY", major, minor, header length (u16 in 1.0, u32 in
 * 2.0/3.0), then a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), }
 * padded with spaces and ending in '\n' so the data starts at a multiple of 64 bytes.
 * The reader parses only that dict literal, not general Python. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define NPY_MAX_NDIM 8
#define NPY_MAX_HEADER (1u << 20) /* real headers are < 200 bytes; this only bounds hostile ones */

static const struct {
    const char *descr;
    int size;
} npy_types[] = {{"<f4", 4}, {"<f8", 8}, {"|u1", 1}, {"<i4", 4}, {"<i8", 8}};

static int descr_size(const char *descr) {
    for (size_t k = 0; k < sizeof npy_types / sizeof npy_types[0]; k++)
        if (strcmp(descr, npy_types[k].descr) == 0) return npy_types[k].size;
    return 0;
}

df_status df_npy_write(const char *path, const char *descr, int ndim, const int64_t *shape, const void *data) {
    ASSERT(path && descr);
    int isize = descr_size(descr);
    if (!isize) return df_fail(DF_ERR_ARG, "cannot write %s: unsupported npy dtype \"%s\"", path, descr);
    if (ndim < 0 || ndim > NPY_MAX_NDIM)
        return df_fail(DF_ERR_ARG, "cannot write %s: %d dimensions (0..%d supported)", path, ndim, NPY_MAX_NDIM);
    char dict[512];
    size_t n = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    uint64_t nbytes = (uint64_t)isize;
    for (int k = 0; k < ndim; k++) {
        if (shape[k] < 0 || __builtin_mul_overflow(nbytes, (uint64_t)shape[k], &nbytes))
            return df_fail(DF_ERR_ARG, "cannot write %s: bad dimension %lld", path, (long long)shape[k]);
        n += (size_t)snprintf(dict + n, sizeof dict - n, "%s%lld", k ? ", " : "", (long long)shape[k]);
    }
    n += (size_t)snprintf(dict + n, sizeof dict - n, "%s), }", ndim == 1 ? "," : "");
    /* Pad so that 10 (preamble) + header length is a multiple of 64; the header ends in '\n'. */
    size_t total = (10 + n + 1 + 63) / 64 * 64;
    size_t hlen = total - 10;
    char header[640];
    ASSERT(hlen < sizeof header);
    memcpy(header, dict, n);
    memset(header + n, ' ', hlen - n - 1);
    header[hlen - 1] = '\n';
    if (nbytes && !data) return df_fail(DF_ERR_ARG, "cannot write %s: no data", path);

    char tmp[4096];
    FILE *fp = df_atomic_open(path, tmp, sizeof tmp);
    if (!fp) return DF_ERR_IO;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xFF),
                             (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, sizeof pre, fp);
    fwrite(header, 1, hlen, fp);
    if (nbytes) fwrite(data, 1, (size_t)nbytes, fp);
    return df_atomic_commit(fp, tmp, path);
}

/* ------------------------------------------------------------------ reading */

typedef struct {
    const char *s;
    size_t len, pos;
} lit;

static void lit_ws(lit *l) {
    while (l->pos < l->len && (l->s[l->pos] == ' ' || l->s[l->pos] == '\t' || l->s[l->pos] == '\n' ||
                               l->s[l->pos] == '\r'))
        l->pos++;
}

static int lit_char(lit *l, char c) {
    lit_ws(l);
    if (l->pos < l->len && l->s[l->pos] == c) {
        l->pos++;
        return 1;
    }
    return 0;
}

/* A Python string literal in '...' or "..." without escapes (all npy keys and descrs are plain). */
static int lit_string(lit *l, char *out, size_t cap) {
    lit_ws(l);
    if (l->pos >= l->len || (l->s[l->pos] != '\'' && l->s[l->pos] != '"')) return 0;
    char q = l->s[l->pos++];
    size_t n = 0;
    while (l->pos < l->len && l->s[l->pos] != q) {
        if (l->s[l->pos] == '\\' || n + 1 >= cap) return 0;
        out[n++] = l->s[l->pos++];
    }
    if (l->pos >= l->len) return 0;
    l->pos++;
    out[n] = 0;
    return 1;
}

static int lit_word(lit *l, const char *w) {
    lit_ws(l);
    size_t n = strlen(w);
    if (l->len - l->pos >= n && memcmp(l->s + l->pos, w, n) == 0) {
        l->pos += n;
        return 1;
    }
    return 0;
}

/* A tuple of non-negative ints: (), (3,), (2, 3) and Python 2's 3L. */
static int lit_shape(lit *l, int *ndim, int64_t shape[NPY_MAX_NDIM]) {
    if (!lit_char(l, '(')) return 0;
    *ndim = 0;
    for (;;) {
        if (lit_char(l, ')')) return 1;
        lit_ws(l);
        if (l->pos >= l->len || l->s[l->pos] < '0' || l->s[l->pos] > '9') return 0;
        int64_t v = 0;
        while (l->pos < l->len && l->s[l->pos] >= '0' && l->s[l->pos] <= '9') {
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, l->s[l->pos] - '0', &v)) return 0;
            l->pos++;
        }
        if (l->pos < l->len && l->s[l->pos] == 'L') l->pos++;
        if (*ndim >= NPY_MAX_NDIM) return -1;
        shape[(*ndim)++] = v;
        if (lit_char(l, ')')) return 1;
        if (!lit_char(l, ',')) return 0;
    }
}

static df_status parse_header_dict(const char *path, const char *h, size_t len, char *descr, size_t descr_cap,
                                   int *fortran, int *ndim, int64_t shape[NPY_MAX_NDIM]) {
    lit l = {h, len, 0};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (!lit_char(&l, '{')) return df_fail(DF_ERR_FORMAT, "%s: npy header is not a dict", path);
    for (;;) {
        if (lit_char(&l, '}')) break;
        char key[32];
        if (!lit_string(&l, key, sizeof key) || !lit_char(&l, ':'))
            return df_fail(DF_ERR_FORMAT, "%s: malformed npy header dict at byte %zu", path, l.pos);
        if (strcmp(key, "descr") == 0) {
            lit_ws(&l);
            if (l.pos < l.len && l.s[l.pos] == '[')
                return df_fail(DF_ERR_UNSUPPORTED, "%s: structured npy dtypes are not supported", path);
            if (!lit_string(&l, descr, descr_cap))
                return df_fail(DF_ERR_FORMAT, "%s: npy header 'descr' is not a dtype string", path);
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (lit_word(&l, "True")) *fortran = 1;
            else if (lit_word(&l, "False")) *fortran = 0;
            else return df_fail(DF_ERR_FORMAT, "%s: npy header 'fortran_order' is not True or False", path);
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0) {
            int r = lit_shape(&l, ndim, shape);
            if (r < 0)
                return df_fail(DF_ERR_UNSUPPORTED, "%s: npy array has more than %d dimensions", path, NPY_MAX_NDIM);
            if (!r) return df_fail(DF_ERR_FORMAT, "%s: npy header 'shape' is not a tuple of integers", path);
            have_shape = 1;
        } else {
            return df_fail(DF_ERR_FORMAT, "%s: unexpected key '%s' in the npy header", path, key);
        }
        if (lit_char(&l, '}')) break;
        if (!lit_char(&l, ','))
            return df_fail(DF_ERR_FORMAT, "%s: malformed npy header dict at byte %zu", path, l.pos);
    }
    lit_ws(&l);
    if (l.pos != l.len) return df_fail(DF_ERR_FORMAT, "%s: unexpected bytes after the npy header dict", path);
    if (!have_descr || !have_fortran || !have_shape)
        return df_fail(DF_ERR_FORMAT, "%s: npy header lacks '%s'", path,
                       !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");
    return DF_OK;
}

/* Converts n elements of `descr` in src (little-endian bytes) to float. */
static void convert(const char *descr, const unsigned char *src, float *dst, size_t n) {
    if (descr[1] == 'u') {
        for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
    } else if (descr[2] == '4') {
        for (size_t i = 0; i < n; i++) {
            const unsigned char *b = src + 4 * i;
            uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
            memcpy(&dst[i], &u, 4);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint64_t u = 0;
            for (int k = 7; k >= 0; k--) u = (u << 8) | src[8 * i + k];
            double d;
            memcpy(&d, &u, 8);
            dst[i] = (float)d;
        }
    }
}

df_status df_npy_read_f32(const char *path, int *ndim, int64_t shape[8], float **data) {
    ASSERT(path && ndim && shape && data);
    *data = NULL;
    *ndim = 0;
    df_status st = DF_OK;
    char *header = NULL;
    unsigned char *chunk = NULL;
    float *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return df_fail(DF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = df_fail(DF_ERR_IO, "cannot read %s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char pre[12];
    if (size < 10 || fread(pre, 1, 10, fp) != 10) {
        st = df_fail(DF_ERR_FORMAT, "%s: truncated: too short for an npy file", path);
        goto done;
    }
    if (memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = df_fail(DF_ERR_FORMAT, "%s: not an npy file (bad magic)", path);
        goto done;
    }
    uint64_t hlen, pre_len;
    if (pre[6] == 1) {
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
        pre_len = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (size < 12 || fread(pre + 10, 1, 2, fp) != 2) {
            st = df_fail(DF_ERR_FORMAT, "%s: truncated npy preamble", path);
            goto done;
        }
        hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        pre_len = 12;
    } else {
        st = df_fail(DF_ERR_UNSUPPORTED, "%s: npy format version %d.%d is not supported", path, pre[6], pre[7]);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER || hlen > size - pre_len) {
        st = df_fail(DF_ERR_FORMAT, "%s: truncated: npy header says %llu bytes but file has %llu after the preamble",
                     path, (unsigned long long)hlen, (unsigned long long)(size - pre_len));
        goto done;
    }
    header = malloc((size_t)hlen + 1);
    if (!header) {
        st = df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(header, 1, (size_t)hlen, fp) != (size_t)hlen) {
        st = df_fail(DF_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    header[hlen] = 0;
    char descr[32];
    int fortran = 0;
    st = parse_header_dict(path, header, (size_t)hlen, descr, sizeof descr, &fortran, ndim, shape);
    if (st) goto done;
    if (fortran) {
        st = df_fail(DF_ERR_UNSUPPORTED, "%s: fortran_order arrays are not supported (save with C order)", path);
        goto done;
    }
    if (strcmp(descr, "<f4") != 0 && strcmp(descr, "<f8") != 0 && strcmp(descr, "|u1") != 0) {
        st = df_fail(DF_ERR_UNSUPPORTED, "%s: npy dtype '%s' is not supported (need <f4, <f8 or |u1)", path, descr);
        goto done;
    }
    int isize = descr_size(descr);
    uint64_t numel = 1, nbytes;
    for (int k = 0; k < *ndim; k++)
        if (__builtin_mul_overflow(numel, (uint64_t)shape[k], &numel)) {
            st = df_fail(DF_ERR_FORMAT, "%s: npy shape overflows", path);
            goto done;
        }
    if (__builtin_mul_overflow(numel, (uint64_t)isize, &nbytes) || numel > SIZE_MAX / sizeof(float)) {
        st = df_fail(DF_ERR_FORMAT, "%s: npy shape overflows", path);
        goto done;
    }
    uint64_t have = size - pre_len - hlen;
    if (have != nbytes) {
        st = df_fail(DF_ERR_FORMAT, "%s: %s: shape needs %llu data bytes but the file has %llu", path,
                     have < nbytes ? "truncated" : "trailing bytes", (unsigned long long)nbytes,
                     (unsigned long long)have);
        goto done;
    }
    out = malloc(numel ? (size_t)numel * sizeof(float) : sizeof(float));
    if (!out) {
        st = df_fail(DF_ERR_NOMEM, "%s: out of memory for %llu floats", path, (unsigned long long)numel);
        goto done;
    }
    /* Read in chunks and convert, so a <f8 file never needs twice its size in memory. */
    enum { CHUNK = 1 << 16 };
    chunk = malloc(CHUNK * 8);
    if (!chunk) {
        st = df_fail(DF_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (uint64_t i = 0; i < numel;) {
        size_t m = numel - i < CHUNK ? (size_t)(numel - i) : CHUNK;
        if (fread(chunk, (size_t)isize, m, fp) != m) {
            st = df_fail(DF_ERR_IO, "cannot read %s: %s", path, ferror(fp) ? strerror(errno) : "file shrank");
            goto done;
        }
        convert(descr, chunk, out + i, m);
        i += m;
    }
    *data = out;
    out = NULL;
done:
    if (st != DF_OK) *ndim = 0;
    free(out);
    free(chunk);
    free(header);
    fclose(fp);
    return st;
}
