/* Unit tests of cluster/seal.c: the cluster key's file is checked, a sealed
 * registry value opens only under its key name and with the same key, a
 * flipped byte anywhere refuses it, and nodes with and without a key refuse
 * each other's values. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/seal.h"
#include "test.h"

static const char key_a[] = "0123456789abcdef0123456789abcdef-a";
static const char key_b[] = "0123456789abcdef0123456789abcdef-b";

static int opens(const seal *s, const char *key, const char *v, size_t len, char *out, size_t cap)
{
    const char *body = NULL;
    size_t n = 0;
    char why[200];
    if (seal_open(s, key, v, len, &body, &n, why, sizeof why) != 0) {
        snprintf(out, cap, "refused: %s", why);
        return -1;
    }
    snprintf(out, cap, "%.*s", (int)n, body);
    return 0;
}

static void a_value_round_trips(void)
{
    seal *s = seal_from(key_a, sizeof key_a - 1);
    CHECK(s != NULL);
    size_t len = 0;
    char *v = seal_value(s, "fn.app", "{\"sha256\":\"x\"}", 14, &len);
    CHECK_INT(len, SEAL_VALUE_EXTRA + 14);
    CHECK(strncmp(v, SEAL_PREFIX, SEAL_PREFIX_LEN) == 0);
    char out[300];
    CHECK_INT(opens(s, "fn.app", v, len, out, sizeof out), 0);
    CHECK_STR(out, "{\"sha256\":\"x\"}");
    /* Moved to another key: refused. */
    CHECK_INT(opens(s, "fn.other", v, len, out, sizeof out), -1);
    CHECK(strstr(out, "does not match") != NULL);
    /* Each byte flipped in turn: refused. */
    for (size_t i = 0; i < len; i++) {
        v[i] ^= 1;
        if (opens(s, "fn.app", v, len, out, sizeof out) == 0) {
            fprintf(stderr, "byte %zu flipped still opens\n", i);
            CHECK(0);
        }
        v[i] ^= 1;
    }
    /* Cut short or with a byte more: refused. */
    CHECK_INT(opens(s, "fn.app", v, len - 1, out, sizeof out), -1);
    free(v);
    seal_free(s);
}

static void keys_refuse_each_other(void)
{
    seal *a = seal_from(key_a, sizeof key_a - 1), *b = seal_from(key_b, sizeof key_b - 1);
    CHECK(strcmp(seal_id(a), seal_id(b)) != 0);
    CHECK_INT(strlen(seal_id(a)), 16);
    size_t len = 0;
    char out[300];
    char *v = seal_value(a, "so.s", "{}", 2, &len);
    CHECK_INT(opens(b, "so.s", v, len, out, sizeof out), -1);
    /* A node without a key refuses a sealed value (it cannot check it) ... */
    CHECK_INT(opens(NULL, "so.s", v, len, out, sizeof out), -1);
    CHECK(strstr(out, "has none") != NULL);
    free(v);
    /* ... and one with a key refuses a bare one, as a forger writes it. */
    CHECK_INT(opens(a, "so.s", "{\"name\":\"s\"}", 12, out, sizeof out), -1);
    CHECK(strstr(out, "not sealed") != NULL);
    /* Without keys, values are bare both ways. */
    v = seal_value(NULL, "so.s", "{}", 2, &len);
    CHECK_INT(len, 2);
    CHECK_INT(opens(NULL, "so.s", v, len, out, sizeof out), 0);
    CHECK_STR(out, "{}");
    free(v);
    /* An empty value (a tombstone) seals and opens. */
    v = seal_value(a, "fn.app", "", 0, &len);
    CHECK_INT(opens(a, "fn.app", v, len, out, sizeof out), 0);
    CHECK_STR(out, "");
    free(v);
    seal_free(a);
    seal_free(b);
}

static void parts_are_length_prefixed(void)
{
    seal *s = seal_from(key_a, sizeof key_a - 1);
    char h1[SEAL_HEX_LEN + 1], h2[SEAL_HEX_LEN + 1];
    seal_part p1[] = {{"ab", 2}, {"c", 1}}, p2[] = {{"a", 1}, {"bc", 2}};
    CHECK_INT(seal_mac(s, p1, 2, h1), 0);
    CHECK_INT(seal_mac(s, p2, 2, h2), 0);
    CHECK(strcmp(h1, h2) != 0);
    CHECK_INT(seal_check(s, p1, 2, h1), 0);
    CHECK_INT(seal_check(s, p2, 2, h1), -1);
    CHECK_INT(seal_check(s, p1, 2, NULL), -1);
    CHECK_INT(seal_check(s, p1, 2, "00"), -1);
    seal_free(s);
    /* HMAC-SHA256 itself, against Python's hmac: key 32 x 'k', one empty
     * part (its length, 8 zero bytes). */
    char k[32];
    memset(k, 'k', sizeof k);
    s = seal_from(k, sizeof k);
    seal_part none[] = {{"", 0}};
    CHECK_INT(seal_mac(s, none, 1, h1), 0);
    CHECK_STR(h1, "ce298a69cb08e07209c0c1e37b1148f349ec7e820950a62b400268497b859d63");
    seal_free(s);
    CHECK(seal_from(k, 31) == NULL);
}

static void key_files_are_checked(void)
{
    char dir[] = "/tmp/test_seal.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[300], err[300];
    snprintf(path, sizeof path, "%s/key", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(write(fd, "short\n", 6) == 6);
    close(fd);
    CHECK(seal_load(path, err, sizeof err) == NULL);
    CHECK(strstr(err, "shorter than 32 bytes") != NULL);
    fd = open(path, O_WRONLY | O_TRUNC);
    /* 32 bytes and a newline: the newline is not part of the key. */
    CHECK(write(fd, "0123456789abcdef0123456789abcdef\n", 33) == 33);
    close(fd);
    seal *s = seal_load(path, err, sizeof err);
    CHECK(s != NULL);
    seal *t = seal_from("0123456789abcdef0123456789abcdef", 32);
    CHECK_STR(seal_id(s), seal_id(t));
    seal_free(s);
    seal_free(t);
    chmod(path, 0640);
    CHECK(seal_load(path, err, sizeof err) == NULL);
    CHECK(strstr(err, "group or others") != NULL);
    chmod(path, 0604);
    CHECK(seal_load(path, err, sizeof err) == NULL);
    CHECK(seal_load(dir, err, sizeof err) == NULL);
    CHECK(strstr(err, "not a regular file") != NULL);
    unlink(path);
    CHECK(seal_load(path, err, sizeof err) == NULL);
    CHECK(strstr(err, "cannot read it") != NULL);
    rmdir(dir);
}

int main(void)
{
    RUN(a_value_round_trips);
    RUN(keys_refuse_each_other);
    RUN(parts_are_length_prefixed);
    RUN(key_files_are_checked);
    return TEST_RESULT();
}
