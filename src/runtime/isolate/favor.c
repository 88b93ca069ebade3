/*
 * favor.c - keeps an instance's first cgroup migration after a pause from
 * waiting on an RCU grace period: while spated runs it holds a named,
 * controller-less cgroup v1 hierarchy mounted with favordynmods (internal.h
 * has who owns what).
 *
 * An instance joins its cgroups by writing its pid into their cgroup.procs.
 * For that the kernel write-locks cgroup_threadgroup_rwsem, which is global;
 * when no migration happened for a while (its rcu_sync went idle) the writer
 * first waits an RCU grace period: 13 ms measured for the memory cgroup's
 * write, so that a cold start from idle took 13-25 ms where back to back it
 * took 1-5 ms. favordynmods, set on any hierarchy, acts on that one rwsem: it
 * keeps it in the writers' mode while mounted (Linux 6.0), and since Linux
 * 6.18 cgroup.procs writes take a lock of the moved process's own instead (a
 * switch the kernel never turns back, even once the hierarchy is gone). The
 * hierarchies spate uses cannot be remounted with it; a new named one can.
 * Nothing is ever created in it and no process is moved into it; its mount
 * point is under /run/spate, root's alone.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "runtime/isolate/internal.h"

/* Shared by every spated of the host: each mounts it at its own point. */
#define HIERARCHY "spate"
#define BASE "/run/spate"
#define PREFIX "favor."
/* What is lost where it cannot be held, for the log. */
#define LOST "an instance's first cgroup migration after a pause may wait an RCU grace period"

/* Where this process mounted it; "" when it did not. */
static char point[64];

/* Whether the mount at dir is a cgroup v1 hierarchy that favours dynamic
 * modifications: a hierarchy of the same name mounted before without the
 * option is reused without it (the kernel only warns). */
static int mounted_with_favor(const char *dir)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f) return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        /* "ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE SUPER" */
        char mnt[256];
        const char *sep = strstr(line, " - ");
        if (!sep || sscanf(line, "%*s %*s %*s %*s %255s", mnt) != 1 || strcmp(mnt, dir) != 0)
            continue;
        found = strncmp(sep, " - cgroup ", 10) == 0 && strstr(sep, "favordynmods") != NULL;
    }
    fclose(f);
    return found;
}

/* Unmounts and removes the points of spated processes that are gone:
 * killed ones do not clean up. */
static void sweep(void)
{
    DIR *d = opendir(BASE);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, PREFIX, strlen(PREFIX)) != 0) continue;
        char *end;
        long pid = strtol(e->d_name + strlen(PREFIX), &end, 10);
        if (*end || pid <= 0 || pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char dir[sizeof BASE + 256];
        snprintf(dir, sizeof dir, "%s/%s", BASE, e->d_name);
        umount2(dir, MNT_DETACH | UMOUNT_NOFOLLOW);
        rmdir(dir);
    }
    closedir(d);
}

int isolate__favor_init(void)
{
    /* Only root mounts, and root is all that could use it. */
    if (mkdir(BASE, 0700) != 0 && errno != EEXIST) {
        log_warn("cannot create %s: %s: " LOST, BASE, strerror(errno));
        return -1;
    }
    sweep();
    snprintf(point, sizeof point, "%s/%s%d", BASE, PREFIX, (int)getpid());
    if (mkdir(point, 0700) != 0 && errno != EEXIST) {
        log_warn("cannot create %s: %s: " LOST, point, strerror(errno));
        point[0] = '\0';
        return -1;
    }
    /* A point of this pid is a killed spated's that had it before. */
    umount2(point, MNT_DETACH | UMOUNT_NOFOLLOW);
    if (mount("none", point, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "none,name=" HIERARCHY ",favordynmods") != 0) {
        /* EINVAL before Linux 6.0 (no such option), EPERM without
         * CAP_SYS_ADMIN in the initial namespace. */
        log_warn("cannot mount a cgroup hierarchy with favordynmods at %s: %s: " LOST, point,
                 strerror(errno));
        rmdir(point);
        point[0] = '\0';
        return -1;
    }
    if (!mounted_with_favor(point)) {
        log_warn("the cgroup hierarchy name=%s was mounted before without favordynmods (it is "
                 "reused as it is): " LOST,
                 HIERARCHY);
        isolate__favor_cleanup();
        return -1;
    }
    /* spated exits through exit() on an error after this (its port taken,
     * the store refused), before isolate_cleanup: the mount stayed until
     * another spated started. Its children exec or _exit. */
    static int registered;
    if (!registered) registered = atexit(isolate__favor_cleanup) == 0;
    log_info("cgroup migrations favour dynamic modifications (favordynmods, held at %s)", point);
    return 0;
}

void isolate__favor_cleanup(void)
{
    /* At exit too (atexit): after isolate_cleanup it finds nothing to do. */
    if (!point[0]) return;
    if (umount2(point, UMOUNT_NOFOLLOW) != 0 && umount2(point, MNT_DETACH | UMOUNT_NOFOLLOW) != 0)
        log_warn("cannot unmount %s: %s", point, strerror(errno));
    rmdir(point);
    point[0] = '\0';
}
