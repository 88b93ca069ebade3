/* sleeper - the function of bench/events' burst: records its process id and
 * the wall-clock start (us) in $START_FILE, then sleeps 50 ms. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"

static int fd = -1;

int spate_init(void)
{
    const char *path = getenv("START_FILE");
    fd = path ? open(path, O_WRONLY | O_APPEND | O_CREAT, 0644) : -1;
    return fd < 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char line[64];
    int len = snprintf(line, sizeof line, "%d %lld\n", (int)getpid(),
                       (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
    if (write(fd, line, (size_t)len) != len) return 1;
    struct timespec d = {0, 50 * 1000000L};
    nanosleep(&d, NULL);
    return 0;
}
