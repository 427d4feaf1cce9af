/* model_impl.h: the inside of a df_model, for the model and train layers only. Programs (the CLI,
 * tests of the public API) see df_model as an opaque type and use the accessors of diffuse.h. */
#ifndef DF_MODEL_IMPL_H
#define DF_MODEL_IMPL_H
#include "diffuse.h"

struct df_model {
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
    int n_classes;                 /* conditional U-Net: num_class_embeds (the null class included); else 0 */
    int null_class;                /* the class index that means "no class" (-1: not known) */
    int *null_labels;              /* max_batch copies of null_class, for unconditional predictions */
    char *class_names;             /* the classes' names, one per line, or NULL */
    int dropout_step;              /* counter for dropout masks in training */
    long dropout_first;            /* training: index of the batch's sample 0 in the global batch (its
                                    * dropout masks are those of that sample; 0 in a one-process run) */
};

/* Frees what m holds and zeroes it, leaving the struct itself (df_model_free frees both). */
void df_model_release(df_model *m);

#endif
