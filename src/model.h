/* model.h: a denoising network together with its diffusion settings, as training, sampling and
 * checkpoints see it. The network is either the 2-D MLP or the U-Net; the diffusion code never
 * sees which (it calls df_model_predict through df_predict_fn).
 *
 * Checkpoint format (model.safetensors): the raw weights under their PyTorch/diffusers names, the
 * EMA weights under "ema/<name>", and the whole configuration in __metadata__ (string values):
 * "diffuse.format" = "1", "diffuse.net" = "mlp" | "unet", "mlp.*" or "unet.config" (a diffusers
 * UNet2DModel config.json), "diffusion.*", "train.*". Optimiser state lives in a second file
 * (train_state.safetensors) used only to resume. */
#ifndef DF_MODEL_H
#define DF_MODEL_H

#include "common.h"
#include "mlp.h"
#include "params.h"
#include "unet.h"

typedef enum { DF_NET_MLP, DF_NET_UNET } df_net_kind;

typedef struct {
    df_schedule_params schedule;
    df_pred pred;
    df_loss_kind loss;
    df_var_kind var;
} df_diffusion_config;

void df_diffusion_config_init(df_diffusion_config *d);

typedef struct df_model {
    df_net_kind kind;
    df_mlp_config mlp;
    df_unet_config unet;
    char unet_config_json[4096];   /* U-Net: its diffusers config.json text */
    df_diffusion_config diff;
    df_schedule schedule;          /* derived from diff.schedule */
    void *net;                     /* df_mlp * or df_unet * */
    const df_param_table *table;
    size_t n_floats;               /* floats in each block (table->total) */
    float *params, *ema;           /* one block each */
    float *grads, *adam_m, *adam_v;/* training only: one block each */
    size_t dim;                    /* floats per sample */
    int channels, height, width;   /* images; 2-D points: 2, 1, 1 */
    int max_batch, training;
    long step;                     /* optimiser steps that made these weights */
    uint64_t seed;                 /* training seed */
    double ema_decay;
    char data[300];                /* training data spec */
    int use_ema;                   /* df_model_predict uses the EMA weights */
    int dropout_step;              /* counter for dropout masks in training */
} df_model;

/* Builds a new MLP model with freshly initialised weights (EMA = weights). */
df_status df_model_new_mlp(df_model *m, const df_mlp_config *c, const df_diffusion_config *d, int max_batch,
                           int training, uint64_t seed);
/* Builds a new U-Net model with freshly initialised weights (EMA = weights). */
df_status df_model_new_unet(df_model *m, const df_unet_config *c, const df_diffusion_config *d, int max_batch,
                            int training, uint64_t seed);
void df_model_free(df_model *m);

/* Network forward/backward on the raw weights (training) or the chosen weights (predict). */
void df_model_forward(df_model *m, const float *params, int n, const float *x, const int *t, float *out, int training);
void df_model_backward(df_model *m, const float *params, float *grads, int n, const float *dout);
/* df_predict_fn for the samplers: ctx is a df_model *, uses ema if m->use_ema. */
df_status df_model_predict(void *ctx, int n, const int *t, const float *x, float *out);

/* Writes a checkpoint atomically (weights, EMA, config; with_state adds the AdamW moments as
 * "train/adam_m" and "train/adam_v" so that training can resume exactly). */
df_status df_model_save(const df_model *m, const char *path, int with_state);
/* Loads a checkpoint written by df_model_save, validating every tensor's presence and shape.
 * training = 1 also allocates gradients and AdamW moments, and loads the moments when present. */
df_status df_model_load(df_model *m, const char *path, int max_batch, int training);
/* One line describing the model (net, parameter count, diffusion settings). */
void df_model_describe(const df_model *m, char *buf, size_t cap);

#endif
