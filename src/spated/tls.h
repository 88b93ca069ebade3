/*
 * tls.h - spated's TLS options (--tls-cert, --tls-key, --tls-client-ca):
 * loading them at start and again on SIGHUP. The listener's side of TLS is
 * http/server.h's; this is only which files, when, and what the log says.
 */
#ifndef SPATE_SPATED_TLS_H
#define SPATE_SPATED_TLS_H

#include <stddef.h>

#include "http/server.h"
#include "spated/config.h"

/* Whether the options ask for TLS: *out is NULL when they do not. 0, or -1
 * with err saying what is wrong (a file, or one of the pair missing).
 * Caller owns *out (http_server_set_tls takes it). */
int spated_tls_load(const options *o, http_tls **out, char *err, size_t errcap);

/* On SIGHUP, for a listener that serves TLS: loads next's files (the same
 * paths hold new files after a rotation) and hands them to s; established
 * connections keep what they started with. A file that cannot be used
 * leaves the running certificate in place and says why in the log; next's
 * TLS options are then set back to cur's. TLS cannot be turned on or off
 * without a restart (next keeps cur's then, too). */
void spated_tls_reload(http_server *s, const options *cur, options *next);

#endif
