/* test_regressions.c: one case per bug the fuzzers (fuzz/, docs/robustness.md) found in a parser.
 * Each case replays the input that broke the parser, cut down to what matters, and checks the
 * status and the message the user now gets, plus the nearest input that must still be accepted.
 * What it is not: the parsers' own tests (tests/test_<module>.c), which cover the formats. */
#include "check.h"
#include "common.h"
#include "safetensors.h"
#include <stdlib.h>
#include <float.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <zlib.h>

static const char *tmp_file(const char *dir, const char *name) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

/* fuzz_csv: "3,3.33e80" is a finite double, so the reader took it, but as a float point it became
 * +inf and every loss of a run on that file would have been NaN. */
static void csv_value_beyond_float(const char *dir) {
    const char *path = tmp_file(dir, "points.csv");
    const char bad[] = "x,y\n1,2\n3,3.33e80\n";
    CHECK(check_write_bytes(path, bad, strlen(bad)));
    float *pts = NULL;
    int n = -1;
    EXPECT_STATUS(df_csv_read_points(path, &pts, &n), DF_ERR_FORMAT, "points.csv:3:", "out-of-range");
    CHECK(pts == NULL && n == 0, "a refused file returns no points");
    const char edge[] = "1,-3.4028234e38\n"; /* just below FLT_MAX in magnitude: still a float */
    CHECK(check_write_bytes(path, edge, strlen(edge)));
    EXPECT_STATUS(df_csv_read_points(path, &pts, &n), DF_OK, NULL, NULL);
    CHECK(n == 1 && pts && pts[0] == 1.0f && pts[1] == -FLT_MAX, "n %d", n);
    free(pts);
    unlink(path);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* Writes DIR/sub/train-images-idx3-ubyte (header n x h x w, then `body` bytes of pixels) and the label
 * file (header n, then `labels` bytes); `gz` gzips the image file. Returns the spec "mnist:DIR/sub". */
static const char *idx_pair(const char *dir, const char *sub, uint32_t n, uint32_t h, uint32_t w, size_t body,
                            size_t labels, int gz) {
    static char spec[4200];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, sub);
    mkdir(path, 0700);
    uint8_t hdr[16], lhdr[8];
    put_be32(hdr, 0x803), put_be32(hdr + 4, n), put_be32(hdr + 8, h), put_be32(hdr + 12, w);
    put_be32(lhdr, 0x801), put_be32(lhdr + 4, n);
    uint8_t *buf = calloc(16 + body + labels + 8, 1);
    memcpy(buf, hdr, 16);
    snprintf(path, sizeof path, "%s/%s/train-images-idx3-ubyte", dir, sub);
    if (gz) {
        gzFile g = gzopen(path, "wb9");
        CHECK(g && gzwrite(g, buf, (unsigned)(16 + body)) == (int)(16 + body) && gzclose(g) == Z_OK);
    } else {
        CHECK(check_write_bytes(path, buf, 16 + body));
    }
    memcpy(buf, lhdr, 8);
    snprintf(path, sizeof path, "%s/%s/train-labels-idx1-ubyte", dir, sub);
    CHECK(check_write_bytes(path, buf, 8 + labels));
    free(buf);
    snprintf(spec, sizeof spec, "mnist:%s/%s", dir, sub);
    return spec;
}

/* fuzz_idx: a 16-byte image file whose header claims 1 x 46340 x 46340 pixels made the loader allocate
 * 2 GB before finding the file empty (10 s per input under ASan). The claim is now checked against the
 * file size first. To show that no allocation happens, the load runs in a child whose address space is
 * capped 1 GB above its current size (not under ASan, which reserves terabytes of shadow). */
static void idx_header_claims_more_than_the_file(const char *dir) {
    const char *spec = idx_pair(dir, "claim", 1, 46340, 46340, 0, 1, 0);
    pid_t pid = fork();
    if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__)
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f && fscanf(f, "%ld", &pages) == 1) {
            struct rlimit lim = {(rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)1 << 30), RLIM_INFINITY};
            lim.rlim_max = lim.rlim_cur;
            setrlimit(RLIMIT_AS, &lim);
        }
        if (f) fclose(f);
#endif
        df_dataset ds;
        df_status st = df_dataset_load(spec, 0, 0, &ds);
        int ok = st == DF_ERR_FORMAT && strstr(df_last_error(), "truncated: expected 2147395600 bytes of pixels, got 0");
        if (!ok) printf("child: %s: %s\n", df_status_name(st), df_last_error());
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the 2 GB claim must be refused before any allocation");

    /* gzipped: 1e6 pixels cannot come out of a few dozen bytes (deflate expands at most 1032:1) */
    df_dataset ds;
    spec = idx_pair(dir, "claimgz", 1, 1000, 1000, 0, 1, 1);
    EXPECT_STATUS(df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT, "train-images-idx3-ubyte: truncated: expected 1000000",
                  "gzipped bytes can hold");
    /* and one that can hold it still loads */
    spec = idx_pair(dir, "fullgz", 2, 100, 100, 20000, 2, 1);
    EXPECT_STATUS(df_dataset_load(spec, 0, 0, &ds), DF_OK, NULL, NULL);
    CHECK(ds.n == 2 && ds.h == 100 && ds.w == 100);
    df_dataset_free(&ds);
}

/* fuzz_idx: 2^31 images of 1 x 1 pixel pass the 2^31-byte pixel limit but not an int count: the count
 * became negative and the label allocation asked for 16 EB ("out of memory"). */
static void idx_count_beyond_int(const char *dir) {
    const char *spec = idx_pair(dir, "count", 0x80000000u, 1, 1, 0, 0, 0);
    df_dataset ds;
    EXPECT_STATUS(df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT, "implausible IDX dims 2147483648 x 1 x 1", NULL);
}

/* A PNG of w x h 8-bit gray pixels, row y all value(y), written to path. */
static void write_gray_png(const char *path, uint32_t w, uint32_t h, uint8_t (*value)(uint32_t y, uint32_t h)) {
    size_t raw_n = (size_t)h * (1 + w), z_n = compressBound((uLong)raw_n);
    uint8_t *raw = malloc(raw_n), *z = malloc(z_n + 64);
    CHECK(raw && z);
    for (uint32_t y = 0; y < h; y++) {
        raw[(size_t)y * (1 + w)] = 0; /* filter: none */
        memset(raw + (size_t)y * (1 + w) + 1, value(y, h), w);
    }
    uLongf zlen = (uLongf)z_n;
    CHECK(compress2(z, &zlen, raw, (uLong)raw_n, 6) == Z_OK);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, w), put_be32(ihdr + 4, h), ihdr[8] = 8; /* depth 8, colour 0 (gray) */
    const struct { const char *type; const uint8_t *data; size_t n; } chunks[] = {
        {"IHDR", ihdr, 13}, {"IDAT", z, zlen}, {"IEND", NULL, 0}};
    fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
    for (int k = 0; k < 3; k++) {
        uint8_t b[4];
        put_be32(b, (uint32_t)chunks[k].n);
        fwrite(b, 1, 4, f);
        fwrite(chunks[k].type, 1, 4, f);
        if (chunks[k].n) fwrite(chunks[k].data, 1, chunks[k].n, f);
        uLong crc = crc32(crc32(0, (const Bytef *)chunks[k].type, 4), chunks[k].data, (uInt)chunks[k].n);
        put_be32(b, (uint32_t)crc);
        fwrite(b, 1, 4, f);
    }
    CHECK(fclose(f) == 0);
    free(raw);
    free(z);
}

/* 50 everywhere but the two rows at the centre: 100 just above it, 200 just below it. */
static uint8_t centre_rows(uint32_t y, uint32_t h) { return y == h / 2 - 1 ? 100 : y == h / 2 ? 200 : 50; }

/* fuzz_image_folder: stb_image pads a truncated JPEG, so a 663-byte file declaring 20000 x 20000
 * pixels decoded to 1.2 GB (70 s under ASan). Folder images are now capped at 2^28 decoded bytes,
 * checked from the header before decoding. Here a PNG that is only a header declares 15000 x 15000
 * (stb_image itself refuses PNGs over 2^30 bytes, JPEGs only over 2^31). */
static void folder_image_too_large(const char *dir) {
    char sub[4096], path[4200], spec[4200];
    snprintf(sub, sizeof sub, "%s/huge", dir);
    mkdir(sub, 0700);
    snprintf(path, sizeof path, "%s/a.png", sub);
    uint8_t png[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    put_be32(png + 16, 15000), put_be32(png + 20, 15000), png[24] = 8, png[25] = 2; /* 8-bit RGB */
    put_be32(png + 29, (uint32_t)crc32(0, png + 12, 17));
    CHECK(check_write_bytes(path, png, sizeof png));
    snprintf(spec, sizeof spec, "folder:%s", sub);
    df_dataset ds;
    EXPECT_STATUS(df_dataset_load(spec, 3, 32, &ds), DF_ERR_FORMAT, "a.png: a 15000x15000 image is more than", NULL);
    /* as gray it is under the cap, and stb_image then fails with an empty reason: say something */
    EXPECT_STATUS(df_dataset_load(spec, 1, 28, &ds), DF_ERR_FORMAT,
                  "a.png: cannot decode image: truncated, or not an image stb_image reads", NULL);
}

/* fuzz_image_folder: a 232-byte progressive JPEG with no quantisation table whose AC scan names a
 * Huffman table defined only after it. Debian's stb_image decodes it from uninitialised memory and
 * could abort on an assertion, depending on what the heap held. Its tables are now checked first,
 * and the file is refused with a message. */
static void folder_jpeg_undefined_tables(const char *dir) {
    static const uint8_t jpeg[] = {
        0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4,
        0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4,
        0xa4, 0xa4, 0xcf, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xff, 0xc2, 0x00, 0x11, 0x08, 0x00, 0x05,
        0x00, 0x07, 0x03, 0x01, 0x22, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01, 0xff, 0xc4, 0x00, 0x14,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xff, 0xc4, 0x00, 0x15, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0xff, 0xda, 0x00, 0x0c, 0x03, 0x01, 0x00,
        0x02, 0x10, 0x03, 0x10, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x41, 0xff, 0xda, 0x00,
        0x08, 0x01, 0x03, 0x01, 0x01, 0x3f, 0x10, 0x44, 0x9f, 0xff, 0xc4, 0x00, 0x16, 0x11, 0x01, 0x01,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x51, 0xff, 0xda, 0x00, 0x08, 0x01, 0x02, 0x01, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
        0x00, 0x00, 0x02, 0x00, 0x00, 0x01, 0x3f, 0x10, 0x41, 0x47, 0x6f, 0xff, 0xc4, 0x00, 0x18, 0x10,
        0x01, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x11, 0x00, 0x41, 0xc1, 0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x01, 0x3f, 0x10, 0x18,
        0xda, 0x28, 0x00, 0xc4, 0xdf, 0x33, 0xff, 0xd9,
    };
    char sub[4096], path[4200], spec[4200];
    snprintf(sub, sizeof sub, "%s/jpegtables", dir);
    mkdir(sub, 0700);
    snprintf(path, sizeof path, "%s/a.jpg", sub);
    CHECK(check_write_bytes(path, jpeg, sizeof jpeg));
    snprintf(spec, sizeof spec, "folder:%s", sub);
    df_dataset ds;
    for (int c = 0; c <= 3; c++)
        EXPECT_STATUS(df_dataset_load(spec, c, 0, &ds), DF_ERR_FORMAT,
                      "a.jpg: corrupt JPEG: a scan uses a Huffman or quantisation table the file never defines", NULL);
    /* and the check passes valid JPEGs (PIL, 12 x 20: progressive in colour and gray, and optimised
     * Huffman tables) */
    EXPECT_STATUS(df_dataset_load("folder:data/jpeg_ok", 3, 12, &ds), DF_OK, NULL, NULL);
    CHECK(ds.n == 3, "data/jpeg_ok: %d of 3 images", ds.n);
    df_dataset_free(&ds);
}

/* Found reading resize_crop for fuzz_image_folder: a 1 x 2^23 image resized to 256 is 2^31 pixels long,
 * which overflowed the int size (undefined behaviour), and the horizontal pass ran over all 2^23 rows
 * with a 16 GB row buffer (in practice the size wrapped negative and the whole height was squashed
 * into 256 rows). Now the size is 64-bit and only the rows under the crop are filtered. The crop's
 * centre sits between rows 2^22 - 1 (value 100) and 2^22 (value 200), and each output row covers 1/256
 * of one input row: the top half of the output is exactly 100 and the bottom half exactly 200. */
static void folder_very_tall_image(const char *dir) {
    char sub[4096], path[4200], spec[4200];
    snprintf(sub, sizeof sub, "%s/tall", dir);
    mkdir(sub, 0700);
    snprintf(path, sizeof path, "%s/a.png", sub);
    write_gray_png(path, 1, 1u << 23, centre_rows);
    snprintf(spec, sizeof spec, "folder:%s", sub);
    df_dataset ds;
    EXPECT_STATUS(df_dataset_load(spec, 1, 256, &ds), DF_OK, NULL, NULL);
    if (ds.pixels) {
        int wrong = 0;
        for (int y = 0; y < 256; y++)
            for (int x = 0; x < 256; x++) wrong += ds.pixels[y * 256 + x] != (y < 128 ? 100 : 200);
        CHECK(wrong == 0, "%d of 65536 pixels differ from the exact halves", wrong);
    }
    df_dataset_free(&ds);
}

/* A 600-byte model file whose metadata claims an MLP of 64 layers of 65536 units (270 G parameters):
 * df_model_load used to build that network (calloc of the weights and EMA) before looking at the
 * tensors, so such a file cost gigabytes and seconds, or the OOM killer, before "missing tensor". The
 * config's parameter count is now compared with the file's values first. */
static void model_config_claims_huge_network(const char *dir) {
    static const char *meta[][2] = {
        {"diffuse.net", "mlp"}, {"mlp.dim", "2"}, {"mlp.hidden", "65536"}, {"mlp.layers", "64"}, {"mlp.temb_dim", "128"},
        {"diffusion.schedule", "linear"}, {"diffusion.timesteps", "1000"}, {"diffusion.beta_start", "0.0001"},
        {"diffusion.beta_end", "0.02"}, {"diffusion.cosine_s", "0.008"}, {"diffusion.max_beta", "0.999"},
        {"diffusion.pred", "eps"}, {"diffusion.loss", "simple"}, {"diffusion.var", "beta"},
        {"train.step", "1"}, {"train.seed", "0"}, {"train.ema_decay", "0.99"}};
    const char *path = tmp_file(dir, "huge_config.safetensors");
    float w[4] = {0};
    int64_t shape[1] = {4};
    df_st_writer *wr = df_st_writer_new();
    df_st_writer_add(wr, "inp.weight", DF_DTYPE_F32, 1, shape, w);
    for (size_t k = 0; k < sizeof meta / sizeof meta[0]; k++) df_st_writer_meta(wr, meta[k][0], meta[k][1]);
    CHECK(df_st_writer_write(wr, path) == DF_OK, "write %s: %s", path, df_last_error());
    df_st_writer_free(wr);
    df_model *m = NULL;
    df_status st = df_model_load(path, 16, 1, &m);
    CHECK(st == DF_ERR_FORMAT && strstr(df_last_error(), "describes 271124267010 parameters but the file holds 4"),
          "huge config, 4 values: status %d, %s", st, df_last_error());
}

/* A batch that does not fit is refused before anything is allocated, with the size it needs. */
static void model_too_large_for_memory(void) {
    df_unet_config c;
    df_diffusion_config d;
    df_diffusion_config_init(&d);
    CHECK(df_unet_preset("fmnist-small", &c) == DF_OK, "preset");
    setenv("DIFFUSE_MEMORY_MB", "120", 1);
    df_model *m = NULL;
    df_status st = df_model_new_unet(&c, &d, 64, 1, 0, &m);
    CHECK(st == DF_ERR_NOMEM && strstr(df_last_error(), "the U-Net at batch 64 for training (1.6 M parameters) needs") &&
              strstr(df_last_error(), "GiB of memory but only 0.12 GiB is available"),
          "120 MB for a batch of 64: status %d, %s", st, df_last_error());
    if (st == DF_OK) df_model_free(m);
    st = df_model_new_unet(&c, &d, 1, 0, 0, &m);  /* one image for sampling fits */
    CHECK(st == DF_OK, "120 MB for one image: %s", df_last_error());
    if (st == DF_OK) df_model_free(m);
    unsetenv("DIFFUSE_MEMORY_MB");
}

int main(void) {
    const char *dir = check_tmpdir("regressions");
    csv_value_beyond_float(dir);
    idx_header_claims_more_than_the_file(dir);
    idx_count_beyond_int(dir);
    folder_jpeg_undefined_tables(dir);
    folder_image_too_large(dir);
    folder_very_tall_image(dir);
    model_config_claims_huge_network(dir);
    model_too_large_for_memory();
    check_tmpdir_remove(dir, 0);
    return check_exit_code("test_regressions");
}
