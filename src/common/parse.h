/* parse.h - strict parsing of numbers and host:port from user input. */
#ifndef SPATE_PARSE_H
#define SPATE_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Decimal digits only (no sign, no spaces), within [min, max].
 * Returns 0, or ERR_INVAL when not a number, ERR_TOOBIG when out of range. */
int parse_u64(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out);
/* "HOST:PORT" into host (NUL-terminated, at most hostcap-1 bytes) and port. */
int parse_host_port(const char *s, char *host, size_t hostcap, int *port);

#endif
