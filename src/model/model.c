/* model.c: a network plus its diffusion settings; checkpoints in safetensors. See model.h. */
#include "common.h"
#include "model_impl.h"
#include "mlp.h"
#include "params.h"
#include "safetensors.h"
#include "unet.h"
#include <errno.h>
#include <math.h>
#include <string.h>

void df_diffusion_config_init(df_diffusion_config *d) {
    memset(d, 0, sizeof *d);
    df_schedule_params_init(&d->schedule);
    d->pred = DF_PRED_EPS;
    d->loss = DF_LOSS_SIMPLE;
    d->var = DF_VAR_POSTERIOR;
}

static df_status alloc_blocks(df_model *m) {
    size_t bytes = m->table->total * sizeof(float);
    m->n_floats = m->table->total;
    if (!(m->params = df_calloc(bytes, "model weights")) || !(m->ema = df_calloc(bytes, "EMA weights")))
        return DF_ERR_NOMEM;
    if (m->training && (!(m->grads = df_calloc(bytes, "gradients")) || !(m->adam_m = df_calloc(bytes, "AdamW moments")) ||
                        !(m->adam_v = df_calloc(bytes, "AdamW moments"))))
        return DF_ERR_NOMEM;
    return DF_OK;
}

/* Parameters of an MLP config (mlp.h lists the tensors). */
static double mlp_param_count(const df_mlp_config *c) {
    double D = c->dim, H = c->hidden, E = c->temb_dim, L = c->layers, K = c->classes;
    return H * D + H + L * H * E + K * E + (L - 1) * (H * H + H) + D * H + D;
}

static df_status build_mlp(df_model *m, const df_mlp_config *c, int max_batch, int training) {
    /* weights + EMA (+ gradients, AdamW moments) and the arena's per-layer activations */
    double floats = (training ? 5.0 : 2.0) * mlp_param_count(c) +
                    (double)max_batch * (2.0 * c->layers * c->hidden + 2.0 * c->hidden + c->dim + c->temb_dim);
    char what[128];
    snprintf(what, sizeof what, "the MLP at batch %d for %s", max_batch, training ? "training" : "sampling");
    df_status st = df_check_memory(4.0 * floats, what);
    if (st != DF_OK) return st;
    m->kind = DF_NET_MLP;
    m->mlp = *c;
    df_mlp *net;
    st = df_mlp_new(c, max_batch, &net);
    if (st != DF_OK) return st;
    m->net = net;
    m->table = &net->table;
    m->dim = (size_t)c->dim;
    m->channels = c->dim;
    m->height = m->width = 1;
    m->max_batch = max_batch;
    m->training = training;
    m->n_classes = c->classes;
    m->null_class = -1;
    if (m->n_classes > 0 && !(m->null_labels = df_calloc((size_t)max_batch * sizeof(int), "class labels")))
        return DF_ERR_NOMEM;
    return alloc_blocks(m);
}

static df_status build_unet(df_model *m, const df_unet_config *c, int max_batch, int training) {
    m->kind = DF_NET_UNET;
    m->unet = *c;
    if (df_unet_config_to_json(c, m->unet_config_json, sizeof m->unet_config_json) >= sizeof m->unet_config_json)
        return df_fail(DF_ERR_ARG, "U-Net config too large");
    df_unet *net;
    df_status st = df_unet_new(c, max_batch, training, &net);
    if (st != DF_OK) return st;
    m->net = net;
    m->table = df_unet_params(net);
    m->channels = c->in_channels;
    m->height = m->width = c->sample_size;
    m->dim = (size_t)c->in_channels * c->sample_size * c->sample_size;
    m->max_batch = max_batch;
    m->training = training;
    m->n_classes = c->num_class_embeds;
    m->null_class = -1;
    if (m->n_classes > 0 && !(m->null_labels = df_calloc((size_t)max_batch * sizeof(int), "class labels")))
        return DF_ERR_NOMEM;
    if (c->out_channels != c->in_channels)
        return df_fail(DF_ERR_UNSUPPORTED, "a denoiser needs out_channels == in_channels (got %d and %d)", c->out_channels,
                       c->in_channels);
    return alloc_blocks(m);
}

/* Shared by the constructors: the schedule, the network (build_net), fresh weights, EMA = weights. */
static df_status new_model(df_model *m, df_net_kind kind, const void *net_config, const df_diffusion_config *d,
                           int max_batch, int training, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->diff = *d;
    df_status st = df_schedule_new(&d->schedule, &m->schedule);
    if (st == DF_OK)
        st = kind == DF_NET_UNET ? build_unet(m, net_config, max_batch, training) : build_mlp(m, net_config, max_batch, training);
    if (st != DF_OK) {
        df_model_release(m);
        return st;
    }
    m->seed = seed;
    if (kind == DF_NET_UNET) df_unet_init(m->net, m->params, seed);
    else df_mlp_init(m->net, m->params, seed);
    memcpy(m->ema, m->params, m->n_floats * sizeof(float));
    m->use_ema = 1;
    if (m->n_classes > 0) df_model_set_null_class(m, m->n_classes - 1);  /* trained here: K classes, then null */
    return DF_OK;
}

/* The one allocation of a model's struct: *out is the model on DF_OK, NULL otherwise. */
static df_status box_model(df_model **out, df_model **m) {
    *out = NULL;
    *m = df_alloc(sizeof **m, "the model");
    if (!*m) return DF_ERR_NOMEM;
    memset(*m, 0, sizeof **m);
    return DF_OK;
}

/* Hands a filled model to the caller, or frees the box of one that failed (its contents are
 * already released by the failing constructor). */
static df_status unbox_model(df_status st, df_model *m, df_model **out) {
    if (st != DF_OK) {
        df_free(m);
        return st;
    }
    *out = m;
    return DF_OK;
}

df_status df_model_new_unet(const df_unet_config *c, const df_diffusion_config *d, int max_batch,
                            int training, uint64_t seed, df_model **out) {
    df_model *m;
    df_status st = box_model(out, &m);
    return st ? st : unbox_model(new_model(m, DF_NET_UNET, c, d, max_batch, training, seed), m, out);
}

df_status df_model_new_mlp(const df_mlp_config *c, const df_diffusion_config *d, int max_batch,
                           int training, uint64_t seed, df_model **out) {
    df_model *m;
    df_status st = box_model(out, &m);
    return st ? st : unbox_model(new_model(m, DF_NET_MLP, c, d, max_batch, training, seed), m, out);
}

void df_model_free(df_model *m) {
    if (!m) return;
    df_model_release(m);
    df_free(m);
}

void df_model_release(df_model *m) {
    if (m->net && m->kind == DF_NET_MLP) df_mlp_free(m->net);
    if (m->net && m->kind == DF_NET_UNET) df_unet_free(m->net);
    df_free(m->params);
    df_free(m->ema);
    df_free(m->grads);
    df_free(m->adam_m);
    df_free(m->adam_v);
    df_free(m->null_labels);
    free(m->class_names);
    df_schedule_free(&m->schedule);
    memset(m, 0, sizeof *m);
}

void df_model_forward(df_model *m, const float *params, int n, const float *x, const int *t, const int *labels,
                      float *out, int training) {
    ASSERT(n <= m->max_batch);
    if (m->n_classes > 0 && !labels) {
        ASSERT(m->null_class >= 0);  /* df_model_predict refuses a model without a known null class */
        labels = m->null_labels;
    }
    if (m->n_classes == 0) labels = NULL;
    switch (m->kind) {
    case DF_NET_MLP: df_mlp_forward(m->net, params, n, x, t, labels, out); break;
    case DF_NET_UNET:
        ((df_unet *)m->net)->dropout_first = (uint64_t)m->dropout_first;
        df_unet_forward(m->net, params, n, x, t, labels, out, training, m->seed, (uint32_t)m->dropout_step);
        break;
    default: ASSERT(0);
    }
}

void df_model_backward(df_model *m, const float *params, float *grads, int n, const float *dout) {
    switch (m->kind) {
    case DF_NET_MLP: df_mlp_backward(m->net, params, grads, n, dout); break;
    case DF_NET_UNET: df_unet_backward(m->net, params, grads, n, dout); break;
    default: ASSERT(0);
    }
}

/* A conditional model's unconditional prediction needs its null class. */
static df_status check_null_class(const df_model *m) {
    if (m->n_classes > 0 && m->null_class < 0)
        return df_fail(DF_ERR_ARG, "this class-conditional model (%d class embeddings) has no known null class: name "
                       "the index that means \"no class\" (--null-class J)", m->n_classes);
    return DF_OK;
}

df_status df_model_predict(void *ctx, int n, const int *t, const float *x, float *out) {
    df_model *m = ctx;
    const float *w = m->use_ema ? m->ema : m->params;
    df_status st = check_null_class(m);
    if (st != DF_OK) return st;
    for (int b0 = 0; b0 < n; b0 += m->max_batch) {
        int nb = n - b0 < m->max_batch ? n - b0 : m->max_batch;
        df_model_forward(m, w, nb, x + (size_t)b0 * m->dim, t + b0, NULL, out + (size_t)b0 * m->dim, 0);
    }
    return DF_OK;
}

int df_model_num_classes(const df_model *m) { return m->n_classes; }

const char *df_model_class_names(const df_model *m) { return m->class_names; }

df_status df_model_set_class_names(df_model *m, const char *names) {
    if (m->n_classes == 0) return df_fail(DF_ERR_ARG, "the model is not class-conditional: it has no class names");
    int lines = 1;
    for (const char *p = names; *p; p++) lines += *p == '\n';
    const int want = m->null_class >= 0 ? m->n_classes - 1 : m->n_classes;
    if (lines != want) return df_fail(DF_ERR_ARG, "%d class names for a model of %d classes", lines, want);
    char *copy = strdup(names);
    if (!copy) return df_fail(DF_ERR_NOMEM, "out of memory for the class names");
    free(m->class_names);
    m->class_names = copy;
    return DF_OK;
}

int df_model_class_index(const df_model *m, const char *name) {
    const char *p = m->class_names;
    const size_t len = strlen(name);
    for (int i = 0; p; i++) {
        const char *end = strchr(p, '\n');
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, name, n) == 0) return i;
        p = end ? end + 1 : NULL;
    }
    return -1;
}
int df_model_null_class(const df_model *m) { return m->null_class; }

df_status df_model_set_null_class(df_model *m, int j) {
    if (m->n_classes == 0) return df_fail(DF_ERR_ARG, "the model is not class-conditional: it has no null class");
    if (j < 0 || j >= m->n_classes)
        return df_fail(DF_ERR_ARG, "null class %d is out of range: the model has class embeddings 0..%d", j, m->n_classes - 1);
    m->null_class = j;
    for (int i = 0; i < m->max_batch; i++) m->null_labels[i] = j;
    return DF_OK;
}

void df_model_set_precision(df_model *m, df_precision p) {
    ASSERT(p >= 0 && p < DF_PRECISION_COUNT);
    if (m->kind == DF_NET_UNET) ((df_unet *)m->net)->precision = p;  /* the MLP is always fp32 */
}

/* ---------------------------------------------------------------- checkpoints */

static void meta_int(df_st_writer *w, const char *key, long v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%ld", v);
    df_st_writer_meta(w, key, buf);
}

static void meta_double(df_st_writer *w, const char *key, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    df_st_writer_meta(w, key, buf);
}

df_status df_model_save(const df_model *m, const char *path, int with_state) {
    df_st_writer *w = df_st_writer_new();
    if (!w) return df_fail(DF_ERR_NOMEM, "out of memory writing %s", path);
    char (*ema_names)[DF_PARAM_NAME_MAX + 8] = malloc((size_t)m->table->count * sizeof *ema_names);
    if (!ema_names) {
        df_st_writer_free(w);
        return df_fail(DF_ERR_NOMEM, "out of memory writing %s", path);
    }
    for (int k = 0; k < m->table->count; k++) {
        const df_param_info *p = &m->table->info[k];
        df_st_writer_add(w, p->name, DF_DTYPE_F32, p->ndim, p->shape, m->params + p->offset);
    }
    for (int k = 0; k < m->table->count; k++) {
        const df_param_info *p = &m->table->info[k];
        snprintf(ema_names[k], sizeof ema_names[k], "ema/%s", p->name);
        df_st_writer_add(w, ema_names[k], DF_DTYPE_F32, p->ndim, p->shape, m->ema + p->offset);
    }
    int64_t flat = (int64_t)m->n_floats;
    if (with_state) {
        ASSERT(m->adam_m && m->adam_v);
        df_st_writer_add(w, "train/adam_m", DF_DTYPE_F32, 1, &flat, m->adam_m);
        df_st_writer_add(w, "train/adam_v", DF_DTYPE_F32, 1, &flat, m->adam_v);
    }
    df_st_writer_meta(w, "diffuse.format", "1");
    df_st_writer_meta(w, "diffuse.net", m->kind == DF_NET_MLP ? "mlp" : "unet");
    if (m->kind == DF_NET_MLP) {
        meta_int(w, "mlp.dim", m->mlp.dim);
        meta_int(w, "mlp.hidden", m->mlp.hidden);
        meta_int(w, "mlp.layers", m->mlp.layers);
        meta_int(w, "mlp.temb_dim", m->mlp.temb_dim);
        if (m->n_classes > 0) meta_int(w, "mlp.classes", m->n_classes);
    } else {
        df_st_writer_meta(w, "unet.config", m->unet_config_json);
    }
    if (m->n_classes > 0 && m->null_class >= 0) meta_int(w, "cond.null_class", m->null_class);
    if (m->n_classes > 0 && m->class_names) df_st_writer_meta(w, "cond.class_names", m->class_names);
    const df_schedule_params *sp = &m->diff.schedule;
    df_st_writer_meta(w, "diffusion.schedule", df_schedule_name(sp->kind));
    meta_int(w, "diffusion.timesteps", sp->T);
    meta_double(w, "diffusion.beta_start", sp->beta_start);
    meta_double(w, "diffusion.beta_end", sp->beta_end);
    meta_double(w, "diffusion.cosine_s", sp->cosine_s);
    meta_double(w, "diffusion.max_beta", sp->max_beta);
    df_st_writer_meta(w, "diffusion.pred", df_pred_name(m->diff.pred));
    df_st_writer_meta(w, "diffusion.loss", df_loss_name(m->diff.loss));
    df_st_writer_meta(w, "diffusion.var", df_var_name(m->diff.var));
    meta_int(w, "train.step", m->step);
    meta_int(w, "train.seed", (long)m->seed);
    meta_double(w, "train.ema_decay", m->ema_decay);
    df_st_writer_meta(w, "train.data", m->data);
    df_status st = df_st_writer_write(w, path);
    df_st_writer_free(w);
    free(ema_names);
    return st;
}

/* Reads metadata value `key` as a long / double / string, with a clear message when absent or bad. */
static df_status get_meta(const df_st_file *f, const char *key, const char **out) {
    *out = df_st_meta(f, key);
    if (!*out) return df_fail(DF_ERR_FORMAT, "%s: not a diffuse checkpoint: metadata '%s' is missing", f->path, key);
    return DF_OK;
}

static df_status get_meta_long(const df_st_file *f, const char *key, long lo, long hi, long *out) {
    const char *s;
    df_status st = get_meta(f, key, &s);
    if (st != DF_OK) return st;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return df_fail(DF_ERR_FORMAT, "%s: metadata '%s' = '%s' is not an integer in %ld..%ld", f->path, key, s, lo, hi);
    *out = v;
    return DF_OK;
}

static df_status get_meta_double(const df_st_file *f, const char *key, double *out) {
    const char *s;
    df_status st = get_meta(f, key, &s);
    if (st != DF_OK) return st;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return df_fail(DF_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a number", f->path, key, s);
    *out = v;
    return DF_OK;
}

/* Prefixes the last error message with the checkpoint's path. */
static df_status in_file(const df_st_file *f, df_status st) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", df_last_error());
    return df_fail(st, "%s: %s", f->path, msg);
}

static df_status read_diffusion_meta(const df_st_file *f, df_diffusion_config *d) {
    const char *s;
    long T;
    df_status st;
    df_diffusion_config_init(d);
    if ((st = get_meta(f, "diffusion.schedule", &s))) return st;
    if ((st = df_schedule_from_name(s, &d->schedule.kind))) return in_file(f, st);
    if ((st = get_meta_long(f, "diffusion.timesteps", 2, 100000, &T))) return st;
    d->schedule.T = (int)T;
    if ((st = get_meta_double(f, "diffusion.beta_start", &d->schedule.beta_start)) ||
        (st = get_meta_double(f, "diffusion.beta_end", &d->schedule.beta_end)) ||
        (st = get_meta_double(f, "diffusion.cosine_s", &d->schedule.cosine_s)) ||
        (st = get_meta_double(f, "diffusion.max_beta", &d->schedule.max_beta)))
        return st;
    if ((st = get_meta(f, "diffusion.pred", &s))) return st;
    if ((st = df_pred_from_name(s, &d->pred))) return in_file(f, st);
    if ((st = get_meta(f, "diffusion.loss", &s))) return st;
    if ((st = df_loss_from_name(s, &d->loss))) return in_file(f, st);
    if ((st = get_meta(f, "diffusion.var", &s))) return st;
    if ((st = df_var_from_name(s, &d->var))) return in_file(f, st);
    return DF_OK;
}

static df_status load_weights(df_model *m, const df_st_file *f) {
    char name[DF_PARAM_NAME_MAX + 8];
    for (int k = 0; k < m->table->count; k++) {
        const df_param_info *p = &m->table->info[k];
        df_status st = df_st_get_f32(f, p->name, p->ndim, p->shape, m->params + p->offset);
        if (st != DF_OK) return st;
        snprintf(name, sizeof name, "ema/%s", p->name);
        if (df_st_find(f, name)) st = df_st_get_f32(f, name, p->ndim, p->shape, m->ema + p->offset);
        else memcpy(m->ema + p->offset, m->params + p->offset, p->numel * sizeof(float));
        if (st != DF_OK) return st;
    }
    for (size_t i = 0; i < m->n_floats; i++)
        if (!isfinite(m->params[i]) || !isfinite(m->ema[i]))
            return df_fail(DF_ERR_NAN, "%s: the checkpoint holds non-finite weights", f->path);
    if (m->training && df_st_find(f, "train/adam_m")) {
        int64_t flat = (int64_t)m->n_floats;
        df_status st = df_st_get_f32(f, "train/adam_m", 1, &flat, m->adam_m);
        if (st == DF_OK) st = df_st_get_f32(f, "train/adam_v", 1, &flat, m->adam_v);
        if (st != DF_OK) return st;
    }
    return DF_OK;
}

/* The file's weight values (every tensor but ema/ and train/) must number what its config
 * describes. Checked before the network is built, so a tiny file whose metadata claims a huge
 * network is refused at once instead of after allocating it. */
static df_status check_param_count(const df_st_file *f, double want) {
    double have = 0;
    for (int k = 0; k < f->n_tensors; k++) {
        const df_st_tensor *t = &f->tensors[k];
        if (strncmp(t->name, "ema/", 4) == 0 || strncmp(t->name, "train/", 6) == 0) continue;
        double numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (double)t->shape[d];
        have += numel;
    }
    if (have != want)
        return df_fail(DF_ERR_FORMAT, "%s: its config describes %.0f parameters but the file holds %.0f weight values "
                       "(a corrupt file, or a config that does not match the tensors)", f->path, want, have);
    return DF_OK;
}

/* Fills m from a checkpoint; on failure m is left released. */
static df_status load_model(const char *path, int max_batch, int training, df_model *m) {
    df_st_file f;
    df_status st = df_st_read(path, &f);
    if (st != DF_OK) return st;
    const char *net, *s;
    long v;
    if ((st = get_meta(&f, "diffuse.net", &net))) goto done;
    if ((st = read_diffusion_meta(&f, &m->diff))) goto done;
    if ((st = df_schedule_new(&m->diff.schedule, &m->schedule))) goto done;
    if (strcmp(net, "mlp") == 0) {
        df_mlp_config c;
        df_mlp_config_init(&c);
        if ((st = get_meta_long(&f, "mlp.dim", 1, 1 << 16, &v))) goto done;
        c.dim = (int)v;
        if ((st = get_meta_long(&f, "mlp.hidden", 1, 1 << 16, &v))) goto done;
        c.hidden = (int)v;
        if ((st = get_meta_long(&f, "mlp.layers", 1, 64, &v))) goto done;
        c.layers = (int)v;
        if ((st = get_meta_long(&f, "mlp.temb_dim", 2, 1 << 16, &v))) goto done;
        c.temb_dim = (int)v;
        if (df_st_meta(&f, "mlp.classes")) {
            if ((st = get_meta_long(&f, "mlp.classes", 2, 1000000, &v))) goto done;
            c.classes = (int)v;
        }
        if ((st = check_param_count(&f, mlp_param_count(&c)))) goto done;
        if ((st = build_mlp(m, &c, max_batch, training))) goto done;
    } else if (strcmp(net, "unet") == 0) {
        df_unet_config c;
        if ((st = get_meta(&f, "unet.config", &s))) goto done;
        if ((st = df_unet_config_from_json(s, strlen(s), &c))) {
            st = in_file(&f, st);
            goto done;
        }
        size_t count;
        int tensors;
        if ((st = df_unet_count_params(&c, &count, &tensors)) || (st = check_param_count(&f, (double)count))) goto done;
        if ((st = build_unet(m, &c, max_batch, training))) goto done;
    } else {
        st = df_fail(DF_ERR_FORMAT, "%s: unknown network '%s'", path, net);
        goto done;
    }
    if ((st = load_weights(m, &f))) goto done;
    if ((st = get_meta_long(&f, "train.step", 0, 1L << 50, &m->step))) goto done;
    if ((st = get_meta_long(&f, "train.seed", 0, 1L << 62, &v))) goto done;
    m->seed = (uint64_t)v;
    if ((st = get_meta_double(&f, "train.ema_decay", &m->ema_decay))) goto done;
    if ((s = df_st_meta(&f, "train.data"))) snprintf(m->data, sizeof m->data, "%s", s);
    if (m->n_classes > 0 && df_st_meta(&f, "cond.null_class")) {
        if ((st = get_meta_long(&f, "cond.null_class", 0, m->n_classes - 1, &v))) goto done;
        df_model_set_null_class(m, (int)v);
    }
    if (m->n_classes > 0 && (s = df_st_meta(&f, "cond.class_names")) && (st = df_model_set_class_names(m, s))) {
        st = in_file(&f, st);
        goto done;
    }
    m->use_ema = 1;
done:
    df_st_free(&f);
    if (st != DF_OK) {
        df_schedule_free(&m->schedule);
        if (m->table) df_model_release(m);
    }
    return st;
}

df_status df_model_load(const char *path, int max_batch, int training, df_model **out) {
    df_model *m;
    df_status st = box_model(out, &m);
    return st ? st : unbox_model(load_model(path, max_batch, training, m), m, out);
}

void df_model_describe(const df_model *m, char *buf, size_t cap) {
    const df_schedule_params *sp = &m->diff.schedule;
    if (m->kind == DF_NET_MLP)
        snprintf(buf, cap, "mlp (dim %d, hidden %d, layers %d, temb %d), %zu parameters",
                 m->mlp.dim, m->mlp.hidden, m->mlp.layers, m->mlp.temb_dim, df_param_table_count(m->table));
    else
        snprintf(buf, cap, "unet %dx%dx%d, %zu parameters", m->channels, m->height, m->width, df_param_table_count(m->table));
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "; schedule %s T=%d (beta %g..%g), pred %s, loss %s, var %s; trained %ld steps",
             df_schedule_name(sp->kind), sp->T, sp->beta_start, sp->beta_end, df_pred_name(m->diff.pred),
             df_loss_name(m->diff.loss), df_var_name(m->diff.var), m->step);
}

size_t df_model_param_count(const df_model *m) { return df_param_table_count(m->table); }

int df_model_tensor_count(const df_model *m) { return m->table->count; }

df_status df_unet_config_counts(const df_unet_config *c, size_t *params, int *tensors) {
    return df_unet_count_params(c, params, tensors);
}

/* ---------------------------------------------------------------- accessors */

df_net_kind df_model_kind(const df_model *m) { return m->kind; }
const df_diffusion_config *df_model_diffusion(const df_model *m) { return &m->diff; }
const df_schedule *df_model_schedule(const df_model *m) { return &m->schedule; }
const df_unet_config *df_model_unet_config(const df_model *m) { return m->kind == DF_NET_UNET ? &m->unet : NULL; }
const df_mlp_config *df_model_mlp_config(const df_model *m) { return m->kind == DF_NET_MLP ? &m->mlp : NULL; }

size_t df_model_sample_shape(const df_model *m, int *channels, int *height, int *width) {
    if (channels) *channels = m->channels;
    if (height) *height = m->height;
    if (width) *width = m->width;
    return m->dim;
}

int df_model_max_batch(const df_model *m) { return m->max_batch; }
long df_model_step(const df_model *m) { return m->step; }
uint64_t df_model_seed(const df_model *m) { return m->seed; }
double df_model_ema_decay(const df_model *m) { return m->ema_decay; }
const char *df_model_data(const df_model *m) { return m->data; }
void df_model_set_data(df_model *m, const char *spec) { snprintf(m->data, sizeof m->data, "%s", spec); }
void df_model_set_use_ema(df_model *m, int on) { m->use_ema = on != 0; }
int df_model_use_ema(const df_model *m) { return m->use_ema; }
const df_param_table *df_model_param_table(const df_model *m) { return m->table; }
float *df_model_weights(const df_model *m, int ema) { return ema ? m->ema : m->params; }
float *df_model_grads(const df_model *m) { return m->grads; }
