#include "http/peer.h"

#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/limits.h"
#include "common/log.h"

/* One netlink socket for the life of the process: opening one per
 * connection would double the cost of a lookup. */
static int diag_fd = -1;
static uint32_t diag_seq;
static int diag_failed; /* said once */

static int diag_socket(void)
{
    if (diag_fd >= 0) return diag_fd;
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) {
        if (!diag_failed++)
            log_warn("cannot open a sock_diag socket: %s; local peers count as untrusted",
                     strerror(errno));
        return -1;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = SPATE_PEER_DIAG_TIMEOUT_US};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    diag_fd = fd;
    return fd;
}

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a)) return 1;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return 0;
}

/* Copies a socket address into the diag id's address and port (network
 * order); an IPv4-mapped IPv6 address becomes IPv4, as the peer's socket is. */
static int to_diag(const struct sockaddr_storage *ss, __be16 *port, __be32 addr[4], int *family)
{
    memset(addr, 0, 4 * sizeof addr[0]);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        *port = a->sin_port;
        addr[0] = a->sin_addr.s_addr;
        *family = AF_INET;
        return 0;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        *port = a->sin6_port;
        if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
            memcpy(&addr[0], &a->sin6_addr.s6_addr[12], 4);
            *family = AF_INET;
        } else {
            memcpy(addr, &a->sin6_addr, 16);
            *family = AF_INET6;
        }
        return 0;
    }
    return -1;
}

/* Asks the kernel for the socket whose local end is peer and remote end is
 * self: the peer's own socket. 0 with uid and inode; -ENOENT when there is
 * no such socket here (a remote peer); another negative errno on failure. */
static int diag_lookup(const struct sockaddr_storage *peer, const struct sockaddr_storage *self,
                       uid_t *uid, uint64_t *inode)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req;
    memset(&req, 0, sizeof req);
    int fam_peer, fam_self;
    if (to_diag(peer, &req.r.id.idiag_sport, req.r.id.idiag_src, &fam_peer) != 0 ||
        to_diag(self, &req.r.id.idiag_dport, req.r.id.idiag_dst, &fam_self) != 0 ||
        fam_peer != fam_self)
        return -EAFNOSUPPORT;
    int fd = diag_socket();
    if (fd < 0) return -EIO;
    req.nlh.nlmsg_len = sizeof req;
    req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.nlh.nlmsg_flags = NLM_F_REQUEST;
    req.nlh.nlmsg_seq = ++diag_seq;
    req.r.sdiag_family = (uint8_t)fam_peer;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = ~0u;
    req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    ssize_t sent;
    do sent = sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel);
    while (sent < 0 && errno == EINTR);
    if (sent != (ssize_t)sizeof req) return -errno;
    /* Answers to earlier queries that timed out may still be queued: skip
     * anything that is not for this one. */
    for (;;) {
        long reply[SPATE_PEER_DIAG_REPLY_MAX / sizeof(long)];
        ssize_t n = recv(fd, reply, sizeof reply, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -errno : -EIO;
        for (struct nlmsghdr *h = (struct nlmsghdr *)reply; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != req.nlh.nlmsg_seq) continue;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return e->error ? e->error : -ENOENT;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                return -EPROTO;
            const struct inet_diag_msg *m = NLMSG_DATA(h);
            *uid = (uid_t)m->idiag_uid;
            *inode = m->idiag_inode;
            return 0;
        }
    }
}

void peer_identify(int fd, http_peer *out)
{
    memset(out, 0, sizeof *out);
    struct sockaddr_storage peer, self;
    socklen_t plen = sizeof peer, slen = sizeof self;
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0 ||
        getsockname(fd, (struct sockaddr *)&self, &slen) != 0) {
        /* Not knowing where it is from, count it as local and unknown. */
        out->local = 1;
        return;
    }
    if (peer.ss_family == AF_UNIX) {
        out->local = 1;
        struct ucred cred;
        socklen_t clen = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == 0) {
            out->known = 1;
            out->uid = cred.uid;
            out->pid = cred.pid;
        }
        return;
    }
    out->local = is_loopback(&peer);
    uid_t uid;
    uint64_t inode;
    int rc = diag_lookup(&peer, &self, &uid, &inode);
    if (rc == 0) {
        /* A process here, whatever address it used (an own non-loopback one too). */
        out->local = 1;
        out->known = 1;
        out->uid = uid;
        out->inode = inode;
    } else if (out->local && rc == -ENOENT) {
        /* A loopback address but no such socket in this network namespace:
         * the peer is in another one (a veth with route_localnet). Functions'
         * own namespaces have no inet sockets (seccomp), so it is remote. */
        out->local = 0;
    } else if (out->local) {
        log_warn("cannot learn the uid of a local peer: %s; it counts as untrusted", strerror(-rc));
    }
}
