/*
 * atk_z_ctor - an object meant for LD_PRELOAD (tests/integration/
 * test_attacks_sandbox.py): its constructor records the uid it ran as in
 * ATK_CTOR_DIR/ctor.<euid>, wherever the loader maps it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "spate.h"

__attribute__((constructor)) static void record(void)
{
    const char *dir = getenv("ATK_CTOR_DIR");
    if (!dir) return;
    char path[512];
    snprintf(path, sizeof path, "%s/ctor.%d", dir, (int)geteuid());
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
}

int spate_handler(const spate_request *req, spate_response *res)
{
    return spate_write(res, "ok", 2);
}
