/* nap - the function of bench/scale/dispatch: sleeps $NAP_MS milliseconds
 * and answers "ok". Nothing else: what the client measures beyond the sleep
 * is spated's dispatch (and the kernel's timer, which the peer pays too). */
#include <stdlib.h>
#include <time.h>

#include "spate.h"

static long nap_us;

int spate_init(void)
{
    const char *ms = getenv("NAP_MS");
    nap_us = ms ? (long)(atof(ms) * 1000) : 0;
    return nap_us <= 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    (void)req;
    struct timespec d = {nap_us / 1000000, (nap_us % 1000000) * 1000};
    nanosleep(&d, NULL);
    return spate_write(res, "ok", 2);
}
