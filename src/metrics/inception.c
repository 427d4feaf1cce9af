/* inception.c: the "inception" feature network of the FID: Inception-v3's 2048-d pool3 features as
 * pytorch-fid computes them (its InceptionV3 with output block 3 on fid_inception_v3()), from a
 * safetensors file with pytorch-fid's tensor names (tools/convert_pytorch_fid.py).
 *
 * The network, as tools/fid_inception.py writes it in PyTorch (torchvision's Inception3 with
 * pytorch-fid's FIDInceptionA/C/E_1/E_2):
 *   grayscale repeated to 3 channels; bilinear resize to 299x299 (align_corners=False); the input is
 *   already in [-1, 1], which pytorch-fid reaches by 2x - 1 after its resize (linear: same thing)
 *   stem: 1a 3x3/2, 2a 3x3, 2b 3x3 pad 1, max 3x3/2, 3b 1x1, 4a 3x3, max 3x3/2       -> 192 x 35 x 35
 *   Mixed_5b..5d (A: the avg pools with count_include_pad=False), Mixed_6a (B)      -> 768 x 17 x 17
 *   Mixed_6b..6e (C, 1x7 and 7x1 convs), Mixed_7a (D)                               -> 1280 x 8 x 8
 *   Mixed_7b (E_1), Mixed_7c (E_2: a stride-1 3x3 max pool in its pool branch)     -> 2048 x 8 x 8
 *   global average pool -> 2048 features.
 * Every conv is a BasicConv2d: conv without bias, BatchNorm (eps 1e-3, running statistics), ReLU;
 * the norm is folded into the conv at load (w' = w g / sqrt(v + eps), b' = beta - mean g / sqrt(v + eps),
 * in double). The convs run on the project's conv op (1x7 and 7x1 through its rectangular kernels);
 * pools, resize and concatenation are plain loops here. Activations are allocated block by block. */
#include "featnet.h"
#include "ops.h"
#include <math.h>
#include <string.h>

#define N_CONV 94
#define BN_EPS 1e-3
#define SIZE 299
#define FEAT 2048

typedef struct {
    char prefix[48];             /* "Mixed_6b.branch7x7_2" */
    int ic, oc, kh, kw, stride, ph, pw;
    float *w, *b;                /* folded weights (oc, ic, kh, kw) and bias (oc) */
} conv_layer;

typedef struct {
    conv_layer conv[N_CONV];
    float *weights;              /* the one block behind every w and b */
    float *scratch;              /* the conv op's workspace, grown on demand */
    size_t scratch_cap;
} inception_net;

typedef struct {
    float *d;
    int n, c, h, w;
} tensor;

/* ---------------------------------------------------------------- the layer table */

typedef struct {
    conv_layer *out;
    int n;
} specs;

static void add(specs *s, const char *block, const char *branch, int ic, int oc, int kh, int kw, int stride, int ph,
                int pw) {
    ASSERT(s->n < N_CONV);
    conv_layer *l = &s->out[s->n++];
    if (branch) snprintf(l->prefix, sizeof l->prefix, "%s.%s", block, branch);
    else snprintf(l->prefix, sizeof l->prefix, "%s", block);
    l->ic = ic, l->oc = oc, l->kh = kh, l->kw = kw, l->stride = stride, l->ph = ph, l->pw = pw;
}

static void specs_a(specs *s, const char *b, int in, int pool_features) {
    add(s, b, "branch1x1", in, 64, 1, 1, 1, 0, 0);
    add(s, b, "branch5x5_1", in, 48, 1, 1, 1, 0, 0);
    add(s, b, "branch5x5_2", 48, 64, 5, 5, 1, 2, 2);
    add(s, b, "branch3x3dbl_1", in, 64, 1, 1, 1, 0, 0);
    add(s, b, "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    add(s, b, "branch3x3dbl_3", 96, 96, 3, 3, 1, 1, 1);
    add(s, b, "branch_pool", in, pool_features, 1, 1, 1, 0, 0);
}

static void specs_c(specs *s, const char *b, int c7) {
    add(s, b, "branch1x1", 768, 192, 1, 1, 1, 0, 0);
    add(s, b, "branch7x7_1", 768, c7, 1, 1, 1, 0, 0);
    add(s, b, "branch7x7_2", c7, c7, 1, 7, 1, 0, 3);
    add(s, b, "branch7x7_3", c7, 192, 7, 1, 1, 3, 0);
    add(s, b, "branch7x7dbl_1", 768, c7, 1, 1, 1, 0, 0);
    add(s, b, "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0);
    add(s, b, "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3);
    add(s, b, "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0);
    add(s, b, "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3);
    add(s, b, "branch_pool", 768, 192, 1, 1, 1, 0, 0);
}

static void specs_e(specs *s, const char *b, int in) {
    add(s, b, "branch1x1", in, 320, 1, 1, 1, 0, 0);
    add(s, b, "branch3x3_1", in, 384, 1, 1, 1, 0, 0);
    add(s, b, "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1);
    add(s, b, "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0);
    add(s, b, "branch3x3dbl_1", in, 448, 1, 1, 1, 0, 0);
    add(s, b, "branch3x3dbl_2", 448, 384, 3, 3, 1, 1, 1);
    add(s, b, "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1);
    add(s, b, "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0);
    add(s, b, "branch_pool", in, 192, 1, 1, 1, 0, 0);
}

/* Every conv in the order the forward uses them (the blocks below index into this). */
static void build_specs(conv_layer *out) {
    specs s = {out, 0};
    add(&s, "Conv2d_1a_3x3", NULL, 3, 32, 3, 3, 2, 0, 0);
    add(&s, "Conv2d_2a_3x3", NULL, 32, 32, 3, 3, 1, 0, 0);
    add(&s, "Conv2d_2b_3x3", NULL, 32, 64, 3, 3, 1, 1, 1);
    add(&s, "Conv2d_3b_1x1", NULL, 64, 80, 1, 1, 1, 0, 0);
    add(&s, "Conv2d_4a_3x3", NULL, 80, 192, 3, 3, 1, 0, 0);
    specs_a(&s, "Mixed_5b", 192, 32);
    specs_a(&s, "Mixed_5c", 256, 64);
    specs_a(&s, "Mixed_5d", 288, 64);
    add(&s, "Mixed_6a", "branch3x3", 288, 384, 3, 3, 2, 0, 0);
    add(&s, "Mixed_6a", "branch3x3dbl_1", 288, 64, 1, 1, 1, 0, 0);
    add(&s, "Mixed_6a", "branch3x3dbl_2", 64, 96, 3, 3, 1, 1, 1);
    add(&s, "Mixed_6a", "branch3x3dbl_3", 96, 96, 3, 3, 2, 0, 0);
    specs_c(&s, "Mixed_6b", 128);
    specs_c(&s, "Mixed_6c", 160);
    specs_c(&s, "Mixed_6d", 160);
    specs_c(&s, "Mixed_6e", 192);
    add(&s, "Mixed_7a", "branch3x3_1", 768, 192, 1, 1, 1, 0, 0);
    add(&s, "Mixed_7a", "branch3x3_2", 192, 320, 3, 3, 2, 0, 0);
    add(&s, "Mixed_7a", "branch7x7x3_1", 768, 192, 1, 1, 1, 0, 0);
    add(&s, "Mixed_7a", "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3);
    add(&s, "Mixed_7a", "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0);
    add(&s, "Mixed_7a", "branch7x7x3_4", 192, 192, 3, 3, 2, 0, 0);
    specs_e(&s, "Mixed_7b", 1280);
    specs_e(&s, "Mixed_7c", 2048);
    ASSERT(s.n == N_CONV);
}

int df_inception_conv_count(void) { return N_CONV; }

void df_inception_conv_info(int i, char *prefix, size_t cap, int64_t shape[4]) {
    conv_layer all[N_CONV];
    build_specs(all);
    ASSERT(i >= 0 && i < N_CONV);
    snprintf(prefix, cap, "%s", all[i].prefix);
    shape[0] = all[i].oc, shape[1] = all[i].ic, shape[2] = all[i].kh, shape[3] = all[i].kw;
}

/* ---------------------------------------------------------------- loading */

static const char *const BN_PARTS[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};

/* Reads conv l's weight and batch norm from f and folds the norm in (w, b already point into the block). */
static df_status load_conv(const df_st_file *f, conv_layer *l, float *bn) {
    char name[96];
    const int64_t wshape[4] = {l->oc, l->ic, l->kh, l->kw}, bshape[1] = {l->oc};
    snprintf(name, sizeof name, "%s.conv.weight", l->prefix);
    df_status st = df_st_get_f32(f, name, 4, wshape, l->w);
    for (int k = 0; k < 4 && st == DF_OK; k++) {
        snprintf(name, sizeof name, "%s.%s", l->prefix, BN_PARTS[k]);
        st = df_st_get_f32(f, name, 1, bshape, bn + (size_t)k * l->oc);
    }
    if (st != DF_OK) return st;
    const size_t per_oc = (size_t)l->ic * l->kh * l->kw;
    const float *g = bn, *beta = bn + l->oc, *mean = bn + 2 * l->oc, *var = bn + 3 * l->oc;
    for (int o = 0; o < l->oc; o++) {
        double scale = g[o] / sqrt((double)var[o] + BN_EPS);
        for (size_t k = 0; k < per_oc; k++) l->w[o * per_oc + k] = (float)(l->w[o * per_oc + k] * scale);
        l->b[o] = (float)(beta[o] - mean[o] * scale);
        if (!isfinite(scale) || !isfinite(l->b[o]))
            return df_fail(DF_ERR_NAN, "%s: %s has a non-finite batch norm", f->path, l->prefix);
    }
    return DF_OK;
}

/* The 470 tensor names the file must hold, no more (df_featnet_only_tensors). */
static df_status check_names(const df_st_file *f, const conv_layer *conv) {
    enum { PER = 5 };
    char(*buf)[96] = malloc(sizeof *buf * N_CONV * PER);
    const char **names = malloc(sizeof *names * N_CONV * PER);
    df_status st = buf && names ? DF_OK : df_fail(DF_ERR_NOMEM, "out of memory loading %s", f->path);
    for (int i = 0; i < N_CONV && st == DF_OK; i++)
        for (int k = 0; k < PER; k++) {
            snprintf(buf[i * PER + k], sizeof buf[0], "%s.%s", conv[i].prefix, k ? BN_PARTS[k - 1] : "conv.weight");
            names[i * PER + k] = buf[i * PER + k];
        }
    if (st == DF_OK) st = df_featnet_only_tensors(f, names, N_CONV * PER);
    free(buf);
    free((void *)names);
    return st;
}

static void inception_free(void *impl) {
    inception_net *m = impl;
    df_free(m->weights);
    df_free(m->scratch);
    free(m);
}

static df_status inception_forward(void *impl, int n, int c, int h, int w, const float *x, float *features,
                                   float *logits);

df_status df_inception_load(const df_st_file *f, df_featnet *net) {
    inception_net *m = calloc(1, sizeof *m);
    if (!m) return df_fail(DF_ERR_NOMEM, "out of memory loading %s", f->path);
    net->impl = m;
    net->free_impl = inception_free;
    net->forward = inception_forward;
    build_specs(m->conv);
    df_status st = check_names(f, m->conv);
    if (st != DF_OK) return st;
    size_t total = 0, max_oc = 0;
    for (int i = 0; i < N_CONV; i++) {
        const conv_layer *l = &m->conv[i];
        total += (size_t)l->oc * l->ic * l->kh * l->kw + l->oc;
        if ((size_t)l->oc > max_oc) max_oc = l->oc;
    }
    float *bn = malloc(sizeof(float) * 4 * max_oc);
    if (!bn || !(m->weights = df_alloc(sizeof(float) * total, "inception weights"))) {
        free(bn);
        return df_fail(DF_ERR_NOMEM, "out of memory loading %s", f->path);
    }
    float *p = m->weights;
    for (int i = 0; i < N_CONV && st == DF_OK; i++) {
        conv_layer *l = &m->conv[i];
        l->w = p;
        p += (size_t)l->oc * l->ic * l->kh * l->kw;
        l->b = p;
        p += l->oc;
        st = load_conv(f, l, bn);
    }
    free(bn);
    df_featnet_info *i = &net->info;
    i->channels = 3;
    i->height = i->width = 0;
    i->dim = FEAT;
    i->n_classes = 0;
    snprintf(i->desc, sizeof i->desc, "Inception-v3 pool3 as pytorch-fid, 2048-d features, input resized to 299x299");
    return st;
}

/* ---------------------------------------------------------------- layers */

static void tfree(tensor *t) {
    df_free(t->d);
    t->d = NULL;
}

static df_status talloc(tensor *t, int n, int c, int h, int w) {
    t->n = n, t->c = c, t->h = h, t->w = w;
    t->d = df_alloc(sizeof(float) * (size_t)n * c * h * w, "inception activations");
    return t->d ? DF_OK : DF_ERR_NOMEM;
}

/* y = ReLU(conv l (x) + b): a BasicConv2d with its norm folded. */
static df_status conv(inception_net *m, int i, const tensor *x, tensor *y) {
    const conv_layer *l = &m->conv[i];
    ASSERT(x->c == l->ic);
    df_conv_shape s;
    /* a rectangular kernel: init takes one size, the op itself reads kh and kw (ops_conv.c does the
     * same for its transposed convs) */
    df_conv_shape_init(&s, x->n, l->ic, x->h, x->w, l->oc, l->kh, l->stride, l->ph, l->pw, l->ph, l->pw);
    s.kw = l->kw;
    s.ow = (x->w + 2 * l->pw - l->kw) / l->stride + 1;
    df_status st = talloc(y, x->n, l->oc, s.oh, s.ow);
    if (st == DF_OK) st = df_featnet_scratch(&m->scratch, &m->scratch_cap, df_conv2d_scratch_floats(&s));
    if (st != DF_OK) return st;
    df_conv2d_forward(y->d, x->d, l->w, l->b, &s, m->scratch);
    const size_t total = (size_t)y->n * y->c * y->h * y->w;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < total; k++) y->d[k] = y->d[k] > 0 ? y->d[k] : 0.0f;
    return DF_OK;
}

/* convs i .. i+count-1 in a row from x. */
static df_status chain(inception_net *m, int i, int count, const tensor *x, tensor *y) {
    tensor cur = {0};
    df_status st = conv(m, i, x, &cur);
    for (int k = 1; k < count && st == DF_OK; k++) {
        tensor next = {0};
        st = conv(m, i + k, &cur, &next);
        tfree(&cur);
        cur = next;
    }
    if (st != DF_OK) tfree(&cur);
    *y = cur;
    return st;
}

typedef enum { POOL_MAX, POOL_AVG } pool_kind;

/* 3x3 pools: max (the padding never wins) or average over the window's positions inside the image
 * (count_include_pad=False). Output floor((h + 2 pad - 3) / stride) + 1 (ceil_mode False). */
static df_status pool3(const tensor *x, pool_kind kind, int stride, int pad, tensor *y) {
    const int oh = (x->h + 2 * pad - 3) / stride + 1, ow = (x->w + 2 * pad - 3) / stride + 1;
    df_status st = talloc(y, x->n, x->c, oh, ow);
    if (st != DF_OK) return st;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < x->n * x->c; p++) {
        const float *src = x->d + (size_t)p * x->h * x->w;
        float *dst = y->d + (size_t)p * oh * ow;
        for (int oy = 0; oy < oh; oy++)
            for (int ox = 0; ox < ow; ox++) {
                int y0 = oy * stride - pad, x0 = ox * stride - pad, cnt = 0;
                float acc = kind == POOL_MAX ? -INFINITY : 0.0f;
                for (int yy = y0 < 0 ? 0 : y0; yy < y0 + 3 && yy < x->h; yy++)
                    for (int xx = x0 < 0 ? 0 : x0; xx < x0 + 3 && xx < x->w; xx++) {
                        float v = src[(size_t)yy * x->w + xx];
                        acc = kind == POOL_MAX ? (v > acc ? v : acc) : acc + v;
                        cnt++;
                    }
                dst[(size_t)oy * ow + ox] = kind == POOL_MAX ? acc : acc / cnt;
            }
    }
    return DF_OK;
}

/* *x = the channel concatenation of parts[0..k) (all freed, as is the old *x), when st is DF_OK. */
static df_status concat(df_status st, tensor *parts, int k, tensor *x) {
    tensor y = {0};
    int c = 0;
    for (int j = 0; j < k; j++) c += parts[j].c;
    if (st == DF_OK) st = talloc(&y, parts[0].n, c, parts[0].h, parts[0].w);
    if (st == DF_OK) {
        const size_t hw = (size_t)y.h * y.w;
        for (int i = 0; i < y.n; i++)
            for (int j = 0, off = 0; j < k; off += parts[j].c, j++)
                memcpy(y.d + ((size_t)i * c + off) * hw, parts[j].d + (size_t)i * parts[j].c * hw,
                       sizeof(float) * parts[j].c * hw);
        tfree(x);
        *x = y;
    }
    for (int j = 0; j < k; j++) tfree(&parts[j]);
    return st;
}

/* ---------------------------------------------------------------- blocks (each replaces *x) */

/* FIDInceptionA (7 convs from i): 1x1; 1x1 5x5; 1x1 3x3 3x3; avg pool 1x1. */
static df_status block_a(inception_net *m, int i, tensor *x) {
    tensor b[4] = {{0}}, p = {0};
    df_status st = chain(m, i, 1, x, &b[0]);
    if (st == DF_OK) st = chain(m, i + 1, 2, x, &b[1]);
    if (st == DF_OK) st = chain(m, i + 3, 3, x, &b[2]);
    if (st == DF_OK) st = pool3(x, POOL_AVG, 1, 1, &p);
    if (st == DF_OK) st = chain(m, i + 6, 1, &p, &b[3]);
    tfree(&p);
    return concat(st, b, 4, x);
}

/* InceptionB (Mixed_6a) and InceptionD (Mixed_7a): two conv branches of n1 and n2 convs, and a
 * stride-2 max pool. */
static df_status block_reduce(inception_net *m, int i, int n1, int n2, tensor *x) {
    tensor b[3] = {{0}};
    df_status st = chain(m, i, n1, x, &b[0]);
    if (st == DF_OK) st = chain(m, i + n1, n2, x, &b[1]);
    if (st == DF_OK) st = pool3(x, POOL_MAX, 2, 0, &b[2]);
    return concat(st, b, 3, x);
}

/* FIDInceptionC (10 convs): 1x1; 1x1 1x7 7x1; 1x1 7x1 1x7 7x1 1x7; avg pool 1x1. */
static df_status block_c(inception_net *m, int i, tensor *x) {
    tensor b[4] = {{0}}, p = {0};
    df_status st = chain(m, i, 1, x, &b[0]);
    if (st == DF_OK) st = chain(m, i + 1, 3, x, &b[1]);
    if (st == DF_OK) st = chain(m, i + 4, 5, x, &b[2]);
    if (st == DF_OK) st = pool3(x, POOL_AVG, 1, 1, &p);
    if (st == DF_OK) st = chain(m, i + 9, 1, &p, &b[3]);
    tfree(&p);
    return concat(st, b, 4, x);
}

/* FIDInceptionE_1 (avg pool) / E_2 (max pool), 9 convs: 1x1; 1x1 then [1x3, 3x1]; 1x1 3x3 then
 * [1x3, 3x1]; pool 1x1. */
static df_status block_e(inception_net *m, int i, pool_kind pool, tensor *x) {
    tensor b[6] = {{0}}, t = {0}, d = {0}, p = {0};
    df_status st = chain(m, i, 1, x, &b[0]);
    if (st == DF_OK) st = chain(m, i + 1, 1, x, &t);
    if (st == DF_OK) st = chain(m, i + 2, 1, &t, &b[1]);
    if (st == DF_OK) st = chain(m, i + 3, 1, &t, &b[2]);
    if (st == DF_OK) st = chain(m, i + 4, 2, x, &d);
    if (st == DF_OK) st = chain(m, i + 6, 1, &d, &b[3]);
    if (st == DF_OK) st = chain(m, i + 7, 1, &d, &b[4]);
    if (st == DF_OK) st = pool3(x, pool, 1, 1, &p);
    if (st == DF_OK) st = chain(m, i + 8, 1, &p, &b[5]);
    tfree(&t);
    tfree(&d);
    tfree(&p);
    return concat(st, b, 6, x);
}

/* ---------------------------------------------------------------- forward */

/* y (n, 3, 299, 299) from x (n, c, h, w), c = 1 or 3: F.interpolate(mode="bilinear",
 * align_corners=False): source coordinate (dst + 0.5) * in / out - 0.5, clamped at 0; grayscale is
 * read three times. */
static void resize_bilinear(const float *x, int n, int c, int h, int w, float *y) {
    int *x0 = malloc(sizeof(int) * 2 * SIZE);
    float *lx = malloc(sizeof(float) * 2 * SIZE);
    ASSERT(x0 && lx);
    int *y0 = x0 + SIZE;
    float *ly = lx + SIZE;
    const float sx = (float)w / SIZE, sy = (float)h / SIZE;
    for (int o = 0; o < SIZE; o++) {
        float u = sx * (o + 0.5f) - 0.5f, v = sy * (o + 0.5f) - 0.5f;
        u = u < 0 ? 0 : u;
        v = v < 0 ? 0 : v;
        x0[o] = (int)u, lx[o] = u - x0[o];
        y0[o] = (int)v, ly[o] = v - y0[o];
    }
#pragma omp parallel for schedule(static)
    for (int p = 0; p < n * 3; p++) {
        const float *src = x + ((size_t)(p / 3) * c + (c == 1 ? 0 : p % 3)) * h * w;
        float *dst = y + (size_t)p * SIZE * SIZE;
        for (int oy = 0; oy < SIZE; oy++) {
            const int r0 = y0[oy], r1 = r0 < h - 1 ? r0 + 1 : r0;
            for (int ox = 0; ox < SIZE; ox++) {
                const int c0 = x0[ox], c1 = c0 < w - 1 ? c0 + 1 : c0;
                const float a = src[(size_t)r0 * w + c0] * (1 - lx[ox]) + src[(size_t)r0 * w + c1] * lx[ox];
                const float b = src[(size_t)r1 * w + c0] * (1 - lx[ox]) + src[(size_t)r1 * w + c1] * lx[ox];
                dst[(size_t)oy * SIZE + ox] = a * (1 - ly[oy]) + b * ly[oy];
            }
        }
    }
    free(x0);
    free(lx);
}

/* The stem: 1a, 2a, 2b, max pool, 3b, 4a, max pool (convs 0..4). */
static df_status stem(inception_net *m, tensor *x) {
    tensor a = {0}, b = {0};
    df_status st = chain(m, 0, 3, x, &a);
    if (st == DF_OK) st = pool3(&a, POOL_MAX, 2, 0, &b);
    tfree(&a);
    if (st == DF_OK) st = chain(m, 3, 2, &b, &a);
    tfree(&b);
    if (st == DF_OK) st = pool3(&a, POOL_MAX, 2, 0, &b);
    tfree(&a);
    tfree(x);
    *x = b;
    return st;
}

static df_status inception_forward(void *impl, int n, int c, int h, int w, const float *x, float *features,
                                   float *logits) {
    inception_net *m = impl;
    (void)logits; /* no classifier: df_featnet_forward refuses logits for this network */
    tensor t = {0};
    df_status st = talloc(&t, n, 3, SIZE, SIZE);
    if (st != DF_OK) return st;
    resize_bilinear(x, n, c, h, w, t.d);
    st = stem(m, &t);
    int i = 5;
    for (int k = 0; k < 3 && st == DF_OK; k++, i += 7) st = block_a(m, i, &t);
    if (st == DF_OK) st = block_reduce(m, i, 1, 3, &t); /* Mixed_6a */
    i += 4;
    for (int k = 0; k < 4 && st == DF_OK; k++, i += 10) st = block_c(m, i, &t);
    if (st == DF_OK) st = block_reduce(m, i, 2, 4, &t); /* Mixed_7a */
    i += 6;
    if (st == DF_OK) st = block_e(m, i, POOL_AVG, &t);
    if (st == DF_OK) st = block_e(m, i + 9, POOL_MAX, &t);
    if (st == DF_OK) {
        ASSERT(t.c == FEAT && i + 18 == N_CONV);
        const int hw = t.h * t.w;
        for (int k = 0; k < n * FEAT; k++) {
            double s = 0;
            for (int p = 0; p < hw; p++) s += t.d[(size_t)k * hw + p];
            features[k] = (float)(s / hw);
        }
    }
    tfree(&t);
    return st;
}
