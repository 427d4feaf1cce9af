/* ops_conv.c: 2-D convolution (ops.h), forward and backward, the fast paths.
 *
 * What it is: three fast paths, chosen by the shape (never by the batch size or thread count). The
 * `_ref` pair of direct loops accumulating in double (the oracle of the tests) is ops_conv_ref.c.
 * - Direct: 3x3 stride-1 pad-1 convs (most of the U-Net) run the kernels of conv3x3.h for the
 *   forward, dX and dW at the AVX-512 levels (cpu.h), in both precisions: padded planes
 *   read in place, no column matrix at all.
 * - Lanes: the same 3x3 convs on small planes (4x4 at any batch, 7x7 and 8x8 from 8 images) run
 *   forward and dX with 16 images side by side in the vector lanes (conv3x3.h), the same bits as
 *   the per-image direct kernel, and dW too where it pays (conv_lanes_dw); otherwise their dW takes
 *   the path below that the shape would take anyway.
 * - Batched: outputs of at most 16 positions (the 4x4 level) lower a group of images to one column
 *   matrix and run one threaded GEMM per product (there, what the lanes path does not take: dW, and
 *   every product where the direct kernels are absent).
 * - Per image (everything else, and the shapes the direct kernels do not take): im2col into the
 *   caller's scratch and a GEMM; a 1x1 stride-1 unpadded conv is already a matrix product. dX of a
 *   stride-1 conv is the forward conv of dout with the flipped, transposed weights, else a GEMM into
 *   a column gradient and col2im.
 * Every GEMM runs in the shape's precision: df_gemm_f32, or df_gemm_bf16 (inputs rounded to bf16,
 * fp32 sums); im2col, col2im, the bias and the dW partial sums are fp32 either way.
 * - Winograd: at the levels below AVX-512 (generic, avx2, neon), the 3x3 same convs with 8 channels
 *   or more in and out run F(2x2, 3x3) (winograd.h) for the forward, dX and dW: 2.25x fewer
 *   multiplies than the direct kernel, which they replace there.
 * What it is not: no FFT, no channels-last layout. The forward can also fuse the U-Net's
 * norm + SiLU before and bias and residual adds after the conv (df_conv2d_forward_fused).
 *
 * The drivers of the direct, lanes and Winograd kernels are ops_conv_runs.c; what this file
 * decides and they read (the path, the scratch layout) is declared in ops_conv_impl.h.
 *
 * Threads: OpenMP over images, one image per thread at a time (dynamic schedule), each thread with
 * its own buffer and single-threaded GEMMs (they run on the calling thread inside a parallel
 * region). On the U-Net's small images this runs 2-6x faster than one multi-threaded GEMM per
 * image, which spends its time waking threads and splitting tiny matrices. dW is summed in fixed
 * slices of the batch (conv_dw_chunks), so it does not depend on the thread count or the schedule.
 * Gradients: every backward ACCUMULATES (+=) into dinp, dw, db (dinp is overwritten instead when the
 * shape's dinp_set is 1); NULL means "not needed".
 */
#include "conv3x3.h"
#include "cpu.h"
#include "winograd.h"
#include "gemm.h"
#include "ops.h"
#include "ops_conv_impl.h"
#include "common.h"
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Parallelise the copy loops only when there is enough work to pay for waking the threads. */
#define CONV_OMP_MIN_FLOATS 32768
/* The most images of a Winograd group (winograd.h: 4 in the plane layout, a vector's floats in
 * the lanes layout) */

void df_conv_shape_init(df_conv_shape *s, int n, int ic, int h, int w, int oc, int k, int stride,
                        int pad_t, int pad_l, int pad_b, int pad_r) {
    ASSERT(n > 0 && ic > 0 && h > 0 && w > 0 && oc > 0 && k > 0 && stride > 0);
    ASSERT(pad_t >= 0 && pad_l >= 0 && pad_b >= 0 && pad_r >= 0);
    s->n = n; s->ic = ic; s->h = h; s->w = w;
    s->oc = oc; s->kh = k; s->kw = k;
    s->stride = stride;
    s->pad_t = pad_t; s->pad_l = pad_l; s->pad_b = pad_b; s->pad_r = pad_r;
    ASSERT(h + pad_t + pad_b >= k && w + pad_l + pad_r >= k);
    s->oh = (h + pad_t + pad_b - k) / stride + 1;
    s->ow = (w + pad_l + pad_r - k) / stride + 1;
    s->precision = DF_PRECISION_FP32;
    s->dinp_set = 0;
#ifdef _OPENMP
    s->threads = omp_get_max_threads();
#else
    s->threads = 1;
#endif
}

/* The direct kernels' number format (conv3x3.h): fp32; bf16 pairs on vdpbf16ps; or, at levels
 * without it, fp32 words rounded to bf16 as they are packed (the same numerics on the fp32
 * kernels). Nonzero means bf16 wherever a GEMM runs instead (df_gemm picks its own path). */
int conv_bf16(const df_conv_shape *s) {
    if (s->precision != DF_PRECISION_BF16) return DF_C3_FP32;
    return df_cpu_bf16_dot() ? DF_C3_BF16 : DF_C3_BF16R;
}

/* Profile key: kernel, stride, direction (and bf16), channels and input size. */
static void conv_prof_end(double t0, const char *dir, const df_conv_shape *s) {
    df_ops_prof_end(t0, "conv%dx%d s%d %s%s %d->%d %dx%d", s->kh, s->kw, s->stride, dir, conv_bf16(s) ? " bf16" : "",
                    s->ic, s->oc, s->h, s->w);
}

/* A 1x1 stride-1 unpadded conv reads the image as the (IC, H*W) matrix itself. */
static int conv_is_pointwise(const df_conv_shape *s) {
    return s->kh == 1 && s->kw == 1 && s->stride == 1 && s->pad_t == 0 && s->pad_l == 0 &&
           s->pad_b == 0 && s->pad_r == 0;
}

/* Threads the fast paths use: one image per thread at a time. Sized when the shape is made, so
 * that the scratch sized from a shape always matches the run that uses it. */
int conv_threads(const df_conv_shape *s) {
    return s->threads < s->n ? s->threads : s->n;
}

/* dW is accumulated in at most CONV_DW_CHUNKS partial blocks, one per fixed slice of the batch, and
 * the partials are added in order: the result does not depend on the thread count or on which
 * thread ran which slice, while threads still take slices dynamically (a descheduled thread on a
 * shared machine does not hold the other up). A slice holds at least CONV_DW_SLICE_POSITIONS
 * output positions (of the padded width) where the batch allows: the direct dW kernel reduces its
 * accumulators across lanes once per slice, which costs as much as ~300 positions of its work. The
 * slicing depends on the shape only. */
#define CONV_DW_CHUNKS 8
#define CONV_DW_SLICE_POSITIONS 1024
static int conv_dw_chunks(const df_conv_shape *s) {
    const int by_count = (s->n + CONV_DW_CHUNKS - 1) / CONV_DW_CHUNKS;
    const int by_size = (CONV_DW_SLICE_POSITIONS + s->oh * (s->ow + 2) - 1) / (s->oh * (s->ow + 2));
    const int per = by_count > by_size ? by_count : by_size;
    return (s->n + per - 1) / per;
}
static int conv_dw_chunk_max(const df_conv_shape *s) {
    const int c = conv_dw_chunks(s);
    return (s->n + c - 1) / c;
}

/* Backward computes dX of a stride-1 conv as the forward conv of dout with the flipped, transposed
 * weights (zero padding k-1-pad on each side), which is an im2col gather and one sgemm with an inner
 * dimension of OC*KH*KW, instead of an sgemm with inner dimension OC and a col2im scatter. */
static int conv_dx_as_conv(const df_conv_shape *s) {
    return s->stride == 1 && s->pad_t < s->kh && s->pad_b < s->kh && s->pad_l < s->kw && s->pad_r < s->kw;
}

/* The shape of that transposed conv: dout (N,OC,OH,OW) -> dX (N,IC,H,W). */
static void conv_dx_shape(df_conv_shape *t, const df_conv_shape *s) {
    df_conv_shape_init(t, s->n, s->oc, s->oh, s->ow, s->ic, s->kh, 1, s->kh - 1 - s->pad_t, s->kw - 1 - s->pad_l,
                       s->kh - 1 - s->pad_b, s->kw - 1 - s->pad_r);
    t->kw = s->kw;
    t->threads = s->threads;
    t->precision = s->precision;
}

static size_t conv_wsize(const df_conv_shape *s) { return (size_t)s->oc * s->ic * s->kh * s->kw; }

/* A 3x3 stride-1 conv with padding 1 on every side runs the direct kernel (conv3x3.h) when the CPU
 * has it in this precision: the forward at any output count (a tile is 8 outputs; the output
 * head's 1 or 3 use part of one, still 2.4x faster than im2col + a GEMM with one row), dX when the
 * input has 8 channels or more (dX is a conv with IC outputs; the U-Net's narrow inputs need none). */
static int conv_is_3x3_same(const df_conv_shape *s) {
    return s->kh == 3 && s->kw == 3 && s->stride == 1 && s->pad_t == 1 && s->pad_l == 1 && s->pad_b == 1 &&
           s->pad_r == 1;
}
static int conv_direct_fwd(const df_conv_shape *s) {
    return conv_is_3x3_same(s) && df_conv3x3_plane_available();
}
/* Stride 2 on the direct kernel (phase planes, conv3x3.h), forward only: its dX and dW keep im2col
 * + GEMM. bf16 forward 2x the per-image GEMM (down 32 28->14 117 -> 231 GFLOP/s, 64 14->7 148 -> 248),
 * fp32 1.1-1.3x. */
static int conv_direct_s2(const df_conv_shape *s) {
    return s->kh == 3 && s->kw == 3 && s->stride == 2 && df_conv3x3_available();
}
static int conv_direct_dx(const df_conv_shape *s) {
    return conv_is_3x3_same(s) && s->ic >= 8 && df_conv3x3_plane_available();
}

/* Winograd F(2x2, 3x3) (winograd.h) at the levels that have it, from 8 channels in and out (the
 * U-Net's 1- and 3-channel image convs keep the direct kernel: nothing to share the transforms). */
static int conv_wino(const df_conv_shape *s) {
    return conv_is_3x3_same(s) && s->ic >= 8 && s->oc >= 8 && df_wino_available();
}
/* dW by Winograd from 8 inputs, whatever the outputs: the output head's (32 -> 1 or 3), on im2col +
 * a one-row GEMM, took 10.6 ms of a 935 ms step at avx2. */
static int conv_wino_dw(const df_conv_shape *s) {
    return conv_is_3x3_same(s) && s->ic >= 8 && df_wino_available();
}
/* Its plans: the forward (groups balanced over the threads; an output does not depend on them),
 * dX (the conv of dout with the flipped weights), dW (groups fixed by the shape alone, so the sums'
 * order never depends on the threads). */
void conv_wino_plans(const df_conv_shape *s, df_wino_plan *f, df_wino_plan *x, df_wino_plan *d) {
    const int nt = s->threads < s->n ? s->threads : s->n;
    df_wino_plan_init(f, s->oc, s->ic, s->h, s->w, s->n, nt);
    df_wino_plan_init(x, s->ic, s->oc, s->h, s->w, s->n, nt);
    df_wino_plan_init(d, s->oc, s->ic, s->h, s->w, s->n, 0);
}

/* Small planes run the lanes kernel (conv3x3.h: 16 images per vector) for the forward and dX: 4x4
 * at any batch (it replaces the batched GEMM there), 7x7 and 8x8 from 8 images up (below that the
 * per-image direct kernel, which gives the same bits, wastes less on empty lanes). */
#define CONV_LANES_MAX_OHW 64
#define CONV_LANES_MIN_N 8
static int g_force_per_image;
static int conv_lanes(const df_conv_shape *s) {
    const int ohw = s->oh * s->ow;
    return !g_force_per_image && conv_is_3x3_same(s) && df_conv3x3_available() &&
           (ohw <= 16 || (ohw <= CONV_LANES_MAX_OHW && s->n >= CONV_LANES_MIN_N));
}
static int conv_lanes_fwd(const df_conv_shape *s) { return conv_lanes(s) && s->oc >= 8; }
static int conv_lanes_dx(const df_conv_shape *s) { return conv_lanes(s) && s->ic >= 8; }
int conv_groups(const df_conv_shape *s) { return (s->n + 15) / 16; }
/* dW on the lanes layout (bf16: pairs of rows, see conv3x3.h). Its tiles reduce across lanes once
 * per weight, which costs as much as ~40 positions of work: at least 64 positions of packed groups
 * (a batch of 16 at 4x4 has 16, and runs the batched GEMM instead: 1.25x faster than lanes there).
 * In bf16 it also takes larger planes, from 12 images a group on average, where a tile's packed
 * dout (every group's, per output) stays small enough for L2 while the input channels pass it:
 * against the plane kernel's pairs of positions (junk columns, shifted loads across cache lines),
 * 1.15x at 14x14 batch 64, 1.3x at 16x16 batch 16, 1.05x at 32x32 batch 16, but 0.9x at 28x28 batch
 * 64 (100 KiB a tile's output). fp32 measured even there, and keeps the plane kernels. */
#define CONV_LANES_DW_MAX_OUTPUT_BYTES ((size_t)48 << 10)
static int conv_lanes_dw_bf16_plane(const df_conv_shape *s) {
    const size_t per_output = (size_t)conv_groups(s) * 16 * df_conv3x3_lanes_dw_rows(s->oh, 1) * s->ow * 4;
    return conv_bf16(s) == DF_C3_BF16 && conv_is_3x3_same(s) && df_conv3x3_available() && 4 * s->n >= 3 * 16 * conv_groups(s) &&
           per_output <= CONV_LANES_DW_MAX_OUTPUT_BYTES;
}
static int conv_lanes_dw(const df_conv_shape *s) {
    return (conv_lanes(s) && conv_groups(s) * s->oh * s->ow >= 64) || conv_lanes_dw_bf16_plane(s);
}

/* The lanes path's scratch: [the packed groups (of the input or of dout)][each thread's normalised
 * image (the fused forward)][the packed weights]. */
size_t conv_lanes_packed_floats(const df_conv_shape *s) {
    const int c = s->ic > s->oc ? s->ic : s->oc;
    return (size_t)conv_groups(s) * df_conv3x3_lanes_words(c, s->h, s->w, conv_bf16(s));
}
/* a thread's normalised channels: one (bf16: two) per lane */
size_t conv_lanes_norm_floats(const df_conv_shape *s) { return (size_t)32 * s->h * s->w; }
/* dW: [dout groups, unpadded][input groups, padded], fp32 values. */
size_t conv_lanes_dw_gsz(const df_conv_shape *s) {
    return (size_t)s->oc * df_conv3x3_lanes_dw_rows(s->oh, conv_bf16(s)) * s->ow * 16;
}
size_t conv_lanes_dw_xsz(const df_conv_shape *s) {
    return (size_t)s->ic * (df_conv3x3_lanes_dw_rows(s->h, conv_bf16(s)) + 2) * (s->w + 2) * 16;
}
static size_t conv_lanes_floats(const df_conv_shape *s) {
    const int bf = conv_bf16(s);
    size_t wpk = df_conv3x3_weight_words(s->oc, s->ic, bf), x = df_conv3x3_weight_words(s->ic, s->oc, bf);
    if (x > wpk) wpk = x;
    const size_t fx =
        conv_lanes(s) ? conv_lanes_packed_floats(s) + (size_t)s->threads * conv_lanes_norm_floats(s) + wpk : 0;
    const size_t dw = conv_lanes_dw(s) ? (size_t)conv_groups(s) * (conv_lanes_dw_gsz(s) + conv_lanes_dw_xsz(s)) : 0;
    return fx > dw ? fx : dw;
}
float *conv_lanes_wpack(const df_conv_shape *s, float *scratch) {
    return scratch + conv_lanes_packed_floats(s) + (size_t)s->threads * conv_lanes_norm_floats(s);
}

/* Images in the largest of the dW slices (see conv_dw_chunks below). */
static int conv_dw_chunk_max(const df_conv_shape *s);

/* dW of such a conv runs the direct kernel (in the conv's precision) when a slice has enough
 * positions to pay for the kernel's lane reductions, once per slice: 256 of the padded width (at
 * batch 64 the 7x7 level's slices have 8 x 63; im2col + GEMM was 10-15% slower there). */
static int conv_direct_dw(const df_conv_shape *s) {
    return conv_is_3x3_same(s) && df_conv3x3_dw_available(s->oc) &&
           (size_t)conv_dw_chunk_max(s) * s->h * (s->w + 2) >= 256;
}

/* Words of one image's padded dout and input for the direct dW. */
static size_t conv_dw_gimg(const df_conv_shape *s, int bf) {
    return df_conv3x3_grad_image_words(s->oc, s->oh, s->ow, bf);
}
static size_t conv_dw_ximg(const df_conv_shape *s, int bf) {
    return (size_t)s->ic * df_conv3x3_dw_plane_words(s->h, s->w, bf);
}

/* Floats of one thread's buffer for the direct dW: the padded dout and input of a whole slice,
 * in the larger of the two precisions' layouts. */
static size_t conv_direct_dw_floats(const df_conv_shape *s) {
    size_t a = conv_dw_gimg(s, 0) + conv_dw_ximg(s, 0), b = conv_dw_gimg(s, 1) + conv_dw_ximg(s, 1);
    return (size_t)conv_dw_chunk_max(s) * (a > b ? a : b);
}

/* Tiny outputs (at most 16 positions: the U-Net's 4x4 level) make per-image GEMMs too thin to run
 * well (N = OH*OW columns in one partial tile) and the direct kernel's tiles mostly padding (16 of
 * 48 positions). Such convs run batched instead: the columns of a group of images side by
 * side, (IC*KH*KW, G*OH*OW), and one threaded GEMM per product. The group size G depends on the
 * shape only (columns of at most CONV_BATCHED_MAX_FLOATS floats), never on the batch, and a GEMM's
 * column does not depend on how many columns it has: an image's output is the same bits at any
 * batch size. */
#define CONV_BATCHED_MAX_OHW 16
#define CONV_BATCHED_MAX_FLOATS ((size_t)8 << 20)
void df_conv2d_force_per_image(int force) { g_force_per_image = force != 0; }
static int conv_batched(const df_conv_shape *s) {
    return !g_force_per_image && s->oh * s->ow <= CONV_BATCHED_MAX_OHW;
}
/* Images per group: as many as fit the bound, at least 1, at most the batch. */
static int conv_batched_group(const df_conv_shape *s) {
    const size_t per_img = ((size_t)s->ic * s->kh * s->kw + s->oc) * s->oh * s->ow;
    size_t g = CONV_BATCHED_MAX_FLOATS / per_img;
    if (g < 1) g = 1;
    return g < (size_t)s->n ? (int)g : s->n;
}
static size_t conv_batched_cols(const df_conv_shape *s) { return (size_t)s->n * s->oh * s->ow; }

/* Floats of the batched path's scratch for one group: the columns (KDIM, NB), the outputs or
 * output gradients gathered as (OC, NB), and one GEMM workspace. */
static size_t conv_batched_floats(const df_conv_shape *s) {
    df_conv_shape t = *s;
    t.n = conv_batched_group(s);
    const int kdim = t.ic * t.kh * t.kw, nb = (int)conv_batched_cols(&t);
    size_t g = df_gemm_workspace(t.oc, nb, kdim), x;
    if ((x = df_gemm_workspace(t.oc, kdim, nb)) > g) g = x;
    if ((x = df_gemm_workspace(kdim, nb, t.oc)) > g) g = x;
    return ((size_t)kdim + t.oc) * nb + (g + sizeof(float) - 1) / sizeof(float) + 16;
}

/* One thread's column buffer, for the paths this shape takes: the columns of one image for an
 * im2col forward or dW (IC*KH*KW, OH*OW), of one dout image for the transposed conv (OC*KH*KW, H*W),
 * or the direct kernel's padded images. Rounded to 16 floats so each thread's block starts on its
 * own cache line. */
static size_t conv_cols_floats(const df_conv_shape *s) {
    if (conv_is_pointwise(s)) return 0;
    const int bf = conv_bf16(s);
    const size_t im2col = (size_t)s->ic * s->kh * s->kw * s->oh * s->ow;
    /* direct forward: the padded image, and the fused forward's normalised image before padding */
    size_t a = conv_direct_fwd(s) ? df_conv3x3_image_words(s->ic, s->h, s->w, bf) + (size_t)s->ic * s->h * s->w
                                  : im2col, b;
    if (conv_direct_dx(s))
        b = df_conv3x3_image_words(s->oc, s->oh, s->ow, bf);
    else
        b = conv_dx_as_conv(s) ? (size_t)s->oc * s->kh * s->kw * s->h * s->w : im2col;
    if (b > a) a = b;
    if ((b = conv_direct_dw(s) ? conv_direct_dw_floats(s) : im2col) > a) a = b;
    if (conv_direct_s2(s) && (b = (size_t)(bf == DF_C3_BF16 ? (s->ic + 1) / 2 : s->ic) * df_conv3x3_s2_plane_words(s->oh, s->ow)) > a)
        a = b;
    return (a + 15) & ~(size_t)15;
}

/* Floats of the shared weight block: the direct kernel's packed weights (forward, dX) or the
 * flipped weights of a transposed-conv dX, whichever this shape uses. */
static size_t conv_wblock_floats(const df_conv_shape *s) {
    const int bf = conv_bf16(s);
    size_t a = 0, b;
    if (conv_direct_fwd(s) || conv_direct_s2(s)) a = df_conv3x3_weight_words(s->oc, s->ic, bf);
    if (conv_direct_dx(s)) b = df_conv3x3_weight_words(s->ic, s->oc, bf);
    else b = !conv_is_pointwise(s) && conv_dx_as_conv(s) ? conv_wsize(s) : 0;
    if (b > a) a = b;
    return (a + 15) & ~(size_t)15;
}

/* Floats of GEMM workspace one thread needs: the largest of the GEMMs this shape runs (forward, dW,
 * dX as a transposed conv or through col2im), in either precision; none on the direct paths. */
static size_t conv_gemm_floats(const df_conv_shape *s) {
    const int kdim = s->ic * s->kh * s->kw, ohw = s->oh * s->ow, hw = s->h * s->w, tdim = s->oc * s->kh * s->kw;
    size_t b = 0, x;
    if (!conv_direct_fwd(s)) b = df_gemm_workspace(s->oc, ohw, kdim);
    if (!conv_direct_dw(s) && (x = df_gemm_workspace(s->oc, kdim, ohw)) > b) b = x;
    if (!conv_direct_dx(s)) {
        if (conv_is_pointwise(s) || !conv_dx_as_conv(s)) x = df_gemm_workspace(kdim, ohw, s->oc);
        else x = df_gemm_workspace(s->ic, hw, tdim);
        if (x > b) b = x;
    }
    return ((b + sizeof(float) - 1) / sizeof(float) + 15) & ~(size_t)15;
}

/* One thread's part of the scratch: its columns, then its GEMM workspace. */
size_t conv_thread_floats(const df_conv_shape *s) { return conv_cols_floats(s) + conv_gemm_floats(s); }

/* Winograd's scratch (conv_wino_run, conv_dw_wino): [packed weights][per thread: work buffer,
 * normalised images of a group (the fused forward)], or for dW [partial sums x slices][per thread:
 * work buffer]. */
size_t conv_wino_norm_floats(const df_conv_shape *s, const df_wino_plan *p) {
    return ((size_t)p->g * s->ic * s->h * s->w + 15) & ~(size_t)15;
}
/* dW sums fixed slices of its groups (at most CONV_DW_CHUNKS), then the slices in order. */
int conv_wino_dw_slices(const df_conv_shape *s, const df_wino_plan *d) {
    const int groups = (s->n + d->g - 1) / d->g;
    return groups < CONV_DW_CHUNKS ? groups : CONV_DW_CHUNKS;
}
static size_t conv_wino_floats(const df_conv_shape *s) {
    df_wino_plan f, x, d;
    conv_wino_plans(s, &f, &x, &d);
    const size_t nt = (size_t)conv_threads(s);
    size_t a = df_wino_weight_floats(&f) + nt * (df_wino_thread_floats(&f) + conv_wino_norm_floats(s, &f)), b;
    if ((b = df_wino_weight_floats(&x) + nt * (df_wino_thread_floats(&x) + conv_wino_norm_floats(s, &x))) > a) a = b;
    if ((b = (size_t)conv_wino_dw_slices(s, &d) * df_wino_dw_floats(&d) + nt * df_wino_dw_thread_floats(&d)) > a) a = b;
    return a;
}

/* Scratch layout: [per-thread columns + GEMM workspace x threads][weight block: flipped or packed
 * weights][dW partials x chunks]. */
size_t df_conv2d_scratch_floats(const df_conv_shape *s) {
    const size_t w16 = (conv_wsize(s) + 15) & ~(size_t)15;
    size_t f = conv_batched(s) ? conv_batched_floats(s)
                               : conv_thread_floats(s) * (size_t)conv_threads(s) + conv_wblock_floats(s) +
                                     w16 * (size_t)conv_dw_chunks(s);
    /* the lanes forward and dX use the scratch before (or instead of) the paths above; so does
     * Winograd */
    if ((conv_lanes(s) || conv_lanes_dw(s)) && conv_lanes_floats(s) > f) f = conv_lanes_floats(s);
    if ((conv_wino(s) || conv_wino_dw(s)) && conv_wino_floats(s) > f) f = conv_wino_floats(s);
    return f;
}

/* Output columns ox whose input column ix = ox*stride - pad_l + kj lies inside [0, w):
 * [*ox0, *ox1), possibly empty. */
static void conv_valid_range(int pad, int kj, int stride, int w, int ow, int *ox0, int *ox1) {
    int lo = pad - kj;          /* need ox*stride >= lo */
    int hi = w - 1 + pad - kj;  /* need ox*stride <= hi */
    int a = lo <= 0 ? 0 : (lo + stride - 1) / stride;
    int b = hi < 0 ? 0 : hi / stride + 1;
    if (b > ow) b = ow;
    if (b < a) b = a;
    *ox0 = a;
    *ox1 = b;
}

/* col (IC*KH*KW, OH*OW), rows ld floats apart, from img (IC,H,W): row (c,ki,kj), column (oy,ox)
 * holds img[c][oy*stride - pad_t + ki][ox*stride - pad_l + kj], or 0 in the padding. */
static void conv_im2col_ld(float *col, size_t ld, const float *img, const df_conv_shape *s) {
    const int kk = s->kh * s->kw, rows = s->ic * kk, ow = s->ow, oh = s->oh, st = s->stride;
    const size_t ohw = (size_t)oh * ow;
#pragma omp parallel for schedule(static) if ((size_t)rows * ohw > CONV_OMP_MIN_FLOATS)
    for (int r = 0; r < rows; r++) {
        const int c = r / kk, ki = (r % kk) / s->kw, kj = r % s->kw;
        const float *plane = img + (size_t)c * s->h * s->w;
        float *dst = col + (size_t)r * ld;
        int ox0, ox1;
        conv_valid_range(s->pad_l, kj, st, s->w, ow, &ox0, &ox1);
        for (int oy = 0; oy < oh; oy++) {
            float *drow = dst + (size_t)oy * ow;
            const int iy = oy * st - s->pad_t + ki;
            if (iy < 0 || iy >= s->h || ox0 == ox1) {
                memset(drow, 0, sizeof(float) * ow);
                continue;
            }
            const float *srow = plane + (size_t)iy * s->w;
            const int shift = kj - s->pad_l;  /* ix = ox*st + shift, inside [0, w) for ox in [ox0, ox1) */
            for (int ox = 0; ox < ox0; ox++) drow[ox] = 0.0f;
            if (st == 1) {
                memcpy(drow + ox0, srow + ox0 + shift, sizeof(float) * (ox1 - ox0));
            } else {
                for (int ox = ox0; ox < ox1; ox++) drow[ox] = srow[ox * st + shift];
            }
            for (int ox = ox1; ox < ow; ox++) drow[ox] = 0.0f;
        }
    }
}

static void conv_im2col(float *col, const float *img, const df_conv_shape *s) {
    conv_im2col_ld(col, (size_t)s->oh * s->ow, img, s);
}

/* img (IC,H,W) += the column gradient col (IC*KH*KW, OH*OW), rows ld floats apart, scattered back
 * (adjoint of im2col). One thread per input channel, so no two threads write the same pixel. */
static void conv_col2im_add_ld(float *img, const float *col, size_t ld, const df_conv_shape *s) {
    const int kk = s->kh * s->kw, ow = s->ow, oh = s->oh, st = s->stride;
    const size_t ohw = (size_t)oh * ow;
#pragma omp parallel for schedule(static) if ((size_t)s->ic * kk * ohw > CONV_OMP_MIN_FLOATS)
    for (int c = 0; c < s->ic; c++) {
        float *plane = img + (size_t)c * s->h * s->w;
        for (int ki = 0; ki < s->kh; ki++) {
            for (int kj = 0; kj < s->kw; kj++) {
                const float *src = col + ((size_t)c * kk + ki * s->kw + kj) * ld;
                int ox0, ox1;
                conv_valid_range(s->pad_l, kj, st, s->w, ow, &ox0, &ox1);
                for (int oy = 0; oy < oh; oy++) {
                    const int iy = oy * st - s->pad_t + ki;
                    if (iy < 0 || iy >= s->h) continue;
                    float *drow = plane + (size_t)iy * s->w;
                    const float *srow = src + (size_t)oy * ow;
                    const int shift = kj - s->pad_l;
                    if (st == 1) {  /* contiguous: lets the compiler vectorise */
                        for (int ox = ox0; ox < ox1; ox++) drow[ox + shift] += srow[ox];
                    } else {
                        for (int ox = ox0; ox < ox1; ox++) drow[ox * st + shift] += srow[ox];
                    }
                }
            }
        }
    }
}

static void conv_col2im_add(float *img, const float *col, const df_conv_shape *s) {
    conv_col2im_add_ld(img, col, (size_t)s->oh * s->ow, s);
}

/* y (OC, OH*OW) = w cols(x) + b for one image x (IC,H,W), cols in the caller's buffer. */
static void conv_forward_image(float *y, const float *x, const float *w, const float *b, const df_conv_shape *s,
                               float *cols) {
    const int kdim = s->ic * s->kh * s->kw, ohw = s->oh * s->ow;
    const float *c = x;  /* (KDIM, OH*OW) */
    if (!conv_is_pointwise(s)) {
        conv_im2col(cols, x, s);
        c = cols;
    }
    /* y (OC, OHW) = w (OC, KDIM) c (KDIM, OHW), then + b while y is still in cache (filling y with b
     * first, for the GEMM to add to, took its cache misses in a scalar loop: 4% of a sampling step) */
    df_gemm(conv_bf16(s), 0, 0, s->oc, ohw, kdim, 1.0f, w, kdim, c, ohw, 0.0f, y, ohw, cols + conv_cols_floats(s));
    if (b)
        for (int o = 0; o < s->oc; o++) {
            float *restrict yo = y + (size_t)o * ohw;
            const float bo = b[o];
            for (int p = 0; p < ohw; p++) yo[p] += bo;
        }
}

/* The calling thread's im2col buffer: each thread owns per_thread floats of the scratch. */
float *thread_cols(float *scratch, size_t per_thread) {
#ifdef _OPENMP
    return scratch + (size_t)omp_get_thread_num() * per_thread;
#else
    (void)per_thread;
    return scratch;
#endif
}

/* ---------------------------------------------------------------- batched (small outputs) */
static void conv_bias_backward(float *db, const float *dout, const df_conv_shape *s);
/* Scratch: cols (KDIM, NB) | gathered (OC, NB) | GEMM workspace; NB = N*OH*OW, image n's columns
 * at n*OH*OW. */

/* cols = the columns of every image, side by side. */
static void conv_batched_im2col(float *cols, const float *inp, const df_conv_shape *s) {
    const size_t nb = conv_batched_cols(s), ohw = (size_t)s->oh * s->ow, in_img = (size_t)s->ic * s->h * s->w;
#pragma omp parallel for schedule(static) num_threads(s->threads)
    for (int n = 0; n < s->n; n++) conv_im2col_ld(cols + n * ohw, nb, inp + n * in_img, s);
}

static void conv_forward_batched(float *out, const float *inp, const float *w, const float *b, const df_conv_shape *s,
                                 float *scratch) {
    const int kdim = s->ic * s->kh * s->kw, nb = (int)conv_batched_cols(s), ohw = s->oh * s->ow;
    float *cols = scratch, *y = cols + (size_t)kdim * nb, *ws = y + (size_t)s->oc * nb;
    conv_batched_im2col(cols, inp, s);
    /* y (OC, NB) = w (OC, KDIM) cols (KDIM, NB), threaded over blocks of y */
    df_gemm(conv_bf16(s), 0, 0, s->oc, nb, kdim, 1.0f, w, kdim, cols, nb, 0.0f, y, nb, ws);
#pragma omp parallel for schedule(static) num_threads(s->threads)
    for (int n = 0; n < s->n; n++)
        for (int o = 0; o < s->oc; o++) {
            float *dst = out + ((size_t)n * s->oc + o) * ohw;
            const float *src = y + (size_t)o * nb + (size_t)n * ohw, bias = b ? b[o] : 0.0f;
            for (int p = 0; p < ohw; p++) dst[p] = src[p] + bias;
        }
}

static void conv_backward_batched(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                                  const float *w, const df_conv_shape *s, float *scratch) {
    const int kdim = s->ic * s->kh * s->kw, nb = (int)conv_batched_cols(s), ohw = s->oh * s->ow, bf = conv_bf16(s);
    const size_t in_img = (size_t)s->ic * s->h * s->w;
    float *cols = scratch, *g = cols + (size_t)kdim * nb, *ws = g + (size_t)s->oc * nb;
    if (db) conv_bias_backward(db, dout, s);
    /* g (OC, NB) = dout gathered */
#pragma omp parallel for schedule(static) num_threads(s->threads)
    for (int o = 0; o < s->oc; o++)
        for (int n = 0; n < s->n; n++)
            memcpy(g + (size_t)o * nb + (size_t)n * ohw, dout + ((size_t)n * s->oc + o) * ohw, sizeof(float) * ohw);
    if (dw) {
        /* dw (OC, KDIM) += g (OC, NB) cols^T: each element summed by one thread in a fixed order */
        conv_batched_im2col(cols, inp, s);
        df_gemm(bf, 0, 1, s->oc, kdim, nb, 1.0f, g, nb, cols, nb, 1.0f, dw, kdim, ws);
    }
    if (dinp) {
        /* dcols (KDIM, NB) = w^T (KDIM, OC) g (OC, NB), then scattered back image by image */
        df_gemm(bf, 1, 0, kdim, nb, s->oc, 1.0f, w, kdim, g, nb, 0.0f, cols, nb, ws);
#pragma omp parallel for schedule(static) num_threads(s->threads)
        for (int n = 0; n < s->n; n++) {
            if (s->dinp_set) memset(dinp + n * in_img, 0, sizeof(float) * in_img);
            conv_col2im_add_ld(dinp + n * in_img, cols + (size_t)n * ohw, nb, s);
        }
    }
}

int df_conv2d_fuses(const df_conv_shape *s) {
    return conv_lanes_fwd(s) || conv_wino(s) || (!conv_batched(s) && conv_direct_fwd(s));
}

void df_conv2d_forward_fused(float *out, const float *inp, const float *w, const float *b, const df_conv_fusion *f,
                             const df_conv_shape *s, float *scratch) {
    const double t0 = df_ops_prof_begin();
    ASSERT(df_conv2d_fuses(s));
    ASSERT(!f->residual || f->residual != out);
    ASSERT(!f->norm_mean || (f->norm_groups > 0 && s->ic % f->norm_groups == 0));
    if (conv_lanes_fwd(s))
        conv_forward_lanes(out, inp, w, b, f, s, scratch);
    else if (conv_wino(s))
        conv_forward_wino(out, inp, w, b, f, s, scratch);
    else
        conv_forward_direct(out, inp, w, b, f, s, scratch);
    df_ops_prof_end(t0, "conv%dx%d s%d fused fwd%s %d->%d %dx%d", s->kh, s->kw, s->stride, conv_bf16(s) ? " bf16" : "",
                    s->ic, s->oc, s->h, s->w);
}

void df_conv2d_forward(float *out, const float *inp, const float *w, const float *b, const df_conv_shape *s,
                       float *scratch) {
    const double t0 = df_ops_prof_begin();
    const int nt = conv_threads(s);
    const size_t per_thread = conv_thread_floats(s);
    if (conv_lanes_fwd(s)) {
        conv_forward_lanes(out, inp, w, b, NULL, s, scratch);
        conv_prof_end(t0, "fwd", s);
        return;
    }
    if (conv_wino(s)) {
        conv_forward_wino(out, inp, w, b, NULL, s, scratch);
        conv_prof_end(t0, "fwd", s);
        return;
    }
    if (conv_batched(s)) {
        const int g = conv_batched_group(s);
        for (int n0 = 0; n0 < s->n; n0 += g) {
            df_conv_shape t = *s;
            t.n = s->n - n0 < g ? s->n - n0 : g;
            conv_forward_batched(out + (size_t)n0 * s->oc * s->oh * s->ow, inp + (size_t)n0 * s->ic * s->h * s->w, w,
                                 b, &t, scratch);
        }
        conv_prof_end(t0, "fwd", s);
        return;
    }
    if (conv_direct_fwd(s) || conv_direct_s2(s)) {
        conv_forward_direct(out, inp, w, b, NULL, s, scratch);
        conv_prof_end(t0, "fwd", s);
        return;
    }
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *cols = thread_cols(scratch, per_thread);
#pragma omp for schedule(dynamic)
        for (int n = 0; n < s->n; n++)
            conv_forward_image(out + (size_t)n * s->oc * s->oh * s->ow, inp + (size_t)n * s->ic * s->h * s->w, w, b,
                               s, cols);
    }
    conv_prof_end(t0, "fwd", s);
}

/* db (OC) += sum over images and pixels of dout (N,OC,OH*OW). */
static void conv_bias_backward(float *db, const float *dout, const df_conv_shape *s) {
    const size_t ohw = (size_t)s->oh * s->ow;
    double acc[s->oc];
    for (int o = 0; o < s->oc; o++) acc[o] = 0.0;
    /* Each thread a fixed range of channels, images outer: it reads its block of each image in
     * memory order (channel outer, image inner jumped a whole image per plane, and the loads
     * waited on memory). Each channel's sum still adds the images in order: the same bits. */
#pragma omp parallel if ((size_t)s->n * s->oc * ohw > CONV_OMP_MIN_FLOATS)
    {
        int o0 = 0, o1 = s->oc;
#ifdef _OPENMP
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        o0 = s->oc * t / nt;
        o1 = s->oc * (t + 1) / nt;
#endif
        for (int n = 0; n < s->n; n++)
            for (int o = o0; o < o1; o++) {
                const float *g = dout + ((size_t)n * s->oc + o) * ohw;
                double sum = 0.0;
                /* partial sums in vector lanes (a fixed order for a build): one chain of double
                 * adds was latency-bound, 4.5% of a training step */
#pragma omp simd reduction(+ : sum)
                for (size_t p = 0; p < ohw; p++) sum += g[p];
                acc[o] += sum;
            }
    }
    for (int o = 0; o < s->oc; o++) db[o] += (float)acc[o];
}

/* dw_part (OC, KDIM) = g (OC, OHW) cols(x)^T + beta dw_part for one image, cols in the thread's
 * buffer (beta 0: the slice's first image writes the partial, no zeroing first). */
static void conv_dw_image(float *dw_part, const float *g, const float *x, const df_conv_shape *s, float *cols,
                          float beta) {
    const int kdim = s->ic * s->kh * s->kw, ohw = s->oh * s->ow;
    const float *c = x;
    if (!conv_is_pointwise(s)) {
        conv_im2col(cols, x, s);
        c = cols;
    }
    df_gemm(conv_bf16(s), 0, 1, s->oc, kdim, ohw, 1.0f, g, ohw, c, ohw, beta, dw_part, kdim,
            cols + conv_cols_floats(s));
}

/* dx (IC,H,W) += the adjoint of the conv applied to g (OC,OH,OW) for one image. wt is the flipped,
 * transposed weight (IC, OC*KH*KW) when the conv has a stride of 1 (t its transposed shape). */
static void conv_dx_image(float *dx, const float *g, const float *w, const float *wt, const df_conv_shape *s,
                          const df_conv_shape *t, float *cols) {
    const int kdim = s->ic * s->kh * s->kw, ohw = s->oh * s->ow, hw = s->h * s->w;
    float *ws = cols + conv_cols_floats(s);
    const int bf = conv_bf16(s);
    const float beta = s->dinp_set ? 0.0f : 1.0f;
    if (conv_is_pointwise(s)) {
        /* dx (IC, HW) (+)= w^T (IC, OC) g (OC, HW) */
        df_gemm(bf, 1, 0, kdim, ohw, s->oc, 1.0f, w, kdim, g, ohw, beta, dx, ohw, ws);
    } else if (wt) {
        /* dx (IC, HW) (+)= wt (IC, OC*KH*KW) cols(g) (OC*KH*KW, HW) */
        const int tdim = s->oc * s->kh * s->kw;
        conv_im2col(cols, g, t);
        df_gemm(bf, 0, 0, s->ic, hw, tdim, 1.0f, wt, tdim, cols, hw, beta, dx, hw, ws);
    } else {
        /* dcols (KDIM, OHW) = w^T (KDIM, OC) g (OC, OHW), scattered back by col2im */
        df_gemm(bf, 1, 0, kdim, ohw, s->oc, 1.0f, w, kdim, g, ohw, 0.0f, cols, ohw, ws);
        if (s->dinp_set) memset(dx, 0, sizeof(float) * (size_t)s->ic * hw);
        conv_col2im_add(dx, cols, s);
    }
}

void df_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                        const df_conv_shape *s, float *scratch) {
    const double t0 = df_ops_prof_begin();
    if (dinp && conv_lanes_dx(s)) {
        /* dX first, on the lanes kernel (the conv of dout with the flipped weights); then dW and db
         * below, as if dX were not wanted (they reuse the scratch) */
        float *wt = conv_lanes_wpack(s, scratch);
        df_conv3x3_pack_weights(wt, w, s->ic, s->oc, 1, conv_bf16(s));
        conv_lanes_run(dinp, dout, wt, NULL, NULL, s, s->oc, s->ic, !s->dinp_set, scratch);
        dinp = NULL;
    }
    /* Winograd: dX (the conv of dout with the flipped weights), then dW, each through the whole
     * scratch; what they leave takes the paths below */
    if (dinp && conv_wino(s)) {
        df_wino_plan pf, px, pd;
        conv_wino_plans(s, &pf, &px, &pd);
        conv_wino_run(dinp, dout, w, 1, NULL, NULL, s, &px, !s->dinp_set, scratch);
        dinp = NULL;
    }
    /* dW by Winograd or on the lanes kernel; db with it when nothing else is left */
    const int dw_wino = dw && conv_wino_dw(s), dw_lanes = dw && !dw_wino && conv_lanes_dw(s);
    if (dw_wino) conv_dw_wino(dw, dout, inp, s, scratch);
    if (dw_lanes) conv_dw_lanes(dw, dout, inp, s, scratch);
    if (dw_wino || dw_lanes) {
        dw = NULL;
        if (!dinp && db) {
            conv_bias_backward(db, dout, s);
            db = NULL;
        }
    }
    if (!dinp && !dw && !db) {
        conv_prof_end(t0, "bwd", s);
        return;
    }
    if (conv_batched(s)) {
        const int g = conv_batched_group(s);
        for (int n0 = 0; n0 < s->n; n0 += g) {
            df_conv_shape t = *s;
            t.n = s->n - n0 < g ? s->n - n0 : g;
            const size_t in_off = (size_t)n0 * s->ic * s->h * s->w, out_off = (size_t)n0 * s->oc * s->oh * s->ow;
            conv_backward_batched(dinp ? dinp + in_off : NULL, dw, db, dout + out_off, inp + in_off, w, &t, scratch);
        }
        conv_prof_end(t0, "bwd", s);
        return;
    }
    const int nt = conv_threads(s), chunks = conv_dw_chunks(s);
    const size_t per_thread = conv_thread_floats(s), wsize = conv_wsize(s), w16 = (wsize + 15) & ~(size_t)15;
    const size_t in_img = (size_t)s->ic * s->h * s->w, out_img = (size_t)s->oc * s->oh * s->ow;
    float *wt = scratch + per_thread * (size_t)nt, *parts = wt + conv_wblock_floats(s);
    const int direct = dinp && conv_direct_dx(s), bf = conv_bf16(s);
    const int flip = dinp && !direct && !conv_is_pointwise(s) && conv_dx_as_conv(s);
    df_conv_shape t;
    if (flip) conv_dx_shape(&t, s);
    if (direct) df_conv3x3_pack_weights(wt, w, s->ic, s->oc, 1, bf);
    if (db) conv_bias_backward(db, dout, s);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *cols = thread_cols(scratch, per_thread);
        if (flip) {
            /* wt[ic][oc][ky][kx] = w[oc][ic][KH-1-ky][KW-1-kx] */
            const int kk = s->kh * s->kw;
#pragma omp for schedule(static)
            for (int ic = 0; ic < s->ic; ic++)
                for (int oc = 0; oc < s->oc; oc++)
                    for (int k = 0; k < kk; k++)
                        wt[((size_t)ic * s->oc + oc) * kk + k] = w[((size_t)oc * s->ic + ic) * kk + (kk - 1 - k)];
        }
        if (dw) {
            const int dw_direct = conv_direct_dw(s);
            const size_t gimg = conv_dw_gimg(s, bf), ximg = conv_dw_ximg(s, bf);
#pragma omp for schedule(dynamic)
            for (int c = 0; c < chunks; c++) {
                float *part = parts + (size_t)c * w16;
                const int n0 = c * s->n / chunks, n1 = (c + 1) * s->n / chunks;
                if (dw_direct) {
                    /* the slice's dout and inputs, padded, then one pass of the kernel over them */
                    float *gpad = cols, *xpad = cols + (size_t)(n1 - n0) * gimg;
                    for (int n = n0; n < n1; n++) {
                        df_conv3x3_pad_grad(gpad + (n - n0) * gimg, dout + n * out_img, s->oc, s->oh, s->ow, bf);
                        df_conv3x3_pad_dw_input(xpad + (n - n0) * ximg, inp + n * in_img, s->ic, s->h, s->w, bf);
                    }
                    df_conv3x3_dw(part, gpad, xpad, n1 - n0, s->oc, s->ic, s->h, s->w, bf, 1); /* part = */
                    continue;
                }
                for (int n = n0; n < n1; n++) /* the first image writes the partial, the rest add */
                    conv_dw_image(part, dout + n * out_img, inp + n * in_img, s, cols, n == n0 ? 0.0f : 1.0f);
            }
            /* partials added in chunk order, each thread a slice of the weights */
#pragma omp for schedule(static)
            for (size_t i = 0; i < wsize; i++) {
                float acc = parts[i];
                for (int c = 1; c < chunks; c++) acc += parts[(size_t)c * w16 + i];
                dw[i] += acc;
            }
        }
        if (direct) {
            /* dX (IC,H,W) += the direct conv of dout with the flipped, transposed weights */
#pragma omp for schedule(dynamic)
            for (int n = 0; n < s->n; n++) {
                df_conv3x3_pad_image(cols, dout + n * out_img, s->oc, s->oh, s->ow, bf);
                df_conv3x3_image(dinp + n * in_img, cols, wt, NULL, NULL, NULL, s->ic, s->oc, s->h, s->w, !s->dinp_set, bf);
            }
        } else if (dinp) {
#pragma omp for schedule(dynamic)
            for (int n = 0; n < s->n; n++)
                conv_dx_image(dinp + n * in_img, dout + n * out_img, w, flip ? wt : NULL, s, &t, cols);
        }
    }
    conv_prof_end(t0, "bwd", s);
}
