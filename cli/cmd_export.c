/* cmd_export.c: `diffuse export`: writes a model (a diffuse checkpoint or a diffusers folder) as a
 * diffusers DDPMPipeline folder that DDPMPipeline.from_pretrained() loads. A thin layer over
 * df_model_open and df_diffusers_save. --model has no default here, unlike sample, eval and
 * predict: what goes into a folder that outlives the command should be said, not guessed. */
#include "cli.h"

int cmd_export(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    int raw = 0;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model to export: a checkpoint (model.safetensors) or a diffusers folder", 0},
        {"out", ARG_STRING, &out, "output folder (created; its model files are replaced)", 0},
        {"raw", ARG_FLAG, &raw, "export the raw weights instead of the EMA weights", 0},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = cli_parse_flags("export", "usage: diffuse export --model runs/cifar/model.safetensors --out ddpm-pipeline [--raw]",
                             specs, NULL, argc, argv);
    if (rc >= 0) return rc;
    if (!model) return cli_error("export", df_fail(DF_ERR_ARG, "--model is required"));
    if (!out) return cli_error("export", df_fail(DF_ERR_ARG, "--out is required"));

    df_model *m = NULL;
    df_diffusers_info info;
    df_status st = cli_open_model("export", &model, 1, &m, &info);
    if (st) return cli_error("export", st);
    /* info: the source folder's clipping, or DDPM's clip_sample true for a checkpoint */
    st = df_diffusers_save(m, out, !raw, &info);
    if (st == DF_OK)
        fprintf(stderr, "wrote diffusers pipeline %s (%s weights, %d tensors, %zu parameters)\n", out, raw ? "raw" : "EMA",
                df_model_tensor_count(m), df_model_param_count(m));
    df_model_free(m);
    return st == DF_OK ? 0 : cli_error("export", st);
}
