/* data.c: dataset loaders (IDX, CIFAR-10 binary, image folders) and the batch gather.
 * Contracts and the spec grammar are in data.h. Every loader validates the whole file before it
 * trusts a size from it: a bad header, a short or long file, or a mismatch between files is a
 * DF_ERR_FORMAT naming the file, never a crash or a silent partial dataset.
 * Not here: shuffling and flip choice (the trainer draws them from the counter-based RNG). */
#define _POSIX_C_SOURCE 200809L /* strdup, stat */
#include "common.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include <stb/stb_image.h> /* implementation provided by Debian's libstb; do not define STB_IMAGE_IMPLEMENTATION */

#define DATA_PATH_MAX 4096
/* The pixel block is indexed with int counts (df_dataset.n) and must stay addressable in one
 * allocation; 2^31 bytes is far beyond any dataset this engine trains on. */
#define DATA_MAX_BYTES ((uint64_t)1 << 31)

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned byte, 3 dims */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned byte, 1 dim */
#define CIFAR_RECORD 3073            /* 1 label byte + 3x32x32 pixels, CHW */
#define CIFAR_CLASSES 10
/* Largest decoded folder image, in bytes after conversion to the wanted channels. stb_image pads a
 * truncated JPEG instead of failing, so a file of a few hundred bytes can declare 20000x20000 pixels
 * and cost 1.2 GB and a minute of decoding; 2^28 bytes still admits a 9000x9000 RGB photo. */
#define FOLDER_MAX_IMAGE_BYTES ((uint64_t)1 << 28)

/* ------------------------------------------------------------------ small helpers */

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int dir_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static df_status path_join(char *out, const char *dir, const char *file) {
    int len = snprintf(out, DATA_PATH_MAX, "%s/%s", dir, file);
    if (len < 0 || len >= DATA_PATH_MAX)
        return df_fail(DF_ERR_ARG, "%s/%s: path longer than %d bytes", dir, file, DATA_PATH_MAX - 1);
    return DF_OK;
}

/* Fixed-shape data (IDX, CIFAR) cannot be resized here: a model that wants another shape is a
 * user error that must name both shapes. */
static df_status check_fixed_shape(const char *kind, const char *path, int c, int h, int w, int want_c,
                                   int want_size) {
    if ((want_c && want_c != c) || (want_size && (want_size != h || want_size != w)))
        return df_fail(DF_ERR_SHAPE, "%s images are %dx%dx%d but the model expects %dx%dx%d (%s)", kind, c, h, w,
                       want_c ? want_c : c, want_size ? want_size : h, want_size ? want_size : w, path);
    return DF_OK;
}

/* Copies name, cut to fit (a long folder path only shortens the label, never fails the load). */
static void dataset_set_name(df_dataset *ds, const char *name) {
    size_t len = strlen(name);
    if (len >= sizeof ds->name) len = sizeof ds->name - 1;
    memcpy(ds->name, name, len);
    ds->name[len] = 0;
}

/* ------------------------------------------------------------------ IDX (MNIST format) */

/* zlib's gzerror() text is "PATH: what"; the messages here name the path once already. */
static const char *gz_error_text(gzFile gz, const char *path, int *errnum) {
    const char *msg = gzerror(gz, errnum);
    size_t len = strlen(path);
    if (!strncmp(msg, path, len) && !strncmp(msg + len, ": ", 2)) msg += len + 2;
    return msg;
}

/* Reads up to n bytes; *got says how many arrived. gzread handles raw and gzipped files alike.
 * A corrupt gzip stream is DF_ERR_FORMAT; a short stream is left to the caller (it knows what
 * was expected and words the "truncated" message). */
static df_status gz_read_upto(gzFile gz, const char *path, uint8_t *buf, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t chunk = n - *got;
        if (chunk > (1u << 30)) chunk = 1u << 30;
        int r = gzread(gz, buf + *got, (unsigned)chunk);
        if (r < 0) {
            int errnum;
            return df_fail(DF_ERR_FORMAT, "%s: corrupt gzip data: %s", path, gz_error_text(gz, path, &errnum));
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    return DF_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Opens an IDX file and validates its header: magic, then `ndim` nonzero big-endian dims. */
static df_status idx_open(const char *path, uint32_t magic, int ndim, uint32_t *dims, gzFile *out) {
    *out = NULL;
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return df_fail(DF_ERR_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, 1u << 17);
    uint8_t hdr[16];
    size_t hdr_bytes = 4 + 4 * (size_t)ndim, got;
    df_status st = gz_read_upto(gz, path, hdr, hdr_bytes, &got);
    if (st != DF_OK) goto fail;
    if (got < 4 || be32(hdr) != magic) {
        st = got < 4 ? df_fail(DF_ERR_FORMAT, "%s: truncated: expected an IDX header of %zu bytes, got %zu",
                               path, hdr_bytes, got)
                     : df_fail(DF_ERR_FORMAT, "%s: not an IDX %s file: magic 0x%08x, expected 0x%08x", path,
                               magic == IDX_MAGIC_IMAGES ? "image" : "label", be32(hdr), magic);
        goto fail;
    }
    if (got < hdr_bytes) {
        st = df_fail(DF_ERR_FORMAT, "%s: truncated: expected an IDX header of %zu bytes, got %zu", path,
                     hdr_bytes, got);
        goto fail;
    }
    for (int d = 0; d < ndim; d++) {
        dims[d] = be32(hdr + 4 + 4 * d);
        if (dims[d] == 0) {
            st = df_fail(DF_ERR_FORMAT, "%s: IDX dimension %d is zero", path, d);
            goto fail;
        }
    }
    *out = gz;
    return DF_OK;
fail:
    gzclose(gz);
    return st;
}

/* Reads exactly n body bytes and insists the file ends there. */
static df_status idx_read_body(gzFile gz, const char *path, const char *what, uint8_t *buf, size_t n) {
    size_t got;
    df_status st = gz_read_upto(gz, path, buf, n, &got);
    if (st != DF_OK) return st;
    if (got < n) {
        int errnum;
        const char *msg = gz_error_text(gz, path, &errnum);
        return df_fail(DF_ERR_FORMAT, "%s: truncated: expected %zu bytes of %s, got %zu%s%s%s", path, n, what, got,
                       errnum == Z_BUF_ERROR ? " (" : "", errnum == Z_BUF_ERROR ? msg : "",
                       errnum == Z_BUF_ERROR ? ")" : "");
    }
    uint8_t extra;
    st = gz_read_upto(gz, path, &extra, 1, &got);
    if (st != DF_OK) return st;
    if (got != 0)
        return df_fail(DF_ERR_FORMAT, "%s: longer than its header says: data continues after %zu bytes of %s", path,
                       n, what);
    return DF_OK;
}

/* Picks DIR/NAME, else DIR/NAME.gz. */
static df_status idx_find(const char *dir, const char *name, char *path) {
    char gz_name[256];
    snprintf(gz_name, sizeof gz_name, "%s.gz", name);
    df_status st = path_join(path, dir, name);
    if (st != DF_OK || file_exists(path)) return st;
    st = path_join(path, dir, gz_name);
    if (st != DF_OK || file_exists(path)) return st;
    return df_fail(DF_ERR_IO, "%s: neither %s nor %s found", dir, name, gz_name);
}

/* A header must not make us allocate what the file cannot hold (a 16-byte file claiming 2 GB of
 * pixels): a raw file holds exactly its body after the header, and deflate expands at most 1032:1
 * (a 258-byte match in 2 bits; zlib's "maximum compression factor"), so a gzip stream smaller than
 * body/1032 bytes is truncated. Checked before the allocation; the read then finds any shortfall. */
static df_status idx_check_claim(gzFile gz, const char *path, const char *what, size_t hdr_bytes, uint64_t body) {
    struct stat sb;
    if (stat(path, &sb) != 0) return df_fail(DF_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    uint64_t size = (uint64_t)sb.st_size;
    if (gzdirect(gz) && size < hdr_bytes + body) /* the header itself was read, so size >= hdr_bytes */
        return df_fail(DF_ERR_FORMAT, "%s: truncated: expected %llu bytes of %s, got %llu", path,
                       (unsigned long long)body, what, (unsigned long long)(size - hdr_bytes));
    if (!gzdirect(gz) && body / 1032 > size)
        return df_fail(DF_ERR_FORMAT, "%s: truncated: expected %llu bytes of %s, more than %llu gzipped bytes can hold",
                       path, (unsigned long long)body, what, (unsigned long long)size);
    return DF_OK;
}

/* An IDX image file + label file pair. `kind` names the data in shape messages. */
static df_status idx_load_pair(const char *kind, const char *images_path, const char *labels_path, int want_c,
                               int want_size, df_dataset *ds) {
    gzFile gi = NULL, gl = NULL;
    uint8_t *label_bytes = NULL;
    uint32_t idims[3], ldims[1];
    df_status st = idx_open(images_path, IDX_MAGIC_IMAGES, 3, idims, &gi);
    if (st != DF_OK) return st;
    uint64_t total = (uint64_t)idims[0] * idims[1] * idims[2]; /* each < 2^32: the product of three fits */
    if (idims[1] > (1u << 16) || idims[2] > (1u << 16) || total > DATA_MAX_BYTES || idims[0] > INT32_MAX) {
        st = df_fail(DF_ERR_FORMAT, "%s: implausible IDX dims %u x %u x %u (more than 2^31 bytes of pixels)",
                     images_path, idims[0], idims[1], idims[2]);
        goto close_images;
    }
    st = check_fixed_shape(kind, images_path, 1, (int)idims[1], (int)idims[2], want_c, want_size);
    if (st != DF_OK) goto close_images;
    st = idx_check_claim(gi, images_path, "pixels", 16, total);
    if (st != DF_OK) goto close_images;
    st = idx_open(labels_path, IDX_MAGIC_LABELS, 1, ldims, &gl);
    if (st != DF_OK) goto close_images;
    if (ldims[0] != idims[0]) {
        st = df_fail(DF_ERR_FORMAT, "%s has %u images but %s has %u labels", images_path, idims[0], labels_path,
                     ldims[0]);
        goto close_labels;
    }
    st = idx_check_claim(gl, labels_path, "labels", 8, ldims[0]);
    if (st != DF_OK) goto close_labels;

    ds->n = (int)idims[0];
    ds->c = 1;
    ds->h = (int)idims[1];
    ds->w = (int)idims[2];
    ds->pixels = df_alloc((size_t)total, "dataset pixels");
    ds->labels = df_alloc(sizeof(int) * (size_t)ds->n, "dataset labels");
    label_bytes = df_alloc((size_t)ds->n, "IDX label bytes");
    if (!ds->pixels || !ds->labels || !label_bytes) {
        st = DF_ERR_NOMEM;
        goto close_labels;
    }
    st = idx_read_body(gi, images_path, "pixels", ds->pixels, (size_t)total);
    if (st != DF_OK) goto close_labels;
    st = idx_read_body(gl, labels_path, "labels", label_bytes, (size_t)ds->n);
    if (st != DF_OK) goto close_labels;
    int max_label = 0;
    for (int i = 0; i < ds->n; i++) { /* labels are bytes, hence < 256 by construction */
        ds->labels[i] = label_bytes[i];
        if (label_bytes[i] > max_label) max_label = label_bytes[i];
    }
    ds->n_classes = max_label + 1;

close_labels:
    gzclose(gl);
close_images:
    gzclose(gi);
    df_free(label_bytes);
    return st;
}

static df_status idx_load_dir(const char *kind, const char *dir, int test, int want_c, int want_size,
                              df_dataset *ds) {
    char images[DATA_PATH_MAX], labels[DATA_PATH_MAX];
    const char *prefix = test ? "t10k" : "train";
    char iname[64], lname[64];
    snprintf(iname, sizeof iname, "%s-images-idx3-ubyte", prefix);
    snprintf(lname, sizeof lname, "%s-labels-idx1-ubyte", prefix);
    if (!dir_exists(dir)) return df_fail(DF_ERR_IO, "%s: no such directory", dir);
    df_status st = idx_find(dir, iname, images);
    if (st == DF_OK) st = idx_find(dir, lname, labels);
    if (st == DF_OK) st = idx_load_pair(kind, images, labels, want_c, want_size, ds);
    return st;
}

/* ------------------------------------------------------------------ CIFAR-10 binary */

static df_status cifar_file_records(const char *path, size_t *records) {
    struct stat st;
    if (stat(path, &st) != 0) return df_fail(DF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return df_fail(DF_ERR_IO, "%s: not a regular file", path);
    if (st.st_size == 0 || st.st_size % CIFAR_RECORD != 0)
        return df_fail(DF_ERR_FORMAT,
                       "%s: size %lld bytes is not a positive multiple of %d (1 label byte + 3072 pixel bytes "
                       "per CIFAR-10 record)",
                       path, (long long)st.st_size, CIFAR_RECORD);
    *records = (size_t)(st.st_size / CIFAR_RECORD);
    return DF_OK;
}

/* Reads `records` records of one file into pixels/labels starting at image `first`. */
static df_status cifar_read_file(const char *path, size_t records, size_t first, df_dataset *ds) {
    FILE *f = fopen(path, "rb");
    if (!f) return df_fail(DF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    df_status st = DF_OK;
    uint8_t rec[CIFAR_RECORD];
    for (size_t r = 0; r < records; r++) {
        if (fread(rec, 1, CIFAR_RECORD, f) != CIFAR_RECORD) {
            st = df_fail(DF_ERR_IO, "%s: read failed at record %zu (file changed while loading?)", path, r);
            break;
        }
        if (rec[0] >= CIFAR_CLASSES) {
            st = df_fail(DF_ERR_FORMAT, "%s: record %zu has label %d, CIFAR-10 labels are 0..9", path, r, rec[0]);
            break;
        }
        ds->labels[first + r] = rec[0];
        memcpy(ds->pixels + (first + r) * (CIFAR_RECORD - 1), rec + 1, CIFAR_RECORD - 1);
    }
    fclose(f);
    return st;
}

static df_status cifar_load_dir(const char *dir, int test, int want_c, int want_size, df_dataset *ds) {
    enum { MAX_FILES = 5 };
    char paths[MAX_FILES][DATA_PATH_MAX];
    size_t records[MAX_FILES], total = 0;
    int nfiles = test ? 1 : MAX_FILES;
    if (!dir_exists(dir)) return df_fail(DF_ERR_IO, "%s: no such directory", dir);
    for (int i = 0; i < nfiles; i++) {
        char name[64];
        snprintf(name, sizeof name, test ? "test_batch.bin" : "data_batch_%d.bin", i + 1);
        df_status st = path_join(paths[i], dir, name);
        if (st == DF_OK) st = cifar_file_records(paths[i], &records[i]);
        if (st != DF_OK) return st;
        total += records[i];
    }
    df_status st = check_fixed_shape("CIFAR-10", paths[0], 3, 32, 32, want_c, want_size);
    if (st != DF_OK) return st;
    if ((uint64_t)total * (CIFAR_RECORD - 1) > DATA_MAX_BYTES)
        return df_fail(DF_ERR_FORMAT, "%s: %zu CIFAR-10 records exceed 2^31 bytes of pixels", dir, total);
    ds->n = (int)total;
    ds->c = 3;
    ds->h = ds->w = 32;
    ds->n_classes = CIFAR_CLASSES;
    ds->pixels = df_alloc(total * (CIFAR_RECORD - 1), "dataset pixels");
    ds->labels = df_alloc(sizeof(int) * total, "dataset labels");
    if (!ds->pixels || !ds->labels) return DF_ERR_NOMEM;
    size_t first = 0;
    for (int i = 0; i < nfiles; i++) {
        st = cifar_read_file(paths[i], records[i], first, ds);
        if (st != DF_OK) return st;
        first += records[i];
    }
    return DF_OK;
}

/* ------------------------------------------------------------------ image folders */

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    char ext[8];
    size_t len = strlen(dot + 1);
    if (len == 0 || len >= sizeof ext) return 0;
    for (size_t i = 0; i <= len; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    return !strcmp(ext, "png") || !strcmp(ext, "jpg") || !strcmp(ext, "jpeg");
}

/* stb_image's reason for the last failure; it is sometimes empty (a PNG that ends after its header). */
static const char *stb_reason(void) {
    const char *r = stbi_failure_reason();
    return r && r[0] ? r : "truncated, or not an image stb_image reads";
}

/* Debian's stb_image (2020) decodes a JPEG scan with whatever Huffman or quantisation table slot
 * it names, defined or not: an undefined slot is uninitialised memory, and its decoder then reads
 * garbage and can abort on an assertion (fuzz_image_folder found one). So before stb_image decodes
 * a JPEG, walk its markers: every scan must name only tables the file defined before it. Returns 0
 * if a scan does not; 1 otherwise (also for what is not a JPEG, or ends early: stb_image judges
 * those). A DC scan that refines (Ah > 0) reads raw bits, and a progressive DC scan no AC table. */
static int jpeg_tables_defined(const uint8_t *p, size_t n) {
    if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return 1;
    unsigned quant = 0, huff = 0; /* bit t: quant table t; bit 4 * class + t: Huffman table t */
    int progressive = 0, ncomp = 0, tq[4] = {0};
    size_t i = 2;
    while (i + 4 <= n) {
        if (p[i] != 0xFF || p[i + 1] == 0xFF) { /* stb_image skips bytes between markers, and fill bytes */
            i++;
            continue;
        }
        const int m = p[i + 1];
        if (m == 0xD9) return 1;                                /* EOI */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* markers without a length */
            i += 2;
            continue;
        }
        const size_t len = (size_t)p[i + 2] << 8 | p[i + 3];
        if (len < 2 || i + 2 + len > n) return 1;
        const uint8_t *q = p + i + 4;
        const size_t ql = len - 2;
        if (m == 0xDB) { /* DQT: (precision, slot) and 64 entries of 1 or 2 bytes each */
            for (size_t k = 0; k < ql; k += 1 + 64 * (size_t)((q[k] >> 4) ? 2 : 1)) quant |= 1u << (q[k] & 3);
        } else if (m == 0xC4) { /* DHT: (class, slot), 16 code counts, the symbols */
            for (size_t k = 0; k + 17 <= ql;) {
                size_t symbols = 0;
                for (int b = 1; b <= 16; b++) symbols += q[k + b];
                huff |= 1u << (4 * ((q[k] >> 4) & 1) + (q[k] & 3));
                k += 17 + symbols;
            }
        } else if (m >= 0xC0 && m <= 0xC2) { /* SOF0-2: components (id, sampling, quant slot) */
            progressive = m == 0xC2;
            ncomp = ql >= 6 ? q[5] : 0;
            for (int c = 0; c < ncomp && c < 4 && 8 + 3 * (size_t)c < ql; c++) tq[c] = q[8 + 3 * c] & 3;
        } else if (m == 0xDA && ql >= 1) { /* SOS: (component, DC slot << 4 | AC slot) each, Ss, Se, Ah/Al */
            const size_t ns = q[0];
            if (ql < 4 + 2 * ns) return 1;
            const int ss = q[1 + 2 * ns], ah = q[3 + 2 * ns] >> 4;
            const int need_dc = !progressive || (ss == 0 && ah == 0), need_ac = !progressive || ss > 0;
            for (int c = 0; c < ncomp && c < 4; c++)
                if (!(quant >> tq[c] & 1)) return 0;
            for (size_t j = 0; j < ns; j++) {
                const int dc = q[2 + 2 * j] >> 4 & 3, ac = q[2 + 2 * j] & 3;
                if ((need_dc && !(huff >> dc & 1)) || (need_ac && !(huff >> (4 + ac) & 1))) return 0;
            }
            /* the entropy-coded data runs to the next marker that is not a stuffed 0 or a restart */
            for (i += 2 + len; i + 1 < n; i++)
                if (p[i] == 0xFF && p[i + 1] != 0 && !(p[i + 1] >= 0xD0 && p[i + 1] <= 0xD7)) break;
            continue;
        }
        i += 2 + len;
    }
    return 1;
}

/* jpeg_tables_defined on the file at path (read whole; folder images are capped in pixels). */
static df_status check_jpeg_tables(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return df_fail(DF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t head[2] = {0, 0};
    df_status st = DF_OK;
    if (fread(head, 1, 2, f) == 2 && head[0] == 0xFF && head[1] == 0xD8 && fseek(f, 0, SEEK_END) == 0) {
        const long size = ftell(f);
        uint8_t *buf = size > 0 ? df_alloc((size_t)size, "JPEG file") : NULL;
        if (size > 0 && !buf) st = DF_ERR_NOMEM;
        else if (buf && (fseek(f, 0, SEEK_SET) != 0 || fread(buf, 1, (size_t)size, f) != (size_t)size))
            st = df_fail(DF_ERR_IO, "%s: cannot read", path);
        else if (buf && !jpeg_tables_defined(buf, (size_t)size))
            st = df_fail(DF_ERR_FORMAT, "%s: corrupt JPEG: a scan uses a Huffman or quantisation table the file "
                                        "never defines", path);
        df_free(buf);
    }
    fclose(f);
    return st;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Lists the image files of dir (subdirs = 0) or its subfolders (subdirs = 1), sorted bytewise, each
 * name prefixed with `prefix`. *names is malloc'd (free_names); none found is not an error here. */
static df_status dir_list(const char *dir, int subdirs, const char *prefix, char ***names_out, int *n_out) {
    *names_out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d) return df_fail(DF_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0, cap = 0;
    df_status st = DF_OK;
    struct dirent *e;
    char path[DATA_PATH_MAX];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || (!subdirs && !has_image_extension(e->d_name))) continue;
        if (path_join(path, dir, e->d_name) != DF_OK || !(subdirs ? dir_exists(path) : file_exists(path))) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, sizeof *names * (size_t)cap);
            if (!grown) {
                st = df_fail(DF_ERR_NOMEM, "%s: out of memory listing the directory", dir);
                break;
            }
            names = grown;
        }
        const size_t len = strlen(prefix) + strlen(e->d_name) + 1;
        if ((names[n] = malloc(len))) snprintf(names[n], len, "%s%s", prefix, e->d_name);
        if (!names[n]) {
            st = df_fail(DF_ERR_NOMEM, "%s: out of memory listing the directory", dir);
            break;
        }
        n++;
    }
    closedir(d);
    if (st != DF_OK) {
        free_names(names, n);
        return st;
    }
    if (n > 1) qsort(names, (size_t)n, sizeof *names, compare_names);  /* names is NULL when n is 0 */
    *names_out = names;
    *n_out = n;
    return DF_OK;
}

/* Box-filter taps of one axis: resizing in_n samples to out_n, output o averages the input interval
 * [o*in_n/out_n, (o+1)*in_n/out_n) with each input sample weighted by its overlap (area averaging,
 * as PIL's BOX / OpenCV's INTER_AREA when shrinking). Only outputs first..first+count-1 are built.
 * tap_first[k] is the first input index of output first+k, taps[k*max_taps + j] its weights, already
 * divided by the interval length so they sum to 1. */
static void box_taps(int in_n, int64_t out_n, int64_t first, int count, int max_taps, int *tap_first,
                     int *tap_count, double *taps) {
    double scale = (double)in_n / out_n;
    for (int k = 0; k < count; k++) {
        int64_t o = first + k;
        double a = (double)o * in_n / out_n, b = (double)(o + 1) * in_n / out_n;
        int i0 = (int)floor(a), i1 = (int)ceil(b);
        if (i1 > in_n) i1 = in_n;
        if (i1 - i0 > max_taps) i1 = i0 + max_taps; /* cannot happen with max_taps = ceil(scale) + 1 */
        tap_first[k] = i0;
        tap_count[k] = i1 - i0;
        for (int i = i0; i < i1; i++) {
            double lo = a > i ? a : i, hi = b < i + 1 ? b : i + 1;
            taps[k * max_taps + (i - i0)] = (hi - lo) / scale;
        }
    }
}

/* src: h x w x c interleaved (stb_image layout). dst: c x s x s (CHW). Resizes so the short side is s
 * (the long side rounded to nearest, at least s) and keeps the centre s x s. The resized size is
 * 64-bit (a 1 x 2^24 image at s = 256 is 2^32 pixels long), and the horizontal pass runs only over
 * the input rows under the crop, so a very tall image costs what its crop needs, not its height. */
static df_status resize_crop(const uint8_t *src, int w, int h, int c, int s, uint8_t *dst, const char *path) {
    int64_t rw, rh;
    if (w <= h) {
        rw = s;
        rh = (int64_t)floor((double)h * s / w + 0.5);
    } else {
        rh = s;
        rw = (int64_t)floor((double)w * s / h + 0.5);
    }
    if (rw < s) rw = s;
    if (rh < s) rh = s;
    int64_t x0 = (rw - s) / 2, y0 = (rh - s) / 2;
    int max_tx = (int)ceil((double)w / rw) + 1, max_ty = (int)ceil((double)h / rh) + 1;
    size_t ints = 4 * (size_t)s, doubles = (size_t)s * (max_tx + max_ty);
    char *block = df_alloc(ints * sizeof(int) + doubles * sizeof(double), "image resize taps");
    if (!block) return df_fail(DF_ERR_NOMEM, "%s: out of memory resizing a %dx%d image", path, w, h);
    double *tx = (double *)block, *ty = tx + (size_t)s * max_tx;
    int *fx = (int *)(ty + (size_t)s * max_ty), *nx = fx + s, *fy = nx + s, *ny = fy + s;
    box_taps(w, rw, x0, s, max_tx, fx, nx, tx);
    box_taps(h, rh, y0, s, max_ty, fy, ny, ty);
    int y_lo = fy[0], y_hi = y_lo; /* input rows [y_lo, y_hi) feed the crop */
    for (int oy = 0; oy < s; oy++)
        if (fy[oy] + ny[oy] > y_hi) y_hi = fy[oy] + ny[oy];
    double *rows = df_alloc(sizeof(double) * (size_t)(y_hi - y_lo) * s * c, "image resize rows"); /* (y_hi-y_lo) x s x c */
    if (!rows) {
        df_free(block);
        return df_fail(DF_ERR_NOMEM, "%s: out of memory resizing a %dx%d image", path, w, h);
    }
    for (int y = y_lo; y < y_hi; y++) /* horizontal pass */
        for (int ox = 0; ox < s; ox++)
            for (int ch = 0; ch < c; ch++) {
                double acc = 0;
                for (int j = 0; j < nx[ox]; j++)
                    acc += tx[ox * max_tx + j] * src[((size_t)y * w + fx[ox] + j) * c + ch];
                rows[((size_t)(y - y_lo) * s + ox) * c + ch] = acc;
            }
    for (int oy = 0; oy < s; oy++) /* vertical pass, written as CHW */
        for (int ox = 0; ox < s; ox++)
            for (int ch = 0; ch < c; ch++) {
                double acc = 0;
                for (int j = 0; j < ny[oy]; j++)
                    acc += ty[oy * max_ty + j] * rows[((size_t)(fy[oy] + j - y_lo) * s + ox) * c + ch];
                long v = lround(acc);
                dst[((size_t)ch * s + oy) * s + ox] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    df_free(rows);
    df_free(block);
    return DF_OK;
}

/* The images of dir: its own files (labels -1), or else, as torchvision's ImageFolder, one
 * subfolder per class (sorted names; names[i] = "class/file", labels[i] the class index, and
 * ds->class_names the names, one per line). */
static df_status folder_files(const char *dir, df_dataset *ds, char ***names_out, int *n_out, int **labels_out) {
    char **names = NULL, **classes = NULL;
    int n = 0, k = 0, *labels = NULL;
    df_status st = dir_list(dir, 0, "", &names, &n);
    if (st == DF_OK && n == 0) st = dir_list(dir, 1, "", &classes, &k);
    if (st == DF_OK && n == 0 && k == 0) st = df_fail(DF_ERR_FORMAT, "%s: no .png, .jpg or .jpeg files, and no class subfolders", dir);
    if (st == DF_OK && n == 0 && k == 1)
        st = df_fail(DF_ERR_FORMAT, "%s: one class subfolder (%s); a labelled folder needs at least 2", dir, classes[0]);
    size_t names_len = 0;
    for (int c = 0; st == DF_OK && c < k; c++) {
        char sub[DATA_PATH_MAX], prefix[DATA_PATH_MAX];
        char **files;
        int m;
        if ((st = path_join(sub, dir, classes[c]))) break;
        snprintf(prefix, sizeof prefix, "%s/", classes[c]);
        if ((st = dir_list(sub, 0, prefix, &files, &m))) break;
        if (m == 0) st = df_fail(DF_ERR_FORMAT, "%s: class '%s' has no .png, .jpg or .jpeg files", dir, classes[c]);
        char **grown = st == DF_OK ? realloc(names, sizeof *names * (size_t)(n + m)) : NULL;
        int *lgrown = st == DF_OK ? realloc(labels, sizeof *labels * (size_t)(n + m)) : NULL;
        if (grown) names = grown;
        if (lgrown) labels = lgrown;
        if (st == DF_OK && (!grown || !lgrown)) st = df_fail(DF_ERR_NOMEM, "%s: out of memory listing the classes", dir);
        for (int i = 0; st == DF_OK && i < m; i++) names[n + i] = files[i], labels[n + i] = c;
        if (st == DF_OK) n += m, free(files);
        else free_names(files, m);
        names_len += strlen(classes[c]) + 1;
    }
    if (st == DF_OK && k > 0) {
        if (!(ds->class_names = malloc(names_len + 1))) st = df_fail(DF_ERR_NOMEM, "%s: out of memory", dir);
        for (int c = 0, at = 0; st == DF_OK && c < k; c++) at += sprintf(ds->class_names + at, "%s%s", c ? "\n" : "", classes[c]);
        ds->n_classes = k;
    }
    free_names(classes, k);
    if (st != DF_OK) {
        free_names(names, n);
        free(labels);
        return st;
    }
    *names_out = names, *n_out = n, *labels_out = labels;
    return DF_OK;
}

static df_status folder_load(const char *dir, int want_c, int want_size, df_dataset *ds) {
    if (want_c < 0 || want_c > 4)
        return df_fail(DF_ERR_ARG, "%s: image folders can give 1 to 4 channels, not %d", dir, want_c);
    if (want_size < 0) return df_fail(DF_ERR_ARG, "%s: image size %d is negative", dir, want_size);
    char **names;
    int n, *labels;
    df_status st = folder_files(dir, ds, &names, &n, &labels);
    if (st != DF_OK) return st;
    char path[DATA_PATH_MAX];
    int c = want_c, s = want_size;
    if (!c || !s) { /* take what the first file has */
        int w, h, comp;
        st = path_join(path, dir, names[0]);
        if (st != DF_OK) goto done;
        if (!stbi_info(path, &w, &h, &comp)) {
            st = df_fail(DF_ERR_FORMAT, "%s: cannot decode image: %s", path, stb_reason());
            goto done;
        }
        if (!c) c = comp <= 2 ? 1 : 3;
        if (!s) s = w < h ? w : h;
    }
    if ((uint64_t)n * c * s * s > DATA_MAX_BYTES) {
        st = df_fail(DF_ERR_NOMEM, "%s: %d images of %dx%dx%d exceed 2^31 bytes", dir, n, c, s, s);
        goto done;
    }
    size_t image_bytes = (size_t)c * s * s;
    ds->n = n;
    ds->c = c;
    ds->h = ds->w = s;
    ds->pixels = df_alloc(image_bytes * n, "dataset pixels");
    ds->labels = df_alloc(sizeof(int) * n, "dataset labels");
    if (!ds->pixels || !ds->labels) {
        st = DF_ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < n && st == DF_OK; i++) {
        int w, h, comp;
        ds->labels[i] = labels ? labels[i] : -1;
        st = path_join(path, dir, names[i]);
        if (st != DF_OK) break;
        if (!stbi_info(path, &w, &h, &comp)) {
            st = df_fail(DF_ERR_FORMAT, "%s: cannot decode image: %s", path, stb_reason());
            break;
        }
        if ((uint64_t)w * h * c > FOLDER_MAX_IMAGE_BYTES) {
            st = df_fail(DF_ERR_FORMAT, "%s: a %dx%d image is more than the %d megapixels a folder image may have",
                         path, w, h, (int)(FOLDER_MAX_IMAGE_BYTES / c >> 20));
            break;
        }
        if ((st = check_jpeg_tables(path)) != DF_OK) break;
        uint8_t *img = stbi_load(path, &w, &h, &comp, c);
        if (!img) {
            st = df_fail(DF_ERR_FORMAT, "%s: cannot decode image: %s", path, stb_reason());
            break;
        }
        st = resize_crop(img, w, h, c, s, ds->pixels + image_bytes * i, path);
        stbi_image_free(img);
    }
done:
    free_names(names, n);
    free(labels);
    return st;
}

/* ------------------------------------------------------------------ spec parsing and the public API */

/* A spec read by the grammar, before anything is opened. */
typedef struct {
    df_dataset_form form;
    int test;                        /* the :test split */
    char dir[DATA_PATH_MAX];         /* mnist, cifar10, folder: the directory */
    char name[sizeof ((df_dataset *)0)->name];  /* the dataset's name, e.g. "mnist:DIR:train" */
} parsed_spec;

/* The form spec begins as. Bare "fashion-mnist" is the one form without a colon, so it must end
 * there or go on with one: fashion-mnistX (or a file fashion-mnist-points.csv) is no form. */
static df_dataset_form spec_form_of(const char *spec) {
    if (!strcmp(spec, "fashion-mnist") || !strncmp(spec, "fashion-mnist:", 14)) return DF_DATASET_FASHION_MNIST;
    if (!strncmp(spec, "mnist:", 6)) return DF_DATASET_MNIST;
    if (!strncmp(spec, "cifar10:", 8)) return DF_DATASET_CIFAR10;
    if (!strncmp(spec, "folder:", 7)) return DF_DATASET_FOLDER;
    return DF_DATASET_NONE;
}

/* Strips a final ":train" or ":test" from s; returns 1 for test. */
static int strip_split(char *s) {
    size_t len = strlen(s);
    if (len >= 5 && !strcmp(s + len - 5, ":test")) {
        s[len - 5] = 0;
        return 1;
    }
    if (len >= 6 && !strcmp(s + len - 6, ":train")) s[len - 6] = 0;
    return 0;
}

/* Reads spec into *p by the grammar, touching no file: the one place that knows the grammar
 * (df_dataset_load and df_dataset_spec_check both come here). */
static df_status parse_spec(const char *spec, parsed_spec *p) {
    static const char usage[] =
        "expected fashion-mnist[:train|:test], mnist:DIR[:train|:test], cifar10:DIR[:train|:test] or folder:DIR";
    memset(p, 0, sizeof *p);
    p->form = spec_form_of(spec);
    if (strlen(spec) >= sizeof p->dir)
        return df_fail(DF_ERR_ARG, "dataset spec longer than %zu bytes", sizeof p->dir - 1);
    switch (p->form) {
    case DF_DATASET_FASHION_MNIST: {
        const char *split = spec[13] ? spec + 14 : "train";
        if (strcmp(split, "train") && strcmp(split, "test"))
            return df_fail(DF_ERR_ARG, "dataset '%s': fashion-mnist has splits train and test", spec);
        p->test = !strcmp(split, "test");
        snprintf(p->name, sizeof p->name, "fashion-mnist:%s", split);
        return DF_OK;
    }
    case DF_DATASET_MNIST:
    case DF_DATASET_CIFAR10: {
        int is_mnist = p->form == DF_DATASET_MNIST;
        strcpy(p->dir, spec + (is_mnist ? 6 : 8));
        p->test = strip_split(p->dir);
        if (!p->dir[0]) return df_fail(DF_ERR_ARG, "dataset '%s': no directory given; %s", spec, usage);
        snprintf(p->name, sizeof p->name, "%s:%.200s:%s", is_mnist ? "mnist" : "cifar10", p->dir,
                 p->test ? "test" : "train");
        return DF_OK;
    }
    case DF_DATASET_FOLDER: {
        if (!spec[7]) return df_fail(DF_ERR_ARG, "dataset '%s': no directory given; %s", spec, usage);
        strcpy(p->dir, spec + 7);
        size_t len = strlen(spec);  /* a long folder path only shortens the name, never fails */
        if (len >= sizeof p->name) len = sizeof p->name - 1;
        memcpy(p->name, spec, len);
        return DF_OK;
    }
    case DF_DATASET_NONE: break;
    }
    return df_fail(DF_ERR_ARG, "unknown dataset '%s': %s", spec, usage);
}

static df_status dataset_load_spec(const char *spec, int want_c, int want_size, df_dataset *ds) {
    if (want_c < 0 || want_size < 0)
        return df_fail(DF_ERR_ARG, "dataset '%s': want_c %d and want_size %d must be >= 0", spec, want_c, want_size);
    parsed_spec p;
    df_status st = parse_spec(spec, &p);
    if (st != DF_OK) return st;
    if (p.form == DF_DATASET_FASHION_MNIST && !dir_exists(DF_FASHION_MNIST_DIR))
        return df_fail(DF_ERR_IO, "%s: no such directory (install Debian's dataset-fashion-mnist package, or "
                       "point mnist:DIR at the IDX files)", DF_FASHION_MNIST_DIR);
    dataset_set_name(ds, p.name);
    /* the published class names, in label order */
    static const char fashion[] = "T-shirt/top\nTrouser\nPullover\nDress\nCoat\nSandal\nShirt\nSneaker\nBag\nAnkle boot";
    static const char cifar[] = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck";
    switch (p.form) {
    case DF_DATASET_FASHION_MNIST:
        st = idx_load_dir("fashion-mnist", DF_FASHION_MNIST_DIR, p.test, want_c, want_size, ds);
        if (st == DF_OK && ds->n_classes == 10 && !(ds->class_names = strdup(fashion))) st = DF_ERR_NOMEM;
        return st;
    case DF_DATASET_MNIST: return idx_load_dir("IDX", p.dir, p.test, want_c, want_size, ds);
    case DF_DATASET_CIFAR10:
        st = cifar_load_dir(p.dir, p.test, want_c, want_size, ds);
        if (st == DF_OK && !(ds->class_names = strdup(cifar))) st = DF_ERR_NOMEM;
        return st;
    case DF_DATASET_FOLDER: return folder_load(p.dir, want_c, want_size, ds);
    case DF_DATASET_NONE: break;
    }
    ASSERT(0 && "parse_spec accepted no form");
    return DF_ERR_ARG;
}

df_status df_dataset_spec_check(const char *spec, df_dataset_form *form) {
    ASSERT(spec);
    parsed_spec p;
    df_status st = parse_spec(spec, &p);
    if (form) *form = p.form;
    return st;
}

df_status df_dataset_load(const char *spec, int want_c, int want_size, df_dataset *ds) {
    ASSERT(spec && ds);
    memset(ds, 0, sizeof *ds);
    df_status st = dataset_load_spec(spec, want_c, want_size, ds);
    if (st != DF_OK) df_dataset_free(ds);
    return st;
}

void df_dataset_free(df_dataset *ds) {
    if (!ds) return;
    df_free(ds->pixels);
    df_free(ds->labels);
    free(ds->class_names);
    memset(ds, 0, sizeof *ds);
}

void df_dataset_batch(const df_dataset *ds, const int *idx, const uint8_t *flip, int n, float *x) {
    // x (n, C, H, W) out; ds->pixels (N, C, H, W) bytes
    const int w = ds->w;
    const size_t rows = (size_t)ds->c * ds->h, image = rows * w;
    for (int k = 0; k < n; k++) {
        ASSERT(idx[k] >= 0 && idx[k] < ds->n);
        const uint8_t *src = ds->pixels + (size_t)idx[k] * image;
        float *dst = x + (size_t)k * image;
        const int mirror = flip && flip[k];
        for (size_t r = 0; r < rows; r++)
            for (int j = 0; j < w; j++)
                dst[r * w + j] = (float)src[r * w + (mirror ? w - 1 - j : j)] / 127.5f - 1.0f;
    }
}
