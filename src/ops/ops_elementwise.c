/* ops_elementwise.c: pointwise ops (ops.h): SiLU, add, per-(image,channel) bias add, dropout.
 *
 * What it is: plain loops, OpenMP over large counts. These ops are memory-bound; the model may
 * later fuse them, but each stays available here as the plain pair.
 * What it is not: no GroupNorm (ops_norm.c), no shape ops (ops_misc.c).
 * Gradients ACCUMULATE (+=) into every gradient output; NULL means "not needed".
 */
#include "ops.h"
#include "cpu.h"
#include "common.h"
#include "vexp.h"
#include <math.h>
#include <string.h>

/* Below this many elements one thread is faster than waking the team. */
#define ELT_OMP_MIN 32768

/* ---------------------------------------------------------------- SiLU */
/* silu(x) = x * sigmoid(x) (Elfwing et al. 2018; "swish" in DDPM) = x / (1 + e^-x). */
void df_silu_forward(float *out, const float *inp, size_t n) {
    const double t0_ = df_ops_prof_begin();
#pragma omp parallel for simd schedule(static) if (n > ELT_OMP_MIN)
    for (size_t i = 0; i < n; i++) out[i] = df_vsiluf(inp[i]);
    df_ops_prof_end(t0_, "silu fwd");
}

/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x) (vexp.h, shared with the fused norm ops). */
#define silu_grad df_vsilu_gradf

void df_silu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
    const double t0_ = df_ops_prof_begin();
#pragma omp parallel for simd schedule(static) if (n > ELT_OMP_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] += silu_grad(dout[i], inp[i]);
    df_ops_prof_end(t0_, "silu bwd");
}

void df_silu_backward_set(float *dinp, const float *dout, const float *inp, size_t n) {
    const double t0_ = df_ops_prof_begin();
#pragma omp parallel for simd schedule(static) if (n > ELT_OMP_MIN)
    for (size_t i = 0; i < n; i++) dinp[i] = silu_grad(dout[i], inp[i]);
    df_ops_prof_end(t0_, "silu bwd");
}

/* ---------------------------------------------------------------- add */
void df_add_forward(float *out, const float *a, const float *b, size_t n) {
    const double t0_ = df_ops_prof_begin();
#pragma omp parallel for schedule(static) if (n > ELT_OMP_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
    df_ops_prof_end(t0_, "add fwd");
}

/* Two separate passes, so da == db (out = x + x) correctly receives 2 dout. */
void df_add_backward(float *da, float *db, const float *dout, size_t n) {
    const double t0_ = df_ops_prof_begin();
    if (da) {
#pragma omp parallel for schedule(static) if (n > ELT_OMP_MIN)
        for (size_t i = 0; i < n; i++) da[i] += dout[i];
    }
    if (db) {
#pragma omp parallel for schedule(static) if (n > ELT_OMP_MIN)
        for (size_t i = 0; i < n; i++) db[i] += dout[i];
    }
    df_ops_prof_end(t0_, "add bwd");
}

/* ---------------------------------------------------------------- channel bias */
void df_add_channel_bias_forward(float *x, const float *bias, int n, int c, int hw) {
    const double t0_ = df_ops_prof_begin();
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw > ELT_OMP_MIN)
    for (int nc = 0; nc < n * c; nc++) {
        float *row = x + (size_t)nc * hw;
        const float v = bias[nc];
        for (int p = 0; p < hw; p++) row[p] += v;
    }
    df_ops_prof_end(t0_, "channel bias fwd");
}

void df_add_channel_bias_backward(float *dbias, const float *dx, int n, int c, int hw) {
    const double t0_ = df_ops_prof_begin();
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw > ELT_OMP_MIN)
    for (int nc = 0; nc < n * c; nc++) {
        const float *row = dx + (size_t)nc * hw;
        double acc = 0.0;
#pragma omp simd reduction(+ : acc)
        for (int p = 0; p < hw; p++) acc += row[p];
        dbias[nc] += (float)acc;
    }
    df_ops_prof_end(t0_, "channel bias bwd");
}

/* ---------------------------------------------------------------- dropout */
/* Inverted dropout (Srivastava et al. 2014). Element e is kept iff its uniform u_e >= p, where u_e
 * is exactly df_randu(seed, DF_STREAM_DROPOUT, a, b, ...)[e]: Philox block {e/4, a, b, stream},
 * word e%4, top 24 bits times 2^-24 (the conversion of rng.c, restated here because the ops may not
 * allocate a buffer for df_randu; tests/test_ops.c checks that the two agree). Blocks are
 * independent, so OpenMP over blocks gives the same mask for any thread count. */
static void dropout_block_uniforms(uint64_t seed, uint32_t a, uint32_t b, size_t block, float u[4]) {
    uint32_t ctr[4] = {(uint32_t)block, a, b, DF_STREAM_DROPOUT}, r[4];
    df_philox4x32(ctr, seed, r);
    for (int j = 0; j < 4; j++) u[j] = (float)(r[j] >> 8) * (1.0f / 16777216.0f);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DROPOUT_AVX512 1
#define T_AVX512 __attribute__((target("avx512f")))

/* hi and lo 32 bits of the 16 products m * c (unsigned 32 x 32 -> 64). */
T_AVX512 static inline void mul_hilo16(__m512i c, __m512i m, __m512i *hi, __m512i *lo) {
    const __m512i even = _mm512_mul_epu32(c, m), odd = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m);
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mullo_epi32(c, m);
}

/* The 4 words of the Philox4x32-10 blocks {blk0 + l, a, b, stream}, l = 0..15, as 64 words in
 * element order (block l's words at 4l..4l+3): df_philox4x32 on 16 lanes, bit for bit. */
T_AVX512 static void philox_x16(uint64_t key, uint32_t blk0, uint32_t a, uint32_t b, uint32_t stream, __m512i out[4]) {
    __m512i c0 = _mm512_add_epi32(_mm512_set1_epi32((int)blk0),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i c1 = _mm512_set1_epi32((int)a), c2 = _mm512_set1_epi32((int)b), c3 = _mm512_set1_epi32((int)stream);
    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u), m1 = _mm512_set1_epi32((int)0xCD9E8D57u);
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        __m512i hi0, lo0, hi1, lo1;
        mul_hilo16(c0, m0, &hi0, &lo0);
        mul_hilo16(c2, m1, &hi1, &lo1);
        const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
        const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
        c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    /* words (c0, c1, c2, c3) of 16 blocks -> element order: pairs (c0,c1) and (c2,c3) interleaved,
     * then the two pairs of each block side by side */
    const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i q01a = _mm512_permutex2var_epi32(c0, lo, c1), q01b = _mm512_permutex2var_epi32(c0, hi, c1);
    const __m512i q23a = _mm512_permutex2var_epi32(c2, lo, c3), q23b = _mm512_permutex2var_epi32(c2, hi, c3);
    const __m512i plo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11), phi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    out[0] = _mm512_permutex2var_epi64(q01a, plo, q23a);
    out[1] = _mm512_permutex2var_epi64(q01a, phi, q23a);
    out[2] = _mm512_permutex2var_epi64(q01b, plo, q23b);
    out[3] = _mm512_permutex2var_epi64(q01b, phi, q23b);
}

/* dropout_apply on elements [64 g, 64 g + 64) clipped to n: 16 Philox blocks at once, the blocks of
 * global group g0 + g (the elements start at global element 64 g0). */
T_AVX512 static void dropout_group16(float *dst, const float *src, size_t n, size_t g, size_t g0, float p, float scale,
                                     uint64_t seed, uint32_t a, uint32_t b, int accumulate) {
    __m512i r[4];
    philox_x16(seed, (uint32_t)((g0 + g) * 16), a, b, DF_STREAM_DROPOUT, r);
    const __m512 pv = _mm512_set1_ps(p), sv = _mm512_set1_ps(scale), unit = _mm512_set1_ps(1.0f / 16777216.0f);
    for (int v = 0; v < 4; v++) {
        const size_t e0 = g * 64 + (size_t)v * 16;
        if (e0 >= n) break;
        const __mmask16 in = n - e0 >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - e0)) - 1);
        /* u = top 24 bits * 2^-24, exact; kept iff u >= p, as in the scalar path */
        const __m512 u = _mm512_mul_ps(_mm512_cvtepu32_ps(_mm512_srli_epi32(r[v], 8)), unit);
        const __mmask16 keep = _mm512_cmp_ps_mask(u, pv, _CMP_GE_OQ);
        __m512 val = _mm512_maskz_mul_ps(keep, _mm512_maskz_loadu_ps(in, src + e0), sv);
        if (accumulate) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(in, dst + e0));
        _mm512_mask_storeu_ps(dst + e0, in, val);
    }
}
#endif

/* dst[e] (+)= src[e] * mask_e / (1 - p), mask_e that of global element first + e (first > 0: this
 * call is the tail of a larger one, e.g. one rank's samples of a data-parallel batch);
 * accumulate selects += (backward) or = (forward). On AVX-512F CPUs with first a multiple of 64, 16
 * Philox blocks run at once (the same bits; tests/test_ops.c checks the mask against df_randu);
 * elsewhere one block at a time. */
static void dropout_apply(float *dst, const float *src, size_t n, uint64_t first, float p, uint64_t seed, uint32_t a,
                          uint32_t b, int accumulate) {
    ASSERT(p >= 0.0f && p < 1.0f);
    ASSERT((first + n + 3) / 4 <= 0xFFFFFFFFu);
    const float scale = 1.0f / (1.0f - p);
#ifdef DROPOUT_AVX512
    if (df_cpu_avx512() && first % 64 == 0) {
        const size_t groups = (n + 63) / 64, g0 = (size_t)(first / 64);
#pragma omp parallel for schedule(static) if (n > ELT_OMP_MIN)
        for (size_t g = 0; g < groups; g++) dropout_group16(dst, src, n, g, g0, p, scale, seed, a, b, accumulate);
        return;
    }
#endif
    /* global blocks [first / 4, (first + n + 3) / 4), each writing its words that fall in this call */
    const size_t blk0 = (size_t)(first / 4), blocks = (size_t)((first + n + 3) / 4) - blk0;
#pragma omp parallel for schedule(static) if (n > ELT_OMP_MIN)
    for (size_t k = 0; k < blocks; k++) {
        float u[4];
        dropout_block_uniforms(seed, a, b, blk0 + k, u);
        for (size_t j = 0; j < 4; j++) {
            const uint64_t ge = (uint64_t)(blk0 + k) * 4 + j;
            if (ge < first || ge >= first + n) continue;
            const size_t e = (size_t)(ge - first);
            const float v = u[j] >= p ? src[e] * scale : 0.0f;
            if (accumulate) dst[e] += v;
            else dst[e] = v;
        }
    }
}

void df_dropout_forward_at(float *out, const float *inp, size_t n, uint64_t first, float p, uint64_t seed, uint32_t a,
                           uint32_t b) {
    const double t0_ = df_ops_prof_begin();
    if (p == 0.0f) {
        if (out != inp) memcpy(out, inp, n * sizeof(float));
        df_ops_prof_end(t0_, "dropout fwd");
        return;
    }
    dropout_apply(out, inp, n, first, p, seed, a, b, 0);
    df_ops_prof_end(t0_, "dropout fwd");
}

void df_dropout_backward_at(float *dinp, const float *dout, size_t n, uint64_t first, float p, uint64_t seed,
                            uint32_t a, uint32_t b) {
    const double t0_ = df_ops_prof_begin();
    if (!dinp) { df_ops_prof_end(t0_, "dropout bwd"); return; }
    if (p == 0.0f) {
        df_add_backward(dinp, NULL, dout, n);
        df_ops_prof_end(t0_, "dropout bwd");
        return;
    }
    dropout_apply(dinp, dout, n, first, p, seed, a, b, 1);
    df_ops_prof_end(t0_, "dropout bwd");
}

void df_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed, uint32_t a, uint32_t b) {
    df_dropout_forward_at(out, inp, n, 0, p, seed, a, b);
}

void df_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed, uint32_t a, uint32_t b) {
    df_dropout_backward_at(dinp, dout, n, 0, p, seed, a, b);
}
