/*
 * internal.h - what the files of instance isolation share; nothing outside
 * src/runtime/isolate/ includes it (the public face is runtime/isolate.h).
 *
 * State, each piece owned by one file (all on the loop thread, or at
 * start-up and exit):
 *
 *   the config      what isolate_get returns (the functions' user, what the
 *                   host allows): static in init.c, written there only
 *                   (isolate_init, isolate_set_writable); the other files
 *                   read it through isolate_get.
 *   isolate__host   the loop and spate's temporary and cgroup roots for this
 *                   process: defined in init.c and written by isolate_init
 *                   only; read by every file here.
 *   stale cgroups   cgroups still busy when they were to be removed, and
 *                   the timer retrying them: static in cgroups.c.
 *   spare slots     slots of instances that ended cleanly, kept for the
 *                   next instance, and the counter naming new ones: static
 *                   in slots.c; isolate_cleanup frees them through
 *                   isolate__free_spare_slots.
 *   function uids   function name -> uid, and the uids taken: static in
 *                   users.c.
 *   live versions   the zygotes' cgroups, for isolate_version_kill_all:
 *                   static in version.c.
 *   favordynmods    the mount point of the hierarchy that holds it: static
 *                   in favor.c.
 *
 *   init.c      start-up and exit: probing mount namespaces, the temporary
 *               and cgroup roots (sweeping those of spated processes that
 *               are gone), --writable, whether the functions' user reaches
 *               a path
 *   cgroups.c   the cgroup and control files: reading and writing them,
 *               killing what a cgroup holds, removing it (or retrying later)
 *   slots.c     an instance's slot: its cgroups and their limits (memory,
 *               pids, its own or its function's cpu group), its temporary
 *               directory, acquire and release, the spare ones
 *   favor.c     the favordynmods hierarchy that keeps cgroup migrations
 *               off RCU grace periods, mounted at start, unmounted at exit
 *   users.c     the uid each function runs as
 *   version.c   the cgroups of a version's zygote
 *   env.c       spate-runner's environment, and the function's in a memfd
 *
 * Names: isolate_* is the public API (runtime/isolate.h), isolate__* is
 * shared between these files only, plain static names stay in their file.
 */
#ifndef SPATE_RUNTIME_ISOLATE_INTERNAL_H
#define SPATE_RUNTIME_ISOLATE_INTERNAL_H

#include <stddef.h>
#include <uv.h>

#include "runtime/isolate.h"

/* The cgroup v1 controllers spate uses, in the order of isolate__host.cg_root. */
enum { CG_MEMORY, CG_PIDS, CG_CPU, CG_COUNT };

typedef struct isolate_host {
    uv_loop_t *loop; /* NULL until isolate_init */
    /* /tmp/spate/<pid>, home of the instances' temporary directories (none with mount
     * namespaces); "" when /tmp/spate cannot be used. */
    char tmp_root[128];
    char cg_root[CG_COUNT][128]; /* "" when that controller is not available */
} isolate_host;

extern isolate_host isolate__host;

/* --- cgroups.c ------------------------------------------------------------------- */

/* Writes value to dir/name; 0 when all of it was written. */
int isolate__write_file(const char *dir, const char *name, const char *value);
/* Reads dir/name into out (NUL-terminated, at most cap - 1 bytes); 0 on success. */
int isolate__read_file(const char *dir, const char *name, char *out, size_t cap);
/* Kills every process in a cgroup; 1 when it was empty already. */
int isolate__kill_all(const char *dir);
/* Kills what is left in a cgroup and removes it; 0 when it is still busy.
 * Waits a little for that only when wait is set: never on the event loop. */
int isolate__remove_cgroup(const char *dir, int wait);
/* Retries removing dir from the loop until it is gone (copied). */
void isolate__remember_stale(const char *dir);
/* Tries the stale cgroups again, waiting a little for each when wait is set. */
void isolate__retry_stale(int wait);
/* The stale cgroups' timer, on isolate__host.loop; it never keeps the loop
 * running. Closed by isolate__stale_close. */
void isolate__stale_init(void);
void isolate__stale_close(void);

/* --- slots.c --------------------------------------------------------------------- */

/* Frees the spare slots, waiting for their cgroups to empty (at exit). */
void isolate__free_spare_slots(void);

/* --- favor.c --------------------------------------------------------------------- */

/* Mounts the favordynmods hierarchy at /run/spate/favor.<pid> (after
 * unmounting those of spated processes that are gone); 0 when it holds.
 * Where the host refuses, one log line says what is lost. */
int isolate__favor_init(void);
/* Unmounts it (at exit, by isolate_cleanup or atexit); nothing when it was not
 * mounted. */
void isolate__favor_cleanup(void);

/* --- users.c --------------------------------------------------------------------- */

void isolate__users_init(void);
/* Forgets every function's uid and removes their cpu groups (at exit). */
void isolate__users_free(void);

#endif
