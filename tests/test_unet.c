/* test_unet.c: the DDPM U-Net (src/nets/unet.c) against facts that do not depend on PyTorch fixtures:
 * parameter counts and diffusers names/shapes of both presets, analytic FLOPs against
 * torch_ddpm.py, config validation, the DDPM init, a finite-difference check of the whole
 * backward pass (every tensor, dropout on), batch independence, the inference memory plan against
 * the training one, gradient accumulation, the packed memory plan against one without any sharing
 * (bit for bit), the split conv backward the plan relies on, and the precision setting of a df_model
 * (bf16 changes the U-Net's output a little, fp32 comes back bit for bit, the MLP ignores it). The
 * PyTorch comparison (in both precisions) is test_unet_torch.c. */
#include "check.h"
#include "model_impl.h" /* the model's U-Net, for random weights */
#include "common.h"
#include "ops.h"
#include "unet.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void check_shape(const df_param_table *t, const char *name, int ndim, int64_t d0, int64_t d1, int64_t d2,
                        int64_t d3) {
    const df_param_info *p = df_param_table_find(t, name);
    CHECK(p != NULL, "tensor %s missing", name);
    if (!p) return;
    int64_t want[4] = {d0, d1, d2, d3};
    int same = p->ndim == ndim;
    for (int d = 0; d < ndim && same; d++) same = p->shape[d] == want[d];
    CHECK(same, "%s: ndim %d shape [%lld,%lld,%lld,%lld], want ndim %d [%lld,%lld,%lld,%lld]", name, p->ndim,
          (long long)p->shape[0], (long long)p->shape[1], (long long)p->shape[2], (long long)p->shape[3], ndim,
          (long long)d0, (long long)d1, (long long)d2, (long long)d3);
}

static void test_presets(void) {
    df_unet_config c;
    df_unet *u = NULL;
    /* google/ddpm-cifar10-32: docs/unet.md section 6 */
    CHECK(df_unet_preset("ddpm-cifar10", &c) == DF_OK, "preset");
    CHECK(df_unet_new(&c, 1, 0, &u) == DF_OK, "new: %s", df_last_error());
    const df_param_table *t = df_unet_params(u);
    CHECK(df_param_table_count(t) == 35746307, "ddpm-cifar10 parameters %zu, want 35746307", df_param_table_count(t));
    CHECK(t->count == 328, "ddpm-cifar10 tensors %d, want 328", t->count);
    CHECK(df_unet_param_floats(u) >= df_param_table_count(t), "block floats");
    check_shape(t, "conv_in.weight", 4, 128, 3, 3, 3);
    check_shape(t, "conv_in.bias", 1, 128, 0, 0, 0);
    check_shape(t, "time_embedding.linear_1.weight", 2, 512, 128, 0, 0);
    check_shape(t, "time_embedding.linear_2.weight", 2, 512, 512, 0, 0);
    check_shape(t, "down_blocks.0.resnets.1.conv2.weight", 4, 128, 128, 3, 3);
    check_shape(t, "down_blocks.1.resnets.0.conv_shortcut.weight", 4, 256, 128, 1, 1);
    check_shape(t, "down_blocks.1.resnets.0.time_emb_proj.weight", 2, 256, 512, 0, 0);
    check_shape(t, "down_blocks.1.attentions.0.to_q.weight", 2, 256, 256, 0, 0);
    check_shape(t, "down_blocks.1.attentions.1.to_out.0.bias", 1, 256, 0, 0, 0);
    check_shape(t, "down_blocks.2.downsamplers.0.conv.weight", 4, 256, 256, 3, 3);
    check_shape(t, "mid_block.attentions.0.group_norm.weight", 1, 256, 0, 0, 0);
    check_shape(t, "mid_block.resnets.1.time_emb_proj.weight", 2, 256, 512, 0, 0);
    check_shape(t, "up_blocks.0.resnets.0.conv1.weight", 4, 256, 512, 3, 3);
    check_shape(t, "up_blocks.2.resnets.2.conv_shortcut.weight", 4, 256, 384, 1, 1);
    check_shape(t, "up_blocks.2.attentions.2.to_v.weight", 2, 256, 256, 0, 0);
    check_shape(t, "up_blocks.2.upsamplers.0.conv.weight", 4, 256, 256, 3, 3);
    check_shape(t, "up_blocks.3.resnets.0.norm1.weight", 1, 384, 0, 0, 0);
    check_shape(t, "up_blocks.3.resnets.1.conv1.weight", 4, 128, 256, 3, 3);
    check_shape(t, "conv_norm_out.weight", 1, 128, 0, 0, 0);
    check_shape(t, "conv_out.weight", 4, 3, 128, 3, 3);
    check_shape(t, "conv_out.bias", 1, 3, 0, 0, 0);
    CHECK(!df_param_table_find(t, "up_blocks.3.upsamplers.0.conv.weight"), "no upsampler on the last up block");
    CHECK(!df_param_table_find(t, "down_blocks.3.downsamplers.0.conv.weight"), "no downsampler on the last level");
    CHECK(!df_param_table_find(t, "down_blocks.0.attentions.0.to_q.weight"), "no attention at 32 px");
    CHECK(!df_param_table_find(t, "down_blocks.0.resnets.0.conv_shortcut.weight"), "no shortcut when Cin == Cout");
    for (int k = 0; k < t->count; k++) CHECK(t->info[k].offset % 16 == 0, "offset of %s", t->info[k].name);
    df_unet_free(u);
    /* 2 x MACs of torch_ddpm.py params --config cifar: fwd_macs_per_img 6221856768 */
    double f = df_unet_forward_flops(&c);
    CHECK(f == 2.0 * 6221856768.0, "ddpm-cifar10 flops %.0f want %.0f", f, 2.0 * 6221856768.0);

    /* torch_ddpm.py params --config small: params 1623169, fwd_macs_per_img 277198592 */
    CHECK(df_unet_preset("fmnist-small", &c) == DF_OK, "preset");
    CHECK(df_unet_new(&c, 2, 1, &u) == DF_OK, "new: %s", df_last_error());
    size_t np = df_param_table_count(df_unet_params(u));
    CHECK(np == 1623169, "fmnist-small parameters %zu, want 1623169 (torch_ddpm.py --config small)", np);
    check_shape(df_unet_params(u), "down_blocks.2.attentions.1.to_k.weight", 2, 64, 64, 0, 0);
    check_shape(df_unet_params(u), "up_blocks.0.attentions.2.group_norm.bias", 1, 64, 0, 0, 0);
    df_unet_free(u);
    f = df_unet_forward_flops(&c);
    CHECK(f == 2.0 * 277198592.0, "fmnist-small flops %.0f want %.0f", f, 2.0 * 277198592.0);

    CHECK(df_unet_preset("nope", &c) == DF_ERR_ARG, "unknown preset");
    CHECK(strstr(df_last_error(), "fmnist-small") && strstr(df_last_error(), "ddpm-cifar10"), "message lists presets: %s",
          df_last_error());
}

static void test_validate(void) {
    df_unet_config base, c;
    df_unet *u = NULL;
    df_unet_preset("fmnist-small", &base);
    CHECK(df_unet_config_validate(&base) == DF_OK, "preset valid: %s", df_last_error());
    c = base, c.norm_num_groups = 24;
    CHECK(df_unet_config_validate(&c) == DF_ERR_ARG && strstr(df_last_error(), "norm_num_groups"), "groups: %s",
          df_last_error());
    c = base, c.sample_size = 30;  /* 30 -> 15 -> 7.5 */
    CHECK(df_unet_config_validate(&c) == DF_ERR_ARG && strstr(df_last_error(), "divisible"), "size: %s", df_last_error());
    c = base, c.attn_resolutions[0] = 8;
    CHECK(df_unet_config_validate(&c) == DF_ERR_ARG && strstr(df_last_error(), "attention resolution"), "attn: %s",
          df_last_error());
    c = base, c.attention_head_dim = 48;
    CHECK(df_unet_config_validate(&c) == DF_ERR_ARG && strstr(df_last_error(), "attention_head_dim"), "heads: %s",
          df_last_error());
    c = base, c.n_levels = 0;
    CHECK(df_unet_config_validate(&c) == DF_ERR_ARG, "levels");
    c = base, c.dropout = 1.0f;
    CHECK(df_unet_config_validate(&c) == DF_ERR_ARG, "dropout");
    c = base, c.norm_eps = 0.0f;
    CHECK(df_unet_config_validate(&c) == DF_ERR_ARG, "eps");
    CHECK(df_unet_new(&base, 0, 0, &u) == DF_ERR_ARG && u == NULL, "max_batch 0");
    /* An arena far too large must fail cleanly with DF_ERR_NOMEM and the byte count. */
    c = base, c.sample_size = 4096, c.n_attn = 1, c.attn_resolutions[0] = 4096;
    CHECK(df_unet_new(&c, 1 << 20, 1, &u) == DF_ERR_NOMEM && u == NULL, "huge arena");
    CHECK(strstr(df_last_error(), "bytes") != NULL, "NOMEM message: %s", df_last_error());
}

/* diffusers config.json: the published google/ddpm-cifar10-32 config (docs/unet.md section 6,
 * verbatim), round trips of both presets, and refusals. */
static void test_config_json(void) {
    static const char cifar[] =
        "{\"_class_name\": \"UNet2DModel\", \"act_fn\": \"silu\", \"add_attention\": true, \"attention_head_dim\": null,"
        " \"block_out_channels\": [128, 256, 256, 256], \"center_input_sample\": false, \"class_embed_type\": null,"
        " \"down_block_types\": [\"DownBlock2D\", \"AttnDownBlock2D\", \"DownBlock2D\", \"DownBlock2D\"],"
        " \"downsample_padding\": 0, \"flip_sin_to_cos\": false, \"freq_shift\": 1, \"in_channels\": 3,"
        " \"layers_per_block\": 2, \"mid_block_scale_factor\": 1, \"norm_eps\": 1e-06, \"norm_num_groups\": 32,"
        " \"num_class_embeds\": null, \"out_channels\": 3, \"resnet_time_scale_shift\": \"default\","
        " \"sample_size\": 32, \"time_embedding_type\": \"positional\","
        " \"up_block_types\": [\"UpBlock2D\", \"UpBlock2D\", \"AttnUpBlock2D\", \"UpBlock2D\"]}";
    df_unet_config c, want, back;
    CHECK(df_unet_config_from_json(cifar, strlen(cifar), &c) == DF_OK, "published config: %s", df_last_error());
    df_unet_preset("ddpm-cifar10", &want);
    want.dropout = 0.0f;  /* absent from the published config: diffusers loads 0.0 */
    CHECK(memcmp(&c, &want, sizeof c) == 0, "published ddpm-cifar10 config = preset with dropout 0");
    const char *presets[2] = {"ddpm-cifar10", "fmnist-small"};
    char buf[4096];
    for (int k = 0; k < 2; k++) {
        df_unet_preset(presets[k], &want);
        size_t len = df_unet_config_to_json(&want, buf, sizeof buf);
        CHECK(len < sizeof buf, "to_json length %zu", len);
        CHECK(df_unet_config_from_json(buf, len, &back) == DF_OK, "%s round trip: %s", presets[k], df_last_error());
        CHECK(memcmp(&back, &want, sizeof back) == 0, "%s: config -> JSON -> config is the identity: %s", presets[k], buf);
    }
    df_unet_preset("ddpm-cifar10", &want);
    size_t len = df_unet_config_to_json(&want, buf, 10);
    CHECK(len > 10 && strlen(buf) == 9, "a short buffer is cut and terminated, the full length returned");
    /* refusals: each edit of the published text */
    struct { const char *from, *to; df_status st; } bad[] = {
        {"\"silu\"", "\"gelu\"", DF_ERR_UNSUPPORTED},
        {"\"downsample_padding\": 0", "\"downsample_padding\": 1", DF_ERR_UNSUPPORTED},
        {"\"AttnUpBlock2D\"", "\"UpBlock2D\"", DF_ERR_UNSUPPORTED},
        {"\"positional\"", "\"fourier\"", DF_ERR_UNSUPPORTED},
        {"\"in_channels\": 3,", "", DF_ERR_FORMAT},
        {"\"norm_num_groups\": 32", "\"norm_num_groups\": 24", DF_ERR_ARG},
        {"[128, 256, 256, 256]", "[128, 256, 256]", DF_ERR_FORMAT},
        {"}", ",}", DF_ERR_FORMAT},
    };
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        char text[2048];
        const char *at = strstr(cifar, bad[b].from);
        CHECK(at != NULL, "edit %zu applies", b);
        if (!at) continue;
        if (strcmp(bad[b].from, "}") == 0) at = strrchr(cifar, '}');
        size_t pre = (size_t)(at - cifar);
        snprintf(text, sizeof text, "%.*s%s%s", (int)pre, cifar, bad[b].to, at + strlen(bad[b].from));
        df_status st = df_unet_config_from_json(text, strlen(text), &c);
        CHECK(st == bad[b].st, "edit %s -> %s: status %s (%s), want %s", bad[b].from, bad[b].to, df_status_name(st),
              df_last_error(), df_status_name(bad[b].st));
    }
}

/* The tiny network of the gradient checks: 8x8, channels 8,16, 4 groups, attention at 4 px (level 1
 * and mid), one resnet per down level. */
static df_unet_config tiny_config(void) {
    df_unet_config c;
    memset(&c, 0, sizeof c);
    c.in_channels = 2, c.out_channels = 3, c.sample_size = 8;
    c.n_levels = 2, c.block_out_channels[0] = 8, c.block_out_channels[1] = 16;
    c.layers_per_block = 1;
    c.n_attn = 1, c.attn_resolutions[0] = 4;
    c.norm_num_groups = 4, c.norm_eps = 1e-6f;
    c.dropout = 0.0f;
    c.attention_head_dim = 0;
    c.freq_shift = 1, c.flip_sin_to_cos = 0;
    return c;
}

static int name_ends(const char *name, const char *suffix) {
    size_t a = strlen(name), b = strlen(suffix);
    return a >= b && strcmp(name + a - b, suffix) == 0;
}

static void test_init(void) {
    df_unet_config c;
    df_unet_preset("fmnist-small", &c);
    df_unet *u = NULL;
    CHECK(df_unet_new(&c, 1, 0, &u) == DF_OK, "new");
    size_t nf = df_unet_param_floats(u);
    float *p = malloc(nf * sizeof(float)), *q = malloc(nf * sizeof(float));
    df_unet_init(u, p, 7);
    df_unet_init(u, q, 7);
    CHECK(memcmp(p, q, nf * sizeof(float)) == 0, "init is a function of the seed");
    df_unet_init(u, q, 8);
    CHECK(memcmp(p, q, nf * sizeof(float)) != 0, "another seed, other weights");
    const df_param_table *t = df_unet_params(u);
    int zero_tensors = 0;
    for (int k = 0; k < t->count; k++) {
        const df_param_info *info = &t->info[k];
        const float *w = p + info->offset;
        int zero_init = strstr(info->name, ".conv2.") || strstr(info->name, ".to_out.0.") ||
                        strncmp(info->name, "conv_out.", 9) == 0;
        int norm = strstr(info->name, "norm") != NULL;
        double maxabs = 0.0, sum = 0.0;
        for (size_t e = 0; e < info->numel; e++) maxabs = fmax(maxabs, fabs(w[e])), sum += w[e];
        if (zero_init) {
            zero_tensors++;
            CHECK(maxabs == 0.0, "%s must be zero after init, max |w| %g", info->name, maxabs);
        } else if (norm) {
            float want = name_ends(info->name, ".weight") ? 1.0f : 0.0f;
            int ok = 1;
            for (size_t e = 0; e < info->numel; e++) ok &= w[e] == want;
            CHECK(ok, "%s must be all %g", info->name, (double)want);
        } else {
            /* U(-b, b), b = 1/sqrt(fan_in): every value within b, and the largest close to b for big tensors */
            /* a bias shares the fan-in of its weight, registered just before it */
            const df_param_info *wi = info->ndim >= 2 ? info : &t->info[k - 1];
            int64_t fan_in = wi->shape[1] * (wi->ndim == 4 ? wi->shape[2] * wi->shape[3] : 1);
            double bound = 1.0 / sqrt((double)fan_in);
            CHECK(maxabs <= bound && maxabs > 0.0, "%s: max |w| %g, bound %g", info->name, maxabs, bound);
            if (info->numel >= 1000)
                CHECK(maxabs > 0.99 * bound && fabs(sum / info->numel) < 0.05 * bound, "%s: max %g mean %g bound %g",
                      info->name, maxabs, sum / info->numel, bound);
        }
    }
    /* 2 x (6 down + 2 mid + 9 up) resnets' conv2 + (2 + 1 + 3) attentions' to_out.0 + conv_out, weight and bias */
    CHECK(zero_tensors == 2 * (17 + 6 + 1), "zero-initialised tensors %d, want %d", zero_tensors, 2 * (17 + 6 + 1));
    free(p);
    free(q);
    df_unet_free(u);
}

/* Parameters for the gradient checks: every tensor random and non-zero (DDPM's zero init would make
 * most gradients vanish), weights U(-sqrt(3/fan_in), +) so activations stay O(1). */
static void random_params(const df_unet *u, float *p, uint64_t seed) {
    const df_param_table *t = df_unet_params(u);
    df_unet_init(u, p, seed);
    for (int k = 0; k < t->count; k++) {
        const df_param_info *info = &t->info[k];
        float *w = p + info->offset;
        df_randu(seed + 1, DF_STREAM_USER, (uint32_t)k, 0, w, info->numel);
        double scale = 0.2;
        if (info->ndim >= 2) {
            int64_t fan_in = info->shape[1] * (info->ndim == 4 ? info->shape[2] * info->shape[3] : 1);
            scale = sqrt(3.0 / (double)fan_in);
        }
        int gn_weight = strstr(info->name, "norm") && name_ends(info->name, ".weight");
        for (size_t e = 0; e < info->numel; e++) w[e] = (float)((gn_weight ? 1.0 : 0.0) + (2.0 * w[e] - 1.0) * scale);
    }
}

/* L = sum_i r_i out_i in double, so dL/dout = r. */
static double weighted_sum(const float *out, const float *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)out[i] * r[i];
    return s;
}

static void gradient_check(df_unet_config c, const char *what) {
    const int n = 2;
    const int t_index[2] = {3, 917};
    const uint64_t dseed = 99;
    const uint32_t dstep = 5;
    const int classes[2] = {2, 0}, *y = c.num_class_embeds ? classes : NULL;  /* row 1 unused: its gradient is 0 */
    df_unet *u = NULL;
    CHECK(df_unet_new(&c, n, 1, &u) == DF_OK, "new: %s", df_last_error());
    if (!u) return;
    size_t nf = df_unet_param_floats(u), nx = (size_t)n * c.in_channels * c.sample_size * c.sample_size;
    size_t ny = (size_t)n * c.out_channels * c.sample_size * c.sample_size;
    float *p = malloc(nf * sizeof(float)), *g = calloc(nf, sizeof(float));
    float *x = malloc(nx * sizeof(float)), *out = malloc(ny * sizeof(float)), *r = malloc(ny * sizeof(float));
    random_params(u, p, 11);
    df_randn(12, DF_STREAM_USER, 1, 0, x, nx);
    df_randn(12, DF_STREAM_USER, 2, 0, r, ny);
    df_unet_forward(u, p, n, x, t_index, y, out, 1, dseed, dstep);
    df_unet_backward(u, p, g, n, r);

    const df_param_table *t = df_unet_params(u);
    double gmax = 0.0;
    for (int k = 0; k < t->count; k++)
        for (size_t e = 0; e < t->info[k].numel; e++) gmax = fmax(gmax, fabs(g[t->info[k].offset + e]));
    /* Central differences through the float32 network, L accumulated in double. h = 1e-2: the
     * rounding noise of L (|L| ~ 10, a few float ulps through the net, ~1e-5 absolute) over h is
     * ~1e-3, and the truncation error is h^2/6 |d3L| ~ 2e-5 |d3L|.
     * Tolerance |fd - an| <= 5e-3 |an| + 3e-4 max|grad|: the relative part covers truncation on the
     * large entries, the absolute part the rounding noise on entries near zero (some are exactly zero
     * in exact arithmetic, e.g. to_k.bias, which the softmax ignores). Measured worst is ~0.1 of this
     * tolerance; dropping one term of the backward (a residual, the dropout mask, the time-embedding
     * gradient) gives errors of 100x-600x the tolerance. */
    const double h = 1e-2, rtol = 5e-3, atol = 3e-4 * gmax;
    double worst = 0.0;
    const char *worst_name = "";
    int checked = 0, bad = 0;
    for (int k = 0; k < t->count; k++) {
        const df_param_info *info = &t->info[k];
        /* 3 elements of every tensor: the first, the last and one in between */
        size_t picks[3] = {0, info->numel - 1, (info->numel * 7919u + (size_t)k * 31u) % info->numel};
        for (int s = 0; s < 3; s++) {
            size_t idx = info->offset + picks[s];
            float keep = p[idx];
            p[idx] = keep + (float)h;
            df_unet_forward(u, p, n, x, t_index, y, out, 1, dseed, dstep);
            double lp = weighted_sum(out, r, ny);
            p[idx] = keep - (float)h;
            df_unet_forward(u, p, n, x, t_index, y, out, 1, dseed, dstep);
            double lm = weighted_sum(out, r, ny);
            p[idx] = keep;
            double fd = (lp - lm) / ((double)(keep + (float)h) - (double)(keep - (float)h));
            double an = g[idx], err = fabs(fd - an), lim = rtol * fabs(an) + atol;
            checked++;
            if (!isfinite(an) || err > lim) {
                bad++;
                if (bad <= 10) printf("  %s: %s[%zu] analytic %.6g numeric %.6g\n", what, info->name, picks[s], an, fd);
            }
            if (err / lim > worst) worst = err / lim, worst_name = info->name;
        }
    }
    printf("%s: %d gradient entries from %d tensors, worst |fd-an|/tol = %.3f (%s), max|grad| %.3g\n", what, checked,
           t->count, worst, worst_name, gmax);
    CHECK(bad == 0, "%s: %d of %d gradient entries outside tolerance", what, bad, checked);
    free(p), free(g), free(x), free(out), free(r);
    df_unet_free(u);
}

static double max_rel_diff(const float *a, const float *b, size_t n) {
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]) / fmax(1e-3, fabs((double)b[i])));
    return m;
}

/* A batched forward equals single forwards; the inference plan equals the training plan. */
static void test_batch_and_plans(void) {
    df_unet_config c = tiny_config();
    c.dropout = 0.1f;
    const int n = 3, t_index[3] = {0, 500, 999};
    df_unet *inf = NULL, *trn = NULL;
    CHECK(df_unet_new(&c, n, 0, &inf) == DF_OK, "new");
    CHECK(df_unet_new(&c, n, 1, &trn) == DF_OK, "new");
    CHECK(inf->act_floats < trn->act_floats && inf->grad == NULL, "the inference arena is smaller (%zu vs %zu)",
          inf->act_floats, trn->act_floats);
    size_t nf = df_unet_param_floats(inf), img = (size_t)c.in_channels * 64, oimg = (size_t)c.out_channels * 64;
    float *p = malloc(nf * sizeof(float)), *x = malloc(n * img * sizeof(float));
    float *batched = malloc(n * oimg * sizeof(float)), *single = malloc(n * oimg * sizeof(float));
    float *other = malloc(n * oimg * sizeof(float));
    random_params(inf, p, 21);
    df_randn(22, DF_STREAM_USER, 0, 0, x, n * img);
    df_unet_forward(inf, p, n, x, t_index, NULL, batched, 0, 0, 0);
    for (int k = 0; k < n; k++) df_unet_forward(inf, p, 1, x + k * img, t_index + k, NULL, single + k * oimg, 0, 0, 0);
    /* Every op treats images independently in the same order of operations, so the rows agree to the
     * last bit; allow 1e-6 relative in case a BLAS kernel blocks differently for another batch size. */
    double d = max_rel_diff(batched, single, n * oimg);
    printf("batch independence: max rel diff %.3g (tol 1e-6)\n", d);
    CHECK(d <= 1e-6, "batched vs single forward: %g", d);
    /* The same network on the training plan (eval forward, then training forward with dropout off
     * is covered by fmnist below): identical arithmetic, so identical bits. */
    df_unet_forward(trn, p, n, x, t_index, NULL, other, 0, 0, 0);
    CHECK(memcmp(other, batched, n * oimg * sizeof(float)) == 0, "training plan eval forward differs from inference plan");
    /* A training forward applies dropout: different from eval, but a function of (seed, step). */
    df_unet_forward(trn, p, n, x, t_index, NULL, other, 1, 5, 1);
    CHECK(max_rel_diff(other, batched, n * oimg) > 1e-3, "dropout changes the output");
    df_unet_forward(trn, p, n, x, t_index, NULL, single, 1, 5, 1);
    CHECK(memcmp(other, single, n * oimg * sizeof(float)) == 0, "dropout is a function of seed and step");
    df_unet_forward(trn, p, n, x, t_index, NULL, single, 1, 5, 2);
    CHECK(memcmp(other, single, n * oimg * sizeof(float)) != 0, "another step, another mask");
    free(p), free(x), free(batched), free(single), free(other);
    df_unet_free(inf);
    df_unet_free(trn);
}

/* Backward accumulates into grads (and zeroes its own skip gradients between calls). */
static void test_accumulate(void) {
    df_unet_config c = tiny_config();
    c.layers_per_block = 2;
    const int n = 2, t_index[2] = {10, 900};
    df_unet *u = NULL;
    CHECK(df_unet_new(&c, n, 1, &u) == DF_OK, "new");
    size_t nf = df_unet_param_floats(u), nx = (size_t)n * c.in_channels * 64, ny = (size_t)n * c.out_channels * 64;
    float *p = malloc(nf * sizeof(float)), *g1 = calloc(nf, sizeof(float)), *g2 = calloc(nf, sizeof(float));
    float *x = malloc(nx * sizeof(float)), *out = malloc(ny * sizeof(float)), *dout = malloc(ny * sizeof(float));
    random_params(u, p, 31);
    df_randn(32, DF_STREAM_USER, 0, 0, x, nx);
    df_randn(32, DF_STREAM_USER, 1, 0, dout, ny);
    df_unet_forward(u, p, n, x, t_index, NULL, out, 1, 0, 0);
    df_unet_backward(u, p, g1, n, dout);
    df_unet_backward(u, p, g2, n, dout);
    df_unet_backward(u, p, g2, n, dout);
    double worst = 0.0, gmax = 0.0;
    int finite = 1;
    for (size_t i = 0; i < nf; i++) {
        finite &= isfinite(g1[i]) != 0;
        gmax = fmax(gmax, fabs(g1[i]));
        worst = fmax(worst, fabs((double)g2[i] - 2.0 * g1[i]));
    }
    CHECK(finite && gmax > 0.0, "finite non-zero gradients (max %g)", gmax);
    /* The second backward adds its partial sums onto g1 (e.g. one image at a time), so roundings
     * differ from 2*g1 by a few float ulps of the partials: 1e-5 of the largest gradient. */
    CHECK(worst <= 1e-5 * gmax, "two backwards accumulate to 2x: worst %g (max grad %g)", worst, gmax);
    free(p), free(g1), free(g2), free(x), free(out), free(dout);
    df_unet_free(u);
}

/* fmnist-small, 3 levels: a training forward (dropout 0) on the training plan equals the forward on
 * the inference plan, bit for bit (same ops, same order; only the buffers differ). */
static void test_fmnist_plans(void) {
    df_unet_config c;
    df_unet_preset("fmnist-small", &c);
    const int t_index[1] = {10};
    df_unet *u = NULL, *inf = NULL;
    CHECK(df_unet_new(&c, 1, 1, &u) == DF_OK, "new");
    CHECK(df_unet_new(&c, 1, 0, &inf) == DF_OK, "new");
    size_t nf = df_unet_param_floats(u), nx = 28 * 28;
    float *p = malloc(nf * sizeof(float)), *x = malloc(nx * sizeof(float));
    float *out = malloc(nx * sizeof(float)), *out2 = malloc(nx * sizeof(float));
    random_params(u, p, 41);
    df_randn(42, DF_STREAM_USER, 0, 0, x, nx);
    df_unet_forward(u, p, 1, x, t_index, NULL, out, 1, 0, 0);
    df_unet_forward(inf, p, 1, x, t_index, NULL, out2, 0, 0, 0);
    double mx = 0.0;
    for (size_t i = 0; i < nx; i++) mx = fmax(mx, fabs(out[i]));
    CHECK(mx > 0.1 && isfinite(mx), "fmnist-small output is non-trivial (max %g)", mx);
    CHECK(memcmp(out, out2, nx * sizeof(float)) == 0, "fmnist-small: training forward (dropout 0) equals inference");
    printf("fmnist-small arenas for batch 1: training %.1f MB activations + %.1f MB gradients, inference %.1f MB\n",
           u->act_floats * 4e-6, u->grad_floats * 4e-6, inf->act_floats * 4e-6);
    free(p), free(x), free(out), free(out2);
    df_unet_free(u);
    df_unet_free(inf);
}

/* The packed plan (buffers share memory where their lifetimes do not meet) against a plan that gives
 * every buffer its own memory: a lifetime declared too short lets a later buffer overwrite data that
 * is still to be read, so any difference in the outputs or the gradients is a planning bug. Every
 * node kind, dropout, several heads, both precisions, a batch below max_batch, an eval forward, and a
 * second backward (which re-runs the forward). */
static void test_packed_plan(void) {
    df_unet_config c = tiny_config();
    c.n_levels = 3, c.block_out_channels[2] = 16;  /* levels at 8, 4, 2 px */
    c.layers_per_block = 2;
    c.dropout = 0.2f;
    c.attention_head_dim = 4;
    const int B = 3, t_index[3] = {7, 420, 999};
    df_unet *pk = NULL, *ref = NULL;
    CHECK(df_unet_new(&c, B, 1, &pk) == DF_OK, "new: %s", df_last_error());
    df_unet_set_plan_reuse(0);
    CHECK(df_unet_new(&c, B, 1, &ref) == DF_OK, "new (no sharing): %s", df_last_error());
    df_unet_set_plan_reuse(1);
    if (!pk || !ref) return;
    printf("packed plan: arena %zu floats (most live at once %zu), without sharing %zu\n", pk->act_floats,
           pk->live_floats, ref->act_floats);
    CHECK(pk->live_floats <= pk->act_floats && pk->act_floats < ref->act_floats / 2, "packing: %zu live, %zu, %zu",
          pk->live_floats, pk->act_floats, ref->act_floats);
    size_t nf = df_unet_param_floats(pk), img = (size_t)c.in_channels * 64, oimg = (size_t)c.out_channels * 64;
    float *p = malloc(nf * sizeof(float)), *x = malloc(B * img * sizeof(float)), *dout = malloc(B * oimg * sizeof(float));
    float *o1 = malloc(B * oimg * sizeof(float)), *o2 = malloc(B * oimg * sizeof(float));
    float *g1 = malloc(nf * sizeof(float)), *g2 = malloc(nf * sizeof(float)), *g3 = malloc(nf * sizeof(float));
    random_params(pk, p, 61);
    df_randn(62, DF_STREAM_USER, 0, 0, x, B * img);
    df_randn(62, DF_STREAM_USER, 1, 0, dout, B * oimg);
    for (int prec = 0; prec < 2; prec++) {
        pk->precision = ref->precision = prec ? DF_PRECISION_BF16 : DF_PRECISION_FP32;
        for (int n = B; n >= B - 1; n--) {
            const char *pn = prec ? "bf16" : "fp32";
            memset(g1, 0, nf * sizeof(float)), memset(g2, 0, nf * sizeof(float)), memset(g3, 0, nf * sizeof(float));
            df_unet_forward(pk, p, n, x, t_index, NULL, o1, 1, 63, (uint32_t)n);
            df_unet_forward(ref, p, n, x, t_index, NULL, o2, 1, 63, (uint32_t)n);
            CHECK(memcmp(o1, o2, n * oimg * sizeof(float)) == 0, "%s n=%d: training forward, packed vs unshared", pn, n);
            df_unet_backward(pk, p, g1, n, dout);
            df_unet_backward(ref, p, g2, n, dout);
            CHECK(memcmp(g1, g2, nf * sizeof(float)) == 0, "%s n=%d: gradients, packed vs unshared", pn, n);
            df_unet_backward(pk, p, g3, n, dout);  /* re-runs the forward first */
            CHECK(memcmp(g1, g3, nf * sizeof(float)) == 0, "%s n=%d: a second backward gives the same gradients", pn, n);
            df_unet_forward(pk, p, n, x, t_index, NULL, o1, 0, 0, 0);
            df_unet_forward(ref, p, n, x, t_index, NULL, o2, 0, 0, 0);
            CHECK(memcmp(o1, o2, n * oimg * sizeof(float)) == 0, "%s n=%d: eval forward, packed vs unshared", pn, n);
        }
    }
    free(p), free(x), free(dout), free(o1), free(o2), free(g1), free(g2), free(g3);
    df_unet_free(pk);
    df_unet_free(ref);
}

/* The plan runs some conv backwards as two calls, the weight gradient (dinp NULL) and then the input
 * gradient (dw, db NULL, no input): together they must equal the one call bit for bit. */
static void test_conv_backward_split(void) {
    const struct { int n, ic, hw, oc, k, stride, pad_lo, pad_hi; } shapes[] = {
        {3, 8, 8, 16, 3, 1, 1, 1}, {3, 24, 8, 8, 3, 1, 1, 1}, {16, 8, 4, 8, 3, 1, 1, 1}, {2, 5, 7, 3, 3, 1, 1, 1},
        {3, 16, 8, 16, 3, 2, 0, 1}, {3, 24, 8, 8, 1, 1, 0, 0}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int prec = 0; prec < 2; prec++) {
            df_conv_shape s;
            df_conv_shape_init(&s, shapes[k].n, shapes[k].ic, shapes[k].hw, shapes[k].hw, shapes[k].oc, shapes[k].k,
                               shapes[k].stride, shapes[k].pad_lo, shapes[k].pad_lo, shapes[k].pad_hi, shapes[k].pad_hi);
            s.precision = prec ? DF_PRECISION_BF16 : DF_PRECISION_FP32;
            size_t nx = (size_t)s.n * s.ic * s.h * s.w, ny = (size_t)s.n * s.oc * s.oh * s.ow;
            size_t nw = (size_t)s.oc * s.ic * s.kh * s.kw;
            float *x = malloc(nx * sizeof(float)), *dy = malloc(ny * sizeof(float)), *w = malloc(nw * sizeof(float));
            float *dx1 = calloc(nx, sizeof(float)), *dx2 = calloc(nx, sizeof(float));
            float *dw1 = calloc(nw, sizeof(float)), *dw2 = calloc(nw, sizeof(float));
            float *db1 = calloc((size_t)s.oc, sizeof(float)), *db2 = calloc((size_t)s.oc, sizeof(float));
            float *ws = malloc(df_conv2d_scratch_floats(&s) * sizeof(float));
            df_randn(71, DF_STREAM_USER, (uint32_t)k, 0, x, nx);
            df_randn(71, DF_STREAM_USER, (uint32_t)k, 1, dy, ny);
            df_randn(71, DF_STREAM_USER, (uint32_t)k, 2, w, nw);
            df_conv2d_backward(dx1, dw1, db1, dy, x, w, &s, ws);
            df_conv2d_backward(NULL, dw2, db2, dy, x, w, &s, ws);
            df_conv2d_backward(dx2, NULL, NULL, dy, NULL, w, &s, ws);
            CHECK(memcmp(dx1, dx2, nx * sizeof(float)) == 0 && memcmp(dw1, dw2, nw * sizeof(float)) == 0 &&
                      memcmp(db1, db2, (size_t)s.oc * sizeof(float)) == 0,
                  "conv %d->%d k%d s%d %dx%d n%d %s: split backward differs from the joint call", s.ic, s.oc, s.kh,
                  s.stride, s.h, s.w, s.n, prec ? "bf16" : "fp32");
            free(x), free(dy), free(w), free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2), free(ws);
        }
}

/* df_model_set_precision: bf16 moves the U-Net's prediction by bf16 rounding noise (well above fp32
 * noise, well below the signal), switching back to fp32 restores it bit for bit, and the MLP
 * ignores the setting. Also the names. */
static void test_model_precision(void) {
    df_precision p;
    CHECK(df_precision_from_name("bf16", &p) == DF_OK && p == DF_PRECISION_BF16, "bf16 by name");
    CHECK(df_precision_from_name("fp32", &p) == DF_OK && p == DF_PRECISION_FP32, "fp32 by name");
    CHECK(strcmp(df_precision_name(DF_PRECISION_BF16), "bf16") == 0, "name of bf16");
    EXPECT_STATUS(df_precision_from_name("fp16", &p), DF_ERR_ARG, "unknown precision 'fp16'", "fp32, bf16");

    df_unet_config c = tiny_config();
    c.out_channels = c.in_channels;  /* a denoiser */
    df_diffusion_config dc;
    df_diffusion_config_init(&dc);
    df_model *m;
    CHECK(df_model_new_unet(&c, &dc, 2, 0, 5, &m) == DF_OK, "new model: %s", df_last_error());
    random_params(m->net, m->ema, 51);  /* predict uses the EMA weights; DDPM's zero init would give 0 */
    const int n = 2, t[2] = {3, 700};
    float *x = malloc(n * m->dim * sizeof(float)), *a = malloc(n * m->dim * sizeof(float));
    float *b = malloc(n * m->dim * sizeof(float)), *a2 = malloc(n * m->dim * sizeof(float));
    df_randn(52, DF_STREAM_USER, 0, 0, x, n * m->dim);
    CHECK(df_model_predict(m, n, t, x, a) == DF_OK, "predict fp32");
    df_model_set_precision(m, DF_PRECISION_BF16);
    CHECK(df_model_predict(m, n, t, x, b) == DF_OK, "predict bf16");
    df_model_set_precision(m, DF_PRECISION_FP32);
    CHECK(df_model_predict(m, n, t, x, a2) == DF_OK, "predict fp32 again");
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n * m->dim; i++) diff = fmax(diff, fabs((double)b[i] - a[i])), scale = fmax(scale, fabs(a[i]));
    /* bf16 noise of ~20 products: measured 9.0e-3 of the largest output here (test_unet_torch up to
     * 8e-3); fp32 noise would be ~1e-6 */
    printf("model precision: bf16 vs fp32 prediction max|diff| %.3g of max|out| %.3g (rel %.3g)\n", diff, scale,
           diff / scale);
    CHECK(scale > 0.1 && diff > 1e-5 * scale && diff < 3e-2 * scale, "bf16 prediction: diff %g, scale %g", diff, scale);
    CHECK(memcmp(a, a2, n * m->dim * sizeof(float)) == 0, "back to fp32 gives the fp32 prediction bit for bit");
    free(x), free(a), free(b), free(a2);
    df_model_free(m);

    df_mlp_config mc;
    df_mlp_config_init(&mc);
    CHECK(df_model_new_mlp(&mc, &dc, 4, 0, 6, &m) == DF_OK, "new mlp: %s", df_last_error());
    float xm[8] = {0.1f, -0.3f, 1.2f, 0.5f, -2.0f, 0.0f, 0.7f, 0.9f}, ym[8], ym2[8];
    const int tm[4] = {0, 10, 500, 999};
    CHECK(df_model_predict(m, 4, tm, xm, ym) == DF_OK, "mlp predict");
    df_model_set_precision(m, DF_PRECISION_BF16);
    CHECK(df_model_predict(m, 4, tm, xm, ym2) == DF_OK, "mlp predict (bf16 set)");
    CHECK(memcmp(ym, ym2, sizeof ym) == 0, "the MLP ignores the precision (always fp32)");
    df_model_free(m);
}

/* Classifier-free guidance: the combination of a conditional and a null prediction, each of them the
 * network's own forward with that label; scale 1 and 0 give those two exactly. */
static void test_guidance(void) {
    df_unet_config c = tiny_config();
    c.out_channels = c.in_channels;
    c.num_class_embeds = 4;  /* 3 classes and the null class 3 */
    df_diffusion_config dc;
    df_diffusion_config_init(&dc);
    df_model *m;
    CHECK(df_model_new_unet(&c, &dc, 4, 0, 7, &m) == DF_OK, "new conditional model: %s", df_last_error());
    if (!m) return;
    CHECK(df_model_num_classes(m) == 4 && df_model_null_class(m) == 3, "classes %d, null %d", df_model_num_classes(m),
          df_model_null_class(m));
    random_params(m->net, m->ema, 71);
    const int n = 3, t[3] = {5, 400, 999}, y1[3] = {1, 1, 1}, ynull[3] = {3, 3, 3};
    const size_t nd = (size_t)n * m->dim;
    float *x = malloc(nd * sizeof(float)), *cond = malloc(nd * sizeof(float)), *null = malloc(nd * sizeof(float));
    float *got = malloc(nd * sizeof(float)), *pred = malloc(nd * sizeof(float));
    df_randn(72, DF_STREAM_USER, 0, 0, x, nd);
    df_model_forward(m, m->ema, n, x, t, y1, cond, 0);
    df_model_forward(m, m->ema, n, x, t, ynull, null, 0);
    double moved = 0;
    for (size_t i = 0; i < nd; i++) moved = fmax(moved, fabs((double)cond[i] - null[i]));
    CHECK(moved > 1e-3, "the class changes the prediction (max |cond - null| %g)", moved);
    CHECK(df_model_predict(m, n, t, x, pred) == DF_OK && memcmp(pred, null, nd * sizeof(float)) == 0,
          "df_model_predict of a conditional model is the null-class prediction");
    const double scales[3] = {1.0, 0.0, 3.0};
    for (int k = 0; k < 3; k++) {
        df_guide g;
        CHECK(df_guide_init(&g, m, 1, scales[k]) == DF_OK, "guide init: %s", df_last_error());
        /* max_batch 4: a guided pass holds 2 samples and their null twins, so n = 3 takes two passes */
        CHECK(df_guided_predict(&g, n, t, x, got) == DF_OK, "guided predict");
        double err = 0, scale = 0;
        for (size_t i = 0; i < nd; i++) {
            const double want = (double)null[i] + scales[k] * ((double)cond[i] - null[i]);
            err = fmax(err, fabs(got[i] - want)), scale = fmax(scale, fabs(want));
        }
        printf("guidance %g: max|guided - (null + w (cond - null))| = %.3g of %.3g\n", scales[k], err, scale);
        /* batched differently (2 + 1 against 3): the same sums up to float rounding, ~1e-6 */
        CHECK(err <= 1e-5 * scale, "guidance %g: error %g", scales[k], err);
        df_guide_free(&g);
    }
    df_guide g;
    EXPECT_STATUS(df_guide_init(&g, m, 3, 2.0), DF_ERR_ARG, "class 3 is out of range", "0..2");
    EXPECT_STATUS(df_guide_init(&g, m, 1, NAN), DF_ERR_ARG, "guidance scale", "finite");
    EXPECT_STATUS(df_model_set_null_class(m, 4), DF_ERR_ARG, "null class 4", "0..3");
    free(x), free(cond), free(null), free(got), free(pred);
    df_model_free(m);

    df_unet_config u = tiny_config();
    u.out_channels = u.in_channels;
    CHECK(df_model_new_unet(&u, &dc, 4, 0, 7, &m) == DF_OK, "new model");
    EXPECT_STATUS(df_guide_init(&g, m, 0, 2.0), DF_ERR_ARG, "not class-conditional", "");
    EXPECT_STATUS(df_model_set_null_class(m, 0), DF_ERR_ARG, "not class-conditional", "");
    df_model_free(m);
}

int main(void) {
    double t0 = df_time();
#define TIMED(call) do { call; printf("  %-40s %.2f s\n", #call, df_time() - t0); t0 = df_time(); } while (0)
    TIMED(test_presets());
    TIMED(test_validate());
    TIMED(test_config_json());
    TIMED(test_init());
    df_unet_config c = tiny_config();
    TIMED(gradient_check(c, "tiny (1 head)"));
    c.dropout = 0.2f;
    c.attention_head_dim = 4;  /* 4 heads of 4 channels at 16 channels */
    TIMED(gradient_check(c, "tiny (dropout 0.2, 4 heads)"));
    c = tiny_config();
    c.num_class_embeds = 3;
    TIMED(gradient_check(c, "tiny (3 class embeddings)"));
    TIMED(test_batch_and_plans());
    TIMED(test_accumulate());
    TIMED(test_packed_plan());
    TIMED(test_conv_backward_split());
    TIMED(test_fmnist_plans());
    TIMED(test_model_precision());
    TIMED(test_guidance());
    return check_exit_code("test_unet");
}
