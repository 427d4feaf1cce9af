/* fmnist_net.c: the "fmnist" feature network of the FID, the C twin of tools/train_fid_features.py
 * (which trains it and documents it; the two must stay in step):
 *   x (N,1,28,28) in [-1,1]
 *   conv1 3x3 1->32 pad 1, ReLU, max-pool 2   -> (N,32,14,14)
 *   conv2 3x3 32->64 pad 1, ReLU, max-pool 2  -> (N,64,7,7)
 *   flatten, fc1 3136->128, ReLU              -> the 128 features
 *   fc2 128->10                               -> the class logits
 * The convolutions and linears are the project's ops (fp32); ReLU and pooling are one loop here. */
#include "featnet.h"
#include "ops.h"
#include <math.h>
#include <string.h>

#define C1 32
#define C2 64
#define FEAT 128
#define CLASSES 10
#define FLAT (C2 * 7 * 7)

typedef struct {
    float *conv1_w, *conv1_b, *conv2_w, *conv2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
    float *weights;             /* the one block behind the eight tensors */
    float *a1, *p1, *a2, *p2;   /* activations for max_batch images */
    float *scratch;             /* the convolutions' workspace, grown on demand */
    size_t scratch_cap;
} fmnist_net;

static const char *const TENSORS[] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                      "fc1.weight",   "fc1.bias",   "fc2.weight",   "fc2.bias"};
static const int64_t SHAPES[8][4] = {{C1, 1, 3, 3}, {C1}, {C2, C1, 3, 3}, {C2}, {FEAT, FLAT}, {FEAT},
                                     {CLASSES, FEAT}, {CLASSES}};
static const int NDIM[8] = {4, 1, 4, 1, 2, 1, 2, 1};

static void fmnist_free(void *impl) {
    fmnist_net *m = impl;
    df_free(m->weights);
    df_free(m->a1);
    df_free(m->scratch);
    free(m);
}

static size_t numel(int k) {
    size_t n = 1;
    for (int d = 0; d < NDIM[k]; d++) n *= (size_t)SHAPES[k][d];
    return n;
}

static df_status load_weights(const df_st_file *f, fmnist_net *m) {
    size_t total = 0;
    for (int k = 0; k < 8; k++) total += numel(k);
    if (!(m->weights = df_alloc(sizeof(float) * total, "fmnist feature network"))) return DF_ERR_NOMEM;
    float **slot[8] = {&m->conv1_w, &m->conv1_b, &m->conv2_w, &m->conv2_b, &m->fc1_w, &m->fc1_b, &m->fc2_w, &m->fc2_b};
    float *p = m->weights;
    for (int k = 0; k < 8; k++) {
        df_status st = df_st_get_f32(f, TENSORS[k], NDIM[k], SHAPES[k], p);
        if (st != DF_OK) return st; /* its message names the file and the tensor */
        *slot[k] = p;
        p += numel(k);
    }
    for (size_t i = 0; i < total; i++)
        if (!isfinite(m->weights[i])) return df_fail(DF_ERR_NAN, "%s: non-finite weights", f->path);
    return DF_OK;
}

/* out (N,C,H/2,W/2) = max-pool 2 of ReLU(inp (N,C,H,W)); ReLU and max commute, so one max with 0. */
static void relu_maxpool2(float *out, const float *inp, int nc, int h, int w) {
    const int oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static)
    for (int p = 0; p < nc; p++) {
        const float *src = inp + (size_t)p * h * w;
        float *dst = out + (size_t)p * oh * ow;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                const float *s = src + (size_t)2 * y * w + 2 * x;
                float v = 0.0f;
                v = s[0] > v ? s[0] : v;
                v = s[1] > v ? s[1] : v;
                v = s[w] > v ? s[w] : v;
                v = s[w + 1] > v ? s[w + 1] : v;
                dst[(size_t)y * ow + x] = v;
            }
    }
}

/* One 3x3 pad-1 convolution of the network on the project's op. */
static df_status conv3x3(fmnist_net *m, float *out, const float *inp, const float *w, const float *b, int n, int ic,
                         int hw, int oc) {
    df_conv_shape s;
    df_conv_shape_init(&s, n, ic, hw, hw, oc, 3, 1, 1, 1, 1, 1);
    df_status st = df_featnet_scratch(&m->scratch, &m->scratch_cap, df_conv2d_scratch_floats(&s));
    if (st == DF_OK) df_conv2d_forward(out, inp, w, b, &s, m->scratch);
    return st;
}

static df_status fmnist_forward(void *impl, int n, int c, int h, int w, const float *x, float *features,
                                float *logits) {
    fmnist_net *m = impl;
    df_status st = conv3x3(m, m->a1, x, m->conv1_w, m->conv1_b, n, 1, 28, C1);
    if (st != DF_OK) return st;
    relu_maxpool2(m->p1, m->a1, n * C1, 28, 28);
    if ((st = conv3x3(m, m->a2, m->p1, m->conv2_w, m->conv2_b, n, C1, 14, C2)) != DF_OK) return st;
    relu_maxpool2(m->p2, m->a2, n * C2, 14, 14);
    df_linear_forward(features, m->p2, m->fc1_w, m->fc1_b, n, FLAT, FEAT, DF_PRECISION_FP32, NULL);
    for (size_t i = 0; i < (size_t)n * FEAT; i++) features[i] = features[i] > 0 ? features[i] : 0.0f;
    if (logits) df_linear_forward(logits, features, m->fc2_w, m->fc2_b, n, FEAT, CLASSES, DF_PRECISION_FP32, NULL);
    return DF_OK;
}

df_status df_fmnist_net_load(const df_st_file *f, df_featnet *net) {
    df_status st = df_featnet_only_tensors(f, TENSORS, 8);
    if (st != DF_OK) return st;
    fmnist_net *m = calloc(1, sizeof *m);
    if (!m) return df_fail(DF_ERR_NOMEM, "out of memory loading %s", f->path);
    net->impl = m;
    net->free_impl = fmnist_free;
    net->forward = fmnist_forward;
    if ((st = load_weights(f, m)) != DF_OK) return st;
    const size_t b = (size_t)net->max_batch;
    const size_t a1 = b * C1 * 28 * 28, p1 = b * C1 * 14 * 14, a2 = b * C2 * 14 * 14, p2 = b * FLAT;
    if (!(m->a1 = df_alloc(sizeof(float) * (a1 + p1 + a2 + p2), "fmnist feature network activations")))
        return DF_ERR_NOMEM;
    m->p1 = m->a1 + a1;
    m->a2 = m->p1 + p1;
    m->p2 = m->a2 + a2;
    df_featnet_info *i = &net->info;
    i->channels = 1;
    i->height = i->width = 28;
    i->dim = FEAT;
    i->n_classes = CLASSES;
    const char *acc = df_st_meta(f, "test_accuracy");
    snprintf(i->desc, sizeof i->desc, "Fashion-MNIST CNN, 128-d features%s%.16s", acc ? ", test accuracy " : "",
             acc ? acc : "");
    return DF_OK;
}
