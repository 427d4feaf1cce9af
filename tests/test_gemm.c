/* test_gemm.c: df_gemm_bf16 (gemm.h) against a double-precision reference on bf16-rounded inputs.
 *
 * Checks, on the AVX512_BF16 path (when the CPU has it) and on the forced fallback:
 *  (a) df_bf16_round on hand-computed values (ties to even, denormals, NaN, overflow), and that
 *      the GEMM's own rounding (K = 1, A = 1) is bit-identical to df_bf16_round on random bit
 *      patterns, for both layouts of B;
 *  (b) a table of shapes (odd sizes, tails of every tile and block, several K and M blocks, 1 to
 *      3 threads) x all four transpose combinations x alpha/beta (beta 0 over a C full of NaN,
 *      beta 1 accumulating, general), with leading dimensions larger than the minimum whose
 *      padding holds NaN (it must never be read) or sentinels (C padding must not be written),
 *      and guard bytes after the workspace;
 *  (c) the two paths agree with each other to the same tolerance;
 *  (d) alpha == 0, K == 0, M or N == 0, NaN propagation, and GEMMs called from inside a parallel
 *      region, each thread with its own workspace.
 * Tolerance: the products of two bf16 values are exact in fp32, so the only error is fp32
 * summation: at most one rounding per addition, i.e. |err| <= (K + extra) * 2^-24 * sum_k |a_k b_k|
 * (Higham, Accuracy and Stability, eq. 3.5), plus the roundings of alpha*acc, +beta*C and of the
 * partial sums stored in C between K blocks (extra = 8 covers them). Skipping the bf16 rounding
 * (errors ~ 2^-9 per product) or losing a product (~ sum/K) exceeds it for every K tested.
 */
#include "check.h"
#include "common.h"
#include "gemm.h"
#include <stdint.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static uint32_t rng_state = 12345u;
static uint32_t rng_u32(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    uint32_t x = rng_state;
    x ^= x >> 15;
    x *= 0x2c1b3c6dU;
    x ^= x >> 12;
    return x;
}
static float rng_uniform(void) { return (float)((rng_u32() >> 8) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

static float f_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* ---------------------------------------------------------------- (a) rounding */
static void test_round_values(void) {
    const struct {
        uint32_t in, want;
    } cases[] = {
        {0x3F800000u, 0x3F800000u}, /* 1 */
        {0x3F808000u, 0x3F800000u}, /* 1 + 2^-8: tie, even (1) wins */
        {0x3F818000u, 0x3F820000u}, /* 1 + 3*2^-8: tie, even (1 + 2^-6) wins */
        {0x3F808001u, 0x3F810000u}, /* just above the tie: up */
        {0x3F807FFFu, 0x3F800000u}, /* just below: down */
        {0xBF818000u, 0xBF820000u}, /* sign symmetric */
        {0x7F7FFFFFu, 0x7F800000u}, /* FLT_MAX rounds up to inf */
        {0x7F800000u, 0x7F800000u}, /* inf */
        {0xFF800000u, 0xFF800000u}, /* -inf */
        {0x00000001u, 0x00000000u}, /* denormal: 0 (as VCVTNEPS2BF16) */
        {0x807FFFFFu, 0x80000000u}, /* negative denormal: -0 */
        {0x00800000u, 0x00800000u}, /* FLT_MIN stays */
        {0x80000000u, 0x80000000u}, /* -0 */
        {0x7F800001u, 0x7FC00000u}, /* signalling NaN (payload in low bits only): quiet NaN */
        {0xFFC12345u, 0xFFC10000u}, /* quiet NaN keeps sign and top payload */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        float out;
        const float in = f_from_bits(cases[i].in);
        df_bf16_round(&in, &out, 1);
        CHECK(bits_of(out) == cases[i].want, "df_bf16_round(0x%08x) = 0x%08x, want 0x%08x", cases[i].in,
              bits_of(out), cases[i].want);
    }
}

/* C (1 x n) = 1 * b with K = 1: each output is the GEMM's rounding of one input, exactly. */
static void test_round_in_gemm(const char *path) {
    enum { n = 4099 };
    float *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    const size_t wsb = df_gemm_bf16_workspace(1, n, 1);
    void *ws = malloc(wsb);
    for (int i = 0; i < n; i++) {
        uint32_t u = rng_u32();
        if (i % 7 == 0) u &= 0x807FFFFFu;          /* denormals and zeros */
        if (i % 11 == 0) u |= 0x7F800000u;         /* inf and NaN */
        if (i % 13 == 0) u = (u & 0xFFFF0000u) | 0x8000u; /* exact ties */
        b[i] = f_from_bits(u);
    }
    df_bf16_round(b, want, n);
    const float one = 1.0f;
    for (int trans = 0; trans < 2; trans++) {
        /* (K=1, N) row-major, or its transpose (N, K=1) with ldb = 1 */
        df_gemm_bf16(0, trans, 1, n, 1, 1.0f, &one, 1, b, trans ? 1 : n, 0.0f, c, n, ws);
        int bad = 0, first = -1;
        for (int i = 0; i < n; i++) {
            /* == : the sum 0 + (-0) is +0, so zeros compare without their sign */
            const int same = isnan(want[i]) ? isnan(c[i]) != 0 : c[i] == want[i];
            if (!same && first < 0) first = i;
            bad += !same;
        }
        CHECK(bad == 0, "%s transB=%d: %d of %d roundings differ from df_bf16_round (first: 0x%08x -> 0x%08x, want 0x%08x)",
              path, trans, bad, n, first >= 0 ? bits_of(b[first]) : 0, first >= 0 ? bits_of(c[first]) : 0,
              first >= 0 ? bits_of(want[first]) : 0);
    }
    free(b);
    free(c);
    free(want);
    free(ws);
}

/* ---------------------------------------------------------------- (b) the shape table */
typedef struct {
    int m, n, k, threads; /* threads 0: leave the default (OMP_NUM_THREADS=2 under ctest) */
} gemm_case;

/* Block sizes of the AVX512_BF16 path (gemm_avx512.c): tiles of 8 x 48 (N tails of 1-16 and
 * 17-32 use narrower kernels), K blocks of <= 384 (balanced, even), M blocks of <= 384 KiB of
 * packed A, C panels of 512 KiB when there are several K blocks; threads from 4e6 multiply-adds
 * up (the "threads" comments below assume OMP_NUM_THREADS=2, as ctest sets). */
static const gemm_case CASES[] = {
    {1, 1, 1, 0}, {1, 17, 3, 0}, {3, 7, 2, 0},   /* tiny: one partial tile, odd K */
    {7, 33, 100, 0}, {8, 48, 32, 0}, {9, 49, 33, 0}, /* exact tile, one past it in M and N */
    {33, 100, 7, 0}, {16, 96, 64, 0}, {5, 1000, 9, 0}, /* N tails of 4 and 40, conv_in-like K */
    {17, 5, 1001, 0},     /* three K blocks, the last odd */
    {100, 130, 385, 0},   /* two K blocks (194 + 191), two threads */
    {40, 200, 800, 0},    /* three K blocks */
    {700, 50, 40, 0},     /* tall, small K */
    {64, 300, 576, 0}, {64, 300, 576, 1}, /* a conv layer at 2 and 1 threads */
    {100, 130, 385, 3}, {345, 97, 131, 3}, /* 3 threads: the thread grid with an odd count */
    {2, 2000, 1100, 0},   /* wide: N split across threads, tail of 32 columns */
    {1400, 3, 1000, 0},   /* one column strip: M split across threads, three M blocks */
    {1200, 20, 770, 0},   /* two M blocks (double-buffered packed A) x three K blocks */
    {520, 300, 386, 0},   /* two K blocks x two panels of C columns */
};

#define EXTRA_ROUNDINGS 8
#define PAD 5 /* extra columns of every leading dimension */
#define GUARD 64

/* Evidence printed at the end: worst err/tol against the reference, and between the paths. */
static double g_worst_ref = 0, g_worst_ratio = 0;

/* The fixture of one case: inputs with NaN padding, the rounded copies and the double reference. */
typedef struct {
    int m, n, k, ta, tb, lda, ldb, ldc;
    float *a, *b, *c0;     /* as stored: A (M,K) or (K,M); B (K,N) or (N,K); C0 (M, ldc) */
    double *prod, *bound;  /* (M,N): sum_k ra rb in double; sum_k |ra rb| */
} fixture;

static float *fill_matrix(int rows, int cols, int ld) {
    float *p = malloc((size_t)rows * ld * sizeof(float));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < ld; c++) p[(size_t)r * ld + c] = c < cols ? rng_uniform() : NAN;
    return p;
}

static void fixture_init(fixture *f, const gemm_case *gc, int ta, int tb) {
    f->m = gc->m; f->n = gc->n; f->k = gc->k; f->ta = ta; f->tb = tb;
    const int arows = ta ? f->k : f->m, acols = ta ? f->m : f->k;
    const int brows = tb ? f->n : f->k, bcols = tb ? f->k : f->n;
    f->lda = acols + PAD; f->ldb = bcols + PAD; f->ldc = f->n + PAD;
    f->a = fill_matrix(arows, acols, f->lda);
    f->b = fill_matrix(brows, bcols, f->ldb);
    f->c0 = fill_matrix(f->m, f->n, f->ldc);
    float *ra = malloc((size_t)arows * f->lda * sizeof(float)), *rb = malloc((size_t)brows * f->ldb * sizeof(float));
    df_bf16_round(f->a, ra, (size_t)arows * f->lda);
    df_bf16_round(f->b, rb, (size_t)brows * f->ldb);
    f->prod = malloc((size_t)f->m * f->n * sizeof(double));
    f->bound = malloc((size_t)f->m * f->n * sizeof(double));
    for (int i = 0; i < f->m; i++)
        for (int j = 0; j < f->n; j++) {
            double s = 0, sa = 0;
            for (int p = 0; p < f->k; p++) {
                const double x = ta ? ra[(size_t)p * f->lda + i] : ra[(size_t)i * f->lda + p];
                const double y = tb ? rb[(size_t)j * f->ldb + p] : rb[(size_t)p * f->ldb + j];
                s += x * y;
                sa += fabs(x * y);
            }
            f->prod[(size_t)i * f->n + j] = s;
            f->bound[(size_t)i * f->n + j] = sa;
        }
    free(ra);
    free(rb);
}

static void fixture_free(fixture *f) {
    free(f->a); free(f->b); free(f->c0); free(f->prod); free(f->bound);
}

/* Runs one GEMM of the fixture with (alpha, beta) into c (allocated here, returned) and checks it.
 * C starts as c0, or all NaN when beta == 0 (it must not be read). */
static float *run_and_check(const fixture *f, float alpha, float beta, const char *path, int threads) {
    const size_t csize = (size_t)f->m * f->ldc;
    float *c = malloc((csize + GUARD) * sizeof(float));
    for (size_t i = 0; i < csize + GUARD; i++) c[i] = (i < csize && beta != 0.0f) ? f->c0[i] : NAN;
    for (int i = 0; i < f->m; i++) /* C padding: a sentinel that must survive */
        for (int j = f->n; j < f->ldc; j++) c[(size_t)i * f->ldc + j] = 1234.5f;
    const size_t wsb = df_gemm_bf16_workspace(f->m, f->n, f->k);
    unsigned char *ws = malloc(wsb + 4 + GUARD);
    memset(ws, 0xA5, wsb + 4 + GUARD);
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
#endif
    /* ws + 4: the workspace need not be aligned */
    df_gemm_bf16(f->ta, f->tb, f->m, f->n, f->k, alpha, f->a, f->lda, f->b, f->ldb, beta, c, f->ldc, ws + 4);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    double worst = 0; /* max err / tol */
    int bad = 0, bi = -1, bj = -1;
    const double u = ldexp(1.0, -24);
    for (int i = 0; i < f->m; i++)
        for (int j = 0; j < f->n; j++) {
            const size_t at = (size_t)i * f->n + j;
            const double c0 = beta != 0.0f ? f->c0[(size_t)i * f->ldc + j] : 0.0;
            const double want = alpha * f->prod[at] + beta * c0;
            const double tol = (f->k + EXTRA_ROUNDINGS) * u * (fabs(alpha) * f->bound[at] + fabs(beta * c0)) + 1e-30;
            const double err = fabs((double)c[(size_t)i * f->ldc + j] - want);
            if (!(err <= tol) && bad++ == 0) {
                bi = i;
                bj = j;
            }
            if (!(err / tol <= worst)) worst = err / tol;
        }
    if (worst > g_worst_ref) g_worst_ref = worst;
    int pad_ok = 1, guard_ok = 1;
    for (int i = 0; i < f->m; i++)
        for (int j = f->n; j < f->ldc; j++) pad_ok &= c[(size_t)i * f->ldc + j] == 1234.5f;
    for (size_t i = csize; i < csize + GUARD; i++) guard_ok &= isnan(c[i]);
    for (size_t i = 0; i < 4; i++) guard_ok &= ws[i] == 0xA5;
    for (size_t i = wsb + 4; i < wsb + 4 + GUARD; i++) guard_ok &= ws[i] == 0xA5;
    CHECK(bad == 0, "%s %dx%dx%d ta=%d tb=%d alpha=%g beta=%g threads=%d: %d elements off, first (%d,%d); worst err/tol %.3g",
          path, f->m, f->n, f->k, f->ta, f->tb, alpha, beta, threads, bad, bi, bj, worst);
    CHECK(pad_ok && guard_ok, "%s %dx%dx%d ta=%d tb=%d: write outside C or outside the workspace", path, f->m, f->n,
          f->k, f->ta, f->tb);
    free(ws);
    return c;
}


static void test_case(const gemm_case *gc, int ta, int tb, int native) {
    fixture f;
    fixture_init(&f, gc, ta, tb);
    const float alphas[3] = {1.0f, 1.0f, -0.75f}, betas[3] = {0.0f, 1.0f, 2.5f};
    for (int v = 0; v < 3; v++) {
        float *cn = NULL;
        if (native) {
            df_gemm_bf16_force_fallback(0);
            cn = run_and_check(&f, alphas[v], betas[v], "avx512bf16", gc->threads);
        }
        df_gemm_bf16_force_fallback(1);
        float *cf = run_and_check(&f, alphas[v], betas[v], "fallback", gc->threads);
        df_gemm_bf16_force_fallback(0);
        if (cn) { /* (c) the paths agree: both are within tol of the reference, so within 2 tol */
            const double u = ldexp(1.0, -24);
            double worst = 0;
            int bad = 0;
            for (int i = 0; i < f.m; i++)
                for (int j = 0; j < f.n; j++) {
                    const size_t at = (size_t)i * f.n + j;
                    const double c0 = betas[v] != 0.0f ? f.c0[(size_t)i * f.ldc + j] : 0.0;
                    const double tol =
                        2 * (f.k + EXTRA_ROUNDINGS) * u * (fabs(alphas[v]) * f.bound[at] + fabs(betas[v] * c0)) + 1e-30;
                    const double d = fabs((double)cn[(size_t)i * f.ldc + j] - cf[(size_t)i * f.ldc + j]);
                    bad += !(d <= tol);
                    if (d / tol > worst) worst = d / tol;
                }
            if (worst > g_worst_ratio) g_worst_ratio = worst;
            CHECK(bad == 0, "%dx%dx%d ta=%d tb=%d: native and fallback differ in %d elements (worst %.3g of tol)", f.m,
                  f.n, f.k, ta, tb, bad, worst);
        }
        free(cn);
        free(cf);
    }
    fixture_free(&f);
}

/* ---------------------------------------------------------------- (d) special arguments */
static void test_special(const char *path) {
    enum { M = 5, N = 40, K = 20 };
    float a[M * K], b[K * N], c[M * N];
    void *ws = malloc(df_gemm_bf16_workspace(M, N, K));
    for (int i = 0; i < M * K; i++) a[i] = rng_uniform();
    for (int i = 0; i < K * N; i++) b[i] = rng_uniform();
    /* alpha == 0: C = beta * C, inputs not used (NaN there must not matter) */
    float an[M * K];
    for (int i = 0; i < M * K; i++) an[i] = NAN;
    for (int i = 0; i < M * N; i++) c[i] = (float)i;
    df_gemm_bf16(0, 0, M, N, K, 0.0f, an, K, b, N, 2.0f, c, N, ws);
    int ok = 1;
    for (int i = 0; i < M * N; i++) ok &= c[i] == 2.0f * i;
    CHECK(ok, "%s: alpha 0 must give C = beta C", path);
    /* K == 0 with beta 0: zeros even over NaN */
    for (int i = 0; i < M * N; i++) c[i] = NAN;
    df_gemm_bf16(0, 0, M, N, 0, 1.0f, a, 1, b, N, 0.0f, c, N, NULL);
    ok = 1;
    for (int i = 0; i < M * N; i++) ok &= c[i] == 0.0f;
    CHECK(ok, "%s: K 0, beta 0 must give zeros", path);
    /* M == 0 / N == 0: C untouched */
    c[0] = 7.0f;
    df_gemm_bf16(0, 0, 0, N, K, 1.0f, a, K, b, N, 0.0f, c, N, NULL);
    df_gemm_bf16(0, 0, M, 0, K, 1.0f, a, K, b, 1, 0.0f, c, 1, NULL);
    CHECK(c[0] == 7.0f, "%s: empty C must not be written", path);
    /* a NaN in A row 2 makes C row 2 NaN and no other */
    a[2 * K + 3] = NAN;
    df_gemm_bf16(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N, ws);
    int row2 = 1, others = 1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            if (i == 2) row2 &= isnan(c[i * N + j]) != 0;
            else others &= isfinite(c[i * N + j]) != 0;
        }
    CHECK(row2 && others, "%s: NaN in A row 2 must reach exactly C row 2", path);
    free(ws);
}

/* Concurrent GEMMs inside a parallel region, one workspace each, equal to the serial result:
 * bit for bit on the native path (its blocking does not depend on the thread count), to 1e-5 of
 * the largest |C| on the fallback (OpenBLAS may split the serial call differently). */
static void test_inside_parallel(const char *path, int exact) {
    enum { M = 32, N = 300, K = 288, T = 4 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *want = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * T * M * N);
    for (int i = 0; i < M * K; i++) a[i] = rng_uniform();
    for (int i = 0; i < K * N; i++) b[i] = rng_uniform();
    const size_t wsb = df_gemm_bf16_workspace(M, N, K);
    unsigned char *ws = malloc(wsb * T);
    df_gemm_bf16(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, want, N, ws);
#pragma omp parallel for num_threads(T)
    for (int t = 0; t < T; t++)
        df_gemm_bf16(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, got + (size_t)t * M * N, N, ws + (size_t)t * wsb);
    double worst = 0, scale = 0;
    for (int i = 0; i < M * N; i++) scale = fmax(scale, fabs(want[i]));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < M * N; i++) {
            const double d = fabs((double)got[(size_t)t * M * N + i] - want[i]);
            if (!(d <= worst)) worst = d;
        }
    CHECK(exact ? worst == 0 : worst <= 1e-5 * scale, "%s: GEMMs inside a parallel region differ from the serial one by %.3g",
          path, worst);
    free(a); free(b); free(want); free(got); free(ws);
}

int main(void) {
    const int native = df_gemm_bf16_native();
    printf("test_gemm: AVX512_BF16 path %s\n", native ? "available: testing it and the fallback" : "not available: testing the fallback");
    test_round_values();
    if (native) {
        test_round_in_gemm("avx512bf16");
        test_special("avx512bf16");
        test_inside_parallel("avx512bf16", 1);
    }
    df_gemm_bf16_force_fallback(1);
    CHECK(df_gemm_bf16_native() == 0, "the test hook must force the fallback");
    test_round_in_gemm("fallback");
    test_special("fallback");
    test_inside_parallel("fallback", 0);
    df_gemm_bf16_force_fallback(0);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) test_case(&CASES[i], ta, tb, native);
    printf("worst error over the table: %.3g of its tolerance", g_worst_ref);
    if (native) printf("; worst |native - fallback|: %.3g of its tolerance", g_worst_ratio);
    printf("\n");
    return check_exit_code("test_gemm");
}
