/* names.c: the one spelling of every enum value, shared by the CLI, the logs and checkpoint metadata. */
#include "common.h"
#include <string.h>

static const char *schedule_names[] = {"linear", "cosine", "exponential", "quadratic", "sigmoid"};
static const char *pred_names[] = {"eps", "x0", "mean", "v"};
static const char *loss_names[] = {"simple", "vlb"};
static const char *var_names[] = {"posterior", "beta"};
static const char *sampler_names[] = {"ancestral", "ddim", "dpm++2m", "unipc"};
static const char *precision_names[] = {"fp32", "bf16"};

static df_status lookup(const char *what, const char **names, int count, const char *s, int *out) {
    char list[256] = "";
    for (int i = 0; i < count; i++) {
        if (s && strcmp(s, names[i]) == 0) {
            *out = i;
            return DF_OK;
        }
        strcat(list, i ? ", " : "");
        strcat(list, names[i]);
    }
    return df_fail(DF_ERR_ARG, "unknown %s '%s' (valid: %s)", what, s ? s : "", list);
}

#define NAME_PAIR(type, fn_name, from_name, table, what)                                  \
    const char *fn_name(type k) {                                                         \
        return (int)k >= 0 && (int)k < (int)(sizeof table / sizeof *table) ? table[k] : "?"; \
    }                                                                                     \
    df_status from_name(const char *s, type *out) {                                       \
        int i;                                                                            \
        df_status st = lookup(what, table, (int)(sizeof table / sizeof *table), s, &i);   \
        if (st == DF_OK) *out = (type)i;                                                  \
        return st;                                                                        \
    }

NAME_PAIR(df_schedule_kind, df_schedule_name, df_schedule_from_name, schedule_names, "schedule")
NAME_PAIR(df_pred, df_pred_name, df_pred_from_name, pred_names, "parameterisation")
NAME_PAIR(df_loss_kind, df_loss_name, df_loss_from_name, loss_names, "loss")
NAME_PAIR(df_var_kind, df_var_name, df_var_from_name, var_names, "variance")
NAME_PAIR(df_sampler_kind, df_sampler_name, df_sampler_from_name, sampler_names, "sampler")
NAME_PAIR(df_precision, df_precision_name, df_precision_from_name, precision_names, "precision")
