/* names.h - what a function or topic name may be. */
#ifndef SPATE_NAMES_H
#define SPATE_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Function: [A-Za-z0-9][A-Za-z0-9_-]*, 1..SPATE_NAME_MAX bytes. */
bool name_is_function(const char *s, size_t len);
/* The rule as a refusal states it; its %d is SPATE_NAME_MAX. */
#define NAME_FUNCTION_RULE                                                                         \
    "use 1 to %d letters, digits, '-' or '_', starting with a letter or digit"
/* Alias: as a function name (SPATE_ALIAS_MAX bytes) but not all digits. */
bool name_is_alias(const char *s, size_t len);
#define NAME_ALIAS_RULE                                                                            \
    "use 1 to %d letters, digits, '-' or '_', starting with a letter or digit, not all digits"
/* Topic: as a function name, plus '.' after the first character, 1..SPATE_TOPIC_NAME_MAX. */
bool name_is_topic(const char *s, size_t len);
/* A topic's JetStream stream name in a cluster ("SPATE_T_", then the name
 * with '.' and '_' written as "_2e" and "_5f") into out (cap bytes, cut
 * short to fit; out NULL: not written); its whole length. */
size_t name_topic_stream(const char *topic, size_t len, char *out, size_t cap);

#endif
