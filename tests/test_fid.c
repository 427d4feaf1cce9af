/* test_fid.c: the FID's statistics and Frechet distance (src/metrics/fid.c) against closed forms:
 *  - commuting covariances (S1 = Q diag(a) Q^T, S2 = Q diag(b) Q^T, one random rotation Q):
 *    d^2 = |dmu|^2 + sum (sqrt a_i - sqrt b_i)^2;
 *  - 2x2: the eigenvalues l1, l2 of S1 S2 give tr((S1 S2)^{1/2}) = sqrt(l1) + sqrt(l2)
 *    = sqrt(tr(S1 S2) + 2 sqrt(det S1 det S2));
 *  - 3x3 non-commuting pairs from tools/fid_reference.py (Denman-Beavers in 60-digit decimals);
 *  - the distance's own properties: d(A, A) = 0, symmetry, invariance under a common rotation;
 *  - mean and covariance against a long double two-pass reference, on features with a large
 *    offset (a one-pass sum of squares would cancel there), over several dsyrk chunks;
 *  - the cache file round trip (bit exact) and the errors. */
#include "check.h"
#include <math.h>
#include <string.h>

#define TOL 1e-9 /* relative: the eigendecompositions are backward stable, so ~1e-13 is typical */

/* n x n random rotation (rows orthonormal) by modified Gram-Schmidt on Philox normals. */
static void random_rotation(int n, uint32_t seed, double *q) {
    float *g = malloc(sizeof(float) * (size_t)n * n);
    df_randn(seed, DF_STREAM_USER, 0, 0, g, (size_t)n * n);
    for (int i = 0; i < n * n; i++) q[i] = g[i];
    free(g);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++) {
            double d = 0;
            for (int k = 0; k < n; k++) d += q[i * n + k] * q[j * n + k];
            for (int k = 0; k < n; k++) q[i * n + k] -= d * q[j * n + k];
        }
        double norm = 0;
        for (int k = 0; k < n; k++) norm += q[i * n + k] * q[i * n + k];
        for (int k = 0; k < n; k++) q[i * n + k] /= sqrt(norm);
    }
}

/* s = Q^T diag(e) Q (the rows of Q are the eigenvectors). */
static void from_eigen(int n, const double *q, const double *e, double *s) {
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) {
            double v = 0;
            for (int k = 0; k < n; k++) v += q[k * n + r] * e[k] * q[k * n + c];
            s[r * n + c] = v;
        }
}

static double frechet(int n, const double *mu1, const double *s1, const double *mu2, const double *s2) {
    double d = NAN;
    df_status st = df_frechet_distance(n, mu1, s1, mu2, s2, &d);
    CHECK(st == DF_OK, "%s", df_last_error());
    return d;
}

/* Commuting covariances of dimension n; zeros eigenvalues in both when `singular`. */
static void test_commuting(int n, int singular, double tol) {
    double *q = malloc(sizeof(double) * n * n), *s1 = malloc(sizeof(double) * n * n);
    double *s2 = malloc(sizeof(double) * n * n), a[64], b[64], mu1[64], mu2[64];
    float u[4 * 64];
    df_randu(7, DF_STREAM_USER, (uint32_t)n, (uint32_t)singular, u, (size_t)4 * n);
    random_rotation(n, 11 + (uint32_t)n, q);
    double want = 0;
    for (int i = 0; i < n; i++) {
        a[i] = 0.1 + 3.0 * u[i];
        b[i] = 0.05 + 5.0 * u[n + i];
        if (singular && i % 4 == 0) a[i] = b[i] = 0.0; /* both rank-deficient in the same directions */
        mu1[i] = u[2 * n + i] - 0.5;
        mu2[i] = 2.0 * u[3 * n + i];
        want += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]) + (sqrt(a[i]) - sqrt(b[i])) * (sqrt(a[i]) - sqrt(b[i]));
    }
    from_eigen(n, q, a, s1);
    from_eigen(n, q, b, s2);
    char what[64];
    snprintf(what, sizeof what, "commuting n=%d%s", n, singular ? " singular" : "");
    CHECK_CLOSE(frechet(n, mu1, s1, mu2, s2), want, tol, what);
    free(q);
    free(s1);
    free(s2);
}

static void test_2x2(void) {
    float g[8];
    for (uint32_t k = 0; k < 20; k++) {
        df_randn(3, DF_STREAM_USER, k, 0, g, 8);
        /* S = A A^T of random 2x2 A */
        double s1[4] = {g[0] * g[0] + g[1] * g[1], g[0] * g[2] + g[1] * g[3], 0, g[2] * g[2] + g[3] * g[3]};
        double s2[4] = {g[4] * g[4] + g[5] * g[5], g[4] * g[6] + g[5] * g[7], 0, g[6] * g[6] + g[7] * g[7]};
        s1[2] = s1[1];
        s2[2] = s2[1];
        double tr12 = s1[0] * s2[0] + s1[1] * s2[2] + s1[2] * s2[1] + s1[3] * s2[3];
        double det1 = s1[0] * s1[3] - s1[1] * s1[2], det2 = s2[0] * s2[3] - s2[1] * s2[2];
        double trs = sqrt(tr12 + 2 * sqrt(det1 * det2));
        double mu1[2] = {k * 0.1, -1}, mu2[2] = {0.5, 0.25};
        double want = (mu1[0] - mu2[0]) * (mu1[0] - mu2[0]) + (mu1[1] - mu2[1]) * (mu1[1] - mu2[1]) + s1[0] + s1[3] +
                      s2[0] + s2[3] - 2 * trs;
        CHECK_CLOSE(frechet(2, mu1, s1, mu2, s2), want, TOL, "2x2 closed form");
    }
}

/* Printed by tools/fid_reference.py: S1, S2 (row-major), mu1, mu2, tr((S1 S2)^{1/2}), d^2. */
static const struct {
    double s1[9], s2[9], mu1[3], mu2[3], trace_sqrt, d2;
} REF3[] = {
    /* noncommuting: tools/fid_reference.py */
    {{5, 1, 2, 1, 2, 3, 2, 3, 10}, {5, 1, 2, 1, 10, 3, 2, 3, 2}, {1.0, 0.0, -2.0}, {0.0, 2.0, 1.0}, 13.613380881531871,
     20.773238236936258},
    /* skewed: tools/fid_reference.py */
    {{25, 20, 5, 20, 17, 6, 5, 6, 6}, {3, 1, 3, 1, 5, -3, 3, -3, 9}, {0.0, 0.0, 0.0}, {0.5, 0.0, 0.0},
     20.373356450619433, 24.503287098761131},
};

static void test_3x3(void) {
    for (size_t k = 0; k < sizeof REF3 / sizeof REF3[0]; k++) {
        CHECK_CLOSE(frechet(3, REF3[k].mu1, REF3[k].s1, REF3[k].mu2, REF3[k].s2), REF3[k].d2, 1e-12, "3x3 reference");
        /* the square root's trace alone, with equal means: d^2 = tr S1 + tr S2 - 2 tr(...) */
        double t = REF3[k].s1[0] + REF3[k].s1[4] + REF3[k].s1[8] + REF3[k].s2[0] + REF3[k].s2[4] + REF3[k].s2[8];
        CHECK_CLOSE((t - frechet(3, REF3[k].mu1, REF3[k].s1, REF3[k].mu1, REF3[k].s2)) / 2, REF3[k].trace_sqrt, 1e-12,
                    "3x3 trace of the square root");
    }
}

/* A random full-rank covariance B B^T / n of dimension n. */
static void random_cov(int n, uint32_t seed, double *s) {
    float *g = malloc(sizeof(float) * (size_t)n * n);
    df_randn(seed, DF_STREAM_USER, 1, 0, g, (size_t)n * n);
    for (int r = 0; r < n; r++)
        for (int c = 0; c < n; c++) {
            double v = 0;
            for (int k = 0; k < n; k++) v += (double)g[r * n + k] * g[c * n + k];
            s[r * n + c] = v / n;
        }
    free(g);
}

static void test_properties(void) {
    enum { N = 48 };
    static double s1[N * N], s2[N * N], q[N * N], r1[N * N], r2[N * N], t[N * N];
    double mu1[N], mu2[N], zero[N] = {0};
    random_cov(N, 1, s1);
    random_cov(N, 2, s2);
    for (int i = 0; i < N; i++) mu1[i] = 0.01 * i, mu2[i] = -0.02 * i;
    double d12 = frechet(N, mu1, s1, mu2, s2), d21 = frechet(N, mu2, s2, mu1, s1);
    CHECK(d12 > 1.0, "distinct Gaussians: d^2 = %g", d12);
    CHECK_CLOSE(d21, d12, TOL, "symmetry");
    double tr = 0;
    for (int i = 0; i < N; i++) tr += s1[i * N + i];
    CHECK(frechet(N, mu1, s1, mu1, s1) <= 1e-12 * tr, "d(A, A) = 0: got %g", frechet(N, mu1, s1, mu1, s1));
    /* a common rotation R: R S R^T, R mu (the means' difference keeps its length) */
    random_rotation(N, 5, q);
    for (int pass = 0; pass < 2; pass++) {
        const double *s = pass ? s2 : s1;
        double *out = pass ? r2 : r1;
        for (int r = 0; r < N; r++)
            for (int c = 0; c < N; c++) {
                double v = 0;
                for (int k = 0; k < N; k++) v += q[r * N + k] * s[k * N + c];
                t[r * N + c] = v;
            }
        for (int r = 0; r < N; r++)
            for (int c = 0; c < N; c++) {
                double v = 0;
                for (int k = 0; k < N; k++) v += t[r * N + k] * q[c * N + k];
                out[r * N + c] = v;
            }
    }
    double dmu = 0;
    for (int i = 0; i < N; i++) dmu += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    CHECK_CLOSE(frechet(N, zero, r1, zero, r2) + dmu, d12, 1e-10, "rotation invariance");
}

static void test_stats(void) {
    enum { M = 2500, D = 7 }; /* three dsyrk chunks */
    float *x = malloc(sizeof(float) * M * D);
    df_randn(9, DF_STREAM_USER, 2, 0, x, (size_t)M * D);
    for (int i = 0; i < M; i++)
        for (int d = 0; d < D; d++) x[i * D + d] = 1000.0f + (d + 1) * x[i * D + d] + (d ? 0.5f * x[i * D] : 0);
    df_fid_stats s;
    CHECK(df_fid_stats_compute(x, M, D, &s) == DF_OK, "%s", df_last_error());
    long double mu[D] = {0};
    for (int i = 0; i < M; i++)
        for (int d = 0; d < D; d++) mu[d] += x[i * D + d];
    for (int d = 0; d < D; d++) mu[d] /= M;
    for (int d = 0; d < D; d++) CHECK_CLOSE(s.mu[d], (double)mu[d], 1e-13, "mean");
    for (int r = 0; r < D; r++)
        for (int c = 0; c < D; c++) {
            long double v = 0;
            for (int i = 0; i < M; i++) v += (x[i * D + r] - mu[r]) * (x[i * D + c] - mu[c]);
            CHECK_CLOSE(s.sigma[r * D + c], (double)(v / (M - 1)), 1e-12, "covariance (unbiased)");
        }
    CHECK(s.n == M && s.dim == D);

    /* the cache file: bit exact, and only for its own key */
    const char *dir = check_tmpdir("fid");
    char path[600];
    snprintf(path, sizeof path, "%s/stats.safetensors", dir);
    CHECK(df_fid_stats_save(&s, "input-a|fmnist", path) == DF_OK, "%s", df_last_error());
    df_fid_stats l;
    CHECK(df_fid_stats_load(path, "input-a|fmnist", &l) == DF_OK, "%s", df_last_error());
    CHECK(l.n == M && l.dim == D && memcmp(l.mu, s.mu, sizeof(double) * D) == 0 &&
          memcmp(l.sigma, s.sigma, sizeof(double) * D * D) == 0, "cache round trip");
    df_fid_stats_free(&l);
    EXPECT_STATUS(df_fid_stats_load(path, "input-b|fmnist", &l), DF_ERR_FORMAT, "another input", NULL);
    CHECK(remove(path) == 0);
    check_tmpdir_remove(dir, 1);
    df_fid_stats_free(&s);

    EXPECT_STATUS(df_fid_stats_compute(x, 1, D, &s), DF_ERR_ARG, "at least 2 images", NULL);
    x[3 * D + 2] = NAN;
    EXPECT_STATUS(df_fid_stats_compute(x, M, D, &s), DF_ERR_NAN, "feature 2 of image 3", NULL);
    free(x);
}

static void test_errors(void) {
    double mu[2] = {0, 0}, s[4] = {1, 0, 0, 1}, bad[4] = {1, 0, 0, NAN}, d;
    EXPECT_STATUS(df_frechet_distance(0, mu, s, mu, s, &d), DF_ERR_ARG, "dim >= 1", NULL);
    EXPECT_STATUS(df_frechet_distance(2, mu, s, mu, bad, &d), DF_ERR_NAN, "non-finite", NULL);
}

int main(void) {
    test_commuting(2, 0, TOL);
    test_commuting(40, 0, TOL);
    /* rank-deficient in the same directions (as the covariances of fewer images than features are):
     * S1's zero eigenvalues come back as ~1e-16, whose square roots (~1e-8) multiply only S2's own
     * ~0 there, so this too is good to rounding (1e-13 measured) */
    test_commuting(40, 1, TOL);
    test_2x2();
    test_3x3();
    test_properties();
    test_stats();
    test_errors();
    return check_exit_code("test_fid");
}
