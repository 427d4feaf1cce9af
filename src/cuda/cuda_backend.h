/* cuda_backend.h: internal: the CUDA backend's device layer (src/cuda/, built with -DDIFFUSE_CUDA=ON), the
 * sibling of the CPU backend (src/cpu/) under the op seam (src/ops/). What exists today: finding and
 * describing the devices, so that `--device cuda[:N]` is checked once, with one clear message, on
 * every build. What does not, yet: the kernels. They are written where a GPU is at hand to run and
 * measure them (docs/performance.md, "GPU"); until then every op runs on the CPU backend and a
 * command asked for a CUDA device stops before any work. */
#ifndef DF_CUDA_BACKEND_H
#define DF_CUDA_BACKEND_H

#include "diffuse.h"

/* Number of CUDA devices the runtime sees (0 with no driver or no GPU); *why (may be NULL) gets the
 * runtime's reason when it is 0. */
int df_cuda_device_count(const char **why);

/* Name, compute capability and memory of device `index` into buf. DF_ERR_UNSUPPORTED when there is
 * no such device. */
df_status df_cuda_describe(int index, char *buf, size_t cap);

#endif
