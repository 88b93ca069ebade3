#include "store/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"

/* Splits a relative path into its components, refusing what could leave
 * the root: absolute paths, "..", empty names. "." components are dropped.
 * Returns the number of components or -1. */
static int split_path(char *path, char **parts, int max)
{
    if (path[0] == '/') return -1;
    int n = 0;
    for (char *save = NULL, *c = strtok_r(path, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0) continue;
        if (strcmp(c, "..") == 0 || n == max) return -1;
        parts[n++] = c;
    }
    return n;
}

/* Whether a symlink at link_depth (the number of directories between the
 * root and the link) may point at target; NULL when it may, else why not.
 *
 * A lexical check alone is unsound: "y -> ." then "u -> y/.." resolves
 * y/.. physically, to the root's parent. The rule here is sound and simple:
 * a target is relative, and its ".." components all come first (before any
 * name; "." anywhere is harmless). Those leading ".." climb from the link's
 * own directory, which is always a real directory (every directory of an
 * entry's path is created, and opened, without following a link), so they
 * stay inside while there are at most link_depth of them. What follows them
 * is names only, which go down: through real directories, or through links
 * that obey the same rule, so by induction nothing resolves outside the
 * root, whatever entries come later. "../lib/x" from bin/ works; a ".."
 * after a name, which might be a link, is refused. */
static const char *link_target_refusal(int link_depth, const char *target)
{
    if (!*target) return "its target is empty";
    if (target[0] == '/') return "its target is an absolute path";
    int ups = 0, names = 0;
    for (const char *c = target; *c;) {
        size_t len = strcspn(c, "/");
        if (len == 2 && c[0] == '.' && c[1] == '.') {
            if (names)
                return "'..' may only begin a link's target (after a name it could pass "
                       "through another link)";
            if (++ups > link_depth) return "its target climbs above the root";
        } else if (len && !(len == 1 && c[0] == '.')) {
            names++;
        }
        c += len;
        while (*c == '/') c++;
    }
    return NULL;
}

/* Opens (creating as needed) the directories of parts[0..n) under root,
 * never following a symlink. Returns a directory fd or -1. */
static int open_dirs(int root, char **parts, int n)
{
    int fd = dup(root);
    for (int i = 0; fd >= 0 && i < n; i++) {
        if (mkdirat(fd, parts[i], 0755) < 0 && errno != EEXIST) {
            close(fd);
            return -1;
        }
        int next = openat(fd, parts[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        fd = next;
        if (fd >= 0) fchmod(fd, 0755);
    }
    return fd;
}

/* Why open_dirs failed, for the message: writing through a link unpacked
 * earlier ("a -> sub" then "a/x") is refused rather than followed. */
static const char *dir_refusal(int e)
{
    if (e == ELOOP || e == ENOTDIR)
        return "a directory on its path is a symlink or a file (entries are never written "
               "through a link)";
    return strerror(e);
}

static int fail(char *err, size_t cap, int code, const char *fmt, const char *a, const char *b)
{
    snprintf(err, cap, fmt, a, b);
    return code;
}

static int write_file(struct archive *ar, int dirfd, const char *name, mode_t mode, uint64_t *total,
                      const char *entry, char *err, size_t cap)
{
    int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    (mode & 0755) | 0600);
    if (fd < 0)
        return fail(err, cap, ERR_INVAL, "archive entry '%s' cannot be created: %s", entry,
                    strerror(errno));
    /* Readable by the user functions run as, whatever spated's umask. */
    fchmod(fd, (mode & 0755) | 0644);
    const void *buf;
    size_t len;
    la_int64_t off;
    int rc = 0;
    for (;;) {
        int r = archive_read_data_block(ar, &buf, &len, &off);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) {
            rc = fail(err, cap, ERR_INVAL, "archive entry '%s' is corrupt: %s", entry,
                      archive_error_string(ar));
            break;
        }
        *total += len;
        if (*total > SPATE_ARCHIVE_BYTES_MAX) {
            char limit[32];
            snprintf(limit, sizeof limit, "%u", SPATE_ARCHIVE_BYTES_MAX);
            rc = fail(err, cap, ERR_INVAL,
                      "archive unpacks to more than %s bytes (at entry '%s'); refused", limit,
                      entry);
            break;
        }
        if (pwrite(fd, buf, len, off) != (ssize_t)len) {
            rc = fail(err, cap, ERR_IO, "cannot write '%s': %s", entry, strerror(errno));
            break;
        }
    }
    close(fd);
    return rc;
}

static int is_executable(const char *data, size_t len)
{
    return (len >= 4 && memcmp(data,
                               "\x7f"
                               "ELF",
                               4) == 0) ||
           (len >= 2 && memcmp(data, "#!", 2) == 0);
}

/* An executable on its own: it becomes bootstrap. */
static int unpack_single(const char *data, size_t len, int root, char *err, size_t cap)
{
    int fd = openat(root, "bootstrap", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    if (fd < 0) return fail(err, cap, ERR_IO, "cannot create bootstrap: %s%s", strerror(errno), "");
    fchmod(fd, 0755);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, data + done, len - done);
        if (w <= 0) {
            close(fd);
            return fail(err, cap, ERR_IO, "cannot write bootstrap: %s%s", strerror(errno), "");
        }
        done += (size_t)w;
    }
    fsync(fd);
    close(fd);
    return 0;
}

int unpack_artifact(const char *data, size_t len, const char *dest, char *err, size_t errcap)
{
    return unpack_tree(data, len, dest, 1, err, errcap);
}

int unpack_tree(const char *data, size_t len, const char *dest, int need_bootstrap, char *err,
                size_t errcap)
{
    err[0] = '\0';
    if (mkdir(dest, 0755) < 0 && errno != EEXIST)
        return fail(err, errcap, ERR_IO, "cannot create '%s': %s", dest, strerror(errno));
    int root = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) return fail(err, errcap, ERR_IO, "cannot open '%s': %s", dest, strerror(errno));
    fchmod(root, 0755);
    if (need_bootstrap && is_executable(data, len)) {
        int rc = unpack_single(data, len, root, err, errcap);
        close(root);
        return rc;
    }

    struct archive *ar = archive_read_new();
    archive_read_support_format_zip(ar);
    archive_read_support_format_tar(ar);
    archive_read_support_format_gnutar(ar);
    archive_read_support_filter_gzip(ar);
    archive_read_support_filter_none(ar);
    int rc = 0;
    if (archive_read_open_memory(ar, data, len) != ARCHIVE_OK) {
        rc = fail(err, errcap, ERR_INVAL,
                  "the artifact is neither an executable (ELF or #! script) nor a zip or tar "
                  "archive: %s%s",
                  archive_error_string(ar) ? archive_error_string(ar) : "unrecognised", "");
        goto done;
    }
    uint64_t total = 0;
    unsigned entries = 0;
    struct archive_entry *e;
    int r;
    while (rc == 0 && (r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        if (!name) name = "";
        if (++entries > SPATE_ARCHIVE_ENTRIES_MAX) {
            char limit[32];
            snprintf(limit, sizeof limit, "%u", SPATE_ARCHIVE_ENTRIES_MAX);
            rc = fail(err, errcap, ERR_INVAL, "archive has more than %s entries (at '%s'); refused",
                      limit, name);
            break;
        }
        char path[SPATE_ARCHIVE_NAME_MAX];
        char *parts[SPATE_ARCHIVE_DEPTH_MAX];
        if (strlen(name) >= sizeof path) {
            rc = fail(err, errcap, ERR_INVAL, "archive entry name is too long: '%.200s'%s", name,
                      "");
            break;
        }
        strcpy(path, name);
        int n = split_path(path, parts, SPATE_ARCHIVE_DEPTH_MAX);
        if (n < 0) {
            rc = fail(err, errcap, ERR_INVAL, "archive entry '%s' escapes the root%s", name, "");
            break;
        }
        mode_t type = archive_entry_filetype(e);
        if (n == 0) {
            if (type == AE_IFDIR) continue; /* "./" */
            rc = fail(err, errcap, ERR_INVAL, "archive entry '%s' has no name%s", name, "");
            break;
        }
        if (archive_entry_hardlink(e)) {
            rc = fail(err, errcap, ERR_INVAL, "archive entry '%s' is a hard link; refused%s", name,
                      "");
            break;
        }
        if (type == AE_IFDIR) {
            int fd = open_dirs(root, parts, n);
            if (fd < 0)
                rc = fail(err, errcap, ERR_INVAL, "archive entry '%s' cannot be created: %s", name,
                          dir_refusal(errno));
            else
                close(fd);
            continue;
        }
        if (type != AE_IFREG && type != AE_IFLNK) {
            rc = fail(err, errcap, ERR_INVAL,
                      "archive entry '%s' is a device, fifo or socket; refused%s", name, "");
            break;
        }
        int dirfd = open_dirs(root, parts, n - 1);
        if (dirfd < 0) {
            rc = fail(err, errcap, ERR_INVAL, "archive entry '%s' cannot be created: %s", name,
                      dir_refusal(errno));
            break;
        }
        if (type == AE_IFLNK) {
            const char *target = archive_entry_symlink(e);
            const char *why = target ? link_target_refusal(n - 1, target) : "it has no target";
            if (why) {
                snprintf(err, errcap,
                         "archive entry '%.300s' links outside the root (to '%.300s'): %s", name,
                         target ? target : "", why);
                rc = ERR_INVAL;
            } else if (symlinkat(target, dirfd, parts[n - 1]) < 0) {
                rc = fail(err, errcap, ERR_INVAL, "archive entry '%s' cannot be created: %s", name,
                          strerror(errno));
            }
        } else {
            rc = write_file(ar, dirfd, parts[n - 1], archive_entry_perm(e), &total, name, err,
                            errcap);
        }
        close(dirfd);
    }
    if (rc == 0 && r != ARCHIVE_EOF)
        rc = fail(err, errcap, ERR_INVAL, "the archive is corrupt: %s%s",
                  archive_error_string(ar) ? archive_error_string(ar) : "read error", "");
    if (rc == 0 && need_bootstrap) {
        struct stat st;
        if (fstatat(root, "bootstrap", &st, 0) != 0 || !S_ISREG(st.st_mode) || !(st.st_mode & 0111))
            rc = fail(err, errcap, ERR_INVAL,
                      "the archive has no executable 'bootstrap' at its root%s%s", "", "");
    }
done:
    archive_read_free(ar);
    close(root);
    return rc;
}
