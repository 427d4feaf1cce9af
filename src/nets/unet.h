/* unet.h: the DDPM U-Net (Ho et al. 2020) exactly as diffusers' UNet2DModel builds it, with
 * forward and backward passes for training.
 *
 * What it is: the network of docs/unet.md. Every parameter tensor carries diffusers'
 * state-dict name and PyTorch shape (e.g. "down_blocks.1.attentions.0.to_q.weight" [C,C]), so a
 * checkpoint moves between diffuse and diffusers by name. Attention's linears over channels run as
 * 1x1 convolutions: the (C,C) weight is the same memory as (C,C,1,1).
 *
 * What it is not: an optimiser, a loss or a sampler (those live elsewhere), and it does no I/O.
 * All arithmetic goes through ops.h; this file only wires the ops together and plans memory.
 *
 * Memory: df_unet_new sizes ONE arena for max_batch images, in which every activation, gradient and
 * workspace has a place for its lifetime only; forward and backward allocate nothing. Parameters and
 * their gradients are blocks owned by the caller, laid out by the parameter table (params.h).
 */
#ifndef DF_UNET_H
#define DF_UNET_H

#include "params.h"

/* df_unet_config and its functions (presets, validation, config.json) are public: see diffuse.h
 * ("networks"). */

/* ---------------------------------------------------------------- the network graph
 * The network is a flat list of nodes run in order (backward in reverse). These types are public
 * so tools can walk the graph; callers normally need only the functions further down. */
typedef enum {
    DF_UNET_CONV_IN,    /* y = conv_in(x), 3x3 */
    DF_UNET_RESNET,     /* ResnetBlock2D with the time embedding */
    DF_UNET_ATTENTION,  /* GN, q/k/v, softmax attention, to_out.0, + residual */
    DF_UNET_DOWNSAMPLE, /* 3x3 stride 2, pad bottom/right by 1 */
    DF_UNET_UPSAMPLE,   /* nearest x2 then 3x3 */
    DF_UNET_CONCAT,     /* y = cat([x, skip], channels) */
    DF_UNET_OUT,        /* conv_norm_out GN -> SiLU -> conv_out 3x3 */
} df_unet_node_kind;

#define DF_UNET_NODE_PARAMS 12  /* parameter offsets per node, meaning per kind (unet_layers.h) */
#define DF_UNET_NODE_KEPT 1     /* intermediate tensors per node, meaning per kind (unet_layers.h) */
#define DF_UNET_NODE_WORK 20    /* work buffers of a node's forward and of its backward (unet_layers.h) */

typedef struct {
    df_unet_node_kind kind;
    int cin, cout;          /* channels of x and y (concat: cin = channels of x, cskip of skip) */
    int cskip;
    int h, w, oh, ow;       /* spatial size of x and of y */
    int heads;              /* attention heads */
    int dropout_id;         /* resnets: the b counter of their dropout masks */
    int has_shortcut;       /* resnets: a 1x1 conv_shortcut (cin != cout) */
    int fuse_conv1;         /* resnets: conv1 reads SiLU(norm1(x)) and adds the time embedding itself */
    int fuse_conv2;         /* resnets: conv2 reads SiLU(norm2(h)) and adds the shortcut itself
                             * (both df_conv2d_forward_fused; chosen by the memory plan), conv2
                             * not in a training forward with dropout */
    int skip_from;          /* concat: the node whose output it pops; else -1 */
    int pushes_skip;        /* y goes on the skip stack */
    size_t param[DF_UNET_NODE_PARAMS];  /* offsets into the parameter block */
    /* Activations (sized for max_batch). x is the previous node's y; skip is skip_from's y. */
    float *x, *skip, *y;
    float *kept[DF_UNET_NODE_KEPT];
    float *mean[2], *rstd[2];           /* group-norm statistics (N, groups) */
    /* Gradients (training only): dy is read, dx and dskip are accumulated into; dx is zeroed
     * first when this node is x's only consumer (zero_dx). */
    float *dx, *dskip, *dy;
    int zero_dx;
    /* Everything else the forward (fw) and the backward (bw) touch, with the floats of each. */
    float *fw[DF_UNET_NODE_WORK], *bw[DF_UNET_NODE_WORK];
    size_t fw_floats[DF_UNET_NODE_WORK], bw_floats[DF_UNET_NODE_WORK];
} df_unet_node;

typedef struct df_unet {
    df_unet_config config;
    df_param_table table;
    unsigned char *param_init;  /* per tensor: how df_unet_init fills it (unet.c) */
    int *param_fan_in;          /* per tensor: fan-in for the uniform bound */
    int n_nodes;
    df_unet_node *nodes;
    int max_batch, training;
    df_precision precision;     /* of every conv, linear and attention product (fp32 after df_unet_new);
                                   may change between calls: the scratch covers both */
    int temb_dim;               /* 4 * block_out_channels[0] */
    size_t temb_param[4];       /* time_embedding.linear_1.{weight,bias}, linear_2.{weight,bias} */
    size_t class_param;         /* class_embedding.weight (num_class_embeds, temb_dim), when conditional */
    /* time embedding activations: emb (N,C0), l1/s1/temb/stemb (N,temb_dim) */
    float *emb, *l1, *s1, *temb, *stemb;
    float *dstemb, *dtemb, *ds1, *dl1;
    float *temb_ws, *temb_bws;  /* the time embedding's linear workspaces, forward and backward */
    size_t temb_ws_floats, temb_bws_floats;
    float *act;                 /* the arena: every activation, gradient and workspace (unet.c plans it) */
    size_t act_floats;
    size_t live_floats;         /* the most floats live at once (act_floats minus what packing wastes) */
    float *grad;                /* always NULL and 0: the activation gradients share the arena (the */
    size_t grad_floats;         /* fields stay for older callers) */
    /* state of the last forward, for backward */
    int last_n, last_training;
    int *last_t;                /* its time steps (training plan), for a second backward */
    int *last_y;                /* its class labels (conditional training plan) */
    int backward_done;          /* backward ran since: another re-runs the forward first */
    uint64_t dropout_seed;
    uint32_t dropout_step;
    uint64_t dropout_first;     /* the batch's first sample in the whole (data-parallel) batch: 0 alone */
} df_unet;

/* Builds the parameter table and the node graph and allocates the arenas for batches up to
 * max_batch (the gradient arena only if training). DF_ERR_ARG for a bad config or max_batch < 1,
 * DF_ERR_NOMEM naming the bytes it could not get. Nothing is allocated after this. */
df_status df_unet_new(const df_unet_config *c, int max_batch, int training, df_unet **out);
void df_unet_free(df_unet *u);
/* The parameter and tensor counts of config c, from the parameter table alone (no arenas): cheap
 * enough to check a file's config against its data before building the network. */
df_status df_unet_count_params(const df_unet_config *c, size_t *params, int *tensors);

size_t df_unet_param_floats(const df_unet *u);     /* floats of a parameter block (padding included) */
const df_param_table *df_unet_params(const df_unet *u);

/* PyTorch default init into params (df_unet_param_floats floats): conv/linear weights and biases
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), group-norm weight 1 and bias 0; zero for each resnet's conv2,
 * each attention's to_out.0 and conv_out (DDPM). Tensor k draws df_randu(seed, DF_STREAM_INIT, k, 0).
 * Padding between tensors is zeroed. */
void df_unet_init(const df_unet *u, float *params, uint64_t seed);

/* out (n,out,S,S) = network(x (n,in,S,S), t_index (n), labels (n)), 1 <= n <= max_batch.
 * labels: NULL for an unconditional network; for one with num_class_embeds K, n class indices in
 * 0..K-1, whose embedding rows are added to the time embedding (diffusers' UNet2DModel).
 * training=1 (needs a model built with training) applies dropout, element masks keyed
 * (dropout_seed, a = dropout_step, b = resnet number), and keeps what backward needs.
 * Every call overwrites the previous call's activations. */
void df_unet_forward(df_unet *u, const float *params, int n, const float *x, const int *t_index, const int *labels, float *out,
                     int training, uint64_t dropout_seed, uint32_t dropout_step);

/* Tests only: 0 gives every buffer of later plans its own memory (no sharing between lifetimes), the
 * reference that a test compares the packed plan against. Default 1. */
void df_unet_set_plan_reuse(int on);

/* ACCUMULATES d loss / d params into grads (same layout as params) from dout (n,out,S,S) = d loss /
 * d out, for the last forward, which must have been a training forward with the same params.
 * Backward reuses the memory of the activations as it consumes them: calling it again for the same
 * forward first re-runs that forward (bit for bit the same), at the cost of a forward. */
void df_unet_backward(df_unet *u, const float *params, float *grads, int n, const float *dout);

/* Analytic forward FLOPs per image: 2 * MACs of every conv, linear and attention matmul (group norms,
 * activations, softmax and adds not counted; the convention of torch_ddpm.py params). 0 if invalid. */
double df_unet_forward_flops(const df_unet_config *c);

/* The one table of UNet2DModel config.json keys (unet_config.c): checks every key of the config
 * object j (path names it in messages): _class_name UNet2DModel, every key one diffuse knows (no key
 * is silently ignored), each key the network fixes at its one value (act_fn "silu", ...), or absent
 * where diffusers' default is that value, and block types diffuse has. df_unet_config_from_json
 * runs it on every config (text NULL); a diffusers config.json also gets, in *text (malloc'd), the
 * config with every absent key at diffusers' default, refusing one that has no default. */
struct df_json;
df_status df_unet_config_check_keys(const char *path, const struct df_json *j, char **text);

#endif
