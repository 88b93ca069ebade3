/*
 * hello - the smallest useful spate function: greets whoever the payload
 * names (the world when it is empty), with its GREETING variable ("hello"
 * without one).
 *
 *     cc -shared -fPIC -I ../../include -o hello.so hello.c
 */
#include <stdio.h>
#include <stdlib.h>

#include "spate.h"

int spate_handler(const spate_request *req, spate_response *res)
{
    const char *greeting = getenv("GREETING");
    const char *who = req->payload_len ? (const char *)req->payload : "world";
    int len = req->payload_len ? (int)(req->payload_len > 200 ? 200 : req->payload_len) : 5;
    char out[256];
    int n = snprintf(out, sizeof out, "%.40s, %.*s\n", greeting ? greeting : "hello", len, who);
    return spate_write(res, out, (size_t)n);
}
