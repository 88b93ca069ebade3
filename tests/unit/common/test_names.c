/* Unit tests of the small common modules: names, number parsing, function
 * configuration, buffers and the string map. */
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/err.h"
#include "common/fnconfig.h"
#include "common/limits.h"
#include "common/names.h"
#include "common/parse.h"
#include "common/strmap.h"
#include "test.h"

#define FN(s) name_is_function(s, strlen(s))
#define TOPIC(s) name_is_topic(s, strlen(s))

static void names(void)
{
    CHECK(FN("hello"));
    CHECK(FN("a"));
    CHECK(FN("trade-report_2"));
    CHECK(FN("0abc"));
    CHECK(!FN(""));
    CHECK(!FN("-x"));
    CHECK(!FN("_x"));
    CHECK(!FN("a.b"));
    CHECK(!FN("a/b"));
    CHECK(!FN("a b"));
    CHECK(!FN("caf\xc3\xa9"));
    char long_name[SPATE_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name);
    long_name[SPATE_NAME_MAX] = '\0';
    CHECK(FN(long_name));
    long_name[SPATE_NAME_MAX] = 'a';
    long_name[SPATE_NAME_MAX + 1] = '\0';
    CHECK(!FN(long_name));
    /* Aliases: as functions, but digits alone are a version. */
    CHECK(name_is_alias("live", 4));
    CHECK(name_is_alias("v2", 2));
    CHECK(name_is_alias("2v", 2));
    CHECK(!name_is_alias("12", 2));
    CHECK(!name_is_alias("", 0));
    CHECK(!name_is_alias("a:b", 3));
    CHECK(!name_is_alias("-x", 2));
    CHECK(TOPIC("trades.dlq"));
    CHECK(!TOPIC(".trades"));
    CHECK(!TOPIC("a b"));
}

static void numbers(void)
{
    uint64_t v;
    CHECK_INT(parse_u64("0", 1, 0, 10, &v), 0);
    CHECK_INT(v, 0);
    CHECK_INT(parse_u64("10", 2, 0, 10, &v), 0);
    CHECK_INT(parse_u64("11", 2, 0, 10, &v), ERR_TOOBIG);
    CHECK_INT(parse_u64("", 0, 0, 10, &v), ERR_INVAL);
    CHECK_INT(parse_u64("-1", 2, 0, 10, &v), ERR_INVAL);
    CHECK_INT(parse_u64(" 1", 2, 0, 10, &v), ERR_INVAL);
    CHECK_INT(parse_u64("1x", 2, 0, 10, &v), ERR_INVAL);
    CHECK_INT(parse_u64("18446744073709551615", 20, 0, UINT64_MAX, &v), 0);
    CHECK(v == UINT64_MAX);
    CHECK_INT(parse_u64("18446744073709551616", 20, 0, UINT64_MAX, &v), ERR_TOOBIG);
    char host[64];
    int port;
    CHECK_INT(parse_host_port("127.0.0.1:7728", host, sizeof host, &port), 0);
    CHECK_STR(host, "127.0.0.1");
    CHECK_INT(port, 7728);
    CHECK_INT(parse_host_port("::1:80", host, sizeof host, &port), 0);
    CHECK_STR(host, "::1");
    CHECK(parse_host_port("nohost", host, sizeof host, &port) != 0);
    CHECK(parse_host_port(":80", host, sizeof host, &port) != 0);
    CHECK(parse_host_port("h:99999", host, sizeof host, &port) != 0);
}

static void env(void)
{
    fn_config c;
    char why[256];
    fnconfig_defaults(&c);
    CHECK_INT(fnconfig_add_env(&c, "A=1", 3, why, sizeof why), 0);
    CHECK_INT(fnconfig_add_env(&c, "B_2=x=y", 7, why, sizeof why), 0);
    CHECK_STR(c.env, "A=1\nB_2=x=y");
    CHECK_INT(c.env_count, 2);
    CHECK_INT(fnconfig_add_env(&c, "noequals", 8, why, sizeof why), ERR_INVAL);
    CHECK_INT(fnconfig_add_env(&c, "=v", 2, why, sizeof why), ERR_INVAL);
    CHECK_INT(fnconfig_add_env(&c, "1A=v", 4, why, sizeof why), ERR_INVAL);
    CHECK(strstr(why, "1A") != NULL);
    CHECK_INT(fnconfig_add_env(&c, "A=1\n2", 5, why, sizeof why), ERR_INVAL);
    fn_config copy;
    CHECK_INT(fnconfig_copy(&copy, &c), 0);
    CHECK_STR(copy.env, c.env);
    CHECK(copy.env != c.env);
    CHECK(fnconfig_equal(&copy, &c));

    /* A key set again keeps its place and takes the new value; unset removes it. */
    CHECK_INT(fnconfig_add_env(&copy, "A=22", 4, why, sizeof why), 0);
    CHECK_STR(copy.env, "A=22\nB_2=x=y");
    CHECK_INT(copy.env_count, 2);
    CHECK(!fnconfig_equal(&copy, &c));
    CHECK_INT(fnconfig_add_env(&copy, "C=", 2, why, sizeof why), 0);
    CHECK_INT(fnconfig_add_env(&copy, "B_2=z", 5, why, sizeof why), 0);
    CHECK_STR(copy.env, "A=22\nB_2=z\nC=");
    CHECK_INT(fnconfig_unset_env(&copy, "B", 1), ERR_NOTFOUND); /* a prefix is not the key */
    CHECK_INT(fnconfig_unset_env(&copy, "B_2", 3), 0);
    CHECK_STR(copy.env, "A=22\nC=");
    CHECK_INT(fnconfig_unset_env(&copy, "C", 1), 0);
    CHECK_STR(copy.env, "A=22");
    CHECK_INT(copy.env_count, 1);
    CHECK_INT(fnconfig_unset_env(&copy, "A", 1), 0);
    CHECK(copy.env == NULL);
    CHECK_INT(copy.env_count, 0);
    CHECK_INT(fnconfig_unset_env(&copy, "A", 1), ERR_NOTFOUND);
    copy.max_instances = 7;
    CHECK(!fnconfig_equal(&copy, &c));
    fnconfig_free(&copy);
    fnconfig_free(&c);

    /* Entries past the count limit are refused, whole. */
    fnconfig_defaults(&c);
    int rc = 0;
    for (int i = 0; i <= SPATE_ENV_COUNT_MAX && rc == 0; i++) {
        char kv[32];
        int n = snprintf(kv, sizeof kv, "K%d=v", i);
        rc = fnconfig_add_env(&c, kv, (size_t)n, why, sizeof why);
    }
    CHECK_INT(rc, ERR_TOOBIG);
    CHECK_INT(c.env_count, SPATE_ENV_COUNT_MAX);
    fnconfig_free(&c);

    fnconfig_defaults(&c);
    c.min_instances = 5;
    c.max_instances = 2;
    CHECK_INT(fnconfig_check(&c, why, sizeof why), ERR_INVAL);
}

static void buffers(void)
{
    buf b;
    buf_init(&b, 8);
    CHECK_INT(buf_append(&b, "12345678", 8), 0);
    CHECK_INT(buf_append(&b, "9", 1), ERR_TOOBIG);
    CHECK_INT(b.len, 8);
    CHECK(b.cap <= 8);
    buf_reset(&b);
    CHECK_INT(buf_printf(&b, "%d", 1234567), 0);
    CHECK_STR(b.data, "1234567");
    CHECK_INT(buf_printf(&b, "%s", "xy"), ERR_TOOBIG);
    buf_free(&b);
    buf_free(NULL);

    /* An empty append to a fresh buffer still leaves a terminated string
     * (a zero-length spate_write on a new instance once crashed here). */
    buf_init(&b, 100);
    CHECK_INT(buf_append(&b, "", 0), 0);
    CHECK(b.data != NULL && b.data[0] == '\0');
    buf_free(&b);
    buf_init(&b, 0);
    CHECK_INT(buf_append(&b, "", 0), 0);
    CHECK_INT(buf_append(&b, "x", 1), ERR_TOOBIG);
    buf_free(&b);
}

static void strmaps(void)
{
    strmap m;
    strmap_init(&m);
    static char keys[500][16];
    for (int i = 0; i < 500; i++) {
        snprintf(keys[i], sizeof keys[i], "key%d", i);
        CHECK_INT(strmap_put(&m, keys[i], keys[i]), 0);
    }
    CHECK_INT(m.count, 500);
    CHECK(strmap_get(&m, "key42", 5) == keys[42]);
    CHECK(strmap_get(&m, "key42x", 5) == keys[42]); /* length bounds the key */
    CHECK(strmap_get(&m, "nokey", 5) == NULL);
    CHECK(strmap_remove(&m, "key42") == keys[42]);
    CHECK(strmap_get(&m, "key42", 5) == NULL);
    CHECK(strmap_remove(&m, "key42") == NULL);
    CHECK_INT(m.count, 499);
    strmap_free(&m);
}

#define HANDLER(s) fnconfig_set_handler(&c, s, strlen(s), why, sizeof why)

static void handlers(void)
{
    fn_config c;
    fnconfig_defaults(&c);
    char why[256];
    CHECK(HANDLER("app.handler") == 0 && strcmp(c.handler, "app.handler") == 0);
    CHECK(HANDLER("lambda_function.lambda_handler") == 0);
    CHECK(HANDLER("src/app.handler") == 0 && strcmp(c.handler, "src/app.handler") == 0);
    CHECK(HANDLER("pkg.mod.handler") == 0);
    CHECK(HANDLER("app") == ERR_INVAL && strstr(why, "MODULE.FUNCTION"));
    CHECK(HANDLER("") == ERR_INVAL);
    CHECK(HANDLER(".handler") == ERR_INVAL);
    CHECK(HANDLER("app.") == ERR_INVAL);
    CHECK(HANDLER("../app.handler") == ERR_INVAL);
    CHECK(HANDLER("a/../app.handler") == ERR_INVAL);
    CHECK(HANDLER("/etc/app.handler") == ERR_INVAL);
    CHECK(HANDLER("a//b.handler") == ERR_INVAL);
    CHECK(HANDLER("app.han dler") == ERR_INVAL);
    CHECK(HANDLER("app.x/y") == ERR_INVAL);
    /* A failed set keeps the handler it had. */
    CHECK(strcmp(c.handler, "pkg.mod.handler") == 0);
    char big[FN_HANDLER_MAX + 2];
    memset(big, 'a', sizeof big);
    big[1] = '.';
    big[FN_HANDLER_MAX] = '\0';
    CHECK(HANDLER(big) == 0);
    big[FN_HANDLER_MAX] = 'a';
    big[FN_HANDLER_MAX + 1] = '\0';
    CHECK(HANDLER(big) == ERR_INVAL);
    /* Runtimes and what they need. */
    CHECK(fnconfig_runtime_parse("python3", 7) == RUNTIME_PYTHON3);
    CHECK(fnconfig_runtime_parse("nodejs", 6) == RUNTIME_NODEJS);
    CHECK(fnconfig_runtime_parse("python", 6) == -1);
    CHECK(strcmp(fnconfig_runtime_name(RUNTIME_NODEJS), "nodejs") == 0);
    c.runtime = RUNTIME_PYTHON3;
    CHECK(fnconfig_check(&c, why, sizeof why) == 0);
    c.runtime = RUNTIME_EXEC;
    CHECK(fnconfig_check(&c, why, sizeof why) == ERR_INVAL && strstr(why, "a handler is for"));
    c.runtime = RUNTIME_NODEJS;
    c.handler[0] = '\0';
    CHECK(fnconfig_check(&c, why, sizeof why) == ERR_INVAL && strstr(why, "needs a handler"));
    c.network = 0;
    CHECK(HANDLER("index.handler") == 0);
    CHECK(fnconfig_check(&c, why, sizeof why) == ERR_INVAL && strstr(why, "need the network"));
    fn_config d;
    c.network = 1;
    CHECK(fnconfig_copy(&d, &c) == 0 && fnconfig_equal(&c, &d));
    CHECK(HANDLER("index.other") == 0 && !fnconfig_equal(&c, &d));
    fnconfig_free(&d);
    fnconfig_free(&c);
}

/* A topic's JetStream stream name: '.' and '_' escaped; its whole length
 * whatever room is given (api/topics.c refuses names over JetStream's
 * maximum by it). */
static void stream_names(void)
{
    char out[64];
    CHECK_INT((int)name_topic_stream("a.b_c", 5, out, sizeof out), 17);
    CHECK_STR(out, "SPATE_T_a_2eb_5fc");
    CHECK_INT((int)name_topic_stream("a.b_c", 5, NULL, 0), 17);
    CHECK_INT((int)name_topic_stream("trades", 6, out, 10), 14);
    CHECK_STR(out, "SPATE_T_t"); /* cut short, terminated */
    char dots[SPATE_TOPIC_NAME_MAX];
    memset(dots, '.', sizeof dots);
    dots[0] = 'a';
    CHECK((int)name_topic_stream(dots, sizeof dots, NULL, 0) > SPATE_JS_STREAM_NAME_MAX);
}

int main(void)
{
    RUN(names);
    RUN(stream_names);
    RUN(numbers);
    RUN(env);
    RUN(buffers);
    RUN(strmaps);
    RUN(handlers);
    return TEST_RESULT();
}
