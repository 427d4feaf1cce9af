/* fuzz_csv.c: libFuzzer harness for the 2-D point CSV reader df_csv_read_points (src/io/toydata.c).
 * Contract checked beyond memory safety: every point of an accepted file is finite as a float
 * (the reader promises "non-finite or out-of-range value" errors, and training on an infinite
 * point would turn every loss into NaN). */
#include "fuzz_common.h"
#include "common.h"
#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600];
    fuzz_path(path, sizeof path, "points.csv");
    fuzz_write(path, data, size);
    float *pts = NULL;
    int n = 0;
    if (fuzz_note("df_csv_read_points", df_csv_read_points(path, &pts, &n)) != DF_OK) {
        FUZZ_CHECK(pts == NULL && n == 0);
        return 0;
    }
    FUZZ_CHECK(n > 0);
    for (int i = 0; i < 2 * n; i++) FUZZ_CHECK(isfinite(pts[i]));
    free(pts);
    return 0;
}
