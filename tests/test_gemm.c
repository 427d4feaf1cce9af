/* test_gemm.c: df_gemm_f32 and df_gemm_bf16 (gemm.h) against a double-precision reference.
 *
 * Four paths: the AVX-512F fp32 kernel and its cblas_sgemm fallback, the AVX512_BF16 kernel and
 * its rounding + sgemm fallback (the kernels only where the CPU has them; fallbacks forced by the
 * test hooks). Checks:
 *  (a) df_bf16_round on hand-computed values (ties to even, denormals, NaN, overflow); that each
 *      path's packing passes values through as it should (K = 1, A = 1: C = B bit for bit in
 *      fp32, C = df_bf16_round(B) in bf16) on random bit patterns, for both layouts of B;
 *  (b) a table of shapes (odd sizes, tails of every tile and block, several K and M blocks, 1 to
 *      3 threads) x all four transpose combinations x alpha/beta (beta 0 over a C full of NaN,
 *      beta 1 accumulating, general), with leading dimensions larger than the minimum whose
 *      padding holds NaN (it must never be read) or sentinels (C padding must not be written),
 *      and guard bytes around the workspace;
 *  (c) each kernel agrees with its fallback to the same tolerance;
 *  (d) alpha == 0, K == 0, M or N == 0, NaN propagation, GEMMs called from inside a parallel
 *      region (each thread with its own workspace), results independent of the thread count;
 *  (e) fp32 on small integers, where every partial sum is exact: C equals the reference exactly
 *      (a product lost or counted twice at a block edge shows whatever its size).
 * Tolerance (b, c): the products are exact (bf16 x bf16 in fp32, or fused in the FMA), and every
 * addition rounds once: |err| <= gamma_K sum_k |a_k b_k| (Higham, Accuracy and Stability, eq.
 * 3.5; OpenBLAS's separate multiply adds the one rounding of each product, which the bound's K
 * roundings along any summation path already cover). Each K block adds two roundings (alpha *
 * acc, then + beta C or + the partial C), and gamma_K = K u / (1 - K u) is K u to within 1e-4
 * here: extra = 2 * ceil(K / 192) + 4. Skipping the bf16 rounding (~2^-9 per product) or losing a
 * product (~ sum / K) exceeds it for every K tested (K^2 u < 0.1).
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

/* ---------------------------------------------------------------- the paths */
typedef struct {
    const char *name;
    int bf16;     /* df_gemm_bf16 (inputs rounded) rather than df_gemm_f32 */
    int fallback; /* forced through the test hook */
} gemm_path;

/* The kernels of the CPU level in use (DIFFUSE_ISA: ctest runs this program once per level), and
 * the cblas fallbacks the hooks force. */
static const gemm_path PATHS[4] = {
    {"level f32", 0, 0}, {"f32 sgemm fallback", 0, 1}, {"level bf16", 1, 0}, {"bf16 fallback", 1, 1}};
static int g_native_f32, g_native_bf16; /* what the CPU offers, read before any hook is set */

static int path_available(const gemm_path *p) { return p->fallback || (p->bf16 ? g_native_bf16 : g_native_f32); }

static void path_use(const gemm_path *p) {
    df_gemm_f32_force_fallback(p->fallback);
    df_gemm_bf16_force_fallback(p->fallback);
}

static size_t path_workspace(const gemm_path *p, int m, int n, int k) {
    return p->bf16 ? df_gemm_bf16_workspace(m, n, k) : df_gemm_f32_workspace(m, n, k);
}

static void path_gemm(const gemm_path *p, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                      const float *b, int ldb, float beta, float *c, int ldc, void *ws) {
    path_use(p);
    if (p->bf16)
        df_gemm_bf16(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws);
    else
        df_gemm_f32(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws);
    path_use(&PATHS[0]); /* hooks off */
}

/* ---------------------------------------------------------------- (a) values through the packing */
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

/* C (1 x n) = 1 * b with K = 1: each output is the path's packing of one input, exactly: the value
 * itself in fp32 (denormals included), df_bf16_round of it in bf16. */
static void test_values_in_gemm(const gemm_path *path) {
    enum { n = 4099 };
    float *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    void *ws = malloc(path_workspace(path, 1, n, 1));
    for (int i = 0; i < n; i++) {
        uint32_t u = rng_u32();
        if (i % 7 == 0) u &= 0x807FFFFFu;          /* denormals and zeros */
        if (i % 11 == 0) u |= 0x7F800000u;         /* inf and NaN */
        if (i % 13 == 0) u = (u & 0xFFFF0000u) | 0x8000u; /* exact bf16 ties */
        b[i] = f_from_bits(u);
    }
    if (path->bf16)
        df_bf16_round(b, want, n);
    else
        memcpy(want, b, n * sizeof(float));
    const float one = 1.0f;
    for (int trans = 0; trans < 2; trans++) {
        /* (K=1, N) row-major, or its transpose (N, K=1) with ldb = 1 */
        path_gemm(path, 0, trans, 1, n, 1, 1.0f, &one, 1, b, trans ? 1 : n, 0.0f, c, n, ws);
        int bad = 0, first = -1;
        for (int i = 0; i < n; i++) {
            /* == : the sum 0 + (-0) is +0, so zeros compare without their sign */
            const int same = isnan(want[i]) ? isnan(c[i]) != 0 : c[i] == want[i];
            if (!same && first < 0) first = i;
            bad += !same;
        }
        CHECK(bad == 0, "%s transB=%d: %d of %d values differ from the packing's (first: 0x%08x -> 0x%08x, want 0x%08x)",
              path->name, trans, bad, n, first >= 0 ? bits_of(b[first]) : 0, first >= 0 ? bits_of(c[first]) : 0,
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

/* Block sizes of the AVX-512 paths (gemm_blocked.h): tiles of 8 x 48 (N tails of 1-16 and 17-32
 * use narrower kernels), K blocks of <= 192 words (balanced: <= 384 values in bf16, <= 192 in
 * fp32), M blocks of <= 384 KiB of packed A, C panels of 512 KiB when there are several K blocks;
 * threads from 4e6 (bf16) or 2e6 (fp32) multiply-adds up (the "threads" comments below assume
 * OMP_NUM_THREADS=2, as ctest sets). K blocks are counted as bf16 / fp32. */
static const gemm_case CASES[] = {
    {1, 1, 1, 0}, {1, 17, 3, 0}, {3, 7, 2, 0},   /* tiny: one partial tile, odd K */
    {7, 33, 100, 0}, {8, 48, 32, 0}, {9, 49, 33, 0}, /* exact tile, one past it in M and N */
    {33, 100, 7, 0}, {16, 96, 64, 0}, {5, 1000, 9, 0}, /* N tails of 4 and 40, conv_in-like K */
    {17, 5, 1001, 0},     /* K blocks: 3 (the last odd) / 6 */
    {100, 130, 385, 0},   /* K blocks: 2 (194 + 191) / 3, two threads */
    {40, 200, 800, 0},    /* K blocks: 3 / 5 */
    {700, 50, 40, 0},     /* tall, small K */
    {64, 300, 576, 0}, {64, 300, 576, 1}, /* a conv layer at 2 and 1 threads */
    {100, 130, 385, 3}, {345, 97, 131, 3}, /* 3 threads: the thread grid with an odd count */
    {2, 2000, 1100, 0},   /* wide: N split across threads, tail of 32 columns */
    {1400, 3, 1000, 0},   /* one column strip: M split across threads, three M blocks */
    {1200, 20, 770, 0},   /* two M blocks (double-buffered packed A) x K blocks 3 / 5 */
    {520, 300, 386, 0},   /* K blocks 2 / 3 x two panels of C columns */
};

#define PAD 5 /* extra columns of every leading dimension */
#define GUARD 64

/* The tolerance of one element (see the file header). */
static double tolerance(int k, float alpha, double bound, float beta, double c0) {
    const double u = ldexp(1.0, -24), extra = 2.0 * ((k + 191) / 192) + 4.0;
    return (k + extra) * u * (fabs(alpha) * bound + fabs(beta * c0)) + 1e-30;
}

/* Evidence printed at the end: worst err/tol against the reference, and between the paths. */
static double g_worst_ref = 0, g_worst_ratio = 0;

/* The fixture of one case: inputs with NaN padding and the double references, [0] on the fp32
 * inputs, [1] on the bf16-rounded ones. */
typedef struct {
    int m, n, k, ta, tb, lda, ldb, ldc;
    float *a, *b, *c0;       /* as stored: A (M,K) or (K,M); B (K,N) or (N,K); C0 (M, ldc) */
    double *prod[2], *bound[2]; /* (M,N): sum_k a b in double; sum_k |a b| */
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
    for (int r = 0; r < 2; r++) {
        f->prod[r] = malloc((size_t)f->m * f->n * sizeof(double));
        f->bound[r] = malloc((size_t)f->m * f->n * sizeof(double));
    }
    for (int i = 0; i < f->m; i++)
        for (int j = 0; j < f->n; j++) {
            double s[2] = {0, 0}, sa[2] = {0, 0};
            for (int p = 0; p < f->k; p++) {
                const size_t ia = ta ? (size_t)p * f->lda + i : (size_t)i * f->lda + p;
                const size_t ib = tb ? (size_t)j * f->ldb + p : (size_t)p * f->ldb + j;
                const double x = (double)f->a[ia] * f->b[ib], xr = (double)ra[ia] * rb[ib];
                s[0] += x;
                sa[0] += fabs(x);
                s[1] += xr;
                sa[1] += fabs(xr);
            }
            for (int r = 0; r < 2; r++) {
                f->prod[r][(size_t)i * f->n + j] = s[r];
                f->bound[r][(size_t)i * f->n + j] = sa[r];
            }
        }
    free(ra);
    free(rb);
}

static void fixture_free(fixture *f) {
    free(f->a); free(f->b); free(f->c0);
    for (int r = 0; r < 2; r++) {
        free(f->prod[r]);
        free(f->bound[r]);
    }
}

/* Runs one GEMM of the fixture on a path with (alpha, beta) into c (allocated here, returned) and
 * checks it. C starts as c0, or all NaN when beta == 0 (it must not be read). */
static float *run_and_check(const fixture *f, const gemm_path *path, float alpha, float beta, int threads) {
    const size_t csize = (size_t)f->m * f->ldc;
    float *c = malloc((csize + GUARD) * sizeof(float));
    for (size_t i = 0; i < csize + GUARD; i++) c[i] = (i < csize && beta != 0.0f) ? f->c0[i] : NAN;
    for (int i = 0; i < f->m; i++) /* C padding: a sentinel that must survive */
        for (int j = f->n; j < f->ldc; j++) c[(size_t)i * f->ldc + j] = 1234.5f;
    const size_t wsb = path_workspace(path, f->m, f->n, f->k);
    unsigned char *ws = malloc(wsb + 4 + GUARD);
    memset(ws, 0xA5, wsb + 4 + GUARD);
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    if (threads > 0) omp_set_num_threads(threads);
#endif
    /* ws + 4: the workspace need not be aligned */
    path_gemm(path, f->ta, f->tb, f->m, f->n, f->k, alpha, f->a, f->lda, f->b, f->ldb, beta, c, f->ldc, ws + 4);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    const double *prod = f->prod[path->bf16], *bound = f->bound[path->bf16];
    double worst = 0; /* max err / tol */
    int bad = 0, bi = -1, bj = -1;
    for (int i = 0; i < f->m; i++)
        for (int j = 0; j < f->n; j++) {
            const size_t at = (size_t)i * f->n + j;
            const double c0 = beta != 0.0f ? f->c0[(size_t)i * f->ldc + j] : 0.0;
            const double want = alpha * prod[at] + beta * c0;
            const double tol = tolerance(f->k, alpha, bound[at], beta, c0);
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
          path->name, f->m, f->n, f->k, f->ta, f->tb, alpha, beta, threads, bad, bi, bj, worst);
    CHECK(pad_ok && guard_ok, "%s %dx%dx%d ta=%d tb=%d: write outside C or outside the workspace", path->name, f->m,
          f->n, f->k, f->ta, f->tb);
    free(ws);
    return c;
}

/* (c) a kernel's result cn against its fallback's cf: both are within tol of the reference, so
 * within 2 tol of each other. */
static void check_paths_agree(const fixture *f, const gemm_path *path, float alpha, float beta, const float *cn,
                              const float *cf) {
    const double *bound = f->bound[path->bf16];
    double worst = 0;
    int bad = 0;
    for (int i = 0; i < f->m; i++)
        for (int j = 0; j < f->n; j++) {
            const double c0 = beta != 0.0f ? f->c0[(size_t)i * f->ldc + j] : 0.0;
            const double tol = 2 * tolerance(f->k, alpha, bound[(size_t)i * f->n + j], beta, c0);
            const double d = fabs((double)cn[(size_t)i * f->ldc + j] - cf[(size_t)i * f->ldc + j]);
            bad += !(d <= tol);
            if (d / tol > worst) worst = d / tol;
        }
    if (worst > g_worst_ratio) g_worst_ratio = worst;
    CHECK(bad == 0, "%s %dx%dx%d ta=%d tb=%d: kernel and fallback differ in %d elements (worst %.3g of tol)", path->name,
          f->m, f->n, f->k, f->ta, f->tb, bad, worst);
}

static void test_case(const gemm_case *gc, int ta, int tb) {
    fixture f;
    fixture_init(&f, gc, ta, tb);
    const float alphas[3] = {1.0f, 1.0f, -0.75f}, betas[3] = {0.0f, 1.0f, 2.5f};
    for (int v = 0; v < 3; v++)
        for (int p = 0; p < 4; p += 2) { /* PATHS[p] a kernel, PATHS[p + 1] its fallback */
            float *cn = NULL;
            if (path_available(&PATHS[p])) cn = run_and_check(&f, &PATHS[p], alphas[v], betas[v], gc->threads);
            float *cf = run_and_check(&f, &PATHS[p + 1], alphas[v], betas[v], gc->threads);
            if (cn) check_paths_agree(&f, &PATHS[p], alphas[v], betas[v], cn, cf);
            free(cn);
            free(cf);
        }
    fixture_free(&f);
}

/* ---------------------------------------------------------------- (d) special arguments */
static void test_special(const gemm_path *path) {
    enum { M = 5, N = 40, K = 20 };
    float a[M * K], b[K * N], c[M * N];
    void *ws = malloc(path_workspace(path, M, N, K));
    for (int i = 0; i < M * K; i++) a[i] = rng_uniform();
    for (int i = 0; i < K * N; i++) b[i] = rng_uniform();
    /* alpha == 0: C = beta * C, inputs not used (NaN there must not matter) */
    float an[M * K];
    for (int i = 0; i < M * K; i++) an[i] = NAN;
    for (int i = 0; i < M * N; i++) c[i] = (float)i;
    path_gemm(path, 0, 0, M, N, K, 0.0f, an, K, b, N, 2.0f, c, N, ws);
    int ok = 1;
    for (int i = 0; i < M * N; i++) ok &= c[i] == 2.0f * i;
    CHECK(ok, "%s: alpha 0 must give C = beta C", path->name);
    /* K == 0 with beta 0: zeros even over NaN */
    for (int i = 0; i < M * N; i++) c[i] = NAN;
    path_gemm(path, 0, 0, M, N, 0, 1.0f, a, 1, b, N, 0.0f, c, N, NULL);
    ok = 1;
    for (int i = 0; i < M * N; i++) ok &= c[i] == 0.0f;
    CHECK(ok, "%s: K 0, beta 0 must give zeros", path->name);
    /* M == 0 / N == 0: C untouched */
    c[0] = 7.0f;
    path_gemm(path, 0, 0, 0, N, K, 1.0f, a, K, b, N, 0.0f, c, N, NULL);
    path_gemm(path, 0, 0, M, 0, K, 1.0f, a, K, b, 1, 0.0f, c, 1, NULL);
    CHECK(c[0] == 7.0f, "%s: empty C must not be written", path->name);
    /* a NaN in A row 2 makes C row 2 NaN and no other */
    a[2 * K + 3] = NAN;
    path_gemm(path, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N, ws);
    int row2 = 1, others = 1;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            if (i == 2) row2 &= isnan(c[i * N + j]) != 0;
            else others &= isfinite(c[i * N + j]) != 0;
        }
    CHECK(row2 && others, "%s: NaN in A row 2 must reach exactly C row 2", path->name);
    free(ws);
}

/* The largest |x - y| over n elements. */
static double max_diff(const float *x, const float *y, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)x[i] - y[i]);
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

/* Concurrent GEMMs inside a parallel region, one workspace each, equal to the serial result:
 * bit for bit on the kernels (their blocking does not depend on the thread count), to 1e-5 of
 * the largest |C| on the fallbacks (OpenBLAS may split the serial call differently). */
static void test_inside_parallel(const gemm_path *path) {
    enum { M = 32, N = 300, K = 288, T = 4 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *want = malloc(sizeof(float) * M * N), *got = malloc(sizeof(float) * T * M * N);
    for (int i = 0; i < M * K; i++) a[i] = rng_uniform();
    for (int i = 0; i < K * N; i++) b[i] = rng_uniform();
    const size_t wsb = path_workspace(path, M, N, K);
    unsigned char *ws = malloc(wsb * T);
    path_gemm(path, 0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, want, N, ws);
    path_use(path); /* path_gemm's switching of the hooks is not for concurrent use */
#pragma omp parallel for num_threads(T)
    for (int t = 0; t < T; t++) {
        float *c = got + (size_t)t * M * N;
        void *w = ws + (size_t)t * wsb;
        if (path->bf16)
            df_gemm_bf16(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N, w);
        else
            df_gemm_f32(0, 0, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N, w);
    }
    path_use(&PATHS[0]);
    double worst = 0, scale = 0;
    for (int i = 0; i < M * N; i++) scale = fmax(scale, fabs(want[i]));
    for (int t = 0; t < T; t++) worst = fmax(worst, max_diff(got + (size_t)t * M * N, want, (size_t)M * N));
    CHECK(path->fallback ? worst <= 1e-5 * scale : worst == 0,
          "%s: GEMMs inside a parallel region differ from the serial one by %.3g", path->name, worst);
    free(a); free(b); free(want); free(got); free(ws);
}

/* A kernel's result does not depend on the thread count (each tile of C is summed by one thread in
 * one order): 1 and 3 threads, several K blocks and panels, bit for bit. */
static void test_thread_invariance(const gemm_path *path) {
    enum { M = 203, N = 301, K = 700 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
    float *c1 = malloc(sizeof(float) * M * N), *c3 = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) a[i] = rng_uniform();
    for (int i = 0; i < K * N; i++) b[i] = rng_uniform();
    void *ws = malloc(path_workspace(path, M, N, K));
#ifdef _OPENMP
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
#endif
    path_gemm(path, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c1, N, ws);
#ifdef _OPENMP
    omp_set_num_threads(3);
#endif
    path_gemm(path, 0, 1, M, N, K, 1.0f, a, K, b, K, 0.0f, c3, N, ws);
#ifdef _OPENMP
    omp_set_num_threads(saved);
#endif
    const double d = max_diff(c1, c3, (size_t)M * N);
    CHECK(d == 0, "%s: 1 and 3 threads differ by %.3g", path->name, d);
    free(a); free(b); free(c1); free(c3); free(ws);
}

/* A column of C does not depend on N (the batched convs rely on it): the first 64 columns of a
 * product with N = 64 (a 48-wide strip and a 16-wide one) equal those of N = 200, bit for bit, for
 * both layouts of B. */
static void test_column_invariance(const gemm_path *path) {
    enum { M = 37, K = 300, N1 = 64, N2 = 200 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N2), *bt = malloc(sizeof(float) * N2 * K);
    float *c1 = malloc(sizeof(float) * M * N1), *c2 = malloc(sizeof(float) * M * N2);
    for (int i = 0; i < M * K; i++) a[i] = rng_uniform();
    for (int i = 0; i < K * N2; i++) b[i] = rng_uniform();
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N2; n++) bt[(size_t)n * K + k] = b[(size_t)k * N2 + n];
    void *ws = malloc(path_workspace(path, M, N2, K));
    for (int tb = 0; tb < 2; tb++) {
        /* N1 columns: the same B read with the wider product's row stride */
        path_gemm(path, 0, tb, M, N1, K, 1.0f, a, K, tb ? bt : b, tb ? K : N2, 0.0f, c1, N1, ws);
        path_gemm(path, 0, tb, M, N2, K, 1.0f, a, K, tb ? bt : b, tb ? K : N2, 0.0f, c2, N2, ws);
        double d = 0;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N1; n++) d = fmax(d, fabs((double)c1[(size_t)m * N1 + n] - c2[(size_t)m * N2 + n]));
        CHECK(d == 0, "%s: columns of N=%d and N=%d differ by %.3g (B %s)", path->name, N1, N2, d,
              tb ? "transposed" : "not transposed");
    }
    free(a); free(b); free(bt); free(c1); free(c2); free(ws);
}

/* ---------------------------------------------------------------- (e) exact fp32 on integers */
/* Integers in [-4, 4]: every product and partial sum (|s| <= 16 K < 2^24) is exact in fp32, so
 * C (alpha 1, beta 1 over integer C) equals the reference exactly, in any summation order. The
 * matrices have no padding, so a read past the last element leaves the allocation (ASan builds
 * catch it): 20 x 96 ends B with a full strip read in place. */
static void test_exact_integers(const gemm_path *path) {
    static const int shapes[][3] = {{37, 101, 1001}, {130, 50, 385}, {9, 200, 193}, {20, 96, 200}, {100000, 3, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N);
                float *c = malloc(sizeof(float) * M * N), *want = malloc(sizeof(float) * M * N);
                for (int i = 0; i < M * K; i++) a[i] = (float)((int)(rng_u32() % 9) - 4);
                for (int i = 0; i < K * N; i++) b[i] = (float)((int)(rng_u32() % 9) - 4);
                for (int i = 0; i < M * N; i++) c[i] = want[i] = (float)((int)(rng_u32() % 9) - 4);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++)
                        for (int p = 0; p < K; p++)
                            want[i * N + j] += (ta ? a[p * M + i] : a[i * K + p]) * (tb ? b[j * K + p] : b[p * N + j]);
                const size_t wsb = path_workspace(path, M, N, K);
                /* the bound gemm.h promises; with K = 1 it holds only if the A block is sized by its
                 * rows as packed (16 words each), not by their K values (6 MiB here) */
                CHECK(wsb <= 768 * 1024 + 64, "%dx%dx%d: workspace %zu bytes", M, N, K, wsb);
                void *ws = malloc(wsb);
                path_gemm(path, ta, tb, M, N, K, 1.0f, a, ta ? M : K, b, tb ? K : N, 1.0f, c, N, ws);
                const double d = max_diff(c, want, (size_t)M * N);
                CHECK(d == 0, "%s %dx%dx%d ta=%d tb=%d: integer product off by %g", path->name, M, N, K, ta, tb, d);
                free(a); free(b); free(c); free(want); free(ws);
            }
}

int main(void) {
    g_native_f32 = df_gemm_f32_native();
    g_native_bf16 = df_gemm_bf16_native();
    printf("test_gemm: fp32 kernel %s, bf16 kernel %s (fallbacks tested always)\n", df_gemm_path(0), df_gemm_path(1));
    df_gemm_f32_force_fallback(1);
    df_gemm_bf16_force_fallback(1);
    CHECK(df_gemm_f32_native() == 0 && df_gemm_bf16_native() == 0, "the test hooks must force the fallbacks");
    path_use(&PATHS[0]);
    test_round_values();
    for (int p = 0; p < 4; p++) {
        if (!path_available(&PATHS[p])) continue;
        test_values_in_gemm(&PATHS[p]);
        test_special(&PATHS[p]);
        test_inside_parallel(&PATHS[p]);
        if (check_quick()) continue; /* under emulation: the shape table's small cases below suffice */
        if (!PATHS[p].fallback) test_thread_invariance(&PATHS[p]);
        if (!PATHS[p].fallback) test_column_invariance(&PATHS[p]);
        if (!PATHS[p].bf16) test_exact_integers(&PATHS[p]);
    }
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++)
        if (check_quick() && (double)CASES[i].m * CASES[i].n * CASES[i].k > 3e4) continue; /* the small ones */
        else for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) test_case(&CASES[i], ta, tb);
    printf("worst error over the table: %.3g of its tolerance; worst |kernel - fallback|: %.3g of its tolerance\n",
           g_worst_ref, g_worst_ratio);
    return check_exit_code("test_gemm");
}
