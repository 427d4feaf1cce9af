/* vexp.h: internal: an exp and a SiLU that vectorise (the SiLU ops, the fused GroupNorm + SiLU, the
 * softmax of attention). */
#ifndef DF_VEXP_H
#define DF_VEXP_H

#include <stdint.h>

/* exp(x) for the SiLU and the softmax, written so that `omp simd` vectorises it (libm's expf is a scalar call
 * without -ffast-math): x = n ln2 + r with |r| <= ln2/2 (n rounded by the 1.5 * 2^23 trick,
 * ln2 split in two so n ln2 is exact), e^r by its degree-6 Taylor polynomial (truncation
 * < 2^-25 relative on that interval), times 2^n built in the exponent bits. Arguments are clamped
 * to [-87, 88] so 2^n stays a normal float: outside that e^x is 0 or inf for the SiLU's purposes
 * (x / (1 + e^-x) is then 0 or x to float precision). Max relative error about 2 ulp. A NaN x
 * gives a wrong e^x but the SiLU's own x keeps the result NaN. */
/* The clamp's bounds, -87 and 88, defined in common.c: out of GCC's sight, so that the clamps
 * become a vmaxps and a vminps. With the constants in sight GCC gave each clamped branch its own
 * copy of the caller's arithmetic (e^x is a constant there), and a SiLU ran three vector divisions
 * per vector instead of one: most of the fused GroupNorm + SiLU's time. */
extern const float df_vexp_lo, df_vexp_hi;
#pragma omp declare simd notinbranch
static inline float df_vexpf(float x) {
    x = x < df_vexp_lo ? df_vexp_lo : x;
    x = x > df_vexp_hi ? df_vexp_hi : x;
    const float shifter = 12582912.0f;  /* 1.5 * 2^23: adding it rounds to an integer */
    const float t = x * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    const float r = (x - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { float f; int32_t i; } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}

/* silu(x) = x * sigmoid(x) = x / (1 + e^-x), the one formula of every SiLU (fused or not), so the
 * fused ops give the plain op's bits. */
#pragma omp declare simd notinbranch
static inline float df_vsiluf(float x) { return x / (1.0f + df_vexpf(-x)); }

/* g * dsilu/dx at x = g s (1 + x (1 - s)), s = sigmoid(x): the one formula of every SiLU backward
 * (fused with a norm or not), so the fused ops give the plain op's bits. */
#pragma omp declare simd notinbranch
static inline float df_vsilu_gradf(float g, float x) {
    const float s = 1.0f / (1.0f + df_vexpf(-x));
    return g * s * (1.0f + x * (1.0f - s));
}

#endif
