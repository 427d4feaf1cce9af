/* test_safetensors.c: crash-safe writes (atomic.c) and the safetensors reader/writer:
 * round trips, dtype conversions, and one malformed file per validation rule, each checked for
 * its status and for a message that names the file and the problem. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "common.h"
#include "safetensors.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir; /* check_tmpdir() */

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", dir, name); }

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ------------------------------------------------------------------ atomic writes */

static void test_atomic(void) {
    char path[256], tmp[512], buf[64];
    path_in(path, sizeof path, "atomic.txt");

    /* A normal write, then a replacement. */
    FILE *f = df_atomic_open(path, tmp, sizeof tmp);
    CHECK(f != NULL);
    if (!f) return;
    CHECK(strstr(tmp, ".tmp.") != NULL);
    fputs("first", f);
    CHECK(!exists(path)); /* nothing visible before the commit */
    CHECK(df_atomic_commit(f, tmp, path) == DF_OK);
    CHECK(!exists(tmp));
    size_t n = check_read_bytes(path, buf, sizeof buf);
    CHECK(n == 5 && memcmp(buf, "first", 5) == 0);

    /* Abort leaves the old content and no temporary. */
    f = df_atomic_open(path, tmp, sizeof tmp);
    CHECK(f != NULL);
    fputs("second", f);
    df_atomic_abort(f, tmp);
    CHECK(!exists(tmp));
    n = check_read_bytes(path, buf, sizeof buf);
    CHECK(n == 5 && memcmp(buf, "first", 5) == 0);

    /* A write that fails half way (file size limit -> EFBIG, as a full disk gives ENOSPC):
     * DF_ERR_IO naming the path and the reason, the first content intact, no temporary left. */
    struct rlimit old;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    struct rlimit lim = old;
    lim.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    f = df_atomic_open(path, tmp, sizeof tmp);
    CHECK(f != NULL);
    if (f) {
        static char big[1 << 20];
        memset(big, 'x', sizeof big);
        fwrite(big, 1, sizeof big, f);
        EXPECT_STATUS(df_atomic_commit(f, tmp, path), DF_ERR_IO, path, "File too large");
    }
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, old_handler);
    CHECK(!exists(tmp));
    n = check_read_bytes(path, buf, sizeof buf);
    CHECK(n == 5 && memcmp(buf, "first", 5) == 0);

    /* A full device: the flush fails with ENOSPC and the commit says so. */
    FILE *full = fopen("/dev/full", "wb");
    if (full) {
        char fake_tmp[256];
        path_in(fake_tmp, sizeof fake_tmp, "atomic.txt.tmp.full");
        CHECK(check_write_bytes(fake_tmp, "partial", 7));
        fputs("will not fit", full);
        EXPECT_STATUS(df_atomic_commit(full, fake_tmp, path), DF_ERR_IO, path, "No space left on device");
        CHECK(!exists(fake_tmp));
        n = check_read_bytes(path, buf, sizeof buf);
        CHECK(n == 5 && memcmp(buf, "first", 5) == 0);
    } else {
        fprintf(stderr, "note: /dev/full unavailable, ENOSPC case skipped\n");
    }

    /* Unwritable places: a missing directory, a path through a regular file, and (when not
     * root, which ignores permissions) a read-only directory. */
    char bad[512];
    path_in(bad, sizeof bad, "no/such/dir/x.bin");
    CHECK(df_atomic_open(bad, tmp, sizeof tmp) == NULL);
    EXPECT_STATUS(DF_ERR_IO, DF_ERR_IO, bad, "No such file or directory");
    snprintf(bad, sizeof bad, "%s/x.bin", path);
    CHECK(df_atomic_open(bad, tmp, sizeof tmp) == NULL);
    EXPECT_STATUS(DF_ERR_IO, DF_ERR_IO, bad, "Not a directory");
    if (geteuid() != 0) {
        char ro[256];
        path_in(ro, sizeof ro, "readonly");
        CHECK(mkdir(ro, 0500) == 0);
        snprintf(bad, sizeof bad, "%s/x.bin", ro);
        CHECK(df_atomic_open(bad, tmp, sizeof tmp) == NULL);
        EXPECT_STATUS(DF_ERR_IO, DF_ERR_IO, bad, "Permission denied");
        rmdir(ro);
    }
    char tiny[8];
    CHECK(df_atomic_open(path, tiny, sizeof tiny) == NULL);
    EXPECT_STATUS(DF_ERR_IO, DF_ERR_IO, "path too long", NULL);
    unlink(path);
}

/* ------------------------------------------------------------------ round trip */

static uint16_t f32_to_bf16_trunc(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return (uint16_t)(u >> 16);
}

static void test_round_trip(void) {
    char path[256];
    path_in(path, sizeof path, "rt.safetensors");
    float w[2][3] = {{1.0f, -2.5f, 3.25f}, {0.0f, 1e-3f, -7.0f}};
    uint16_t bf[4];
    float bf_src[4] = {1.0f, -0.5f, 3.0f, 1024.0f}; /* exact in bf16 */
    for (int k = 0; k < 4; k++) bf[k] = f32_to_bf16_trunc(bf_src[k]);
    /* F16: 1, -2, 65504 (max), 2^-24 (smallest subnormal), +inf, 0.333 (0x3555 = 0.333251953125). */
    uint16_t h[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3555};
    float h_want[6] = {1.0f, -2.0f, 65504.0f, 0x1p-24f, INFINITY, 0.333251953125f};
    double d[3] = {0.1, -1e10, 3.0};
    float scalar = 42.0f;
    int32_t ints[2] = {7, -7};
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s6[1] = {6}, s3[1] = {3}, s05[2] = {0, 5}, s2[1] = {2};

    df_st_writer *wr = df_st_writer_new();
    CHECK(wr != NULL);
    df_st_writer_add(wr, "conv.weight", DF_DTYPE_F32, 2, s23, w);
    df_st_writer_add(wr, "bf", DF_DTYPE_BF16, 1, s4, bf);
    df_st_writer_add(wr, "scalar", DF_DTYPE_F32, 0, NULL, &scalar);
    df_st_writer_add(wr, "empty", DF_DTYPE_F32, 2, s05, NULL);
    df_st_writer_add(wr, "half", DF_DTYPE_F16, 1, s6, h);
    df_st_writer_add(wr, "dbl", DF_DTYPE_F64, 1, s3, d);
    df_st_writer_add(wr, "ints", DF_DTYPE_I32, 1, s2, ints);
    df_st_writer_meta(wr, "format", "pt");
    df_st_writer_meta(wr, "note", "quote\" and \xc3\xa9");
    df_st_writer_meta(wr, "format", "diffuse"); /* replaces */
    CHECK(df_st_writer_write(wr, path) == DF_OK);
    df_st_writer_free(wr);

    /* Header length is a multiple of 8, and the file is 8 + header + 24+8+4+0+12+24+8 bytes. */
    char raw[1024];
    size_t n = check_read_bytes(path, raw, sizeof raw);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | (uint8_t)raw[k];
    CHECK(hlen % 8 == 0);
    CHECK(n == 8 + hlen + 80);
    CHECK(raw[8 + hlen - 1] == ' ' || raw[8 + hlen - 1] == '}');

    df_st_file f;
    df_status st = df_st_read(path, &f);
    CHECK(st == DF_OK);
    if (st != DF_OK) {
        fprintf(stderr, "  %s\n", df_last_error());
        return;
    }
    CHECK(f.n_tensors == 7 && f.n_meta == 2);
    CHECK(strcmp(f.tensors[0].name, "conv.weight") == 0); /* header order = insertion order */
    CHECK(df_st_meta(&f, "format") && strcmp(df_st_meta(&f, "format"), "diffuse") == 0);
    CHECK(df_st_meta(&f, "note") && strcmp(df_st_meta(&f, "note"), "quote\" and \xc3\xa9") == 0);
    CHECK(df_st_meta(&f, "absent") == NULL);
    const df_st_tensor *t = df_st_find(&f, "conv.weight");
    CHECK(t && t->dtype == DF_DTYPE_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(t && t->begin == 0 && t->end == 24 && memcmp(f.data, w, 24) == 0);
    t = df_st_find(&f, "scalar");
    CHECK(t && t->ndim == 0 && t->end - t->begin == 4);
    t = df_st_find(&f, "empty");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->begin == t->end);
    CHECK(df_st_find(&f, "nope") == NULL);

    /* Conversions are exact here: all values are representable in the source and in f32. */
    float out[6];
    CHECK(df_st_get_f32(&f, "conv.weight", 2, s23, out) == DF_OK);
    CHECK(memcmp(out, w, sizeof w) == 0);
    CHECK(df_st_get_f32(&f, "bf", 1, s4, out) == DF_OK);
    for (int k = 0; k < 4; k++) CHECK(out[k] == bf_src[k]);
    CHECK(df_st_get_f32(&f, "half", 1, s6, out) == DF_OK);
    for (int k = 0; k < 6; k++) CHECK(out[k] == h_want[k]);
    CHECK(df_st_get_f32(&f, "dbl", 1, s3, out) == DF_OK);
    for (int k = 0; k < 3; k++) CHECK(out[k] == (float)d[k]);
    float sc = 0;
    CHECK(df_st_get_f32(&f, "scalar", 0, NULL, &sc) == DF_OK && sc == 42.0f);
    CHECK(df_st_get_f32(&f, "empty", 2, s05, out) == DF_OK);

    int64_t s32[2] = {3, 2};
    EXPECT_STATUS(df_st_get_f32(&f, "conv.weight", 2, s32, out), DF_ERR_SHAPE,
                  "tensor conv.weight has shape [2,3] but the model needs [3,2]", NULL);
    EXPECT_STATUS(df_st_get_f32(&f, "conv.weight", 1, s6, out), DF_ERR_SHAPE, "[2,3]", "[6]");
    EXPECT_STATUS(df_st_get_f32(&f, "conv.bias", 1, s6, out), DF_ERR_FORMAT, "missing tensor conv.bias", path);
    EXPECT_STATUS(df_st_get_f32(&f, "ints", 1, s2, out), DF_ERR_UNSUPPORTED, "I32", "ints");
    df_st_free(&f);
    CHECK(f.tensors == NULL && f.n_tensors == 0);

    /* An empty file set: "{}" padded. */
    wr = df_st_writer_new();
    CHECK(df_st_writer_write(wr, path) == DF_OK);
    df_st_writer_free(wr);
    CHECK(df_st_read(path, &f) == DF_OK && f.n_tensors == 0 && f.data_size == 0);
    df_st_free(&f);

    /* Bad writer arguments are reported at write time; the old file stays. */
    wr = df_st_writer_new();
    df_st_writer_add(wr, "a", DF_DTYPE_F32, 1, s2, w);
    df_st_writer_add(wr, "a", DF_DTYPE_F32, 1, s2, w);
    EXPECT_STATUS(df_st_writer_write(wr, path), DF_ERR_ARG, "\"a\"", "added twice");
    df_st_writer_free(wr);
    int64_t neg[1] = {-1};
    wr = df_st_writer_new();
    df_st_writer_add(wr, "n", DF_DTYPE_F32, 1, neg, w);
    EXPECT_STATUS(df_st_writer_write(wr, path), DF_ERR_ARG, "negative", NULL);
    df_st_writer_free(wr);
    CHECK(df_st_read(path, &f) == DF_OK && f.n_tensors == 0);
    df_st_free(&f);

    /* Writing into a missing directory: DF_ERR_IO naming the path. */
    char bad[512];
    path_in(bad, sizeof bad, "missing/dir/x.safetensors");
    wr = df_st_writer_new();
    df_st_writer_add(wr, "a", DF_DTYPE_F32, 1, s2, w);
    EXPECT_STATUS(df_st_writer_write(wr, bad), DF_ERR_IO, bad, "No such file");
    df_st_writer_free(wr);
    unlink(path);
}

/* ------------------------------------------------------------------ hand-made files */

/* Writes an 8-byte length (hlen_override if not ~0) + header + ndata bytes of 0xAB. */
static void make_file(const char *path, const char *header, uint64_t hlen_override, size_t ndata) {
    size_t hl = strlen(header);
    uint64_t declared = hlen_override != ~(uint64_t)0 ? hlen_override : hl;
    unsigned char *b = malloc(8 + hl + ndata + 1);
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)(declared >> (8 * k));
    memcpy(b + 8, header, hl);
    memset(b + 8 + hl, 0xAB, ndata);
    CHECK(check_write_bytes(path, b, 8 + hl + ndata));
    free(b);
}

static df_status read_file(const char *header, uint64_t hlen_override, size_t ndata, char *path, size_t cap) {
    path_in(path, cap, "model.safetensors");
    make_file(path, header, hlen_override, ndata);
    df_st_file f;
    df_status st = df_st_read(path, &f);
    if (st == DF_OK) df_st_free(&f);
    else CHECK(f.tensors == NULL && f.data == NULL && f.priv == NULL);
    return st;
}

#define NOLEN (~(uint64_t)0)

static void test_python_style(void) {
    /* As written by Python/Rust safetensors: metadata anywhere, spaces, header padded with
     * spaces to a multiple of 8, offsets not in key order. */
    const char *hdr = "{\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]},\n"
                      " \"__metadata__\": {\"format\": \"pt\"},\n"
                      " \"a\": {\"dtype\": \"F32\", \"shape\": [1, 2], \"data_offsets\": [0, 8]}}";
    char padded[512];
    size_t hl = strlen(hdr);
    memcpy(padded, hdr, hl);
    while (hl % 8) padded[hl++] = ' ';
    padded[hl] = 0;
    char path[256];
    path_in(path, sizeof path, "python.safetensors");
    float vals[4] = {1, 2, 3, 4};
    unsigned char b[600];
    for (int k = 0; k < 8; k++) b[k] = (unsigned char)((uint64_t)hl >> (8 * k));
    memcpy(b + 8, padded, hl);
    memcpy(b + 8 + hl, vals, 16);
    CHECK(check_write_bytes(path, b, 8 + hl + 16));
    df_st_file f;
    df_status st = df_st_read(path, &f);
    CHECK(st == DF_OK);
    if (st) {
        fprintf(stderr, "  %s\n", df_last_error());
        return;
    }
    int64_t s12[2] = {1, 2}, s2[1] = {2};
    float out[2];
    CHECK(df_st_get_f32(&f, "a", 2, s12, out) == DF_OK && out[0] == 1 && out[1] == 2);
    CHECK(df_st_get_f32(&f, "b", 1, s2, out) == DF_OK && out[0] == 3 && out[1] == 4);
    CHECK(df_st_meta(&f, "format") && strcmp(df_st_meta(&f, "format"), "pt") == 0);
    df_st_free(&f);
    unlink(path);
}

static void test_malformed(void) {
    char p[256];
    const char *ok_entry = "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    char h[512];

    /* Not even a length. */
    path_in(p, sizeof p, "model.safetensors");
    CHECK(check_write_bytes(p, "abc", 3));
    df_st_file f;
    EXPECT_STATUS(df_st_read(p, &f), DF_ERR_FORMAT, p, "truncated");
    /* Missing file. */
    path_in(p, sizeof p, "absent.safetensors");
    EXPECT_STATUS(df_st_read(p, &f), DF_ERR_IO, p, "No such file");

    snprintf(h, sizeof h, "{%s}", ok_entry);
    CHECK(read_file(h, NOLEN, 8, p, sizeof p) == DF_OK); /* the control case */
    EXPECT_STATUS(read_file(h, 4096, 8, p, sizeof p), DF_ERR_FORMAT, p, "truncated: header says 4096 bytes");
    EXPECT_STATUS(read_file(h, 1, 8, p, sizeof p), DF_ERR_FORMAT, p, "too small");
    EXPECT_STATUS(read_file(h, (uint64_t)200 << 20, 8, p, sizeof p), DF_ERR_FORMAT, p, "100 MB");
    EXPECT_STATUS(read_file(h, NOLEN, 4, p, sizeof p), DF_ERR_FORMAT, p, "run past the end of the data buffer");
    EXPECT_STATUS(read_file(h, NOLEN, 12, p, sizeof p), DF_ERR_FORMAT, p,
                  "last 4 bytes of the data buffer belong to no tensor");

    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",", NOLEN, 0, p, sizeof p), DF_ERR_FORMAT, "not valid JSON",
                  "at byte");
    EXPECT_STATUS(read_file("{\"w\" 1}", NOLEN, 0, p, sizeof p), DF_ERR_FORMAT, p, "not valid JSON");
    EXPECT_STATUS(read_file("[1, 2, 3]", NOLEN, 0, p, sizeof p), DF_ERR_FORMAT, p, "not a JSON object");
    EXPECT_STATUS(read_file("\"{}\"", NOLEN, 0, p, sizeof p), DF_ERR_FORMAT, p, "not a JSON object");
    EXPECT_STATUS(read_file("{\"w\":[1]}", NOLEN, 0, p, sizeof p), DF_ERR_FORMAT, "\"w\"", "not an object");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F12\",\"shape\":[2],\"data_offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, p, "unknown dtype \"F12\"");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "dtype");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "\"shape\"");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "data_offsets");
    EXPECT_STATUS(
        read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", NOLEN, 8, p, sizeof p),
        DF_ERR_FORMAT, "\"w\"", "data_offsets");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "shape[0] = -2", "non-negative integer");
    EXPECT_STATUS(
        read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
        DF_ERR_FORMAT, "shape[0] = 2.5", "non-negative integer");
    EXPECT_STATUS(
        read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
        DF_ERR_FORMAT, "shape[0]", "non-negative integer");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", NOLEN,
                            8, p, sizeof p),
                  DF_ERR_FORMAT, "9 dimensions", NULL);
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "needs 12 bytes", "[0, 8]");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "end before they begin");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}", NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "not non-negative integers");
    /* 2^32 cubed overflows 64 bits even though every dim fits; with a 0 dim as well, too. */
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                            "\"data_offsets\":[0,8]}}",
                            NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "overflows");
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", NOLEN,
                            8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "overflows"); /* 2^61 elements * 8 bytes = 2^64 */
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}",
                            NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "\"w\"", "non-negative integer");
    EXPECT_STATUS(read_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                            NOLEN, 12, p, sizeof p),
                  DF_ERR_FORMAT, "\"a\" [0, 8] and \"b\" [4, 12] overlap", p);
    EXPECT_STATUS(read_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                            NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, "overlap", NULL);
    EXPECT_STATUS(read_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                            "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                            NOLEN, 12, p, sizeof p),
                  DF_ERR_FORMAT, "bytes [4, 8) of the data buffer belong to no tensor", NULL);
    EXPECT_STATUS(read_file("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                            "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                            NOLEN, 8, p, sizeof p),
                  DF_ERR_FORMAT, p, "duplicate key \"w\"");
    snprintf(h, sizeof h, "{\"__metadata__\":{\"epoch\":3},%s}", ok_entry);
    EXPECT_STATUS(read_file(h, NOLEN, 8, p, sizeof p), DF_ERR_FORMAT, p,
                  "__metadata__ value of \"epoch\" is not a string");
    snprintf(h, sizeof h, "{\"__metadata__\":[\"x\"],%s}", ok_entry);
    EXPECT_STATUS(read_file(h, NOLEN, 8, p, sizeof p), DF_ERR_FORMAT, p, "__metadata__ is not an object");
    EXPECT_STATUS(read_file("{}", NOLEN, 4, p, sizeof p), DF_ERR_FORMAT, "4 bytes of data but no tensors", NULL);
    CHECK(read_file("{}      ", NOLEN, 0, p, sizeof p) == DF_OK);
    /* Zero-size and 0-d tensors are legal. */
    CHECK(read_file("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[0,0]},"
                    "\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,2]}}",
                    NOLEN, 2, p, sizeof p) == DF_OK);
    unlink(p);
}

int main(void) {
    dir = check_tmpdir("test_safetensors");
    test_atomic();
    test_round_trip();
    test_python_style();
    test_malformed();
    check_tmpdir_remove(dir, 1); /* every test removes its own files */
    return check_exit_code("test_safetensors");
}
