/*
 * hello - the smallest useful spate function: greets whoever the payload names.
 *
 *     cc -shared -fPIC -I ../../include -o hello.so hello.c
 */
#include <stdio.h>

#include "spate.h"

int spate_handler(const spate_request *req, spate_response *res)
{
    char out[256];
    int n;
    if (req->payload_len == 0)
        n = snprintf(out, sizeof out, "hello, world\n");
    else
        n = snprintf(out, sizeof out, "hello, %.*s\n",
                     (int)(req->payload_len > 200 ? 200 : req->payload_len),
                     (const char *)req->payload);
    return spate_write(res, out, (size_t)n);
}
