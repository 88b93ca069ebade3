/*
 * fs.h - file-system helpers shared by spated's modules.
 */
#ifndef SPATE_FS_H
#define SPATE_FS_H

/* Removes the tree at name under the directory dirfd (AT_FDCWD: a path)
 * without following any symbolic link: each directory is opened with
 * O_NOFOLLOW|O_DIRECTORY relative to its parent's descriptor, so a link
 * swapped in mid-way is removed as a link, never entered. With keep_top the
 * directory itself stays (emptied). Goes SPATE_TREE_DEPTH_MAX directories
 * deep at most. 0 (also when there is nothing at name), or -1 when something
 * could not go. */
int fs_remove_tree(int dirfd, const char *name, int keep_top);

#endif
