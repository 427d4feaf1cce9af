/* dist.c: see dist.h. */
#include "dist.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t df_dist_hash(const void *p, size_t bytes, uint64_t h) {
    const unsigned char *c = p;
    if (!h) h = 1469598103934665603ull;
    for (size_t i = 0; i < bytes; i++) h = (h ^ c[i]) * 1099511628211ull;
    return h;
}

size_t df_dist_share_lo(size_t n, int rank) { return n * (size_t)rank / (size_t)df_dist_size(); }

#ifdef DIFFUSE_MPI
#include <mpi.h>

static int started, rank_, size_ = 1;

/* Launched by mpirun / mpiexec (Open MPI, MPICH's Hydra, PMIx) or srun. */
static int launched(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

int df_dist_built_with_mpi(void) { return 1; }

int df_dist_init(int *argc, char ***argv) {
    if (started || !launched()) return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "diffuse: MPI_Init_thread failed\n");
        return -1;
    }
    started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    return 0;
}

void df_dist_finalize(void) {
    if (!started) return;
    started = 0;
    MPI_Finalize();
}

void df_dist_exit_together(int code) {
    if (!started) exit(code);
    /* every rank done (rank 0's files written) before any leaves: see dist.h */
    MPI_Barrier(MPI_COMM_WORLD);
    fflush(NULL);
    _exit(code);  /* at once: exit handlers would widen the gap that mpirun's SIGKILL falls into */
}

int df_dist_rank(void) { return rank_; }
int df_dist_size(void) { return size_; }

int df_dist_local_size(void) {
    const char *s = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    if (!s) s = getenv("MPI_LOCALNRANKS");
    int n = s ? atoi(s) : 1;
    return n >= 1 ? n : 1;
}

#define PIECE ((size_t)INT_MAX / 2)

void df_dist_allreduce_sum_f32(float *x, size_t n) {
    if (size_ == 1) return;
    for (size_t i = 0; i < n; i += PIECE)
        MPI_Allreduce(MPI_IN_PLACE, x + i, (int)(n - i < PIECE ? n - i : PIECE), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

void df_dist_allreduce_sum_f64(double *x, size_t n) {
    if (size_ == 1) return;
    for (size_t i = 0; i < n; i += PIECE)
        MPI_Allreduce(MPI_IN_PLACE, x + i, (int)(n - i < PIECE ? n - i : PIECE), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

void df_dist_barrier(void) {
    if (size_ > 1) MPI_Barrier(MPI_COMM_WORLD);
}

int df_dist_max_int(int v) {
    if (size_ == 1) return v;
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return v;
}

void df_dist_bcast(void *buf, size_t bytes, int root) {
    if (size_ == 1) return;
    char *p = buf;
    for (size_t i = 0; i < bytes; i += PIECE)
        MPI_Bcast(p + i, (int)(bytes - i < PIECE ? bytes - i : PIECE), MPI_BYTE, root, MPI_COMM_WORLD);
}

int df_dist_same_u64(uint64_t v) {
    if (size_ == 1) return 1;
    /* [v, ~v] under MAX gives the largest and (complemented) the smallest */
    unsigned long long mm[2] = {(unsigned long long)v, ~(unsigned long long)v};
    MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
    return mm[0] == ~mm[1];
}

void df_dist_abort(int code) {
    if (started) MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

void df_dist_gather_f32(const float *mine, float *all, size_t n, size_t item) {
    const int P = size_, r = rank_;
    const size_t lo = df_dist_share_lo(n, r), cnt = (df_dist_share_lo(n, r + 1) - lo) * item;
    if (P == 1) {
        if (all != mine) memcpy(all, mine, cnt * sizeof(float));
        return;
    }
    if (n * item > (size_t)INT_MAX) { /* beyond one Gatherv's int counts: every sample of every rank by root */
        fprintf(stderr, "diffuse: %zu floats are too many to gather in one piece\n", n * item);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int *counts = NULL, *displs = NULL;
    if (r == 0) {
        counts = malloc(sizeof(int) * (size_t)P);
        displs = malloc(sizeof(int) * (size_t)P);
        if (!counts || !displs) MPI_Abort(MPI_COMM_WORLD, 1);
        for (int k = 0; k < P; k++) {
            displs[k] = (int)(df_dist_share_lo(n, k) * item);
            counts[k] = (int)((df_dist_share_lo(n, k + 1) - df_dist_share_lo(n, k)) * item);
        }
    }
    /* rank 0's share may already sit in place in `all` (its lo is 0) */
    const void *send = r == 0 && mine == all ? MPI_IN_PLACE : (const void *)mine;
    MPI_Gatherv(send, (int)cnt, MPI_FLOAT, all, counts, displs, MPI_FLOAT, 0, MPI_COMM_WORLD);
    free(counts);
    free(displs);
}

#else /* the single-process stubs */

void df_dist_gather_f32(const float *mine, float *all, size_t n, size_t item) {
    if (all && all != mine) memcpy(all, mine, n * item * sizeof(float));
}

int df_dist_built_with_mpi(void) { return 0; }
int df_dist_init(int *argc, char ***argv) { (void)argc; (void)argv; return 0; }
void df_dist_finalize(void) {}
void df_dist_exit_together(int code) { exit(code); }
int df_dist_rank(void) { return 0; }
int df_dist_size(void) { return 1; }
int df_dist_local_size(void) { return 1; }
void df_dist_allreduce_sum_f32(float *x, size_t n) { (void)x; (void)n; }
void df_dist_allreduce_sum_f64(double *x, size_t n) { (void)x; (void)n; }
void df_dist_barrier(void) {}
int df_dist_max_int(int v) { return v; }
void df_dist_bcast(void *buf, size_t bytes, int root) { (void)buf; (void)bytes; (void)root; }
int df_dist_same_u64(uint64_t v) { (void)v; return 1; }
void df_dist_abort(int code) { exit(code); }

#endif
