/* gemm_blocked.c: the loop nest, block sizes and thread split of the packed GEMMs (gemm_blocked.h)
 * shared by the bf16 and fp32 AVX-512 paths.
 *
 * What it is: format-agnostic C. It packs op(A) blocks and op(B) strips through the format's
 * packers and multiplies them with its kernels, both called through pointers (once per strip, a
 * negligible cost next to a strip's work); it uses no intrinsics itself.
 * What it is not: no packer, no kernel, no dispatch, no argument checks.
 */
#include "gemm_blocked.h"
#include "common.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* Balanced block sizes, kc a multiple of kw (a block never splits a word): for bf16, K = 576
 * becomes two blocks of 288 rather than 384 + 192. */
static void gemm_block_sizes(int kw, int M, int K, int *kc, int *mc) {
    const int kc_max = GEMM_KC_WORDS * kw;
    const int nk = (K + kc_max - 1) / kc_max;
    const int k = (K + nk - 1) / nk;
    *kc = (k + kw - 1) / kw * kw;
    const int row_bytes = (int)(sizeof(uint32_t) * GEMM_WORDS_PAD(*kc / kw)); /* as packed: bounds the block */
    const int mc_max = GEMM_A_BLOCK_BYTES / row_bytes / GEMM_MR * GEMM_MR;
    const int nm = (M + mc_max - 1) / mc_max;
    const int m = (M + nm - 1) / nm;
    *mc = (m + GEMM_MR - 1) / GEMM_MR * GEMM_MR;
}

/* Columns of C per panel. With several K blocks, C is read and written once per K block: a panel
 * of C (up to GEMM_C_PANEL_BYTES for an M block) keeps that traffic in L2 across the K blocks, at
 * the price of packing A once per panel. With one K block there is nothing to keep: one panel. */
static int gemm_panel_width(int N, int K, int kc, int mc) {
    if (K <= kc) return N;
    int nc = GEMM_C_PANEL_BYTES / (int)sizeof(float) / mc / GEMM_NR * GEMM_NR;
    if (nc < 4 * GEMM_NR) nc = 4 * GEMM_NR;
    return nc < N ? nc : N;
}

/* Words of one packed A block. */
static size_t gemm_a_block_words(int kw, int M, int K) {
    int kc, mc;
    gemm_block_sizes(kw, M, K, &kc, &mc);
    return (size_t)mc * GEMM_WORDS_PAD(kc / kw);
}

size_t df_gemm_blocked_workspace(int kw, int M, int K) {
    if (M <= 0 || K <= 0) return 0;
    return 2 * gemm_a_block_words(kw, M, K) * sizeof(uint32_t) + 64; /* two A buffers + alignment slack */
}

typedef struct {
    const gemm_format *f;
    int transA, transB, M, N, K, lda, ldb, ldc, kc, mc, nc;
    float alpha, beta;
    const float *A, *B;
    float *C;
    uint32_t *abuf[2];
} gemm_job;

/* Splits the ni x nj tiles of a block over T threads as a tm x tn grid (tm * tn = T): thread
 * (ti, tj) takes M strips [ni*ti/tm, ni*(ti+1)/tm) and column strips [nj*tj/tn, nj*(tj+1)/tn).
 * Cost of a thread, in 8 x 48 kernel calls: for each of its column strips, its M strips plus
 * GEMM_PACK_B_COST for packing the strip (every thread of a column of the grid packs it again),
 * all scaled by the strip's width (the last one may be 16 or 32 columns: 1/3 or 2/3). Picks the
 * grid with the cheapest busiest thread. */
#define GEMM_PACK_B_COST 2.0
static void gemm_grid(int ni, int nj, int last_nv, int T, int *tm, int *tn) {
    double best = 1e300;
    *tm = T;
    *tn = 1;
    for (int n = T; n >= 1; n--) {
        if (T % n) continue;
        const int m = T / n;
        double worst = 0;
        for (int tj = 0; tj < n; tj++) {
            const int j0 = (int)((long)nj * tj / n), j1 = (int)((long)nj * (tj + 1) / n);
            double width = j1 - j0;
            if (j1 == nj && j1 > j0) width -= 1.0 - last_nv / (GEMM_NR / 16.0);
            const double cost = width * ((ni + m - 1) / m + GEMM_PACK_B_COST);
            if (cost > worst) worst = cost;
        }
        if (worst < best) {
            best = worst;
            *tm = m;
            *tn = n;
        }
    }
}

/* Packs MR strip s (rows ic + s*MR ...) of the block (ic, pc) of op(A). */
static void pack_a_strip(const gemm_job *j, uint32_t *dst, int ic, int mcb, int s, int pc, int kcb) {
    const int m0 = ic + s * GEMM_MR, mr = mcb - s * GEMM_MR < GEMM_MR ? mcb - s * GEMM_MR : GEMM_MR;
    if (!j->transA)
        j->f->pack_a_rows(dst, j->A + (size_t)m0 * j->lda + pc, j->lda, mr, kcb);
    else
        j->f->pack_a_steps(dst, j->A + (size_t)pc * j->lda + m0, j->lda, mr, kcb);
}

/* Blocks of B larger than this (bytes of fp32 source) are prefetched by software while packing:
 * they come from L3 or memory rather than L2. */
#define GEMM_B_PREFETCH_BYTES (512 * 1024)
/* B strips are read in place (formats with b_in_place) when the M block has at most this many
 * strips. Measured on Zen 5 (fp32, one thread): +6-13% with 4 or 8 strips (conv layers of 32 or
 * 64 channels), +3-6% with 16; with 32 or more, packing is a small share and the contiguous strip
 * avoids the L1 set conflicts of rows 4 KiB apart (-2% at ldb = 1024). */
#define GEMM_B_IN_PLACE_MAX_STRIPS 16

/* This thread's B strips of block (ic, pc) within the panel of columns jc..jc+ncb-1, each packed
 * then multiplied with its MR strips. */
static void gemm_block_compute(const gemm_job *j, const uint32_t *ap, uint32_t *bstrip, int jc, int ncb, int ic,
                               int mcb, int pc, int kcb, float beta, int tid, int T) {
    const int steps = (kcb + j->f->kw - 1) / j->f->kw;
    const size_t spad = GEMM_WORDS_PAD(steps), astride = spad * GEMM_MR;
    const int ni = (mcb + GEMM_MR - 1) / GEMM_MR, nj = (ncb + GEMM_NR - 1) / GEMM_NR;
    int tm, tn;
    const int last_nr = ncb - (nj - 1) * GEMM_NR;
    gemm_grid(ni, nj, (last_nr + 15) / 16, T, &tm, &tn);
    const int ti = tid / tn, tj = tid % tn;
    /* Software prefetch of B only pays when this block of B does not stay in L2 between calls. */
    const int prefetch = (size_t)ncb * kcb * sizeof(float) > GEMM_B_PREFETCH_BYTES;
    const int i0 = (int)((long)ni * ti / tm), i1 = (int)((long)ni * (ti + 1) / tm);
    const int j0 = (int)((long)nj * tj / tn), j1 = (int)((long)nj * (tj + 1) / tn);
    if (i0 >= i1) return;
    const int in_place = j->f->b_in_place && !j->transB && ni <= GEMM_B_IN_PLACE_MAX_STRIPS;
    for (int js = j0; js < j1; js++) {
        const int n0 = jc + js * GEMM_NR, nr = jc + ncb - n0 < GEMM_NR ? jc + ncb - n0 : GEMM_NR;
        const uint32_t *b = bstrip;
        int bstep = GEMM_NR;
        if (in_place && nr == GEMM_NR) { /* a narrower strip would be read past column N */
            b = (const uint32_t *)(j->B + (size_t)pc * j->ldb + n0);
            bstep = j->ldb;
        } else if (!j->transB) {
            j->f->pack_b_rows(bstrip, j->B + (size_t)pc * j->ldb + n0, j->ldb, nr, kcb, prefetch);
        } else {
            j->f->pack_b_cols(bstrip, j->B + (size_t)n0 * j->ldb + pc, j->ldb, nr, kcb, prefetch);
        }
        const gemm_kernel_fn kernel = j->f->kernel[!j->transA][(nr + 15) / 16 - 1];
        for (int is = i0; is < i1; is++) {
            const int m0 = ic + is * GEMM_MR, mr = mcb - is * GEMM_MR < GEMM_MR ? mcb - is * GEMM_MR : GEMM_MR;
            kernel(steps, (int)spad, ap + (size_t)is * astride, b, bstep, j->C + (size_t)m0 * j->ldc + n0, j->ldc,
                   mr, nr, j->alpha, beta);
        }
    }
}

/* The work of thread tid of T (T == 1: the whole work, with no OpenMP construct, so that it can
 * run inside someone else's parallel region). With T > 1 the `omp for` over A strips ends in the
 * only barrier of a block: A blocks alternate between two buffers, so packing block b+1 never
 * overwrites the buffer a slower thread still reads for b. */
static void gemm_thread(const gemm_job *j, int tid, int T) {
    uint32_t bstrip[GEMM_WORDS_PAD(GEMM_KC_WORDS) * GEMM_NR] __attribute__((aligned(64)));
    int blk = 0;
    for (int jc = 0; jc < j->N; jc += j->nc) {
        const int ncb = j->N - jc < j->nc ? j->N - jc : j->nc;
        for (int pc = 0; pc < j->K; pc += j->kc) {
            const int kcb = j->K - pc < j->kc ? j->K - pc : j->kc;
            const size_t astride = GEMM_WORDS_PAD((kcb + j->f->kw - 1) / j->f->kw) * GEMM_MR;
            const float beta = pc == 0 ? j->beta : 1.0f;
            for (int ic = 0; ic < j->M; ic += j->mc) {
                const int mcb = j->M - ic < j->mc ? j->M - ic : j->mc;
                const int ni = (mcb + GEMM_MR - 1) / GEMM_MR;
                uint32_t *ap = j->abuf[blk++ & 1];
                if (T > 1) {
#pragma omp for schedule(static)
                    for (int s = 0; s < ni; s++) pack_a_strip(j, ap + (size_t)s * astride, ic, mcb, s, pc, kcb);
                } else {
                    for (int s = 0; s < ni; s++) pack_a_strip(j, ap + (size_t)s * astride, ic, mcb, s, pc, kcb);
                }
                gemm_block_compute(j, ap, bstrip, jc, ncb, ic, mcb, pc, kcb, beta, tid, T);
            }
        }
    }
}

void df_gemm_blocked(const gemm_format *f, int transA, int transB, int M, int N, int K, float alpha, const float *A,
                     int lda, const float *B, int ldb, float beta, float *C, int ldc, void *workspace) {
    gemm_job j = {f, transA, transB, M, N, K, lda, ldb, ldc, 0, 0, 0, alpha, beta, A, B, C, {NULL, NULL}};
    gemm_block_sizes(f->kw, M, K, &j.kc, &j.mc);
    j.nc = gemm_panel_width(N, K, j.kc, j.mc);
    const size_t words = gemm_a_block_words(f->kw, M, K);
    j.abuf[0] = (uint32_t *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    j.abuf[1] = j.abuf[0] + words;
    int nt = 1;
#ifdef _OPENMP
    /* Below f->thread_min_macs multiply-adds (~20 us on one core) waking a second thread and the
     * barriers of the blocks cost more than they save. */
    if (!omp_in_parallel() && (double)M * N * K >= f->thread_min_macs) nt = omp_get_max_threads();
#endif
    /* One thread runs without a team of one: its start and the barrier of each block cost 8-23% of
     * a single-threaded conv GEMM of 30-150 us (Zen 5, libgomp). */
    if (nt == 1) {
        gemm_thread(&j, 0, 1);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    gemm_thread(&j, omp_get_thread_num(), omp_get_num_threads());
#endif
}
