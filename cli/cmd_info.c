/* cmd_info.c: `diffuse info` (a model's or a preset's configuration) and `diffuse predict` (the
 * network alone on NumPy input, for checking against other implementations). */
#include "cli.h"
#include <errno.h>
#include <string.h>

df_status cli_model_open(const char *path, int max_batch, df_model *m) { return df_model_open(path, max_batch, 0, m); }

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

int cmd_info(int argc, char **argv) {
    const char *model = NULL, *preset = NULL;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model to describe (model.safetensors or a diffusers folder)"},
        {"preset", ARG_STRING, &preset, "U-Net preset to describe: fmnist-small|ddpm-cifar10"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("info", "usage: diffuse info [--model M | --preset NAME]", specs, argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    if (model && preset) return cli_error("info", df_fail(DF_ERR_ARG, "give at most one of --model and --preset"));
    char cpu[1024];
    df_cpu_describe(cpu, sizeof cpu);
    printf("%s\n", cpu);
    if (!model && !preset) return 0;
    df_status st;
    if (preset) {
        df_unet_config c;
        size_t params;
        int tensors;
        if ((st = df_unet_preset(preset, &c)) || (st = df_unet_config_counts(&c, &params, &tensors)))
            return cli_error("info", st);
        printf("preset: %s\nparameters: %zu\ntensors: %d\n", preset, params, tensors);
        print_unet_config(&c);
        return 0;
    }
    df_model m;
    if ((st = cli_model_open(model, 1, &m))) return cli_error("info", st);
    char desc[1024];
    df_model_describe(&m, desc, sizeof desc);
    printf("model: %s\nnetwork: %s\nparameters: %zu\ntensors: %d\n", model, desc, df_model_param_count(&m), df_model_tensor_count(&m));
    if (m.kind == DF_NET_UNET) print_unet_config(&m.unet);
    printf("schedule: %s, T = %d, beta %g .. %g\n", df_schedule_name(m.diff.schedule.kind), m.diff.schedule.T,
           m.diff.schedule.beta_start, m.diff.schedule.beta_end);
    printf("prediction: %s\nloss: %s\nvariance: %s\n", df_pred_name(m.diff.pred), df_loss_name(m.diff.loss), df_var_name(m.diff.var));
    printf("trained steps: %ld\nseed: %llu\nEMA decay: %g\ndata: %s\n", m.step, (unsigned long long)m.seed, m.ema_decay, m.data);
    df_model_free(&m);
    return 0;
}

/* Parses "0,500,999" into t (at most cap values); returns the count or -1. */
static int parse_t_list(const char *s, int *t, int cap) {
    int n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > 1000000 || n == cap) return -1;
        t[n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return n;
}

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *tlist = NULL, *out = NULL, *precision = "fp32";
    int raw = 0, threads = 0;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model (model.safetensors or a diffusers folder)"},
        {"input", ARG_STRING, &input, "float32 N x C x H x W .npy (N x 2 for 2-D models)"},
        {"t", ARG_STRING, &tlist, "timestep index per input (0-based), comma separated; one value applies to all"},
        {"out", ARG_STRING, &out, "output .npy (float32, the network's raw prediction)"},
        {"raw", ARG_FLAG, &raw, "use the raw weights instead of the EMA weights"},
        {"threads", ARG_INT, &threads, "threads (default: all cores)"},
        {"precision", ARG_STRING, &precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("predict", "usage: diffuse predict --model M --input x.npy --t 0,500,999 --out y.npy", specs, argc,
                        argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    cli_set_threads(threads);
    if (!model || !input || !tlist || !out)
        return cli_error("predict", df_fail(DF_ERR_ARG, "--model, --input, --t and --out are all required"));
    df_precision prec;
    if (df_precision_from_name(precision, &prec)) return cli_error("predict", DF_ERR_ARG);
    int ndim;
    int64_t shape[8];
    float *x = NULL, *y = NULL;
    int *t = NULL;
    df_model m;
    memset(&m, 0, sizeof m);
    df_status st = df_npy_read_f32(input, &ndim, shape, &x);
    if (st) return cli_error("predict", st);
    if (ndim < 1) {
        free(x);
        return cli_error("predict", df_fail(DF_ERR_SHAPE, "%s: input must be an N x C x H x W (or N x D) array, not a scalar", input));
    }
    int n = (int)shape[0];
    if ((st = cli_model_open(model, n > 0 && n < 64 ? n : 64, &m))) goto done;
    df_model_set_precision(&m, prec);
    int want_ndim = m.kind == DF_NET_UNET ? 4 : 2;
    int64_t want[4] = {shape[0], m.channels, m.height, m.width};
    if (m.kind != DF_NET_UNET) want[1] = (int64_t)m.dim;
    int ok = ndim == want_ndim && shape[0] >= 1 && shape[0] <= 1000000;
    for (int d = 1; ok && d < want_ndim; d++) ok = shape[d] == want[d];
    if (!ok) {
        st = df_fail(DF_ERR_SHAPE, "%s: input must be float32 %s with C,H,W = %d,%d,%d", input,
                     want_ndim == 4 ? "N x C x H x W" : "N x D", m.channels, m.height, m.width);
        goto done;
    }
    t = malloc(sizeof(int) * (size_t)n);
    y = df_alloc(sizeof(float) * (size_t)n * m.dim, "predictions");
    if (!t || !y) {
        st = df_fail(DF_ERR_NOMEM, "out of memory");
        goto done;
    }
    int nt = parse_t_list(tlist, t, n);
    if (nt == 1)
        for (int j = 1; j < n; j++) t[j] = t[0];
    if (nt != 1 && nt != n) {
        st = df_fail(DF_ERR_ARG, "--t needs one timestep or one per input (%d), comma separated integers", n);
        goto done;
    }
    for (int j = 0; j < n; j++)
        if (t[j] >= m.schedule.T) {
            st = df_fail(DF_ERR_ARG, "--t value %d is outside 0..%d", t[j], m.schedule.T - 1);
            goto done;
        }
    m.use_ema = !raw;
    if ((st = df_model_predict(&m, n, t, x, y))) goto done;
    st = df_npy_write(out, "<f4", ndim, shape, y);
    if (st == DF_OK) fprintf(stderr, "wrote %s (%s, prediction of %s)\n", out, raw ? "raw weights" : "EMA weights", df_pred_name(m.diff.pred));
done:
    free(x);
    free(t);
    df_free(y);
    if (m.table) df_model_free(&m);
    return st == DF_OK ? 0 : cli_error("predict", st);
}
