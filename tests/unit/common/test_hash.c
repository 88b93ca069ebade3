/* Unit tests of common/hash: the digests against known vectors, first used
 * from several threads at once (the algorithms are fetched on first use). */
#include <pthread.h>

#include "common/hash.h"
#include "test.h"

static int wrong; /* digests that came out wrong in a thread */

static void *digest_often(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        char md5[HASH_MD5_HEX_LEN + 1], sha[HASH_HEX_LEN + 1];
        if (hash_md5_hex("abc", 3, md5) || strcmp(md5, "900150983cd24fb0d6963f7d28e17f72") ||
            hash_sha256_hex("abc", 3, sha) ||
            strcmp(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
            __atomic_fetch_add(&wrong, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void digests(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++) CHECK_INT(pthread_create(&t[i], NULL, digest_often, NULL), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK_INT(wrong, 0);
    char md5[HASH_MD5_HEX_LEN + 1], sha[HASH_HEX_LEN + 1];
    CHECK_INT(hash_md5_hex("", 0, md5), 0);
    CHECK_STR(md5, "d41d8cd98f00b204e9800998ecf8427e");
    CHECK_INT(hash_sha256_hex("", 0, sha), 0);
    CHECK_STR(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

int main(void)
{
    RUN(digests);
    return TEST_RESULT();
}
