/* Unit tests of cluster/secure.c: URLs shown without their credentials, and
 * the credential and TLS files refused with what and why before any
 * connection (the integration tests run them against real nats-servers). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "test.h"

static void urls_are_shown_without_credentials(void)
{
    char out[256];
    CHECK_INT(cluster_shown_urls("nats://a:b@h1:4222,tls://t0ken@h2:4222", out, sizeof out), 1);
    CHECK_STR(out, "nats://***@h1:4222,tls://***@h2:4222");
    CHECK_INT(cluster_shown_urls("nats://h1:4222,nats://u:p@h2:1", out, sizeof out), 0);
    CHECK_STR(out, "nats://h1:4222,nats://***@h2:1");
    /* No scheme; a password holding an unescaped '@': hidden whole. */
    CHECK_INT(cluster_shown_urls("u:p@ss@h:1", out, sizeof out), 1);
    CHECK_STR(out, "***@h:1");
    /* Too long for out: cut, never a credential. */
    char small[12];
    cluster_shown_urls("nats://user:secretpassword@host:4222", small, sizeof small);
    CHECK(strstr(small, "secret") == NULL);
}

static char dir[64];

static const char *file(const char *name, const char *text, int mode)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, (mode_t)mode);
    return path;
}

static int check(const char *creds, const char *ca, const char *cert, const char *key, char *err,
                 size_t cap)
{
    cluster_config cfg = {.urls = "nats://127.0.0.1:1",
                          .creds = creds,
                          .tls_ca = ca,
                          .tls_cert = cert,
                          .tls_key = key};
    err[0] = '\0';
    return cluster_check_files(&cfg, err, cap);
}

static void files_are_checked(void)
{
    char err[512];
    const char *seed = "SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM";
    const char *pub = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4";
    char text[256];
    /* Seed and public key, in either order, with comments and blanks. */
    snprintf(text, sizeof text, "# node 1\n\n  %s\n%s\n", pub, seed);
    CHECK_INT(check(file("ok.nk", text, 0600), NULL, NULL, NULL, err, sizeof err), 0);
    snprintf(text, sizeof text, "%s\n", seed);
    CHECK_INT(check(file("seed.nk", text, 0600), NULL, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "holds an NKey seed but not its public key") != NULL);
    CHECK(strstr(err, seed) == NULL);
    /* A seed commented out is no seed. */
    snprintf(text, sizeof text, "# %s\n%s\n", seed, pub);
    CHECK_INT(check(file("commented.nk", text, 0600), NULL, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "is neither a NATS creds file") != NULL);
    CHECK_INT(check(file("empty", "", 0600), NULL, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "is empty") != NULL);
    CHECK_INT(check("/nonexistent/x.creds", NULL, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "cannot read --cluster-creds '/nonexistent/x.creds'") != NULL);
    CHECK_INT(check(dir, NULL, NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "is not a regular file") != NULL);
    /* TLS files: PEM, and a certificate only with its key. */
    CHECK_INT(check(NULL, file("ca.pem", "hello\n", 0644), NULL, NULL, err, sizeof err), -1);
    CHECK(strstr(err, "--cluster-tls-ca") && strstr(err, "is not a PEM certificate"));
    CHECK_INT(check(NULL, NULL, file("c.pem", "x", 0644), NULL, err, sizeof err), -1);
    CHECK(strstr(err, "go together (--cluster-tls-cert without the other)") != NULL);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/spate-test-secure-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(urls_are_shown_without_credentials);
    RUN(files_are_checked);
    char rm[128];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    return TEST_RESULT();
}
