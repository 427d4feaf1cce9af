/* A program outside the library, built against an installed diffuse with pkg-config (.ci/run):
 *   cc prog.c $(pkg-config --cflags --libs diffuse)
 * It uses the public header only: a linear schedule's alpha-bar at the last step (closed form:
 * the product of 1 - beta_t over the 1000 betas from 1e-4 to 0.02, 4.04e-05), and the error path
 * of a bad schedule name. */
#include <diffuse.h>
#include <math.h>
#include <stdio.h>

int main(void) {
    df_schedule_params p;
    df_schedule s;
    df_schedule_params_init(&p);
    if (df_schedule_from_name("linear", &p.kind) != DF_OK || df_schedule_new(&p, &s) != DF_OK) {
        fprintf(stderr, "prog: %s\n", df_last_error());
        return 1;
    }
    const double ab = s.alphabar[s.T - 1];
    printf("linear schedule, T = %d: alphabar[T-1] = %.4e\n", s.T, ab);
    df_schedule_free(&s);
    df_schedule_kind k;
    if (df_schedule_from_name("nope", &k) == DF_OK) return 1;
    printf("bad name refused: %s\n", df_last_error());
    return fabs(ab - 4.04e-5) < 0.01e-5 ? 0 : 1;
}
