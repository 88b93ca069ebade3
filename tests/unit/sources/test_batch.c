/* Unit tests of sources/batch.c: entries, and upstream headers kept as one
 * JSON object of strings (escapes, bytes that are not UTF-8, the limit). */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "common/limits.h"
#include "sources/connector.h"
#include "test.h"

static cJSON *headers_of(const src_batch *b, const src_entry *e)
{
    return cJSON_ParseWithLength(b->bytes.data + e->hdr_at, e->hdr_len);
}

static void headers(void)
{
    src_batch b;
    src_batch_init(&b);
    src_entry *e = src_batch_add(&b, "1-0", 3);
    CHECK(e != NULL);
    CHECK_INT(buf_append(&b.bytes, "payload", 7), 0);
    e->len = 7;
    CHECK_INT(src_entry_header(&b, e, "trace", 5, "a\"b\\c\n", 6), 0);
    CHECK_INT(src_entry_header(&b, e, "bin", 3, "\xff\x01", 2), 0);
    CHECK_INT(src_entry_header(&b, e, "utf", 3, "\xc3\xa9t\xc3\xa9", 5), 0);
    CHECK_INT(src_entry_headers_end(&b, e), 0);
    cJSON *j = headers_of(&b, e);
    CHECK(j != NULL);
    CHECK_STR(cJSON_GetObjectItem(j, "trace")->valuestring, "a\"b\\c\n");
    CHECK_STR(cJSON_GetObjectItem(j, "bin")->valuestring, "\xc3\xbf\x01");
    CHECK_STR(cJSON_GetObjectItem(j, "utf")->valuestring, "\xc3\xa9t\xc3\xa9");
    cJSON_Delete(j);
    CHECK(memcmp(b.bytes.data, "payload", 7) == 0);

    /* No headers: nothing kept. */
    src_entry *f = src_batch_add(&b, "2-0", 3);
    CHECK_INT(src_entry_headers_end(&b, f), 0);
    CHECK_INT((int)f->hdr_len, 0);

    /* Over the limit: refused, and the bytes taken back. */
    src_entry *g = src_batch_add(&b, "3-0", 3);
    size_t before = b.bytes.len;
    static char big[SPATE_SOURCE_HEADERS_MAX / 2];
    memset(big, 'x', sizeof big);
    CHECK_INT(src_entry_header(&b, g, "a", 1, big, sizeof big), 0);
    CHECK(!g->refused[0]);
    CHECK_INT(src_entry_header(&b, g, "b", 1, big, sizeof big), 0);
    CHECK(strstr(g->refused, "headers are over") != NULL);
    CHECK_INT((int)b.bytes.len, (int)before);
    CHECK_INT(src_entry_header(&b, g, "c", 1, "y", 1), 0); /* ignored once refused */
    CHECK_INT(src_entry_headers_end(&b, g), 0);
    CHECK_INT((int)b.bytes.len, (int)before);
    src_batch_free(&b);
}

int main(void)
{
    RUN(headers);
    return TEST_RESULT();
}
