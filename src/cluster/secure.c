/*
 * secure.c - credentials and TLS towards NATS (secure.h), and URLs as they
 * may be shown (cluster.h's cluster_shown_urls).
 */
#include "cluster/secure.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/limits.h"
#include "common/log.h"

int cluster_shown_urls(const char *urls, char *out, size_t cap)
{
    int all = 1;
    size_t used = 0;
    out[0] = '\0';
    for (const char *u = urls; *u;) {
        size_t len = strcspn(u, ",");
        const char *scheme = strstr(u, "://");
        size_t start = scheme && (size_t)(scheme - u) < len ? (size_t)(scheme - u) + 3 : 0;
        /* The last '@': a password may hold one unescaped (nats.c takes it so). */
        const char *at = NULL;
        for (const char *p = u + start; p < u + len; p++)
            if (*p == '@') at = p;
        int n = at ? snprintf(out + used, cap - used, "%s%.*s***%.*s", used ? "," : "", (int)start,
                              u, (int)(len - (size_t)(at - u)), at)
                   : snprintf(out + used, cap - used, "%s%.*s", used ? "," : "", (int)len, u);
        if (!at) all = 0;
        if (n < 0 || (size_t)n >= cap - used) break;
        used += (size_t)n;
        u += len + (u[len] == ',');
    }
    return all;
}

/* The whole of a file named by option what, NUL-terminated (caller owns;
 * wipe and free it), or NULL with err set: missing, unreadable, not a
 * regular file, empty or too large. A secret that others may read is
 * said in the log: every process on the host, functions too, could join
 * the cluster with it. */
static char *read_small(const char *what, const char *path, int secret, char *err, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, cap, "cluster: cannot read %s '%s': %s", what, path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *text = NULL;
    int stated = fstat(fd, &st) == 0;
    if (stated && secret && (st.st_mode & 077))
        log_warn("cluster: %s '%s' may be read by others (mode %04o): chmod 600 it", what, path,
                 (unsigned)(st.st_mode & 07777));
    if (!stated || !S_ISREG(st.st_mode))
        snprintf(err, cap, "cluster: %s '%s' is not a regular file", what, path);
    else if (st.st_size == 0)
        snprintf(err, cap, "cluster: %s '%s' is empty", what, path);
    else if (st.st_size > (off_t)SPATE_CLUSTER_SECRET_FILE_MAX)
        snprintf(err, cap, "cluster: %s '%s' is larger than %u bytes", what, path,
                 SPATE_CLUSTER_SECRET_FILE_MAX);
    else if (!(text = malloc((size_t)st.st_size + 1)))
        snprintf(err, cap, "cluster: out of memory reading %s '%s'", what, path);
    else {
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t r = read(fd, text + got, (size_t)st.st_size - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            got += (size_t)r;
        }
        text[got] = '\0';
        if (got != (size_t)st.st_size) {
            snprintf(err, cap, "cluster: cannot read %s '%s': %s", what, path,
                     got ? "it changed while read" : strerror(errno));
            free(text);
            text = NULL;
        }
    }
    close(fd);
    return text;
}

static void wipe(char *text)
{
    if (!text) return;
    explicit_bzero(text, strlen(text));
    free(text);
}

/* An NKey (seed or public key): base32 letters of the given length that
 * begin with prefix. */
static int is_nkey(const char *w, size_t len, size_t want, const char *prefix)
{
    if (len != want || strncmp(w, prefix, strlen(prefix)) != 0) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((w[i] >= 'A' && w[i] <= 'Z') || (w[i] >= '2' && w[i] <= '7'))) return 0;
    return 1;
}

#define NKEY_SEED_LEN 58   /* "SU" and the rest, as nk writes a user seed */
#define NKEY_PUBLIC_LEN 56 /* "U" and the rest */

/* A creds file (user JWT and seed) or an NKey seed file with its public
 * key: which, checked, then handed to nats.c (which reads the file again
 * each time it connects, so a rotated file is used on the next reconnect). */
static int set_creds(natsOptions *o, const char *path, char *err, size_t cap)
{
    char *text = read_small("--cluster-creds", path, 1, err, cap);
    if (!text) return -1;
    natsStatus s;
    if (strstr(text, "-----BEGIN NATS USER JWT-----")) {
        int seeded = strstr(text, "-----BEGIN USER NKEY SEED-----") != NULL;
        wipe(text);
        if (!seeded) {
            snprintf(err, cap,
                     "cluster: --cluster-creds '%s' holds a user JWT but not its NKey seed "
                     "(-----BEGIN USER NKEY SEED-----): a creds file holds both",
                     path);
            return -1;
        }
        s = natsOptions_SetUserCredentialsFromFiles(o, path, NULL);
    } else {
        char pub[NKEY_PUBLIC_LEN + 1] = "";
        int seed = 0;
        /* Read in place (text stays whole, to be wiped whole). */
        for (const char *line = text; *line;) {
            size_t end = strcspn(line, "\n");
            const char *w = line + strspn(line, " \t");
            size_t len = strcspn(w, " \t\r\n");
            if (w[0] != '#' && is_nkey(w, len, NKEY_SEED_LEN, "SU")) seed = 1;
            if (w[0] != '#' && is_nkey(w, len, NKEY_PUBLIC_LEN, "U")) memcpy(pub, w, len);
            line += end + (line[end] == '\n');
        }
        wipe(text);
        if (!seed) {
            snprintf(err, cap,
                     "cluster: --cluster-creds '%s' is neither a NATS creds file (-----BEGIN "
                     "NATS USER JWT-----) nor an NKey seed file (a user seed SU... on a line)",
                     path);
            return -1;
        }
        if (!pub[0]) {
            snprintf(err, cap,
                     "cluster: --cluster-creds '%s' holds an NKey seed but not its public key: "
                     "add the public key (U...) on a line of its own, as nk -gen user -pubout "
                     "writes both",
                     path);
            return -1;
        }
        s = natsOptions_SetNKeyFromSeed(o, pub, path);
    }
    if (s != NATS_OK) {
        snprintf(err, cap, "cluster: cannot use --cluster-creds '%s': %s", path,
                 cluster_nats_why(s));
        return -1;
    }
    return 0;
}

/* A PEM file (mark: what its "-----BEGIN ...-----" line must name) read,
 * checked and wiped: nats.c then loads it by name. */
static int check_pem(const char *what, const char *path, const char *mark, const char *kind,
                     char *err, size_t cap)
{
    char *text = read_small(what, path, strstr(mark, "PRIVATE") != NULL, err, cap);
    if (!text) return -1;
    int ok = strstr(text, "-----BEGIN ") && strstr(text, mark);
    wipe(text);
    if (!ok) snprintf(err, cap, "cluster: %s '%s' is not a PEM %s", what, path, kind);
    return ok ? 0 : -1;
}

static int nats_failed(natsStatus s, const char *what, const char *path, char *err, size_t cap)
{
    snprintf(err, cap, "cluster: cannot load %s '%s': %s", what, path, cluster_nats_why(s));
    return -1;
}

int cluster__secure_options(natsOptions *o, const cluster_config *cfg, char *err, size_t cap)
{
    const char *ca = cfg->tls_ca && cfg->tls_ca[0] ? cfg->tls_ca : NULL;
    const char *cert = cfg->tls_cert && cfg->tls_cert[0] ? cfg->tls_cert : NULL;
    const char *key = cfg->tls_key && cfg->tls_key[0] ? cfg->tls_key : NULL;
    if (cfg->creds && cfg->creds[0] && set_creds(o, cfg->creds, err, cap) != 0) return -1;
    if (!cert != !key) {
        snprintf(err, cap,
                 "cluster: --cluster-tls-cert and --cluster-tls-key go together (%s "
                 "without the other)",
                 cert ? "--cluster-tls-cert" : "--cluster-tls-key");
        return -1;
    }
    natsStatus s;
    if (ca) {
        if (check_pem("--cluster-tls-ca", ca, "CERTIFICATE-----", "certificate", err, cap) != 0)
            return -1;
        if ((s = natsOptions_LoadCATrustedCertificates(o, ca)) != NATS_OK)
            return nats_failed(s, "--cluster-tls-ca", ca, err, cap);
    }
    if (cert) {
        if (check_pem("--cluster-tls-cert", cert, "CERTIFICATE-----", "certificate", err, cap) !=
                0 ||
            check_pem("--cluster-tls-key", key, "PRIVATE KEY-----", "private key", err, cap) != 0)
            return -1;
        /* nats.c checks here that the key is the certificate's. */
        if ((s = natsOptions_LoadCertificatesChain(o, cert, key)) != NATS_OK)
            return nats_failed(s, "--cluster-tls-cert/--cluster-tls-key", cert, err, cap);
    }
    /* Any TLS file means TLS is wanted: never fall back to plain text. */
    if ((ca || cert) && (s = natsOptions_SetSecure(o, true)) != NATS_OK) {
        snprintf(err, cap, "cluster: cannot require TLS: %s", natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

int cluster_check_files(const cluster_config *cfg, char *err, size_t errcap)
{
    natsOptions *o = NULL;
    if (natsOptions_Create(&o) != NATS_OK) {
        snprintf(err, errcap, "cluster: out of memory");
        return -1;
    }
    int rc = cluster__secure_options(o, cfg, err, errcap);
    natsOptions_Destroy(o);
    return rc;
}
