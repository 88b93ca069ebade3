/*
 * test_auth - the token file (api/auth.c): tokens and their scopes, and the
 * "SCOPE cert:SUBJECT" lines that let a client certificate stand for a token.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/auth.h"
#include "test.h"

static char path[64];

/* Loads text as a token file: 0 and *a, or the error in err. */
static int load(const char *text, auth **a, char *err, size_t cap)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    *a = NULL;
    return auth_load(path, a, err, cap);
}

static void test_cert_lines(void)
{
    char err[512];
    auth *a;
    CHECK_INT(load("admin admin-token-0123456789\n"
                   "invoke cert:CN=ci,O=spate tests\n"
                   "publish   cert:CN=ci,O=spate tests  \r\n"
                   "admin cert:CN=deployer,O=Example\n",
                   &a, err, sizeof err),
              0);
    CHECK_INT(auth_cert_scopes(a, "CN=ci,O=spate tests"), SCOPE_INVOKE | SCOPE_PUBLISH);
    CHECK_INT(auth_cert_scopes(a, "CN=deployer,O=Example"), SCOPE_ANY);
    /* Exact: no prefix, no case folding, nothing for NULL. */
    CHECK_INT(auth_cert_scopes(a, "CN=ci"), 0);
    CHECK_INT(auth_cert_scopes(a, "cn=deployer,o=example"), 0);
    CHECK_INT(auth_cert_scopes(a, NULL), 0);
    /* A subject is no token. */
    CHECK_INT(auth_scopes(a, "Bearer cert:CN=deployer,O=Example"), 0);
    CHECK_INT(auth_scopes(a, "Bearer admin-token-0123456789"), SCOPE_ANY);
    auth_free(a);

    /* A file of certificate lines only is a file with something in it. */
    CHECK_INT(load("admin cert:CN=only\n", &a, err, sizeof err), 0);
    CHECK_INT(auth_cert_scopes(a, "CN=only"), SCOPE_ANY);
    auth_free(a);
}

static void test_bad_cert_lines(void)
{
    char err[512];
    auth *a;
    CHECK(load("admin cert:\n", &a, err, sizeof err) != 0);
    CHECK(strstr(err, ":1: expected 'SCOPE cert:SUBJECT'") != NULL);
    CHECK(load("admin tok-0123456789abcdef\nroot cert:CN=x\n", &a, err, sizeof err) != 0);
    CHECK(strstr(err, ":2: unknown scope 'root'") != NULL);
    CHECK(load("invoke cert:no-equals-sign\n", &a, err, sizeof err) != 0);
    CHECK(strstr(err, "RFC 2253") != NULL);
}

int main(void)
{
    snprintf(path, sizeof path, "/tmp/test-auth-%d", (int)getpid());
    RUN(test_cert_lines);
    RUN(test_bad_cert_lines);
    unlink(path);
    return TEST_RESULT();
}
