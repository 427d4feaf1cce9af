/* cli.h: shared pieces of the diffuse command-line tool (the only place that prints and exits). */
#ifndef DF_CLI_H
#define DF_CLI_H

#include "args.h"
#include "diffuse.h"
#include "common.h" /* the library's internal helpers: df_fail, df_alloc, df_atomic_*, df_mkdirs */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints "diffuse CMD: <message of the last error>" and returns the exit code for status st. */
int cli_error(const char *cmd, df_status st);
/* Sets the OpenMP/OpenBLAS thread count (0 = leave the default). */
void cli_set_threads(int threads);
/* Progress line on stderr: a redrawn bar on a terminal, plain lines otherwise. */
void cli_progress_bar(const char *what, long done, long total, double elapsed, double eta, const char *extra, int final);
void cli_format_seconds(double s, char *buf, size_t cap);

int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* Opens a model file or a diffusers folder for inference. */
df_status cli_model_open(const char *path, int max_batch, df_model *m);
/* The model `diffuse sample` uses without --model: $DIFFUSE_MODEL if set, else the shipped
 * models/fmnist-small.safetensors found next to the executable (../models) or in the source tree
 * it was built from. NULL (with the places tried in df_last_error) when there is none. */
const char *cli_default_model(void);
/* Whether --data names an image dataset (else 2-D points). */
int cli_is_image_data(const char *spec);

#endif
