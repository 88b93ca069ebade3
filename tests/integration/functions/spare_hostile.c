/*
 * spare_hostile - a function that misbehaves in spate_init, where a spare
 * instance spends its wait (tests/integration/test_spares_hostile.py). Its
 * environment says how:
 *   INIT_SLEEP_MS=N     spate_init sleeps N ms before it returns
 *   INIT_DAEMON=PATH    spate_init forks a child that leaves its session and
 *                       sleeps for ever; its pid is appended to PATH
 *   INIT_FDS=N          spate_init opens N descriptors and keeps them
 *   INIT_MEM_MB=N       spate_init allocates and touches N MiB and keeps them
 *   INIT_TMP=1          spate_init leaves a file named after its pid in /tmp
 *   INIT_DIE_AFTER_MS=N the instance dies (SIGALRM) N ms after spate_init,
 *                       ready or not, busy or not
 *   INIT_BOMB=1         spate_init starts a child that forks until it cannot
 *                       (its pids cgroup's limit), and keeps trying
 * The payload:
 *   pid                 the instance's process id
 *   tmp                 the process id, then the names in /tmp, space-separated
 *   sleep:MS            sleep, then answer "slept"
 *   anything else       echoed back
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>
#include <unistd.h>

#include "spate.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static long env_long(const char *name)
{
    const char *v = getenv(name);
    return v ? strtol(v, NULL, 10) : 0;
}

int spate_init(void)
{
    const char *daemon_path = getenv("INIT_DAEMON");
    if (daemon_path) {
        pid_t child = fork();
        if (child == 0) {
            setsid();
            signal(SIGHUP, SIG_IGN);
            if (fork() != 0) _exit(0); /* re-parented: no longer the instance's child */
            FILE *f = fopen(daemon_path, "a");
            if (f) {
                fprintf(f, "%d\n", (int)getpid());
                fclose(f);
            }
            for (;;) pause();
        }
    }
    if (getenv("INIT_BOMB") && fork() == 0) {
        for (;;) {
            pid_t c = fork();
            if (c == 0)
                for (;;) pause();
            if (c < 0) sleep_ms(10);
        }
    }
    for (long i = 0, n = env_long("INIT_FDS"); i < n; i++)
        if (open("/dev/null", O_RDONLY) < 0) break;
    long mb = env_long("INIT_MEM_MB");
    if (mb > 0) {
        char *m = malloc((size_t)mb << 20);
        if (m) memset(m, 1, (size_t)mb << 20);
    }
    if (getenv("INIT_TMP")) {
        char path[64];
        snprintf(path, sizeof path, "/tmp/left-by-%d", (int)getpid());
        close(open(path, O_WRONLY | O_CREAT, 0644));
    }
    long die = env_long("INIT_DIE_AFTER_MS");
    if (die > 0) {
        struct itimerval t = {.it_value = {die / 1000, (die % 1000) * 1000}};
        signal(SIGALRM, SIG_DFL);
        setitimer(ITIMER_REAL, &t, NULL);
    }
    long ms = env_long("INIT_SLEEP_MS");
    if (ms > 0) sleep_ms(ms);
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char out[1024];
    size_t used = 0;
    if (req->payload_len == 3 && memcmp(req->payload, "pid", 3) == 0) {
        int n = snprintf(out, sizeof out, "%d", (int)getpid());
        return spate_write(res, out, (size_t)n);
    }
    if (req->payload_len == 3 && memcmp(req->payload, "tmp", 3) == 0) {
        used = (size_t)snprintf(out, sizeof out, "%d ", (int)getpid());
        DIR *d = opendir("/tmp");
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.' && used + strlen(e->d_name) + 2 < sizeof out)
                used += (size_t)snprintf(out + used, sizeof out - used, "%s ", e->d_name);
        if (d) closedir(d);
        return spate_write(res, out, used);
    }
    if (req->payload_len > 6 && memcmp(req->payload, "sleep:", 6) == 0) {
        char num[16];
        snprintf(num, sizeof num, "%.*s", (int)req->payload_len - 6, req->payload + 6);
        sleep_ms(strtol(num, NULL, 10));
        return spate_write(res, "slept", 5);
    }
    return spate_write(res, req->payload, req->payload_len);
}
