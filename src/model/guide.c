/* guide.c: classifier-free guidance (Ho & Salimans 2022) as a df_predict_fn, so that every sampler
 * guides without knowing it: out = pred(x, null) + scale * (pred(x, c) - pred(x, null)), the two
 * predictions of a pass run as one batch (the conditional half first). */
#include "common.h"
#include "model_impl.h"
#include <math.h>
#include <string.h>

df_status df_guide_init(df_guide *g, df_model *m, int label, double scale) {
    memset(g, 0, sizeof *g);
    if (m->n_classes == 0) return df_fail(DF_ERR_ARG, "the model is not class-conditional: it takes no class");
    if (!isfinite(scale) || scale < 0) return df_fail(DF_ERR_ARG, "the guidance scale must be finite and >= 0 (got %g)", scale);
    if (scale != 1 && m->null_class < 0)
        return df_fail(DF_ERR_ARG, "guidance needs the model's null class, which this model does not name "
                       "(--null-class J; a model trained here has it at index %d)", m->n_classes - 1);
    const int last = m->null_class == m->n_classes - 1 ? m->n_classes - 2 : m->n_classes - 1;
    if (label < 0 || label > last || label == m->null_class)
        return df_fail(DF_ERR_ARG, "class %d is out of range: the model's classes are 0..%d%s", label, last,
                       m->null_class >= 0 && m->null_class < last ? " without its null class" : "");
    if (scale != 1 && m->max_batch < 2)
        return df_fail(DF_ERR_ARG, "guidance runs two predictions in one batch: the model needs a batch of at least 2");
    const size_t cap = (size_t)m->max_batch;
    g->x2 = df_alloc(sizeof(float) * cap * m->dim, "guidance inputs");
    g->out2 = df_alloc(sizeof(float) * cap * m->dim, "guidance outputs");
    g->t2 = df_alloc(sizeof(int) * cap, "guidance steps");
    g->y2 = df_alloc(sizeof(int) * cap, "guidance labels");
    if (!g->x2 || !g->out2 || !g->t2 || !g->y2) {
        df_guide_free(g);
        return DF_ERR_NOMEM;
    }
    g->model = m;
    g->label = label;
    g->scale = scale;
    return DF_OK;
}

void df_guide_free(df_guide *g) {
    df_free(g->x2);
    df_free(g->out2);
    df_free(g->t2);
    df_free(g->y2);
    memset(g, 0, sizeof *g);
}

/* nb samples, x and t: labelled `label` in rows 0..nb-1 and, when guiding, null in rows nb..2nb-1. */
static void guided_pass(df_guide *g, const float *w, int nb, const int *t, const float *x, float *out) {
    df_model *m = g->model;
    const size_t d = m->dim, bytes = sizeof(float) * (size_t)nb * d;
    const int halves = g->scale == 1 ? 1 : 2;
    for (int h = 0; h < halves; h++) {
        memcpy(g->x2 + (size_t)h * nb * d, x, bytes);
        memcpy(g->t2 + (size_t)h * nb, t, sizeof(int) * (size_t)nb);
        for (int i = 0; i < nb; i++) g->y2[h * nb + i] = h == 0 ? g->label : m->null_class;
    }
    df_model_forward(m, w, halves * nb, g->x2, g->t2, g->y2, g->out2, 0);
    const float *cond = g->out2, *null = g->out2 + (size_t)nb * d;
    if (halves == 1) {
        memcpy(out, cond, bytes);
        return;
    }
    const float s = (float)g->scale;
    for (size_t k = 0; k < (size_t)nb * d; k++) out[k] = null[k] + s * (cond[k] - null[k]);
}

df_status df_guided_predict(void *ctx, int n, const int *t, const float *x, float *out) {
    df_guide *g = ctx;
    df_model *m = g->model;
    const float *w = m->use_ema ? m->ema : m->params;
    const int chunk = g->scale == 1 ? m->max_batch : m->max_batch / 2;
    for (int b0 = 0; b0 < n; b0 += chunk) {
        const int nb = n - b0 < chunk ? n - b0 : chunk;
        guided_pass(g, w, nb, t + b0, x + (size_t)b0 * m->dim, out + (size_t)b0 * m->dim);
    }
    return DF_OK;
}
