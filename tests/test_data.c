/* test_data.c: the dataset loaders of data.c against files with known contents.
 * Synthetic IDX (raw and gzipped), CIFAR-10 and image-folder files are written into a fresh temp
 * directory, read back and compared exactly; broken files must give the right status and a message
 * naming the file. Debian's Fashion-MNIST is checked against published facts when it is installed
 * (CI installs dataset-fashion-mnist; elsewhere that part is skipped with a note).
 * Not here: training on the data (test_train*). */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, strdup */
#include "check.h"
#include "common.h"

#include <math.h>
#include <png.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stb/stb_image_write.h> /* implementation in Debian's libstb, like stb_image */

static const char *tmp_root; /* check_tmpdir() */

static const char *tmp_path(const char *rel) {
    static char buf[8][512];
    static int slot;
    char *p = buf[slot++ % 8];
    snprintf(p, 512, "%s/%s", tmp_root, rel);
    return p;
}

static void make_dir(const char *rel) { ASSERT(mkdir(tmp_path(rel), 0700) == 0); }

static void write_file(const char *rel, const void *data, size_t n) {
    FILE *f = fopen(tmp_path(rel), "wb");
    ASSERT(f && fwrite(data, 1, n, f) == n && fclose(f) == 0);
}

static void write_gz(const char *rel, const void *data, size_t n) {
    gzFile g = gzopen(tmp_path(rel), "wb");
    ASSERT(g && gzwrite(g, data, (unsigned)n) == (int)n && gzclose(g) == Z_OK);
}

/* Expects `got` == want and, when `substr` is set, the error message to contain each '|'-separated part. */
static void expect_status(const char *what, df_status got, df_status want, const char *substr) {
    const char *msg = df_last_error();
    CHECK(got == want, "%s: status %s, expected %s (message: %s)", what, df_status_name(got), df_status_name(want),
          msg);
    if (!substr || got != want) return;
    char parts[512];
    snprintf(parts, sizeof parts, "%s", substr);
    for (char *tok = strtok(parts, "|"); tok; tok = strtok(NULL, "|"))
        CHECK(strstr(msg, tok) != NULL, "%s: message \"%s\" lacks \"%s\"", what, msg, tok);
}

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* ------------------------------------------------------------------ Fashion-MNIST (Debian package) */

static void test_fashion_mnist(void) {
    if (access(DF_FASHION_MNIST_DIR, R_OK) != 0) {
        printf("note: %s absent (Debian package dataset-fashion-mnist); Fashion-MNIST checks skipped\n",
               DF_FASHION_MNIST_DIR);
        return;
    }
    df_dataset ds;
    double t0 = df_time();
    df_status st = df_dataset_load("fashion-mnist", 0, 0, &ds);
    expect_status("fashion-mnist", st, DF_OK, NULL);
    if (st == DF_OK) {
        /* Facts from the Fashion-MNIST README and files: 60000 train images, 6000 per class, first
         * labels 9 (ankle boot), 0, 0, 3, ...; the first image's pixel sum was computed with Python's
         * gzip module from the same file. */
        static const int first[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
        CHECK(ds.n == 60000 && ds.c == 1 && ds.h == 28 && ds.w == 28, "shape %dx%dx%dx%d", ds.n, ds.c, ds.h, ds.w);
        CHECK(ds.n_classes == 10, "n_classes %d", ds.n_classes);
        CHECK(!strcmp(ds.name, "fashion-mnist:train"), "name %s", ds.name);
        for (int i = 0; i < 10; i++) CHECK(ds.labels[i] == first[i], "label[%d] = %d, expected %d", i, ds.labels[i], first[i]);
        int count[10] = {0};
        for (int i = 0; i < ds.n; i++)
            if (ds.labels[i] >= 0 && ds.labels[i] < 10) count[ds.labels[i]]++;
        for (int k = 0; k < 10; k++) CHECK(count[k] == 6000, "class %d has %d images", k, count[k]);
        long sum = 0;
        for (int i = 0; i < 784; i++) sum += ds.pixels[i];
        CHECK(sum == 76247, "first image pixel sum %ld, expected 76247", sum);
        printf("fashion-mnist:train loaded in %.2f s\n", df_time() - t0);
    }
    df_dataset_free(&ds);

    st = df_dataset_load("fashion-mnist:test", 1, 28, &ds);
    expect_status("fashion-mnist:test", st, DF_OK, NULL);
    if (st == DF_OK) {
        CHECK(ds.n == 10000 && ds.n_classes == 10, "test n %d classes %d", ds.n, ds.n_classes);
        CHECK(ds.labels[0] == 9 && ds.labels[1] == 2 && ds.labels[2] == 1, "test labels %d %d %d", ds.labels[0],
              ds.labels[1], ds.labels[2]);
    }
    df_dataset_free(&ds);

    st = df_dataset_load("fashion-mnist", 3, 32, &ds);
    expect_status("fashion-mnist as 3x32x32", st, DF_ERR_SHAPE,
                  "fashion-mnist images are 1x28x28 but the model expects 3x32x32|train-images-idx3-ubyte");
    CHECK(ds.pixels == NULL && ds.n == 0, "failed load left data behind");
}

/* ------------------------------------------------------------------ synthetic IDX */

enum { IDX_N = 3, IDX_ROWS = 4, IDX_COLS = 5 };
static const uint8_t idx_labels[IDX_N] = {2, 0, 7};

static uint8_t idx_pixel(int i, int r, int c) { return (uint8_t)(i * 83 + r * 7 + c * 3 + 1); }

/* An IDX image file of n images (header says n_header) and a label file; returns sizes via the buffers. */
static size_t idx_images(uint8_t *buf, uint32_t magic, uint32_t n_header, int n_data) {
    put_be32(buf, magic);
    put_be32(buf + 4, n_header);
    put_be32(buf + 8, IDX_ROWS);
    put_be32(buf + 12, IDX_COLS);
    size_t k = 16;
    for (int i = 0; i < n_data; i++)
        for (int r = 0; r < IDX_ROWS; r++)
            for (int c = 0; c < IDX_COLS; c++) buf[k++] = idx_pixel(i, r, c);
    return k;
}

static size_t idx_label_file(uint8_t *buf, uint32_t n_header) {
    put_be32(buf, 0x00000801);
    put_be32(buf + 4, n_header);
    memcpy(buf + 8, idx_labels, IDX_N);
    return 8 + IDX_N;
}

static void check_idx_dataset(const char *spec, const char *name) {
    df_dataset ds;
    df_status st = df_dataset_load(spec, 1, 0, &ds);
    expect_status(spec, st, DF_OK, NULL);
    if (st != DF_OK) return;
    CHECK(ds.n == IDX_N && ds.c == 1 && ds.h == IDX_ROWS && ds.w == IDX_COLS, "%s: shape %dx%dx%dx%d", spec, ds.n,
          ds.c, ds.h, ds.w);
    CHECK(ds.n_classes == 8, "%s: n_classes %d (max label 7)", spec, ds.n_classes);
    CHECK(!strcmp(ds.name, name), "%s: name %s, expected %s", spec, ds.name, name);
    int bad = 0;
    for (int i = 0; i < IDX_N; i++) {
        bad += ds.labels[i] != idx_labels[i];
        for (int r = 0; r < IDX_ROWS; r++)
            for (int c = 0; c < IDX_COLS; c++) bad += ds.pixels[(i * IDX_ROWS + r) * IDX_COLS + c] != idx_pixel(i, r, c);
    }
    CHECK(bad == 0, "%s: %d pixels or labels differ", spec, bad);
    df_dataset_free(&ds);
}

/* A folder tmp_root/dir holding the raw IDX files train-images-idx3-ubyte (img, ni bytes) and
 * train-labels-idx1-ubyte (lab, nl bytes); its dataset spec "mnist:<path>" into spec. */
static void idx_dir(char *spec, size_t cap, const char *dir, const void *img, size_t ni, const void *lab, size_t nl) {
    char rel[128];
    make_dir(dir);
    snprintf(rel, sizeof rel, "%s/train-images-idx3-ubyte", dir);
    write_file(rel, img, ni);
    snprintf(rel, sizeof rel, "%s/train-labels-idx1-ubyte", dir);
    write_file(rel, lab, nl);
    snprintf(spec, cap, "mnist:%s", tmp_path(dir));
}

static void test_idx(void) {
    uint8_t img[16 + IDX_N * IDX_ROWS * IDX_COLS + 8], lab[8 + IDX_N];
    size_t ni = idx_images(img, 0x00000803, IDX_N, IDX_N), nl = idx_label_file(lab, IDX_N);
    char spec[600], name[600];

    idx_dir(spec, sizeof spec, "raw", img, ni, lab, nl); /* raw files */
    snprintf(name, sizeof name, "mnist:%s:train", tmp_path("raw"));
    check_idx_dataset(spec, name);

    make_dir("gz"); /* gzipped files, both splits */
    write_gz("gz/train-images-idx3-ubyte.gz", img, ni);
    write_gz("gz/train-labels-idx1-ubyte.gz", lab, nl);
    write_gz("gz/t10k-images-idx3-ubyte.gz", img, ni);
    write_gz("gz/t10k-labels-idx1-ubyte.gz", lab, nl);
    snprintf(spec, sizeof spec, "mnist:%s:train", tmp_path("gz"));
    snprintf(name, sizeof name, "mnist:%s:train", tmp_path("gz"));
    check_idx_dataset(spec, name);
    snprintf(spec, sizeof spec, "mnist:%s:test", tmp_path("gz"));
    snprintf(name, sizeof name, "mnist:%s:test", tmp_path("gz"));
    check_idx_dataset(spec, name);

    df_dataset ds;
    snprintf(spec, sizeof spec, "mnist:%s", tmp_path("raw"));
    expect_status("IDX 4x5 as 1x4x4", df_dataset_load(spec, 1, 4, &ds), DF_ERR_SHAPE,
                  "images are 1x4x5 but the model expects 1x4x4|train-images-idx3-ubyte");

    /* Truncated pixels: the header promises 3 images, the file holds 2 and a half. */
    idx_dir(spec, sizeof spec, "trunc", img, ni - IDX_ROWS * IDX_COLS / 2, lab, nl);
    expect_status("truncated IDX", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "trunc/train-images-idx3-ubyte: truncated: expected 60 bytes of pixels, got 50");

    /* Truncated gzip stream: the compressed file cut in half. */
    make_dir("truncgz");
    write_gz("truncgz/train-images-idx3-ubyte.gz", img, ni);
    write_gz("truncgz/train-labels-idx1-ubyte.gz", lab, nl);
    struct stat sb;
    ASSERT(stat(tmp_path("truncgz/train-images-idx3-ubyte.gz"), &sb) == 0);
    ASSERT(truncate(tmp_path("truncgz/train-images-idx3-ubyte.gz"), sb.st_size / 2) == 0);
    snprintf(spec, sizeof spec, "mnist:%s", tmp_path("truncgz"));
    expect_status("truncated gzip IDX", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "truncgz/train-images-idx3-ubyte.gz|truncated");

    /* Trailing bytes after the promised data. */
    uint8_t longer[sizeof img];
    memcpy(longer, img, ni);
    memset(longer + ni, 0, 8);
    idx_dir(spec, sizeof spec, "long", longer, ni + 8, lab, nl);
    expect_status("IDX with trailing data", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "long/train-images-idx3-ubyte|longer than its header says");

    /* Wrong magic: a label file where the images should be. */
    idx_dir(spec, sizeof spec, "magic", lab, nl, lab, nl);
    expect_status("wrong IDX magic", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "magic/train-images-idx3-ubyte: not an IDX image file: magic 0x00000801, expected 0x00000803");

    /* Count mismatch: 3 images, 2 labels (the label file is consistent with its own header). */
    uint8_t lab2[8 + 2];
    put_be32(lab2, 0x00000801);
    put_be32(lab2 + 4, 2);
    lab2[8] = 1, lab2[9] = 2;
    idx_dir(spec, sizeof spec, "count", img, ni, lab2, sizeof lab2);
    expect_status("IDX count mismatch", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "count/train-images-idx3-ubyte has 3 images but|count/train-labels-idx1-ubyte has 2 labels");

    /* A header claiming 2^31 images must fail on the size check, before any allocation or read. */
    uint8_t huge[16];
    idx_images(huge, 0x00000803, 0x80000000u, 0);
    idx_dir(spec, sizeof spec, "huge", huge, 16, lab, nl);
    expect_status("IDX with 2^31 images", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "huge/train-images-idx3-ubyte|2^31");

    idx_images(huge, 0x00000803, 0, 0);
    idx_dir(spec, sizeof spec, "zero", huge, 16, lab, nl);
    expect_status("IDX with zero images", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "zero/train-images-idx3-ubyte|dimension 0 is zero");

    /* Missing files and directories. */
    snprintf(spec, sizeof spec, "mnist:%s:test", tmp_path("raw"));
    expect_status("IDX missing t10k files", df_dataset_load(spec, 0, 0, &ds), DF_ERR_IO,
                  "t10k-images-idx3-ubyte.gz");
    snprintf(spec, sizeof spec, "mnist:%s", tmp_path("nonexistent"));
    expect_status("IDX missing directory", df_dataset_load(spec, 0, 0, &ds), DF_ERR_IO, "nonexistent");
    CHECK(ds.pixels == NULL && ds.labels == NULL, "failed load left data behind");
}

/* ------------------------------------------------------------------ synthetic CIFAR-10 */

static uint8_t cifar_pixel(int rec, int i) { return (uint8_t)(rec * 101 + i * 13); }

static void cifar_records(uint8_t *buf, int n, const int *labels, int first) {
    for (int r = 0; r < n; r++) {
        buf[r * 3073] = (uint8_t)labels[r];
        for (int i = 0; i < 3072; i++) buf[r * 3073 + 1 + i] = cifar_pixel(first + r, i);
    }
}

static void test_cifar(void) {
    static uint8_t buf[5 * 3073 + 1];
    df_dataset ds;
    char spec[600];
    make_dir("cifar");
    int labels[5] = {3, 9, 0, 5, 1};
    cifar_records(buf, 2, labels, 0);
    write_file("cifar/test_batch.bin", buf, 2 * 3073);
    snprintf(spec, sizeof spec, "cifar10:%s:test", tmp_path("cifar"));
    df_status st = df_dataset_load(spec, 3, 32, &ds);
    expect_status("cifar10 test_batch of 2 records", st, DF_OK, NULL);
    if (st == DF_OK) {
        CHECK(ds.n == 2 && ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.n_classes == 10, "cifar shape %dx%dx%dx%d/%d",
              ds.n, ds.c, ds.h, ds.w, ds.n_classes);
        CHECK(ds.labels[0] == 3 && ds.labels[1] == 9, "cifar labels %d %d", ds.labels[0], ds.labels[1]);
        int bad = 0;
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < 3072; i++) bad += ds.pixels[r * 3072 + i] != cifar_pixel(r, i);
        CHECK(bad == 0, "cifar: %d pixels differ (records are label + CHW bytes)", bad);
    }
    df_dataset_free(&ds);

    /* The train split needs all five batches; one record each here. */
    snprintf(spec, sizeof spec, "cifar10:%s", tmp_path("cifar"));
    for (int b = 1; b <= 5; b++) {
        char rel[64];
        snprintf(rel, sizeof rel, "cifar/data_batch_%d.bin", b);
        cifar_records(buf, 1, &labels[b - 1], b - 1);
        if (b != 3) write_file(rel, buf, 3073);
    }
    expect_status("cifar10 missing data_batch_3", df_dataset_load(spec, 0, 0, &ds), DF_ERR_IO, "data_batch_3.bin");
    cifar_records(buf, 1, &labels[2], 2);
    write_file("cifar/data_batch_3.bin", buf, 3073);
    st = df_dataset_load(spec, 0, 0, &ds);
    expect_status("cifar10 train of 5 batches", st, DF_OK, NULL);
    if (st == DF_OK) {
        CHECK(ds.n == 5, "cifar train n %d", ds.n);
        int bad = 0;
        for (int r = 0; r < 5; r++) {
            bad += ds.labels[r] != labels[r];
            for (int i = 0; i < 3072; i++) bad += ds.pixels[r * 3072 + i] != cifar_pixel(r, i);
        }
        CHECK(bad == 0, "cifar train: %d values differ", bad);
    }
    df_dataset_free(&ds);

    expect_status("cifar10 as 1x28x28", df_dataset_load(spec, 1, 28, &ds), DF_ERR_SHAPE,
                  "CIFAR-10 images are 3x32x32 but the model expects 1x28x28|data_batch_1.bin");

    make_dir("cifarbad");
    cifar_records(buf, 2, labels, 0);
    write_file("cifarbad/test_batch.bin", buf, 2 * 3073 + 1);
    snprintf(spec, sizeof spec, "cifar10:%s:test", tmp_path("cifarbad"));
    expect_status("cifar10 odd size", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "cifarbad/test_batch.bin: size 6147 bytes is not a positive multiple of 3073");
    int bad_labels[2] = {3, 10};
    cifar_records(buf, 2, bad_labels, 0);
    write_file("cifarbad/test_batch.bin", buf, 2 * 3073);
    expect_status("cifar10 label 10", df_dataset_load(spec, 0, 0, &ds), DF_ERR_FORMAT,
                  "cifarbad/test_batch.bin: record 1 has label 10");
}

/* ------------------------------------------------------------------ image folders */

static void write_png(const char *rel, int w, int h, int format, const uint8_t *pixels) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)w;
    image.height = (png_uint_32)h;
    image.format = (png_uint_32)format;
    ASSERT(png_image_write_to_file(&image, tmp_path(rel), 0, pixels, 0, NULL));
}

/* a_rgb.png: 8 wide, 4 high, value 10x + 40y + ch. Shrinking to short side 2 halves both axes
 * (4x2), the centre crop keeps columns 1..2, so output (oy, ox, ch) is the mean of the 2x2 block at
 * rows 2oy.., columns 2(ox+1)..: 10 (2ox + 2.5) + 40 (2oy + 0.5) + ch = 20ox + 80oy + 45 + ch. */
static uint8_t rgb_expect(int oy, int ox, int ch) { return (uint8_t)(20 * ox + 80 * oy + 45 + ch); }

/* b_gray.png: 3x3, 0, 30, ..., 240. To 2x2 each output averages a 1.5x1.5 footprint, weights
 * 1, 0.5, 0.25 by overlap: (0 + 15 + 45 + 30) / 2.25 = 40, and likewise 80, 160, 200. */
static const uint8_t gray_src[9] = {0, 30, 60, 90, 120, 150, 180, 210, 240};
static const uint8_t gray_expect[4] = {40, 80, 160, 200};

/* A_upper.PNG: 2x2 RGBA (upper-case name and extension sort first; alpha must be dropped). */
static const uint8_t rgba_src[16] = {10, 20, 30, 255, 40, 50, 60, 128, 70, 80, 90, 0, 100, 110, 120, 7};

static void test_folder(void) {
    char spec[600];
    df_dataset ds;
    make_dir("img");
    uint8_t rgb[4 * 8 * 3];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 8; x++)
            for (int ch = 0; ch < 3; ch++) rgb[(y * 8 + x) * 3 + ch] = (uint8_t)(10 * x + 40 * y + ch);
    write_png("img/a_rgb.png", 8, 4, PNG_FORMAT_RGB, rgb);
    write_png("img/b_gray.png", 3, 3, PNG_FORMAT_GRAY, gray_src);
    write_png("img/A_upper.PNG", 2, 2, PNG_FORMAT_RGBA, rgba_src);
    uint8_t photo[6 * 10 * 3];
    for (int i = 0; i < 60; i++) photo[3 * i] = 200, photo[3 * i + 1] = 100, photo[3 * i + 2] = 50;
    ASSERT(stbi_write_jpg(tmp_path("img/c_photo.jpg"), 10, 6, 3, photo, 95));
    write_file("img/notes.txt", "not an image", 12);

    snprintf(spec, sizeof spec, "folder:%s", tmp_path("img"));
    df_status st = df_dataset_load(spec, 3, 2, &ds);
    expect_status("folder 3x2x2", st, DF_OK, NULL);
    if (st == DF_OK) {
        CHECK(ds.n == 4 && ds.c == 3 && ds.h == 2 && ds.w == 2, "folder shape %dx%dx%dx%d", ds.n, ds.c, ds.h, ds.w);
        CHECK(ds.n_classes == 0 && ds.labels[0] == -1 && ds.labels[3] == -1, "folder labels should be unknown");
        int bad = 0, worst_jpeg = 0;
        const uint8_t *im = ds.pixels;
        for (int ch = 0; ch < 3; ch++) /* image 0: A_upper.PNG, same size: copied, alpha dropped */
            for (int p = 0; p < 4; p++) bad += im[ch * 4 + p] != rgba_src[p * 4 + ch];
        CHECK(bad == 0, "RGBA 2x2 -> RGB: %d values differ", bad);
        im += 12, bad = 0;
        for (int ch = 0; ch < 3; ch++) /* image 1: a_rgb.png, box-averaged and cropped */
            for (int oy = 0; oy < 2; oy++)
                for (int ox = 0; ox < 2; ox++) {
                    uint8_t got = im[(ch * 2 + oy) * 2 + ox], want = rgb_expect(oy, ox, ch);
                    if (got != want) bad++, printf("a_rgb (%d,%d,%d): %d, expected %d\n", ch, oy, ox, got, want);
                }
        CHECK(bad == 0, "8x4 RGB -> 2x2 box filter + centre crop: %d values differ", bad);
        im += 12, bad = 0;
        for (int ch = 0; ch < 3; ch++) /* image 2: b_gray.png, replicated to RGB */
            for (int p = 0; p < 4; p++) bad += im[ch * 4 + p] != gray_expect[p];
        CHECK(bad == 0, "3x3 gray -> 2x2 RGB: %d values differ", bad);
        im += 12;
        for (int ch = 0; ch < 3; ch++) /* image 3: a flat JPEG; lossy, so within 4 levels */
            for (int p = 0; p < 4; p++) {
                int d = abs((int)im[ch * 4 + p] - (int)photo[ch]);
                if (d > worst_jpeg) worst_jpeg = d;
            }
        CHECK(worst_jpeg <= 4, "flat JPEG: worst error %d levels > 4 (quality 95 on a flat colour)", worst_jpeg);

        /* The batch gather: p/127.5 - 1, with a left-right flip of the second image. */
        int idx[2] = {2, 1};
        uint8_t flip[2] = {0, 1};
        float x[2 * 12];
        df_dataset_batch(&ds, idx, flip, 2, x);
        float worst = 0;
        for (int ch = 0; ch < 3; ch++)
            for (int oy = 0; oy < 2; oy++)
                for (int ox = 0; ox < 2; ox++) {
                    float want0 = gray_expect[oy * 2 + ox] / 127.5f - 1.0f;
                    float want1 = rgb_expect(oy, 1 - ox, ch) / 127.5f - 1.0f;
                    float e0 = fabsf(x[(ch * 2 + oy) * 2 + ox] - want0), e1 = fabsf(x[12 + (ch * 2 + oy) * 2 + ox] - want1);
                    if (e0 > worst) worst = e0;
                    if (e1 > worst) worst = e1;
                }
        CHECK(worst == 0, "batch gather: worst error %g (same float expression, so exact)", worst);
        uint8_t ends[2] = {0, 255};
        df_dataset tiny = {.n = 2, .c = 1, .h = 1, .w = 1, .pixels = ends};
        int both[2] = {0, 1};
        df_dataset_batch(&tiny, both, NULL, 2, x);
        CHECK(x[0] == -1.0f && x[1] == 1.0f, "0 and 255 map to %g and %g, expected -1 and 1", x[0], x[1]);
    }
    df_dataset_free(&ds);

    /* Grayscale at the file's size: want_c 1, want_size 0 takes the first file's short side (2). */
    st = df_dataset_load(spec, 1, 0, &ds);
    expect_status("folder 1x?x?", st, DF_OK, NULL);
    if (st == DF_OK) {
        CHECK(ds.c == 1 && ds.h == 2 && ds.w == 2, "folder gray shape %dx%dx%d", ds.c, ds.h, ds.w);
        CHECK(!memcmp(ds.pixels + 2 * 4, gray_expect, 4), "gray image resized wrongly");
    }
    df_dataset_free(&ds);

    /* want_c 0: the first file is RGBA, so 3 channels. Enlarging 3x3 to 6x6 copies each pixel 2x2. */
    st = df_dataset_load(spec, 0, 6, &ds);
    expect_status("folder ?x6x6", st, DF_OK, NULL);
    if (st == DF_OK) {
        CHECK(ds.c == 3 && ds.h == 6 && ds.w == 6, "folder shape %dx%dx%d", ds.c, ds.h, ds.w);
        int bad = 0;
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 6; x++) bad += ds.pixels[2 * 108 + 36 + y * 6 + x] != gray_src[(y / 2) * 3 + x / 2];
        CHECK(bad == 0, "3x3 -> 6x6: %d values differ from pixel replication", bad);
    }
    df_dataset_free(&ds);

    make_dir("garbage");
    write_png("garbage/a_ok.png", 3, 3, PNG_FORMAT_GRAY, gray_src);
    write_file("garbage/b_bad.png", "this is not a PNG file", 22);
    snprintf(spec, sizeof spec, "folder:%s", tmp_path("garbage"));
    expect_status("folder with a garbage .png", df_dataset_load(spec, 1, 4, &ds), DF_ERR_FORMAT,
                  "garbage/b_bad.png: cannot decode image: ");
    CHECK(ds.pixels == NULL, "failed load left data behind");

    make_dir("empty");
    write_file("empty/readme.txt", "x", 1);
    snprintf(spec, sizeof spec, "folder:%s", tmp_path("empty"));
    expect_status("folder without images", df_dataset_load(spec, 1, 4, &ds), DF_ERR_FORMAT,
                  "empty: no .png, .jpg or .jpeg files");
    snprintf(spec, sizeof spec, "folder:%s", tmp_path("missing"));
    expect_status("missing folder", df_dataset_load(spec, 1, 4, &ds), DF_ERR_IO, "missing: cannot open directory");
    snprintf(spec, sizeof spec, "folder:%s", tmp_path("img"));
    expect_status("folder with 5 channels", df_dataset_load(spec, 5, 4, &ds), DF_ERR_ARG, "1 to 4 channels");
}

static void test_specs(void) {
    df_dataset ds;
    expect_status("unknown spec", df_dataset_load("imagenet", 0, 0, &ds), DF_ERR_ARG,
                  "unknown dataset 'imagenet'|folder:DIR");
    expect_status("mnist without dir", df_dataset_load("mnist:", 0, 0, &ds), DF_ERR_ARG, "no directory");
    expect_status("mnist with only a split", df_dataset_load("mnist::test", 0, 0, &ds), DF_ERR_ARG, "no directory");
    expect_status("fashion-mnist bad split", df_dataset_load("fashion-mnist:valid", 0, 0, &ds), DF_ERR_ARG,
                  "splits train and test");
    expect_status("negative size", df_dataset_load("fashion-mnist", 0, -1, &ds), DF_ERR_ARG, ">= 0");
    df_dataset_free(&ds); /* freeing an empty dataset is a no-op */
}

int main(void) {
    tmp_root = check_tmpdir("test_data");
    test_specs();
    test_idx();
    test_cifar();
    test_folder();
    test_fashion_mnist();
    check_tmpdir_remove(tmp_root, 0);
    return check_exit_code("test_data");
}
