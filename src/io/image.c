/* image.c: PNG read/write (libpng), sample grids, and a minimal plot rasteriser.
 * The plots use a 5x7 bitmap font designed for this file, Bresenham lines (Bresenham 1965)
 * and square dots; there is no antialiasing on purpose: the output should be exactly
 * reproducible and testable pixel by pixel. Not a general graphics library. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <errno.h>
#include <float.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <string.h>

/* ------------------------------------------------------------------ libpng plumbing */

/* libpng reports errors by calling us and expecting a longjmp; the message is kept for df_fail.
 * Warnings are dropped: the library never prints. */
typedef struct {
    char msg[256];
} png_err;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

/* Largest decoded image we accept, so that a hostile header cannot ask for terabytes. */
#define PNG_MAX_BYTES ((size_t)1 << 31)

static df_status png_write_stream(FILE *fp, const char *path, const uint8_t *pixels, int width, int height,
                                  int channels) {
    png_err err = {{0}};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    if (!png) return df_fail(DF_ERR_NOMEM, "cannot write %s: out of memory in libpng", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return df_fail(DF_ERR_NOMEM, "cannot write %s: out of memory in libpng", path);
    }
    errno = 0; /* so that an errno seen after a libpng error belongs to this write */
    if (setjmp(png_jmpbuf(png))) {
        int e = errno;
        png_destroy_write_struct(&png, &info);
        return df_fail(DF_ERR_IO, "cannot write %s: %s%s%s%s", path, err.msg, e ? " (" : "", e ? strerror(e) : "",
                       e ? ")" : "");
    }
    int color = channels == 1 ? PNG_COLOR_TYPE_GRAY : channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_RGBA;
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, color, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)width * (size_t)channels;
    for (int y = 0; y < height; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * stride));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return DF_OK;
}

df_status df_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels) {
    ASSERT(path);
    if (width <= 0 || height <= 0 || width > 1000000 || height > 1000000 ||
        (channels != 1 && channels != 3 && channels != 4) || !pixels)
        return df_fail(DF_ERR_ARG, "cannot write %s: bad image %dx%d with %d channels", path, width, height,
                       channels);
    char tmp[4096];
    FILE *fp = df_atomic_open(path, tmp, sizeof tmp);
    if (!fp) return DF_ERR_IO;
    df_status st = png_write_stream(fp, path, pixels, width, height, channels);
    if (st) {
        df_atomic_abort(fp, tmp);
        return st;
    }
    return df_atomic_commit(fp, tmp, path);
}

/* The decoding half of df_png_read, after the signature was checked; fills *pixels on success. */
static df_status png_read_stream(FILE *fp, const char *path, uint8_t **pixels, int *width, int *height,
                                 int *channels) {
    png_err err = {{0}};
    /* Set after setjmp and needed after longjmp: volatile, as C11 7.13.2.1 requires. */
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    if (!png) return df_fail(DF_ERR_NOMEM, "cannot read %s: out of memory in libpng", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return df_fail(DF_ERR_NOMEM, "cannot read %s: out of memory in libpng", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(buf);
        free(rows);
        return df_fail(DF_ERR_FORMAT, "%s: corrupt or truncated PNG: %s", path, err.msg);
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    /* Everything to 8-bit gray, RGB or RGBA. */
    png_set_expand(png); /* palette -> RGB, gray < 8 bits -> 8 bits, tRNS -> alpha */
    if (depth == 16) {
#ifdef PNG_READ_SCALE_16_TO_8_SUPPORTED
        png_set_scale_16(png); /* rounds v * 255 / 65535; strip_16 would truncate */
#else
        png_set_strip_16(png);
#endif
    }
    int has_alpha = (color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
    if (!(color & PNG_COLOR_MASK_COLOR) && has_alpha) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (w == 0 || h == 0 || (ch != 1 && ch != 3 && ch != 4) || rowbytes != (size_t)w * (size_t)ch)
        png_error(png, "unexpected layout after conversion to 8 bits");
    if ((size_t)h > PNG_MAX_BYTES / rowbytes) png_error(png, "image too large");
    buf = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!buf || !rows) png_error(png, "out of memory for the pixels");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = buf + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *pixels = buf;
    *width = (int)w;
    *height = (int)h;
    *channels = ch;
    return DF_OK;
}

df_status df_png_read(const char *path, uint8_t **pixels, int *width, int *height, int *channels) {
    ASSERT(path && pixels && width && height && channels);
    *pixels = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return df_fail(DF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    unsigned char sig[8];
    df_status st;
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8) != 0)
        st = df_fail(DF_ERR_FORMAT, "%s: not a PNG file (bad signature)", path);
    else
        st = png_read_stream(fp, path, pixels, width, height, channels);
    fclose(fp);
    return st;
}

/* ------------------------------------------------------------------ grids */

static uint8_t to_byte(float v) {
    double p = floor(((double)v + 1.0) * 127.5 + 0.5); /* [-1,1] -> [0,255], round half up */
    if (!(p > 0.0)) return 0;                          /* also NaN */
    return p >= 255.0 ? 255 : (uint8_t)p;
}

df_status df_image_grid(const float *x, int n, int c, int h, int w, int cols, int pad, uint8_t **out, int *out_w,
                        int *out_h) {
    ASSERT(out && out_w && out_h);
    *out = NULL;
    if (n <= 0 || (c != 1 && c != 3) || h <= 0 || w <= 0 || cols <= 0 || pad < 0 || !x)
        return df_fail(DF_ERR_ARG, "image grid: bad arguments n=%d c=%d h=%d w=%d cols=%d pad=%d", n, c, h, w,
                       cols, pad);
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    int64_t gw = (int64_t)pad + (int64_t)cols * (w + pad), gh = (int64_t)pad + (int64_t)rows * (h + pad);
    if (gw > 1000000 || gh > 1000000)
        return df_fail(DF_ERR_ARG, "image grid: %lldx%lld pixels is too large", (long long)gw, (long long)gh);
    size_t bytes = (size_t)gw * (size_t)gh * (size_t)c;
    uint8_t *img = calloc(bytes, 1); /* pad value 0 */
    if (!img) return df_fail(DF_ERR_NOMEM, "image grid: out of memory for %zu bytes", bytes);
    size_t plane = (size_t)h * (size_t)w;
    for (int k = 0; k < n; k++) {
        const float *src = x + (size_t)k * (size_t)c * plane; /* image k (C,H,W) */
        size_t x0 = (size_t)pad + (size_t)(k % cols) * (size_t)(w + pad);
        size_t y0 = (size_t)pad + (size_t)(k / cols) * (size_t)(h + pad);
        for (int yy = 0; yy < h; yy++) {
            uint8_t *dst = img + ((y0 + (size_t)yy) * (size_t)gw + x0) * (size_t)c;
            for (int xx = 0; xx < w; xx++)
                for (int ch = 0; ch < c; ch++)
                    dst[(size_t)xx * (size_t)c + (size_t)ch] = to_byte(src[(size_t)ch * plane + (size_t)yy * (size_t)w + (size_t)xx]);
        }
    }
    *out = img;
    *out_w = (int)gw;
    *out_h = (int)gh;
    return DF_OK;
}

/* ------------------------------------------------------------------ canvas and font */

typedef struct {
    uint8_t r, g, b;
} rgb;

static const rgb WHITE = {255, 255, 255}, BLACK = {0, 0, 0}, GRID = {230, 230, 230};
static const rgb DATA_GREY = {175, 175, 175}, SAMPLE_BLUE = {20, 70, 220}, RAW_BLUE = {150, 185, 235};

typedef struct {
    int w, h;
    uint8_t *px;                /* RGB, rows top to bottom */
    int cx0, cy0, cx1, cy1;     /* clip rectangle (inclusive) for every drawing call */
} canvas;

static void put(canvas *cv, int x, int y, rgb c) {
    if (x < cv->cx0 || x > cv->cx1 || y < cv->cy0 || y > cv->cy1) return;
    uint8_t *p = cv->px + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static void clip_all(canvas *cv) {
    cv->cx0 = cv->cy0 = 0;
    cv->cx1 = cv->w - 1;
    cv->cy1 = cv->h - 1;
}

static void fill_rect(canvas *cv, int x, int y, int w, int h, rgb c) {
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) put(cv, i, j, c);
}

/* Bresenham's line with a square brush of `width` pixels. */
static void line(canvas *cv, int x0, int y0, int x1, int y1, int width, rgb c) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy, off = (width - 1) / 2;
    for (;;) {
        fill_rect(cv, x0 - off, y0 - off, width, width, c);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

/* 5x7 glyphs for ASCII 32..126, one byte per row, bit 4 = leftmost column.
 * Drawn for this project (no third-party font data). The descender letters g, p, q, y are
 * drawn 2 rows lower (see glyph_drop), so their bowls line up with the other lower case. */
static const uint8_t font5x7[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, /*   */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04}, /* ! */
    {0x0a, 0x0a, 0x0a, 0x00, 0x00, 0x00, 0x00}, /* " */
    {0x0a, 0x0a, 0x1f, 0x0a, 0x1f, 0x0a, 0x0a}, /* # */
    {0x04, 0x0f, 0x14, 0x0e, 0x05, 0x1e, 0x04}, /* $ */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}, /* % */
    {0x0c, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0d}, /* & */
    {0x04, 0x04, 0x04, 0x00, 0x00, 0x00, 0x00}, /* ' */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, /* ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}, /* ) */
    {0x00, 0x04, 0x15, 0x0e, 0x15, 0x04, 0x00}, /* * */
    {0x00, 0x04, 0x04, 0x1f, 0x04, 0x04, 0x00}, /* + */
    {0x00, 0x00, 0x00, 0x00, 0x0c, 0x04, 0x08}, /* , */
    {0x00, 0x00, 0x00, 0x1f, 0x00, 0x00, 0x00}, /* - */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x0c}, /* . */
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}, /* / */
    {0x0e, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0e}, /* 0 */
    {0x04, 0x0c, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* 1 */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1f}, /* 2 */
    {0x1f, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0e}, /* 3 */
    {0x02, 0x06, 0x0a, 0x12, 0x1f, 0x02, 0x02}, /* 4 */
    {0x1f, 0x10, 0x1e, 0x01, 0x01, 0x11, 0x0e}, /* 5 */
    {0x06, 0x08, 0x10, 0x1e, 0x11, 0x11, 0x0e}, /* 6 */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}, /* 7 */
    {0x0e, 0x11, 0x11, 0x0e, 0x11, 0x11, 0x0e}, /* 8 */
    {0x0e, 0x11, 0x11, 0x0f, 0x01, 0x02, 0x0c}, /* 9 */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x0c, 0x00}, /* : */
    {0x00, 0x0c, 0x0c, 0x00, 0x0c, 0x04, 0x08}, /* ; */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, /* < */
    {0x00, 0x00, 0x1f, 0x00, 0x1f, 0x00, 0x00}, /* = */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, /* > */
    {0x0e, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04}, /* ? */
    {0x0e, 0x11, 0x01, 0x0d, 0x15, 0x15, 0x0e}, /* @ */
    {0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, /* A */
    {0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e}, /* B */
    {0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e}, /* C */
    {0x1c, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1c}, /* D */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f}, /* E */
    {0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10}, /* F */
    {0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f}, /* G */
    {0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11}, /* H */
    {0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c}, /* J */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}, /* K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f}, /* L */
    {0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11}, /* M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, /* N */
    {0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* O */
    {0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10}, /* P */
    {0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d}, /* Q */
    {0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11}, /* R */
    {0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e}, /* S */
    {0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* T */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e}, /* U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* V */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a}, /* W */
    {0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11}, /* X */
    {0x11, 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04}, /* Y */
    {0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f}, /* Z */
    {0x0e, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0e}, /* [ */
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00}, /* \ */
    {0x0e, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0e}, /* ] */
    {0x04, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x00}, /* ^ */
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1f}, /* _ */
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00}, /* ` */
    {0x00, 0x00, 0x0e, 0x01, 0x0f, 0x11, 0x0f}, /* a */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1e}, /* b */
    {0x00, 0x00, 0x0e, 0x10, 0x10, 0x11, 0x0e}, /* c */
    {0x01, 0x01, 0x0d, 0x13, 0x11, 0x11, 0x0f}, /* d */
    {0x00, 0x00, 0x0e, 0x11, 0x1f, 0x10, 0x0e}, /* e */
    {0x06, 0x09, 0x08, 0x1c, 0x08, 0x08, 0x08}, /* f */
    {0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* g (descender) */
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, /* h */
    {0x04, 0x00, 0x0c, 0x04, 0x04, 0x04, 0x0e}, /* i */
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0c}, /* j */
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12}, /* k */
    {0x0c, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e}, /* l */
    {0x00, 0x00, 0x1a, 0x15, 0x15, 0x11, 0x11}, /* m */
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, /* n */
    {0x00, 0x00, 0x0e, 0x11, 0x11, 0x11, 0x0e}, /* o */
    {0x1e, 0x11, 0x11, 0x11, 0x1e, 0x10, 0x10}, /* p (descender) */
    {0x0f, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x01}, /* q (descender) */
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, /* r */
    {0x00, 0x00, 0x0e, 0x10, 0x0e, 0x01, 0x1e}, /* s */
    {0x08, 0x08, 0x1c, 0x08, 0x08, 0x09, 0x06}, /* t */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0d}, /* u */
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0a, 0x04}, /* v */
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0a}, /* w */
    {0x00, 0x00, 0x11, 0x0a, 0x04, 0x0a, 0x11}, /* x */
    {0x11, 0x11, 0x11, 0x11, 0x0f, 0x01, 0x0e}, /* y (descender) */
    {0x00, 0x00, 0x1f, 0x02, 0x04, 0x08, 0x1f}, /* z */
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02}, /* { */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, /* | */
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08}, /* } */
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00}, /* ~ */
};

static const uint8_t *glyph(unsigned char ch) { return font5x7[(ch >= 32 && ch < 127 ? ch : '?') - 32]; }

static int glyph_drop(unsigned char ch) { return ch == 'g' || ch == 'p' || ch == 'q' || ch == 'y' ? 2 : 0; }

/* Glyph cells are 6x9 font pixels: one column of spacing, two rows below for descenders. */
static int text_width(const char *s, int scale) {
    int n = (int)strlen(s);
    return n ? (6 * n - 1) * scale : 0;
}

/* Text with its top-left corner at (x, y). Characters outside ASCII 32..126 draw as '?'. */
static void draw_text(canvas *cv, int x, int y, const char *s, int scale, rgb c) {
    for (; *s; s++, x += 6 * scale) {
        unsigned char ch = (unsigned char)*s;
        const uint8_t *g = glyph(ch);
        int drop = glyph_drop(ch);
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++)
                if (g[r] & (0x10 >> col)) fill_rect(cv, x + col * scale, y + (r + drop) * scale, scale, scale, c);
    }
}

/* Text turned 90 degrees counter-clockwise (read bottom to top), its bottom-left corner at (x, y). */
static void draw_text_up(canvas *cv, int x, int y, const char *s, int scale, rgb c) {
    for (; *s; s++, y -= 6 * scale) {
        unsigned char ch = (unsigned char)*s;
        const uint8_t *g = glyph(ch);
        int drop = glyph_drop(ch);
        for (int r = 0; r < 7; r++)
            for (int col = 0; col < 5; col++)
                if (g[r] & (0x10 >> col))
                    fill_rect(cv, x + (r + drop) * scale, y - (col + 1) * scale, scale, scale, c);
    }
}

static df_status canvas_new(canvas *cv, int w, int h) {
    cv->w = w;
    cv->h = h;
    cv->px = malloc((size_t)w * (size_t)h * 3);
    if (!cv->px) return df_fail(DF_ERR_NOMEM, "plot: out of memory for a %dx%d canvas", w, h);
    memset(cv->px, 255, (size_t)w * (size_t)h * 3);
    clip_all(cv);
    return DF_OK;
}

/* ------------------------------------------------------------------ axes */

typedef struct {
    double lo, hi;  /* data range shown (log10 of it on a log axis) */
    int log;
    int p0, p1;     /* pixels of lo and hi */
} axis;

static double axis_value(const axis *a, double v) { return a->log ? log10(v) : v; }

static int axis_pixel(const axis *a, double v) {
    double t = (axis_value(a, v) - a->lo) / (a->hi - a->lo);
    double p = a->p0 + t * (a->p1 - a->p0);
    if (!(p >= -1e6)) p = -1e6; /* keep far-off points (and NaN from overflowing ranges) inside */
    if (p > 1e6) p = 1e6;       /* int range; the clip rectangle drops them */
    return (int)lround(p);
}

/* 1, 2 or 5 times a power of ten, near range/target (Heckbert, "Nice numbers for graph labels"). */
static double nice_step(double range, int target) {
    double raw = range / target;
    double mag = pow(10.0, floor(log10(raw)));
    double f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
}

/* A tick label: enough decimals for `step`, scientific notation for very large or small. */
static void tick_label(char *buf, size_t cap, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0.0;
    double mag = fmax(fabs(v), step);
    if (mag >= 1e6 || step < 1e-4) {
        snprintf(buf, cap, "%.2g", v);
    } else {
        int decimals = step >= 1.0 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f", decimals, v);
    }
}

/* Tick values of a linear axis into t (at most cap); returns their count and the step. */
static int linear_ticks(const axis *a, double *t, int cap, int target, double *step_out) {
    double step = nice_step(a->hi - a->lo, target);
    int n = 0;
    for (double k = ceil(a->lo / step - 1e-9); k * step <= a->hi + step * 1e-9 && n < cap; k += 1.0)
        t[n++] = k * step;
    *step_out = step;
    return n;
}

/* Tick values of a log axis (in data units): decades, or 1-2-5 within each decade when the
 * axis spans less than about two decades. */
static int log_ticks(const axis *a, double *t, int cap) {
    int n = 0;
    int d0 = (int)floor(a->lo), d1 = (int)ceil(a->hi);
    int every = (d1 - d0) > 12 ? (d1 - d0 + 5) / 6 : 1;
    static const double mult[3] = {1, 2, 5};
    int nm = (a->hi - a->lo) < 2.5 ? 3 : 1;
    for (int d = d0; d <= d1; d++) {
        if (d % every) continue;
        for (int m = 0; m < nm && n < cap; m++) {
            double v = mult[m] * pow(10.0, d), lv = log10(v);
            if (lv >= a->lo - 1e-9 && lv <= a->hi + 1e-9) t[n++] = v;
        }
    }
    return n;
}

static void log_label(char *buf, size_t cap, double v) {
    if (v >= 1e-3 && v < 1e5) snprintf(buf, cap, "%g", v);
    else snprintf(buf, cap, "%.0e", v);
}

#define FONT_SCALE 2 /* 10x14-pixel characters: legible at the 600- and 800-pixel sizes */

/* Frame, grid lines and tick labels around the plot rectangle (x.p0..x.p1, y.p1..y.p0). */
static void draw_axes(canvas *cv, const axis *ax, const axis *ay) {
    double t[64], step;
    char buf[32];
    int n;
    int top = ay->p1, bottom = ay->p0, left = ax->p0, right = ax->p1;
    n = linear_ticks(ax, t, 64, 6, &step);
    for (int k = 0; k < n; k++) {
        int px = axis_pixel(ax, t[k]);
        line(cv, px, top, px, bottom, 1, GRID);
        line(cv, px, bottom, px, bottom + 5, 1, BLACK);
        tick_label(buf, sizeof buf, t[k], step);
        draw_text(cv, px - text_width(buf, FONT_SCALE) / 2, bottom + 9, buf, FONT_SCALE, BLACK);
    }
    if (ay->log) {
        n = log_ticks(ay, t, 64);
        step = 0;
        if (n < 3) {
            /* Less than a decade shown: linear-spaced nice values, placed on the log scale. */
            axis lin = {pow(10.0, ay->lo), pow(10.0, ay->hi), 0, 0, 0};
            n = linear_ticks(&lin, t, 64, 5, &step);
            int m = 0;
            for (int k = 0; k < n; k++)
                if (t[k] > 0) t[m++] = t[k];
            n = m;
        }
    } else {
        n = linear_ticks(ay, t, 64, 6, &step);
    }
    for (int k = 0; k < n; k++) {
        int py = axis_pixel(ay, t[k]);
        line(cv, left, py, right, py, 1, GRID);
        line(cv, left - 5, py, left, py, 1, BLACK);
        if (ay->log && step == 0) log_label(buf, sizeof buf, t[k]);
        else tick_label(buf, sizeof buf, t[k], step);
        draw_text(cv, left - 9 - text_width(buf, FONT_SCALE), py - 7 * FONT_SCALE / 2, buf, FONT_SCALE, BLACK);
    }
    line(cv, left, top, right, top, 1, BLACK);
    line(cv, left, bottom, right, bottom, 1, BLACK);
    line(cv, left, top, left, bottom, 1, BLACK);
    line(cv, right, top, right, bottom, 1, BLACK);
}

static void draw_title(canvas *cv, const char *title) {
    if (!title || !*title) return;
    int scale = text_width(title, FONT_SCALE) <= cv->w - 20 ? FONT_SCALE : 1;
    draw_text(cv, (cv->w - text_width(title, scale)) / 2, 12, title, scale, BLACK);
}

static df_status canvas_save(canvas *cv, const char *path) {
    df_status st = df_png_write(path, cv->px, cv->w, cv->h, 3);
    free(cv->px);
    cv->px = NULL;
    return st;
}

/* ------------------------------------------------------------------ scatter */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Quantile q of sorted v[0..n) with linear interpolation between ranks (numpy's default). */
static double quantile(const double *v, size_t n, double q) {
    double r = q * (double)(n - 1);
    size_t i = (size_t)r;
    if (i + 1 >= n) return v[n - 1];
    return v[i] + (r - (double)i) * (v[i + 1] - v[i]);
}

/* Percentile bounds (0.5..99.5) of coordinate `coord` of the finite points of a and b. */
static df_status robust_range(const float *a, int na, const float *b, int nb, int coord, double *lo,
                              double *hi) {
    double *v = malloc(((size_t)na + (size_t)nb + 1) * sizeof *v);
    if (!v) return df_fail(DF_ERR_NOMEM, "plot: out of memory");
    size_t n = 0;
    for (int k = 0; k < na; k++)
        if (isfinite(a[2 * k]) && isfinite(a[2 * k + 1])) v[n++] = a[2 * k + coord];
    for (int k = 0; k < nb; k++)
        if (isfinite(b[2 * k]) && isfinite(b[2 * k + 1])) v[n++] = b[2 * k + coord];
    if (n == 0) {
        *lo = -1.0;
        *hi = 1.0;
    } else {
        qsort(v, n, sizeof *v, cmp_double);
        *lo = quantile(v, n, 0.005);
        *hi = quantile(v, n, 0.995);
    }
    free(v);
    return DF_OK;
}

static void draw_dots(canvas *cv, const axis *ax, const axis *ay, const float *p, int n, int size, rgb c) {
    for (int k = 0; k < n; k++) {
        double x = p[2 * k], y = p[2 * k + 1];
        if (!isfinite(x) || !isfinite(y) || x < ax->lo || x > ax->hi || y < ay->lo || y > ay->hi) continue;
        fill_rect(cv, axis_pixel(ax, x) - size / 2, axis_pixel(ay, y) - size / 2, size, size, c);
    }
}

/* One legend row: a colour swatch and a label on a white box, right-aligned at x_right. */
static void legend_row(canvas *cv, int x_right, int y, const char *label, rgb c) {
    int tw = text_width(label, FONT_SCALE);
    fill_rect(cv, x_right - tw - 30, y - 3, tw + 34, 7 * FONT_SCALE + 6, WHITE);
    fill_rect(cv, x_right - tw - 20, y + 2, 10, 10, c);
    draw_text(cv, x_right - tw, y, label, FONT_SCALE, BLACK);
}

df_status df_plot_scatter(const char *path, const float *a, int na, const float *b, int nb, const char *title) {
    ASSERT(path);
    if (na < 0 || nb < 0 || (na && !a) || (nb && !b))
        return df_fail(DF_ERR_ARG, "cannot plot %s: bad point arrays (na=%d, nb=%d)", path, na, nb);
    enum { W = 600, H = 600, LEFT = 80, RIGHT = 20, TOP = 44, BOTTOM = 36 };
    double xlo, xhi, ylo, yhi;
    df_status st = robust_range(a, na, b, nb, 0, &xlo, &xhi);
    if (!st) st = robust_range(a, na, b, nb, 1, &ylo, &yhi);
    if (st) return st;
    /* Equal scale on both axes (the plot area is square) with a 5% margin each side; a single
     * point gets a small span around it. */
    double span = fmax(xhi - xlo, yhi - ylo) * 1.1;
    if (!(span > 1e-12)) span = 2.0 * fmax(1.0, fmax(fabs(xlo), fabs(ylo)) * 1e-3);
    if (!isfinite(span)) span = DBL_MAX / 4; /* points near +-FLT_MAX: draw something, never NaN */
    double xc = 0.5 * (xlo + xhi), yc = 0.5 * (ylo + yhi);
    int side = W - LEFT - RIGHT; /* = H - TOP - BOTTOM */
    axis ax = {xc - span / 2, xc + span / 2, 0, LEFT, LEFT + side};
    axis ay = {yc - span / 2, yc + span / 2, 0, TOP + side, TOP};
    canvas cv;
    if ((st = canvas_new(&cv, W, H))) return st;
    draw_axes(&cv, &ax, &ay);
    cv.cx0 = LEFT + 1;
    cv.cx1 = LEFT + side - 1;
    cv.cy0 = TOP + 1;
    cv.cy1 = TOP + side - 1;
    draw_dots(&cv, &ax, &ay, a, na, 2, DATA_GREY);
    draw_dots(&cv, &ax, &ay, b, nb, 3, SAMPLE_BLUE);
    char label[64];
    int y = TOP + 8;
    if (na) {
        snprintf(label, sizeof label, "data (%d)", na);
        legend_row(&cv, LEFT + side - 8, y, label, DATA_GREY);
        y += 7 * FONT_SCALE + 6;
    }
    if (nb) {
        snprintf(label, sizeof label, "samples (%d)", nb);
        legend_row(&cv, LEFT + side - 8, y, label, SAMPLE_BLUE);
    }
    clip_all(&cv);
    draw_title(&cv, title);
    return canvas_save(&cv, path);
}

/* ------------------------------------------------------------------ line chart */

static int usable(double v, int log_y) { return isfinite(v) && (!log_y || v > 0.0); }

static void draw_series(canvas *cv, const axis *ax, const axis *ay, const double *x, const double *y, int n,
                        int width, rgb c) {
    int have_prev = 0, px = 0, py = 0;
    for (int k = 0; k < n; k++) {
        if (!isfinite(x[k]) || !usable(y[k], ay->log)) {
            have_prev = 0;
            continue;
        }
        int qx = axis_pixel(ax, x[k]), qy = axis_pixel(ay, y[k]);
        if (have_prev) line(cv, px, py, qx, qy, width, c);
        else fill_rect(cv, qx - width / 2, qy - width / 2, width, width, c); /* a lone point shows */
        px = qx;
        py = qy;
        have_prev = 1;
    }
}

df_status df_plot_lines(const char *path, const double *x, const double *y, int n, const double *y2, int log_y,
                        const char *title, const char *xlabel, const char *ylabel) {
    ASSERT(path);
    if (n < 1 || !x || !y) return df_fail(DF_ERR_ARG, "cannot plot %s: no points (n=%d)", path, n);
    enum { W = 800, H = 500, LEFT = 110, RIGHT = 24, TOP = 44, BOTTOM = 70 };
    double xlo = DBL_MAX, xhi = -DBL_MAX, ylo = DBL_MAX, yhi = -DBL_MAX;
    for (int k = 0; k < n; k++) {
        if (!isfinite(x[k])) continue;
        xlo = fmin(xlo, x[k]);
        xhi = fmax(xhi, x[k]);
        for (int s = 0; s < (y2 ? 2 : 1); s++) {
            double v = s ? y2[k] : y[k];
            if (!usable(v, log_y)) continue;
            v = log_y ? log10(v) : v;
            ylo = fmin(ylo, v);
            yhi = fmax(yhi, v);
        }
    }
    if (xlo > xhi) xlo = 0, xhi = 1;
    if (ylo > yhi) ylo = 0, yhi = 1;
    if (xhi - xlo < 1e-12 * fmax(1.0, fabs(xlo))) xlo -= 0.5, xhi += 0.5;
    if (yhi - ylo < 1e-12 * fmax(1.0, fabs(ylo))) ylo -= 0.5, yhi += 0.5;
    double margin = 0.05 * (yhi - ylo);
    axis ax = {xlo, xhi, 0, LEFT, W - RIGHT};
    axis ay = {ylo - margin, yhi + margin, log_y, H - BOTTOM, TOP};
    canvas cv;
    df_status st = canvas_new(&cv, W, H);
    if (st) return st;
    draw_axes(&cv, &ax, &ay);
    cv.cx0 = LEFT + 1;
    cv.cx1 = W - RIGHT - 1;
    cv.cy0 = TOP + 1;
    cv.cy1 = H - BOTTOM - 1;
    if (y2) {
        draw_series(&cv, &ax, &ay, x, y, n, 1, RAW_BLUE);
        draw_series(&cv, &ax, &ay, x, y2, n, 2, SAMPLE_BLUE);
    } else {
        draw_series(&cv, &ax, &ay, x, y, n, 2, SAMPLE_BLUE);
    }
    clip_all(&cv);
    draw_title(&cv, title);
    if (xlabel && *xlabel)
        draw_text(&cv, LEFT + (W - RIGHT - LEFT - text_width(xlabel, FONT_SCALE)) / 2, H - 7 * FONT_SCALE - 10,
                  xlabel, FONT_SCALE, BLACK);
    if (ylabel && *ylabel)
        draw_text_up(&cv, 10, TOP + (H - BOTTOM - TOP + text_width(ylabel, FONT_SCALE)) / 2, ylabel, FONT_SCALE,
                     BLACK);
    return canvas_save(&cv, path);
}
