/*
 * tls.c - the TLS parameters of a source's URL (tls.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/err.h"
#include "common/limits.h"
#include "sources/tls.h"

/* Reads one file parameter into out (cap bytes): 0 found, 1 absent, else
 * ERR_INVAL with why. */
static int file_param(const src_url *u, const char *key, char *out, size_t cap, char *err,
                      size_t errcap)
{
    int g = src_url_param(u, key, out, cap);
    if (g == 1) {
        out[0] = '\0';
        return 1;
    }
    if (g < 0 || !out[0]) {
        snprintf(err, errcap,
                 "malformed URL: bad value of '%s' (a file's path, percent-encoded, at most %zu "
                 "bytes)",
                 key, cap - 1);
        return ERR_INVAL;
    }
    return 0;
}

int src_tls_parse(const src_url *u, int implied, src_tls *t, char *err, size_t errcap)
{
    memset(t, 0, sizeof *t);
    char v[8];
    int g = src_url_param(u, "tls", v, sizeof v);
    if (g < 0 || (g == 0 && strcmp(v, "0") != 0 && strcmp(v, "1") != 0)) {
        snprintf(err, errcap, "malformed URL: 'tls' is 1 (TLS) or 0");
        return ERR_INVAL;
    }
    if (g == 0 && v[0] == '0' && implied) {
        snprintf(err, errcap, "'tls=0' contradicts the scheme '%s' (TLS)", u->scheme);
        return ERR_INVAL;
    }
    t->on = implied || (g == 0 && v[0] == '1');
    int rc;
    if ((rc = file_param(u, "ca", t->ca, sizeof t->ca, err, errcap)) < 0) return rc;
    if ((rc = file_param(u, "cert", t->cert, sizeof t->cert, err, errcap)) < 0) return rc;
    if ((rc = file_param(u, "key", t->key, sizeof t->key, err, errcap)) < 0) return rc;
    if (!t->on && (t->ca[0] || t->cert[0] || t->key[0])) {
        snprintf(err, errcap,
                 "'ca', 'cert' and 'key' are for TLS: add tls=1 (or use the scheme's TLS form)");
        return ERR_INVAL;
    }
    if (!t->cert[0] != !t->key[0]) {
        snprintf(err, errcap, "a client certificate needs both 'cert' and 'key'");
        return ERR_INVAL;
    }
    return 0;
}

/* Set once at start (src_tls_forbid), read by every source's thread. */
#define FORBIDDEN_MAX 8
static char *forbidden[FORBIDDEN_MAX];
static size_t nforbidden;

void src_tls_forbid(const char *path)
{
    if (path && path[0] && nforbidden < FORBIDDEN_MAX && (forbidden[nforbidden] = strdup(path)))
        nforbidden++;
}

/* Stat'ed at each check: a secret replaced in place (a new inode) is still
 * recognised. */
static int is_forbidden(const struct stat *st)
{
    struct stat f;
    for (size_t i = 0; i < nforbidden; i++)
        if (stat(forbidden[i], &f) == 0 && f.st_dev == st->st_dev && f.st_ino == st->st_ino)
            return 1;
    return 0;
}

int src_tls_readable(const char *what, const char *path, char *err, size_t errcap)
{
    if (!path[0]) return 0;
    /* O_NONBLOCK: a FIFO would hold the source's thread until written to;
     * it is refused like any file that is not a regular one. */
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        st.st_size > (off_t)SPATE_PEM_FILE_MAX) {
        snprintf(err, errcap, "cannot read the %s file '%.300s': %s", what, path,
                 fd < 0                 ? strerror(errno)
                 : !S_ISREG(st.st_mode) ? "not a regular file"
                                        : "larger than 1 MiB");
        if (fd >= 0) close(fd);
        return ERR_IO;
    }
    close(fd);
    if (is_forbidden(&st)) {
        snprintf(err, errcap,
                 "cannot use the %s file '%.300s': it is one of spated's own secrets (its TLS "
                 "key, cluster key, NATS credentials, token or config file); give the source "
                 "files of its own",
                 what, path);
        return ERR_IO;
    }
    return 0;
}

int src_tls_check_files(const src_tls *t, char *err, size_t errcap)
{
    int rc = src_tls_readable("CA", t->ca, err, errcap);
    if (!rc) rc = src_tls_readable("client certificate", t->cert, err, errcap);
    if (!rc) rc = src_tls_readable("client key", t->key, err, errcap);
    return rc;
}

void src_tls_clear_error(void)
{
    ERR_clear_error();
}

int src_tls_last_error(char *out, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) return 0;
    const char *reason = ERR_reason_error_string(e);
    if (reason)
        snprintf(out, cap, "%s", reason);
    else
        ERR_error_string_n(e, out, cap);
    return 1;
}
