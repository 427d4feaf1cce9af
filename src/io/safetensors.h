/* safetensors.h: reading and writing safetensors files (huggingface/safetensors format:
 * u64 little-endian header length N, N bytes of JSON header, then the byte buffer).
 * What it is: a loader that validates the whole file before anyone touches a tensor, a
 * float32 getter that checks shapes and converts F16/BF16/F64, and an atomic writer.
 * What it is not: a memory-mapped or lazy loader (the whole file is read), and not a
 * converter for integer dtypes to float (those are reported as unsupported). */
#ifndef DF_SAFETENSORS_H
#define DF_SAFETENSORS_H

#include "diffuse.h"
#include <stdint.h>

#define DF_ST_MAX_NDIM 8
#define DF_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000) /* the reference parser's cap */

typedef enum {
    DF_DTYPE_F32, DF_DTYPE_F16, DF_DTYPE_BF16, DF_DTYPE_F64,
    DF_DTYPE_I64, DF_DTYPE_I32, DF_DTYPE_I16, DF_DTYPE_I8,
    DF_DTYPE_U8, DF_DTYPE_BOOL,
    DF_DTYPE_U16, DF_DTYPE_U32, DF_DTYPE_U64,
    DF_DTYPE_F8_E4M3, DF_DTYPE_F8_E5M2,
    DF_DTYPE_COUNT
} df_dtype;

/* The file's spelling ("F32", "BF16", ...); "?" for a value out of range. */
const char *df_dtype_name(df_dtype d);
/* Bytes per element (0 for a value out of range). */
int df_dtype_size(df_dtype d);

typedef struct {
    char *name;
    df_dtype dtype;
    int ndim;                         /* 0 for a scalar */
    int64_t shape[DF_ST_MAX_NDIM];
    uint64_t begin, end;              /* byte range in data[], end one past */
} df_st_tensor;

typedef struct {
    char *path;
    df_st_tensor *tensors;            /* in header order */
    int n_tensors;
    char **meta_keys, **meta_values;  /* __metadata__, in header order */
    int n_meta;
    uint8_t *data;                    /* the byte buffer; 8-byte aligned when the header length is a
                                         multiple of 8, as writers pad it (read with memcpy otherwise) */
    uint64_t data_size;
    void *priv;                       /* the whole file's bytes */
} df_st_file;

/* Reads the whole file at `path` into *f and validates everything before returning:
 * header length (2 .. 100 MB, within the file), JSON well-formed and an object, each entry's
 * dtype/shape/data_offsets with the right types, known dtype, ndim <= 8, non-negative integral
 * dims, no overflow in numel*itemsize, end-begin == numel*itemsize, offsets inside the buffer,
 * no overlaps, the buffer fully covered, __metadata__ string->string only.
 * DF_ERR_IO if the file cannot be opened or read, DF_ERR_FORMAT for anything malformed, with a
 * message naming the file and the problem. On failure *f is left empty (df_st_free is safe). */
df_status df_st_read(const char *path, df_st_file *f);

/* Frees what df_st_read allocated and zeroes *f. */
void df_st_free(df_st_file *f);

/* The tensor called `name`, or NULL. */
const df_st_tensor *df_st_find(const df_st_file *f, const char *name);

/* The __metadata__ value for `key`, or NULL. */
const char *df_st_meta(const df_st_file *f, const char *key);

/* Copies tensor `name` into out as float32, after checking that its shape is exactly
 * shape[0..ndim). F32, F16, BF16 and F64 are converted (F64 rounds to nearest).
 * DF_ERR_FORMAT "missing tensor X", DF_ERR_SHAPE "tensor X has shape [..] but the model needs
 * [..]", DF_ERR_UNSUPPORTED for other dtypes (naming the dtype). */
df_status df_st_get_f32(const df_st_file *f, const char *name, int ndim, const int64_t *shape, float *out);

/* ------------------------------------------------------------------ writer */
typedef struct df_st_writer df_st_writer;

/* A new, empty writer (NULL only if out of memory). */
df_st_writer *df_st_writer_new(void);

/* Adds a tensor. Keeps the `data` pointer (raw little-endian bytes of numel*itemsize) without
 * copying: it must stay valid until df_st_writer_write. A bad argument (ndim > 8, a negative
 * dim, a duplicate name, data NULL for a non-empty tensor) is remembered and reported by
 * df_st_writer_write as DF_ERR_ARG. */
void df_st_writer_add(df_st_writer *w, const char *name, df_dtype dtype, int ndim, const int64_t *shape,
                      const void *data);

/* Adds (or replaces) a __metadata__ entry; key and value are copied. */
void df_st_writer_meta(df_st_writer *w, const char *key, const char *value);

/* Writes the file atomically (df_atomic_*): header JSON padded with spaces to a multiple of 8
 * bytes, tensors in insertion order. DF_ERR_IO on write failure (the old file stays). */
df_status df_st_writer_write(df_st_writer *w, const char *path);

void df_st_writer_free(df_st_writer *w);

#endif
