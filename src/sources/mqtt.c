/*
 * mqtt.c - the MQTT connector (libmosquitto, MQTT 5): a subscription with a
 * persistent session, so that what is published while spated is down is
 * queued by the broker and delivered when the source is back.
 *
 *   mqtt://[USER:PASS@]HOST[:PORT]/TOPIC-FILTER[?qos=1][&client_id=ID]
 *   mqtts://... [&ca=FILE][&cert=FILE&key=FILE]   (TLS, port 8883 by default)
 *
 * The session is the client id's: "spate-NODE-SOURCE" unless client_id
 * names one, kept by the broker SPATE_SOURCE_MQTT_SESSION_S after a
 * disconnect (clean start off, Session Expiry Interval).
 *
 * What the library allows (libmosquitto 2.0.11, lib/handle_publish.c): a
 * QoS 1 PUBLISH is acknowledged (PUBACK written) as it is read, before the
 * message callback runs, and the library has no manual acknowledgement. So
 * the broker forgets a message as soon as a fetch reads it, before spate
 * commits it: ack has nothing to do, and a crash of spated (kill -9, power)
 * loses the batch between fetch and commit, at most SPATE_SOURCE_BATCH_MAX
 * messages. Everything not yet read stays with the broker (in its session)
 * and comes after a restart. The network loop runs only inside connect and
 * fetch, on the source's thread (mosquitto_loop, one packet per call), so no
 * more is read than the batch takes; a stopping source still publishes the
 * batch it read (connector.acked_on_fetch). With qos=0 nothing is
 * acknowledged at all: at most once.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/utf8.h"
#include "sources/connector.h"
#include "sources/tls.h"
#include "sources/tls_relay.h"

typedef struct mqtt_cfg {
    char host[256];
    int port;
    char user[256];
    char pass[256];
    char filter[512];
    int qos;
    char client_id[256]; /* "": derived from the node's and the source's names */
    char source[256];    /* the source's name (name_cfg) */
    src_tls tls;
} mqtt_cfg;

struct src_conn {
    struct mosquitto *m;
    const mqtt_cfg *cfg;
    /* Set by the callbacks while mosquitto_loop runs. */
    int connack; /* -1: none yet; else the CONNACK's reason code */
    int sub_mid;
    char failed[512]; /* why the connection is to be dropped; "" if it is fine */
    /* The library's last error line (its log): libmosquitto prints
     * OpenSSL's reason there ("certificate verify failed") and returns only
     * "a TLS error occurred". */
    char lib_error[256];
    int session_present;
    int suback; /* the SUBACK came */
    /* The batch a fetch fills (NULL outside a fetch) and its limits. */
    src_batch *out;
    const src_limits *lim;
    /* Messages read outside a fetch (while connect waits for the SUBACK),
     * acknowledged already: the next fetch takes them first. */
    struct held *held, **held_tail;
};

typedef struct held {
    struct held *next;
    struct mosquitto_message msg;
    mosquitto_property *props;
} held;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_init(void)
{
    mosquitto_lib_init();
}

static int parse(const char *url, void **out, char *err, size_t errcap)
{
    src_url u;
    int rc = src_url_parse(url, &u, err, errcap);
    if (rc) return rc;
    static const char *const known[] = {"qos", "client_id", SRC_TLS_KEYS, NULL};
    mqtt_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        src_url_free(&u);
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    int tls = strcmp(u.scheme, "mqtts") == 0;
    snprintf(c->host, sizeof c->host, "%s", u.host);
    c->port = u.port ? u.port : tls ? 8883 : 1883;
    snprintf(c->user, sizeof c->user, "%s", u.user);
    snprintf(c->pass, sizeof c->pass, "%s", u.pass);
    snprintf(c->filter, sizeof c->filter, "%s", u.path);
    c->qos = 1;
    if (!rc) rc = src_url_check_keys(&u, known, err, errcap);
    if (!rc) rc = src_tls_parse(&u, tls, &c->tls, err, errcap);
    if (!rc && !c->filter[0]) {
        snprintf(err, errcap,
                 "missing topic filter: the URL's path names it (mqtt://HOST:PORT/TOPIC-FILTER, "
                 "'#' written %%23)");
        rc = ERR_INVAL;
    }
    if (!rc && mosquitto_sub_topic_check2(c->filter, strlen(c->filter)) != MOSQ_ERR_SUCCESS) {
        snprintf(err, errcap,
                 "malformed topic filter '%.200s': '+' and '#' (written %%23) stand alone between "
                 "'/', '#' only last",
                 c->filter);
        rc = ERR_INVAL;
    }
    char qos[8];
    int q = rc ? 1 : src_url_param(&u, "qos", qos, sizeof qos);
    if (q < 0 || (q == 0 && strcmp(qos, "0") != 0 && strcmp(qos, "1") != 0)) {
        snprintf(err, errcap,
                 "bad value of 'qos': 0 (at most once) or 1 (what the broker queues for the "
                 "session)");
        rc = ERR_INVAL;
    } else if (q == 0) {
        c->qos = qos[0] - '0';
    }
    if (!rc) {
        int g = src_url_param(&u, "client_id", c->client_id, sizeof c->client_id);
        if (g < 0 ||
            (g == 0 && (!c->client_id[0] || !utf8_valid(c->client_id, strlen(c->client_id))))) {
            snprintf(err, errcap, "bad value of 'client_id': UTF-8 text of 1 to %zu bytes",
                     sizeof c->client_id - 1);
            rc = ERR_INVAL;
        }
    }
    src_url_free(&u);
    if (rc) {
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static void free_cfg(void *cfg)
{
    free(cfg);
}

static void name_cfg(void *cfgp, const char *source)
{
    mqtt_cfg *cfg = cfgp;
    snprintf(cfg->source, sizeof cfg->source, "%s", source);
}

static const char *delivery(const void *cfgp)
{
    const mqtt_cfg *cfg = cfgp;
    return cfg->qos == 0 ? "at-most-once"
                         : "at-least-once, except a crash of spated loses the batch in flight "
                           "(acknowledged to the broker as it is read)";
}

/* --- Callbacks: they run inside mosquitto_loop, on the source's thread. ------------------- */

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    src_conn *c = obj;
    (void)m, (void)props;
    c->connack = rc;
    c->session_present = flags & 1;
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    src_conn *c = obj;
    (void)m, (void)props;
    if (mid != c->sub_mid) return;
    c->suback = 1;
    if (n < 1 || granted[0] >= 0x80)
        snprintf(c->failed, sizeof c->failed, "the broker refused the subscription to '%.200s': %s",
                 c->cfg->filter, n < 1 ? "no reason" : mosquitto_reason_string(granted[0]));
    else if (granted[0] < c->cfg->qos)
        snprintf(c->failed, sizeof c->failed,
                 "the broker granted QoS %d for '%.200s' where %d was asked", granted[0],
                 c->cfg->filter, c->cfg->qos);
}

static void on_log(struct mosquitto *m, void *obj, int level, const char *line)
{
    src_conn *c = obj;
    (void)m;
    /* OpenSSL's reason first, then "A TLS error occurred": the reason stays. */
    if ((level & MOSQ_LOG_ERR) && strncmp(c->lib_error, "OpenSSL", 7) != 0)
        snprintf(c->lib_error, sizeof c->lib_error, "%s", line);
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    src_conn *c = obj;
    (void)m, (void)props;
    if (!c->failed[0])
        snprintf(c->failed, sizeof c->failed, "the broker closed the connection: %s",
                 rc ? mosquitto_reason_string(rc) : "normal disconnection");
}

/* The message's key: the payload is a JSON object, the key field one of
 * its strings or numbers (the payload stays whole). 0, or the entry is
 * refused. */
static int take_key(src_batch *b, src_entry *e, const struct mosquitto_message *msg,
                    const char *field)
{
    cJSON *doc = cJSON_ParseWithLength(msg->payload ? msg->payload : "", (size_t)msg->payloadlen);
    const cJSON *v = cJSON_IsObject(doc) ? cJSON_GetObjectItemCaseSensitive(doc, field) : NULL;
    char num[64];
    const char *key = NULL;
    if (cJSON_IsString(v))
        key = v->valuestring;
    else if (cJSON_IsNumber(v) && cJSON_PrintPreallocated((cJSON *)v, num, sizeof num, 0))
        key = num;
    int rc = -1;
    if (!cJSON_IsObject(doc))
        src_entry_refuse(e, "the payload is not a JSON object: no key field '%s'", field);
    else if (!key)
        src_entry_refuse(e, "the key field '%s' is missing (or not a string or number)", field);
    else if (strlen(key) > SPATE_KEY_MAX || !utf8_valid(key, strlen(key)))
        src_entry_refuse(e,
                         strlen(key) > SPATE_KEY_MAX ? "the key is over %d bytes"
                                                     : "the key is not valid UTF-8 (max %d bytes)",
                         SPATE_KEY_MAX);
    /* With its NUL: the topic's dispatch hands the key over as a C string. */
    else if ((e->key_at = b->bytes.len, buf_append(&b->bytes, key, strlen(key) + 1)))
        src_entry_refuse(e, "out of memory converting the message");
    else {
        e->key_len = strlen(key);
        e->has_key = 1;
        rc = 0;
    }
    cJSON_Delete(doc);
    return rc;
}

/* Headers: the message's topic (with a wildcard filter, the useful part),
 * whether the broker kept it as retained, and its MQTT 5 user properties
 * (those named as ours are left out). */
static int headers(src_batch *b, src_entry *e, const struct mosquitto_message *msg,
                   const mosquitto_property *props)
{
    if (src_entry_header(b, e, "mqtt-topic", 10, msg->topic, strlen(msg->topic))) return -1;
    if (msg->retain && src_entry_header(b, e, "mqtt-retained", 13, "true", 4)) return -1;
    int first = 1;
    char *name = NULL, *value = NULL;
    for (const mosquitto_property *p = props;
         (p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value,
                                                  !first));
         first = 0) {
        int rc = 0;
        if (strncmp(name, "mqtt-", 5) != 0)
            rc = src_entry_header(b, e, name, strlen(name), value, strlen(value));
        free(name);
        free(value);
        name = value = NULL;
        if (rc) return -1;
    }
    return src_entry_headers_end(b, e);
}

/* Keeps a copy of a message read outside a fetch for the next one. */
static void hold(src_conn *c, const struct mosquitto_message *msg, const mosquitto_property *props)
{
    held *h = calloc(1, sizeof *h);
    if (!h || mosquitto_message_copy(&h->msg, msg) != MOSQ_ERR_SUCCESS ||
        (props && mosquitto_property_copy_all(&h->props, props) != MOSQ_ERR_SUCCESS)) {
        if (h) mosquitto_message_free_contents(&h->msg);
        free(h);
        snprintf(c->failed, sizeof c->failed, "out of memory");
        return;
    }
    *c->held_tail = h;
    c->held_tail = &h->next;
}

static void convert(src_conn *c, const struct mosquitto_message *msg,
                    const mosquitto_property *props);

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    src_conn *c = obj;
    (void)m;
    if (c->out)
        convert(c, msg, props);
    else
        hold(c, msg, props);
}

/* Appends msg to the fetch's batch as an entry (or a refused one). */
static void convert(src_conn *c, const struct mosquitto_message *msg,
                    const mosquitto_property *props)
{
    char id[16];
    int idlen = snprintf(id, sizeof id, "%d", msg->mid);
    src_batch *b = c->out;
    src_entry *e = src_batch_add(b, id, (size_t)idlen);
    if (!e) {
        snprintf(c->failed, sizeof c->failed, "out of memory");
        return;
    }
    size_t start = b->bytes.len;
    if (headers(b, e, msg, props)) {
        b->bytes.len = start;
        e->hdr_len = 0;
        src_entry_refuse(e, "out of memory converting the message");
        return;
    }
    if (e->refused[0]) return;
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    if (len > c->lim->message_max) {
        src_entry_refuse(e, "the message is over the topic's maximum of %zu bytes (%zu bytes)",
                         c->lim->message_max, len);
        return;
    }
    if (c->lim->key_field && c->lim->key_field[0] && take_key(b, e, msg, c->lim->key_field)) return;
    e->data_at = b->bytes.len;
    e->len = len;
    if (len && buf_append(&b->bytes, msg->payload, len)) {
        e->len = 0;
        src_entry_refuse(e, "out of memory converting the message");
    }
}

/* --- The connector ------------------------------------------------------------------------ */

static void disconnect(src_conn *c)
{
    if (!c) return;
    while (c->held) {
        held *h = c->held;
        c->held = h->next;
        mosquitto_message_free_contents(&h->msg);
        mosquitto_property_free_all(&h->props);
        free(h);
    }
    if (c->m) {
        /* A clean DISCONNECT keeps the session (its expiry is not 0). */
        mosquitto_disconnect_v5(c->m, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        mosquitto_destroy(c->m);
    }
    free(c);
}

/* libmosquitto's connect blocks without a timeout (a host that drops SYNs
 * holds the thread for minutes, and a removed source with it): try the
 * address first with one. */
static int reachable(const mqtt_cfg *cfg, char *err, size_t errcap)
{
    char port[8];
    snprintf(port, sizeof port, "%d", cfg->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = getaddrinfo(cfg->host, port, &hints, &ai);
    if (g) {
        snprintf(err, errcap, "cannot connect to %s:%d: %s", cfg->host, cfg->port, gai_strerror(g));
        return ERR_IO;
    }
    int e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int rc = connect(fd, a->ai_addr, a->ai_addrlen);
        if (rc && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int n = poll(&p, 1, SPATE_SOURCE_IO_TIMEOUT_MS);
            socklen_t sl = sizeof e;
            if (n == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 && e == 0)
                rc = 0;
            else if (n == 0)
                e = ETIMEDOUT;
        } else if (rc) {
            e = errno;
        }
        close(fd);
        if (rc == 0) {
            freeaddrinfo(ai);
            return 0;
        }
    }
    freeaddrinfo(ai);
    snprintf(err, errcap, "cannot connect to %s:%d: %s", cfg->host, cfg->port, strerror(e));
    return ERR_IO;
}

static int awaiting_connack(const src_conn *c)
{
    return c->connack < 0;
}

static int awaiting_suback(const src_conn *c)
{
    return !c->session_present && !c->suback;
}

/* Runs the network loop while waiting(c), up to SPATE_SOURCE_IO_TIMEOUT_MS;
 * a broken connection is left in c->failed. */
static void loop_while(src_conn *c, int (*waiting)(const src_conn *))
{
    uint64_t end = clock_mono_ns() + (uint64_t)SPATE_SOURCE_IO_TIMEOUT_MS * 1000000;
    while (waiting(c) && !c->failed[0] && clock_mono_ns() < end) {
        int rc = mosquitto_loop(c->m, 100, 1);
        /* A TLS error's reason is in the library's log (OpenSSL's), not in
         * rc ("A TLS error occurred"): both. */
        int tls = rc == MOSQ_ERR_TLS && c->lib_error[0];
        if (rc != MOSQ_ERR_SUCCESS && !c->failed[0])
            snprintf(c->failed, sizeof c->failed, "%s%s%s%s",
                     rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                     tls ? " (" : "", tls ? c->lib_error : "", tls ? ")" : "");
    }
}

/* TLS with the broker's certificate verified (chain and host name) against
 * t's CA file, or else the system's trust store. */
static int tls_set(struct mosquitto *m, const src_tls *t, char *err, size_t errcap)
{
    int rc = src_tls_check_files(t, err, errcap);
    if (rc) return rc;
    if (!t->ca[0]) mosquitto_int_option(m, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
    int r = mosquitto_tls_set(m, t->ca[0] ? t->ca : NULL, t->ca[0] ? NULL : "/etc/ssl/certs",
                              t->cert[0] ? t->cert : NULL, t->key[0] ? t->key : NULL, NULL);
    if (r == MOSQ_ERR_SUCCESS) r = mosquitto_tls_opts_set(m, 1, NULL, NULL); /* SSL_VERIFY_PEER */
    if (r == MOSQ_ERR_SUCCESS) r = mosquitto_tls_insecure_set(m, false);
    if (r != MOSQ_ERR_SUCCESS) {
        snprintf(err, errcap, "cannot set up TLS: %s", mosquitto_strerror(r));
        return ERR_INVAL;
    }
    return 0;
}

/* Why a TLS connection to the broker fails, from a handshake of our own
 * with the same files (sources/tls_relay.c); "" when it succeeds.
 * libmosquitto logs OpenSSL's reason only when OpenSSL's error queue holds
 * it: a handshake that failed otherwise left "A TLS error occurred" alone
 * (make check saw it for a wrong CA through every retry for 60 s). */
static void tls_why(const mqtt_cfg *cfg, char *out, size_t cap)
{
    src_tls_relay *r = NULL;
    int fd = -1;
    if (src_tls_relay_open(cfg->host, cfg->port, &cfg->tls, SPATE_SOURCE_IO_TIMEOUT_MS, &r, &fd,
                           out, cap) == 0) {
        out[0] = '\0';
        close(fd);
        src_tls_relay_close(r);
    }
}

static int connect_(const void *cfgp, const char *consumer, src_conn **out, char *err,
                    size_t errcap)
{
    const mqtt_cfg *cfg = cfgp;
    pthread_once(&lib_once, lib_init);
    src_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    c->cfg = cfg;
    c->connack = -1;
    c->held_tail = &c->held;
    char id[256];
    if (cfg->client_id[0])
        snprintf(id, sizeof id, "%s", cfg->client_id);
    else
        snprintf(id, sizeof id, "spate-%.120s-%.120s", consumer, cfg->source);
    int rc = reachable(cfg, err, errcap);
    if (rc) {
        free(c);
        return rc;
    }
    /* clean_session false: the broker keeps the session (subscription and
     * queued QoS 1 messages) for this client id while we are away. */
    c->m = mosquitto_new(id, false, c);
    if (!c->m) {
        snprintf(err, errcap, "cannot create the MQTT client: %s", strerror(errno));
        free(c);
        return ERR_NOMEM;
    }
    mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(c->m, MOSQ_OPT_RECEIVE_MAXIMUM, SPATE_SOURCE_MQTT_RECEIVE_MAX);
    mosquitto_connect_v5_callback_set(c->m, on_connect);
    mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
    mosquitto_message_v5_callback_set(c->m, on_message);
    mosquitto_disconnect_v5_callback_set(c->m, on_disconnect);
    mosquitto_log_callback_set(c->m, on_log);
    if (cfg->user[0] || cfg->pass[0])
        mosquitto_username_pw_set(c->m, cfg->user, cfg->pass[0] ? cfg->pass : NULL);
    if (cfg->tls.on && (rc = tls_set(c->m, &cfg->tls, err, errcap)) != 0) {
        disconnect(c);
        return rc;
    }
    mosquitto_property *props = NULL;
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                 SPATE_SOURCE_MQTT_SESSION_S);
    rc = mosquitto_connect_bind_v5(c->m, cfg->host, cfg->port, SPATE_SOURCE_MQTT_KEEPALIVE_S, NULL,
                                   props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        const char *why = c->lib_error;
        char tls[300] = "";
        if (rc == MOSQ_ERR_TLS && strncmp(why, "OpenSSL", 7) != 0) {
            tls_why(cfg, tls, sizeof tls);
            if (tls[0]) why = tls;
        }
        snprintf(err, errcap, "cannot connect to %s:%d: %s%s%s%s", cfg->host, cfg->port,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                 why[0] ? " (" : "", why, why[0] ? ")" : "");
        disconnect(c);
        return ERR_IO;
    }
    /* One packet a call: the loop stops at the CONNACK, the broker's first. */
    loop_while(c, awaiting_connack);
    int connacked = c->connack >= 0;
    if (c->connack > 0) {
        /* Not authorized, bad user name or password...: the broker's reason,
         * never the credentials. */
        snprintf(err, errcap, "the broker refused the connection: %s",
                 mosquitto_reason_string(c->connack));
        rc = ERR_IO;
    } else if (!connacked) {
        const char *why = c->failed[0] ? c->failed : c->lib_error;
        char tls[300] = "";
        if (cfg->tls.on && !strstr(why, "OpenSSL")) tls_why(cfg, tls, sizeof tls);
        snprintf(err, errcap, "no CONNACK from %s:%d%s%s%s%s%s", cfg->host, cfg->port,
                 why[0] ? ": " : " in time", why, tls[0] ? " (" : "", tls, tls[0] ? ")" : "");
        rc = ERR_IO;
    }
    if (!rc) {
        int sr = mosquitto_subscribe_v5(c->m, &c->sub_mid, cfg->filter, cfg->qos,
                                        MQTT_SUB_OPT_SEND_RETAIN_NEW, NULL);
        if (sr != MOSQ_ERR_SUCCESS) {
            snprintf(err, errcap, "cannot subscribe to '%.200s': %s", cfg->filter,
                     mosquitto_strerror(sr));
            rc = ERR_IO;
        }
    }
    /* A new session: wait for the SUBACK, so that what is published once
     * the source shows connected is the source's (no message can come
     * before it). A session the broker kept has its subscription and its
     * queued messages, which may come before the SUBACK: the fetch sees it. */
    if (!rc) loop_while(c, awaiting_suback);
    if (!rc && (c->failed[0] || (!c->session_present && !c->suback))) {
        if (!c->failed[0])
            snprintf(c->failed, sizeof c->failed, "no SUBACK from the broker in time");
        snprintf(err, errcap, "%s", c->failed);
        /* Messages read meanwhile are acknowledged already: handed to the
         * first fetch, which then reports the failure. */
        if (!c->held) rc = ERR_IO;
    }
    if (rc) {
        disconnect(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Moves the messages held since the connect into the fetch's batch. */
static void take_held(src_conn *c, size_t max)
{
    while (c->held && c->out->n < max) {
        held *h = c->held;
        c->held = h->next;
        if (!c->held) c->held_tail = &c->held;
        convert(c, &h->msg, h->props);
        mosquitto_message_free_contents(&h->msg);
        mosquitto_property_free_all(&h->props);
        free(h);
    }
}

/* Reads messages into out until max of them, wait_ms, or no more ready
 * once some came. The SUBACK comes in here too (a refusal drops the
 * connection). What was read is always handed over, even when the
 * connection broke meanwhile: the broker has it acknowledged. */
static int fetch(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms, src_batch *out,
                 char *err, size_t errcap)
{
    uint64_t end = clock_mono_ns() + (uint64_t)wait_ms * 1000000;
    c->out = out;
    c->lim = lim;
    take_held(c, max);
    while (!c->failed[0] && out->n < max) {
        size_t before = out->n;
        uint64_t now = clock_mono_ns();
        if (wait_ms && now >= end) break;
        /* Once some came, a little longer for more: a broker draining a
         * backlog refills the socket within microseconds, and a full batch
         * is one commit instead of many. A wait of 0 only looks for the
         * first. */
        int timeout = before    ? SPATE_SOURCE_MQTT_LINGER_MS
                      : wait_ms ? (int)((end - now) / 1000000) + 1
                                : 0;
        int rc = mosquitto_loop(c->m, timeout, 1);
        if (rc != MOSQ_ERR_SUCCESS && !c->failed[0])
            snprintf(c->failed, sizeof c->failed, "connection lost: %s",
                     rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        /* Nothing more came meanwhile, or nothing was there. */
        if (out->n == before && (before || !wait_ms)) break;
    }
    c->out = NULL;
    c->lim = NULL;
    if (c->failed[0] && out->n == 0) {
        snprintf(err, errcap, "%s", c->failed);
        return ERR_IO;
    }
    return 0;
}

/* Nothing to do: libmosquitto acknowledged each message as it read it. */
static int ack(src_conn *c, const src_batch *b, char *err, size_t errcap)
{
    (void)c, (void)b, (void)err, (void)errcap;
    return 0;
}

const connector connector_mqtt = {
    .scheme = "mqtt",
    .form = "mqtt://[USER:PASS@]HOST:PORT/TOPIC-FILTER?qos=1",
    .parse = parse,
    .free_cfg = free_cfg,
    .connect = connect_,
    .fetch = fetch,
    .ack = ack,
    .lag = NULL,
    .disconnect = disconnect,
    .name_cfg = name_cfg,
    .delivery = delivery,
    .acked_on_fetch = 1,
};
