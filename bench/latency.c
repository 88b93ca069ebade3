/* latency - the function bench/events times: the payload starts with the
 * publisher's wall-clock time in microseconds; the function appends "now -
 * then" to the file in $LATENCY_FILE, at the start of the handler. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"

static int fd = -1;

int spate_init(void)
{
    const char *path = getenv("LATENCY_FILE");
    fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT, 0644) : -1;
    return fd < 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long now = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    char num[24], line[32];
    size_t n = req->payload_len < sizeof num - 1 ? req->payload_len : sizeof num - 1;
    for (size_t i = 0; i < n; i++) num[i] = ((const char *)req->payload)[i];
    num[n] = '\0';
    int len = snprintf(line, sizeof line, "%lld\n", now - atoll(num));
    return write(fd, line, (size_t)len) == len ? 0 : 1;
}
