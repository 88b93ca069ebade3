/* peer_redis - the peer of bench/sources-redis: a bare hiredis consumer of a
 * stream in a consumer group that reads batches (XREADGROUP COUNT 256) and
 * acknowledges each (XACK), as spate's source does, but does nothing else:
 * no store, no function. Prints the seconds it took to take n entries.
 *
 *     peer_redis PORT STREAM GROUP N */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: peer_redis PORT STREAM GROUP N\n");
        return 2;
    }
    redisContext *c = redisConnect("127.0.0.1", atoi(argv[1]));
    if (!c || c->err) {
        fprintf(stderr, "peer_redis: cannot connect\n");
        return 1;
    }
    const char *stream = argv[2], *group = argv[3];
    long n = atol(argv[4]), got = 0;
    freeReplyObject(redisCommand(c, "XGROUP CREATE %s %s 0 MKSTREAM", stream, group));
    double t0 = now();
    const char *argvv[3 + 256];
    size_t lens[3 + 256];
    while (got < n) {
        redisReply *r = redisCommand(c, "XREADGROUP GROUP %s peer COUNT 256 BLOCK 500 STREAMS %s >",
                                     group, stream);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "peer_redis: %s\n", r ? r->str : c->errstr);
            return 1;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
            redisReply *entries = r->element[0]->element[1];
            int k = 0;
            argvv[k] = "XACK", lens[k++] = 4;
            argvv[k] = stream, lens[k++] = strlen(stream);
            argvv[k] = group, lens[k++] = strlen(group);
            for (size_t i = 0; i < entries->elements && i < 256; i++) {
                redisReply *id = entries->element[i]->element[0];
                argvv[k] = id->str, lens[k++] = id->len;
            }
            got += (long)entries->elements;
            freeReplyObject(redisCommandArgv(c, k, argvv, lens));
        }
        freeReplyObject(r);
    }
    printf("%.6f\n", now() - t0);
    redisFree(c);
    return 0;
}
