/* test_cuda: the device seam (df_device_*) on every build, and the CUDA backend where there is one.
 * Without a CUDA build or without a GPU the GPU half reports skipped (exit 77, shown by ctest), after
 * the checks that hold everywhere: device names, and the one clear refusal of `--device cuda`. */
#include "check.h"
#include <string.h>

int main(void) {
    df_device d;
    CHECK(df_device_from_name("cpu", &d) == DF_OK && d.kind == DF_DEVICE_CPU, "cpu");
    CHECK(df_device_from_name("cuda", &d) == DF_OK && d.kind == DF_DEVICE_CUDA && d.index == 0, "cuda");
    CHECK(df_device_from_name("cuda:3", &d) == DF_OK && d.kind == DF_DEVICE_CUDA && d.index == 3, "cuda:3");
    const char *bad[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1x", "CPU", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(df_device_from_name(bad[i], &d) == DF_ERR_ARG, "'%s' refused", bad[i]);
    d.kind = DF_DEVICE_CPU;
    CHECK(df_device_check(d) == DF_OK, "the CPU always runs");
    df_device_from_name("cuda:0", &d);
    const df_status st = df_device_check(d);
    printf("  cuda build: %d, devices: %d; --device cuda: %s\n", df_device_cuda_built(), df_device_cuda_count(),
           st == DF_OK ? "runs" : df_last_error());
    CHECK(st == DF_OK || st == DF_ERR_UNSUPPORTED, "cuda: ok or unsupported, never another failure");
    CHECK(st == DF_OK || strstr(df_last_error(), "--device cpu") != NULL, "the refusal names the way out");
    if (!df_device_cuda_built() || df_device_cuda_count() == 0) {
        check_exit_code("test_cuda");
        printf("skipped: %s\n", df_device_cuda_built() ? "no CUDA device here" : "a build without the CUDA backend");
        return check_failures ? 1 : 77;
    }
    /* A GPU: the backend's op tests go here, each against the CPU reference, as they are written. */
    return check_exit_code("test_cuda");
}
