/* fuzz_idx.c: libFuzzer harness for the IDX (MNIST format) loader, df_dataset_load("mnist:DIR")
 * (src/io/data.c). Input: images file FUZZ_SEP labels file, written as DIR/train-images-idx3-ubyte and
 * DIR/train-labels-idx1-ubyte (gzread reads raw and gzipped bytes alike, so gzip is reachable too).
 * An accepted dataset is gathered whole with df_dataset_batch. */
#include "fuzz_common.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[2];
    size_t len[2];
    fuzz_split(data, size, 2, part, len);
    char dir[600], path[700], spec[700];
    fuzz_subdir(dir, sizeof dir, "idx");
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", dir);
    fuzz_write(path, part[0], len[0]);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte", dir);
    fuzz_write(path, part[1], len[1]);
    snprintf(spec, sizeof spec, "mnist:%s", dir);

    df_dataset ds;
    if (fuzz_note("df_dataset_load", df_dataset_load(spec, 0, 0, &ds)) != DF_OK) {
        FUZZ_CHECK(ds.pixels == NULL && ds.labels == NULL && ds.n == 0);
        return 0;
    }
    FUZZ_CHECK(ds.n > 0 && ds.c == 1 && ds.h > 0 && ds.w > 0);
    FUZZ_CHECK(ds.n_classes >= 1 && ds.n_classes <= 256);
    size_t image = (size_t)ds.c * ds.h * ds.w;
    float *x = malloc(image * sizeof(float));
    if (!x) abort();
    for (int i = 0; i < ds.n; i++) {
        FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < ds.n_classes);
        uint8_t flip = (uint8_t)(i & 1);
        df_dataset_batch(&ds, &i, &flip, 1, x);
        for (size_t k = 0; k < image; k++) FUZZ_CHECK(x[k] >= -1.0f && x[k] <= 1.0f);
    }
    free(x);
    df_dataset_free(&ds);
    return 0;
}
