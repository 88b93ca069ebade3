/*
 * atk_m_ipc - a hostile native function for test_attacks_more.py: System V
 * IPC objects outlive the process that made them, in whatever IPC namespace
 * it is in. The payload says what to do:
 *
 *   shm:MB:KEY    makes a shared memory segment of MB megabytes under KEY
 *                 (0: private), mode 0666, fills it and leaves it there;
 *                 answers its id, or "error: WHY"
 *   peek:KEY      attaches the segment under KEY and answers its first
 *                 bytes, or "error: WHY"
 *   msg:KEY       makes a message queue under KEY (mode 0666) and leaves a
 *                 message in it: its id, or "error: WHY"
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/shm.h>

#include "spate.h"

static int say(spate_response *res, const char *text)
{
    return spate_write(res, text, strlen(text));
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char cmd[128], out[256];
    snprintf(cmd, sizeof cmd, "%.*s", (int)(req->payload_len < 127 ? req->payload_len : 127),
             (const char *)req->payload);
    unsigned mb;
    long key;
    if (sscanf(cmd, "shm:%u:%ld", &mb, &key) == 2) {
        int id = shmget(key ? (key_t)key : IPC_PRIVATE, (size_t)mb << 20, IPC_CREAT | 0666);
        char *p = id < 0 ? (void *)-1 : shmat(id, NULL, 0);
        if (p == (void *)-1) {
            snprintf(out, sizeof out, "error: %s", strerror(errno));
            return say(res, out);
        }
        memset(p, 's', (size_t)mb << 20);
        memcpy(p, "the secret of the writer", 24);
        shmdt(p);
        snprintf(out, sizeof out, "%d", id);
        return say(res, out);
    }
    if (sscanf(cmd, "peek:%ld", &key) == 1) {
        int id = shmget((key_t)key, 0, 0);
        char *p = id < 0 ? (void *)-1 : shmat(id, NULL, SHM_RDONLY);
        if (p == (void *)-1) {
            snprintf(out, sizeof out, "error: %s", strerror(errno));
            return say(res, out);
        }
        snprintf(out, sizeof out, "%.24s", p);
        shmdt(p);
        return say(res, out);
    }
    if (sscanf(cmd, "msg:%ld", &key) == 1) {
        int id = msgget((key_t)key, IPC_CREAT | 0666);
        struct {
            long type;
            char text[32];
        } m = {1, "left behind"};
        if (id < 0 || msgsnd(id, &m, sizeof m.text, IPC_NOWAIT) != 0) {
            snprintf(out, sizeof out, "error: %s", strerror(errno));
            return say(res, out);
        }
        snprintf(out, sizeof out, "%d", id);
        return say(res, out);
    }
    return spate_fail(res, "unknown command");
}
