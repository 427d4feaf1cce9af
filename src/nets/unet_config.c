/* unet_config.c: the U-Net's configuration: the presets, validation, and the mapping to and from
 * diffusers' UNet2DModel config.json (docs/unet.md, section 6). */
#include "unet_layers.h"
#include "json.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- config */

df_status df_unet_preset(const char *name, df_unet_config *c) {
    memset(c, 0, sizeof *c);
    c->norm_num_groups = 32;
    c->norm_eps = 1e-6f;
    c->layers_per_block = 2;
    c->freq_shift = 1;
    c->flip_sin_to_cos = 0;
    c->attention_head_dim = 0;
    if (name && strcmp(name, "fmnist-small") == 0) {
        /* torch_ddpm.py --config small: ch 32, ch_mult 1,2,2, attention at 7 px, no dropout */
        c->in_channels = c->out_channels = 1;
        c->sample_size = 28;
        c->n_levels = 3;
        c->block_out_channels[0] = 32, c->block_out_channels[1] = 64, c->block_out_channels[2] = 64;
        c->n_attn = 1, c->attn_resolutions[0] = 7;
        c->dropout = 0.0f;
        return DF_OK;
    }
    if (name && strcmp(name, "ddpm-cifar10") == 0) {
        /* google/ddpm-cifar10-32 (Ho et al. 2020, run_cifar.py): dropout 0.1 as trained */
        c->in_channels = c->out_channels = 3;
        c->sample_size = 32;
        c->n_levels = 4;
        c->block_out_channels[0] = 128;
        c->block_out_channels[1] = c->block_out_channels[2] = c->block_out_channels[3] = 256;
        c->n_attn = 1, c->attn_resolutions[0] = 16;
        c->dropout = 0.1f;
        return DF_OK;
    }
    return df_fail(DF_ERR_ARG, "unet: unknown preset '%s' (valid: fmnist-small, ddpm-cifar10)", name ? name : "(null)");
}


df_status df_unet_config_validate(const df_unet_config *c) {
    /* Caps keep every per-image size well inside int and size_t arithmetic. */
    const int max_ch = 1 << 14, max_size = 1 << 12;
    if (c->in_channels < 1 || c->in_channels > max_ch || c->out_channels < 1 || c->out_channels > max_ch)
        return df_fail(DF_ERR_ARG, "unet: in_channels %d and out_channels %d must be in 1..%d", c->in_channels,
                       c->out_channels, max_ch);
    if (c->sample_size < 1 || c->sample_size > max_size)
        return df_fail(DF_ERR_ARG, "unet: sample_size %d must be in 1..%d", c->sample_size, max_size);
    if (c->n_levels < 1 || c->n_levels > DF_UNET_MAX_LEVELS)
        return df_fail(DF_ERR_ARG, "unet: n_levels %d must be in 1..%d", c->n_levels, DF_UNET_MAX_LEVELS);
    if (c->layers_per_block < 1 || c->layers_per_block > 64)
        return df_fail(DF_ERR_ARG, "unet: layers_per_block %d must be in 1..64", c->layers_per_block);
    if (c->norm_num_groups < 1)
        return df_fail(DF_ERR_ARG, "unet: norm_num_groups %d must be at least 1", c->norm_num_groups);
    for (int i = 0; i < c->n_levels; i++) {
        int ch = c->block_out_channels[i];
        if (ch < 1 || ch > max_ch)
            return df_fail(DF_ERR_ARG, "unet: block_out_channels[%d] = %d must be in 1..%d", i, ch, max_ch);
        /* Every group norm runs over a block channel count or the sum of two of them (concat). */
        if (ch % c->norm_num_groups != 0)
            return df_fail(DF_ERR_ARG, "unet: norm_num_groups %d does not divide block_out_channels[%d] = %d",
                           c->norm_num_groups, i, ch);
    }
    int down = 1 << (c->n_levels - 1);
    if (c->sample_size % down != 0)
        return df_fail(DF_ERR_ARG,
                       "unet: sample_size %d must be divisible by %d (%d downsamplers halve it exactly, so that "
                       "the upsampled maps match their skips)", c->sample_size, down, c->n_levels - 1);
    if (c->n_attn < 0 || c->n_attn > DF_UNET_MAX_LEVELS)
        return df_fail(DF_ERR_ARG, "unet: n_attn %d must be in 0..%d", c->n_attn, DF_UNET_MAX_LEVELS);
    for (int a = 0; a < c->n_attn; a++) {
        int found = 0;
        for (int i = 0; i < c->n_levels; i++) found |= (c->sample_size >> i) == c->attn_resolutions[a];
        if (!found)
            return df_fail(DF_ERR_ARG, "unet: attention resolution %d is not the size of any level (sample %d, %d levels)",
                           c->attn_resolutions[a], c->sample_size, c->n_levels);
    }
    if (c->num_class_embeds < 0 || c->num_class_embeds == 1 || c->num_class_embeds > 1000000)
        return df_fail(DF_ERR_ARG, "unet: num_class_embeds %d must be 0 (unconditional) or in 2..1000000",
                       c->num_class_embeds);
    if (c->attention_head_dim < 0)
        return df_fail(DF_ERR_ARG, "unet: attention_head_dim %d must be >= 0 (0 = one head)", c->attention_head_dim);
    if (c->attention_head_dim > 0) {
        for (int i = 0; i < c->n_levels; i++) {
            int mid = i == c->n_levels - 1;  /* the mid block always has attention */
            if ((level_has_attention(c, i) || mid) && c->block_out_channels[i] % c->attention_head_dim != 0)
                return df_fail(DF_ERR_ARG, "unet: attention_head_dim %d does not divide the %d channels of %s %d",
                               c->attention_head_dim, c->block_out_channels[i], mid ? "the mid block / level" : "level", i);
        }
    }
    if (!(c->norm_eps > 0.0f) || !isfinite(c->norm_eps))
        return df_fail(DF_ERR_ARG, "unet: norm_eps %g must be positive", (double)c->norm_eps);
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return df_fail(DF_ERR_ARG, "unet: dropout %g must be in [0, 1)", (double)c->dropout);
    if (c->block_out_channels[0] / 2 - c->freq_shift <= 0)
        return df_fail(DF_ERR_ARG, "unet: time embedding of %d channels needs freq_shift %d < %d",
                       c->block_out_channels[0], c->freq_shift, c->block_out_channels[0] / 2);
    if (c->flip_sin_to_cos != 0 && c->flip_sin_to_cos != 1)
        return df_fail(DF_ERR_ARG, "unet: flip_sin_to_cos %d must be 0 or 1", c->flip_sin_to_cos);
    return DF_OK;
}

/* ---------------------------------------------------------------- diffusers config.json */

/* How a UNet2DModel config key is handled:
 *  INFO: bookkeeping that changes no arithmetic;
 *  NET: read by df_unet_config_from_json (which checks the value);
 *  ONLY: the network implements one value of it (`only`, JSON text).
 * `dflt` is the value diffusers' UNet2DModel.__init__ gives an absent key (JSON text; NULL = the key
 * is required), because diffusers reads configs written by older versions, which lack the keys
 * added since, with those defaults. The published 256x256 DDPM configs (_diffusers_version 0.0.4)
 * lack resnet_time_scale_shift, add_attention, class_embed_type, num_class_embeds and dropout. */
typedef enum { KEY_INFO, KEY_NET, KEY_ONLY } key_kind;
typedef struct {
    const char *key;
    key_kind kind;
    const char *dflt;
    const char *only;
} config_key;

static const config_key unet_keys[] = {
    {"_class_name", KEY_INFO, NULL, NULL},  /* checked to be UNet2DModel below */
    {"_diffusers_version", KEY_INFO, NULL, NULL},
    {"_name_or_path", KEY_INFO, NULL, NULL},
    {"_commit_hash", KEY_INFO, NULL, NULL},
    {"_use_default_values", KEY_INFO, NULL, NULL},
    /* read only by time_embedding_type "learned", which is refused below */
    {"num_train_timesteps", KEY_INFO, NULL, NULL},
    {"sample_size", KEY_NET, NULL, NULL},
    {"in_channels", KEY_NET, "3", NULL},
    {"out_channels", KEY_NET, "3", NULL},
    {"freq_shift", KEY_NET, "0", NULL},
    {"flip_sin_to_cos", KEY_NET, "true", NULL},
    {"down_block_types", KEY_NET, "[\"DownBlock2D\", \"AttnDownBlock2D\", \"AttnDownBlock2D\", \"AttnDownBlock2D\"]", NULL},
    {"up_block_types", KEY_NET, "[\"AttnUpBlock2D\", \"AttnUpBlock2D\", \"AttnUpBlock2D\", \"UpBlock2D\"]", NULL},
    {"block_out_channels", KEY_NET, "[224, 448, 672, 896]", NULL},
    {"layers_per_block", KEY_NET, "2", NULL},
    {"dropout", KEY_NET, "0.0", NULL},
    {"attention_head_dim", KEY_NET, "8", NULL},
    {"norm_num_groups", KEY_NET, "32", NULL},
    {"attn_norm_num_groups", KEY_NET, "null", NULL},
    {"norm_eps", KEY_NET, "1e-05", NULL},
    {"time_embedding_dim", KEY_NET, "null", NULL},  /* checked against 4 * block_out_channels[0] below */
    {"center_input_sample", KEY_ONLY, "false", "false"},
    {"time_embedding_type", KEY_ONLY, "\"positional\"", "\"positional\""},
    {"mid_block_type", KEY_ONLY, "\"UNetMidBlock2D\"", "\"UNetMidBlock2D\""},
    {"mid_block_scale_factor", KEY_ONLY, "1", "1"},
    {"downsample_padding", KEY_ONLY, "1", "0"},
    {"downsample_type", KEY_ONLY, "\"conv\"", "\"conv\""},
    {"upsample_type", KEY_ONLY, "\"conv\"", "\"conv\""},
    {"act_fn", KEY_ONLY, "\"silu\"", "\"silu\""},
    {"resnet_time_scale_shift", KEY_ONLY, "\"default\"", "\"default\""},
    {"add_attention", KEY_ONLY, "true", "true"},
    {"class_embed_type", KEY_ONLY, "null", "null"},  /* with num_class_embeds: nn.Embedding(K, 4 C0) */
    {"num_class_embeds", KEY_NET, "null", NULL},
    {"diffuse_null_class", KEY_INFO, NULL, NULL},     /* ours: the null class of a model trained here */
};
#define N_UNET_KEYS ((int)(sizeof unet_keys / sizeof *unet_keys))

static const config_key *unet_key_find(const char *key) {
    for (int k = 0; k < N_UNET_KEYS; k++)
        if (strcmp(unet_keys[k].key, key) == 0) return &unet_keys[k];
    return NULL;
}

static df_status unsupported_field(const char *path, const char *key, const df_json *v, const char *why) {
    char shown[96];
    return df_fail(DF_ERR_UNSUPPORTED, "%s: unsupported field '%s' = %s (%s)", path, key, df_json_show(v, shown, sizeof shown), why);
}

/* Every entry of the array `key` must be one of names a / b (the block types the network has). */
static df_status check_block_types(const char *path, const df_json *j, const char *key, const char *a, const char *b) {
    const df_json *v = df_json_get(j, key);
    if (!v || v->type != DF_JSON_ARRAY) return DF_OK;  /* absent or malformed: from_json reports it */
    for (int i = 0; i < v->count; i++)
        if (v->items[i].type == DF_JSON_STRING && !df_json_is_string(&v->items[i], a) && !df_json_is_string(&v->items[i], b)) {
            char why[128];
            snprintf(why, sizeof why, "diffuse implements %s and %s", a, b);
            return unsupported_field(path, key, v, why);
        }
    return DF_OK;
}

df_status df_unet_config_check_keys(const char *path, const df_json *j, char **text) {
    df_status st;
    if (text) *text = NULL;
    const df_json *cls = df_json_get(j, "_class_name");
    if (cls && !df_json_is_string(cls, "UNet2DModel"))
        return unsupported_field(path, "_class_name", cls, "diffuse reads UNet2DModel configs");
    for (int i = 0; i < j->count; i++) {
        const config_key *ck = unet_key_find(j->keys[i]);
        if (!ck) return unsupported_field(path, j->keys[i], &j->items[i], "not a UNet2DModel option diffuse knows; refusing to ignore it");
        if (ck->kind != KEY_ONLY) continue;
        df_json *only;
        df_status parsed = df_json_parse(ck->only, strlen(ck->only), &only);
        ASSERT(parsed == DF_OK);
        int ok = df_json_scalar_equal(&j->items[i], only);
        df_json_free(only);
        if (!ok) {
            char why[96];
            snprintf(why, sizeof why, "diffuse implements only %s", ck->only);
            return unsupported_field(path, ck->key, &j->items[i], why);
        }
    }
    for (int k = 0; k < N_UNET_KEYS; k++) {
        const config_key *ck = &unet_keys[k];
        if (df_json_get(j, ck->key) || ck->kind == KEY_INFO) continue;
        if (!text && ck->kind == KEY_NET) continue; /* diffuse's own config: the field readers say what is missing */
        if (!ck->dflt) return df_fail(DF_ERR_FORMAT, "%s: missing field '%s' (diffusers has no default for it)", path, ck->key);
        if (ck->kind == KEY_ONLY && strcmp(ck->dflt, ck->only) != 0)
            return df_fail(DF_ERR_UNSUPPORTED,
                           "%s: unsupported field '%s': absent, so diffusers uses its default %s (diffuse implements only %s)",
                           path, ck->key, ck->dflt, ck->only);
    }
    const df_json *size = df_json_get(j, "sample_size");
    if (size && size->type == DF_JSON_ARRAY)
        return unsupported_field(path, "sample_size", size, "diffuse needs a square size given as one integer");
    if ((st = check_block_types(path, j, "down_block_types", "DownBlock2D", "AttnDownBlock2D")) ||
        (st = check_block_types(path, j, "up_block_types", "UpBlock2D", "AttnUpBlock2D")))
        return st;
    if (!text) return DF_OK;

    size_t len = 0;
    FILE *f = open_memstream(text, &len);
    if (!f) return df_fail(DF_ERR_NOMEM, "out of memory reading %s", path);
    fputc('{', f);
    int first = 1;
    for (int k = 0; k < N_UNET_KEYS; k++) {
        const config_key *ck = &unet_keys[k];
        if (ck->kind == KEY_INFO) continue;
        const df_json *v = df_json_get(j, ck->key);
        fprintf(f, "%s\"%s\": ", first ? "" : ", ", ck->key);
        if (v) df_json_write(f, v);
        else fputs(ck->dflt, f);
        first = 0;
    }
    fputc('}', f);
    fclose(f);
    return *text ? DF_OK : df_fail(DF_ERR_NOMEM, "out of memory reading %s", path);
}


/* Member `key` as an int; DF_ERR_FORMAT when absent or not an integer. */
static df_status json_int_field(const df_json *j, const char *key, int *out) {
    const df_json *v = df_json_get(j, key);
    if (!v) return df_fail(DF_ERR_FORMAT, "unet config: missing key \"%s\"", key);
    if (v->type != DF_JSON_NUMBER || v->number != floor(v->number) || fabs(v->number) > 1e9)
        return df_fail(DF_ERR_FORMAT, "unet config: \"%s\" must be an integer", key);
    *out = (int)v->number;
    return DF_OK;
}

/* attn_norm_num_groups: null (= norm_num_groups, the only value the network has) or equal to it. */
static df_status config_check_attn_groups(const df_json *j) {
    const df_json *v = df_json_get(j, "attn_norm_num_groups");
    if (!v || v->type == DF_JSON_NULL) return DF_OK;
    int g, groups;
    df_status st;
    if ((st = json_int_field(j, "attn_norm_num_groups", &g)) || (st = json_int_field(j, "norm_num_groups", &groups)))
        return st;
    if (g != groups) return df_fail(DF_ERR_UNSUPPORTED, "unet config: attn_norm_num_groups must equal norm_num_groups");
    return DF_OK;
}

/* block_out_channels, down_block_types and up_block_types: attention at level i iff down type i is
 * AttnDownBlock2D, and the up types must mirror the down types. */
static df_status config_levels(const df_json *j, df_unet_config *c) {
    const df_json *boc = df_json_get(j, "block_out_channels");
    const df_json *down = df_json_get(j, "down_block_types"), *up = df_json_get(j, "up_block_types");
    if (!boc || boc->type != DF_JSON_ARRAY || boc->count < 1 || boc->count > DF_UNET_MAX_LEVELS)
        return df_fail(DF_ERR_FORMAT, "unet config: block_out_channels must be an array of 1..%d integers",
                       DF_UNET_MAX_LEVELS);
    if (!down || !up || down->type != DF_JSON_ARRAY || up->type != DF_JSON_ARRAY || down->count != boc->count ||
        up->count != boc->count)
        return df_fail(DF_ERR_FORMAT, "unet config: down_block_types and up_block_types need %d entries each",
                       boc->count);
    c->n_levels = boc->count;
    c->n_attn = 0;
    for (int i = 0; i < boc->count; i++) {
        const df_json *b = &boc->items[i], *d = &down->items[i], *u = &up->items[boc->count - 1 - i];
        if (b->type != DF_JSON_NUMBER || b->number != floor(b->number) || b->number < 1 || b->number > 1e6)
            return df_fail(DF_ERR_FORMAT, "unet config: block_out_channels[%d] must be a positive integer", i);
        c->block_out_channels[i] = (int)b->number;
        if (d->type != DF_JSON_STRING || u->type != DF_JSON_STRING)
            return df_fail(DF_ERR_FORMAT, "unet config: block types must be strings");
        int attn = strcmp(d->string, "AttnDownBlock2D") == 0;
        if (!attn && strcmp(d->string, "DownBlock2D") != 0)
            return df_fail(DF_ERR_UNSUPPORTED, "unet config: down block type \"%s\" (only DownBlock2D, AttnDownBlock2D)",
                           d->string);
        if (strcmp(u->string, attn ? "AttnUpBlock2D" : "UpBlock2D") != 0)
            return df_fail(DF_ERR_UNSUPPORTED, "unet config: up_block_types[%d] = \"%s\" does not mirror \"%s\"",
                           boc->count - 1 - i, u->string, d->string);
        if (attn) c->attn_resolutions[c->n_attn++] = c->sample_size >> i;
    }
    return DF_OK;
}

df_status df_unet_config_from_json(const char *text, size_t len, df_unet_config *c) {
    df_json *j = NULL;
    df_status st = df_json_parse(text, len, &j);
    if (st != DF_OK) return st;
    memset(c, 0, sizeof *c);
    const df_json *v;
    if (j->type != DF_JSON_OBJECT) {
        st = df_fail(DF_ERR_FORMAT, "unet config: not a JSON object");
        goto done;
    }
    /* the keys and fixed values, checked by the same table as a diffusers config.json */
    if ((st = df_unet_config_check_keys("unet config", j, NULL)) || (st = config_check_attn_groups(j)) ||
        (st = json_int_field(j, "in_channels", &c->in_channels)) ||
        (st = json_int_field(j, "out_channels", &c->out_channels)) ||
        (st = json_int_field(j, "sample_size", &c->sample_size)) ||
        (st = json_int_field(j, "layers_per_block", &c->layers_per_block)) ||
        (st = json_int_field(j, "norm_num_groups", &c->norm_num_groups)) ||
        (st = json_int_field(j, "freq_shift", &c->freq_shift)) || (st = config_levels(j, c)))
        goto done;
    v = df_json_get(j, "norm_eps");
    if (!v || v->type != DF_JSON_NUMBER) {
        st = df_fail(DF_ERR_FORMAT, "unet config: norm_eps must be a number");
        goto done;
    }
    c->norm_eps = (float)v->number;
    v = df_json_get(j, "flip_sin_to_cos");
    if (!v || v->type != DF_JSON_BOOL) {
        st = df_fail(DF_ERR_FORMAT, "unet config: flip_sin_to_cos must be true or false");
        goto done;
    }
    c->flip_sin_to_cos = v->boolean;
    /* null (or absent, as in some 2022 files) = one head over all channels */
    v = df_json_get(j, "num_class_embeds");
    c->num_class_embeds = 0;
    if (v && v->type != DF_JSON_NULL && (st = json_int_field(j, "num_class_embeds", &c->num_class_embeds))) goto done;
    v = df_json_get(j, "attention_head_dim");
    if (v && v->type != DF_JSON_NULL && (st = json_int_field(j, "attention_head_dim", &c->attention_head_dim)))
        goto done;
    /* absent in google/ddpm-cifar10-32's current config: diffusers then loads dropout 0.0 */
    v = df_json_get(j, "dropout");
    if (v && v->type != DF_JSON_NUMBER) {
        st = df_fail(DF_ERR_FORMAT, "unet config: dropout must be a number");
        goto done;
    }
    c->dropout = v ? (float)v->number : 0.0f;
    st = df_unet_config_validate(c);
done:
    df_json_free(j);
    return st;
}

/* Shortest %g spelling that reads back as the same float. */
static void format_float(char *buf, size_t cap, float x) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) return;
    }
}

size_t df_unet_config_to_json(const df_unet_config *c, char *buf, size_t cap) {
    char eps[32], drop[32], list[3][512];
    size_t n = 0;
    format_float(eps, sizeof eps, c->norm_eps);
    format_float(drop, sizeof drop, c->dropout);
    list[0][0] = list[1][0] = list[2][0] = 0;
    for (int i = 0; i < c->n_levels && i < DF_UNET_MAX_LEVELS; i++) {
        const char *sep = i ? ", " : "";
        int attn_down = level_has_attention(c, i), attn_up = level_has_attention(c, c->n_levels - 1 - i);
        size_t l0 = strlen(list[0]), l1 = strlen(list[1]), l2 = strlen(list[2]);
        snprintf(list[0] + l0, sizeof list[0] - l0, "%s%d", sep, c->block_out_channels[i]);
        snprintf(list[1] + l1, sizeof list[1] - l1, "%s\"%s\"", sep, attn_down ? "AttnDownBlock2D" : "DownBlock2D");
        snprintf(list[2] + l2, sizeof list[2] - l2, "%s\"%s\"", sep, attn_up ? "AttnUpBlock2D" : "UpBlock2D");
    }
    char head[32], classes[32];
    if (c->num_class_embeds > 0) snprintf(classes, sizeof classes, "%d", c->num_class_embeds);
    else snprintf(classes, sizeof classes, "null");
    if (c->attention_head_dim > 0) snprintf(head, sizeof head, "%d", c->attention_head_dim);
    else snprintf(head, sizeof head, "null");
    int len = snprintf(buf, cap,
        "{\"_class_name\": \"UNet2DModel\", \"act_fn\": \"silu\", \"add_attention\": true, "
        "\"attention_head_dim\": %s, \"block_out_channels\": [%s], \"center_input_sample\": false, "
        "\"class_embed_type\": null, \"down_block_types\": [%s], \"downsample_padding\": 0, \"dropout\": %s, "
        "\"flip_sin_to_cos\": %s, \"freq_shift\": %d, \"in_channels\": %d, \"layers_per_block\": %d, "
        "\"mid_block_scale_factor\": 1, \"norm_eps\": %s, \"norm_num_groups\": %d, \"num_class_embeds\": %s, "
        "\"out_channels\": %d, \"resnet_time_scale_shift\": \"default\", \"sample_size\": %d, "
        "\"time_embedding_type\": \"positional\", \"up_block_types\": [%s]}",
        head, list[0], list[1], drop, c->flip_sin_to_cos ? "true" : "false", c->freq_shift, c->in_channels,
        c->layers_per_block, eps, c->norm_num_groups, classes, c->out_channels, c->sample_size, list[2]);
    n = len < 0 ? 0 : (size_t)len;
    return n;
}

