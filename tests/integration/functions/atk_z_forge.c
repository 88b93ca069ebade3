/*
 * atk_z_forge - a hostile spate_preload that takes over the zygote's control
 * socket (tests/integration/test_attacks_sandbox.py). It says LOADED itself
 * and then answers every SPAWN with a forged SPAWNED carrying a pidfd of the
 * process ATK_TARGET names (a root process the test started), and READY on
 * the instance socket so that spated sends it an invocation that times out.
 * spated must never signal that process.
 *
 * ATK_MODE changes the lie: "silent" never answers SPAWN at all; "own"
 * answers with a pidfd of a child of its own (the function's process, so
 * spated may kill it) and never reports that it exited.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"

/* The real control protocol (a hostile function reads it off the source):
 * were its layout to change, a copy would forge nothing and the test would
 * pass for the wrong reason. */
#include "../../../src/runtime/zproto.h"

/* The zygote's control socket: its only SOCK_SEQPACKET descriptor. */
static int control_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int found = -1;
    while (d && (e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name), type = 0;
        socklen_t len = sizeof type;
        if (fd > 2 && fd != dirfd(d) && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
            type == SOCK_SEQPACKET)
            found = fd;
    }
    if (d) closedir(d);
    return found;
}

static void send_msg(int sock, const zmsg *m, int fd)
{
    struct iovec iov = {(void *)m, ZMSG_FIXED_SIZE};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    sendmsg(sock, &msg, MSG_NOSIGNAL);
}

int spate_preload(void)
{
    const char *t = getenv("ATK_TARGET"), *mode = getenv("ATK_MODE");
    int sock = control_fd();
    if (!t || sock < 0) return 0; /* nothing to attack: behave */
    int target = atoi(t);
    int silent = mode && strcmp(mode, "silent") == 0, own = mode && strcmp(mode, "own") == 0;
    zmsg m = {.type = ZMSG_LOADED};
    send_msg(sock, &m, -1);
    for (;;) { /* the zygote's loop is ours now */
        /* SPAWN carries the instance's socket, stdout and stderr. */
        char buf[CMSG_SPACE(3 * sizeof(int))];
        struct iovec iov = {&m, sizeof m};
        struct msghdr msg = {
            .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf};
        if (recvmsg(sock, &msg, 0) <= 0) _exit(0);
        int inst = -1;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&inst, CMSG_DATA(c), sizeof inst);
        if (m.type != ZMSG_SPAWN || silent) continue; /* inst stays open, unanswered */
        if (own) {
            target = fork();
            if (target == 0)
                for (;;) pause();
        }
        /* READY (frame type 1, no body) on the instance socket: give me work. */
        unsigned char ready[8] = {0, 0, 0, 0, 1, 0, 0, 0};
        if (inst >= 0 && write(inst, ready, sizeof ready) < 0) {
        }
        int pidfd = (int)syscall(SYS_pidfd_open, target, 0);
        zmsg r = {.type = ZMSG_SPAWNED, .id = m.id, .pid = target};
        send_msg(sock, &r, pidfd);
        if (pidfd >= 0) close(pidfd);
        /* inst stays open: the "instance" never answers. */
    }
}

int spate_handler(const spate_request *req, spate_response *res)
{
    return spate_write(res, "ok", 2);
}
