/* ops_profile.c: optional wall-clock profile of the ops (ops.h), for benchmarks.
 *
 * What it is: a fixed table of (key, calls, seconds), where the key names an op and its shape
 * ("conv3x3 s1 fwd 32->64 14x14"). Ops bracket their work with df_ops_prof_begin/end; when
 * profiling is off (the default) begin returns 0 and end returns at once, so the cost is one
 * branch per op call. When on, the key is formatted and looked up linearly (a U-Net has a few
 * dozen distinct keys).
 * What it is not: thread-safe. Ops are called from one thread (they thread internally), and
 * only benchmarks turn profiling on.
 */
#include "ops.h"
#include "common.h"
#include <stdarg.h>
#include <string.h>

#define PROF_MAX_KEYS 256
#define PROF_KEY_LEN 64

static int prof_on;
static int prof_count;
static struct {
    char key[PROF_KEY_LEN];
    long calls;
    double seconds;
} prof_table[PROF_MAX_KEYS];

void df_ops_profile_enable(int on) { prof_on = on ? 1 : 0; }

void df_ops_profile_reset(void) { prof_count = 0; }

int df_ops_profile_count(void) { return prof_count; }

const char *df_ops_profile_get(int i, long *calls, double *seconds) {
    ASSERT(i >= 0 && i < prof_count);
    *calls = prof_table[i].calls;
    *seconds = prof_table[i].seconds;
    return prof_table[i].key;
}

double df_ops_prof_begin(void) { return prof_on ? df_time() : 0.0; }

void df_ops_prof_end(double t0, const char *fmt, ...) {
    if (!prof_on) return;
    const double dt = df_time() - t0;
    char key[PROF_KEY_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    for (int i = 0; i < prof_count; i++)
        if (strcmp(prof_table[i].key, key) == 0) {
            prof_table[i].calls++;
            prof_table[i].seconds += dt;
            return;
        }
    if (prof_count == PROF_MAX_KEYS) return;  /* full: later keys are dropped, never a crash */
    memcpy(prof_table[prof_count].key, key, sizeof key);
    prof_table[prof_count].calls = 1;
    prof_table[prof_count].seconds = dt;
    prof_count++;
}
