/*
 * fuzz_frame - the frame codec (runtime/frame.h) against arbitrary bytes:
 * the reader fed in uneven pieces, every frame it yields decoded, and every
 * INVOKE that decodes encoded again and decoded to the same fields.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/limits.h"
#include "runtime/frame.h"

static void same_or_die(const frame_invoke *a, const frame_invoke *b)
{
    if (a->deadline_ms != b->deadline_ms || a->attempt != b->attempt ||
        strcmp(a->request_id, b->request_id) || strcmp(a->function, b->function) ||
        !a->topic != !b->topic || (a->topic && strcmp(a->topic, b->topic)) || !a->key != !b->key ||
        (a->key && strcmp(a->key, b->key)) || a->payload_len != b->payload_len ||
        memcmp(a->payload, b->payload, a->payload_len))
        abort();
}

static void check_invoke(const char *body, uint32_t len)
{
    frame_invoke inv;
    if (frame_invoke_decode(body, len, &inv) != 0) return;
    buf out;
    buf_init(&out, FRAME_HEADER_SIZE + SPATE_FRAME_MAX);
    if (frame_invoke_encode(&out, &inv) == 0 &&
        buf_append(&out, inv.payload, inv.payload_len) == 0) {
        frame f;
        if (frame_header_decode((const uint8_t *)out.data, SPATE_FRAME_MAX, &f) != 0 ||
            f.type != FRAME_INVOKE || f.len != out.len - FRAME_HEADER_SIZE)
            abort();
        frame_invoke again;
        if (frame_invoke_decode(out.data + FRAME_HEADER_SIZE, f.len, &again) != 0) abort();
        same_or_die(&inv, &again);
    }
    buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    /* The first byte sets the piece size the reader is fed in. */
    size_t piece = (size_t)data[0] + 1;
    data++;
    size--;
    frame_reader r;
    frame_reader_init(&r, 64 * 1024);
    size_t off = 0;
    int failed = 0;
    while (off < size && !failed) {
        char *p;
        size_t room;
        if (frame_reader_space(&r, piece, &p, &room) != 0) break;
        size_t n = size - off < room ? size - off : room;
        if (n > piece) n = piece;
        memcpy(p, data + off, n);
        frame_reader_commit(&r, n);
        off += n;
        frame f;
        int rc;
        while ((rc = frame_reader_next(&r, &f)) == 1) {
            if (f.type == FRAME_INVOKE) check_invoke(f.body, f.len);
            if (f.type == FRAME_RESULT) {
                uint32_t d, dl;
                const char *body;
                frame_result_decode(f.body, f.len, &d, &body, &dl);
            }
        }
        failed = rc < 0;
    }
    frame_reader_free(&r);
    /* And the body decoders on the raw bytes. */
    check_invoke((const char *)data, (uint32_t)size);
    return 0;
}
