#include "store/artifacts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fs.h"
#include "store/unpack.h"

void artifacts_path(const char *dir, const char *sha, char *out, size_t cap)
{
    snprintf(out, cap, "%s/artifacts/%.2s/%s", dir, sha, sha);
}

static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int artifacts_put(const char *dir, const void *data, size_t len, char sha[HASH_HEX_LEN + 1],
                  char *err, size_t errcap)
{
    if (hash_sha256_hex(data, len, sha)) {
        snprintf(err, errcap, "cannot hash artifact");
        return ERR_IO;
    }
    char path[4096], sub[4096], tmp[4096];
    artifacts_path(dir, sha, path, sizeof path);
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size == len) return 0; /* already stored */

    snprintf(sub, sizeof sub, "%s/artifacts/%.2s", dir, sha);
    if (mkdir(sub, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errcap, "cannot create '%s': %s", sub, strerror(errno));
        return ERR_IO;
    }
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.%ld", dir, sha, (long)gettid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errcap, "cannot create '%s': %s", tmp, strerror(errno));
        return ERR_IO;
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(err, errcap, "cannot write '%s': %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return ERR_IO;
        }
        p += n;
        left -= (size_t)n;
    }
    int synced = fsync(fd);
    if (close(fd) < 0 || synced < 0) {
        snprintf(err, errcap, "cannot sync '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        return ERR_IO;
    }
    if (rename(tmp, path) < 0) {
        snprintf(err, errcap, "cannot rename '%s': %s", tmp, strerror(errno));
        unlink(tmp);
        return ERR_IO;
    }
    if (sync_dir(sub) < 0) {
        snprintf(err, errcap, "cannot sync '%s': %s", sub, strerror(errno));
        return ERR_IO;
    }
    return 0;
}

void artifacts_unpacked_path(const char *dir, const char *sha, char *out, size_t cap)
{
    snprintf(out, cap, "%s/exec/%s", dir, sha);
}

static void remove_tree(const char *path)
{
    fs_remove_tree(AT_FDCWD, path, 0);
}

int artifacts_unpack(const char *dir, const void *data, size_t len, const char *sha,
                     int need_bootstrap, char *err, size_t errcap)
{
    char final[4096], tmp[4096];
    artifacts_unpacked_path(dir, sha, final, sizeof final);
    struct stat st;
    if (stat(final, &st) == 0 && S_ISDIR(st.st_mode)) return 0; /* unpacked before */
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.d.%ld", dir, sha, (long)gettid());
    remove_tree(tmp);
    int rc = unpack_tree(data, len, tmp, need_bootstrap, err, errcap);
    if (rc == 0 && rename(tmp, final) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
        snprintf(err, errcap, "cannot rename '%s': %s", tmp, strerror(errno));
        rc = ERR_IO;
    }
    remove_tree(tmp); /* after a failure, or when another deploy won the rename */
    return rc;
}

int artifacts_remove(const char *dir, const char *sha)
{
    char path[4096];
    artifacts_path(dir, sha, path, sizeof path);
    if (unlink(path) < 0 && errno != ENOENT) return ERR_IO;
    artifacts_unpacked_path(dir, sha, path, sizeof path);
    remove_tree(path);
    return 0;
}
