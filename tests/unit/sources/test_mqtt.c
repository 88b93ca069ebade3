/* Unit tests of sources/mqtt.c without a broker: the URL (topic filter,
 * qos, client id, what is refused), what status says it delivers, and a
 * message as the library hands it over turned into an entry (id, payload,
 * key field, headers, refusals). */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "sources/mqtt.c"
#include "sources/sources.h"
#include "test.h"

static mqtt_cfg *parsed(const char *url)
{
    char err[256];
    void *cfg = NULL;
    int rc = parse(url, &cfg, err, sizeof err);
    if (rc) fprintf(stderr, "%s: %s\n", url, err);
    return rc ? NULL : cfg;
}

/* The 400's message for url, which must be refused. */
static const char *refusal(const char *url)
{
    static char err[256];
    void *cfg = NULL;
    err[0] = '\0';
    if (parse(url, &cfg, err, sizeof err) == 0) {
        free_cfg(cfg);
        return "(accepted)";
    }
    return err;
}

static void urls(void)
{
    mqtt_cfg *c = parsed("mqtt://us%40er:p%3Ass@broker:1884/plant/%2B/temp?client_id=c-1");
    CHECK(c != NULL);
    CHECK_STR(c->host, "broker");
    CHECK_INT(c->port, 1884);
    CHECK_STR(c->user, "us@er");
    CHECK_STR(c->pass, "p:ss");
    CHECK_STR(c->filter, "plant/+/temp");
    CHECK_INT(c->qos, 1);
    CHECK_STR(c->client_id, "c-1");
    free_cfg(c);
    c = parsed("mqtt://h/a/+/%23?qos=0");
    CHECK(c != NULL);
    CHECK_INT(c->port, 1883);
    CHECK_STR(c->filter, "a/+/#");
    CHECK_INT(c->qos, 0);
    CHECK_STR(delivery(c), "at-most-once");
    name_cfg(c, "src");
    CHECK_STR(c->source, "src");
    free_cfg(c);
    c = parsed("MQTT://h/%23?qos=1");
    CHECK(c != NULL);
    CHECK(strncmp(delivery(c), "at-least-once", 13) == 0);
    free_cfg(c);

    CHECK(strstr(refusal("mqtt://h:1883"), "missing topic filter") != NULL);
    CHECK(strstr(refusal("mqtt://h/"), "missing topic filter") != NULL);
    CHECK(strstr(refusal("mqtt://h/a/%23/b"), "malformed topic filter") != NULL);
    CHECK(strstr(refusal("mqtt://h/a+"), "malformed topic filter") != NULL);
    CHECK(strstr(refusal("mqtt://h/a?qos=2"), "bad value of 'qos'") != NULL);
    CHECK(strstr(refusal("mqtt://h/a?qos="), "bad value of 'qos'") != NULL);
    CHECK(strstr(refusal("mqtt://h/a?qos=01"), "bad value of 'qos'") != NULL);
    CHECK(strstr(refusal("mqtt://h/a?client_id="), "bad value of 'client_id'") != NULL);
    CHECK(strstr(refusal("mqtt://h/a?client_id=%ff"), "bad value of 'client_id'") != NULL);
    CHECK(strstr(refusal("mqtt://h/a?group=g"), "unknown URL parameter 'group'") != NULL);
    CHECK(strstr(refusal("mqtts://h/a?tls=0"), "contradicts the scheme") != NULL);
    CHECK(strstr(refusal("mqtt://h/a?key=/k.pem"), "are for TLS") != NULL);
    CHECK(strstr(refusal("mqtt://h/a#b"), "fragment") != NULL);

    /* Through the connector table, and shown redacted. */
    char err[256], out[256];
    CHECK(connector_for("mqtt://h/a", err, sizeof err) == &connector_mqtt);
    sources_url_redact("mqtt://user:secret@h:1883/a/%23?qos=1", out, sizeof out);
    CHECK_STR(out, "mqtt://user:***@h:1883/a/%23?qos=1");
}

static cJSON *headers_of(const src_batch *b, const src_entry *e)
{
    return cJSON_ParseWithLength(b->bytes.data + e->hdr_at, e->hdr_len);
}

static void messages(void)
{
    mqtt_cfg cfg = {.qos = 1};
    src_batch b;
    src_batch_init(&b);
    src_limits lim = {.message_max = 64, .key_field = ""};
    src_conn c = {.cfg = &cfg, .out = &b, .lim = &lim};
    mosquitto_property *props = NULL;
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "trace", "t-1");
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "mqtt-topic", "fake");
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "zone", "eu");
    char payload[] = "hello";
    struct mosquitto_message msg = {
        .mid = 42, .topic = "plant/7/temp", .payload = payload, .payloadlen = 5, .qos = 1};
    on_message(NULL, &c, &msg, props);
    CHECK_INT((int)b.n, 1);
    src_entry *e = &b.e[0];
    CHECK_STR(e->id, "42");
    CHECK(!e->refused[0]);
    CHECK_INT((int)e->len, 5);
    CHECK(memcmp(b.bytes.data + e->data_at, "hello", 5) == 0);
    CHECK(!e->has_key && e->ts_ms == 0 && !e->redelivered);
    cJSON *h = headers_of(&b, e);
    CHECK(h != NULL);
    CHECK_STR(cJSON_GetObjectItem(h, "mqtt-topic")->valuestring, "plant/7/temp");
    CHECK_STR(cJSON_GetObjectItem(h, "trace")->valuestring, "t-1");
    CHECK_STR(cJSON_GetObjectItem(h, "zone")->valuestring, "eu");
    CHECK(cJSON_GetObjectItem(h, "mqtt-retained") == NULL);
    CHECK_INT(cJSON_GetArraySize(h), 3);
    cJSON_Delete(h);

    /* Retained, and over the topic's maximum: refused, the stream goes on. */
    char big[100];
    memset(big, 'x', sizeof big);
    struct mosquitto_message large = {
        .mid = 43, .topic = "t", .payload = big, .payloadlen = sizeof big, .retain = 1};
    on_message(NULL, &c, &large, NULL);
    CHECK(strstr(b.e[1].refused, "over the topic's maximum of 64 bytes") != NULL);

    /* The key field of a JSON object; a payload that is not one is refused. */
    lim.key_field = "acct";
    char j1[] = "{\"acct\":\"a1\",\"v\":1}", j2[] = "{\"acct\":12}", j3[] = "[1]",
         j4[] = "{\"v\":1}";
    struct mosquitto_message k = {.mid = 44, .topic = "t", .payload = j1, .payloadlen = 19};
    on_message(NULL, &c, &k, NULL);
    CHECK(!b.e[2].refused[0]);
    CHECK(b.e[2].has_key && b.e[2].key_len == 2);
    CHECK_STR(b.bytes.data + b.e[2].key_at, "a1"); /* NUL-terminated */
    CHECK_INT((int)b.e[2].len, 19);
    k.payload = j2, k.payloadlen = (int)strlen(j2);
    on_message(NULL, &c, &k, NULL);
    CHECK_STR(b.bytes.data + b.e[3].key_at, "12");
    k.payload = j3, k.payloadlen = (int)strlen(j3);
    on_message(NULL, &c, &k, NULL);
    CHECK(strstr(b.e[4].refused, "not a JSON object") != NULL);
    k.payload = j4, k.payloadlen = (int)strlen(j4);
    on_message(NULL, &c, &k, NULL);
    CHECK(strstr(b.e[5].refused, "key field 'acct' is missing") != NULL);
    k.payload = NULL, k.payloadlen = 0;
    on_message(NULL, &c, &k, NULL);
    CHECK(b.e[6].refused[0]);

    /* Outside a fetch: held, and the next fetch takes it first. */
    lim.key_field = "";
    src_batch_reset(&b);
    c.out = NULL;
    c.held_tail = &c.held;
    on_message(NULL, &c, &msg, props);
    CHECK(c.held != NULL);
    CHECK_INT((int)b.n, 0);
    c.out = &b;
    take_held(&c, 10);
    CHECK(c.held == NULL && c.held_tail == &c.held);
    CHECK_INT((int)b.n, 1);
    CHECK_STR(b.e[0].id, "42");
    mosquitto_property_free_all(&props);
    src_batch_free(&b);
}

int main(void)
{
    RUN(urls);
    RUN(messages);
    return TEST_RESULT();
}
