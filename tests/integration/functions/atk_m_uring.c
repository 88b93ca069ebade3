/*
 * atk_m_uring - a hostile native function for test_attacks_more.py: io_uring
 * runs system calls that seccomp never sees. Deployed with network=false
 * (socket() of anything but AF_UNIX answers EPERM), it asks io_uring for an
 * AF_INET socket (IORING_OP_SOCKET) and answers what it got:
 *   "setup refused: WHY"     io_uring_setup failed
 *   "socket refused: WHY"    the ring ran, the socket was refused
 *   "inet socket N"          it has an AF_INET socket, descriptor N
 * With the payload "getfd" it takes a copy of its own stdin through
 * pidfd_getfd (as it could another process's of its uid): "got N", or
 * "getfd refused: WHY".
 */
#include <errno.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "spate.h"

static int say(spate_response *res, const char *what, int err)
{
    char out[128];
    int n = snprintf(out, sizeof out, "%s: %s", what, strerror(err));
    return spate_write(res, out, (size_t)n);
}

int spate_handler(const spate_request *req, spate_response *res)
{
    if (req->payload_len == 5 && memcmp(req->payload, "getfd", 5) == 0) {
        int pidfd = (int)syscall(__NR_pidfd_open, getpid(), 0);
        int fd = pidfd < 0 ? -1 : (int)syscall(__NR_pidfd_getfd, pidfd, 0, 0);
        if (fd < 0) return say(res, "getfd refused", errno);
        char out[32];
        int n = snprintf(out, sizeof out, "got %d", fd);
        return spate_write(res, out, (size_t)n);
    }
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    int ring = (int)syscall(__NR_io_uring_setup, 4, &p);
    if (ring < 0) return say(res, "setup refused", errno);
    size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    char *sq = mmap(NULL, sq_len, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_SQ_RING);
    char *cq = mmap(NULL, cq_len, PROT_READ | PROT_WRITE, MAP_SHARED, ring, IORING_OFF_CQ_RING);
    struct io_uring_sqe *sqes = mmap(NULL, p.sq_entries * sizeof *sqes, PROT_READ | PROT_WRITE,
                                     MAP_SHARED, ring, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
        return say(res, "setup refused", errno);
    unsigned *tail = (unsigned *)(sq + p.sq_off.tail);
    unsigned *array = (unsigned *)(sq + p.sq_off.array);
    unsigned idx = *tail & *(unsigned *)(sq + p.sq_off.ring_mask);
    memset(&sqes[idx], 0, sizeof sqes[idx]);
    sqes[idx].opcode = IORING_OP_SOCKET;
    sqes[idx].fd = AF_INET;
    sqes[idx].off = SOCK_STREAM;
    array[idx] = idx;
    __atomic_store_n(tail, *tail + 1, __ATOMIC_RELEASE);
    if (syscall(__NR_io_uring_enter, ring, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0)
        return say(res, "socket refused", errno);
    unsigned head = *(unsigned *)(cq + p.cq_off.head);
    struct io_uring_cqe *cqe = (struct io_uring_cqe *)(cq + p.cq_off.cqes) +
                               (head & *(unsigned *)(cq + p.cq_off.ring_mask));
    if (cqe->res < 0) return say(res, "socket refused", -cqe->res);
    char out[64];
    int n = snprintf(out, sizeof out, "inet socket %d", cqe->res);
    return spate_write(res, out, (size_t)n);
}
