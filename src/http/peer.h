/*
 * peer.h - who is at the other end of an accepted connection, from the
 * kernel rather than from anything the client says: the uid that owns the
 * peer's socket and that socket's inode (which names it among a process's
 * descriptors, /proc/PID/fd/N -> "socket:[INODE]").
 *
 * TCP: one sock_diag query (NETLINK_SOCK_DIAG, inet_diag_req_v2) for the
 * peer's end of the exact 4-tuple, IPv4 and IPv6. It finds the peer's socket
 * only when the peer is a process on this host in spated's network namespace;
 * otherwise the peer is remote. Unix sockets: SO_PEERCRED.
 *
 * One query costs one round trip to the kernel on a netlink socket kept open
 * for the life of the process (about 10 µs; docs/api.md has the figure).
 */
#ifndef SPATE_HTTP_PEER_H
#define SPATE_HTTP_PEER_H

#include <stdint.h>
#include <sys/types.h>

typedef struct http_peer {
    /* Filled by peer_identify. */
    int local;      /* on this host: a loopback address, a unix socket, or found by sock_diag */
    int known;      /* uid (and for TCP inode) are the kernel's answer */
    uid_t uid;      /* owner of the peer's socket, when known */
    uint64_t inode; /* of the peer's socket, 0 if unknown */
    pid_t pid;      /* unix sockets only (SO_PEERCRED), else 0 */
    /* For the server's user (http_handlers.connect); the server keeps them
     * with the connection. */
    unsigned flags;
} http_peer;

/* Identifies the peer of the connected socket fd. Never fails as such: what
 * cannot be learnt is left unknown (known 0), and a local peer that is
 * unknown must be treated as untrusted. */
void peer_identify(int fd, http_peer *out);

#endif
