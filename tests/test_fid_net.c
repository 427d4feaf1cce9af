/* test_fid_net.c: the "fmnist" feature network of the FID (src/metrics/fmnist_net.c) against PyTorch.
 *
 * tests/fixtures/fid_fmnist_ref.safetensors (tools/train_fid_features.py) holds eight inputs (six
 * Fashion-MNIST test images, uniform noise, an all -1 image) with the features and logits that the
 * PyTorch network computes on them in float64 from the shipped float32 weights
 * (models/fid-fmnist.safetensors), and the classes it predicts for the first 1000 test images.
 * We run the C network in float32 (in chunks of 3, so that the chunking is exercised) and compare:
 * features and logits within 1e-4 of the largest reference value (float32 rounding through sums of
 * up to 3136 terms: ~1e-6 measured), the same predicted classes on all 1000 images and at least 88%
 * of them right (where Debian's dataset is installed), and the errors a user can cause. */
#include "check.h"
#include "safetensors.h"
#include <math.h>
#include <string.h>

#define MODEL "../models/fid-fmnist.safetensors"
#define FIXTURE "fixtures/fid_fmnist_ref.safetensors"
#define TOL 1e-4

static float *get(const df_st_file *f, const char *name, int ndim, const int64_t *shape) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    float *p = malloc(sizeof(float) * n);
    df_status st = df_st_get_f32(f, name, ndim, shape, p);
    CHECK(st == DF_OK, "%s", df_last_error());
    return p;
}

/* max |a - b| / max |b| over n values. */
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d;
        mr = fmax(mr, fabs((double)b[i]));
    }
    return md / mr;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int k = 1; k < n; k++)
        if (v[k] > v[best]) best = k;
    return best;
}

static void test_fixture(void) {
    df_st_file f;
    df_status st = df_st_read(FIXTURE, &f);
    CHECK(st == DF_OK, "%s", df_last_error());
    if (st != DF_OK) return;
    const int64_t xs[4] = {8, 1, 28, 28}, fs[2] = {8, 128}, ls[2] = {8, 10};
    float *x = get(&f, "x", 4, xs), *fref = get(&f, "features", 2, fs), *lref = get(&f, "logits", 2, ls);
    float feats[8 * 128], logits[8 * 10];
    df_featnet *net;
    st = df_featnet_load(DF_FEATNET_FMNIST, MODEL, 3, &net);
    CHECK(st == DF_OK, "%s", df_last_error());
    if (st == DF_OK) {
        const df_featnet_info *info = df_featnet_get_info(net);
        CHECK(info->dim == 128 && info->n_classes == 10 && info->channels == 1 && info->height == 28);
        CHECK(strstr(info->desc, "Fashion-MNIST CNN, 128-d features, test accuracy 0.9") != NULL, "%s", info->desc);
        CHECK(df_featnet_forward(net, 8, 1, 28, 28, x, feats, logits) == DF_OK, "%s", df_last_error());
        double ef = rel_err(feats, fref, 8 * 128), el = rel_err(logits, lref, 8 * 10);
        printf("features: max error %.3g of the largest; logits %.3g\n", ef, el);
        CHECK(ef <= TOL, "features differ from PyTorch's by %g", ef);
        CHECK(el <= TOL, "logits differ from PyTorch's by %g", el);
        for (int i = 0; i < 8; i++) CHECK(argmax(logits + i * 10, 10) == argmax(lref + i * 10, 10), "image %d", i);
        /* a features-only call gives the same features */
        float again[8 * 128];
        CHECK(df_featnet_forward(net, 8, 1, 28, 28, x, again, NULL) == DF_OK);
        CHECK(memcmp(again, feats, sizeof feats) == 0, "features without logits differ");
        EXPECT_STATUS(df_featnet_forward(net, 1, 1, 32, 32, x, feats, NULL), DF_ERR_SHAPE, "takes 1x28x28",
                      "not 1x32x32");
        EXPECT_STATUS(df_featnet_check_input(net, 3, 28, 28), DF_ERR_SHAPE, "not 3x28x28", NULL);
        df_featnet_free(net);
    }
    free(x);
    free(fref);
    free(lref);
    df_st_free(&f);
}

/* The first 1000 test images: PyTorch's predicted classes, and the accuracy. */
static void test_predictions(void) {
    df_dataset ds;
    if (df_dataset_load("fashion-mnist:test", 1, 28, &ds) != DF_OK) {
        printf("skipped the 1000 test images: %s\n", df_last_error());
        return;
    }
    enum { N = 1000 };
    df_st_file f;
    CHECK(df_st_read(FIXTURE, &f) == DF_OK, "%s", df_last_error());
    const int64_t ps[1] = {N};
    float *pred = get(&f, "pred_1000", 1, ps), *x = malloc(sizeof(float) * N * 784);
    float *feats = malloc(sizeof(float) * N * 128), *logits = malloc(sizeof(float) * N * 10);
    int idx[N];
    for (int i = 0; i < N; i++) idx[i] = i;
    df_dataset_batch(&ds, idx, NULL, N, x);
    df_featnet *net;
    CHECK(df_featnet_load(DF_FEATNET_FMNIST, MODEL, 256, &net) == DF_OK, "%s", df_last_error());
    CHECK(df_featnet_forward(net, N, 1, 28, 28, x, feats, logits) == DF_OK, "%s", df_last_error());
    int agree = 0, right = 0;
    for (int i = 0; i < N; i++) {
        int k = argmax(logits + i * 10, 10);
        agree += k == (int)pred[i];
        right += k == ds.labels[i];
    }
    printf("1000 test images: %d agree with PyTorch, %d right\n", agree, right);
    CHECK(agree == N, "%d of %d predictions agree with PyTorch's", agree, N);
    CHECK(right >= 880, "accuracy %d / 1000", right);
    df_featnet_free(net);
    free(pred);
    free(x);
    free(feats);
    free(logits);
    df_st_free(&f);
    df_dataset_free(&ds);
}

static void test_errors(void) {
    df_featnet *net = (df_featnet *)1;
    df_featnet_kind k;
    EXPECT_STATUS(df_featnet_from_name("vgg", &k), DF_ERR_ARG, "unknown feature network 'vgg'", "fmnist, inception");
    CHECK(df_featnet_from_name("inception", &k) == DF_OK && k == DF_FEATNET_INCEPTION);
    EXPECT_STATUS(df_featnet_load(DF_FEATNET_FMNIST, "fixtures/no-such.safetensors", 4, &net), DF_ERR_IO,
                  "no-such.safetensors", NULL);
    CHECK(net == NULL);
    /* a safetensors file of another network: its first foreign tensor is named */
    EXPECT_STATUS(df_featnet_load(DF_FEATNET_FMNIST, "fixtures/unet_tiny_noattn.safetensors", 4, &net),
                  DF_ERR_FORMAT, "is not part of this feature network", NULL);
    EXPECT_STATUS(df_featnet_load(DF_FEATNET_INCEPTION, MODEL, 4, &net), DF_ERR_FORMAT, "holds the 'fmnist'",
                  "not 'inception'");
    EXPECT_STATUS(df_featnet_load(DF_FEATNET_FMNIST, MODEL, 0, &net), DF_ERR_ARG, "at least 1", NULL);
}

int main(void) {
    check_set_threads(2);
    test_fixture();
    test_predictions();
    test_errors();
    return check_exit_code("test_fid_net");
}
