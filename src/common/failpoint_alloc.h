/*
 * failpoint_alloc.h - with SPATE_FAILPOINTS, included before anything else in
 * each source of spated's libraries (-include, CMakeLists.txt): routes their
 * allocations through common/failpoint.c, which can fail the Nth (see
 * failpoint.h). The libc headers come first so that their declarations are
 * not rewritten; only calls are (the macros take arguments), so a pointer to
 * free or malloc stays libc's. failpoint.c itself is not routed.
 */
#ifndef SPATE_FAILPOINT_ALLOC_H
#define SPATE_FAILPOINT_ALLOC_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void *failpoint_malloc(size_t n, const char *file, int line);
void *failpoint_calloc(size_t n, size_t size, const char *file, int line);
void *failpoint_realloc(void *p, size_t n, const char *file, int line);
char *failpoint_strdup(const char *s, const char *file, int line);
char *failpoint_strndup(const char *s, size_t n, const char *file, int line);

#ifndef SPATE_FAILPOINT_NO_ROUTE
#undef malloc
#undef calloc
#undef realloc
#undef strdup
#undef strndup
#define malloc(n) failpoint_malloc((n), __FILE__, __LINE__)
#define calloc(n, size) failpoint_calloc((n), (size), __FILE__, __LINE__)
#define realloc(p, n) failpoint_realloc((p), (n), __FILE__, __LINE__)
#define strdup(s) failpoint_strdup((s), __FILE__, __LINE__)
#define strndup(s, n) failpoint_strndup((s), (n), __FILE__, __LINE__)
#endif

#endif
