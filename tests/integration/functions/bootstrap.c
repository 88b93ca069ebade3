/*
 * bootstrap - a Lambda custom runtime in C for the exec tests: speaks the
 * Runtime API over one keep-alive connection to $AWS_LAMBDA_RUNTIME_API.
 *
 * $BOOT_MODE misbehaves before work: "exit" (exits at once), "nonext" (never
 * asks for work), "initerror" (reports an init error).
 * Each event is a command:
 *   fail          posts an error (errorType "ProbeError")
 *   failexit:MS   sleeps, posts an error, then exits (status 0)
 *   crash         aborts
 *   sleep:MS      sleeps, then answers "slept"
 *   big:N         answers N bytes
 *   wrongid       first answers with a wrong request id (expects 400), then right
 *   env:NAME      answers the variable's value
 *   headers       answers the Lambda-Runtime-* headers it got, one per line
 *   read:PATH     answers the file's first bytes, or "error: WHY"
 *   write:PATH    writes "x" to the file: "ok", or "error: WHY"
 *   fill:PATH     writes to the file until that fails: "filled N MB: WHY"
 *   cwd           answers its working directory
 *   pid           answers its process id
 *   anything else is echoed
 */
#define _GNU_SOURCE /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fd = -1;
static char host[64];
static int port;

static void die(const char *why)
{
    fprintf(stderr, "bootstrap: %s\n", why);
    exit(1);
}

static void dial(void)
{
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("cannot connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void send_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) die("write");
        p += w;
        n -= (size_t)w;
    }
}

/* One request, one answer: status, headers (copied into hdrs) and body (malloc'd). */
static int call(const char *method, const char *path, const char *body, size_t len, char *hdrs,
                size_t hcap, char **out, size_t *outlen)
{
    char head[512];
    int n = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n",
                     method, path, host, len);
    send_all(head, (size_t)n);
    if (len) send_all(body, len);
    size_t cap = 65536, got = 0;
    char *in = malloc(cap);
    char *end = NULL;
    size_t need = 0;
    for (;;) {
        if (got + 1 >= cap) in = realloc(in, cap *= 2);
        ssize_t r = read(fd, in + got, cap - 1 - got);
        if (r <= 0) die("read");
        got += (size_t)r;
        in[got] = '\0';
        if (!end && (end = strstr(in, "\r\n\r\n"))) {
            char *cl = strcasestr(in, "content-length:");
            need = (size_t)(end + 4 - in) + (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
            if (need + 1 > cap) in = realloc(in, cap = need + 1), end = strstr(in, "\r\n\r\n");
        }
        if (end && got >= need) break;
    }
    size_t hl = (size_t)(end - in);
    if (hdrs) {
        snprintf(hdrs, hcap, "%.*s", (int)(hl < hcap - 1 ? hl : hcap - 1), in);
    }
    size_t bl = need - hl - 4;
    if (out) {
        *out = malloc(bl + 1);
        memcpy(*out, end + 4, bl);
        (*out)[bl] = '\0';
        *outlen = bl;
    }
    int status = atoi(in + 9);
    free(in);
    return status;
}

static void header(const char *hdrs, const char *name, char *out, size_t cap)
{
    const char *p = strcasestr(hdrs, name);
    out[0] = '\0';
    if (!p) return;
    p += strlen(name);
    while (*p == ':' || *p == ' ') p++;
    size_t n = strcspn(p, "\r\n");
    snprintf(out, cap, "%.*s", (int)(n < cap - 1 ? n : cap - 1), p);
}

int main(void)
{
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    const char *mode = getenv("BOOT_MODE");
    if (!api) die("no AWS_LAMBDA_RUNTIME_API");
    const char *colon = strrchr(api, ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - api), api);
    port = atoi(colon + 1);
    if (mode && strcmp(mode, "exit") == 0) return 3;
    if (mode && strcmp(mode, "nonext") == 0)
        for (;;) pause();
    dial();
    if (mode && strcmp(mode, "initerror") == 0) {
        const char *e = "{\"errorMessage\":\"no database\",\"errorType\":\"InitError\"}";
        call("POST", "/2018-06-01/runtime/init/error", e, strlen(e), NULL, 0, NULL, NULL);
        return 4;
    }
    for (;;) {
        char hdrs[4096], id[128], path[256];
        char *ev;
        size_t evlen;
        if (call("GET", "/2018-06-01/runtime/invocation/next", NULL, 0, hdrs, sizeof hdrs, &ev,
                 &evlen) != 200)
            die("next failed");
        header(hdrs, "Lambda-Runtime-Aws-Request-Id", id, sizeof id);
        snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/response", id);
        char *out = ev, *big = NULL;
        size_t outlen = evlen;
        char small[4096];
        if (strcmp(ev, "fail") == 0) {
            const char *e = "{\"errorMessage\":\"asked to fail\",\"errorType\":\"ProbeError\"}";
            snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/error", id);
            call("POST", path, e, strlen(e), NULL, 0, NULL, NULL);
            free(ev);
            continue;
        } else if (strncmp(ev, "failexit:", 9) == 0) {
            long ms = atol(ev + 9);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            const char *e = "{\"errorMessage\":\"asked to fail\",\"errorType\":\"ProbeError\"}";
            snprintf(path, sizeof path, "/2018-06-01/runtime/invocation/%s/error", id);
            call("POST", path, e, strlen(e), NULL, 0, NULL, NULL);
            exit(0);
        } else if (strcmp(ev, "crash") == 0) {
            abort();
        } else if (strncmp(ev, "sleep:", 6) == 0) {
            long ms = atol(ev + 6);
            struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            out = "slept";
            outlen = 5;
        } else if (strncmp(ev, "big:", 4) == 0) {
            outlen = (size_t)atol(ev + 4);
            big = malloc(outlen);
            memset(big, 'b', outlen);
            out = big;
        } else if (strcmp(ev, "wrongid") == 0) {
            char wrong[256];
            snprintf(wrong, sizeof wrong, "/2018-06-01/runtime/invocation/%s-nope/response", id);
            int st = call("POST", wrong, "x", 1, NULL, 0, NULL, NULL);
            outlen = (size_t)snprintf(small, sizeof small, "wrong id answered %d", st);
            out = small;
        } else if (strncmp(ev, "env:", 4) == 0) {
            const char *v = getenv(ev + 4);
            outlen = (size_t)snprintf(small, sizeof small, "%s", v ? v : "(unset)");
            out = small;
        } else if (strncmp(ev, "read:", 5) == 0) {
            int f = open(ev + 5, O_RDONLY);
            ssize_t n = f < 0 ? -1 : read(f, small, sizeof small);
            if (n < 0) n = snprintf(small, sizeof small, "error: %s", strerror(errno));
            if (f >= 0) close(f);
            out = small;
            outlen = (size_t)n;
        } else if (strncmp(ev, "write:", 6) == 0) {
            int f = open(ev + 6, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (f < 0 || write(f, "x", 1) != 1)
                outlen = (size_t)snprintf(small, sizeof small, "error: %s", strerror(errno));
            else
                outlen = (size_t)snprintf(small, sizeof small, "ok");
            if (f >= 0) close(f);
            out = small;
        } else if (strncmp(ev, "fill:", 5) == 0) {
            static char mb[1 << 20];
            int f = open(ev + 5, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            long n = 0;
            while (f >= 0 && write(f, mb, sizeof mb) == (ssize_t)sizeof mb) n++;
            outlen = (size_t)snprintf(small, sizeof small, "filled %ld MB: %s", n, strerror(errno));
            if (f >= 0) close(f);
            out = small;
        } else if (strcmp(ev, "pid") == 0) {
            outlen = (size_t)snprintf(small, sizeof small, "%d", (int)getpid());
            out = small;
        } else if (strcmp(ev, "cwd") == 0) {
            if (!getcwd(small, sizeof small)) snprintf(small, sizeof small, "error");
            out = small;
            outlen = strlen(small);
        } else if (strcmp(ev, "headers") == 0) {
            char v[512];
            size_t n = 0;
            const char *names[] = {"Lambda-Runtime-Aws-Request-Id", "Lambda-Runtime-Deadline-Ms",
                                   "Lambda-Runtime-Invoked-Function-Arn",
                                   "Lambda-Runtime-Trace-Id"};
            for (int i = 0; i < 4; i++) {
                header(hdrs, names[i], v, sizeof v);
                n += (size_t)snprintf(small + n, sizeof small - n, "%s=%s\n", names[i], v);
            }
            out = small;
            outlen = n;
        }
        int st = call("POST", path, out, outlen, NULL, 0, NULL, NULL);
        if (st != 202 && st != 413) die("response not accepted");
        free(big);
        free(ev);
    }
}
