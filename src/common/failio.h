/*
 * failio.h - I/O-error injection (issue 21, item 2): the store's reads,
 * writes, fsyncs and renames fail on chosen files, or answer "disk full",
 * while spated runs, so that a test can watch spated refuse, then clear the
 * fault and watch it recover without a restart. The SQLite files go through
 * a VFS shim (store/faultvfs.h), the artifact files ask here before each
 * write, fsync and rename (store/artifacts.c).
 *
 * Built in only with the CMake option SPATE_FAILPOINTS, as failpoint.h;
 * without it the calls below are empty inlines and nothing is checked.
 *
 * Armed from the environment of spated (read once at start, then removed):
 *
 *   SPATE_FAIL_IO=PATH   a control file; spated stats it at most every
 *                        FAILIO_RECHECK_MS and reads it again when it
 *                        changed (inode, size or mtime: write a new file and
 *                        rename it over, so that no half-written one is
 *                        read). Absent or empty: no fault.
 *
 * Each line of the control file is one rule, "OP FILE [COUNT]" ('#' starts
 * a comment):
 *
 *   OP     read | write | sync | full (a write answers "disk full":
 *          SQLITE_FULL, ENOSPC) | rename
 *   FILE   db (the main database) | wal | journal | artifact | any
 *   COUNT  fail only the next COUNT times (counted from when the file was
 *          read); absent or 0: every time while the rule is there
 *
 * e.g. "sync wal" fails every fsync of the write-ahead log; "write wal 1"
 * the next write to it only. Each failure is counted (failio_fired) and
 * the first of each rule after a reload is written to stderr:
 * "failio: injected: sync wal".
 */
#ifndef SPATE_FAILIO_H
#define SPATE_FAILIO_H

#include <stddef.h>
#include <stdint.h>

/* At most this often is the control file looked at. */
#define FAILIO_RECHECK_MS 50
/* The control file is read up to this size; more is ignored (said once). */
#define FAILIO_FILE_MAX 4096
#define FAILIO_RULES_MAX 16

enum failio_op { FAILIO_READ, FAILIO_WRITE, FAILIO_SYNC, FAILIO_RENAME };
enum failio_file { FAILIO_DB, FAILIO_WAL, FAILIO_JOURNAL, FAILIO_ARTIFACT, FAILIO_OTHER };
/* What failio_check answers. */
enum failio_result { FAILIO_PASS = 0, FAILIO_EIO = 1, FAILIO_FULL = 2 };

#ifdef SPATE_FAILPOINTS

/* Reads SPATE_FAIL_IO (and unsets it). 1 when set, 0 when not. */
int failio_init_env(void);
/* Watches path (NULL: stops); for unit tests. */
void failio_watch(const char *path);
/* Nonzero when a control file is watched. */
int failio_enabled(void);
/* Whether op on file is to fail now: FAILIO_PASS, FAILIO_EIO or FAILIO_FULL
 * (only a write is answered "full"). Any thread. */
int failio_check(enum failio_op op, enum failio_file file);
/* Failures injected since start. */
uint64_t failio_fired(void);

#else

static inline int failio_init_env(void)
{
    return 0;
}
static inline int failio_check(enum failio_op op, enum failio_file file)
{
    (void)op;
    (void)file;
    return FAILIO_PASS;
}

#endif
#endif
