/*
 * sqsclient - the load generator of bench/sqs: SQS round trips and the
 * long-poll wake-up over keep-alive connections, in either wire protocol
 * (json: AWS JSON 1.0; query: the form and XML protocol, the only one the
 * peer, sqslite, speaks), against spated or any SQS on 127.0.0.1. Requests
 * are unsigned (spated runs without tokens; sqslite checks no signature).
 *
 *   sqsclient PORT json|query roundtrip CONNECTIONS SECONDS BATCH SIZE NAME
 *   sqsclient PORT json|query wakeup SAMPLES NAME
 *
 * roundtrip: each connection its own queue NAME-I, one request in flight:
 *   SendMessageBatch of BATCH messages of SIZE bytes, then ReceiveMessage
 *   (MaxNumberOfMessages what is missing, WaitTimeSeconds 0) until all
 *   BATCH came back, each receive's messages deleted by one
 *   DeleteMessageBatch. After a second of warm-up it counts the messages
 *   deleted for SECONDS and prints "MESSAGES SECONDS REQUESTS".
 * wakeup: a ReceiveMessage (WaitTimeSeconds 20) on the empty queue NAME on
 *   one connection; 5 ms later a SendMessage on another; the time from
 *   writing the send to the waiting receive's answer, and to the send's own
 *   answer. Prints "WAKE_US SEND_US" a sample (after 20 not printed, the
 *   warm-up). Exits 3 when the receive answers before the send: the server
 *   does not long-poll.
 * Anything unexpected (a status other than 200, a failed entry, a message
 * that never comes back) ends it with status 1.
 */
#define _GNU_SOURCE /* memmem */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 10
#define HANDLE_MAX 1024
#define URL_MAX 512

static int port;
static int json; /* else the query protocol */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("sqsclient: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- A growable string ---------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
} str;

static void str_add(str *s, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->p ? s->p + s->len : NULL, s->p ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) die("cannot format a request");
        if (s->p && s->len + (size_t)n < s->cap) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = (s->cap + (size_t)n + 1) * 2;
        char *p = realloc(s->p, cap);
        if (!p) die("out of memory");
        s->p = p;
        s->cap = cap;
    }
}

/* Adds text form-encoded (the query protocol) or as is (JSON: the bench's
 * strings need no escaping). */
static void str_value(str *s, const char *text)
{
    if (json) {
        str_add(s, "%s", text);
        return;
    }
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("-._~", *c))
            str_add(s, "%c", *c);
        else
            str_add(s, "%%%02X", *c);
    }
}

/* --- A connection, one request in flight --------------------------------------------- */

typedef struct {
    int fd;
    str req;
    char *buf;
    size_t len, cap;
    size_t head; /* the header's length once read; 0: not yet */
    size_t body; /* Content-Length */
    int status;
    long requests;
} conn;

static void dial(conn *c)
{
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&a, sizeof a)) die("cannot connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* A server that stops answering ends the bench rather than hanging it
     * (a long poll answers within its 20 s). */
    struct timeval tv = {.tv_sec = 60};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    c->cap = 1 << 16;
    if (!(c->buf = malloc(c->cap))) die("out of memory");
}

/* Starts a request of action; its parameters are added to c->req next. */
static void begin(conn *c, const char *action)
{
    c->req.len = 0;
    if (json)
        str_add(&c->req, "{");
    else
        str_add(&c->req, "Action=%s&Version=2012-11-05", action);
}

/* Writes the request whose body c->req holds. */
static void post(conn *c, const char *action)
{
    if (json) str_add(&c->req, "}");
    char head[256];
    int n;
    if (json)
        n = snprintf(head, sizeof head,
                     "POST / HTTP/1.1\r\nHost: localhost:%d\r\nContent-Type: "
                     "application/x-amz-json-1.0\r\nX-Amz-Target: AmazonSQS.%s\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     port, action, c->req.len);
    else
        n = snprintf(head, sizeof head,
                     "POST / HTTP/1.1\r\nHost: localhost:%d\r\nContent-Type: "
                     "application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n",
                     port, c->req.len);
    struct part {
        const char *p;
        size_t n;
    } parts[2] = {{head, (size_t)n}, {c->req.p, c->req.len}};
    for (int i = 0; i < 2; i++) {
        const char *p = parts[i].p;
        size_t left = parts[i].n;
        while (left) {
            ssize_t w = write(c->fd, p, left);
            if (w <= 0) die("cannot write a request");
            p += w;
            left -= (size_t)w;
        }
    }
    c->len = c->head = 0;
    c->requests++;
}

/* 1 when the whole answer is in c->buf. */
static int complete(conn *c)
{
    if (!c->head) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (!end) return 0;
        *end = '\0';
        c->head = (size_t)(end - c->buf) + 4;
        if (sscanf(c->buf, "HTTP/1.%*d %d", &c->status) != 1) die("not an HTTP answer");
        const char *cl = NULL;
        for (char *l = strstr(c->buf, "\r\n"); l; l = strstr(l + 2, "\r\n"))
            if (strncasecmp(l + 2, "content-length:", 15) == 0) cl = l + 17;
        if (!cl) die("an answer without Content-Length");
        c->body = strtoul(cl, NULL, 10);
    }
    return c->len >= c->head + c->body;
}

/* Reads what there is (at least a byte). */
static void read_some(conn *c)
{
    if (c->cap - c->len < 4096) {
        c->cap *= 2;
        if (!(c->buf = realloc(c->buf, c->cap))) die("out of memory");
    }
    ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len - 1);
    if (r < 0) die("no answer: %s", errno == EAGAIN ? "none in 60 s" : strerror(errno));
    if (r == 0) die("the server closed the connection");
    c->len += (size_t)r;
}

/* The answer's body, NUL-terminated; dies unless its status is 200. */
static const char *answer(conn *c, const char *action)
{
    while (!complete(c)) read_some(c);
    c->buf[c->head + c->body] = '\0';
    const char *b = c->buf + c->head;
    if (c->status != 200) die("%s answered %d: %.300s", action, c->status, b);
    return b;
}

static const char *call(conn *c, const char *action)
{
    post(c, action);
    return answer(c, action);
}

/* The next value of field name after *p (JSON "name": "value", XML
 * <name>value</name>) into out; 0 when there is none. */
static int next_value(const char **p, const char *name, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof key, json ? "\"%s\"" : "<%s>", name);
    const char *k = strstr(*p, key);
    if (!k) return 0;
    const char *v = k + strlen(key);
    if (json) {
        while (*v == ' ' || *v == ':') v++;
        if (*v++ != '"') die("%s is not a string", name);
    }
    const char *e = strchr(v, json ? '"' : '<');
    if (!e || (size_t)(e - v) >= cap) die("%s is too long or not closed", name);
    memcpy(out, v, (size_t)(e - v));
    out[e - v] = '\0';
    *p = e;
    return 1;
}

static int count_of(const char *body, const char *name)
{
    char v[HANDLE_MAX];
    int n = 0;
    while (next_value(&body, name, v, sizeof v)) n++;
    return n;
}

/* --- The actions ------------------------------------------------------------------------ */

static void param(conn *c, const char *name, const char *value, int first)
{
    if (json) {
        str_add(&c->req, "%s\"%s\":\"", first ? "" : ",", name);
        str_value(&c->req, value);
        str_add(&c->req, "\"");
    } else {
        str_add(&c->req, "&%s=", name);
        str_value(&c->req, value);
    }
}

static void create_queue(conn *c, const char *name, char url[URL_MAX])
{
    begin(c, "CreateQueue");
    param(c, "QueueName", name, 1);
    const char *b = call(c, "CreateQueue");
    if (!next_value(&b, "QueueUrl", url, URL_MAX)) die("CreateQueue named no QueueUrl");
}

static void send_batch(conn *c, const char *url, int n, const char *body)
{
    begin(c, "SendMessageBatch");
    param(c, "QueueUrl", url, 1);
    if (json) str_add(&c->req, ",\"Entries\":[");
    for (int i = 0; i < n; i++) {
        char id[16];
        snprintf(id, sizeof id, "m%d", i);
        if (json) {
            str_add(&c->req, "%s{", i ? "," : "");
            param(c, "Id", id, 1);
            param(c, "MessageBody", body, 0);
            str_add(&c->req, "}");
        } else {
            char name[64];
            snprintf(name, sizeof name, "SendMessageBatchRequestEntry.%d.Id", i + 1);
            param(c, name, id, 0);
            snprintf(name, sizeof name, "SendMessageBatchRequestEntry.%d.MessageBody", i + 1);
            param(c, name, body, 0);
        }
    }
    if (json) str_add(&c->req, "]");
    const char *b = call(c, "SendMessageBatch");
    if (count_of(b, "MessageId") != n) die("SendMessageBatch sent fewer: %.300s", b);
}

static void receive(conn *c, const char *url, int max, int wait_s)
{
    char num[16];
    begin(c, "ReceiveMessage");
    param(c, "QueueUrl", url, 1);
    if (json) {
        str_add(&c->req,
                ",\"MaxNumberOfMessages\":%d,\"WaitTimeSeconds\":%d,"
                "\"VisibilityTimeout\":30",
                max, wait_s);
    } else {
        snprintf(num, sizeof num, "%d", max);
        param(c, "MaxNumberOfMessages", num, 0);
        snprintf(num, sizeof num, "%d", wait_s);
        param(c, "WaitTimeSeconds", num, 0);
        param(c, "VisibilityTimeout", "30", 0);
    }
    post(c, "ReceiveMessage");
}

/* The receipt handles of a ReceiveMessage's answer b into h. */
static int handles_of(const char *b, char h[][HANDLE_MAX], int max)
{
    int n = 0;
    while (n < max && next_value(&b, "ReceiptHandle", h[n], HANDLE_MAX)) n++;
    return n;
}

static void delete_batch(conn *c, const char *url, char h[][HANDLE_MAX], int n)
{
    begin(c, "DeleteMessageBatch");
    param(c, "QueueUrl", url, 1);
    if (json) str_add(&c->req, ",\"Entries\":[");
    for (int i = 0; i < n; i++) {
        char id[16], name[64];
        snprintf(id, sizeof id, "d%d", i);
        if (json) {
            str_add(&c->req, "%s{", i ? "," : "");
            param(c, "Id", id, 1);
            param(c, "ReceiptHandle", h[i], 0);
            str_add(&c->req, "}");
        } else {
            snprintf(name, sizeof name, "DeleteMessageBatchRequestEntry.%d.Id", i + 1);
            param(c, name, id, 0);
            snprintf(name, sizeof name, "DeleteMessageBatchRequestEntry.%d.ReceiptHandle", i + 1);
            param(c, name, h[i], 0);
        }
    }
    if (json) str_add(&c->req, "]");
    const char *b = call(c, "DeleteMessageBatch");
    /* Each deleted entry's Id comes back (Successful), a failed one's too,
     * with a Code. */
    if (strstr(b, json ? "\"Code\"" : "<Code>")) die("DeleteMessageBatch failed: %.300s", b);
}

/* --- roundtrip --------------------------------------------------------------------------- */

static int conns_n, batch, size, stop_flag;
static const char *qname;
static long done_msgs, done_reqs; /* atomics */

static void *roundtrips(void *arg)
{
    long i = (long)arg;
    conn c;
    dial(&c);
    char name[128], url[URL_MAX];
    snprintf(name, sizeof name, "%s-%ld", qname, i);
    create_queue(&c, name, url);
    char *body = malloc((size_t)size + 1);
    if (!body) die("out of memory");
    for (int k = 0; k < size; k++) body[k] = (char)('a' + k % 26);
    body[size] = '\0';
    char(*handles)[HANDLE_MAX] = malloc(MAX_BATCH * sizeof *handles);
    if (!handles) die("out of memory");
    while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
        long reqs0 = c.requests;
        send_batch(&c, url, batch, body);
        int got = 0, empty = 0;
        while (got < batch) {
            receive(&c, url, batch - got, 0);
            int n = handles_of(answer(&c, "ReceiveMessage"), handles, batch - got);
            if (n == 0) {
                /* What was acknowledged is receivable at once on spated;
                 * a peer may take a moment. */
                if (++empty > 10000) die("sent messages did not come back");
                continue;
            }
            delete_batch(&c, url, handles, n);
            got += n;
        }
        __atomic_fetch_add(&done_msgs, (long)batch, __ATOMIC_RELAXED);
        __atomic_fetch_add(&done_reqs, c.requests - reqs0, __ATOMIC_RELAXED);
    }
    free(handles);
    free(body);
    close(c.fd);
    return NULL;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int roundtrip(int argc, char **argv)
{
    if (argc != 9) return 2;
    conns_n = atoi(argv[4]);
    double seconds = atof(argv[5]);
    batch = atoi(argv[6]);
    size = atoi(argv[7]);
    qname = argv[8];
    if (conns_n < 1 || seconds <= 0 || batch < 1 || batch > MAX_BATCH || size < 1)
        die("bad arguments");
    pthread_t *t = calloc((size_t)conns_n, sizeof *t);
    if (!t) die("out of memory");
    for (long i = 0; i < conns_n; i++) pthread_create(&t[i], NULL, roundtrips, (void *)i);
    sleep_s(1.0); /* warm-up */
    long m0 = __atomic_load_n(&done_msgs, __ATOMIC_RELAXED);
    long r0 = __atomic_load_n(&done_reqs, __ATOMIC_RELAXED);
    long long t0 = now_us();
    sleep_s(seconds);
    long m1 = __atomic_load_n(&done_msgs, __ATOMIC_RELAXED);
    long r1 = __atomic_load_n(&done_reqs, __ATOMIC_RELAXED);
    long long t1 = now_us();
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < conns_n; i++) pthread_join(t[i], NULL);
    free(t);
    printf("%ld %.6f %ld\n", m1 - m0, (double)(t1 - t0) / 1e6, r1 - r0);
    return 0;
}

/* --- wakeup ------------------------------------------------------------------------------ */

static int readable(const conn *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, timeout_ms) > 0;
}

static int wakeup(int argc, char **argv)
{
    if (argc != 6) return 2;
    int samples = atoi(argv[4]);
    if (samples < 1) die("bad arguments");
    conn a, b;
    dial(&a);
    dial(&b);
    char url[URL_MAX], h[1][HANDLE_MAX];
    create_queue(&a, argv[5], url);
    for (int i = -20; i < samples; i++) {
        receive(&a, url, 1, 20);
        /* Time for the receive to be read and waiting: answered by now,
         * the server does not hold it. */
        if (readable(&a, 5)) return 3;
        long long t0 = now_us(), ta = 0, tb = 0;
        begin(&b, "SendMessage");
        param(&b, "QueueUrl", url, 1);
        param(&b, "MessageBody", "wake", 0);
        post(&b, "SendMessage");
        while (!ta || !tb) {
            struct pollfd p[2] = {{.fd = a.fd, .events = POLLIN}, {.fd = b.fd, .events = POLLIN}};
            if (poll(p, 2, 30000) <= 0) die("no answer in 30 s");
            if (!ta && p[0].revents) {
                read_some(&a);
                if (complete(&a)) ta = now_us();
            }
            if (!tb && p[1].revents) {
                read_some(&b);
                if (complete(&b)) tb = now_us();
            }
        }
        answer(&b, "SendMessage");
        if (handles_of(answer(&a, "ReceiveMessage"), h, 1) != 1) return 3;
        begin(&a, "DeleteMessage");
        param(&a, "QueueUrl", url, 1);
        param(&a, "ReceiptHandle", h[0], 0);
        call(&a, "DeleteMessage");
        if (i >= 0) printf("%lld %lld\n", ta - t0, tb - t0);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) goto usage;
    port = atoi(argv[1]);
    json = strcmp(argv[2], "json") == 0;
    if (!json && strcmp(argv[2], "query") != 0) goto usage;
    int rc = 2;
    if (strcmp(argv[3], "roundtrip") == 0) rc = roundtrip(argc, argv);
    if (strcmp(argv[3], "wakeup") == 0) rc = wakeup(argc, argv);
    if (rc != 2) return rc;
usage:
    fprintf(stderr, "usage: sqsclient PORT json|query roundtrip CONNECTIONS SECONDS BATCH SIZE "
                    "NAME\n       sqsclient PORT json|query wakeup SAMPLES NAME\n");
    return 2;
}
