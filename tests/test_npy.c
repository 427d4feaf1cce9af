/* test_npy.c: .npy writer and reader. Fixtures in data/ were written by NumPy 1.24 (Debian):
 *   np.save('npy_f4_2x3.npy', (np.arange(6, dtype='<f4').reshape(2, 3) - 2) / 4)
 *   np.save('npy_u1_4.npy', np.array([0, 1, 128, 255], dtype='|u1'))
 *   np.save('npy_f8_scalar.npy', np.array(0.1, dtype='<f8'))
 *   np.save('npy_f4_fortran.npy', np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)))
 *   np.save('npy_f4_bigendian.npy', np.arange(3, dtype='>f4'))
 *   np.lib.format.write_array(f, np.array([1.5, -2.0, 3.0], dtype='<f4'), version=(2, 0))  -> npy_v2_f4_3.npy
 * Our writer must produce the same bytes as NumPy for the same array. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *dir; /* check_tmpdir() */

static void test_numpy_fixtures(void) {
    int ndim;
    int64_t shape[8];
    float *d = NULL;
    CHECK(df_npy_read_f32("data/npy_f4_2x3.npy", &ndim, shape, &d) == DF_OK);
    CHECK(ndim == 2 && shape[0] == 2 && shape[1] == 3);
    for (int k = 0; d && k < 6; k++) CHECK(d[k] == (k - 2) / 4.0f); /* exact: quarters */
    free(d);

    CHECK(df_npy_read_f32("data/npy_u1_4.npy", &ndim, shape, &d) == DF_OK);
    CHECK(ndim == 1 && shape[0] == 4);
    CHECK(d && d[0] == 0.0f && d[1] == 1.0f && d[2] == 128.0f && d[3] == 255.0f);
    free(d);

    CHECK(df_npy_read_f32("data/npy_f8_scalar.npy", &ndim, shape, &d) == DF_OK);
    CHECK(ndim == 0 && d && d[0] == (float)0.1); /* double -> float rounds to nearest */
    free(d);

    CHECK(df_npy_read_f32("data/npy_v2_f4_3.npy", &ndim, shape, &d) == DF_OK);
    CHECK(ndim == 1 && shape[0] == 3 && d && d[0] == 1.5f && d[1] == -2.0f && d[2] == 3.0f);
    free(d);

    d = (float *)1;
    EXPECT_STATUS(df_npy_read_f32("data/npy_f4_fortran.npy", &ndim, shape, &d), DF_ERR_UNSUPPORTED,
                  "npy_f4_fortran.npy", "fortran_order");
    CHECK(d == NULL);
    EXPECT_STATUS(df_npy_read_f32("data/npy_f4_bigendian.npy", &ndim, shape, &d), DF_ERR_UNSUPPORTED, ">f4", NULL);
    EXPECT_STATUS(df_npy_read_f32("data/absent.npy", &ndim, shape, &d), DF_ERR_IO, "data/absent.npy", NULL);
}

static void test_write_matches_numpy(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/w.npy", dir);
    float v[6];
    for (int k = 0; k < 6; k++) v[k] = (k - 2) / 4.0f;
    int64_t s23[2] = {2, 3};
    CHECK(df_npy_write(path, "<f4", 2, s23, v) == DF_OK);
    unsigned char a[512], b[512];
    size_t na = check_read_bytes(path, a, sizeof a), nb = check_read_bytes("data/npy_f4_2x3.npy", b, sizeof b);
    CHECK(na == nb && na > 0 && memcmp(a, b, na) == 0);

    uint8_t u[4] = {0, 1, 128, 255};
    int64_t s4[1] = {4};
    CHECK(df_npy_write(path, "|u1", 1, s4, u) == DF_OK);
    na = check_read_bytes(path, a, sizeof a);
    nb = check_read_bytes("data/npy_u1_4.npy", b, sizeof b);
    CHECK(na == nb && na > 0 && memcmp(a, b, na) == 0);

    double s = 0.1;
    CHECK(df_npy_write(path, "<f8", 0, NULL, &s) == DF_OK);
    na = check_read_bytes(path, a, sizeof a);
    nb = check_read_bytes("data/npy_f8_scalar.npy", b, sizeof b);
    CHECK(na == nb && na > 0 && memcmp(a, b, na) == 0);

    /* A larger round trip, odd shape, and an empty array. */
    int64_t s3[3] = {3, 5, 7};
    float big[105];
    for (int k = 0; k < 105; k++) big[k] = (float)k * 0.37f - 11.0f;
    CHECK(df_npy_write(path, "<f4", 3, s3, big) == DF_OK);
    int ndim;
    int64_t shape[8];
    float *d = NULL;
    CHECK(df_npy_read_f32(path, &ndim, shape, &d) == DF_OK);
    CHECK(ndim == 3 && shape[0] == 3 && shape[1] == 5 && shape[2] == 7);
    CHECK(d && memcmp(d, big, sizeof big) == 0);
    free(d);
    int64_t s0[2] = {0, 4};
    CHECK(df_npy_write(path, "<f4", 2, s0, NULL) == DF_OK);
    CHECK(df_npy_read_f32(path, &ndim, shape, &d) == DF_OK && ndim == 2 && shape[0] == 0 && shape[1] == 4);
    free(d);

    EXPECT_STATUS(df_npy_write(path, "<f2", 1, s4, u), DF_ERR_ARG, "<f2", NULL);
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/w.npy", dir);
    EXPECT_STATUS(df_npy_write(bad, "<f4", 2, s23, v), DF_ERR_IO, bad, NULL);
    unlink(path);
}

/* Each malformed variant of a valid 2x3 <f4 file. */
static void test_malformed(void) {
    unsigned char good[512], b[512];
    size_t n = check_read_bytes("data/npy_f4_2x3.npy", good, sizeof good);
    CHECK(n == 152);
    char path[256];
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    int ndim;
    int64_t shape[8];
    float *d = NULL;

    CHECK(check_write_bytes(path, good, n - 4)); /* one float short */
    EXPECT_STATUS(df_npy_read_f32(path, &ndim, shape, &d), DF_ERR_FORMAT, path, "truncated");
    CHECK(d == NULL);
    memcpy(b, good, n);
    b[n] = 0;
    CHECK(check_write_bytes(path, b, n + 1));
    EXPECT_STATUS(df_npy_read_f32(path, &ndim, shape, &d), DF_ERR_FORMAT, path, "trailing bytes");
    CHECK(check_write_bytes(path, good, 7));
    EXPECT_STATUS(df_npy_read_f32(path, &ndim, shape, &d), DF_ERR_FORMAT, path, "too short");
    memcpy(b, good, n);
    b[1] = 'X';
    CHECK(check_write_bytes(path, b, n));
    EXPECT_STATUS(df_npy_read_f32(path, &ndim, shape, &d), DF_ERR_FORMAT, path, "bad magic");
    memcpy(b, good, n);
    b[8] = 0xFF; /* header length 0x00FF: runs past the file */
    b[9] = 0x00;
    CHECK(check_write_bytes(path, b, 100));
    EXPECT_STATUS(df_npy_read_f32(path, &ndim, shape, &d), DF_ERR_FORMAT, path, "truncated");
    memcpy(b, good, n);
    b[6] = 9;
    CHECK(check_write_bytes(path, b, n));
    EXPECT_STATUS(df_npy_read_f32(path, &ndim, shape, &d), DF_ERR_UNSUPPORTED, path, "version 9");

    /* Header dict variants, each padded into the same 118 bytes. */
    static const struct {
        const char *dict;
        df_status st;
        const char *frag;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", DF_OK, NULL},
        {"{\"descr\": \"<f4\", \"shape\": (2,3), \"fortran_order\": False}", DF_OK, NULL},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 3L), }", DF_OK, NULL},
        {"{'descr': '<f4', 'fortran_order': False, }", DF_ERR_FORMAT, "lacks 'shape'"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", DF_ERR_FORMAT, "fortran_order"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }", DF_ERR_FORMAT, "'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", DF_ERR_FORMAT, "'shape'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1}", DF_ERR_FORMAT, "unexpected key 'x'"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2, 3), }", DF_ERR_FORMAT, "malformed"},
        {"['descr', '<f4']", DF_ERR_FORMAT, "not a dict"},
        {"{'descr': '<i2', 'fortran_order': False, 'shape': (2, 3), }", DF_ERR_UNSUPPORTED, "'<i2'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2, 3), }", DF_ERR_UNSUPPORTED, "structured"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 6), }", DF_ERR_UNSUPPORTED,
         "more than 8"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", DF_ERR_FORMAT,
         "overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }", DF_ERR_FORMAT, "truncated"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(b, good, n);
        size_t dl = strlen(cases[k].dict);
        CHECK(dl < 117);
        memset(b + 10, ' ', 117);
        memcpy(b + 10, cases[k].dict, dl);
        b[127] = '\n';
        CHECK(check_write_bytes(path, b, n));
        d = NULL;
        df_status st = df_npy_read_f32(path, &ndim, shape, &d);
        if (cases[k].st == DF_OK) {
            CHECK(st == DF_OK && ndim == 2 && shape[0] == 2 && shape[1] == 3 && d && d[5] == 0.75f);
            if (st) fprintf(stderr, "  case %zu: %s\n", k, df_last_error());
        } else {
            EXPECT_STATUS(st, cases[k].st, path, cases[k].frag);
            CHECK(d == NULL);
        }
        free(d);
    }
    unlink(path);
}

int main(void) {
    dir = check_tmpdir("test_npy");
    test_numpy_fixtures();
    test_write_matches_numpy();
    test_malformed();
    check_tmpdir_remove(dir, 1); /* every test removes its own files */
    return check_exit_code("test_npy");
}
