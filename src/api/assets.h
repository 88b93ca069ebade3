/* assets.h - the dashboard's files (web/), compiled into spated by
 * cmake/embed.cmake. */
#ifndef SPATE_ASSETS_H
#define SPATE_ASSETS_H

#include <stddef.h>

typedef struct web_asset {
    const char *name; /* e.g. "app.js"; NULL ends the table */
    const unsigned char *data;
    size_t len;
} web_asset;

extern const web_asset web_assets[];

#endif
