/* cmd_info.c: `diffuse info`: the CPU level in use, and a model's or a U-Net preset's
 * configuration. It has no default model: `diffuse info` alone is how to ask for the CPU level. */
#include "cli.h"
#include <string.h>

static void print_unet_config(const df_unet_config *c) {
    printf("image: %d x %d x %d (out channels %d)\n", c->in_channels, c->sample_size, c->sample_size, c->out_channels);
    printf("block_out_channels:");
    for (int i = 0; i < c->n_levels; i++) printf(" %d", c->block_out_channels[i]);
    printf("\nlayers_per_block: %d\nattention at:", c->layers_per_block);
    for (int i = 0; i < c->n_attn; i++) printf(" %dpx", c->attn_resolutions[i]);
    printf(" (and the middle block)\nattention heads: %s\n", c->attention_head_dim ? "head_dim set" : "1 per block");
    printf("group norm: %d groups, eps %g\ndropout: %g\n", c->norm_num_groups, c->norm_eps, c->dropout);
    printf("forward GFLOP per image: %.3f\n", df_unet_forward_flops(c) / 1e9);
}

static df_status describe_preset(const char *preset) {
    df_unet_config c;
    size_t params;
    int tensors;
    df_status st = df_unet_preset(preset, &c);
    if (st == DF_OK) st = df_unet_config_counts(&c, &params, &tensors);
    if (st != DF_OK) return st;
    printf("preset: %s\nparameters: %zu\ntensors: %d\n", preset, params, tensors);
    print_unet_config(&c);
    return DF_OK;
}

static df_status describe_model(const char *path) {
    df_model *m = NULL;
    df_status st = cli_open_model("info", &path, 1, &m, NULL);
    if (st != DF_OK) return st;
    char desc[1024];
    df_model_describe(m, desc, sizeof desc);
    printf("model: %s\nnetwork: %s\nparameters: %zu\ntensors: %d\n", path, desc, df_model_param_count(m),
           df_model_tensor_count(m));
    if (df_model_kind(m) == DF_NET_UNET) print_unet_config(df_model_unet_config(m));
    if (df_model_num_classes(m) > 0) {
        const int null = df_model_null_class(m);
        if (null >= 0) printf("classes: %d (class-conditional; null class %d)\n", df_model_num_classes(m) - 1, null);
        else printf("classes: %d class embeddings (class-conditional; null class not known: --null-class J)\n",
                    df_model_num_classes(m));
        const char *names = df_model_class_names(m);
        for (int i = 0; names && *names; i++) {
            const char *end = strchr(names, '\n');
            const int len = end ? (int)(end - names) : (int)strlen(names);
            printf("  class %d: %.*s\n", i, len, names);
            names = end ? end + 1 : "";
        }
    }
    printf("schedule: %s, T = %d, beta %g .. %g\n", df_schedule_name(df_model_diffusion(m)->schedule.kind), df_model_diffusion(m)->schedule.T,
           df_model_diffusion(m)->schedule.beta_start, df_model_diffusion(m)->schedule.beta_end);
    printf("prediction: %s\nloss: %s\nvariance: %s\n", df_pred_name(df_model_diffusion(m)->pred), df_loss_name(df_model_diffusion(m)->loss),
           df_var_name(df_model_diffusion(m)->var));
    printf("trained steps: %ld\nseed: %llu\nEMA decay: %g\ndata: %s\n", df_model_step(m), (unsigned long long)df_model_seed(m),
           df_model_ema_decay(m), df_model_data(m));
    df_model_free(m);
    return DF_OK;
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *preset = NULL;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model to describe (model.safetensors or a diffusers folder)"},
        {"preset", ARG_STRING, &preset, "U-Net preset to describe: fmnist-small|ddpm-cifar10"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = cli_parse_flags("info", "usage: diffuse info [--model M | --preset NAME]", specs, NULL, argc, argv);
    if (rc >= 0) return rc;
    if (model && preset) return cli_error("info", df_fail(DF_ERR_ARG, "give at most one of --model and --preset"));
    char cpu[1024];
    df_cpu_describe(cpu, sizeof cpu);
    printf("%s\n", cpu);
    df_status st = preset ? describe_preset(preset) : model ? describe_model(model) : DF_OK;
    return st == DF_OK ? 0 : cli_error("info", st);
}
