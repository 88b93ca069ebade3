/* Unit tests for common/fs.c, as runtime/isolate/ and store/artifacts.c use
 * it: removing an instance's temporary directory (only without mount
 * namespaces) never follows a link out of it, even one swapped in while the
 * removal runs (issue 13, item 3); an unpacked artifact, as deep as an
 * archive entry may be, goes whole. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fs.h"
#include "test.h"

static char base[256];

static void path_of(char *out, size_t cap, const char *rel)
{
    snprintf(out, cap, "%s/%s", base, rel);
}

static void make_dir(const char *rel)
{
    char p[512];
    path_of(p, sizeof p, rel);
    mkdir(p, 0755);
}

static void make_file(const char *rel)
{
    char p[512];
    path_of(p, sizeof p, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) close(fd);
}

static void make_link(const char *target, const char *rel)
{
    char p[512];
    path_of(p, sizeof p, rel);
    unlink(p);
    if (symlink(target, p) != 0) perror("symlink");
}

static int exists(const char *rel)
{
    char p[512];
    struct stat st;
    path_of(p, sizeof p, rel);
    return lstat(p, &st) == 0;
}

/* The victim: a directory outside the tree, with files that must stay. */
static void make_victim(void)
{
    make_dir("victim");
    make_dir("victim/inner");
    make_file("victim/keep");
    make_file("victim/inner/keep");
}

static void victim_intact(void)
{
    CHECK(exists("victim/keep"));
    CHECK(exists("victim/inner/keep"));
}

static void test_removes_a_tree_but_not_what_links_point_to(void)
{
    char victim[512], tree[512];
    make_victim();
    path_of(victim, sizeof victim, "victim");
    make_dir("tree");
    make_dir("tree/a");
    make_dir("tree/a/b");
    make_file("tree/a/b/f");
    make_file("tree/g");
    make_link(victim, "tree/a/link");
    make_link("../../victim/keep", "tree/a/b/rel");
    path_of(tree, sizeof tree, "tree");
    CHECK_INT(fs_remove_tree(AT_FDCWD, tree, 1), 0);
    CHECK(exists("tree"));
    CHECK(!exists("tree/a"));
    CHECK(!exists("tree/g"));
    victim_intact();
    make_file("tree/h");
    CHECK_INT(fs_remove_tree(AT_FDCWD, tree, 0), 0);
    CHECK(!exists("tree"));
    victim_intact();
}

static void test_a_link_given_as_the_tree_is_removed_as_a_link(void)
{
    char victim[512], link[512];
    make_victim();
    path_of(victim, sizeof victim, "victim");
    make_link(victim, "top");
    path_of(link, sizeof link, "top");
    CHECK_INT(fs_remove_tree(AT_FDCWD, link, 1), -1); /* not a directory: kept, untouched */
    victim_intact();
    CHECK_INT(fs_remove_tree(AT_FDCWD, link, 0), 0);
    CHECK(!exists("top"));
    victim_intact();
}

static atomic_int stop;

/* Swaps tree/sub between a real directory and a link to the victim, as a
 * second instance of the same function could while root cleans up. */
static void *swapper(void *arg)
{
    char sub[512], real[512], lnk[512], victim[512];
    path_of(sub, sizeof sub, "race/sub");
    path_of(real, sizeof real, "race/sub.real");
    path_of(lnk, sizeof lnk, "race/sub.lnk");
    path_of(victim, sizeof victim, "victim");
    while (!atomic_load(&stop)) {
        mkdir(real, 0755);
        char f[600];
        snprintf(f, sizeof f, "%s/file", real);
        int fd = open(f, O_WRONLY | O_CREAT, 0644);
        if (fd >= 0) close(fd);
        rename(real, sub);
        if (symlink(victim, lnk) == 0) rename(lnk, sub); /* replaces an empty sub */
        rename(sub, real);
    }
    return NULL;
}

static void test_a_link_swapped_in_mid_removal_deletes_nothing_outside(void)
{
    make_victim();
    make_dir("race");
    char race[512];
    path_of(race, sizeof race, "race");
    pthread_t t;
    atomic_store(&stop, 0);
    pthread_create(&t, NULL, swapper, NULL);
    for (int round = 0; round < 2000; round++) fs_remove_tree(AT_FDCWD, race, 1);
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    victim_intact();
    fs_remove_tree(AT_FDCWD, race, 0);
}

/* store/unpack.c takes entries of up to 64 path components: the removal of
 * an unpacked artifact (store/artifacts.c) must reach the deepest. */
static void test_a_tree_as_deep_as_an_archive_entry_goes_whole(void)
{
    char rel[512] = "deep", tree[512];
    make_dir(rel);
    for (int i = 1; i < 64; i++) {
        strcat(rel, "/d");
        make_dir(rel);
    }
    strcat(rel, "/f");
    make_file(rel);
    CHECK(exists(rel));
    path_of(tree, sizeof tree, "deep");
    CHECK_INT(fs_remove_tree(AT_FDCWD, tree, 0), 0);
    CHECK(!exists("deep"));
}

int main(void)
{
    snprintf(base, sizeof base, "/tmp/spate-test-isolate.%d", (int)getpid());
    if (mkdir(base, 0700) != 0) {
        perror(base);
        return 1;
    }
    RUN(test_removes_a_tree_but_not_what_links_point_to);
    RUN(test_a_link_given_as_the_tree_is_removed_as_a_link);
    RUN(test_a_link_swapped_in_mid_removal_deletes_nothing_outside);
    RUN(test_a_tree_as_deep_as_an_archive_entry_goes_whole);
    fs_remove_tree(AT_FDCWD, base, 0);
    return TEST_RESULT();
}
