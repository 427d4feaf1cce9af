/* data.h: image datasets held in memory as 8-bit pixels (IDX / MNIST-style, CIFAR-10 binary, a folder
 * of PNG/JPEG files), and the batch gather that turns them into network inputs in [-1, 1].
 *
 * What it is not: no augmentation beyond the left-right flip, no streaming from disk (a dataset is
 * decoded once, whole, into one pixel block), no class folders (folder images have no labels).
 *
 * Dataset specs (the string a user passes to --data):
 *   fashion-mnist            the Fashion-MNIST train split from Debian's dataset-fashion-mnist
 *   fashion-mnist:train      (same)       files under /usr/share/datasets/fashion-mnist
 *   fashion-mnist:test       its test split (t10k-* files)
 *   mnist:DIR                an IDX pair in DIR: train-images-idx3-ubyte + train-labels-idx1-ubyte,
 *   mnist:DIR:train          each raw or gzipped (".gz" is tried when the raw name is absent)
 *   mnist:DIR:test           the t10k-images-idx3-ubyte + t10k-labels-idx1-ubyte pair in DIR
 *   cifar10:DIR              CIFAR-10 "binary version": DIR/data_batch_1.bin .. data_batch_5.bin (all five)
 *   cifar10:DIR:train        (same)
 *   cifar10:DIR:test         DIR/test_batch.bin
 *   folder:DIR               every *.png, *.jpg, *.jpeg in DIR (not recursive, case-insensitive
 *                            extension), sorted by file name (bytewise), labels -1
 * Only a final ":train" or ":test" is read as a split, so DIR itself may contain ':'.
 *
 * Shapes. want_c / want_size are what the model expects (0 = accept the file's):
 *  - IDX and CIFAR images have a fixed shape (1x28x28, 3x32x32); a nonzero want that differs is
 *    DF_ERR_SHAPE ("fashion-mnist images are 1x28x28 but the model expects 3x32x32"). No resizing.
 *  - folder images are converted to want_c channels (1..4, stb_image's conversion: luma for
 *    RGB->gray, alpha dropped or set to 255), resized with area averaging (a box filter: each output
 *    pixel is the overlap-weighted mean of the input pixels its footprint covers) so that the SHORT
 *    side equals want_size, then centre-cropped to want_size x want_size (crop offset rounds down).
 *    want_c = 0 takes the first file's channel count without alpha (1 or 3); want_size = 0 takes the
 *    first file's short side.
 */
#ifndef DF_DATA_H
#define DF_DATA_H

#include "common.h"

typedef struct {
    int n, c, h, w;          /* images (N,C,H,W) */
    uint8_t *pixels;         /* N*C*H*W, CHW order per image, 0..255 */
    int *labels;             /* N entries, -1 if unknown */
    int n_classes;           /* 0 if unknown */
    char name[256];          /* e.g. "fashion-mnist:train" */
} df_dataset;

/* Where "fashion-mnist" is looked for (Debian's dataset-fashion-mnist package). */
#define DF_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

/* Loads the dataset named by `spec` (grammar above) into *ds, which the caller frees with
 * df_dataset_free. On failure *ds is left empty (safe to free) and the status says why:
 * DF_ERR_ARG (bad spec or want), DF_ERR_IO (missing file or directory), DF_ERR_FORMAT (bad magic,
 * truncated or oversized file, count mismatch, undecodable image, empty folder), DF_ERR_SHAPE
 * (fixed-shape data that is not want_c x want_size x want_size), DF_ERR_NOMEM. Every message
 * names the file. n_classes is max label + 1 for IDX, 10 for CIFAR-10, 0 for folders. */
df_status df_dataset_load(const char *spec, int want_c, int want_size, df_dataset *ds);

/* Frees what df_dataset_load allocated and zeroes *ds (safe on an empty or zeroed struct). */
void df_dataset_free(df_dataset *ds);

/* Fills x (n,C,H,W) with images idx[0..n-1] scaled to [-1,1] (x = p/127.5 - 1), mirrored
 * left-right where flip[k] is nonzero (flip may be NULL). Every idx[k] must lie in [0, ds->n)
 * (ASSERT: choosing indices is the caller's job). */
void df_dataset_batch(const df_dataset *ds, const int *idx, const uint8_t *flip, int n, float *x);

#endif
