/* test_unet_torch.c: the U-Net (src/unet.c) against PyTorch, tensor by tensor.
 *
 * Each tests/fixtures/unet_*.safetensors (written by tools/make_unet_fixtures.py, a plain-PyTorch
 * UNet2DModel with diffusers' names) holds a diffusers config (metadata "config"), every parameter
 * ("param/<name>"), an input batch x, t, a target, and the reference out, loss = mean((out -
 * target)^2) and every gradient ("grad/<name>"), computed in float64 from the float32 inputs. We
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
 */
#include "check.h"
#include "safetensors.h"
#include "unet.h"
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define OUT_TOL 1e-4
#define LOSS_TOL 1e-4
#define GRAD_TOL 1e-3

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

static void check_fixture(const char *path) {
    df_st_file f;
    df_unet *u = NULL;
    df_unet_config c;
    printf("%s\n", path);
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
    CHECK(x && t && target && ref_out && ref_loss, "%s: x, t, target, out and loss present", path);
    if (!(x && t && target && ref_out && ref_loss)) goto free_io;
    int n = (int)xi->shape[0];
    CHECK(xi->ndim == 4 && xi->shape[1] == c.in_channels && xi->shape[2] == c.sample_size && nt == (size_t)n &&
              ntarget == ny && ny == (size_t)n * c.out_channels * c.sample_size * c.sample_size,
          "%s: input shapes agree with the config", path);
    st = df_unet_new(&c, n, 1, &u);
    CHECK(st == DF_OK, "%s: new: %s", path, df_last_error());
    if (st != DF_OK) goto free_io;

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

    int *t_index = malloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) t_index[i] = (int)t[i];
    float *out = malloc(ny * sizeof(float)), *dout = malloc(ny * sizeof(float));
    df_unet_forward(u, params, n, x, t_index, out, 1, 0, 0);
    double maxdiff, maxref, loss = 0.0;
    diff_stats(out, ref_out, ny, &maxdiff, &maxref);
    printf("  out: max|diff| %.3g, max|ref| %.3g, rel %.3g (tol %g)\n", maxdiff, maxref, maxdiff / maxref, OUT_TOL);
    CHECK(maxdiff <= OUT_TOL * maxref, "%s: out rel err %g > %g", path, maxdiff / maxref, OUT_TOL);
    for (size_t i = 0; i < ny; i++) {
        double d = (double)out[i] - target[i];
        loss += d * d;
        dout[i] = (float)(2.0 * d / (double)ny);  /* d mean((out - target)^2) / d out */
    }
    loss /= (double)ny;
    printf("  loss: %.9g ref %.9g rel %.3g (tol %g)\n", loss, ref_loss[0], fabs(loss - ref_loss[0]) / ref_loss[0],
           LOSS_TOL);
    CHECK(fabs(loss - ref_loss[0]) <= LOSS_TOL * fabs(ref_loss[0]), "%s: loss %.9g ref %.9g", path, loss, ref_loss[0]);

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
        CHECK(err <= GRAD_TOL, "%s: grad %s: max|diff| %g = %g of max|grad| (tol %g)", path, pi->name, maxdiff, err,
              GRAD_TOL);
        if (!(err <= worst)) worst = err, worst_name = pi->name;
    }
    printf("  worst gradient: %s, %.3g of the largest gradient %.3g (tol %g)\n", worst_name, worst, gmax, GRAD_TOL);
    free(t_index), free(out), free(dout);
free_model:
    free(params), free(grads), free(ref_g);
free_io:
    free(x), free(t), free(target), free(ref_out), free(ref_loss);
done:
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
    CHECK(found >= 3, "found %d unet fixtures in tests/fixtures, want 3 (tools/make_unet_fixtures.py)", found);
    for (int i = 0; i < found; i++) check_fixture(paths[i]);
    return check_exit_code("test_unet_torch");
}
