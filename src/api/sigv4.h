/*
 * sigv4.h - AWS Signature Version 4, verified: the canonical request, the
 * string to sign and the HMAC-SHA256 chain exactly as AWS specifies them
 * (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html),
 * for a request signed in its Authorization header or presigned in its query.
 *
 * Pure: no I/O, no clock, no HTTP server; the caller hands over the request's
 * parts, a lookup from access key id to secret, and the time. The canonical
 * URI encodes each byte of the path as sent once more (the path on the wire
 * is already encoded once, so a name is encoded twice, as Lambda's and SQS's
 * signers do; S3's single encoding is not spoken here), after removing empty,
 * "." and ".." segments as the SDKs do. The query is decoded (%XX only: a '+'
 * stays a '+') and encoded again the AWS way, then sorted.
 *
 * Limits: at most SIGV4_HEADERS_MAX signed headers, SIGV4_QUERY_MAX query
 * parameters, a canonical request of SIGV4_CANONICAL_MAX bytes; the clock may
 * be SIGV4_SKEW_SECONDS off either way; a presigned request lives at most
 * SIGV4_EXPIRES_MAX seconds. A payload the client declares unsigned
 * (X-Amz-Content-Sha256: UNSIGNED-PAYLOAD) is refused: the body must be
 * covered. Of a header sent twice only the first value is known (the HTTP
 * server keeps one), so a signature over both does not match.
 */
#ifndef SPATE_API_SIGV4_H
#define SPATE_API_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "common/buf.h"

#define SIGV4_SKEW_SECONDS 300
#define SIGV4_EXPIRES_MAX 604800
#define SIGV4_HEADERS_MAX 64
#define SIGV4_QUERY_MAX 256
#define SIGV4_CANONICAL_MAX (64u * 1024)
#define SIGV4_KEY_ID_MAX 128

/* A request header's value by its lowercase name, NUL-terminated, or NULL. */
typedef const char *(*sigv4_header_fn)(const void *ctx, const char *name);
/* The name of the request's i-th header (any case), or NULL past the last. */
typedef const char *(*sigv4_header_at_fn)(const void *ctx, size_t i);

typedef struct sigv4_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* as sent: up to '?', not decoded */
    const char *query;  /* after '?', not decoded; "" if none */
    sigv4_header_fn header;
    const void *header_ctx;
    const void *body;
    size_t body_len;
    int have_body; /* 0: the body is not read yet (see SIGV4_PENDING) */
    /* Every header's name, for the rule that each x-amz-* header the request
     * carries is signed (NULL: the rule is not checked; tests only). */
    sigv4_header_at_fn header_at;
} sigv4_request;

/* The secret of an access key id: 0 and *secret (borrowed until
 * sigv4_verify returns) when the key is known, anything else when not. */
typedef int (*sigv4_lookup_fn)(void *ctx, const char *key_id, const char **secret,
                               size_t *secret_len);

enum sigv4_status {
    SIGV4_OK,
    SIGV4_PENDING,     /* without the body: all that can be checked is right */
    SIGV4_MISSING,     /* neither an Authorization header nor a presigned query */
    SIGV4_MALFORMED,   /* not a SigV4 request as AWS specifies it */
    SIGV4_UNKNOWN_KEY, /* the access key id is not known */
    SIGV4_EXPIRED,     /* X-Amz-Date too far from now, or a presigned URL expired */
    SIGV4_MISMATCH,    /* the signature (or the body's hash) does not match */
    SIGV4_UNSIGNED,    /* an x-amz-* header is not in SignedHeaders */
};

/* Verifies r at now (seconds since the epoch, UTC): the credential scope
 * must name service (NULL: any) and aws4_request, its date X-Amz-Date's day.
 * Every x-amz-* header the request carries must be in SignedHeaders (but
 * X-Amz-Content-Sha256, which the canonical request covers as the payload's
 * hash): else SIGV4_UNSIGNED, naming the header, as S3's HeadersNotSigned
 * does. Unsigned, a captured request could be replayed within the clock skew
 * with X-Amz-Invocation-Type (or any x-amz-* header) changed.
 * Anything but SIGV4_OK and SIGV4_PENDING writes why (a sentence). */
enum sigv4_status sigv4_verify(const sigv4_request *r, const char *service, sigv4_lookup_fn lookup,
                               void *lookup_ctx, time_t now, char *why, size_t whycap);

/* The canonical request of r for signed_headers ("host;x-amz-date") and
 * payload_hash (64 hex digits) into out; presigned leaves X-Amz-Signature out
 * of the query. 0, or ERR_INVAL / ERR_TOOBIG with why. For tests and fuzzing. */
int sigv4_canonical_request(const sigv4_request *r, const char *signed_headers,
                            const char *payload_hash, int presigned, buf *out, char *why,
                            size_t whycap);

/* The signature (64 lowercase hex digits and a NUL into hex) of
 * string_to_sign with secret, for scope's date, region and service. */
void sigv4_signature(const char *secret, size_t secret_len, const char *date, const char *region,
                     const char *service, const char *string_to_sign, size_t sts_len, char hex[65]);

#endif
