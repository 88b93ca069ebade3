/* Unit tests of api/lambda_body.c: what the JSON bodies of Lambda's
 * management API set on a function's configuration and on an alias, and
 * what spate refuses rather than drops. */
#include <stdlib.h>

#include "api/lambda.h"
#include "common/hash.h"
#include "test.h"

static int config(const char *json, fn_config *c, char *why, size_t cap)
{
    cJSON *body = cJSON_Parse(json);
    CHECK(body != NULL);
    int rc = lambda_body_config(body, c, why, cap);
    cJSON_Delete(body);
    return rc;
}

static void test_config(void)
{
    fn_config c;
    char why[400];
    fnconfig_defaults(&c);
    CHECK_INT(config("{\"Runtime\": \"python3.12\", \"Handler\": \"app.handler\", \"Timeout\": 7,"
                     " \"MemorySize\": 256, \"Description\": \"d\", \"Role\": \"ignored\","
                     " \"EphemeralStorage\": {\"Size\": 1024},"
                     " \"Environment\": {\"Variables\": {\"A\": \"1\", \"B\": \"x=y\"}}}",
                     &c, why, sizeof why),
              0);
    CHECK_INT(c.runtime, RUNTIME_PYTHON3);
    CHECK_STR(c.handler, "app.handler");
    CHECK_INT(c.timeout_ms, 7000);
    CHECK_INT(c.memory_mb, 256);
    CHECK_INT(c.tmp_mb, 1024);
    CHECK_STR(c.description, "d");
    CHECK_STR(c.env, "A=1\nB=x=y");
    /* Environment replaces the plain variables; a secret stays. */
    CHECK_INT(fnconfig_add_secret(&c, "S=hidden", 8, why, sizeof why), 0);
    CHECK_INT(config("{\"Environment\": {\"Variables\": {\"C\": \"3\"}}}", &c, why, sizeof why), 0);
    CHECK_STR(c.env, "C=3");
    CHECK_STR(c.secrets, "S=hidden");
    /* Another runtime drops the handler; provided takes none. */
    CHECK_INT(config("{\"Runtime\": \"provided.al2023\", \"Handler\": \"x\"}", &c, why, sizeof why),
              0);
    CHECK_INT(c.runtime, RUNTIME_EXEC);
    CHECK_STR(c.handler, "");
    fnconfig_free(&c);

    fnconfig_defaults(&c);
    CHECK_INT(config("{\"Runtime\": \"java17\"}", &c, why, sizeof why), -1);
    CHECK(strstr(why, "java17") != NULL);
    CHECK_INT(config("{\"Runtime\": \"nodejs20.x\"}", &c, why, sizeof why), -1); /* no handler */
    CHECK_INT(config("{\"Timeout\": 901}", &c, why, sizeof why), -1);
    CHECK_INT(config("{\"Timeout\": 1.5}", &c, why, sizeof why), -1);
    CHECK_INT(config("{\"Handler\": 3}", &c, why, sizeof why), -1);
    CHECK_INT(config("{\"Environment\": {\"Variables\": {\"K\": 1}}}", &c, why, sizeof why), -1);
    CHECK_INT(config("{\"Environment\": {\"Variables\": {\"1K\": \"v\"}}}", &c, why, sizeof why),
              -1);
    CHECK_INT(config("{\"Description\": \"a\\nb\"}", &c, why, sizeof why), -1);
    fnconfig_free(&c);
}

static int supported(const char *json)
{
    cJSON *body = cJSON_Parse(json);
    char why[200];
    int rc = lambda_body_supported(body, why, sizeof why);
    cJSON_Delete(body);
    return rc;
}

static void test_supported(void)
{
    CHECK_INT(supported("{\"Tags\": {\"a\": \"b\"}, \"Layers\": [], \"VpcConfig\":"
                        " {\"SubnetIds\": []}, \"PackageType\": \"Zip\"}"),
              0);
    CHECK_INT(supported("{\"Architectures\": [\"" LAMBDA_ARCHITECTURE "\"]}"), 0);
    CHECK_INT(supported("{\"Layers\": [\"arn\"]}"), -1);
    CHECK_INT(supported("{\"VpcConfig\": {\"SubnetIds\": [\"s\"]}}"), -1);
    CHECK_INT(supported("{\"PackageType\": \"Image\"}"), -1);
    CHECK_INT(supported("{\"Architectures\": [\"mips\"]}"), -1);
}

static int alias(const char *json, reg_alias *al)
{
    cJSON *body = cJSON_Parse(json);
    char why[300];
    int rc = lambda_body_alias(body, al, why, sizeof why);
    cJSON_Delete(body);
    return rc;
}

static void test_alias(void)
{
    reg_alias al = {.version = 1};
    CHECK_INT(alias("{\"FunctionVersion\": \"2\", \"RoutingConfig\":"
                    " {\"AdditionalVersionWeights\": {\"3\": 0.07}}}",
                    &al),
              0);
    CHECK_INT(al.version, 2);
    CHECK_INT(al.weight_version, 3);
    CHECK_INT(al.weight_percent, 7); /* 0.07 * 100 is 7.000000000000001 */
    CHECK_INT(alias("{}", &al), 0);  /* absent: kept */
    CHECK_INT(al.weight_percent, 7);
    CHECK_INT(alias("{\"RoutingConfig\": {\"AdditionalVersionWeights\": {}}}", &al), 0);
    CHECK_INT(al.weight_version, 0);
    CHECK_INT(alias("{\"FunctionVersion\": \"$LATEST\"}", &al), -1);
    CHECK_INT(alias("{\"FunctionVersion\": \"01\"}", &al), -1);
    CHECK_INT(alias("{\"FunctionVersion\": \"4294967296\"}", &al), -1);
    CHECK_INT(alias("{\"Description\": \"x\"}", &al), -1);
    CHECK_INT(alias("{\"RoutingConfig\": {\"AdditionalVersionWeights\": {\"3\": 0.125}}}", &al),
              -1);
    CHECK_INT(alias("{\"RoutingConfig\": {\"AdditionalVersionWeights\": {\"3\": 1}}}", &al), -1);
    CHECK_INT(
        alias("{\"RoutingConfig\": {\"AdditionalVersionWeights\": {\"3\": 0.1, \"4\": 0.1}}}", &al),
        -1);
}

static void test_runtimes_and_base64(void)
{
    CHECK_INT(lambda_runtime_of("python3.9"), RUNTIME_PYTHON3);
    CHECK_INT(lambda_runtime_of("python3."), -1);
    CHECK_INT(lambda_runtime_of("python3.1x"), -1);
    CHECK_INT(lambda_runtime_of("provided"), RUNTIME_EXEC);
    CHECK_INT(lambda_runtime_of("nodejs16.x"), -1);
    for (int r = RUNTIME_EXEC; r <= RUNTIME_NODEJS; r++)
        CHECK_INT(lambda_runtime_of(lambda_runtime_name((enum fn_runtime)r)), r);
    unsigned char out[16];
    CHECK_INT(hash_unbase64("aGk=", 4, out), 2);
    CHECK(memcmp(out, "hi", 2) == 0);
    CHECK_INT(hash_unbase64("aGk", 3, out), -1);
    CHECK_INT(hash_unbase64(" aGk", 4, out), -1);
    CHECK_INT(hash_unbase64("a!k=", 4, out), -1);
    CHECK_INT(hash_unbase64("", 0, out), 0);
}

int main(void)
{
    RUN(test_config);
    RUN(test_supported);
    RUN(test_alias);
    RUN(test_runtimes_and_base64);
    return TEST_RESULT();
}
