/* utf8.h - UTF-8 validation (keys must be text). */
#ifndef SPATE_UTF8_H
#define SPATE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Well-formed UTF-8 with no NUL, no overlong forms, no surrogates. */
bool utf8_valid(const char *s, size_t len);

#endif
