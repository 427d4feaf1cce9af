/* conv3x3.c: the direct 3x3 stride-1 pad-1 convolution (conv3x3.h describes the method).
 *
 * Every function that uses AVX-512 carries a target attribute, so the file compiles for any x86-64
 * (and to stubs elsewhere); ops_conv.c calls it only after df_conv3x3_available(). */
#include "conv3x3.h"
#include "common.h"
#include "cpu.h"
#include <stdint.h>
#include <string.h>

#define C3_MR 8  /* output channels per register tile */
#define C3_NR 48 /* positions per register tile: 3 vectors of 16 */

static int g_force_off = 0;
void df_conv3x3_force_off(int force) { g_force_off = force != 0; }

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

size_t df_conv3x3_plane_words(int h, int w) {
    const size_t wp = (size_t)w + 2;
    return round_up(round_up((size_t)h * wp, C3_NR) + 2 * wp + 2, 16);
}

size_t df_conv3x3_image_words(int c, int h, int w, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    const size_t planes = bf16 ? ((size_t)c + 1) / 2 : (size_t)c;
    return planes * df_conv3x3_plane_words(h, w);
}

size_t df_conv3x3_weight_words(int oc, int ic, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    const size_t steps = bf16 ? ((size_t)ic + 1) / 2 : (size_t)ic;
    return round_up((size_t)oc, C3_MR) * steps * 9;
}

/* bf16 bits of x, round to nearest even (NaN kept quiet, denormals to signed zero): the rounding
 * of VCVTNEPS2BF16 and of df_bf16_round (gemm.c), which the tests hold this to. */
static uint32_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7f800000u) == 0) return (u >> 16) & 0x8000u;             /* zero or denormal */
    if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 0x40u) & 0xffffu; /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return u >> 16;
}

/* x rounded to bf16 and kept in fp32 (the DF_C3_BF16R format). */
static float bf16_round_f(float x) {
    const uint32_t u = bf16_bits(x) << 16;
    float r;
    memcpy(&r, &u, sizeof r);
    return r;
}

/* Weight of output o, input c, tap t (t = 3 ki + kj) in the conv the packed weights describe. */
static float weight_at(const float *w, int oc, int ic, int o, int c, int t, int flip) {
    if (o >= oc || c >= ic) return 0.0f;
    return flip ? w[((size_t)c * oc + o) * 9 + (8 - t)] : w[((size_t)o * ic + c) * 9 + t];
}

void df_conv3x3_pack_weights(void *dst, const float *w, int oc, int ic, int flip, int bf16) {
    const int rnd = bf16 == DF_C3_BF16R;
    bf16 = bf16 == DF_C3_BF16;
    const int strips = (oc + C3_MR - 1) / C3_MR, steps = bf16 ? (ic + 1) / 2 : ic;
#pragma omp parallel for schedule(static) if (strips > 1 && (size_t)oc * ic > 4096)
    for (int sidx = 0; sidx < strips; sidx++) {
        if (bf16) {
            uint32_t *d = (uint32_t *)dst + (size_t)sidx * steps * 9 * C3_MR;
            for (int s = 0; s < steps; s++)
                for (int t = 0; t < 9; t++)
                    for (int r = 0; r < C3_MR; r++) {
                        const int o = sidx * C3_MR + r;
                        *d++ = bf16_bits(weight_at(w, oc, ic, o, 2 * s, t, flip)) |
                               bf16_bits(weight_at(w, oc, ic, o, 2 * s + 1, t, flip)) << 16;
                    }
        } else {
            float *d = (float *)dst + (size_t)sidx * steps * 9 * C3_MR;
            for (int c = 0; c < ic; c++)
                for (int t = 0; t < 9; t++)
                    for (int r = 0; r < C3_MR; r++) {
                        const float v = weight_at(w, oc, ic, sidx * C3_MR + r, c, t, flip);
                        *d++ = rnd ? bf16_round_f(v) : v;
                    }
        }
    }
}

size_t df_conv3x3_lanes_plane_words(int h, int w) { return (size_t)(h + 2) * (w + 2) * 16; }

size_t df_conv3x3_lanes_words(int c, int h, int w, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    return (size_t)(bf16 ? (c + 1) / 2 : c) * df_conv3x3_lanes_plane_words(h, w);
}

size_t df_conv3x3_grad_plane_words(int h, int w, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    const size_t pos = round_up((size_t)h * ((size_t)w + 2), bf16 ? 32 : 16);
    return bf16 ? pos / 2 : pos;
}

/* fp32 dout for dW goes channels last from 16 channels up (below, most of a vector of outputs would
 * be padding: the output head's 1 or 3 channels keep the plane layout). */
static int grad_channels_last(int c, int bf16) { return !bf16 && c >= 16; }

size_t df_conv3x3_grad_image_words(int c, int h, int w, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    return grad_channels_last(c, bf16) ? (size_t)h * w * round_up((size_t)c, 16)
                                       : (size_t)c * df_conv3x3_grad_plane_words(h, w, bf16);
}

size_t df_conv3x3_dw_plane_words(int h, int w, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    if (!bf16) return df_conv3x3_plane_words(h, w);
    /* values: the last pair vector starts at position G - 32 (G the padded dout plane's length)
     * and reads 32 values from a shift of up to 2 (w + 2) + 2 */
    const size_t g = 2 * df_conv3x3_grad_plane_words(h, w, 1), wp = (size_t)w + 2;
    return round_up(g + 2 * wp + 2, 32) / 2;
}

void df_conv3x3_pad_f32(float *dst, const float *x, int c, int h, int w) {
    const size_t ps = df_conv3x3_plane_words(h, w);
    const int wp = w + 2;
    for (int ch = 0; ch < c; ch++) {
        float *p = dst + (size_t)ch * ps;
        const float *src = x + (size_t)ch * h * w;
        memset(p, 0, sizeof(float) * (size_t)(wp + 1));
        for (int y = 0; y < h; y++) {
            float *row = p + (size_t)(y + 1) * wp + 1;
            memcpy(row, src + (size_t)y * w, sizeof(float) * (size_t)w);
            row[w] = 0.0f;     /* right pad of this row */
            row[w + 1] = 0.0f; /* left pad of the next */
        }
        memset(p + (size_t)(h + 1) * wp + 1, 0, sizeof(float) * (ps - (size_t)(h + 1) * wp - 1));
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define T_F32 __attribute__((target("avx512f")))
#define T_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* The direct kernels run at the AVX-512 levels (cpu.h), in every format: the bf16 kernels' extra
 * AVX512_BF16 instructions only at avx512bf16, where DF_C3_BF16 is the format ops_conv.c asks for.
 * The dW and padding code is compiled for the bf16 target but runs its fp32 branches at avx512
 * (they need only F/BW/VL, which the level includes). */
int df_conv3x3_available(void) { return !g_force_off && df_cpu_avx512(); }

static __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* The outputs (and residual) of the tile at rows o0..o0+rows-1, positions q0..q0+47, to L1: the
 * caller asks for the next tile while it computes this one. Both were last touched a layer ago, and
 * their misses, not the adds, were most of the scatter's time without this. */
T_F32 static void prefetch_tile(const float *y, const float *res, int o0, int rows, int q0, int h, int w, int wp) {
    const int qend = q0 + C3_NR < h * wp ? q0 + C3_NR : h * wp;
    const size_t lo = (size_t)(q0 / wp) * w, hi = (size_t)((qend - 1) / wp + 1) * w;
    for (int r = 0; r < rows; r++) {
        const size_t plane = (size_t)(o0 + r) * h * w;
        for (size_t i = lo; i < hi + 15; i += 16) { /* one touch per 64-byte line, and the last */
            const size_t k = plane + (i < hi ? i : hi - 1);
            _mm_prefetch((const char *)(y + k), _MM_HINT_T0);
            if (res) _mm_prefetch((const char *)(res + k), _MM_HINT_T0);
        }
    }
}

/* A row of w floats of a cold input (written a layer ago) on its way to L1: the padding passes ask
 * for the row a few ahead of the one they convert (NULL: nothing). The hardware prefetcher alone
 * left their loads waiting on memory. A prefetch past a tensor's end is only a hint. */
#define PAD_PREFETCH_ROWS 4
T_F32 static inline void prefetch_row(const float *row, int w) {
    if (!row) return;
    for (int i = 0; i < w; i += 16) _mm_prefetch((const char *)(row + i), _MM_HINT_T0);
}


/* Words of channels 2s and 2s+1 rounded to bf16, as one (low, high) pair per position. */
/* 16 values of lo and of hi rounded to bf16, one (lo, hi) pair per 32-bit word. */
T_BF16 static inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
    const __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
    const __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
    return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

T_BF16 static __m512i pair16(const float *a, const float *b, int n) {
    const __mmask16 m = lanes(n);
    return bf16_pairs(_mm512_maskz_loadu_ps(m, a), b ? _mm512_maskz_loadu_ps(m, b) : _mm512_setzero_ps());
}

T_BF16 static void pad_bf16(uint32_t *dst, const float *x, int c, int h, int w) {
    const size_t ps = df_conv3x3_plane_words(h, w);
    const int wp = w + 2, pairs = (c + 1) / 2;
    for (int s = 0; s < pairs; s++) {
        uint32_t *p = dst + (size_t)s * ps;
        const float *a = x + (size_t)(2 * s) * h * w, *b = 2 * s + 1 < c ? a + (size_t)h * w : NULL;
        memset(p, 0, sizeof(uint32_t) * (size_t)(wp + 1));
        for (int y = 0; y < h; y++) {
            uint32_t *row = p + (size_t)(y + 1) * wp + 1;
            if (y + PAD_PREFETCH_ROWS < h) {
                prefetch_row(a + (size_t)(y + PAD_PREFETCH_ROWS) * w, w);
                prefetch_row(b ? b + (size_t)(y + PAD_PREFETCH_ROWS) * w : NULL, w);
            }
            for (int x0 = 0; x0 < w; x0 += 16)
                _mm512_mask_storeu_epi32(row + x0, lanes(w - x0),
                                         pair16(a + (size_t)y * w + x0, b ? b + (size_t)y * w + x0 : NULL, w - x0));
            row[w] = 0;
            row[w + 1] = 0;
        }
        memset(p + (size_t)(h + 1) * wp + 1, 0, sizeof(uint32_t) * (ps - (size_t)(h + 1) * wp - 1));
    }
}

static void pad_image_k(void *dst, const float *x, int c, int h, int w, int bf16) {
    if (bf16)
        pad_bf16(dst, x, c, h, w);
    else
        df_conv3x3_pad_f32(dst, x, c, h, w);
}

/* acc + a (one broadcast A word) * b (16 B words): fp32 multiply-add, or bf16 pair dot products. */
typedef __m512 (*madd_fn)(__m512 acc, __m512i a, __m512i b);
T_F32 static inline __m512 madd_f32(__m512 acc, __m512i a, __m512i b) {
    return _mm512_fmadd_ps(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b), acc);
}
T_BF16 static inline __m512 madd_bf16(__m512 acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
}

/* acc (8 x 16 nv) = sum over steps s and taps t of a[s][t][r] * plane_s[q0 + off_t + j]; p points
 * at plane 0's position q0, planes ps words apart; nv (1 to 3, a constant where it is inlined) vectors
 * of 16 positions. The 8 nv accumulators stay in registers. One template for both formats (a word
 * is an fp32 value or a bf16 channel pair); each caller passes its madd, which GCC inlines. */
T_F32 static inline __attribute__((always_inline)) void acc_tmpl(__m512 acc[C3_MR][3], const uint32_t *p, size_t ps,
                                                                  const int off[9], const int base[3],
                                                                  const uint32_t *a, int steps, madd_fn madd,
                                                                  const int nv) {
#pragma GCC unroll 8
    for (int r = 0; r < C3_MR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
    for (int s = 0; s < steps; s++, p += ps) {
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++, a += C3_MR) {
            __m512i bv[3];
#pragma GCC unroll 3
            for (int v = 0; v < nv; v++) bv[v] = _mm512_loadu_si512(p + base[v] + off[t]);
#pragma GCC unroll 8
            for (int r = 0; r < C3_MR; r++) {
                const __m512i ar = _mm512_set1_epi32((int)a[r]);
#pragma GCC unroll 3
                for (int v = 0; v < nv; v++) acc[r][v] = madd(acc[r][v], ar, bv[v]);
            }
        }
    }
}

/* The lanes kernel's tile: the accumulators to tile (row r at r * rs floats). */
T_F32 static inline __attribute__((always_inline)) void tile_tmpl(float *tile, const uint32_t *p, size_t ps,
                                                                   const int off[9], const int base[3],
                                                                   const uint32_t *a, int steps, madd_fn madd,
                                                                   const int nv, const int rs) {
    __m512 acc[C3_MR][3];
    acc_tmpl(acc, p, ps, off, base, a, steps, madd, nv);
#pragma GCC unroll 8
    for (int r = 0; r < C3_MR; r++)
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(tile + r * rs + 16 * v, acc[r][v]);
}

/* Where a plane tile's outputs go: vector v of the tile (padded-width positions q0 + 16 v ..
 * + 15) meets one or more image rows (up to 16 when rows are narrow); segment k of it is the lanes
 * of one row inside the image (mask), and lane i of that segment belongs at y index
 * q0 + 16 v + i - (wp - w) oy (oy its row: the row's junk columns dropped), i.e. at delta + i. */
typedef struct {
    int nseg[3];
    __mmask16 mask[3][16];
    ptrdiff_t delta[3][16];
} plane_dest;

static void plane_dest_init(plane_dest *d, int q0, int nv, int h, int w, int wp) {
    for (int v = 0; v < 3; v++) {
        d->nseg[v] = 0;
        if (v >= nv) continue;
        const int qa = q0 + 16 * v, qb = qa + 16;
        for (int oy = qa / wp; oy < h && oy * wp < qb; oy++) {
            const int lo = oy * wp > qa ? oy * wp : qa, hi = oy * wp + w < qb ? oy * wp + w : qb;
            if (lo >= hi) continue; /* a row's lanes all junk: no segment */
            d->mask[v][d->nseg[v]] = (__mmask16)(((1u << (hi - qa)) - 1) & ~((1u << (lo - qa)) - 1));
            d->delta[v][d->nseg[v]++] = qa - (ptrdiff_t)(wp - w) * oy;
        }
    }
}

/* y rows o0..o0+rows-1 of the tile = acc + b, or += acc, straight from the registers. The epilogue
 * (not with accumulate) then adds cb[o] and res (the output's shape), each as a separate float
 * addition in that order: the bits of the separate ops it replaces. (The tile went through an L1
 * buffer before, and reading it back at the rows' offsets missed store forwarding: a fifth of the
 * kernel's time.) */
T_F32 static inline __attribute__((always_inline)) void scatter_acc(__m512 acc[C3_MR][3], const plane_dest *d,
                                                                     float *y, const float *b, const float *cb,
                                                                     const float *res, int o0, int rows, size_t hw,
                                                                     int accumulate, const int nv) {
#pragma GCC unroll 8
    for (int r = 0; r < C3_MR; r++) {
        if (r >= rows) break;
        const size_t plane = (size_t)(o0 + r) * hw;
        float *yo = y + plane;
        const float *ro = res ? res + plane : NULL;
        const __m512 bias = _mm512_set1_ps(b ? b[o0 + r] : 0.0f), cbias = _mm512_set1_ps(cb ? cb[o0 + r] : 0.0f);
#pragma GCC unroll 3
        for (int v = 0; v < nv; v++)
            for (int k = 0; k < d->nseg[v]; k++) {
                const __mmask16 m = d->mask[v][k];
                float *at = yo + d->delta[v][k];
                __m512 t;
                if (accumulate) {
                    t = _mm512_add_ps(_mm512_maskz_loadu_ps(m, at), acc[r][v]);
                } else {
                    t = _mm512_add_ps(acc[r][v], bias);
                    if (cb) t = _mm512_add_ps(t, cbias);
                    if (ro) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, ro + d->delta[v][k]));
                }
                _mm512_mask_storeu_ps(at, m, t);
            }
    }
}

/* The plane kernel: the tile's 16 nv positions are consecutive, 16 per vector; a plane's last
 * tile takes only the vectors that reach into the image (at 14 x 14 its third vector would be all
 * past the end: 1/15 of the conv). */
static const int plane_base[3] = {0, 16, 32};
#define PLANE_OFF(wp) {0, 1, 2, wp, wp + 1, wp + 2, 2 * wp, 2 * wp + 1, 2 * wp + 2}
typedef struct {
    float *y;
    const float *b, *cb, *res;
    int o0, rows, accumulate;
    size_t hw;
    const plane_dest *dest;
} plane_out;
/* The body of both formats' plane tiles: nv a constant in each call, so each is its own loop. */
#define PLANE_NV(madd, nv)                                                                         \
    do {                                                                                           \
        __m512 acc[C3_MR][3];                                                                      \
        acc_tmpl(acc, p, ps, off, plane_base, a, steps, madd, nv);                                 \
        scatter_acc(acc, o->dest, o->y, o->b, o->cb, o->res, o->o0, o->rows, o->hw, o->accumulate, nv); \
    } while (0)
/* Stride 2 reads four phase planes of a channel (conv3x3.h), pz words apart, of width wq: tap
 * (ky, kx) reads phase (ky & 1, kx & 1) shifted by (ky >> 1, kx >> 1). */
#define PHASE_OFF(wq, pz)                                                                          \
    {0, pz, 1, 2 * pz, 3 * pz, 2 * pz + 1, wq, pz + wq, wq + 1}
#define PLANE_TILE(madd, OFFS)                                                                     \
    do {                                                                                           \
        const int off[9] = OFFS;                                                                   \
        if (nv >= 3)                                                                               \
            PLANE_NV(madd, 3);                                                                     \
        else if (nv == 2)                                                                          \
            PLANE_NV(madd, 2);                                                                     \
        else                                                                                       \
            PLANE_NV(madd, 1);                                                                     \
    } while (0)
T_F32 static void tile_f32(const plane_out *o, const uint32_t *p, size_t ps, int wp, const uint32_t *a, int steps,
                           int nv) {
    PLANE_TILE(madd_f32, PLANE_OFF(wp));
}

T_BF16 static void tile_bf16(const plane_out *o, const uint32_t *p, size_t ps, int wp, const uint32_t *a, int steps,
                             int nv) {
    PLANE_TILE(madd_bf16, PLANE_OFF(wp));
}

/* The stride-2 tiles: wp is the phase planes' width, pz their size. */
T_F32 static void tile_s2_f32(const plane_out *o, const uint32_t *p, size_t ps, int wp, int pz, const uint32_t *a,
                              int steps, int nv) {
    PLANE_TILE(madd_f32, PHASE_OFF(wp, pz));
}

T_BF16 static void tile_s2_bf16(const plane_out *o, const uint32_t *p, size_t ps, int wp, int pz, const uint32_t *a,
                                int steps, int nv) {
    PLANE_TILE(madd_bf16, PHASE_OFF(wp, pz));
}

/* The lanes kernel: a vector holds one position of 16 images, so the tile is 3 positions (base, in
 * words) x 16 images; a tap moves a position by off (16 words per position). Its rows go LANES_RS
 * floats apart: into a stage of LANES_BLOCK positions x 16 images per output. */
#define LANES_BLOCK 48
#define LANES_RS (LANES_BLOCK * 16)
T_F32 static void ltile_f32(float *tile, const uint32_t *p, size_t ps, const int off[9], const int base[3],
                            const uint32_t *a, int steps) {
    tile_tmpl(tile, p, ps, off, base, a, steps, madd_f32, 3, LANES_RS);
}

T_BF16 static void ltile_bf16(float *tile, const uint32_t *p, size_t ps, const int off[9], const int base[3],
                              const uint32_t *a, int steps) {
    tile_tmpl(tile, p, ps, off, base, a, steps, madd_bf16, 3, LANES_RS);
}

/* The plane driver: outputs (h, w) computed at the positions q = oy wp + ox of a plane of width wp
 * (ox >= w dropped); stride 1 reads the padded planes, stride 2 the phase planes (pz: a phase's
 * words). */
T_F32 static void plane_conv(float *y, const void *padded, const void *wpack, const float *b, const float *cb,
                             const float *res, int oc, int ic, int h, int w, int wp, size_t ps, int s2, int pz,
                             int accumulate, int bf16) {
    const int nq = h * wp, strips = (oc + C3_MR - 1) / C3_MR, steps = bf16 ? (ic + 1) / 2 : ic;
    const size_t astrip = (size_t)steps * 9 * C3_MR;
    /* Positions outside, strips inside: a tile's planes (ic x ~3 rows) stay in L1 while the
     * weight strips stream from L2. */
    for (int q0 = 0; q0 < nq; q0 += C3_NR) {
        const int nv = (nq - q0 + 15) / 16 < 3 ? (nq - q0 + 15) / 16 : 3;
        plane_dest dest;
        plane_dest_init(&dest, q0, nv, h, w, wp);
        for (int sidx = 0; sidx < strips; sidx++) {
            const int next = sidx + 1 < strips, nq0 = next ? q0 : q0 + C3_NR, ns = next ? sidx + 1 : 0;
            if (nq0 < nq)
                prefetch_tile(y, res, ns * C3_MR, oc - ns * C3_MR < C3_MR ? oc - ns * C3_MR : C3_MR, nq0, h, w, wp);
            const int rows = oc - sidx * C3_MR < C3_MR ? oc - sidx * C3_MR : C3_MR;
            const plane_out o = {y, b, cb, res, sidx * C3_MR, rows, accumulate, (size_t)h * w, &dest};
            const uint32_t *p = (const uint32_t *)padded + q0, *a = (const uint32_t *)wpack + sidx * astrip;
            if (s2)
                (bf16 ? tile_s2_bf16 : tile_s2_f32)(&o, p, ps, wp, pz, a, steps, nv);
            else
                (bf16 ? tile_bf16 : tile_f32)(&o, p, ps, wp, a, steps, nv);
        }
    }
}

static void image_avx512(float *y, const void *padded, const void *wpack, const float *b, const float *cb,
                         const float *res, int oc, int ic, int h, int w, int accumulate, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    plane_conv(y, padded, wpack, b, cb, res, oc, ic, h, w, w + 2, df_conv3x3_plane_words(h, w), 0, 0, accumulate,
               bf16);
}

/* Stride 2: a phase plane holds (oh + 1) rows of ow + 1 words; the four of a channel follow each
 * other, then slack for the shifted reads of the last tile (its positions up to oh (ow + 1) + 47,
 * shifted by up to 3 phases and a row and a word), zeroed. */
static size_t s2_phase_words(int oh, int ow) { return (size_t)(oh + 1) * (ow + 1); }
size_t df_conv3x3_s2_plane_words(int oh, int ow) {
    return round_up(4 * s2_phase_words(oh, ow) + C3_NR + 16 + (size_t)ow + 2, 16);
}

/* 16 values as words: fp32 bits, or bf16 pairs with vb's values in the high halves. */
T_BF16 static __m512i s2_words(__m512 va, __m512 vb, int bf16) {
    return bf16 ? bf16_pairs(va, vb) : _mm512_castps_si512(va);
}

T_BF16 static void s2_pad_image_k(void *dst, const float *x, int c, int h, int w, int oh, int ow, int pad_t,
                                    int pad_l, int bf16) {
    const size_t ps = df_conv3x3_s2_plane_words(oh, ow), pz = s2_phase_words(oh, ow);
    const int wq = ow + 1, steps = bf16 ? (c + 1) / 2 : c;
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    memset(dst, 0, sizeof(uint32_t) * ps * (size_t)steps);
    for (int st = 0; st < steps; st++) {
        uint32_t *pl = (uint32_t *)dst + (size_t)st * ps;
        const int c0 = bf16 ? 2 * st : st, pair = bf16 && c0 + 1 < c;
        const float *xa = x + (size_t)c0 * h * w, *xb = pair ? xa + (size_t)h * w : NULL;
        /* input (r, cc) is padded (r + pad_t, cc + pad_l): phase ((r + pad_t) & 1, (cc + pad_l) & 1),
         * at ((r + pad_t) >> 1, (cc + pad_l) >> 1); a row's 32 columns from x0 split into its even
         * and odd columns, 16 each */
        for (int r = 0; r < h; r++) {
            const int pr = r + pad_t, i = pr >> 1;
            if (i > oh) continue; /* a row no output reads */
            if (r + PAD_PREFETCH_ROWS < h) {
                prefetch_row(xa + (size_t)(r + PAD_PREFETCH_ROWS) * w, w);
                prefetch_row(xb ? xb + (size_t)(r + PAD_PREFETCH_ROWS) * w : NULL, w);
            }
            uint32_t *row = pl + (size_t)((pr & 1) * 2) * pz + (size_t)i * wq;
            for (int x0 = 0; x0 < w; x0 += 32) {
                const int n = w - x0 < 32 ? w - x0 : 32, ne = (n + 1) / 2, no = n / 2;
                const __mmask16 m0 = lanes(n), m1 = lanes(n - 16);
                const float *ra = xa + (size_t)r * w + x0, *rb = xb ? xb + (size_t)r * w + x0 : NULL;
                const __m512 a0 = _mm512_maskz_loadu_ps(m0, ra), a1 = _mm512_maskz_loadu_ps(m1, ra + 16);
                __m512 b0 = _mm512_setzero_ps(), b1 = b0;
                if (rb) {
                    b0 = _mm512_maskz_loadu_ps(m0, rb);
                    b1 = _mm512_maskz_loadu_ps(m1, rb + 16);
                }
                const __m512i we = s2_words(_mm512_permutex2var_ps(a0, even, a1), _mm512_permutex2var_ps(b0, even, b1), bf16);
                const __m512i wo = s2_words(_mm512_permutex2var_ps(a0, odd, a1), _mm512_permutex2var_ps(b0, odd, b1), bf16);
                /* even columns: phase pad_l & 1 at j = (x0 + pad_l) >> 1; odd: the other phase, at
                 * (x0 + 1 + pad_l) >> 1 */
                const int je = (x0 + pad_l) >> 1, jo = (x0 + 1 + pad_l) >> 1;
                uint32_t *de = row + (size_t)(pad_l & 1) * pz, *dO = row + (size_t)((pad_l + 1) & 1) * pz;
                _mm512_mask_storeu_epi32(de + je, lanes(ne < wq - je ? ne : wq - je), we);
                _mm512_mask_storeu_epi32(dO + jo, lanes(no < wq - jo ? no : wq - jo), wo);
            }
        }
    }
}

void df_conv3x3_s2_image(float *y, const void *padded, const void *wpack, const float *b, int oc, int ic, int oh,
                         int ow, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    plane_conv(y, padded, wpack, b, NULL, NULL, oc, ic, oh, ow, ow + 1, df_conv3x3_s2_plane_words(oh, ow), 1,
               (int)s2_phase_words(oh, ow), 0, bf16);
}

/* ---------------------------------------------------------------- lanes (small planes) */
/* v[i][j] <- v[j][i]: a 16 x 16 transpose in four rounds of shuffles (32-bit, 64-bit, 128-bit
 * pairs, 256-bit halves). */
T_F32 static inline __attribute__((always_inline)) void transpose16(__m512 v[16]) {
    __m512 t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) /* v[i + m]: column m (mod 4) of rows i..i+3, in each 128-bit lane */
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const __m512d a = _mm512_castps_pd(t[i + k]), b = _mm512_castps_pd(t[i + 2 + k]);
            v[i + 2 * k] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            v[i + 2 * k + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
#pragma GCC unroll 2
    for (int i = 0; i < 16; i += 8)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            t[i + k] = _mm512_shuffle_f32x4(v[i + k], v[i + 4 + k], 0x88);
            t[i + 4 + k] = _mm512_shuffle_f32x4(v[i + k], v[i + 4 + k], 0xDD);
        }
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        v[k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0x88);
        v[8 + k] = _mm512_shuffle_f32x4(t[k], t[8 + k], 0xDD);
    }
}

/* 16 positions of a row at a time: one (masked) vector of 16 positions per image, then a 16 x 16
 * transpose makes one vector of 16 images per position. */
T_BF16 static void lanes_pack_plane_k(void *dst, const float *const x[16], int pair, int h, int w, int bf16) {
    const int wp = w + 2, hp = h + 2, hw = h * w;
    uint32_t *d = dst;
    memset(d, 0, sizeof(uint32_t) * 16 * (size_t)wp);                              /* top row */
    memset(d + (size_t)(hp - 1) * wp * 16, 0, sizeof(uint32_t) * 16 * (size_t)wp); /* bottom row */
    for (int y = 0; y < h; y++) {
        uint32_t *row = d + (size_t)(y + 1) * wp * 16;
        memset(row, 0, sizeof(uint32_t) * 16);
        memset(row + (size_t)(w + 1) * 16, 0, sizeof(uint32_t) * 16);
        for (int x0 = 0; x0 < w; x0 += 16) {
            const int nq = w - x0 < 16 ? w - x0 : 16, at = y * w + x0;
            __m512 v[16];
#pragma GCC unroll 16
            for (int l = 0; l < 16; l++) {
                if (!x[l])
                    v[l] = _mm512_setzero_ps();
                else if (!bf16)
                    v[l] = _mm512_maskz_loadu_ps(lanes(nq), x[l] + at);
                else /* bf16_bits of each value, the next channel's in the high half with pair */
                    v[l] = _mm512_castsi512_ps(pair16(x[l] + at, pair ? x[l] + hw + at : NULL, nq));
            }
            transpose16(v);
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++) /* unrolled, so that v stays in registers */
                if (k < nq) _mm512_storeu_ps((float *)row + (size_t)(x0 + k + 1) * 16, v[k]);
        }
    }
}

/* Tiles of 3 positions fill a stage of LANES_BLOCK positions x 16 images per output; the stage then
 * goes out 16 positions at a time, a 16 x 16 transpose making one vector of 16 positions per image:
 * masked vector adds and stores instead of one scattered value at a time. */
T_F32 void df_conv3x3_lanes_strip(float *y, size_t y_img, int nimg, const void *packed, const void *wpack, int strip,
                                  const float *b, const float *cb, const float *res, int oc, int ic, int h, int w,
                                  int accumulate, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    const int wp = w + 2, nq = h * w, steps = bf16 ? (ic + 1) / 2 : ic;
    const int rows = oc - strip * C3_MR < C3_MR ? oc - strip * C3_MR : C3_MR;
    const size_t ps = df_conv3x3_lanes_plane_words(h, w);
    const uint32_t *a = (const uint32_t *)wpack + (size_t)strip * steps * 9 * C3_MR;
    const int off[9] = {0, 16, 32, 16 * wp, 16 * (wp + 1), 16 * (wp + 2), 32 * wp, 16 * (2 * wp + 1),
                        16 * (2 * wp + 2)};
    float stage[C3_MR * LANES_RS] __attribute__((aligned(64)));
    for (int qb = 0; qb < nq; qb += LANES_BLOCK) {
        const int nb = nq - qb < LANES_BLOCK ? nq - qb : LANES_BLOCK;
        for (int q0 = qb; q0 < qb + nb; q0 += 3) { /* LANES_BLOCK is a multiple of 3: a tile fits */
            const int np = qb + nb - q0 < 3 ? qb + nb - q0 : 3;
            int base[3];
            for (int j = 0; j < 3; j++) {
                const int q = q0 + (j < np ? j : 0); /* a tail tile repeats its first position */
                base[j] = 16 * ((q / w) * wp + q % w);
            }
            (bf16 ? ltile_bf16 : ltile_f32)(stage + (size_t)(q0 - qb) * 16, packed, ps, off, base, a, steps);
        }
        for (int r = 0; r < rows; r++) {
            const int o = strip * C3_MR + r;
            const __m512 bias = _mm512_set1_ps(b ? b[o] : 0.0f);
            for (int c0 = 0; c0 < nb; c0 += 16) {
                const int n16 = nb - c0 < 16 ? nb - c0 : 16;
                const __mmask16 m = lanes(n16);
                __m512 v[16];
#pragma GCC unroll 16
                for (int k = 0; k < 16; k++)
                    v[k] = k < n16 ? _mm512_load_ps(stage + (size_t)r * LANES_RS + (size_t)(c0 + k) * 16)
                                   : _mm512_setzero_ps();
                transpose16(v); /* v[l]: image l at positions qb + c0 .. + 15 */
                const size_t at = (size_t)o * nq + qb + c0;
#pragma GCC unroll 16
                for (int l = 0; l < 16; l++) {
                    if (l >= nimg) break;
                    float *d = y + l * y_img + at;
                    __m512 t;
                    if (accumulate) {
                        t = _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), v[l]);
                    } else {
                        t = _mm512_add_ps(v[l], bias);
                        if (cb) t = _mm512_add_ps(t, _mm512_set1_ps(cb[(size_t)l * oc + o]));
                        if (res) t = _mm512_add_ps(t, _mm512_maskz_loadu_ps(m, res + l * y_img + at));
                    }
                    _mm512_mask_storeu_ps(d, m, t);
                }
            }
        }
    }
}

size_t df_conv3x3_lanes_dw_rows(int h, int bf16) { return bf16 == DF_C3_BF16 ? (size_t)(h + 1) / 2 : (size_t)h; }

/* As df_conv3x3_lanes_pack_plane: 16 positions of a row per image, transposed in registers. A
 * packed row pr holds image row pr - o (fp32), or rows pr - o and pr - o + hh as the low and high
 * halves of bf16 pairs (hh = df_conv3x3_lanes_dw_rows; rows outside the image are zeros). */
T_BF16 static void lanes_pack_dw_plane_k(float *dst, const float *const x[16], int h, int w, int bf16, int padded) {
    const int hh = (int)df_conv3x3_lanes_dw_rows(h, bf16), o = padded ? 1 : 0;
    const int wp = w + 2 * o, rows = hh + 2 * o;
    if (padded) memset(dst, 0, sizeof(float) * 16 * (size_t)rows * wp);
    for (int pr = 0; pr < rows; pr++) {
        const int ya = pr - o, yb = ya + hh, a_in = ya >= 0 && ya < h, b_in = bf16 && yb >= 0 && yb < h;
        if (!a_in && !b_in) continue; /* a padding row: zeros already */
        for (int x0 = 0; x0 < w; x0 += 16) {
            const int nq = w - x0 < 16 ? w - x0 : 16;
            const __mmask16 m = lanes(nq);
            __m512 v[16];
#pragma GCC unroll 16
            for (int l = 0; l < 16; l++) {
                const __m512 va = x[l] && a_in ? _mm512_maskz_loadu_ps(m, x[l] + (size_t)ya * w + x0) : _mm512_setzero_ps();
                if (!bf16) {
                    v[l] = va;
                    continue;
                }
                const __m512 vb = x[l] && b_in ? _mm512_maskz_loadu_ps(m, x[l] + (size_t)yb * w + x0) : _mm512_setzero_ps();
                v[l] = _mm512_castsi512_ps(bf16_pairs(va, vb));
            }
            transpose16(v);
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++)
                if (k < nq) _mm512_storeu_ps(dst + ((size_t)pr * wp + x0 + k + o) * 16, v[k]);
        }
    }
}

/* The 3 x 9 accumulators of a dW tile (3 outputs, or vectors of outputs, x the 9 taps), zeroed. */
T_F32 static inline __attribute__((always_inline)) void zero_acc27(__m512 acc[3][9]) {
#pragma GCC unroll 3
    for (int r = 0; r < 3; r++)
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) acc[r][t] = _mm512_setzero_ps();
}

/* dw rows o0..o0+R-1, input channel c, its 9 taps += the sums over the groups, positions and lanes
 * of g_r[q] x[c][q + tap]: 9 R accumulators, reduced across lanes once at the end. In bf16 a word is
 * a pair of rows hh apart in both operands, so one dot product adds the terms of both. R = 2: at 3
 * (27 accumulators, 3 rows of dout, the tap's input: 31 registers) GCC spilled accumulators to the
 * stack in the inner loop, and R = 2 ran 1.2x (fp32) to 2x (bf16) faster. */
T_BF16 static inline __attribute__((always_inline)) void lanes_dw_tile(float *dw, const float *gpk, const float *xpk,
                                                                        int groups, int o0, int c, int oc, int ic,
                                                                        int h, int w, const int R, const int bf16) {
    const int wp = w + 2, hh = (int)df_conv3x3_lanes_dw_rows(h, bf16), ghw = hh * w;
    const size_t gsz = (size_t)oc * ghw * 16, xsz = (size_t)ic * (hh + 2) * wp * 16;
    __m512 acc[3][9];
    zero_acc27(acc);
    for (int g = 0; g < groups; g++) {
        const float *gg = gpk + g * gsz + (size_t)o0 * ghw * 16, *xx = xpk + g * xsz + (size_t)c * (hh + 2) * wp * 16;
        for (int y = 0; y < hh; y++)
            for (int x0 = 0; x0 < w; x0++) {
                /* the taps' three rows as three pointers, each tap a constant displacement (0, 16
                 * or 32 floats) off one (as dw_tile) */
                const float *xq = xx + ((size_t)y * wp + x0) * 16;
                const float *rows[3] = {xq, xq + (size_t)16 * wp, xq + (size_t)32 * wp};
                const float *gq = gg + ((size_t)y * w + x0) * 16;
                __m512i gr[3];
#pragma GCC unroll 3
                for (int r = 0; r < R; r++) gr[r] = _mm512_loadu_si512(gq + (size_t)r * ghw * 16);
#pragma GCC unroll 9
                for (int t = 0; t < 9; t++) {
                    __m512i xv = _mm512_loadu_si512(rows[t / 3] + 16 * (t % 3));
                    __asm__("" : "+v"(xv)); /* one load per tap (see dw_tile) */
#pragma GCC unroll 3
                    for (int r = 0; r < R; r++)
                        acc[r][t] = bf16 ? _mm512_dpbf16_ps(acc[r][t], (__m512bh)gr[r], (__m512bh)xv)
                                         : _mm512_fmadd_ps(_mm512_castsi512_ps(gr[r]), _mm512_castsi512_ps(xv), acc[r][t]);
                }
            }
    }
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) dw[((size_t)(o0 + r) * ic + c) * 9 + t] += _mm512_reduce_add_ps(acc[r][t]);
}

T_BF16 static inline __attribute__((always_inline)) void lanes_dw_all(float *dw, const float *gpk, const float *xpk,
                                                                       int groups, int c, int oc, int ic, int h, int w,
                                                                       const int bf16) {
    int o0 = 0;
    for (; o0 + 2 <= oc; o0 += 2) lanes_dw_tile(dw, gpk, xpk, groups, o0, c, oc, ic, h, w, 2, bf16);
    if (oc - o0 == 1) lanes_dw_tile(dw, gpk, xpk, groups, o0, c, oc, ic, h, w, 1, bf16);
}

T_BF16 void df_conv3x3_lanes_dw(float *dw, const float *gpk, const float *xpk, int groups, int c, int oc, int ic,
                                int h, int w, int bf16) {
    bf16 = bf16 == DF_C3_BF16;
    if (bf16)
        lanes_dw_all(dw, gpk, xpk, groups, c, oc, ic, h, w, 1);
    else
        lanes_dw_all(dw, gpk, xpk, groups, c, oc, ic, h, w, 0);
}

/* c planes of h x w values to dst (row y at y * wp + x0, the rest of each plane zero; planes
 * `plane` words apart), fp32 or bf16 values. */
T_BF16 static void place_rows(void *dst, const float *x, int c, int h, int w, size_t plane, int wp, int x0, int bf16) {
    /* each row is written with the wp - w zeros after it (the junk columns, or the right and the
     * next left padding), so only the head and the tail need zeroing: every word written once */
    const size_t elems = bf16 ? 2 * plane : plane, body = (size_t)x0 + (size_t)h * wp;
    for (int ch = 0; ch < c; ch++) {
        const float *src = x + (size_t)ch * h * w;
        if (!bf16) {
            float *p = (float *)dst + (size_t)ch * plane;
            memset(p, 0, sizeof(float) * (size_t)x0);
            for (int y = 0; y < h; y++) {
                float *row = p + (size_t)y * wp + x0;
                prefetch_row(src + (size_t)(y + PAD_PREFETCH_ROWS) * w, w); /* into the next plane's rows at the end */
                memcpy(row, src + (size_t)y * w, sizeof(float) * (size_t)w);
                for (int i = w; i < wp; i++) row[i] = 0.0f;
            }
            memset(p + body, 0, sizeof(float) * (elems - body));
            continue;
        }
        uint16_t *p = (uint16_t *)((uint32_t *)dst + (size_t)ch * plane);
        memset(p, 0, sizeof(uint16_t) * (size_t)x0);
        for (int y = 0; y < h; y++) {
            prefetch_row(src + (size_t)(y + PAD_PREFETCH_ROWS) * w, w); /* into the next plane's rows at the end */
            for (int i = 0; i < wp; i += 16) { /* loads past w are masked to zero, stores reach wp */
                const __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lanes(w - i), src + (size_t)y * w + i));
                _mm256_mask_storeu_epi16(p + (size_t)y * wp + x0 + i, lanes(wp - i), v);
            }
        }
        memset(p + body, 0, sizeof(uint16_t) * (elems - body));
    }
}

T_BF16 static void pad_grad_k(void *dst, const float *g, int c, int h, int w, int bf16) {
    if (!grad_channels_last(c, bf16)) {
        place_rows(dst, g, c, h, w, df_conv3x3_grad_plane_words(h, w, bf16), w + 2, 0, bf16);
        return;
    }
    /* channels last, (h w, c16): 16 x 16 blocks transposed in registers */
    const int hw = h * w, c16 = (c + 15) / 16 * 16;
    float *d = dst;
    for (int q0 = 0; q0 < hw; q0 += 16) {
        const int nq = hw - q0 < 16 ? hw - q0 : 16;
        for (int c0 = 0; c0 < c16; c0 += 16) {
            __m512 v[16];
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++)
                v[k] = c0 + k < c ? _mm512_maskz_loadu_ps(lanes(nq), g + (size_t)(c0 + k) * hw + q0) : _mm512_setzero_ps();
            transpose16(v);
#pragma GCC unroll 16
            for (int k = 0; k < 16; k++)
                if (k < nq) _mm512_storeu_ps(d + (size_t)(q0 + k) * c16 + c0, v[k]);
        }
    }
}

/* The padded plane: row y of the image at row y + 1, column 1 (df_conv3x3_pad_image's layout). */
static void pad_dw_input_k(void *dst, const float *x, int c, int h, int w, int bf16) {
    place_rows(dst, x, c, h, w, df_conv3x3_dw_plane_words(h, w, bf16), w + 2, w + 2 + 1, bf16);
}

/* dw rows o0..o0+R-1, input channel c, all 9 taps += the sums over images and positions of
 * g_r[q] * plane_c[q + off_t]: 27 accumulators (R = 3), 16 positions per step (fp32) or 32 as
 * pairs (bf16). gs, ps, gimg, ximg in words. */
T_BF16 static inline __attribute__((always_inline)) void dw_tile(float *dw, const uint32_t *gpad, const uint32_t *xpad,
                                                                  int n, int o0, int c, int ic, size_t gs, size_t ps,
                                                                  size_t gimg, size_t ximg, int wp, const int R,
                                                                  const int bf16, int set) {
    __m512 acc[3][9];
    zero_acc27(acc);
    const size_t esz = bf16 ? 2 : 4; /* bytes of a value: taps shift by values, q counts words */
    for (int i = 0; i < n; i++) {
        const uint32_t *g = gpad + i * gimg + (size_t)o0 * gs, *p = xpad + i * ximg + (size_t)c * ps;
        /* the taps' three rows as three base pointers, each tap a constant displacement off one
         * (nine runtime offsets had GCC shuttling them through vector registers) */
        const char *rows[3] = {(const char *)p, (const char *)p + esz * wp, (const char *)p + 2 * esz * wp};
        /* q counts words of dout: one position (fp32) or a pair of positions (bf16) */
        for (size_t q = 0; q < gs; q += 16) {
            __m512i gr[3];
#pragma GCC unroll 3
            for (int r = 0; r < R; r++) gr[r] = _mm512_loadu_si512(g + r * gs + q);
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) {
                __m512i x = _mm512_loadu_si512(rows[t / 3] + 4 * q + esz * (t % 3));
                /* one load per tap: without this GCC folds the load into each of the R FMAs,
                 * and the loop runs out of load slots before it runs out of FMAs */
                __asm__("" : "+v"(x));
#pragma GCC unroll 3
                for (int r = 0; r < R; r++)
                    acc[r][t] = bf16 ? _mm512_dpbf16_ps(acc[r][t], (__m512bh)gr[r], (__m512bh)x)
                                     : _mm512_fmadd_ps(_mm512_castsi512_ps(gr[r]), _mm512_castsi512_ps(x), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++) {
            float *d = dw + ((size_t)(o0 + r) * ic + c) * 9 + t;
            *d = (set ? 0.0f : *d) + _mm512_reduce_add_ps(acc[r][t]);
        }
}

T_BF16 static inline __attribute__((always_inline)) void dw_all(float *dw, const uint32_t *gpad, const uint32_t *xpad,
                                                                 int n, int oc, int ic, int h, int w, const int bf16,
                                                                 int set) {
    const size_t gs = df_conv3x3_grad_plane_words(h, w, bf16), ps = df_conv3x3_dw_plane_words(h, w, bf16);
    const size_t gimg = (size_t)oc * gs, ximg = (size_t)ic * ps;
    const int wp = w + 2;
    /* channel outside: its planes (n x ~4 KiB) stay in L1 while the strips of dout pass by */
    for (int c = 0; c < ic; c++) {
        int o0 = 0;
        for (; o0 + 3 <= oc; o0 += 3) dw_tile(dw, gpad, xpad, n, o0, c, ic, gs, ps, gimg, ximg, wp, 3, bf16, set);
        if (oc - o0 == 2) dw_tile(dw, gpad, xpad, n, o0, c, ic, gs, ps, gimg, ximg, wp, 2, bf16, set);
        if (oc - o0 == 1) dw_tile(dw, gpad, xpad, n, o0, c, ic, gs, ps, gimg, ximg, wp, 1, bf16, set);
    }
}

/* fp32 dW from channels-last dout: dw rows o0..o0+16R-1 (clipped to oc), input channel c, its 9
 * taps = (set) or += the sums over the images and positions of g[q][o] * x_c[q + tap]: 16 outputs
 * per vector, so every load is a whole aligned-or-not row of dout (no position shifts) or one
 * broadcast value of the input; 27 accumulators (R = 3), no lane reductions. */
T_F32 static inline __attribute__((always_inline)) void dwcl_tile(float *dw, const float *gcl, const float *xpad, int n,
                                                                   int o0, int c, int oc, int ic, int h, int w,
                                                                   size_t gimg, size_t ximg, size_t ps, int c16,
                                                                   const int R, int set) {
    const int wp = w + 2;
    __m512 acc[3][9];
    zero_acc27(acc);
    for (int i = 0; i < n; i++) {
        const float *g = gcl + i * gimg + o0, *x = xpad + i * ximg + (size_t)c * ps;
        for (int oy = 0; oy < h; oy++) {
            /* the three input rows of the taps as three pointers moving with ox, so each tap's
             * value is a constant displacement (0, 4 or 8 bytes) off one of them: with nine runtime
             * offsets GCC ran out of integer registers and moved them through vector ones */
            const float *x0r = x + (size_t)oy * wp, *x1r = x0r + wp, *x2r = x1r + wp;
            const float *gr = g + (size_t)oy * w * c16;
            for (int ox = 0; ox < w; ox++, x0r++, x1r++, x2r++) {
                const float *rows[3] = {x0r, x1r, x2r};
                __m512 gv[3];
#pragma GCC unroll 3
                for (int r = 0; r < R; r++) gv[r] = _mm512_loadu_ps(gr + (size_t)ox * c16 + 16 * r);
#pragma GCC unroll 9
                for (int t = 0; t < 9; t++) {
                    __m512 xb = _mm512_set1_ps(rows[t / 3][t % 3]);
                    __asm__("" : "+v"(xb)); /* one broadcast per tap, not one per FMA */
#pragma GCC unroll 3
                    for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(gv[r], xb, acc[r][t]);
                }
            }
        }
    }
    float tmp[16] __attribute__((aligned(64)));
    for (int r = 0; r < R; r++)
        for (int t = 0; t < 9; t++) {
            _mm512_store_ps(tmp, acc[r][t]);
            for (int l = 0; l < 16 && o0 + 16 * r + l < oc; l++) {
                float *d = dw + ((size_t)(o0 + 16 * r + l) * ic + c) * 9 + t;
                *d = (set ? 0.0f : *d) + tmp[l];
            }
        }
}

T_F32 static void dwcl_all(float *dw, const float *gcl, const float *xpad, int n, int oc, int ic, int h, int w,
                           int set) {
    const int c16 = (oc + 15) / 16 * 16;
    const size_t gimg = (size_t)h * w * c16, ps = df_conv3x3_dw_plane_words(h, w, 0), ximg = (size_t)ic * ps;
    /* channel outside: its planes stay in L1 while the rows of dout pass by */
    for (int c = 0; c < ic; c++) {
        int o0 = 0;
        for (; o0 + 32 < oc; o0 += 48) dwcl_tile(dw, gcl, xpad, n, o0, c, oc, ic, h, w, gimg, ximg, ps, c16, 3, set);
        if (oc - o0 > 16) dwcl_tile(dw, gcl, xpad, n, o0, c, oc, ic, h, w, gimg, ximg, ps, c16, 2, set);
        else if (oc - o0 > 0) dwcl_tile(dw, gcl, xpad, n, o0, c, oc, ic, h, w, gimg, ximg, ps, c16, 1, set);
    }
}

/* One copy of the plane dW per format (bf16 a constant inside: the loop tests nothing). */
T_BF16 static void dw_all_bf16(float *dw, const uint32_t *gpad, const uint32_t *xpad, int n, int oc, int ic, int h,
                               int w, int set) {
    dw_all(dw, gpad, xpad, n, oc, ic, h, w, 1, set);
}
T_BF16 static void dw_all_f32(float *dw, const uint32_t *gpad, const uint32_t *xpad, int n, int oc, int ic, int h,
                              int w, int set) {
    dw_all(dw, gpad, xpad, n, oc, ic, h, w, 0, set);
}

static void dw_avx512(float *dw, const void *gpad, const void *xpad, int n, int oc, int ic, int h, int w, int bf16,
                      int set) {
    bf16 = bf16 == DF_C3_BF16;
    if (bf16)
        dw_all_bf16(dw, gpad, xpad, n, oc, ic, h, w, set);
    else if (grad_channels_last(oc, bf16))
        dwcl_all(dw, gpad, xpad, n, oc, ic, h, w, set);
    else
        dw_all_f32(dw, gpad, xpad, n, oc, ic, h, w, set);
}


/* ---------------------------------------------------------------- the formats' packing */
/* n words at p rounded to bf16 in place, kept as fp32 (DF_C3_BF16R), bit for bit as df_bf16_round:
 * the packers below run the fp32 packing, then this over what they wrote (still in L1 or L2). */
T_F32 static void round_words(void *p, size_t n) {
    uint32_t *u = p;
    const __m512i one = _mm512_set1_epi32(1), hi = _mm512_set1_epi32((int)0xFFFF0000u);
    const __m512i expo = _mm512_set1_epi32(0x7F800000), sign = _mm512_set1_epi32((int)0x80000000u);
    for (size_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : lanes((int)(n - i));
        const __m512i x = _mm512_maskz_loadu_epi32(m, u + i);
        const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), one);
        __m512i r = _mm512_and_si512(_mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb)), hi);
        const __mmask16 zexp = _mm512_testn_epi32_mask(x, expo);
        const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_andnot_si512(sign, x), expo);
        r = _mm512_mask_mov_epi32(r, zexp, _mm512_and_si512(x, sign));
        r = _mm512_mask_mov_epi32(r, nan, _mm512_and_si512(_mm512_or_si512(x, _mm512_set1_epi32(0x00400000)), hi));
        _mm512_mask_storeu_epi32(u + i, m, r);
    }
}

static void pad_image_avx512(void *dst, const float *x, int c, int h, int w, int bf16) {
    pad_image_k(dst, x, c, h, w, bf16 == DF_C3_BF16);
    if (bf16 == DF_C3_BF16R) round_words(dst, (size_t)c * df_conv3x3_plane_words(h, w));
}

void df_conv3x3_s2_pad_image(void *dst, const float *x, int c, int h, int w, int oh, int ow, int pad_t, int pad_l,
                             int bf16) {
    s2_pad_image_k(dst, x, c, h, w, oh, ow, pad_t, pad_l, bf16 == DF_C3_BF16);
    if (bf16 == DF_C3_BF16R) round_words(dst, (size_t)c * df_conv3x3_s2_plane_words(oh, ow));
}

void df_conv3x3_lanes_pack_plane(void *dst, const float *const x[16], int pair, int h, int w, int bf16) {
    lanes_pack_plane_k(dst, x, pair, h, w, bf16 == DF_C3_BF16);
    if (bf16 == DF_C3_BF16R) round_words(dst, df_conv3x3_lanes_plane_words(h, w));
}

void df_conv3x3_lanes_pack_dw_plane(float *dst, const float *const x[16], int h, int w, int bf16, int padded) {
    lanes_pack_dw_plane_k(dst, x, h, w, bf16 == DF_C3_BF16, padded);
    if (bf16 == DF_C3_BF16R) round_words(dst, (size_t)(h + 2 * !!padded) * (w + 2 * !!padded) * 16);
}

static void pad_grad_avx512(void *dst, const float *g, int c, int h, int w, int bf16) {
    pad_grad_k(dst, g, c, h, w, bf16 == DF_C3_BF16);
    if (bf16 == DF_C3_BF16R) round_words(dst, df_conv3x3_grad_image_words(c, h, w, DF_C3_FP32));
}

static void pad_dw_input_avx512(void *dst, const float *x, int c, int h, int w, int bf16) {
    pad_dw_input_k(dst, x, c, h, w, bf16 == DF_C3_BF16);
    if (bf16 == DF_C3_BF16R) round_words(dst, (size_t)c * df_conv3x3_dw_plane_words(h, w, DF_C3_FP32));
}

#else /* not x86-64 with GCC/Clang: never available, never called */
void df_conv3x3_lanes_pack_plane(void *dst, const float *const x[16], int pair, int h, int w, int bf16) {
    (void)dst; (void)x; (void)pair; (void)h; (void)w; (void)bf16;
    ASSERT(0);
}
void df_conv3x3_lanes_strip(float *y, size_t y_img, int nimg, const void *packed, const void *wpack, int strip,
                            const float *b, const float *cb, const float *res, int oc, int ic, int h, int w,
                            int accumulate, int bf16) {
    (void)y; (void)y_img; (void)nimg; (void)packed; (void)wpack; (void)strip; (void)b; (void)cb; (void)res;
    (void)oc; (void)ic; (void)h; (void)w; (void)accumulate; (void)bf16;
    ASSERT(0);
}
size_t df_conv3x3_lanes_dw_rows(int h, int bf16) { return bf16 == DF_C3_BF16 ? (size_t)(h + 1) / 2 : (size_t)h; }
void df_conv3x3_lanes_pack_dw_plane(float *dst, const float *const x[16], int h, int w, int bf16, int padded) {
    (void)dst; (void)x; (void)h; (void)w; (void)bf16; (void)padded;
    ASSERT(0);
}
void df_conv3x3_lanes_dw(float *dw, const float *gpk, const float *xpk, int groups, int c, int oc, int ic,
                         int h, int w, int bf16) {
    (void)dw; (void)gpk; (void)xpk; (void)groups; (void)c; (void)oc; (void)ic; (void)h; (void)w; (void)bf16;
    ASSERT(0);
}
int df_conv3x3_available(void) { return 0; }
size_t df_conv3x3_s2_plane_words(int oh, int ow) { return (size_t)4 * (oh + 1) * (ow + 1) + 128; }
void df_conv3x3_s2_pad_image(void *dst, const float *x, int c, int h, int w, int oh, int ow, int pad_t, int pad_l,
                             int bf16) {
    (void)dst; (void)x; (void)c; (void)h; (void)w; (void)oh; (void)ow; (void)pad_t; (void)pad_l; (void)bf16;
    ASSERT(0);
}
void df_conv3x3_s2_image(float *y, const void *padded, const void *wpack, const float *b, int oc, int ic, int oh,
                         int ow, int bf16) {
    (void)y; (void)padded; (void)wpack; (void)b; (void)oc; (void)ic; (void)oh; (void)ow; (void)bf16;
    ASSERT(0);
}
#endif

/* The per-image kernel at every level that has one: AVX-512 here, avx2 and neon in conv3x3_vec.c
 * (fp32 layouts only: DF_C3_BF16 exists at avx512bf16 alone). */
int df_conv3x3_plane_available(void) { return !g_force_off && (df_cpu_avx512() || df_conv3x3_vec_kernels()); }

void df_conv3x3_pad_image(void *dst, const float *x, int c, int h, int w, int bf16) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (df_cpu_avx512()) {
        pad_image_avx512(dst, x, c, h, w, bf16);
        return;
    }
#endif
    const conv3x3_vec *k = df_conv3x3_vec_kernels();
    ASSERT(k && bf16 != DF_C3_BF16);
    k->pad(dst, x, c, h, w, bf16 == DF_C3_BF16R);
}

void df_conv3x3_image(float *y, const void *padded, const void *wpack, const float *b, const float *cb,
                      const float *res, int oc, int ic, int h, int w, int accumulate, int bf16) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (df_cpu_avx512()) {
        image_avx512(y, padded, wpack, b, cb, res, oc, ic, h, w, accumulate, bf16);
        return;
    }
#endif
    const conv3x3_vec *k = df_conv3x3_vec_kernels();
    ASSERT(k && bf16 != DF_C3_BF16);
    k->image(y, padded, wpack, b, cb, res, oc, ic, h, w, accumulate);
}

int df_conv3x3_dw_available(int oc) {
    return df_conv3x3_available() || (!g_force_off && df_conv3x3_vec_kernels() && oc >= 16);
}

void df_conv3x3_pad_grad(void *dst, const float *g, int c, int h, int w, int bf16) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (df_cpu_avx512()) {
        pad_grad_avx512(dst, g, c, h, w, bf16);
        return;
    }
#endif
    const conv3x3_vec *k = df_conv3x3_vec_kernels();
    ASSERT(k && bf16 != DF_C3_BF16 && c >= 16);
    k->pad_grad(dst, g, c, h, w, bf16 == DF_C3_BF16R);
}

void df_conv3x3_pad_dw_input(void *dst, const float *x, int c, int h, int w, int bf16) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (df_cpu_avx512()) {
        pad_dw_input_avx512(dst, x, c, h, w, bf16);
        return;
    }
#endif
    const conv3x3_vec *k = df_conv3x3_vec_kernels();
    ASSERT(k && bf16 != DF_C3_BF16);
    k->pad(dst, x, c, h, w, bf16 == DF_C3_BF16R); /* fp32 layouts: the forward's padded planes */
}

void df_conv3x3_dw(float *dw, const void *gpad, const void *xpad, int n, int oc, int ic, int h, int w, int bf16,
                   int set) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (df_cpu_avx512()) {
        dw_avx512(dw, gpad, xpad, n, oc, ic, h, w, bf16, set);
        return;
    }
#endif
    const conv3x3_vec *k = df_conv3x3_vec_kernels();
    ASSERT(k && bf16 != DF_C3_BF16 && oc >= 16);
    k->dw(dw, gpad, xpad, n, oc, ic, h, w, set);
}
