/* schedule.c: noise schedules beta_1..beta_T and every quantity derived from them, in double,
 * computed once. Index i = t - 1 (see diffuse.h). Formulas: docs/diffusion.md. */
#include "common.h"
#include <math.h>
#include <string.h>

void df_schedule_params_init(df_schedule_params *p) {
    memset(p, 0, sizeof *p);
    p->kind = DF_SCHEDULE_LINEAR;
    p->T = 1000;
    p->beta_start = 1e-4;  /* Ho et al. 2020, section 4 */
    p->beta_end = 0.02;
    p->cosine_s = 0.008;   /* Nichol & Dhariwal 2021, section 3.2 */
    p->max_beta = 0.999;
}

/* Nichol & Dhariwal's f(t) = cos(((t/T + s)/(1 + s)) pi/2)^2. */
static double cosine_f(double t, int T, double s) {
    double c = cos(((t / T + s) / (1.0 + s)) * M_PI / 2.0);
    return c * c;
}

static void fill_betas(const df_schedule_params *p, double *beta) {
    int T = p->T;
    double b0 = p->beta_start, b1 = p->beta_end;
    for (int i = 0; i < T; i++) {
        double u = (double)i / (double)(T - 1);  /* 0 at t = 1, 1 at t = T */
        switch (p->kind) {
        case DF_SCHEDULE_LINEAR: beta[i] = b0 + (b1 - b0) * u; break;
        case DF_SCHEDULE_QUADRATIC: {  /* linear in sqrt(beta) (DDPM code "quad") */
            double r = sqrt(b0) + (sqrt(b1) - sqrt(b0)) * u;
            beta[i] = r * r;
            break;
        }
        case DF_SCHEDULE_EXPONENTIAL: beta[i] = b0 * pow(b1 / b0, u); break;  /* geometric */
        case DF_SCHEDULE_SIGMOID:  /* sigmoid(linspace(-6, 6, T)) rescaled to [b0, b1] (GeoDiff) */
            beta[i] = b0 + (b1 - b0) / (1.0 + exp(-(-6.0 + 12.0 * u)));
            break;
        case DF_SCHEDULE_COSINE: {
            double t = i + 1;
            double b = 1.0 - cosine_f(t, T, p->cosine_s) / cosine_f(t - 1, T, p->cosine_s);
            beta[i] = b < p->max_beta ? b : p->max_beta;
            break;
        }
        default: ASSERT(0);
        }
    }
}

df_status df_schedule_new(const df_schedule_params *p, df_schedule *s) {
    memset(s, 0, sizeof *s);
    if (p->T < 2 || p->T > 100000) return df_fail(DF_ERR_ARG, "timesteps must be in 2..100000 (got %d)", p->T);
    if ((int)p->kind < 0 || p->kind >= DF_SCHEDULE_COUNT) return df_fail(DF_ERR_ARG, "unknown schedule %d", (int)p->kind);
    if (p->kind != DF_SCHEDULE_COSINE &&
        !(p->beta_start > 0 && p->beta_end > 0 && p->beta_start < 1 && p->beta_end < 1))
        return df_fail(DF_ERR_ARG, "beta_start and beta_end must lie in (0, 1) (got %g, %g)", p->beta_start, p->beta_end);
    if (p->kind == DF_SCHEDULE_COSINE && !(p->cosine_s >= 0 && p->max_beta > 0 && p->max_beta < 1))
        return df_fail(DF_ERR_ARG, "cosine schedule needs s >= 0 and max_beta in (0, 1)");

    int T = p->T;
    double *block = df_alloc(sizeof(double) * (size_t)T * 11, "noise schedule");
    if (!block) return DF_ERR_NOMEM;
    s->T = T;
    s->params = *p;
    s->block = block;
    double **arrays[] = {&s->beta, &s->alpha, &s->alphabar, &s->alphabar_prev, &s->sqrt_alphabar,
                         &s->sqrt_one_minus_alphabar, &s->posterior_var, &s->posterior_log_var_clipped,
                         &s->posterior_coef_x0, &s->posterior_coef_xt};
    for (size_t k = 0; k < sizeof arrays / sizeof *arrays; k++) *arrays[k] = block + k * (size_t)T;

    fill_betas(p, s->beta);
    double ab = 1.0;
    for (int i = 0; i < T; i++) {
        double beta = s->beta[i];
        s->alpha[i] = 1.0 - beta;
        s->alphabar_prev[i] = ab;
        ab *= 1.0 - beta;
        s->alphabar[i] = ab;
        s->sqrt_alphabar[i] = sqrt(ab);
        s->sqrt_one_minus_alphabar[i] = sqrt(1.0 - ab);
        /* q(x_{t-1} | x_t, x_0), the note's posterior */
        double abp = s->alphabar_prev[i];
        s->posterior_var[i] = beta * (1.0 - abp) / (1.0 - ab);
        s->posterior_coef_x0[i] = sqrt(abp) * beta / (1.0 - ab);
        s->posterior_coef_xt[i] = sqrt(s->alpha[i]) * (1.0 - abp) / (1.0 - ab);
    }
    /* posterior_var[0] = 0; the DDPM code clips its log by using posterior_var[1] there. */
    for (int i = 0; i < T; i++) s->posterior_log_var_clipped[i] = log(s->posterior_var[i == 0 ? 1 : i]);
    for (int i = 0; i < T; i++) {
        /* betas so small that 1 - beta rounds to 1 leave alphabar = 1 and the posterior 0/0 */
        if (!(s->beta[i] > 0 && s->beta[i] < 1 && s->alphabar[i] < 1.0)) {
            double b = s->beta[i];
            df_schedule_free(s);
            return df_fail(DF_ERR_ARG, "schedule gives beta_%d = %g: betas must lie in (0, 1) and be large enough "
                                       "that 1 - beta < 1 in double precision", i + 1, b);
        }
    }
    return DF_OK;
}

void df_schedule_free(df_schedule *s) {
    df_free(s->block);
    memset(s, 0, sizeof *s);
}
