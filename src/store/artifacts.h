/*
 * artifacts.h - artifact files, content-addressed by SHA-256 under
 * DIR/artifacts/xx/<sha256>. Writing is crash-safe: a temporary file is
 * synced, renamed into place and the directory synced. These functions touch
 * only files, so they may run on a worker thread.
 */
#ifndef SPATE_ARTIFACTS_H
#define SPATE_ARTIFACTS_H

#include <stddef.h>

#include "common/hash.h"

/* Hashes data and stores it unless an artifact with that hash exists.
 * sha receives the hex digest. On error, err says what failed. */
int artifacts_put(const char *dir, const void *data, size_t len, char sha[HASH_HEX_LEN + 1],
                  char *err, size_t errcap);
/* The path of an artifact. */
void artifacts_path(const char *dir, const char *sha, char *out, size_t cap);
/* The directory an exec artifact is unpacked into: DIR/artifacts/xx/<sha>.d */
void artifacts_unpacked_path(const char *dir, const char *sha, char *out, size_t cap);
/* Unpacks an exec artifact (an executable, or a zip or tar archive) into its
 * directory unless it is there already; atomic (a temporary directory renamed
 * into place); need_bootstrap 0: see unpack_tree. ERR_INVAL when the artifact is refused: err says
 * why. */
int artifacts_unpack(const char *dir, const void *data, size_t len, const char *sha,
                     int need_bootstrap, char *err, size_t errcap);
/* Deletes an artifact file and its unpacked directory; missing is not an error. */
int artifacts_remove(const char *dir, const char *sha);

#endif
