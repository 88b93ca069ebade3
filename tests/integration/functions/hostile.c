/*
 * hostile - a test function that does what a function must not be able to
 * get away with. The attack is chosen at deploy time with ATTACK=...; the
 * ones that try a forbidden call answer with what the kernel said
 * (spate_fail), so the test sees that the call was refused and why.
 *
 *   preload_crash  SIGSEGV in spate_preload (the deploy must fail)
 *   init_sleep     spate_init never returns
 *   fork_bomb      every process forks forever
 *   memory_hog     touches memory until stopped
 *   cpu_spin       spins forever
 *   stdout_flood   writes to stdout forever
 *   read_file      reads PATH (the store, an artifact, another's TMPDIR)
 *   ptrace         attaches to PID (spated)
 *   mount          mounts a tmpfs on /mnt
 *   write_etc      creates /etc/spate-was-here
 *   socket_inet    opens an internet socket (refused with network=false)
 *   kill_all       kill(-1, SIGKILL): every process it may signal
 *   tmpdir         writes into $TMPDIR and answers its path
 *   whoami         answers "uid gid no_new_privs seccomp"
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spate.h"

static const char *attack = "";

static int is(const char *name)
{
    return strcmp(attack, name) == 0;
}

int spate_preload(void)
{
    const char *a = getenv("ATTACK");
    attack = a ? a : "";
    if (is("preload_crash")) raise(SIGSEGV);
    return 0;
}

int spate_init(void)
{
    if (is("init_sleep"))
        for (;;) pause();
    return 0;
}

static int refused(spate_response *res, const char *what)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s: %s", what, strerror(errno));
    return spate_fail(res, msg);
}

static int answer(spate_response *res, const char *text)
{
    return spate_write(res, text, strlen(text));
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char buf[512];
    if (is("fork_bomb")) {
        for (;;) fork();
    } else if (is("memory_hog")) {
        for (;;) {
            char *p = malloc(1 << 20);
            if (!p) return refused(res, "malloc");
            memset(p, 1, 1 << 20);
        }
    } else if (is("cpu_spin")) {
        for (volatile unsigned long i = 0;; i++) {
        }
    } else if (is("stdout_flood")) {
        for (;;) printf("flood flood flood flood flood flood flood flood flood flood\n");
    } else if (is("read_file")) {
        int fd = open(getenv("TARGET"), O_RDONLY);
        if (fd < 0) return refused(res, "open");
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        snprintf(buf, sizeof buf, "read %zd bytes", n);
        return answer(res, buf);
    } else if (is("ptrace")) {
        pid_t pid = (pid_t)atoi(getenv("TARGET"));
        if (ptrace(PTRACE_ATTACH, pid, NULL, NULL) != 0) return refused(res, "ptrace");
        return answer(res, "attached");
    } else if (is("mount")) {
        if (mount("none", "/mnt", "tmpfs", 0, NULL) != 0) return refused(res, "mount");
        return answer(res, "mounted");
    } else if (is("write_etc")) {
        int fd = open("/etc/spate-was-here", O_WRONLY | O_CREAT, 0644);
        if (fd < 0) return refused(res, "open");
        close(fd);
        return answer(res, "written");
    } else if (is("socket_inet")) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return refused(res, "socket");
        close(fd);
        return answer(res, "socket");
    } else if (is("kill_all")) {
        if (kill(-1, SIGKILL) != 0) return refused(res, "kill");
        return answer(res, "sent");
    } else if (is("tmpdir")) {
        const char *dir = getenv("TMPDIR");
        snprintf(buf, sizeof buf, "%s/x", dir ? dir : "/nonexistent");
        int fd = open(buf, O_WRONLY | O_CREAT, 0600);
        if (fd < 0) return refused(res, "open");
        close(fd);
        return answer(res, dir);
    } else if (is("whoami")) {
        snprintf(buf, sizeof buf, "%d %d %d %d", (int)getuid(), (int)getgid(),
                 prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), prctl(PR_GET_SECCOMP, 0, 0, 0, 0));
        return answer(res, buf);
    }
    return answer(res, "harmless");
}
