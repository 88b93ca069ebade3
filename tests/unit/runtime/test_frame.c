/* Unit tests of the frame codec and its incremental reader (runtime/frame.c). */
#include "runtime/frame.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "test.h"

static void header_round_trip(void)
{
    uint8_t h[FRAME_HEADER_SIZE];
    frame f;
    frame_header_encode(h, 1234567, FRAME_RESULT, FRAME_FAILED);
    CHECK_INT(frame_header_decode(h, 2000000, &f), 0);
    CHECK_INT(f.len, 1234567);
    CHECK_INT(f.type, FRAME_RESULT);
    CHECK_INT(f.flags, FRAME_FAILED);
    CHECK_INT(frame_header_decode(h, 1000, &f), ERR_TOOBIG);
    frame_header_encode(h, 1, 9, 0);
    CHECK_INT(frame_header_decode(h, 1000, &f), ERR_PROTO);
    frame_header_encode(h, 1, 0, 0);
    CHECK_INT(frame_header_decode(h, 1000, &f), ERR_PROTO);
    frame_header_encode(h, 1, FRAME_READY, 0);
    h[7] = 1; /* reserved bytes must be zero */
    CHECK_INT(frame_header_decode(h, 1000, &f), ERR_PROTO);
}

/* Encodes inv followed by its payload, as spated sends it. */
static void encode_whole(buf *out, const frame_invoke *inv)
{
    buf_init(out, 1u << 24);
    CHECK_INT(frame_invoke_encode(out, inv), 0);
    buf_append(out, inv->payload, inv->payload_len);
}

static void invoke_round_trip(void)
{
    const char payload[] = {'a', 0, 'b', (char)0xff};
    frame_invoke in = {.deadline_ms = 1700000000123,
                       .attempt = 3,
                       .request_id = "req-1",
                       .function = "hello",
                       .topic = "trades",
                       .key = "acct-7",
                       .payload = payload,
                       .payload_len = sizeof payload};
    buf b;
    encode_whole(&b, &in);
    frame f;
    CHECK_INT(frame_header_decode((uint8_t *)b.data, 1u << 20, &f), 0);
    CHECK_INT(f.type, FRAME_INVOKE);
    CHECK_INT(f.len, b.len - FRAME_HEADER_SIZE);
    frame_invoke out;
    CHECK_INT(frame_invoke_decode(b.data + FRAME_HEADER_SIZE, f.len, &out), 0);
    CHECK_INT(out.deadline_ms, 1700000000123);
    CHECK_INT(out.attempt, 3);
    CHECK_STR(out.request_id, "req-1");
    CHECK_STR(out.function, "hello");
    CHECK_STR(out.topic, "trades");
    CHECK_STR(out.key, "acct-7");
    CHECK_INT(out.payload_len, sizeof payload);
    CHECK(memcmp(out.payload, payload, sizeof payload) == 0);
    buf_free(&b);

    /* Absent topic and key stay absent; an empty payload is fine. */
    frame_invoke bare = {.request_id = "r", .function = "f", .payload = "", .payload_len = 0};
    encode_whole(&b, &bare);
    CHECK_INT(frame_invoke_decode(b.data + FRAME_HEADER_SIZE, (uint32_t)(b.len - FRAME_HEADER_SIZE),
                                  &out),
              0);
    CHECK(out.topic == NULL);
    CHECK(out.key == NULL);
    CHECK_INT(out.payload_len, 0);
    buf_free(&b);
}

static void invoke_malformed(void)
{
    frame_invoke in = {.request_id = "req", .function = "fn", .payload = "xyz", .payload_len = 3};
    buf b;
    encode_whole(&b, &in);
    char *body = b.data + FRAME_HEADER_SIZE;
    uint32_t len = (uint32_t)(b.len - FRAME_HEADER_SIZE);
    frame_invoke out;
    CHECK_INT(frame_invoke_decode(body, len - 1, &out), ERR_PROTO); /* short */
    CHECK_INT(frame_invoke_decode(body, 10, &out), ERR_PROTO);      /* shorter than fixed part */
    body[FRAME_INVOKE_FIXED + 3] = 'x'; /* the NUL after the request id */
    CHECK_INT(frame_invoke_decode(body, len, &out), ERR_PROTO);
    buf_free(&b);

    frame_invoke empty_id = {.request_id = "", .function = "fn", .payload = "", .payload_len = 0};
    encode_whole(&b, &empty_id);
    CHECK_INT(frame_invoke_decode(b.data + FRAME_HEADER_SIZE, (uint32_t)(b.len - FRAME_HEADER_SIZE),
                                  &out),
              ERR_PROTO);
    buf_free(&b);
}

/* Feeds two frames one byte at a time: each comes out whole, once. */
/* Attributes travel only when there are some, and come back as they went. */
static void invoke_attributes(void)
{
    const char hdrs[] = "{\"trace\":\"t-1\"}";
    frame_invoke in = {.request_id = "req",
                       .function = "fn",
                       .topic = "t",
                       .payload = "xyz",
                       .payload_len = 3,
                       .has_attrs = 1,
                       .redelivered = 1,
                       .upstream_ts_ms = 1700000000000,
                       .source = "orders-in",
                       .upstream_id = "1700000000000-1",
                       .headers = hdrs,
                       .headers_len = sizeof hdrs - 1};
    buf b;
    encode_whole(&b, &in);
    frame_invoke out;
    CHECK_INT(frame_invoke_decode(b.data + FRAME_HEADER_SIZE, (uint32_t)(b.len - FRAME_HEADER_SIZE),
                                  &out),
              0);
    CHECK_INT(out.has_attrs, 1);
    CHECK_INT(out.redelivered, 1);
    CHECK_INT(out.upstream_ts_ms, 1700000000000);
    CHECK_STR(out.source, "orders-in");
    CHECK_STR(out.upstream_id, "1700000000000-1");
    CHECK_STR(out.headers, hdrs);
    CHECK_INT(out.headers_len, sizeof hdrs - 1);
    CHECK_STR(out.topic, "t");
    CHECK_INT(out.payload_len, 3);
    CHECK(memcmp(out.payload, "xyz", 3) == 0);
    /* Cut anywhere in the attributes: refused, never read past. */
    for (uint32_t cut = 1; cut < b.len - FRAME_HEADER_SIZE; cut++)
        CHECK(frame_invoke_decode(b.data + FRAME_HEADER_SIZE, cut, &out) != 0);
    size_t with = b.len;
    buf_free(&b);
    /* Some absent: NULL again; none: not a byte more than before. */
    frame_invoke some = in;
    some.source = NULL;
    some.headers = NULL;
    some.redelivered = 0;
    encode_whole(&b, &some);
    CHECK_INT(frame_invoke_decode(b.data + FRAME_HEADER_SIZE, (uint32_t)(b.len - FRAME_HEADER_SIZE),
                                  &out),
              0);
    CHECK(out.source == NULL && out.headers == NULL && out.headers_len == 0);
    CHECK_INT(out.redelivered, 0);
    CHECK_STR(out.upstream_id, "1700000000000-1");
    buf_free(&b);
    frame_invoke none = in;
    none.has_attrs = 0;
    encode_whole(&b, &none);
    CHECK(b.len < with);
    CHECK_INT(frame_invoke_decode(b.data + FRAME_HEADER_SIZE, (uint32_t)(b.len - FRAME_HEADER_SIZE),
                                  &out),
              0);
    CHECK(!out.has_attrs && out.source == NULL && out.upstream_id == NULL);
    buf_free(&b);
}

static void reader_byte_by_byte(void)
{
    buf stream;
    buf_init(&stream, 4096);
    uint8_t h[FRAME_HEADER_SIZE];
    frame_header_encode(h, 0, FRAME_READY, 0);
    buf_append(&stream, h, sizeof h);
    frame_header_encode(h, 5, FRAME_RESULT, 0);
    buf_append(&stream, h, sizeof h);
    buf_append(&stream, "hello", 5);

    frame_reader r;
    frame_reader_init(&r, 1024);
    int got = 0;
    for (size_t i = 0; i < stream.len; i++) {
        char *p;
        size_t room;
        CHECK_INT(frame_reader_space(&r, 1, &p, &room), 0);
        CHECK(room >= 1);
        *p = stream.data[i];
        frame_reader_commit(&r, 1);
        frame f;
        int rc;
        while ((rc = frame_reader_next(&r, &f)) == 1) {
            if (got == 0) {
                CHECK_INT(f.type, FRAME_READY);
                CHECK_INT(f.len, 0);
                CHECK_INT(i, FRAME_HEADER_SIZE - 1);
            } else {
                CHECK_INT(f.type, FRAME_RESULT);
                CHECK_INT(f.len, 5);
                CHECK(memcmp(f.body, "hello", 5) == 0);
                CHECK_INT(i, stream.len - 1);
            }
            got++;
        }
        CHECK_INT(rc, 0);
    }
    CHECK_INT(got, 2);
    frame_reader_free(&r);
    buf_free(&stream);
}

static void result_round_trip(void)
{
    uint8_t fixed[FRAME_RESULT_FIXED];
    frame_result_encode_fixed(fixed, 123456);
    char body[FRAME_RESULT_FIXED + 3];
    memcpy(body, fixed, sizeof fixed);
    memcpy(body + FRAME_RESULT_FIXED, "out", 3);
    uint32_t dur, len;
    const char *data;
    CHECK_INT(frame_result_decode(body, sizeof body, &dur, &data, &len), 0);
    CHECK_INT(dur, 123456);
    CHECK_INT(len, 3);
    CHECK(memcmp(data, "out", 3) == 0);
    CHECK_INT(frame_result_decode(body, 3, &dur, &data, &len), ERR_PROTO);
}

static void reader_limits(void)
{
    frame_reader r;
    frame_reader_init(&r, 16);
    uint8_t h[FRAME_HEADER_SIZE];
    frame_header_encode(h, 17, FRAME_RESULT, 0);
    char *p;
    size_t room;
    CHECK_INT(frame_reader_space(&r, sizeof h, &p, &room), 0);
    memcpy(p, h, sizeof h);
    frame_reader_commit(&r, sizeof h);
    frame f;
    CHECK_INT(frame_reader_next(&r, &f), ERR_TOOBIG);
    frame_reader_free(&r);

    /* The buffer never grows past header + maximum body. */
    frame_reader_init(&r, 16);
    size_t total = 0;
    while (frame_reader_space(&r, 64, &p, &room) == 0) {
        frame_reader_commit(&r, room);
        total += room;
        if (total > 1000) break;
    }
    CHECK_INT(total, FRAME_HEADER_SIZE + 16);
    frame_reader_free(&r);
}

int main(void)
{
    RUN(header_round_trip);
    RUN(invoke_round_trip);
    RUN(invoke_malformed);
    RUN(invoke_attributes);
    RUN(reader_byte_by_byte);
    RUN(result_round_trip);
    RUN(reader_limits);
    return TEST_RESULT();
}
