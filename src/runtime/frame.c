#include "runtime/frame.h"

#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

void frame_header_encode(uint8_t out[FRAME_HEADER_SIZE], uint32_t len, uint8_t type, uint8_t flags)
{
    put_u32(out, len);
    out[4] = type;
    out[5] = flags;
    out[6] = 0;
    out[7] = 0;
}

int frame_header_decode(const uint8_t in[FRAME_HEADER_SIZE], uint32_t max, frame *f)
{
    f->len = get_u32(in);
    f->type = in[4];
    f->flags = in[5];
    if (f->type < FRAME_READY || f->type > FRAME_CANCEL || in[6] || in[7]) return ERR_PROTO;
    if (f->len > max) return ERR_TOOBIG;
    return 0;
}

static size_t opt_len(const char *s)
{
    return s ? strlen(s) : 0;
}

/* Writes n strings, each with its NUL (an absent one as ""); returns the end. */
static uint8_t *put_strings(uint8_t *p, const char *const *strs, const size_t *lens, int n)
{
    for (int i = 0; i < n; i++) {
        if (lens[i]) memcpy(p, strs[i], lens[i]);
        p[lens[i]] = '\0';
        p += lens[i] + 1;
    }
    return p;
}

int frame_invoke_encode(buf *out, const frame_invoke *inv)
{
    size_t rid = strlen(inv->request_id), fn = strlen(inv->function);
    size_t topic = opt_len(inv->topic), key = opt_len(inv->key);
    if (rid > UINT16_MAX || fn > UINT16_MAX || topic > UINT16_MAX || key > UINT16_MAX)
        return ERR_TOOBIG;
    size_t src = 0, uid = 0, hdr = 0, attrs = 0;
    if (inv->has_attrs) {
        src = opt_len(inv->source);
        uid = opt_len(inv->upstream_id);
        hdr = inv->headers ? inv->headers_len : 0;
        if (src > UINT16_MAX || uid > UINT16_MAX || hdr > UINT16_MAX) return ERR_TOOBIG;
        attrs = FRAME_ATTRS_FIXED + src + uid + hdr + 3;
    }
    size_t meta = FRAME_INVOKE_FIXED + rid + fn + topic + key + 4 + attrs;
    if ((uint64_t)meta + inv->payload_len > UINT32_MAX) return ERR_TOOBIG;
    int rc = buf_reserve(out, FRAME_HEADER_SIZE + meta);
    if (rc) return rc;

    uint8_t *p = (uint8_t *)out->data + out->len;
    frame_header_encode(p, (uint32_t)(meta + inv->payload_len), FRAME_INVOKE, 0);
    p += FRAME_HEADER_SIZE;
    put_u64(p, (uint64_t)inv->deadline_ms);
    put_u32(p + 8, inv->attempt);
    put_u16(p + 12, (uint16_t)rid);
    put_u16(p + 14, (uint16_t)fn);
    put_u16(p + 16, (uint16_t)topic);
    put_u16(p + 18, (uint16_t)key);
    put_u32(p + 20, inv->payload_len);
    put_u32(p + 24, (inv->topic ? FRAME_HAS_TOPIC : 0) | (inv->key ? FRAME_HAS_KEY : 0) |
                        (inv->has_attrs ? FRAME_HAS_ATTRS : 0));
    put_u32(p + 28, 0);
    p += FRAME_INVOKE_FIXED;
    const char *strs[4] = {inv->request_id, inv->function, inv->topic, inv->key};
    size_t lens[4] = {rid, fn, topic, key};
    p = put_strings(p, strs, lens, 4);
    if (inv->has_attrs) {
        put_u64(p, (uint64_t)inv->upstream_ts_ms);
        put_u16(p + 8, (uint16_t)src);
        put_u16(p + 10, (uint16_t)uid);
        put_u32(p + 12, (uint32_t)hdr);
        put_u32(p + 16, (inv->redelivered ? FRAME_ATTR_REDELIVERED : 0) |
                            (inv->source ? FRAME_ATTR_SOURCE : 0) |
                            (inv->upstream_id ? FRAME_ATTR_UPSTREAM_ID : 0) |
                            (inv->headers ? FRAME_ATTR_HEADERS : 0));
        const char *astrs[3] = {inv->source, inv->upstream_id, inv->headers};
        size_t alens[3] = {src, uid, hdr};
        put_strings(p + FRAME_ATTRS_FIXED, astrs, alens, 3);
    }
    out->len += FRAME_HEADER_SIZE + meta;
    return 0;
}

/* Checks n strings of lens at *s (each with its NUL, none inside) and
 * points strs at them; *s moves past them. */
static int take_strings(const char **s, const char *end, const size_t *lens, const char **strs,
                        int n)
{
    for (int i = 0; i < n; i++) {
        if ((size_t)(end - *s) < lens[i] + 1) return ERR_PROTO;
        if ((*s)[lens[i]] != '\0' || memchr(*s, '\0', lens[i])) return ERR_PROTO;
        strs[i] = *s;
        *s += lens[i] + 1;
    }
    return 0;
}

int frame_invoke_decode(const char *body, uint32_t len, frame_invoke *out)
{
    const uint8_t *p = (const uint8_t *)body;
    if (len < FRAME_INVOKE_FIXED) return ERR_PROTO;
    memset(out, 0, sizeof *out);
    out->deadline_ms = (int64_t)get_u64(p);
    out->attempt = get_u32(p + 8);
    size_t lens[4] = {get_u16(p + 12), get_u16(p + 14), get_u16(p + 16), get_u16(p + 18)};
    out->payload_len = get_u32(p + 20);
    uint32_t flags = get_u32(p + 24);
    const char *end = body + len;
    if ((size_t)len - FRAME_INVOKE_FIXED < out->payload_len) return ERR_PROTO;
    const char *meta_end = end - out->payload_len;

    const char *s = body + FRAME_INVOKE_FIXED;
    const char *strs[4];
    if (take_strings(&s, meta_end, lens, strs, 4)) return ERR_PROTO;
    if (lens[0] == 0 || lens[1] == 0) return ERR_PROTO;
    out->request_id = strs[0];
    out->function = strs[1];
    out->topic = (flags & FRAME_HAS_TOPIC) ? strs[2] : NULL;
    out->key = (flags & FRAME_HAS_KEY) ? strs[3] : NULL;
    if (flags & FRAME_HAS_ATTRS) {
        if (meta_end - s < FRAME_ATTRS_FIXED) return ERR_PROTO;
        const uint8_t *a = (const uint8_t *)s;
        out->has_attrs = 1;
        out->upstream_ts_ms = (int64_t)get_u64(a);
        size_t alens[3] = {get_u16(a + 8), get_u16(a + 10), get_u32(a + 12)};
        uint32_t af = get_u32(a + 16);
        s += FRAME_ATTRS_FIXED;
        const char *astrs[3];
        if (take_strings(&s, meta_end, alens, astrs, 3)) return ERR_PROTO;
        out->redelivered = (af & FRAME_ATTR_REDELIVERED) != 0;
        out->source = (af & FRAME_ATTR_SOURCE) ? astrs[0] : NULL;
        out->upstream_id = (af & FRAME_ATTR_UPSTREAM_ID) ? astrs[1] : NULL;
        out->headers = (af & FRAME_ATTR_HEADERS) ? astrs[2] : NULL;
        out->headers_len = out->headers ? (uint32_t)alens[2] : 0;
    }
    if (s != meta_end) return ERR_PROTO;
    out->payload = s;
    return 0;
}

void frame_result_encode_fixed(uint8_t out[FRAME_RESULT_FIXED], uint32_t duration_us)
{
    put_u32(out, duration_us);
}

int frame_result_decode(const char *body, uint32_t len, uint32_t *duration_us, const char **data,
                        uint32_t *data_len)
{
    if (len < FRAME_RESULT_FIXED) return ERR_PROTO;
    *duration_us = get_u32((const uint8_t *)body);
    *data = body + FRAME_RESULT_FIXED;
    *data_len = len - FRAME_RESULT_FIXED;
    return 0;
}

void frame_reader_init(frame_reader *r, uint32_t max_body)
{
    buf_init(&r->in, FRAME_HEADER_SIZE + (size_t)max_body);
    r->consumed = 0;
    r->max_body = max_body;
}

void frame_reader_free(frame_reader *r)
{
    buf_free(&r->in);
    r->consumed = 0;
}

/* Drops the frames already handed out, so the buffer holds only unread bytes. */
static void compact(frame_reader *r)
{
    if (r->consumed == 0) return;
    size_t rest = r->in.len - r->consumed;
    if (rest) memmove(r->in.data, r->in.data + r->consumed, rest);
    r->in.len = rest;
    r->consumed = 0;
}

int frame_reader_space(frame_reader *r, size_t want, char **ptr, size_t *len)
{
    compact(r);
    size_t room = r->in.max - r->in.len;
    if (room == 0) return ERR_TOOBIG;
    if (want > room) want = room;
    int rc = buf_reserve(&r->in, want);
    if (rc) return rc;
    *ptr = r->in.data + r->in.len;
    *len = r->in.cap - r->in.len;
    return 0;
}

void frame_reader_commit(frame_reader *r, size_t n)
{
    r->in.len += n;
}

int frame_reader_next(frame_reader *r, frame *f)
{
    size_t avail = r->in.len - r->consumed;
    if (avail < FRAME_HEADER_SIZE) return 0;
    const uint8_t *p = (const uint8_t *)r->in.data + r->consumed;
    int rc = frame_header_decode(p, r->max_body, f);
    if (rc) return rc;
    if (avail - FRAME_HEADER_SIZE < f->len) return 0;
    f->body = (const char *)p + FRAME_HEADER_SIZE;
    r->consumed += FRAME_HEADER_SIZE + f->len;
    return 1;
}
