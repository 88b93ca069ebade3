/* preload_hang: spate_preload hangs while the file named by $HANG_IF exists
 * (so a deploy's check can pass, and a later zygote start hang). */
#include <spate.h>
#include <stdlib.h>
#include <unistd.h>

int spate_preload(void)
{
    const char *f = getenv("HANG_IF");
    if (f && access(f, F_OK) == 0)
        for (;;) pause();
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    (void)req;
    return spate_write(res, "ok", 2);
}
