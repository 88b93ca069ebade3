/*
 * auth.h - bearer tokens and their scopes, from spated --token-file.
 *
 * The file has one token a line: "SCOPE TOKEN", SCOPE one of admin, invoke,
 * publish; blank lines and lines starting with '#' are ignored. admin may do
 * everything; invoke may invoke functions; publish may publish to topics.
 * Reading (listing, describing, stats) needs a token of any scope; /v1/health
 * needs none. Tokens are compared in constant time.
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
/* "admin", "invoke", "publish" or a list of them, for messages. */
const char *auth_scope_name(unsigned scopes);

#endif
