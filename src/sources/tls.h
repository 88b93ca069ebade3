/*
 * tls.h - the TLS options every connector takes from its URL, read the same
 * way for every scheme (docs/api.md "Sources: TLS and credentials"):
 *
 *   tls=1       TLS on (implied by amqps://, mqtts://, rediss://; for
 *               nats:// and kafka://, which have no TLS scheme of their own)
 *   ca=FILE     the CA certificates (PEM) the broker's certificate must chain
 *               to; without it, the system's default trust store
 *   cert=FILE   a client certificate (PEM), with key=FILE its private key
 *
 * Verification (the chain and the broker's host name) is always on: a
 * broker that cannot prove who it is gets no password. The files are read
 * at each connect, so a renewed certificate takes effect at the next
 * reconnect; a file that cannot be read is the source's last_error.
 */
#ifndef SPATE_SOURCES_TLS_H
#define SPATE_SOURCES_TLS_H

#include <stddef.h>

#include "sources/connector.h"

/* The URL parameters src_tls_parse reads, for a connector's list of known
 * keys. */
#define SRC_TLS_KEYS "tls", "ca", "cert", "key"

typedef struct src_tls {
    int on;
    char ca[512];   /* "": the system's trust store */
    char cert[512]; /* "": no client certificate */
    char key[512];
} src_tls;

/* Reads the TLS parameters of u into t; implied (1: the scheme is a TLS
 * one) turns TLS on without tls=1. A file parameter without TLS, tls=0 on a
 * TLS scheme, or cert without key (or key without cert) is refused with
 * why in err (ERR_INVAL). */
int src_tls_parse(const src_url *u, int implied, src_tls *t, char *err, size_t errcap);

/* Checks that each file t names can be read, before a library is handed
 * it (whose own message would be vague): 0, or ERR_IO with
 * "cannot read the CA file 'F': why" in err. */
int src_tls_check_files(const src_tls *t, char *err, size_t errcap);
/* The same for one file (what names it in the message); "" is no file.
 * A file src_tls_forbid named (by what it is, not its name: links too) is
 * refused. */
int src_tls_readable(const char *what, const char *path, char *err, size_t errcap);

/* spated's own secrets (its TLS key, cluster key, NATS credentials, token
 * and config files): a source that names one as its ca, cert, key, creds or
 * seed is refused. Whoever may add a source would otherwise have spated,
 * which runs as root, sign a broker's challenge with the node's NATS key or
 * TLS key (a broker of theirs relays a real server's), or present them.
 * Called at start, before any source runs; "" is ignored. Not thread-safe. */
void src_tls_forbid(const char *path);

/* The system's trust store as one file (Debian's ca-certificates), for a
 * library that takes only a file. */
#define SRC_TLS_SYSTEM_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

/* OpenSSL's errors are kept per thread, and each source has its own: a
 * connector whose library says only "an SSL error occurred" clears them
 * before it connects and asks after a failure. src_tls_last_error writes
 * the reason of the last one ("certificate verify failed") and returns 1,
 * or 0 when there is none. */
void src_tls_clear_error(void);
int src_tls_last_error(char *out, size_t cap);

#endif
