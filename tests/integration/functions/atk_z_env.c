/*
 * atk_z_env - reports the environment as spate_preload (in the zygote) and
 * the handler (in an instance) see it: "PRELOAD|HANDLER", each the value of
 * ATK_SECRET or "(unset)" (tests/integration/test_attacks_sandbox.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate.h"

static char at_preload[256] = "(no preload)";

int spate_preload(void)
{
    const char *v = getenv("ATK_SECRET");
    snprintf(at_preload, sizeof at_preload, "%s", v ? v : "(unset)");
    return 0;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    const char *v = getenv("ATK_SECRET");
    char out[600];
    int n = snprintf(out, sizeof out, "%s|%s", at_preload, v ? v : "(unset)");
    return spate_write(res, out, (size_t)n);
}
