/* gemm.h: the library's own matrix products, with cblas_sgemm(CblasRowMajor, ...) semantics:
 * df_gemm_f32 (fp32, the default precision) and df_gemm_bf16 (the --precision bf16 GEMM).
 *
 * Why not OpenBLAS alone: Debian's OpenBLAS 0.3.21 runs its Haswell AVX2 sgemm kernel on Zen 5
 * (~100 GFLOP/s per core); the 512-bit kernels here reach ~2x that in fp32 and ~3x in bf16.
 * Both share one cache-blocked, packed, OpenMP-threaded driver with 8 x 48 micro-kernels
 * (gemm_blocked.h) and differ in how they pack the inputs and multiply them.
 *
 * Which kernel runs is the CPU level's (cpu.h), decided in gemm.c's level_format:
 *   avx512, avx512bf16  fp32: the vfmadd231ps kernel (gemm_f32_avx512.c)
 *   avx512bf16          bf16: the vdpbf16ps kernel (gemm_avx512.c)
 *   avx512              bf16: the fp32 kernel on inputs rounded to bf16 as they are packed
 *   avx2, neon, generic fp32 and bf16 (rounded the same way): the portable kernels of gemm_vec.c
 * The test hooks below force OpenBLAS's cblas_sgemm instead (bf16: blocks rounded first), the
 * oracle the tests compare every kernel with. Kernels and fallback sum in different orders, so
 * they agree to fp32 accumulation error, not bit for bit.
 *
 * df_gemm_bf16: every element of A and B is first rounded to bfloat16 (8-bit mantissa) while it
 * is packed; the products of two bf16 values are exact in fp32 and are summed in fp32.
 * Weights and activations stay fp32 in memory (fp32 master weights): only the GEMM inputs lose
 * precision, C is read and written as fp32.
 * What it is not: no bf16 storage format of its own, no bf16 output; not a general BLAS
 * (row-major only, no complex, no batched calls).
 *
 * Rounding (every path, bit for bit): round-to-nearest-even as the VCVTNEPS2BF16 instruction does
 * it: fp32 denormals become a zero of the same sign, NaN stays NaN (quiet), overflow rounds to inf.
 * The AVX512_BF16 path also flushes denormal fp32 partial sums to zero (vdpbf16ps implies
 * DAZ/FTZ), which differs from the fallback only below 1.2e-38 in magnitude.
 */
#ifndef DF_GEMM_H
#define DF_GEMM_H

#include <stddef.h>

/* C (M,N) = alpha * op(A) op(B) + beta * C in fp32, row-major, op(X) = X or X^T (transX != 0),
 * op(A) (M,K) and op(B) (K,N): cblas_sgemm(CblasRowMajor, ...) with the same arguments.
 *   A: (M,K) with row stride lda >= K when transA == 0; (K,M) with lda >= M when transA != 0.
 *   B: (K,N) with ldb >= N when transB == 0; (N,K) with ldb >= K when transB != 0.
 *   C: (M,N) with ldc >= N. beta == 0 overwrites C without reading it (NaN in C is ignored);
 *      alpha == 0 or K == 0 gives C = beta * C.
 * workspace: at least df_gemm_f32_workspace(M, N, K) bytes, any alignment, owned by the caller
 * and overwritten; callers running GEMMs concurrently need one workspace each.
 * Threads: OpenMP over blocks of C with omp_get_max_threads() threads; inside an active parallel
 * region it runs on the calling thread only. On the AVX-512F path each element of C is summed by
 * one thread in a fixed order, so results do not depend on the thread count; the fallback leaves
 * threads (and that question) to OpenBLAS. Never allocates, never prints. */
void df_gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, void *workspace);

/* Bytes of workspace df_gemm_f32 needs for these sizes, whichever path runs (each thread's B strip,
 * 36 KiB, lives on its stack). At most 768 KiB + 64, whatever the sizes. */
size_t df_gemm_f32_workspace(int M, int N, int K);

/* What df_gemm_f32 (bf16 == 0) or df_gemm_bf16 runs now, in words: the level's kernel (cpu.h), or
 * the cblas fallback a test hook forced. */
const char *df_gemm_path(int bf16);

/* 1 when df_gemm_f32 runs the level's own kernel (cpu.h), 0 when a test hook forced cblas_sgemm. */
int df_gemm_f32_native(void);

/* Test hook: force != 0 makes df_gemm_f32 call cblas_sgemm even on AVX-512F CPUs; 0 restores the
 * automatic choice. Process-wide; not for use while GEMMs run on other threads. */
void df_gemm_f32_force_fallback(int force);

/* C (M,N) = alpha * op(A) op(B) + beta * C, row-major, op(X) = X or X^T (transX != 0), with
 * op(A) (M,K) and op(B) (K,N) rounded to bf16 and accumulated in fp32.
 *   A: (M,K) with row stride lda >= K when transA == 0; (K,M) with lda >= M when transA != 0.
 *   B: (K,N) with ldb >= N when transB == 0; (N,K) with ldb >= K when transB != 0.
 *   C: (M,N) with ldc >= N. beta == 0 overwrites C without reading it (NaN in C is ignored);
 *      alpha == 0 or K == 0 gives C = beta * C.
 * workspace: at least df_gemm_bf16_workspace(M, N, K) bytes, any alignment, owned by the caller
 * and overwritten; callers running GEMMs concurrently need one workspace each.
 * Threads: OpenMP over blocks of C with omp_get_max_threads() threads; inside an active parallel
 * region it runs on the calling thread only. Never allocates, never prints. */
void df_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc, void *workspace);

/* Bytes of workspace df_gemm_bf16 needs for these sizes; enough for either path and any thread
 * count (the per-thread panels live on the stack). At most about 1.3 MiB, whatever the sizes. */
size_t df_gemm_bf16_workspace(int M, int N, int K);

/* df_gemm_bf16 when bf16 != 0, else df_gemm_f32, with the same arguments: one call site for code
 * that has a precision setting (the convolutions). */
void df_gemm(int bf16, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc, void *workspace);

/* Bytes of workspace that either df_gemm_f32 or df_gemm_bf16 needs for these sizes (the larger of
 * the two), so that one buffer serves whichever precision runs. */
size_t df_gemm_workspace(int M, int N, int K);

/* out[i] = in[i] rounded to bf16 precision as described above, kept in fp32. out may alias in.
 * The oracle for tests, and the rounding the fallback path uses. */
void df_bf16_round(const float *in, float *out, size_t n);

/* 1 when df_gemm_bf16 runs the level's own kernel, 0 when a test hook forced the fallback. */
int df_gemm_bf16_native(void);

/* Test hook: force != 0 makes df_gemm_bf16 use the fallback path even on AVX512_BF16 CPUs;
 * 0 restores the automatic choice. Process-wide; not for use while GEMMs run on other threads. */
void df_gemm_bf16_force_fallback(int force);

#endif
