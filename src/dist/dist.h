/* dist.h: the communication layer for data-parallel runs (mpirun -np P diffuse ...): which process
 * this is, and the few collectives training, sampling and evaluation need.
 *
 * What it is: a thin seam over MPI. A build with -DDIFFUSE_MPI=ON compiles dist.c against MPI; a
 * build without it compiles the same functions as single-process stubs (rank 0 of 1, every
 * collective a no-op), so no other file has an #ifdef. Even an MPI build initialises MPI only when
 * a launcher started the process (mpirun, srun: their environment variables), so `diffuse` run
 * alone behaves exactly as a build without MPI.
 * What it is not: no point-to-point messages, no overlap of communication and compute.
 * Every collective must be called by every rank in the same order; the callers keep all ranks'
 * decisions identical by deciding on reduced values only. */
#ifndef DF_DIST_H
#define DF_DIST_H

#include <stddef.h>
#include <stdint.h>

/* 1 when this build has MPI (-DDIFFUSE_MPI=ON), else 0. */
int df_dist_built_with_mpi(void);
/* Starts MPI (MPI_THREAD_FUNNELED: only the main thread communicates, OpenMP threads compute) when
 * a launcher started this process; otherwise, and in a build without MPI, does nothing. Returns 0,
 * or -1 if MPI_Init_thread failed (the message already printed). */
int df_dist_init(int *argc, char ***argv);
/* Ends MPI if df_dist_init started it. */
void df_dist_finalize(void);
/* Ends this process with status `code` once every rank has called it, without MPI_Finalize: for a
 * run stopped by a signal. mpirun's Ctrl-C (Open MPI 4.1) sends SIGTERM to every rank, sleeps the
 * grace (odls_base_sigkill_timeout, 1 s by default) and sends SIGKILL to all; a rank's exit cuts
 * that sleep short (its SIGCHLD interrupts sleep()), so a rank that leaves early gets the others
 * killed: all leave together, after a barrier, at once (_exit). MPI_Finalize is skipped because
 * mpirun's PMIx server, ending the job, no longer answers it: it would wait about 2 s. A rank that
 * exits non-zero without it is reported by mpirun as any failed rank is (the same message and
 * status). Every rank must call it (callers decide on a reduced flag). Without MPI: exit(code). */
void df_dist_exit_together(int code);
/* This process's rank (0-based) and the number of processes; 0 and 1 without MPI. */
int df_dist_rank(void);
int df_dist_size(void);
/* Processes on this node (OMPI_COMM_WORLD_LOCAL_SIZE), 1 when unknown. */
int df_dist_local_size(void);
/* In-place sum over all ranks of n floats / doubles (any n: split into int-sized pieces). */
void df_dist_allreduce_sum_f32(float *x, size_t n);
void df_dist_allreduce_sum_f64(double *x, size_t n);
/* Returns when every rank has called it (a timing aid: the wait for the slowest rank, apart from
 * the transfer of the collective after it). */
void df_dist_barrier(void);
/* The largest of v over all ranks (for flags: any rank's stop request, any rank's failure). */
int df_dist_max_int(int v);
/* Copies root's bytes into buf on every other rank. */
void df_dist_bcast(void *buf, size_t bytes, int root);
/* 1 if v is the same on every rank, else 0 (on every rank). */
int df_dist_same_u64(uint64_t v);
/* FNV-1a of a block of bytes, for df_dist_same_u64 of larger things. */
uint64_t df_dist_hash(const void *p, size_t bytes, uint64_t h);
/* Rank r's share of n items (samples): [df_dist_share_lo(n, r), df_dist_share_lo(n, r + 1)),
 * contiguous and in rank order, so that sample j is the same sample whatever the rank count. */
size_t df_dist_share_lo(size_t n, int rank);
/* Gathers every rank's share of n items of `item` floats into all (n x item, rank 0 only; NULL
 * elsewhere): mine holds this rank's share. Without MPI, copies mine into all. */
void df_dist_gather_f32(const float *mine, float *all, size_t n, size_t item);
/* Ends every rank at once with exit code `code` (MPI_Abort); exit(code) without MPI. */
void df_dist_abort(int code);

#endif
