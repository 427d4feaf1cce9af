/* unet_layers.h: internal to src/nets/unet*.c: what the network's three readers share about each
 * layer (node kind): the config (unet_config.c), the memory plan (unet_plan.c) and the forward and
 * backward passes (unet.c).
 *
 * The rule for a new layer, or a new buffer in one: a node kind is described in four places that
 * must agree, all named after its enums below:
 *   1. its parameter offsets and kept tensors (the first enums here), registered in unet_build;
 *   2. its work buffers (RF_/RB_, AF_/AB_, ...: forward and backward), each given a size and the
 *      phases it lives through by plan_node_forward / plan_node_backward (unet_plan.c);
 *   3. node_forward / node_backward (unet.c), whose phase comments (f0.., b0..) mark the ticks the
 *      plan walks, and which read each buffer only in the phases the plan gave it;
 *   4. the FLOP count (df_unet_forward_flops).
 * The plan packs buffers whose lifetimes do not overlap into the same memory, so a buffer read
 * outside its phases reads another's data: tests/test_unet.c runs every network on the packed plan
 * and on one where every buffer has its own memory (df_unet_set_plan_reuse(0)) and asks for the same
 * bits; that test is what catches a plan that disagrees with the passes. */
#ifndef DF_UNET_LAYERS_H
#define DF_UNET_LAYERS_H

#include "unet.h"
#include "ops.h"

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
enum { INIT_UNIFORM, INIT_ZERO, INIT_ONE, INIT_NORMAL };

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

/* The convolutions' shapes, each carrying the network's precision (p). */

/* Each shape carries the network's precision (p). */
static inline void shape_conv3(df_conv_shape *s, df_precision p, int n, int ic, int h, int w, int oc) {
    df_conv_shape_init(s, n, ic, h, w, oc, 3, 1, 1, 1, 1, 1);
    s->precision = p;
}
static inline void shape_conv1(df_conv_shape *s, df_precision p, int n, int ic, int h, int w, int oc) {
    df_conv_shape_init(s, n, ic, h, w, oc, 1, 1, 0, 0, 0, 0);
    s->precision = p;
}
/* diffusers Downsample2D(padding=0): pad (top 0, left 0, bottom 1, right 1), 3x3 stride 2 = TF 'SAME'. */
static inline void shape_down(df_conv_shape *s, df_precision p, int n, int c, int h, int w) {
    df_conv_shape_init(s, n, c, h, w, c, 3, 2, 0, 0, 1, 1);
    s->precision = p;
}


/* Level i has attention blocks: its resolution is in attn_resolutions. */
static inline int level_has_attention(const df_unet_config *c, int level) {
    int res = c->sample_size >> level;
    for (int a = 0; a < c->n_attn; a++)
        if (c->attn_resolutions[a] == res) return 1;
    return 0;
}

/* unet_plan.c: plans u's arena (every activation, gradient and workspace of max_batch images, one
 * lifetime each), checks that it and the parameter blocks fit in memory, allocates it and hands out
 * the nodes' pointers. */
df_status df_unet_plan_arena(df_unet *u);

#endif
