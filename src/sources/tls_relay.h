/*
 * tls_relay.h - TLS for a client library that has none (Debian 12's
 * hiredis 0.14 is built without hiredis_ssl): the relay opens a verified
 * TLS connection to the broker with OpenSSL and hands the library one end
 * of a socketpair; a thread of its own moves bytes between the two,
 * decrypting what the broker sends and encrypting what the library writes.
 * The library speaks its protocol in clear only inside the process.
 *
 * A relay is the connection's: opened by connect, closed by disconnect, on
 * the source's thread. When either side ends (the broker closes, a TLS
 * error, the library's end shut down by an interrupt) the relay shuts the
 * other down, so that a blocked read on either side returns.
 */
#ifndef SPATE_SOURCES_TLS_RELAY_H
#define SPATE_SOURCES_TLS_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "sources/tls.h"

typedef struct src_tls_relay src_tls_relay;

/* Connects to host:port (each address in turn, io_ms for the connect and
 * the handshake), verifies the broker's certificate chain against t's CA
 * (or the system's trust store) and its name against host, and starts the
 * relay. *plain_fd is the library's end, the caller's to close (after
 * src_tls_relay_close, or before: either order ends the relay). 0, or
 * ERR_IO with why in err ("TLS handshake with H:P failed: certificate
 * verify failed: unable to get local issuer certificate"). */
int src_tls_relay_open(const char *host, int port, const src_tls *t, uint32_t io_ms,
                       src_tls_relay **out, int *plain_fd, char *err, size_t errcap);
/* Why the relay ended, or "" while it runs: for the library's "connection
 * closed". Valid until close. */
const char *src_tls_relay_why(src_tls_relay *r);
/* Stops the relay (its thread joined) and frees it. NULL: nothing. */
void src_tls_relay_close(src_tls_relay *r);

#endif
