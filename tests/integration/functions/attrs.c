/*
 * attrs - a test function that records the message attributes it was given
 * (spate.h, SPATE_ABI_VERSION 2) into a file outside spated, one line a call:
 *     <payload> abi=<n> source=<s|-> id=<id|-> ts=<ms> redelivered=<0|1> headers=<json|->
 * Environment: RECORD (the file, required).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "spate.h"

static int fd = -1;

int spate_init(void)
{
    const char *path = getenv("RECORD");
    if (!path) return 1;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    return fd < 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char line[1024];
    int n;
    if (req->abi_version >= 2)
        n = snprintf(line, sizeof line,
                     "%.*s abi=%u source=%s id=%s ts=%lld redelivered=%u "
                     "headers=%.*s\n",
                     (int)(req->payload_len > 100 ? 100 : req->payload_len),
                     (const char *)req->payload, req->abi_version, req->source ? req->source : "-",
                     req->upstream_id ? req->upstream_id : "-", (long long)req->upstream_ts_ms,
                     req->redelivered, req->headers_json ? (int)req->headers_len : 1,
                     req->headers_json ? req->headers_json : "-");
    else
        n = snprintf(line, sizeof line, "%.*s abi=1\n", (int)req->payload_len,
                     (const char *)req->payload);
    if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
    if (write(fd, line, (size_t)n) != n) return spate_fail(res, "cannot record"), 1;
    return spate_write(res, "ok", 2);
}
