/*
 * peer_mqtt.c - the bare consumer bench/sources-mqtt compares the MQTT
 * source with: libmosquitto, MQTT 5, a persistent session (clean start off,
 * the same Session Expiry Interval and Receive Maximum as the source), QoS 1,
 * the network loop on its own thread with mosquitto_loop; it only receives
 * (the library PUBACKs each message as it reads it) and counts.
 *
 *   peer_mqtt PORT TOPIC-FILTER CLIENT-ID init       creates the session
 *   peer_mqtt PORT TOPIC-FILTER CLIENT-ID drain N    receives N messages
 *
 * drain prints "seconds=S" from before the connect to the Nth message.
 */
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long received;
static int subscribed;

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    (void)m, (void)obj, (void)msg, (void)props;
    received++;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    (void)m, (void)obj, (void)mid, (void)props;
    subscribed = n > 0 && granted[0] < 0x80 ? 1 : -1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: peer_mqtt PORT TOPIC-FILTER CLIENT-ID init|drain [N]\n");
        return 2;
    }
    int drain = strcmp(argv[4], "drain") == 0;
    long n = argc > 5 ? atol(argv[5]) : 0;
    mosquitto_lib_init();
    double t0 = now_s();
    struct mosquitto *m = mosquitto_new(argv[3], false, NULL);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, 256);
    mosquitto_message_v5_callback_set(m, on_message);
    mosquitto_subscribe_v5_callback_set(m, on_subscribe);
    mosquitto_property *props = NULL;
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, 7 * 24 * 3600);
    if (mosquitto_connect_bind_v5(m, "127.0.0.1", atoi(argv[1]), 60, NULL, props) !=
        MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "peer_mqtt: cannot connect\n");
        return 1;
    }
    mosquitto_subscribe_v5(m, NULL, argv[2], 1, MQTT_SUB_OPT_SEND_RETAIN_NEW, NULL);
    while (drain ? received < n : !subscribed) {
        int rc = mosquitto_loop(m, 1000, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "peer_mqtt: %s after %ld\n", mosquitto_strerror(rc), received);
            return 1;
        }
    }
    double t = now_s() - t0;
    mosquitto_disconnect_v5(m, 0, NULL);
    mosquitto_destroy(m);
    mosquitto_property_free_all(&props);
    if (subscribed < 0) return 1;
    if (drain) printf("seconds=%.3f received=%ld\n", t, received);
    return 0;
}
