/* fid.c: feature statistics and the Frechet distance (diffuse.h, "FID"). Everything in double: the
 * distance is a difference of traces of size ~dim * variance, and float32 would leave only a few
 * significant digits of it. */
#include "common.h"
#include "safetensors.h"
#include <cblas.h>
#include <math.h>
#include <string.h>

/* LAPACK's symmetric eigensolver (divide and conquer), from the BLAS library: Debian's OpenBLAS
 * carries LAPACK (CMakeLists.txt checks that it links). Fortran calling convention: everything by
 * pointer, and the lengths of the two character arguments at the end (gfortran's hidden arguments). */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info, size_t jobz_len,
                    size_t uplo_len);

/* ---------------------------------------------------------------- statistics */

void df_fid_stats_free(df_fid_stats *s) {
    if (!s) return;
    df_free(s->mu);
    df_free(s->sigma);
    memset(s, 0, sizeof *s);
}

static df_status stats_alloc(int dim, long n, df_fid_stats *s) {
    memset(s, 0, sizeof *s);
    s->mu = df_calloc(sizeof(double) * (size_t)dim, "FID mean");
    s->sigma = df_calloc(sizeof(double) * (size_t)dim * (size_t)dim, "FID covariance");
    if (!s->mu || !s->sigma) {
        df_fid_stats_free(s);
        return DF_ERR_NOMEM;
    }
    s->dim = dim;
    s->n = n;
    return DF_OK;
}

/* The rows of the centred features go through dsyrk this many at a time (bounds the double copy). */
#define STATS_CHUNK 1024

df_status df_fid_stats_compute(const float *features, long n, int dim, df_fid_stats *s) {
    memset(s, 0, sizeof *s);
    if (n < 2) return df_fail(DF_ERR_ARG, "FID needs at least 2 images per set for a covariance (got %ld)", n);
    if (dim < 1) return df_fail(DF_ERR_ARG, "FID features need at least one dimension (got %d)", dim);
    for (size_t i = 0; i < (size_t)n * dim; i++)
        if (!isfinite(features[i]))
            return df_fail(DF_ERR_NAN, "feature %zu of image %zu is not finite (%g)", i % dim, i / dim, features[i]);
    df_status st = stats_alloc(dim, n, s);
    if (st != DF_OK) return st;
    double *chunk = df_alloc(sizeof(double) * STATS_CHUNK * (size_t)dim, "FID feature chunk");
    if (!chunk) {
        df_fid_stats_free(s);
        return DF_ERR_NOMEM;
    }
    for (long i = 0; i < n; i++)
        for (int d = 0; d < dim; d++) s->mu[d] += features[(size_t)i * dim + d];
    for (int d = 0; d < dim; d++) s->mu[d] /= (double)n;
    /* sigma (upper triangle) += X^T X over chunks of centred rows X */
    for (long i0 = 0; i0 < n; i0 += STATS_CHUNK) {
        long m = n - i0 < STATS_CHUNK ? n - i0 : STATS_CHUNK;
        for (long i = 0; i < m; i++)
            for (int d = 0; d < dim; d++)
                chunk[(size_t)i * dim + d] = (double)features[(size_t)(i0 + i) * dim + d] - s->mu[d];
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, (int)m, 1.0, chunk, dim, 1.0, s->sigma, dim);
    }
    df_free(chunk);
    for (int r = 0; r < dim; r++)
        for (int c = r; c < dim; c++) {
            double v = s->sigma[(size_t)r * dim + c] / (double)(n - 1);
            s->sigma[(size_t)r * dim + c] = s->sigma[(size_t)c * dim + r] = v;
        }
    return DF_OK;
}

/* ---------------------------------------------------------------- the cache file */

df_status df_fid_stats_save(const df_fid_stats *s, const char *key, const char *path) {
    df_st_writer *w = df_st_writer_new();
    if (!w) return df_fail(DF_ERR_NOMEM, "out of memory writing %s", path);
    int64_t mshape[1] = {s->dim}, sshape[2] = {s->dim, s->dim};
    df_st_writer_add(w, "mu", DF_DTYPE_F64, 1, mshape, s->mu);
    df_st_writer_add(w, "sigma", DF_DTYPE_F64, 2, sshape, s->sigma);
    char n[32];
    snprintf(n, sizeof n, "%ld", s->n);
    df_st_writer_meta(w, "fid.n", n);
    df_st_writer_meta(w, "fid.key", key);
    df_status st = df_st_writer_write(w, path);
    df_st_writer_free(w);
    return st;
}

/* Copies the F64 tensor `name` of exactly numel elements into out. */
static df_status get_f64(const df_st_file *f, const char *name, int ndim, int dim, double *out) {
    const df_st_tensor *t = df_st_find(f, name);
    int ok = t && t->dtype == DF_DTYPE_F64 && t->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == dim;
    if (!ok) return df_fail(DF_ERR_FORMAT, "%s: no F64 tensor '%s' of the statistics' shape", f->path, name);
    memcpy(out, f->data + t->begin, t->end - t->begin);
    return DF_OK;
}

df_status df_fid_stats_load(const char *path, const char *key, df_fid_stats *s) {
    memset(s, 0, sizeof *s);
    df_st_file f;
    df_status st = df_st_read(path, &f);
    if (st != DF_OK) return st;
    const char *fkey = df_st_meta(&f, "fid.key"), *fn = df_st_meta(&f, "fid.n");
    const df_st_tensor *mu = df_st_find(&f, "mu");
    long n = fn ? atol(fn) : 0;
    if (!fkey || strcmp(fkey, key) != 0)
        st = df_fail(DF_ERR_FORMAT, "%s holds the statistics of another input (key '%s')", path, fkey ? fkey : "");
    else if (!mu || mu->ndim != 1 || mu->shape[0] < 1 || mu->shape[0] > 100000 || n < 2)
        st = df_fail(DF_ERR_FORMAT, "%s: not a file of FID statistics", path);
    if (st == DF_OK) st = stats_alloc((int)mu->shape[0], n, s);
    if (st == DF_OK) st = get_f64(&f, "mu", 1, s->dim, s->mu);
    if (st == DF_OK) st = get_f64(&f, "sigma", 2, s->dim, s->sigma);
    df_st_free(&f);
    if (st != DF_OK) df_fid_stats_free(s);
    return st;
}

/* ---------------------------------------------------------------- the distance */

/* Eigenvalues (ascending) into w and, with vectors, the eigenvectors into a's rows (a is symmetric
 * and row-major, so LAPACK's column-major view of it is the same matrix; the vectors it writes as
 * columns are then a's rows). */
static df_status sym_eigen(double *a, int n, int vectors, double *w) {
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int lwork = vectors ? 1 + 6 * n + 2 * n * n : 2 * n + 1, liwork = vectors ? 3 + 5 * n : 1, info = 0;
    double *work = df_alloc(sizeof(double) * (size_t)lwork, "eigensolver workspace");
    int *iwork = df_alloc(sizeof(int) * (size_t)liwork, "eigensolver workspace");
    if (work && iwork) dsyevd_(&jobz, &uplo, &n, a, &n, w, work, &lwork, iwork, &liwork, &info, 1, 1);
    df_free(work);
    df_free(iwork);
    if (!work || !iwork) return DF_ERR_NOMEM;
    if (info != 0) return df_fail(DF_ERR_UNSUPPORTED, "the symmetric eigensolver (dsyevd) failed (info %d)", info);
    return DF_OK;
}

/* tr((S1 S2)^{1/2}) as sum sqrt(eig(M)), M = L^{1/2} V^T S2 V L^{1/2} for S1 = V L V^T: M is
 * S1^{1/2} S2 S1^{1/2} in the eigenbasis of S1 (the same eigenvalues), and needs two products where
 * forming S1^{1/2} first would need three (at dim 2048 each is a second or more). */
static df_status trace_sqrt_product(int n, const double *s1, const double *s2, double *out) {
    const size_t nn = (size_t)n * n;
    double *v = df_alloc(sizeof(double) * nn, "FID matrices"), *t = df_alloc(sizeof(double) * nn, "FID matrices");
    double *m = df_alloc(sizeof(double) * nn, "FID matrices"), *w = df_alloc(sizeof(double) * (size_t)n, "FID");
    df_status st = v && t && m && w ? DF_OK : DF_ERR_NOMEM;
    if (st == DF_OK) {
        memcpy(v, s1, sizeof(double) * nn);
        st = sym_eigen(v, n, 1, w); /* row k of v: eigenvector k */
    }
    if (st == DF_OK) {
        /* with the eigenvectors as v's rows, V^T S2 V is v S2 v^T */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, v, n, s2, n, 0.0, t, n);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, t, n, v, n, 0.0, m, n);
        /* scale row and column k by sqrt(l_k), averaging away the rounding asymmetry so
         * that dsyevd sees one symmetric matrix */
        for (int k = 0; k < n; k++) w[k] = sqrt(w[k] > 0 ? w[k] : 0);
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++) {
                double a = 0.5 * (m[(size_t)i * n + j] + m[(size_t)j * n + i]) * w[i] * w[j];
                m[(size_t)i * n + j] = m[(size_t)j * n + i] = a;
            }
        st = sym_eigen(m, n, 0, w);
    }
    if (st == DF_OK) {
        double sum = 0;
        for (int k = 0; k < n; k++) sum += sqrt(w[k] > 0 ? w[k] : 0);
        *out = sum;
    }
    df_free(v);
    df_free(t);
    df_free(m);
    df_free(w);
    return st;
}

static int all_finite(const double *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

df_status df_frechet_distance(int dim, const double *mu1, const double *sigma1, const double *mu2,
                              const double *sigma2, double *d2) {
    if (dim < 1) return df_fail(DF_ERR_ARG, "the Frechet distance needs dim >= 1 (got %d)", dim);
    const size_t nn = (size_t)dim * dim;
    if (!all_finite(mu1, dim) || !all_finite(mu2, dim) || !all_finite(sigma1, nn) || !all_finite(sigma2, nn))
        return df_fail(DF_ERR_NAN, "the Frechet distance got a non-finite mean or covariance");
    double trs = 0;
    df_status st = trace_sqrt_product(dim, sigma1, sigma2, &trs);
    if (st != DF_OK) return st;
    double dmu = 0, tr1 = 0, tr2 = 0;
    for (int i = 0; i < dim; i++) {
        dmu += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
        tr1 += sigma1[(size_t)i * dim + i];
        tr2 += sigma2[(size_t)i * dim + i];
    }
    double d = dmu + tr1 + tr2 - 2 * trs;
    *d2 = d > 0 ? d : 0;
    return DF_OK;
}
