/* atomic.c: crash-safe writes through a temporary file and rename(2).
 * The order (flush, fsync the file, close, rename, fsync the directory) is what makes the new
 * content durable before it becomes visible under the final name; see rename(2) and the ext4
 * "data=ordered" discussions. Not a lock and not a transaction over several files. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

FILE *df_atomic_open(const char *path, char *tmp_path, size_t tmp_cap) {
    int n = snprintf(tmp_path, tmp_cap, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= tmp_cap) {
        if (tmp_cap) tmp_path[0] = 0;
        df_fail(DF_ERR_IO, "cannot write %s: path too long", path);
        return NULL;
    }
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        df_fail(DF_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        return NULL;
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp_path);
        df_fail(DF_ERR_IO, "cannot write %s: %s", path, strerror(e));
        return NULL;
    }
    return f;
}

void df_atomic_abort(FILE *f, const char *tmp_path) {
    if (f) fclose(f);
    if (tmp_path && tmp_path[0]) unlink(tmp_path);
}

/* fsync of the directory that holds `path`, so that the rename itself survives a crash.
 * Filesystems that cannot sync directories answer EINVAL; that is not an error of ours. */
static df_status sync_parent_dir(const char *path) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t len = (size_t)(slash - path);
        if (len >= sizeof dir) return DF_OK; /* cannot name it; the rename has happened anyway */
        memcpy(dir, path, len);
        dir[len] = 0;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return DF_OK; /* e.g. a directory without read permission: nothing to sync with */
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL && e != EROFS && e != EBADF)
        return df_fail(DF_ERR_IO, "wrote %s but could not sync its directory: %s", path, strerror(e));
    return DF_OK;
}

df_status df_atomic_commit(FILE *f, const char *tmp_path, const char *path) {
    ASSERT(f && tmp_path && path);
    /* The stream's error flag carries no errno of its own; errno is usually still the one
     * of the failed write, so it is reported as the likely cause. */
    int saved_errno = errno;
    if (ferror(f)) {
        fclose(f);
        unlink(tmp_path);
        return df_fail(DF_ERR_IO, "cannot write %s: a write failed (%s)", path,
                       saved_errno ? strerror(saved_errno) : "unknown reason");
    }
    if (fflush(f) != 0) {
        int e = errno;
        fclose(f);
        unlink(tmp_path);
        return df_fail(DF_ERR_IO, "cannot write %s: %s", path, strerror(e));
    }
    if (fsync(fileno(f)) != 0 && errno != EINVAL && errno != EROFS) {
        int e = errno;
        fclose(f);
        unlink(tmp_path);
        return df_fail(DF_ERR_IO, "cannot write %s: fsync failed: %s", path, strerror(e));
    }
    if (fclose(f) != 0) {
        int e = errno;
        unlink(tmp_path);
        return df_fail(DF_ERR_IO, "cannot write %s: close failed: %s", path, strerror(e));
    }
    if (rename(tmp_path, path) != 0) {
        int e = errno;
        unlink(tmp_path);
        return df_fail(DF_ERR_IO, "cannot write %s: rename from %s failed: %s", path, tmp_path, strerror(e));
    }
    return sync_parent_dir(path);
}
