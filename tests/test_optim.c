/* test_optim.c: AdamW against a double-precision transcription of torch.optim.AdamW, the
 * learning-rate warm-up, the thread-independent gradient norm, and the EMA warm-up.
 * Exits non-zero on any failure. */
#include "check.h"
#include "common.h"
#include <math.h>
#include <string.h>

static void test_defaults_and_lr(void) {
    df_adamw_params p;
    df_adamw_params_init(&p);
    CHECK(p.lr == 2e-4 && p.beta1 == 0.9 && p.beta2 == 0.999 && p.eps == 1e-8 && p.weight_decay == 0 &&
              p.warmup_steps == 0 && p.grad_clip == 1.0,
          "defaults");
    CHECK(df_adamw_lr_at(&p, 1) == 2e-4 && df_adamw_lr_at(&p, 100000) == 2e-4, "lr without warm-up");
    p.lr = 1e-3, p.warmup_steps = 10;
    /* Linear from lr/warmup at step 1 to lr at step warmup, constant after. */
    CHECK(fabs(df_adamw_lr_at(&p, 1) - 1e-4) < 1e-18, "warm-up step 1: %g", df_adamw_lr_at(&p, 1));
    CHECK(fabs(df_adamw_lr_at(&p, 5) - 5e-4) < 1e-18, "warm-up step 5: %g", df_adamw_lr_at(&p, 5));
    CHECK(df_adamw_lr_at(&p, 10) == 1e-3 && df_adamw_lr_at(&p, 11) == 1e-3, "after warm-up");
}

/* torch.optim.AdamW (amsgrad=False, maximize=False), single-tensor path, in double. */
static void reference_adamw(const df_adamw_params *p, long step, double *param, const double *grad, double *m, double *v,
                            int n, double grad_scale) {
    double lr = df_adamw_lr_at(p, step);
    for (int i = 0; i < n; i++) {
        double g = grad[i] * grad_scale;
        param[i] *= 1 - lr * p->weight_decay;
        m[i] = p->beta1 * m[i] + (1 - p->beta1) * g;             /* exp_avg.lerp_(grad, 1 - beta1) */
        v[i] = p->beta2 * v[i] + (1 - p->beta2) * g * g;         /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2) */
        double bc1 = 1 - pow(p->beta1, (double)step), bc2 = 1 - pow(p->beta2, (double)step);
        double denom = sqrt(v[i]) / sqrt(bc2) + p->eps;
        param[i] -= lr / bc1 * m[i] / denom;
    }
}

static void test_adamw(void) {
    /* Hand-computed first step: m = v = 0, so m_hat = g and v_hat = g^2 and the update is
     * lr * g / (|g| + eps): 1.0 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.900000002 (float: 0.9). With
     * weight decay 0.5, the parameter is first scaled by 1 - 0.1 * 0.5 = 0.95: 0.85. */
    df_adamw_params p;
    df_adamw_params_init(&p);
    p.lr = 0.1;
    float w[2] = {1.0f, 1.0f}, g[2] = {0.5f, -2.0f}, m[2] = {0}, v[2] = {0};
    df_adamw_step(&p, 1, w, g, m, v, 2, 1.0);
    CHECK(w[0] == 0.9f && w[1] == 1.1f, "first step by hand: %.9g %.9g (want 0.9 1.1)", w[0], w[1]);
    CHECK(fabsf(m[0] - 0.05f) < 1e-8f && fabsf(v[0] - 0.00025f) < 1e-10f, "first moments %g %g", m[0], v[0]);
    p.weight_decay = 0.5;
    w[0] = 1.0f, m[0] = v[0] = 0;
    df_adamw_step(&p, 1, w, g, m, v, 1, 1.0);
    CHECK(w[0] == 0.85f, "first step with weight decay: %.9g (want 0.85)", w[0]);

    /* Three steps on a few numbers, weight decay, warm-up and a grad scale, against the reference.
     * Tolerance: the implementation stores params and moments in float each step (relative
     * rounding 6e-8 per step); three steps stay below 1e-6 relative. */
    df_adamw_params_init(&p);
    p.lr = 1e-2, p.beta1 = 0.8, p.beta2 = 0.95, p.eps = 1e-6, p.weight_decay = 0.1, p.warmup_steps = 2;
    enum { N = 5 };
    const float w0[N] = {0.5f, -1.25f, 3.0f, 0.0f, 1e-3f};
    const float grads[3][N] = {
        {0.1f, -0.2f, 3.0f, 0.0f, 1e-6f},
        {-0.3f, -0.1f, 2.0f, 0.5f, -1e-6f},
        {0.2f, 0.4f, -1.0f, -0.5f, 1e-5f},
    };
    const double scales[3] = {1.0, 0.5, 0.25};
    float fw[N], fm[N] = {0}, fv[N] = {0};
    double dw[N], dm[N] = {0}, dv[N] = {0}, dg[N];
    for (int i = 0; i < N; i++) fw[i] = w0[i], dw[i] = w0[i];
    double worst = 0;
    for (long step = 1; step <= 3; step++) {
        for (int i = 0; i < N; i++) dg[i] = grads[step - 1][i];
        df_adamw_step(&p, step, fw, grads[step - 1], fm, fv, N, scales[step - 1]);
        reference_adamw(&p, step, dw, dg, dm, dv, N, scales[step - 1]);
        for (int i = 0; i < N; i++) {
            worst = fmax(worst, fabs(fw[i] - dw[i]) / fmax(fabs(dw[i]), 1e-3));
            worst = fmax(worst, fabs(fm[i] - dm[i]) / fmax(fabs(dm[i]), 1e-12));
            worst = fmax(worst, fabs(fv[i] - dv[i]) / fmax(fabs(dv[i]), 1e-24));
        }
    }
    printf("adamw 3 steps vs double reference: worst rel err %.2e (tol 1e-6)\n", worst);
    CHECK(worst <= 1e-6, "adamw differs from the reference: %.3e", worst);
    /* A zero gradient with zero moments leaves the parameter alone (0 / (0 + eps)) but for decay. */
    CHECK(fabs(fw[3] - dw[3]) < 1e-9, "zero-gradient element");
}

static void test_grad_norm(void) {
    const float g34[2] = {3.0f, -4.0f};
    CHECK(df_grad_norm(g34, 2) == 5.0, "norm of (3,-4) = %g", df_grad_norm(g34, 2));
    CHECK(df_grad_norm(g34, 0) == 0.0, "norm of nothing");
    /* A large block crosses the threading threshold and uses many parts. Values and sizes are
     * chosen so that the double sum is exact: 1000003 elements of +-0.5 (squares 0.25). */
    size_t n = 1000003;
    float *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) g[i] = (i % 3 == 0) ? -0.5f : 0.5f;
    double want = sqrt(0.25 * (double)n);
    check_set_threads(1);
    double a = df_grad_norm(g, n);
    check_set_threads(2);
    double b = df_grad_norm(g, n);
    CHECK(a == want && b == want, "norm %.17g %.17g want %.17g", a, b, want);
    /* Random values: bit-identical across thread counts, and close to a plain double sum
     * (1e-12: double rounding over 1e6 terms is ~1e-16 * sqrt(1e6) relative). */
    df_randn(42, DF_STREAM_USER, 0, 0, g, n);
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref += (double)g[i] * (double)g[i];
    ref = sqrt(ref);
    check_set_threads(1);
    a = df_grad_norm(g, n);
    check_set_threads(2);
    b = df_grad_norm(g, n);
    CHECK(a == b, "norm depends on thread count: %.17g vs %.17g", a, b);
    CHECK(fabs(a - ref) <= 1e-12 * ref, "norm %.17g vs plain sum %.17g", a, ref);
    g[n / 2] = NAN;
    CHECK(isnan(df_grad_norm(g, n)), "a NaN gradient must give a NaN norm");
    free(g);
}

static void test_ema(void) {
    /* Warm-up values: (1 + step) / (10 + step) until it passes the decay. */
    CHECK(fabs(df_ema_decay_at(0.999, 1) - 2.0 / 11.0) < 1e-15, "decay at step 1");
    CHECK(fabs(df_ema_decay_at(0.999, 10) - 11.0 / 20.0) < 1e-15, "decay at step 10");
    CHECK(fabs(df_ema_decay_at(0.999, 1000) - 1001.0 / 1010.0) < 1e-15, "decay at step 1000");
    /* (1 + s) / (10 + s) reaches 0.999 at s = 8990 (8991 / 9000). */
    CHECK(df_ema_decay_at(0.999, 8989) < 0.999 && df_ema_decay_at(0.999, 8991) == 0.999, "warm-up end");
    CHECK(df_ema_decay_at(0.5, 1) == 2.0 / 11.0 && df_ema_decay_at(0.5, 100) == 0.5, "small decay");

    float ema[3] = {1.0f, -2.0f, 0.0f};
    const float params[3] = {3.0f, 2.0f, 1.0f};
    df_ema_update(ema, params, 3, 0.75);
    CHECK(ema[0] == 1.5f && ema[1] == -1.0f && ema[2] == 0.25f, "ema update: %g %g %g", ema[0], ema[1], ema[2]);

    /* Share of the initial weights in the EMA after 2200 steps = product of the decays. Run the
     * update itself from ema = 1 towards params = 0 and compare it with the product. */
    double share = 1.0, no_warmup = 1.0;
    float e = 1.0f;
    const float zero = 0.0f;
    for (long s = 1; s <= 2200; s++) {
        double d = df_ema_decay_at(0.999, s);
        share *= d;
        no_warmup *= 0.999;
        df_ema_update(&e, &zero, 1, d);
    }
    printf("initial weights' share of the EMA after 2200 steps: %.3e with warm-up, %.3f without (tol 1e-2)\n",
           share, no_warmup);
    CHECK(share < 1e-2, "initial share %.3e", share);
    CHECK(no_warmup > 0.1, "without warm-up the initial weights would keep %.3f", no_warmup);
    /* Each float update rounds once (relative 6e-8); 2200 of them: 1e-3 relative covers it. */
    CHECK(fabs(e - share) <= 1e-3 * share, "ema run %.6e vs product %.6e", e, share);
}

int main(void) {
    test_defaults_and_lr();
    test_adamw();
    test_grad_norm();
    test_ema();
    return check_exit_code("test_optim");
}
