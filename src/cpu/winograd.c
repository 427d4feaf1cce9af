/* winograd.c: the F(2x2, 3x3) convolution (winograd.h): the plan, the weight transforms, and the
 * kernels of each level from one template (winograd_tmpl.h) on GCC's vector extensions:
 *   generic  4 floats (SSE2 on x86-64; NEON registers on aarch64), multiply then add,
 *            4 rows x 2 vectors
 *   avx2     8 floats, 4 rows x 3 vectors (12 accumulators of 16 ymm), vfmadd231ps
 *   neon     4 floats, 8 rows x 3 vectors (24 of 32 q registers), fmla
 * The avx2 functions carry target("avx2,fma"), so the file compiles for any x86-64; they run only
 * at level avx2 (cpu.h). */
#include "winograd.h"
#include "bf16r.h"
#include "common.h"
#include "cpu.h"
#include <stdint.h>
#include <string.h>

typedef struct {
    int vw, rt, np;  /* floats a vector; rows and slots of the product's register tile */
    int drc, dout;   /* dW's register tile: input channels x output channels */
    void (*forward_group)(float *y, size_t y_img, const float *const x[], int nimg, const float *u, const float *b,
                          const float *cb, const float *res, int accumulate, int round, const df_wino_plan *p,
                          float *work);
    void (*dw_group)(float *du, const float *const x[], const float *const g[], int nimg, int set, int round,
                     const df_wino_plan *p, float *work);
} wino_kernels;

/* pw rounded up to the vector: the phase planes' row steps (winograd_tmpl.h, phases). */
static int df_wino_pwv(const df_wino_plan *p, int vw) { return (p->pw + vw - 1) / vw * vw; }

/* Two vectors' floats picked by constant indices (0..2 VW - 1; a comma list, the VT_ masks below):
 * __builtin_shufflevector (clang, GCC 12 on), else GCC's __builtin_shuffle with a mask vector of
 * type vi. */
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define WINO_SHUFFLE_(vi, a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define WINO_SHUFFLE_(vi, a, b, ...) __builtin_shuffle(a, b, (vi){__VA_ARGS__})
#endif
#define WINO_SHUFFLE(vi, a, b, mask) WINO_SHUFFLE_(vi, a, b, mask)

static inline float df_bf16r_float(float f) {
    uint32_t u = df_bf16r_bits(df_f32_bits(f));
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---------------------------------------------------------------- generic */
#define VT_NAME(x) generic_##x
#define VT_TARGET
#define VT_VW 4
#define VT_RT 4
#define VT_CT 2
#define VT_DRC 4
#define VT_DCT 2
#define VT_MADD(acc, a, b) ((acc) + (a) * (b))
#define VT_BCAST(x) ((VF){(x), (x), (x), (x)})
#define VT_ZIPLO 0, 4, 1, 5
#define VT_ZIPHI 2, 6, 3, 7
#define VT_EVENS 0, 2, 4, 6
#define VT_ODDS 1, 3, 5, 7
#include "winograd_tmpl.h"

/* ---------------------------------------------------------------- avx2 */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VT_NAME(x) avx2_##x
#define VT_TARGET __attribute__((target("avx2,fma")))
#define VT_VW 8
#define VT_RT 4
#define VT_CT 3
#define VT_DRC 6
#define VT_DCT 2
#define VT_MADD(acc, a, b) ((VF)_mm256_fmadd_ps((__m256)(a), (__m256)(b), (__m256)(acc)))
#define VT_BCAST(x) ((VF)_mm256_set1_ps(x))
#define VT_ZIPLO 0, 8, 1, 9, 2, 10, 3, 11
#define VT_ZIPHI 4, 12, 5, 13, 6, 14, 7, 15
#define VT_EVENS 0, 2, 4, 6, 8, 10, 12, 14
#define VT_ODDS 1, 3, 5, 7, 9, 11, 13, 15
#include "winograd_tmpl.h"
#define AVX2_KERNELS (&avx2_kernels)
#else
#define AVX2_KERNELS NULL
#endif

/* ---------------------------------------------------------------- neon */
#if defined(__aarch64__)
#include <arm_neon.h>
#define VT_NAME(x) neon_##x
#define VT_TARGET
#define VT_VW 4
#define VT_RT 8
#define VT_CT 3
#define VT_DRC 6
#define VT_DCT 4
#define VT_MADD(acc, a, b) ((VF)vfmaq_f32((float32x4_t)(acc), (float32x4_t)(a), (float32x4_t)(b)))
#define VT_BCAST(x) ((VF)vdupq_n_f32(x))
#define VT_ZIPLO 0, 4, 1, 5
#define VT_ZIPHI 2, 6, 3, 7
#define VT_EVENS 0, 2, 4, 6
#define VT_ODDS 1, 3, 5, 7
#include "winograd_tmpl.h"
#define NEON_KERNELS (&neon_kernels)
#else
#define NEON_KERNELS NULL
#endif

static int g_force_off;
void df_wino_force_off(int force) { g_force_off = force != 0; }

static const wino_kernels *kernels(void) {
    switch (df_cpu_isa()) {
    case DF_ISA_GENERIC: return &generic_kernels;
    case DF_ISA_AVX2: return AVX2_KERNELS;
    case DF_ISA_NEON: return NEON_KERNELS;
    default: return NULL; /* the AVX-512 levels keep their direct and lanes kernels */
    }
}

int df_wino_available(void) { return !g_force_off && kernels() != NULL; }

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* Images of a group: the fewest (at most WINO_MAX_GROUP_IMAGES) whose slots waste the least on
 * the rounding to the register tile, a larger group taken only for 2% less waste. Measured at
 * avx2 (Xeon family 6 model 207, batch 64): at 7x7 one image a group (20 slots in 24) ran 1.15-1.25x
 * faster than 6 or 12 (120 and 240 slots, no waste); at 14x14 two (112 in 120) 1.1x faster than
 * one (56 in 72) or four. Small groups keep a group's V and M in L2. */
#define WINO_MAX_GROUP_IMAGES 4
/* Planes of at most 16 tiles (8x8 and below: the U-Net's 7x7 and 4x4 levels) in batches of a
 * vector or more take the lanes layout: at 7x7 the plane layout fills 16 of its 24 slots. */
#define WINO_LANES_MAX_TILES 16
static int group_slots(int g, int qp, int qv, int np) { return ((g - 1) * qp + qv + np - 1) / np * np; }

void df_wino_plan_init(df_wino_plan *p, int oc, int ic, int h, int w, int n, int threads) {
    const wino_kernels *k = kernels();
    ASSERT(k && oc > 0 && ic > 0 && h > 0 && w > 0 && n > 0);
    p->oc = oc;
    p->ic = ic;
    p->h = h;
    p->w = w;
    p->th = (h + 1) / 2;
    p->tw = (w + 1) / 2;
    p->pw = p->tw + 1;
    p->lanes = p->th * p->tw <= WINO_LANES_MAX_TILES && n >= k->vw;
    if (p->lanes) {
        /* a group is vw images, a slot (tile, image): nothing wasted on junk or rounding */
        p->g = k->vw;
        p->qp = p->qv = p->th * p->tw * k->vw;
        p->npad = round_up(p->qp, k->np);
        p->rt = k->rt;
        p->ocp = round_up(oc, k->rt);
        const int lane_plane = (2 * p->th + 2) * (2 * p->tw + 2) * k->vw; /* in the phase buffer */
        p->pps = (size_t)round_up((lane_plane + 3) / 4, 16);
        return;
    }
    p->qp = p->th * p->pw;
    p->qv = round_up(p->qp, k->vw);
    int g = 1;
    double waste = (double)group_slots(1, p->qp, p->qv, k->np) / p->qp;
    for (int c = 2; c <= WINO_MAX_GROUP_IMAGES && c <= n; c++) {
        const double wc = (double)group_slots(c, p->qp, p->qv, k->np) / ((double)c * p->qp);
        if (wc < 0.98 * waste) {
            g = c;
            waste = wc;
        }
    }
    if (threads > 0) {
        /* as many groups as a multiple of the threads, so that none waits on a last one */
        int tasks = (n + g - 1) / g;
        if (tasks % threads) tasks += threads - tasks % threads;
        g = (n + tasks - 1) / tasks;
    }
    p->g = g;
    p->npad = group_slots(g, p->qp, p->qv, k->np);
    p->rt = k->rt;
    p->ocp = round_up(oc, k->rt);
    /* the transforms read up to qv + pw; phases writes rows of pw up to th pw + pwv + 1 */
    int pps = p->qv + p->pw + 1;
    if (pps < p->th * p->pw + df_wino_pwv(p, k->vw) + 1) pps = p->th * p->pw + df_wino_pwv(p, k->vw) + 1;
    if (pps < (p->th + 1) * p->pw) pps = (p->th + 1) * p->pw;
    p->pps = (size_t)round_up(pps, 16);
}

/* The phase planes' row buffer. */
static size_t phase_floats(const df_wino_plan *p) { return 2 * (size_t)df_wino_pwv(p, kernels()->vw); }

size_t df_wino_weight_floats(const df_wino_plan *p) { return (size_t)16 * p->ocp * p->ic; }

size_t df_wino_thread_floats(const df_wino_plan *p) {
    const wino_kernels *k = kernels();
    const size_t f = (size_t)16 * p->ic * p->npad + (size_t)16 * p->ocp * p->npad + 4 * p->pps + 4 * (size_t)p->qv + k->vw +
                     phase_floats(p);
    return (f + 15) & ~(size_t)15;
}

static int dw_icp(const df_wino_plan *p) { return round_up(p->ic, kernels()->drc); }
static int dw_ocv(const df_wino_plan *p) { return round_up(p->oc, kernels()->dout); }

size_t df_wino_dw_floats(const df_wino_plan *p) { return (size_t)16 * dw_icp(p) * dw_ocv(p); }

size_t df_wino_dw_thread_floats(const df_wino_plan *p) {
    const wino_kernels *k = kernels();
    const size_t brows = 2 * (size_t)p->th, bw = 2 * (size_t)p->pw;
    const size_t f = (size_t)16 * dw_icp(p) * p->npad + (size_t)16 * dw_ocv(p) * p->npad + 4 * p->pps +
                     brows * bw * k->vw + phase_floats(p);
    return (f + 15) & ~(size_t)15;
}

/* The transforms of one 3x3 weight, in double: U = G g G^T (4x4), and its adjoint. */
static const double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};

static void weight_transform(double u[4][4], const double g[3][3]) {
    double t[4][3];
    for (int a = 0; a < 4; a++)
        for (int j = 0; j < 3; j++) t[a][j] = G[a][0] * g[0][j] + G[a][1] * g[1][j] + G[a][2] * g[2][j];
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 4; b++) u[a][b] = t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2];
}

void df_wino_pack_weights(float *u, const float *w, const df_wino_plan *p, int flip, int round) {
    const int oc = p->oc, ic = p->ic, rt = p->rt;
    memset(u, 0, sizeof(float) * df_wino_weight_floats(p));
    for (int o = 0; o < oc; o++)
        for (int c = 0; c < ic; c++) {
            double g[3][3], t[4][4];
            for (int k = 0; k < 9; k++) {
                float v = flip ? w[((size_t)c * oc + o) * 9 + 8 - k] : w[((size_t)o * ic + c) * 9 + k];
                if (round) v = df_bf16r_float(v);
                g[k / 3][k % 3] = v;
            }
            weight_transform(t, g);
            /* [xi][strip][c][row] */
            for (int xi = 0; xi < 16; xi++)
                u[(size_t)xi * p->ocp * ic + ((size_t)(o / rt) * ic + c) * rt + o % rt] = (float)t[xi / 4][xi % 4];
        }
}

void df_wino_dw_finish(float *dw, const float *du, const df_wino_plan *p, int c0, int c1) {
    const int oc = p->oc, ic = p->ic, icp = dw_icp(p), ocv = dw_ocv(p);
    for (int c = c0; c < c1; c++)
        for (int o = 0; o < oc; o++) {
            double x[4][4], t[3][4];
            for (int xi = 0; xi < 16; xi++) x[xi / 4][xi % 4] = du[((size_t)xi * icp + c) * ocv + o];
            /* dg = G^T dU G */
            for (int i = 0; i < 3; i++)
                for (int b = 0; b < 4; b++) t[i][b] = G[0][i] * x[0][b] + G[1][i] * x[1][b] + G[2][i] * x[2][b] + G[3][i] * x[3][b];
            float *d = dw + ((size_t)o * ic + c) * 9;
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    d[i * 3 + j] += (float)(t[i][0] * G[0][j] + t[i][1] * G[1][j] + t[i][2] * G[2][j] + t[i][3] * G[3][j]);
        }
}

void df_wino_forward_group(float *y, size_t y_img, const float *const x[], int nimg, const float *u, const float *b,
                           const float *cb, const float *res, int accumulate, int round, const df_wino_plan *p,
                           float *work) {
    ASSERT(nimg > 0 && nimg <= p->g);
    kernels()->forward_group(y, y_img, x, nimg, u, b, cb, res, accumulate, round, p, work);
}

void df_wino_dw_group(float *du, const float *const x[], const float *const g[], int nimg, int set, int round,
                      const df_wino_plan *p, float *work) {
    ASSERT(nimg > 0 && nimg <= p->g);
    kernels()->dw_group(du, x, g, nimg, set, round, p, work);
}
