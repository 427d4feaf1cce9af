/* cmd_predict.c: `diffuse predict`: the network alone on a NumPy input: y = f(x_t, t), the raw
 * prediction (eps, x0, mean or v, as the model was trained), for checking this implementation
 * against others such as diffusers on the same weights. */
#include "cli.h"
#include <errno.h>
#include <string.h>

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

/* The .npy input: at least one dimension, the first counting the inputs (a 0-d array has no N). */
static df_status read_input(const char *path, int *ndim, int64_t shape[8], float **x) {
    df_status st = df_npy_read_f32(path, ndim, shape, x);
    if (st == DF_OK && *ndim < 1) {
        free(*x);
        *x = NULL;
        st = df_fail(DF_ERR_SHAPE, "%s: input must be an N x C x H x W (or N x D) array, not a scalar", path);
    }
    return st;
}

/* The input must be what the network takes: N x C x H x W for a U-Net, N x D for the MLP. */
static df_status check_input_shape(const char *input, int ndim, const int64_t *shape, const df_model *m) {
    int want_ndim = df_model_kind(m) == DF_NET_UNET ? 4 : 2;
    int64_t want[4] = {shape[0], cli_model_shape(m).c, cli_model_shape(m).h, cli_model_shape(m).w};
    if (df_model_kind(m) != DF_NET_UNET) want[1] = (int64_t)cli_model_shape(m).dim;
    int ok = ndim == want_ndim && shape[0] >= 1 && shape[0] <= 1000000;
    for (int d = 1; ok && d < want_ndim; d++) ok = shape[d] == want[d];
    if (ok) return DF_OK;
    return df_fail(DF_ERR_SHAPE, "%s: input must be float32 %s with C,H,W = %d,%d,%d", input,
                   want_ndim == 4 ? "N x C x H x W" : "N x D", cli_model_shape(m).c, cli_model_shape(m).h, cli_model_shape(m).w);
}

/* --t into t[0..n): one value for every input or one per input, each a timestep of the model. */
static df_status read_timesteps(const char *tlist, int n, int T, int *t) {
    int nt = parse_t_list(tlist, t, n);
    if (nt == 1)
        for (int j = 1; j < n; j++) t[j] = t[0];
    if (nt != 1 && nt != n)
        return df_fail(DF_ERR_ARG, "--t needs one timestep or one per input (%d), comma separated integers", n);
    for (int j = 0; j < n; j++)
        if (t[j] >= T) return df_fail(DF_ERR_ARG, "--t value %d is outside 0..%d", t[j], T - 1);
    return DF_OK;
}

/* Runs m on the n inputs x at the timesteps --t and writes the predictions to out. */
static df_status predict(df_model *m, const char *tlist, int ndim, const int64_t *shape, const float *x,
                         const char *out) {
    int n = (int)shape[0];
    int *t = malloc(sizeof(int) * (size_t)n);
    float *y = df_alloc(sizeof(float) * (size_t)n * cli_model_shape(m).dim, "predictions");
    df_status st = DF_OK;
    if (!t || !y) st = df_fail(DF_ERR_NOMEM, "out of memory");
    if (st == DF_OK) st = read_timesteps(tlist, n, df_model_schedule(m)->T, t);
    if (st == DF_OK) st = df_model_predict(m, n, t, x, y);
    if (st == DF_OK) st = df_npy_write(out, "<f4", ndim, shape, y);
    free(t);
    df_free(y);
    return st;
}

int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *tlist = NULL, *out = NULL, *precision = "fp32", *device = NULL;
    int raw = 0, threads = 0;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model,
         "model (model.safetensors or a diffusers folder; default: the shipped fmnist-small)"},
        {"input", ARG_STRING, &input, "float32 N x C x H x W .npy (N x 2 for 2-D models)"},
        {"t", ARG_STRING, &tlist, "timestep index per input (0-based), comma separated; one value applies to all"},
        {"out", ARG_STRING, &out, "output .npy (float32, the network's raw prediction)"},
        {"raw", ARG_FLAG, &raw, "use the raw weights instead of the EMA weights"},
        {"threads", ARG_INT, &threads, "threads (default 0: all cores)"},
        {"device", ARG_STRING, &device, CLI_DEVICE_HELP},
        {"precision", ARG_STRING, &precision, "U-Net products: fp32 (default) or bf16 (bfloat16 inputs, fp32 sums)"},
        {NULL, 0, NULL, NULL, 0},
    };
    static const cli_range ranges[] = {{"threads", 0, CLI_MAX_THREADS}, {NULL, 0, 0}};
    int rc = cli_parse_flags("predict", "usage: diffuse predict [--model M] --input x.npy --t 0,500,999 --out y.npy",
                             specs, ranges, argc, argv);
    if (rc >= 0) return rc;
    cli_set_threads(threads);
    df_status dst = cli_check_device(device);
    if (dst != DF_OK) return cli_error("predict", dst);
    if (!input || !tlist || !out)
        return cli_error("predict", df_fail(DF_ERR_ARG, "--input, --t and --out are all required"));
    df_precision prec;
    if (df_precision_from_name(precision, &prec)) return cli_error("predict", DF_ERR_ARG);

    int ndim;
    int64_t shape[8];
    float *x = NULL;
    df_status st = read_input(input, &ndim, shape, &x);
    if (st) return cli_error("predict", st);
    int n = (int)shape[0];
    df_model *m = NULL;
    st = cli_open_model("predict", &model, n > 0 && n < 64 ? n : 64, &m, NULL);
    if (st == DF_OK) {
        df_model_set_precision(m, prec);
        df_model_set_use_ema(m, !raw);
        st = check_input_shape(input, ndim, shape, m);
    }
    if (st == DF_OK) st = predict(m, tlist, ndim, shape, x, out);
    if (st == DF_OK)
        fprintf(stderr, "wrote %s (%s, prediction of %s)\n", out, raw ? "raw weights" : "EMA weights",
                df_pred_name(df_model_diffusion(m)->pred));
    free(x);
    df_model_free(m);
    return st == DF_OK ? 0 : cli_error("predict", st);
}
