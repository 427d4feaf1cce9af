/* cmd_sample.c: `diffuse sample` and `diffuse info`. */
#include "cli.h"
#include "image.h"
#include "model.h"
#include "toydata.h"
#include <string.h>

typedef struct {
    double t0;
    int every;
} sample_progress;

static int on_step(void *ctx, int step, int nsteps, int t_index, const float *x, int n, size_t dim) {
    sample_progress *p = ctx;
    if (step % p->every == 0 || step == nsteps) {
        double el = df_time() - p->t0;
        char extra[64];
        snprintf(extra, sizeof extra, "steps (%.1f steps/s)", step / el);
        cli_progress_bar("sample", step, nsteps, el, el / step * (nsteps - step), extra, step == nsteps);
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int cmd_sample(int argc, char **argv) {
    const char *model = NULL, *out = "samples.csv", *sampler = "ancestral", *var = NULL, *plot = NULL;
    int n = 1000, steps = 50, seed = 0, threads = 0, batch = 256, no_ema = 0, clip = 0;
    double eta = 0;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model checkpoint (model.safetensors)"},
        {"n", ARG_INT, &n, "number of samples (default 1000)"},
        {"out", ARG_STRING, &out, "output: points.csv for 2-D models"},
        {"sampler", ARG_STRING, &sampler, "ancestral (the note's algorithm, default) or ddim"},
        {"steps", ARG_INT, &steps, "DDIM steps (default 50)"},
        {"eta", ARG_DOUBLE, &eta, "DDIM eta (0 = deterministic, default 0)"},
        {"var", ARG_STRING, &var, "ancestral variance: posterior or beta (default: the model's)"},
        {"clip", ARG_FLAG, &clip, "clip the predicted x0 to [-1, 1]"},
        {"seed", ARG_INT, &seed, "random seed (default 0)"},
        {"batch", ARG_INT, &batch, "network batch size (default 256)"},
        {"no-ema", ARG_FLAG, &no_ema, "use the raw weights instead of the EMA weights"},
        {"plot", ARG_STRING, &plot, "also write a scatter plot PNG (2-D models)"},
        {"threads", ARG_INT, &threads, "threads (default: all cores)"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("sample", "usage: diffuse sample --model runs/toy/model.safetensors --n 2000 --out points.csv [options]",
                        specs, argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    cli_set_threads(threads);
    if (!model) return cli_error("sample", df_fail(DF_ERR_ARG, "--model is required"));
    if (n < 1 || n > 10000000) return cli_error("sample", df_fail(DF_ERR_ARG, "--n must be in 1..10000000"));
    if (batch < 1 || batch > 65536) return cli_error("sample", df_fail(DF_ERR_ARG, "--batch must be in 1..65536"));

    df_status st;
    df_sample_params sp;
    df_sample_params_init(&sp);
    if ((st = df_sampler_from_name(sampler, &sp.sampler))) return cli_error("sample", st);
    sp.steps = steps;
    sp.eta = eta;
    sp.seed = (uint64_t)seed;
    sp.clip_x0 = clip;
    sp.batch = batch;

    df_model m;
    if ((st = df_model_load(&m, model, batch, 0))) return cli_error("sample", st);
    sp.var = m.diff.var;
    if (var && (st = df_var_from_name(var, &sp.var))) goto done;
    m.use_ema = !no_ema;
    if (m.kind == DF_NET_MLP && !ends_with(out, ".csv")) {
        st = df_fail(DF_ERR_ARG, "a 2-D model writes points: --out must end in .csv (got %s)", out);
        goto done;
    }
    float *x = df_alloc(sizeof(float) * (size_t)n * m.dim, "samples");
    if (!x) {
        st = DF_ERR_NOMEM;
        goto done;
    }
    sample_progress pr = {df_time(), sp.sampler == DF_SAMPLER_DDIM ? 1 : 50};
    st = df_sample(&m.schedule, m.diff.pred, &sp, df_model_predict, &m, n, m.dim, 0, x, on_step, &pr);
    if (st == DF_OK) st = df_csv_write_points(out, x, n);
    if (st == DF_OK && plot) {
        df_points data;
        if (df_points_open(m.data, &data) == DF_OK) {
            float *d = malloc(sizeof(float) * 2 * (size_t)n);
            if (d) {
                df_points_draw(&data, 0x5eed, 0xfffffff0u, n, d);
                st = df_plot_scatter(plot, d, n, x, n, m.data);
            }
            free(d);
            df_points_free(&data);
        } else {
            st = df_plot_scatter(plot, x, 0, x, n, "samples");
        }
    }
    if (st == DF_OK) fprintf(stderr, "wrote %d samples to %s%s%s\n", n, out, plot ? " and " : "", plot ? plot : "");
    df_free(x);
done:
    df_model_free(&m);
    return st == DF_OK ? 0 : cli_error("sample", st);
}

int cmd_info(int argc, char **argv) {
    const char *model = NULL;
    arg_spec specs[] = {
        {"model", ARG_STRING, &model, "model checkpoint to describe"},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("info", "usage: diffuse info --model M", specs, argc, argv, 2);
    if (rc) return rc == 1 ? 0 : rc;
    if (!model) return cli_error("info", df_fail(DF_ERR_ARG, "--model is required"));
    df_model m;
    df_status st = df_model_load(&m, model, 1, 0);
    if (st) return cli_error("info", st);
    char desc[1024];
    df_model_describe(&m, desc, sizeof desc);
    printf("model: %s\n", model);
    printf("network: %s\n", desc);
    printf("parameters: %zu\n", df_param_table_count(m.table));
    printf("tensors: %d\n", m.table->count);
    printf("schedule: %s, T = %d, beta %g .. %g\n", df_schedule_name(m.diff.schedule.kind), m.diff.schedule.T,
           m.diff.schedule.beta_start, m.diff.schedule.beta_end);
    printf("prediction: %s\nloss: %s\nvariance: %s\n", df_pred_name(m.diff.pred), df_loss_name(m.diff.loss), df_var_name(m.diff.var));
    printf("trained steps: %ld\nseed: %llu\nEMA decay: %g\ndata: %s\n", m.step, (unsigned long long)m.seed, m.ema_decay, m.data);
    df_model_free(&m);
    return 0;
}
