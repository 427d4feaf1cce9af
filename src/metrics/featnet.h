/* featnet.h: the feature networks of the FID behind diffuse.h's df_featnet (featnet.c dispatches,
 * one file per network implements). Internal to src/metrics/. */
#ifndef DF_FEATNET_H
#define DF_FEATNET_H

#include "common.h"
#include "safetensors.h"

struct df_featnet {
    df_featnet_info info;
    int max_batch;
    void *impl; /* the network's own state */
    /* features (n x dim) and logits (may be NULL) of n <= max_batch images whose shape the info
     * accepts (df_featnet_forward has checked it) */
    df_status (*forward)(void *impl, int n, int c, int h, int w, const float *x, float *features, float *logits);
    void (*free_impl)(void *impl);
};

/* Each network's loader: fills net (forward, free_impl, impl, info's numbers) from the validated
 * file f, for batches of up to net->max_batch (already set). */
df_status df_fmnist_net_load(const df_st_file *f, df_featnet *net);
df_status df_inception_load(const df_st_file *f, df_featnet *net);

/* The inception network's convolutions, for tests/test_fid_inception.c, which builds seeded weights
 * in memory (tools/fid_inception.py makes the same): how many, and conv i's tensor prefix
 * ("Mixed_6b.branch7x7_2") and weight shape (oc, ic, kh, kw); its norm is prefix.bn.* of oc values. */
int df_inception_conv_count(void);
void df_inception_conv_info(int i, char *prefix, size_t cap, int64_t shape[4]);

/* DF_ERR_FORMAT naming the first tensor of f that is not one of names[0..count) (a file of another
 * network, or of another version of this one: a tensor we would not use is a network we would
 * compute differently). */
df_status df_featnet_only_tensors(const df_st_file *f, const char *const *names, int count);

/* Scratch that grows to the largest request seen: *buf holds *cap floats. */
df_status df_featnet_scratch(float **buf, size_t *cap, size_t need);

#endif
