/*
 * ui.c - GET /ui/: the dashboard, a page and its script, served from memory.
 * They hold no data; the script reads /metrics with the user's token.
 */
#include <string.h>

#include "api/assets.h"
#include "api/internal.h"

/* Styles may be inline (the charts' keys set a colour); nothing else. */
#define UI_POLICY                                                                                  \
    "Content-Security-Policy: default-src 'self'; style-src 'self' 'unsafe-inline'; "              \
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\n"

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (dot && strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (dot && strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (dot && strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    if (dot && strcmp(dot, ".svg") == 0) return "image/svg+xml";
    return "application/octet-stream";
}

void api_ui(http_request *req)
{
    const char *path = req->path + 3; /* after "/ui" */
    if (*path == '\0') {
        http_respond(req, 301, "text/plain", "Location: /ui/\r\n", "/ui/\n", 5);
        return;
    }
    const char *name = path + 1;
    if (*name == '\0') name = "index.html";
    for (const web_asset *a = web_assets; a->name; a++) {
        if (strcmp(a->name, name) != 0) continue;
        /* New builds change them: always ask again, they are small. No
         * other site may frame the console (a click there would be one
         * here), and the page runs its own files only: were a name or a
         * log line ever inserted as HTML, its script would not run. */
        http_respond(req, 200, content_type(name),
                     "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
                     "X-Frame-Options: DENY\r\n" UI_POLICY,
                     a->data, a->len);
        return;
    }
    http_respond_error(req, 404, "not_found", "the dashboard has no file '%.100s'", name);
}
