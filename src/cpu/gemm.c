/* gemm.c: df_gemm_f32 and df_gemm_bf16 (gemm.h): argument checks, CPU dispatch, bf16 rounding and
 * the fallback paths.
 *
 * What it is: each entry point checks its arguments, handles the cases with nothing to multiply
 * (empty C, K == 0, alpha == 0) and runs the blocked driver (gemm_blocked.c) in the format of the
 * CPU level in use (level_format below: the one place that maps a level to a kernel, gemm.h lists
 * them). The test hooks force the fallbacks instead: cblas_sgemm itself for fp32, and for bf16
 * blocks of op(A) and op(B) rounded to bf16 precision into the workspace as fp32 and multiplied
 * with cblas_sgemm. bf16 x bf16 products are exact in fp32, so the fallback computes the same
 * products as every bf16 kernel and differs only in summation order: it is the oracle the tests
 * compare the kernels with.
 */
#include "gemm.h"
#include "gemm_blocked.h"
#include "common.h"
#include "cpu.h"
#include <cblas.h>
#include <stdint.h>
#include <string.h>

/* Fallback blocks: the rounded op(A) block is FB_MC x FB_KC floats, the op(B) block FB_KC x FB_NC
 * (256 KiB + 1 MiB at most), large enough that each sgemm call is efficient. */
#define FB_KC 256
#define FB_MC 256
#define FB_NC 1024

static int g_force_fallback_bf16 = 0, g_force_fallback_f32 = 0;

static int imin(int a, int b) { return a < b ? a : b; }

/* VCVTNEPS2BF16 rounding of one fp32 value: returns the upper 16 bits of the result. */
static uint16_t bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7F800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u); /* zero, denormal: signed 0 */
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u); /* NaN: quiet */
    u += 0x7FFFu + ((u >> 16) & 1u); /* nearest, ties to even; carries into the exponent (inf) */
    return (uint16_t)(u >> 16);
}

static float bf16_round1(float f) {
    const uint32_t u = (uint32_t)bf16_bits(f) << 16;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

void df_bf16_round(const float *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = bf16_round1(in[i]);
}

/* The format each level runs (cpu.h): the one place that maps the CPU level to a GEMM. */
static const gemm_format *level_format(int bf16) {
    switch (df_cpu_isa()) {
    case DF_ISA_AVX512BF16: return bf16 ? df_gemm_format_bf16() : df_gemm_format_f32();
    case DF_ISA_AVX512: return bf16 ? df_gemm_format_bf16r() : df_gemm_format_f32();
    case DF_ISA_AVX2: return df_gemm_format_avx2(bf16);
    case DF_ISA_NEON: return df_gemm_format_neon(bf16);
    default: return df_gemm_format_generic(bf16);
    }
}

int df_gemm_bf16_native(void) { return !g_force_fallback_bf16; }
void df_gemm_bf16_force_fallback(int force) { g_force_fallback_bf16 = force != 0; }
int df_gemm_f32_native(void) { return !g_force_fallback_f32; }
void df_gemm_f32_force_fallback(int force) { g_force_fallback_f32 = force != 0; }

const char *df_gemm_path(int bf16) {
    if (bf16 ? g_force_fallback_bf16 : g_force_fallback_f32) return bf16 ? "bf16 rounding + cblas_sgemm" : "cblas_sgemm";
    switch (df_cpu_isa()) {
    case DF_ISA_AVX512BF16: return bf16 ? "avx512bf16 vdpbf16ps" : "avx512f vfmadd231ps";
    case DF_ISA_AVX512: return bf16 ? "avx512f vfmadd231ps, inputs rounded to bf16" : "avx512f vfmadd231ps";
    case DF_ISA_AVX2: return bf16 ? "avx2 vfmadd231ps, inputs rounded to bf16" : "avx2 vfmadd231ps";
    case DF_ISA_NEON: return bf16 ? "neon fmla, inputs rounded to bf16" : "neon fmla";
    default: return bf16 ? "generic C vectors, inputs rounded to bf16" : "generic C vectors";
    }
}

static size_t fallback_workspace(int M, int N, int K) {
    const size_t mc = (size_t)imin(M, FB_MC), kc = (size_t)imin(K, FB_KC), nc = (size_t)imin(N, FB_NC);
    return (mc * kc + kc * nc) * sizeof(float) + 64;
}

size_t df_gemm_bf16_workspace(int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    /* any path: the fallback, bf16 pairs (kw 2) or rounded fp32 words (kw 1) */
    const size_t fb = fallback_workspace(M, N, K), nat2 = df_gemm_blocked_workspace(2, M, K),
                 nat1 = df_gemm_blocked_workspace(1, M, K);
    const size_t nat = nat1 > nat2 ? nat1 : nat2;
    return fb > nat ? fb : nat;
}

/* C (M,N) = beta * C; beta == 0 writes zeros without reading C (cblas semantics). */
static void scale_c(float *C, int ldc, int M, int N, float beta) {
    for (int m = 0; m < M; m++) {
        float *c = C + (size_t)m * ldc;
        if (beta == 0.0f)
            memset(c, 0, (size_t)N * sizeof(float));
        else if (beta != 1.0f)
            for (int n = 0; n < N; n++) c[n] *= beta;
    }
}

/* dst (rows, cols) row-major = bf16-rounded block of op(X) at (r0, c0); op(X)[r][c] is
 * X[r*ld + c], or X[c*ld + r] when trans. */
static void round_block(float *dst, const float *X, int ld, int trans, int r0, int c0, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            const size_t at = trans ? (size_t)(c0 + c) * ld + (r0 + r) : (size_t)(r0 + r) * ld + (c0 + c);
            dst[(size_t)r * cols + c] = bf16_round1(X[at]);
        }
}

static void gemm_fallback(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc, void *workspace) {
    float *ab = (float *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    float *bb = ab + (size_t)imin(M, FB_MC) * imin(K, FB_KC);
    for (int pc = 0; pc < K; pc += FB_KC) {
        const int kc = imin(FB_KC, K - pc);
        const float beta_blk = pc == 0 ? beta : 1.0f;
        for (int jc = 0; jc < N; jc += FB_NC) {
            const int nc = imin(FB_NC, N - jc);
            round_block(bb, B, ldb, transB, pc, jc, kc, nc);
            for (int ic = 0; ic < M; ic += FB_MC) {
                const int mc = imin(FB_MC, M - ic);
                float *c = C + (size_t)ic * ldc + jc;
                round_block(ab, A, lda, transA, ic, pc, mc, kc);
                if (beta_blk == 0.0f) scale_c(c, ldc, mc, nc, 0.0f); /* NaN in C must not survive 0 * NaN */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, mc, nc, kc, alpha, ab, kc, bb, nc, beta_blk, c,
                            ldc);
            }
        }
    }
}

/* The checks both entry points share; returns 1 when there is nothing to multiply (C empty, or
 * C = beta C with K == 0 or alpha == 0), which it has then done. */
static int gemm_trivial(int transA, int transB, int M, int N, int K, float alpha, int lda, int ldb, float beta,
                        float *C, int ldc) {
    ASSERT(M >= 0 && N >= 0 && K >= 0);
    ASSERT(ldc >= (N > 1 ? N : 1));
    ASSERT(lda >= ((transA ? M : K) > 1 ? (transA ? M : K) : 1));
    ASSERT(ldb >= ((transB ? K : N) > 1 ? (transB ? K : N) : 1));
    if (M == 0 || N == 0) return 1;
    if (K == 0 || alpha == 0.0f) {
        scale_c(C, ldc, M, N, beta);
        return 1;
    }
    return 0;
}

void df_gemm_bf16(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float beta, float *C, int ldc, void *workspace) {
    if (gemm_trivial(transA, transB, M, N, K, alpha, lda, ldb, beta, C, ldc)) return;
    ASSERT(workspace != NULL);
    if (df_gemm_bf16_native())
        df_gemm_blocked(level_format(1), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                        workspace);
    else
        gemm_fallback(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, workspace);
}

size_t df_gemm_f32_workspace(int M, int N, int K) {
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    return df_gemm_blocked_workspace(1, M, K);
}

void df_gemm_f32(int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, void *workspace) {
    if (gemm_trivial(transA, transB, M, N, K, alpha, lda, ldb, beta, C, ldc)) return;
    if (df_gemm_f32_native()) {
        ASSERT(workspace != NULL);
        df_gemm_blocked(level_format(0), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc,
                        workspace);
        return;
    }
    /* Some OpenBLAS kernels compute beta * C even for beta == 0 (NaN in C would survive): zero C
     * first, then beta 0 cannot matter. */
    if (beta == 0.0f) scale_c(C, ldc, M, N, 0.0f);
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, M, N, K, alpha,
                A, lda, B, ldb, beta, C, ldc);
}

void df_gemm(int bf16, int transA, int transB, int M, int N, int K, float alpha, const float *A, int lda,
             const float *B, int ldb, float beta, float *C, int ldc, void *workspace) {
    if (bf16) df_gemm_bf16(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, workspace);
    else df_gemm_f32(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, workspace);
}

size_t df_gemm_workspace(int M, int N, int K) {
    const size_t a = df_gemm_f32_workspace(M, N, K), b = df_gemm_bf16_workspace(M, N, K);
    return a > b ? a : b;
}
