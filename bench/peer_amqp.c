/* peer_amqp - the peer of bench/sources-amqp: a bare librabbitmq consumer
 * of a queue with the prefetch spate's source uses (basic.qos 512) that
 * acknowledges in batches of 256 (basic.ack multiple), as the source does,
 * but does nothing else: no store, no function. Prints the seconds it took
 * to take n messages.
 *
 *     peer_amqp PORT USER PASS QUEUE N */
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: peer_amqp PORT USER PASS QUEUE N\n");
        return 2;
    }
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, "127.0.0.1", atoi(argv[1])) != AMQP_STATUS_OK) {
        fprintf(stderr, "peer_amqp: cannot connect\n");
        return 1;
    }
    amqp_rpc_reply_t r =
        amqp_login(c, "/", 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, argv[2], argv[3]);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "peer_amqp: cannot log in\n");
        return 1;
    }
    amqp_channel_open(c, 1);
    amqp_basic_qos(c, 1, 0, 512, 0);
    amqp_basic_consume(c, 1, amqp_cstring_bytes(argv[4]), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) {
        fprintf(stderr, "peer_amqp: cannot consume '%s'\n", argv[4]);
        return 1;
    }
    long n = atol(argv[5]), got = 0;
    double t0 = now();
    uint64_t last = 0;
    while (got < n) {
        amqp_envelope_t e;
        amqp_maybe_release_buffers(c);
        r = amqp_consume_message(c, &e, NULL, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            fprintf(stderr, "peer_amqp: consume failed\n");
            return 1;
        }
        last = e.delivery_tag;
        amqp_destroy_envelope(&e);
        if (++got % 256 == 0 || got == n) amqp_basic_ack(c, 1, last, 1);
    }
    printf("%.6f\n", now() - t0);
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    return 0;
}
