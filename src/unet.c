/* unet.c: the DDPM U-Net as diffusers' UNet2DModel: presets, config validation and the diffusers
 * config.json mapping, parameter table, node graph, memory plan, forward and backward. See unet.h for
 * the contract and docs/ddpm-unet.md for the architecture. Not here: the arithmetic (ops_*.c), the
 * loss, the optimiser, checkpoint files.
 *
 * Structure. unet_build() turns a config into (a) the parameter table, registering each tensor under
 * its diffusers name, and (b) a flat list of nodes: conv_in, the down levels, the mid block, the up
 * levels (each resnet preceded by a concat node that pops a skip), and the output head. Forward runs
 * the list in order, backward in reverse. unet_plan() then places every activation and gradient in
 * the two arenas.
 *
 * Memory plan (unet_plan). A node's output y is kept in its own region when backward needs it: when
 * it is a skip (read again by a concat) or when the next node reads its input in backward (resnet,
 * attention, downsample, output head; upsample and concat do not). Otherwise y lives in one of two
 * ping-pong buffers (node i uses buffer i % 2, so a node never writes its own input). Each node's
 * intermediates that backward needs (group-norm outputs and statistics, conv1 output, q, k, v,
 * attention probabilities, attention output, the upsampled image) are kept once; what backward can
 * recompute cheaply is not: SiLU outputs (and the dropout applied to one) are recomputed into one
 * shared buffer. Without training, intermediates share a few slots reused by every node.
 * Gradients: each skip tensor has its own gradient buffer, accumulated by both of its consumers
 * (the next node and a concat); every other tensor has one consumer, whose backward zeroes and fills
 * one of two ping-pong gradient buffers. Four shared temporaries hold gradients inside a node.
 */
#include "unet.h"
#include "json.h"
#include "ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Parameter offsets per node kind (df_unet_node.param). */
enum { RES_NORM1_W, RES_NORM1_B, RES_CONV1_W, RES_CONV1_B, RES_TEMB_W, RES_TEMB_B,
       RES_NORM2_W, RES_NORM2_B, RES_CONV2_W, RES_CONV2_B, RES_SHORT_W, RES_SHORT_B };
enum { ATT_NORM_W, ATT_NORM_B, ATT_Q_W, ATT_Q_B, ATT_K_W, ATT_K_B, ATT_V_W, ATT_V_B, ATT_OUT_W, ATT_OUT_B };
enum { CONV_W, CONV_B, OUT_NORM_W, OUT_NORM_B };  /* conv_in, downsample, upsample, output head */
enum { TEMB_W1, TEMB_B1, TEMB_W2, TEMB_B2 };

/* Kept intermediates per node kind (df_unet_node.kept). */
enum { RES_GN1, RES_H1, RES_GN2 };                       /* mean/rstd [0]: norm1, [1]: norm2 */
enum { ATT_GN, ATT_Q, ATT_K, ATT_V, ATT_O, ATT_PROBS };  /* mean/rstd [0] */
enum { IN_X = 0 };                                       /* conv_in: copy of the input (training) */
enum { UP_U = 0 };                                       /* upsample: the nearest-x2 image */
enum { OUT_GN = 0 };                                     /* output head: conv_norm_out output, mean/rstd [0] */

/* How df_unet_init fills a tensor. */
enum { INIT_UNIFORM, INIT_ZERO, INIT_ONE };

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

static int level_has_attention(const df_unet_config *c, int level) {
    int res = c->sample_size >> level;
    for (int a = 0; a < c->n_attn; a++)
        if (c->attn_resolutions[a] == res) return 1;
    return 0;
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

/* Member `key` as an int; DF_ERR_FORMAT when absent or not an integer. */
static df_status json_int_field(const df_json *j, const char *key, int *out) {
    const df_json *v = df_json_get(j, key);
    if (!v) return df_fail(DF_ERR_FORMAT, "unet config: missing key \"%s\"", key);
    if (v->type != DF_JSON_NUMBER || v->number != floor(v->number) || fabs(v->number) > 1e9)
        return df_fail(DF_ERR_FORMAT, "unet config: \"%s\" must be an integer", key);
    *out = (int)v->number;
    return DF_OK;
}

/* Member `key` must be absent (when absent_ok) or one of: the string `want`, or null when want is NULL. */
static df_status json_expect(const df_json *j, const char *key, const char *want, int absent_ok) {
    const df_json *v = df_json_get(j, key);
    if (!v && absent_ok) return DF_OK;
    if (!v) return df_fail(DF_ERR_FORMAT, "unet config: missing key \"%s\"", key);
    int ok = want ? v->type == DF_JSON_STRING && strcmp(v->string, want) == 0 : v->type == DF_JSON_NULL;
    if (!ok)
        return df_fail(DF_ERR_UNSUPPORTED, "unet config: only \"%s\": %s%s%s is supported", key, want ? "\"" : "",
                       want ? want : "null", want ? "\"" : "");
    return DF_OK;
}

/* The options diffuse's network does not implement must hold their DDPM values. Keys that diffusers
 * added after 2022 (and so are missing from older files) may be absent. */
static df_status config_check_fixed(const df_json *j) {
    df_status st;
    const df_json *v;
    int ival;
    if ((st = json_expect(j, "_class_name", "UNet2DModel", 1)) || (st = json_expect(j, "act_fn", "silu", 0)) ||
        (st = json_expect(j, "time_embedding_type", "positional", 0)) ||
        (st = json_expect(j, "resnet_time_scale_shift", "default", 0)) ||
        (st = json_expect(j, "class_embed_type", NULL, 1)) || (st = json_expect(j, "num_class_embeds", NULL, 1)) ||
        (st = json_expect(j, "downsample_type", "conv", 1)) || (st = json_expect(j, "upsample_type", "conv", 1)))
        return st;
    if ((st = json_int_field(j, "downsample_padding", &ival))) return st;
    if (ival != 0)
        return df_fail(DF_ERR_UNSUPPORTED, "unet config: downsample_padding %d (only 0, DDPM's asymmetric pad)", ival);
    v = df_json_get(j, "mid_block_scale_factor");
    if (v && !(v->type == DF_JSON_NUMBER && v->number == 1.0))
        return df_fail(DF_ERR_UNSUPPORTED, "unet config: only mid_block_scale_factor 1 is supported");
    v = df_json_get(j, "center_input_sample");
    if (v && !(v->type == DF_JSON_BOOL && !v->boolean))
        return df_fail(DF_ERR_UNSUPPORTED, "unet config: only center_input_sample false is supported");
    v = df_json_get(j, "add_attention");
    if (v && !(v->type == DF_JSON_BOOL && v->boolean))
        return df_fail(DF_ERR_UNSUPPORTED, "unet config: only add_attention true is supported");
    v = df_json_get(j, "attn_norm_num_groups");
    if (v && v->type != DF_JSON_NULL) {
        int g;
        if ((st = json_int_field(j, "attn_norm_num_groups", &g)) || (st = json_int_field(j, "norm_num_groups", &ival)))
            return st;
        if (g != ival) return df_fail(DF_ERR_UNSUPPORTED, "unet config: attn_norm_num_groups must equal norm_num_groups");
    }
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
    if ((st = config_check_fixed(j)) || (st = json_int_field(j, "in_channels", &c->in_channels)) ||
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
    char head[32];
    if (c->attention_head_dim > 0) snprintf(head, sizeof head, "%d", c->attention_head_dim);
    else snprintf(head, sizeof head, "null");
    int len = snprintf(buf, cap,
        "{\"_class_name\": \"UNet2DModel\", \"act_fn\": \"silu\", \"add_attention\": true, "
        "\"attention_head_dim\": %s, \"block_out_channels\": [%s], \"center_input_sample\": false, "
        "\"class_embed_type\": null, \"down_block_types\": [%s], \"downsample_padding\": 0, \"dropout\": %s, "
        "\"flip_sin_to_cos\": %s, \"freq_shift\": %d, \"in_channels\": %d, \"layers_per_block\": %d, "
        "\"mid_block_scale_factor\": 1, \"norm_eps\": %s, \"norm_num_groups\": %d, \"num_class_embeds\": null, "
        "\"out_channels\": %d, \"resnet_time_scale_shift\": \"default\", \"sample_size\": %d, "
        "\"time_embedding_type\": \"positional\", \"up_block_types\": [%s]}",
        head, list[0], list[1], drop, c->flip_sin_to_cos ? "true" : "false", c->freq_shift, c->in_channels,
        c->layers_per_block, eps, c->norm_num_groups, c->out_channels, c->sample_size, list[2]);
    n = len < 0 ? 0 : (size_t)len;
    return n;
}

/* ---------------------------------------------------------------- building the graph */

typedef struct {
    df_unet *u;
    int tensor_cap, node_cap;
} builder;

static size_t reg(builder *b, const char *prefix, const char *suffix, int ndim, const int64_t *shape, int init,
                  int fan_in) {
    df_unet *u = b->u;
    char name[DF_PARAM_NAME_MAX];
    int len = snprintf(name, sizeof name, "%s.%s", prefix, suffix);
    ASSERT(len > 0 && len < (int)sizeof name);
    ASSERT(u->table.count < b->tensor_cap);
    u->param_init[u->table.count] = (unsigned char)init;
    u->param_fan_in[u->table.count] = fan_in;
    return df_param_table_add(&u->table, name, ndim, shape);
}

/* prefix.weight (oc,ic,k,k) or (oc,ic) when k == 0 (a linear), prefix.bias (oc). */
static void reg_conv(builder *b, const char *prefix, int oc, int ic, int k, int init, size_t *w, size_t *bias) {
    int64_t shape[4] = {oc, ic, k, k};
    int fan_in = ic * (k ? k * k : 1);
    *w = reg(b, prefix, "weight", k ? 4 : 2, shape, init, fan_in);
    *bias = reg(b, prefix, "bias", 1, shape, init, fan_in);
}

static void reg_norm(builder *b, const char *prefix, int c, size_t *w, size_t *bias) {
    int64_t shape[1] = {c};
    *w = reg(b, prefix, "weight", 1, shape, INIT_ONE, 0);
    *bias = reg(b, prefix, "bias", 1, shape, INIT_ZERO, 0);
}

static df_unet_node *add_node(builder *b, df_unet_node_kind kind, int cin, int cout, int h, int w) {
    df_unet *u = b->u;
    ASSERT(u->n_nodes < b->node_cap);
    df_unet_node *nd = &u->nodes[u->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->cin = cin, nd->cout = cout;
    nd->h = nd->oh = h, nd->w = nd->ow = w;
    nd->skip_from = -1;
    for (int i = 0; i < DF_UNET_NODE_PARAMS; i++) nd->param[i] = SIZE_MAX;
    return nd;
}

static void add_resnet(builder *b, const char *prefix, int cin, int cout, int res, int *dropout_id) {
    df_unet_node *nd = add_node(b, DF_UNET_RESNET, cin, cout, res, res);
    size_t *p = nd->param;
    char name[DF_PARAM_NAME_MAX];
    nd->dropout_id = (*dropout_id)++;
    nd->has_shortcut = cin != cout;
    snprintf(name, sizeof name, "%s.norm1", prefix);
    reg_norm(b, name, cin, &p[RES_NORM1_W], &p[RES_NORM1_B]);
    snprintf(name, sizeof name, "%s.conv1", prefix);
    reg_conv(b, name, cout, cin, 3, INIT_UNIFORM, &p[RES_CONV1_W], &p[RES_CONV1_B]);
    snprintf(name, sizeof name, "%s.time_emb_proj", prefix);
    reg_conv(b, name, cout, b->u->temb_dim, 0, INIT_UNIFORM, &p[RES_TEMB_W], &p[RES_TEMB_B]);
    snprintf(name, sizeof name, "%s.norm2", prefix);
    reg_norm(b, name, cout, &p[RES_NORM2_W], &p[RES_NORM2_B]);
    snprintf(name, sizeof name, "%s.conv2", prefix);
    reg_conv(b, name, cout, cout, 3, INIT_ZERO, &p[RES_CONV2_W], &p[RES_CONV2_B]);  /* DDPM zero init */
    if (nd->has_shortcut) {
        snprintf(name, sizeof name, "%s.conv_shortcut", prefix);
        reg_conv(b, name, cout, cin, 1, INIT_UNIFORM, &p[RES_SHORT_W], &p[RES_SHORT_B]);
    }
}

static void add_attention(builder *b, const char *prefix, int c, int res) {
    const df_unet_config *cfg = &b->u->config;
    df_unet_node *nd = add_node(b, DF_UNET_ATTENTION, c, c, res, res);
    size_t *p = nd->param;
    char name[DF_PARAM_NAME_MAX];
    nd->heads = cfg->attention_head_dim > 0 ? c / cfg->attention_head_dim : 1;
    snprintf(name, sizeof name, "%s.group_norm", prefix);
    reg_norm(b, name, c, &p[ATT_NORM_W], &p[ATT_NORM_B]);
    snprintf(name, sizeof name, "%s.to_q", prefix);
    reg_conv(b, name, c, c, 0, INIT_UNIFORM, &p[ATT_Q_W], &p[ATT_Q_B]);
    snprintf(name, sizeof name, "%s.to_k", prefix);
    reg_conv(b, name, c, c, 0, INIT_UNIFORM, &p[ATT_K_W], &p[ATT_K_B]);
    snprintf(name, sizeof name, "%s.to_v", prefix);
    reg_conv(b, name, c, c, 0, INIT_UNIFORM, &p[ATT_V_W], &p[ATT_V_B]);
    snprintf(name, sizeof name, "%s.to_out.0", prefix);
    reg_conv(b, name, c, c, 0, INIT_ZERO, &p[ATT_OUT_W], &p[ATT_OUT_B]);  /* DDPM zero init */
}

static void mark_skip(df_unet *u, int *stack, int *top) {
    u->nodes[u->n_nodes - 1].pushes_skip = 1;
    stack[(*top)++] = u->n_nodes - 1;
}

/* Fills u->table, u->nodes and the per-tensor init arrays from u->config (already validated). */
static df_status unet_build(df_unet *u) {
    const df_unet_config *c = &u->config;
    int L = c->layers_per_block, nl = c->n_levels, c0 = c->block_out_channels[0];
    builder b = {u, 0, 0};
    /* conv_in + per level (L resnets + L attentions + downsample) + mid 3 + per up level
     * ((L+1) x (concat + resnet + attention) + upsample) + output head */
    b.node_cap = 1 + nl * (2 * L + 1) + 3 + nl * (3 * (L + 1) + 1) + 1;
    b.tensor_cap = b.node_cap * DF_UNET_NODE_PARAMS + 8;
    u->nodes = df_calloc((size_t)b.node_cap * sizeof *u->nodes, "unet nodes");
    u->param_init = df_calloc((size_t)b.tensor_cap, "unet init kinds");
    u->param_fan_in = df_calloc((size_t)b.tensor_cap * sizeof(int), "unet fan-ins");
    if (!u->nodes || !u->param_init || !u->param_fan_in) return DF_ERR_NOMEM;
    u->temb_dim = 4 * c0;

    char name[DF_PARAM_NAME_MAX];
    int stack[1 + DF_UNET_MAX_LEVELS * 66], top = 0, dropout_id = 0;
    int res = c->sample_size, cur = c0;

    df_unet_node *nd = add_node(&b, DF_UNET_CONV_IN, c->in_channels, c0, res, res);
    reg_conv(&b, "conv_in", c0, c->in_channels, 3, INIT_UNIFORM, &nd->param[CONV_W], &nd->param[CONV_B]);
    mark_skip(u, stack, &top);
    reg_conv(&b, "time_embedding.linear_1", u->temb_dim, c0, 0, INIT_UNIFORM, &u->temb_param[TEMB_W1],
             &u->temb_param[TEMB_B1]);
    reg_conv(&b, "time_embedding.linear_2", u->temb_dim, u->temb_dim, 0, INIT_UNIFORM, &u->temb_param[TEMB_W2],
             &u->temb_param[TEMB_B2]);

    for (int i = 0; i < nl; i++) {
        int cout = c->block_out_channels[i], attn = level_has_attention(c, i);
        for (int j = 0; j < L; j++) {
            snprintf(name, sizeof name, "down_blocks.%d.resnets.%d", i, j);
            add_resnet(&b, name, cur, cout, res, &dropout_id);
            cur = cout;
            if (attn) {
                snprintf(name, sizeof name, "down_blocks.%d.attentions.%d", i, j);
                add_attention(&b, name, cur, res);
            }
            mark_skip(u, stack, &top);
        }
        if (i != nl - 1) {
            nd = add_node(&b, DF_UNET_DOWNSAMPLE, cur, cur, res, res);
            nd->oh = nd->ow = res / 2;
            snprintf(name, sizeof name, "down_blocks.%d.downsamplers.0.conv", i);
            reg_conv(&b, name, cur, cur, 3, INIT_UNIFORM, &nd->param[CONV_W], &nd->param[CONV_B]);
            res /= 2;
            mark_skip(u, stack, &top);
        }
    }

    add_resnet(&b, "mid_block.resnets.0", cur, cur, res, &dropout_id);
    add_attention(&b, "mid_block.attentions.0", cur, res);
    add_resnet(&b, "mid_block.resnets.1", cur, cur, res, &dropout_id);

    for (int k = 0; k < nl; k++) {
        int i = nl - 1 - k, cout = c->block_out_channels[i], attn = level_has_attention(c, i);
        for (int j = 0; j <= L; j++) {
            ASSERT(top > 0);
            int from = stack[--top];
            int cskip = u->nodes[from].cout;
            nd = add_node(&b, DF_UNET_CONCAT, cur, cur + cskip, res, res);
            nd->cskip = cskip;
            nd->skip_from = from;
            snprintf(name, sizeof name, "up_blocks.%d.resnets.%d", k, j);
            add_resnet(&b, name, cur + cskip, cout, res, &dropout_id);
            cur = cout;
            if (attn) {
                snprintf(name, sizeof name, "up_blocks.%d.attentions.%d", k, j);
                add_attention(&b, name, cur, res);
            }
        }
        if (k != nl - 1) {
            nd = add_node(&b, DF_UNET_UPSAMPLE, cur, cur, res, res);
            nd->oh = nd->ow = 2 * res;
            snprintf(name, sizeof name, "up_blocks.%d.upsamplers.0.conv", k);
            reg_conv(&b, name, cur, cur, 3, INIT_UNIFORM, &nd->param[CONV_W], &nd->param[CONV_B]);
            res *= 2;
        }
    }
    ASSERT(top == 0 && res == c->sample_size);

    nd = add_node(&b, DF_UNET_OUT, cur, c->out_channels, res, res);
    reg_norm(&b, "conv_norm_out", cur, &nd->param[OUT_NORM_W], &nd->param[OUT_NORM_B]);
    reg_conv(&b, "conv_out", c->out_channels, cur, 3, INIT_ZERO, &nd->param[CONV_W], &nd->param[CONV_B]);
    return DF_OK;
}

/* ---------------------------------------------------------------- conv shapes */

/* Each shape carries the network's precision (p); the scratch sizes do not depend on it. */
static void shape_conv3(df_conv_shape *s, df_precision p, int n, int ic, int h, int w, int oc) {
    df_conv_shape_init(s, n, ic, h, w, oc, 3, 1, 1, 1, 1, 1);
    s->precision = p;
}
static void shape_conv1(df_conv_shape *s, df_precision p, int n, int ic, int h, int w, int oc) {
    df_conv_shape_init(s, n, ic, h, w, oc, 1, 1, 0, 0, 0, 0);
    s->precision = p;
}
/* diffusers Downsample2D(padding=0): pad (top 0, left 0, bottom 1, right 1), 3x3 stride 2 = TF 'SAME'. */
static void shape_down(df_conv_shape *s, df_precision p, int n, int c, int h, int w) {
    df_conv_shape_init(s, n, c, h, w, c, 3, 2, 0, 0, 1, 1);
    s->precision = p;
}

/* Workspace floats the node's convs, linear and attention need for a batch of n (either precision). */
static size_t node_scratch_floats(const df_unet *u, const df_unet_node *nd, int n) {
    const df_precision p = u->precision;
    df_conv_shape s;
    size_t need = 0;
#define NEED(x) do { size_t v_ = (x); if (v_ > need) need = v_; } while (0)
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
    case DF_UNET_OUT:
        shape_conv3(&s, p, n, nd->cin, nd->h, nd->w, nd->cout); NEED(df_conv2d_scratch_floats(&s));
        break;
    case DF_UNET_RESNET:
        shape_conv3(&s, p, n, nd->cin, nd->h, nd->w, nd->cout); NEED(df_conv2d_scratch_floats(&s));
        shape_conv3(&s, p, n, nd->cout, nd->h, nd->w, nd->cout); NEED(df_conv2d_scratch_floats(&s));
        shape_conv1(&s, p, n, nd->cin, nd->h, nd->w, nd->cout); NEED(df_conv2d_scratch_floats(&s));
        NEED(df_linear_scratch_floats(n, u->temb_dim, nd->cout));
        break;
    case DF_UNET_ATTENTION:
        shape_conv1(&s, p, n, nd->cin, nd->h, nd->w, nd->cout); NEED(df_conv2d_scratch_floats(&s));
        NEED(df_attention_scratch_floats(n, nd->cin, nd->h * nd->w, nd->heads));
        break;
    case DF_UNET_DOWNSAMPLE:
        shape_down(&s, p, n, nd->cin, nd->h, nd->w); NEED(df_conv2d_scratch_floats(&s));
        break;
    case DF_UNET_UPSAMPLE:
        shape_conv3(&s, p, n, nd->cin, nd->oh, nd->ow, nd->cout); NEED(df_conv2d_scratch_floats(&s));
        break;
    case DF_UNET_CONCAT:
        break;
    }
#undef NEED
    return need;
}

/* ---------------------------------------------------------------- memory plan */

/* Shared slots of the activation arena and of the gradient arena. */
enum { A_RECOMPUTE, A_TPROJ, A_SCRATCH, A_Y0, A_Y1, A_S0, A_M0 = A_S0 + 6, A_NSLOTS = A_M0 + 4 };
enum { G_Y0, G_Y1, G_T0, G_TPROJ = G_T0 + 4, G_NSLOTS };
#define PLAN_MAX_SLOTS 16

/* One arena being planned: first a sizing pass (base NULL) records the largest use of each shared
 * slot and the total of kept tensors; then a placing pass hands out pointers. */
typedef struct {
    float *base;
    size_t slot_size[PLAN_MAX_SLOTS], slot_off[PLAN_MAX_SLOTS];
    size_t next;     /* next free offset for a kept tensor */
    double approx;   /* the same total in double, to refuse sizes that overflow size_t */
} plan_arena;

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

static float *plan_kept(plan_arena *a, size_t floats) {
    size_t off = a->next;
    a->next += pad16(floats);
    a->approx += (double)floats + 16.0;
    return a->base ? a->base + off : NULL;
}

static float *plan_slot(plan_arena *a, int slot, size_t floats) {
    if (!a->base) {
        if (floats > a->slot_size[slot]) a->slot_size[slot] = floats;
        return NULL;
    }
    ASSERT(floats <= a->slot_size[slot]);
    return a->base + a->slot_off[slot];
}

/* After sizing: lays the slots out first, kept tensors after them; returns the arena's floats. */
static size_t plan_finish_sizing(plan_arena *a, int nslots) {
    size_t off = 0, kept = a->next;
    for (int s = 0; s < nslots; s++) {
        a->slot_off[s] = off;
        off += pad16(a->slot_size[s]);
        a->approx += (double)a->slot_size[s] + 16.0;
    }
    a->next = off;
    return off + kept;
}

static int needs_input_in_backward(df_unet_node_kind k) {
    return k == DF_UNET_RESNET || k == DF_UNET_ATTENTION || k == DF_UNET_DOWNSAMPLE || k == DF_UNET_OUT;
}

/* An intermediate: its own region when training, else a slot shared by all nodes. */
static float *plan_inter(const df_unet *u, plan_arena *A, int slot, size_t floats) {
    return u->training ? plan_kept(A, floats) : plan_slot(A, slot, floats);
}

/* Node i's output and the intermediates its backward needs. */
static void plan_node_activations(df_unet *u, plan_arena *A, int i) {
    df_unet_node *nd = &u->nodes[i];
    const size_t B = (size_t)u->max_batch, groups = (size_t)u->config.norm_num_groups;
    const size_t hw = (size_t)nd->h * nd->w, xs = B * nd->cin * hw, ys = B * nd->cout * nd->oh * nd->ow;
    const int last = nd->kind == DF_UNET_OUT;

    nd->x = i > 0 ? u->nodes[i - 1].y : NULL;  /* conv_in: the caller's input, set per call */
    nd->skip = nd->skip_from >= 0 ? u->nodes[nd->skip_from].y : NULL;
    if (last)
        nd->y = NULL;  /* the caller's output, set per call */
    else if (nd->pushes_skip || (u->training && needs_input_in_backward(u->nodes[i + 1].kind)))
        nd->y = plan_kept(A, ys);
    else
        nd->y = plan_slot(A, A_Y0 + (i & 1), ys);

    for (int k = 0; k < DF_UNET_NODE_KEPT; k++) nd->kept[k] = NULL;
    nd->mean[0] = nd->rstd[0] = nd->mean[1] = nd->rstd[1] = NULL;
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
        if (u->training) nd->kept[IN_X] = plan_kept(A, xs);
        break;
    case DF_UNET_RESNET:
        /* the norm outputs are rebuilt in backward from x, h1 and mean/rstd (df_groupnorm_apply) */
        nd->kept[RES_GN1] = plan_slot(A, A_S0 + 0, xs);
        nd->kept[RES_H1] = plan_inter(u, A, A_S0 + 1, ys);
        nd->kept[RES_GN2] = plan_slot(A, A_S0 + 2, ys);
        for (int k = 0; k < 2; k++) {
            nd->mean[k] = plan_inter(u, A, A_M0 + 2 * k, B * groups);
            nd->rstd[k] = plan_inter(u, A, A_M0 + 2 * k + 1, B * groups);
        }
        plan_slot(A, A_RECOMPUTE, xs > ys ? xs : ys);  /* SiLU outputs and the shortcut */
        plan_slot(A, A_TPROJ, B * nd->cout);
        break;
    case DF_UNET_ATTENTION:
        nd->kept[ATT_GN] = plan_slot(A, A_S0 + 0, xs);  /* rebuilt in backward */
        nd->kept[ATT_Q] = plan_inter(u, A, A_S0 + 1, xs);
        nd->kept[ATT_K] = plan_inter(u, A, A_S0 + 2, xs);
        nd->kept[ATT_V] = plan_inter(u, A, A_S0 + 3, xs);
        nd->kept[ATT_O] = plan_inter(u, A, A_S0 + 4, xs);
        nd->kept[ATT_PROBS] = plan_inter(u, A, A_S0 + 5, B * nd->heads * hw * hw);
        nd->mean[0] = plan_inter(u, A, A_M0 + 0, B * groups);
        nd->rstd[0] = plan_inter(u, A, A_M0 + 1, B * groups);
        break;
    case DF_UNET_UPSAMPLE:
        nd->kept[UP_U] = plan_inter(u, A, A_S0 + 0, ys);
        break;
    case DF_UNET_OUT:
        nd->kept[OUT_GN] = plan_slot(A, A_S0 + 0, xs);  /* rebuilt in backward */
        nd->mean[0] = plan_inter(u, A, A_M0 + 0, B * groups);
        nd->rstd[0] = plan_inter(u, A, A_M0 + 1, B * groups);
        plan_slot(A, A_RECOMPUTE, xs);
        break;
    case DF_UNET_DOWNSAMPLE:
    case DF_UNET_CONCAT:
        break;
    }
    plan_slot(A, A_SCRATCH, node_scratch_floats(u, nd, (int)B));
}

/* Node i's gradient routing: dy (a skip's own buffer, else ping-pong), dx and dskip (its inputs'
 * dy), and the shared temporaries of its backward. */
static void plan_node_gradients(df_unet *u, plan_arena *G, int i) {
    df_unet_node *nd = &u->nodes[i];
    const size_t B = (size_t)u->max_batch, hw = (size_t)nd->h * nd->w;
    const size_t xs = B * nd->cin * hw, ys = B * nd->cout * nd->oh * nd->ow;
    if (nd->kind == DF_UNET_OUT)
        nd->dy = NULL;  /* the caller's dout */
    else if (nd->pushes_skip)
        nd->dy = plan_kept(G, ys);  /* accumulated by both consumers; zeroed once per backward */
    else
        nd->dy = plan_slot(G, G_Y0 + (i & 1), ys);
    nd->dx = i > 0 ? u->nodes[i - 1].dy : NULL;
    nd->zero_dx = i > 0 && !u->nodes[i - 1].pushes_skip;
    nd->dskip = nd->skip_from >= 0 ? u->nodes[nd->skip_from].dy : NULL;
    for (int k = 0; k < 4; k++) u->tmp[k] = plan_slot(G, G_T0 + k, xs > ys ? xs : ys);
    if (nd->kind == DF_UNET_RESNET) u->dtproj = plan_slot(G, G_TPROJ, B * nd->cout);
}

/* Assigns every activation (A) and gradient (G, NULL unless training) pointer. Run twice: sizing
 * (arena bases NULL) and placing. */
static void unet_plan(df_unet *u, plan_arena *A, plan_arena *G) {
    const size_t B = (size_t)u->max_batch, td = (size_t)u->temb_dim;
    const size_t c0 = (size_t)u->config.block_out_channels[0];
    u->emb = plan_kept(A, B * c0);
    u->l1 = plan_kept(A, B * td);
    u->s1 = plan_kept(A, B * td);
    u->temb = plan_kept(A, B * td);
    u->stemb = plan_kept(A, B * td);
    plan_slot(A, A_SCRATCH, df_linear_scratch_floats((int)B, (int)c0, (int)td));  /* time embedding */
    plan_slot(A, A_SCRATCH, df_linear_scratch_floats((int)B, (int)td, (int)td));
    if (G) {
        u->dstemb = plan_kept(G, B * td);
        u->dtemb = plan_kept(G, B * td);
        u->ds1 = plan_kept(G, B * td);
        u->dl1 = plan_kept(G, B * td);
    }
    for (int i = 0; i < u->n_nodes; i++) {
        plan_node_activations(u, A, i);
        if (G) plan_node_gradients(u, G, i);
    }
    u->recompute = plan_slot(A, A_RECOMPUTE, 0);
    u->tproj = plan_slot(A, A_TPROJ, 0);
    u->scratch = plan_slot(A, A_SCRATCH, 0);
    u->scratch_floats = A->slot_size[A_SCRATCH];
}

/* ---------------------------------------------------------------- new / free */

df_status df_unet_new(const df_unet_config *c, int max_batch, int training, df_unet **out) {
    *out = NULL;
    df_status st = df_unet_config_validate(c);
    if (st != DF_OK) return st;
    if (max_batch < 1 || max_batch > (1 << 20))
        return df_fail(DF_ERR_ARG, "unet: max_batch %d must be in 1..%d", max_batch, 1 << 20);
    df_unet *u = calloc(1, sizeof *u);
    if (!u) return df_fail(DF_ERR_NOMEM, "unet: out of memory allocating %zu bytes for the model", sizeof *u);
    u->config = *c;
    u->max_batch = max_batch;
    u->training = training ? 1 : 0;
    st = unet_build(u);
    if (st != DF_OK) goto fail_free;

    plan_arena A, G;
    memset(&A, 0, sizeof A);
    memset(&G, 0, sizeof G);
    unet_plan(u, &A, u->training ? &G : NULL);
    u->act_floats = plan_finish_sizing(&A, A_NSLOTS);
    u->grad_floats = u->training ? plan_finish_sizing(&G, G_NSLOTS) : 0;
    double bytes = 4.0 * (A.approx + G.approx);
    if (bytes > 0x1p50) {
        st = df_fail(DF_ERR_NOMEM, "unet: the arenas for max_batch %d would need %.3g bytes", max_batch, bytes);
        goto fail_free;
    }
    /* Everything the model will hold: the arenas, and weights + EMA (+ gradients and AdamW moments
     * when training) that df_model allocates next. */
    char what[160];
    snprintf(what, sizeof what, "the U-Net at batch %d for %s (%.1f M parameters)", max_batch,
             u->training ? "training" : "sampling", u->table.total / 1e6);
    bytes = 4.0 * ((double)u->act_floats + u->grad_floats + (u->training ? 5.0 : 2.0) * u->table.total);
    if ((st = df_check_memory(bytes, what))) goto fail_free;
    u->act = df_alloc(u->act_floats * sizeof(float), "unet activation arena");
    if (!u->act) { st = DF_ERR_NOMEM; goto fail_free; }
    if (u->training) {
        u->grad = df_alloc(u->grad_floats * sizeof(float), "unet gradient arena");
        if (!u->grad) { st = DF_ERR_NOMEM; goto fail_free; }
    }
    /* Placing pass: kept tensors start after the slots laid out by plan_finish_sizing. */
    A.base = u->act;
    G.base = u->grad;
    unet_plan(u, &A, u->training ? &G : NULL);
    ASSERT(A.next == u->act_floats);
    ASSERT(!u->training || G.next == u->grad_floats);
    /* Zero once so that no uninitialised float is ever read (e.g. padding). */
    memset(u->act, 0, u->act_floats * sizeof(float));
    if (u->grad) memset(u->grad, 0, u->grad_floats * sizeof(float));
    *out = u;
    return DF_OK;

fail_free:
    df_unet_free(u);
    return st;
}

df_status df_unet_count_params(const df_unet_config *c, size_t *params, int *tensors) {
    df_status st = df_unet_config_validate(c);
    if (st != DF_OK) return st;
    df_unet *u = calloc(1, sizeof *u);
    if (!u) return df_fail(DF_ERR_NOMEM, "unet: out of memory allocating %zu bytes for the model", sizeof *u);
    u->config = *c;
    u->max_batch = 1;
    if ((st = unet_build(u)) == DF_OK) {
        *params = df_param_table_count(&u->table);
        *tensors = u->table.count;
    }
    df_unet_free(u);
    return st;
}

void df_unet_free(df_unet *u) {
    if (!u) return;
    df_free(u->act);
    df_free(u->grad);
    df_free(u->nodes);
    df_free(u->param_init);
    df_free(u->param_fan_in);
    df_param_table_free(&u->table);
    free(u);
}

size_t df_unet_param_floats(const df_unet *u) { return u->table.total; }

const df_param_table *df_unet_params(const df_unet *u) { return &u->table; }

/* ---------------------------------------------------------------- init */

void df_unet_init(const df_unet *u, float *params, uint64_t seed) {
    memset(params, 0, u->table.total * sizeof(float));
    for (int k = 0; k < u->table.count; k++) {
        const df_param_info *t = &u->table.info[k];
        float *p = params + t->offset;
        switch (u->param_init[k]) {
        case INIT_ZERO:
            break;
        case INIT_ONE:
            for (size_t e = 0; e < t->numel; e++) p[e] = 1.0f;
            break;
        case INIT_UNIFORM: {
            /* PyTorch Conv2d/Linear reset_parameters: kaiming_uniform(a = sqrt(5)) gives the
             * weight bound sqrt(6 / ((1 + 5) fan_in)) = 1/sqrt(fan_in); the bias uses the same. */
            float bound = (float)(1.0 / sqrt((double)u->param_fan_in[k]));
            df_randu(seed, DF_STREAM_INIT, (uint32_t)k, 0, p, t->numel);
            for (size_t e = 0; e < t->numel; e++) p[e] = (2.0f * p[e] - 1.0f) * bound;
            break;
        }
        default:
            ASSERT(0);
        }
    }
}

/* ---------------------------------------------------------------- forward */

#define PAR(i) (params + nd->param[i])

static void time_embedding_forward(df_unet *u, const float *params, int n, const int *t_index) {
    int c0 = u->config.block_out_channels[0], td = u->temb_dim;
    /* diffusers Timesteps(C0, flip_sin_to_cos, freq_shift) -> TimestepEmbedding(C0, 4 C0) */
    df_timestep_embedding(u->emb, t_index, n, c0, u->config.freq_shift, u->config.flip_sin_to_cos);
    df_linear_forward(u->l1, u->emb, params + u->temb_param[TEMB_W1], params + u->temb_param[TEMB_B1], n, c0, td,
                      u->precision, u->scratch);
    df_silu_forward(u->s1, u->l1, (size_t)n * td);
    df_linear_forward(u->temb, u->s1, params + u->temb_param[TEMB_W2], params + u->temb_param[TEMB_B2], n, td, td,
                      u->precision, u->scratch);
    /* Every resnet projects SiLU(temb) (diffusers ResnetBlock2D, Ho et al.'s nonlinearity(temb)). */
    df_silu_forward(u->stemb, u->temb, (size_t)n * td);
}

static int dropout_on(const df_unet *u, int training) { return training && u->config.dropout > 0.0f; }

/* SiLU(norm2 output), with dropout when training: conv2's input, rebuilt by backward. */
static void resnet_conv2_input(df_unet *u, const df_unet_node *nd, int n, int training) {
    size_t nout = (size_t)n * nd->cout * nd->h * nd->w;
    df_silu_forward(u->recompute, nd->kept[RES_GN2], nout);
    if (dropout_on(u, training))
        df_dropout_forward(u->recompute, u->recompute, nout, u->config.dropout, u->dropout_seed, u->dropout_step,
                           (uint32_t)nd->dropout_id);
}

static void resnet_forward(df_unet *u, const df_unet_node *nd, const float *params, int n, int training) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w, groups = c->norm_num_groups;
    const size_t nin = (size_t)n * nd->cin * hw, nout = (size_t)n * nd->cout * hw;
    float *r = u->recompute;
    df_conv_shape s;
    /* h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(temb)) */
    df_groupnorm_forward(nd->kept[RES_GN1], nd->mean[0], nd->rstd[0], nd->x, PAR(RES_NORM1_W), PAR(RES_NORM1_B), n,
                         nd->cin, hw, groups, c->norm_eps);
    df_silu_forward(r, nd->kept[RES_GN1], nin);
    shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
    df_conv2d_forward(nd->kept[RES_H1], r, PAR(RES_CONV1_W), PAR(RES_CONV1_B), &s, u->scratch);
    df_linear_forward(u->tproj, u->stemb, PAR(RES_TEMB_W), PAR(RES_TEMB_B), n, u->temb_dim, nd->cout, u->precision,
                      u->scratch);
    df_add_channel_bias_forward(nd->kept[RES_H1], u->tproj, n, nd->cout, hw);
    /* y = conv2(dropout(SiLU(norm2(h)))) + shortcut(x) */
    df_groupnorm_forward(nd->kept[RES_GN2], nd->mean[1], nd->rstd[1], nd->kept[RES_H1], PAR(RES_NORM2_W),
                         PAR(RES_NORM2_B), n, nd->cout, hw, groups, c->norm_eps);
    resnet_conv2_input(u, nd, n, training);
    shape_conv3(&s, u->precision, n, nd->cout, nd->h, nd->w, nd->cout);
    df_conv2d_forward(nd->y, r, PAR(RES_CONV2_W), PAR(RES_CONV2_B), &s, u->scratch);
    if (nd->has_shortcut) {
        shape_conv1(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_forward(r, nd->x, PAR(RES_SHORT_W), PAR(RES_SHORT_B), &s, u->scratch);
        df_add_forward(nd->y, nd->y, r, nout);
    } else {
        df_add_forward(nd->y, nd->y, nd->x, nout);
    }
}

static void attention_forward(df_unet *u, const df_unet_node *nd, const float *params, int n) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w, ch = nd->cin;
    df_conv_shape s;
    /* diffusers Attention (AttnProcessor2_0): GN, q/k/v linears over channels (1x1 convs here),
     * softmax(q k^T / sqrt(head_dim)) v, to_out.0, + residual */
    df_groupnorm_forward(nd->kept[ATT_GN], nd->mean[0], nd->rstd[0], nd->x, PAR(ATT_NORM_W), PAR(ATT_NORM_B), n, ch,
                         hw, c->norm_num_groups, c->norm_eps);
    shape_conv1(&s, u->precision, n, ch, nd->h, nd->w, ch);
    df_conv2d_forward(nd->kept[ATT_Q], nd->kept[ATT_GN], PAR(ATT_Q_W), PAR(ATT_Q_B), &s, u->scratch);
    df_conv2d_forward(nd->kept[ATT_K], nd->kept[ATT_GN], PAR(ATT_K_W), PAR(ATT_K_B), &s, u->scratch);
    df_conv2d_forward(nd->kept[ATT_V], nd->kept[ATT_GN], PAR(ATT_V_W), PAR(ATT_V_B), &s, u->scratch);
    df_attention_forward(nd->kept[ATT_O], nd->kept[ATT_PROBS], nd->kept[ATT_Q], nd->kept[ATT_K], nd->kept[ATT_V], n,
                         ch, hw, nd->heads, u->precision, u->scratch);
    df_conv2d_forward(nd->y, nd->kept[ATT_O], PAR(ATT_OUT_W), PAR(ATT_OUT_B), &s, u->scratch);
    df_add_forward(nd->y, nd->y, nd->x, (size_t)n * ch * hw);
}

static void node_forward(df_unet *u, df_unet_node *nd, const float *params, int n, int training) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w;
    df_conv_shape s;
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_forward(nd->y, nd->x, PAR(CONV_W), PAR(CONV_B), &s, u->scratch);
        break;
    case DF_UNET_RESNET:
        resnet_forward(u, nd, params, n, training);
        break;
    case DF_UNET_ATTENTION:
        attention_forward(u, nd, params, n);
        break;
    case DF_UNET_DOWNSAMPLE:
        shape_down(&s, u->precision, n, nd->cin, nd->h, nd->w);
        df_conv2d_forward(nd->y, nd->x, PAR(CONV_W), PAR(CONV_B), &s, u->scratch);
        break;
    case DF_UNET_UPSAMPLE:
        df_upsample2x_forward(nd->kept[UP_U], nd->x, n, nd->cin, nd->h, nd->w);
        shape_conv3(&s, u->precision, n, nd->cin, nd->oh, nd->ow, nd->cout);
        df_conv2d_forward(nd->y, nd->kept[UP_U], PAR(CONV_W), PAR(CONV_B), &s, u->scratch);
        break;
    case DF_UNET_CONCAT:
        df_concat_forward(nd->y, nd->x, nd->skip, n, nd->cin, nd->cskip, hw);  /* cat([h, skip], 1) */
        break;
    case DF_UNET_OUT:
        df_groupnorm_forward(nd->kept[OUT_GN], nd->mean[0], nd->rstd[0], nd->x, PAR(OUT_NORM_W), PAR(OUT_NORM_B), n,
                             nd->cin, hw, c->norm_num_groups, c->norm_eps);
        df_silu_forward(u->recompute, nd->kept[OUT_GN], (size_t)n * nd->cin * hw);
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_forward(nd->y, u->recompute, PAR(CONV_W), PAR(CONV_B), &s, u->scratch);
        break;
    }
}

void df_unet_forward(df_unet *u, const float *params, int n, const float *x, const int *t_index, float *out,
                     int training, uint64_t dropout_seed, uint32_t dropout_step) {
    ASSERT(n >= 1 && n <= u->max_batch);
    ASSERT(!training || u->training);  /* a training forward needs the training memory plan */
    df_unet_node *first = &u->nodes[0], *last = &u->nodes[u->n_nodes - 1];
    for (int i = 0; i < u->n_nodes; i++) ASSERT(node_scratch_floats(u, &u->nodes[i], n) <= u->scratch_floats);
    u->last_n = n;
    u->last_training = training ? 1 : 0;
    u->dropout_seed = dropout_seed;
    u->dropout_step = dropout_step;
    if (u->training) {
        /* backward needs the input of conv_in; the caller's buffer may change before then */
        memcpy(first->kept[IN_X], x, (size_t)n * first->cin * first->h * first->w * sizeof(float));
        first->x = first->kept[IN_X];
    } else {
        first->x = (float *)x;  /* only read */
    }
    last->y = out;
    time_embedding_forward(u, params, n, t_index);
    for (int i = 0; i < u->n_nodes; i++) node_forward(u, &u->nodes[i], params, n, training);
    first->x = u->training ? first->kept[IN_X] : NULL;
    last->y = NULL;
}

/* ---------------------------------------------------------------- backward */

#define GRD(i) (grads + nd->param[i])

static void zero(float *p, size_t n) {
    const double t0 = df_ops_prof_begin();
    memset(p, 0, n * sizeof(float));
    df_ops_prof_end(t0, "unet zero");
}

static void resnet_backward(df_unet *u, const df_unet_node *nd, const float *params, float *grads, int n,
                            const float *dy) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w, groups = c->norm_num_groups;
    const size_t nin = (size_t)n * nd->cin * hw, nout = (size_t)n * nd->cout * hw;
    float *r = u->recompute, *t0 = u->tmp[0], *t1 = u->tmp[1];
    df_conv_shape s;
    if (nd->zero_dx) zero(nd->dx, nin);
    /* shortcut branch */
    if (nd->has_shortcut) {
        shape_conv1(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_backward(nd->dx, GRD(RES_SHORT_W), GRD(RES_SHORT_B), dy, nd->x, PAR(RES_SHORT_W), &s, u->scratch);
    } else {
        df_add_backward(nd->dx, NULL, dy, nout);
    }
    /* conv2, dropout, SiLU, norm2 */
    df_groupnorm_apply(nd->kept[RES_GN2], nd->mean[1], nd->rstd[1], nd->kept[RES_H1], PAR(RES_NORM2_W),
                       PAR(RES_NORM2_B), n, nd->cout, hw, groups);
    resnet_conv2_input(u, nd, n, u->last_training);
    shape_conv3(&s, u->precision, n, nd->cout, nd->h, nd->w, nd->cout);
    zero(t0, nout);
    df_conv2d_backward(t0, GRD(RES_CONV2_W), GRD(RES_CONV2_B), dy, r, PAR(RES_CONV2_W), &s, u->scratch);
    if (dropout_on(u, u->last_training)) {
        zero(t1, nout);
        df_dropout_backward(t1, t0, nout, c->dropout, u->dropout_seed, u->dropout_step, (uint32_t)nd->dropout_id);
        float *swap = t0; t0 = t1; t1 = swap;
    }
    zero(t1, nout);
    df_silu_backward(t1, t0, nd->kept[RES_GN2], nout);
    zero(t0, nout);
    df_groupnorm_backward(t0, GRD(RES_NORM2_W), GRD(RES_NORM2_B), t1, nd->kept[RES_H1], nd->mean[1], nd->rstd[1],
                          PAR(RES_NORM2_W), n, nd->cout, hw, groups);
    /* t0 = d h1: the time projection, then conv1, SiLU, norm1 */
    zero(u->dtproj, (size_t)n * nd->cout);
    df_add_channel_bias_backward(u->dtproj, t0, n, nd->cout, hw);
    df_linear_backward(u->dstemb, GRD(RES_TEMB_W), GRD(RES_TEMB_B), u->dtproj, u->stemb, PAR(RES_TEMB_W), n,
                       u->temb_dim, nd->cout, u->precision, u->scratch);
    df_groupnorm_apply(nd->kept[RES_GN1], nd->mean[0], nd->rstd[0], nd->x, PAR(RES_NORM1_W), PAR(RES_NORM1_B), n,
                       nd->cin, hw, groups);
    df_silu_forward(r, nd->kept[RES_GN1], nin);
    shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
    zero(t1, nin);
    df_conv2d_backward(t1, GRD(RES_CONV1_W), GRD(RES_CONV1_B), t0, r, PAR(RES_CONV1_W), &s, u->scratch);
    zero(t0, nin);
    df_silu_backward(t0, t1, nd->kept[RES_GN1], nin);
    df_groupnorm_backward(nd->dx, GRD(RES_NORM1_W), GRD(RES_NORM1_B), t0, nd->x, nd->mean[0], nd->rstd[0],
                          PAR(RES_NORM1_W), n, nd->cin, hw, groups);
}

static void attention_backward(df_unet *u, const df_unet_node *nd, const float *params, float *grads, int n,
                               const float *dy) {
    const int hw = nd->h * nd->w, ch = nd->cin;
    const size_t nc = (size_t)n * ch * hw;
    float **t = u->tmp;
    df_conv_shape s;
    shape_conv1(&s, u->precision, n, ch, nd->h, nd->w, ch);
    if (nd->zero_dx) zero(nd->dx, nc);
    df_add_backward(nd->dx, NULL, dy, nc);  /* residual */
    zero(t[0], nc);
    df_conv2d_backward(t[0], GRD(ATT_OUT_W), GRD(ATT_OUT_B), dy, nd->kept[ATT_O], PAR(ATT_OUT_W), &s, u->scratch);
    zero(t[1], nc), zero(t[2], nc), zero(t[3], nc);
    df_attention_backward(t[1], t[2], t[3], t[0], nd->kept[ATT_PROBS], nd->kept[ATT_Q], nd->kept[ATT_K],
                          nd->kept[ATT_V], n, ch, hw, nd->heads, u->precision, u->scratch);
    zero(t[0], nc);
    df_groupnorm_apply(nd->kept[ATT_GN], nd->mean[0], nd->rstd[0], nd->x, PAR(ATT_NORM_W), PAR(ATT_NORM_B), n, ch, hw,
                       u->config.norm_num_groups);
    df_conv2d_backward(t[0], GRD(ATT_Q_W), GRD(ATT_Q_B), t[1], nd->kept[ATT_GN], PAR(ATT_Q_W), &s, u->scratch);
    df_conv2d_backward(t[0], GRD(ATT_K_W), GRD(ATT_K_B), t[2], nd->kept[ATT_GN], PAR(ATT_K_W), &s, u->scratch);
    df_conv2d_backward(t[0], GRD(ATT_V_W), GRD(ATT_V_B), t[3], nd->kept[ATT_GN], PAR(ATT_V_W), &s, u->scratch);
    df_groupnorm_backward(nd->dx, GRD(ATT_NORM_W), GRD(ATT_NORM_B), t[0], nd->x, nd->mean[0], nd->rstd[0],
                          PAR(ATT_NORM_W), n, ch, hw, u->config.norm_num_groups);
}

static void node_backward(df_unet *u, const df_unet_node *nd, const float *params, float *grads, int n,
                          const float *dy) {
    const int hw = nd->h * nd->w;
    const size_t nin = (size_t)n * nd->cin * hw;
    df_conv_shape s;
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_backward(NULL, GRD(CONV_W), GRD(CONV_B), dy, nd->kept[IN_X], PAR(CONV_W), &s, u->scratch);
        break;
    case DF_UNET_RESNET:
        resnet_backward(u, nd, params, grads, n, dy);
        break;
    case DF_UNET_ATTENTION:
        attention_backward(u, nd, params, grads, n, dy);
        break;
    case DF_UNET_DOWNSAMPLE:
        if (nd->zero_dx) zero(nd->dx, nin);
        shape_down(&s, u->precision, n, nd->cin, nd->h, nd->w);
        df_conv2d_backward(nd->dx, GRD(CONV_W), GRD(CONV_B), dy, nd->x, PAR(CONV_W), &s, u->scratch);
        break;
    case DF_UNET_UPSAMPLE: {
        size_t nup = (size_t)n * nd->cin * nd->oh * nd->ow;
        zero(u->tmp[0], nup);
        shape_conv3(&s, u->precision, n, nd->cin, nd->oh, nd->ow, nd->cout);
        df_conv2d_backward(u->tmp[0], GRD(CONV_W), GRD(CONV_B), dy, nd->kept[UP_U], PAR(CONV_W), &s, u->scratch);
        if (nd->zero_dx) zero(nd->dx, nin);
        df_upsample2x_backward(nd->dx, u->tmp[0], n, nd->cin, nd->h, nd->w);
        break;
    }
    case DF_UNET_CONCAT:
        if (nd->zero_dx) zero(nd->dx, nin);
        df_concat_backward(nd->dx, nd->dskip, dy, n, nd->cin, nd->cskip, hw);
        break;
    case DF_UNET_OUT: {
        df_groupnorm_apply(nd->kept[OUT_GN], nd->mean[0], nd->rstd[0], nd->x, PAR(OUT_NORM_W), PAR(OUT_NORM_B), n,
                           nd->cin, hw, u->config.norm_num_groups);
        df_silu_forward(u->recompute, nd->kept[OUT_GN], nin);
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        zero(u->tmp[0], nin);
        df_conv2d_backward(u->tmp[0], GRD(CONV_W), GRD(CONV_B), dy, u->recompute, PAR(CONV_W), &s, u->scratch);
        zero(u->tmp[1], nin);
        df_silu_backward(u->tmp[1], u->tmp[0], nd->kept[OUT_GN], nin);
        if (nd->zero_dx) zero(nd->dx, nin);
        df_groupnorm_backward(nd->dx, GRD(OUT_NORM_W), GRD(OUT_NORM_B), u->tmp[1], nd->x, nd->mean[0], nd->rstd[0],
                              PAR(OUT_NORM_W), n, nd->cin, hw, u->config.norm_num_groups);
        break;
    }
    }
}

static void time_embedding_backward(df_unet *u, const float *params, float *grads, int n) {
    int c0 = u->config.block_out_channels[0], td = u->temb_dim;
    size_t m = (size_t)n * td;
    const size_t *tp = u->temb_param;
    zero(u->dtemb, m);
    df_silu_backward(u->dtemb, u->dstemb, u->temb, m);
    zero(u->ds1, m);
    df_linear_backward(u->ds1, grads + tp[TEMB_W2], grads + tp[TEMB_B2], u->dtemb, u->s1, params + tp[TEMB_W2], n, td,
                       td, u->precision, u->scratch);
    zero(u->dl1, m);
    df_silu_backward(u->dl1, u->ds1, u->l1, m);
    df_linear_backward(NULL, grads + tp[TEMB_W1], grads + tp[TEMB_B1], u->dl1, u->emb, params + tp[TEMB_W1], n, c0, td,
                       u->precision, u->scratch);
}

void df_unet_backward(df_unet *u, const float *params, float *grads, int n, const float *dout) {
    ASSERT(u->training && u->last_training);  /* backward follows a training forward */
    ASSERT(n == u->last_n);
    for (int i = 0; i < u->n_nodes; i++) {
        const df_unet_node *nd = &u->nodes[i];
        if (nd->pushes_skip) zero(nd->dy, (size_t)n * nd->cout * nd->oh * nd->ow);
    }
    zero(u->dstemb, (size_t)n * u->temb_dim);
    for (int i = u->n_nodes - 1; i >= 0; i--) {
        const df_unet_node *nd = &u->nodes[i];
        node_backward(u, nd, params, grads, n, i == u->n_nodes - 1 ? dout : nd->dy);
    }
    time_embedding_backward(u, params, grads, n);
}

/* ---------------------------------------------------------------- FLOPs */

double df_unet_forward_flops(const df_unet_config *c) {
    if (df_unet_config_validate(c) != DF_OK) return 0.0;
    df_unet u;
    memset(&u, 0, sizeof u);
    u.config = *c;
    double macs = 0.0;
    if (unet_build(&u) == DF_OK) {
        double c0 = c->block_out_channels[0], td = u.temb_dim;
        macs += c0 * td + td * td;  /* time embedding linears */
        for (int i = 0; i < u.n_nodes; i++) {
            const df_unet_node *nd = &u.nodes[i];
            double hw = (double)nd->h * nd->w, ohw = (double)nd->oh * nd->ow, ci = nd->cin, co = nd->cout;
            switch (nd->kind) {
            case DF_UNET_CONV_IN:
            case DF_UNET_DOWNSAMPLE:
            case DF_UNET_UPSAMPLE:
            case DF_UNET_OUT:
                macs += ohw * co * ci * 9.0;
                break;
            case DF_UNET_RESNET:
                macs += hw * co * ci * 9.0 + hw * co * co * 9.0 + co * td + (nd->has_shortcut ? hw * co * ci : 0.0);
                break;
            case DF_UNET_ATTENTION:
                macs += 4.0 * hw * ci * ci + 2.0 * hw * hw * ci;  /* q, k, v, to_out; q k^T and P v */
                break;
            case DF_UNET_CONCAT:
                break;
            }
        }
    }
    df_free(u.nodes);
    df_free(u.param_init);
    df_free(u.param_fan_in);
    df_param_table_free(&u.table);
    return 2.0 * macs;
}
