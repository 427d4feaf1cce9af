/* unet_plan.c: the U-Net's memory plan: every tensor of a forward and backward pass besides the
 * parameters and their gradients, placed in one arena by lifetime (unet.c's top comment describes
 * the method; unet_layers.h the rule that keeps it in step with the passes). */
#include "unet_layers.h"
#include <stdlib.h>
#include <string.h>

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

df_status df_unet_plan_arena(df_unet *u) {
    df_status st = DF_OK;
    const int max_batch = u->max_batch;
    plan P;
    memset(&P, 0, sizeof P);
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
    if (u->training && u->config.num_class_embeds > 0 &&
        !(u->last_y = df_calloc((size_t)max_batch * sizeof(int), "unet class labels"))) {
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
    return DF_OK;

fail_free:
    free(P.buf);
    free(P.node);
    return st;
}
