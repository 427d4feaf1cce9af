/* toydata.c: the standard 2-D toy distributions (as in the FFJORD / DDPM-toy literature), point CSV
 * files, and the energy distance used to judge 2-D samples. */
#include "common.h"
#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

static const char *toy_names[] = {"swissroll", "moons", "8gaussians", "checkerboard"};

void df_toy_point(df_toy_kind kind, uint64_t seed, uint32_t a, uint32_t index, float xy[2]) {
    float u[4], z[4];
    df_randu(seed, DF_STREAM_DATA, a, index, u, 4);
    df_randn(seed, DF_STREAM_DATA + 100, a, index, z, 4);
    switch (kind) {
    case DF_TOY_SWISSROLL: {  /* sklearn make_swiss_roll's (x, z) plane, noise 0.5, scaled by 1/5 */
        double t = 1.5 * M_PI * (1 + 2 * u[0]);
        xy[0] = (float)((t * cos(t) + 0.5 * z[0]) / 5.0);
        xy[1] = (float)((t * sin(t) + 0.5 * z[1]) / 5.0);
        break;
    }
    case DF_TOY_MOONS: {  /* sklearn make_moons, noise 0.05, centred and scaled to about [-2, 2] */
        double th = M_PI * u[0];
        double x = u[1] < 0.5 ? cos(th) : 1 - cos(th), y = u[1] < 0.5 ? sin(th) : 0.5 - sin(th);
        xy[0] = (float)(2.0 * (x + 0.05 * z[0] - 0.5));
        xy[1] = (float)(2.0 * (y + 0.05 * z[1] - 0.25));
        break;
    }
    case DF_TOY_8GAUSSIANS: {  /* 8 modes on a circle of radius 2, std 0.15 */
        int k = (int)(u[0] * 8) & 7;
        double ang = k * M_PI / 4;
        xy[0] = (float)(2 * cos(ang) + 0.15 * z[0]);
        xy[1] = (float)(2 * sin(ang) + 0.15 * z[1]);
        break;
    }
    case DF_TOY_CHECKERBOARD: {  /* FFJORD's 4x4 checkerboard on [-2, 2]^2 */
        double x1 = u[0] * 4 - 2;
        double x2 = u[1] - (u[2] < 0.5 ? 0 : 2);
        xy[0] = (float)x1;
        xy[1] = (float)(x2 + fmod(floor(x1) + 4, 2));
        break;
    }
    default: ASSERT(0);
    }
}

int df_toy_classes(df_toy_kind kind) { return kind == DF_TOY_8GAUSSIANS ? 8 : kind == DF_TOY_MOONS ? 2 : 0; }

/* The same uniforms df_toy_point draws, so the label is the component of that very point. */
int df_toy_label(df_toy_kind kind, uint64_t seed, uint32_t a, uint32_t index) {
    float u[4];
    df_randu(seed, DF_STREAM_DATA, a, index, u, 4);
    if (kind == DF_TOY_8GAUSSIANS) return (int)(u[0] * 8) & 7;
    if (kind == DF_TOY_MOONS) return u[1] < 0.5 ? 0 : 1;
    return -1;
}

void df_points_draw(const df_points *p, uint64_t seed, uint32_t step, int n, float *xy, int *labels) {
    for (int j = 0; j < n; j++) {
        if (labels && !p->is_file) labels[j] = df_toy_label(p->kind, seed, step, (uint32_t)j);
        if (p->is_file) {
            uint32_t r = df_rand_below(seed, DF_STREAM_TRAIN_DATA, step, 0, (uint32_t)j, (uint32_t)p->n);
            if (labels) labels[j] = p->labels ? p->labels[r] : -1;
            xy[2 * j] = p->points[2 * r];
            xy[2 * j + 1] = p->points[2 * r + 1];
        } else {
            /* index j of step `step`: stream a = step keeps every draw of the run distinct */
            df_toy_point(p->kind, seed, step, (uint32_t)j, xy + 2 * j);
        }
    }
}

df_status df_csv_read_points(const char *path, float **pts, int *n) {
    return df_csv_read_labelled_points(path, pts, NULL, n);
}

/* A label column: an integer in 0..65535 after x,y (only whitespace after it). 1 on success. */
static int parse_label(const char *s, int *label) {
    while (*s == ' ' || *s == '\t') s++;
    if (*s != ',') return 0;
    s++;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || errno == ERANGE || v < 0 || v > 65535) return 0;
    while (isspace((unsigned char)*end)) end++;
    if (*end != 0) return 0;
    *label = (int)v;
    return 1;
}

/* Every class 0..K-1 of the labels occurs, K >= 2; *classes = K. */
static df_status check_label_classes(const char *path, const int *labels, size_t n, int *classes) {
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (labels[i] + 1 > k) k = labels[i] + 1;
    if (k < 2) return df_fail(DF_ERR_FORMAT, "%s: the label column holds one class; conditioning needs two or more", path);
    unsigned char *seen = calloc((size_t)k, 1);
    if (!seen) return df_fail(DF_ERR_NOMEM, "out of memory reading %s", path);
    for (size_t i = 0; i < n; i++) seen[labels[i]] = 1;
    int missing = -1;
    for (int c = 0; c < k && missing < 0; c++)
        if (!seen[c]) missing = c;
    free(seen);
    if (missing >= 0)
        return df_fail(DF_ERR_FORMAT, "%s: labels go up to %d but class %d has no points (classes are 0..K-1)", path,
                       k - 1, missing);
    *classes = k;
    return DF_OK;
}

df_status df_csv_read_labelled_points(const char *path, float **pts, int **labels, int *n) {
    *pts = NULL;
    *n = 0;
    if (labels) *labels = NULL;
    int *lab = NULL, has_labels = -1; /* -1: not known until the first row */
    FILE *f = fopen(path, "r");
    if (!f) return df_fail(DF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1024, count = 0;
    float *buf = malloc(cap * 2 * sizeof(float));
    char line[4096];
    int lineno = 0;
    df_status st = DF_OK;
    if (!buf) {
        fclose(f);
        return df_fail(DF_ERR_NOMEM, "out of memory reading %s", path);
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            st = df_fail(DF_ERR_FORMAT, "%s:%d: line too long", path, lineno);
            break;
        }
        char *s = line;
        while (isspace((unsigned char)*s)) s++;
        if (*s == 0 || *s == '#') continue;
        char *end1, *end2;
        errno = 0;
        double x = strtod(s, &end1);
        char *sep = end1;
        while (*sep == ' ' || *sep == '\t') sep++;
        int ok = end1 != s && (*sep == ',' || *sep == ';');
        double y = ok ? strtod(sep + 1, &end2) : 0;
        if (ok) {
            ok = end2 != sep + 1;
            while (ok && isspace((unsigned char)*end2)) end2++;
            ok = ok && (*end2 == 0 || *end2 == ',');  /* extra columns are ignored, or a label read */
        }
        int label = -1;
        if (ok && labels) {
            const int row_has = *end2 == ',' && parse_label(end2, &label);
            if (has_labels < 0) has_labels = row_has;
            if (row_has != has_labels) {
                st = df_fail(DF_ERR_FORMAT, "%s:%d: %s", path, lineno,
                             has_labels ? "expected 'x,y,label' with an integer label in 0..65535 (the first row has one)"
                                        : "a label here, but the first row has none");
                break;
            }
        }
        if (!ok) {
            if (count == 0 && isalpha((unsigned char)*s)) continue;  /* a header line */
            st = df_fail(DF_ERR_FORMAT, "%s:%d: expected two numbers 'x,y', got: %.60s", path, lineno, s);
            break;
        }
        /* Points are stored as float: a finite double beyond FLT_MAX (3.4e38) would become inf. */
        if (!isfinite(x) || !isfinite(y) || errno == ERANGE || fabs(x) > FLT_MAX || fabs(y) > FLT_MAX) {
            st = df_fail(DF_ERR_FORMAT, "%s:%d: non-finite or out-of-range value", path, lineno);
            break;
        }
        if (count == cap || (has_labels == 1 && !lab)) {
            const size_t ncap = count == cap ? cap * 2 : cap;
            float *nb = count == cap ? realloc(buf, ncap * 2 * sizeof(float)) : buf;
            int *nl = has_labels == 1 ? realloc(lab, ncap * sizeof(int)) : NULL;
            if (nb) buf = nb;
            if (nl) lab = nl;
            if (!nb || (has_labels == 1 && !nl)) {
                st = df_fail(DF_ERR_NOMEM, "out of memory reading %s", path);
                break;
            }
            cap = ncap;
        }
        buf[2 * count] = (float)x;
        buf[2 * count + 1] = (float)y;
        if (has_labels == 1) lab[count] = label;
        count++;
        if (count > 100000000) {
            st = df_fail(DF_ERR_FORMAT, "%s: more than 1e8 points", path);
            break;
        }
    }
    if (st == DF_OK && ferror(f)) st = df_fail(DF_ERR_IO, "error reading %s", path);
    fclose(f);
    if (st == DF_OK && count == 0) st = df_fail(DF_ERR_FORMAT, "%s: no points found", path);
    int classes = 0;
    if (st == DF_OK && lab) st = check_label_classes(path, lab, count, &classes);
    if (st != DF_OK) {
        free(buf);
        free(lab);
        return st;
    }
    *pts = buf;
    if (labels) *labels = lab;
    *n = (int)count;
    return DF_OK;
}

df_status df_csv_write_points(const char *path, const float *pts, int n) {
    char tmp[4200];
    FILE *f = df_atomic_open(path, tmp, sizeof tmp);
    if (!f) return DF_ERR_IO;
    fprintf(f, "x,y\n");
    for (int j = 0; j < n; j++) fprintf(f, "%.9g,%.9g\n", pts[2 * j], pts[2 * j + 1]);
    return df_atomic_commit(f, tmp, path);
}

df_status df_points_open(const char *spec, df_points *p) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", spec);
    if (strncmp(spec, "toy:", 4) == 0) {
        for (int k = 0; k < DF_TOY_COUNT; k++)
            if (strcmp(spec + 4, toy_names[k]) == 0) {
                p->kind = (df_toy_kind)k;
                return DF_OK;
            }
        return df_fail(DF_ERR_ARG, "unknown toy data '%s' (valid: toy:swissroll, toy:moons, toy:8gaussians, toy:checkerboard)", spec + 4);
    }
    const char *path = strncmp(spec, "csv:", 4) == 0 ? spec + 4 : spec;
    size_t len = strlen(path);
    if (path == spec && !(len > 4 && strcmp(path + len - 4, ".csv") == 0))
        return df_fail(DF_ERR_ARG, "unknown 2-D data '%s' (use toy:NAME or csv:FILE)", spec);
    p->is_file = 1;
    df_status st = df_csv_read_labelled_points(path, &p->points, &p->labels, &p->n);
    if (st == DF_OK && p->labels)
        for (int i = 0; i < p->n; i++)
            if (p->labels[i] + 1 > p->classes) p->classes = p->labels[i] + 1;
    return st;
}

int df_points_classes(const df_points *p) { return p->is_file ? p->classes : df_toy_classes(p->kind); }

void df_points_free(df_points *p) {
    free(p->labels);
    free(p->points);
    memset(p, 0, sizeof *p);
}

static double mean_pair_dist(const float *a, int na, const float *b, int nb) {
    double s = 0;
    #pragma omp parallel for reduction(+ : s) schedule(static)
    for (int i = 0; i < na; i++) {
        double r = 0;
        for (int j = 0; j < nb; j++) r += hypot((double)a[2 * i] - b[2 * j], (double)a[2 * i + 1] - b[2 * j + 1]);
        s += r;
    }
    return s / ((double)na * nb);
}

double df_energy_distance(const float *a, int na, const float *b, int nb) {
    return 2 * mean_pair_dist(a, na, b, nb) - mean_pair_dist(a, na, a, na) - mean_pair_dist(b, nb, b, nb);
}
