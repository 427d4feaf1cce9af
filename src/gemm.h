/* gemm.h: bf16 matrix product with fp32 accumulation (the --precision bf16 GEMM).
 *
 * What it is: df_gemm_bf16 has the semantics of cblas_sgemm(CblasRowMajor, ...) on float
 * matrices, except that every element of A and B is first rounded to bfloat16 (8-bit mantissa)
 * while it is packed; the products of two bf16 values are exact in fp32 and are summed in fp32.
 * Weights and activations stay fp32 in memory (fp32 master weights): only the GEMM inputs lose
 * precision, C is read and written as fp32.
 * On CPUs with AVX512_BF16 it runs a cache-blocked, packed kernel built on vdpbf16ps (dot
 * products of bf16 pairs into fp32). Elsewhere (or when forced, for tests) it rounds blocks of A
 * and B to bf16 precision in fp32 and multiplies them with OpenBLAS sgemm: the same products,
 * summed in another order, so the two paths agree to fp32 accumulation error.
 * What it is not: no bf16 storage format of its own, no bf16 output; not a general BLAS
 * (row-major only, no complex, no batched calls).
 *
 * Rounding (both paths, bit for bit): round-to-nearest-even as the VCVTNEPS2BF16 instruction does
 * it: fp32 denormals become a zero of the same sign, NaN stays NaN (quiet), overflow rounds to inf.
 * The AVX512_BF16 path also flushes denormal fp32 partial sums to zero (vdpbf16ps implies
 * DAZ/FTZ), which differs from the fallback only below 1.2e-38 in magnitude.
 */
#ifndef DF_GEMM_H
#define DF_GEMM_H

#include <stddef.h>

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

/* out[i] = in[i] rounded to bf16 precision as described above, kept in fp32. out may alias in.
 * The oracle for tests, and the rounding the fallback path uses. */
void df_bf16_round(const float *in, float *out, size_t n);

/* 1 when df_gemm_bf16 currently runs the AVX512_BF16 kernel, 0 when it runs the fallback. */
int df_gemm_bf16_native(void);

/* Test hook: force != 0 makes df_gemm_bf16 use the fallback path even on AVX512_BF16 CPUs;
 * 0 restores the automatic choice. Process-wide; not for use while GEMMs run on other threads. */
void df_gemm_bf16_force_fallback(int force);

/* ---- internal to gemm*.c: the AVX512_BF16 path (gemm_avx512.c), called by the dispatch
 * in gemm.c only when the CPU has AVX512_BF16/BW/VL. */
void df_gemm_bf16_avx512(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                         const float *B, int ldb, float beta, float *C, int ldc, void *workspace);
size_t df_gemm_bf16_avx512_workspace(int M, int N, int K);

#endif
