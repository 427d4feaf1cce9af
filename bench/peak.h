/* peak.h: the machine's measured arithmetic peaks, for bench_unet --peaks (and --matrix).
 *
 * A header of static functions so that it is not one more bench program (CMake builds every
 * .c file in bench/ as its own executable). Measured, not computed from a data sheet:
 *   - fp32 FMA peak: a loop of vfmadd on PEAK_ACC independent accumulators (enough to cover the
 *     FMA latency times the number of FMA pipes), AVX-512F when the CPU has it, else AVX2+FMA,
 *     else plain scalar multiply-adds; 2 flops per lane per FMA;
 *   - bf16 peak: the same loop on vdpbf16ps (AVX512_BF16: 2 bf16 products per fp32 lane, summed
 *     into the lane: 4 flops per lane per instruction), when the CPU has it;
 *   - OpenBLAS cblas_sgemm, df_gemm_f32 and df_gemm_bf16 on one large square product (n^3).
 * Every loop runs on T threads at once (OpenMP), each thread the same count of instructions;
 * GFLOP/s = T x per-thread flops / wall time, the best of PEAK_REPS runs after a warm-up.
 */
#ifndef BENCH_PEAK_H
#define BENCH_PEAK_H

#include "common.h"
#include "gemm.h"
#include <cblas.h>
#include <math.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PEAK_X86 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#define PEAK_ACC 24  /* independent accumulators: covers e.g. 2 pipes x 6 cycles of latency */
#define PEAK_REPS 3

static volatile float g_peak_sink; /* keeps the loops' results alive */

#ifdef PEAK_X86
/* PEAK_ACC x 16 lanes x 2 flops per iteration. acc = acc * a + b converges to 1: no overflow, no
 * denormals. */
__attribute__((target("avx512f"))) static float peak_loop_avx512(long iters) {
    __m512 acc[PEAK_ACC];
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
    for (int k = 0; k < PEAK_ACC; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 32
        for (int k = 0; k < PEAK_ACC; k++) acc[k] = _mm512_fmadd_ps(acc[k], a, b);
    }
    for (int k = 1; k < PEAK_ACC; k++) acc[0] = _mm512_add_ps(acc[0], acc[k]);
    return _mm512_reduce_add_ps(acc[0]);
}

/* 12 x 8 lanes x 2 flops per iteration (16 ymm registers). */
__attribute__((target("avx2,fma"))) static float peak_loop_avx2(long iters) {
    __m256 acc[12];
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
    for (int k = 0; k < 12; k++) acc[k] = _mm256_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 16
        for (int k = 0; k < 12; k++) acc[k] = _mm256_fmadd_ps(acc[k], a, b);
    }
    float out[8], s = 0;
    for (int k = 1; k < 12; k++) acc[0] = _mm256_add_ps(acc[0], acc[k]);
    _mm256_storeu_ps(out, acc[0]);
    for (int k = 0; k < 8; k++) s += out[k];
    return s;
}

/* PEAK_ACC x 16 lanes x 4 flops per iteration (each lane adds two bf16 products). */
__attribute__((target("avx512f,avx512bf16"))) static float peak_loop_bf16(long iters) {
    __m512 acc[PEAK_ACC];
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(2e-3f), _mm512_set1_ps(2e-3f));
    for (int k = 0; k < PEAK_ACC; k++) acc[k] = _mm512_set1_ps((float)k);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 32
        for (int k = 0; k < PEAK_ACC; k++) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
    }
    for (int k = 1; k < PEAK_ACC; k++) acc[0] = _mm512_add_ps(acc[0], acc[k]);
    return _mm512_reduce_add_ps(acc[0]);
}
#endif

/* 8 scalar accumulators x 2 flops per iteration (no FMA assumed). */
static float peak_loop_scalar(long iters) {
    float acc[8];
    for (int k = 0; k < 8; k++) acc[k] = (float)k;
    for (long i = 0; i < iters; i++)
        for (int k = 0; k < 8; k++) acc[k] = acc[k] * 0.999999f + 1e-6f;
    float s = 0;
    for (int k = 0; k < 8; k++) s += acc[k];
    return s;
}

typedef struct {
    float (*loop)(long);
    double flops_per_iter;
    const char *path;
} peak_kernel;

/* The fp32 FMA loop this CPU runs. */
static peak_kernel peak_fp32_kernel(void) {
#ifdef PEAK_X86
    const df_isa isa = df_cpu_isa(); /* the level in use (DIFFUSE_ISA), not merely what the CPU has */
    if (isa == DF_ISA_AVX512 || isa == DF_ISA_AVX512BF16)
        return (peak_kernel){peak_loop_avx512, PEAK_ACC * 16 * 2.0, "avx512f vfmadd231ps"};
    if (isa == DF_ISA_AVX2)
        return (peak_kernel){peak_loop_avx2, 12 * 8 * 2.0, "avx2 vfmadd231ps"};
#endif
    return (peak_kernel){peak_loop_scalar, 8 * 2.0, "scalar"};
}

/* The bf16 dot-product loop, or loop NULL when the CPU has no AVX512_BF16. */
static peak_kernel peak_bf16_kernel(void) {
#ifdef PEAK_X86
    if (df_cpu_isa() == DF_ISA_AVX512BF16) return (peak_kernel){peak_loop_bf16, PEAK_ACC * 16 * 4.0, "avx512bf16 vdpbf16ps"};
#endif
    return (peak_kernel){NULL, 0, "none (level without AVX512_BF16)"};
}

static double peak_run_parallel(const peak_kernel *k, long iters, int threads) {
    float sink = 0;
    const double t0 = df_time();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : sink)
#endif
    sink += k->loop(iters);
    const double t = df_time() - t0;
    g_peak_sink = sink;
    return t;
}

/* GFLOP/s of kernel k on `threads` threads, each running about `seconds` per repetition. */
static double peak_loop_gflops(const peak_kernel *k, int threads, double seconds) {
    if (!k->loop) return NAN;
    /* calibrate on one thread: grow the count until a run takes 20 ms */
    long iters = 1 << 14;
    double t = 0;
    for (;;) {
        t = peak_run_parallel(k, iters, 1);
        if (t > 0.02 || iters > (1L << 40)) break;
        iters *= 4;
    }
    iters = (long)(iters * (seconds / t)) + 1;
    peak_run_parallel(k, iters / 8 + 1, threads); /* wake the team */
    double best = INFINITY;
    for (int r = 0; r < PEAK_REPS; r++) best = fmin(best, peak_run_parallel(k, iters, threads));
    return threads * k->flops_per_iter * (double)iters / best * 1e-9;
}

enum { PEAK_SGEMM, PEAK_DF_F32, PEAK_DF_BF16 };

/* GFLOP/s of an n x n x n product (C = A B) by OpenBLAS sgemm, df_gemm_f32 or df_gemm_bf16 on
 * `threads` threads: the best of PEAK_REPS runs after a warm-up. NAN when memory runs out. */
static double peak_gemm_gflops(int routine, int n, int threads) {
    const size_t nn = (size_t)n * n;
    float *a = df_alloc(nn * sizeof(float), "peak A"), *b = df_alloc(nn * sizeof(float), "peak B");
    float *c = df_alloc(nn * sizeof(float), "peak C");
    size_t wf = df_gemm_f32_workspace(n, n, n), wb = df_gemm_bf16_workspace(n, n, n);
    void *ws = df_alloc((wf > wb ? wf : wb) + 64, "peak workspace");
    double best = INFINITY;
    if (a && b && c && ws) {
        unsigned s = 12345u;
        for (size_t i = 0; i < nn; i++) {
            s = s * 1664525u + 1013904223u;
            a[i] = (float)((s >> 8) * (1.0 / 16777216.0)) - 0.5f;
            b[i] = (float)((s >> 9) * (1.0 / 8388608.0)) - 0.5f;
        }
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        openblas_set_num_threads(threads);
        for (int r = 0; r <= PEAK_REPS; r++) {
            const double t0 = df_time();
            if (routine == PEAK_SGEMM)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            else if (routine == PEAK_DF_F32)
                df_gemm_f32(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, ws);
            else
                df_gemm_bf16(0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, ws);
            const double t = df_time() - t0;
            if (r > 0) best = fmin(best, t); /* r = 0 is the warm-up */
        }
        g_peak_sink = c[nn / 2];
    }
    df_free(a);
    df_free(b);
    df_free(c);
    df_free(ws);
    return isfinite(best) ? 2.0 * n * (double)n * n / best * 1e-9 : NAN;
}

#endif
