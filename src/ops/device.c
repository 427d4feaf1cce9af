/* device.c: which backend runs the ops (diffuse.h, "devices"): the CPU backend (src/cpu/) always,
 * the CUDA backend (src/cuda/) in a build with -DDIFFUSE_CUDA=ON on a machine with a GPU. The one
 * place a device name is parsed and checked, so every command refuses a device it cannot use with
 * the same message, before it reads or writes anything. */
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef DIFFUSE_CUDA
#include "cuda_backend.h"
#endif

df_status df_device_from_name(const char *s, df_device *out) {
    out->kind = DF_DEVICE_CPU;
    out->index = 0;
    if (!s) return df_fail(DF_ERR_ARG, "no device name (want cpu, cuda or cuda:N)");
    if (strcmp(s, "cpu") == 0) return DF_OK;
    if (strncmp(s, "cuda", 4) == 0 && (s[4] == 0 || s[4] == ':')) {
        out->kind = DF_DEVICE_CUDA;
        if (s[4] == 0) return DF_OK;
        char *end = NULL;
        long n = strtol(s + 5, &end, 10);
        if (s[5] >= '0' && s[5] <= '9' && end && *end == 0 && n <= 1024) {
            out->index = (int)n;
            return DF_OK;
        }
    }
    return df_fail(DF_ERR_ARG, "unknown device '%s' (want cpu, cuda or cuda:N)", s);
}

df_status df_device_check(df_device d) {
    if (d.kind == DF_DEVICE_CPU) return DF_OK;
#ifdef DIFFUSE_CUDA
    char desc[256];
    if (df_cuda_describe(d.index, desc, sizeof desc) != DF_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", df_last_error());
        return df_fail(DF_ERR_UNSUPPORTED, "--device cuda:%d: %s; use --device cpu", d.index, why);
    }
    return df_fail(DF_ERR_UNSUPPORTED,
                   "cuda:%d (%s): this build's CUDA backend finds devices but has no kernels yet; use --device cpu",
                   d.index, desc);
#else
    return df_fail(DF_ERR_UNSUPPORTED,
                   "--device cuda: this build has no CUDA backend (configure with cmake -DDIFFUSE_CUDA=ON, "
                   "on a machine with CUDA); use --device cpu");
#endif
}

int df_device_cuda_built(void) {
#ifdef DIFFUSE_CUDA
    return 1;
#else
    return 0;
#endif
}

int df_device_cuda_count(void) {
#ifdef DIFFUSE_CUDA
    return df_cuda_device_count(NULL);
#else
    return 0;
#endif
}
