/* State that lives in an instance: spate_preload sets a base in the zygote,
 * each instance counts its own invocations from there. */
#include <stdio.h>

#include "spate.h"

static int base;
static int count;

int spate_preload(void)
{
    base = 1000;
    return 0;
}

int spate_init(void)
{
    count = base;
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char out[32];
    int n = snprintf(out, sizeof out, "%d", ++count);
    return spate_write(res, out, (size_t)n);
}
