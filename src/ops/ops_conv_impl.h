/* ops_conv_impl.h: what ops_conv.c (the planning: which path a shape takes, how much scratch it
 * needs, the dispatch) and ops_conv_runs.c (the drivers of the direct, lanes and Winograd kernels)
 * share. The plan is decided in ops_conv.c only; the drivers read it through these functions, so the
 * scratch a driver carves up is the scratch the planner sized. Internal to src/ops/. */
#ifndef DIFFUSE_OPS_CONV_IMPL_H
#define DIFFUSE_OPS_CONV_IMPL_H
#include "ops.h"
#include "winograd.h"
#include <stddef.h>

/* The most images one Winograd group holds (the drivers' pointer arrays are this long). */
#define WINO_MAX_GROUP 16

/* ---- the plan (ops_conv.c) */
int conv_bf16(const df_conv_shape *s);
int conv_groups(const df_conv_shape *s);
size_t conv_lanes_dw_gsz(const df_conv_shape *s);
size_t conv_lanes_dw_xsz(const df_conv_shape *s);
size_t conv_lanes_norm_floats(const df_conv_shape *s);
size_t conv_lanes_packed_floats(const df_conv_shape *s);
float *conv_lanes_wpack(const df_conv_shape *s, float *scratch);
size_t conv_thread_floats(const df_conv_shape *s);
int conv_threads(const df_conv_shape *s);
int conv_wino_dw_slices(const df_conv_shape *s, const df_wino_plan *d);
size_t conv_wino_norm_floats(const df_conv_shape *s, const df_wino_plan *p);
void conv_wino_plans(const df_conv_shape *s, df_wino_plan *f, df_wino_plan *x, df_wino_plan *d);
float *thread_cols(float *scratch, size_t per_thread);

/* ---- the drivers (ops_conv_runs.c) */
void conv_lanes_run(float *y, const float *x, const void *wpack, const float *b, const df_conv_fusion *f,
                    const df_conv_shape *s, int xc, int yc, int accumulate, float *scratch);
void conv_dw_lanes(float *dw, const float *dout, const float *inp, const df_conv_shape *s, float *scratch);
void conv_forward_lanes(float *out, const float *inp, const float *w, const float *b, const df_conv_fusion *f,
                        const df_conv_shape *s, float *scratch);
void conv_forward_direct(float *out, const float *inp, const float *w, const float *b, const df_conv_fusion *f,
                         const df_conv_shape *s, float *scratch);
void conv_wino_run(float *y, const float *x, const float *w, int flip, const float *b, const df_conv_fusion *f,
                   const df_conv_shape *s, const df_wino_plan *p, int accumulate, float *scratch);
void conv_forward_wino(float *out, const float *inp, const float *w, const float *b, const df_conv_fusion *f,
                       const df_conv_shape *s, float *scratch);
void conv_dw_wino(float *dw, const float *dout, const float *inp, const df_conv_shape *s, float *scratch);

#endif
