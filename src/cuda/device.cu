// device.cu: the CUDA backend's device layer (cuda_backend.h): device count and description through the
// CUDA runtime. Compiled by nvcc (the backend's kernels will live beside it, in .cu files).
extern "C" {
#include "cuda_backend.h"
#include "common.h"
}
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int df_cuda_device_count(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (n == 0 && why) *why = "the CUDA runtime sees no device";
    return n;
}

extern "C" df_status df_cuda_describe(int index, char *buf, size_t cap) {
    const char *why = NULL;
    const int n = df_cuda_device_count(&why);
    if (index < 0 || index >= n)
        return df_fail(DF_ERR_UNSUPPORTED, "no CUDA device %d (%d found%s%s)", index, n, why ? ": " : "",
                       why ? why : "");
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, index);
    if (e != cudaSuccess) return df_fail(DF_ERR_UNSUPPORTED, "CUDA device %d: %s", index, cudaGetErrorString(e));
    snprintf(buf, cap, "%s (compute %d.%d, %.1f GiB, %d SMs)", p.name, p.major, p.minor,
             p.totalGlobalMem / (1024.0 * 1024 * 1024), p.multiProcessorCount);
    return DF_OK;
}
