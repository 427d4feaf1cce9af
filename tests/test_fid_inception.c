/* test_fid_inception.c: the "inception" feature network (src/metrics/inception.c) against PyTorch.
 *
 * The weights are seeded pseudo-random numbers that this test and tools/fid_inception.py both
 * generate (tensor `name`, element e: z = splitmix64(fnv1a64(name) ^ seed ^ e * 0x9E3779B97F4A7C15),
 * u = (z >> 40) / 2^24; conv weights (2u - 1) sqrt(6 / fan_in), bn.weight and running_var 0.8 + 0.4u,
 * bn.bias and running_mean 0.2u - 0.1, in double rounded to float32), so the fixture
 * tests/fixtures/fid_inception_ref.safetensors (tools/make_inception_fixture.py) holds only the inputs
 * and the pool3 features PyTorch computed from them in float64: 2 RGB 32x32 images, a grayscale 28x28
 * one (repeated to 3 channels) and a 20x36 one (the resize in both directions). The weights go to the
 * loader as an in-memory safetensors file under pytorch-fid's names (470 tensors, 21.8 M values),
 * so the name checks and the batch-norm folding are what a converted pytorch-fid file meets.
 * Tolerance: max |ours - ref| <= 1e-4 of the largest feature (float32 through 48 layers of sums of up
 * to 4032 terms). */
#include "check.h"
#include "featnet.h"
#include <math.h>
#include <string.h>

#define FIXTURE "fixtures/fid_inception_ref.safetensors"
#define SEED 1
#define TOL 1e-4
#define MAX_TENSORS 480

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 14695981039346656037ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The n values of tensor `name` (kind 0: conv weight of fan_in; 1: around 1; 2: around 0). */
static void seeded(const char *name, size_t n, int kind, int fan_in, float *out) {
    const uint64_t key = fnv1a64(name) ^ SEED;
    const double bound = sqrt(6.0 / fan_in);
    for (size_t e = 0; e < n; e++) {
        double u = (double)(splitmix64(key ^ (e * 0x9E3779B97F4A7C15ull)) >> 40) / (double)(1 << 24);
        out[e] = (float)(kind == 0 ? (2 * u - 1) * bound : kind == 1 ? 0.8 + 0.4 * u : 0.2 * u - 0.1);
    }
}

/* An in-memory safetensors file of every tensor the network reads. */
typedef struct {
    df_st_file f;
    char names[MAX_TENSORS][96];
} weights;

static void add_tensor(weights *w, float **p, const char *name, int ndim, const int64_t *shape, int kind, int fan_in) {
    df_st_tensor *t = &w->f.tensors[w->f.n_tensors];
    snprintf(w->names[w->f.n_tensors], sizeof w->names[0], "%s", name);
    t->name = w->names[w->f.n_tensors++];
    t->dtype = DF_DTYPE_F32;
    t->ndim = ndim;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)(t->shape[d] = shape[d]);
    t->begin = (uint64_t)((uint8_t *)*p - w->f.data);
    t->end = t->begin + n * sizeof(float);
    seeded(name, n, kind, fan_in, *p);
    *p += n;
}

static weights *make_weights(void) {
    weights *w = calloc(1, sizeof *w);
    size_t total = 0;
    for (int i = 0; i < df_inception_conv_count(); i++) {
        char prefix[64];
        int64_t s[4];
        df_inception_conv_info(i, prefix, sizeof prefix, s);
        total += (size_t)s[0] * s[1] * s[2] * s[3] + 4 * (size_t)s[0];
    }
    w->f.path = "seeded inception weights";
    w->f.tensors = calloc(MAX_TENSORS, sizeof(df_st_tensor));
    w->f.data = malloc(total * sizeof(float));
    w->f.data_size = total * sizeof(float);
    float *p = (float *)w->f.data;
    static const char *const bn[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    for (int i = 0; i < df_inception_conv_count(); i++) {
        char prefix[64], name[96];
        int64_t s[4];
        df_inception_conv_info(i, prefix, sizeof prefix, s);
        snprintf(name, sizeof name, "%s.conv.weight", prefix);
        add_tensor(w, &p, name, 4, s, 0, (int)(s[1] * s[2] * s[3]));
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof name, "%s.%s", prefix, bn[k]);
            add_tensor(w, &p, name, 1, s, k == 0 || k == 3 ? 1 : 2, 1);
        }
    }
    return w;
}

static void free_weights(weights *w) {
    free(w->f.tensors);
    free(w->f.data);
    free(w);
}

/* The network from w, or NULL with the status in *st. */
static df_featnet *load(const weights *w, int max_batch, df_status *st) {
    df_featnet *net = calloc(1, sizeof *net);
    net->max_batch = max_batch;
    net->info.kind = DF_FEATNET_INCEPTION;
    *st = df_inception_load(&w->f, net);
    if (*st == DF_OK) return net;
    df_featnet_free(net);
    return NULL;
}

static void compare(df_featnet *net, const df_st_file *fx, const char *which, int n, int c, int h, int w) {
    char xname[32], fname[32];
    snprintf(xname, sizeof xname, "x_%s", which);
    snprintf(fname, sizeof fname, "feat_%s", which);
    const int64_t xs[4] = {n, c, h, w}, fs[2] = {n, 2048};
    float *x = malloc(sizeof(float) * n * c * h * w), *ref = malloc(sizeof(float) * n * 2048);
    float *got = malloc(sizeof(float) * n * 2048);
    CHECK(df_st_get_f32(fx, xname, 4, xs, x) == DF_OK, "%s", df_last_error());
    CHECK(df_st_get_f32(fx, fname, 2, fs, ref) == DF_OK, "%s", df_last_error());
    double t0 = df_time();
    CHECK(df_featnet_forward(net, n, c, h, w, x, got, NULL) == DF_OK, "%s", df_last_error());
    double md = 0, mr = 0;
    for (int i = 0; i < n * 2048; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = d;
        mr = fmax(mr, fabs((double)ref[i]));
    }
    printf("%s (%dx%dx%dx%d): max error %.3g of the largest feature %.3f (%.2f s)\n", which, n, c, h, w, md / mr, mr,
           df_time() - t0);
    CHECK(md <= TOL * mr, "%s: features differ from PyTorch's by %g of the largest", which, md / mr);
    free(x);
    free(ref);
    free(got);
}

static void test_names(weights *w) {
    df_status st;
    /* a foreign tensor (say, pytorch-fid's fc.weight left in) and a missing one are refused by name */
    char saved[96];
    snprintf(saved, sizeof saved, "%s", w->names[7]);
    snprintf(w->names[7], sizeof w->names[7], "fc.weight");
    CHECK(load(w, 1, &st) == NULL);
    EXPECT_STATUS(st, DF_ERR_FORMAT, "tensor 'fc.weight' is not part of this feature network", NULL);
    snprintf(w->names[7], sizeof w->names[7], "%s", saved);
    w->f.n_tensors--;
    CHECK(load(w, 1, &st) == NULL);
    EXPECT_STATUS(st, DF_ERR_FORMAT, "missing tensor Mixed_7c.branch_pool.bn.running_var", NULL);
    w->f.n_tensors++;
}

int main(void) {
    check_set_threads(2);
    df_st_file fx;
    df_status st = df_st_read(FIXTURE, &fx);
    CHECK(st == DF_OK, "%s", df_last_error());
    if (st != DF_OK) return check_exit_code("test_fid_inception");
    weights *w = make_weights();
    CHECK(w->f.n_tensors == 470, "%d tensors", w->f.n_tensors);
    df_featnet *net = load(w, 1, &st); /* batch 1: the two RGB images go in two chunks */
    CHECK(net != NULL, "%s", df_last_error());
    if (net) {
        const df_featnet_info *info = df_featnet_get_info(net);
        CHECK(info->dim == 2048 && info->n_classes == 0 && info->height == 0);
        compare(net, &fx, "rgb", 2, 3, 32, 32);
        compare(net, &fx, "gray", 1, 1, 28, 28);
        compare(net, &fx, "rect", 1, 3, 20, 36);
        float f[2048], l[10], x[4 * 28 * 28] = {0};
        EXPECT_STATUS(df_featnet_check_input(net, 4, 28, 28), DF_ERR_SHAPE, "takes 1 or 3 channels, not 4", NULL);
        EXPECT_STATUS(df_featnet_forward(net, 1, 1, 28, 28, x, f, l), DF_ERR_UNSUPPORTED, "no class logits", NULL);
        df_featnet_free(net);
    }
    test_names(w);
    free_weights(w);
    df_st_free(&fx);
    return check_exit_code("test_fid_inception");
}
