/* A function whose spate_preload fails: its deploy must fail. */
#include "spate.h"

int spate_preload(void)
{
    return 5;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    return 0;
}
