/* diffusers.c: reading and writing diffusers model and pipeline folders (see diffusers.h).
 *
 * What it is: three small translators, each strict in what it reads: config.json <-> df_unet_config
 * (through df_unet_config_check_keys, the one key table, then df_unet_config_from_json / _to_json),
 * scheduler_config.json <-> df_diffusion_config, and the weights file <-> the model's parameter
 * block, tensor by tensor by name. Every file is written through the atomic writers.
 *
 * What it is not: the network (unet.c), the checkpoint format of diffuse itself (model.c) or the
 * samplers. The names, configs and scheduler semantics come from docs/unet.md, section 6.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "model_impl.h"
#include "mlp.h"
#include "params.h"
#include "unet.h"
#include "json.h"
#include "safetensors.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PATH_CAP 4096
#define CONFIG_MAX_BYTES ((long)16 << 20)  /* a config.json is a few hundred bytes */
#define WEIGHTS_FILE "diffusion_pytorch_model.safetensors"
#define DIFFUSERS_VERSION "0.21.0"         /* the schema we write: UNet2DModel and DDPMScheduler keys */

void df_diffusers_info_init(df_diffusers_info *info) {
    memset(info, 0, sizeof *info);
    info->clip_sample = 1;
    info->clip_sample_range = 1.0;
}

/* ---------------------------------------------------------------- files */

static df_status path_join(char *buf, const char *dir, const char *name) {
    if (snprintf(buf, PATH_CAP, "%s/%s", dir, name) >= PATH_CAP)
        return df_fail(DF_ERR_ARG, "path too long: %s/%s", dir, name);
    return DF_OK;
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Reads and parses the JSON object in `path`. */
static df_status json_read_file(const char *path, df_json **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return df_fail(DF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    /* The buffer is sized from the file: a 16 MB one for every few-hundred-byte config cost ~30 ms per
     * read under AddressSanitizer (fuzz_diffusers_config ran at 17 inputs/s). Reading cap+1 bytes tells
     * a file over the limit (or one that grew since fstat) from one that fits. */
    struct stat sb;
    long cap = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size < CONFIG_MAX_BYTES ? (long)sb.st_size
                                                                                                : CONFIG_MAX_BYTES;
    char *text = malloc((size_t)cap + 1);
    if (!text) {
        fclose(f);
        return df_fail(DF_ERR_NOMEM, "out of memory reading %s", path);
    }
    size_t len = fread(text, 1, (size_t)cap + 1, f);
    int err = ferror(f);
    fclose(f);
    df_status st = DF_OK;
    if (err) st = df_fail(DF_ERR_IO, "cannot read %s", path);
    else if (len > (size_t)CONFIG_MAX_BYTES) st = df_fail(DF_ERR_FORMAT, "%s: larger than %ld bytes, not a config file", path, CONFIG_MAX_BYTES);
    else if (len > (size_t)cap) st = df_fail(DF_ERR_IO, "cannot read %s: it grew while being read", path);
    if (st == DF_OK && (st = df_json_parse(text, len, out)) != DF_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", df_last_error());
        st = df_fail(st, "%s: %s", path, msg);
    }
    if (st == DF_OK && (*out)->type != DF_JSON_OBJECT) st = df_fail(DF_ERR_FORMAT, "%s: not a JSON object", path);
    free(text);
    if (st != DF_OK) {
        df_json_free(*out);
        *out = NULL;
    }
    return st;
}

/* Writes `text` to `path` atomically. */
static df_status write_text(const char *path, const char *text) {
    char tmp[PATH_CAP + 32];
    FILE *f = df_atomic_open(path, tmp, sizeof tmp);
    if (!f) return DF_ERR_IO;
    fputs(text, f);
    return df_atomic_commit(f, tmp, path);
}

/* Re-raises the last error with `path: ` in front (for messages from modules that do not know the file). */
static df_status in_file(const char *path, df_status st) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", df_last_error());
    return df_fail(st, "%s: %s", path, msg);
}

/* ---------------------------------------------------------------- JSON values */





static int json_is_int(const df_json *v) {
    return v && v->type == DF_JSON_NUMBER && v->number == floor(v->number) && fabs(v->number) <= 1e9;
}

/* Shortest %g spelling that reads back as x, always with a '.' or an exponent (so JSON readers
 * see a float: "1.0", "0.0001", "1e-05"). */
static void format_double(char *buf, size_t cap, double x) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    if (!strpbrk(buf, ".eEn")) {
        size_t n = strlen(buf);
        if (n + 2 < cap) memcpy(buf + n, ".0", 3);
    }
}

/* ---------------------------------------------------------------- config.json (UNet2DModel) */

/* "path: unsupported field 'key' = value (why)" (unet_config.c words the config's own the same way). */
static df_status unsupported_field(const char *path, const char *key, const df_json *v, const char *why) {
    char shown[96];
    return df_fail(DF_ERR_UNSUPPORTED, "%s: unsupported field '%s' = %s (%s)", path, key, df_json_show(v, shown, sizeof shown), why);
}

df_status df_diffusers_read_unet_config(const char *path, df_unet_config *c) {
    df_json *j;
    char *text = NULL;
    df_status st = json_read_file(path, &j);
    if (st != DF_OK) return st;
    if ((st = df_unet_config_check_keys(path, j, &text)) != DF_OK) goto done;
    if ((st = df_unet_config_from_json(text, strlen(text), c)) != DF_OK) {
        st = in_file(path, st);
        goto done;
    }
    const df_json *ted = df_json_get(j, "time_embedding_dim");
    if (ted && ted->type != DF_JSON_NULL && !(json_is_int(ted) && ted->number == 4.0 * c->block_out_channels[0])) {
        char why[96];
        snprintf(why, sizeof why, "diffuse implements only null = 4 x block_out_channels[0] = %d", 4 * c->block_out_channels[0]);
        st = unsupported_field(path, "time_embedding_dim", ted, why);
    }
done:
    free(text);
    df_json_free(j);
    return st;
}

/* ---------------------------------------------------------------- scheduler_config.json */

static df_status bad_type(const char *path, const char *key, const df_json *v, const char *want) {
    char shown[96];
    return df_fail(DF_ERR_FORMAT, "%s: field '%s' = %s must be %s", path, key, df_json_show(v, shown, sizeof shown), want);
}

/* One key of a DDPMScheduler / DDIMScheduler config into *d and *info. */
static df_status scheduler_key(const char *path, const char *key, const df_json *v, df_diffusion_config *d,
                               df_diffusers_info *info) {
    df_schedule_params *sp = &d->schedule;
    /* bookkeeping; tensor_format ("pt"/"np", diffusers 0.1-0.2) only chose the array library */
    static const char *info_keys[] = {"_diffusers_version", "_name_or_path", "_commit_hash", "_use_default_values",
                                      "tensor_format"};
    for (size_t k = 0; k < sizeof info_keys / sizeof *info_keys; k++)
        if (strcmp(key, info_keys[k]) == 0) return DF_OK;
    if (strcmp(key, "_class_name") == 0) {
        if (!df_json_is_string(v, "DDPMScheduler") && !df_json_is_string(v, "DDIMScheduler"))
            return unsupported_field(path, key, v, "diffuse reads DDPMScheduler and DDIMScheduler configs");
        snprintf(info->scheduler, sizeof info->scheduler, "%s", v->string);
        return DF_OK;
    }
    if (strcmp(key, "num_train_timesteps") == 0) {
        if (!json_is_int(v) || v->number < 2 || v->number > 100000) return bad_type(path, key, v, "an integer in 2..100000");
        sp->T = (int)v->number;
        return DF_OK;
    }
    if (strcmp(key, "beta_start") == 0 || strcmp(key, "beta_end") == 0) {
        if (v->type != DF_JSON_NUMBER) return bad_type(path, key, v, "a number");
        if (strcmp(key, "beta_start") == 0) sp->beta_start = v->number;
        else sp->beta_end = v->number;
        return DF_OK;
    }
    if (strcmp(key, "beta_schedule") == 0) {
        /* diffusers' betas: linear = linspace(b0, b1); scaled_linear = linspace(sqrt b0, sqrt b1)^2 (our
         * quadratic); squaredcos_cap_v2 = Nichol & Dhariwal's cosine, s 0.008, capped at 0.999 (b0, b1
         * unused); sigmoid = sigmoid(linspace(-6, 6)) * (b1 - b0) + b0. Each is ours exactly. */
        if (df_json_is_string(v, "linear")) sp->kind = DF_SCHEDULE_LINEAR;
        else if (df_json_is_string(v, "scaled_linear")) sp->kind = DF_SCHEDULE_QUADRATIC;
        else if (df_json_is_string(v, "sigmoid")) sp->kind = DF_SCHEDULE_SIGMOID;
        else if (df_json_is_string(v, "squaredcos_cap_v2")) {
            sp->kind = DF_SCHEDULE_COSINE;
            sp->cosine_s = 0.008;
            sp->max_beta = 0.999;
        } else
            return unsupported_field(path, key, v, "diffuse implements linear, scaled_linear, squaredcos_cap_v2, sigmoid");
        return DF_OK;
    }
    if (strcmp(key, "trained_betas") == 0) {
        if (v->type != DF_JSON_NULL) return unsupported_field(path, key, v, "diffuse implements only null");
        return DF_OK;
    }
    if (strcmp(key, "variance_type") == 0) {
        /* fixed_small_log samples with exp(0.5 log var) = sqrt(var): the same variance as fixed_small */
        if (df_json_is_string(v, "fixed_small") || df_json_is_string(v, "fixed_small_log")) d->var = DF_VAR_POSTERIOR;
        else if (df_json_is_string(v, "fixed_large")) d->var = DF_VAR_BETA;
        else return unsupported_field(path, key, v, "diffuse implements fixed_small and fixed_large");
        return DF_OK;
    }
    if (strcmp(key, "prediction_type") == 0) {
        if (df_json_is_string(v, "epsilon")) d->pred = DF_PRED_EPS;
        else if (df_json_is_string(v, "sample")) d->pred = DF_PRED_X0;
        else if (df_json_is_string(v, "v_prediction")) d->pred = DF_PRED_V;  /* v = sqrt(ab) eps - sqrt(1-ab) x0, as ours */
        else return unsupported_field(path, key, v, "diffuse implements epsilon, sample, v_prediction");
        return DF_OK;
    }
    if (strcmp(key, "clip_sample") == 0) {
        if (v->type != DF_JSON_BOOL) return bad_type(path, key, v, "true or false");
        info->clip_sample = v->boolean;
        return DF_OK;
    }
    if (strcmp(key, "clip_sample_range") == 0) {
        if (v->type != DF_JSON_NUMBER || !(v->number > 0)) return bad_type(path, key, v, "a positive number");
        info->clip_sample_range = v->number;
        return DF_OK;
    }
    /* Dynamic thresholding (Imagen) and zero-terminal-SNR rescaling change the math: refused. */
    if (strcmp(key, "thresholding") == 0 || strcmp(key, "rescale_betas_zero_snr") == 0) {
        if (v->type != DF_JSON_BOOL || v->boolean) return unsupported_field(path, key, v, "diffuse implements only false");
        return DF_OK;
    }
    /* Read only when thresholding is on (refused above). */
    if (strcmp(key, "dynamic_thresholding_ratio") == 0 || strcmp(key, "sample_max_value") == 0) {
        if (v->type != DF_JSON_NUMBER) return bad_type(path, key, v, "a number");
        return DF_OK;
    }
    /* These pick which timesteps a run with fewer inference steps visits (and DDIM's last
     * alphabar_prev); they leave the trained model's T steps, betas and outputs unchanged. */
    if (strcmp(key, "steps_offset") == 0) {
        if (!json_is_int(v) || v->number < 0) return bad_type(path, key, v, "a non-negative integer");
        return DF_OK;
    }
    if (strcmp(key, "timestep_spacing") == 0) {
        if (!df_json_is_string(v, "leading") && !df_json_is_string(v, "trailing") && !df_json_is_string(v, "linspace"))
            return unsupported_field(path, key, v, "diffusers spells it leading, trailing or linspace");
        return DF_OK;
    }
    if (strcmp(key, "set_alpha_to_one") == 0) {
        if (v->type != DF_JSON_BOOL) return bad_type(path, key, v, "true or false");
        return DF_OK;
    }
    return unsupported_field(path, key, v, "not a DDPMScheduler option diffuse knows; refusing to ignore it");
}

/* The settings of the DDPM paper's CIFAR-10 run, for a folder without a scheduler. */
static void scheduler_defaults(df_diffusion_config *d) {
    df_diffusion_config_init(d);  /* linear 1e-4..0.02, T 1000, eps */
    d->var = DF_VAR_BETA;
}

/* Absent keys take DDPMScheduler's defaults. */
df_status df_diffusers_read_scheduler(const char *path, df_diffusion_config *d, df_diffusers_info *info) {
    df_json *j;
    df_diffusers_info own;
    if (!info) info = &own;
    df_diffusers_info_init(info);
    df_status st = json_read_file(path, &j);
    if (st != DF_OK) return st;
    df_diffusion_config_init(d);
    d->var = DF_VAR_POSTERIOR;  /* DDPMScheduler's default variance_type is fixed_small */
    info->has_scheduler = 1;
    snprintf(info->scheduler, sizeof info->scheduler, "DDPMScheduler");
    for (int i = 0; i < j->count && st == DF_OK; i++) st = scheduler_key(path, j->keys[i], &j->items[i], d, info);
    df_json_free(j);
    if (st != DF_OK) return st;
    df_schedule s;
    if ((st = df_schedule_new(&d->schedule, &s)) != DF_OK) return in_file(path, st);
    df_schedule_free(&s);
    return DF_OK;
}

/* ---------------------------------------------------------------- model_index.json */

/* ["diffusers", one of names...]; names ends with NULL. */
static int is_component(const df_json *v, const char *const *names) {
    if (!v || v->type != DF_JSON_ARRAY || v->count != 2 || !df_json_is_string(&v->items[0], "diffusers")) return 0;
    for (; *names; names++)
        if (df_json_is_string(&v->items[1], *names)) return 1;
    return 0;
}

/* A DDPM or DDIM pipeline made of a UNet2DModel and a DDPM/DDIM scheduler, and nothing else (a
 * latent pipeline's vqvae, for one, would make the U-Net's inputs something else than images). */
static df_status model_index_check(const char *path) {
    df_json *j;
    df_status st = json_read_file(path, &j);
    if (st != DF_OK) return st;
    static const char *const unets[] = {"UNet2DModel", NULL};
    static const char *const schedulers[] = {"DDPMScheduler", "DDIMScheduler", NULL};
    for (int i = 0; i < j->count && st == DF_OK; i++) {
        const char *key = j->keys[i];
        const df_json *v = &j->items[i];
        if (strcmp(key, "_diffusers_version") == 0 || strcmp(key, "_name_or_path") == 0 || strcmp(key, "_commit_hash") == 0)
            continue;
        if (strcmp(key, "_class_name") == 0) {
            if (!df_json_is_string(v, "DDPMPipeline") && !df_json_is_string(v, "DDIMPipeline"))
                st = unsupported_field(path, key, v, "diffuse reads DDPMPipeline and DDIMPipeline folders");
        } else if (strcmp(key, "unet") == 0) {
            if (!is_component(v, unets)) st = unsupported_field(path, key, v, "diffuse reads [\"diffusers\", \"UNet2DModel\"]");
        } else if (strcmp(key, "scheduler") == 0) {
            if (!is_component(v, schedulers))
                st = unsupported_field(path, key, v, "diffuse reads DDPMScheduler and DDIMScheduler");
        } else {
            st = unsupported_field(path, key, v, "a pipeline component diffuse does not implement");
        }
    }
    df_json_free(j);
    return st;
}

/* ---------------------------------------------------------------- weights */

/* Attention linears under their 2022 names (diffusers' AttentionBlock, before the rename to the
 * Attention module: modeling_utils _fix_state_dict_keys_on_load). */
static const char *const legacy_pairs[][2] = {
    {".to_q.", ".query."}, {".to_k.", ".key."}, {".to_v.", ".value."}, {".to_out.0.", ".proj_attn."},
};

/* Replaces the first `from` in name by `to`; 0 if name has no `from` (or is not an attention tensor). */
static int rename_part(const char *name, int from, int to, char *out, size_t cap) {
    if (!strstr(name, ".attentions.")) return 0;
    for (size_t k = 0; k < sizeof legacy_pairs / sizeof *legacy_pairs; k++) {
        const char *hit = strstr(name, legacy_pairs[k][from]);
        if (hit) {
            snprintf(out, cap, "%.*s%s%s", (int)(hit - name), name, legacy_pairs[k][to], hit + strlen(legacy_pairs[k][from]));
            return 1;
        }
    }
    return 0;
}

/* The file's tensor index for parameter `name` (its own name first, then the legacy one); -1 if absent. */
static int weight_lookup(const df_st_file *f, const char *name) {
    char legacy[DF_PARAM_NAME_MAX + 16];
    const df_st_tensor *t = df_st_find(f, name);
    if (!t && rename_part(name, 0, 1, legacy, sizeof legacy)) t = df_st_find(f, legacy);
    return t ? (int)(t - f->tensors) : -1;
}

/* Fills m->params (and m->ema) from the weights file at `path`, checking that the file holds
 * exactly the model's tensors. */
static df_status weights_read(df_model *m, const char *path) {
    df_st_file f;
    df_status st = df_st_read(path, &f);
    if (st != DF_OK) return st;
    const char *format = df_st_meta(&f, "format");
    int *index = calloc((size_t)m->table->count + 1, sizeof *index);
    char *used = calloc((size_t)f.n_tensors + 1, 1);
    if (!index || !used) {
        st = df_fail(DF_ERR_NOMEM, "out of memory reading %s", path);
        goto done;
    }
    /* safetensors files from other frameworks keep other layouts (e.g. TF conv kernels HWIO) */
    if (format && strcmp(format, "pt") != 0) {
        st = df_fail(DF_ERR_UNSUPPORTED, "%s: metadata format '%s' (diffuse reads PyTorch-layout \"pt\" weights)", path, format);
        goto done;
    }
    for (int k = 0; k < m->table->count; k++) {
        const char *name = m->table->info[k].name;
        index[k] = weight_lookup(&f, name);
        if (index[k] < 0) {
            char legacy[DF_PARAM_NAME_MAX + 16];
            if (rename_part(name, 0, 1, legacy, sizeof legacy))
                st = df_fail(DF_ERR_FORMAT, "%s: missing tensor '%s' (nor its legacy name '%s')", path, name, legacy);
            else
                st = df_fail(DF_ERR_FORMAT, "%s: missing tensor '%s'", path, name);
            goto done;
        }
        used[index[k]] = 1;
    }
    for (int i = 0; i < f.n_tensors; i++) {
        if (used[i]) continue;
        char other[DF_PARAM_NAME_MAX + 16];
        const char *name = f.tensors[i].name;
        if ((rename_part(name, 1, 0, other, sizeof other) || rename_part(name, 0, 1, other, sizeof other)) &&
            df_st_find(&f, other))
            st = df_fail(DF_ERR_FORMAT, "%s: holds both '%s' and '%s' (legacy and current names of one tensor)", path,
                         name, other);
        else
            st = df_fail(DF_ERR_FORMAT, "%s: tensor '%s' is not part of the network its config.json describes", path, name);
        goto done;
    }
    for (int k = 0; k < m->table->count; k++) {
        const df_param_info *p = &m->table->info[k];
        if ((st = df_st_get_f32(&f, f.tensors[index[k]].name, p->ndim, p->shape, m->params + p->offset)) != DF_OK) goto done;
    }
    for (size_t i = 0; i < m->n_floats; i++)
        if (!isfinite(m->params[i])) {
            st = df_fail(DF_ERR_NAN, "%s: holds non-finite weights", path);
            goto done;
        }
    memcpy(m->ema, m->params, m->n_floats * sizeof(float));
done:
    free(index);
    free(used);
    df_st_free(&f);
    return st;
}

/* DIR/diffusion_pytorch_model.safetensors, or a clear refusal naming the weights file that is there. */
static df_status weights_path(const char *dir, char *path) {
    df_status st = path_join(path, dir, WEIGHTS_FILE);
    if (st != DF_OK || exists(path)) return st;
    static const char *const others[][2] = {
        {"diffusion_pytorch_model.bin", "a PyTorch pickle, which diffuse does not read: save it as safetensors"},
        {"diffusion_pytorch_model.safetensors.index.json", "sharded weights, which diffuse does not read"},
        {"diffusion_pytorch_model.fp16.safetensors", "a variant file: rename it to " WEIGHTS_FILE " to use it"},
        {"diffusion_flax_model.msgpack", "Flax weights, which diffuse does not read"},
    };
    char other[PATH_CAP];
    for (size_t k = 0; k < sizeof others / sizeof *others; k++)
        if (path_join(other, dir, others[k][0]) == DF_OK && exists(other))
            return df_fail(DF_ERR_UNSUPPORTED, "%s: missing; the folder has %s instead, %s", path, others[k][0], others[k][1]);
    return df_fail(DF_ERR_IO, "cannot open %s: %s", path, strerror(ENOENT));
}

/* ---------------------------------------------------------------- loading */

/* A conditional folder's null class: "diffuse_null_class" when diffuse wrote it, else not known. */
static df_status read_null_class(const char *config, df_model *m) {
    df_json *j;
    df_status st = json_read_file(config, &j);
    if (st != DF_OK) return st;
    const df_json *v = df_json_get(j, "diffuse_null_class");
    m->null_class = -1;
    if (v && !(json_is_int(v) && v->number >= 0 && v->number < m->n_classes))
        st = df_fail(DF_ERR_FORMAT, "%s: diffuse_null_class must be a class index in 0..%d", config, m->n_classes - 1);
    else if (v)
        st = df_model_set_null_class(m, (int)v->number);
    df_json_free(j);
    return st;
}

df_status df_diffusers_load(const char *dir, int max_batch, int training, df_model **out, df_diffusers_info *info) {
    char unet_dir[PATH_CAP], config[PATH_CAP], sched[PATH_CAP], index[PATH_CAP], weights[PATH_CAP];
    df_diffusers_info inf;
    df_diffusion_config d;
    df_unet_config c;
    df_status st;
    df_model *m;
    *out = NULL;
    df_diffusers_info_init(&inf);
    if (info) *info = inf;
    if (!is_dir(dir))
        return df_fail(DF_ERR_IO, "cannot open %s: %s", dir, exists(dir) ? "not a directory" : strerror(ENOENT));
    /* pipeline folder (DIR/unet/config.json) or model folder (DIR/config.json) */
    if ((st = path_join(unet_dir, dir, "unet")) || (st = path_join(config, unet_dir, "config.json"))) return st;
    int pipeline = exists(config);
    if (pipeline) {
        if ((st = path_join(sched, dir, "scheduler/scheduler_config.json")) || (st = path_join(index, dir, "model_index.json")))
            return st;
        if (exists(index) && (st = model_index_check(index))) return st;
    } else {
        snprintf(unet_dir, sizeof unet_dir, "%s", dir);
        if ((st = path_join(config, dir, "config.json")) || (st = path_join(sched, dir, "scheduler_config.json"))) return st;
        if (!exists(config))
            return df_fail(DF_ERR_IO, "%s: no config.json (a diffusers folder has %s/config.json or %s/unet/config.json)",
                           dir, dir, dir);
    }
    if ((st = df_diffusers_read_unet_config(config, &c))) return st;
    if (exists(sched)) {
        if ((st = df_diffusers_read_scheduler(sched, &d, &inf))) return st;
    } else {
        scheduler_defaults(&d);
    }
    if ((st = weights_path(unet_dir, weights))) return st;
    if ((st = df_model_new_unet(&c, &d, max_batch, training, 0, &m))) return in_file(config, st);
    if ((st = weights_read(m, weights))) {
        df_model_free(m);
        return st;
    }
    m->use_ema = 1;
    if (m->n_classes > 0 && (st = read_null_class(config, m))) {
        df_model_free(m);
        return st;
    }
    if (info) *info = inf;
    *out = m;
    return DF_OK;
}

df_status df_model_open(const char *path, int max_batch, int training, df_model **m, df_diffusers_info *info) {
    if (is_dir(path)) return df_diffusers_load(path, max_batch, training, m, info);
    if (info) df_diffusers_info_init(info);
    return df_model_load(path, max_batch, training, m);
}

/* ---------------------------------------------------------------- saving */

/* scheduler_config.json for m, or DF_ERR_UNSUPPORTED for settings diffusers cannot express. */
static df_status scheduler_text(const df_model *m, const df_diffusers_info *info, char *buf, size_t cap) {
    const df_schedule_params *sp = &m->diff.schedule;
    const char *schedule, *pred;
    switch (sp->kind) {
    case DF_SCHEDULE_LINEAR: schedule = "linear"; break;
    case DF_SCHEDULE_QUADRATIC: schedule = "scaled_linear"; break;
    case DF_SCHEDULE_SIGMOID: schedule = "sigmoid"; break;
    case DF_SCHEDULE_COSINE:
        if (sp->cosine_s != 0.008 || sp->max_beta != 0.999)
            return df_fail(DF_ERR_UNSUPPORTED, "cannot export to diffusers: its cosine schedule (squaredcos_cap_v2) has "
                                               "s = 0.008 and max_beta = 0.999, this model s = %g and max_beta = %g",
                           sp->cosine_s, sp->max_beta);
        schedule = "squaredcos_cap_v2";
        break;
    default:
        return df_fail(DF_ERR_UNSUPPORTED, "cannot export to diffusers: the %s schedule has no diffusers beta_schedule "
                                           "(it has linear, scaled_linear = quadratic, squaredcos_cap_v2 = cosine, sigmoid)",
                       df_schedule_name(sp->kind));
    }
    switch (m->diff.pred) {
    case DF_PRED_EPS: pred = "epsilon"; break;
    case DF_PRED_X0: pred = "sample"; break;
    case DF_PRED_V: pred = "v_prediction"; break;
    default:
        return df_fail(DF_ERR_UNSUPPORTED, "cannot export to diffusers: the %s parameterisation has no diffusers "
                                           "prediction_type (it has epsilon = eps, sample = x0, v_prediction = v)",
                       df_pred_name(m->diff.pred));
    }
    char b0[32], b1[32], range[32];
    format_double(b0, sizeof b0, sp->beta_start);
    format_double(b1, sizeof b1, sp->beta_end);
    format_double(range, sizeof range, info->clip_sample_range);
    size_t n = (size_t)snprintf(buf, cap,
                                "{\n  \"_class_name\": \"DDPMScheduler\",\n  \"_diffusers_version\": \"" DIFFUSERS_VERSION "\",\n"
                                "  \"beta_end\": %s,\n  \"beta_schedule\": \"%s\",\n  \"beta_start\": %s,\n"
                                "  \"clip_sample\": %s,\n  \"clip_sample_range\": %s,\n  \"num_train_timesteps\": %d,\n"
                                "  \"prediction_type\": \"%s\",\n  \"trained_betas\": null,\n  \"variance_type\": \"%s\"\n}\n",
                                b1, schedule, b0, info->clip_sample ? "true" : "false", range, sp->T, pred,
                                m->diff.var == DF_VAR_BETA ? "fixed_large" : "fixed_small");
    ASSERT(n < cap);
    return DF_OK;
}

/* The weights (EMA or raw) to DIR/unet/diffusion_pytorch_model.safetensors. */
static df_status weights_write(const df_model *m, const float *w, const char *path) {
    df_st_writer *wr = df_st_writer_new();
    if (!wr) return df_fail(DF_ERR_NOMEM, "out of memory writing %s", path);
    for (int k = 0; k < m->table->count; k++) {
        const df_param_info *p = &m->table->info[k];
        df_st_writer_add(wr, p->name, DF_DTYPE_F32, p->ndim, p->shape, w + p->offset);
    }
    df_st_writer_meta(wr, "format", "pt");  /* what diffusers' save_pretrained writes */
    df_status st = df_st_writer_write(wr, path);
    df_st_writer_free(wr);
    return st;
}

df_status df_diffusers_save(const df_model *m, const char *dir, int use_ema, const df_diffusers_info *info) {
    char unet_dir[PATH_CAP], sched_dir[PATH_CAP], path[PATH_CAP];
    char sched[1024], unet[sizeof m->unet_config_json + 64];
    df_diffusers_info dflt;
    df_status st;
    if (!info) {
        df_diffusers_info_init(&dflt);
        info = &dflt;
    }
    if (m->kind != DF_NET_UNET)
        return df_fail(DF_ERR_ARG, "cannot export to diffusers: only U-Net models have a diffusers form (this is a 2-D MLP)");
    if (!(info->clip_sample_range > 0)) return df_fail(DF_ERR_ARG, "clip_sample_range must be positive");
    if ((st = scheduler_text(m, info, sched, sizeof sched))) return st;
    /* df_unet_config_to_json's text with _diffusers_version added after the opening brace */
    char body[sizeof m->unet_config_json];
    size_t n = df_unet_config_to_json(&m->unet, body, sizeof body);
    if (n >= sizeof body) return df_fail(DF_ERR_ARG, "U-Net config too large to export");
    ASSERT(body[0] == '{');
    /* a conditional model trained here names its null class (diffusers ignores the extra key, with a
     * warning); a folder made elsewhere has none, and guidance then needs --null-class */
    char null_key[48] = "";
    if (m->n_classes > 0 && m->null_class >= 0) snprintf(null_key, sizeof null_key, "\"diffuse_null_class\": %d, ", m->null_class);
    snprintf(unet, sizeof unet, "{\"_diffusers_version\": \"" DIFFUSERS_VERSION "\", %s%s\n", null_key, body + 1);
    if ((st = path_join(unet_dir, dir, "unet")) || (st = path_join(sched_dir, dir, "scheduler"))) return st;
    if ((st = df_mkdirs(unet_dir)) || (st = df_mkdirs(sched_dir))) return st;
    if ((st = path_join(path, unet_dir, WEIGHTS_FILE)) || (st = weights_write(m, use_ema ? m->ema : m->params, path)))
        return st;
    if ((st = path_join(path, unet_dir, "config.json")) || (st = write_text(path, unet))) return st;
    if ((st = path_join(path, sched_dir, "scheduler_config.json")) || (st = write_text(path, sched))) return st;
    /* last: a folder with model_index.json is complete */
    if ((st = path_join(path, dir, "model_index.json")) ||
        (st = write_text(path, "{\n  \"_class_name\": \"DDPMPipeline\",\n  \"_diffusers_version\": \"" DIFFUSERS_VERSION "\",\n"
                               "  \"scheduler\": [\"diffusers\", \"DDPMScheduler\"],\n"
                               "  \"unet\": [\"diffusers\", \"UNet2DModel\"]\n}\n")))
        return st;
    return DF_OK;
}
