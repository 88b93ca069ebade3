/*
 * env.c - spate-runner's environment: the fixed one it starts with as root,
 * and the function's, handed over in a memfd (isolate.h says why).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "runtime/isolate.h"

char **isolate_runner_env(void)
{
    static char *env[8];
    static char store[3][1024];
    if (env[0]) return env;
    static const char *const passthrough[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    int n = 0;
    env[n++] = "PATH=/usr/local/bin:/usr/bin:/bin";
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(passthrough[i]);
        if (!v) continue;
        snprintf(store[i], sizeof store[i], "%s=%s", passthrough[i], v);
        env[n++] = store[i];
    }
    env[n] = NULL;
    return env;
}

static int write_whole(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int isolate_env_fd(char *const *env, const char *extra)
{
    int fd = memfd_create("spate-env", MFD_CLOEXEC);
    if (fd < 0) return -1;
    for (char *const *e = env; e && *e; e++)
        if (write_whole(fd, *e, strlen(*e) + 1) != 0) goto fail;
    if (extra && write_whole(fd, extra, strlen(extra) + 1) != 0) goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}
