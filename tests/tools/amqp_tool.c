/*
 * amqp_tool - a small AMQP 0-9-1 client (librabbitmq) for the tests, the
 * benchmark and the demo: Python here has no AMQP library, and rabbitmqadmin
 * needs the management plugin. Built with
 *     cc -O2 -o amqp_tool amqp_tool.c $(pkg-config --cflags --libs librabbitmq)
 *
 *     amqp_tool PORT declare QUEUE              a durable queue (idempotent)
 *     amqp_tool PORT delete QUEUE
 *     amqp_tool PORT count QUEUE                prints "READY CONSUMERS"
 *     amqp_tool PORT publish QUEUE [options]    messages PREFIX<i>, i from START
 *         --start N --count N --prefix P        (defaults 0, 1, "e")
 *         --size N        pad each body with 'x' to N bytes
 *         --persistent    delivery_mode 2 (kept by a durable queue's restart)
 *         --timestamp S   the timestamp property (epoch seconds)
 *         --message-id ID --header NAME=VALUE (repeatable) --int-header NAME=N
 *         --lines         bodies from stdin, one message a line (not PREFIX<i>)
 *
 * The user and password are AMQP_USER and AMQP_PASS (default guest), the
 * vhost AMQP_VHOST (default "/"). A publish waits for the broker's
 * confirms: when it exits 0 the broker has every message (on disk, for
 * persistent messages to a durable queue).
 */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die_reply(amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL) return;
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
        fprintf(stderr, "amqp_tool: %s: %s\n", what, amqp_error_string2(r.library_error));
    else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
             (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD ||
              r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)) {
        /* Both close methods begin with the reply code and text. */
        const amqp_channel_close_t *m = r.reply.decoded;
        fprintf(stderr, "amqp_tool: %s: %u %.*s\n", what, m->reply_code, (int)m->reply_text.len,
                (char *)m->reply_text.bytes);
    } else
        fprintf(stderr, "amqp_tool: %s: failed\n", what);
    exit(1);
}

static amqp_connection_state_t open_conn(int port)
{
    const char *user = getenv("AMQP_USER"), *pass = getenv("AMQP_PASS");
    const char *vhost = getenv("AMQP_VHOST");
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    struct timeval tv = {10, 0};
    int rc = amqp_socket_open_noblock(s, "127.0.0.1", port, &tv);
    if (rc) {
        fprintf(stderr, "amqp_tool: cannot connect to 127.0.0.1:%d: %s\n", port,
                amqp_error_string2(rc));
        exit(1);
    }
    die_reply(amqp_login(c, vhost ? vhost : "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                         user ? user : "guest", pass ? pass : "guest"),
              "login");
    amqp_channel_open(c, 1);
    die_reply(amqp_get_rpc_reply(c), "channel.open");
    return c;
}

static void close_conn(amqp_connection_state_t c)
{
    amqp_channel_close(c, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
}

/* Waits until the broker confirmed every tag up to last; a nack fails. */
static void await_confirms(amqp_connection_state_t c, uint64_t last, uint64_t *confirmed)
{
    while (*confirmed < last) {
        amqp_frame_t f;
        struct timeval tv = {60, 0};
        int rc = amqp_simple_wait_frame_noblock(c, &f, &tv);
        if (rc) {
            fprintf(stderr, "amqp_tool: waiting for confirms: %s\n", amqp_error_string2(rc));
            exit(1);
        }
        if (f.frame_type != AMQP_FRAME_METHOD) continue;
        if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            const amqp_basic_ack_t *a = f.payload.method.decoded;
            /* One queue: the broker confirms in order, a single ack too. */
            if (a->delivery_tag > *confirmed) *confirmed = a->delivery_tag;
        } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
            fprintf(stderr, "amqp_tool: the broker refused a message (nack)\n");
            exit(1);
        } else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
                   f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
            die_reply((amqp_rpc_reply_t){AMQP_RESPONSE_SERVER_EXCEPTION, f.payload.method, 0},
                      "publish");
        }
        amqp_maybe_release_buffers(c);
    }
}

static int publish(amqp_connection_state_t c, const char *queue, int argc, char **argv)
{
    long start = 0, count = 1, size = 0;
    const char *prefix = "e", *msgid = NULL;
    int persistent = 0, lines = 0;
    uint64_t ts = 0;
    amqp_table_entry_t hdrs[32];
    int nh = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--persistent"))
            persistent = 1;
        else if (!strcmp(a, "--lines"))
            lines = 1;
        else if (v && !strcmp(a, "--start"))
            start = atol(v), i++;
        else if (v && !strcmp(a, "--count"))
            count = atol(v), i++;
        else if (v && !strcmp(a, "--size"))
            size = atol(v), i++;
        else if (v && !strcmp(a, "--prefix"))
            prefix = v, i++;
        else if (v && !strcmp(a, "--timestamp"))
            ts = strtoull(v, NULL, 10), i++;
        else if (v && !strcmp(a, "--message-id"))
            msgid = v, i++;
        else if (v && nh < 32 && (!strcmp(a, "--header") || !strcmp(a, "--int-header")) &&
                 strchr(v, '=')) {
            char *eq = strchr(v, '=');
            hdrs[nh].key = (amqp_bytes_t){(size_t)(eq - v), (void *)v};
            if (!strcmp(a, "--header"))
                hdrs[nh].value = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_UTF8,
                                                      .value.bytes = amqp_cstring_bytes(eq + 1)};
            else
                hdrs[nh].value = (amqp_field_value_t){.kind = AMQP_FIELD_KIND_I64,
                                                      .value.i64 = strtoll(eq + 1, NULL, 10)};
            nh++, i++;
        } else {
            fprintf(stderr, "amqp_tool: unknown publish option '%s'\n", a);
            return 2;
        }
    }
    amqp_confirm_select(c, 1);
    die_reply(amqp_get_rpc_reply(c), "confirm.select");
    amqp_basic_properties_t p = {0};
    if (persistent) p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG, p.delivery_mode = 2;
    if (ts) p._flags |= AMQP_BASIC_TIMESTAMP_FLAG, p.timestamp = ts;
    if (msgid) p._flags |= AMQP_BASIC_MESSAGE_ID_FLAG, p.message_id = amqp_cstring_bytes(msgid);
    if (nh) p._flags |= AMQP_BASIC_HEADERS_FLAG, p.headers = (amqp_table_t){nh, hdrs};
    size_t cap = (size_t)(size > 4096 ? size : 4096) + 64;
    char *body = malloc(cap);
    uint64_t sent = 0, confirmed = 0;
    char *line = NULL;
    size_t line_cap = 0;
    for (long i = start; lines || i < start + count; i++) {
        size_t n;
        if (lines) {
            ssize_t got = getline(&line, &line_cap, stdin);
            if (got < 0) break;
            while (got && (line[got - 1] == '\n' || line[got - 1] == '\r')) got--;
            if (!got) continue;
            if ((size_t)got > cap) body = realloc(body, cap = (size_t)got);
            memcpy(body, line, (size_t)got);
            n = (size_t)got;
        } else {
            n = (size_t)snprintf(body, cap, "%s%ld", prefix, i);
            if ((long)n < size) {
                memset(body + n, 'x', (size_t)size - n);
                n = (size_t)size;
            }
        }
        int rc = amqp_basic_publish(c, 1, amqp_empty_bytes, amqp_cstring_bytes(queue), 0, 0, &p,
                                    (amqp_bytes_t){n, body});
        if (rc) {
            fprintf(stderr, "amqp_tool: publish: %s\n", amqp_error_string2(rc));
            return 1;
        }
        /* Confirms in windows: the broker's acks do not pile up unread. */
        if (++sent % 1000 == 0) await_confirms(c, sent - 500, &confirmed);
    }
    await_confirms(c, sent, &confirmed);
    free(line);
    free(body);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: amqp_tool PORT declare|delete|count|publish QUEUE [options]\n");
        return 2;
    }
    int port = atoi(argv[1]);
    const char *cmd = argv[2], *queue = argv[3];
    amqp_connection_state_t c = open_conn(port);
    int rc = 0;
    if (!strcmp(cmd, "declare")) {
        amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
        die_reply(amqp_get_rpc_reply(c), "queue.declare");
    } else if (!strcmp(cmd, "delete")) {
        amqp_queue_delete(c, 1, amqp_cstring_bytes(queue), 0, 0);
        die_reply(amqp_get_rpc_reply(c), "queue.delete");
    } else if (!strcmp(cmd, "count")) {
        amqp_queue_declare_ok_t *ok =
            amqp_queue_declare(c, 1, amqp_cstring_bytes(queue), 1, 0, 0, 0, amqp_empty_table);
        die_reply(amqp_get_rpc_reply(c), "queue.declare");
        printf("%" PRIu32 " %" PRIu32 "\n", ok->message_count, ok->consumer_count);
    } else if (!strcmp(cmd, "publish")) {
        rc = publish(c, queue, argc - 4, argv + 4);
    } else {
        fprintf(stderr, "amqp_tool: unknown command '%s'\n", cmd);
        rc = 2;
    }
    close_conn(c);
    return rc;
}
