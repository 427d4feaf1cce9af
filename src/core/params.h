/* params.h: the table of named parameter tensors of a model.
 * A model registers each tensor once (its diffusers/PyTorch name and shape); the table assigns
 * offsets into ONE contiguous float block. Parameters, gradients, AdamW moments and EMA weights
 * are each one block laid out by the same table, so zeroing gradients is one memset, the
 * optimiser one loop and a checkpoint one table walk. Offsets are multiples of 16 floats so
 * every tensor starts 64-byte aligned inside a 64-byte aligned block. */
#ifndef DF_PARAMS_H
#define DF_PARAMS_H

#include "common.h"

#define DF_PARAM_NAME_MAX 128
#define DF_PARAM_MAX_DIMS 4

typedef struct {
    char name[DF_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[DF_PARAM_MAX_DIMS];
    size_t offset;  /* in floats, from the start of the block */
    size_t numel;
} df_param_info;

typedef struct df_param_table {
    df_param_info *info;
    int count, cap;
    size_t total;   /* floats in the block, padding included */
} df_param_table;

/* Appends a tensor and returns its offset in floats. Aborts on allocation failure (start-up only). */
size_t df_param_table_add(df_param_table *t, const char *name, int ndim, const int64_t *shape);
const df_param_info *df_param_table_find(const df_param_table *t, const char *name);
/* Number of real parameters (padding excluded). */
size_t df_param_table_count(const df_param_table *t);
void df_param_table_free(df_param_table *t);

#endif
