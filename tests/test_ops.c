/* test_ops.c: one table-driven harness for every op of ops.h.
 *
 * Each case is (op, shape, flags). For each case the harness checks:
 *  (a) fast forward == reference forward (and cached values: probs, mean, rstd);
 *  (b) fast backward == reference backward, for every gradient;
 *  (c) finite differences of L = sum(out * R) (fixed random R) on a capped sample of elements of
 *      every input and parameter, against the fast analytic gradient;
 *  (d) guard bytes around every output, gradient and scratch buffer stay untouched, the scratch
 *      is filled with NaN first (so reading it before writing shows), and inputs are not modified;
 *  (e) backward accumulates: a second call doubles the gradients; a NULL gradient pointer is
 *      skipped without changing the others;
 *  (f) ops documented as in-place (silu, add, dropout) give the same result aliased.
 * Cases flagged bf16 run conv, linear and attention in bf16 (on the AVX512_BF16 kernel where the CPU
 * has it, and again on the forced portable fallback) against the same fp32 references, at TOL_BF16
 * and without (c).
 * The "reference" is the library's _ref function where ops.h has one (conv2d, attention), else a
 * plain double-precision loop written here. Then hand-computed values that need no reference (conv
 * padding placement, uniform attention, the timestep embedding) and the dropout mask against df_randu. Prints the worst error of every check; returns 1 on failure.
 */
#include "check.h"
#include "common.h"
#include "gemm.h"
#include "conv3x3.h"
#include "winograd.h"
#include "ops.h"
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- tolerances */
/* Fast vs reference, as max|fast - ref| / max|ref| over the tensor. The references accumulate in
 * double and round once; the fast paths accumulate K products in float (sgemm, K <= 288*2 here), a
 * random-walk error of about sqrt(K) * 2^-24 * |term| ~ 1.5e-6 of a typical term, and well below
 * that relative to the largest output. 1e-5 leaves a margin of ~10x over the worst observed. */
#define TOL_FAST_REF 1e-5
/* Accumulation: g + g' where g' recomputes g, so the only error is the final float roundings. */
#define TOL_ACCUM 1e-6
/* Finite differences with float forward evaluations, h = 1e-2: rounding noise
 * ~ 2^-24 * |out| * sqrt(#outputs touched) / h ~ 1e-4 of the gradient scale, plus truncation
 * h^2/6 * f''' ~ 1e-4 for the nonlinear ops (silu, groupnorm with small groups, softmax). Errors are
 * measured relative to the largest |analytic gradient| of the tensor; the worst seen is 3.7e-5
 * (groupnorm dinp), so 5e-4 keeps a ~13x margin while a wrong term (errors of O(1)) fails. */
#define FD_H 1e-2
#define TOL_FD 5e-4
#define FD_SAMPLES 12
/* bf16 fast path vs the fp32 reference, same measure (max|err| / max|ref|). Rounding an input to
 * bf16 (8 significant bits) changes it by at most 2^-9 of its value (half an ulp: the unit roundoff),
 * so each product a*b moves by up to ~2^-8 |a b| and a sum of K products with mixed signs by about
 * 2^-9 |a b| sqrt(K) (independent errors), while the sum itself is about |a b| sqrt(K): a relative
 * error of order 2^-9 ~ 2e-3 per output, and the worst of thousands of outputs reaches a few times
 * the typical one. Measured worst (native and fallback alike): conv and linear 3.1e-3 (the rest
 * 1.6e-3..2.5e-3), so TOL_BF16 1e-2 keeps ~3x. Attention stacks two rounded products (the scores
 * feed a softmax, then P is rounded for P v; backward likewise): measured worst 6.8e-3 (dk, c16 h2
 * 14x14), so TOL_BF16_ATTN 2e-2 keeps ~3x. A path that skipped the rounding shows ~1e-7 and fails
 * the `engaged' check below; a wrong term is O(1). Bias gradients are fp32 sums (exact match). */
#define TOL_BF16 1e-2
#define TOL_BF16_ATTN 2e-2
/* The bf16 forward must differ from the fp32 reference by more than fp32 rounding could (it does
 * by ~1e-3): proof that the bf16 GEMM actually ran. */
#define BF16_ENGAGED 2e-5

/* ---------------------------------------------------------------- deterministic data */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rand_uniform(float lo, float hi) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (hi - lo) * (float)((rng_state >> 40) * (1.0 / 16777216.0));
}
static size_t rand_index(size_t n) {
    rand_uniform(0, 1);
    return (size_t)(rng_state % n);
}
static void fill_uniform(float *p, size_t n, float lo, float hi) {
    for (size_t i = 0; i < n; i++) p[i] = rand_uniform(lo, hi);
}

/* ---------------------------------------------------------------- guarded buffers */
/* [GUARD floats][n floats][GUARD floats]; the data stays 64-byte aligned. */
#define GUARD 16
#define GUARD_BITS 0x7FBADBADu
static float *galloc(size_t n) {
    uint32_t *raw = df_alloc((n + 2 * GUARD) * sizeof(float), "test buffer");
    ASSERT(raw);
    for (size_t i = 0; i < GUARD; i++) raw[i] = raw[GUARD + n + i] = GUARD_BITS;
    memset(raw + GUARD, 0, n * sizeof(float));
    return (float *)(raw + GUARD);
}
static void gfree(float *p) {
    if (p) df_free((uint32_t *)p - GUARD);
}
static void gcheck(const float *p, size_t n, const char *label, const char *what) {
    const uint32_t *raw = (const uint32_t *)p - GUARD;
    int bad = 0;
    for (size_t i = 0; i < GUARD; i++) bad += (raw[i] != GUARD_BITS) + (raw[GUARD + n + i] != GUARD_BITS);
    CHECK(bad == 0, "%s: %s: %d guard words overwritten", label, what, bad);
}
static float *gdup(const float *src, size_t n) {
    float *p = galloc(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* ---------------------------------------------------------------- comparisons */
static double max_abs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
    return m;
}
/* max|got - want| / max|want|, printing the worst element; non-finite values fail. Returns it. */
static double compare(const float *got, const float *want, size_t n, double tol, const char *label, const char *what) {
    double scale = max_abs(want, n), worst = 0;
    size_t wi = 0;
    int nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]) || !isfinite(want[i])) nonfinite++;
        double e = fabs((double)got[i] - want[i]);
        if (e > worst) worst = e, wi = i;
    }
    double rel = scale > 0 ? worst / scale : worst;
    printf("  %-32s %-12s rel err %.2e (worst [%zu] %.7g vs %.7g, scale %.3g)\n", label, what, rel, wi,
           n ? got[wi] : 0.0, n ? want[wi] : 0.0, scale);
    CHECK(nonfinite == 0, "%s: %s: %d non-finite values", label, what, nonfinite);
    CHECK(rel <= tol, "%s: %s: rel err %.3e > tol %.1e", label, what, rel, tol);
    return rel;
}

/* ---------------------------------------------------------------- the case table */
typedef enum { OP_CONV, OP_LINEAR, OP_GROUPNORM, OP_SILU, OP_ADD, OP_CHANNEL_BIAS, OP_DROPOUT, OP_UPSAMPLE,
               OP_CONCAT, OP_ATTENTION } op_kind;

/* F_BF16: the fast path runs in bf16 (df_gemm_bf16 on whatever the CPU offers); F_BF16_FALLBACK also
 * forces df_gemm_bf16's portable fallback and switches the direct 3x3 kernel off, so machines
 * without AVX512_BF16 are covered here too. F_NO_DIRECT: 3x3 stride-1 pad-1 convs take im2col + GEMM
 * instead of the direct kernel (conv3x3.h) or Winograd, so every path of such a shape stays tested. F_PER_IMAGE:
 * convs with small outputs (<= 64 positions, batched by default) run image by image. F_NO_WINO: the
 * levels below AVX-512 run the direct kernel where they would run Winograd (winograd.h). */
enum { F_NO_BIAS = 1, F_INPLACE = 2, F_BF16 = 4, F_BF16_FALLBACK = 8 | 4, F_NO_DIRECT = 16, F_PER_IMAGE = 32,
       F_NO_WINO = 64 };

typedef struct {
    op_kind op;
    const char *label;
    int n, c, h, w;   /* input (N,C,H,W); linear: (N, IN=c); elementwise: n*c*h*w elements */
    int oc, k, stride; /* conv: OC, kernel, stride; linear: OUT = oc; concat: CB = oc */
    int pad[4];        /* conv padding: top, left, bottom, right */
    int groups;        /* groupnorm groups; attention heads */
    float p;           /* dropout probability; groupnorm eps */
    int flags;
} op_case;

static const op_case CASES[] = {
    /* conv2d: every variant, odd sizes, ic != oc */
    {OP_CONV, "conv 3x3 s1 p1 ic3 7x7", 2, 3, 7, 7, 4, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s1 p1 5x3", 2, 4, 5, 3, 6, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s1 p1 no bias", 1, 5, 4, 6, 3, 3, 1, {1, 1, 1, 1}, 0, 0, F_NO_BIAS},
    {OP_CONV, "conv 3x3 s2 p(0,0,1,1) 8x8", 2, 4, 8, 8, 4, 3, 2, {0, 0, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s2 p(0,0,1,1) 7x7", 2, 3, 7, 7, 5, 3, 2, {0, 0, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s1 p(1,0,2,1) 4x6", 2, 3, 4, 6, 2, 3, 1, {1, 0, 2, 1}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s1 p0 5x5", 1, 2, 5, 5, 3, 3, 1, {0, 0, 0, 0}, 0, 0, 0},
    {OP_CONV, "conv 1x1 5x3 ic6 oc4", 2, 6, 5, 3, 4, 1, 1, {0, 0, 0, 0}, 0, 0, 0},
    {OP_CONV, "conv 1x1 no bias", 3, 4, 3, 3, 7, 1, 1, {0, 0, 0, 0}, 0, 0, F_NO_BIAS},
    {OP_CONV, "conv 1x1 s2 (im2col path)", 2, 3, 5, 5, 2, 1, 2, {0, 0, 0, 0}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s1 p1 32->16 14x14", 2, 32, 14, 14, 16, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s2 down 32 14x14", 1, 32, 14, 14, 32, 3, 2, {0, 0, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 1x1 32->64 14x14", 2, 32, 14, 14, 64, 1, 1, {0, 0, 0, 0}, 0, 0, 0},
    /* more images than the fast path's dW slices (8), unevenly split; 1x1 and stride 2 likewise */
    {OP_CONV, "conv 3x3 s1 p1 batch 11", 11, 3, 5, 5, 4, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 3x3 s2 batch 10", 10, 2, 6, 6, 3, 3, 2, {0, 0, 1, 1}, 0, 0, 0},
    {OP_CONV, "conv 1x1 batch 9", 9, 3, 4, 4, 5, 1, 1, {0, 0, 0, 0}, 0, 0, 0},
    /* the direct 3x3 kernel (>= 8 outputs forward, >= 8 inputs for dX): a partial strip of 8
     * outputs (13), an odd channel count (bf16 pairs), widths below, at and above one 48-wide tile
     * (a tile then spans several rows, or a row several tiles), one-row images, the U-Net's sizes;
     * and the same shapes on im2col + GEMM */
    {OP_CONV, "direct conv 9->13 7x7", 2, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct conv 8->8 28x28", 2, 8, 28, 28, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct conv 16->24 5x50", 3, 16, 5, 50, 24, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct conv 11->8 1x9 no bias", 2, 11, 1, 9, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_NO_BIAS | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct conv 64->32 4x4 batch 9", 9, 64, 4, 4, 32, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    /* fp32 dW with dout channels last: a partial 48-output block (40), and 48 + a partial vector (56) */
    {OP_CONV, "direct conv 8->40 9x11 b3", 3, 8, 9, 11, 40, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct conv 12->56 16x16", 1, 12, 16, 16, 56, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct conv 3->16 (dX im2col)", 2, 3, 6, 6, 16, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct conv 16->1 (1-output tile)", 2, 16, 6, 6, 1, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    /* direct dW: slices with >= 512 positions of the padded width (3-output strips, then 2 or 1) */
    {OP_CONV, "direct dW 5->13 20x24", 2, 5, 20, 24, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "direct dW 8->8 16x16 batch 11", 11, 8, 16, 16, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "im2col conv 9->13 7x7", 2, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_NO_DIRECT | F_PER_IMAGE},
    /* per image, the small shapes that run batched by default (3x3 s1/s2 and 1x1) */
    {OP_CONV, "per-image conv 3x3 s1 ic3 7x7", 2, 3, 7, 7, 4, 3, 1, {1, 1, 1, 1}, 0, 0, F_PER_IMAGE},
    {OP_CONV, "per-image conv 3x3 s2 8x8", 2, 4, 8, 8, 4, 3, 2, {0, 0, 1, 1}, 0, 0, F_PER_IMAGE},
    /* stride 2 on the direct kernel (phase planes): padding 1 all round, odd sizes, odd channel
     * counts (a bf16 pair's empty half), rows of more than 32 columns */
    {OP_CONV, "direct conv 3x3 s2 p1 9x11", 2, 5, 9, 11, 9, 3, 2, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "direct conv 3x3 s2 p(0,0,1,1) 33x20", 2, 3, 33, 20, 8, 3, 2, {0, 0, 1, 1}, 0, 0, 0},
    {OP_CONV, "bf16 direct conv 3x3 s2 p1 9x11", 2, 5, 9, 11, 9, 3, 2, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 direct conv 3x3 s2 p(0,0,1,1) 20x35", 3, 7, 20, 35, 8, 3, 2, {0, 0, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "per-image conv 1x1 5x3", 2, 6, 5, 3, 4, 1, 1, {0, 0, 0, 0}, 0, 0, F_PER_IMAGE},
    /* batched: the U-Net's 4x4 level, a stride-2 conv onto 4x4, 1x1 at 3x5 */
    {OP_CONV, "batched conv 3x3 64->32 4x4 b5", 5, 64, 4, 4, 32, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "batched conv 3x3 s2 8->4 b3", 3, 16, 8, 8, 8, 3, 2, {0, 0, 1, 1}, 0, 0, 0},
    {OP_CONV, "batched conv 1x1 3x5 b4", 4, 24, 3, 5, 40, 1, 1, {0, 0, 0, 0}, 0, 0, 0},
    {OP_CONV, "im2col conv 16->24 5x50", 3, 16, 5, 50, 24, 3, 1, {1, 1, 1, 1}, 0, 0, F_NO_DIRECT | F_PER_IMAGE},
    /* lanes (16 images per vector): 7x7 and 8x8 from 8 images, 4x4 at any batch; partial groups and strips */
    /* Winograd F(2x2, 3x3) at the levels below AVX-512 (elsewhere these run the direct and lanes
     * kernels): odd and even planes (the tiles past the image), rows of one tile, channels that fill
     * no register tile, batches of several groups (and a last group short) */
    {OP_CONV, "winograd conv 9->13 7x7", 2, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd conv 8->8 28x28", 2, 8, 28, 28, 8, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd conv 16->24 5x50 b3", 3, 16, 5, 50, 24, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd conv 11->8 1x9 no bias", 2, 11, 1, 9, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_NO_BIAS},
    {OP_CONV, "winograd conv 64->32 4x4 b9", 9, 64, 4, 4, 32, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd conv 8->40 9x11 b3", 3, 8, 9, 11, 40, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd conv 13->9 2x3 b37", 37, 13, 2, 3, 9, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd dW 16->1 6x6 (dX direct)", 2, 16, 6, 6, 1, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd dW 12->3 28x28 b5", 5, 12, 28, 28, 3, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "winograd conv 24->16 7x7 b23", 23, 24, 7, 7, 16, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "lanes conv 9->13 7x7 b19", 19, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    {OP_CONV, "lanes conv 16->8 8x8 b8 no bias", 8, 16, 8, 8, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_NO_BIAS},
    {OP_CONV, "lanes conv 24->16 3x5 b2", 2, 24, 3, 5, 16, 3, 1, {1, 1, 1, 1}, 0, 0, 0},
    /* linear */
    {OP_LINEAR, "linear 3x5->7", 3, 5, 1, 1, 7, 0, 0, {0}, 0, 0, 0},
    {OP_LINEAR, "linear 4x32->64 no bias", 4, 32, 1, 1, 64, 0, 0, {0}, 0, 0, F_NO_BIAS},
    /* above LINEAR_SMALL_MACS (2^22): the sgemm path */
    {OP_LINEAR, "linear 40x384->300 (sgemm)", 40, 384, 1, 1, 300, 0, 0, {0}, 0, 0, 0},
    /* groupnorm: p is eps */
    {OP_GROUPNORM, "groupnorm c6 g3 7x7", 2, 6, 7, 7, 0, 0, 0, {0}, 3, 1e-5f, 0},
    {OP_GROUPNORM, "groupnorm c8 g8 5x3", 3, 8, 5, 3, 0, 0, 0, {0}, 8, 1e-6f, 0},
    {OP_GROUPNORM, "groupnorm c4 g1 3x3", 2, 4, 3, 3, 0, 0, 0, {0}, 1, 1e-6f, 0},
    {OP_GROUPNORM, "groupnorm c32 g8 14x14", 4, 32, 14, 14, 0, 0, 0, {0}, 8, 1e-6f, 0},
    /* elementwise */
    {OP_SILU, "silu 1001", 1, 1, 1, 1001, 0, 0, 0, {0}, 0, 0, 0},
    {OP_SILU, "silu 40000 in place", 4, 10, 20, 50, 0, 0, 0, {0}, 0, 0, F_INPLACE},
    {OP_ADD, "add 999", 1, 1, 1, 999, 0, 0, 0, {0}, 0, 0, 0},
    {OP_ADD, "add 40000 in place", 4, 10, 20, 50, 0, 0, 0, {0}, 0, 0, F_INPLACE},
    {OP_CHANNEL_BIAS, "channel bias c5 7x7", 2, 5, 7, 7, 0, 0, 0, {0}, 0, 0, 0},
    {OP_DROPOUT, "dropout p0.3 1001", 1, 1, 1, 1001, 0, 0, 0, {0}, 0, 0.3f, 0},
    {OP_DROPOUT, "dropout p0.5 40000 in place", 4, 10, 20, 50, 0, 0, 0, {0}, 0, 0.5f, F_INPLACE},
    {OP_DROPOUT, "dropout p0 copy", 1, 1, 1, 10, 0, 0, 0, {0}, 0, 0.0f, 0},
    /* shape ops */
    {OP_UPSAMPLE, "upsample2x c3 5x3", 2, 3, 5, 3, 0, 0, 0, {0}, 0, 0, 0},
    {OP_UPSAMPLE, "upsample2x c16 14x14", 2, 16, 14, 14, 0, 0, 0, {0}, 0, 0, 0},
    {OP_CONCAT, "concat 3+5 5x3", 2, 3, 5, 3, 5, 0, 0, {0}, 0, 0, 0},
    /* attention: groups is heads */
    {OP_ATTENTION, "attention c4 h1 5x3", 2, 4, 5, 3, 0, 0, 0, {0}, 1, 0, 0},
    {OP_ATTENTION, "attention c6 h3 7x1", 1, 6, 7, 1, 0, 0, 0, {0}, 3, 0, 0},
    {OP_ATTENTION, "attention c8 h2 7x7", 2, 8, 7, 7, 0, 0, 0, {0}, 2, 0, 0},
    {OP_ATTENTION, "attention c16 h2 14x14", 1, 16, 14, 14, 0, 0, 0, {0}, 2, 0, 0},
    /* bf16 (TOL_BF16, TOL_BF16_ATTN): each GEMM path of conv (im2col, pointwise, flipped-weight dX, col2im dX,
     * batches over the dW slices), both linear paths, attention; then again on the forced fallback */
    {OP_CONV, "bf16 conv 3x3 s1 p1 32->16 14x14", 2, 32, 14, 14, 16, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 conv 3x3 s2 down 32 14x14", 1, 32, 14, 14, 32, 3, 2, {0, 0, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 conv 1x1 32->64 14x14", 2, 32, 14, 14, 64, 1, 1, {0, 0, 0, 0}, 0, 0, F_BF16},
    {OP_CONV, "bf16 conv 3x3 s1 p1 batch 11", 11, 3, 5, 5, 4, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 conv 3x3 s1 p1 no bias", 1, 5, 4, 6, 3, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_NO_BIAS},
    {OP_CONV, "bf16 direct conv 9->13 7x7", 2, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 direct conv 16->24 5x50", 3, 16, 5, 50, 24, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 direct conv 11->8 1x9", 2, 11, 1, 9, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_NO_BIAS | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 direct conv 64->32 4x4 b9", 9, 64, 4, 4, 32, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 batched conv 3x3 64->32 4x4", 5, 64, 4, 4, 32, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 lanes conv 9->13 7x7 b19", 19, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 lanes conv 16->24 4x4 b49 (dW too)", 49, 16, 4, 4, 24, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    /* bf16 lanes dW pairs rows ceil(h/2) apart: odd heights leave the last pair's high half empty */
    {OP_CONV, "bf16 lanes conv 16->13 8x8 b16 (dW too)", 16, 16, 8, 8, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 lanes conv 9->8 7x7 b21 (dW too)", 21, 9, 7, 7, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 lanes conv 8->10 3x5 b72 (dW too)", 72, 8, 3, 5, 10, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    /* larger planes: per-image direct forward and dX, lanes dW (bf16, from 12 images a group) */
    {OP_CONV, "bf16 conv 16->8 14x14 b16 (lanes dW)", 16, 16, 14, 14, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 conv 8->11 9x18 b13 (lanes dW)", 13, 8, 9, 18, 11, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 batched conv 1x1 3x5 b4", 4, 24, 3, 5, 40, 1, 1, {0, 0, 0, 0}, 0, 0, F_BF16},
    {OP_CONV, "bf16 direct dW 5->13 20x24", 2, 5, 20, 24, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 direct dW 8->8 16x16 b11", 11, 8, 16, 16, 8, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 direct dW 7->5 31x17", 1, 7, 31, 17, 5, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 direct dW 8->40 9x11 b3", 3, 8, 9, 11, 40, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 direct dW 12->56 15x16", 1, 12, 15, 16, 56, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_PER_IMAGE | F_NO_WINO},
    {OP_CONV, "bf16 winograd conv 9->13 7x7", 2, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 winograd conv 16->24 5x50 b3", 3, 16, 5, 50, 24, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 winograd conv 24->16 7x7 b23", 23, 24, 7, 7, 16, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16},
    {OP_CONV, "bf16 im2col conv 9->13 7x7", 2, 9, 7, 7, 13, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16 | F_NO_DIRECT | F_PER_IMAGE},
    {OP_LINEAR, "bf16 linear 4x32->64", 4, 32, 1, 1, 64, 0, 0, {0}, 0, 0, F_BF16},
    {OP_LINEAR, "bf16 linear 40x384->300", 40, 384, 1, 1, 300, 0, 0, {0}, 0, 0, F_BF16},
    {OP_ATTENTION, "bf16 attention c8 h2 7x7", 2, 8, 7, 7, 0, 0, 0, {0}, 2, 0, F_BF16},
    {OP_ATTENTION, "bf16 attention c64 h1 7x7", 2, 64, 7, 7, 0, 0, 0, {0}, 1, 0, F_BF16},
    {OP_ATTENTION, "bf16 attention c16 h2 14x14", 1, 16, 14, 14, 0, 0, 0, {0}, 2, 0, F_BF16},
    {OP_CONV, "bf16 fallback conv 3x3 s1 32->16", 2, 32, 14, 14, 16, 3, 1, {1, 1, 1, 1}, 0, 0, F_BF16_FALLBACK},
    {OP_CONV, "bf16 fallback conv 3x3 s2 down", 1, 32, 14, 14, 32, 3, 2, {0, 0, 1, 1}, 0, 0, F_BF16_FALLBACK},
    {OP_CONV, "bf16 fallback conv 1x1 32->64", 2, 32, 14, 14, 64, 1, 1, {0, 0, 0, 0}, 0, 0, F_BF16_FALLBACK},
    {OP_LINEAR, "bf16 fallback linear 40x384->300", 40, 384, 1, 1, 300, 0, 0, {0}, 0, 0, F_BF16_FALLBACK},
    {OP_ATTENTION, "bf16 fallback attention c8 h2 7x7", 2, 8, 7, 7, 0, 0, 0, {0}, 2, 0, F_BF16_FALLBACK},
};

/* ---------------------------------------------------------------- per-op bindings */
#define MAXT 4
typedef struct {
    int nt;                     /* tensors: inputs, then parameters */
    const char *names[MAXT];
    size_t sizes[MAXT];
    int diff[MAXT];             /* has a gradient */
    float range[MAXT];          /* filled uniform in [-range, range] */
    size_t nout;
    int naux;                   /* cached forward values (probs, mean, rstd) */
    const char *aux_names[2];
    size_t aux_sizes[2];
    size_t scratch;
    df_conv_shape cs;
} op_setup;

static size_t case_numel(const op_case *c) { return (size_t)c->n * c->c * c->h * c->w; }
static df_precision case_precision(const op_case *c) {
    return (c->flags & F_BF16) ? DF_PRECISION_BF16 : DF_PRECISION_FP32;
}

static void setup_tensor(op_setup *s, const char *name, size_t n, int diff, float range) {
    s->names[s->nt] = name;
    s->sizes[s->nt] = n;
    s->diff[s->nt] = diff;
    s->range[s->nt] = range;
    s->nt++;
}

static void op_setup_init(const op_case *c, op_setup *s) {
    memset(s, 0, sizeof *s);
    const size_t hw = (size_t)c->h * c->w, numel = case_numel(c);
    const int bias = !(c->flags & F_NO_BIAS);
    switch (c->op) {
    case OP_CONV:
        df_conv_shape_init(&s->cs, c->n, c->c, c->h, c->w, c->oc, c->k, c->stride, c->pad[0], c->pad[1],
                           c->pad[2], c->pad[3]);
        setup_tensor(s, "dinp", numel, 1, 1);
        setup_tensor(s, "dw", (size_t)c->oc * c->c * c->k * c->k, 1, 1);
        setup_tensor(s, "db", (size_t)c->oc, bias, 1);
        s->nout = (size_t)c->n * c->oc * s->cs.oh * s->cs.ow;
        s->cs.precision = case_precision(c);
        s->scratch = df_conv2d_scratch_floats(&s->cs);
        break;
    case OP_LINEAR:
        setup_tensor(s, "dinp", (size_t)c->n * c->c, 1, 1);
        setup_tensor(s, "dw", (size_t)c->oc * c->c, 1, 1);
        setup_tensor(s, "db", (size_t)c->oc, bias, 1);
        s->nout = (size_t)c->n * c->oc;
        s->scratch = df_linear_scratch_floats(c->n, c->c, c->oc);
        break;
    case OP_GROUPNORM:
        setup_tensor(s, "dinp", numel, 1, 1);
        setup_tensor(s, "dgamma", (size_t)c->c, 1, 1.5f);
        setup_tensor(s, "dbeta", (size_t)c->c, 1, 1);
        s->nout = numel;
        s->naux = 2;
        s->aux_names[0] = "mean";
        s->aux_names[1] = "rstd";
        s->aux_sizes[0] = s->aux_sizes[1] = (size_t)c->n * c->groups;
        break;
    case OP_SILU:
        setup_tensor(s, "dinp", numel, 1, 4);
        s->nout = numel;
        break;
    case OP_ADD:
        setup_tensor(s, "da", numel, 1, 1);
        setup_tensor(s, "db", numel, 1, 1);
        s->nout = numel;
        break;
    case OP_CHANNEL_BIAS:
        setup_tensor(s, "dx", numel, 1, 1);
        setup_tensor(s, "dbias", (size_t)c->n * c->c, 1, 1);
        s->nout = numel;
        break;
    case OP_DROPOUT:
        setup_tensor(s, "dinp", numel, 1, 1);
        s->nout = numel;
        break;
    case OP_UPSAMPLE:
        setup_tensor(s, "dinp", numel, 1, 1);
        s->nout = numel * 4;
        break;
    case OP_CONCAT:
        setup_tensor(s, "da", numel, 1, 1);
        setup_tensor(s, "db", (size_t)c->n * c->oc * hw, 1, 1);
        s->nout = (size_t)c->n * (c->c + c->oc) * hw;
        break;
    case OP_ATTENTION:
        /* q scaled up a little so some softmax rows are peaked, not nearly uniform */
        setup_tensor(s, "dq", numel, 1, 2);
        setup_tensor(s, "dk", numel, 1, 2);
        setup_tensor(s, "dv", numel, 1, 1);
        s->nout = numel;
        s->naux = 1;
        s->aux_names[0] = "probs";
        s->aux_sizes[0] = (size_t)c->n * c->groups * hw * hw;
        s->scratch = df_attention_scratch_floats(c->n, c->c, (int)hw, c->groups);
        break;
    }
}

/* ---------------------------------------------------------------- test-local references */
/* Plain double loops for the ops that have a single version in the library. */

static void linear_forward_oracle(float *out, const float *x, const float *w, const float *b, int n, int in, int od) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < od; o++) {
            double acc = b ? b[o] : 0.0;
            for (int j = 0; j < in; j++) acc += (double)x[i * in + j] * w[o * in + j];
            out[i * od + o] = (float)acc;
        }
}
static void linear_backward_oracle(float *dx, float *dw, float *db, const float *g, const float *x, const float *w,
                                   int n, int in, int od) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < in; j++) {
            double acc = 0;
            for (int o = 0; o < od; o++) acc += (double)g[i * od + o] * w[o * in + j];
            if (dx) dx[i * in + j] += (float)acc;
        }
    for (int o = 0; o < od; o++) {
        double sb = 0;
        for (int i = 0; i < n; i++) sb += g[i * od + o];
        if (db) db[o] += (float)sb;
        for (int j = 0; j < in; j++) {
            double acc = 0;
            for (int i = 0; i < n; i++) acc += (double)g[i * od + o] * x[i * in + j];
            if (dw) dw[o * in + j] += (float)acc;
        }
    }
}

static void groupnorm_forward_oracle(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                                     const float *beta, int n, int c, int hw, int groups, float eps) {
    const int cpg = c / groups;
    for (int b = 0; b < n; b++)
        for (int g = 0; g < groups; g++) {
            double s = 0, s2 = 0, m = (double)cpg * hw;
            for (int ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int p = 0; p < hw; p++) s += x[((size_t)b * c + ch) * hw + p];
            double mu = s / m;
            for (int ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int p = 0; p < hw; p++) {
                    double d = x[((size_t)b * c + ch) * hw + p] - mu;
                    s2 += d * d;
                }
            double rs = 1 / sqrt(s2 / m + eps);
            mean[b * groups + g] = (float)mu;
            rstd[b * groups + g] = (float)rs;
            for (int ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int p = 0; p < hw; p++) {
                    size_t e = ((size_t)b * c + ch) * hw + p;
                    out[e] = (float)((x[e] - mu) * rs * gamma[ch] + beta[ch]);
                }
        }
}
/* dx_i = rstd/m * (m gx_i - sum gx - xhat_i sum(gx xhat)), gx = dout * gamma (m = group size). */
static void groupnorm_backward_oracle(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                                      const float *mean, const float *rstd, const float *gamma, int n, int c, int hw,
                                      int groups) {
    const int cpg = c / groups;
    for (int b = 0; b < n; b++)
        for (int g = 0; g < groups; g++) {
            const double mu = mean[b * groups + g], rs = rstd[b * groups + g], m = (double)cpg * hw;
            double sg = 0, sgx = 0;
            for (int ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int p = 0; p < hw; p++) {
                    size_t e = ((size_t)b * c + ch) * hw + p;
                    sg += (double)dout[e] * gamma[ch];
                    sgx += (double)dout[e] * gamma[ch] * (x[e] - mu) * rs;
                }
            for (int ch = g * cpg; ch < (g + 1) * cpg; ch++)
                for (int p = 0; p < hw; p++) {
                    size_t e = ((size_t)b * c + ch) * hw + p;
                    double xhat = (x[e] - mu) * rs;
                    if (dx) dx[e] += (float)(rs / m * (m * dout[e] * gamma[ch] - sg - xhat * sgx));
                }
        }
    for (int ch = 0; ch < c; ch++) {
        double sg = 0, sgx = 0;
        for (int b = 0; b < n; b++)
            for (int p = 0; p < hw; p++) {
                size_t e = ((size_t)b * c + ch) * hw + p;
                int ng = b * groups + ch / cpg;
                sg += dout[e];
                sgx += (double)dout[e] * (x[e] - mean[ng]) * rstd[ng];
            }
        if (dgamma) dgamma[ch] += (float)sgx;
        if (dbeta) dbeta[ch] += (float)sg;
    }
}

/* The dropout oracle draws the mask with df_randu itself, so it also checks the op's restatement
 * of the uniform conversion. */
static void dropout_oracle(float *dst, const float *src, size_t n, float p, int accumulate) {
    float *u = df_alloc(n * sizeof(float), "dropout uniforms");
    ASSERT(u);
    df_randu(1234, DF_STREAM_DROPOUT, 5, 6, u, n);
    for (size_t i = 0; i < n; i++) {
        float v = (p == 0.0f || u[i] >= p) ? (float)((double)src[i] / (1.0 - p)) : 0.0f;
        dst[i] = accumulate ? dst[i] + v : v;
    }
    df_free(u);
}

/* ---------------------------------------------------------------- forward / backward dispatch */
/* in[]: the tensors of op_setup (inputs, then parameters); grad[i] may be NULL. */
static void op_forward(const op_case *c, const op_setup *s, int ref, float *const *in, float *out, float *const *aux,
                       float *scratch) {
    const int hw = c->h * c->w;
    const size_t numel = case_numel(c);
    const float *bias = (c->flags & F_NO_BIAS) ? NULL : in[2];
    switch (c->op) {
    case OP_CONV:
        if (ref) df_conv2d_forward_ref(out, in[0], in[1], bias, &s->cs);
        else df_conv2d_forward(out, in[0], in[1], bias, &s->cs, scratch);
        break;
    case OP_LINEAR:
        if (ref) linear_forward_oracle(out, in[0], in[1], bias, c->n, c->c, c->oc);
        else df_linear_forward(out, in[0], in[1], bias, c->n, c->c, c->oc, case_precision(c), scratch);
        break;
    case OP_GROUPNORM:
        if (ref) groupnorm_forward_oracle(out, aux[0], aux[1], in[0], in[1], in[2], c->n, c->c, hw, c->groups, c->p);
        else {
            df_groupnorm_forward(out, aux[0], aux[1], in[0], in[1], in[2], c->n, c->c, hw, c->groups, c->p);
            /* apply (the backward's rebuild of the output from mean and rstd) gives the same bits */
            float *again = malloc(sizeof(float) * numel);
            df_groupnorm_apply(again, aux[0], aux[1], in[0], in[1], in[2], c->n, c->c, hw, c->groups);
            CHECK(memcmp(again, out, sizeof(float) * numel) == 0, "%s: groupnorm_apply == forward, bit for bit", c->label);
            free(again);
        }
        break;
    case OP_SILU:
        if (ref)
            for (size_t i = 0; i < numel; i++) out[i] = (float)(in[0][i] / (1.0 + exp(-(double)in[0][i])));
        else df_silu_forward(out, in[0], numel);
        break;
    case OP_ADD:
        if (ref)
            for (size_t i = 0; i < numel; i++) out[i] = in[0][i] + in[1][i];
        else df_add_forward(out, in[0], in[1], numel);
        break;
    case OP_CHANNEL_BIAS:
        /* in place by contract: out starts as a copy of x */
        memcpy(out, in[0], numel * sizeof(float));
        if (ref)
            for (size_t i = 0; i < numel; i++) out[i] += in[1][i / hw];
        else df_add_channel_bias_forward(out, in[1], c->n, c->c, hw);
        break;
    case OP_DROPOUT:
        if (ref) dropout_oracle(out, in[0], numel, c->p, 0);
        else df_dropout_forward(out, in[0], numel, c->p, 1234, 5, 6);
        break;
    case OP_UPSAMPLE:
        if (ref)
            for (size_t e = 0; e < numel * 4; e++) {
                size_t X = e % (2 * c->w), Y = (e / (2 * c->w)) % (2 * c->h), nc = e / (4 * (size_t)hw);
                out[e] = in[0][nc * hw + (Y / 2) * c->w + X / 2];
            }
        else df_upsample2x_forward(out, in[0], c->n, c->c, c->h, c->w);
        break;
    case OP_CONCAT:
        if (ref)
            for (int b = 0; b < c->n; b++)
                for (int ch = 0; ch < c->c + c->oc; ch++)
                    for (int p = 0; p < hw; p++)
                        out[((size_t)b * (c->c + c->oc) + ch) * hw + p] =
                            ch < c->c ? in[0][((size_t)b * c->c + ch) * hw + p]
                                      : in[1][((size_t)b * c->oc + ch - c->c) * hw + p];
        else df_concat_forward(out, in[0], in[1], c->n, c->c, c->oc, hw);
        break;
    case OP_ATTENTION:
        if (ref) df_attention_forward_ref(out, aux[0], in[0], in[1], in[2], c->n, c->c, hw, c->groups);
        else df_attention_forward(out, aux[0], in[0], in[1], in[2], c->n, c->c, hw, c->groups, case_precision(c),
                                  scratch);
        break;
    }
}

static void op_backward(const op_case *c, const op_setup *s, int ref, float *const *in, float *const *grad,
                        const float *dout, float *const *aux, float *scratch) {
    const int hw = c->h * c->w;
    const size_t numel = case_numel(c);
    switch (c->op) {
    case OP_CONV:
        if (ref) df_conv2d_backward_ref(grad[0], grad[1], grad[2], dout, in[0], in[1], &s->cs);
        else df_conv2d_backward(grad[0], grad[1], grad[2], dout, in[0], in[1], &s->cs, scratch);
        break;
    case OP_LINEAR:
        if (ref) linear_backward_oracle(grad[0], grad[1], grad[2], dout, in[0], in[1], c->n, c->c, c->oc);
        else df_linear_backward(grad[0], grad[1], grad[2], dout, in[0], in[1], c->n, c->c, c->oc, case_precision(c),
                                scratch);
        break;
    case OP_GROUPNORM:
        if (ref)
            groupnorm_backward_oracle(grad[0], grad[1], grad[2], dout, in[0], aux[0], aux[1], in[1], c->n, c->c, hw,
                                      c->groups);
        else
            df_groupnorm_backward(grad[0], grad[1], grad[2], dout, in[0], aux[0], aux[1], in[1], c->n, c->c, hw,
                                  c->groups);
        break;
    case OP_SILU:
        if (!ref) {
            df_silu_backward(grad[0], dout, in[0], numel);
        } else if (grad[0]) {
            for (size_t i = 0; i < numel; i++) {
                double x = in[0][i], sg = 1 / (1 + exp(-x));
                grad[0][i] += (float)(dout[i] * sg * (1 + x * (1 - sg)));
            }
        }
        break;
    case OP_ADD:
        if (!ref) {
            df_add_backward(grad[0], grad[1], dout, numel);
        } else {
            for (int t = 0; t < 2; t++)
                if (grad[t])
                    for (size_t i = 0; i < numel; i++) grad[t][i] += dout[i];
        }
        break;
    case OP_CHANNEL_BIAS:
        if (grad[0]) df_add_backward(grad[0], NULL, dout, numel); /* x += bias: dx passes through */
        if (!ref) {
            if (grad[1]) df_add_channel_bias_backward(grad[1], dout, c->n, c->c, hw);
        } else if (grad[1]) {
            for (size_t nc = 0; nc < (size_t)c->n * c->c; nc++) {
                double acc = 0;
                for (int p = 0; p < hw; p++) acc += dout[nc * hw + p];
                grad[1][nc] += (float)acc;
            }
        }
        break;
    case OP_DROPOUT:
        if (ref) {
            if (grad[0]) dropout_oracle(grad[0], dout, numel, c->p, 1);
        } else {
            df_dropout_backward(grad[0], dout, numel, c->p, 1234, 5, 6);
        }
        break;
    case OP_UPSAMPLE:
        if (!ref) {
            df_upsample2x_backward(grad[0], dout, c->n, c->c, c->h, c->w);
        } else if (grad[0]) {
            for (size_t e = 0; e < numel * 4; e++) {
                size_t X = e % (2 * c->w), Y = (e / (2 * c->w)) % (2 * c->h), nc = e / (4 * (size_t)hw);
                grad[0][nc * hw + (Y / 2) * c->w + X / 2] += dout[e];
            }
        }
        break;
    case OP_CONCAT:
        if (!ref) {
            df_concat_backward(grad[0], grad[1], dout, c->n, c->c, c->oc, hw);
        } else {
            for (int b = 0; b < c->n; b++)
                for (int ch = 0; ch < c->c + c->oc; ch++)
                    for (int p = 0; p < hw; p++) {
                        float g = dout[((size_t)b * (c->c + c->oc) + ch) * hw + p];
                        if (ch < c->c && grad[0]) grad[0][((size_t)b * c->c + ch) * hw + p] += g;
                        if (ch >= c->c && grad[1]) grad[1][((size_t)b * c->oc + ch - c->c) * hw + p] += g;
                    }
        }
        break;
    case OP_ATTENTION:
        if (ref)
            df_attention_backward_ref(grad[0], grad[1], grad[2], dout, aux[0], in[0], in[1], in[2], c->n, c->c, hw,
                                      c->groups);
        else
            df_attention_backward(grad[0], grad[1], grad[2], dout, aux[0], in[0], in[1], in[2], c->n, c->c, hw,
                                  c->groups, case_precision(c), scratch);
        break;
    }
}

/* ---------------------------------------------------------------- the checks */
typedef struct {
    const op_case *c;
    op_setup s;
    float *in[MAXT], *in_copy[MAXT];
    float *out_fast, *out_ref, *aux_fast[2], *aux_ref[2], *scratch, *dout;
    float *g_fast[MAXT], *g_ref[MAXT], *g_once[MAXT];
} harness;

static void scratch_poison(harness *t) {
    for (size_t i = 0; i < t->s.scratch; i++) t->scratch[i] = NAN;
}

static void harness_init(harness *t, const op_case *c) {
    memset(t, 0, sizeof *t);
    t->c = c;
    op_setup_init(c, &t->s);
    for (int i = 0; i < t->s.nt; i++) {
        t->in[i] = galloc(t->s.sizes[i]);
        fill_uniform(t->in[i], t->s.sizes[i], -t->s.range[i], t->s.range[i]);
        t->in_copy[i] = gdup(t->in[i], t->s.sizes[i]);
        t->g_fast[i] = galloc(t->s.sizes[i]);
        t->g_ref[i] = galloc(t->s.sizes[i]);
    }
    t->out_fast = galloc(t->s.nout);
    t->out_ref = galloc(t->s.nout);
    t->dout = galloc(t->s.nout);
    fill_uniform(t->dout, t->s.nout, -1, 1);
    for (int a = 0; a < t->s.naux; a++) {
        t->aux_fast[a] = galloc(t->s.aux_sizes[a]);
        t->aux_ref[a] = galloc(t->s.aux_sizes[a]);
    }
    t->scratch = galloc(t->s.scratch);
}

static void harness_free(harness *t) {
    for (int i = 0; i < t->s.nt; i++) {
        gfree(t->in[i]);
        gfree(t->in_copy[i]);
        gfree(t->g_fast[i]);
        gfree(t->g_ref[i]);
        gfree(t->g_once[i]);
    }
    for (int a = 0; a < t->s.naux; a++) {
        gfree(t->aux_fast[a]);
        gfree(t->aux_ref[a]);
    }
    gfree(t->out_fast);
    gfree(t->out_ref);
    gfree(t->dout);
    gfree(t->scratch);
}

/* The gradient pointers a backward call gets: NULL where the tensor has no gradient. */
static void grad_ptrs(const harness *t, float *const *bufs, float **ptrs) {
    for (int i = 0; i < MAXT; i++) ptrs[i] = (i < t->s.nt && t->s.diff[i]) ? bufs[i] : NULL;
}

static void check_guards(const harness *t) {
    const char *l = t->c->label;
    gcheck(t->out_fast, t->s.nout, l, "out (fast)");
    gcheck(t->out_ref, t->s.nout, l, "out (ref)");
    gcheck(t->scratch, t->s.scratch, l, "scratch");
    for (int a = 0; a < t->s.naux; a++) {
        gcheck(t->aux_fast[a], t->s.aux_sizes[a], l, t->s.aux_names[a]);
        gcheck(t->aux_ref[a], t->s.aux_sizes[a], l, t->s.aux_names[a]);
    }
    for (int i = 0; i < t->s.nt; i++) {
        gcheck(t->g_fast[i], t->s.sizes[i], l, t->s.names[i]);
        gcheck(t->g_ref[i], t->s.sizes[i], l, t->s.names[i]);
        gcheck(t->in[i], t->s.sizes[i], l, "input");
        CHECK(memcmp(t->in[i], t->in_copy[i], t->s.sizes[i] * sizeof(float)) == 0, "%s: %s: input modified", l,
              t->s.names[i]);
    }
}

static int is_bf16(const harness *t) { return (t->c->flags & F_BF16) != 0; }
static double fast_tol(const harness *t) {
    return !is_bf16(t) ? TOL_FAST_REF : t->c->op == OP_ATTENTION ? TOL_BF16_ATTN : TOL_BF16;
}

/* (a) forward, fast against reference, plus the cached values. */
static void check_forward(harness *t) {
    scratch_poison(t);
    op_forward(t->c, &t->s, 0, t->in, t->out_fast, t->aux_fast, t->scratch);
    op_forward(t->c, &t->s, 1, t->in, t->out_ref, t->aux_ref, NULL);
    double rel = compare(t->out_fast, t->out_ref, t->s.nout, fast_tol(t), t->c->label, "forward");
    if (is_bf16(t)) CHECK(rel > BF16_ENGAGED, "%s: bf16 forward equals fp32 (rel %.2e): not rounded", t->c->label, rel);
    for (int a = 0; a < t->s.naux; a++)
        compare(t->aux_fast[a], t->aux_ref[a], t->s.aux_sizes[a], fast_tol(t), t->c->label, t->s.aux_names[a]);
}

/* (b) backward, fast against reference; (e) accumulation and NULL gradients. */
static void check_backward(harness *t) {
    float *gf[MAXT], *gr[MAXT];
    grad_ptrs(t, t->g_fast, gf);
    grad_ptrs(t, t->g_ref, gr);
    scratch_poison(t);
    op_backward(t->c, &t->s, 0, t->in, gf, t->dout, t->aux_fast, t->scratch);
    op_backward(t->c, &t->s, 1, t->in, gr, t->dout, t->aux_ref, NULL);
    for (int i = 0; i < t->s.nt; i++)
        if (t->s.diff[i]) compare(t->g_fast[i], t->g_ref[i], t->s.sizes[i], fast_tol(t), t->c->label, t->s.names[i]);

    /* a second call adds the same gradient again */
    for (int i = 0; i < t->s.nt; i++) t->g_once[i] = gdup(t->g_fast[i], t->s.sizes[i]);
    scratch_poison(t);
    op_backward(t->c, &t->s, 0, t->in, gf, t->dout, t->aux_fast, t->scratch);
    for (int i = 0; i < t->s.nt; i++) {
        if (!t->s.diff[i]) continue;
        float *twice = gdup(t->g_once[i], t->s.sizes[i]);
        for (size_t e = 0; e < t->s.sizes[i]; e++) twice[e] *= 2;
        char what[48];
        snprintf(what, sizeof what, "%s x2", t->s.names[i]);
        compare(t->g_fast[i], twice, t->s.sizes[i], TOL_ACCUM, t->c->label, what);
        gfree(twice);
    }

    /* each gradient alone (the others NULL) is the same gradient */
    for (int i = 0; i < t->s.nt; i++) {
        if (!t->s.diff[i]) continue;
        float *only[MAXT] = {NULL}, *buf = galloc(t->s.sizes[i]);
        only[i] = buf;
        scratch_poison(t);
        op_backward(t->c, &t->s, 0, t->in, only, t->dout, t->aux_fast, t->scratch);
        char what[48];
        snprintf(what, sizeof what, "%s alone", t->s.names[i]);
        compare(buf, t->g_once[i], t->s.sizes[i], TOL_ACCUM, t->c->label, what);
        gcheck(buf, t->s.sizes[i], t->c->label, what);
        gfree(buf);
    }
}

/* The _set variants (conv with dinp_set, groupnorm, SiLU) overwrite the input gradient: over a
 * buffer of garbage they give what accumulating into zeros gave (g_once). */
static void check_set(harness *t) {
    const op_kind op = t->c->op;
    if ((op != OP_CONV && op != OP_GROUPNORM && op != OP_SILU) || !t->s.diff[0]) return;
    const size_t n = t->s.sizes[0];
    const int hw = t->c->h * t->c->w;
    float *buf = galloc(n);
    for (size_t e = 0; e < n; e++) buf[e] = (e & 1) ? NAN : 1e30f;
    scratch_poison(t);
    if (op == OP_CONV) {
        df_conv_shape cs = t->s.cs;
        cs.dinp_set = 1;
        df_conv2d_backward(buf, NULL, NULL, t->dout, t->in[0], t->in[1], &cs, t->scratch);
    } else if (op == OP_GROUPNORM) {
        df_groupnorm_backward_set(buf, NULL, NULL, t->dout, t->in[0], t->aux_fast[0], t->aux_fast[1], t->in[1],
                                  t->c->n, t->c->c, hw, t->c->groups);
    } else {
        df_silu_backward_set(buf, t->dout, t->in[0], n);
    }
    compare(buf, t->g_once[0], n, TOL_ACCUM, t->c->label, "set");
    gfree(buf);
}

/* L = sum(out * R) in double, out from the reference forward. */
static double fd_loss(harness *t, float *out) {
    op_forward(t->c, &t->s, 1, t->in, out, t->aux_ref, NULL);
    double l = 0;
    for (size_t e = 0; e < t->s.nout; e++) l += (double)out[e] * t->dout[e];
    return l;
}

/* (c) central differences on up to FD_SAMPLES elements of each tensor (first, last, random). */
static void check_finite_differences(harness *t) {
    float *out = galloc(t->s.nout);
    for (int i = 0; i < t->s.nt; i++) {
        if (!t->s.diff[i]) continue;
        const size_t n = t->s.sizes[i];
        const double scale = max_abs(t->g_once[i], n);
        double worst = 0, w_num = 0, w_ana = 0;
        size_t w_e = 0;
        int nonfinite = 0;
        for (int k = 0; k < FD_SAMPLES && k < (int)n; k++) {
            size_t e = k == 0 ? 0 : k == 1 ? n - 1 : (n <= FD_SAMPLES ? (size_t)k : rand_index(n));
            const float x = t->in[i][e];
            const float xp = x + (float)FD_H, xm = x - (float)FD_H;
            t->in[i][e] = xp;
            double lp = fd_loss(t, out);
            t->in[i][e] = xm;
            double lm = fd_loss(t, out);
            t->in[i][e] = x;
            double num = (lp - lm) / ((double)xp - xm), ana = t->g_once[i][e];
            if (!isfinite(num) || !isfinite(ana)) nonfinite++;
            double err = fabs(num - ana) / (scale > 0 ? scale : 1);
            if (err >= worst) worst = err, w_num = num, w_ana = ana, w_e = e;
        }
        char what[48];
        snprintf(what, sizeof what, "%s fd", t->s.names[i]);
        printf("  %-32s %-12s rel err %.2e (worst [%zu] numeric %.7g analytic %.7g, scale %.3g)\n", t->c->label,
               what, worst, w_e, w_num, w_ana, scale);
        CHECK(nonfinite == 0, "%s: %s: non-finite gradient", t->c->label, what);
        CHECK(worst <= TOL_FD, "%s: %s: rel err %.3e > tol %.1e", t->c->label, what, worst, TOL_FD);
    }
    gcheck(out, t->s.nout, t->c->label, "fd out");
    gfree(out);
}

/* (f) the ops documented as in place give the same result with out aliasing the input. */
static void check_inplace(harness *t) {
    const size_t n = t->s.nout;
    float *buf = gdup(t->in[0], n);
    switch (t->c->op) {
    case OP_SILU: df_silu_forward(buf, buf, n); break;
    case OP_ADD: df_add_forward(buf, buf, t->in[1], n); break;
    case OP_DROPOUT: df_dropout_forward(buf, buf, n, t->c->p, 1234, 5, 6); break;
    default: ASSERT(0);
    }
    CHECK(memcmp(buf, t->out_fast, n * sizeof(float)) == 0, "%s: in-place result differs", t->c->label);
    gcheck(buf, n, t->c->label, "in place");
    gfree(buf);
}

static void run_case(const op_case *c) {
    harness t;
    if ((c->flags & F_BF16_FALLBACK) == F_BF16_FALLBACK) df_gemm_bf16_force_fallback(1);
    if ((c->flags & F_BF16_FALLBACK) == F_BF16_FALLBACK || (c->flags & F_NO_DIRECT)) {
        df_conv3x3_force_off(1);
        df_wino_force_off(1);
    }
    if (c->flags & F_NO_WINO) df_wino_force_off(1);
    if (c->flags & F_PER_IMAGE) df_conv2d_force_per_image(1);
    harness_init(&t, c);
    check_forward(&t);
    check_backward(&t);
    check_set(&t);
    /* finite differences check the maths, which the fp32 twin of each bf16 case already did; the
     * bf16 gradient is the gradient of a rounded function, off by TOL_BF16, far above TOL_FD */
    if (!is_bf16(&t)) check_finite_differences(&t);
    if (c->flags & F_INPLACE) check_inplace(&t);
    check_guards(&t);
    harness_free(&t);
    df_gemm_bf16_force_fallback(0);
    df_conv3x3_force_off(0);
    df_wino_force_off(0);
    df_conv2d_force_per_image(0);
}

/* ---------------------------------------------------------------- single-value checks */
static void test_timestep_embedding(void) {
    float e[2 * 9];
    int t0[2] = {0, 0};
    /* t = 0: sin 0 = 0, cos 0 = 1; dim 9 is odd, so a zero column is appended */
    df_timestep_embedding(e, t0, 2, 9, 1, 0);
    for (int i = 0; i < 18; i++) {
        float want = (i % 9) < 4 ? 0.0f : (i % 9) < 8 ? 1.0f : 0.0f;
        CHECK(e[i] == want, "t=0 emb[%d] = %g, want %g", i, e[i], want);
    }
    /* t = 1, dim 4, freq_shift 1: half 2, freq = exp(-ln(1e4) j / 1) = 1, 1e-4 */
    int t1 = 1;
    df_timestep_embedding(e, &t1, 1, 4, 1, 0);
    const double want[4] = {sin(1.0), sin(1e-4), cos(1.0), cos(1e-4)};
    for (int i = 0; i < 4; i++) CHECK_CLOSE(e[i], want[i], 1e-6, "t=1 dim 4 shift 1");
    /* flip puts the cosines first */
    df_timestep_embedding(e, &t1, 1, 4, 1, 1);
    for (int i = 0; i < 4; i++) CHECK_CLOSE(e[i], want[(i + 2) % 4], 1e-6, "t=1 dim 4 flipped");
    /* DDPM's 128-dim embedding at t = 999 against double: the float argument t*freq carries
     * |arg| * 2^-24 * (few ulps from exp and the product) ~ 999 * 1.2e-7 * 3 ~ 4e-4 of absolute error */
    float big[128];
    int t2 = 999;
    df_timestep_embedding(big, &t2, 1, 128, 1, 0);
    double worst = 0;
    for (int j = 0; j < 64; j++) {
        double arg = 999.0 * exp(-log(10000.0) * j / 63.0);
        worst = fmax(worst, fabs(big[j] - sin(arg)));
        worst = fmax(worst, fabs(big[64 + j] - cos(arg)));
    }
    printf("  timestep embedding t=999 dim 128: max abs err vs double %.2e (tol 1e-3)\n", worst);
    CHECK(worst <= 1e-3, "t=999 embedding error %g", worst);
}

/* Hand-computed values that do not depend on any reference: with all-ones input and weights a conv
 * output counts the in-image taps, which pins down where the padding goes. */
static void test_conv_known_values(void) {
    float x[16], w[9], out[16], *scratch;
    for (int i = 0; i < 16; i++) x[i] = 1.0f;
    for (int i = 0; i < 9; i++) w[i] = 1.0f;
    df_conv_shape s;
    /* 3x3 pad 1 on 3x3: corners see 4 taps, edges 6, the centre 9 */
    df_conv_shape_init(&s, 1, 1, 3, 3, 1, 3, 1, 1, 1, 1, 1);
    scratch = malloc(df_conv2d_scratch_floats(&s) * sizeof(float));  /* the contract's size, GEMM workspace included */
    df_conv2d_forward(out, x, w, NULL, &s, scratch);
    free(scratch);
    const float same[9] = {4, 6, 4, 6, 9, 6, 4, 6, 4};
    for (int i = 0; i < 9; i++) CHECK(out[i] == same[i], "3x3 pad 1: out[%d] = %g, want %g", i, out[i], same[i]);
    /* DDPM downsampler on 4x4: pad 0 top/left, 1 bottom/right, stride 2 -> 2x2 of 9, 6 / 6, 4 */
    df_conv_shape_init(&s, 1, 1, 4, 4, 1, 3, 2, 0, 0, 1, 1);
    CHECK(s.oh == 2 && s.ow == 2, "downsample 4x4 -> %dx%d, want 2x2", s.oh, s.ow);
    scratch = malloc(df_conv2d_scratch_floats(&s) * sizeof(float));
    df_conv2d_forward(out, x, w, NULL, &s, scratch);
    free(scratch);
    const float down[4] = {9, 6, 6, 4};
    for (int i = 0; i < 4; i++) CHECK(out[i] == down[i], "downsample: out[%d] = %g, want %g", i, out[i], down[i]);
}

/* With all keys equal every softmax row is uniform, so each output pixel is the mean of v. */
static void test_attention_known_values(void) {
    enum { C = 4, HW = 6 };
    float q[C * HW], k[C * HW], v[C * HW], out[C * HW], probs[2 * HW * HW];
    float *scratch = malloc(df_attention_scratch_floats(1, C, HW, 2) * sizeof(float));
    for (int i = 0; i < C * HW; i++) {
        q[i] = (float)(i % 5) - 2.0f;
        k[i] = 0.5f;
        v[i] = (float)i;
    }
    df_attention_forward(out, probs, q, k, v, 1, C, HW, 2, DF_PRECISION_FP32, scratch);
    free(scratch);
    double worst = 0;
    for (int i = 0; i < 2 * HW * HW; i++) worst = fmax(worst, fabs(probs[i] - 1.0 / HW));
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HW; i++) worst = fmax(worst, fabs(out[c * HW + i] - (c * HW + (HW - 1) / 2.0)));
    /* float softmax of equal scores and a 6-term float sum: a few ulps of values <= 23.5 */
    CHECK(worst <= 1e-5, "uniform attention: max abs err %g", worst);
}

/* The fused GroupNorm + SiLU ops give the plain pair's bits (and the same statistics). */
/* GroupNorm statistics of groups far from zero (mean 1e4 times their spread; and a constant group):
 * the one-pass shifted sums against a two-pass double reference. A plain one-pass E[x^2] - E[x]^2
 * in float would lose every digit here. */
static void test_groupnorm_large_mean(void) {
    enum { N = 2, C = 4, HW = 300, G = 2 };
    const size_t n = (size_t)N * C * HW, gs = (size_t)C / G * HW;
    float *x = galloc(n), *y = galloc(n), gamma[C], beta[C], mean[N * G], rstd[N * G];
    for (size_t i = 0; i < n; i++) x[i] = 10000.0f + (float)sin(0.91 * (double)i);
    for (size_t i = 2 * gs; i < 3 * gs; i++) x[i] = -250.5f; /* image 1's first group: constant */
    for (int i = 0; i < C; i++) gamma[i] = 1.0f, beta[i] = 0.0f;
    df_groupnorm_forward(y, mean, rstd, x, gamma, beta, N, C, HW, G, 1e-5f);
    double worst = 0;
    for (int g = 0; g < N * G; g++) {
        double mu = 0, var = 0;
        for (size_t i = 0; i < gs; i++) mu += x[g * gs + i];
        mu /= (double)gs;
        for (size_t i = 0; i < gs; i++) var += (x[g * gs + i] - mu) * (x[g * gs + i] - mu);
        const double rs = 1.0 / sqrt(var / (double)gs + 1e-5);
        CHECK(fabs(mean[g] - mu) <= 1e-7 * fabs(mu), "groupnorm large mean: group %d mean %.9g vs %.9g", g, mean[g], mu);
        const double e = fabs(rstd[g] - rs) / rs;
        CHECK(e <= 1e-6, "groupnorm large mean: group %d rstd %.9g vs %.9g", g, rstd[g], rs);
        if (e > worst) worst = e;
    }
    printf("  groupnorm statistics at mean 1e4 x spread, and a constant group: rstd rel err %.2e (tol 1e-6)\n", worst);
    gfree(x);
    gfree(y);
}

static void test_groupnorm_silu_fused(void) {
    enum { N = 3, C = 12, HW = 37, G = 4 };
    const size_t n = (size_t)N * C * HW;
    float *x = galloc(n), *gn = galloc(n), *sl = galloc(n), *f = galloc(n), *fg = galloc(n);
    float gamma[C], beta[C], m1[N * G], r1[N * G], m2[N * G], r2[N * G];
    for (size_t i = 0; i < n; i++) x[i] = (float)sin(0.37 * (double)i) * 3.0f + 0.5f;
    for (int i = 0; i < C; i++) gamma[i] = 0.5f + 0.1f * (float)i, beta[i] = 0.2f - 0.05f * (float)i;
    df_groupnorm_forward(gn, m1, r1, x, gamma, beta, N, C, HW, G, 1e-6f);
    df_silu_forward(sl, gn, n);
    df_groupnorm_silu_forward(f, m2, r2, x, gamma, beta, N, C, HW, G, 1e-6f);
    CHECK(memcmp(f, sl, n * sizeof(float)) == 0, "groupnorm+silu forward differs from the pair");
    CHECK(memcmp(m1, m2, sizeof m1) == 0 && memcmp(r1, r2, sizeof r1) == 0, "groupnorm+silu statistics differ");
    df_groupnorm_silu_apply(fg, f, m1, r1, x, gamma, beta, N, C, HW, G);
    CHECK(memcmp(fg, gn, n * sizeof(float)) == 0 && memcmp(f, sl, n * sizeof(float)) == 0,
          "groupnorm+silu apply differs from the pair");
    df_groupnorm_silu_apply(NULL, f, m1, r1, x, gamma, beta, N, C, HW, G);
    CHECK(memcmp(f, sl, n * sizeof(float)) == 0, "groupnorm+silu apply (SiLU only) differs from the pair");
    float *dy = galloc(n), *g1 = galloc(n), *g2 = galloc(n);
    for (size_t i = 0; i < n; i++) dy[i] = (float)cos(0.11 * (double)i) - 0.25f;
    df_silu_backward_set(g1, dy, gn, n);
    df_groupnorm_silu_grad_set(g2, dy, x, m1, r1, gamma, beta, N, C, HW, G);
    CHECK(memcmp(g1, g2, n * sizeof(float)) == 0, "groupnorm+silu grad differs from apply + SiLU backward");
    /* the whole backward in one op: its tmp, dx (set and accumulated), dgamma and dbeta */
    float *dx1 = galloc(n), *dx2 = galloc(n), *t = galloc(n);
    float dg1[C], db1[C], dg2[C], db2[C];
    for (int set = 1; set >= 0; set--) {
        for (size_t i = 0; i < n; i++) dx1[i] = dx2[i] = set ? NAN : (float)i * 0.01f;
        for (int i = 0; i < C; i++) dg1[i] = dg2[i] = 0.5f * (float)i, db1[i] = db2[i] = -0.25f * (float)i;
        (set ? df_groupnorm_backward_set : df_groupnorm_backward)(dx1, dg1, db1, g2, x, m1, r1, gamma, N, C, HW, G);
        df_groupnorm_silu_backward(dx2, dg2, db2, t, dy, x, m1, r1, gamma, beta, N, C, HW, G, set);
        CHECK(memcmp(dx1, dx2, n * sizeof(float)) == 0 && memcmp(dg1, dg2, sizeof dg1) == 0 &&
                  memcmp(db1, db2, sizeof db1) == 0,
              "groupnorm+silu backward (set %d) differs from the SiLU gradient + groupnorm backward", set);
    }
    gfree(dx1), gfree(dx2), gfree(t);
    {   /* a group too large for the op's stack (2 x 2100 values): the path through tmp */
        enum { N2 = 2, C2 = 4, HW2 = 2100, G2 = 2 };
        const size_t n2 = (size_t)N2 * C2 * HW2;
        CHECK(df_groupnorm_silu_backward_tmp_floats(N2, C2, HW2, G2) == n2, "a large group needs tmp");
        CHECK(df_groupnorm_silu_backward_tmp_floats(N, C, HW, G) == 0, "a small group needs no tmp");
        float *xb = galloc(n2), *gb = galloc(n2), *mb = galloc(N2 * G2), *rb = galloc(N2 * G2), *d1 = galloc(n2);
        float *sg = galloc(n2), *tb = galloc(n2), *e1 = galloc(n2), *e2 = galloc(n2);
        float gm[C2], bt[C2], dg3[C2] = {0}, db3[C2] = {0}, dg4[C2] = {0}, db4[C2] = {0};
        for (size_t i = 0; i < n2; i++) xb[i] = (float)sin(0.13 * (double)i) + 0.3f, d1[i] = (float)cos(0.07 * (double)i);
        for (int i = 0; i < C2; i++) gm[i] = 1.0f + 0.2f * (float)i, bt[i] = 0.1f * (float)i;
        df_groupnorm_forward(gb, mb, rb, xb, gm, bt, N2, C2, HW2, G2, 1e-5f);
        df_groupnorm_silu_grad_set(sg, d1, xb, mb, rb, gm, bt, N2, C2, HW2, G2);
        df_groupnorm_backward_set(e1, dg3, db3, sg, xb, mb, rb, gm, N2, C2, HW2, G2);
        df_groupnorm_silu_backward(e2, dg4, db4, tb, d1, xb, mb, rb, gm, bt, N2, C2, HW2, G2, 1);
        CHECK(memcmp(e1, e2, n2 * sizeof(float)) == 0 && memcmp(dg3, dg4, sizeof dg3) == 0 &&
                  memcmp(db3, db4, sizeof db3) == 0,
              "groupnorm+silu backward through tmp differs from the SiLU gradient + groupnorm backward");
        gfree(xb), gfree(gb), gfree(mb), gfree(rb), gfree(d1), gfree(sg), gfree(tb), gfree(e1), gfree(e2);
    }
    gfree(dy), gfree(g1), gfree(g2);
    printf("  groupnorm+silu fused: forward, apply, the SiLU gradient and the whole backward equal the plain ops "
           "bit for bit\n");
    gfree(x), gfree(gn), gfree(sl), gfree(f), gfree(fg);
}

/* df_conv2d_forward_fused gives the bits of the ops it replaces (norm + SiLU apply, conv, channel
 * bias, residual add), fp32 and bf16, on shapes with partial tiles (w not a multiple of anything,
 * oc not a multiple of 8); groupnorm stats equal the forward's. Skipped where the direct path is
 * absent (the fusion is then never taken). */
static void test_conv_fused(void) {
    static const int shapes[][5] = {/* n, ic, oc, h, w */ {3, 16, 24, 7, 7},  {2, 32, 12, 13, 11}, {2, 8, 16, 28, 28},
                                    {19, 16, 24, 7, 7}, {3, 32, 16, 4, 4}};
    int ran = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (int prec = 0; prec < 2; prec++) {
            const int N = shapes[si][0], IC = shapes[si][1], OC = shapes[si][2], H = shapes[si][3], W = shapes[si][4];
            const int G = 4;
            df_conv_shape s;
            df_conv_shape_init(&s, N, IC, H, W, OC, 3, 1, 1, 1, 1, 1);
            s.precision = prec ? DF_PRECISION_BF16 : DF_PRECISION_FP32;
            if (!df_conv2d_fuses(&s)) continue;
            const size_t nin = (size_t)N * IC * H * W, nout = (size_t)N * OC * H * W;
            float *x = galloc(nin), *a = galloc(nin), *w = galloc((size_t)OC * IC * 9), *b = galloc(OC);
            float *cb = galloc((size_t)N * OC), *res = galloc(nout), *want = galloc(nout), *got = galloc(nout);
            float *gamma = galloc(IC), *beta = galloc(IC), *m = galloc((size_t)N * G), *r = galloc((size_t)N * G);
            float *m2 = galloc((size_t)N * G), *r2 = galloc((size_t)N * G);
            float *ws = galloc(df_conv2d_scratch_floats(&s));
            fill_uniform(x, nin, -2.0f, 3.0f), fill_uniform(w, (size_t)OC * IC * 9, -0.2f, 0.2f);
            fill_uniform(b, OC, -1.0f, 1.0f), fill_uniform(cb, (size_t)N * OC, -1.0f, 1.0f);
            fill_uniform(res, nout, -1.0f, 1.0f), fill_uniform(gamma, IC, 0.5f, 1.5f), fill_uniform(beta, IC, -0.5f, 0.5f);
            df_groupnorm_silu_forward(a, m, r, x, gamma, beta, N, IC, H * W, G, 1e-5f);
            df_groupnorm_stats(m2, r2, x, N, IC, H * W, G, 1e-5f);
            CHECK(memcmp(m, m2, sizeof(float) * N * G) == 0 && memcmp(r, r2, sizeof(float) * N * G) == 0,
                  "groupnorm stats differ from the forward's");
            for (int variant = 0; variant < 3; variant++) {
                /* 0: norm + channel bias (a resnet's conv1), 1: norm + residual (conv2), 2: all */
                df_conv_fusion f = {m, r, gamma, beta, G, variant != 1 ? cb : NULL, variant != 0 ? res : NULL};
                df_conv2d_forward(want, a, w, b, &s, ws);
                if (f.chan_bias) df_add_channel_bias_forward(want, cb, N, OC, H * W);
                if (f.residual) df_add_forward(want, want, res, nout);
                df_conv2d_forward_fused(got, x, w, b, &f, &s, ws);
                CHECK(memcmp(got, want, sizeof(float) * nout) == 0,
                      "fused conv %dx%dx%d->%d %s variant %d differs from the separate ops", N, IC, H, OC,
                      prec ? "bf16" : "fp32", variant);
                gcheck(got, nout, "fused conv", "out");
            }
            ran++;
            gfree(x), gfree(a), gfree(w), gfree(b), gfree(cb), gfree(res), gfree(want), gfree(got), gfree(gamma);
            gfree(beta), gfree(m), gfree(r), gfree(m2), gfree(r2), gfree(ws);
        }
    printf("  conv fused (norm+SiLU in, channel bias and residual out): %d shape/precision pairs bit for bit\n", ran);
}

/* The lanes kernel (16 images per vector) and the per-image direct kernel give the same bits, forward
 * and dX, fp32 and bf16: the U-Net's output for an image then does not depend on the batch size
 * (which picks between them at 7x7 and 8x8). */
static void test_conv_lanes_bits(void) {
    enum { N = 19, IC = 24, OC = 16, H = 7, W = 7 };
    const size_t nin = (size_t)N * IC * H * W, nout = (size_t)N * OC * H * W, nw = (size_t)OC * IC * 9;
    int ran = 0;
    for (int prec = 0; prec < 2; prec++) {
        df_conv_shape s;
        df_conv_shape_init(&s, N, IC, H, W, OC, 3, 1, 1, 1, 1, 1);
        s.precision = prec ? DF_PRECISION_BF16 : DF_PRECISION_FP32;
        if (!df_conv2d_fuses(&s)) continue;
        float *x = galloc(nin), *w = galloc(nw), *b = galloc(OC), *g = galloc(nout);
        float *y1 = galloc(nout), *y2 = galloc(nout), *dx1 = galloc(nin), *dx2 = galloc(nin);
        float *ws = galloc(df_conv2d_scratch_floats(&s));
        fill_uniform(x, nin, -1.0f, 1.0f), fill_uniform(w, nw, -0.3f, 0.3f), fill_uniform(b, OC, -1.0f, 1.0f);
        fill_uniform(g, nout, -1.0f, 1.0f), fill_uniform(dx1, nin, -1.0f, 1.0f);
        memcpy(dx2, dx1, nin * sizeof(float));
        df_conv2d_forward(y1, x, w, b, &s, ws);
        df_conv2d_backward(dx1, NULL, NULL, g, x, w, &s, ws);  /* accumulating */
        df_conv2d_force_per_image(1);
        float *ws2 = galloc(df_conv2d_scratch_floats(&s));
        df_conv2d_forward(y2, x, w, b, &s, ws2);
        df_conv2d_backward(dx2, NULL, NULL, g, x, w, &s, ws2);
        df_conv2d_force_per_image(0);
        CHECK(memcmp(y1, y2, nout * sizeof(float)) == 0, "lanes forward (%s) differs from the per-image kernel",
              prec ? "bf16" : "fp32");
        CHECK(memcmp(dx1, dx2, nin * sizeof(float)) == 0, "lanes dX (%s) differs from the per-image kernel",
              prec ? "bf16" : "fp32");
        ran++;
        gfree(x), gfree(w), gfree(b), gfree(g), gfree(y1), gfree(y2), gfree(dx1), gfree(dx2), gfree(ws), gfree(ws2);
    }
    printf("  conv lanes vs per-image direct: forward and dX bit for bit in %d precisions\n", ran);
}

/* The dropout mask is df_randu's: the kept fraction is near 1-p and the same keys give the same mask. */
static void test_dropout_mask(void) {
    enum { N = 4099 };
    static float ones[N], out[N], u[N];
    for (int i = 0; i < N; i++) ones[i] = 1.0f;
    df_dropout_forward(out, ones, N, 0.25f, 77, 1, 2);
    df_randu(77, DF_STREAM_DROPOUT, 1, 2, u, N);
    int mismatches = 0, kept = 0;
    for (int i = 0; i < N; i++) {
        int keep = u[i] >= 0.25f;
        kept += keep;
        mismatches += keep ? out[i] != 1.0f / 0.75f : out[i] != 0.0f;
    }
    /* kept ~ Binomial(4099, 0.75): sd 27.7, so +-5 sd is +-139 */
    printf("  dropout mask: %d mismatches vs df_randu, kept %d of %d (expect ~%d)\n", mismatches, kept, N,
           (int)(0.75 * N));
    CHECK(mismatches == 0, "dropout mask differs from df_randu in %d places", mismatches);
    CHECK(abs(kept - (int)(0.75 * N)) < 139, "kept %d", kept);
}

/* A call split in pieces (df_dropout_forward_at, a rank's share of a data-parallel batch) gives the
 * whole call's mask: pieces at multiples of 64 (the AVX-512 path) and at odd offsets (the scalar one),
 * forward and backward. */
static void test_dropout_split(void) {
    enum { N = 4099 };
    static float in[N], whole[N], pieces[N], gwhole[N], gpieces[N];
    for (int i = 0; i < N; i++) in[i] = 0.5f + (float)(i % 13);
    df_dropout_forward(whole, in, N, 0.3f, 91, 7, 3);
    memset(gwhole, 0, sizeof gwhole);
    memset(gpieces, 0, sizeof gpieces);
    df_dropout_backward(gwhole, in, N, 0.3f, 91, 7, 3);
    const size_t cuts[] = {0, 640, 1001, 1003, 2048, 3333, N};
    for (size_t k = 0; k + 1 < sizeof cuts / sizeof cuts[0]; k++) {
        const size_t a = cuts[k], n = cuts[k + 1] - a;
        df_dropout_forward_at(pieces + a, in + a, n, a, 0.3f, 91, 7, 3);
        df_dropout_backward_at(gpieces + a, in + a, n, a, 0.3f, 91, 7, 3);
    }
    int diff = 0;
    for (int i = 0; i < N; i++) diff += whole[i] != pieces[i] || gwhole[i] != gpieces[i];
    printf("  dropout in pieces: %d of %d elements differ from the whole call\n", diff, N);
    CHECK(diff == 0, "dropout in pieces differs from the whole call in %d places", diff);
}

int main(void) {
    double t0 = df_time();
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        if (!check_selected(CASES[i].label)) continue;
        printf("%s\n", CASES[i].label);
        run_case(&CASES[i]);
    }
    if (!check_selected("the named tests")) { /* DIFFUSE_TEST_ONLY: the cases above alone */
        printf("test_ops: %.2f s\n", df_time() - t0);
        return check_exit_code("test_ops");
    }
    test_conv_known_values();
    test_attention_known_values();
    test_timestep_embedding();
    test_dropout_mask();
    test_dropout_split();
    test_groupnorm_silu_fused();
    test_groupnorm_large_mean();
    test_conv_fused();
    test_conv_lanes_bits();
    printf("test_ops: %.2f s\n", df_time() - t0);
    return check_exit_code("test_ops");
}
