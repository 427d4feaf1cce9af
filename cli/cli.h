/* cli.h: what the commands of the diffuse command-line tool share (cli.c): reading flags, one
 * message and an exit code per error, the progress line, the default model and what --data names.
 * The layering: main.c dispatches to one cmd_*.c per command; a command calls cli.c and the
 * library, never another command. cli.c is the only place that decides how the tool talks. */
#ifndef DF_CLI_H
#define DF_CLI_H

#include "args.h"
#include "diffuse.h"
#include "common.h" /* the library's internal helpers: df_fail, df_alloc, df_atomic_*, df_mkdirs */
#include <limits.h> /* LONG_MAX in the range tables */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- flags and errors */

/* The values a count flag accepts. */
typedef struct {
    const char *name; /* the flag without "--"; NULL ends a table */
    long min, max;    /* max LONG_MAX: no upper bound here (the library may still set one) */
} cli_range;

/* The most --threads may ask for (0 = all cores, the default). */
#define CLI_MAX_THREADS 4096

/* Parses a command's flags (argv[2..]) into specs and checks the count flags in ranges (may be
 * NULL). Returns -1 when the command should go on, else the exit code to return at once: 0 after
 * --help, 2 after a bad flag (its one message already printed). */
int cli_parse_flags(const char *cmd, const char *usage, arg_spec *specs, const cli_range *ranges, int argc,
                    char **argv);

/* Prints "diffuse CMD: <message of the last error>" and returns the exit code for st: 2 for a
 * user error (DF_ERR_ARG), 130 for an interrupt, 1 for the rest. */
int cli_error(const char *cmd, df_status st);

/* Under mpirun (src/dist/): the ranks' statuses after a step each did alone (reading the model and
 * the data), so that all go on or all stop. DF_OK when every rank succeeded; else this rank's status
 * (printed here when rank 0 succeeded, cli_error printing rank 0's otherwise) or, on a rank that
 * succeeded, a failure naming a rank that did not. One process: st. */
df_status cli_agree(const char *cmd, df_status st);

/* Sets the OpenMP/OpenBLAS thread count (0 = leave the default: all cores; under mpirun, the
 * cores divided by the processes on this machine). */
void cli_set_threads(int threads);

/* --device NAME (NULL: cpu): parsed and checked (df_device_check) before a command reads or writes
 * anything, so `--device cuda` on a machine or build without it is one clear message. */
df_status cli_check_device(const char *name);
#define CLI_DEVICE_HELP "where the ops run: cpu (default), cuda or cuda:N (a -DDIFFUSE_CUDA=ON build)"

/* ---------------------------------------------------------------- progress */

/* Progress line on stderr: a redrawn bar on a terminal, plain lines otherwise (logs, tests).
 * total <= 0 means unknown; eta < 0 prints "?". */
void cli_progress_bar(const char *what, long done, long total, double elapsed, double eta, const char *extra,
                      int final);

/* ---------------------------------------------------------------- models */

/* The model used when --model is absent: $DIFFUSE_MODEL if set, else the shipped
 * models/fmnist-small.safetensors found next to the executable (../models) or in the source tree
 * it was built from. NULL (with the places tried in df_last_error) when there is none. */
const char *cli_default_model(void);

/* Another file that ships in models/ (the FID's fid-fmnist.safetensors): found as the shipped model
 * is, next to the executable (../models/NAME) or in the source tree; NULL (with the places tried in
 * df_last_error) when it is in neither. */
const char *cli_shipped_file(const char *name);

/* Opens the model at *path (a model.safetensors or a diffusers folder) for inference, filling
 * *info unless it is NULL. *path NULL means the default model: *path is set to it, and once it has
 * opened stderr says which file ("CMD: no --model given, using PATH"), so that a failure stays one
 * message. */
df_status cli_open_model(const char *cmd, const char **path, int max_batch, df_model **m, df_diffusers_info *info);
/* A model's sample shape (df_model_sample_shape): images C, H, W; 2-D points 2, 1, 1; dim floats. */
typedef struct {
    int c, h, w;
    size_t dim;
} cli_shape;
cli_shape cli_model_shape(const df_model *m);

/* ---------------------------------------------------------------- data */

/* What --data names, by the library's grammar (df_dataset_spec_check): *form is the image
 * dataset's form, or DF_DATASET_NONE for anything else, which is read as 2-D points (df_points_open
 * then accepts or refuses it). A malformed dataset spec (fashion-mnist:val) is DF_ERR_ARG here. */
df_status cli_data_form(const char *spec, df_dataset_form *form);

/* ---------------------------------------------------------------- the commands (main.c) */

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_fid(int argc, char **argv);

#endif
