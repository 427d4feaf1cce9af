/* mlp.h: the denoiser of the 2-D toy problems, an MLP conditioned on the timestep through a
 * sinusoidal embedding, with a hand-written forward and backward pass.
 *
 * What it is: for a point x (dim) and a 0-based timestep index t,
 *   e   = [sin(t f_j), cos(t f_j)], f_j = exp(-ln(10000) j / (half - 1)), j < half = temb_dim/2
 *         (DDPM / diffusers get_timestep_embedding with freq_shift 1, computed in float);
 *   h_0 = SiLU(W_in x + b_in + U_0 e)
 *   h_l = SiLU(W_l h_{l-1} + b_l + U_l e),   l = 1 .. layers-1
 *   out = W_out h_{layers-1} + b_out          (dim outputs; no activation)
 * Parameter names, in PyTorch's state_dict order (linear weights are (out,in)):
 *   inp.weight (hidden,dim), inp.bias (hidden),
 *   temb.{l}.weight (hidden,temb_dim) for l = 0 .. layers-1 (no bias: b_l already covers it),
 *   hidden.{l}.weight (hidden,hidden), hidden.{l}.bias (hidden) for l = 1 .. layers-1,
 *   out.weight (dim,hidden), out.bias (dim).
 * Layer l is numbered from 0 (the input layer), so hidden.{l} and temb.{l} of the same layer share l.
 * A class-conditional MLP (classes > 0) adds row y of class_emb.weight (classes,temb_dim) to e,
 * y the sample's class or the null class (labels of df_mlp_forward).
 *
 * What it is not: a training loop, a loss, or thread-safe. A df_mlp owns one activation arena,
 * so two threads must not run forward/backward on the same df_mlp at once. It does not use
 * ops.c: the network is tiny and its loops live here.
 */
#ifndef DF_MLP_H
#define DF_MLP_H

#include "params.h"

/* df_mlp_config and its limits are public: see diffuse.h ("networks"). */

typedef struct df_mlp {
    df_mlp_config cfg;
    df_param_table table;  /* names, shapes and offsets of the parameter block */
    int max_batch;         /* forward/backward accept n <= max_batch */
    float *acts;           /* the one allocation: activations, backward scratch, transposed weights */
    size_t acts_floats;
    int n_last;            /* batch size of the last forward (0 before any); backward needs it equal */
    /* Offsets (floats) of the tensors in the parameter block, filled by df_mlp_new. */
    size_t off_inp_w, off_inp_b, off_out_w, off_out_b;
    size_t off_temb_w[DF_MLP_MAX_LAYERS];
    size_t off_class;        /* class_emb.weight (classes, temb_dim), when conditional */
    int *y;                  /* the last forward's labels (classes > 0) */
    float *de;               /* (N,temb_dim) backward: dL/d(embedding), for the class rows */
    size_t off_hid_w[DF_MLP_MAX_LAYERS], off_hid_b[DF_MLP_MAX_LAYERS];  /* entry 0 unused: layer 0 is inp */
    /* Views into acts; N = max_batch. */
    float *freq;             /* (temb_dim/2) embedding frequencies */
    float *x, *e;            /* x (N,dim) copy of the input, e (N,temb_dim) */
    float *z, *h;            /* (layers,N,hidden): pre-activations and SiLU outputs */
    float *grad_a, *grad_b;  /* (N,hidden) backward ping-pong buffers */
    float *wt;               /* transposed weights, rebuilt by each forward */
    size_t off_wt_w[DF_MLP_MAX_LAYERS];  /* in wt: W_l^T (in_l,hidden) */
    size_t off_wt_u[DF_MLP_MAX_LAYERS];  /* in wt: U_l^T (temb_dim,hidden) */
    size_t off_wt_out;                   /* in wt: W_out^T (hidden,dim) */
} df_mlp;

/* Validates *c (DF_ERR_ARG naming the bad field), registers the parameter tensors and allocates,
 * once, the activation arena for batches of up to max_batch points. Nothing is allocated later.
 * On success *out owns everything; free with df_mlp_free. */
df_status df_mlp_new(const df_mlp_config *c, int max_batch, df_mlp **out);
void df_mlp_free(df_mlp *m);

/* Floats in a parameter block (= table.total, padding between tensors included). */
size_t df_mlp_param_floats(const df_mlp *m);

/* Writes the whole parameter block (padding zeroed). Every weight and bias is uniform in
 * +-1/sqrt(fan_in) (PyTorch's nn.Linear default), tensor k of the table drawn with
 * df_randu(seed, DF_STREAM_INIT, k, 0, ...); the output layer is then scaled by 0.1 (see mlp.c
 * for why). Depends only on (config, seed). */
void df_mlp_init(const df_mlp *m, float *params, uint64_t seed);

/* out (n,dim) = network(x (n,dim), t_index (n)) with the weights in `params`. 1 <= n <= max_batch;
 * out may alias x.
 * Caches the activations in the arena for the next backward (invalidating the previous ones).
 * Each row of out depends only on its own row of x and t_index, bit for bit: the result does
 * not depend on n, on the position in the batch or on the number of threads. */
void df_mlp_forward(df_mlp *m, const float *params, int n, const float *x, const int *t_index, const int *labels,
                    float *out);

/* grads (same layout as params) += dL/dparams, given dout (n,dim) = dL/dout of the last forward,
 * which must have been run with the same params and n. Padding in grads is left untouched.
 * Deterministic: the result does not depend on the number of threads. */
void df_mlp_backward(df_mlp *m, const float *params, float *grads, int n, const float *dout);

/* As df_mlp_backward, and also dx (n,dim) += dL/dx. grads or dx may be NULL (skipped). */
void df_mlp_backward_input(df_mlp *m, const float *params, float *grads, int n, const float *dout, float *dx);

#endif
