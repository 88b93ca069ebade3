#include "runtime/zproto.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int zmsg_send(int sock, const zmsg *m, const int fds_in[ZMSG_FDS_MAX])
{
    size_t len = ZMSG_FIXED_SIZE;
    if (m->type == ZMSG_LOAD_FAILED || m->type == ZMSG_SPAWN)
        len += strnlen(m->text, ZMSG_TEXT_MAX - 1) + 1;
    struct iovec iov = {.iov_base = (void *)m, .iov_len = len};
    union {
        char buf[CMSG_SPACE(ZMSG_FDS_MAX * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    int fds[ZMSG_FDS_MAX], nfds = 0;
    for (int i = 0; fds_in && i < ZMSG_FDS_MAX; i++)
        if (fds_in[i] >= 0) fds[nfds++] = fds_in[i];
    if (nfds > 0) {
        memset(&ctl, 0, sizeof ctl);
        msg.msg_control = ctl.buf;
        msg.msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int));
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, (size_t)nfds * sizeof(int));
    }
    ssize_t n;
    do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    return (size_t)n == len ? 0 : -EPROTO;
}

static void close_fds(int fds[ZMSG_FDS_MAX])
{
    for (int i = 0; i < ZMSG_FDS_MAX; i++) {
        if (fds[i] >= 0) close(fds[i]);
        fds[i] = -1;
    }
}

int zmsg_recv(int sock, zmsg *m, int fds[ZMSG_FDS_MAX])
{
    for (int i = 0; i < ZMSG_FDS_MAX; i++) fds[i] = -1;
    struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
    union {
        char buf[CMSG_SPACE(ZMSG_FDS_MAX * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    if (n == 0) return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            if (i < ZMSG_FDS_MAX && fds[i] < 0)
                fds[i] = fd;
            else
                close(fd);
        }
    }
    if ((size_t)n < ZMSG_FIXED_SIZE || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        close_fds(fds);
        return -EPROTO;
    }
    if ((size_t)n > ZMSG_FIXED_SIZE)
        m->text[n - ZMSG_FIXED_SIZE - 1] = '\0';
    else
        m->text[0] = '\0';
    return 1;
}
