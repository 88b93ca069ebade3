/*
 * fuzz_unpack - archive extraction (store/unpack.h) against arbitrary
 * bytes: it must refuse or unpack, and never write outside its root.
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
    unpack_artifact((const char *)data, size, root, err, sizeof err);
    /* Nothing may appear beside the root. */
    struct stat st;
    if (stat(outside, &st) == 0) abort();
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
