/* sampler.c: the note's ancestral sampler, DDIM (Song et al. 2021), DPM-Solver++(2M) (Lu et al.
 * 2022) and UniPC (Zhao et al. 2023), driven by any network seen through df_predict_fn. Noise for sample j at step i comes from the Philox counter (j, i), so a
 * sample does not depend on the batch it was drawn in or on the thread count. */
#include "common.h"
#include <math.h>
#include <string.h>

void df_sample_params_init(df_sample_params *p) {
    memset(p, 0, sizeof *p);
    p->sampler = DF_SAMPLER_ANCESTRAL;
    p->steps = 50;
    p->eta = 0.0;
    p->var = DF_VAR_POSTERIOR;
    p->clip_x0 = 0;
    p->clip_min = -1.0f;
    p->clip_max = 1.0f;
    p->seed = 0;
    p->batch = 64;
    p->order = 2;
}

void df_ddim_timesteps(int T, int S, int *seq) {
    for (int k = 0; k < S; k++) seq[k] = (int)(((int64_t)k * T) / S);
}

/* Runs the network on all n samples at step i, `batch` at a time. */
static df_status predict_all(df_predict_fn fn, void *ctx, int n, size_t dim, int batch, int i, const float *x,
                             float *out, int *tbuf) {
    for (int k = 0; k < batch; k++) tbuf[k] = i;
    for (int b0 = 0; b0 < n; b0 += batch) {
        int nb = n - b0 < batch ? n - b0 : batch;
        df_status st = fn(ctx, nb, tbuf, x + (size_t)b0 * dim, out + (size_t)b0 * dim);
        if (st != DF_OK) return st;
    }
    return DF_OK;
}

static inline double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One ancestral step (the note's algorithm): x_{t-1} = mu_theta(x_t, t) + sigma(t) z, z = 0 at t = 1.
 * With clipping, mu_theta = mu_q(x_t, clip(x0_hat)) as in the DDPM code. */
static void ancestral_step(const df_schedule *s, df_pred pred, const df_sample_params *p, int i, int n, size_t dim,
                           uint64_t first_index, float *x, const float *out, float *noise) {
    double sigma = i > 0 ? sqrt(p->var == DF_VAR_BETA ? s->beta[i] : s->posterior_var[i]) : 0.0;
    double c0 = s->posterior_coef_x0[i], ct = s->posterior_coef_xt[i];
    for (int j = 0; j < n; j++) {
        float *xj = x + (size_t)j * dim;
        const float *oj = out + (size_t)j * dim;
        if (sigma > 0) df_randn(p->seed, DF_STREAM_SAMPLE_STEP, (uint32_t)(first_index + j), (uint32_t)i, noise, dim);
        for (size_t k = 0; k < dim; k++) {
            double mean;
            if (p->clip_x0 || pred != DF_PRED_MEAN) {
                float x0f;
                df_pred_convert(s, i, pred, DF_PRED_X0, &xj[k], &oj[k], &x0f, 1);
                double x0 = p->clip_x0 ? clampd(x0f, p->clip_min, p->clip_max) : x0f;
                mean = c0 * x0 + ct * xj[k];
            } else {
                mean = oj[k];
            }
            xj[k] = (float)(sigma > 0 ? mean + sigma * noise[k] : mean);
        }
    }
}

/* One DDIM step from alphabar_t to alphabar_prev (Song et al. 2021, eq. 12):
 * x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z,
 * sigma = eta sqrt((1 - ab_prev)/(1 - ab)) sqrt(1 - ab/ab_prev). With clipping, eps is recomputed
 * from the clipped x0 (as diffusers does). */
static void ddim_step(const df_schedule *s, df_pred pred, const df_sample_params *p, int i, int i_prev, int n,
                      size_t dim, uint64_t first_index, float *x, const float *out, float *noise) {
    double ab = s->alphabar[i], ab_prev = i_prev >= 0 ? s->alphabar[i_prev] : 1.0;
    double sigma = p->eta * sqrt((1.0 - ab_prev) / (1.0 - ab)) * sqrt(1.0 - ab / ab_prev);
    double dir = sqrt(fmax(1.0 - ab_prev - sigma * sigma, 0.0));
    double sa = s->sqrt_alphabar[i], s1 = s->sqrt_one_minus_alphabar[i];
    for (int j = 0; j < n; j++) {
        float *xj = x + (size_t)j * dim;
        const float *oj = out + (size_t)j * dim;
        if (sigma > 0) df_randn(p->seed, DF_STREAM_SAMPLE_STEP, (uint32_t)(first_index + j), (uint32_t)i, noise, dim);
        for (size_t k = 0; k < dim; k++) {
            float x0f, epsf;
            df_pred_convert(s, i, pred, DF_PRED_X0, &xj[k], &oj[k], &x0f, 1);
            df_pred_convert(s, i, pred, DF_PRED_EPS, &xj[k], &oj[k], &epsf, 1);
            double x0 = x0f, eps = epsf;
            if (p->clip_x0) {
                x0 = clampd(x0, p->clip_min, p->clip_max);
                eps = (xj[k] - sa * x0) / s1;
            }
            double v = sqrt(ab_prev) * x0 + dir * eps;
            xj[k] = (float)(sigma > 0 ? v + sigma * noise[k] : v);
        }
    }
}

/* DPM-Solver++ in the VP parameterisation: alpha_t = sqrt(alphabar), sigma_t = sqrt(1 - alphabar),
 * lambda_t = log(alpha_t / sigma_t); index -1 is the end, sigma = 0 (diffusers' final_sigmas_type
 * "zero"), where lambda is +inf and exp(-h) = 0. */
typedef struct {
    double alpha, sigma, lambda;
} vp_point;
static vp_point vp_at(const df_schedule *s, int i) {
    vp_point v;
    if (i < 0) {
        v.alpha = 1.0, v.sigma = 0.0, v.lambda = INFINITY;
        return v;
    }
    v.alpha = s->sqrt_alphabar[i];
    v.sigma = s->sqrt_one_minus_alphabar[i];
    v.lambda = log(v.alpha) - log(v.sigma);
    return v;
}

/* The network's outputs at index i, turned in place into data predictions x0 (clipped when
 * p->clip_x0 is set, as thresholding would): what DPM-Solver++ and UniPC work on. */
static void outputs_to_x0(const df_schedule *s, df_pred pred, const df_sample_params *p, int i, size_t count,
                          const float *x, float *out) {
    for (size_t q = 0; q < count; q++) {
        float x0f;
        df_pred_convert(s, i, pred, DF_PRED_X0, &x[q], &out[q], &x0f, 1);
        out[q] = p->clip_x0 ? (float)clampd(x0f, p->clip_min, p->clip_max) : x0f;
    }
}

/* One DPM-Solver++ step from index i to i_prev (diffusers' dpm_solver_first_order_update and
 * multistep_dpm_solver_second_order_update, solver_type "midpoint"), on the data predictions:
 *   h = lambda_next - lambda_i,  x_next = (sigma_next / sigma_i) x - alpha_next (e^-h - 1) D,
 * first order D = x0_i; second order, with the previous step's index i_last and prediction x0_last,
 * r = (lambda_i - lambda_last) / h and D = x0_i + (x0_i - x0_last) / (2 r). It is also UniPC's
 * predictor: with B(h) = e^h - 1 ("bh2"), UniP-2's rho_p = 1/2 gives this same D. */
static void dpmpp_step(const df_schedule *s, int i, int i_prev, int i_last, int second, size_t count, float *x,
                       const float *x0, const float *x0_last) {
    const vp_point cur = vp_at(s, i), next = vp_at(s, i_prev);
    const double h = next.lambda - cur.lambda, em1 = isinf(h) ? -1.0 : expm1(-h);
    const double ratio = next.sigma / cur.sigma;
    const double r = second ? (cur.lambda - vp_at(s, i_last).lambda) / h : 1.0;
    for (size_t q = 0; q < count; q++) {
        double d = second ? x0[q] + ((double)x0[q] - x0_last[q]) / (2.0 * r) : x0[q];
        x[q] = (float)(ratio * x[q] - next.alpha * em1 * d);
    }
}

/* UniC, UniPC's corrector (Zhao et al. 2023, B(h) = e^h - 1, "bh2"; diffusers'
 * multistep_uni_c_bh_update with predict_x0). Once the network has seen x at index i, redo the
 * step that reached it, from x_last at i_s0, using the new data prediction x0_t as well:
 *   x = (sigma_t / sigma_s0) x_last - alpha_t (e^-h - 1) (m0 + rho_1 D1 + rho_2 (x0_t - m0)),
 * with m0 the prediction at i_s0, D1 = (m1 - m0) / r1 from the one at i_s1, r1 = (lambda_s1 -
 * lambda_s0) / h, and (rho_1, rho_2) solving [[1, 1], [r1, 1]] rho = b (order 2), or rho_2 = 1/2
 * (order 1: the trapezoidal rule). The network is not run again: x0_t stays the prediction at the
 * uncorrected x, so UniPC costs what DPM++ does; the corrected x feeds the next predictor step. */
static void unic_correct(const df_schedule *s, int i, int i_s0, int i_s1, int order, size_t count, float *x,
                         const float *x_last, const float *x0_t, const float *m0, const float *m1) {
    const vp_point t = vp_at(s, i), s0 = vp_at(s, i_s0);
    const double h = t.lambda - s0.lambda, hh = -h, em1 = expm1(hh), ratio = t.sigma / s0.sigma;
    double rho_1 = 0.0, rho_2 = 0.5, r1 = 1.0;
    if (order == 2) {
        r1 = (vp_at(s, i_s1).lambda - s0.lambda) / h;
        /* h phi_2 and h phi_3 in diffusers' recursion; b_k = k! h phi_{k+1} / B(h) */
        const double phi2 = em1 / hh - 1.0, phi3 = phi2 / hh - 0.5;
        const double b1 = phi2 / em1, b2 = 2.0 * phi3 / em1;
        rho_1 = (b1 - b2) / (1.0 - r1);
        rho_2 = b1 - rho_1;
    }
    for (size_t q = 0; q < count; q++) {
        const double d1 = order == 2 ? ((double)m1[q] - m0[q]) / r1 : 0.0;
        const double res = rho_1 * d1 + rho_2 * ((double)x0_t[q] - m0[q]);
        x[q] = (float)(ratio * x_last[q] - t.alpha * em1 * (m0[q] + res));
    }
}

/* diffusers' "linspace" spacing: round(linspace(0, T - 1, S + 1)), without its first entry (0).
 * As NumPy computes it: k * ((T - 1) / S) with the last entry exactly T - 1, rounded half to even
 * (rint), so that ties such as 166.5 at S = 6 go where diffusers sends them. */
static int dpmpp_timesteps(int T, int S, int *seq) {
    const double step = (double)(T - 1) / S;
    for (int k = 0; k < S; k++) seq[k] = k + 1 == S ? T - 1 : (int)rint((k + 1) * step);
    /* At S = T the spacing is under one index and repeats one (500 at T = 1000). A step from an
     * index to itself has h = 0, and the next second-order step divides by it: keep each index
     * once, as diffusers does (np.unique), so S = T runs the T - 1 indices 1..T-1. */
    int u = 0;
    for (int k = 0; k < S; k++)
        if (u == 0 || seq[k] != seq[u - 1]) seq[u++] = seq[k];
    return u;
}

/* Inpainting: hold the known region to q(x_r | known) after the step that reached index r
 * (r = -1: x_0, exactly known). */
static void apply_known(const df_schedule *s, const df_sample_params *p, int r, int n, size_t dim, uint64_t first_index,
                        float *x, float *noise) {
    for (int j = 0; j < n; j++) {
        float *xj = x + (size_t)j * dim;
        if (r >= 0) df_randn(p->seed, DF_STREAM_SAMPLE_KNOWN, (uint32_t)(first_index + j), (uint32_t)r, noise, dim);
        double a = r >= 0 ? s->sqrt_alphabar[r] : 1.0, b = r >= 0 ? s->sqrt_one_minus_alphabar[r] : 0.0;
        for (size_t k = 0; k < dim; k++) {
            double m = p->mask[k];
            if (m == 0) continue;
            double kn = a * p->known[k] + (r >= 0 ? b * noise[k] : 0.0);
            xj[k] = (float)(m * kn + (1 - m) * xj[k]);
        }
    }
}

df_status df_sample(const df_schedule *s, df_pred pred, const df_sample_params *p, df_predict_fn fn, void *ctx, int n,
                    size_t dim, uint64_t first_index, float *x, df_step_fn step_fn, void *step_ctx) {
    if (n <= 0) return df_fail(DF_ERR_ARG, "number of samples must be positive (got %d)", n);
    if (p->batch <= 0) return df_fail(DF_ERR_ARG, "sampling batch must be positive (got %d)", p->batch);
    const int multistep = p->sampler == DF_SAMPLER_DPMPP_2M || p->sampler == DF_SAMPLER_UNIPC;
    const int strided = p->sampler == DF_SAMPLER_DDIM || multistep;
    int nsteps = strided ? p->steps : s->T;
    if (strided && (p->steps < 1 || p->steps > s->T))
        return df_fail(DF_ERR_ARG, "%s steps must be in 1..%d (got %d)", df_sampler_name(p->sampler), s->T, p->steps);
    if (p->sampler == DF_SAMPLER_DDIM && !(p->eta >= 0)) return df_fail(DF_ERR_ARG, "DDIM eta must be >= 0");
    if (multistep && p->order != 1 && p->order != 2)
        return df_fail(DF_ERR_ARG, "%s order must be 1 or 2 (got %d)", df_sampler_name(p->sampler), p->order);
    if (p->timesteps)
        for (int k = 0; k < nsteps; k++)
            if (p->timesteps[k] < 0 || p->timesteps[k] >= s->T || (k > 0 && p->timesteps[k] <= p->timesteps[k - 1]))
                return df_fail(DF_ERR_ARG, "sampler timesteps must ascend within 0..%d (entry %d is %d)", s->T - 1, k,
                               p->timesteps[k]);
    if (p->x_T_given && p->init) return df_fail(DF_ERR_ARG, "a given x_T and editing (an init image) exclude each other");
    if (p->init && (p->t_start < 0 || p->t_start >= s->T))
        return df_fail(DF_ERR_ARG, "editing start step must be in 0..%d (got %d)", s->T - 1, p->t_start);
    if (!p->known != !p->mask) return df_fail(DF_ERR_ARG, "inpainting needs both the known image and the mask");
    int batch = p->batch < n ? p->batch : n;

    df_status st = DF_ERR_NOMEM;
    float *hist[3] = {NULL, NULL, NULL};  /* multistep: m0, the last step's x0; UniPC: m1, x_last */
    float *out = df_alloc(sizeof(float) * (size_t)n * dim, "sampler network outputs");
    float *noise = df_alloc(sizeof(float) * dim, "sampler noise");
    int *tbuf = df_alloc(sizeof(int) * (size_t)batch, "sampler timesteps");
    int *seq = df_alloc(sizeof(int) * (size_t)nsteps, "sampler timestep sequence");
    const int unipc = p->sampler == DF_SAMPLER_UNIPC, nhist = unipc ? 3 : multistep;
    const size_t count = (size_t)n * dim;
    for (int h = 0; h < nhist; h++)
        if (!(hist[h] = df_alloc(sizeof(float) * count, "multistep sampler history"))) goto free_buffers;
    if (!out || !noise || !tbuf || !seq) goto free_buffers;

    if (p->timesteps) memcpy(seq, p->timesteps, sizeof(int) * (size_t)nsteps);
    else if (p->sampler == DF_SAMPLER_DDIM) df_ddim_timesteps(s->T, nsteps, seq);
    else if (multistep) nsteps = dpmpp_timesteps(s->T, nsteps, seq);
    else for (int k = 0; k < nsteps; k++) seq[k] = k;
    int k_first = nsteps - 1;  /* editing starts at the last step not above t_start */
    if (p->init)
        while (k_first > 0 && seq[k_first] > p->t_start) k_first--;
    /* x_T ~ N(0, I); editing: x ~ q(x_t | init) at the first step's t */
    for (int j = 0; j < n; j++) {
        float *xj = x + (size_t)j * dim;
        if (!p->x_T_given) df_randn(p->seed, DF_STREAM_SAMPLE_INIT, (uint32_t)(first_index + j), 0, xj, dim);
        if (p->init) df_q_sample(s, seq[k_first], p->init, xj, xj, dim);
    }
    if (p->known) apply_known(s, p, seq[k_first], n, dim, first_index, x, noise);

    for (int k = k_first; k >= 0; k--) {
        int i = seq[k];
        st = predict_all(fn, ctx, n, dim, batch, i, x, out, tbuf);
        if (st != DF_OK) goto free_buffers;
        if (p->sampler == DF_SAMPLER_DDIM) {
            ddim_step(s, pred, p, i, k > 0 ? seq[k - 1] : -1, n, dim, first_index, x, out, noise);
        } else if (multistep) {
            float *m0 = hist[0], *m1 = hist[1], *x_last = hist[2];
            outputs_to_x0(s, pred, p, i, count, x, out);
            /* UniPC corrects the step that reached i, at the order that step had */
            if (unipc && k < k_first)
                unic_correct(s, i, seq[k + 1], k + 2 <= k_first ? seq[k + 2] : -1, p->order == 2 && k + 1 < k_first ? 2 : 1,
                             count, x, x_last, out, m0, m1);
            if (unipc) memcpy(x_last, x, sizeof(float) * count);
            /* second order from the second step on, first order on the last (final sigma zero) */
            const int second = p->order == 2 && k < k_first && k > 0;
            dpmpp_step(s, i, k > 0 ? seq[k - 1] : -1, k < k_first ? seq[k + 1] : -1, second, count, x, out, m0);
            if (unipc) hist[0] = m1, hist[1] = m0;  /* the older prediction moves back; m1's buffer takes the new */
            memcpy(hist[0], out, sizeof(float) * count);
        } else {
            ancestral_step(s, pred, p, i, n, dim, first_index, x, out, noise);
        }
        int reached = k > 0 ? seq[k - 1] : -1;
        if (p->known) apply_known(s, p, reached, n, dim, first_index, x, noise);
        if (step_fn && step_fn(step_ctx, k_first + 1 - k, k_first + 1, reached, x, n, dim)) {
            st = df_fail(DF_ERR_INTERRUPTED, "sampling stopped at step %d of %d", k_first + 1 - k, k_first + 1);
            goto free_buffers;
        }
    }
    st = DF_OK;
free_buffers:
    df_free(out);
    df_free(noise);
    df_free(tbuf);
    df_free(seq);
    for (int h = 0; h < 3; h++) df_free(hist[h]);
    return st;
}
