/*
 * atk_r_api - hostile: function code calling spated's own API.
 * The payload is "PORT METHOD PATH [TOKEN]"; the function sends that
 * request to 127.0.0.1:PORT (with "Authorization: Bearer TOKEN" if given)
 * and answers with what came back: "STATUS BODY", or "error: WHY".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spate.h"

static int answer(spate_response *res, const char *text)
{
    spate_write(res, text, strlen(text));
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char cmd[512], method[16], path[256], token[300] = "";
    int port;
    size_t n = req->payload_len < sizeof cmd - 1 ? req->payload_len : sizeof cmd - 1;
    memcpy(cmd, req->payload, n);
    cmd[n] = '\0';
    if (sscanf(cmd, "%d %15s %255s %299s", &port, method, path, token) < 3)
        return answer(res, "error: payload must be 'PORT METHOD PATH [TOKEN]'");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return answer(res, "error: cannot connect");
    char head[1024], auth[400] = "";
    if (token[0]) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    int len = snprintf(head, sizeof head,
                       "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n",
                       method, path, auth);
    if (write(fd, head, (size_t)len) != len) return answer(res, "error: cannot write");
    char in[8192];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof in - 1 && (r = read(fd, in + got, sizeof in - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    in[got] = '\0';
    int status = 0;
    if (sscanf(in, "HTTP/1.1 %d", &status) != 1) return answer(res, "error: no answer");
    char *body = strstr(in, "\r\n\r\n");
    char out[8300];
    snprintf(out, sizeof out, "%d %s", status, body ? body + 4 : "");
    return answer(res, out);
}
