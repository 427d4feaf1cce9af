/* test_bound.c: the variational bound (src/diffusion/bound.c) against
 *  - an independent NumPy computation (tools/bound_reference.py, fixture
 *    fixtures/bound_reference.safetensors): every term of every sample for a closed-form network, all
 *    four parameterisations, both variances, linear and cosine schedules (T = 50), 8-bit images
 *    (discretised decoder, with and without clipping) and 2-D points (continuous decoder), with the
 *    noise eps taken from the fixture so that both sides see the same x_t;
 *  - closed forms for Gaussian data with the exact optimal denoiser (T = 1000): the expected bound,
 *    the prior term, and the true negative log-likelihood it must exceed;
 * plus the timestep subset, independence from batch size and sample split, and the errors. */
#include "common.h"
#include "check.h"
#include "oracle.h"
#include "safetensors.h"
#include <math.h>
#include <string.h>

#define REF_PATH "fixtures/bound_reference.safetensors"
#define REF_T 50
#define REF_NET_JSON "{\"eps\": [0.6, 0.2], \"x0\": [0.8, -0.1], \"mean\": [0.95, 0.05], \"v\": [0.5, 0.3]}"

/* ---------------------------------------------------------------- the closed-form network */
/* out = a * x_t + b * t / T, the same formula as NET in tools/bound_reference.py. */
typedef struct {
    double a, b;
    int T;
    size_t dim;
    int calls, max_n;
    int fail_at_call;       /* > 0: return an error or a NaN on that call */
    df_status fail_status;  /* DF_OK with fail_at_call: a NaN output instead */
} linear_net;

static const double NET_COEF[DF_PRED_COUNT][2] = {
    [DF_PRED_EPS] = {0.6, 0.2}, [DF_PRED_X0] = {0.8, -0.1}, [DF_PRED_MEAN] = {0.95, 0.05}, [DF_PRED_V] = {0.5, 0.3}};

static df_status linear_net_predict(void *ctx, int n, const int *t, const float *x, float *out) {
    linear_net *c = ctx;
    c->calls++;
    if (n > c->max_n) c->max_n = n;
    if (c->fail_at_call && c->calls == c->fail_at_call && c->fail_status != DF_OK)
        return df_fail(c->fail_status, "test network failed");
    for (int j = 0; j < n; j++)
        for (size_t k = 0; k < c->dim; k++) {
            size_t e = (size_t)j * c->dim + k;
            out[e] = (float)(c->a * (double)x[e] + c->b * (double)(t[j] + 1) / c->T);
        }
    if (c->fail_at_call && c->calls == c->fail_at_call) out[0] = NAN;
    return DF_OK;
}

static linear_net net_for(df_pred pred, int T, size_t dim) {
    linear_net c = {NET_COEF[pred][0], NET_COEF[pred][1], T, dim, 0, 0, 0, DF_OK};
    return c;
}

/* ---------------------------------------------------------------- the fixture */
typedef struct {
    const float *eps;  /* n x T x dim */
    int T;
    size_t dim;
} fixture_noise;

static void fixture_noise_fn(void *ctx, uint64_t index, int t_index, float *eps, size_t dim) {
    fixture_noise *f = ctx;
    memcpy(eps, f->eps + ((size_t)index * f->T + t_index) * f->dim, dim * sizeof(float));
}

static int get_f32(const df_st_file *f, const char *name, int ndim, const int64_t *shape, float *out) {
    df_status st = df_st_get_f32(f, name, ndim, shape, out);
    CHECK(st == DF_OK, "%s: %s", name, df_last_error());
    return st == DF_OK;
}

/* A float64 tensor [rows, cols], copied out raw. */
static int get_f64(const df_st_file *f, const char *name, int rows, int cols, double *out) {
    const df_st_tensor *t = df_st_find(f, name);
    int ok = t && t->dtype == DF_DTYPE_F64 && t->ndim == 2 && t->shape[0] == rows && t->shape[1] == cols;
    CHECK(ok, "fixture tensor %s missing or not F64 [%d, %d]: regenerate with /usr/bin/python3 tools/bound_reference.py",
          name, rows, cols);
    if (ok) memcpy(out, f->data + t->begin, sizeof(double) * (size_t)rows * cols);
    return ok;
}

static void reference_schedule(int cosine, df_schedule *s) {
    df_schedule_params sp;
    df_schedule_params_init(&sp);
    sp.T = REF_T;
    if (cosine) {
        sp.kind = DF_SCHEDULE_COSINE;  /* s = 0.008, max_beta = 0.999 (defaults, as in the script) */
    } else {
        sp.beta_start = 1e-4;
        sp.beta_end = 0.1;
    }
    ASSERT(df_schedule_new(&sp, s) == DF_OK);
}

/* Worst error over all compared terms: |got - want| / max(|want|, REF_FLOOR). Tolerance 1e-4 relative
 * (the brief). Where it comes from: both sides share the float32 x_t and network outputs; src/diffusion/bound.c
 * rounds x0_hat to float (df_pred_convert), the script does not, and GCC may fuse a*x + b in
 * q_sample, so terms differ by float rounding (~1e-7 relative) amplified where mu_q and mu_theta
 * nearly cancel. REF_FLOOR: below 1e-3 nats per sample a term is compared to 1e-7 nats absolute
 * (the cosine prior is ~1e-6 nats and has nothing to cancel, yet is compared the same way). */
#define REF_TOL 1e-4
#define REF_FLOOR 1e-3
static double worst_rel;
static char worst_what[160];

static void compare_term(double got, double want, const char *what) {
    double rel = fabs(got - want) / fmax(fabs(want), REF_FLOOR);
    if (!(rel <= worst_rel)) {  /* also catches NaN */
        worst_rel = isnan(rel) ? INFINITY : rel;
        snprintf(worst_what, sizeof worst_what, "%s: got %.10g want %.10g", what, got, want);
    }
    CHECK(rel <= REF_TOL, "%s: got %.12g want %.12g (rel %.3g, tol %g)", what, got, want, rel, REF_TOL);
}

typedef struct {
    const char *name;
    int discrete, clip;
    const float *x0, *eps;
    int n;
    size_t dim;
} ref_data;

/* One case: every sample alone (n = 1, first_index = j, so the fixture noise of sample j is used and
 * t_mean holds that sample's own terms), then all samples together (totals and means). */
static void check_reference_case(int cosine, df_pred pred, df_var_kind var, const ref_data *d, const df_st_file *f) {
    df_schedule s;
    reference_schedule(cosine, &s);
    char name[160];
    snprintf(name, sizeof name, "terms/%s/%s/%s/%s", cosine ? "cosine" : "linear", df_pred_name(pred), df_var_name(var),
             d->name);
    double ref[3 * (REF_T + 1)];
    ASSERT(d->n <= 3);
    if (!get_f64(f, name, d->n, REF_T + 1, ref)) goto done;
    fixture_noise fn = {d->eps, REF_T, d->dim};
    df_bound_params p;
    df_bound_params_init(&p);
    p.pred = pred;
    p.var = var;
    p.discrete = d->discrete;
    p.clip_x0 = d->clip;
    p.batch = 7;  /* mixes two t's in some network calls */
    p.noise_fn = fixture_noise_fn;
    p.noise_ctx = &fn;
    linear_net net = net_for(pred, REF_T, d->dim);
    df_bound_result r;
    char what[220];
    for (int j = 0; j < d->n; j++) {
        p.first_index = (uint64_t)j;
        df_status st = df_bound_eval(&s, &p, linear_net_predict, &net, 1, d->dim, d->x0 + (size_t)j * d->dim, &r);
        CHECK(st == DF_OK, "%s: %s", name, df_last_error());
        if (st) continue;
        const double *rj = ref + (size_t)j * (REF_T + 1);
        snprintf(what, sizeof what, "%s sample %d decoder", name, j);
        compare_term(r.decoder[0], rj[0], what);
        snprintf(what, sizeof what, "%s sample %d prior", name, j);
        compare_term(r.prior[0], rj[REF_T], what);
        CHECK(r.n_t == REF_T - 1 && !r.estimate && r.t_weight[0] == 1.0, "%s: all KL terms", name);
        for (int k = 0; k < r.n_t; k++) {
            CHECK(r.t_eval[k] == k + 2, "%s: t_eval[%d] = %d", name, k, r.t_eval[k]);
            snprintf(what, sizeof what, "%s sample %d L_%d", name, j, r.t_eval[k] - 1);
            compare_term(r.t_mean[k], rj[r.t_eval[k] - 1], what);
        }
        double sum = 0;
        for (int i = 0; i <= REF_T; i++) sum += rj[i];
        snprintf(what, sizeof what, "%s sample %d total", name, j);
        compare_term(r.total[0], sum, what);
        df_bound_result_free(&r);
    }
    p.first_index = 0;
    df_status st = df_bound_eval(&s, &p, linear_net_predict, &net, d->n, d->dim, d->x0, &r);
    CHECK(st == DF_OK, "%s (all samples): %s", name, df_last_error());
    if (st == DF_OK) {
        double mean = 0;
        for (int j = 0; j < d->n; j++) {
            double sum = 0;
            for (int i = 0; i <= REF_T; i++) sum += ref[(size_t)j * (REF_T + 1) + i];
            snprintf(what, sizeof what, "%s batch of %d, sample %d total", name, d->n, j);
            compare_term(r.total[j], sum, what);
            mean += sum / d->n;
        }
        snprintf(what, sizeof what, "%s mean", name);
        compare_term(r.mean, mean, what);
        df_bound_result_free(&r);
    }
done:
    df_schedule_free(&s);
}

static void test_reference(void) {
    df_st_file f;
    df_status st = df_st_read(REF_PATH, &f);
    CHECK(st == DF_OK, "%s", df_last_error());
    if (st) return;
    const char *version = df_st_meta(&f, "version"), *T = df_st_meta(&f, "T"), *net_json = df_st_meta(&f, "net");
    CHECK(version && strcmp(version, "2") == 0 && T && atoi(T) == REF_T && net_json && strcmp(net_json, REF_NET_JSON) == 0,
          "%s is stale (version %s, T %s, net %s): regenerate with /usr/bin/python3 tools/bound_reference.py", REF_PATH,
          version ? version : "?", T ? T : "?", net_json ? net_json : "?");
    float images[2 * 16], points[3 * 2], eps_images[2 * REF_T * 16], eps_points[3 * REF_T * 2];
    int64_t s_img[2] = {2, 16}, s_pts[2] = {3, 2}, s_ei[3] = {2, REF_T, 16}, s_ep[3] = {3, REF_T, 2};
    if (!get_f32(&f, "x0/images", 2, s_img, images) || !get_f32(&f, "x0/points", 2, s_pts, points) ||
        !get_f32(&f, "eps/images", 3, s_ei, eps_images) || !get_f32(&f, "eps/points", 3, s_ep, eps_points)) {
        df_st_free(&f);
        return;
    }
    ref_data data[3] = {{"images_clip", 1, 1, images, eps_images, 2, 16},
                        {"images_noclip", 1, 0, images, eps_images, 2, 16},
                        {"points", 0, 0, points, eps_points, 3, 2}};
    worst_rel = 0;
    worst_what[0] = 0;
    int before = check_failures;
    for (int cosine = 0; cosine < 2; cosine++)
        for (int pred = 0; pred < DF_PRED_COUNT; pred++)
            for (int var = 0; var < DF_VAR_COUNT; var++)
                for (int d = 0; d < 3; d++) check_reference_case(cosine, (df_pred)pred, (df_var_kind)var, &data[d], &f);
    printf("reference: 48 cases, worst relative error %.3g (tol %g) at %s%s\n", worst_rel, REF_TOL, worst_what,
           check_failures == before ? "" : " -- FAILED");

    /* The timestep subset: K = 7 evenly spaced t, scaled by (T-1)/K, against the script's estimate. */
    df_schedule s;
    reference_schedule(0, &s);
    fixture_noise fn = {eps_images, REF_T, 16};
    df_bound_params p;
    df_bound_params_init(&p);
    p.K = 7;
    p.noise_fn = fixture_noise_fn;
    p.noise_ctx = &fn;
    linear_net net = net_for(DF_PRED_EPS, REF_T, 16);
    df_bound_result r;
    double want[2];
    const char *subset_t = df_st_meta(&f, "subset_t");
    CHECK(subset_t && strcmp(subset_t, "[2, 3, 6, 10, 16, 25, 41]") == 0, "subset t in the fixture: %s",
          subset_t ? subset_t : "?");
    if (get_f64(&f, "subset/total", 1, 2, want) && df_bound_eval(&s, &p, linear_net_predict, &net, 2, 16, images, &r) == DF_OK) {
        /* geometric strata of 2..50: starts 2 3 5 8 13 20 32 51 */
        static const int t_want[7] = {2, 3, 6, 10, 16, 25, 41}, w_want[7] = {1, 2, 3, 5, 7, 12, 19};
        CHECK(r.estimate == 1 && r.n_t == 7, "subset: estimate %d n_t %d", r.estimate, r.n_t);
        for (int k = 0; k < 7; k++)
            CHECK(r.t_eval[k] == t_want[k] && r.t_weight[k] == w_want[k], "subset t[%d] = %d weight %g, want %d, %d", k,
                  r.t_eval[k], r.t_weight[k], t_want[k], w_want[k]);
        CHECK(net.calls == (2 * 8 + 63) / 64, "subset: %d network calls for 16 evaluations", net.calls);
        compare_term(r.total[0], want[0], "subset K = 7, image 0 total");
        compare_term(r.total[1], want[1], "subset K = 7, image 1 total");
        df_bound_result_free(&r);
    }
    df_schedule_free(&s);
    df_st_free(&f);
}

/* ---------------------------------------------------------------- batch and split independence */
static void test_batch_independence(void) {
    df_schedule s;
    reference_schedule(1, &s);
    enum { N = 5, D = 12 };
    float x0[N * D];
    for (int e = 0; e < N * D; e++) x0[e] = (float)((e * 37 % 256) / 127.5 - 1.0);
    df_bound_params p;
    df_bound_params_init(&p);
    p.pred = DF_PRED_V;
    p.seed = 99;
    df_bound_result ref, r;
    linear_net net = net_for(DF_PRED_V, REF_T, D);
    p.batch = 64;
    ASSERT(df_bound_eval(&s, &p, linear_net_predict, &net, N, D, x0, &ref) == DF_OK);
    CHECK(net.calls == (N * REF_T + 63) / 64 && net.max_n == 64, "batch 64: %d calls, largest %d", net.calls, net.max_n);
    static const int batches[] = {1, 3, 13, 1000};
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        p.batch = batches[b];
        net.calls = net.max_n = 0;
        ASSERT(df_bound_eval(&s, &p, linear_net_predict, &net, N, D, x0, &r) == DF_OK);
        int same = 1;
        for (int j = 0; j < N; j++) same &= r.total[j] == ref.total[j] && r.decoder[j] == ref.decoder[j];
        for (int k = 0; k < r.n_t; k++) same &= r.t_mean[k] == ref.t_mean[k];
        CHECK(same && r.mean == ref.mean, "batch %d: results differ from batch 64 (mean %.17g vs %.17g)", p.batch, r.mean,
              ref.mean);
        CHECK(net.max_n <= p.batch, "batch %d: a network call took %d samples", p.batch, net.max_n);
        df_bound_result_free(&r);
    }
    /* Samples 2..4 alone, with first_index = 2, give the same totals as in the whole set. */
    p.batch = 4;
    p.first_index = 2;
    ASSERT(df_bound_eval(&s, &p, linear_net_predict, &net, 3, D, x0 + 2 * D, &r) == DF_OK);
    for (int j = 0; j < 3; j++)
        CHECK(r.total[j] == ref.total[j + 2], "split: sample %d total %.17g vs %.17g", j + 2, r.total[j], ref.total[j + 2]);
    df_bound_result_free(&r);
    /* Another seed gives other noise. */
    p.first_index = 0;
    p.seed = 100;
    ASSERT(df_bound_eval(&s, &p, linear_net_predict, &net, N, D, x0, &r) == DF_OK);
    CHECK(r.total[0] != ref.total[0], "seed 100 gives the same bound as seed 99");
    df_bound_result_free(&r);
    df_bound_result_free(&ref);
    df_schedule_free(&s);
}

/* ---------------------------------------------------------------- Gaussian data, optimal denoiser */
/* x0 ~ N(m, sd^2) per dimension, denoised by the exact optimal gauss_oracle of oracle.h. */

/* The expected bound per dimension, in closed form. With the optimal mean, mu_q - mu_theta =
 * c0 (x0 - E[x0 | x_t]), whose expected square is c0^2 Var(x0 | x_t), Var = sd^2 (1-ab) / (ab sd^2 + 1-ab):
 *   E L_{t-1} = 0.5 (log(v/pv) + pv/v - 1) + c0^2 Var_t / (2 v)
 *   E L_0     = 0.5 log(2 pi v_1) + Var_1 / (2 v_1)      (c0 = 1, ct = 0 at t = 1)
 *   E L_T     = 0.5 (ab_T E[x0^2] + (1 - ab_T) - 1 - log(1 - ab_T)). */
static double expected_bound_per_dim(const df_schedule *s, df_var_kind var, double m, double sd) {
    int T = s->T;
    double ab_T = s->alphabar[T - 1];
    double sum = 0.5 * (ab_T * (m * m + sd * sd) + (1 - ab_T) - 1 - log(1 - ab_T));
    for (int i = 0; i < T; i++) {
        double ab = s->alphabar[i], post = sd * sd * (1 - ab) / (ab * sd * sd + 1 - ab);
        double v = i == 0 ? s->posterior_var[1] : var == DF_VAR_BETA ? s->beta[i] : s->posterior_var[i];
        double c0 = s->posterior_coef_x0[i];
        if (i == 0) sum += 0.5 * log(2 * M_PI * v) + post / (2 * v);
        else sum += 0.5 * (log(v / s->posterior_var[i]) + s->posterior_var[i] / v - 1) + c0 * c0 * post / (2 * v);
    }
    return sum;
}

static void test_gaussian_optimal(void) {
    df_schedule s;
    df_schedule_params sp;
    df_schedule_params_init(&sp);  /* linear, T = 1000, beta 1e-4 .. 0.02 (Ho et al.) */
    ASSERT(df_schedule_new(&sp, &s) == DF_OK);
    enum { N = 1500 };
    const double m[2] = {0.3, -0.2}, sd = 0.5;
    float *x0 = malloc(sizeof(float) * 2 * N);
    double nll_mean = 0;
    for (int j = 0; j < N; j++) {
        df_randn(7, DF_STREAM_USER + 50, (uint32_t)j, 0, x0 + 2 * j, 2);
        for (int k = 0; k < 2; k++) x0[2 * j + k] = (float)(m[k] + sd * x0[2 * j + k]);
    }
    double *gap = malloc(sizeof(double) * N);
    /* The expected gap per dimension, E[bound] - E[-log N(x0; m, sd^2)] (nats), measured from the
     * closed form for this schedule: 0.1147 (beta), 0.5699 (posterior). It is not small: with the
     * variance fixed, the reverse steps cannot match the true posterior's spread (Nichol & Dhariwal
     * 2021, section 3.1, learn it for this reason); the decoder alone costs ~0.05 nats/dim here. */
    static const double gap_limit[DF_VAR_COUNT] = {[DF_VAR_POSTERIOR] = 0.58, [DF_VAR_BETA] = 0.12};
    for (int var = 0; var < DF_VAR_COUNT; var++) {
        gauss_oracle o = {&s, DF_PRED_EPS, {m[0], m[1]}, {sd, sd}};
        df_bound_params p;
        df_bound_params_init(&p);
        p.var = (df_var_kind)var;
        p.discrete = 0;
        p.clip_x0 = 0;
        p.batch = 256;
        p.seed = 3;
        df_bound_result r;
        double t0 = df_time();
        df_status st = df_bound_eval(&s, &p, gauss_oracle_predict, &o, N, 2, x0, &r);
        CHECK(st == DF_OK, "gaussian: %s", df_last_error());
        if (st) continue;
        double el = df_time() - t0;
        /* the prior, per point, against KL(N(sqrt(ab) x0, 1 - ab) || N(0, 1)) written out */
        double ab_T = s.alphabar[s.T - 1], worst = 0;
        for (int j = 0; j < N; j++) {
            double want = 0;
            for (int k = 0; k < 2; k++) {
                double mu = sqrt(ab_T) * x0[2 * j + k], v = 1 - ab_T;
                want += 0.5 * (mu * mu + v - 1 - log(v));
            }
            /* v - 1 - log(v) cancels to ~ab^2/2: 1 - ab carries ~1e-16 absolute error per value */
            worst = fmax(worst, fabs(r.prior[j] - want) / (want + 1e-7));
        }
        CHECK(worst < 1e-8, "gaussian prior: worst error %.3g relative to (value + 1e-7) (tol 1e-8: the cancellation above)",
              worst);
        /* true NLL per point and the gap */
        nll_mean = 0;
        for (int j = 0; j < N; j++) {
            double nll = 0;
            for (int k = 0; k < 2; k++) {
                double z = (x0[2 * j + k] - m[k]) / sd;
                nll += 0.5 * log(2 * M_PI * sd * sd) + 0.5 * z * z;
            }
            nll_mean += nll / N;
            gap[j] = r.total[j] - nll;
        }
        double g_mean = 0, g_var = 0;
        for (int j = 0; j < N; j++) g_mean += gap[j] / N;
        for (int j = 0; j < N; j++) g_var += (gap[j] - g_mean) * (gap[j] - g_mean) / (N - 1);
        double g_se = sqrt(g_var / N);
        double expect = expected_bound_per_dim(&s, (df_var_kind)var, m[0], sd) + expected_bound_per_dim(&s, (df_var_kind)var, m[1], sd);
        double true_nll = 2 * (0.5 * log(2 * M_PI * sd * sd) + 0.5);
        double expect_gap = expect - true_nll;
        printf("gaussian (%s): bound %.4f +- %.4f nats/point (closed form %.4f), true NLL %.4f (sample %.4f), "
               "gap %.4f +- %.4f nats/dim (closed form %.4f); %d x %d evaluations in %.2f s\n",
               df_var_name((df_var_kind)var), r.mean, r.se, expect, true_nll, nll_mean, g_mean / 2, g_se / 2, expect_gap / 2,
               N, s.T, el);
        /* 4 standard errors: a false failure has probability ~6e-5 (normal approximation, N = 1500) */
        CHECK(fabs(r.mean - expect) < 4 * r.se, "gaussian (%s): bound %.5f, closed form %.5f, 4 SE = %.5f",
              df_var_name((df_var_kind)var), r.mean, expect, 4 * r.se);
        CHECK(fabs(g_mean - expect_gap) < 4 * g_se, "gaussian (%s): gap %.5f, closed form %.5f, 4 SE = %.5f",
              df_var_name((df_var_kind)var), g_mean, expect_gap, 4 * g_se);
        CHECK(expect_gap > 0 && g_mean - 4 * g_se > 0, "gaussian (%s): the bound (%.5f) must exceed the true NLL (%.5f)",
              df_var_name((df_var_kind)var), r.mean, nll_mean);
        CHECK(expect_gap / 2 < gap_limit[var], "gaussian (%s): expected gap %.4f nats/dim, limit %g",
              df_var_name((df_var_kind)var), expect_gap / 2, gap_limit[var]);
        CHECK(!r.estimate && r.n_t == s.T - 1, "gaussian: all terms");
        /* The same optimal model in the other parameterisations gives the same bound (the mean is
         * the same function; float rounding of the outputs differs, hence 1e-4 relative). */
        for (int pred = 1; pred < DF_PRED_COUNT && var == DF_VAR_BETA; pred++) {
            df_bound_result r2;
            o.pred = (df_pred)pred;
            p.pred = (df_pred)pred;
            if (df_bound_eval(&s, &p, gauss_oracle_predict, &o, 100, 2, x0, &r2) != DF_OK) {
                CHECK(0, "gaussian (%s): %s", df_pred_name((df_pred)pred), df_last_error());
                continue;
            }
            double w = 0;
            for (int j = 0; j < 100; j++) w = fmax(w, fabs(r2.total[j] - r.total[j]) / fabs(r.total[j]));
            CHECK(w < 1e-4, "gaussian: %s-parameterised optimal model differs from eps by %.3g relative (tol 1e-4)",
                  df_pred_name((df_pred)pred), w);
            df_bound_result_free(&r2);
        }
        df_bound_result_free(&r);
    }
    free(gap);
    free(x0);
    df_schedule_free(&s);
}

/* ---------------------------------------------------------------- errors */
static int stop_after_two(void *ctx, long done, long total) {
    int *calls = ctx;
    (void)done;
    (void)total;
    return ++*calls >= 2;
}

/* The strata cover 2..T exactly once: weights are positive and sum to T - 1, each t lies in its own
 * stratum, t ascends; K = T - 1 gives every t with weight 1. */
static void test_timestep_strata(void) {
    static const int cases[][2] = {{2, 1}, {50, 7}, {50, 49}, {1000, 1}, {1000, 50}, {1000, 100}, {1000, 999}, {4000, 300}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int T = cases[c][0], K = cases[c][1], t[4000], ok = 1;
        double w[4000], sum = 0, lo = 2;
        df_bound_timesteps(T, K, t, w);
        for (int k = 0; k < K; k++) {
            ok &= w[k] >= 1 && t[k] >= lo && t[k] < lo + w[k] && (k == 0 || t[k] > t[k - 1]);
            if (K == T - 1) ok &= t[k] == k + 2 && w[k] == 1;
            lo += w[k];
            sum += w[k];
        }
        CHECK(ok && sum == T - 1, "strata T %d K %d: ordered and covering (sum of weights %g)", T, K, sum);
    }
    int t[100];
    double w[100];
    df_bound_timesteps(1000, 100, t, w);
    int ones = 0;
    while (ones < 100 && w[ones] == 1) ones++;
    /* the steep start is evaluated term by term: the first 15 strata are single timesteps */
    CHECK(ones >= 15 && t[0] == 2 && t[ones - 1] == ones + 1, "T 1000 K 100: %d single-t strata first", ones);
}

static void test_errors(void) {
    df_schedule s;
    reference_schedule(0, &s);
    float x0[2 * 4] = {-1, -0.5f, 0.5f, 1, 0, 0.25f, -0.25f, 1};
    df_bound_params p;
    df_bound_params_init(&p);
    linear_net net = net_for(DF_PRED_EPS, REF_T, 4);
    df_bound_result r;
    p.K = REF_T;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_ARG && r.block == NULL, "K = T accepted");
    CHECK(strstr(df_last_error(), "0..49") != NULL, "K message: %s", df_last_error());
    p.K = -1;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_ARG, "K = -1 accepted");
    p.K = REF_T - 1;  /* = all: not an estimate */
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_OK && !r.estimate && r.t_weight[0] == 1.0,
          "K = T-1 is the whole bound");
    df_bound_result_free(&r);
    p.K = 0;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 0, 4, x0, &r) == DF_ERR_ARG, "n = 0 accepted");
    p.batch = 0;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_ARG, "batch 0 accepted");
    p.batch = 64;
    x0[3] = 1.5f;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_ARG, "image value 1.5 accepted");
    CHECK(strstr(df_last_error(), "[-1, 1]") != NULL, "range message: %s", df_last_error());
    p.discrete = 0;  /* continuous data may lie anywhere */
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_OK, "continuous 1.5 refused");
    df_bound_result_free(&r);
    x0[3] = NAN;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_ARG, "NaN data accepted");
    x0[3] = 1;
    p.batch = 8;
    net.calls = 0;
    net.fail_at_call = 3;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_NAN && r.block == NULL,
          "NaN output accepted");
    CHECK(strstr(df_last_error(), "non-finite") != NULL, "NaN message: %s", df_last_error());
    net.calls = 0;
    net.fail_status = DF_ERR_IO;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_IO, "network error not passed on");
    net.fail_at_call = 0;
    int calls = 0;
    p.progress = stop_after_two;
    p.progress_ctx = &calls;
    CHECK(df_bound_eval(&s, &p, linear_net_predict, &net, 2, 4, x0, &r) == DF_ERR_INTERRUPTED && calls == 2 &&
              r.block == NULL,
          "progress stop: calls %d", calls);
    df_schedule_free(&s);
}

int main(void) {
    test_reference();
    test_batch_independence();
    test_gaussian_optimal();
    test_timestep_strata();
    test_errors();
    return check_exit_code("test_bound");
}
