/* A program outside the library, built against an installed diffuse with pkg-config (.ci/run):
 *   cc prog.c $(pkg-config --cflags --libs diffuse)
 * It uses the public header only: a linear schedule's alpha-bar at the last step (closed form:
 * the product of 1 - beta_t over the 1000 betas from 1e-4 to 0.02, 4.04e-05), the error path of a
 * bad schedule name, and a model through its opaque handle: a new 2-D MLP, its shape through the
 * accessors, and 8 points drawn with DDIM in 10 steps. */
#include <diffuse.h>
#include <math.h>
#include <stdio.h>

static int fail(const char *what) {
    fprintf(stderr, "prog: %s: %s\n", what, df_last_error());
    return 1;
}

/* An untrained 2-D model still gives finite points of the right count; returns 0 when it does. */
static int sample_points(void) {
    df_mlp_config mc;
    df_diffusion_config dc;
    df_mlp_config_init(&mc);
    df_diffusion_config_init(&dc);
    df_model *m;
    if (df_model_new_mlp(&mc, &dc, 8, 0, 1, &m) != DF_OK) return fail("new model");
    int c, h, w;
    const size_t dim = df_model_sample_shape(m, &c, &h, &w);
    df_sample_params sp;
    df_sample_params_init(&sp);
    sp.sampler = DF_SAMPLER_DDIM;
    sp.steps = 10;
    float x[8 * 2];
    df_status st = df_sample(df_model_schedule(m), df_model_diffusion(m)->pred, &sp, df_model_predict, m, 8, dim, 0,
                             x, NULL, NULL);
    int finite = 1;
    for (int i = 0; i < 16; i++) finite &= isfinite(x[i]) != 0;
    printf("model: %s, %zu parameters, samples of %zu floats (%dx%dx%d); 8 DDIM samples %s\n",
           df_model_kind(m) == DF_NET_MLP ? "mlp" : "unet", df_model_param_count(m), dim, c, h, w,
           st == DF_OK && finite ? "finite" : "FAILED");
    df_model_free(m);
    return st == DF_OK && finite && dim == 2 ? 0 : 1;
}

int main(void) {
    df_schedule_params p;
    df_schedule s;
    df_schedule_params_init(&p);
    if (df_schedule_from_name("linear", &p.kind) != DF_OK || df_schedule_new(&p, &s) != DF_OK) return fail("schedule");
    const double ab = s.alphabar[s.T - 1];
    printf("linear schedule, T = %d: alphabar[T-1] = %.4e\n", s.T, ab);
    df_schedule_free(&s);
    df_schedule_kind k;
    if (df_schedule_from_name("nope", &k) == DF_OK) return 1;
    printf("bad name refused: %s\n", df_last_error());
    if (sample_points()) return 1;
    return fabs(ab - 4.04e-5) < 0.01e-5 ? 0 : 1;
}
