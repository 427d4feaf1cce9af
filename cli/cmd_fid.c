/* cmd_fid.c: `diffuse fid A B`: the Frechet distance (FID) between two sets of images in a feature
 * network's space (src/metrics/). A and B are each a .npy of images, an image folder or a dataset
 * spec. Each side's feature statistics are cached, keyed by the images' contents, so that comparing
 * many sample sets against one dataset computes the dataset's features once.
 * What it is not: a sampler (draw the samples with `diffuse sample --out x.npy` first). */
#include "cli.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FMNIST_WEIGHTS "fid-fmnist.safetensors"

typedef struct {
    const char *features, *weights;
    int n, batch, threads, no_cache;
    int class_rows;     /* --class-rows P: A's image j asked for class j / P (sample --class all) */
    int features_given; /* --features was on the command line */
} fid_args;

/* One side: its images, as a float block (.npy) or the dataset's pixels. */
typedef struct {
    const char *spec;  /* as given */
    const char *form;  /* "float32 .npy", "uint8 .npy", "image folder", "dataset" */
    long n;            /* images it has */
    int c, h, w;
    float *x;          /* .npy: every image, N x C x H x W in [-1, 1] */
    df_dataset ds;     /* folders and datasets */
} fid_input;

/* ---------------------------------------------------------------- reading the inputs */

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* 1 when the .npy header says uint8 ('|u1'): df_npy_read_f32 converts every dtype to float, and
 * the two dtypes mean different layouts and scales here. */
static int npy_is_u8(const char *path) {
    char head[512] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t got = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    for (size_t i = 10; i + 3 <= got; i++) /* the dict starts after magic, version and length */
        if (memcmp(head + i, "|u1", 3) == 0) return 1;
    return 0;
}

/* uint8 N x H x W x C (what `diffuse sample --out x.npy` writes) or N x H x W into N x C x H x W in
 * [-1, 1], as df_dataset_batch scales pixels. */
static df_status npy_from_u8(fid_input *in, int ndim, const int64_t *sh, float *raw) {
    if (!(ndim == 4 && sh[3] >= 1 && sh[3] <= 4) && ndim != 3)
        return df_fail(DF_ERR_SHAPE, "%s: a uint8 .npy must be N x H x W x C (C 1..4) or N x H x W", in->spec);
    in->c = ndim == 4 ? (int)sh[3] : 1;
    in->h = (int)sh[1];
    in->w = (int)sh[2];
    const size_t hw = (size_t)in->h * in->w, dim = hw * in->c;
    if (!(in->x = df_alloc(sizeof(float) * dim * (size_t)in->n, "images"))) return DF_ERR_NOMEM;
    for (long j = 0; j < in->n; j++)
        for (size_t p = 0; p < hw; p++)
            for (int ch = 0; ch < in->c; ch++)
                in->x[(size_t)j * dim + (size_t)ch * hw + p] = raw[(size_t)j * dim + p * in->c + ch] / 127.5f - 1.0f;
    return DF_OK;
}

/* float N x C x H x W (or N x H x W), values in [-1, 1]: images in [0, 1] or [0, 255] would give a
 * meaningless distance, so they are refused instead of guessed at. */
static df_status npy_from_float(fid_input *in, int ndim, const int64_t *sh, float **raw) {
    if (ndim != 4 && ndim != 3)
        return df_fail(DF_ERR_SHAPE, "%s: a float .npy must be N x C x H x W (or N x H x W) images", in->spec);
    in->c = ndim == 4 ? (int)sh[1] : 1;
    in->h = (int)sh[ndim - 2];
    in->w = (int)sh[ndim - 1];
    const size_t total = (size_t)in->n * in->c * in->h * in->w;
    for (size_t i = 0; i < total; i++)
        if (!((*raw)[i] >= -1.001f && (*raw)[i] <= 1.001f))
            return df_fail(DF_ERR_ARG, "%s: value %g at index %zu is outside [-1, 1] (images must be scaled as "
                           "pixel/127.5 - 1, as the models' samples are)", in->spec, (*raw)[i], i);
    in->x = *raw;
    *raw = NULL;
    return DF_OK;
}

static df_status open_npy(fid_input *in) {
    int ndim;
    int64_t sh[8];
    float *raw = NULL;
    df_status st = df_npy_read_f32(in->spec, &ndim, sh, &raw);
    if (st != DF_OK) return st;
    int u8 = npy_is_u8(in->spec);
    in->form = u8 ? "uint8 .npy" : "float32 .npy";
    in->n = ndim >= 1 ? (long)sh[0] : 0;
    st = u8 ? npy_from_u8(in, ndim, sh, raw) : npy_from_float(in, ndim, sh, &raw);
    df_free(raw);
    return st;
}

/* A .npy file, a directory (an image folder) or a dataset spec, whole into memory. */
static df_status open_input(const char *spec, fid_input *in) {
    memset(in, 0, sizeof *in);
    in->spec = spec;
    struct stat sb;
    int exists = stat(spec, &sb) == 0;
    if (ends_with(spec, ".npy") || (exists && S_ISREG(sb.st_mode))) return open_npy(in);
    df_dataset_form form;
    char folder[PATH_MAX + 8];
    const char *dspec = spec;
    if (exists && S_ISDIR(sb.st_mode)) {
        snprintf(folder, sizeof folder, "folder:%s", spec);
        dspec = folder;
    } else if (df_dataset_spec_check(spec, &form) != DF_OK) {
        if (form != DF_DATASET_NONE) return DF_ERR_ARG; /* a malformed dataset spec: its own message */
        return df_fail(DF_ERR_IO, "cannot open %s: %s (an input is a .npy file, an image folder or a dataset: "
                       "fashion-mnist[:test], mnist:DIR, cifar10:DIR, folder:DIR)", spec, strerror(ENOENT));
    }
    /* want 0, 0: the files' own shape; folder images are resized to the first one's size */
    df_status st = df_dataset_load(dspec, 0, 0, &in->ds);
    if (st != DF_OK) return st;
    in->form = dspec == folder || strncmp(spec, "folder:", 7) == 0 ? "image folder" : "dataset";
    in->n = in->ds.n;
    in->c = in->ds.c;
    in->h = in->ds.h;
    in->w = in->ds.w;
    return DF_OK;
}

static void close_input(fid_input *in) {
    df_free(in->x);
    df_dataset_free(&in->ds);
}

/* Images [i0, i0 + m) of in as N x C x H x W floats in [-1, 1] (buf holds m images). */
static const float *input_batch(const fid_input *in, long i0, int m, float *buf) {
    const size_t dim = (size_t)in->c * in->h * in->w;
    if (in->x) return in->x + (size_t)i0 * dim;
    int *idx = malloc(sizeof(int) * (size_t)m);
    ASSERT(idx);
    for (int k = 0; k < m; k++) idx[k] = (int)(i0 + k);
    df_dataset_batch(&in->ds, idx, NULL, m, buf);
    free(idx);
    return buf;
}

/* ---------------------------------------------------------------- the cache */

/* FNV-1a, 64 bits. */
static uint64_t fnv1a(const void *p, size_t n, uint64_t h) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The cache's folder: $XDG_CACHE_HOME/diffuse/fid, else ~/.cache/diffuse/fid; 0 when neither is set. */
static int cache_dir(char *buf, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) return snprintf(buf, cap, "%s/diffuse/fid", xdg) < (int)cap;
    if (home && *home) return snprintf(buf, cap, "%s/.cache/diffuse/fid", home) < (int)cap;
    return 0;
}

/* What the statistics depend on: the first n images' contents (their pixels or floats), their
 * shape, and the feature network and its weights file (path, size and modification time). */
static void cache_key(const fid_input *in, long n, const fid_args *a, const char *weights, char *key, size_t cap) {
    const size_t dim = (size_t)in->c * in->h * in->w;
    uint64_t h = 14695981039346656037ull;
    h = in->x ? fnv1a(in->x, sizeof(float) * dim * (size_t)n, h) : fnv1a(in->ds.pixels, dim * (size_t)n, h);
    char real[PATH_MAX];
    struct stat sb;
    if (!realpath(weights, real)) snprintf(real, sizeof real, "%s", weights);
    if (stat(weights, &sb) != 0) memset(&sb, 0, sizeof sb);
    snprintf(key, cap, "fid1|%s|%s|%lld|%lld.%09ld|%dx%dx%d|n=%ld|%s=%016llx", a->features, real,
             (long long)sb.st_size, (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, in->c, in->h, in->w, n,
             in->x ? "floats" : "pixels", (unsigned long long)h);
}

static int cache_path(const char *key, char *path, size_t cap) {
    char dir[PATH_MAX];
    if (!cache_dir(dir, sizeof dir)) return 0;
    return snprintf(path, cap, "%s/%016llx.safetensors", dir, (unsigned long long)fnv1a(key, strlen(key), 0)) <
           (int)cap;
}

/* Saves s under key; a cache that cannot be written is said once on stderr, and is no error. */
static void cache_save(const df_fid_stats *s, const char *key) {
    char path[PATH_MAX + 64], dir[PATH_MAX];
    if (!cache_path(key, path, sizeof path) || !cache_dir(dir, sizeof dir)) return;
    df_status st = df_mkdirs(dir);
    if (st == DF_OK) st = df_fid_stats_save(s, key, path);
    if (st != DF_OK) fprintf(stderr, "fid: statistics not cached: %s\n", df_last_error());
}

/* ---------------------------------------------------------------- features */

typedef struct {
    const char *what;
    double t0, last;
} fid_progress;

static void show_progress(fid_progress *p, long done, long total) {
    double now = df_time(), el = now - p->t0;
    if (done < total && now - p->last < 1.0) return;
    p->last = now;
    char extra[64];
    snprintf(extra, sizeof extra, "images (%.0f/s)", el > 0 ? done / el : 0.0);
    cli_progress_bar(p->what, done, total, el, done > 0 ? el / done * (total - done) : -1, extra, done == total);
}

/* The statistics of the first n images of in: from the cache when it has them (*cached = 1),
 * else computed batch by batch and then cached. */
static df_status side_stats(df_featnet *net, const fid_input *in, long n, const fid_args *a, const char *weights,
                            const char *what, df_fid_stats *s, int *cached) {
    char key[PATH_MAX + 256], path[PATH_MAX + 64];
    cache_key(in, n, a, weights, key, sizeof key);
    *cached = 0;
    if (!a->no_cache && cache_path(key, path, sizeof path) && access(path, R_OK) == 0 &&
        df_fid_stats_load(path, key, s) == DF_OK) {
        *cached = s->n == n && s->dim == df_featnet_get_info(net)->dim;
        if (*cached) return DF_OK;
        df_fid_stats_free(s);
    }
    df_clear_error(); /* a broken or foreign cache file is only a miss */
    const int dim = df_featnet_get_info(net)->dim;
    const size_t idim = (size_t)in->c * in->h * in->w;
    float *feats = df_alloc(sizeof(float) * (size_t)n * dim, "features");
    float *buf = df_alloc(sizeof(float) * (size_t)a->batch * idim, "image batch");
    df_status st = feats && buf ? DF_OK : DF_ERR_NOMEM;
    fid_progress pr = {what, df_time(), 0};
    for (long i0 = 0; i0 < n && st == DF_OK; i0 += a->batch) {
        int m = (int)(n - i0 < a->batch ? n - i0 : a->batch);
        st = df_featnet_forward(net, m, in->c, in->h, in->w, input_batch(in, i0, m, buf), feats + (size_t)i0 * dim,
                                NULL);
        if (st == DF_OK) show_progress(&pr, i0 + m, n);
    }
    if (st == DF_OK) st = df_fid_stats_compute(feats, n, dim, s);
    df_free(feats);
    df_free(buf);
    if (st == DF_OK && !a->no_cache) cache_save(s, key);
    return st;
}

/* --class-rows P: the fraction of A's first n images that the feature network classifies as the
 * class they were drawn for (image j: class j / P, as `sample --class all --n P` orders them), per
 * class and in all, printed before the FID. Not cached: the logits are one small pass. */
static df_status class_accuracy(df_featnet *net, const fid_input *in, long n, const fid_args *a) {
    const df_featnet_info *info = df_featnet_get_info(net);
    const int k = info->n_classes, p = a->class_rows;
    if (k < 2) return df_fail(DF_ERR_ARG, "--class-rows: the feature network %s has no class logits", a->features);
    if (n % p) return df_fail(DF_ERR_ARG, "--class-rows %d: A's %ld images are not whole rows of %d", p, n, p);
    if (n / p > k) return df_fail(DF_ERR_ARG, "--class-rows %d: A's %ld images are %ld rows, more than the %d classes "
                                  "of %s", p, n, n / p, k, a->features);
    const size_t idim = (size_t)in->c * in->h * in->w;
    float *feats = df_alloc(sizeof(float) * (size_t)a->batch * info->dim, "features");
    float *logits = df_alloc(sizeof(float) * (size_t)a->batch * k, "logits");
    float *buf = df_alloc(sizeof(float) * (size_t)a->batch * idim, "image batch");
    long *right = calloc((size_t)k, sizeof(long)), total = 0;
    df_status st = feats && logits && buf && right ? DF_OK : DF_ERR_NOMEM;
    for (long i0 = 0; i0 < n && st == DF_OK; i0 += a->batch) {
        const int m = (int)(n - i0 < a->batch ? n - i0 : a->batch);
        st = df_featnet_forward(net, m, in->c, in->h, in->w, input_batch(in, i0, m, buf), feats, logits);
        for (int j = 0; j < m && st == DF_OK; j++) {
            int best = 0;
            for (int c = 1; c < k; c++)
                if (logits[(size_t)j * k + c] > logits[(size_t)j * k + best]) best = c;
            const long asked = (i0 + j) / p;
            if (best == asked) right[asked]++, total++;
        }
    }
    if (st == DF_OK) {
        printf("classified as asked: %.1f%% of %ld (", 100.0 * total / n, n);
        for (long c = 0; c < n / p; c++) printf("%s%ld: %.0f%%", c ? ", " : "", c, 100.0 * right[c] / p);
        printf(")\n");
    }
    df_free(feats);
    df_free(logits);
    df_free(buf);
    free(right);
    return st;
}

/* ---------------------------------------------------------------- the command */

/* Splits argv[2..] into the two inputs (arguments that are neither a flag nor a flag's value) and the
 * flags, kept in order in flags[2..] for cli_parse_flags. */
static int split_positionals(int argc, char **argv, const arg_spec *specs, const char **pos, int *npos,
                             char **flags) {
    int nf = 2;
    flags[0] = argv[0];
    flags[1] = argv[1];
    *npos = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if ((strncmp(a, "--", 2) != 0 || strcmp(a, "--") == 0) && strcmp(a, "-h") != 0) {
            if (*npos == 2) {
                fprintf(stderr, "diffuse fid: unexpected argument '%s' (fid takes two inputs, A and B)\n", a);
                return 0;
            }
            pos[(*npos)++] = a;
            continue;
        }
        flags[nf++] = argv[i];
        const arg_spec *s = specs;
        size_t len = strcspn(a + 2, "=");
        while (s->name && !(strlen(s->name) == len && strncmp(s->name, a + 2, len) == 0)) s++;
        if (s->name && s->type != ARG_FLAG && !strchr(a, '=') && i + 1 < argc) flags[nf++] = argv[++i];
    }
    return nf;
}

/* The weights file: --weights, or for fmnist the shipped models/fid-fmnist.safetensors. */
static df_status find_weights(const fid_args *a, df_featnet_kind kind, const char **path) {
    *path = a->weights;
    if (*path) return DF_OK;
    if (kind == DF_FEATNET_INCEPTION)
        return df_fail(DF_ERR_ARG, "--features inception needs --weights FILE: pytorch-fid's Inception weights "
                       "(pt_inception-2015-12-05-6726825d.pth) converted by tools/convert_pytorch_fid.py");
    return (*path = cli_shipped_file(FMNIST_WEIGHTS)) ? DF_OK : DF_ERR_ARG;
}

/* A and B must be the same kind of image, and as many as --n asks for. */
static df_status check_inputs(const fid_input *in, long *n, int n_given) {
    if (in[0].c != in[1].c || in[0].h != in[1].h || in[0].w != in[1].w)
        return df_fail(DF_ERR_SHAPE, "A (%s) has %dx%dx%d images but B (%s) has %dx%dx%d", in[0].spec, in[0].c,
                       in[0].h, in[0].w, in[1].spec, in[1].c, in[1].h, in[1].w);
    for (int k = 0; k < 2; k++) {
        long want = n_given ? *n : in[k].n;
        if (want > in[k].n)
            return df_fail(DF_ERR_ARG, "--n %ld is more than the %ld images of %s", want, in[k].n, in[k].spec);
        if (want < 2)
            return df_fail(DF_ERR_ARG, "%s has %ld image%s: the FID needs at least 2 per side", in[k].spec, want,
                           want == 1 ? "" : "s");
    }
    return DF_OK;
}

/* The shape check of the network, with a hint when the default network was not asked for. */
static df_status check_net_input(const df_featnet *net, const fid_input *in, const fid_args *a) {
    df_status st = df_featnet_check_input(net, in->c, in->h, in->w);
    if (st == DF_OK || a->features_given) return st;
    char msg[512];
    snprintf(msg, sizeof msg, "%s", df_last_error());
    return df_fail(st, "%s (the default; for other images give --features inception --weights FILE)", msg);
}

static df_status run_fid(const char *const *spec, fid_args *a) {
    df_featnet_kind kind;
    df_status st = df_featnet_from_name(a->features, &kind);
    const char *weights = NULL;
    if (st == DF_OK) st = find_weights(a, kind, &weights);
    if (a->batch == 0) a->batch = kind == DF_FEATNET_INCEPTION ? 16 : 256; /* inception: ~60 MB an image */
    fid_input in[2];
    memset(in, 0, sizeof in);
    for (int k = 0; k < 2 && st == DF_OK; k++) st = open_input(spec[k], &in[k]);
    long n = a->n;
    if (st == DF_OK) st = check_inputs(in, &n, a->n > 0);
    df_featnet *net = NULL;
    if (st == DF_OK) st = df_featnet_load(kind, weights, a->batch, &net);
    if (st == DF_OK) st = check_net_input(net, &in[0], a);
    df_fid_stats s[2];
    memset(s, 0, sizeof s);
    int cached[2] = {0, 0};
    if (st == DF_OK) printf("features: %s (%s), weights %s\n", a->features, df_featnet_get_info(net)->desc, weights);
    if (st == DF_OK && a->class_rows) st = class_accuracy(net, &in[0], a->n > 0 ? n : in[0].n, a);
    for (int k = 0; k < 2 && st == DF_OK; k++) {
        long nk = a->n > 0 ? n : in[k].n;
        st = side_stats(net, &in[k], nk, a, weights, k ? "features B" : "features A", &s[k], &cached[k]);
        if (st == DF_OK)
            printf("%c: %s (%s), %ld images of %dx%dx%d%s\n", 'A' + k, in[k].spec, in[k].form, nk, in[k].c, in[k].h,
                   in[k].w, cached[k] ? ", statistics from the cache" : "");
    }
    double d2 = 0;
    if (st == DF_OK) st = df_frechet_distance(s[0].dim, s[0].mu, s[0].sigma, s[1].mu, s[1].sigma, &d2);
    if (st == DF_OK) printf("FID: %.2f\n", d2);
    for (int k = 0; k < 2; k++) {
        close_input(&in[k]);
        df_fid_stats_free(&s[k]);
    }
    df_featnet_free(net);
    return st;
}

int cmd_fid(int argc, char **argv) {
    fid_args a = {"fmnist", NULL, 0, 0, 0, 0, 0, 0};
    arg_spec specs[] = {
        {"features", ARG_STRING, &a.features, "feature network: fmnist (default; 1x28x28 images) or inception"},
        {"weights", ARG_STRING, &a.weights,
         "its weights (default for fmnist: the shipped models/" FMNIST_WEIGHTS "; inception needs one)"},
        {"n", ARG_INT, &a.n, "use the first N images of each side (default: all)"},
        {"batch", ARG_INT, &a.batch, "images per network call (default 256; inception 16)"},
        {"threads", ARG_INT, &a.threads, "threads (default 0: all cores)"},
        {"no-cache", ARG_FLAG, &a.no_cache, "neither read nor write the statistics cache"},
        {"class-rows", ARG_INT, &a.class_rows,
         "A is rows of P images per class (sample --class all --n P): also print the fraction classified as asked"},
        {NULL, 0, NULL, NULL, 0},
    };
    static const cli_range ranges[] = {
        {"n", 2, 100000000}, {"batch", 1, 65536}, {"threads", 0, CLI_MAX_THREADS}, {"class-rows", 1, 100000000},
        {NULL, 0, 0}};
    const char *usage =
        "usage: diffuse fid A B [--features fmnist|inception] [--weights FILE] [--n N] [--batch B] [--threads T]\n"
        "                       [--class-rows P]\n\n"
        "The Frechet distance between the images A and B in a feature network's space; prints the network,\n"
        "each side's images and then 'FID: X'. A and B are each a .npy (float32 N x C x H x W in [-1,1], or\n"
        "uint8 N x H x W x C as `diffuse sample --out x.npy` writes), an image folder, or a dataset\n"
        "(fashion-mnist, fashion-mnist:test, mnist:DIR[:test], cifar10:DIR[:test], folder:DIR).\n"
        "Each side's feature statistics are cached in $XDG_CACHE_HOME/diffuse/fid (default\n"
        "~/.cache/diffuse/fid), keyed by the images' contents, N and the feature network and its file.";
    char **flags = malloc(sizeof(char *) * (size_t)(argc + 2));
    const char *pos[2] = {NULL, NULL};
    int npos = 0, nf = flags ? split_positionals(argc, argv, specs, pos, &npos, flags) : 0;
    if (!nf) {
        free(flags);
        return 2;
    }
    int rc = cli_parse_flags("fid", usage, specs, ranges, nf, flags);
    free(flags);
    if (rc >= 0) return rc;
    if (npos != 2) return cli_error("fid", df_fail(DF_ERR_ARG, "needs two inputs, A and B (see diffuse fid --help)"));
    a.features_given = specs[0].seen;
    cli_set_threads(a.threads);
    df_status st = run_fid(pos, &a);
    return st == DF_OK ? 0 : cli_error("fid", st);
}
