/*
 * connectors.c - the connector of a URL's scheme (connector.h).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sources/connector.h"

extern const connector connector_redis;

static const connector *const all[] = {&connector_redis};

/* Named in DESIGN.md, not built yet: a clear refusal rather than "unknown". */
static const char *const later[] = {"amqp", "amqps", "kafka", "nats", "mqtt", "mqtts"};

const connector *connector_for(const char *url, char *err, size_t errcap)
{
    const char *sep = strstr(url, "://");
    size_t len = sep ? (size_t)(sep - url) : 0;
    if (!sep || !len) {
        snprintf(err, errcap, "malformed URL: no scheme (SCHEME://HOST:PORT/...)");
        return NULL;
    }
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strlen(all[i]->scheme) == len && strncasecmp(url, all[i]->scheme, len) == 0)
            return all[i];
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        if (strlen(later[i]) == len && strncasecmp(url, later[i], len) == 0) {
            snprintf(err, errcap,
                     "scheme '%.*s' is not supported yet: this spated drains redis:// only",
                     (int)len, url);
            return NULL;
        }
    snprintf(err, errcap, "unknown scheme '%.*s' (known: redis)", (int)(len > 32 ? 32 : len), url);
    return NULL;
}
