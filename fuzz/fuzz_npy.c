/* fuzz_npy.c: libFuzzer harness for df_npy_read_f32 (src/io/npy.c). An accepted file's shape must
 * multiply out to the elements returned, and every element is read. */
#include "fuzz_common.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_path(path, sizeof path, "array.npy");
    fuzz_write(path, data, size);
    int ndim = -1;
    int64_t shape[8];
    float *x = NULL;
    if (fuzz_note("df_npy_read_f32", df_npy_read_f32(path, &ndim, shape, &x)) != DF_OK) {
        FUZZ_CHECK(x == NULL && ndim == 0);
        return 0;
    }
    FUZZ_CHECK(ndim >= 0 && ndim <= 8);
    size_t numel = 1;
    for (int k = 0; k < ndim; k++) {
        FUZZ_CHECK(shape[k] >= 0);
        numel *= (size_t)shape[k];
    }
    FUZZ_CHECK(numel <= size); /* each element came from at least one byte of the file */
    double sum = 0;
    for (size_t k = 0; k < numel; k++) sum += x[k];
    FUZZ_CHECK(sum == sum || numel > 0); /* reads every element; NaN data is the file's business */
    free(x);
    return 0;
}
