/* noop - the function the invoke benchmark calls: it returns at once with a
 * two-byte answer, so that what is measured is spate itself. */
#include "spate.h"

int spate_handler(const spate_request *req, spate_response *res)
{
    return spate_write(res, "ok", 2);
}
