/*
 * http_client.h - for the HTTP fuzz targets: sends one input as a client
 * connection to a server running on this thread's loop, and turns the loop
 * until the server has closed the connection, or has answered and then been
 * quiet for a few ms (a server lingering for the client to close), or a
 * short while has passed (a held request, like the Runtime API's /next, is
 * not an error).
 */
#ifndef SPATE_FUZZ_HTTP_CLIENT_H
#define SPATE_FUZZ_HTTP_CLIENT_H

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

static uint64_t fuzz_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Returns the number of response bytes read. */
static size_t fuzz_http_exchange(uv_loop_t *loop, int port, const uint8_t *data, size_t size,
                                 uint64_t patience_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, (struct sockaddr *)&sa, sizeof sa); /* EINPROGRESS: loopback completes fast */
    size_t sent = 0, got = 0;
    int shut = 0;
    char in[65536];
    uint64_t now = fuzz_now_ms(), deadline = now + patience_ms, last = now;
    while ((now = fuzz_now_ms()) < deadline && !(got > 0 && shut && now - last >= 1)) {
        uv_run(loop, UV_RUN_NOWAIT);
        if (sent < size) {
            ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0) sent += (size_t)n;
            if (n < 0 && errno != EAGAIN && errno != EINPROGRESS && errno != ENOTCONN) break;
        } else if (!shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        ssize_t n = recv(fd, in, sizeof in, 0);
        if (n == 0) break; /* the server closed: done */
        if (n > 0) {
            got += (size_t)n;
            last = now;
        }
        if (n < 0 && errno != EAGAIN && errno != ENOTCONN) break;
        if (n < 0) usleep(10);
    }
    close(fd);
    /* Let the server see the close. */
    for (int i = 0; i < 4; i++) uv_run(loop, UV_RUN_NOWAIT);
    return got;
}

#endif
