#include "common/hash.h"

#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

#include "common/err.h"

/* The digests, fetched once: EVP_md5() and EVP_sha256() make OpenSSL 3 look
 * the algorithm up again on every digest, under its locks (an MD5 of each
 * SQS message sent and received: in bench/sqs's profile the lookup was two
 * thirds of such a digest's time). Kept for the process's life; NULL: the
 * lookup failed, and the per-call one is used. */
static EVP_MD *md5_md, *sha256_md;
static pthread_once_t fetched = PTHREAD_ONCE_INIT;

static void fetch_digests(void)
{
    md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The lowercase hex of a size-byte digest of type md and a NUL. */
static int digest_hex(const EVP_MD *type, unsigned size, const void *data, size_t len, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, type, NULL) || mdlen != size) return ERR_IO;
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < size; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[2 * size] = '\0';
    return 0;
}

int hash_sha256_hex(const void *data, size_t len, char hex[HASH_HEX_LEN + 1])
{
    pthread_once(&fetched, fetch_digests);
    return digest_hex(sha256_md ? sha256_md : EVP_sha256(), 32, data, len, hex);
}

int hash_md5_hex(const void *data, size_t len, char hex[HASH_MD5_HEX_LEN + 1])
{
    pthread_once(&fetched, fetch_digests);
    return digest_hex(md5_md ? md5_md : EVP_md5(), 16, data, len, hex);
}

size_t hash_base64(const void *data, size_t len, char *out)
{
    return (size_t)EVP_EncodeBlock((unsigned char *)out, data, (int)len);
}

long hash_unbase64(const char *s, size_t len, unsigned char *out)
{
    if (len % 4 || len > INT_MAX) return -1;
    if (len == 0) return 0;
    /* EVP_DecodeBlock skips whitespace around the text but not in it, and
     * counts the padding as bytes. */
    static const char space[] = " \t\n\r\f\v";
    if (strchr(space, s[0]) || strchr(space, s[len - 1])) return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)s, (int)len);
    if (n < 0) return -1;
    if (s[len - 1] == '=') n--;
    if (s[len - 2] == '=') n--;
    return n;
}
