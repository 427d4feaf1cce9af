/* fuzz_png.c: libFuzzer harness for df_png_read (src/io/image.c, libpng underneath). An accepted file
 * gives width*height*channels bytes, every one of which is read here. */
#include "fuzz_common.h"
#include "common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_path(path, sizeof path, "image.png");
    fuzz_write(path, data, size);
    uint8_t *px = NULL;
    int w = 0, h = 0, c = 0;
    if (fuzz_note("df_png_read", df_png_read(path, &px, &w, &h, &c)) != DF_OK) {
        FUZZ_CHECK(px == NULL);
        return 0;
    }
    FUZZ_CHECK(w > 0 && h > 0 && (c == 1 || c == 3 || c == 4));
    unsigned sum = 0;
    for (size_t k = 0; k < (size_t)w * h * c; k++) sum += px[k];
    (void)sum;
    free(px);
    return 0;
}
