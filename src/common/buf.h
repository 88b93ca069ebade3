/*
 * buf.h - a growable byte buffer with a maximum fixed at init (as curl's
 * dynbuf): every buffer fed from outside says how large it may become.
 */
#ifndef SPATE_BUF_H
#define SPATE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    size_t max; /* len never exceeds this */
} buf;

void buf_init(buf *b, size_t max);
/* Frees the storage; the buffer is empty and usable again. NULL is a no-op. */
void buf_free(buf *b);
/* Makes room for extra more bytes. ERR_TOOBIG past max, ERR_NOMEM. */
int buf_reserve(buf *b, size_t extra);
int buf_append(buf *b, const void *data, size_t len);
int buf_append_str(buf *b, const char *s);
int buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(buf *b, const char *fmt, va_list ap);
/* Keeps the storage, forgets the content. */
static inline void buf_reset(buf *b)
{
    b->len = 0;
}
/* Hands the storage to the caller (free with free()); the buffer is empty. */
char *buf_detach(buf *b, size_t *len);
/* Moves src's content into dst (dst's old content is freed); src is empty. */
void buf_move(buf *dst, buf *src);

#endif
