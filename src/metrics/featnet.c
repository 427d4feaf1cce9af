/* featnet.c: df_featnet (diffuse.h, "FID"): names, loading by kind, the input check and the
 * chunking of large calls; the networks themselves are fmnist_net.c and inception.c. */
#include "featnet.h"
#include <string.h>

static const char *featnet_names[] = {"fmnist", "inception"};

const char *df_featnet_name(df_featnet_kind k) {
    return (int)k >= 0 && k < DF_FEATNET_COUNT ? featnet_names[k] : "?";
}

df_status df_featnet_from_name(const char *s, df_featnet_kind *out) {
    for (int k = 0; k < DF_FEATNET_COUNT; k++)
        if (s && strcmp(s, featnet_names[k]) == 0) {
            *out = (df_featnet_kind)k;
            return DF_OK;
        }
    return df_fail(DF_ERR_ARG, "unknown feature network '%s' (valid: fmnist, inception)", s ? s : "");
}

df_status df_featnet_only_tensors(const df_st_file *f, const char *const *names, int count) {
    for (int i = 0; i < f->n_tensors; i++) {
        int known = 0;
        for (int k = 0; k < count && !known; k++) known = strcmp(f->tensors[i].name, names[k]) == 0;
        if (!known)
            return df_fail(DF_ERR_FORMAT, "%s: tensor '%s' is not part of this feature network", f->path,
                           f->tensors[i].name);
    }
    return DF_OK;
}

df_status df_featnet_scratch(float **buf, size_t *cap, size_t need) {
    if (need <= *cap) return DF_OK;
    float *p = df_alloc(sizeof(float) * need, "feature network scratch");
    if (!p) return DF_ERR_NOMEM;
    df_free(*buf);
    *buf = p;
    *cap = need;
    return DF_OK;
}

df_status df_featnet_load(df_featnet_kind kind, const char *path, int max_batch, df_featnet **out) {
    *out = NULL;
    if (max_batch < 1) return df_fail(DF_ERR_ARG, "feature network batch must be at least 1 (got %d)", max_batch);
    if ((int)kind < 0 || kind >= DF_FEATNET_COUNT) return df_fail(DF_ERR_ARG, "unknown feature network %d", kind);
    df_st_file f;
    df_status st = df_st_read(path, &f);
    if (st != DF_OK) return st;
    /* the file says which network it holds: a clear message instead of "missing tensor conv1.weight" */
    const char *said = df_st_meta(&f, "featnet");
    if (said && strcmp(said, df_featnet_name(kind)) != 0) {
        st = df_fail(DF_ERR_FORMAT, "%s holds the '%s' feature network, not '%s'", path, said, df_featnet_name(kind));
        df_st_free(&f);
        return st;
    }
    df_featnet *net = calloc(1, sizeof *net);
    if (!net) st = df_fail(DF_ERR_NOMEM, "out of memory loading %s", path);
    if (st == DF_OK) {
        net->max_batch = max_batch;
        net->info.kind = kind;
        st = kind == DF_FEATNET_FMNIST ? df_fmnist_net_load(&f, net) : df_inception_load(&f, net);
    }
    if (st == DF_OK) *out = net;
    else df_featnet_free(net);
    df_st_free(&f);
    return st;
}

void df_featnet_free(df_featnet *net) {
    if (!net) return;
    if (net->free_impl && net->impl) net->free_impl(net->impl);
    free(net);
}

const df_featnet_info *df_featnet_get_info(const df_featnet *net) { return &net->info; }

df_status df_featnet_check_input(const df_featnet *net, int c, int h, int w) {
    const df_featnet_info *i = &net->info;
    if (i->height == 0) { /* any size, resized inside: only the channels matter */
        if (c == 1 || c == i->channels) return DF_OK;
        return df_fail(DF_ERR_SHAPE, "the %s feature network takes 1 or %d channels, not %d (images %dx%dx%d)",
                       df_featnet_name(i->kind), i->channels, c, c, h, w);
    }
    if (c == i->channels && h == i->height && w == i->width) return DF_OK;
    return df_fail(DF_ERR_SHAPE, "the %s feature network takes %dx%dx%d images, not %dx%dx%d", df_featnet_name(i->kind),
                   i->channels, i->height, i->width, c, h, w);
}

df_status df_featnet_forward(df_featnet *net, int n, int c, int h, int w, const float *x, float *features,
                             float *logits) {
    df_status st = df_featnet_check_input(net, c, h, w);
    if (st != DF_OK) return st;
    if (logits && net->info.n_classes == 0)
        return df_fail(DF_ERR_UNSUPPORTED, "the %s feature network has no class logits", df_featnet_name(net->info.kind));
    const size_t dim = (size_t)c * h * w;
    for (int i0 = 0; i0 < n && st == DF_OK; i0 += net->max_batch) {
        int m = n - i0 < net->max_batch ? n - i0 : net->max_batch;
        st = net->forward(net->impl, m, c, h, w, x + (size_t)i0 * dim, features + (size_t)i0 * net->info.dim,
                          logits ? logits + (size_t)i0 * net->info.n_classes : NULL);
    }
    return st;
}
