/* params.c: see params.h. */
#include "params.h"
#include <string.h>

size_t df_param_table_add(df_param_table *t, const char *name, int ndim, const int64_t *shape) {
    ASSERT(ndim >= 0 && ndim <= DF_PARAM_MAX_DIMS);
    ASSERT(strlen(name) < DF_PARAM_NAME_MAX);
    ASSERT(df_param_table_find(t, name) == NULL);
    if (t->count == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->info = realloc(t->info, (size_t)t->cap * sizeof *t->info);
        ASSERT(t->info != NULL);
    }
    df_param_info *p = &t->info[t->count++];
    memset(p, 0, sizeof *p);
    strcpy(p->name, name);
    p->ndim = ndim;
    p->numel = 1;
    for (int d = 0; d < ndim; d++) {
        ASSERT(shape[d] >= 0);
        p->shape[d] = shape[d];
        p->numel *= (size_t)shape[d];
    }
    p->offset = t->total;
    t->total += (p->numel + 15) & ~(size_t)15;
    return p->offset;
}

const df_param_info *df_param_table_find(const df_param_table *t, const char *name) {
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->info[i].name, name) == 0) return &t->info[i];
    return NULL;
}

size_t df_param_table_count(const df_param_table *t) {
    size_t n = 0;
    for (int i = 0; i < t->count; i++) n += t->info[i].numel;
    return n;
}

void df_param_table_free(df_param_table *t) {
    free(t->info);
    memset(t, 0, sizeof *t);
}
