/* fuzz_cifar.c: libFuzzer harness for the CIFAR-10 binary loader, df_dataset_load("cifar10:DIR:test")
 * (src/io/data.c). The input is DIR/test_batch.bin. */
#include "fuzz_common.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char dir[600], path[700], spec[700];
    fuzz_subdir(dir, sizeof dir, "cifar");
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    fuzz_write(path, data, size);
    snprintf(spec, sizeof spec, "cifar10:%s:test", dir);
    df_dataset ds;
    if (fuzz_note("df_dataset_load", df_dataset_load(spec, 0, 0, &ds)) != DF_OK) {
        FUZZ_CHECK(ds.pixels == NULL && ds.labels == NULL && ds.n == 0);
        return 0;
    }
    FUZZ_CHECK(ds.n > 0 && ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.n_classes == 10);
    FUZZ_CHECK((size_t)ds.n * 3073 == size);
    float *x = malloc(sizeof(float) * 3 * 32 * 32);
    if (!x) abort();
    for (int i = 0; i < ds.n; i++) {
        FUZZ_CHECK(ds.labels[i] >= 0 && ds.labels[i] < 10);
        df_dataset_batch(&ds, &i, NULL, 1, x);
    }
    free(x);
    df_dataset_free(&ds);
    return 0;
}
