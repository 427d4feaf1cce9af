/* diffusers.h: model interchange with Hugging Face diffusers (a UNet2DModel folder or a DDPMPipeline
 * folder), in both directions.
 *
 * What it is: a loader that turns a diffusers folder into a df_model (U-Net weights, diffusion
 * settings from the scheduler) and a writer that turns a df_model back into a DDPMPipeline folder
 * that diffusers' DDPMPipeline.from_pretrained() loads. Every config field is either understood,
 * explicitly informational (_class_name, _diffusers_version, _name_or_path, ...) or refused by name;
 * every tensor of the weights file is either used by the network or refused by name. Nothing is
 * silently ignored, because a field or tensor we skip would be a network we compute differently.
 *
 * What it is not: a reader of PyTorch pickles (diffusion_pytorch_model.bin), sharded or variant
 * (.fp16) weight files, Flax weights, or of any pipeline other than DDPM/DDIM with a UNet2DModel.
 *
 * Folder layouts (docs/ddpm-unet.md, section 2):
 *   model folder:    DIR/config.json, DIR/diffusion_pytorch_model.safetensors
 *                    (and, as an extension, DIR/scheduler_config.json if present)
 *   pipeline folder: DIR/model_index.json (optional when reading), DIR/unet/config.json,
 *                    DIR/unet/diffusion_pytorch_model.safetensors, DIR/scheduler/scheduler_config.json
 *                    (optional when reading: without it the DDPM paper's settings are used).
 */
#ifndef DF_DIFFUSERS_H
#define DF_DIFFUSERS_H

#include "model.h"

/* What a diffusers scheduler says that df_model does not hold: the sampler's x0 clipping. */
typedef struct {
    int has_scheduler;          /* 1 if a scheduler_config.json was read, 0 if the defaults were used */
    char scheduler[32];         /* its _class_name ("DDPMScheduler", "DDIMScheduler"); "" without one */
    int clip_sample;            /* clamp the predicted x0 while sampling (diffusers default: true) */
    double clip_sample_range;   /* ... to [-range, range] (diffusers default 1.0) */
} df_diffusers_info;

/* The DDPM paper's settings, used when a folder has no scheduler and by df_diffusers_save:
 * no scheduler read, clip_sample 1, range 1.0. */
void df_diffusers_info_init(df_diffusers_info *info);

/* Loads the diffusers model or pipeline folder `dir` into *m (a U-Net model for batches up to
 * max_batch; training = 1 also allocates gradients and AdamW moments, zeroed). The EMA weights are
 * the loaded weights and use_ema is 1; step, seed and ema_decay are 0 (diffusers does not record
 * them); the loss is "simple".
 *  config.json -> the network; every key must be understood: DF_ERR_UNSUPPORTED "DIR/config.json:
 *    unsupported field 'X' = V (...)" for an unknown key or a value the network does not implement.
 *    Absent keys take diffusers' defaults (as diffusers itself does for configs written by older
 *    versions), and a default the network does not implement is refused by name too.
 *  scheduler_config.json (DDPMScheduler or DDIMScheduler) -> m->diff: num_train_timesteps -> T;
 *    beta_schedule linear -> linear, scaled_linear -> quadratic, squaredcos_cap_v2 -> cosine
 *    (s 0.008, max_beta 0.999), sigmoid -> sigmoid; variance_type fixed_small -> posterior,
 *    fixed_large -> beta; prediction_type epsilon / sample / v_prediction -> eps / x0 / v.
 *    Without the file: linear 1e-4..0.02, T 1000, eps, beta variance (the DDPM paper's CIFAR-10 run).
 *  diffusion_pytorch_model.safetensors -> weights, looked up by name (F32, F16, BF16 or F64); the
 *    legacy attention names query/key/value/proj_attn stand for to_q/to_k/to_v/to_out.0.
 *    DF_ERR_FORMAT names a missing tensor or a tensor the network does not use; DF_ERR_SHAPE a
 *    wrong shape; DF_ERR_NAN non-finite weights.
 * DF_ERR_IO names a missing or unreadable file. On failure *m is left empty (df_model_free is safe). */
df_status df_diffusers_load(const char *dir, int max_batch, int training, df_model *m);
/* The same, also filling *info (may be NULL) with the scheduler's clipping settings. */
df_status df_diffusers_load_ex(const char *dir, int max_batch, int training, df_model *m, df_diffusers_info *info);

/* The two config readers of df_diffusers_load, on their own (same checks, same messages):
 * a UNet2DModel config.json file -> *c, and a scheduler_config.json file -> *d (loss "simple") and
 * *info (may be NULL). */
df_status df_diffusers_read_unet_config(const char *path, df_unet_config *c);
df_status df_diffusers_read_scheduler(const char *path, df_diffusion_config *d, df_diffusers_info *info);

/* Writes m as a DDPMPipeline folder `dir` (created if needed; files already there are replaced):
 * model_index.json, unet/config.json, unet/diffusion_pytorch_model.safetensors (F32, PyTorch layout,
 * metadata {"format": "pt"}; the EMA weights if use_ema, else the raw ones) and
 * scheduler/scheduler_config.json (DDPMScheduler, the inverse of the mapping above, clip_sample
 * true in [-1, 1]). Each file is written atomically; model_index.json is written last, so a folder
 * that has it is complete. DF_ERR_ARG for a model that is not a U-Net; DF_ERR_UNSUPPORTED, before
 * anything is written, for settings diffusers cannot express (the "mean" parameterisation, the
 * exponential schedule, a cosine schedule with s != 0.008 or max_beta != 0.999); DF_ERR_IO on a
 * failed write. */
df_status df_diffusers_save(const df_model *m, const char *dir, int use_ema);
/* The same, with the scheduler's clip_sample and clip_sample_range taken from *info (NULL = the
 * defaults of df_diffusers_info_init). */
df_status df_diffusers_save_ex(const df_model *m, const char *dir, int use_ema, const df_diffusers_info *info);

/* Opens a model whatever its form: a directory is read with df_diffusers_load, anything else with
 * df_model_load (a diffuse checkpoint). Same contract as those two. */
df_status df_model_open(const char *path, int max_batch, int training, df_model *m);
/* The same, filling *info (may be NULL); a checkpoint has no scheduler, so it gets
 * df_diffusers_info_init's values (has_scheduler 0), as a diffusers folder without one does. */
df_status df_model_open_ex(const char *path, int max_batch, int training, df_model *m, df_diffusers_info *info);

#endif
