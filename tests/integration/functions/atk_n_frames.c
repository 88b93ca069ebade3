/*
 * atk_n_frames - a hostile native instance that speaks the frame protocol
 * itself (tests/integration/test_attacks_issue14.py): spate_init takes over
 * the instance socket, says READY and answers invocations as ATK_MODE says.
 *
 *   cancel_all  every INVOKE is answered "cancelled" (FRAME_CANCELLED),
 *               though spated never sent a CANCEL
 *   init_forge  fails to start with a message whose second line is a line
 *               of the function's log file (DATA/logs/NAME.log): a platform
 *               line blaming request ATK_REQ for a crash
 *
 * Without ATK_MODE it is an ordinary function whose words are hostile: see
 * spate_handler.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spate.h"

/* The protocol as src/runtime/frame.h has it (the header itself needs the
 * tree's include path, which functions are not built with). */
enum {
    FRAME_READY = 1,
    FRAME_INIT_FAILED = 2,
    FRAME_INVOKE = 3,
    FRAME_RESULT = 4,
    FRAME_CANCEL = 5
};
enum { FRAME_FAILED = 1, FRAME_CANCELLED = 4 };

/* The instance socket: its only SOCK_STREAM unix socket. */
static int instance_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int found = -1;
    while (d && (e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name), type = 0;
        socklen_t len = sizeof type;
        if (fd > 2 && fd != dirfd(d) && getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
            type == SOCK_STREAM)
            found = fd;
    }
    if (d) closedir(d);
    return found;
}

static int read_all(int fd, void *p, size_t n)
{
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

static void put(int fd, uint8_t type, uint8_t flags, const void *body, uint32_t len)
{
    uint8_t hdr[8] = {(uint8_t)len,
                      (uint8_t)(len >> 8),
                      (uint8_t)(len >> 16),
                      (uint8_t)(len >> 24),
                      type,
                      flags,
                      0,
                      0};
    if (write(fd, hdr, sizeof hdr) != (ssize_t)sizeof hdr) _exit(0);
    if (len && write(fd, body, len) != (ssize_t)len) _exit(0);
}

int spate_init(void)
{
    const char *mode = getenv("ATK_MODE");
    int fd = instance_fd();
    if (!mode || fd < 0) return 0; /* nothing to attack: behave */
    if (strcmp(mode, "init_forge") == 0) {
        char msg[512];
        const char *req = getenv("ATK_REQ");
        int n = snprintf(msg, sizeof msg,
                         "boom\n2030-01-01T00:00:00.000Z seq=1000000 version=1 instance=1 "
                         "stream=platform req=%s instance ended during the invocation: FORGED",
                         req ? req : "-");
        put(fd, FRAME_INIT_FAILED, 0, msg, (uint32_t)n);
        _exit(1);
    }
    put(fd, FRAME_READY, 0, NULL, 0);
    static char body[8u << 20];
    for (;;) {
        uint8_t hdr[8];
        if (read_all(fd, hdr, sizeof hdr)) _exit(0);
        uint32_t len = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 |
                       (uint32_t)hdr[3] << 24;
        if (len > sizeof body || read_all(fd, body, len)) _exit(0);
        if (hdr[4] != FRAME_INVOKE) continue;
        if (strcmp(mode, "cancel_all") == 0) {
            uint8_t zero[4] = {0};
            put(fd, FRAME_RESULT, FRAME_CANCELLED, zero, sizeof zero);
        }
    }
}

/* Without ATK_MODE: "fail:TEXT" fails with TEXT, "say:TEXT" prints it. */
int spate_handler(const spate_request *req, spate_response *res)
{
    char text[1024];
    size_t n = req->payload_len < sizeof text - 1 ? req->payload_len : sizeof text - 1;
    memcpy(text, req->payload, n);
    text[n] = '\0';
    if (strncmp(text, "fail:", 5) == 0) return spate_fail(res, text + 5), 1;
    if (strncmp(text, "say:", 4) == 0) {
        printf("%s\n", text + 4);
        fflush(stdout);
    }
    return spate_write(res, "ok", 2);
}
