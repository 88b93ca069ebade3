/* Unit tests of api/lambda_parse.c: the names, ARNs and qualifiers Lambda's
 * Invoke API takes, and the headers that say how to run. */
#include "api/lambda.h"
#include "test.h"

static int parse(const char *segment, const char *query, lambda_target *t)
{
    char why[300];
    return lambda_parse_target(segment, strlen(segment), query, t, why, sizeof why);
}

static void test_names_and_arns(void)
{
    lambda_target t;
    CHECK_INT(parse("fn", "", &t), 0);
    CHECK_STR(t.function, "fn");
    CHECK_STR(t.qualifier, "");
    CHECK_INT(parse("fn:3", "", &t), 0);
    CHECK_STR(t.qualifier, "3");
    CHECK_INT(parse("arn:aws:lambda:eu-west-1:123456789012:function:my-fn", "", &t), 0);
    CHECK_STR(t.function, "my-fn");
    CHECK_INT(parse("arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Afn%3Alive", "", &t),
              0);
    CHECK_STR(t.function, "fn");
    CHECK_STR(t.qualifier, "live");
    CHECK_INT(parse("000000000000:function:fn:$LATEST", "", &t), 0);
    CHECK_STR(t.qualifier, "$LATEST");
    CHECK_INT(parse("fn", "Qualifier=7&other=x", &t), 0);
    CHECK_STR(t.qualifier, "7");
    CHECK_INT(parse("fn:7", "Qualifier=7", &t), 0);
}

static void test_refusals(void)
{
    lambda_target t;
    CHECK_INT(parse("", "", &t), -1);
    CHECK_INT(parse("fn:1", "Qualifier=2", &t), -1); /* two qualifiers that differ */
    CHECK_INT(parse("arn:aws:s3:us-east-1:0:function:fn", "", &t), -1); /* not lambda */
    CHECK_INT(parse("a:b:c:d:e", "", &t), -1);
    CHECK_INT(parse("bad%2Fname", "", &t), -1);
    CHECK_INT(parse("fn%00", "", &t), -1);
    CHECK_INT(parse("fn%4", "", &t), -1);
    CHECK_INT(parse("-fn", "", &t), -1);
    CHECK_INT(parse("fn:bad.qualifier", "", &t), -1);
    CHECK_INT(parse("fn", "Qualifier=", &t), -1);
}

static void test_headers(void)
{
    CHECK_INT(lambda_parse_invocation_type(NULL), LAMBDA_REQUEST_RESPONSE);
    CHECK_INT(lambda_parse_invocation_type("Event"), LAMBDA_EVENT);
    CHECK_INT(lambda_parse_invocation_type("DryRun"), LAMBDA_DRY_RUN);
    CHECK_INT(lambda_parse_invocation_type("event"), -1);
    CHECK_INT(lambda_parse_log_type("Tail"), 1);
    CHECK_INT(lambda_parse_log_type(NULL), 0);
    CHECK_INT(lambda_parse_log_type("All"), -1);
}

static void test_split_error(void)
{
    char type[32];
    const char *text = "TestError: it broke";
    CHECK_STR(lambda_split_error(text, strlen(text), type, sizeof type), "it broke");
    CHECK_STR(type, "TestError");
    text = "it broke: badly";
    CHECK(lambda_split_error(text, strlen(text), type, sizeof type) == text);
    CHECK_STR(type, "");
}

int main(void)
{
    RUN(test_names_and_arns);
    RUN(test_refusals);
    RUN(test_headers);
    RUN(test_split_error);
    return TEST_RESULT();
}
