/* train.h: the training loop of a df_model (Ho et al. 2020, Algorithm 1, with the loss and
 * parameterisation of the model's diffusion config), AdamW with warm-up and clipping, EMA with
 * warm-up, checkpoints, and exact resume. Everything random is keyed by (seed, step, sample), so
 * an interrupted and resumed run reproduces the uninterrupted one bit for bit.
 * It prints nothing: progress and pictures go through callbacks the caller supplies. */
#ifndef DF_TRAIN_H
#define DF_TRAIN_H

#include "model.h"
#include "optim.h"
#include <signal.h>

/* Fills x0 (n x dim) with the training examples of step `step` (1-based). */
typedef void (*df_batch_fn)(void *ctx, uint64_t seed, long step, int n, float *x0);

typedef struct {
    long step, total_steps;     /* total_steps 0 when only a time budget is set */
    double loss, loss_avg;      /* this step's loss, and its running mean over the last log interval */
    double grad_norm, lr;
    double elapsed, eta;        /* seconds; eta < 0 when unknown */
    double steps_per_s, examples_per_s;
    int final;                  /* 1 on the last report */
} df_train_progress;

typedef struct {
    long steps;                 /* train until this many steps in total (0: until the time budget) */
    double minutes;             /* wall-time budget of this invocation (0: none) */
    int batch;
    df_adamw_params opt;
    double ema_decay;
    uint64_t seed;
    const char *out_dir;        /* model.safetensors, checkpoint.safetensors, loss.csv land here */
    long ckpt_every;            /* checkpoint every N steps (0: only at the end or on stop) */
    long snapshot_every;        /* call snapshot every N steps (0: only at the end) */
    long report_every;          /* progress every N steps (and at the end) */
    volatile sig_atomic_t *stop;/* set (by a signal handler) to stop cleanly with a checkpoint */
    int nan_skip;               /* skip up to this many isolated non-finite steps instead of stopping */
    df_batch_fn batch_fn;
    void *batch_ctx;
    void (*progress)(void *ctx, const df_train_progress *p);
    void *progress_ctx;
    df_status (*snapshot)(void *ctx, df_model *m, long step);  /* pictures of samples */
    void *snapshot_ctx;
} df_train_opts;

void df_train_opts_init(df_train_opts *o);

/* Trains m (built with training = 1) from m->step on. With resume = 1, m came from
 * df_train_load_checkpoint and the loss log is cut back to m->step. Writes checkpoints to
 * out_dir; returns DF_OK at the end of the budget, DF_ERR_INTERRUPTED after a stop request
 * (checkpoint written), DF_ERR_NAN on a non-finite loss or gradient (the last good checkpoint is
 * kept and not overwritten). */
df_status df_train(df_model *m, const df_train_opts *o, int resume);

/* Loads out_dir/checkpoint.safetensors into m (training = 1) and its AdamW state for resuming. */
df_status df_train_load_checkpoint(df_model *m, const char *out_dir, int max_batch);

#endif
