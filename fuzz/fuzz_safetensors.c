/* fuzz_safetensors.c: libFuzzer harness for the safetensors reader (src/io/safetensors.c).
 * The input is a whole .safetensors file. On success every tensor is fetched as float32 with its
 * own shape, which touches every byte df_st_read promised is in bounds. */
#include "fuzz_common.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_path(path, sizeof path, "model.safetensors");
    fuzz_write(path, data, size);
    df_st_file f;
    if (fuzz_note("df_st_read", df_st_read(path, &f)) != DF_OK) {
        FUZZ_CHECK(f.n_tensors == 0 && f.data == NULL); /* "on failure *f is left empty" */
        df_st_free(&f);
        return 0;
    }
    for (int k = 0; k < f.n_tensors; k++) {
        const df_st_tensor *t = &f.tensors[k];
        FUZZ_CHECK(t->begin <= t->end && t->end <= f.data_size);
        FUZZ_CHECK(df_st_find(&f, t->name) != NULL);
        size_t numel = (size_t)((t->end - t->begin) / (uint64_t)df_dtype_size(t->dtype));
        float *out = malloc(numel ? numel * sizeof(float) : 1);
        if (!out) abort();
        df_status st = df_st_get_f32(&f, t->name, t->ndim, t->shape, out);
        FUZZ_CHECK(st == DF_OK || st == DF_ERR_UNSUPPORTED);
        free(out);
    }
    for (int k = 0; k < f.n_meta; k++) FUZZ_CHECK(df_st_meta(&f, f.meta_keys[k]) != NULL);
    df_st_free(&f);
    return 0;
}
