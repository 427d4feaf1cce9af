/* toydata.h: 2-D toy distributions and point files (CSV), for the 2-D denoiser.
 * Every point is a pure function of (seed, index): toy data never needs to be stored. */
#ifndef DF_TOYDATA_H
#define DF_TOYDATA_H

#include "common.h"

typedef enum { DF_TOY_SWISSROLL, DF_TOY_MOONS, DF_TOY_8GAUSSIANS, DF_TOY_CHECKERBOARD, DF_TOY_COUNT } df_toy_kind;

typedef struct {
    int is_file;        /* 0: a toy distribution; 1: a fixed set of points from a CSV file */
    df_toy_kind kind;
    float *points;      /* is_file: n x 2 */
    int n;
    char name[300];     /* "toy:8gaussians" or "csv:PATH" */
} df_points;

/* Parses "toy:NAME" or "csv:PATH" (a path ending in .csv also works). DF_ERR_ARG for an unknown toy,
 * DF_ERR_IO / DF_ERR_FORMAT for a missing or malformed file. Free with df_points_free. */
df_status df_points_open(const char *spec, df_points *p);
void df_points_free(df_points *p);

/* Point `index` of the toy distribution under `seed` (uses streams DF_STREAM_DATA/a). */
void df_toy_point(df_toy_kind kind, uint64_t seed, uint32_t a, uint32_t index, float xy[2]);

/* Draws n training points for (step, j) pairs: toys draw fresh points, files pick rows uniformly. */
void df_points_draw(const df_points *p, uint64_t seed, uint32_t step, int n, float *xy);

/* Reads a CSV of x,y rows (an optional header line, '#' comments and blank lines allowed).
 * Errors name the file and line. *pts is malloc'ed (n x 2). */
df_status df_csv_read_points(const char *path, float **pts, int *n);
/* Writes "x,y" rows with a header, atomically. */
df_status df_csv_write_points(const char *path, const float *pts, int n);

/* Energy distance between point sets a (na x 2) and b (nb x 2): 2E|a-b| - E|a-a'| - E|b-b'|. */
double df_energy_distance(const float *a, int na, const float *b, int nb);

#endif
