/* rng.c: counter-based random numbers (Philox4x32-10, Salmon et al. SC'11, "Parallel random numbers:
 * as easy as 1, 2, 3"). A value is a pure function of (seed, counter), so results do not depend on
 * thread count or call order, and a resumed run continues exactly. */
#include "common.h"
#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void df_philox4x32(const uint32_t ctr[4], uint64_t key, uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (uint32_t)p1;
        c2 = n2;
        c3 = (uint32_t)p0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void philox_block(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, size_t block, uint32_t r[4]) {
    uint32_t ctr[4] = {(uint32_t)block, a, b, stream};
    ASSERT(block <= 0xFFFFFFFFu);
    df_philox4x32(ctr, seed, r);
}

/* Box-Muller on (u1, u2): u1 in (0, 1] so the log is finite. */
static void box_muller(uint32_t x0, uint32_t x1, float *z0, float *z1) {
    const double two_pi = 6.283185307179586476925286766559;
    double u1 = ((double)x0 + 0.5) * (1.0 / 4294967296.0);
    double u2 = (double)x1 * (1.0 / 4294967296.0);
    double r = sqrt(-2.0 * log(u1));
    *z0 = (float)(r * cos(two_pi * u2));
    *z1 = (float)(r * sin(two_pi * u2));
}

void df_randn(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, float *out, size_t n) {
    for (size_t blk = 0; blk * 4 < n; blk++) {
        uint32_t r[4];
        float z[4];
        philox_block(seed, stream, a, b, blk, r);
        box_muller(r[0], r[1], &z[0], &z[1]);
        box_muller(r[2], r[3], &z[2], &z[3]);
        for (int j = 0; j < 4 && blk * 4 + j < n; j++) out[blk * 4 + j] = z[j];
    }
}

void df_randu(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, float *out, size_t n) {
    for (size_t blk = 0; blk * 4 < n; blk++) {
        uint32_t r[4];
        philox_block(seed, stream, a, b, blk, r);
        /* top 24 bits: exactly representable, strictly below 1 */
        for (int j = 0; j < 4 && blk * 4 + j < n; j++) out[blk * 4 + j] = (float)(r[j] >> 8) * (1.0f / 16777216.0f);
    }
}

uint32_t df_rand_below(uint64_t seed, uint32_t stream, uint32_t a, uint32_t b, uint32_t c, uint32_t bound) {
    ASSERT(bound > 0);
    uint32_t ctr[4] = {c, a, b, stream}, r[4];
    df_philox4x32(ctr, seed, r);
    /* 64-bit draw times bound, top 32 bits: bias below bound / 2^64, negligible. */
    uint64_t x = ((uint64_t)r[0] << 32) | r[1];
    return (uint32_t)(((unsigned __int128)x * bound) >> 64);
}
