/* fuzz_args.c: libFuzzer harness for the CLI option parser args_parse (cli/args.c), with a spec
 * table shaped like `diffuse train`'s (every option type). The input is argv, split on NUL bytes.
 * Run it with -close_fd_mask=3: args_parse prints usage and errors, as a CLI should. */
#include "fuzz_common.h"
#include "args.h"
#include <math.h>

#define MAX_ARGS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    if (!buf) abort();
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[MAX_ARGS + 1];
    int argc = 0;
    argv[argc++] = "diffuse";
    argv[argc++] = "train";
    for (char *p = buf; p <= buf + size && argc < MAX_ARGS; p += strlen(p) + 1) argv[argc++] = p;
    argv[argc] = NULL;

    const char *data_spec = "toy:8gaussians", *out = NULL, *mult = NULL, *attn_res = NULL;
    long steps = 4000, ckpt_every = 1000;
    double lr = 1e-3, ema = 0.995, dropout = 0;
    int batch = 256, hidden = 128, seed = 0, flip = 0, resume = 0;
    arg_spec specs[] = {
        {"data", ARG_STRING, &data_spec, "dataset", 0},
        {"out", ARG_STRING, &out, "output directory", 0},
        {"steps", ARG_LONG, &steps, "steps", 0},
        {"ckpt-every", ARG_LONG, &ckpt_every, "checkpoint every N steps", 0},
        {"batch", ARG_INT, &batch, "batch size", 0},
        {"hidden", ARG_INT, &hidden, "MLP width", 0},
        {"seed", ARG_INT, &seed, "random seed", 0},
        {"lr", ARG_DOUBLE, &lr, "learning rate", 0},
        {"ema", ARG_DOUBLE, &ema, "EMA decay", 0},
        {"dropout", ARG_DOUBLE, &dropout, "dropout", 0},
        {"mult", ARG_STRING, &mult, "channel multipliers", 0},
        {"attn-res", ARG_STRING, &attn_res, "attention resolutions", 0},
        {"flip", ARG_FLAG, &flip, "random flips", 0},
        {"resume", ARG_FLAG, &resume, "resume", 0},
        {NULL, 0, NULL, NULL, 0},
    };
    int rc = args_parse("train", "usage: diffuse train [options]", specs, argc, argv, 2);
    FUZZ_CHECK(rc == 0 || rc == 1 || rc == 2);
    /* whatever the outcome, values hold what their type allows */
    FUZZ_CHECK(isfinite(lr) && isfinite(ema) && isfinite(dropout));
    FUZZ_CHECK(flip == 0 || flip == 1);
    FUZZ_CHECK(resume == 0 || resume == 1);
    /* a string option is its default or points into argv, never elsewhere */
    const char *strs[] = {out, mult, attn_res, data_spec};
    for (int k = 0; k < 4; k++)
        FUZZ_CHECK(!strs[k] || (k == 3 && !strcmp(strs[k], "toy:8gaussians")) || (strs[k] >= buf && strs[k] <= buf + size));
    free(buf);
    return 0;
}
