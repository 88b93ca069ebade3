/*
 * redis.c - the Redis Streams connector (hiredis): a consumer group read
 * with XREADGROUP, entries acknowledged with XACK once spate committed them.
 *
 *   redis://[USER:PASS@]HOST[:PORT]/STREAM?group=G[&consumer=C]
 *   rediss://... [&ca=FILE][&cert=FILE&key=FILE]   (TLS)
 *
 * Debian 12's hiredis (0.14) has no TLS: rediss:// goes through a TLS
 * relay (tls_relay.h), hiredis speaking to it over a socketpair.
 *
 * The group is created (at the stream's start, MKSTREAM) when missing, so a
 * new source drains what the stream already holds. After every (re)connect
 * the consumer first reads its own pending entries (XREADGROUP ... 0): what
 * it fetched before and never acked (spated died, the publish failed, the
 * connection broke) comes again. Every SPATE_SOURCE_CLAIM_EVERY_MS it claims
 * (XAUTOCLAIM, Redis >= 6.2) the entries another consumer of the group has
 * held longer than SPATE_SOURCE_CLAIM_IDLE_MS (a dead node's) and reads them
 * as its own pending ones.
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/fmt.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/utf8.h"
#include "sources/connector.h"
#include "sources/tls.h"
#include "sources/tls_relay.h"

typedef struct redis_cfg {
    char host[256];
    int port;
    char user[256];
    char pass[256];
    char stream[512];
    char group[256];
    char consumer[256]; /* "": the node's */
    src_tls tls;
} redis_cfg;

struct src_conn {
    redisContext *c;
    src_tls_relay *relay; /* rediss: hiredis's socket leads to it */
    const redis_cfg *cfg;
    char consumer[256];
    /* Reading our own pending entries, from after this id; "" once there
     * are none left and new ones (">") are read. */
    char pending_after[64];
    int pending;
    uint64_t last_claim_ns;
    /* The ids fetched on this connection and not yet acked: the batch being
     * committed and the one fetched ahead (sources.c). A claim takes them
     * too once idle long (a store refusing for minutes) and has our pending
     * entries read again from the start: these are skipped, not published
     * twice. Acks come in the order of the fetches. */
    char (*unacked)[64];
    size_t n_unacked, cap_unacked;
};

static int parse(const char *url, void **out, char *err, size_t errcap)
{
    src_url u;
    int rc = src_url_parse(url, &u, err, errcap);
    if (rc) return rc;
    static const char *const known[] = {"group", "consumer", SRC_TLS_KEYS, NULL};
    redis_cfg *c = calloc(1, sizeof *c);
    if (!c) {
        src_url_free(&u);
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    snprintf(c->host, sizeof c->host, "%s", u.host);
    c->port = u.port ? u.port : 6379;
    snprintf(c->user, sizeof c->user, "%s", u.user);
    snprintf(c->pass, sizeof c->pass, "%s", u.pass);
    snprintf(c->stream, sizeof c->stream, "%s", u.path);
    rc = src_url_check_keys(&u, known, err, errcap);
    if (!rc) rc = src_tls_parse(&u, strcmp(u.scheme, "rediss") == 0, &c->tls, err, errcap);
    if (!rc && !c->stream[0]) {
        snprintf(err, errcap,
                 "missing stream: the URL's path names it (redis://HOST:PORT/STREAM?group=G)");
        rc = ERR_INVAL;
    }
    if (!rc && strchr(c->stream, '/')) {
        snprintf(err, errcap,
                 "malformed URL: the path is one stream name (percent-encode a '/' in it)");
        rc = ERR_INVAL;
    }
    if (!rc) {
        int g = src_url_param(&u, "group", c->group, sizeof c->group);
        if (g != 0 || !c->group[0]) {
            snprintf(
                err, errcap,
                g < 0
                    ? "malformed URL: bad value of 'group'"
                    : "missing group: give the consumer group (redis://HOST:PORT/STREAM?group=G)");
            rc = ERR_INVAL;
        }
    }
    if (!rc && src_url_param(&u, "consumer", c->consumer, sizeof c->consumer) < 0) {
        snprintf(err, errcap, "malformed URL: bad value of 'consumer'");
        rc = ERR_INVAL;
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

static struct timeval tv_ms(uint32_t ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* Runs a command; NULL with err written when the connection failed or the
 * server answered an error (then *server_error is set, the connection is
 * still usable). */
static redisReply *command(src_conn *c, int argc, const char **argv, char *err, size_t errcap,
                           int *server_error)
{
    size_t lens[16];
    for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    if (server_error) *server_error = 0;
    redisReply *r = redisCommandArgv(c->c, argc, argv, lens);
    if (!r) {
        /* Through the relay hiredis sees only the socketpair close: the
         * relay says why (the broker's TLS alert, a timeout). */
        const char *why = c->relay ? src_tls_relay_why(c->relay) : "";
        snprintf(err, errcap, "%s: %s%s%s%s", argv[0], c->c->errstr[0] ? c->c->errstr : "no answer",
                 why[0] ? " (TLS relay: " : "", why, why[0] ? ")" : "");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errcap, "%s: %s", argv[0], r->str ? r->str : "error");
        if (server_error) *server_error = 1;
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* The socket stays open (the thread closes it): a blocked read returns. */
static void interrupt(src_conn *c)
{
    if (c->c && c->c->fd >= 0) shutdown(c->c->fd, SHUT_RDWR);
}

static void disconnect(src_conn *c)
{
    if (!c) return;
    if (c->c) redisFree(c->c);
    src_tls_relay_close(c->relay);
    free(c->unacked);
    free(c);
}

static int connect_(const void *cfgp, const char *consumer, src_conn **out, char *err,
                    size_t errcap)
{
    const redis_cfg *cfg = cfgp;
    src_conn *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errcap, "out of memory");
        return ERR_NOMEM;
    }
    c->cfg = cfg;
    snprintf(c->consumer, sizeof c->consumer, "%s", cfg->consumer[0] ? cfg->consumer : consumer);
    if (cfg->tls.on) {
        int fd = -1;
        int rc = src_tls_relay_open(cfg->host, cfg->port, &cfg->tls, SPATE_SOURCE_IO_TIMEOUT_MS,
                                    &c->relay, &fd, err, errcap);
        if (rc) {
            disconnect(c);
            return rc;
        }
        c->c = redisConnectFd(fd);
        if (!c->c) close(fd);
    } else {
        c->c = redisConnectWithTimeout(cfg->host, cfg->port, tv_ms(SPATE_SOURCE_IO_TIMEOUT_MS));
    }
    if (!c->c || c->c->err) {
        snprintf(err, errcap, "cannot connect to %s:%d: %s", cfg->host, cfg->port,
                 c->c ? c->c->errstr : "out of memory");
        disconnect(c);
        return ERR_IO;
    }
    /* Commands but the blocking read: the fetch raises it for its wait. */
    redisSetTimeout(c->c, tv_ms(SPATE_SOURCE_IO_TIMEOUT_MS));
    redisReply *r;
    if (cfg->pass[0]) {
        const char *a2[] = {"AUTH", cfg->pass};
        const char *a3[] = {"AUTH", cfg->user, cfg->pass};
        /* The message names no credential: hiredis quotes only the server's. */
        r = cfg->user[0] ? command(c, 3, a3, err, errcap, NULL)
                         : command(c, 2, a2, err, errcap, NULL);
        if (!r) {
            disconnect(c);
            return ERR_IO;
        }
        freeReplyObject(r);
    }
    int server_error = 0;
    const char *create[] = {"XGROUP", "CREATE", cfg->stream, cfg->group, "0", "MKSTREAM"};
    r = command(c, 6, create, err, errcap, &server_error);
    if (r) {
        freeReplyObject(r);
    } else if (!server_error || !strstr(err, "BUSYGROUP")) {
        disconnect(c);
        return ERR_IO;
    }
    err[0] = '\0';
    snprintf(c->pending_after, sizeof c->pending_after, "0");
    c->pending = 1; /* what this consumer fetched before and never acked comes first */
    *out = c;
    return 0;
}

/* Appends the fields of one entry (f1, v1, f2, v2...) as a message: one
 * field is its value, several a JSON object (the key field left out). */
static void convert(src_batch *b, src_entry *e, const redisReply *fields, const src_limits *lim)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY || fields->elements % 2 || !fields->elements) {
        src_entry_refuse(e, "the entry was deleted upstream (XDEL) or has no fields");
        return;
    }
    for (size_t i = 0; i < fields->elements; i++)
        if (fields->element[i]->type != REDIS_REPLY_STRING) {
            src_entry_refuse(e, "the entry's fields are not strings");
            return;
        }
    const redisReply *key = NULL;
    size_t n = fields->elements / 2, kept = n;
    /* A key that is missing or bad refuses the entry after its body is
     * built: the dead letter keeps it. */
    const char *key_problem = NULL;
    if (lim->key_field && lim->key_field[0]) {
        for (size_t i = 0; i < n && !key; i++)
            if (strcmp(fields->element[2 * i]->str, lim->key_field) == 0)
                key = fields->element[2 * i + 1];
        if (!key)
            key_problem = "the key field '%s' is missing";
        else if (key->len > SPATE_KEY_MAX)
            key_problem = "the key is over %d bytes";
        else if (!utf8_valid(key->str, key->len))
            key_problem = "the key is not valid UTF-8 (max %d bytes)";
        if (key && n > 1) kept = n - 1;
    }
    size_t start = b->bytes.len;
    int rc = 0;
    if (kept == 1 && n == 1) {
        rc = buf_append(&b->bytes, fields->element[1]->str, fields->element[1]->len);
    } else if (kept == 1) {
        for (size_t i = 0; i < n; i++)
            if (fields->element[2 * i + 1] != key)
                rc = buf_append(&b->bytes, fields->element[2 * i + 1]->str,
                                fields->element[2 * i + 1]->len);
    } else {
        size_t need = 2;
        for (size_t i = 0; i < n; i++) {
            const redisReply *f = fields->element[2 * i], *v = fields->element[2 * i + 1];
            if (!utf8_valid(f->str, f->len) || !utf8_valid(v->str, v->len)) {
                src_entry_refuse(
                    e, "field '%.64s' is not valid UTF-8: several fields make a JSON object",
                    f->str);
                return;
            }
            need += (f->len + v->len) * 6 + 24;
        }
        if (need > lim->message_max * 6 + 64 * n + 2) need = lim->message_max * 6 + 64 * n + 2;
        rc = buf_reserve(&b->bytes, need);
        if (!rc) {
            char *p = b->bytes.data + b->bytes.len, *end = b->bytes.data + b->bytes.cap;
            *p++ = '{';
            int first = 1;
            for (size_t i = 0; i < n && p < end - 16; i++) {
                const redisReply *f = fields->element[2 * i], *v = fields->element[2 * i + 1];
                if (v == key) continue;
                if (!first) *p++ = ',';
                first = 0;
                *p++ = '"';
                p = fmt_json_str(p, end - 8, f->str, f->len);
                *p++ = '"';
                *p++ = ':';
                *p++ = '"';
                p = fmt_json_str(p, end - 4, v->str, v->len);
                *p++ = '"';
            }
            *p++ = '}';
            b->bytes.len = (size_t)(p - b->bytes.data);
        }
    }
    if (rc) {
        b->bytes.len = start;
        src_entry_refuse(e, "out of memory converting the entry");
        return;
    }
    e->data_at = start;
    e->len = b->bytes.len - start;
    if (e->len > lim->message_max) {
        /* The dead letter keeps no body: the upstream id finds it. */
        b->bytes.len = start;
        src_entry_refuse(e, "the message is %zu bytes, over the topic's maximum of %zu bytes",
                         e->len, lim->message_max);
        e->len = 0;
        return;
    }
    if (key_problem) {
        if (!key)
            src_entry_refuse(e, key_problem, lim->key_field);
        else
            src_entry_refuse(e, key_problem, SPATE_KEY_MAX);
        return;
    }
    if (key) {
        e->key_at = b->bytes.len;
        /* With its NUL (connector.h): the queue reads the key as a string. */
        if (buf_append(&b->bytes, key->str, key->len + 1)) {
            b->bytes.len = start;
            src_entry_refuse(e, "out of memory converting the entry");
            return;
        }
        e->key_len = key->len;
        e->has_key = 1;
    }
}

/* A stream id's millisecond part ("1700000000000-3"): the time Redis gave
 * the entry, or the producer's own with an explicit id. 0 if it has none,
 * or one before 2000: explicit ids such as 1-0 are sequence numbers, and
 * taken as times they would make every entry 56 years old (its deadline
 * long missed). */
static int64_t id_ms(const char *id)
{
    char *end;
    long long ms = strtoll(id, &end, 10);
    return end != id && *end == '-' && ms >= SPATE_SOURCE_REDIS_TS_MIN_MS ? (int64_t)ms : 0;
}

/* Claims a dead consumer's entries now and then: they become this
 * consumer's pending ones, read next. */
static int claim(src_conn *c, char *err, size_t errcap)
{
    uint64_t now = clock_mono_ns();
    if (c->last_claim_ns &&
        now - c->last_claim_ns < (uint64_t)SPATE_SOURCE_CLAIM_EVERY_MS * 1000000)
        return 0;
    c->last_claim_ns = now;
    char idle[24], count[24];
    snprintf(idle, sizeof idle, "%d", SPATE_SOURCE_CLAIM_IDLE_MS);
    snprintf(count, sizeof count, "%d", SPATE_SOURCE_BATCH_MAX);
    const char *argv[] = {"XAUTOCLAIM", c->cfg->stream, c->cfg->group, c->consumer, idle,
                          "0-0",        "COUNT",        count,         "JUSTID"};
    int server_error = 0;
    redisReply *r = command(c, 9, argv, err, errcap, &server_error);
    if (!r) return server_error ? 0 : ERR_IO; /* an old Redis: nothing to claim with */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
        r->element[1]->type == REDIS_REPLY_ARRAY && r->element[1]->elements > 0) {
        c->pending = 1;
        snprintf(c->pending_after, sizeof c->pending_after, "0");
    }
    freeReplyObject(r);
    return 0;
}

static int is_unacked(const src_conn *c, const char *id, size_t len)
{
    for (size_t i = 0; i < c->n_unacked; i++)
        if (strlen(c->unacked[i]) == len && !memcmp(c->unacked[i], id, len)) return 1;
    return 0;
}

/* Remembers the ids of out's entries from the first on, until their ack. */
static int remember(src_conn *c, const src_batch *out, size_t first)
{
    size_t need = c->n_unacked + out->n - first;
    if (need > c->cap_unacked) {
        size_t cap = need < 2 * SPATE_SOURCE_BATCH_MAX ? 2 * SPATE_SOURCE_BATCH_MAX : need;
        void *p = realloc(c->unacked, cap * sizeof *c->unacked);
        if (!p) return ERR_NOMEM;
        c->unacked = p;
        c->cap_unacked = cap;
    }
    for (size_t i = first; i < out->n; i++)
        snprintf(c->unacked[c->n_unacked++], sizeof *c->unacked, "%s", out->e[i].id);
    return 0;
}

/* b is acked: its ids are the first of the list, since sources.c acks a
 * connection's batches in the order it fetched them. An ack out of that
 * order cannot happen; if it did, the list would no longer say which
 * pending entries are ours: 0, or ERR_PROTO after saying so, and the caller
 * drops the connection (and the list with it; the entries come again). */
static int forget(src_conn *c, const src_batch *b, char *err, size_t errcap)
{
    size_t k = 0;
    while (k < b->n && k < c->n_unacked && !strcmp(c->unacked[k], b->e[k].id)) k++;
    if (k < b->n) {
        snprintf(err, errcap, "XACK: entry %s acked out of the order fetched", b->e[k].id);
        log_error("source: redis stream %s: %s (cannot happen)", c->cfg->stream, err);
        return ERR_PROTO;
    }
    memmove(c->unacked[0], c->unacked[k], (c->n_unacked - k) * sizeof *c->unacked);
    c->n_unacked -= k;
    return 0;
}

static int fetch(src_conn *c, const src_limits *lim, size_t max, uint32_t wait_ms, src_batch *out,
                 char *err, size_t errcap)
{
    size_t first = out->n;
    if (!c->pending && claim(c, err, errcap)) return ERR_IO;
    char count[24], block[24];
    snprintf(count, sizeof count, "%zu", max);
    snprintf(block, sizeof block, "%u", wait_ms);
    const char *argv[] = {"XREADGROUP",
                          "GROUP",
                          c->cfg->group,
                          c->consumer,
                          "COUNT",
                          count,
                          "BLOCK",
                          block,
                          "STREAMS",
                          c->cfg->stream,
                          c->pending ? c->pending_after : ">"};
    /* Pending entries are there: no need to block for them. */
    int argc = 11;
    const char *nb[] = {argv[0], argv[1], argv[2], argv[3], argv[4],
                        argv[5], argv[8], argv[9], argv[10]};
    redisSetTimeout(c->c, tv_ms(wait_ms + SPATE_SOURCE_IO_TIMEOUT_MS));
    /* BLOCK 0 would wait for ever: a wait of 0 takes what is there. */
    redisReply *r = c->pending || !wait_ms ? command(c, 9, nb, err, errcap, NULL)
                                           : command(c, argc, argv, err, errcap, NULL);
    redisSetTimeout(c->c, tv_ms(SPATE_SOURCE_IO_TIMEOUT_MS));
    if (!r) return ERR_IO; /* NOGROUP after a restart without persistence, too: reconnect */
    int rc = 0;
    const redisReply *entries = NULL;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2)
        entries = r->element[0]->element[1];
    else if (r->type != REDIS_REPLY_NIL) {
        snprintf(err, errcap, "XREADGROUP: unexpected answer");
        rc = ERR_PROTO;
    }
    for (size_t i = 0; !rc && entries && i < entries->elements; i++) {
        const redisReply *en = entries->element[i];
        if (en->type != REDIS_REPLY_ARRAY || en->elements != 2 ||
            en->element[0]->type != REDIS_REPLY_STRING) {
            snprintf(err, errcap, "XREADGROUP: unexpected entry");
            rc = ERR_PROTO;
            break;
        }
        /* Ours, in flight: only a lost connection makes it come again. */
        if (c->pending && is_unacked(c, en->element[0]->str, en->element[0]->len)) {
            snprintf(c->pending_after, sizeof c->pending_after, "%s", en->element[0]->str);
            continue;
        }
        src_entry *e = src_batch_add(out, en->element[0]->str, en->element[0]->len);
        if (!e) {
            snprintf(err, errcap, "out of memory");
            rc = ERR_NOMEM;
            break;
        }
        convert(out, e, en->element[1], lim);
        e->ts_ms = id_ms(e->id);
        /* A pending entry was delivered to this consumer (or claimed from a
         * dead one) before and never acked. */
        e->redelivered = c->pending;
        if (c->pending) snprintf(c->pending_after, sizeof c->pending_after, "%s", e->id);
    }
    if (!rc && c->pending && (!entries || entries->elements == 0)) c->pending = 0;
    freeReplyObject(r);
    if (!rc && remember(c, out, first)) {
        snprintf(err, errcap, "out of memory");
        rc = ERR_NOMEM;
    }
    return rc;
}

static int ack(src_conn *c, const src_batch *b, char *err, size_t errcap)
{
    /* XACK stream group id...: in slices, so argv stays on the stack, all
     * sent before the first answer is read (one round trip). */
    /* When the XACK fails the connection is dropped, and the list with it. */
    if (forget(c, b, err, errcap)) return ERR_PROTO;
    size_t sent = 0;
    for (size_t done = 0; done < b->n; sent++) {
        const char *argv[3 + 64];
        size_t lens[3 + 64];
        argv[0] = "XACK";
        argv[1] = c->cfg->stream;
        argv[2] = c->cfg->group;
        size_t k = 0;
        for (; k < 64 && done + k < b->n; k++) argv[3 + k] = b->e[done + k].id;
        for (size_t i = 0; i < 3 + k; i++) lens[i] = strlen(argv[i]);
        if (redisAppendCommandArgv(c->c, (int)(3 + k), argv, lens) != REDIS_OK) {
            snprintf(err, errcap, "XACK: %s", c->c->errstr[0] ? c->c->errstr : "out of memory");
            return ERR_IO;
        }
        done += k;
    }
    int rc = 0;
    for (size_t i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c->c, (void **)&r) != REDIS_OK || !r) {
            snprintf(err, errcap, "XACK: %s", c->c->errstr[0] ? c->c->errstr : "no answer");
            return ERR_IO; /* the connection is dropped: no answer to read */
        }
        if (r->type == REDIS_REPLY_ERROR && !rc) {
            snprintf(err, errcap, "XACK: %s", r->str ? r->str : "error");
            rc = ERR_IO;
        }
        freeReplyObject(r);
    }
    return rc;
}

/* XINFO GROUPS: the group's "lag" (Redis >= 7.0); -1 when not told. */
static int64_t lag(src_conn *c)
{
    char err[256];
    const char *argv[] = {"XINFO", "GROUPS", c->cfg->stream};
    redisReply *r = command(c, 3, argv, err, sizeof err, NULL);
    if (!r) return -1;
    int64_t out = -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        const redisReply *g = r->element[i];
        if (g->type != REDIS_REPLY_ARRAY) continue;
        int mine = 0;
        int64_t v = -1;
        for (size_t j = 0; j + 1 < g->elements; j += 2) {
            const redisReply *k = g->element[j], *val = g->element[j + 1];
            if (k->type != REDIS_REPLY_STRING && k->type != REDIS_REPLY_STATUS) continue;
            if (strcmp(k->str, "name") == 0 && val->type == REDIS_REPLY_STRING)
                mine = strcmp(val->str, c->cfg->group) == 0;
            else if (strcmp(k->str, "lag") == 0 && val->type == REDIS_REPLY_INTEGER)
                v = val->integer;
        }
        if (mine) out = v;
    }
    freeReplyObject(r);
    return out;
}

/* Always read in a consumer group: the nodes of a cluster share it. */
static int in_group(const void *cfg)
{
    (void)cfg;
    return 1;
}

const connector connector_redis = {
    .scheme = "redis",
    .form = "redis://[USER:PASS@]HOST:PORT/STREAM?group=G",
    .parse = parse,
    .free_cfg = free_cfg,
    .connect = connect_,
    .fetch = fetch,
    .ack = ack,
    .lag = lag,
    .disconnect = disconnect,
    .group = in_group,
    .interrupt = interrupt,
};
