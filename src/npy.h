/* npy.h: NumPy .npy files (format versions 1.0 and 2.0; see numpy.lib.format).
 * What it is: writing plain little-endian C-order arrays, and reading them back as float32.
 * What it is not: .npz archives, structured or object dtypes, Fortran order, big-endian data. */
#ifndef DF_NPY_H
#define DF_NPY_H

#include "diffuse.h"
#include <stdint.h>

/* Writes data (C order, ndim <= 8 dims in shape) atomically as a version 1.0 file (2.0 if the
 * header would not fit in 64 KiB). descr is the NumPy dtype string: "<f4", "<f8", "|u1",
 * "<i4" or "<i8"; data holds its raw little-endian elements. DF_ERR_ARG for a descr or shape
 * outside that, DF_ERR_IO if the file cannot be written (an old file at path stays). */
df_status df_npy_write(const char *path, const char *descr, int ndim, const int64_t *shape, const void *data);

/* Reads a .npy file of dtype <f4, <f8 or |u1 (v1.0, v2.0 or v3.0) into a new float32 array
 * (*data, free with free()), its shape into shape[0..*ndim). fortran_order True and other
 * dtypes give DF_ERR_UNSUPPORTED; a malformed or truncated file DF_ERR_FORMAT naming the file;
 * an unreadable one DF_ERR_IO. On failure *data is NULL. */
df_status df_npy_read_f32(const char *path, int *ndim, int64_t shape[8], float **data);

#endif
