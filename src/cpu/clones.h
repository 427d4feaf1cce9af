/* clones.h: internal: one elementwise loop compiled for each x86 CPU level, the copy run picked by
 * the level in use (cpu.h), so that a portable build keeps the wide vectors where the CPU has them.
 *
 * DF_CLONES(name, params, args) defines `static void name params` from an always-inline body
 * `name##_body` that the includer wrote first: a generic copy (the baseline: SSE2 on x86-64, NEON
 * on aarch64), an avx2 copy (target avx2, fma) and an avx512 copy (target avx512f/bw/vl), each the
 * same C, vectorised by GCC at its width (`omp simd` loops). The switch costs a load and a branch
 * per call: call it per row of work, not per element. On other architectures: the body alone.
 * The copies may differ in the last bit (FMA contraction, the order of a vectorised reduction). */
#ifndef DF_CLONES_H
#define DF_CLONES_H

#include "cpu.h"

#define DF_BODY static inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define DF_CLONES(name, params, args)                                                                          \
    static void name##_generic params { name##_body args; }                                                   \
    __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body args; }                   \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma"))) static void name##_avx512 params {           \
        name##_body args;                                                                                      \
    }                                                                                                          \
    static void name params {                                                                                  \
        switch (df_cpu_isa()) {                                                                                \
        case DF_ISA_AVX512:                                                                                    \
        case DF_ISA_AVX512BF16: name##_avx512 args; break;                                                     \
        case DF_ISA_AVX2: name##_avx2 args; break;                                                             \
        default: name##_generic args; break;                                                                   \
        }                                                                                                      \
    }
#else
#define DF_CLONES(name, params, args) \
    static void name params { name##_body args; }
#endif

#endif
