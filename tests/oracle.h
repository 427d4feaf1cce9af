/* oracle.h: the exact optimal denoiser for 2-D Gaussian data, shared by test_diffusion.c (samplers)
 * and test_bound.c (variational bound). Not a network: a closed form, used as df_predict_fn.
 *
 * For x0 ~ N(m_k, sd_k^2) independently per dimension k: x_t ~ N(sqrt(ab) m, ab sd^2 + 1 - ab), and
 *   E[eps | x_t] = sqrt(1-ab) (x_t - sqrt(ab) m) / (ab sd^2 + 1 - ab),
 *   E[x0 | x_t]  = (x_t - sqrt(1-ab) E[eps | x_t]) / sqrt(ab),
 * converted by df_pred_target to the parameterisation `pred`. */
#ifndef DF_TEST_ORACLE_H
#define DF_TEST_ORACLE_H
#include "diffuse.h"

typedef struct {
    const df_schedule *s;
    df_pred pred;
    double m[2], sd[2];
} gauss_oracle;

/* A df_predict_fn: ctx is a gauss_oracle; x and out are n x 2. */
static inline df_status gauss_oracle_predict(void *ctx, int n, const int *t, const float *x, float *out) {
    gauss_oracle *o = ctx;
    for (int j = 0; j < n; j++) {
        int i = t[j];
        double sa = o->s->sqrt_alphabar[i], s1 = o->s->sqrt_one_minus_alphabar[i], ab = o->s->alphabar[i];
        float x0h[2], epsh[2];
        for (int k = 0; k < 2; k++) {
            double xt = x[j * 2 + k];
            double e = s1 * (xt - sa * o->m[k]) / (ab * o->sd[k] * o->sd[k] + 1 - ab);
            epsh[k] = (float)e;
            x0h[k] = (float)((xt - s1 * e) / sa);
        }
        df_pred_target(o->s, i, o->pred, x0h, epsh, x + j * 2, out + j * 2, 2);
    }
    return DF_OK;
}
#endif
