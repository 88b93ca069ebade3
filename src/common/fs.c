#include "common/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "common/limits.h"

/* Empties the directory open on fd (which it closes); depth bounds the
 * recursion a hostile tree could ask for. */
static int empty_dir(int fd, int depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        /* Try it as a file (or link) first: unlinkat never follows a link. */
        if (unlinkat(dirfd(d), e->d_name, 0) == 0) continue;
        if (errno != EISDIR && errno != EPERM) {
            if (errno != ENOENT) rc = -1;
            continue;
        }
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 || depth <= 0) {
            if (sub >= 0) close(sub);
            rc = -1;
            continue;
        }
        if (empty_dir(sub, depth - 1) != 0) rc = -1;
        if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) != 0 && errno != ENOENT) rc = -1;
    }
    closedir(d);
    return rc;
}

int fs_remove_tree(int dirfd, const char *name, int keep_top)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        /* Not a directory (or a link): removed as what it is. */
        return keep_top || (unlinkat(dirfd, name, 0) != 0 && errno != ENOENT) ? -1 : 0;
    }
    int rc = empty_dir(fd, SPATE_TREE_DEPTH_MAX);
    if (!keep_top && unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) rc = -1;
    return rc;
}
