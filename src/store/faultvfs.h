/*
 * faultvfs.h - a SQLite VFS that wraps the default one and fails the reads,
 * writes and fsyncs (or answers SQLITE_FULL) that common/failio.h's control
 * file names, on the main database, its write-ahead log or a rollback
 * journal (issue 21, item 2). Built in only with SPATE_FAILPOINTS; spated
 * registers it, as the default VFS of the process (so every connection of
 * the store uses it), only when SPATE_FAIL_IO is set. Without the option it
 * is an empty inline: SQLite's own VFS, nothing in between.
 */
#ifndef SPATE_FAULTVFS_H
#define SPATE_FAULTVFS_H

#ifdef SPATE_FAILPOINTS

/* Registers the shim as the default VFS ("spate-faults"). 0, or an SQLite
 * error code. Call before the store is opened. */
int faultvfs_register(void);

#else

static inline int faultvfs_register(void)
{
    return 0;
}

#endif
#endif
