/*
 * unpack.h - turns an exec artifact into a directory: a zip or tar(.gz)
 * archive is unpacked with libarchive; a lone executable (ELF or #! script)
 * becomes "bootstrap". Archives are untrusted: an entry that escapes the
 * root ("..", an absolute path, a symlink whose target is absolute, climbs
 * above the root, or has a ".." after a name), an entry whose path passes
 * through a symlink, a hard link, a
 * device, fifo or socket, more than SPATE_ARCHIVE_ENTRIES_MAX entries or
 * SPATE_ARCHIVE_BYTES_MAX unpacked bytes refuse the whole artifact, naming
 * the entry. Extraction never follows a symlink. The root must end up with an
 * executable regular file "bootstrap".
 */
#ifndef SPATE_UNPACK_H
#define SPATE_UNPACK_H

#include <stddef.h>

/* Unpacks into dest (created; should be empty). 0, ERR_INVAL (the artifact
 * is refused: err says why) or ERR_IO. May run on a worker thread. */
int unpack_artifact(const char *data, size_t len, const char *dest, char *err, size_t errcap);
/* The same, but with need_bootstrap 0 an archive needs no bootstrap (the
 * code of a managed runtime, python3 or nodejs, whose bootstrap spate ships)
 * and only an archive is taken. */
int unpack_tree(const char *data, size_t len, const char *dest, int need_bootstrap, char *err,
                size_t errcap);

#endif
