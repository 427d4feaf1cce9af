/* test_diffusion.c: the note's mathematics in isolation: RNG known answers, every schedule against
 * its closed form, the posterior and parameterisation identities, the loss and its gradient, and
 * both samplers against an oracle denoiser for Gaussian data. */
#include "check.h"
#include "common.h"
#include "oracle.h"
#include "safetensors.h"
#include <math.h>
#include <string.h>

static void test_philox(void) {
    /* Known-answer vectors of Random123 (kat_vectors, philox4x32 with 10 rounds). */
    uint32_t out[4];
    uint32_t c0[4] = {0, 0, 0, 0};
    df_philox4x32(c0, 0, out);
    CHECK(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u,
          "zero vector: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    uint32_t c1[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    df_philox4x32(c1, 0xffffffffffffffffull, out);
    CHECK(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u && out[3] == 0x6d5451fdu,
          "ones vector: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);
    uint32_t c2[4] = {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
    df_philox4x32(c2, ((uint64_t)0x299f31d0u << 32) | 0xa4093822u, out);
    CHECK(out[0] == 0xd16cfe09u && out[1] == 0x94fdccebu && out[2] == 0x5001e420u && out[3] == 0x24126ea1u,
          "pi vector: %08x %08x %08x %08x", out[0], out[1], out[2], out[3]);

    /* normals: moments of 200k draws (SE of the mean 0.0022, of the variance 0.0032) */
    enum { N = 200000 };
    static float z[N];
    df_randn(42, DF_STREAM_USER, 1, 2, z, N);
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += z[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (z[i] - m) * (z[i] - m);
    v /= N;
    CHECK(fabs(m) < 0.011 && fabs(v - 1) < 0.016, "randn mean %g var %g", m, v);
    /* a prefix of a longer draw equals the shorter draw: element e depends only on its counter */
    float a[7], b[3];
    df_randn(42, DF_STREAM_USER, 1, 2, a, 7);
    df_randn(42, DF_STREAM_USER, 1, 2, b, 3);
    CHECK(memcmp(a, b, sizeof b) == 0 && memcmp(a, z, sizeof a) == 0, "randn prefix stability");
    for (int i = 0; i < 1000; i++) {
        uint32_t r = df_rand_below(7, 1, 2, 3, (uint32_t)i, 10);
        CHECK(r < 10, "rand_below out of range: %u", r);
    }
}

static double closed_form_beta(const df_schedule_params *p, int t) {
    double u = (double)(t - 1) / (p->T - 1), b0 = p->beta_start, b1 = p->beta_end;
    switch (p->kind) {
    case DF_SCHEDULE_LINEAR: return b0 + (b1 - b0) * u;
    case DF_SCHEDULE_QUADRATIC: return pow(sqrt(b0) + u * (sqrt(b1) - sqrt(b0)), 2);
    case DF_SCHEDULE_EXPONENTIAL: return exp(log(b0) + u * (log(b1) - log(b0)));
    case DF_SCHEDULE_SIGMOID: return b0 + (b1 - b0) / (1 + exp(6 - 12 * u));
    default: return NAN;
    }
}

static double cosine_alphabar(int t, int T, double s) {
    double f = cos((t / (double)T + s) / (1 + s) * M_PI / 2), f0 = cos(s / (1 + s) * M_PI / 2);
    return f * f / (f0 * f0);
}

static void test_schedules(void) {
    int ts[] = {1, 2, 10, 250, 500, 999, 1000};
    for (int k = 0; k < DF_SCHEDULE_COUNT; k++) {
        df_schedule_params p;
        df_schedule_params_init(&p);
        p.kind = (df_schedule_kind)k;
        df_schedule s;
        CHECK(df_schedule_new(&p, &s) == DF_OK, "schedule %s", df_schedule_name(p.kind));
        char what[96];
        for (size_t j = 0; j < sizeof ts / sizeof *ts; j++) {
            int t = ts[j], i = t - 1;
            snprintf(what, sizeof what, "%s t=%d", df_schedule_name(p.kind), t);
            if (p.kind == DF_SCHEDULE_COSINE) {
                /* alphabar(t) = f(t)/f(0) wherever beta was not clipped at 0.999 (all t < T here) */
                if (t < p.T) CHECK_CLOSE(s.alphabar[i], cosine_alphabar(t, p.T, p.cosine_s), 1e-12, what);
                else CHECK_CLOSE(s.beta[i], 0.999, 1e-15, what);
            } else {
                CHECK_CLOSE(s.beta[i], closed_form_beta(&p, t), 1e-14, what);
            }
            /* derived quantities, from their definitions */
            double ab = 1;
            for (int q = 0; q <= i; q++) ab *= 1 - s.beta[q];
            CHECK_CLOSE(s.alphabar[i], ab, 1e-13, what);
            double abp = i ? s.alphabar[i - 1] : 1.0;
            CHECK_CLOSE(s.alphabar_prev[i], abp, 1e-15, what);
            CHECK_CLOSE(s.sqrt_one_minus_alphabar[i], sqrt(1 - ab), 1e-13, what);
            CHECK_CLOSE(s.posterior_var[i], s.beta[i] * (1 - abp) / (1 - ab), 1e-13, what);
            CHECK_CLOSE(s.posterior_coef_x0[i], sqrt(abp) * s.beta[i] / (1 - ab), 1e-13, what);
            CHECK_CLOSE(s.posterior_coef_xt[i], sqrt(1 - s.beta[i]) * (1 - abp) / (1 - ab), 1e-13, what);
        }
        CHECK(s.posterior_var[0] == 0, "posterior_var at t=1 must be 0");
        CHECK(s.posterior_log_var_clipped[0] == log(s.posterior_var[1]), "clipped log variance at t=1");
        int ok = s.alphabar[0] < 1 && s.alphabar[0] > 0;
        for (int i = 1; i < s.T; i++) ok &= s.alphabar[i] < s.alphabar[i - 1] && s.alphabar[i] > 0;
        CHECK(ok, "%s: alphabar strictly decreasing in (0, 1]", df_schedule_name(p.kind));
        df_schedule_free(&s);
    }
    /* linear endpoints, as in Ho et al. */
    df_schedule_params p;
    df_schedule_params_init(&p);
    df_schedule s;
    df_schedule_new(&p, &s);
    CHECK(s.beta[0] == 1e-4 && fabs(s.beta[999] - 0.02) < 1e-17, "linear endpoints");
    df_schedule_free(&s);
    /* bad parameters are refused */
    p.T = 1;
    CHECK(df_schedule_new(&p, &s) == DF_ERR_ARG, "T=1 refused");
    df_schedule_params_init(&p);
    p.beta_end = 1.5;
    CHECK(df_schedule_new(&p, &s) == DF_ERR_ARG, "beta_end > 1 refused");
    df_schedule_params_init(&p);
    p.beta_start = p.beta_end = 1e-300;  /* 1 - beta == 1 in double: alphabar stays 1 (a fuzzer's find) */
    CHECK(df_schedule_new(&p, &s) == DF_ERR_ARG, "betas that vanish in 1 - beta refused");
}

static void test_identities(void) {
    df_schedule_params p;
    df_schedule_params_init(&p);
    df_schedule s;
    df_schedule_new(&p, &s);
    enum { D = 64 };
    float x0[D], eps[D], xt[D], mu_a[D], mu_b[D], tmp[D], back[D], out[D], mu_o[D], tgt[D];
    int is[] = {0, 1, 5, 100, 500, 998, 999};
    for (size_t j = 0; j < sizeof is / sizeof *is; j++) {
        int i = is[j];
        df_randn(1, DF_STREAM_USER, (uint32_t)i, 0, x0, D);
        df_randn(1, DF_STREAM_USER, (uint32_t)i, 1, eps, D);
        df_q_sample(&s, i, x0, eps, xt, D);
        /* mu_q(x_t, x0) == 1/sqrt(alpha)(x_t - (1-alpha)/sqrt(1-alphabar) eps) (the note, noise section) */
        double var = df_q_posterior(&s, i, x0, xt, mu_a, D), worst = 0;
        for (int k = 0; k < D; k++) {
            mu_b[k] = (float)((xt[k] - s.beta[i] / s.sqrt_one_minus_alphabar[i] * eps[k]) / sqrt(s.alpha[i]));
            worst = fmax(worst, fabs(mu_a[k] - mu_b[k]));
        }
        /* float rounding of x_t is amplified by 1/sqrt(alpha) only: 1e-5 absolute is ample */
        CHECK(worst < 1e-5, "mu_q identity at i=%d: worst %g", i, worst);
        CHECK(var == s.posterior_var[i], "posterior variance");

        for (int a = 0; a < DF_PRED_COUNT; a++) {
            /* targets are consistent conversions of each other */
            df_pred_target(&s, i, (df_pred)a, x0, eps, xt, tgt, D);
            for (int b = 0; b < DF_PRED_COUNT; b++) {
                df_pred_convert(&s, i, (df_pred)a, (df_pred)b, xt, tgt, tmp, D);
                df_pred_convert(&s, i, (df_pred)b, (df_pred)a, xt, tmp, back, D);
                double w1 = 0, w2 = 0;
                float want[D];
                df_pred_target(&s, i, (df_pred)b, x0, eps, xt, want, D);
                for (int k = 0; k < D; k++) {
                    w1 = fmax(w1, fabs(back[k] - tgt[k]) / fmax(1, fabs(tgt[k])));
                    w2 = fmax(w2, fabs(tmp[k] - want[k]) / fmax(1, fabs(want[k])));
                }
                /* Conversions divide by sqrt(alphabar) (>= 0.006) or coef_x0 (>= 1.6e-4... at large t);
                 * in float the round trip keeps ~1e-3 relative at worst; exact in double. */
                CHECK(w1 < 2e-3, "round trip %s->%s->%s at i=%d: %g", df_pred_name(a), df_pred_name(b), df_pred_name(a), i, w1);
                CHECK(w2 < 2e-3, "target %s converted to %s at i=%d: %g", df_pred_name(a), df_pred_name(b), i, w2);
            }
            /* KL invariance: weight * ||target - out||^2 == ||mu_q - mu_theta||^2 / (2 sigma^2) */
            df_randn(1, DF_STREAM_USER, (uint32_t)i, 2 + a, out, D);
            for (int k = 0; k < D; k++) out[k] = tgt[k] + 0.1f * out[k];
            df_pred_convert(&s, i, (df_pred)a, DF_PRED_MEAN, xt, out, mu_o, D);
            double sq_out = 0, sq_mu = 0;
            for (int k = 0; k < D; k++) {
                sq_out += (double)(out[k] - tgt[k]) * (out[k] - tgt[k]);
                sq_mu += (double)(mu_o[k] - mu_a[k]) * (mu_o[k] - mu_a[k]);
            }
            for (int vk = 0; vk < DF_VAR_COUNT; vk++) {
                double s2 = df_model_var(&s, (df_var_kind)vk, i);
                double lhs = df_vlb_weight(&s, (df_pred)a, (df_var_kind)vk, i) * sq_out, rhs = sq_mu / (2 * s2);
                char what[64];
                snprintf(what, sizeof what, "KL invariance %s i=%d", df_pred_name(a), i);
                /* mu is computed in float from the outputs, and mu_q - mu_theta is a small difference of
                 * large numbers near t = T (cancellation of ~3 digits): 5e-3 relative covers its rounding;
                 * the weights themselves are checked to 1e-12 against the note's formulas below. */
                CHECK_CLOSE(lhs / rhs, 1.0, 5e-3, what);
            }
        }
        /* the note's weights, written out as in the note (x0 coefficient squared, see the docs) */
        double s2 = df_model_var(&s, DF_VAR_POSTERIOR, i), a_ = s.alpha[i], ab = s.alphabar[i], abp = s.alphabar_prev[i];
        CHECK_CLOSE(df_vlb_weight(&s, DF_PRED_MEAN, DF_VAR_POSTERIOR, i), 1 / (2 * s2), 1e-12, "mean weight");
        CHECK_CLOSE(df_vlb_weight(&s, DF_PRED_X0, DF_VAR_POSTERIOR, i),
                    pow(sqrt(abp) * (1 - a_) / (1 - ab), 2) / (2 * s2), 1e-12, "x0 weight");
        CHECK_CLOSE(df_vlb_weight(&s, DF_PRED_EPS, DF_VAR_POSTERIOR, i),
                    (1 - a_) * (1 - a_) / ((1 - ab) * a_) / (2 * s2), 1e-12, "eps weight");
    }
    /* q_step applied t times matches q_sample in distribution: check the variance of x_t from x0 = 0 */
    enum { M = 20000 };
    static float x[M], e[M];
    memset(x, 0, sizeof x);
    for (int i = 0; i < 50; i++) {
        df_randn(3, DF_STREAM_USER, (uint32_t)i, 0, e, M);
        df_q_step(&s, i, x, e, x, M);
    }
    double v = 0;
    for (int k = 0; k < M; k++) v += (double)x[k] * x[k];
    v /= M;
    /* Var = 1 - alphabar_50 (~0.0143); SE of a variance estimate is sqrt(2/M) relative = 1% */
    CHECK(fabs(v / (1 - s.alphabar[49]) - 1) < 0.05, "q_step variance %g vs %g", v, 1 - s.alphabar[49]);
    df_schedule_free(&s);
}

static void test_loss(void) {
    df_schedule_params p;
    df_schedule_params_init(&p);
    df_schedule s;
    df_schedule_new(&p, &s);
    enum { N = 3, D = 5 };
    float out[N * D], tgt[N * D], dout[N * D];
    int t[N] = {0, 400, 999};
    df_randn(9, DF_STREAM_USER, 0, 0, out, N * D);
    df_randn(9, DF_STREAM_USER, 0, 1, tgt, N * D);
    for (int lk = 0; lk < DF_LOSS_COUNT; lk++) {
        double L = df_loss(&s, DF_PRED_EPS, (df_loss_kind)lk, DF_VAR_POSTERIOR, N, D, t, out, tgt, dout);
        double want = 0;
        for (int b = 0; b < N; b++) {
            double w = lk == DF_LOSS_VLB ? df_vlb_weight(&s, DF_PRED_EPS, DF_VAR_POSTERIOR, t[b]) : 1;
            for (int k = 0; k < D; k++) want += w * pow((double)out[b * D + k] - (double)tgt[b * D + k], 2) / (N * D);
        }
        CHECK_CLOSE(L, want, 1e-12, df_loss_name(lk));
        for (int e = 0; e < N * D; e++) {  /* central differences: the loss is quadratic, so exact up to rounding */
            float keep = out[e];
            double h = 1e-3;
            out[e] = keep + (float)h;
            double lp = df_loss(&s, DF_PRED_EPS, (df_loss_kind)lk, DF_VAR_POSTERIOR, N, D, t, out, tgt, NULL);
            out[e] = keep - (float)h;
            double lm = df_loss(&s, DF_PRED_EPS, (df_loss_kind)lk, DF_VAR_POSTERIOR, N, D, t, out, tgt, NULL);
            out[e] = keep;
            double fd = (lp - lm) / (2 * h);
            CHECK(fabs(fd - dout[e]) <= 1e-3 * fmax(fabs(fd), 1e-2), "%s dL/dout[%d]: fd %g analytic %g",
                  df_loss_name(lk), e, fd, dout[e]);
        }
    }
    float m1[4] = {0, 1, 2, 3}, m2[4] = {1, 1, 2, 2};
    CHECK_CLOSE(df_kl_gaussian(m1, 0.5, m2, 2.0, 4), 4 * 0.5 * (log(4.0) + 0.25 - 1) + 0.5 * 2 / 2.0, 1e-12, "KL");
    df_schedule_free(&s);
}

static void moments(const float *x, int n, int k, double *mean, double *var) {
    double m = 0, v = 0;
    for (int j = 0; j < n; j++) m += x[j * 2 + k];
    m /= n;
    for (int j = 0; j < n; j++) v += (x[j * 2 + k] - m) * (x[j * 2 + k] - m);
    *mean = m;
    *var = v / (n - 1);
}

static void test_sampler_oracle(void) {
    df_schedule_params p;
    df_schedule_params_init(&p);
    df_schedule s;
    df_schedule_new(&p, &s);
    enum { N = 4000 };
    static float x[N * 2], y[N * 2];
    gauss_oracle o = {&s, DF_PRED_EPS, {0.7, -1.2}, {0.5, 0.2}};
    struct { df_sampler_kind kind; double eta; df_pred pred; df_var_kind var; } cases[] = {
        {DF_SAMPLER_ANCESTRAL, 0, DF_PRED_EPS, DF_VAR_POSTERIOR},
        {DF_SAMPLER_ANCESTRAL, 0, DF_PRED_X0, DF_VAR_BETA},
        {DF_SAMPLER_ANCESTRAL, 0, DF_PRED_MEAN, DF_VAR_POSTERIOR},
        {DF_SAMPLER_DDIM, 0.0, DF_PRED_EPS, DF_VAR_POSTERIOR},
        {DF_SAMPLER_DDIM, 1.0, DF_PRED_V, DF_VAR_POSTERIOR},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        df_sample_params sp;
        df_sample_params_init(&sp);
        sp.sampler = cases[c].kind;
        sp.eta = cases[c].eta;
        sp.var = cases[c].var;
        /* DDIM with S = T: the small-step limit, where the oracle makes it exact up to sampling error.
         * (With S = 100 the variance comes out 7-16% low: x0|x_t uncertainty ignored over big steps.) */
        sp.steps = 1000;
        sp.seed = 11;
        sp.batch = 500;
        o.pred = cases[c].pred;
        CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, N, 2, 0, x, NULL, NULL) == DF_OK, "sample");
        for (int k = 0; k < 2; k++) {
            double m, v, sd = o.sd[k];
            moments(x, N, k, &m, &v);
            /* 4 standard errors: SE(mean) = sd/sqrt(N), SE(var) = sd^2 sqrt(2/N); plus 3% for the
             * discretisation of the reverse process (a few-step DDIM is not exact even with the oracle) */
            double tol_m = 4 * sd / sqrt(N), tol_v = 4 * sd * sd * sqrt(2.0 / N) + 0.03 * sd * sd;
            printf("  %s eta=%.0f pred=%s var=%s dim %d: mean %.4f (want %.2f) var %.4f (want %.4f)\n",
                   df_sampler_name(sp.sampler), sp.eta, df_pred_name(o.pred), df_var_name(sp.var), k, m, o.m[k], v, sd * sd);
            CHECK(fabs(m - o.m[k]) < tol_m, "mean %g vs %g (tol %g)", m, o.m[k], tol_m);
            CHECK(fabs(v - sd * sd) < tol_v, "var %g vs %g (tol %g)", v, sd * sd, tol_v);
        }
        /* the same seed gives the same samples, whatever the batch size; and an offset
         * first_index reproduces the tail */
        sp.batch = 37;
        df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, N, 2, 0, y, NULL, NULL);
        CHECK(memcmp(x, y, sizeof x) == 0, "batch size changed the samples");
        df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 10, 2, N - 10, y, NULL, NULL);
        CHECK(memcmp(x + (N - 10) * 2, y, 10 * 2 * sizeof(float)) == 0, "first_index offset");
    }
    df_schedule_free(&s);
}

/* Applications: inpainting holds the known dims exactly and leaves the free dims' distribution
 * alone (the oracle's dims are independent); editing from a small t stays close to the input,
 * and from t = T it samples the data distribution. */
static void test_applications(void) {
    df_schedule_params p;
    df_schedule_params_init(&p);
    df_schedule s;
    df_schedule_new(&p, &s);
    enum { N = 4000 };
    static float x[N * 2];
    gauss_oracle o = {&s, DF_PRED_EPS, {0.7, -1.2}, {0.5, 0.2}};
    float known[2] = {0.25f, 3.0f}, mask[2] = {0, 1};
    df_sample_params sp;
    df_sample_params_init(&sp);
    sp.seed = 5;
    sp.batch = 1000;
    sp.known = known;
    sp.mask = mask;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, N, 2, 0, x, NULL, NULL) == DF_OK, "inpaint");
    int exact = 1;
    for (int j = 0; j < N; j++) exact &= x[2 * j + 1] == 3.0f;
    CHECK(exact, "inpainting keeps the known dimension exactly");
    double m, v;
    moments(x, N, 0, &m, &v);
    CHECK(fabs(m - 0.7) < 4 * 0.5 / sqrt(N) && fabs(v - 0.25) < 4 * 0.25 * sqrt(2.0 / N) + 0.03 * 0.25,
          "inpainting: free dim mean %g var %g", m, v);

    float init[2] = {0.1f, -0.9f};
    sp.known = sp.mask = NULL;
    sp.init = init;
    /* sqrt(1 - alphabar_21) ~ 0.07 per dimension: the noise moves a point by ~0.1 and the pull
     * towards the data a few hundredths more; sampling from scratch would move it by ~0.8. */
    sp.t_start = 20;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, N, 2, 0, x, NULL, NULL) == DF_OK, "edit");
    double moved = 0;
    for (int j = 0; j < N; j++) moved += hypot(x[2 * j] - init[0], x[2 * j + 1] - init[1]) / N;
    CHECK(moved < 0.2, "editing from t=21 moved points by %g on average", moved);
    printf("  editing from t=21: mean displacement %.4f\n", moved);
    sp.t_start = 999;
    sp.sampler = DF_SAMPLER_DDIM;
    sp.eta = 1.0;
    sp.steps = 1000;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, N, 2, 0, x, NULL, NULL) == DF_OK, "edit from T");
    moments(x, N, 1, &m, &v);
    CHECK(fabs(m + 1.2) < 4 * 0.2 / sqrt(N) + 0.01 && fabs(v - 0.04) < 4 * 0.04 * sqrt(2.0 / N) + 0.03 * 0.04,
          "editing from T: mean %g var %g", m, v);
    sp.t_start = 1000;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 1, 2, 0, x, NULL, NULL) == DF_ERR_ARG,
          "t_start out of range");
    df_schedule_free(&s);
}

typedef struct {
    int steps;
    df_pred pred;
} fixture_case;

/* The sampler from each case's x_T in `path` (tools/dpm_reference.py: float32 (3, 2, N, 2), [c][0]
 * x_T, [c][1] the reference x_0) against the reference, to 1e-5; UniPC must also differ from
 * DPM++(2M), or its corrector did nothing. */
static void check_against_fixture(const char *path, df_sampler_kind kind, const fixture_case cases[3],
                                  const df_schedule *s) {
    int nd;
    int64_t shape[8];
    float *ref = NULL;
    CHECK(df_npy_read_f32(path, &nd, shape, &ref) == DF_OK, "fixture: %s", df_last_error());
    if (!ref || nd != 4 || shape[0] != 3 || shape[1] != 2 || shape[3] != 2) {
        CHECK(0, "%s: want (3, 2, N, 2)", path);
        df_free(ref);
        return;
    }
    const int n = (int)shape[2];
    float *x = df_alloc(sizeof(float) * n * 2, "x"), *y = df_alloc(sizeof(float) * n * 2, "y");
    for (int c = 0; c < 3; c++) {
        gauss_oracle o = {s, cases[c].pred, {0.7, -1.2}, {0.5, 0.2}};
        df_sample_params sp;
        df_sample_params_init(&sp);
        sp.steps = cases[c].steps;
        sp.x_T_given = 1;
        const float *xT = ref + (size_t)c * 2 * n * 2, *want = xT + n * 2;
        memcpy(x, xT, sizeof(float) * n * 2);
        memcpy(y, xT, sizeof(float) * n * 2);
        sp.sampler = kind;
        CHECK(df_sample(s, o.pred, &sp, gauss_oracle_predict, &o, n, 2, 0, x, NULL, NULL) == DF_OK, "sample");
        sp.sampler = DF_SAMPLER_DPMPP_2M;
        df_sample(s, o.pred, &sp, gauss_oracle_predict, &o, n, 2, 0, y, NULL, NULL);
        double err = 0, moved = 0;
        for (int j = 0; j < n * 2; j++) {
            err = fmax(err, fabs((double)x[j] - want[j]));
            moved = fmax(moved, fabs((double)x[j] - y[j]));
        }
        printf("  %s %d steps pred %s from given x_T vs NumPy: max abs diff %.2e (tol 1e-5)\n", df_sampler_name(kind),
               sp.steps, df_pred_name(o.pred), err);
        CHECK(err < 1e-5, "%s vs tools/dpm_reference.py: %g", df_sampler_name(kind), err);
        if (kind == DF_SAMPLER_UNIPC)
            CHECK(moved > 1e-4, "the corrector changes the result (%g from dpm++2m)", moved);
    }
    df_free(x);
    df_free(y);
    df_free(ref);
}

/* DPM-Solver++(2M): (a) with the oracle, 20 steps sample the data distribution (the solver follows
 * the probability-flow ODE, which maps N(0, I) onto the data exactly for Gaussian data); (b) order 1
 * is DDIM with eta 0 on the same timesteps; (c) from given x_T, it matches an independent NumPy
 * implementation of the paper's formulas in diffusers' sigma form (tools/dpm_reference.py) to 1e-5. */
static void test_dpmpp(void) {
    df_schedule_params p;
    df_schedule_params_init(&p);
    df_schedule s;
    df_schedule_new(&p, &s);
    enum { N = 4000 };
    static float x[N * 2], y[N * 2];
    gauss_oracle o = {&s, DF_PRED_EPS, {0.7, -1.2}, {0.5, 0.2}};
    df_sample_params sp;
    df_sample_params_init(&sp);
    sp.sampler = DF_SAMPLER_DPMPP_2M;
    sp.steps = 20;
    sp.seed = 5;
    sp.batch = 1000;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, N, 2, 0, x, NULL, NULL) == DF_OK, "dpm++2m: %s",
          df_last_error());
    /* The last step goes to sigma = 0 from the smallest timestep t1 = round(999 / 20) = 50 and so
     * returns E[x0 | x_t1]: the data's mean, and the variance of that posterior mean, sd^2 times
     * ab sd^2 / (ab sd^2 + 1 - ab) at t1 (diffusers' final_sigmas_type "zero" does the same). */
    const double ab1 = s.alphabar[50];
    for (int k = 0; k < 2; k++) {
        double m, v, sd = o.sd[k], want_v = sd * sd * (ab1 * sd * sd) / (ab1 * sd * sd + 1 - ab1);
        moments(x, N, k, &m, &v);
        double tol_m = 4 * sd / sqrt(N), tol_v = 4 * want_v * sqrt(2.0 / N) + 0.02 * want_v;
        printf("  dpm++2m 20 steps dim %d: mean %.4f (want %.2f) var %.4f (want %.4f, E[x0 | x_50])\n", k, m, o.m[k],
               v, want_v);
        CHECK(fabs(m - o.m[k]) < tol_m, "dpm++2m mean %g vs %g", m, o.m[k]);
        CHECK(fabs(v - want_v) < tol_v, "dpm++2m var %g vs %g", v, want_v);
    }
    /* (b) first order = DDIM eta 0, on explicit timesteps */
    int ts[7] = {3, 90, 250, 400, 611, 800, 999};
    sp.steps = 7;
    sp.timesteps = ts;
    sp.order = 1;
    df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 500, 2, 0, x, NULL, NULL);
    sp.sampler = DF_SAMPLER_DDIM;
    sp.eta = 0.0;
    df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 500, 2, 0, y, NULL, NULL);
    double worst = 0;
    for (int j = 0; j < 500 * 2; j++) worst = fmax(worst, fabs((double)x[j] - y[j]) / (1 + fabs((double)y[j])));
    printf("  dpm++ order 1 vs DDIM eta 0 on 7 given timesteps: max rel diff %.2e\n", worst);
    CHECK(worst < 1e-5, "first-order DPM-Solver++ should be DDIM eta 0: %g", worst);
    /* diffusers' spacing rounds half to even, as NumPy does: at S = 6, linspace(0, 999, 7) has
     * 166.5, 499.5 and 832.5, which become 166, 500 and 832 */
    int ts6[6] = {166, 333, 500, 666, 832, 999};
    sp.sampler = DF_SAMPLER_DPMPP_2M;
    sp.order = 2;
    sp.steps = 6;
    sp.timesteps = NULL;
    df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 100, 2, 0, x, NULL, NULL);
    sp.timesteps = ts6;
    df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 100, 2, 0, y, NULL, NULL);
    CHECK(memcmp(x, y, sizeof(float) * 200) == 0, "dpm++2m 6 steps: timesteps round(linspace(0, 999, 7)) half to even");
    /* S = T: the spacing repeats index 500 once; kept once, S = 1000 is the 999 indices 1..999 */
    static int ts999[999];
    for (int k = 0; k < 999; k++) ts999[k] = k + 1;
    for (int u = 0; u < 2; u++) {
        sp.sampler = u ? DF_SAMPLER_UNIPC : DF_SAMPLER_DPMPP_2M;
        sp.steps = 1000;
        sp.timesteps = NULL;
        CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 100, 2, 0, x, NULL, NULL) == DF_OK, "S = T");
        sp.steps = 999;
        sp.timesteps = ts999;
        df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 100, 2, 0, y, NULL, NULL);
        int finite = 1;
        for (int j = 0; j < 200; j++) finite &= isfinite(x[j]);
        CHECK(finite && memcmp(x, y, sizeof(float) * 200) == 0, "%s at S = T: the 999 indices 1..999, each once",
              df_sampler_name(sp.sampler));
    }
    sp.sampler = DF_SAMPLER_DPMPP_2M;
    sp.timesteps = NULL;
    /* (c) DPM++(2M) and (d) UniPC (DPM++'s predictor plus the UniC corrector) against the NumPy
     * reference, which solves for UniPC's coefficients at any order */
    const fixture_case dcases[3] = {{10, DF_PRED_EPS}, {20, DF_PRED_V}, {5, DF_PRED_X0}};
    const fixture_case ucases[3] = {{10, DF_PRED_EPS}, {3, DF_PRED_V}, {6, DF_PRED_X0}};
    check_against_fixture("fixtures/dpmpp2m_gauss.npy", DF_SAMPLER_DPMPP_2M, dcases, &s);
    check_against_fixture("fixtures/unipc_gauss.npy", DF_SAMPLER_UNIPC, ucases, &s);
    o.pred = DF_PRED_EPS;
    df_sample_params_init(&sp);
    sp.sampler = DF_SAMPLER_UNIPC;
    sp.steps = 20;
    sp.seed = 5;
    sp.batch = 1000;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, N, 2, 0, x, NULL, NULL) == DF_OK, "unipc");
    for (int k = 0; k < 2; k++) {
        double m, v, sd = o.sd[k], want_v = sd * sd * (ab1 * sd * sd) / (ab1 * sd * sd + 1 - ab1);
        moments(x, N, k, &m, &v);
        printf("  unipc 20 steps dim %d: mean %.4f (want %.2f) var %.4f (want %.4f)\n", k, m, o.m[k], v, want_v);
        CHECK(fabs(m - o.m[k]) < 4 * sd / sqrt(N), "unipc mean %g vs %g", m, o.m[k]);
        CHECK(fabs(v - want_v) < 4 * want_v * sqrt(2.0 / N) + 0.02 * want_v, "unipc var %g vs %g", v, want_v);
    }
    /* bad input */
    df_sample_params_init(&sp);
    sp.sampler = DF_SAMPLER_DPMPP_2M;
    sp.order = 3;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 4, 2, 0, x, NULL, NULL) == DF_ERR_ARG, "order 3");
    sp.sampler = DF_SAMPLER_UNIPC;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 4, 2, 0, x, NULL, NULL) == DF_ERR_ARG, "unipc order 3");
    sp.sampler = DF_SAMPLER_DPMPP_2M;
    int bad[2] = {500, 400};
    sp.order = 2, sp.steps = 2, sp.timesteps = bad;
    CHECK(df_sample(&s, o.pred, &sp, gauss_oracle_predict, &o, 4, 2, 0, x, NULL, NULL) == DF_ERR_ARG, "descending");
    df_schedule_free(&s);
}

/* (e) On a stored model: DPM++(2M) and UniPC, 10 steps from 4 given x_T, with the shipped
 * fmnist-small U-Net, against tools/sampler_model_reference.py (the same solvers in float64 NumPy,
 * the network in float64 PyTorch). Our network runs in float32 (~1e-6 relative per evaluation,
 * test_unet_torch), and the first steps divide its noise prediction by sqrt(alphabar) ~ 0.006, so
 * the comparison is relative to the samples' range: max |ours - ref| / max |ref| <= 1e-5. */
static void test_samplers_on_model(void) {
    const int64_t shape[4] = {4, 1, 28, 28};
    const size_t count = 4 * 28 * 28;
    df_st_file f;
    df_model *m = NULL;
    CHECK(df_st_read("fixtures/sampler_fmnist.safetensors", &f) == DF_OK, "fixture: %s", df_last_error());
    CHECK(df_model_load("../models/fmnist-small.safetensors", 4, 0, &m) == DF_OK, "model: %s", df_last_error());
    float *xT = df_alloc(sizeof(float) * count, "xT"), *want = df_alloc(sizeof(float) * count, "ref"),
          *x = df_alloc(sizeof(float) * count, "x");
    CHECK(m && xT && want && x && df_st_get_f32(&f, "xT", 4, shape, xT) == DF_OK, "xT: %s", df_last_error());
    const struct { df_sampler_kind kind; const char *name; } runs[] = {{DF_SAMPLER_DPMPP_2M, "dpmpp2m_10"},
                                                                      {DF_SAMPLER_UNIPC, "unipc_10"}};
    for (int r = 0; m && r < 2; r++) {
        CHECK(df_st_get_f32(&f, runs[r].name, 4, shape, want) == DF_OK, "%s: %s", runs[r].name, df_last_error());
        df_sample_params sp;
        df_sample_params_init(&sp);
        sp.sampler = runs[r].kind;
        sp.steps = 10;
        sp.x_T_given = 1;
        memcpy(x, xT, sizeof(float) * count);
        CHECK(df_sample(df_model_schedule(m), df_model_diffusion(m)->pred, &sp, df_model_predict, m, 4, 784, 0, x,
                        NULL, NULL) == DF_OK,
              "sample: %s", df_last_error());
        double err = 0, range = 0;
        for (size_t j = 0; j < count; j++) {
            err = fmax(err, fabs((double)x[j] - want[j]));
            range = fmax(range, fabs((double)want[j]));
        }
        printf("  %s on models/fmnist-small, 10 steps from given x_T vs NumPy + PyTorch: max abs diff %.2e of "
               "max |x0| %.2f (rel %.2e, tol 1e-5)\n",
               df_sampler_name(runs[r].kind), err, range, err / range);
        CHECK(err <= 1e-5 * range, "%s on the shipped model vs tools/sampler_model_reference.py: %g of %g",
              df_sampler_name(runs[r].kind), err, range);
    }
    df_free(xT), df_free(want), df_free(x);
    df_model_free(m);
    df_st_free(&f);
}

int main(void) {
    test_philox();
    test_schedules();
    test_identities();
    test_loss();
    test_sampler_oracle();
    test_applications();
    test_dpmpp();
    test_samplers_on_model();
    return check_exit_code("test_diffusion");
}
