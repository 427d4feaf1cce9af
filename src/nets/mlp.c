/* mlp.c: forward and backward of the toy-problem MLP denoiser (see mlp.h for the architecture).
 *
 * What it is: plain C loops, written so that the compiler vectorises them without -ffast-math.
 * Every inner loop is an axpy (y[j] += a * x[j]) over contiguous memory, never a dot-product
 * reduction (which GCC may not reorder without -ffast-math). That is why the forward first
 * copies each weight matrix transposed into the arena: out_i[:] += inp_i[k] * W^T[k,:].
 * The axpy loops carry `omp simd` because GCC 12 at -O2 (its "very cheap" cost model) does not
 * vectorise loops of unknown trip count; an axpy has no reduction, so simd does not change
 * results. Without OpenMP the pragma is ignored and the loops stay scalar and correct.
 *
 * Threads: the forward splits the batch over threads, one sample per iteration, so each output
 * row is computed by the same instructions whatever n and the thread count are. The backward
 * splits input gradients over samples and weight gradients over rows of the weight, summing
 * over samples in ascending order, so gradients too are independent of the thread count.
 *
 * Gradients: df_mlp_backward ACCUMULATES (+=) into grads and dx, like every op in ops.h.
 *
 * What it is not: general. It does not use ops.c (df_linear_*, df_silu_*); the network is tiny.
 */
#include "mlp.h"
#include <math.h>
#include <string.h>

/* Forward on fewer than this many multiply-adds runs on one thread: a fork/join costs a few us. */
#define MLP_PARALLEL_MIN_WORK 200000
/* Weight-gradient tiling: rows per task and samples per block (block of inputs stays in L1). */
#define MLP_GRAD_ROWS 8
#define MLP_GRAD_SAMPLES 64

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

void df_mlp_config_init(df_mlp_config *c) {
    c->dim = 2;
    c->hidden = 128;
    c->layers = 3;
    c->temb_dim = 64;
    c->classes = 0;
}

static df_status mlp_config_check(const df_mlp_config *c, int max_batch) {
    if (c->dim < 1 || c->dim > DF_MLP_MAX_WIDTH)
        return df_fail(DF_ERR_ARG, "mlp: dim must be in [1, %d], got %d", DF_MLP_MAX_WIDTH, c->dim);
    if (c->hidden < 1 || c->hidden > DF_MLP_MAX_WIDTH)
        return df_fail(DF_ERR_ARG, "mlp: hidden width must be in [1, %d], got %d", DF_MLP_MAX_WIDTH, c->hidden);
    if (c->layers < 1 || c->layers > DF_MLP_MAX_LAYERS)
        return df_fail(DF_ERR_ARG, "mlp: layers must be in [1, %d], got %d", DF_MLP_MAX_LAYERS, c->layers);
    /* half - 1 divides the exponent of the frequencies, so half >= 2. */
    if (c->temb_dim < 4 || c->temb_dim % 2 != 0 || c->temb_dim > DF_MLP_MAX_WIDTH)
        return df_fail(DF_ERR_ARG, "mlp: time-embedding width must be even and in [4, %d], got %d",
                       DF_MLP_MAX_WIDTH, c->temb_dim);
    if (c->classes < 0 || c->classes == 1 || c->classes > 1000000)
        return df_fail(DF_ERR_ARG, "mlp: classes must be 0 (unconditional) or in [2, 1000000], got %d", c->classes);
    if (max_batch < 1 || max_batch > DF_MLP_MAX_BATCH)
        return df_fail(DF_ERR_ARG, "mlp: max batch must be in [1, %d], got %d", DF_MLP_MAX_BATCH, max_batch);
    return DF_OK;
}

static int mlp_layer_in(const df_mlp_config *c, int l) { return l == 0 ? c->dim : c->hidden; }

/* Registers the tensors in PyTorch state_dict order: inp, temb.*, hidden.*, out. */
static void mlp_register(df_mlp *m) {
    const df_mlp_config *c = &m->cfg;
    char name[DF_PARAM_NAME_MAX];
    int64_t shape[2];
    shape[0] = c->hidden, shape[1] = c->dim;
    m->off_inp_w = df_param_table_add(&m->table, "inp.weight", 2, shape);
    m->off_inp_b = df_param_table_add(&m->table, "inp.bias", 1, shape);
    for (int l = 0; l < c->layers; l++) {
        shape[0] = c->hidden, shape[1] = c->temb_dim;
        snprintf(name, sizeof name, "temb.%d.weight", l);
        m->off_temb_w[l] = df_param_table_add(&m->table, name, 2, shape);
    }
    if (c->classes > 0) {
        shape[0] = c->classes, shape[1] = c->temb_dim;
        m->off_class = df_param_table_add(&m->table, "class_emb.weight", 2, shape);
    }
    for (int l = 1; l < c->layers; l++) {
        shape[0] = c->hidden, shape[1] = c->hidden;
        snprintf(name, sizeof name, "hidden.%d.weight", l);
        m->off_hid_w[l] = df_param_table_add(&m->table, name, 2, shape);
        snprintf(name, sizeof name, "hidden.%d.bias", l);
        m->off_hid_b[l] = df_param_table_add(&m->table, name, 1, shape);
    }
    shape[0] = c->dim, shape[1] = c->hidden;
    m->off_out_w = df_param_table_add(&m->table, "out.weight", 2, shape);
    m->off_out_b = df_param_table_add(&m->table, "out.bias", 1, shape);
}

/* Embedding frequencies exactly as diffusers' get_timestep_embedding (float32 arithmetic):
 * exponent = -ln(10000) * j / (half - 1), freq = exp(exponent). */
static void mlp_fill_freq(float *freq, int half) {
    const float neg_log_period = (float)-log(10000.0);
    for (int j = 0; j < half; j++) {
        float exponent = neg_log_period * (float)j;
        exponent = exponent / (float)(half - 1);
        freq[j] = expf(exponent);
    }
}

df_status df_mlp_new(const df_mlp_config *c, int max_batch, df_mlp **out) {
    *out = NULL;
    df_status st = mlp_config_check(c, max_batch);
    if (st != DF_OK) return st;
    df_mlp *m = df_calloc(sizeof *m, "mlp struct");
    if (!m) return DF_ERR_NOMEM;
    m->cfg = *c;
    m->max_batch = max_batch;
    mlp_register(m);

    /* Arena layout, every section 64-byte aligned. Sizes from the config and max_batch only. */
    const size_t N = (size_t)max_batch, D = (size_t)c->dim, H = (size_t)c->hidden;
    const size_t E = (size_t)c->temb_dim, L = (size_t)c->layers;
    size_t off_freq = 0;
    size_t off_x = off_freq + pad16(E / 2);
    size_t off_e = off_x + pad16(N * D);
    size_t off_z = off_e + pad16(N * E);
    size_t off_h = off_z + pad16(L * N * H);
    size_t off_ga = off_h + pad16(L * N * H);
    size_t off_gb = off_ga + pad16(N * H);
    size_t off_de = off_gb + pad16(N * H);
    size_t off_wt = off_de + pad16(c->classes > 0 ? N * E : 0);
    size_t wt = 0;
    for (int l = 0; l < c->layers; l++) {
        m->off_wt_w[l] = wt;
        wt += pad16((size_t)mlp_layer_in(c, l) * H);
        m->off_wt_u[l] = wt;
        wt += pad16(E * H);
    }
    m->off_wt_out = wt;
    wt += pad16(H * D);
    m->acts_floats = off_wt + wt;
    m->acts = df_alloc(m->acts_floats * sizeof(float), "mlp activation arena");
    if (c->classes > 0) m->y = df_alloc(N * sizeof(int), "mlp labels");
    if (!m->acts || (c->classes > 0 && !m->y)) {
        df_mlp_free(m);
        return DF_ERR_NOMEM;
    }
    m->freq = m->acts + off_freq;
    m->x = m->acts + off_x;
    m->e = m->acts + off_e;
    m->z = m->acts + off_z;
    m->h = m->acts + off_h;
    m->grad_a = m->acts + off_ga;
    m->grad_b = m->acts + off_gb;
    m->de = m->acts + off_de;
    m->wt = m->acts + off_wt;
    mlp_fill_freq(m->freq, c->temb_dim / 2);
    *out = m;
    return DF_OK;
}

void df_mlp_free(df_mlp *m) {
    if (!m) return;
    df_free(m->acts);
    df_free(m->y);
    df_param_table_free(&m->table);
    df_free(m);
}

size_t df_mlp_param_floats(const df_mlp *m) { return m->table.total; }

/* ---------------------------------------------------------------- initialisation */

/* Fills tensor `name` with uniforms in +-scale/sqrt(fan_in), drawn from the counter keyed by the
 * tensor's index in the table, so each tensor's values depend only on (seed, its index). */
static void mlp_init_tensor(const df_mlp *m, float *params, uint64_t seed, const char *name, int fan_in,
                            float scale) {
    const df_param_info *p = df_param_table_find(&m->table, name);
    ASSERT(p != NULL);
    uint32_t index = (uint32_t)(p - m->table.info);
    float *w = params + p->offset;
    df_randu(seed, DF_STREAM_INIT, index, 0, w, p->numel);
    const float bound = scale / sqrtf((float)fan_in);
    for (size_t i = 0; i < p->numel; i++) w[i] = (2.0f * w[i] - 1.0f) * bound;
}

/* Output scale 0.1 rather than 0 or 1. With the PyTorch default (1) the untrained network
 * outputs values of order 0.5 with a random, t-dependent structure that training must first
 * unlearn. With 0 the output starts at exactly 0 (the best constant for an eps target), but then
 * dL/dh = W_out^T dL/dout is exactly 0, so no layer below the output gets a gradient on the
 * first step and a gradient check at init would test nothing. 0.1 starts near zero (initial
 * loss ~ the target variance) and gives every layer a gradient from the first step.
 * Measured in a throwaway run (8 Gaussians on a circle, eps target, linear schedule T = 1000,
 * batch 256, Adam lr 1e-3, clip 1, default network; eval MSE on 4096 fixed points averaged over
 * steps 1200/1500/1800, 4 seeds): scale 0: 0.2401, scale 0.1: 0.2401, scale 1: 0.2493. */
#define MLP_OUT_INIT_SCALE 0.1f

void df_mlp_init(const df_mlp *m, float *params, uint64_t seed) {
    const df_mlp_config *c = &m->cfg;
    char name[DF_PARAM_NAME_MAX];
    memset(params, 0, m->table.total * sizeof *params);  /* padding */
    mlp_init_tensor(m, params, seed, "inp.weight", c->dim, 1.0f);
    mlp_init_tensor(m, params, seed, "inp.bias", c->dim, 1.0f);
    for (int l = 0; l < c->layers; l++) {
        snprintf(name, sizeof name, "temb.%d.weight", l);
        mlp_init_tensor(m, params, seed, name, c->temb_dim, 1.0f);
    }
    if (c->classes > 0) { /* nn.Embedding: N(0, 1), the scale of the sinusoids it is added to */
        const df_param_info *p = df_param_table_find(&m->table, "class_emb.weight");
        df_randn(seed, DF_STREAM_INIT, (uint32_t)(p - m->table.info), 0, params + p->offset, p->numel);
    }
    for (int l = 1; l < c->layers; l++) {
        snprintf(name, sizeof name, "hidden.%d.weight", l);
        mlp_init_tensor(m, params, seed, name, c->hidden, 1.0f);
        snprintf(name, sizeof name, "hidden.%d.bias", l);
        mlp_init_tensor(m, params, seed, name, c->hidden, 1.0f);
    }
    mlp_init_tensor(m, params, seed, "out.weight", c->hidden, MLP_OUT_INIT_SCALE);
    mlp_init_tensor(m, params, seed, "out.bias", c->hidden, MLP_OUT_INIT_SCALE);
}

/* ---------------------------------------------------------------- kernels */

/* y (out) += sum_k x[k] * wt[k,:], wt (in,out): the row-vector times W^T of a linear layer.
 * Four rows per pass, written as y = (((y + a) + b) + c) + d: the same additions in the same
 * order as one row per pass, with a quarter of the loads and stores of y. */
static void mlp_axpy_rows(float *restrict y, const float *restrict x, const float *restrict wt, int in, int out) {
    int k = 0;
    for (; k + 4 <= in; k += 4) {
        const float x0 = x[k], x1 = x[k + 1], x2 = x[k + 2], x3 = x[k + 3];
        const float *restrict r0 = wt + (size_t)k * out;
        const float *restrict r1 = r0 + out, *restrict r2 = r1 + out, *restrict r3 = r2 + out;
#pragma omp simd
        for (int j = 0; j < out; j++) y[j] = y[j] + x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j];
    }
    for (; k < in; k++) {
        const float xk = x[k];
        const float *restrict row = wt + (size_t)k * out;
#pragma omp simd
        for (int j = 0; j < out; j++) y[j] += xk * row[j];
    }
}

/* wt (cols,rows) = w (rows,cols)^T. */
static void mlp_transpose(float *restrict wt, const float *restrict w, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) wt[(size_t)c * rows + r] = w[(size_t)r * cols + c];
}

static float mlp_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* dw (out,in) += sum_i dz[i,:]^T inp[i,:]; db (out) += sum_i dz[i,:] (db may be NULL).
 * dz (n,out), inp (n,in). Threads own tiles of rows of dw; each element sums over i in
 * ascending order, so the result does not depend on the thread count. */
static void mlp_weight_grad(float *dw, float *db, const float *dz, const float *inp, int n, int in, int out) {
    const int tiles = (out + MLP_GRAD_ROWS - 1) / MLP_GRAD_ROWS;
#pragma omp parallel for schedule(static) if (tiles > 1 && (size_t)n * in * out >= MLP_PARALLEL_MIN_WORK)
    for (int tile = 0; tile < tiles; tile++) {
        const int j0 = tile * MLP_GRAD_ROWS;
        const int j1 = j0 + MLP_GRAD_ROWS < out ? j0 + MLP_GRAD_ROWS : out;
        for (int i0 = 0; i0 < n; i0 += MLP_GRAD_SAMPLES) {
            const int i1 = i0 + MLP_GRAD_SAMPLES < n ? i0 + MLP_GRAD_SAMPLES : n;
            for (int j = j0; j < j1; j++) {
                float *restrict dwj = dw + (size_t)j * in;
                int i = i0;
                /* Four samples per pass, added in sample order (as in mlp_axpy_rows). */
                for (; i + 4 <= i1; i += 4) {
                    const float g0 = dz[(size_t)i * out + j], g1 = dz[(size_t)(i + 1) * out + j];
                    const float g2 = dz[(size_t)(i + 2) * out + j], g3 = dz[(size_t)(i + 3) * out + j];
                    const float *restrict x0 = inp + (size_t)i * in;
                    const float *restrict x1 = x0 + in, *restrict x2 = x1 + in, *restrict x3 = x2 + in;
                    if (db) db[j] = db[j] + g0 + g1 + g2 + g3;
#pragma omp simd
                    for (int k = 0; k < in; k++) dwj[k] = dwj[k] + g0 * x0[k] + g1 * x1[k] + g2 * x2[k] + g3 * x3[k];
                }
                for (; i < i1; i++) {
                    const float g = dz[(size_t)i * out + j];
                    const float *restrict xi = inp + (size_t)i * in;
                    if (db) db[j] += g;
#pragma omp simd
                    for (int k = 0; k < in; k++) dwj[k] += g * xi[k];
                }
            }
        }
    }
}

/* dinp (n,in) (+)= dz (n,out) w (out,in). Overwrites when `accumulate` is 0. */
static void mlp_input_grad(float *dinp, const float *dz, const float *w, int n, int in, int out, int accumulate) {
#pragma omp parallel for schedule(static) if ((size_t)n * in * out >= MLP_PARALLEL_MIN_WORK)
    for (int i = 0; i < n; i++) {
        float *restrict di = dinp + (size_t)i * in;
        const float *restrict gi = dz + (size_t)i * out;
        if (!accumulate) memset(di, 0, (size_t)in * sizeof *di);
        mlp_axpy_rows(di, gi, w, out, in);  /* di (in) += sum_j g_j w[j,:], rows of w (out,in) */
    }
}

/* ---------------------------------------------------------------- forward */

/* One sample through the whole network; all inputs and weights already in the arena. */
static void mlp_forward_one(df_mlp *m, const float *params, int i, int t, const int *labels, float *out_i) {
    const df_mlp_config *c = &m->cfg;
    const int D = c->dim, H = c->hidden, E = c->temb_dim, half = E / 2;
    const size_t N = (size_t)m->max_batch;
    float *ei = m->e + (size_t)i * E;
    for (int j = 0; j < half; j++) {
        const float arg = (float)t * m->freq[j];
        ei[j] = sinf(arg);
        ei[half + j] = cosf(arg);
    }
    if (labels) {
        const float *row = params + m->off_class + (size_t)labels[i] * E;
        for (int j = 0; j < E; j++) ei[j] += row[j];
    }
    const float *in = m->x + (size_t)i * D;
    for (int l = 0; l < c->layers; l++) {
        float *zi = m->z + ((size_t)l * N + i) * H;
        float *hi = m->h + ((size_t)l * N + i) * H;
        const float *b = params + (l == 0 ? m->off_inp_b : m->off_hid_b[l]);
        memcpy(zi, b, (size_t)H * sizeof *zi);
        mlp_axpy_rows(zi, in, m->wt + m->off_wt_w[l], mlp_layer_in(c, l), H);
        mlp_axpy_rows(zi, ei, m->wt + m->off_wt_u[l], E, H);
        for (int j = 0; j < H; j++) hi[j] = zi[j] * mlp_sigmoid(zi[j]);
        in = hi;
    }
    memcpy(out_i, params + m->off_out_b, (size_t)D * sizeof *out_i);
    mlp_axpy_rows(out_i, in, m->wt + m->off_wt_out, H, D);
}

void df_mlp_forward(df_mlp *m, const float *params, int n, const float *x, const int *t_index, const int *labels,
                    float *out) {
    const df_mlp_config *c = &m->cfg;
    ASSERT(n >= 1 && n <= m->max_batch);
    ASSERT((c->classes > 0) == (labels != NULL));
    for (int i = 0; labels && i < n; i++) ASSERT(labels[i] >= 0 && labels[i] < c->classes);
    if (labels) memcpy(m->y, labels, (size_t)n * sizeof *labels);
    const int D = c->dim, H = c->hidden, E = c->temb_dim;
    /* Transposed weights: O(params) work, negligible beside the O(n * params) of the batch. */
    for (int l = 0; l < c->layers; l++) {
        const float *w = params + (l == 0 ? m->off_inp_w : m->off_hid_w[l]);
        mlp_transpose(m->wt + m->off_wt_w[l], w, H, mlp_layer_in(c, l));
        mlp_transpose(m->wt + m->off_wt_u[l], params + m->off_temb_w[l], H, E);
    }
    mlp_transpose(m->wt + m->off_wt_out, params + m->off_out_w, D, H);
    /* The input is copied: the caller may overwrite x before calling backward. */
    memcpy(m->x, x, (size_t)n * D * sizeof *x);
    m->n_last = n;
#pragma omp parallel for schedule(static) if ((size_t)n * m->table.total >= MLP_PARALLEL_MIN_WORK)
    for (int i = 0; i < n; i++) mlp_forward_one(m, params, i, t_index[i], labels, out + (size_t)i * D);
}

/* ---------------------------------------------------------------- backward */

/* g (n,H) *= SiLU'(z), SiLU'(z) = s (1 + z (1 - s)), s = sigmoid(z). */
static void mlp_silu_backward_inplace(float *g, const float *z, size_t count) {
#pragma omp parallel for schedule(static) if (count >= MLP_PARALLEL_MIN_WORK / 16)
    for (size_t k = 0; k < count; k++) {
        const float s = mlp_sigmoid(z[k]);
        g[k] *= s * (1.0f + z[k] * (1.0f - s));
    }
}

void df_mlp_backward_input(df_mlp *m, const float *params, float *grads, int n, const float *dout, float *dx) {
    const df_mlp_config *c = &m->cfg;
    ASSERT(n == m->n_last);
    const int D = c->dim, H = c->hidden, E = c->temb_dim, L = c->layers;
    const size_t N = (size_t)m->max_batch;
    const float *h_last = m->h + (size_t)(L - 1) * N * H;
    if (grads) mlp_weight_grad(grads + m->off_out_w, grads + m->off_out_b, dout, h_last, n, H, D);
    float *g = m->grad_a, *g_prev = m->grad_b;
    mlp_input_grad(g, dout, params + m->off_out_w, n, H, D, 0);  /* g = dL/dh_{L-1} (n,H) */
    for (int l = L - 1; l >= 0; l--) {
        const float *z = m->z + (size_t)l * N * H;
        mlp_silu_backward_inplace(g, z, (size_t)n * H);  /* g = dL/dz_l */
        const int in = mlp_layer_in(c, l);
        const float *inp = l == 0 ? m->x : m->h + (size_t)(l - 1) * N * H;
        const size_t off_w = l == 0 ? m->off_inp_w : m->off_hid_w[l];
        if (grads) {
            const size_t off_b = l == 0 ? m->off_inp_b : m->off_hid_b[l];
            mlp_weight_grad(grads + off_w, grads + off_b, g, inp, n, in, H);
            mlp_weight_grad(grads + m->off_temb_w[l], NULL, g, m->e, n, E, H);
        }
        /* de (n,E) = sum_l dz_l U_l: every layer reads the embedding */
        if (grads && c->classes > 0) mlp_input_grad(m->de, g, params + m->off_temb_w[l], n, E, H, l != L - 1);
        if (l > 0) {
            mlp_input_grad(g_prev, g, params + off_w, n, in, H, 0);
            float *tmp = g;
            g = g_prev, g_prev = tmp;
        } else if (dx) {
            mlp_input_grad(dx, g, params + off_w, n, in, H, 1);
        }
    }
    /* the class rows take de as it is (an addition), in sample order */
    for (int i = 0; grads && c->classes > 0 && i < n; i++) {
        float *row = grads + m->off_class + (size_t)m->y[i] * E;
        const float *d = m->de + (size_t)i * E;
        for (int j = 0; j < E; j++) row[j] += d[j];
    }
}

void df_mlp_backward(df_mlp *m, const float *params, float *grads, int n, const float *dout) {
    df_mlp_backward_input(m, params, grads, n, dout, NULL);
}
