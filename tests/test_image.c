/* test_image.c: PNG round trips (ours and other PNG flavours written with libpng directly),
 * corrupt PNGs, the sample grid's value mapping and layout, and the two plots. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"
#include "common.h"
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *dir; /* check_tmpdir() */

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

static void test_png_round_trip(void) {
    static const int sizes[][3] = {{7, 5, 1}, {13, 9, 3}, {3, 4, 4}, {1, 1, 1}, {257, 3, 3}};
    char path[256];
    snprintf(path, sizeof path, "%s/rt.png", dir);
    uint32_t seed = 12345;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int w = sizes[k][0], h = sizes[k][1], c = sizes[k][2];
        size_t n = (size_t)w * h * c;
        uint8_t *px = malloc(n);
        for (size_t i = 0; i < n; i++) px[i] = (uint8_t)(lcg(&seed) >> 24);
        CHECK(df_png_write(path, px, w, h, c) == DF_OK);
        uint8_t *back = NULL;
        int bw = 0, bh = 0, bc = 0;
        CHECK(df_png_read(path, &back, &bw, &bh, &bc) == DF_OK);
        CHECK(bw == w && bh == h && bc == c);
        CHECK(back && memcmp(back, px, n) == 0); /* lossless: identical bytes */
        free(back);
        free(px);
    }
    uint8_t one = 0;
    EXPECT_STATUS(df_png_write(path, &one, 0, 1, 1), DF_ERR_ARG, path, NULL);
    EXPECT_STATUS(df_png_write(path, &one, 1, 1, 2), DF_ERR_ARG, path, NULL);
    char bad[300];
    snprintf(bad, sizeof bad, "%s/missing/x.png", dir);
    EXPECT_STATUS(df_png_write(bad, &one, 1, 1, 1), DF_ERR_IO, bad, "No such file");
    unlink(path);
}

/* Writes a PNG with libpng directly, in a flavour our writer never produces. */
static int write_raw_png(const char *path, int w, int h, int color, int depth, int interlace, const uint8_t *rows,
                         size_t stride, const png_color *palette, int npal, const uint8_t *trns, int ntrns) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return 0;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, depth, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < h; y++) png_write_row(png, rows + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0;
}

static void test_png_flavours(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/flavour.png", dir);
    uint8_t *px = NULL;
    int w, h, c;

    /* 2x2 palette image with a transparent entry -> RGBA. */
    png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
    uint8_t trns[3] = {255, 0, 255};
    uint8_t idx[4] = {0, 1, 2, 0};
    CHECK(write_raw_png(path, 2, 2, PNG_COLOR_TYPE_PALETTE, 8, PNG_INTERLACE_NONE, idx, 2, pal, 3, trns, 3));
    CHECK(df_png_read(path, &px, &w, &h, &c) == DF_OK && w == 2 && h == 2 && c == 4);
    static const uint8_t want_pal[16] = {255, 0, 0, 255, 0, 255, 0, 0, 0, 0, 255, 255, 255, 0, 0, 255};
    CHECK(px && memcmp(px, want_pal, 16) == 0);
    free(px);

    /* 16-bit gray -> 8-bit gray, scaled with rounding: v8 = round(v16 * 255 / 65535). */
    uint8_t g16[6] = {0x00, 0x00, 0xFF, 0xFF, 0x80, 0x80}; /* 0, 65535, 32896 (= 128 * 257) */
    CHECK(write_raw_png(path, 3, 1, PNG_COLOR_TYPE_GRAY, 16, PNG_INTERLACE_NONE, g16, 6, NULL, 0, NULL, 0));
    CHECK(df_png_read(path, &px, &w, &h, &c) == DF_OK && w == 3 && h == 1 && c == 1);
    CHECK(px && px[0] == 0 && px[1] == 255 && px[2] == 128);
    free(px);

    /* 1-bit gray -> 0 / 255. */
    uint8_t bits[1] = {0xA0}; /* 1 0 1 0 */
    CHECK(write_raw_png(path, 4, 1, PNG_COLOR_TYPE_GRAY, 1, PNG_INTERLACE_NONE, bits, 1, NULL, 0, NULL, 0));
    CHECK(df_png_read(path, &px, &w, &h, &c) == DF_OK && w == 4 && c == 1);
    CHECK(px && px[0] == 255 && px[1] == 0 && px[2] == 255 && px[3] == 0);
    free(px);

    /* Gray + alpha -> RGBA. */
    uint8_t ga[4] = {10, 200, 250, 7};
    CHECK(write_raw_png(path, 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, PNG_INTERLACE_NONE, ga, 4, NULL, 0, NULL, 0));
    CHECK(df_png_read(path, &px, &w, &h, &c) == DF_OK && w == 2 && c == 4);
    static const uint8_t want_ga[8] = {10, 10, 10, 200, 250, 250, 250, 7};
    CHECK(px && memcmp(px, want_ga, 8) == 0);
    free(px);

    /* Interlaced (Adam7) RGB with odd sizes -> the same pixels. */
    enum { IW = 11, IH = 7 };
    uint8_t rgb[IW * IH * 3];
    uint32_t seed = 99;
    for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(lcg(&seed) >> 24);
    CHECK(write_raw_png(path, IW, IH, PNG_COLOR_TYPE_RGB, 8, PNG_INTERLACE_ADAM7, rgb, IW * 3, NULL, 0, NULL, 0));
    CHECK(df_png_read(path, &px, &w, &h, &c) == DF_OK && w == IW && h == IH && c == 3);
    CHECK(px && memcmp(px, rgb, sizeof rgb) == 0);
    free(px);
    unlink(path);
}

static void test_png_corrupt(void) {
    char good[256], bad[256];
    snprintf(good, sizeof good, "%s/good.png", dir);
    snprintf(bad, sizeof bad, "%s/bad.png", dir);
    enum { W = 40, H = 30 };
    uint8_t img[W * H * 3];
    uint32_t seed = 7;
    for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(lcg(&seed) >> 24);
    CHECK(df_png_write(good, img, W, H, 3) == DF_OK);
    FILE *f = fopen(good, "rb");
    uint8_t buf[16384];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 100 && n < sizeof buf);

    uint8_t *px = (uint8_t *)1;
    int w, h, c;
    /* Truncated at several points: inside the header chunks, inside IDAT, before IEND. */
    size_t cuts[] = {4, 20, 40, n / 2, n - 13};
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        f = fopen(bad, "wb");
        fwrite(buf, 1, cuts[k], f);
        fclose(f);
        EXPECT_STATUS(df_png_read(bad, &px, &w, &h, &c), DF_ERR_FORMAT, bad, NULL);
        CHECK(px == NULL);
    }
    /* Garbage and a flipped byte inside the compressed data (CRC mismatch). */
    f = fopen(bad, "wb");
    fputs("this is not a png file at all", f);
    fclose(f);
    EXPECT_STATUS(df_png_read(bad, &px, &w, &h, &c), DF_ERR_FORMAT, bad, "not a PNG");
    buf[n / 2] ^= 0x55;
    f = fopen(bad, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    EXPECT_STATUS(df_png_read(bad, &px, &w, &h, &c), DF_ERR_FORMAT, bad, "corrupt");
    CHECK(px == NULL);
    EXPECT_STATUS(df_png_read("no/such/file.png", &px, &w, &h, &c), DF_ERR_IO, "no/such/file.png", NULL);
    unlink(good);
    unlink(bad);
}

static void test_grid(void) {
    /* 5 RGB images of 2x3, 2 columns, pad 1: 9 x 10 pixels, 3 rows. */
    enum { N = 5, C = 3, H = 2, W = 3 };
    float x[N * C * H * W];
    /* Value of image k, channel ch, pixel (yy,xx): distinct per position, inside [-1,1]. */
    for (int k = 0; k < N; k++)
        for (int ch = 0; ch < C; ch++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++)
                    x[((k * C + ch) * H + yy) * W + xx] = -1.0f + (float)(k * 18 + ch * 6 + yy * 3 + xx) / 45.0f;
    /* Fixed probes: -1 -> 0, 1 -> 255, 0 -> 128 (127.5 rounds up), out of range clamps, NaN -> 0. */
    x[0] = -1.0f;
    x[1] = 1.0f;
    x[2] = 0.0f;
    x[3] = 7.0f;
    x[4] = -3.0f;
    x[5] = NAN;
    uint8_t *g = NULL;
    int gw = 0, gh = 0;
    CHECK(df_image_grid(x, N, C, H, W, 2, 1, &g, &gw, &gh) == DF_OK);
    CHECK(gw == 1 + 2 * (W + 1) && gh == 1 + 3 * (H + 1));
    if (!g || gw != 9 || gh != 10) return;
    CHECK(g[(1 * gw + 1) * 3 + 0] == 0);   /* image 0 (0,0) ch 0 = -1 */
    CHECK(g[(1 * gw + 2) * 3 + 0] == 255); /* (0,1) = 1 */
    CHECK(g[(1 * gw + 3) * 3 + 0] == 128); /* (0,2) = 0 */
    CHECK(g[(2 * gw + 1) * 3 + 0] == 255); /* (1,0) = 7 clamps */
    CHECK(g[(2 * gw + 2) * 3 + 0] == 0);   /* (1,1) = -3 clamps */
    CHECK(g[(2 * gw + 3) * 3 + 0] == 0);   /* (1,2) = NaN */
    int bad = 0;
    for (int py = 0; py < gh; py++)
        for (int px = 0; px < gw; px++)
            for (int ch = 0; ch < C; ch++) {
                int want = 0; /* padding and the empty sixth cell */
                int cx = (px - 1) / (W + 1), ox = (px - 1) % (W + 1), cy = (py - 1) / (H + 1), oy = (py - 1) % (H + 1);
                int k = cy * 2 + cx;
                if (px >= 1 && py >= 1 && ox < W && oy < H && k < N) {
                    float v = x[((k * C + ch) * H + oy) * W + ox];
                    double p = floor(((double)v + 1.0) * 127.5 + 0.5);
                    want = isnan(v) ? 0 : p < 0 ? 0 : p > 255 ? 255 : (int)p;
                }
                if (g[(py * gw + px) * 3 + ch] != want) bad++;
            }
    if (bad) fprintf(stderr, "grid: %d pixels differ from the layout formula\n", bad);
    CHECK(bad == 0);
    free(g);

    /* Gray, more columns than images: the grid narrows to n columns. */
    float y[2 * 4] = {-1, 1, 0, 0.5f, 1, 1, 1, 1};
    CHECK(df_image_grid(y, 2, 1, 2, 2, 8, 0, &g, &gw, &gh) == DF_OK && gw == 4 && gh == 2);
    CHECK(g && g[0] == 0 && g[1] == 255 && g[4] == 128 && g[5] == 191 && g[2] == 255); /* 0.5 -> 191.25 -> 191 */
    free(g);
    EXPECT_STATUS(df_image_grid(y, 2, 2, 2, 2, 8, 0, &g, &gw, &gh), DF_ERR_ARG, "c=2", NULL);
}

/* Counts pixels of the plot colours: light grey (r=g=b in 150..210) and strong blue
 * (b >= 200, r <= 60), and the lighter blue of a raw series (b >= 200, r in 120..180). */
static void count_colours(const uint8_t *px, int n, int *grey, int *blue, int *light_blue) {
    *grey = *blue = *light_blue = 0;
    for (int i = 0; i < n; i++) {
        int r = px[3 * i], g = px[3 * i + 1], b = px[3 * i + 2];
        if (r == g && g == b && r >= 150 && r <= 210) (*grey)++;
        if (b >= 200 && r <= 60) (*blue)++;
        if (b >= 200 && r >= 120 && r <= 180 && g > r) (*light_blue)++;
    }
}

static void test_plots(void) {
    char path[256];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    enum { NA = 2000, NB = 500 };
    float *a = malloc(sizeof(float) * 2 * NA), *b = malloc(sizeof(float) * 2 * NB);
    uint32_t s = 3;
    for (int k = 0; k < NA; k++) {
        double t = 6.283185307 * (lcg(&s) >> 8) / 16777216.0;
        a[2 * k] = (float)(2.0 * cos(t));
        a[2 * k + 1] = (float)(2.0 * sin(t));
    }
    for (int k = 0; k < NB; k++) {
        b[2 * k] = (float)((lcg(&s) >> 8) / 16777216.0 * 2.0 - 1.0);
        b[2 * k + 1] = (float)((lcg(&s) >> 8) / 16777216.0 * 2.0 - 1.0);
    }
    b[0] = 1e6f; /* an outlier: clipped, must not squash the plot */
    b[2] = NAN;
    CHECK(df_plot_scatter(path, a, NA, b, NB, "ring vs samples") == DF_OK);
    uint8_t *px = NULL;
    int w, h, c, grey, blue, lblue;
    CHECK(df_png_read(path, &px, &w, &h, &c) == DF_OK && w == 600 && h == 600 && c == 3);
    if (px) {
        count_colours(px, w * h, &grey, &blue, &lblue);
        /* Thousands of dots each: a squashed plot (outlier not clipped) would merge them into a few pixels. */
        CHECK(grey > 2000 && blue > 1000);
        if (grey <= 2000 || blue <= 1000) fprintf(stderr, "  scatter: grey %d, blue %d pixels\n", grey, blue);
    }
    free(px);
    CHECK(df_plot_scatter(path, a, NA, NULL, 0, NULL) == DF_OK); /* one set, no title */
    CHECK(df_plot_scatter(path, NULL, 0, NULL, 0, "empty") == DF_OK);

    enum { N = 400 };
    double x[N], y[N], ys[N];
    for (int k = 0; k < N; k++) {
        x[k] = k * 10;
        y[k] = 2.0 * exp(-k / 80.0) + 0.05 + 0.1 * ((lcg(&s) >> 8) / 16777216.0);
        ys[k] = 2.0 * exp(-k / 80.0) + 0.1;
    }
    y[50] = NAN; /* a gap */
    for (int log_y = 0; log_y < 2; log_y++) {
        CHECK(df_plot_lines(path, x, y, N, ys, log_y, "training loss", "step", "loss") == DF_OK);
        CHECK(df_png_read(path, &px, &w, &h, &c) == DF_OK && w == 800 && h == 500 && c == 3);
        if (px) {
            count_colours(px, w * h, &grey, &blue, &lblue);
            CHECK(blue > 500 && lblue > 300);
            if (blue <= 500 || lblue <= 300) fprintf(stderr, "  lines: blue %d, light blue %d\n", blue, lblue);
        }
        free(px);
    }
    CHECK(df_plot_lines(path, x, y, 1, NULL, 1, NULL, NULL, NULL) == DF_OK); /* one point */
    EXPECT_STATUS(df_plot_lines(path, x, y, 0, NULL, 0, "t", "x", "y"), DF_ERR_ARG, path, NULL);
    unlink(path);
    free(a);
    free(b);
}

int main(void) {
    dir = check_tmpdir("test_image");
    test_png_round_trip();
    test_png_flavours();
    test_png_corrupt();
    test_grid();
    test_plots();
    check_tmpdir_remove(dir, 1); /* every test removes its own files */
    return check_exit_code("test_image");
}
