/* test_diffusers.c: diffusers model and pipeline folders (src/model/diffusers.c), both directions.
 *
 *  (a) Each PyTorch fixture (tests/fixtures/unet_*.safetensors, tools/make_unet_fixtures.py) becomes a
 *      diffusers MODEL folder written here by hand (config.json = the fixture's config text, the
 *      weights = its "param/<name>" tensors under their own names); df_diffusers_load reads it and
 *      df_model_forward on the fixture's x, t must give its "out".
 *  (b) The same with the legacy attention names (query/key/value/proj_attn), and with F16 and BF16
 *      weights (the loaded weights must equal our own rounding of the fixture's exactly).
 *  (c) Round trip: df_diffusers_save then df_diffusers_load gives bit-identical weights (EMA or raw)
 *      and the same network and diffusion settings; settings diffusers cannot express are refused.
 *  (d) Refusals: each bad config field, scheduler field, tensor or file gives the right status and a
 *      message naming the field, tensor or file.
 *  (e) The published google/ddpm-cifar10-32 config.json (docs/unet.md) is the ddpm-cifar10 preset
 *      with dropout 0, its scheduler is linear / eps / beta variance with clipping, and the 2022
 *      schema of the 256x256 DDPM configs (keys added since taking diffusers' defaults) parses too.
 *
 * `test_diffusers --make-data DIR` writes the pipeline folder that tests/cli_diffusers.sh uses
 * (tests/data/diffusers_tiny: the unet_tiny_noattn fixture, legacy names, F16), and the test checks
 * that the committed copy still loads and computes the fixture's output.
 *
 * Tolerances. F32 weights: max |ours - ref| / max |ref| <= 1e-4, as test_unet_torch.c (float32
 * rounding through ~20 layers against a float64 reference). F16/BF16 weights: the reference was
 * computed with the unrounded weights, so the output moves by the weights' rounding: relative
 * rounding 2^-11 (F16) and 2^-8 (BF16) per weight, summed in random directions over the layers;
 * we allow 1e-2 (F16) and 5e-2 (BF16), about ten times what the fixtures show.
 */
#define _XOPEN_SOURCE 700
#include "check.h"
#include "common.h"
#include "model_impl.h" /* white-box checks of the loaded model */
#include "mlp.h"
#include "params.h"
#include "unet.h"
#include "json.h"
#include "safetensors.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_TOL 1e-4
#define F16_TOL 1e-2
#define BF16_TOL 5e-2

static const char *fixtures[] = {"fixtures/unet_tiny_noattn.safetensors", "fixtures/unet_tiny_attn_odd.safetensors",
                                 "fixtures/unet_tiny_multihead.safetensors"};
#define N_FIXTURES 3

static const char *tmp_root; /* check_tmpdir() */

/* ---------------------------------------------------------------- helpers */

static void path_of(char *buf, const char *a, const char *b) {
    if (snprintf(buf, 1024, "%s/%s", a, b) >= 1024) {
        printf("path too long: %s/%s\n", a, b);
        exit(1);
    }
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A fresh empty directory tmp_root/name; its path into buf. */
static void fresh_dir(char *buf, const char *name) {
    path_of(buf, tmp_root, name);
    mkdir(buf, 0777);
}

static int has(const char *msg, const char *part) { return part == NULL || strstr(msg, part) != NULL; }

/* IEEE half from float, round to nearest even (overflow to inf, subnormals kept). */
static uint16_t f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint32_t sign = (u >> 16) & 0x8000u, absu = u & 0x7fffffffu;
    if (absu >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0));
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* rounds to >= 65520: inf */
    if (absu < 0x38800000u) {                                    /* below 2^-14: subnormal half */
        float a;
        memcpy(&a, &absu, 4);
        return (uint16_t)(sign | (uint16_t)nearbyintf(a * 16777216.0f));  /* units of 2^-24 */
    }
    uint32_t mant = absu & 0x7fffffu, exp = (absu >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13), rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)mant, -24);
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexpf((float)(mant | 0x400), (int)exp - 25);
    uint32_t u;
    memcpy(&u, &v, 4);
    u |= sign;
    memcpy(&v, &u, 4);
    return v;
}

static uint16_t f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1);  /* round to nearest even (finite inputs) */
    return (uint16_t)(u >> 16);
}

static float bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float v;
    memcpy(&v, &u, 4);
    return v;
}

/* ---------------------------------------------------------------- fixture -> diffusers folder */

typedef struct {
    df_st_file f;
    const char *config;   /* the fixture's diffusers config.json text */
    float *x, *out;       /* input and reference output */
    int *t;
    int n;
    size_t out_numel;
} fixture;

static int fixture_open(const char *path, fixture *fx) {
    memset(fx, 0, sizeof *fx);
    df_status st = df_st_read(path, &fx->f);
    CHECK(st == DF_OK, "read %s: %s", path, df_last_error());
    if (st != DF_OK) return 0;
    fx->config = df_st_meta(&fx->f, "config");
    const df_st_tensor *x = df_st_find(&fx->f, "x"), *t = df_st_find(&fx->f, "t"), *o = df_st_find(&fx->f, "out");
    CHECK(fx->config && x && t && o, "%s: config, x, t and out present", path);
    if (!(fx->config && x && t && o)) return 0;
    fx->n = (int)x->shape[0];
    size_t nx = 1, no = 1;
    for (int d = 0; d < x->ndim; d++) nx *= (size_t)x->shape[d];
    for (int d = 0; d < o->ndim; d++) no *= (size_t)o->shape[d];
    fx->x = malloc(nx * sizeof(float));
    fx->out = malloc(no * sizeof(float));
    fx->out_numel = no;
    float *tf = malloc((size_t)fx->n * sizeof(float));
    fx->t = malloc((size_t)fx->n * sizeof(int));
    st = df_st_get_f32(&fx->f, "x", x->ndim, x->shape, fx->x);
    if (st == DF_OK) st = df_st_get_f32(&fx->f, "out", o->ndim, o->shape, fx->out);
    if (st == DF_OK) st = df_st_get_f32(&fx->f, "t", t->ndim, t->shape, tf);
    for (int i = 0; i < fx->n; i++) fx->t[i] = (int)tf[i];
    free(tf);
    CHECK(st == DF_OK, "%s: %s", path, df_last_error());
    return st == DF_OK;
}

static void fixture_close(fixture *fx) {
    free(fx->x), free(fx->out), free(fx->t);
    df_st_free(&fx->f);
}

/* How the weights file is written from the fixture's param/ tensors. */
typedef struct {
    int legacy;           /* attention linears under query/key/value/proj_attn */
    df_dtype dtype;       /* F32, F16 or BF16 */
    const char *drop;     /* a tensor left out */
    const char *extra;    /* a tensor added under this name */
    const char *reshape;  /* a tensor written flat (1-D) */
    const char *both;     /* a tensor written under its current AND its legacy name */
    const char *nan;      /* a tensor whose first element is NaN */
    const char *format;   /* metadata "format" (NULL: "pt") */
} weights_opts;

static const char *const legacy_pairs[][2] = {
    {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."}};

static void legacy_name(const char *name, char *out) {
    snprintf(out, 256, "%s", name);
    for (int k = 0; k < 4; k++) {
        const char *hit = strstr(name, legacy_pairs[k][0]);
        if (hit && strstr(name, ".attentions.")) {
            snprintf(out, 256, "%.*s%s%s", (int)(hit - name), name, legacy_pairs[k][1], hit + strlen(legacy_pairs[k][0]));
            return;
        }
    }
}

/* Writes DIR/<file> from the fixture's param/ tensors as `o` says. */
static void write_weights(const fixture *fx, const char *path, const weights_opts *o) {
    df_st_writer *w = df_st_writer_new();
    int cap = fx->f.n_tensors + 2, nb = 0;
    void **bufs = calloc((size_t)cap, sizeof *bufs);
    char (*names)[256] = calloc((size_t)cap, sizeof *names);
    for (int k = 0; k < fx->f.n_tensors; k++) {
        const df_st_tensor *t = &fx->f.tensors[k];
        if (strncmp(t->name, "param/", 6) != 0) continue;
        const char *name = t->name + 6;
        if (o->drop && strcmp(name, o->drop) == 0) continue;
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) numel *= (size_t)t->shape[d];
        float *v = malloc(numel * sizeof(float));
        df_st_get_f32(&fx->f, t->name, t->ndim, t->shape, v);
        if (o->nan && strcmp(name, o->nan) == 0) v[0] = NAN;
        void *data = v;
        if (o->dtype == DF_DTYPE_F16 || o->dtype == DF_DTYPE_BF16) {
            uint16_t *h = malloc(numel * sizeof(uint16_t));
            for (size_t i = 0; i < numel; i++) h[i] = o->dtype == DF_DTYPE_F16 ? f32_to_f16(v[i]) : f32_to_bf16(v[i]);
            free(v);
            data = h;
        }
        bufs[nb] = data;
        if (o->legacy) legacy_name(name, names[nb]);
        else snprintf(names[nb], 256, "%s", name);
        int64_t flat = (int64_t)numel;
        int reshape = o->reshape && strcmp(name, o->reshape) == 0;
        df_st_writer_add(w, names[nb], o->dtype, reshape ? 1 : t->ndim, reshape ? &flat : t->shape, data);
        if (o->both && strcmp(name, o->both) == 0) {
            nb++;
            legacy_name(name, names[nb]);
            df_st_writer_add(w, names[nb], o->dtype, t->ndim, t->shape, data);
        }
        nb++;
    }
    static const float extra[3] = {1, 2, 3};
    int64_t three = 3;
    if (o->extra) df_st_writer_add(w, o->extra, DF_DTYPE_F32, 1, &three, extra);
    df_st_writer_meta(w, "format", o->format ? o->format : "pt");
    df_status st = df_st_writer_write(w, path);
    CHECK(st == DF_OK, "write %s: %s", path, df_last_error());
    df_st_writer_free(w);
    for (int i = 0; i < nb; i++) free(bufs[i]);
    free(bufs);
    free(names);
}

/* A diffusers MODEL folder tmp_root/name: config.json (`config`) and the weights. */
static void make_model_folder(const fixture *fx, char *dir, const char *name, const char *config, const weights_opts *o) {
    char path[1024];
    fresh_dir(dir, name);
    path_of(path, dir, "config.json");
    write_file(path, config);
    path_of(path, dir, "diffusion_pytorch_model.safetensors");
    write_weights(fx, path, o);
}

/* Loads dir, runs the fixture's batch, returns max|ours - ref| / max|ref| (or 1e30 on failure). */
static double forward_error(const fixture *fx, const char *dir, df_model **mp) {
    df_status st = df_diffusers_load(dir, fx->n, 0, mp, NULL);
    df_model *m = *mp;
    CHECK(st == DF_OK, "load %s: %s", dir, df_last_error());
    if (st != DF_OK) return 1e30;
    float *out = malloc(fx->out_numel * sizeof(float));
    df_model_forward(m, df_model_weights(m, 0), fx->n, fx->x, fx->t, NULL, out, 0);
    double maxdiff = 0, maxref = 0;
    for (size_t i = 0; i < fx->out_numel; i++) {
        double d = fabs((double)out[i] - fx->out[i]);
        if (!(d <= maxdiff)) maxdiff = d;
        maxref = fmax(maxref, fabs((double)fx->out[i]));
    }
    free(out);
    return maxdiff / maxref;
}

/* The loaded weights equal the fixture's, rounded by `round` (NULL: unrounded), bit for bit. */
static void check_weights_exact(const fixture *fx, const df_model *m, float (*round)(float), const char *what) {
    size_t bad = 0;
    for (int k = 0; k < df_model_param_table(m)->count; k++) {
        const df_param_info *p = &df_model_param_table(m)->info[k];
        char name[256];
        snprintf(name, sizeof name, "param/%s", p->name);
        float *ref = malloc(p->numel * sizeof(float));
        df_st_get_f32(&fx->f, name, p->ndim, p->shape, ref);
        for (size_t i = 0; i < p->numel; i++) {
            float want = round ? round(ref[i]) : ref[i];
            if (memcmp(&want, &df_model_weights(m, 0)[p->offset + i], 4) != 0 || memcmp(&want, &df_model_weights(m, 1)[p->offset + i], 4) != 0) bad++;
        }
        free(ref);
    }
    CHECK(bad == 0, "%s: %zu loaded weights differ from the expected bits", what, bad);
}

static float round_f16(float x) { return f16_to_f32(f32_to_f16(x)); }
static float round_bf16(float x) { return bf16_to_f32(f32_to_bf16(x)); }

/* ---------------------------------------------------------------- (a), (b) */

static void test_fixture_folders(void) {
    for (int fi = 0; fi < N_FIXTURES; fi++) {
        fixture fx;
        if (!fixture_open(fixtures[fi], &fx)) continue;
        char dir[1024], name[64];
        df_model *m = NULL;
        printf("%s\n", fixtures[fi]);
        struct {
            const char *tag;
            weights_opts o;
            double tol;
            float (*round)(float);
        } cases[] = {
            {"f32", {.legacy = 0, .dtype = DF_DTYPE_F32}, OUT_TOL, NULL},
            {"legacy", {.legacy = 1, .dtype = DF_DTYPE_F32}, OUT_TOL, NULL},
            {"f16", {.legacy = 0, .dtype = DF_DTYPE_F16}, F16_TOL, round_f16},
            {"bf16-legacy", {.legacy = 1, .dtype = DF_DTYPE_BF16}, BF16_TOL, round_bf16},
        };
        for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
            snprintf(name, sizeof name, "fx%d_%s", fi, cases[c].tag);
            make_model_folder(&fx, dir, name, fx.config, &cases[c].o);
            double err = forward_error(&fx, dir, &m);
            printf("  %-12s out rel err %.3g (tol %g)\n", cases[c].tag, err, cases[c].tol);
            CHECK(err <= cases[c].tol, "%s %s: out rel err %g > %g", fixtures[fi], cases[c].tag, err, cases[c].tol);
            if (m) {
                check_weights_exact(&fx, m, cases[c].round, name);
                /* no scheduler in a model folder: the DDPM paper's settings */
                const df_schedule_params *sp = &df_model_diffusion(m)->schedule;
                CHECK(sp->kind == DF_SCHEDULE_LINEAR && sp->T == 1000 && sp->beta_start == 1e-4 && sp->beta_end == 0.02 &&
                          df_model_diffusion(m)->pred == DF_PRED_EPS && df_model_diffusion(m)->var == DF_VAR_BETA && df_model_use_ema(m),
                      "%s: default diffusion settings", name);
            }
            df_model_free(m);
        }
        fixture_close(&fx);
    }
}

/* ---------------------------------------------------------------- (c) round trip */

static int same_diffusion(const df_diffusion_config *a, const df_diffusion_config *b) {
    const df_schedule_params *p = &a->schedule, *q = &b->schedule;
    int betas = p->kind == DF_SCHEDULE_COSINE || (p->beta_start == q->beta_start && p->beta_end == q->beta_end);
    int cosine = p->kind != DF_SCHEDULE_COSINE || (p->cosine_s == q->cosine_s && p->max_beta == q->max_beta);
    return p->kind == q->kind && p->T == q->T && betas && cosine && a->pred == b->pred && a->var == b->var;
}

static int bits_equal(const float *a, const float *b, const df_param_table *t) {
    for (int k = 0; k < t->count; k++)
        if (memcmp(a + t->info[k].offset, b + t->info[k].offset, t->info[k].numel * sizeof(float)) != 0) return 0;
    return 1;
}

static void test_round_trip(void) {
    fixture fx;
    if (!fixture_open(fixtures[1], &fx)) return;
    df_unet_config c;
    df_status st = df_unet_config_from_json(fx.config, strlen(fx.config), &c);
    CHECK(st == DF_OK, "fixture config: %s", df_last_error());
    c.dropout = 0.1f;  /* a non-default value must survive too */
    struct {
        df_schedule_kind kind;
        int T;
        double b0, b1;
        df_pred pred;
        df_var_kind var;
    } cases[] = {
        {DF_SCHEDULE_QUADRATIC, 500, 2e-4, 0.03, DF_PRED_V, DF_VAR_POSTERIOR},
        {DF_SCHEDULE_LINEAR, 1000, 1e-4, 0.02, DF_PRED_EPS, DF_VAR_BETA},
        {DF_SCHEDULE_COSINE, 4000, 1e-4, 0.02, DF_PRED_X0, DF_VAR_POSTERIOR},
        {DF_SCHEDULE_SIGMOID, 200, 3.3e-5, 0.0123456789, DF_PRED_EPS, DF_VAR_BETA},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        df_diffusion_config d;
        df_diffusion_config_init(&d);
        d.schedule.kind = cases[ci].kind, d.schedule.T = cases[ci].T;
        d.schedule.beta_start = cases[ci].b0, d.schedule.beta_end = cases[ci].b1;
        d.pred = cases[ci].pred, d.var = cases[ci].var;
        df_model *m = NULL, *back = NULL;
        st = df_model_new_unet(&c, &d, 2, 0, 42 + ci, &m);
        CHECK(st == DF_OK, "new unet: %s", df_last_error());
        if (st != DF_OK) continue;
        for (size_t i = 0; i < m->n_floats; i++) df_model_weights(m, 1)[i] = df_model_weights(m, 0)[i] * 0.75f + 1e-3f;  /* EMA distinct from raw */
        char dir[1024], path[1024], name[64];
        df_diffusers_info info, got;
        df_diffusers_info_init(&info);
        info.clip_sample = ci % 2 == 0;
        info.clip_sample_range = ci == 0 ? 2.5 : 1.0;
        for (int use_ema = 0; use_ema <= 1; use_ema++) {
            snprintf(name, sizeof name, "rt%zu_%d", ci, use_ema);
            path_of(dir, tmp_root, name);  /* not created: save makes it */
            st = df_diffusers_save(m, dir, use_ema, &info);
            CHECK(st == DF_OK, "%s: save: %s", name, df_last_error());
            st = df_diffusers_load(dir, 2, 0, &back, &got);
            CHECK(st == DF_OK, "%s: load: %s", name, df_last_error());
            if (st != DF_OK) continue;
            CHECK(bits_equal(df_model_weights(back, 0), use_ema ? df_model_weights(m, 1) : df_model_weights(m, 0), df_model_param_table(m)), "%s: weights bit-identical", name);
            CHECK(bits_equal(df_model_weights(back, 1), df_model_weights(back, 0), df_model_param_table(m)), "%s: EMA = loaded weights", name);
            CHECK(same_diffusion(df_model_diffusion(back), df_model_diffusion(m)), "%s: diffusion settings survive (%s T=%d %s %s)", name,
                  df_schedule_name(df_model_diffusion(back)->schedule.kind), df_model_diffusion(back)->schedule.T, df_pred_name(df_model_diffusion(back)->pred),
                  df_var_name(df_model_diffusion(back)->var));
            CHECK(strcmp(back->unet_config_json, m->unet_config_json) == 0, "%s: network config survives:\n%s\n%s", name,
                  back->unet_config_json, m->unet_config_json);
            CHECK(got.has_scheduler && strcmp(got.scheduler, "DDPMScheduler") == 0 && got.clip_sample == info.clip_sample &&
                      got.clip_sample_range == info.clip_sample_range,
                  "%s: clipping survives (%d %g)", name, got.clip_sample, got.clip_sample_range);
            df_model_free(back);
            /* what diffusers itself reads: model_index.json and the weights' dtype and metadata */
            df_json *j = NULL;
            path_of(path, dir, "model_index.json");
            FILE *f = fopen(path, "rb");
            char text[1024] = "";
            size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
            if (f) fclose(f);
            st = df_json_parse(text, len, &j);
            const df_json *cls = j ? df_json_get(j, "_class_name") : NULL, *unet = j ? df_json_get(j, "unet") : NULL;
            CHECK(st == DF_OK && cls && cls->type == DF_JSON_STRING && strcmp(cls->string, "DDPMPipeline") == 0 && unet &&
                      unet->type == DF_JSON_ARRAY && unet->count == 2 && strcmp(unet->items[1].string, "UNet2DModel") == 0,
                  "%s: model_index.json names DDPMPipeline and UNet2DModel", name);
            df_json_free(j);
            df_st_file wf;
            path_of(path, dir, "unet/diffusion_pytorch_model.safetensors");
            st = df_st_read(path, &wf);
            int all_f32 = st == DF_OK && wf.n_tensors == df_model_param_table(m)->count;
            for (int k = 0; st == DF_OK && k < wf.n_tensors; k++) all_f32 &= wf.tensors[k].dtype == DF_DTYPE_F32;
            const char *fmt = st == DF_OK ? df_st_meta(&wf, "format") : NULL;
            CHECK(all_f32 && fmt && strcmp(fmt, "pt") == 0, "%s: %d F32 tensors with format pt", name, df_model_param_table(m)->count);
            df_st_free(&wf);
        }
        df_model_free(m);
    }
    fixture_close(&fx);
}

static void expect_save_refused(df_model *m, const char *name, df_status want, const char *part) {
    char dir[1024], index[1024];
    path_of(dir, tmp_root, name);
    df_status st = df_diffusers_save(m, dir, 1, NULL);
    CHECK(st == want && has(df_last_error(), part), "%s: save gives %s (want %s), message: %s", name, df_status_name(st),
          df_status_name(want), df_last_error());
    path_of(index, dir, "model_index.json");
    struct stat sb;
    CHECK(stat(index, &sb) != 0, "%s: a refused export writes no model_index.json", name);
}

static void test_save_refusals(void) {
    df_unet_config c;
    df_diffusion_config d;
    df_model *m = NULL;
    df_unet_preset("fmnist-small", &c);
    c.sample_size = 8, c.block_out_channels[0] = 8, c.block_out_channels[1] = 16, c.block_out_channels[2] = 16;
    c.norm_num_groups = 4, c.n_levels = 2, c.n_attn = 0;
    df_diffusion_config_init(&d);
    d.pred = DF_PRED_MEAN;
    df_status st = df_model_new_unet(&c, &d, 1, 0, 1, &m);
    CHECK(st == DF_OK, "new: %s", df_last_error());
    if (st == DF_OK) {
        expect_save_refused(m, "refuse_mean", DF_ERR_UNSUPPORTED, "mean parameterisation");
        m->diff.pred = DF_PRED_EPS;
        m->diff.schedule.kind = DF_SCHEDULE_EXPONENTIAL;
        expect_save_refused(m, "refuse_exp", DF_ERR_UNSUPPORTED, "exponential schedule");
        m->diff.schedule.kind = DF_SCHEDULE_COSINE;
        m->diff.schedule.cosine_s = 0.01;
        expect_save_refused(m, "refuse_cos", DF_ERR_UNSUPPORTED, "s = 0.01");
        df_model_free(m);
    }
    df_mlp_config mc;
    df_mlp_config_init(&mc);
    df_diffusion_config_init(&d);
    st = df_model_new_mlp(&mc, &d, 1, 0, 1, &m);
    CHECK(st == DF_OK, "new mlp: %s", df_last_error());
    if (st == DF_OK) expect_save_refused(m, "refuse_mlp", DF_ERR_ARG, "MLP");
    df_model_free(m);
}

/* df_model_open: a directory is a diffusers folder, a file a diffuse checkpoint. */
static void test_model_open(void) {
    fixture fx;
    if (!fixture_open(fixtures[0], &fx)) return;
    char dir[1024], ck[1024];
    weights_opts o = {.legacy = 0, .dtype = DF_DTYPE_F32};
    make_model_folder(&fx, dir, "open_dir", fx.config, &o);
    df_model *m = NULL, *m2 = NULL;
    df_status st = df_model_open(dir, 1, 0, &m, NULL);
    CHECK(st == DF_OK && df_model_kind(m) == DF_NET_UNET, "open a folder: %s", df_last_error());
    if (st != DF_OK) goto done;
    path_of(ck, tmp_root, "open.safetensors");
    st = df_model_save(m, ck, 0);
    CHECK(st == DF_OK, "save checkpoint: %s", df_last_error());
    st = df_model_open(ck, 1, 0, &m2, NULL);
    CHECK(st == DF_OK && df_model_kind(m2) == DF_NET_UNET && bits_equal(df_model_weights(m2, 0), df_model_weights(m, 0), df_model_param_table(m)), "open a checkpoint: %s",
          df_last_error());
    if (st == DF_OK) df_model_free(m2);
    df_model_free(m);
done:
    fixture_close(&fx);
}

/* ---------------------------------------------------------------- (d) refusals */

static void expect_load_fail(const char *dir, const char *what, df_status want, const char *part1, const char *part2) {
    df_model *m = (df_model *)&m;  /* not NULL: the load must set it */
    df_status st = df_diffusers_load(dir, 1, 0, &m, NULL);
    const char *msg = df_last_error();
    CHECK(st == want && has(msg, part1) && has(msg, part2), "%s: got %s (want %s), message: %s", what,
          df_status_name(st), df_status_name(want), msg);
    printf("  refused %-28s %s: %s\n", what, df_status_name(st), msg);
    CHECK(st == DF_OK || m == NULL, "%s: a failed load gives no model", what);
    df_model_free(m);
}

/* The fixture's config text with `find` replaced by `repl` (which must be found). */
static char *config_edit(const char *config, const char *find, const char *repl) {
    const char *hit = strstr(config, find);
    CHECK(hit != NULL, "config has %s", find);
    if (!hit) hit = config + strlen(config);
    size_t n = strlen(config) + strlen(repl) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(hit - config), config, repl, *hit ? hit + strlen(find) : "");
    return out;
}

static void test_refusals(void) {
    fixture fx;
    if (!fixture_open(fixtures[0], &fx)) return;
    char dir[1024], path[1024];
    weights_opts plain = {.legacy = 0, .dtype = DF_DTYPE_F32};
    printf("refusals\n");

    struct {
        const char *name, *find, *repl;
        df_status want;
        const char *part;
    } configs[] = {
        {"unknown key", "\"act_fn\"", "\"foo\": 1, \"act_fn\"", DF_ERR_UNSUPPORTED, "'foo'"},
        {"scale_shift", "\"resnet_time_scale_shift\": \"default\"", "\"resnet_time_scale_shift\": \"scale_shift\"",
         DF_ERR_UNSUPPORTED, "'resnet_time_scale_shift' = \"scale_shift\""},
        {"class embedding", "\"class_embed_type\": null", "\"class_embed_type\": \"timestep\"", DF_ERR_UNSUPPORTED,
         "'class_embed_type' = \"timestep\""},
        {"gelu", "\"act_fn\": \"silu\"", "\"act_fn\": \"gelu\"", DF_ERR_UNSUPPORTED, "'act_fn'"},
        {"padding default", "\"downsample_padding\": 0, ", "", DF_ERR_UNSUPPORTED, "'downsample_padding'"},
        {"cross attention", "\"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\"]",
         "\"down_block_types\": [\"DownBlock2D\", \"CrossAttnDownBlock2D\"]", DF_ERR_UNSUPPORTED, "'down_block_types'"},
        {"old UNetModel", "\"_class_name\": \"UNet2DModel\"", "\"_class_name\": \"UNetModel\"", DF_ERR_UNSUPPORTED,
         "'_class_name'"},
        {"time_embedding_dim", "\"act_fn\"", "\"time_embedding_dim\": 64, \"act_fn\"", DF_ERR_UNSUPPORTED,
         "'time_embedding_dim'"},
        {"missing sample_size", "\"sample_size\": 8, ", "", DF_ERR_FORMAT, "'sample_size'"},
        {"bad JSON", "\"act_fn\"", "\"act_fn\" \"act_fn\"", DF_ERR_FORMAT, "JSON error"},
    };
    for (size_t k = 0; k < sizeof configs / sizeof *configs; k++) {
        char *cfg = config_edit(fx.config, configs[k].find, configs[k].repl);
        make_model_folder(&fx, dir, "bad_config", cfg, &plain);
        expect_load_fail(dir, configs[k].name, configs[k].want, "bad_config/config.json", configs[k].part);
        free(cfg);
    }

    struct {
        const char *name;
        weights_opts o;
        df_status want;
        const char *part;
    } weights[] = {
        {"extra tensor", {.dtype = DF_DTYPE_F32, .extra = "extra.weight"}, DF_ERR_FORMAT, "'extra.weight'"},
        {"missing tensor", {.dtype = DF_DTYPE_F32, .drop = "conv_out.bias"}, DF_ERR_FORMAT, "'conv_out.bias'"},
        {"wrong shape", {.dtype = DF_DTYPE_F32, .reshape = "conv_in.weight"}, DF_ERR_SHAPE, "conv_in.weight"},
        {"both names", {.dtype = DF_DTYPE_F32, .both = "mid_block.attentions.0.to_q.weight"}, DF_ERR_FORMAT,
         "mid_block.attentions.0.query.weight"},
        {"NaN weight", {.dtype = DF_DTYPE_F32, .nan = "conv_in.bias"}, DF_ERR_NAN, "non-finite"},
        {"TF layout", {.dtype = DF_DTYPE_F32, .format = "tf"}, DF_ERR_UNSUPPORTED, "format 'tf'"},
    };
    for (size_t k = 0; k < sizeof weights / sizeof *weights; k++) {
        make_model_folder(&fx, dir, "bad_weights", fx.config, &weights[k].o);
        expect_load_fail(dir, weights[k].name, weights[k].want, "bad_weights/diffusion_pytorch_model.safetensors",
                         weights[k].part);
    }

    /* files */
    make_model_folder(&fx, dir, "no_weights", fx.config, &plain);
    path_of(path, dir, "diffusion_pytorch_model.safetensors");
    remove(path);
    expect_load_fail(dir, "missing weights", DF_ERR_IO, "no_weights/diffusion_pytorch_model.safetensors", NULL);
    path_of(path, dir, "diffusion_pytorch_model.bin");
    write_file(path, "pickle");
    expect_load_fail(dir, "pickle weights", DF_ERR_UNSUPPORTED, "diffusion_pytorch_model.bin", "PyTorch pickle");
    fresh_dir(dir, "empty_dir");
    expect_load_fail(dir, "missing config.json", DF_ERR_IO, "empty_dir", "config.json");
    path_of(path, tmp_root, "does_not_exist");
    expect_load_fail(path, "missing folder", DF_ERR_IO, "does_not_exist", NULL);

    /* pipeline folders: scheduler and model_index fields */
    struct {
        const char *name, *json;
        df_status want;
        const char *file, *part;
    } pipes[] = {
        {"beta_schedule", "{\"beta_schedule\": \"exotic\"}", DF_ERR_UNSUPPORTED, "scheduler_config.json", "'beta_schedule' = \"exotic\""},
        {"trained_betas", "{\"trained_betas\": [0.1, 0.2]}", DF_ERR_UNSUPPORTED, "scheduler_config.json", "'trained_betas'"},
        {"learned variance", "{\"variance_type\": \"learned_range\"}", DF_ERR_UNSUPPORTED, "scheduler_config.json",
         "'variance_type' = \"learned_range\""},
        {"prediction_type", "{\"prediction_type\": \"score\"}", DF_ERR_UNSUPPORTED, "scheduler_config.json", "'prediction_type'"},
        {"thresholding", "{\"thresholding\": true}", DF_ERR_UNSUPPORTED, "scheduler_config.json", "'thresholding'"},
        {"zero snr", "{\"rescale_betas_zero_snr\": true}", DF_ERR_UNSUPPORTED, "scheduler_config.json", "'rescale_betas_zero_snr'"},
        {"unknown scheduler key", "{\"use_karras_sigmas\": true}", DF_ERR_UNSUPPORTED, "scheduler_config.json", "'use_karras_sigmas'"},
        {"PNDM", "{\"_class_name\": \"PNDMScheduler\"}", DF_ERR_UNSUPPORTED, "scheduler_config.json", "'_class_name'"},
        {"T as a string", "{\"num_train_timesteps\": \"1000\"}", DF_ERR_FORMAT, "scheduler_config.json", "'num_train_timesteps'"},
        {"clip_sample type", "{\"clip_sample\": 1}", DF_ERR_FORMAT, "scheduler_config.json", "'clip_sample'"},
        {"beta out of range", "{\"beta_end\": 1.5}", DF_ERR_ARG, "scheduler_config.json", "beta"},
        {"latent pipeline", NULL, DF_ERR_UNSUPPORTED, "model_index.json", "'vqvae'"},
    };
    for (size_t k = 0; k < sizeof pipes / sizeof *pipes; k++) {
        char sched[1024];
        fresh_dir(dir, "bad_pipe");
        path_of(sched, dir, "scheduler");
        mkdir(sched, 0777);
        make_model_folder(&fx, path, "bad_pipe/unet", fx.config, &plain);
        path_of(path, sched, "scheduler_config.json");
        write_file(path, pipes[k].json ? pipes[k].json : "{}");
        path_of(path, dir, "model_index.json");
        /* a pipeline with one more component than the U-Net and the scheduler (a latent pipeline) */
        const char *index = "{\"_class_name\": \"DDPMPipeline\", \"unet\": [\"diffusers\", \"UNet2DModel\"], "
                            "\"scheduler\": [\"diffusers\", \"DDPMScheduler\"]%s}";
        char text[512];
        snprintf(text, sizeof text, index, pipes[k].json ? "" : ", \"vqvae\": [\"diffusers\", \"VQModel\"]");
        write_file(path, text);
        expect_load_fail(dir, pipes[k].name, pipes[k].want, pipes[k].file, pipes[k].part);
    }
    fixture_close(&fx);
}

/* ---------------------------------------------------------------- (e) published configs */

/* docs/unet.md, section 6: google/ddpm-cifar10-32 unet/config.json as published. */
static const char *cifar10_config =
    "{\"_class_name\": \"UNet2DModel\", \"act_fn\": \"silu\", \"add_attention\": true, \"attention_head_dim\": null,\n"
    " \"block_out_channels\": [128, 256, 256, 256], \"center_input_sample\": false, \"class_embed_type\": null,\n"
    " \"down_block_types\": [\"DownBlock2D\", \"AttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"],\n"
    " \"downsample_padding\": 0, \"flip_sin_to_cos\": false, \"freq_shift\": 1, \"in_channels\": 3,\n"
    " \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-06, \"norm_num_groups\": 32,\n"
    " \"num_class_embeds\": null, \"out_channels\": 3, \"resnet_time_scale_shift\": \"default\",\n"
    " \"sample_size\": 32, \"time_embedding_type\": \"positional\",\n"
    " \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\", \"AttnUpBlock2D\", \"UpBlock2D\"]}\n";

/* Its scheduler (same section): DDPMScheduler, 1000 steps, linear 1e-4..0.02, fixed_large, clip_sample. */
static const char *cifar10_scheduler =
    "{\"_class_name\": \"DDPMScheduler\", \"_diffusers_version\": \"0.1.1\", \"beta_end\": 0.02,\n"
    " \"beta_schedule\": \"linear\", \"beta_start\": 0.0001, \"clip_sample\": true, \"num_train_timesteps\": 1000,\n"
    " \"trained_betas\": null, \"variance_type\": \"fixed_large\"}\n";

/* The 2022 (_diffusers_version 0.0.4) schema of the 256x256 DDPM configs, as a public copy shows
 * google/ddpm-cat-256's: no resnet_time_scale_shift, add_attention, class embedding keys or dropout. */
static const char *cat256_config =
    "{\"_class_name\": \"UNet2DModel\", \"_diffusers_version\": \"0.0.4\", \"act_fn\": \"silu\",\n"
    " \"attention_head_dim\": null, \"block_out_channels\": [128, 128, 256, 256, 512, 512],\n"
    " \"center_input_sample\": false, \"down_block_types\": [\"DownBlock2D\", \"DownBlock2D\", \"DownBlock2D\",\n"
    " \"DownBlock2D\", \"AttnDownBlock2D\", \"DownBlock2D\"], \"downsample_padding\": 0, \"flip_sin_to_cos\": false,\n"
    " \"freq_shift\": 1, \"in_channels\": 3, \"layers_per_block\": 2, \"mid_block_scale_factor\": 1,\n"
    " \"norm_eps\": 1e-06, \"norm_num_groups\": 32, \"out_channels\": 3, \"sample_size\": 256,\n"
    " \"time_embedding_type\": \"positional\", \"up_block_types\": [\"UpBlock2D\", \"AttnUpBlock2D\", \"UpBlock2D\",\n"
    " \"UpBlock2D\", \"UpBlock2D\", \"UpBlock2D\"]}\n";

/* What recent diffusers (0.24 .. 0.34) write for the same cifar10 network: the keys added since
 * 2022 (attn_norm_num_groups, downsample_type, mid_block_type, time_embedding_dim, ...) at the values
 * that keep the DDPM network. */
static const char *cifar10_recent_config =
    "{\"_class_name\": \"UNet2DModel\", \"_diffusers_version\": \"0.34.0\", \"mid_block_type\": \"UNetMidBlock2D\",\n"
    " \"time_embedding_dim\": null, \"act_fn\": \"silu\", \"add_attention\": true,\n"
    " \"attention_head_dim\": null, \"attn_norm_num_groups\": null, \"block_out_channels\": [128, 256, 256, 256],\n"
    " \"center_input_sample\": false, \"class_embed_type\": null, \"down_block_types\": [\"DownBlock2D\",\n"
    " \"AttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"], \"downsample_padding\": 0, \"downsample_type\": \"conv\",\n"
    " \"dropout\": 0.0, \"flip_sin_to_cos\": false, \"freq_shift\": 1, \"in_channels\": 3, \"layers_per_block\": 2,\n"
    " \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-06, \"norm_num_groups\": 32, \"num_class_embeds\": null,\n"
    " \"num_train_timesteps\": null, \"out_channels\": 3, \"resnet_time_scale_shift\": \"default\", \"sample_size\": 32,\n"
    " \"time_embedding_type\": \"positional\", \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\", \"AttnUpBlock2D\",\n"
    " \"UpBlock2D\"], \"upsample_type\": \"conv\"}\n";

static int same_structure(const df_unet_config *a, const df_unet_config *b) {
    int same = a->in_channels == b->in_channels && a->out_channels == b->out_channels && a->sample_size == b->sample_size &&
               a->n_levels == b->n_levels && a->layers_per_block == b->layers_per_block && a->n_attn == b->n_attn &&
               a->norm_num_groups == b->norm_num_groups && a->norm_eps == b->norm_eps && a->dropout == b->dropout &&
               a->attention_head_dim == b->attention_head_dim && a->freq_shift == b->freq_shift &&
               a->flip_sin_to_cos == b->flip_sin_to_cos;
    for (int i = 0; same && i < a->n_levels; i++) same = a->block_out_channels[i] == b->block_out_channels[i];
    for (int i = 0; same && i < a->n_attn; i++) same = a->attn_resolutions[i] == b->attn_resolutions[i];
    return same;
}

static void test_published_configs(void) {
    char dir[1024], path[1024];
    df_unet_config c, preset;
    fresh_dir(dir, "published");
    path_of(path, dir, "config.json");

    write_file(path, cifar10_config);
    df_status st = df_diffusers_read_unet_config(path, &c);
    CHECK(st == DF_OK, "cifar10 config: %s", df_last_error());
    df_unet_preset("ddpm-cifar10", &preset);
    preset.dropout = 0.0f;  /* absent from the published config: diffusers loads 0 */
    CHECK(st == DF_OK && same_structure(&c, &preset), "cifar10 config = the ddpm-cifar10 preset with dropout 0");
    if (st == DF_OK) {
        df_unet *u = NULL;
        st = df_unet_new(&c, 1, 0, &u);
        CHECK(st == DF_OK && df_unet_params(u)->count == 328 && df_param_table_count(df_unet_params(u)) == 35746307,
              "cifar10: 328 tensors, 35,746,307 parameters (docs/unet.md)");
        if (u) df_unet_free(u);
    }
    write_file(path, cifar10_recent_config);
    st = df_diffusers_read_unet_config(path, &c);
    CHECK(st == DF_OK && same_structure(&c, &preset), "cifar10 config as recent diffusers write it: %s",
          st ? df_last_error() : "");

    write_file(path, cat256_config);
    st = df_diffusers_read_unet_config(path, &c);
    CHECK(st == DF_OK, "256x256 config of 2022: %s", df_last_error());
    CHECK(st == DF_OK && c.sample_size == 256 && c.n_levels == 6 && c.block_out_channels[0] == 128 &&
              c.block_out_channels[5] == 512 && c.n_attn == 1 && c.attn_resolutions[0] == 16 && c.dropout == 0.0f &&
              c.attention_head_dim == 0 && c.norm_eps == 1e-6f,
          "256x256 config: 6 levels 128..512, attention at 16 px, one head, dropout 0");

    /* attention_head_dim absent: diffusers' default 8, not one head */
    char *text = config_edit(cifar10_config, "\"attention_head_dim\": null,", "");
    write_file(path, text);
    free(text);
    st = df_diffusers_read_unet_config(path, &c);
    CHECK(st == DF_OK && c.attention_head_dim == 8, "absent attention_head_dim reads as diffusers' default 8");

    df_diffusion_config d;
    df_diffusers_info info;
    path_of(path, dir, "scheduler_config.json");
    write_file(path, cifar10_scheduler);
    st = df_diffusers_read_scheduler(path, &d, &info);
    CHECK(st == DF_OK, "cifar10 scheduler: %s", df_last_error());
    CHECK(st == DF_OK && d.schedule.kind == DF_SCHEDULE_LINEAR && d.schedule.T == 1000 && d.schedule.beta_start == 1e-4 &&
              d.schedule.beta_end == 0.02 && d.pred == DF_PRED_EPS && d.var == DF_VAR_BETA && info.clip_sample == 1 &&
              info.clip_sample_range == 1.0 && info.has_scheduler,
          "cifar10 scheduler: linear 1e-4..0.02, T 1000, eps, beta variance, clip to [-1, 1]");
    /* the other names of the mapping */
    write_file(path, "{\"_class_name\": \"DDIMScheduler\", \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085,"
                     " \"beta_end\": 0.012, \"prediction_type\": \"v_prediction\", \"clip_sample\": false,"
                     " \"set_alpha_to_one\": false, \"steps_offset\": 1, \"timestep_spacing\": \"leading\"}");
    st = df_diffusers_read_scheduler(path, &d, &info);
    CHECK(st == DF_OK && d.schedule.kind == DF_SCHEDULE_QUADRATIC && d.schedule.beta_start == 0.00085 &&
              d.pred == DF_PRED_V && info.clip_sample == 0 && strcmp(info.scheduler, "DDIMScheduler") == 0,
          "DDIM config: scaled_linear -> quadratic, v_prediction -> v, no clipping: %s", st ? df_last_error() : "");
    write_file(path, "{\"beta_schedule\": \"squaredcos_cap_v2\", \"prediction_type\": \"sample\"}");
    st = df_diffusers_read_scheduler(path, &d, &info);
    CHECK(st == DF_OK && d.schedule.kind == DF_SCHEDULE_COSINE && d.schedule.cosine_s == 0.008 &&
              d.schedule.max_beta == 0.999 && d.pred == DF_PRED_X0 && d.var == DF_VAR_POSTERIOR && info.clip_sample == 1,
          "squaredcos_cap_v2 -> cosine (0.008, 0.999), sample -> x0, default fixed_small -> posterior");
}

/* ---------------------------------------------------------------- committed CLI data */

#define CLI_DATA "data/diffusers_tiny"

/* The pipeline folder of tests/cli_diffusers.sh, from the unet_tiny_noattn fixture: legacy attention
 * names and F16 weights (so the CLI test exercises both), a DDPMScheduler, a model_index.json. */
static int make_cli_data(const char *dir) {
    fixture fx;
    if (!fixture_open(fixtures[0], &fx)) return 1;
    char sub[1024], path[1024];
    mkdir(dir, 0777);
    path_of(sub, dir, "unet");
    mkdir(sub, 0777);
    path_of(path, sub, "config.json");
    write_file(path, fx.config);
    path_of(path, sub, "diffusion_pytorch_model.safetensors");
    weights_opts o = {.legacy = 1, .dtype = DF_DTYPE_F16};
    write_weights(&fx, path, &o);
    path_of(sub, dir, "scheduler");
    mkdir(sub, 0777);
    path_of(path, sub, "scheduler_config.json");
    write_file(path, cifar10_scheduler);
    path_of(path, dir, "model_index.json");
    write_file(path, "{\"_class_name\": \"DDPMPipeline\", \"_diffusers_version\": \"0.1.1\",\n"
                     " \"scheduler\": [\"diffusers\", \"DDPMScheduler\"], \"unet\": [\"diffusers\", \"UNet2DModel\"]}\n");
    fixture_close(&fx);
    return check_failures != 0;
}

static void test_cli_data(void) {
    fixture fx;
    if (!fixture_open(fixtures[0], &fx)) return;
    df_model *m = NULL;
    double err = forward_error(&fx, CLI_DATA, &m);
    printf("%s: out rel err %.3g (tol %g, F16 weights)\n", CLI_DATA, err, F16_TOL);
    CHECK(err <= F16_TOL, "%s (regenerate with test_diffusers --make-data): rel err %g", CLI_DATA, err);
    if (m) check_weights_exact(&fx, m, round_f16, CLI_DATA);
    df_model_free(m);
    fixture_close(&fx);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--make-data") == 0) return make_cli_data(argv[2]);
    tmp_root = check_tmpdir("test_diffusers");
    test_fixture_folders();
    test_round_trip();
    test_save_refusals();
    test_model_open();
    test_refusals();
    test_published_configs();
    test_cli_data();
    check_tmpdir_remove(tmp_root, 0);
    return check_exit_code("test_diffusers");
}
