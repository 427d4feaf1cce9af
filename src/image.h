/* image.h: PNG files, sample grids and two small plots (scatter, line chart).
 * What it is: 8-bit PNG read/write through libpng, a [-1,1] float batch to picture-grid
 * converter, and a deliberately simple rasteriser (Bresenham lines, square dots, our own
 * 5x7 bitmap font) for loss curves and 2-D sample plots.
 * What it is not: an image-processing or general plotting library (no antialiasing,
 * no resizing, no colour management: pixel values are passed through as they are). */
#ifndef DF_IMAGE_H
#define DF_IMAGE_H

#include "diffuse.h"
#include <stdint.h>

/* Writes pixels (height rows top to bottom, each width*channels interleaved bytes) as an 8-bit
 * PNG: channels 1 = gray, 3 = RGB, 4 = RGBA. Atomic: a failed write leaves an old file at path.
 * DF_ERR_ARG for bad sizes, DF_ERR_IO if the file cannot be written. */
df_status df_png_write(const char *path, const uint8_t *pixels, int width, int height, int channels);

/* Reads any PNG (palette, gray, gray+alpha, RGB, RGBA; 1..16 bits; interlaced or not) into a
 * new 8-bit buffer (free with free()): gray -> 1 channel, RGB or palette -> 3, anything with
 * alpha (including tRNS) -> 4 (gray+alpha becomes RGBA). 16-bit samples are scaled to 8 bits.
 * DF_ERR_IO if the file cannot be opened, DF_ERR_FORMAT (naming the file) if it is not a PNG
 * or is corrupt or truncated. On failure *pixels is NULL. */
df_status df_png_read(const char *path, uint8_t **pixels, int *width, int *height, int *channels);

/* Tiles n images x (N,C,H,W), values in [-1,1], into one picture of c channels (c = 1 or 3),
 * interleaved, in a grid of min(cols, n) columns and ceil(n/cols) rows with `pad` pixels of
 * value 0 around and between the images (torchvision make_grid layout):
 * out_w = pad + cols*(w + pad), out_h = pad + rows*(h + pad), image k at column k % cols,
 * row k / cols. Pixel = clamp(floor((x + 1) * 127.5 + 0.5), 0, 255) (NaN -> 0).
 * *out is new (free with free()). DF_ERR_ARG for bad sizes. */
df_status df_image_grid(const float *x, int n, int c, int h, int w, int cols, int pad, uint8_t **out, int *out_w,
                        int *out_h);

/* A 600x600 RGB scatter plot of 2-D points: a (na x,y pairs, the data) as light grey dots and
 * b (nb pairs, the samples) as strong blue dots on top, in common axes with equal scale on x
 * and y, bounded by the 0.5..99.5 percentiles of the union of both sets (points outside are
 * not drawn), with a frame, tick labels, a legend and `title` (may be NULL) on top.
 * Non-finite points are skipped. Written atomically as PNG. */
df_status df_plot_scatter(const char *path, const float *a, int na, const float *b, int nb, const char *title);

/* An 800x500 RGB line chart of y against x (n points), with a second series y2 (may be NULL,
 * e.g. a smoothed curve) drawn in a stronger colour on top; log_y draws y on a log10 axis
 * (values <= 0 are skipped there). Non-finite points break the line. Frame, grid, tick labels,
 * title and axis labels (each may be NULL). Written atomically as PNG. DF_ERR_ARG if n < 1. */
df_status df_plot_lines(const char *path, const double *x, const double *y, int n, const double *y2, int log_y,
                        const char *title, const char *xlabel, const char *ylabel);

#endif
