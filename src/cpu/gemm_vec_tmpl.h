/* gemm_vec_tmpl.h: internal to gemm_vec.c, included once per level: the packers and kernels of
 * one vector format of the blocked driver (gemm_blocked.h), in portable C on GCC's vector
 * extensions. The includer defines:
 *   VT_NAME(x)  a unique name for x at this level        VT_TARGET  the function attribute (or nothing)
 *   VT_VW       floats per vector (4 or 8)                VT_RT, VT_CT  rows x vectors of the sub-tile
 *   VT_MADD(acc, a, b)  acc + a b, one rounding where the level has FMA
 * and the template #undefs them at its end, ready for the next level.
 * The driver's tile is 8 rows x 48 columns; a vector register file of 16 (AVX2, SSE2) or 32 (NEON)
 * holds only part of it, so the kernel computes it in sub-tiles of VT_RT rows x VT_CT vectors (the
 * A and B strips stay in L1 between the passes). Every element of C still sums its steps in order
 * in one chain, as the AVX-512 kernel does: where both use FMA, the two give the same bits. */

typedef float VT_NAME(vf) __attribute__((vector_size(VT_VW * 4)));
#define VF VT_NAME(vf)

VT_TARGET static inline __attribute__((always_inline)) VF VT_NAME(load)(const void *p) {
    VF v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* One sub-tile: rows r0.. r0+VT_RT-1 of the strip, vectors nvec (1..VT_CT, a constant after
 * inlining) from column col0. */
VT_TARGET static inline __attribute__((always_inline)) void VT_NAME(pass)(const int nvec, int r0, int col0, int steps,
                                                                          const uint32_t *a, int arow, int astep,
                                                                          const uint32_t *b, int bstep, float *c,
                                                                          int ldc, int mr, int nr, float alpha,
                                                                          float beta) {
    VF acc[VT_RT][VT_CT];
    for (int r = 0; r < VT_RT; r++)
        for (int j = 0; j < VT_CT; j++) acc[r][j] = (VF){0};
    const uint32_t *ap = a + (size_t)r0 * arow, *bp = b + col0;
    for (int s = 0; s < steps; s++) {
        VF bv[VT_CT];
#pragma GCC unroll 4
        for (int j = 0; j < nvec; j++) bv[j] = VT_NAME(load)(bp + VT_VW * j);
#pragma GCC unroll 8
        for (int r = 0; r < VT_RT; r++) {
            float x;
            memcpy(&x, ap + (size_t)r * arow, sizeof x);
            const VF av = (VF){0} + x;
#pragma GCC unroll 4
            for (int j = 0; j < nvec; j++) acc[r][j] = VT_MADD(acc[r][j], av, bv[j]);
        }
        ap += astep;
        bp += bstep;
    }
    const VF va = (VF){0} + alpha, vb = (VF){0} + beta;
    for (int r = 0; r < VT_RT && r0 + r < mr; r++) {
        float *cr = c + (size_t)(r0 + r) * ldc;
        for (int j = 0; j < nvec; j++) {
            const int n0 = col0 + VT_VW * j;
            VF v = acc[r][j] * va;
            if (n0 + VT_VW <= nr) {
                if (beta != 0.0f) v = VT_MADD(v, vb, VT_NAME(load)(cr + n0));
                memcpy(cr + n0, &v, sizeof v);
            } else {
                for (int l = 0; l < VT_VW && n0 + l < nr; l++)
                    cr[n0 + l] = beta != 0.0f ? fmaf(beta, cr[n0 + l], v[l]) : v[l];
            }
        }
    }
}

/* The kernel of gemm_kernel_fn over a strip nv x 16 columns wide, A in rows or steps layout. */
VT_TARGET static inline __attribute__((always_inline)) void VT_NAME(kernel_tmpl)(int nv, int rows, int steps, int spad,
                                                                                 const uint32_t *a, const uint32_t *b,
                                                                                 int bstep, float *c, int ldc, int mr,
                                                                                 int nr, float alpha, float beta) {
    const int arow = rows ? spad : 1, astep = rows ? 1 : GEMM_MR, cols = 16 * nv;
    for (int r0 = 0; r0 < GEMM_MR && r0 < mr; r0 += VT_RT)
        for (int col0 = 0; col0 < cols && col0 < nr; col0 += VT_CT * VT_VW) {
            const int left = (cols - col0) / VT_VW;
            if (left >= VT_CT)
                VT_NAME(pass)(VT_CT, r0, col0, steps, a, arow, astep, b, bstep, c, ldc, mr, nr, alpha, beta);
            else if (left == 2)
                VT_NAME(pass)(2, r0, col0, steps, a, arow, astep, b, bstep, c, ldc, mr, nr, alpha, beta);
            else
                VT_NAME(pass)(1, r0, col0, steps, a, arow, astep, b, bstep, c, ldc, mr, nr, alpha, beta);
        }
}

#define VT_KERNEL(nv, rows, suffix)                                                                              \
    VT_TARGET static void VT_NAME(kernel_##suffix)(int steps, int spad, const uint32_t *a, const uint32_t *b,    \
                                                   int bstep, float *c, int ldc, int mr, int nr, float alpha,    \
                                                   float beta) {                                                 \
        VT_NAME(kernel_tmpl)(nv, rows, steps, spad, a, b, bstep, c, ldc, mr, nr, alpha, beta);                 \
    }
VT_KERNEL(1, 0, 16_steps)
VT_KERNEL(2, 0, 32_steps)
VT_KERNEL(3, 0, 48_steps)
VT_KERNEL(1, 1, 16_rows)
VT_KERNEL(2, 1, 32_rows)
VT_KERNEL(3, 1, 48_rows)
#undef VT_KERNEL

/* Packers: the words of op(A) and op(B) in the driver's layouts (gemm_blocked.h), as fp32 bits
 * (R = 0) or rounded to bf16 and kept in fp32 (R = 1: the bf16 numerics on fp32 kernels). */
#define VT_PACKERS(R, sfx)                                                                                        \
    VT_TARGET static void VT_NAME(pack_a_rows_##sfx)(uint32_t *dst, const float *A, int lda, int mr, int kc) {   \
        const size_t spad = GEMM_WORDS_PAD(kc);                                                                  \
        for (int i = 0; i < GEMM_MR; i++) {                                                                      \
            uint32_t *d = dst + (size_t)i * spad;                                                                \
            if (i >= mr) {                                                                                       \
                memset(d, 0, spad * sizeof *d);                                                                  \
                continue;                                                                                        \
            }                                                                                                    \
            const float *x = A + (size_t)i * lda;                                         \
            for (int k = 0; k < kc; k++) d[k] = R ? gemm_bf16r_bits(x[k]) : gemm_word(x[k]);                                \
            for (size_t k = kc; k < spad; k++) d[k] = 0;                                                         \
        }                                                                                                        \
    }                                                                                                            \
    VT_TARGET static void VT_NAME(pack_a_steps_##sfx)(uint32_t *dst, const float *A, int lda, int mr, int kc) {  \
        for (int k = 0; k < kc; k++) {                                                                           \
            const float *x = A + (size_t)k * lda;                                                                \
            uint32_t *d = dst + (size_t)k * GEMM_MR;                                                             \
            for (int r = 0; r < mr; r++) d[r] = R ? gemm_bf16r_bits(x[r]) : gemm_word(x[r]);                     \
            for (int r = mr; r < GEMM_MR; r++) d[r] = 0;                                                         \
        }                                                                                                        \
    }                                                                                                            \
    VT_TARGET static void VT_NAME(pack_b_rows_##sfx)(uint32_t *dst, const float *B, int ldb, int nr, int kc,     \
                                                     int prefetch) {                                             \
        (void)prefetch;                                                                                          \
        for (int k = 0; k < kc; k++) {                                                                           \
            const float *x = B + (size_t)k * ldb;                                                                \
            uint32_t *d = dst + (size_t)k * GEMM_NR;                                                             \
            for (int n = 0; n < nr; n++) d[n] = R ? gemm_bf16r_bits(x[n]) : gemm_word(x[n]);                     \
            for (int n = nr; n < GEMM_NR; n++) d[n] = 0;                                                         \
        }                                                                                                        \
    }                                                                                                            \
    VT_TARGET static void VT_NAME(pack_b_cols_##sfx)(uint32_t *dst, const float *B, int ldb, int nr, int kc,     \
                                                     int prefetch) {                                             \
        (void)prefetch; /* no loads under a condition: columns past nr are written, never read */              \
        for (int n = 0; n < nr; n++) {                                                                           \
            const float *x = B + (size_t)n * ldb;                                                                \
            for (int k = 0; k < kc; k++) dst[(size_t)k * GEMM_NR + n] = R ? gemm_bf16r_bits(x[k]) : gemm_word(x[k]); \
        }                                                                                                        \
        for (int k = 0; k < kc; k++)                                                                             \
            for (int n = nr; n < GEMM_NR; n++) dst[(size_t)k * GEMM_NR + n] = 0;                                 \
    }
VT_PACKERS(0, f32)
VT_PACKERS(1, bf16r)
#undef VT_PACKERS

#define VT_FORMAT(sfx, in_place)                                                                                 \
    {                                                                                                            \
        .kw = 1, .b_in_place = in_place, .thread_min_macs = 1.0e6, .pack_a_rows = VT_NAME(pack_a_rows_##sfx),    \
        .pack_a_steps = VT_NAME(pack_a_steps_##sfx), .pack_b_rows = VT_NAME(pack_b_rows_##sfx),                  \
        .pack_b_cols = VT_NAME(pack_b_cols_##sfx),                                                               \
        .kernel = {{VT_NAME(kernel_16_steps), VT_NAME(kernel_32_steps), VT_NAME(kernel_48_steps)},              \
                   {VT_NAME(kernel_16_rows), VT_NAME(kernel_32_rows), VT_NAME(kernel_48_rows)}},                 \
    }
static const gemm_format VT_NAME(format_f32) = VT_FORMAT(f32, 1);
static const gemm_format VT_NAME(format_bf16r) = VT_FORMAT(bf16r, 0);
#undef VT_FORMAT
#undef VF
#undef VT_NAME
#undef VT_TARGET
#undef VT_VW
#undef VT_RT
#undef VT_CT
#undef VT_MADD
