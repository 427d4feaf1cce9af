/* fuzz_image_folder.c: libFuzzer harness for the image-folder loader, df_dataset_load("folder:DIR")
 * (src/io/data.c: stb_image decoding, then our channel choice, box-filter resize and centre crop).
 * Input: two control bytes (want_c = b0 % 5, want_size = b1, 0 = take the file's), then the image
 * file, saved as DIR/img.png (stb_image detects PNG/JPEG/... by content, not by name).
 * stb_image is Debian's libstb, not instrumented: this fuzzes our side of the decoder. Images over
 * 4 megapixels are skipped: decoding them only slows the fuzzer (stb pads a truncated JPEG, so a few
 * bytes can declare 20000x20000), and the loader's size cap is tested in tests/test_regressions.c. */
#include "fuzz_common.h"
#include "common.h"
#include <stb/stb_image.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int want_c = data[0] % 5, want_size = data[1];
    int w, h, comp;
    if (size > 2 && stbi_info_from_memory(data + 2, (int)(size - 2), &w, &h, &comp) && (int64_t)w * h > (1 << 22))
        return 0;
    char dir[600], path[700], spec[700];
    fuzz_subdir(dir, sizeof dir, "folder");
    snprintf(path, sizeof path, "%s/img.png", dir);
    fuzz_write(path, data + 2, size - 2);
    snprintf(spec, sizeof spec, "folder:%s", dir);
    df_dataset ds;
    if (fuzz_note("df_dataset_load", df_dataset_load(spec, want_c, want_size, &ds)) != DF_OK) {
        FUZZ_CHECK(ds.pixels == NULL && ds.labels == NULL && ds.n == 0);
        return 0;
    }
    FUZZ_CHECK(ds.n == 1 && ds.c >= 1 && ds.c <= 4 && ds.h == ds.w && ds.h > 0);
    FUZZ_CHECK(!want_c || ds.c == want_c);
    FUZZ_CHECK(!want_size || ds.h == want_size);
    FUZZ_CHECK(ds.labels[0] == -1);
    size_t image = (size_t)ds.c * ds.h * ds.w;
    float *x = malloc(image * sizeof(float));
    if (!x) abort();
    int idx = 0;
    uint8_t flip = 1;
    df_dataset_batch(&ds, &idx, &flip, 1, x);
    free(x);
    df_dataset_free(&ds);
    return 0;
}
