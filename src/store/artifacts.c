#include "store/artifacts.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/failio.h"
#include "common/fs.h"
#include "common/storehealth.h"
#include "store/unpack.h"

/* With SPATE_FAILPOINTS, an injected failure of op (common/failio.h): -1
 * with errno EIO, or ENOSPC for a write answered "full". Else 0: nothing is
 * checked. */
static int injected(enum failio_op op)
{
    int r = failio_check(op, FAILIO_ARTIFACT);
    if (!r) return 0;
    errno = r == FAILIO_FULL ? ENOSPC : EIO;
    return -1;
}

/* A failure of the artifact files: counted and said (store/health.h); the
 * error is ERR_NOSPACE when the disk is full. */
static int failed(const char *err, int e)
{
    store_health_failed(STORE_OP_ARTIFACT, err);
    return e == ENOSPC || e == EDQUOT ? ERR_NOSPACE : ERR_IO;
}

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
        int e = errno;
        snprintf(err, errcap, "cannot create '%s': %s", sub, strerror(e));
        return failed(err, e);
    }
    snprintf(tmp, sizeof tmp, "%s/tmp/%s.%ld", dir, sha, (long)gettid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errcap, "cannot create '%s': %s", tmp, strerror(e));
        return failed(err, e);
    }
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = injected(FAILIO_WRITE) ? -1 : write(fd, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            snprintf(err, errcap, "cannot write '%s': %s", tmp, strerror(e));
            close(fd);
            unlink(tmp);
            return failed(err, e);
        }
        p += n;
        left -= (size_t)n;
    }
    int synced = injected(FAILIO_SYNC) ? -1 : fsync(fd);
    int e = errno;
    if (close(fd) < 0 || synced < 0) {
        if (synced == 0) e = errno;
        snprintf(err, errcap, "cannot sync '%s': %s", tmp, strerror(e));
        unlink(tmp);
        return failed(err, e);
    }
    if (injected(FAILIO_RENAME) || rename(tmp, path) < 0) {
        e = errno;
        snprintf(err, errcap, "cannot rename '%s': %s", tmp, strerror(e));
        unlink(tmp);
        return failed(err, e);
    }
    if (injected(FAILIO_SYNC) || sync_dir(sub) < 0) {
        /* Its name may not survive a crash though a version would point to
         * it: taken away, so that the next deploy writes it again rather
         * than trust it (it is there, the right size, above). */
        e = errno;
        snprintf(err, errcap, "cannot sync '%s': %s", sub, strerror(e));
        unlink(path);
        return failed(err, e);
    }
    store_health_ok(STORE_OP_ARTIFACT);
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
