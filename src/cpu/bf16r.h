/* bf16r.h: internal to the portable kernels (gemm_vec.c, conv3x3_vec.c): an fp32 value rounded to
 * bf16 and kept as fp32 bits, the rounding of df_bf16_round (nearest even, denormals to signed
 * zero, NaN made quiet), written branch-free so that the packing and padding loops vectorise. */
#ifndef DF_BF16R_H
#define DF_BF16R_H

#include <stdint.h>
#include <string.h>

/* The bits of f. */
static inline uint32_t df_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* f's bits u rounded to bf16, as fp32 bits. */
static inline uint32_t df_bf16r_bits(uint32_t u) {
    uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    r = (u & 0x7F800000u) == 0 ? (u & 0x80000000u) : r;
    r = (u & 0x7FFFFFFFu) > 0x7F800000u ? ((u | 0x00400000u) & 0xFFFF0000u) : r;
    return r;
}

#endif
