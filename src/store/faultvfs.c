/* faultvfs.c - the failing VFS of faultvfs.h (built in with SPATE_FAILPOINTS
 * only). Each file keeps the default VFS's file after its own header and
 * forwards every method to it; xRead, xWrite and xSync ask common/failio.c
 * first. */
#ifdef SPATE_FAILPOINTS

#include "store/faultvfs.h"

#include <sqlite3.h>
#include <string.h>

#include "common/failio.h"

typedef struct fv_file {
    sqlite3_file base;
    enum failio_file kind;
    sqlite3_file *real; /* right after this header */
} fv_file;

static sqlite3_vfs *real_vfs;
static sqlite3_vfs fv;

#define REAL(f) (((fv_file *)(f))->real)

static int fv_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}

static int fv_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    if (failio_check(FAILIO_READ, ((fv_file *)f)->kind)) return SQLITE_IOERR_READ;
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int fv_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    int r = failio_check(FAILIO_WRITE, ((fv_file *)f)->kind);
    if (r == FAILIO_FULL) return SQLITE_FULL;
    if (r) return SQLITE_IOERR_WRITE;
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int fv_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int fv_sync(sqlite3_file *f, int flags)
{
    if (failio_check(FAILIO_SYNC, ((fv_file *)f)->kind)) return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int fv_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int fv_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int fv_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int fv_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int fv_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int fv_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int fv_device_chars(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int fv_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int fv_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void fv_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int fv_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int fv_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    /* No memory-mapped reads: each read goes through fv_read. */
    *pp = NULL;
    return SQLITE_OK;
}

static int fv_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return SQLITE_OK;
}

static const sqlite3_io_methods fv_methods = {
    .iVersion = 3,
    .xClose = fv_close,
    .xRead = fv_read,
    .xWrite = fv_write,
    .xTruncate = fv_truncate,
    .xSync = fv_sync,
    .xFileSize = fv_file_size,
    .xLock = fv_lock,
    .xUnlock = fv_unlock,
    .xCheckReservedLock = fv_check_reserved,
    .xFileControl = fv_file_control,
    .xSectorSize = fv_sector_size,
    .xDeviceCharacteristics = fv_device_chars,
    .xShmMap = fv_shm_map,
    .xShmLock = fv_shm_lock,
    .xShmBarrier = fv_shm_barrier,
    .xShmUnmap = fv_shm_unmap,
    .xFetch = fv_fetch,
    .xUnfetch = fv_unfetch,
};

static int fv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    fv_file *ff = (fv_file *)f;
    memset(ff, 0, sizeof *ff);
    ff->real = (sqlite3_file *)(ff + 1);
    ff->kind = flags & SQLITE_OPEN_MAIN_DB        ? FAILIO_DB
               : flags & SQLITE_OPEN_WAL          ? FAILIO_WAL
               : flags & SQLITE_OPEN_MAIN_JOURNAL ? FAILIO_JOURNAL
                                                  : FAILIO_OTHER;
    int rc = real_vfs->xOpen(real_vfs, name, ff->real, flags, out_flags);
    /* Closed through us only when the real file was opened (it has methods). */
    ff->base.pMethods = ff->real->pMethods ? &fv_methods : NULL;
    return rc;
}

static int fv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int fv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
    return real_vfs->xAccess(real_vfs, name, flags, out);
}

static int fv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}

static void *fv_dl_open(sqlite3_vfs *vfs, const char *name)
{
    return real_vfs->xDlOpen(real_vfs, name);
}

static void fv_dl_error(sqlite3_vfs *vfs, int n, char *msg)
{
    real_vfs->xDlError(real_vfs, n, msg);
}

static void (*fv_dl_sym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
    return real_vfs->xDlSym(real_vfs, h, sym);
}

static void fv_dl_close(sqlite3_vfs *vfs, void *h)
{
    real_vfs->xDlClose(real_vfs, h);
}

static int fv_randomness(sqlite3_vfs *vfs, int n, char *out)
{
    return real_vfs->xRandomness(real_vfs, n, out);
}

static int fv_sleep(sqlite3_vfs *vfs, int us)
{
    return real_vfs->xSleep(real_vfs, us);
}

static int fv_current_time(sqlite3_vfs *vfs, double *out)
{
    return real_vfs->xCurrentTime(real_vfs, out);
}

static int fv_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}

static int fv_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int faultvfs_register(void)
{
    if (real_vfs) return SQLITE_OK;
    int rc = sqlite3_initialize();
    if (rc != SQLITE_OK) return rc;
    sqlite3_vfs *def = sqlite3_vfs_find(NULL);
    if (!def) return SQLITE_ERROR;
    fv = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(fv_file) + def->szOsFile,
        .mxPathname = def->mxPathname,
        .zName = "spate-faults",
        .xOpen = fv_open,
        .xDelete = fv_delete,
        .xAccess = fv_access,
        .xFullPathname = fv_full_pathname,
        .xDlOpen = fv_dl_open,
        .xDlError = fv_dl_error,
        .xDlSym = fv_dl_sym,
        .xDlClose = fv_dl_close,
        .xRandomness = fv_randomness,
        .xSleep = fv_sleep,
        .xCurrentTime = fv_current_time,
        .xGetLastError = fv_get_last_error,
        .xCurrentTimeInt64 = fv_current_time_int64,
    };
    real_vfs = def;
    rc = sqlite3_vfs_register(&fv, 1);
    if (rc != SQLITE_OK) real_vfs = NULL;
    return rc;
}

#else
/* ISO C wants something in a translation unit. */
typedef int faultvfs_not_built;
#endif
