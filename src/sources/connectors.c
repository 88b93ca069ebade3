/*
 * connectors.c - the connector of a URL's scheme (connector.h).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sources/connector.h"

extern const connector connector_redis;
/* Each in its own file, named strongly: a weak reference would not pull a
 * connector's object out of the static library spated links. */
extern const connector connector_mqtt;
extern const connector connector_nats;
extern const connector connector_amqp;
extern const connector connector_kafka;

/* Each URL scheme and its connector; a connector may answer to several
 * (amqp and amqps). A NULL connector: named in DESIGN.md, not in this build. */
static const struct {
    const char *scheme;
    const connector *c;
} all[] = {{"redis", &connector_redis}, {"rediss", &connector_redis}, {"amqp", &connector_amqp},
           {"amqps", &connector_amqp},  {"kafka", &connector_kafka},  {"nats", &connector_nats},
           {"mqtt", &connector_mqtt},   {"mqtts", &connector_mqtt}};

const connector *connector_for(const char *url, char *err, size_t errcap)
{
    const char *sep = strstr(url, "://");
    size_t len = sep ? (size_t)(sep - url) : 0;
    if (!sep || !len) {
        snprintf(err, errcap, "malformed URL: no scheme (SCHEME://HOST:PORT/...)");
        return NULL;
    }
    char known[128] = "";
    size_t k = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        if (strlen(all[i].scheme) == len && strncasecmp(url, all[i].scheme, len) == 0) {
            if (all[i].c) return all[i].c;
            snprintf(err, errcap, "scheme '%.*s' is not supported by this build of spated",
                     (int)len, url);
            return NULL;
        }
        if (all[i].c && k < sizeof known)
            k +=
                (size_t)snprintf(known + k, sizeof known - k, "%s%s", k ? ", " : "", all[i].scheme);
    }
    snprintf(err, errcap, "unknown scheme '%.*s' (known: %s)", (int)(len > 32 ? 32 : len), url,
             known);
    return NULL;
}
