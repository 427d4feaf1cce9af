/* test_unet_torch.c: the U-Net (src/nets/unet.c) against PyTorch, tensor by tensor.
 *
 * Each tests/fixtures/unet_*.safetensors (written by tools/make_unet_fixtures.py, a plain-PyTorch
 * UNet2DModel with diffusers' names) holds a diffusers config (metadata "config"), every parameter
 * ("param/<name>"), an input batch x, t, a target, and the reference out, loss = mean((out -
 * target)^2) and every gradient ("grad/<name>"), computed in float64 from the float32 inputs, and a
 * conditional fixture (num_class_embeds) its class labels ("labels"; tiny_cond: 3 classes and the
 * null one, class_embedding.weight added to the time embedding as diffusers does). We
 * build the network from the config, load the parameters by name, run forward and backward in
 * float32, and compare everything, printing the worst difference of each tensor.
 *
 * Tolerances (our float32 against the float64 reference):
 *  - out: max |ours - ref| / max |ref| <= 1e-4. float32 rounding through ~20 layers of sums of a few
 *    hundred terms gives ~1e-6 relative; torch's own float32 run differs from the float64 one by
 *    about that much (the generator prints it). 1e-4 leaves room for different summation orders.
 *  - loss: relative error <= 1e-4 (it is a mean of the out errors).
 *  - gradients: max |ours - ref| / max |ref of the whole fixture| <= 1e-3. Scaled by the fixture's
 *    largest gradient, not per tensor, because some gradients are zero in exact arithmetic (to_k.bias:
 *    a softmax ignores a per-row shift) and are pure rounding noise in float32. The per-tensor
 *    relative error is printed too.
 *
 * Each fixture runs three times: in fp32 (the tolerances above), in bf16 on df_gemm_bf16 as the CPU
 * offers it, and in bf16 on its forced portable fallback (gemm.h), against the same float64
 * reference. bf16 rounds both inputs of every conv, linear and attention product to 8 significant
 * bits (relative error up to 2^-9 each), so each product adds ~2e-3 relative noise (test_ops has the
 * per-op numbers); over the ~20 products between input and output that random-walks to ~1e-2.
 * The gradients inherit the output's error through dL/dout = 2 (out - target) / n, which is why the
 * largest gradient errors sit on conv_out. Measured worst over the three fixtures (the native and
 * the fallback bf16 paths agree to 1e-6): out 8.0e-3 of max|out| (noattn; attn_odd 7.6e-3,
 * multihead 7.8e-3), loss 1.14e-3 relative (multihead), gradients 1.12e-2 of the fixture's largest
 * gradient (multihead conv_out.weight; noattn 6.5e-3, attn_odd 3.3e-3). Tolerances with 3.5-4.5x
 * headroom: OUT_TOL_BF16 3e-2, LOSS_TOL_BF16 5e-3, GRAD_TOL_BF16 4e-2.
 * A bf16 run must also differ from the fp32 run by more than fp32 noise (BF16_ENGAGED), so a
 * precision setting that the network ignored would fail.
 */
#include "check.h"
#include "gemm.h"
#include "safetensors.h"
#include "unet.h"
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define OUT_TOL 1e-4
#define LOSS_TOL 1e-4
#define GRAD_TOL 1e-3
#define OUT_TOL_BF16 3e-2
#define LOSS_TOL_BF16 5e-3
#define GRAD_TOL_BF16 4e-2
#define BF16_ENGAGED 1e-5  /* fp32 runs differ from the reference by < 1e-6 (relative out) */

typedef struct {
    const char *name;
    df_precision precision;
    int fallback;  /* force df_gemm_bf16's portable fallback */
    double out_tol, loss_tol, grad_tol;
} run_mode;

static const run_mode MODES[] = {
    {"fp32", DF_PRECISION_FP32, 0, OUT_TOL, LOSS_TOL, GRAD_TOL},
    {"bf16", DF_PRECISION_BF16, 0, OUT_TOL_BF16, LOSS_TOL_BF16, GRAD_TOL_BF16},
    {"bf16 fallback", DF_PRECISION_BF16, 1, OUT_TOL_BF16, LOSS_TOL_BF16, GRAD_TOL_BF16},
};

/* max |a - b| and max |b|. */
static void diff_stats(const float *a, const float *b, size_t n, double *maxdiff, double *maxref) {
    *maxdiff = 0.0, *maxref = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= *maxdiff)) *maxdiff = d;  /* NaN propagates */
        *maxref = fmax(*maxref, fabs((double)b[i]));
    }
}

/* Reads tensor `name` of any shape into a new buffer; NULL if missing. */
static float *get_any(const df_st_file *f, const char *name, size_t *numel, const df_st_tensor **info) {
    const df_st_tensor *t = df_st_find(f, name);
    if (!t) return NULL;
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    float *p = malloc((n ? n : 1) * sizeof(float));
    if (df_st_get_f32(f, name, t->ndim, t->shape, p) != DF_OK) {
        free(p);
        return NULL;
    }
    if (numel) *numel = n;
    if (info) *info = t;
    return p;
}

static void check_fixture(const char *path, const run_mode *mode) {
    df_st_file f;
    df_unet *u = NULL;
    df_unet_config c;
    printf("%s (%s)\n", path, mode->name);
    df_status st = df_st_read(path, &f);
    CHECK(st == DF_OK, "read %s: %s", path, df_last_error());
    if (st != DF_OK) return;
    const char *cfg_text = df_st_meta(&f, "config");
    CHECK(cfg_text != NULL, "%s: no config metadata", path);
    if (!cfg_text) goto done;
    st = df_unet_config_from_json(cfg_text, strlen(cfg_text), &c);
    CHECK(st == DF_OK, "%s: config: %s", path, df_last_error());
    if (st != DF_OK) goto done;
    CHECK(c.dropout == 0.0f, "%s: the fixture must have dropout 0 (torch's mask cannot be reproduced)", path);

    size_t nx, ny, nt, ntarget;
    const df_st_tensor *xi;
    float *x = get_any(&f, "x", &nx, &xi), *t = get_any(&f, "t", &nt, NULL);
    float *target = get_any(&f, "target", &ntarget, NULL), *ref_out = get_any(&f, "out", &ny, NULL);
    float *ref_loss = get_any(&f, "loss", NULL, NULL);
    size_t nlab = 0;
    float *lab = c.num_class_embeds ? get_any(&f, "labels", &nlab, NULL) : NULL; /* a conditional fixture's */
    CHECK(!c.num_class_embeds || lab, "%s: a conditional fixture has labels", path);
    CHECK(x && t && target && ref_out && ref_loss, "%s: x, t, target, out and loss present", path);
    if (!(x && t && target && ref_out && ref_loss)) goto free_io;
    int n = (int)xi->shape[0];
    CHECK(xi->ndim == 4 && xi->shape[1] == c.in_channels && xi->shape[2] == c.sample_size && nt == (size_t)n &&
              ntarget == ny && ny == (size_t)n * c.out_channels * c.sample_size * c.sample_size,
          "%s: input shapes agree with the config", path);
    st = df_unet_new(&c, n, 1, &u);
    CHECK(st == DF_OK, "%s: new: %s", path, df_last_error());
    if (st != DF_OK) goto free_io;
    u->precision = mode->precision;
    df_gemm_bf16_force_fallback(mode->fallback);

    /* parameters by name; the fixture must hold exactly the model's tensors */
    const df_param_table *table = df_unet_params(u);
    size_t nf = df_unet_param_floats(u);
    float *params = calloc(nf, sizeof(float)), *grads = calloc(nf, sizeof(float)), *ref_g = calloc(nf, sizeof(float));
    int n_param_tensors = 0, loaded = 1;
    for (int k = 0; k < f.n_tensors; k++) n_param_tensors += strncmp(f.tensors[k].name, "param/", 6) == 0;
    CHECK(n_param_tensors == table->count, "%s: fixture has %d parameter tensors, model %d", path, n_param_tensors,
          table->count);
    for (int k = 0; k < table->count; k++) {
        const df_param_info *pi = &table->info[k];
        char name[DF_PARAM_NAME_MAX + 8];
        snprintf(name, sizeof name, "param/%s", pi->name);
        st = df_st_get_f32(&f, name, pi->ndim, pi->shape, params + pi->offset);
        if (st == DF_OK) {
            snprintf(name, sizeof name, "grad/%s", pi->name);
            st = df_st_get_f32(&f, name, pi->ndim, pi->shape, ref_g + pi->offset);
        }
        CHECK(st == DF_OK, "%s: %s", path, df_last_error());
        loaded &= st == DF_OK;
    }
    if (!loaded) goto free_model;

    int *t_index = malloc((size_t)n * sizeof(int)), *labels = lab ? malloc((size_t)n * sizeof(int)) : NULL;
    for (int i = 0; i < n; i++) t_index[i] = (int)t[i];
    CHECK(!lab || nlab == (size_t)n, "%s: %zu labels for %d images", path, nlab, n);
    for (int i = 0; labels && i < n; i++) labels[i] = (int)lab[i];
    float *out = malloc(ny * sizeof(float)), *dout = malloc(ny * sizeof(float));
    df_unet_forward(u, params, n, x, t_index, labels, out, 1, 0, 0);
    double maxdiff, maxref, loss = 0.0;
    diff_stats(out, ref_out, ny, &maxdiff, &maxref);
    printf("  out: max|diff| %.3g, max|ref| %.3g, rel %.3g (tol %g)\n", maxdiff, maxref, maxdiff / maxref,
           mode->out_tol);
    CHECK(maxdiff <= mode->out_tol * maxref, "%s: %s: out rel err %g > %g", path, mode->name, maxdiff / maxref,
          mode->out_tol);
    if (mode->precision == DF_PRECISION_BF16)
        CHECK(maxdiff > BF16_ENGAGED * maxref, "%s: %s: out rel err %g: no bf16 rounding happened", path, mode->name,
              maxdiff / maxref);
    for (size_t i = 0; i < ny; i++) {
        double d = (double)out[i] - target[i];
        loss += d * d;
        dout[i] = (float)(2.0 * d / (double)ny);  /* d mean((out - target)^2) / d out */
    }
    loss /= (double)ny;
    printf("  loss: %.9g ref %.9g rel %.3g (tol %g)\n", loss, ref_loss[0], fabs(loss - ref_loss[0]) / ref_loss[0],
           mode->loss_tol);
    CHECK(fabs(loss - ref_loss[0]) <= mode->loss_tol * fabs(ref_loss[0]), "%s: %s: loss %.9g ref %.9g", path,
          mode->name, loss, ref_loss[0]);

    df_unet_backward(u, params, grads, n, dout);
    double gmax = 0.0;
    for (int k = 0; k < table->count; k++) {
        const df_param_info *pi = &table->info[k];
        for (size_t e = 0; e < pi->numel; e++) gmax = fmax(gmax, fabs(ref_g[pi->offset + e]));
    }
    double worst = 0.0;
    const char *worst_name = "";
    for (int k = 0; k < table->count; k++) {
        const df_param_info *pi = &table->info[k];
        diff_stats(grads + pi->offset, ref_g + pi->offset, pi->numel, &maxdiff, &maxref);
        double err = maxdiff / gmax;
        printf("  grad %-48s max|diff| %.3g  max|ref| %.3g  /tensor %.2g  /fixture %.2g\n", pi->name, maxdiff, maxref,
               maxref > 0 ? maxdiff / maxref : 0.0, err);
        CHECK(err <= mode->grad_tol, "%s: %s: grad %s: max|diff| %g = %g of max|grad| (tol %g)", path, mode->name,
              pi->name, maxdiff, err, mode->grad_tol);
        if (!(err <= worst)) worst = err, worst_name = pi->name;
    }
    printf("  worst gradient: %s, %.3g of the largest gradient %.3g (tol %g)\n", worst_name, worst, gmax,
           mode->grad_tol);
    free(t_index), free(labels), free(out), free(dout);
free_model:
    free(params), free(grads), free(ref_g);
free_io:
    free(x), free(t), free(target), free(ref_out), free(ref_loss), free(lab);
done:
    df_gemm_bf16_force_fallback(0);
    df_unet_free(u);
    df_st_free(&f);
}

int main(void) {
    /* ctest runs us in tests/ */
    DIR *d = opendir("fixtures");
    CHECK(d != NULL, "no tests/fixtures directory (run from tests/)");
    int found = 0;
    char paths[64][256];
    struct dirent *e;
    while (d && (e = readdir(d)) && found < 64) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "unet_", 5) == 0 && len > 12 && strcmp(e->d_name + len - 12, ".safetensors") == 0)
            snprintf(paths[found++], sizeof paths[0], "fixtures/%s", e->d_name);
    }
    if (d) closedir(d);
    /* fixed order, so the log reads the same every run */
    qsort(paths, (size_t)found, sizeof paths[0], (int (*)(const void *, const void *))strcmp);
    CHECK(found >= 4, "found %d unet fixtures in tests/fixtures, want 4 (tools/make_unet_fixtures.py)", found);
    for (size_t m = 0; m < sizeof MODES / sizeof MODES[0]; m++)
        for (int i = 0; i < found; i++) check_fixture(paths[i], &MODES[m]);
    return check_exit_code("test_unet_torch");
}
