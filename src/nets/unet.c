/* unet.c: the DDPM U-Net as diffusers' UNet2DModel: the parameter table, the node graph, and the
 * forward and backward passes. Beside it: unet_config.c (presets, validation, config.json),
 * unet_plan.c (the memory plan), unet_layers.h (what the three share about each layer, and the rule
 * for adding one). See unet.h for the contract and docs/unet.md for the architecture. Not here:
 * the arithmetic (ops_*.c), the loss, the optimiser, checkpoint files.
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
#include "unet_layers.h"
#include "json.h"
#include "ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    if (c->num_class_embeds > 0) {  /* nn.Embedding(K, temb_dim), after time_embedding as in diffusers */
        const int64_t shape[2] = {c->num_class_embeds, u->temb_dim};
        u->class_param = df_param_table_add(&u->table, "class_embedding.weight", 2, shape);
        u->param_init[u->table.count - 1] = INIT_NORMAL;
    }

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
    if (st == DF_OK) st = df_unet_plan_arena(u);
    if (st != DF_OK) {
        df_unet_free(u);
        return st;
    }
    *out = u;
    return DF_OK;
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
    df_free(u->last_y);
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
        case INIT_NORMAL: /* nn.Embedding: N(0, 1) */
            df_randn(seed, DF_STREAM_INIT, (uint32_t)k, 0, p, t->numel);
            break;
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

static void time_embedding_forward(df_unet *u, const float *params, int n, const int *t_index, const int *labels) {
    int c0 = u->config.block_out_channels[0], td = u->temb_dim;
    ASSERT(df_linear_scratch_floats(n, c0, td) <= u->temb_ws_floats && df_linear_scratch_floats(n, td, td) <= u->temb_ws_floats);
    /* diffusers Timesteps(C0, flip_sin_to_cos, freq_shift) -> TimestepEmbedding(C0, 4 C0) */
    df_timestep_embedding(u->emb, t_index, n, c0, u->config.freq_shift, u->config.flip_sin_to_cos);
    df_linear_forward(u->l1, u->emb, params + u->temb_param[TEMB_W1], params + u->temb_param[TEMB_B1], n, c0, td,
                      u->precision, u->temb_ws);
    df_silu_forward(u->s1, u->l1, (size_t)n * td);
    df_linear_forward(u->temb, u->s1, params + u->temb_param[TEMB_W2], params + u->temb_param[TEMB_B2], n, td, td,
                      u->precision, u->temb_ws);
    /* a conditional network: emb = time_embedding(t) + class_embedding(y) (UNet2DModel.forward) */
    const int K = u->config.num_class_embeds;
    ASSERT((K > 0) == (labels != NULL));
    for (int i = 0; i < n && K > 0; i++) {
        ASSERT(labels[i] >= 0 && labels[i] < K);
        const float *e = params + u->class_param + (size_t)labels[i] * td;
        float *row = u->temb + (size_t)i * td;
        for (int k = 0; k < td; k++) row[k] += e[k];
    }
    /* Every resnet projects SiLU(temb) (diffusers ResnetBlock2D, Ho et al.'s nonlinearity(temb)). */
    df_silu_forward(u->stemb, u->temb, (size_t)n * td);
}

static int dropout_on(const df_unet *u, int training) { return training && u->config.dropout > 0.0f; }

/* out = x times this resnet's dropout mask for the current step (out may be x): the forward on
 * conv2's input, its rebuild in backward, and the backward itself (the same mask on the gradient). */
static void resnet_dropout(const df_unet *u, const df_unet_node *nd, float *out, const float *x, size_t n) {
    /* n covers the last forward's samples; sample 0 of them is sample dropout_first of the whole batch */
    const uint64_t first = u->dropout_first * (uint64_t)(n / (size_t)u->last_n);
    df_dropout_forward_at(out, x, n, first, u->config.dropout, u->dropout_seed, u->dropout_step,
                          (uint32_t)nd->dropout_id);
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

void df_unet_forward(df_unet *u, const float *params, int n, const float *x, const int *t_index, const int *labels, float *out,
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
    if (u->last_y) memcpy(u->last_y, labels, (size_t)n * sizeof(int));        /* for backward */
    time_embedding_forward(u, params, n, t_index, labels);
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
    time_embedding_forward(u, params, n, u->last_t, u->last_y);
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
    /* the class rows take dtemb as it is (an addition); in sample order: the same sum every run */
    for (int i = 0; i < n && u->config.num_class_embeds > 0; i++) {
        float *g = grads + u->class_param + (size_t)u->last_y[i] * td;
        const float *d = u->dtemb + (size_t)i * td;
        for (int k = 0; k < td; k++) g[k] += d[k];
    }
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
