/*
 * kafka.c - the Kafka connector (librdkafka): a member of a consumer group,
 * committing a batch's offsets only once spate committed the batch.
 *
 *   kafka://[USER:PASS@]HOST:PORT[,HOST:PORT...]/TOPIC?group=G
 *          [&session_timeout_ms=MS][&mechanism=PLAIN|SCRAM-SHA-256|SCRAM-SHA-512]
 *          [&tls=1[&ca=FILE][&cert=FILE&key=FILE]]
 *
 * The high-level consumer subscribes to TOPIC in group G; the brokers spread
 * the partitions over the group's members (every node running the source).
 * Offsets are never committed by librdkafka itself (enable.auto.commit and
 * enable.auto.offset.store are off): ack commits, synchronously, each
 * partition's last offset in the batch plus one. Whatever was fetched and
 * not committed (spated died, the publish failed, the partition moved to
 * another member) is read again from the last commit by whoever holds the
 * partition next: at least once, the duplicates being what was in flight.
 * A group with no commit starts at the partitions' beginning
 * (auto.offset.reset=earliest), so a new source drains what the topic holds.
 *
 * The lag is computed without asking the brokers (the high watermark of the
 * last fetch response minus what was committed here), and a stop leaves
 * the group for SPATE_SOURCE_KAFKA_CLOSE_MS at most: nothing on the
 * source's thread waits long on a broker that does not answer, so errors
 * (all brokers down) are served by the next poll and a stop stays prompt.
 *
 * With USER:PASS the connection authenticates with SASL (PLAIN unless
 * mechanism says otherwise); tls=1 makes it SASL_SSL (SSL without a user),
 * the brokers' certificates verified (chain and host name).
 */
#include <ctype.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/utf8.h"
#include "sources/connector.h"
#include "sources/tls.h"

typedef struct kafka_cfg {
    char brokers[SPATE_SOURCE_URL_MAX + 1]; /* HOST:PORT,... for bootstrap.servers */
    char user[256];
    char pass[256];
    char mechanism[32];
    char topic[512]; /* src_url's path: checked to be at most 249 bytes */
    char group[256];
    int session_ms; /* 0: librdkafka's default */
    src_tls tls;
} kafka_cfg;

struct src_conn {
    rd_kafka_t *rk;
    const kafka_cfg *cfg;
    /* Set by the error callback (served on the source's thread, inside
     * rd_kafka_consumer_poll): the consumer cannot go on, fetch says why. */
    int broken;
    char why[256];
    /* The last error the client reported, fatal or not: a broker that
     * cannot be reached over TLS is only "transport failure" in the
     * metadata's answer, and "SSL handshake failed: ..." here. */
    char last[256];
    /* What this consumer committed, per partition: the lag counts from it
     * (no round trip to the coordinator on the source's thread). */
    rd_kafka_topic_partition_list_t *done;
};

static const char *const mechanisms[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};

/* One HOST[:PORT] of the broker list, checked by the shared URL parser and
 * appended to out as HOST:PORT (an IPv6 host in brackets). */
static int add_broker(const char *s, size_t len, char *out, size_t cap, char *err, size_t errcap)
{
    char one[600];
    if (len == 0 || len > 512) {
        snprintf(err, errcap, "malformed URL: an empty or overlong broker in the list");
        return ERR_INVAL;
    }
    snprintf(one, sizeof one, "kafka://%.*s/", (int)len, s);
    src_url u;
    int rc = src_url_parse(one, &u, err, errcap);
    if (rc) return rc;
    int v6 = strchr(u.host, ':') != NULL;
    size_t at = strlen(out);
    int n = snprintf(out + at, cap - at, "%s%s%s%s:%d", at ? "," : "", v6 ? "[" : "", u.host,
                     v6 ? "]" : "", u.port ? u.port : 9092);
    src_url_free(&u);
    if (n < 0 || (size_t)n >= cap - at) {
        snprintf(err, errcap, "malformed URL: the broker list is too long");
        return ERR_INVAL;
    }
    return 0;
}

/* A legal Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ - */
static int topic_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)t[i]) && !strchr("._-", t[i])) return 0;
    return 1;
}

static int parse(const char *url, void **out, char *err, size_t errcap)
{
    const char *sep = strstr(url, "://");
    if (!sep || strlen(url) > SPATE_SOURCE_URL_MAX) {
        snprintf(err, errcap, "malformed URL: no scheme, or longer than %d bytes",
                 SPATE_SOURCE_URL_MAX);
        return ERR_INVAL;
    }
    const char *auth = sep + 3;
    const char *end = auth + strcspn(auth, "/?#");
    const char *hosts = auth;
    for (const char *p = auth; p < end; p++)
        if (*p == '@') hosts = p + 1;
    kafka_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    /* Each broker of the list on its own, then the URL with the first one
     * only (src_url takes one HOST:PORT) for the rest. */
    int rc = 0, count = 0;
    const char *first_end = end;
    for (const char *p = hosts; !rc && p <= end;) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        if (p == hosts) first_end = e;
        if (++count > SPATE_SOURCE_KAFKA_BROKERS_MAX) {
            snprintf(err, errcap, "malformed URL: more than %d brokers",
                     SPATE_SOURCE_KAFKA_BROKERS_MAX);
            rc = ERR_INVAL;
            break;
        }
        rc = add_broker(p, (size_t)(e - p), c->brokers, sizeof c->brokers, err, errcap);
        p = e + 1;
    }
    src_url u = {0};
    if (!rc) {
        char *one = malloc(strlen(url) + 1);
        if (!one) {
            snprintf(err, errcap, "out of memory");
            rc = ERR_NOMEM;
        } else {
            snprintf(one, strlen(url) + 1, "%.*s%s", (int)(first_end - url), url, end);
            rc = src_url_parse(one, &u, err, errcap);
            free(one);
        }
    }
    static const char *const known[] = {"group", "session_timeout_ms", "mechanism", SRC_TLS_KEYS,
                                        NULL};
    if (!rc) rc = src_url_check_keys(&u, known, err, errcap);
    if (!rc) rc = src_tls_parse(&u, 0, &c->tls, err, errcap);
    if (!rc) {
        snprintf(c->user, sizeof c->user, "%s", u.user);
        snprintf(c->pass, sizeof c->pass, "%s", u.pass);
        snprintf(c->topic, sizeof c->topic, "%s", u.path);
        if (!u.path[0]) {
            snprintf(err, errcap,
                     "missing topic: the URL's path names it (kafka://HOST:PORT/TOPIC?group=G)");
            rc = ERR_INVAL;
        } else if (!topic_ok(u.path)) {
            snprintf(err, errcap,
                     "malformed URL: a Kafka topic name is 1 to 249 of a-z A-Z 0-9 . _ -");
            rc = ERR_INVAL;
        }
    }
    if (!rc) {
        int g = src_url_param(&u, "group", c->group, sizeof c->group);
        if (g != 0 || !c->group[0]) {
            snprintf(err, errcap,
                     g < 0 ? "malformed URL: bad value of 'group'"
                           : "missing group: give the consumer group "
                             "(kafka://HOST:PORT/TOPIC?group=G)");
            rc = ERR_INVAL;
        }
    }
    char v[32];
    if (!rc) {
        int s = src_url_param(&u, "session_timeout_ms", v, sizeof v);
        char *e = NULL;
        long ms = s == 0 ? strtol(v, &e, 10) : 0;
        if (s < 0 || (s == 0 && (!v[0] || *e || ms < SPATE_SOURCE_KAFKA_SESSION_MIN_MS ||
                                 ms > SPATE_SOURCE_KAFKA_SESSION_MAX_MS))) {
            snprintf(err, errcap, "bad value of 'session_timeout_ms': a number of ms from %d to %d",
                     SPATE_SOURCE_KAFKA_SESSION_MIN_MS, SPATE_SOURCE_KAFKA_SESSION_MAX_MS);
            rc = ERR_INVAL;
        }
        c->session_ms = (int)ms;
    }
    if (!rc) {
        int s = src_url_param(&u, "mechanism", c->mechanism, sizeof c->mechanism);
        int ok = s == 1;
        for (const char *const *m = mechanisms; s == 0 && *m; m++)
            ok |= strcmp(*m, c->mechanism) == 0;
        if (!ok) {
            snprintf(err, errcap,
                     "bad value of 'mechanism': PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512");
            rc = ERR_INVAL;
        } else if (s == 0 && !c->user[0]) {
            snprintf(err, errcap, "'mechanism' needs a user and password in the URL");
            rc = ERR_INVAL;
        }
        if (s == 1) snprintf(c->mechanism, sizeof c->mechanism, "PLAIN");
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

/* librdkafka's own log lines (its threads), with the topic and group: they
 * name brokers, never the credentials (those only under debug=conf, never
 * set). */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *msg)
{
    const src_conn *c = rd_kafka_opaque(rk);
    const char *topic = c ? c->cfg->topic : "?", *group = c ? c->cfg->group : "?";
    if (level <= 4)
        log_warn("kafka %s (group %s): %s: %s", topic, group, fac, msg);
    else
        log_debug("kafka %s (group %s): %s: %s", topic, group, fac, msg);
}

/* Errors the client reports outside a message: most are transient (it
 * retries by itself); a fatal one, or every broker down, ends the
 * connection so that the source shows why and reconnects with back-off. */
static void on_error(rd_kafka_t *rk, int code, const char *reason, void *opaque)
{
    src_conn *c = opaque;
    char fatal[256] = "";
    if (code == RD_KAFKA_RESP_ERR__FATAL) rd_kafka_fatal_error(rk, fatal, sizeof fatal);
    if (code != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        snprintf(c->last, sizeof c->last, "%s", fatal[0] ? fatal : reason);
    if (code == RD_KAFKA_RESP_ERR__FATAL || code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
        code == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        c->broken = 1;
        snprintf(c->why, sizeof c->why, "%s", fatal[0] ? fatal : reason);
    }
}

static void partitions_text(const rd_kafka_topic_partition_list_t *l, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < l->cnt && at < cap; i++)
        at += (size_t)snprintf(out + at, cap - at, "%s%d", i ? "," : "", l->elems[i].partition);
    if (!l->cnt) snprintf(out, cap, "none");
}

/* Rebalances (served inside rd_kafka_consumer_poll, on the source's
 * thread). On a revoke librdkafka drops what it prefetched for those
 * partitions; their next owner starts from the last commit, so nothing
 * fetched and not committed here is lost (ack commits only partitions still
 * assigned). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    src_conn *c = opaque;
    char list[256];
    partitions_text(parts, list, sizeof list);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_info("kafka %s (group %s): partitions %s assigned", c->cfg->topic, c->cfg->group, list);
        rd_kafka_assign(rk, parts);
    } else {
        log_info("kafka %s (group %s): partitions %s revoked", c->cfg->topic, c->cfg->group, list);
        rd_kafka_assign(rk, NULL);
        /* Others may commit there now: the lag counts from the position
         * again until this consumer commits. */
        if (c->done) rd_kafka_topic_partition_list_destroy(c->done);
        c->done = NULL;
    }
}

/* Leaves the group, so that the others take the partitions now rather than
 * after the session timeout; but for SPATE_SOURCE_KAFKA_CLOSE_MS at most: a
 * coordinator that does not answer would hold rd_kafka_consumer_close (and
 * spated's stop) for the whole session timeout. */
static void disconnect(src_conn *c)
{
    if (!c) return;
    if (c->rk) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
        rd_kafka_error_t *e = rd_kafka_consumer_close_queue(c->rk, q);
        if (e) {
            rd_kafka_error_destroy(e);
        } else {
            uint64_t deadline = clock_mono_ns() + (uint64_t)SPATE_SOURCE_KAFKA_CLOSE_MS * 1000000;
            /* Serves the revoke (on_rebalance) while the group is left. */
            while (!rd_kafka_consumer_closed(c->rk) && clock_mono_ns() < deadline)
                rd_kafka_queue_poll_callback(q, 100);
        }
        rd_kafka_queue_destroy(q);
        rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    }
    if (c->done) rd_kafka_topic_partition_list_destroy(c->done);
    free(c);
}

static int set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err, size_t errcap)
{
    char why[256];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) == RD_KAFKA_CONF_OK) return 0;
    /* The value is not quoted: it may be the password. */
    snprintf(err, errcap, "cannot set the Kafka client's %s: %s", name, why);
    return ERR_INVAL;
}

/* SSL with the brokers' certificates verified, chain and host name
 * (librdkafka's defaults, set again so that they cannot drift), against
 * the CA file or else the system's trust store (OpenSSL's default paths). */
static int tls_conf(rd_kafka_conf_t *conf, const src_tls *t, char *err, size_t errcap)
{
    int rc = src_tls_check_files(t, err, errcap);
    if (!rc) rc = set(conf, "enable.ssl.certificate.verification", "true", err, errcap);
    if (!rc) rc = set(conf, "ssl.endpoint.identification.algorithm", "https", err, errcap);
    if (!rc && t->ca[0]) rc = set(conf, "ssl.ca.location", t->ca, err, errcap);
    if (!rc && t->cert[0])
        rc = set(conf, "ssl.certificate.location", t->cert, err, errcap) ||
             set(conf, "ssl.key.location", t->key, err, errcap);
    return rc;
}

static int connect_(const void *cfgp, const char *consumer, src_conn **out, char *err,
                    size_t errcap)
{
    const kafka_cfg *cfg = cfgp;
    src_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    c->cfg = cfg;
    char kb[24], msgs[24], session[24], heartbeat[24];
    snprintf(kb, sizeof kb, "%d", SPATE_SOURCE_KAFKA_QUEUE_KB);
    snprintf(msgs, sizeof msgs, "%d", SPATE_SOURCE_KAFKA_QUEUE_MSGS);
    snprintf(session, sizeof session, "%d", cfg->session_ms);
    snprintf(heartbeat, sizeof heartbeat, "%d",
             cfg->session_ms / 3 < 3000 ? cfg->session_ms / 3 : 3000);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int rc = set(conf, "bootstrap.servers", cfg->brokers, err, errcap) ||
             set(conf, "group.id", cfg->group, err, errcap) ||
             set(conf, "client.id", consumer, err, errcap) ||
             set(conf, "enable.auto.commit", "false", err, errcap) ||
             set(conf, "enable.auto.offset.store", "false", err, errcap) ||
             set(conf, "auto.offset.reset", "earliest", err, errcap) ||
             set(conf, "queued.max.messages.kbytes", kb, err, errcap) ||
             set(conf, "queued.min.messages", msgs, err, errcap);
    if (!rc && cfg->session_ms)
        rc = set(conf, "session.timeout.ms", session, err, errcap) ||
             set(conf, "heartbeat.interval.ms", heartbeat, err, errcap);
    const char *protocol = cfg->user[0] ? (cfg->tls.on ? "sasl_ssl" : "sasl_plaintext")
                                        : (cfg->tls.on ? "ssl" : "plaintext");
    if (!rc) rc = set(conf, "security.protocol", protocol, err, errcap);
    if (!rc && cfg->tls.on) rc = tls_conf(conf, &cfg->tls, err, errcap);
    if (!rc && cfg->user[0])
        rc = set(conf, "sasl.mechanisms", cfg->mechanism, err, errcap) ||
             set(conf, "sasl.username", cfg->user, err, errcap) ||
             set(conf, "sasl.password", cfg->pass, err, errcap);
    if (rc) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return ERR_INVAL;
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_opaque(conf, c);
    char why[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errcap, "cannot create the Kafka consumer: %s", why);
        free(c);
        return ERR_INVAL;
    }
    rd_kafka_poll_set_consumer(c->rk);
    /* The brokers answer and know the topic, or the source backs off and
     * says why (subscribing would wait quietly). */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t = rd_kafka_topic_new(c->rk, cfg->topic, NULL);
    rd_kafka_resp_err_t e =
        t ? rd_kafka_metadata(c->rk, 0, t, &md, SPATE_SOURCE_IO_TIMEOUT_MS) : rd_kafka_last_error();
    if (t) rd_kafka_topic_destroy(t);
    if (e || !md || md->topic_cnt != 1 || md->topics[0].err) {
        /* The client's errors so far (on_error), for why. */
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (m) rd_kafka_message_destroy(m);
        if (e || !md || md->topic_cnt != 1)
            snprintf(err, errcap, "cannot reach the Kafka brokers %s: %s%s%s%s", cfg->brokers,
                     c->broken ? c->why : rd_kafka_err2str(e), c->last[0] ? " (" : "", c->last,
                     c->last[0] ? ")" : "");
        else if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            snprintf(err, errcap, "the brokers %s have no topic '%s'", cfg->brokers, cfg->topic);
        else
            snprintf(err, errcap, "topic '%s': %s", cfg->topic,
                     rd_kafka_err2str(md->topics[0].err));
        if (md) rd_kafka_metadata_destroy(md);
        rd_kafka_destroy(c->rk);
        free(c);
        return ERR_IO;
    }
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, cfg->topic, RD_KAFKA_PARTITION_UA);
    e = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        snprintf(err, errcap, "cannot subscribe to '%s': %s", cfg->topic, rd_kafka_err2str(e));
        disconnect(c);
        return ERR_IO;
    }
    *out = c;
    return 0;
}

/* One Kafka message as an entry: id PARTITION:OFFSET (what ack commits),
 * the message key as the spate key unless a key field is asked for, the
 * timestamp and headers as attributes. */
static int convert(src_batch *b, const rd_kafka_message_t *m, const src_limits *lim)
{
    char id[48];
    int n = snprintf(id, sizeof id, "%d:%lld", (int)m->partition, (long long)m->offset);
    src_entry *e = src_batch_add(b, id, (size_t)n);
    if (!e) return -1;
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    e->ts_ms = tstype != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts > 0 ? ts : 0;
    if (m->len > lim->message_max) {
        src_entry_refuse(e, "the message is %zu bytes, over the topic's maximum of %zu", m->len,
                         lim->message_max);
        return 0;
    }
    e->data_at = b->bytes.len;
    e->len = m->len;
    if (m->len && buf_append(&b->bytes, m->payload, m->len) != 0) return -1;
    if (lim->key_field && lim->key_field[0]) {
        if (src_entry_json_key(b, e, lim->key_field) != 0) return -1;
    } else if (m->key) {
        if (m->key_len > SPATE_KEY_MAX || !utf8_valid(m->key, m->key_len)) {
            src_entry_refuse(e, "the message key is over %d bytes or not valid UTF-8",
                             SPATE_KEY_MAX);
            return 0;
        }
        e->key_at = b->bytes.len;
        e->key_len = m->key_len;
        e->has_key = 1;
        /* NUL-terminated, as the queue copies keys (key_len + 1 bytes). */
        if (buf_append(&b->bytes, m->key, m->key_len) != 0 || buf_append(&b->bytes, "", 1) != 0)
            return -1;
    }
    if (e->refused[0]) return 0;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h) {
        const char *name;
        const void *val;
        size_t vlen;
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &vlen) == 0; i++)
            if (src_entry_header(b, e, name, strlen(name), val ? val : "", val ? vlen : 0) != 0)
                return -1;
        if (src_entry_headers_end(b, e) != 0) return -1;
    }
    return 0;
}

static int fetch(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms, src_batch *out,
                 char *err, size_t errcap)
{
    uint64_t deadline = clock_mono_ns() + (uint64_t)wait_ms * 1000000;
    size_t start = out->n;
    while (out->n - start < max) {
        /* Waits for the first message only: then takes what is already
         * here, so a batch never waits to fill. */
        uint64_t now = clock_mono_ns();
        int timeout = out->n > start || now >= deadline ? 0 : (int)((deadline - now) / 1000000) + 1;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, timeout);
        if (c->broken) {
            if (m) rd_kafka_message_destroy(m);
            snprintf(err, errcap, "kafka: %s", c->why);
            return ERR_IO;
        }
        if (!m) {
            if (out->n > start || clock_mono_ns() >= deadline) break;
            continue;
        }
        if (m->err) {
            rd_kafka_resp_err_t e = m->err;
            int32_t p = m->partition;
            rd_kafka_message_destroy(m);
            /* Left the group for polling too late (a publish waited long on
             * the store): it rejoins by itself; what it held is read again. */
            if (e == RD_KAFKA_RESP_ERR__PARTITION_EOF || e == RD_KAFKA_RESP_ERR__MAX_POLL_EXCEEDED)
                continue;
            snprintf(err, errcap, "kafka: topic '%s' partition %d: %s", c->cfg->topic, (int)p,
                     rd_kafka_err2str(e));
            return ERR_IO;
        }
        int rc = convert(out, m, lim);
        rd_kafka_message_destroy(m);
        if (rc) {
            snprintf(err, errcap, "out of memory");
            return ERR_NOMEM;
        }
    }
    return 0;
}

static int assigned(const rd_kafka_topic_partition_list_t *l, int32_t p)
{
    for (int i = 0; l && i < l->cnt; i++)
        if (l->elems[i].partition == p) return 1;
    return 0;
}

/* Commits, per partition, the batch's last offset plus one: spate holds all
 * before it. A partition revoked since the fetch is left out: its new owner
 * reads it again from the last commit (duplicates, never a gap; a commit
 * from here would only move its offset under the new owner). */
static int ack(src_conn *c, const src_batch *b, char *err, size_t errcap)
{
    rd_kafka_topic_partition_list_t *mine = NULL;
    if (rd_kafka_assignment(c->rk, &mine) != RD_KAFKA_RESP_ERR_NO_ERROR) mine = NULL;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    int dropped = 0;
    for (size_t i = 0; i < b->n; i++) {
        int p;
        long long off;
        if (sscanf(b->e[i].id, "%d:%lld", &p, &off) != 2) continue;
        if (!assigned(mine, p)) {
            dropped = 1;
            continue;
        }
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(l, c->cfg->topic, p);
        if (!tp) tp = rd_kafka_topic_partition_list_add(l, c->cfg->topic, p);
        if (tp->offset < off + 1) tp->offset = off + 1;
    }
    if (mine) rd_kafka_topic_partition_list_destroy(mine);
    if (dropped)
        log_info("kafka %s (group %s): a batch's partition was revoked before spate committed "
                 "it: its new owner reads it again from the last commit",
                 c->cfg->topic, c->cfg->group);
    rd_kafka_resp_err_t e = l->cnt ? rd_kafka_commit(c->rk, l, 0) : RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; !e && i < l->cnt; i++) e = l->elems[i].err;
    for (int i = 0; !e && i < l->cnt; i++) {
        if (!c->done) c->done = rd_kafka_topic_partition_list_new(l->cnt);
        rd_kafka_topic_partition_t *d =
            rd_kafka_topic_partition_list_find(c->done, c->cfg->topic, l->elems[i].partition);
        if (!d)
            d = rd_kafka_topic_partition_list_add(c->done, c->cfg->topic, l->elems[i].partition);
        d->offset = l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return 0;
    if (e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS || e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
        e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID) {
        /* The group moved on while the batch was published: the partitions'
         * next owners (maybe this node again) read from the last commit. */
        log_info("kafka %s (group %s): offsets not committed (%s): read again after the "
                 "rebalance",
                 c->cfg->topic, c->cfg->group, rd_kafka_err2str(e));
        return 0;
    }
    snprintf(err, errcap, "kafka: cannot commit offsets: %s", rd_kafka_err2str(e));
    return ERR_IO;
}

/* The group's lag on this node's partitions: each one's high watermark, as
 * the last fetch response told it, minus what this consumer committed there
 * (or, before its first commit, its position: what it started from plus
 * what it fetched). No request to the brokers: the source's thread must not
 * wait on them here. -1 when unknown (no partition yet, or no fetch answered
 * yet). */
static int64_t lag(src_conn *c)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    if (rd_kafka_assignment(c->rk, &l) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
    int64_t sum = l->cnt && rd_kafka_position(c->rk, l) == 0 ? 0 : -1;
    for (int i = 0; sum >= 0 && i < l->cnt; i++) {
        int64_t lo = -1, hi = -1;
        const rd_kafka_topic_partition_t *d =
            c->done
                ? rd_kafka_topic_partition_list_find(c->done, c->cfg->topic, l->elems[i].partition)
                : NULL;
        int64_t from = d ? d->offset : l->elems[i].offset;
        rd_kafka_get_watermark_offsets(c->rk, c->cfg->topic, l->elems[i].partition, &lo, &hi);
        if (from < 0) /* nothing fetched yet: from the start */
            from = lo >= 0 ? lo : hi == 0 ? 0 : -1;
        if (hi < 0 || from < 0) {
            sum = -1;
            break;
        }
        sum += hi > from ? hi - from : 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return sum;
}

/* In a cluster every node joins the consumer group: the brokers spread the
 * partitions over them. */
static int in_group(const void *cfg)
{
    (void)cfg;
    return 1;
}

const connector connector_kafka = {
    .scheme = "kafka",
    .form = "kafka://HOST:PORT[,HOST:PORT...]/TOPIC?group=G",
    .parse = parse,
    .free_cfg = free_cfg,
    .connect = connect_,
    .fetch = fetch,
    .ack = ack,
    .lag = lag,
    .disconnect = disconnect,
    .group = in_group,
};
