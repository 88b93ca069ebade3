/*
 * fuzz_unpack - archive extraction (store/unpack.h) against arbitrary
 * bytes: it must refuse or unpack, never write outside its root, and leave
 * no symlink that resolves outside it (through other links included).
 */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/unpack.h"

static char base[64], root[96], outside[128];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Every symlink unpacked that resolves at all resolves inside the root. */
static int check_link(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag != FTW_SL && flag != FTW_SLN) return 0;
    char real[4096], top[4096];
    if (!realpath(root, top) || !realpath(path, real)) return 0;
    size_t n = strlen(top);
    if (strncmp(real, top, n) != 0 || (real[n] != '/' && real[n] != '\0')) abort();
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    snprintf(base, sizeof base, "/tmp/fuzz-unpack-%d", (int)getpid());
    mkdir(base, 0700);
    snprintf(root, sizeof root, "%s/root", base);
    snprintf(outside, sizeof outside, "%s/outside", base);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    if (unpack_artifact((const char *)data, size, root, err, sizeof err) == 0)
        nftw(root, check_link, 16, FTW_PHYS);
    /* Nothing may appear beside the root. */
    struct stat st;
    if (stat(outside, &st) == 0) abort();
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
