/* test_mlp_grad.c: the MLP denoiser's backward against central differences, plus the properties
 * the training and sampling code rely on (config checks, seeded init, batch independence,
 * thread-count independence, gradient accumulation). Exits non-zero on any failure. */
#include "check.h"
#include "mlp.h"
#include <math.h>
#include <string.h>

/* Uniform in [lo, hi) from the test's own stream. */
static void fill_uniform(float *a, size_t n, uint32_t key, float lo, float hi) {
    df_randu(1234, DF_STREAM_USER, key, 0, a, n);
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * a[i];
}

static void fill_t(int *t, int n, uint32_t key) {
    for (int i = 0; i < n; i++) t[i] = (int)df_rand_below(1234, DF_STREAM_USER + 1, key, 0, (uint32_t)i, 1000);
}

/* ---------------------------------------------------------------- config and table */
static void test_config(void) {
    df_mlp_config c;
    df_mlp *m = NULL;
    df_mlp_config_init(&c);
    CHECK(c.dim == 2 && c.hidden == 128 && c.layers == 3 && c.temb_dim == 64, "defaults");
    const struct { int dim, hidden, layers, temb, batch; } bad[] = {
        {0, 128, 3, 64, 8}, {2, 0, 3, 64, 8}, {2, 128, 0, 64, 8}, {2, 128, DF_MLP_MAX_LAYERS + 1, 64, 8},
        {2, 128, 3, 2, 8},  {2, 128, 3, 63, 8}, {2, 128, 3, 64, 0}, {2, 128, 3, 64, -5},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        df_mlp_config b = {bad[k].dim, bad[k].hidden, bad[k].layers, bad[k].temb};
        m = (df_mlp *)1;
        df_status st = df_mlp_new(&b, bad[k].batch, &m);
        CHECK(st == DF_ERR_ARG && m == NULL, "bad config %zu accepted (status %d)", k, (int)st);
        CHECK(strstr(df_last_error(), "mlp:") != NULL, "bad config %zu message: %s", k, df_last_error());
    }
    CHECK(df_mlp_new(&c, 16, &m) == DF_OK, "default config rejected: %s", df_last_error());
    /* Shapes and counts: D*H + H + L*H*E + (L-1)*(H*H + H) + H*D + D real parameters. */
    const df_param_info *p = df_param_table_find(&m->table, "hidden.2.weight");
    CHECK(p && p->ndim == 2 && p->shape[0] == 128 && p->shape[1] == 128, "hidden.2.weight");
    p = df_param_table_find(&m->table, "temb.0.weight");
    CHECK(p && p->shape[0] == 128 && p->shape[1] == 64, "temb.0.weight");
    p = df_param_table_find(&m->table, "out.weight");
    CHECK(p && p->shape[0] == 2 && p->shape[1] == 128, "out.weight");
    CHECK(df_param_table_find(&m->table, "hidden.0.weight") == NULL, "hidden.0 must not exist (layer 0 is inp)");
    CHECK(df_param_table_find(&m->table, "hidden.3.weight") == NULL, "hidden.3 must not exist");
    size_t want = 2 * 128 + 128 + 3 * 128 * 64 + 2 * (128 * 128 + 128) + 128 * 2 + 2;
    CHECK(df_param_table_count(&m->table) == want, "param count %zu want %zu", df_param_table_count(&m->table), want);
    CHECK(df_mlp_param_floats(m) == m->table.total, "param floats");
    df_mlp_free(m);
}

/* ---------------------------------------------------------------- init */
static void test_init(void) {
    df_mlp_config c;
    df_mlp_config_init(&c);
    df_mlp *m;
    ASSERT(df_mlp_new(&c, 4, &m) == DF_OK);
    size_t np = df_mlp_param_floats(m);
    float *a = malloc(np * sizeof *a), *b = malloc(np * sizeof *b), *d = malloc(np * sizeof *d);
    memset(a, 0x7f, np * sizeof *a);  /* garbage, so that unwritten padding shows */
    df_mlp_init(m, a, 7);
    df_mlp_init(m, b, 7);
    df_mlp_init(m, d, 8);
    CHECK(memcmp(a, b, np * sizeof *a) == 0, "same seed gave different init");
    size_t same = 0;
    for (const df_param_info *p = m->table.info; p < m->table.info + m->table.count; p++) {
        /* Bound: 1/sqrt(fan_in), fan_in = the input width of the layer; out.* scaled by 0.1. */
        int fan_in = p->ndim == 2 ? (int)p->shape[1] : 0;
        if (strcmp(p->name, "inp.bias") == 0) fan_in = c.dim;
        if (strstr(p->name, "bias") && strcmp(p->name, "inp.bias") != 0) fan_in = c.hidden;
        float bound = 1.0f / sqrtf((float)fan_in) * (strncmp(p->name, "out.", 4) == 0 ? 0.1f : 1.0f);
        float maxabs = 0;
        double mean = 0;
        for (size_t i = 0; i < p->numel; i++) {
            float w = a[p->offset + i];
            maxabs = fmaxf(maxabs, fabsf(w));
            mean += w;
            same += a[p->offset + i] == d[p->offset + i];
        }
        mean /= (double)p->numel;
        CHECK(maxabs <= bound, "%s: max |w| %g above bound %g", p->name, maxabs, bound);
        /* A uniform over +-bound has max close to the bound (else the scale is wrong). */
        CHECK(p->numel < 64 || maxabs > 0.9f * bound, "%s: max |w| %g far below bound %g", p->name, maxabs, bound);
        /* Mean of n uniforms: sd = bound / sqrt(3 n); 5 sd. */
        CHECK(fabs(mean) <= 5.0 * bound / sqrt(3.0 * (double)p->numel), "%s: mean %g", p->name, mean);
        size_t end = p->offset + ((p->numel + 15) & ~(size_t)15);
        for (size_t i = p->offset + p->numel; i < end; i++) CHECK(a[i] == 0.0f, "%s: padding %zu not zero", p->name, i);
    }
    CHECK(same < np / 100, "seeds 7 and 8 share %zu of %zu values", same, np);
    free(a), free(b), free(d);
    df_mlp_free(m);
}

/* ---------------------------------------------------------------- batch and thread independence */
static void test_batch_independence(void) {
    df_mlp_config c;
    df_mlp_config_init(&c);
    const int n = 37;
    df_mlp *m;
    ASSERT(df_mlp_new(&c, n, &m) == DF_OK);
    size_t np = df_mlp_param_floats(m);
    float *params = malloc(np * sizeof *params);
    df_mlp_init(m, params, 3);
    float x[37 * 2], out[37 * 2], out1[37 * 2], row[2];
    int t[37];
    fill_uniform(x, (size_t)n * 2, 1, -3.0f, 3.0f);
    fill_t(t, n, 1);
    check_set_threads(2);
    df_mlp_forward(m, params, n, x, t, NULL, out);
    check_set_threads(1);
    df_mlp_forward(m, params, n, x, t, NULL, out1);
    check_set_threads(2);
    /* Exact equality: every row runs the same instructions on the same values (mlp.c). */
    CHECK(memcmp(out, out1, sizeof out) == 0, "forward differs between 1 and 2 threads");
    int bad = 0;
    for (int i = 0; i < n; i++) {
        df_mlp_forward(m, params, 1, x + 2 * i, t + i, NULL, row);
        bad += memcmp(row, out + 2 * i, sizeof row) != 0;
    }
    CHECK(bad == 0, "%d of %d rows differ between n=1 and the batched forward", bad, n);
    /* Rows are independent: changing row 5 changes no other row. */
    x[10] += 0.5f;
    df_mlp_forward(m, params, n, x, t, NULL, out1);
    for (int i = 0; i < n; i++)
        if (i != 5) bad += memcmp(out1 + 2 * i, out + 2 * i, 2 * sizeof(float)) != 0;
    CHECK(bad == 0 && memcmp(out1 + 10, out + 10, 2 * sizeof(float)) != 0, "row 5 leaks into other rows");
    free(params);
    df_mlp_free(m);
}

/* ---------------------------------------------------------------- forward against the spec */

/* The network of mlp.h written out in double from the parameter names, for one sample. */
static void reference_forward(const df_mlp *m, const float *params, const float *x, int t, double *out) {
    const df_mlp_config *c = &m->cfg;
    const int D = c->dim, H = c->hidden, E = c->temb_dim, half = E / 2;
    double e[64], h[128], z[128];
    ASSERT(E <= 64 && H <= 128);
    for (int j = 0; j < half; j++) {
        double f = exp(-log(10000.0) * j / (half - 1));
        e[j] = sin(t * f), e[half + j] = cos(t * f);
    }
    double in[128];
    for (int k = 0; k < D; k++) in[k] = x[k];
    char name[64];
    for (int l = 0; l < c->layers; l++) {
        int n_in = l == 0 ? D : H;
        if (l == 0) snprintf(name, sizeof name, "inp");
        else snprintf(name, sizeof name, "hidden.%d", l);
        char wn[80], bn[80], un[80];
        snprintf(wn, sizeof wn, "%s.weight", name);
        snprintf(bn, sizeof bn, "%s.bias", name);
        snprintf(un, sizeof un, "temb.%d.weight", l);
        const float *W = params + df_param_table_find(&m->table, wn)->offset;
        const float *b = params + df_param_table_find(&m->table, bn)->offset;
        const float *U = params + df_param_table_find(&m->table, un)->offset;
        for (int j = 0; j < H; j++) {
            z[j] = b[j];
            for (int k = 0; k < n_in; k++) z[j] += (double)W[j * n_in + k] * in[k];
            for (int k = 0; k < E; k++) z[j] += (double)U[j * E + k] * e[k];
            h[j] = z[j] / (1.0 + exp(-z[j]));
        }
        for (int j = 0; j < H; j++) in[j] = h[j];
    }
    const float *W = params + df_param_table_find(&m->table, "out.weight")->offset;
    const float *b = params + df_param_table_find(&m->table, "out.bias")->offset;
    for (int j = 0; j < D; j++) {
        out[j] = b[j];
        for (int k = 0; k < H; k++) out[j] += (double)W[j * H + k] * in[k];
    }
}

static void test_forward_reference(void) {
    df_mlp_config c;
    df_mlp_config_init(&c);
    const int n = 16;
    df_mlp *m;
    ASSERT(df_mlp_new(&c, n, &m) == DF_OK);
    size_t np = df_mlp_param_floats(m);
    float *params = malloc(np * sizeof *params);
    df_mlp_init(m, params, 5);
    float x[16 * 2], out[16 * 2];
    int t[16];
    fill_uniform(x, (size_t)n * 2, 4, -3.0f, 3.0f);
    fill_t(t, n, 4);
    t[0] = 0, t[1] = 999;  /* both ends of the 0-based index range of T = 1000 */
    df_mlp_forward(m, params, n, x, t, NULL, out);
    /* Tolerance: float accumulation over ~200 terms per layer and the float embedding
     * (sin of arguments up to 1000 rad, whose float rounding alone is ~3e-5 rad) against double:
     * errors of a few 1e-6 relative to the output scale; 1e-4 leaves room but catches any
     * wrong term, which moves outputs by 1e-2 or more. */
    double worst = 0, scale = 0;
    for (int i = 0; i < n; i++) {
        double ref[2];
        reference_forward(m, params, x + 2 * i, t[i], ref);
        for (int j = 0; j < 2; j++) {
            worst = fmax(worst, fabs(ref[j] - out[2 * i + j]));
            scale = fmax(scale, fabs(ref[j]));
        }
    }
    printf("forward vs double reference: max abs err %.2e, output scale %.2e (tol 1e-4 * scale)\n", worst, scale);
    CHECK(scale > 1e-3 && worst <= 1e-4 * scale, "forward differs from the reference: %.3e (scale %.3e)", worst, scale);
    free(params);
    df_mlp_free(m);
}

/* ---------------------------------------------------------------- backward properties */
static void test_backward_properties(void) {
    df_mlp_config c;
    df_mlp_config_init(&c);
    const int n = 64;  /* large enough that every backward loop runs threaded */
    df_mlp *m;
    ASSERT(df_mlp_new(&c, n, &m) == DF_OK);
    size_t np = df_mlp_param_floats(m);
    float *params = malloc(np * sizeof *params);
    float *g1 = malloc(np * sizeof *g1), *g2 = malloc(np * sizeof *g2), *g3 = malloc(np * sizeof *g3);
    float x[64 * 2], dout[64 * 2], out[64 * 2], dx1[64 * 2], dx2[64 * 2];
    int t[64];
    df_mlp_init(m, params, 9);
    fill_uniform(x, (size_t)n * 2, 5, -2.0f, 2.0f);
    fill_uniform(dout, (size_t)n * 2, 6, -1.0f, 1.0f);
    fill_t(t, n, 5);
    /* Padding of the gradient block carries a sentinel that backward must not touch. */
    for (size_t i = 0; i < np; i++) g1[i] = g2[i] = 123.0f;
    for (const df_param_info *p = m->table.info; p < m->table.info + m->table.count; p++) {
        memset(g1 + p->offset, 0, p->numel * sizeof *g1);
        memset(g2 + p->offset, 0, p->numel * sizeof *g2);
    }
    memset(dx1, 0, sizeof dx1), memset(dx2, 0, sizeof dx2);
    df_mlp_forward(m, params, n, x, t, NULL, out);
    check_set_threads(1);
    df_mlp_backward_input(m, params, g1, n, dout, dx1);
    check_set_threads(2);
    df_mlp_backward_input(m, params, g2, n, dout, dx2);
    /* Exact: every gradient element is summed in the same order whatever the thread count. */
    CHECK(memcmp(g1, g2, np * sizeof *g1) == 0, "parameter gradients differ between 1 and 2 threads");
    CHECK(memcmp(dx1, dx2, sizeof dx1) == 0, "input gradients differ between 1 and 2 threads");
    int sentinel_ok = 1;
    for (const df_param_info *p = m->table.info; p < m->table.info + m->table.count; p++) {
        size_t end = p->offset + ((p->numel + 15) & ~(size_t)15);
        for (size_t i = p->offset + p->numel; i < end; i++) sentinel_ok &= g1[i] == 123.0f;
    }
    CHECK(sentinel_ok, "backward wrote into the padding of the gradient block");
    /* Accumulation: a second backward adds the same gradient again (up to float rounding of the
     * running sums: 64 terms, relative 64 * 6e-8 ~ 4e-6 of the largest term; 1e-5 of the
     * tensor's largest gradient). dx likewise, and grads = NULL leaves only dx. */
    memcpy(g3, g2, np * sizeof *g3);
    df_mlp_backward_input(m, params, g3, n, dout, dx2);
    double worst = 0;
    for (const df_param_info *p = m->table.info; p < m->table.info + m->table.count; p++) {
        double scale = 0, err = 0;
        for (size_t i = p->offset; i < p->offset + p->numel; i++) {
            scale = fmax(scale, fabs(g2[i]));
            err = fmax(err, fabs(g3[i] - 2.0 * g2[i]));
        }
        worst = fmax(worst, err / scale);
    }
    double dx_err = 0, dx_scale = 0;
    for (int i = 0; i < n * 2; i++) {
        dx_err = fmax(dx_err, fabs(dx2[i] - 2.0 * dx1[i]));
        dx_scale = fmax(dx_scale, fabs(dx1[i]));
    }
    printf("backward twice: worst |g2 - 2 g1| / scale %.2e (params), %.2e (x), tol 1e-5\n", worst, dx_err / dx_scale);
    CHECK(worst <= 1e-5 && dx_err <= 1e-5 * dx_scale, "backward does not accumulate");
    /* grads = NULL computes the same dx. */
    memset(dx2, 0, sizeof dx2);
    df_mlp_backward_input(m, params, NULL, n, dout, dx2);
    CHECK(memcmp(dx1, dx2, sizeof dx1) == 0, "dx differs when grads is NULL");
    free(params), free(g1), free(g2), free(g3);
    df_mlp_free(m);
}

/* ---------------------------------------------------------------- gradients */

/* The labels of a conditional network's gradient check: sample i is of class i mod 3 (classes >= 4
 * leaves the rows above 2 unused, their gradient 0). */
static const int check_labels[8] = {0, 1, 2, 0, 1, 2, 0, 1};

/* L = sum(out * R), in double from the float outputs. */
static double loss_of(df_mlp *m, const float *params, int n, const float *x, const int *t, const float *R, float *out) {
    df_mlp_forward(m, params, n, x, t, m->cfg.classes ? check_labels : NULL, out);
    double L = 0;
    for (int i = 0; i < n * m->cfg.dim; i++) L += (double)out[i] * (double)R[i];
    return L;
}

/* dL/d(*value) by the fourth-order central difference
 *   (8 (L(+h) - L(-h)) - (L(+2h) - L(-2h))) / (12 h),
 * truncation error h^4 L^(5) / 30. It allows a step 5-10x larger than the two-point formula for
 * the same truncation error, which divides the float rounding noise of L by as much. The steps
 * actually taken differ from h by the float rounding of value +- h, a relative 1e-6 at most here. */
static double central_diff(df_mlp *m, float *params, int n, float *x, const int *t, const float *R, float *out,
                           float *value, float h) {
    const float saved = *value;
    double l[4];
    const float steps[4] = {h, -h, 2 * h, -2 * h};
    for (int k = 0; k < 4; k++) {
        *value = saved + steps[k];
        l[k] = loss_of(m, params, n, x, t, R, out);
    }
    *value = saved;
    return (8.0 * (l[0] - l[1]) - (l[2] - l[3])) / (12.0 * (double)h);
}

/* Picks up to `cap` element indices of a tensor of `numel`: both ends and evenly spread ones. */
static int sample_indices(size_t numel, size_t *idx, int cap) {
    if (numel <= (size_t)cap) {
        for (size_t i = 0; i < numel; i++) idx[i] = i;
        return (int)numel;
    }
    for (int k = 0; k < cap; k++) idx[k] = (size_t)((double)k * (double)(numel - 1) / (double)(cap - 1) + 0.5);
    return cap;
}

typedef struct { float h, tol; } fd_setting;

/* Compares the analytic gradient of every tensor (and of x) with central differences; returns the
 * worst error over everything. */
static double check_grads(const df_mlp_config *c, int n, fd_setting fd) {
    df_mlp *m;
    ASSERT(df_mlp_new(c, n, &m) == DF_OK);
    const int D = c->dim;
    size_t np = df_mlp_param_floats(m);
    float *params = malloc(np * sizeof *params), *grads = calloc(np, sizeof *grads);
    float *x = malloc((size_t)n * D * sizeof *x), *R = malloc((size_t)n * D * sizeof *R);
    float *out = malloc((size_t)n * D * sizeof *out), *dx = calloc((size_t)n * D, sizeof *dx);
    int *t = malloc((size_t)n * sizeof *t);
    df_mlp_init(m, params, 11);
    /* Undo the 0.1 output scale: with it, every gradient below the output is 10x smaller and
     * closer to the finite-difference noise floor, which would weaken the check. */
    const df_param_info *ow = df_param_table_find(&m->table, "out.weight");
    for (size_t i = 0; i < ow->numel; i++) params[ow->offset + i] *= 10.0f;
    fill_uniform(x, (size_t)n * D, 2, -2.0f, 2.0f);
    fill_uniform(R, (size_t)n * D, 3, -1.0f, 1.0f);
    fill_t(t, n, 2);
    loss_of(m, params, n, x, t, R, out);
    df_mlp_backward_input(m, params, grads, n, R, dx);  /* dL/dout = R */

    double worst_all = 0;
    size_t idx[16];
    for (int k = 0; k <= m->table.count; k++) {
        const int is_x = k == m->table.count;
        const char *name = is_x ? "input x" : m->table.info[k].name;
        size_t numel = is_x ? (size_t)n * D : m->table.info[k].numel;
        float *val = is_x ? x : params + m->table.info[k].offset;
        const float *ana = is_x ? dx : grads + m->table.info[k].offset;
        int cnt = sample_indices(numel, idx, 12);
        /* Scale of the tensor's gradient, for elements whose own gradient is near zero. */
        double scale = 0;
        for (size_t i = 0; i < numel; i++) scale = fmax(scale, fabs(ana[i]));
        double worst = 0;
        size_t worst_i = 0;
        double worst_fd = 0;
        for (int s = 0; s < cnt; s++) {
            double num = central_diff(m, params, n, x, t, R, out, val + idx[s], fd.h);
            double a = ana[idx[s]];
            double err = fabs(num - a) / fmax(fmax(fabs(num), fabs(a)), 1e-2 * scale + 1e-6);
            if (!isfinite(a) || !isfinite(num)) err = INFINITY;
            if (err > worst) worst = err, worst_i = idx[s], worst_fd = num;
        }
        printf("  %-18s %3d of %6zu elements, worst rel err %.2e at %zu (analytic %+.6e fd %+.6e) tol %.0e\n",
               name, cnt, numel, worst, worst_i, ana[worst_i], worst_fd, fd.tol);
        CHECK(worst <= fd.tol, "%s: gradient rel err %.3e above %.0e", name, worst, fd.tol);
        worst_all = fmax(worst_all, worst);
    }
    free(params), free(grads), free(x), free(R), free(out), free(dx), free(t);
    df_mlp_free(m);
    return worst_all;
}

int main(void) {
    check_set_threads(2);
    test_config();
    test_init();
    test_batch_independence();
    test_forward_reference();
    test_backward_properties();
    /* Step and tolerance of the finite-difference check. L is computed from float outputs, whose
     * rounding (~1e-7 relative, accumulated over ~200-term sums) puts a noise of about 1e-6 on
     * any difference quotient with h ~ 0.05; the fourth-order formula's truncation error at this
     * h is ~h^4/30 ~ 2e-7 of the fifth derivative. Scanning h from 1e-2 to 3e-1 on these configs
     * gave a worst error of 2e-3 at h = 0.05 and 0.1, and 2e-2 at h = 1e-2 and 3e-1 (noise and
     * truncation respectively). Errors are relative to max(|fd|, |analytic|, 1% of the tensor's
     * largest gradient), so elements with near-zero gradients are judged at the noise floor of
     * the tensor rather than divided by ~0. A real backward bug (a missing term, a wrong index, a
     * transposed weight) gives errors of order 1; 1e-2 separates the two with 5x margin. */
    const fd_setting fd = {0.05f, 1e-2f};
    const df_mlp_config configs[] = {
        {2, 128, 3, 64},  /* the default network */
        {3, 13, 1, 6},    /* one layer (no hidden.*), odd widths: vector-loop tails */
        {1, 5, 2, 4},     /* dim 1, the smallest embedding */
        {2, 16, 3, 8, 4}, /* class-conditional: 4 class embeddings added to the time embedding */
    };
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        printf("gradient check (4th-order central differences, h %.2g): dim %d hidden %d layers %d temb %d classes %d\n",
               fd.h, configs[k].dim, configs[k].hidden, configs[k].layers, configs[k].temb_dim, configs[k].classes);
        check_grads(&configs[k], 6, fd);
    }
    return check_exit_code("test_mlp_grad");
}
