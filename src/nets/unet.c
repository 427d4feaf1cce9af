/* unet.c: the DDPM U-Net as diffusers' UNet2DModel: presets, config validation and the diffusers
 * config.json mapping, parameter table, node graph, memory plan, forward and backward. See unet.h for
 * the contract and docs/unet.md for the architecture. Not here: the arithmetic (ops_*.c), the
 * loss, the optimiser, checkpoint files.
 *
 * Structure. unet_build() turns a config into (a) the parameter table, registering each tensor under
 * its diffusers name, and (b) a flat list of nodes: conv_in, the down levels, the mid block, the up
 * levels (each resnet preceded by a concat node that pops a skip), and the output head. Forward runs
 * the list in order, backward in reverse. The memory plan then places every activation, gradient and
 * workspace in one arena.
 *
 * Memory plan (plan_walk, plan_place). Every tensor besides the parameters and their gradients
 * (activations, kept intermediates, activation gradients, op workspaces) is a buffer with a
 * lifetime: the first and last tick at which it is used, on a clock that runs through the forward and
 * then the backward, one tick per phase of a node (the phases are marked f0.., b0.. in the forward
 * and backward functions, and plan_node_forward/backward list what each phase uses). The buffers are
 * packed into ONE arena, largest first, each at the lowest offset that no buffer with an overlapping
 * lifetime holds, so the arena is close to the most memory live at any one time.
 * What backward needs of the forward: every node's input (a concatenation is not kept but rebuilt
 * from its two inputs), each resnet's h1 = conv1 output + time projection, and the group-norm
 * statistics. Everything else backward rebuilds bit for bit: group-norm outputs (df_groupnorm_apply,
 * df_groupnorm_silu_apply), SiLU outputs and dropout masks (counter-based), the upsampled image, and an attention's q, k, v,
 * probabilities and output (a 1x1 conv each and the attention again). Backward frees what it has
 * consumed as it goes; a second backward on the same forward re-runs the forward first.
 * Fusion: where the direct 3x3 path runs (df_conv2d_fuses), a resnet's conv1 and conv2 read
 * SiLU(norm(x)) themselves from the norm's statistics and add the time projection and the residual
 * in their own output pass (df_conv2d_forward_fused: the same bits), so the normalised tensors are
 * never written; conv2 not when a training forward applies dropout between them.
 * Gradients: each skip tensor's gradient is accumulated by both of its consumers (zeroed by the
 * concat, the first of them in backward); every other tensor has one consumer, whose backward zeroes
 * and fills it.
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

/* Kept intermediates per node kind (df_unet_node.kept); attention, upsample and the output head keep
 * only their norm statistics (mean/rstd [0]) and rebuild the rest in backward. */
enum { RES_H1 = 0 };  /* resnet: conv1's output + the time projection; mean/rstd [0]: norm1, [1]: norm2 */
enum { IN_X = 0 };    /* conv_in: copy of the input (training) */

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

/* Each shape carries the network's precision (p). */
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

/* ---------------------------------------------------------------- memory plan */

/* Work buffers of each node kind (df_unet_node.fw for forward, .bw for backward): everything its
 * forward and backward touch besides x, skip, y, the kept tensors and the gradients dx, dskip, dy.
 * *_WS are op workspaces. Comments in the forward and backward functions give each one's phases. */
enum { RF_SHORT, RF_SHORT_WS, RF_A, RF_CONV1_WS, RF_TPROJ, RF_LIN_WS, RF_S, RF_CONV2_WS };
enum { RB_S, RB_R, RB_D1, RB_CONV2_WS, RB_D2, RB_D3, RB_DH, RB_DTPROJ, RB_LIN_WS, RB_X1, RB_B, RB_CONV1W_WS, RB_E,
       RB_CONV1X_WS, RB_X2, RB_A, RB_F, RB_X3, RB_SHORT_WS };
enum { AF_GN, AF_Q, AF_K, AF_V, AF_QKV_WS, AF_O, AF_P, AF_ATT_WS, AF_OUT_WS };
enum { AB_GN, AB_Q, AB_K, AB_V, AB_QKV_WS, AB_O, AB_P, AB_ATT_WS, AB_T0, AB_OUT_WS, AB_DQ, AB_DK, AB_DV, AB_ATTB_WS,
       AB_T1, AB_QKVB_WS };
enum { UF_U, UF_WS };                   /* upsample */
enum { UB_U, UB_WS, UB_D, UB_DX_WS };
enum { OF_A, OF_WS };                   /* output head */
enum { OB_A, OB_R, OB_T, OB_WS, OB_T2 };
enum { CV_WS = 0 };                     /* conv_in, downsample: forward and backward */

#define PLAN_WS_MEMO 256
#define PLAN_WS_KEY 13

/* One buffer of the plan: its size and its lifetime, the ticks of its first and last use. */
typedef struct {
    size_t floats, off;
    int first, last;
} plan_buf;

/* Per node: the plan's buffers that outlive one phase (-1: none). */
typedef struct {
    int y, dy, h1, in_x, mean[2], rstd[2];
} plan_node;

/* The plan is made by walking the network in the order that forward and backward run, on a clock
 * that advances once per phase. Two passes: the first (placing = 0) records every buffer's size and
 * lifetime; plan_place then packs the buffers into one arena; the second walk (placing = 1) makes the
 * same buffers in the same order and hands out their pointers. */
typedef struct {
    df_unet *u;
    int placing;
    int reuse;          /* 0: every buffer its own memory (a test's reference plan) */
    int emb, l1, s1, temb, stemb, dstemb;  /* the time embedding's buffers */
    plan_buf *buf;
    int n, cap;
    int now;            /* the clock */
    int nomem;
    double total;       /* floats of all buffers, in double (refuses sizes that overflow) */
    float *base;
    plan_node *node;
    int n_ws;           /* workspace sizes remembered (ws_memo) */
    int ws_key[PLAN_WS_MEMO][PLAN_WS_KEY];
    size_t ws_floats[PLAN_WS_MEMO];
} plan;

static size_t pad16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The plan sizes each op's workspace for every batch up to max_batch, in either precision (the
 * precision may change between calls): the workspace functions need not grow with the batch (a conv
 * may switch paths). Batches are scanned one by one up to WS_SCAN_MAX, then max_batch itself; the
 * results are remembered per shape (a network has a few dozen). */
#define WS_SCAN_MAX 1024

static int ws_next(int n, int B) { return n < WS_SCAN_MAX ? n + 1 : (n < B ? B : B + 1); }

static size_t ws_memo(plan *P, const int key[PLAN_WS_KEY], size_t (*scan)(const int *key)) {
    for (int k = 0; k < P->n_ws; k++)
        if (memcmp(P->ws_key[k], key, sizeof P->ws_key[k]) == 0) return P->ws_floats[k];
    size_t f = scan(key);
    if (P->n_ws < PLAN_WS_MEMO) {
        memcpy(P->ws_key[P->n_ws], key, sizeof P->ws_key[0]);
        P->ws_floats[P->n_ws++] = f;
    }
    return f;
}

/* key: 0 (conv), n, ic, h, w, oc, kh, stride, pad_t, pad_l, pad_b, pad_r, threads */
static size_t conv_ws_scan(const int *key) {
    df_conv_shape s;
    df_conv_shape_init(&s, key[1], key[2], key[3], key[4], key[5], key[6], key[7], key[8], key[9], key[10], key[11]);
    s.threads = key[12];
    const int B = key[1];
    size_t most = 0;
    for (int n = 1; n <= B; n = ws_next(n, B)) {
        s.n = n;
        for (int p = 0; p < 2; p++) {
            s.precision = p ? DF_PRECISION_BF16 : DF_PRECISION_FP32;
            size_t f = df_conv2d_scratch_floats(&s);
            if (f > most) most = f;
        }
    }
    return most;
}

static size_t conv_ws_floats(plan *P, const df_conv_shape *s) {
    const int key[PLAN_WS_KEY] = {0, s->n, s->ic, s->h, s->w, s->oc, s->kh, s->stride, s->pad_t, s->pad_l, s->pad_b,
                                  s->pad_r, s->threads};
    ASSERT(s->kh == s->kw);
    return ws_memo(P, key, conv_ws_scan);
}

/* key: 1 (linear), n, in, out */
static size_t linear_ws_scan(const int *key) {
    size_t most = 0;
    for (int n = 1; n <= key[1]; n = ws_next(n, key[1])) {
        size_t f = df_linear_scratch_floats(n, key[2], key[3]);
        if (f > most) most = f;
    }
    return most;
}

static size_t linear_ws_floats(plan *P, int B, int in, int out_dim) {
    const int key[PLAN_WS_KEY] = {1, B, in, out_dim};
    return ws_memo(P, key, linear_ws_scan);
}

/* A new buffer, first used now; returns its id. */
static int pb_new(plan *P, size_t floats) {
    if (P->placing) {
        ASSERT(P->n < P->cap && P->buf[P->n].floats == floats);
        return P->n++;
    }
    if (P->n == P->cap) {
        int cap = P->cap ? 2 * P->cap : 256;
        plan_buf *b = realloc(P->buf, (size_t)cap * sizeof *b);
        if (!b) {
            P->nomem = 1;
            return -1;
        }
        P->buf = b, P->cap = cap;
    }
    P->buf[P->n] = (plan_buf){floats, 0, P->now, P->now};
    P->total += (double)floats + 16.0;
    return P->n++;
}

/* Buffer id is used now (so it lives until now at least). -1 is ignored. */
static void pb_use(plan *P, int id) {
    if (!P->placing && id >= 0 && P->buf[id].last < P->now) P->buf[id].last = P->now;
}

static float *pb_ptr(const plan *P, int id) { return P->placing && id >= 0 ? P->base + P->buf[id].off : NULL; }

/* A new buffer as work slot k of a node (w = its fw or bw, wf their sizes). */
static int pb_work(plan *P, float **w, size_t *wf, int k, size_t floats) {
    int id = pb_new(P, floats);
    w[k] = pb_ptr(P, id);
    wf[k] = floats;
    return id;
}

/* Ids of the buffers used at the current tick (up to 12, -1 ignored). */
static void pb_uses(plan *P, const int *ids, int n) {
    for (int k = 0; k < n; k++) pb_use(P, ids[k]);
}
#define USE(...) do { const int ids_[] = {__VA_ARGS__}; pb_uses(P, ids_, (int)(sizeof ids_ / sizeof ids_[0])); } while (0)
#define TICK() (P->now++)

/* Node i's input buffer (node i-1's y; conv_in's copy of the input when training), -1 if none. */
static int plan_x(const plan *P, int i) { return i > 0 ? P->node[i - 1].y : P->node[0].in_x; }

/* Node i's y, written now. The output head writes the caller's buffer. */
static void plan_y(plan *P, int i, size_t floats) {
    df_unet_node *nd = &P->u->nodes[i];
    if (i == P->u->n_nodes - 1) return;
    P->node[i].y = pb_new(P, floats);
    nd->y = pb_ptr(P, P->node[i].y);
    if (i + 1 < P->u->n_nodes) P->u->nodes[i + 1].x = nd->y;
}

/* The gradient of node j's output, first written now (by node i = j + 1 or, for a skip, first by
 * its concat); returns the pointer. */
static float *plan_dy_of(plan *P, int j) {
    df_unet_node *nd = &P->u->nodes[j];
    if (P->node[j].dy < 0) {
        const size_t B = (size_t)P->u->max_batch;
        P->node[j].dy = pb_new(P, B * nd->cout * nd->oh * nd->ow);
        nd->dy = pb_ptr(P, P->node[j].dy);
    }
    pb_use(P, P->node[j].dy);
    return nd->dy;
}

static void plan_time_embedding_forward(plan *P) {
    df_unet *u = P->u;
    const size_t B = (size_t)u->max_batch, td = (size_t)u->temb_dim, c0 = (size_t)u->config.block_out_channels[0];
    size_t ws = linear_ws_floats(P, (int)B, (int)c0, (int)td), ws2 = linear_ws_floats(P, (int)B, (int)td, (int)td);
    if (ws2 > ws) ws = ws2;
    int emb = pb_new(P, B * c0), l1 = pb_new(P, B * td), s1 = pb_new(P, B * td), temb = pb_new(P, B * td);
    int stemb = pb_new(P, B * td), w = pb_new(P, ws);
    u->emb = pb_ptr(P, emb), u->l1 = pb_ptr(P, l1), u->s1 = pb_ptr(P, s1), u->temb = pb_ptr(P, temb);
    u->stemb = pb_ptr(P, stemb), u->temb_ws = pb_ptr(P, w);
    u->temb_ws_floats = ws;
    P->emb = emb, P->l1 = l1, P->s1 = s1, P->temb = temb, P->stemb = stemb;
    USE(w);
    TICK();
}

/* Node i's forward: its phases are those of node_forward and the functions it calls. */
static void plan_node_forward(plan *P, int i) {
    df_unet *u = P->u;
    df_unet_node *nd = &u->nodes[i];
    plan_node *pn = &P->node[i];
    const size_t B = (size_t)u->max_batch, G = B * (size_t)u->config.norm_num_groups, hw = (size_t)nd->h * nd->w;
    const size_t X = B * nd->cin * hw, Y = B * nd->cout * nd->oh * nd->ow;
    const int x = plan_x(P, i);
    float **W = nd->fw;
    size_t *Wf = nd->fw_floats;
    df_conv_shape s;
    nd->skip = nd->skip_from >= 0 ? u->nodes[nd->skip_from].y : NULL;
    nd->mean[0] = nd->rstd[0] = nd->mean[1] = nd->rstd[1] = NULL;
    TICK();
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
        if (u->training) {  /* the caller's input, copied (backward needs it) */
            pn->in_x = pb_new(P, X);
            nd->kept[IN_X] = pb_ptr(P, pn->in_x);
        }
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);
        USE(pn->in_x, pb_work(P, W, Wf, CV_WS, conv_ws_floats(P, &s)));
        plan_y(P, i, Y);
        break;
    case DF_UNET_DOWNSAMPLE:
        shape_down(&s, u->precision, (int)B, nd->cin, nd->h, nd->w);
        USE(x, pb_work(P, W, Wf, CV_WS, conv_ws_floats(P, &s)));
        plan_y(P, i, Y);
        break;
    case DF_UNET_CONCAT:
        USE(x, P->node[nd->skip_from].y);
        plan_y(P, i, Y);
        break;
    case DF_UNET_RESNET: {
        int sh = -1, a = -1, h1, sb = -1, y, tp, lws;
        /* the convs read the norms' inputs themselves where the direct path runs (conv2 not when
         * a training forward applies dropout between norm2 and conv2) */
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);
        nd->fuse_conv1 = df_conv2d_fuses(&s);
        shape_conv3(&s, u->precision, (int)B, nd->cout, nd->h, nd->w, nd->cout);
        nd->fuse_conv2 = df_conv2d_fuses(&s);
        /* a training forward with dropout runs conv2 unfused (the mask sits between norm2 and conv2) */
        const int unfused2 = !nd->fuse_conv2 || (u->training && u->config.dropout > 0.0f);
        if (nd->has_shortcut) {  /* f0 */
            shape_conv1(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);
            sh = pb_work(P, W, Wf, RF_SHORT, Y);
            USE(x, pb_work(P, W, Wf, RF_SHORT_WS, conv_ws_floats(P, &s)));
            TICK();
        }
        const int res = nd->has_shortcut ? sh : x; /* the residual: the shortcut's output or x */
        /* f1: the time projection, norm1's statistics (and output) */
        tp = pb_work(P, W, Wf, RF_TPROJ, B * nd->cout);
        lws = pb_work(P, W, Wf, RF_LIN_WS, linear_ws_floats(P, (int)B, u->temb_dim, nd->cout));
        if (!nd->fuse_conv1) a = pb_work(P, W, Wf, RF_A, X);
        for (int k = 0; k < 2; k++) {
            pn->mean[k] = pb_new(P, G), pn->rstd[k] = pb_new(P, G);
            nd->mean[k] = pb_ptr(P, pn->mean[k]), nd->rstd[k] = pb_ptr(P, pn->rstd[k]);
        }
        USE(x, P->stemb, tp, lws);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);  /* f2 */
        h1 = pn->h1 = pb_new(P, Y);
        nd->kept[RES_H1] = pb_ptr(P, h1);
        USE(nd->fuse_conv1 ? x : a, tp, pb_work(P, W, Wf, RF_CONV1_WS, conv_ws_floats(P, &s)));
        TICK();
        USE(h1, tp);  /* f3: the time embedding's add, where conv1 did not */
        TICK();
        if (unfused2) sb = pb_work(P, W, Wf, RF_S, Y);  /* f4 */
        USE(h1);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cout, nd->h, nd->w, nd->cout);  /* f5 */
        plan_y(P, i, Y);
        y = pn->y;
        USE(h1, sb, pb_work(P, W, Wf, RF_CONV2_WS, conv_ws_floats(P, &s)), res);
        TICK();
        USE(y, res);  /* f6: the residual's add, where conv2 did not */
        break;
    }
    case DF_UNET_ATTENTION: {
        const size_t probs = B * nd->heads * hw * hw;
        shape_conv1(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);
        int gn = pb_work(P, W, Wf, AF_GN, X);  /* f0 */
        pn->mean[0] = pb_new(P, G), pn->rstd[0] = pb_new(P, G);
        nd->mean[0] = pb_ptr(P, pn->mean[0]), nd->rstd[0] = pb_ptr(P, pn->rstd[0]);
        USE(x);
        TICK();
        int q = pb_work(P, W, Wf, AF_Q, X), k = pb_work(P, W, Wf, AF_K, X), v = pb_work(P, W, Wf, AF_V, X);  /* f1 */
        USE(gn, pb_work(P, W, Wf, AF_QKV_WS, conv_ws_floats(P, &s)));
        TICK();
        int o = pb_work(P, W, Wf, AF_O, X);  /* f2 */
        pb_work(P, W, Wf, AF_P, probs);
        USE(q, k, v, pb_work(P, W, Wf, AF_ATT_WS, df_attention_scratch_floats((int)B, nd->cin, (int)hw, nd->heads)));
        TICK();
        plan_y(P, i, Y);  /* f3 */
        USE(o, x, pb_work(P, W, Wf, AF_OUT_WS, conv_ws_floats(P, &s)));
        break;
    }
    case DF_UNET_UPSAMPLE: {
        int up = pb_work(P, W, Wf, UF_U, B * nd->cin * nd->oh * nd->ow);  /* f0 */
        USE(x);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->oh, nd->ow, nd->cout);  /* f1 */
        plan_y(P, i, Y);
        USE(up, pb_work(P, W, Wf, UF_WS, conv_ws_floats(P, &s)));
        break;
    }
    case DF_UNET_OUT: {
        int a = pb_work(P, W, Wf, OF_A, X);  /* f0 */
        pn->mean[0] = pb_new(P, G), pn->rstd[0] = pb_new(P, G);
        nd->mean[0] = pb_ptr(P, pn->mean[0]), nd->rstd[0] = pb_ptr(P, pn->rstd[0]);
        USE(x);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);  /* f1 */
        USE(a, pb_work(P, W, Wf, OF_WS, conv_ws_floats(P, &s)));
        break;
    }
    }
    for (int k = 0; k < 2; k++) USE(pn->mean[k], pn->rstd[k]);  /* the statistics outlive the forward */
}

/* The input that a resnet's backward reads now; returns its buffer. A concatenation is rebuilt
 * from the concat node's own inputs (its x and skip) into work slot k; any other input is node
 * i-1's y itself (slot k NULL). */
static int plan_resnet_input(plan *P, int i, int k, size_t X) {
    df_unet *u = P->u;
    df_unet_node *nd = &u->nodes[i], *prev = &u->nodes[i - 1];
    if (prev->kind != DF_UNET_CONCAT) {
        nd->bw[k] = NULL;
        USE(plan_x(P, i));
        return plan_x(P, i);
    }
    int id = pb_work(P, nd->bw, nd->bw_floats, k, X);
    USE(id, P->node[i - 2].y, P->node[prev->skip_from].y);
    return id;
}

/* A new buffer as slot k of node nd's backward work. */
static int pb_bw(plan *P, df_unet_node *nd, int k, size_t floats) { return pb_work(P, nd->bw, nd->bw_floats, k, floats); }

/* The tmp of df_groupnorm_silu_backward over c channels of node nd, where the op needs one (-1 and
 * no buffer where its groups fit its stack). */
static int pb_gn_tmp(plan *P, df_unet_node *nd, int k, int c) {
    const size_t floats = df_groupnorm_silu_backward_tmp_floats(P->u->max_batch, c, nd->h * nd->w,
                                                                P->u->config.norm_num_groups);
    if (floats) return pb_bw(P, nd, k, floats);
    nd->bw[k] = NULL;
    nd->bw_floats[k] = 0;
    return -1;
}

/* Node i's backward: its phases are those of node_backward and the functions it calls. */
static void plan_node_backward(plan *P, int i) {
    df_unet *u = P->u;
    df_unet_node *nd = &u->nodes[i];
    plan_node *pn = &P->node[i];
    const size_t B = (size_t)u->max_batch, hw = (size_t)nd->h * nd->w;
    const size_t X = B * nd->cin * hw, Y = B * nd->cout * nd->oh * nd->ow;
    const int x = plan_x(P, i), dy = pn->dy;  /* dy: -1 for the output head (the caller's dout) */
    df_conv_shape s;
    nd->dx = NULL, nd->dskip = NULL;
    nd->zero_dx = i > 0 && !u->nodes[i - 1].pushes_skip;
    TICK();
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);
        USE(pn->in_x, dy, pb_bw(P, nd, CV_WS, conv_ws_floats(P, &s)));
        break;
    case DF_UNET_DOWNSAMPLE:
        shape_down(&s, u->precision, (int)B, nd->cin, nd->h, nd->w);
        nd->dx = plan_dy_of(P, i - 1);
        USE(x, dy, pb_bw(P, nd, CV_WS, conv_ws_floats(P, &s)));
        break;
    case DF_UNET_CONCAT:
        nd->dx = plan_dy_of(P, i - 1);
        nd->dskip = plan_dy_of(P, nd->skip_from);
        USE(dy);
        break;
    case DF_UNET_RESNET: {
        int r = pb_bw(P, nd, RB_R, Y);  /* b0 */
        nd->bw[RB_S] = nd->bw[RB_A] = NULL; /* the norms' outputs: rebuilt inside the SiLU gradients */
        nd->bw_floats[RB_S] = nd->bw_floats[RB_A] = 0;
        USE(pn->h1, pn->mean[1], pn->rstd[1]);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cout, nd->h, nd->w, nd->cout);  /* b1 */
        int d = pb_bw(P, nd, RB_D1, Y);
        USE(r, dy, pb_bw(P, nd, RB_CONV2_WS, conv_ws_floats(P, &s)));
        TICK();
        if (u->config.dropout > 0.0f) {  /* b2 */
            int d2 = pb_bw(P, nd, RB_D2, Y);
            USE(d);
            d = d2;
        } else {
            nd->bw[RB_D2] = NULL;
        }
        TICK();
        int d3 = pb_gn_tmp(P, nd, RB_D3, nd->cout);  /* b3 */
        USE(d, pn->h1, pn->mean[1], pn->rstd[1]);
        TICK();
        int dh = pb_bw(P, nd, RB_DH, Y);  /* b4 (with b3: one op, so d is read here too) */
        USE(d, d3, pn->h1, pn->mean[1], pn->rstd[1]);
        TICK();
        pb_bw(P, nd, RB_DTPROJ, B * nd->cout);  /* b5 */
        USE(dh, P->stemb, P->dstemb,
            pb_bw(P, nd, RB_LIN_WS, linear_ws_floats(P, (int)B, u->temb_dim, nd->cout)));
        TICK();
        const int x1 = plan_resnet_input(P, i, RB_X1, X);  /* b6: rebuilt once, read again at b9, b11 */
        nd->bw[RB_X2] = nd->bw[RB_X3] = NULL;
        nd->bw_floats[RB_X2] = nd->bw_floats[RB_X3] = 0;
        int b = pb_bw(P, nd, RB_B, X);
        USE(pn->mean[0], pn->rstd[0]);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);  /* b7 */
        USE(b, dh, pb_bw(P, nd, RB_CONV1W_WS, conv_ws_floats(P, &s)));
        TICK();
        int e = pb_bw(P, nd, RB_E, X);  /* b8 */
        USE(dh, pb_bw(P, nd, RB_CONV1X_WS, conv_ws_floats(P, &s)));
        TICK();
        USE(x1);  /* b9 */
        USE(pn->mean[0], pn->rstd[0]);
        TICK();
        int f = pb_gn_tmp(P, nd, RB_F, nd->cin);  /* b10 */
        USE(e, x1, pn->mean[0], pn->rstd[0]);
        TICK();
        const int x3 = x1;  /* b11 */
        USE(x3);
        nd->dx = plan_dy_of(P, i - 1);
        if (nd->has_shortcut) {
            shape_conv1(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);
            USE(dy, pb_bw(P, nd, RB_SHORT_WS, conv_ws_floats(P, &s)));
        } else {
            nd->bw[RB_SHORT_WS] = NULL;
            USE(dy);
        }
        TICK();
        USE(x3, e, f, pn->mean[0], pn->rstd[0], P->node[i - 1].dy);  /* b12 (with b9, b10: one op, e read here) */
        break;
    }
    case DF_UNET_ATTENTION: {
        const size_t probs = B * nd->heads * hw * hw;
        shape_conv1(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);
        /* b0: GN, q, k, v, the attention and its probabilities again */
        int gn = pb_bw(P, nd, AB_GN, X), q = pb_bw(P, nd, AB_Q, X), k = pb_bw(P, nd, AB_K, X);
        int v = pb_bw(P, nd, AB_V, X), o = pb_bw(P, nd, AB_O, X), pr = pb_bw(P, nd, AB_P, probs);
        USE(x, pn->mean[0], pn->rstd[0], pb_bw(P, nd, AB_QKV_WS, conv_ws_floats(P, &s)),
            pb_bw(P, nd, AB_ATT_WS, df_attention_scratch_floats((int)B, nd->cin, (int)hw, nd->heads)));
        TICK();
        nd->dx = plan_dy_of(P, i - 1);  /* b1: the residual */
        USE(dy);
        TICK();
        int t0 = pb_bw(P, nd, AB_T0, X);  /* b2: to_out */
        USE(o, dy, pb_bw(P, nd, AB_OUT_WS, conv_ws_floats(P, &s)));
        TICK();
        int dq = pb_bw(P, nd, AB_DQ, X), dk = pb_bw(P, nd, AB_DK, X), dv = pb_bw(P, nd, AB_DV, X);  /* b3 */
        USE(t0, pr, q, k, v, pb_bw(P, nd, AB_ATTB_WS, df_attention_scratch_floats((int)B, nd->cin, (int)hw, nd->heads)));
        TICK();
        int t1 = pb_bw(P, nd, AB_T1, X);  /* b4: q, k, v projections */
        USE(dq, dk, dv, gn, pb_bw(P, nd, AB_QKVB_WS, conv_ws_floats(P, &s)));
        TICK();
        USE(t1, x, pn->mean[0], pn->rstd[0], P->node[i - 1].dy);  /* b5: the group norm */
        break;
    }
    case DF_UNET_UPSAMPLE: {
        const size_t nup = B * nd->cin * nd->oh * nd->ow;
        int up = pb_bw(P, nd, UB_U, nup);  /* b0 */
        USE(x);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->oh, nd->ow, nd->cout);  /* b1 */
        USE(up, dy, pb_bw(P, nd, UB_WS, conv_ws_floats(P, &s)));
        TICK();
        int d = pb_bw(P, nd, UB_D, nup);  /* b2 */
        USE(dy, pb_bw(P, nd, UB_DX_WS, conv_ws_floats(P, &s)));
        TICK();
        nd->dx = plan_dy_of(P, i - 1);  /* b3 */
        USE(d);
        break;
    }
    case DF_UNET_OUT: {
        int a = pb_bw(P, nd, OB_A, X), r = pb_bw(P, nd, OB_R, X);  /* b0 */
        USE(x, pn->mean[0], pn->rstd[0]);
        TICK();
        shape_conv3(&s, u->precision, (int)B, nd->cin, nd->h, nd->w, nd->cout);  /* b1 */
        int t = pb_bw(P, nd, OB_T, X);
        USE(r, pb_bw(P, nd, OB_WS, conv_ws_floats(P, &s)));
        TICK();
        int t2 = pb_bw(P, nd, OB_T2, X);  /* b2 */
        USE(t, a);
        TICK();
        nd->dx = plan_dy_of(P, i - 1);  /* b3 */
        USE(t2, x, pn->mean[0], pn->rstd[0]);
        break;
    }
    }
}

static void plan_time_embedding_backward(plan *P) {
    df_unet *u = P->u;
    const size_t B = (size_t)u->max_batch, td = (size_t)u->temb_dim, c0 = (size_t)u->config.block_out_channels[0];
    size_t ws = linear_ws_floats(P, (int)B, (int)c0, (int)td), ws2 = linear_ws_floats(P, (int)B, (int)td, (int)td);
    if (ws2 > ws) ws = ws2;
    TICK();
    int dtemb = pb_new(P, B * td), ds1 = pb_new(P, B * td), dl1 = pb_new(P, B * td), w = pb_new(P, ws);
    u->dtemb = pb_ptr(P, dtemb), u->ds1 = pb_ptr(P, ds1), u->dl1 = pb_ptr(P, dl1), u->temb_bws = pb_ptr(P, w);
    u->temb_bws_floats = ws;
    USE(P->dstemb, P->temb, P->s1, P->l1, P->emb);
}

/* The whole walk: forward, then (training) backward. */
static void plan_walk(plan *P) {
    df_unet *u = P->u;
    P->n = 0, P->now = 0;
    for (int i = 0; i < u->n_nodes; i++) {
        plan_node *pn = &P->node[i];
        pn->y = pn->dy = pn->h1 = pn->in_x = -1;
        pn->mean[0] = pn->mean[1] = pn->rstd[0] = pn->rstd[1] = -1;
        df_unet_node *nd = &u->nodes[i];
        for (int k = 0; k < DF_UNET_NODE_KEPT; k++) nd->kept[k] = NULL;
        for (int k = 0; k < DF_UNET_NODE_WORK; k++) nd->fw[k] = nd->bw[k] = NULL, nd->fw_floats[k] = nd->bw_floats[k] = 0;
        nd->y = nd->dy = nd->dx = nd->dskip = NULL;
    }
    plan_time_embedding_forward(P);
    for (int i = 0; i < u->n_nodes; i++) plan_node_forward(P, i);
    if (!u->training) return;
    TICK();
    P->dstemb = pb_new(P, (size_t)u->max_batch * u->temb_dim);  /* zeroed as backward starts */
    u->dstemb = pb_ptr(P, P->dstemb);
    for (int i = u->n_nodes - 1; i >= 0; i--) plan_node_backward(P, i);
    plan_time_embedding_backward(P);
    /* Backward frees what forward kept as it goes. A second backward on the same forward re-runs the
     * forward (df_unet_backward) from the copy of the input, which therefore stays to the end. */
    pb_use(P, P->node[0].in_x);
}

static int cmp_size_t(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* Whether buffer x is placed before y in packing order `how`: 0 largest first, ties latest-ending
 * first; 1 largest first, ties earliest-starting first; 2 largest size x lifetime first; 3
 * longest-lived first (remaining ties: larger, then earlier). */
static int place_before(const plan_buf *x, const plan_buf *y, int how) {
    const double lx = (double)(x->last - x->first + 1), ly = (double)(y->last - y->first + 1);
    double kx = 0.0, ky = 0.0;
    switch (how) {
    case 0:
    case 1: kx = (double)x->floats, ky = (double)y->floats; break;
    case 2: kx = (double)x->floats * lx, ky = (double)y->floats * ly; break;
    default: kx = lx, ky = ly; break;
    }
    if (kx != ky) return kx > ky;
    if (how == 0 && x->last != y->last) return x->last > y->last;
    if (x->floats != y->floats) return x->floats > y->floats;
    return x->first < y->first;
}

/* One packing in order `how`: each buffer at the lowest offset where it overlaps no buffer already
 * placed whose lifetime meets its own. Fills off[] and returns the arena's floats. */
static size_t place_once(const plan *P, int how, int *order, size_t *span, size_t *off) {
    const int n = P->n;
    size_t total = 0;
    for (int k = 0; k < n; k++) order[k] = k;
    /* insertion sort (stable): a few thousand buffers at most */
    for (int a = 1; a < n; a++) {
        int id = order[a], b = a;
        while (b > 0 && place_before(&P->buf[id], &P->buf[order[b - 1]], how)) {
            order[b] = order[b - 1];
            b--;
        }
        order[b] = id;
    }
    for (int a = 0; a < n; a++) {
        const plan_buf *x = &P->buf[order[a]];
        size_t size = pad16(x->floats), o = 0;
        if (!P->reuse) {
            o = total;
        } else {
            int m = 0;
            for (int k = 0; k < a; k++) {
                const plan_buf *y = &P->buf[order[k]];
                if (y->first <= x->last && x->first <= y->last && y->floats > 0) {
                    span[2 * m] = off[order[k]], span[2 * m + 1] = off[order[k]] + pad16(y->floats);
                    m++;
                }
            }
            qsort(span, (size_t)m, 2 * sizeof *span, cmp_size_t);  /* by offset */
            for (int k = 0; k < m; k++) {
                if (o + size <= span[2 * k]) break;
                if (span[2 * k + 1] > o) o = span[2 * k + 1];
            }
        }
        off[order[a]] = o;
        if (o + size > total) total = o + size;
    }
    return total;
}

/* Packs the recorded buffers into one arena: the smallest of a few greedy packings (plan_buf.off).
 * Returns the arena's floats and sets *live to the most floats live at any tick (no packing can do
 * better). */
static size_t plan_place(plan *P, size_t *live) {
    const int n = P->n;
    size_t best = SIZE_MAX;
    *live = 0;
    if (n == 0) return 0;
    int *order = malloc((size_t)n * sizeof *order);
    size_t *span = malloc((size_t)n * 2 * sizeof *span), *off = malloc((size_t)n * sizeof *off);
    size_t *at = calloc((size_t)P->now + 2, sizeof *at);
    if (!order || !span || !off || !at) {
        free(order), free(span), free(off), free(at);
        P->nomem = 1;
        return 0;
    }
    for (int how = 0; how < (P->reuse ? 4 : 1); how++) {
        size_t total = place_once(P, how, order, span, off);
        if (total < best) {
            best = total;
            for (int k = 0; k < n; k++) P->buf[k].off = off[k];
        }
    }
    /* the most floats live at once, tick by tick (at[] wraps below zero and back when summed) */
    for (int k = 0; k < n; k++) {
        at[P->buf[k].first] += pad16(P->buf[k].floats);
        at[P->buf[k].last + 1] -= pad16(P->buf[k].floats);
    }
    size_t cur = 0;
    for (int t = 0; t <= P->now; t++) {
        cur += at[t];
        if (cur > *live) *live = cur;
    }
    free(order), free(span), free(off), free(at);
    return best;
}

static int plan_reuse = 1;
void df_unet_set_plan_reuse(int on) { plan_reuse = on ? 1 : 0; }

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
    plan P;
    memset(&P, 0, sizeof P);
    st = unet_build(u);
    if (st != DF_OK) goto fail_free;

    P.u = u;
    P.reuse = plan_reuse;
    P.node = calloc((size_t)u->n_nodes, sizeof *P.node);
    if (!P.node) {
        st = df_fail(DF_ERR_NOMEM, "unet: out of memory planning the arena");
        goto fail_free;
    }
    plan_walk(&P);
    double bytes = 4.0 * P.total;
    if (!P.nomem && bytes > 0x1p50) {
        st = df_fail(DF_ERR_NOMEM, "unet: the buffers for max_batch %d would need %.3g bytes", max_batch, bytes);
        goto fail_free;
    }
    size_t live = 0;
    if (!P.nomem) u->act_floats = plan_place(&P, &live);
    if (P.nomem) {
        st = df_fail(DF_ERR_NOMEM, "unet: out of memory planning the arena");
        goto fail_free;
    }
    u->live_floats = live;
    u->grad_floats = 0;
    /* Everything the model will hold: the arena, and weights + EMA (+ gradients and AdamW moments
     * when training) that df_model allocates next. */
    char what[160];
    snprintf(what, sizeof what, "the U-Net at batch %d for %s (%.1f M parameters)", max_batch,
             u->training ? "training" : "sampling", u->table.total / 1e6);
    bytes = 4.0 * ((double)u->act_floats + (u->training ? 5.0 : 2.0) * u->table.total);
    if ((st = df_check_memory(bytes, what))) goto fail_free;
    u->act = df_alloc(u->act_floats * sizeof(float), "unet arena");
    if (!u->act) { st = DF_ERR_NOMEM; goto fail_free; }
    if (u->training && !(u->last_t = df_calloc((size_t)max_batch * sizeof(int), "unet time steps"))) {
        st = DF_ERR_NOMEM;
        goto fail_free;
    }
    /* Placing pass: the same walk hands out the pointers. */
    const int recorded = P.n;
    P.placing = 1;
    P.base = u->act;
    plan_walk(&P);
    ASSERT(P.n == recorded);
    /* Zero once so that no uninitialised float is ever read (e.g. padding). */
    memset(u->act, 0, u->act_floats * sizeof(float));
    free(P.buf);
    free(P.node);
    *out = u;
    return DF_OK;

fail_free:
    free(P.buf);
    free(P.node);
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
    df_free(u->last_t);
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

/* Work slot k as the workspace of a conv of shape s (fw: forward slots, else backward). */
static float *conv_ws(const df_unet_node *nd, int fw, int k, const df_conv_shape *s) {
    ASSERT(df_conv2d_scratch_floats(s) <= (fw ? nd->fw_floats[k] : nd->bw_floats[k]));
    return fw ? nd->fw[k] : nd->bw[k];
}

static float *work_ws(const df_unet_node *nd, int fw, int k, size_t need) {
    ASSERT(need <= (fw ? nd->fw_floats[k] : nd->bw_floats[k]));
    return fw ? nd->fw[k] : nd->bw[k];
}

static void time_embedding_forward(df_unet *u, const float *params, int n, const int *t_index) {
    int c0 = u->config.block_out_channels[0], td = u->temb_dim;
    ASSERT(df_linear_scratch_floats(n, c0, td) <= u->temb_ws_floats && df_linear_scratch_floats(n, td, td) <= u->temb_ws_floats);
    /* diffusers Timesteps(C0, flip_sin_to_cos, freq_shift) -> TimestepEmbedding(C0, 4 C0) */
    df_timestep_embedding(u->emb, t_index, n, c0, u->config.freq_shift, u->config.flip_sin_to_cos);
    df_linear_forward(u->l1, u->emb, params + u->temb_param[TEMB_W1], params + u->temb_param[TEMB_B1], n, c0, td,
                      u->precision, u->temb_ws);
    df_silu_forward(u->s1, u->l1, (size_t)n * td);
    df_linear_forward(u->temb, u->s1, params + u->temb_param[TEMB_W2], params + u->temb_param[TEMB_B2], n, td, td,
                      u->precision, u->temb_ws);
    /* Every resnet projects SiLU(temb) (diffusers ResnetBlock2D, Ho et al.'s nonlinearity(temb)). */
    df_silu_forward(u->stemb, u->temb, (size_t)n * td);
}

static int dropout_on(const df_unet *u, int training) { return training && u->config.dropout > 0.0f; }

/* out = x times this resnet's dropout mask for the current step (out may be x): the forward on
 * conv2's input, its rebuild in backward, and the backward itself (the same mask on the gradient). */
static void resnet_dropout(const df_unet *u, const df_unet_node *nd, float *out, const float *x, size_t n) {
    df_dropout_forward(out, x, n, u->config.dropout, u->dropout_seed, u->dropout_step, (uint32_t)nd->dropout_id);
}

/* Phases f0..f6 (plan_node_forward). Only h1 and the norm statistics are kept for backward. */
static void resnet_forward(df_unet *u, const df_unet_node *nd, const float *params, int n, int training) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w, groups = c->norm_num_groups;
    const size_t nout = (size_t)n * nd->cout * hw;
    float *a = nd->fw[RF_A], *sb = nd->fw[RF_S], *h1 = nd->kept[RES_H1], *tproj = nd->fw[RF_TPROJ];
    const float *res;
    df_conv_shape s;
    /* f0: the shortcut first, so that x is not needed after conv1 (a concatenation dies early) */
    if (nd->has_shortcut) {
        shape_conv1(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_forward(nd->fw[RF_SHORT], nd->x, PAR(RES_SHORT_W), PAR(RES_SHORT_B), &s, conv_ws(nd, 1, RF_SHORT_WS, &s));
    }
    res = nd->has_shortcut ? nd->fw[RF_SHORT] : nd->x;
    /* f1: time_emb_proj(SiLU(temb)), norm1 */
    df_linear_forward(tproj, u->stemb, PAR(RES_TEMB_W), PAR(RES_TEMB_B), n, u->temb_dim, nd->cout, u->precision,
                      work_ws(nd, 1, RF_LIN_WS, df_linear_scratch_floats(n, u->temb_dim, nd->cout)));
    if (nd->fuse_conv1)
        df_groupnorm_stats(nd->mean[0], nd->rstd[0], nd->x, n, nd->cin, hw, groups, c->norm_eps);
    else
        df_groupnorm_silu_forward(a, nd->mean[0], nd->rstd[0], nd->x, PAR(RES_NORM1_W), PAR(RES_NORM1_B), n, nd->cin,
                                  hw, groups, c->norm_eps);
    /* f2, f3: h = conv1(SiLU(norm1(x))) + time_emb_proj(SiLU(temb)) */
    shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
    if (nd->fuse_conv1) {
        const df_conv_fusion f = {nd->mean[0], nd->rstd[0], PAR(RES_NORM1_W), PAR(RES_NORM1_B), groups, tproj, NULL};
        df_conv2d_forward_fused(h1, nd->x, PAR(RES_CONV1_W), PAR(RES_CONV1_B), &f, &s, conv_ws(nd, 1, RF_CONV1_WS, &s));
    } else {
        df_conv2d_forward(h1, a, PAR(RES_CONV1_W), PAR(RES_CONV1_B), &s, conv_ws(nd, 1, RF_CONV1_WS, &s));
        df_add_channel_bias_forward(h1, tproj, n, nd->cout, hw);
    }
    /* f4, f5, f6: y = conv2(dropout(SiLU(norm2(h)))) + shortcut(x) */
    shape_conv3(&s, u->precision, n, nd->cout, nd->h, nd->w, nd->cout);
    if (nd->fuse_conv2 && !dropout_on(u, training)) {
        const df_conv_fusion f = {nd->mean[1], nd->rstd[1], PAR(RES_NORM2_W), PAR(RES_NORM2_B), groups, NULL, res};
        df_groupnorm_stats(nd->mean[1], nd->rstd[1], h1, n, nd->cout, hw, groups, c->norm_eps);
        df_conv2d_forward_fused(nd->y, h1, PAR(RES_CONV2_W), PAR(RES_CONV2_B), &f, &s, conv_ws(nd, 1, RF_CONV2_WS, &s));
        return;
    }
    df_groupnorm_silu_forward(sb, nd->mean[1], nd->rstd[1], h1, PAR(RES_NORM2_W), PAR(RES_NORM2_B), n, nd->cout, hw,
                              groups, c->norm_eps);
    if (dropout_on(u, training)) resnet_dropout(u, nd, sb, sb, nout);
    df_conv2d_forward(nd->y, sb, PAR(RES_CONV2_W), PAR(RES_CONV2_B), &s, conv_ws(nd, 1, RF_CONV2_WS, &s));
    df_add_forward(nd->y, nd->y, res, nout);
}

/* GN(x), q, k, v and the attention (out o, probabilities p): the forward's phases f0..f2, and again
 * in backward (fw = 0: the norm from its cached statistics, bit for bit). */
static void attention_core(df_unet *u, const df_unet_node *nd, const float *params, int n, int fw) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w, ch = nd->cin;
    float *const *w = fw ? nd->fw : nd->bw;
    float *gn = w[fw ? AF_GN : AB_GN], *q = w[fw ? AF_Q : AB_Q], *k = w[fw ? AF_K : AB_K], *v = w[fw ? AF_V : AB_V];
    float *o = w[fw ? AF_O : AB_O], *p = w[fw ? AF_P : AB_P];
    df_conv_shape s;
    /* diffusers Attention (AttnProcessor2_0): GN, q/k/v linears over channels (1x1 convs here),
     * softmax(q k^T / sqrt(head_dim)) v, to_out.0, + residual */
    if (fw)
        df_groupnorm_forward(gn, nd->mean[0], nd->rstd[0], nd->x, PAR(ATT_NORM_W), PAR(ATT_NORM_B), n, ch, hw,
                             c->norm_num_groups, c->norm_eps);
    else
        df_groupnorm_apply(gn, nd->mean[0], nd->rstd[0], nd->x, PAR(ATT_NORM_W), PAR(ATT_NORM_B), n, ch, hw,
                           c->norm_num_groups);
    shape_conv1(&s, u->precision, n, ch, nd->h, nd->w, ch);
    float *ws = conv_ws(nd, fw, fw ? AF_QKV_WS : AB_QKV_WS, &s);
    df_conv2d_forward(q, gn, PAR(ATT_Q_W), PAR(ATT_Q_B), &s, ws);
    df_conv2d_forward(k, gn, PAR(ATT_K_W), PAR(ATT_K_B), &s, ws);
    df_conv2d_forward(v, gn, PAR(ATT_V_W), PAR(ATT_V_B), &s, ws);
    df_attention_forward(o, p, q, k, v, n, ch, hw, nd->heads, u->precision,
                         work_ws(nd, fw, fw ? AF_ATT_WS : AB_ATT_WS, df_attention_scratch_floats(n, ch, hw, nd->heads)));
}

/* Phases f0..f3. Nothing is kept: backward recomputes GN, q, k, v, the attention and its
 * probabilities from x and the norm's statistics. */
static void attention_forward(df_unet *u, const df_unet_node *nd, const float *params, int n) {
    const int hw = nd->h * nd->w, ch = nd->cin;
    df_conv_shape s;
    attention_core(u, nd, params, n, 1);
    shape_conv1(&s, u->precision, n, ch, nd->h, nd->w, ch);
    df_conv2d_forward(nd->y, nd->fw[AF_O], PAR(ATT_OUT_W), PAR(ATT_OUT_B), &s, conv_ws(nd, 1, AF_OUT_WS, &s));
    df_add_forward(nd->y, nd->y, nd->x, (size_t)n * ch * hw);
}

static void node_forward(df_unet *u, df_unet_node *nd, const float *params, int n, int training) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w;
    df_conv_shape s;
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_forward(nd->y, nd->x, PAR(CONV_W), PAR(CONV_B), &s, conv_ws(nd, 1, CV_WS, &s));
        break;
    case DF_UNET_RESNET:
        resnet_forward(u, nd, params, n, training);
        break;
    case DF_UNET_ATTENTION:
        attention_forward(u, nd, params, n);
        break;
    case DF_UNET_DOWNSAMPLE:
        shape_down(&s, u->precision, n, nd->cin, nd->h, nd->w);
        df_conv2d_forward(nd->y, nd->x, PAR(CONV_W), PAR(CONV_B), &s, conv_ws(nd, 1, CV_WS, &s));
        break;
    case DF_UNET_UPSAMPLE:  /* f0, f1 */
        df_upsample2x_forward(nd->fw[UF_U], nd->x, n, nd->cin, nd->h, nd->w);
        shape_conv3(&s, u->precision, n, nd->cin, nd->oh, nd->ow, nd->cout);
        df_conv2d_forward(nd->y, nd->fw[UF_U], PAR(CONV_W), PAR(CONV_B), &s, conv_ws(nd, 1, UF_WS, &s));
        break;
    case DF_UNET_CONCAT:
        df_concat_forward(nd->y, nd->x, nd->skip, n, nd->cin, nd->cskip, hw);  /* cat([h, skip], 1) */
        break;
    case DF_UNET_OUT:  /* f0, f1 */
        df_groupnorm_silu_forward(nd->fw[OF_A], nd->mean[0], nd->rstd[0], nd->x, PAR(OUT_NORM_W), PAR(OUT_NORM_B), n,
                                  nd->cin, hw, c->norm_num_groups, c->norm_eps);
        if (!nd->y) break;  /* backward re-running the forward needs only the statistics */
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_forward(nd->y, nd->fw[OF_A], PAR(CONV_W), PAR(CONV_B), &s, conv_ws(nd, 1, OF_WS, &s));
        break;
    }
}

void df_unet_forward(df_unet *u, const float *params, int n, const float *x, const int *t_index, float *out,
                     int training, uint64_t dropout_seed, uint32_t dropout_step) {
    ASSERT(n >= 1 && n <= u->max_batch);
    ASSERT(!training || u->training);  /* a training forward needs the training memory plan */
    ASSERT(out);
    df_unet_node *first = &u->nodes[0], *last = &u->nodes[u->n_nodes - 1];
    u->last_n = n;
    u->last_training = training ? 1 : 0;
    u->dropout_seed = dropout_seed;
    u->dropout_step = dropout_step;
    u->backward_done = 0;
    last->y = out;
    if (u->training) memcpy(u->last_t, t_index, (size_t)n * sizeof(int));  /* for a second backward */
    time_embedding_forward(u, params, n, t_index);
    if (u->training) {
        /* backward needs the input of conv_in; the caller's buffer may change before then (copied
         * after the time embedding: the copy's lifetime starts at conv_in) */
        if (x != first->kept[IN_X])
            memcpy(first->kept[IN_X], x, (size_t)n * first->cin * first->h * first->w * sizeof(float));
        first->x = first->kept[IN_X];
    } else {
        first->x = (float *)x;  /* only read */
    }
    for (int i = 0; i < u->n_nodes; i++) node_forward(u, &u->nodes[i], params, n, training);
    first->x = u->training ? first->kept[IN_X] : NULL;
    last->y = NULL;
}

/* The training forward of the last call again (same input, steps and dropout masks: the same bits),
 * without the output, for a second backward: the first one reused the memory of what it consumed. */
static void forward_again(df_unet *u, const float *params) {
    df_unet_node *first = &u->nodes[0];
    const int n = u->last_n;
    time_embedding_forward(u, params, n, u->last_t);
    first->x = first->kept[IN_X];
    for (int i = 0; i < u->n_nodes; i++) node_forward(u, &u->nodes[i], params, n, 1);
}

/* ---------------------------------------------------------------- backward */

#define GRD(i) (grads + nd->param[i])

/* p[0..n) = 0; large buffers by all threads in 64 KiB pieces (one core's stores do not fill the
 * memory bandwidth). */
static void zero(float *p, size_t n) {
    const double t0 = df_ops_prof_begin();
    const size_t piece = 16384, pieces = (n + piece - 1) / piece;
#pragma omp parallel for schedule(static) if (pieces >= 8)
    for (size_t i = 0; i < pieces; i++)
        memset(p + i * piece, 0, sizeof(float) * (i + 1 < pieces ? piece : n - i * piece));
    df_ops_prof_end(t0, "unet zero");
}

/* A resnet's input for backward: node i-1's y, or, after a concat, the concatenation rebuilt into
 * work slot RB_X1 from the concat's own inputs (the concatenated tensor is not kept through the
 * forward): rebuilt at the first use (k == RB_X1), then read from there until b11. */
static const float *resnet_input(const df_unet_node *nd, int k, int n) {
    if (!nd->bw[RB_X1]) return nd->x;
    if (k == RB_X1) {
        const df_unet_node *cat = nd - 1;
        df_concat_forward(nd->bw[RB_X1], cat->x, cat->skip, n, cat->cin, cat->cskip, nd->h * nd->w);
    }
    return nd->bw[RB_X1];
}

/* Phases b0..b12 (plan_node_backward). The order of the arithmetic on every buffer and gradient is
 * the one of a plain backward; only where the buffers live and what is rebuilt differs. */
static void resnet_backward(df_unet *u, const df_unet_node *nd, const float *params, float *grads, int n,
                            const float *dy) {
    const df_unet_config *c = &u->config;
    const int hw = nd->h * nd->w, groups = c->norm_num_groups;
    const size_t nout = (size_t)n * nd->cout * hw;
    float *const *w = nd->bw;
    const float *h1 = nd->kept[RES_H1], *x;
    df_conv_shape s;
    /* b0: conv2's input SiLU(norm2(h)) again (the norm's output is rebuilt where b3 needs it) */
    df_groupnorm_silu_apply(NULL, w[RB_R], nd->mean[1], nd->rstd[1], h1, PAR(RES_NORM2_W), PAR(RES_NORM2_B), n,
                            nd->cout, hw, groups);
    if (dropout_on(u, u->last_training)) resnet_dropout(u, nd, w[RB_R], w[RB_R], nout);
    /* b1: conv2 */
    shape_conv3(&s, u->precision, n, nd->cout, nd->h, nd->w, nd->cout);
    s.dinp_set = 1; /* each input gradient below is written by its first op, not zeroed first */
    df_conv2d_backward(w[RB_D1], GRD(RES_CONV2_W), GRD(RES_CONV2_B), dy, w[RB_R], PAR(RES_CONV2_W), &s,
                       conv_ws(nd, 0, RB_CONV2_WS, &s));
    /* b2: dropout */
    const float *d = w[RB_D1];
    if (dropout_on(u, u->last_training)) {
        /* dropout's backward into a fresh buffer is its forward applied to the gradient (same mask) */
        resnet_dropout(u, nd, w[RB_D2], d, nout);
        d = w[RB_D2];
    }
    /* b3: SiLU, its input norm2(h) rebuilt on the fly (into d3); b4: norm2 -> dh = d h1; one op */
    df_groupnorm_silu_backward(w[RB_DH], GRD(RES_NORM2_W), GRD(RES_NORM2_B), w[RB_D3], d, h1, nd->mean[1],
                               nd->rstd[1], PAR(RES_NORM2_W), PAR(RES_NORM2_B), n, nd->cout, hw, groups, 1);
    /* b5: the time projection */
    zero(w[RB_DTPROJ], (size_t)n * nd->cout);
    df_add_channel_bias_backward(w[RB_DTPROJ], w[RB_DH], n, nd->cout, hw);
    df_linear_backward(u->dstemb, GRD(RES_TEMB_W), GRD(RES_TEMB_B), w[RB_DTPROJ], u->stemb, PAR(RES_TEMB_W), n,
                       u->temb_dim, nd->cout, u->precision,
                       work_ws(nd, 0, RB_LIN_WS, df_linear_scratch_floats(n, u->temb_dim, nd->cout)));
    /* b6: conv1's input SiLU(norm1(x)) again */
    x = resnet_input(nd, RB_X1, n);
    df_groupnorm_silu_apply(NULL, w[RB_B], nd->mean[0], nd->rstd[0], x, PAR(RES_NORM1_W), PAR(RES_NORM1_B), n, nd->cin,
                            hw, groups);
    /* b7, b8: conv1 in two calls, its weight gradient, then its input gradient (which does not read
     * the input), so that the two X-sized buffers are never live together */
    shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
    df_conv2d_backward(NULL, GRD(RES_CONV1_W), GRD(RES_CONV1_B), w[RB_DH], w[RB_B], PAR(RES_CONV1_W), &s,
                       conv_ws(nd, 0, RB_CONV1W_WS, &s));
    s.dinp_set = 1;
    df_conv2d_backward(w[RB_E], NULL, NULL, w[RB_DH], NULL, PAR(RES_CONV1_W), &s, conv_ws(nd, 0, RB_CONV1X_WS, &s));
    /* b9, b10: SiLU's gradient, its input norm1(x) rebuilt on the fly: done at b12 with norm1's */
    /* b11: the shortcut branch into dx; b12: SiLU's and norm1's gradients (f) into dx, one op */
    x = resnet_input(nd, RB_X3, n);
    if (nd->has_shortcut) {
        shape_conv1(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        s.dinp_set = nd->zero_dx;
        df_conv2d_backward(nd->dx, GRD(RES_SHORT_W), GRD(RES_SHORT_B), dy, x, PAR(RES_SHORT_W), &s,
                           conv_ws(nd, 0, RB_SHORT_WS, &s));
    } else if (nd->zero_dx) {
        memcpy(nd->dx, dy, sizeof(float) * nout); /* the identity shortcut's gradient, first write */
    } else {
        df_add_backward(nd->dx, NULL, dy, nout);
    }
    df_groupnorm_silu_backward(nd->dx, GRD(RES_NORM1_W), GRD(RES_NORM1_B), w[RB_F], w[RB_E], x, nd->mean[0],
                               nd->rstd[0], PAR(RES_NORM1_W), PAR(RES_NORM1_B), n, nd->cin, hw, groups, 0);
}

/* Phases b0..b5. */
static void attention_backward(df_unet *u, const df_unet_node *nd, const float *params, float *grads, int n,
                               const float *dy) {
    const int hw = nd->h * nd->w, ch = nd->cin;
    const size_t nc = (size_t)n * ch * hw;
    float *const *w = nd->bw;
    df_conv_shape s;
    shape_conv1(&s, u->precision, n, ch, nd->h, nd->w, ch);
    attention_core(u, nd, params, n, 0);  /* b0 */
    if (nd->zero_dx) /* b1: the residual */
        memcpy(nd->dx, dy, sizeof(float) * nc);
    else
        df_add_backward(nd->dx, NULL, dy, nc);
    s.dinp_set = 1; /* b2: to_out */
    df_conv2d_backward(w[AB_T0], GRD(ATT_OUT_W), GRD(ATT_OUT_B), dy, w[AB_O], PAR(ATT_OUT_W), &s,
                       conv_ws(nd, 0, AB_OUT_WS, &s));
    zero(w[AB_DQ], nc), zero(w[AB_DK], nc), zero(w[AB_DV], nc);  /* b3: the attention */
    df_attention_backward(w[AB_DQ], w[AB_DK], w[AB_DV], w[AB_T0], w[AB_P], w[AB_Q], w[AB_K], w[AB_V], n, ch, hw,
                          nd->heads, u->precision,
                          work_ws(nd, 0, AB_ATTB_WS, df_attention_scratch_floats(n, ch, hw, nd->heads)));
    float *ws = conv_ws(nd, 0, AB_QKVB_WS, &s); /* b4: q, k, v; the first writes T1 */
    df_conv2d_backward(w[AB_T1], GRD(ATT_Q_W), GRD(ATT_Q_B), w[AB_DQ], w[AB_GN], PAR(ATT_Q_W), &s, ws);
    s.dinp_set = 0;
    df_conv2d_backward(w[AB_T1], GRD(ATT_K_W), GRD(ATT_K_B), w[AB_DK], w[AB_GN], PAR(ATT_K_W), &s, ws);
    df_conv2d_backward(w[AB_T1], GRD(ATT_V_W), GRD(ATT_V_B), w[AB_DV], w[AB_GN], PAR(ATT_V_W), &s, ws);
    df_groupnorm_backward(nd->dx, GRD(ATT_NORM_W), GRD(ATT_NORM_B), w[AB_T1], nd->x, nd->mean[0], nd->rstd[0],  /* b5 */
                          PAR(ATT_NORM_W), n, ch, hw, u->config.norm_num_groups);
}

static void node_backward(df_unet *u, const df_unet_node *nd, const float *params, float *grads, int n,
                          const float *dy) {
    const int hw = nd->h * nd->w;
    const size_t nin = (size_t)n * nd->cin * hw;
    float *const *w = nd->bw;
    df_conv_shape s;
    switch (nd->kind) {
    case DF_UNET_CONV_IN:
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        df_conv2d_backward(NULL, GRD(CONV_W), GRD(CONV_B), dy, nd->kept[IN_X], PAR(CONV_W), &s, conv_ws(nd, 0, CV_WS, &s));
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
        df_conv2d_backward(nd->dx, GRD(CONV_W), GRD(CONV_B), dy, nd->x, PAR(CONV_W), &s, conv_ws(nd, 0, CV_WS, &s));
        break;
    case DF_UNET_UPSAMPLE: {  /* b0: the upsampled image again; b1, b2: the conv (weights, then input); b3 */
        size_t nup = (size_t)n * nd->cin * nd->oh * nd->ow;
        df_upsample2x_forward(w[UB_U], nd->x, n, nd->cin, nd->h, nd->w);
        shape_conv3(&s, u->precision, n, nd->cin, nd->oh, nd->ow, nd->cout);
        df_conv2d_backward(NULL, GRD(CONV_W), GRD(CONV_B), dy, w[UB_U], PAR(CONV_W), &s, conv_ws(nd, 0, UB_WS, &s));
        zero(w[UB_D], nup);
        df_conv2d_backward(w[UB_D], NULL, NULL, dy, NULL, PAR(CONV_W), &s, conv_ws(nd, 0, UB_DX_WS, &s));
        if (nd->zero_dx) zero(nd->dx, nin);
        df_upsample2x_backward(nd->dx, w[UB_D], n, nd->cin, nd->h, nd->w);
        break;
    }
    case DF_UNET_CONCAT:
        /* the skip's gradient starts here: its concat is the first of its two consumers in backward */
        zero(nd->dskip, (size_t)n * nd->cskip * hw);
        if (nd->zero_dx) zero(nd->dx, nin);
        df_concat_backward(nd->dx, nd->dskip, dy, n, nd->cin, nd->cskip, hw);
        break;
    case DF_UNET_OUT: {  /* b0: norm and SiLU again; b1: conv_out; b2: SiLU; b3: norm */
        df_groupnorm_silu_apply(w[OB_A], w[OB_R], nd->mean[0], nd->rstd[0], nd->x, PAR(OUT_NORM_W), PAR(OUT_NORM_B), n,
                                nd->cin, hw, u->config.norm_num_groups);
        shape_conv3(&s, u->precision, n, nd->cin, nd->h, nd->w, nd->cout);
        zero(w[OB_T], nin);
        df_conv2d_backward(w[OB_T], GRD(CONV_W), GRD(CONV_B), dy, w[OB_R], PAR(CONV_W), &s, conv_ws(nd, 0, OB_WS, &s));
        zero(w[OB_T2], nin);
        df_silu_backward(w[OB_T2], w[OB_T], w[OB_A], nin);
        if (nd->zero_dx) zero(nd->dx, nin);
        df_groupnorm_backward(nd->dx, GRD(OUT_NORM_W), GRD(OUT_NORM_B), w[OB_T2], nd->x, nd->mean[0], nd->rstd[0],
                              PAR(OUT_NORM_W), n, nd->cin, hw, u->config.norm_num_groups);
        break;
    }
    }
}

static void time_embedding_backward(df_unet *u, const float *params, float *grads, int n) {
    int c0 = u->config.block_out_channels[0], td = u->temb_dim;
    size_t m = (size_t)n * td;
    const size_t *tp = u->temb_param;
    ASSERT(df_linear_scratch_floats(n, c0, td) <= u->temb_bws_floats && df_linear_scratch_floats(n, td, td) <= u->temb_bws_floats);
    zero(u->dtemb, m);
    df_silu_backward(u->dtemb, u->dstemb, u->temb, m);
    zero(u->ds1, m);
    df_linear_backward(u->ds1, grads + tp[TEMB_W2], grads + tp[TEMB_B2], u->dtemb, u->s1, params + tp[TEMB_W2], n, td,
                       td, u->precision, u->temb_bws);
    zero(u->dl1, m);
    df_silu_backward(u->dl1, u->ds1, u->l1, m);
    df_linear_backward(NULL, grads + tp[TEMB_W1], grads + tp[TEMB_B1], u->dl1, u->emb, params + tp[TEMB_W1], n, c0, td,
                       u->precision, u->temb_bws);
}

void df_unet_backward(df_unet *u, const float *params, float *grads, int n, const float *dout) {
    ASSERT(u->training && u->last_training);  /* backward follows a training forward */
    ASSERT(n == u->last_n);
    if (u->backward_done) forward_again(u, params);
    u->backward_done = 1;
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
