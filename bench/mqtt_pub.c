/*
 * mqtt_pub.c - publishes numbered messages to an MQTT broker and waits for
 * the broker to acknowledge every one (QoS 1 PUBACK): what the MQTT source's
 * tests (tests/integration/test_sources_mqtt.py) and bench/sources-mqtt
 * produce upstream with. mosquitto_pub (mosquitto-clients) is not needed.
 *
 *   mqtt_pub -p PORT -t TOPIC [-s START] [-n COUNT] [-q QOS] [-z SIZE] [-r]
 *            [-m MESSAGE] [-u NAME=VALUE] [-w MS] [-U USER:PASS]
 *
 * Messages are "e<START>".."e<START+COUNT-1>", padded with '.' to SIZE
 * bytes; -m sends MESSAGE instead (COUNT times), -u adds an MQTT 5 user
 * property, -r retains, -w waits MS between messages. It prints how many
 * were acknowledged and exits 0 when that is all of them.
 */
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long acked;

static void on_publish(struct mosquitto *m, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    (void)m, (void)obj, (void)mid, (void)props;
    /* 0x10, no matching subscribers, is a success too. */
    if (rc < 0x80) acked++;
}

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    (void)m, (void)flags, (void)props;
    *(int *)obj = rc == 0 ? 1 : -1;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *topic = NULL, *message = NULL, *prop = NULL, *login = NULL;
    int port = 1883, qos = 1, retain = 0, opt;
    long start = 0, count = 1, size = 0, wait_ms = 0;
    while ((opt = getopt(argc, argv, "h:p:t:s:n:q:z:rm:u:w:U:")) != -1) {
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 't':
            topic = optarg;
            break;
        case 's':
            start = atol(optarg);
            break;
        case 'n':
            count = atol(optarg);
            break;
        case 'q':
            qos = atoi(optarg);
            break;
        case 'z':
            size = atol(optarg);
            break;
        case 'r':
            retain = 1;
            break;
        case 'm':
            message = optarg;
            break;
        case 'u':
            prop = optarg;
            break;
        case 'w':
            wait_ms = atol(optarg);
            break;
        case 'U':
            login = optarg;
            break;
        default:
            fprintf(stderr, "usage: see mqtt_pub.c\n");
            return 2;
        }
    }
    if (!topic) {
        fprintf(stderr, "mqtt_pub: -t TOPIC is required\n");
        return 2;
    }
    mosquitto_lib_init();
    int connected = 0;
    struct mosquitto *m = mosquitto_new(NULL, true, &connected);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_publish_v5_callback_set(m, on_publish);
    if (login) {
        char user[256];
        const char *colon = strchr(login, ':');
        snprintf(user, sizeof user, "%.*s", colon ? (int)(colon - login) : (int)strlen(login),
                 login);
        mosquitto_username_pw_set(m, user, colon ? colon + 1 : NULL);
    }
    if (mosquitto_connect(m, host, port, 60) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqtt_pub: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    while (!connected)
        if (mosquitto_loop(m, 1000, 1) != MOSQ_ERR_SUCCESS) return 1;
    if (connected < 0) {
        fprintf(stderr, "mqtt_pub: connection refused\n");
        return 1;
    }
    mosquitto_property *props = NULL;
    if (prop) {
        char name[256];
        const char *eq = strchr(prop, '=');
        snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - prop) : (int)strlen(prop), prop);
        mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, name, eq ? eq + 1 : "");
    }
    size_t cap = (size_t)size + (message ? strlen(message) : 0) + 64;
    char *buf = malloc(cap);
    long sent = 0;
    while (sent < count || (qos > 0 && acked < count)) {
        /* A window of a thousand unacknowledged: the library queues the
         * rest in memory, and this keeps it small. */
        while (sent < count && (qos == 0 || sent - acked < 1000)) {
            size_t len;
            if (message) {
                len = strlen(message);
                memcpy(buf, message, len);
            } else {
                len = (size_t)sprintf(buf, "e%ld", start + sent);
                while ((long)len < size) buf[len++] = '.';
            }
            int rc = mosquitto_publish_v5(m, NULL, topic, (int)len, buf, qos, retain, props);
            if (rc != MOSQ_ERR_SUCCESS) {
                fprintf(stderr, "mqtt_pub: publish: %s\n", mosquitto_strerror(rc));
                return 1;
            }
            sent++;
            if (wait_ms) {
                struct timespec ts = {wait_ms / 1000, (wait_ms % 1000) * 1000000};
                nanosleep(&ts, NULL);
                break;
            }
        }
        int rc = mosquitto_loop(m, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "mqtt_pub: %s after %ld acked\n", mosquitto_strerror(rc), acked);
            printf("%ld\n", acked);
            return 1;
        }
    }
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    mosquitto_property_free_all(&props);
    free(buf);
    printf("%ld\n", qos ? acked : sent);
    return 0;
}
