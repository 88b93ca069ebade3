/*
 * auth.h - bearer tokens and their scopes, from spated --token-file.
 *
 * The file has one token a line: "SCOPE TOKEN [ACCESS_KEY_ID]", SCOPE one of
 * admin, invoke, publish; blank lines and lines starting with '#' are
 * ignored. A line with an access key id also lets AWS clients in: they sign
 * with the key id and the TOKEN as the secret access key (AWS Signature
 * Version 4, sigv4.h), and the token never travels. admin may do
 * everything; invoke may invoke functions; publish may publish to topics.
 * Reading (listing, describing, stats) needs a token of any scope; /v1/health
 * needs none. Tokens are compared in constant time.
 *
 * A line "SCOPE cert:SUBJECT" grants SCOPE to a client that presents, over
 * mutual TLS (spated --tls-client-ca), a certificate the CA verified whose
 * subject is SUBJECT as RFC 2253 writes it, most specific part first:
 * "admin cert:CN=deployer,O=Example". Such a client needs no token.
 */
#ifndef SPATE_AUTH_H
#define SPATE_AUTH_H

#include <stddef.h>

enum scope { SCOPE_ADMIN = 1, SCOPE_INVOKE = 2, SCOPE_PUBLISH = 4, SCOPE_ANY = 7 };

typedef struct auth auth;

/* Reads the token file; on error err names the file, line and problem.
 * Caller owns the result; free with auth_free. */
int auth_load(const char *path, auth **out, char *err, size_t errcap);
/* NULL is a no-op. */
void auth_free(auth *a);
/* The scopes granted by an Authorization header ("Bearer TOKEN"), 0 when
 * missing or unknown. admin grants every scope. */
unsigned auth_scopes(const auth *a, const char *authorization);
/* The scopes granted to a verified client certificate's subject (RFC 2253),
 * 0 for NULL or a subject no line names. admin grants every scope. */
unsigned auth_cert_scopes(const auth *a, const char *subject);
/* The secret (the token; borrowed for a's life) and scopes of an access
 * key id: 0, or ERR_NOTFOUND when no line names it. */
int auth_key(const auth *a, const char *key_id, const char **secret, size_t *secret_len,
             unsigned *granted);
/* "admin", "invoke", "publish" or a list of them, for messages. */
const char *auth_scope_name(unsigned scopes);

#endif
