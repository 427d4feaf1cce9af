/* bench_gemm.c: df_gemm_f32 (fp32) and df_gemm_bf16 (bf16 inputs, fp32 accumulation) against
 * OpenBLAS cblas_sgemm on the matrix products of the U-Net's convolutions, at 1 and 2 threads.
 *
 * A program, not a test. Shapes are the conv GEMMs of ops_conv.c: forward out (OC x P) = W (OC x K)
 * cols (K x P) with K = IC*3*3, backward dW (OC x K) = dout (OC x P) cols^T and dcols (K x P) =
 * W^T dout (OC x P), with P = OH*OW for one image or for a whole batch. (dX of a stride-1 conv as
 * the forward conv of dout with flipped weights, wt (IC x OC*9) cols(dout), has the forward's
 * shape when IC == OC.) For each shape it first checks both routines against a double reference
 * (a sample of elements, on bf16-rounded inputs for bf16; tolerance as in test_gemm.c), warms up,
 * then reports the best (wall clock) or median (CPU clock) of at least REPEATS timings (more for
 * short shapes) for each (routine, threads) and the ratios to sgemm.
 * The AVX-512 kernels are used when the CPU has them (printed at the top).
 * Usage: bench_gemm [repeats] [cpu] (default 5 repeats). The machine may be shared: check `uptime`
 * first. With "cpu", only one thread runs and time is the thread's CPU time (CLOCK_THREAD_CPUTIME_ID):
 * on a loaded machine that still measures the code rather than the scheduler; wall-clock figures
 * of two threads are then meaningless and are not printed.
 */
#include "common.h"
#include "gemm.h"
#include <cblas.h>
#include <math.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

typedef struct {
    const char *name;
    int ta, tb, m, n, k;
} bench_shape;

static const bench_shape SHAPES[] = {
    /* fmnist-small, batch 64 (P = 64 images x OH*OW) */
    {"fwd 64<-64x9 14x14 b64", 0, 0, 64, 64 * 196, 576},
    {"fwd 32<-32x9 28x28 b64", 0, 0, 32, 64 * 784, 288},
    {"dW  64<-64x9 14x14 b64", 0, 1, 64, 576, 64 * 196},
    {"dx  64<-64x9 14x14 b64", 1, 0, 576, 64 * 196, 64},
    {"dx  32<-32x9 28x28 b64", 1, 0, 288, 64 * 784, 32},
    /* the same per image (ops_conv.c runs one image per thread) */
    {"fwd 64<-64x9 14x14 1img", 0, 0, 64, 196, 576},
    {"fwd 32<-32x9 28x28 1img", 0, 0, 32, 784, 288},
    {"fwd 64<-64x9 7x7 1img", 0, 0, 64, 49, 576},
    {"dW  64<-64x9 14x14 1img", 0, 1, 64, 576, 196},
    {"dW  32<-32x9 28x28 1img", 0, 1, 32, 288, 784},
    {"dx  64<-64x9 14x14 1img", 1, 0, 576, 196, 64},
    {"dx  32<-32x9 28x28 1img", 1, 0, 288, 784, 32},
    /* cifar10 (256 channels at 16x16, batch 16, and one image) */
    {"fwd 256<-256x9 16x16 b16", 0, 0, 256, 16 * 256, 2304},
    {"dW  256<-256x9 16x16 b16", 0, 1, 256, 2304, 16 * 256},
    {"dx  256<-256x9 16x16 b16", 1, 0, 2304, 16 * 256, 256},
    {"fwd 256<-256x9 16x16 1img", 0, 0, 256, 256, 2304},
    {"dW  256<-256x9 16x16 1img", 0, 1, 256, 2304, 256},
    {"dx  256<-256x9 16x16 1img", 1, 0, 2304, 256, 256},
};

static void fill(float *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((seed >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
}

/* Checks 200 sampled elements of C against the double reference (on bf16-rounded inputs when
 * bf16). */
static int validate(const bench_shape *s, int bf16, const float *a, const float *b, const float *c) {
    const int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    unsigned seed = 7;
    int bad = 0;
    for (int t = 0; t < 200; t++) {
        seed = seed * 1664525u + 1013904223u;
        const int i = (int)((seed >> 8) % (unsigned)s->m);
        seed = seed * 1664525u + 1013904223u;
        const int j = (int)((seed >> 8) % (unsigned)s->n);
        double ref = 0, bound = 0;
        for (int p = 0; p < s->k; p++) {
            float x = s->ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
            float y = s->tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
            if (bf16) {
                df_bf16_round(&x, &x, 1);
                df_bf16_round(&y, &y, 1);
            }
            ref += (double)x * y;
            bound += fabs((double)x * y);
        }
        /* fp32 summation bound, as in test_gemm.c */
        const double tol = (s->k + 2.0 * ((s->k + 191) / 192) + 4) * ldexp(1.0, -24) * bound;
        bad += !(fabs(c[(size_t)i * s->n + j] - ref) <= tol);
    }
    return bad;
}

static void set_threads(int t) {
#ifdef _OPENMP
    omp_set_num_threads(t);
#endif
    openblas_set_num_threads(t);
}

static int g_cpu_time = 0; /* time with the thread's CPU clock instead of the wall clock */

static double now(void) {
    if (!g_cpu_time) return df_time();
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * ts.tv_nsec;
}

enum { R_SGEMM, R_F32, R_BF16, R_COUNT };

static void run_gemm(int routine, const bench_shape *s, const float *a, const float *b, float *c, void *ws) {
    const int lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    if (routine == R_F32)
        df_gemm_f32(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n, ws);
    else if (routine == R_BF16)
        df_gemm_bf16(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n, ws);
    else
        cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->m, s->n,
                    s->k, 1.0f, a, lda, b, ldb, 0.0f, c, s->n);
}

static int cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Seconds of one run: the best of the runs after one warm-up by the wall clock (a loaded machine
 * only ever slows a run down), their median by the thread's CPU clock (on this VM it sometimes
 * undercounts a run, which the best would pick). At least `repeats` runs, more for short shapes
 * until they fill 50 ms (up to 256): a median of 5 runs of 40 us still varied by 2x. */
#define TIME_MAX_RUNS 256
static double time_gemm(int routine, const bench_shape *s, const float *a, const float *b, float *c, void *ws,
                        int repeats) {
    double t[TIME_MAX_RUNS], total = 0;
    int n = 0;
    run_gemm(routine, s, a, b, c, ws);
    while (n < TIME_MAX_RUNS && (n < repeats || total < 0.05)) {
        const double t0 = now();
        run_gemm(routine, s, a, b, c, ws);
        t[n] = now() - t0;
        total += t[n++];
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    return g_cpu_time ? t[n / 2] : t[0];
}

int main(int argc, char **argv) {
    const int repeats = argc > 1 && atoi(argv[1]) > 0 ? atoi(argv[1]) : 5;
    g_cpu_time = argc > 2 && strcmp(argv[2], "cpu") == 0;
    const int max_threads = g_cpu_time ? 1 : 2;
    printf("df_gemm_f32 path: %s; df_gemm_bf16 path: %s; %s of >= %d runs (50 ms); GFLOP/s by %s time\n",
           df_gemm_path(0), df_gemm_path(1),
           g_cpu_time ? "median" : "best", repeats,
           g_cpu_time ? "thread CPU" : "wall-clock");
    printf("%-27s %5s %5s %6s", "shape", "M", "N", "K");
    for (int t = 1; t <= max_threads; t++)
        printf(" | %5s%dt %5s%dt %5s%dt %6s %6s", "sgemm", t, "f32 ", t, "bf16 ", t, "f32/s", "bf16/s");
    printf("\n");
    int failed = 0;
    for (size_t si = 0; si < sizeof SHAPES / sizeof SHAPES[0]; si++) {
        const bench_shape *s = &SHAPES[si];
        const size_t na = (size_t)s->m * s->k, nb = (size_t)s->k * s->n, nc = (size_t)s->m * s->n;
        float *a = df_alloc(na * sizeof(float), "bench A"), *b = df_alloc(nb * sizeof(float), "bench B");
        float *c = df_alloc(nc * sizeof(float), "bench C");
        const size_t wf = df_gemm_f32_workspace(s->m, s->n, s->k), wb = df_gemm_bf16_workspace(s->m, s->n, s->k);
        void *ws = df_alloc((wf > wb ? wf : wb) + 64, "bench workspace");
        if (!a || !b || !c || !ws) return 1;
        fill(a, na, 1u + (unsigned)si);
        fill(b, nb, 100u + (unsigned)si);
        set_threads(2);
        int bad = 0;
        for (int r = R_F32; r <= R_BF16; r++) {
            run_gemm(r, s, a, b, c, ws);
            bad += validate(s, r == R_BF16, a, b, c);
        }
        failed += bad != 0;
        const double flops = 2.0 * s->m * s->n * s->k;
        printf("%-27s %5d %5d %6d", s->name, s->m, s->n, s->k);
        for (int t = 1; t <= max_threads; t++) {
            set_threads(t);
            double g[R_COUNT];
            for (int r = 0; r < R_COUNT; r++) g[r] = flops / time_gemm(r, s, a, b, c, ws, repeats) * 1e-9;
            printf(" | %7.1f %7.1f %7.1f %5.2fx %5.2fx", g[R_SGEMM], g[R_F32], g[R_BF16], g[R_F32] / g[R_SGEMM],
                   g[R_BF16] / g[R_SGEMM]);
        }
        printf("%s\n", bad ? "  WRONG RESULT" : "");
        fflush(stdout);
        df_free(a);
        df_free(b);
        df_free(c);
        df_free(ws);
    }
    return failed ? 1 : 0;
}
