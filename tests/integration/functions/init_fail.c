/* A function whose every instance fails spate_init. */
#include "spate.h"

int spate_init(void)
{
    return 42;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    return spate_write(res, "unreachable", 11);
}
