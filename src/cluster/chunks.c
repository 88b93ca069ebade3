/* chunks.c - artifacts between nodes: one message of the artifact stream per
 * SPATE_CLUSTER_CHUNK bytes (spate.artifact.SHA.I) and their count and size
 * (spate.artifact.SHA.n). Blocking calls, for the worker thread.
 *
 * With a cluster key each message is sealed (over its subject and data).
 * The stream keeps SPATE_CLUSTER_CHUNK_KEEP copies of each subject; a
 * reader takes the newest whose seal holds, so a forger's chunk published
 * after the real one is refused and the real one still read. (The artifact
 * is checked against the SHA-256 its sealed registry entry names, too.) */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/internal.h"
#include "common/log.h"

/* Deletes the copies of subj (a wildcard takes every subject it matches)
 * stored below seq below (0: all of them), at most max, message by message:
 * nats-server before 2.9.18 (Debian 12 has 2.9.10) replays a purge from its
 * log at a restart as a purge of the whole stream up to its last message of
 * the time, whatever subject it named, so a restarted server's copy of the
 * stream lost every artifact (test_cluster.py's test_a_restarted_nats_
 * server_keeps_every_artifact; jsqueue/trim.c). A deletion is replayed as
 * itself. The messages it deleted. */
static int drop_copies(cluster *c, const char *subj, uint64_t below, int max)
{
    int dropped = 0;
    uint64_t seq = 1;
    for (int i = 0; i < max; i++) {
        jsDirectGetMsgOptions o;
        jsDirectGetMsgOptions_Init(&o);
        o.Sequence = seq;
        o.NextBySubject = subj;
        natsMsg *m = NULL;
        if (js_DirectGetMsg(&m, c->js, CLUSTER_ARTIFACT_STREAM, NULL, &o) != NATS_OK) break;
        uint64_t at = natsMsg_GetSequence(m);
        natsMsg_Destroy(m);
        if (at < seq || (below && at >= below)) break;
        natsStatus s = js_DeleteMsg(c->js, CLUSTER_ARTIFACT_STREAM, at, NULL, NULL);
        if (s == NATS_OK)
            dropped++;
        else
            log_debug("cluster: cannot drop %s at %llu: %s", subj, (unsigned long long)at,
                      natsStatus_GetText(s));
        seq = at + 1;
    }
    return dropped;
}

/* One message of the stream, sealed; the copies of subj before it go (a
 * deploy uploads its artifact again each time: the stream would keep
 * SPATE_CLUSTER_CHUNK_KEEP of each). Those published after it stay: a
 * forger's among them does not hide it from a reader. */
static natsStatus publish(cluster *c, const char *subj, const void *data, int len)
{
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subj, NULL, data, len);
    if (s != NATS_OK) return s;
    cluster__msg_seal(c, m, "chunk", NULL);
    jsPubAck *pa = NULL;
    s = js_PublishMsg(&pa, c->js, m, NULL, NULL);
    natsMsg_Destroy(m);
    if (s == NATS_OK && pa && pa->Sequence > 1)
        drop_copies(c, subj, pa->Sequence, SPATE_CLUSTER_CHUNK_KEEP);
    jsPubAck_Destroy(pa);
    return s;
}

/* The newest copy of subj whose seal holds, or an error (refused: err says
 * so). Without a key, the newest copy. */
static natsStatus good_copy(cluster *c, const char *subj, natsMsg **out, char *err, size_t errcap)
{
    natsMsg *m = NULL;
    natsStatus s = js_GetLastMsg(&m, c->js, CLUSTER_ARTIFACT_STREAM, subj, NULL, NULL);
    if (s != NATS_OK || !c->seal) {
        *out = m;
        return s;
    }
    char why[160];
    if (cluster__msg_check(c, m, "chunk", NULL, why, sizeof why) == 0) {
        *out = m;
        return NATS_OK;
    }
    uint64_t last = natsMsg_GetSequence(m);
    cluster__refuse(c, CLUSTER_REFUSED_CHUNK, subj, last, why);
    natsMsg_Destroy(m);
    /* The older copies, oldest first: the newest good one wins. The stream
     * keeps SPATE_CLUSTER_CHUNK_KEEP of them; a few more reads at most. */
    natsMsg *best = NULL;
    uint64_t seq = 1;
    for (int i = 0; i < 2 * SPATE_CLUSTER_CHUNK_KEEP && seq < last; i++) {
        jsDirectGetMsgOptions o;
        jsDirectGetMsgOptions_Init(&o);
        o.Sequence = seq;
        o.NextBySubject = subj;
        m = NULL;
        if (js_DirectGetMsg(&m, c->js, CLUSTER_ARTIFACT_STREAM, NULL, &o) != NATS_OK) break;
        uint64_t at = natsMsg_GetSequence(m);
        if (at >= last || at < seq) {
            natsMsg_Destroy(m);
            break;
        }
        if (cluster__msg_check(c, m, "chunk", NULL, why, sizeof why) == 0) {
            natsMsg_Destroy(best);
            best = m;
        } else {
            cluster__refuse(c, CLUSTER_REFUSED_CHUNK, subj, at, why);
            natsMsg_Destroy(m);
        }
        seq = at + 1;
    }
    if (!best) {
        snprintf(err, errcap,
                 "%s: no copy sealed by the cluster key (forged or written with another key): "
                 "refused",
                 subj);
        return NATS_ERR;
    }
    *out = best;
    return NATS_OK;
}

void cluster__chunks_purge(cluster *c, const char *sha)
{
    char subj[128];
    snprintf(subj, sizeof subj, "spate.artifact.%s.>", sha);
    /* Its chunks and count, each in up to SPATE_CLUSTER_CHUNK_KEEP copies. */
    int most = (int)((SPATE_ARTIFACT_MAX / SPATE_CLUSTER_CHUNK + 2) * SPATE_CLUSTER_CHUNK_KEEP);
    int n = drop_copies(c, subj, 0, most);
    log_debug("cluster: purged artifact %.12s (%d messages)", sha, n);
}

natsStatus cluster__chunks_put(cluster *c, const char *sha, const char *path, char *err,
                               size_t errcap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errcap, "cannot read artifact %.12s: %s", sha, strerror(errno));
        if (fd >= 0) close(fd);
        return NATS_ERR;
    }
    char *chunk = malloc(SPATE_CLUSTER_CHUNK);
    uint64_t n = 0, size = (uint64_t)st.st_size;
    natsStatus s = chunk ? NATS_OK : NATS_NO_MEMORY;
    char subj[128];
    for (uint64_t off = 0; s == NATS_OK && (off < size || n == 0);
         off += SPATE_CLUSTER_CHUNK, n++) {
        ssize_t r = pread(fd, chunk, SPATE_CLUSTER_CHUNK, (off_t)off);
        if (r < 0) {
            snprintf(err, errcap, "cannot read artifact %.12s: %s", sha, strerror(errno));
            break;
        }
        snprintf(subj, sizeof subj, "spate.artifact.%s.%llu", sha, (unsigned long long)n);
        s = publish(c, subj, chunk, (int)r);
        if (size == 0) {
            n++;
            break;
        }
    }
    close(fd);
    free(chunk);
    if (!err[0] && s == NATS_OK) {
        char count[64];
        int len = snprintf(count, sizeof count, "%llu %llu", (unsigned long long)n,
                           (unsigned long long)size);
        snprintf(subj, sizeof subj, "spate.artifact.%s.n", sha);
        s = publish(c, subj, count, len);
    }
    return s;
}

void cluster__chunks_get(cluster *c, const char *sha, buf *data, char *err, size_t errcap)
{
    char subj[128];
    natsMsg *m = NULL;
    snprintf(subj, sizeof subj, "spate.artifact.%s.n", sha);
    natsStatus s = good_copy(c, subj, &m, err, errcap);
    if (err[0]) return;
    unsigned long long n = 0, size = 0;
    if (s == NATS_OK) {
        char count[64];
        snprintf(count, sizeof count, "%.*s", natsMsg_GetDataLength(m), natsMsg_GetData(m));
        natsMsg_Destroy(m);
        if (sscanf(count, "%llu %llu", &n, &size) != 2 || size > SPATE_CLUSTER_ARTIFACT_MAX) {
            snprintf(err, errcap, "artifact %.12s: bad chunk count", sha);
            return;
        }
    }
    buf_init(data, (size_t)size);
    for (unsigned long long i = 0; s == NATS_OK && i < n; i++) {
        snprintf(subj, sizeof subj, "spate.artifact.%s.%llu", sha, i);
        s = good_copy(c, subj, &m, err, errcap);
        if (err[0]) return;
        if (s != NATS_OK) break;
        if (buf_append(data, natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m)) != 0) {
            snprintf(err, errcap, "artifact %.12s: larger than announced", sha);
            natsMsg_Destroy(m);
            return;
        }
        natsMsg_Destroy(m);
    }
    if (s != NATS_OK) {
        snprintf(err, errcap, "cannot fetch artifact %.12s: %s", sha, natsStatus_GetText(s));
        return;
    }
    char got[HASH_HEX_LEN + 1];
    hash_sha256_hex(data->data, data->len, got);
    if (strcmp(got, sha) != 0)
        snprintf(err, errcap, "artifact %.12s arrived as %.12s: refused", sha, got);
}
