/*
 * jsqueue/confirm.c - settlements that must arrive. nats.c's ack and term
 * are published and forgotten: one sent to a nats-server that is stopped or
 * dies, or that leads the consumer no more, is lost, and the message runs
 * again (a success run twice; a message whose dead letter is stored, run
 * again). These are sent with a reply subject of our own instead, which the
 * consumer's leader answers once it has taken them, and sent again every
 * SPATE_JS_CONFIRM_MS until it does (SPATE_JS_CONFIRM_TRIES times at most,
 * counted only while connected). "No responders" (no leader for the
 * consumer just then) is no answer.
 * A settlement sent twice is harmless: JetStream takes the first.
 *
 * An answer is not proof: a leader stopped while the ack waited in its
 * socket takes it and answers when it resumes, no longer the leader. So a
 * settlement not answered in time is also written into the attempts bucket
 * ("+ACK <stored ns>" or "+TERM <stored ns>" under the message's key), where a node that is given
 * the message again reads it (pull.c) and settles it again instead of
 * running it.
 *
 * Any thread sends; nats.c's thread takes the answers; a thread of its own
 * sends again. The table of what waits is under the lock.
 */
#include "cluster/jsqueue/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"

typedef struct unconfirmed {
    list_node link; /* c->order: the oldest send first */
    char id[24];    /* its key in c->by_id, the last token of our reply subject */
    int64_t sent_ms;
    int tries;
    int recorded;     /* in the attempts bucket */
    const char *body; /* "+ACK" or "+TERM" */
    /* An ordered part's ack waits for its mark (skipped.c): the mark's
     * write is sent first, with the same reply subject, and its answer
     * sends the ack; one refused (another node wrote it since the
     * delivery, or no leader) or not answered is made by this thread with
     * jsqueue__mark_raise, which reads and compares. */
    int marking;
    int refused;      /* its answer was no */
    int64_t wpi_ms;   /* its message last kept in progress while the bucket took no mark */
    int64_t first_ms; /* the mark's first send: tries end SETTLE_RETRY_FOR_MS after */
    uint64_t seq, rev;
    int64_t created_ns;
    /* The mark's key, after subject: an ordered ack's only. A key's room
     * (KV_KEY_CAP) in every entry took 0.5 KB each, 50 MB more at
     * SPATE_JS_CONFIRM_MAX, which a JetStream outage fills with plain acks. */
    char *mark_key;
    char subject[]; /* the delivery's $JS.ACK... subject */
} unconfirmed;

/* Under the lock. */
static void send_one(jconfirm *c, natsConnection *nc, unconfirmed *u)
{
    char reply[sizeof c->inbox + sizeof u->id + 2];
    snprintf(reply, sizeof reply, "%s.%s%s", c->inbox, u->id, u->marking ? "m" : "");
    if (!u->marking) {
        natsConnection_PublishRequestString(nc, u->subject, reply, u->body);
        return;
    }
    /* As kvStore_Update writes it: the bucket's subject for the key, the
     * revision it must still have (0: none yet). */
    char subject[KV_KEY_CAP + sizeof CLUSTER_ATTEMPTS_BUCKET + 8], v[64], rev[24];
    snprintf(subject, sizeof subject, "$KV.%s.%s", CLUSTER_ATTEMPTS_BUCKET, u->mark_key);
    int n = snprintf(v, sizeof v, "%" PRIu64 " %lld", u->seq, (long long)u->created_ns);
    snprintf(rev, sizeof rev, "%" PRIu64, u->rev);
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, reply, v, n) == NATS_OK &&
        natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", rev) == NATS_OK)
        natsConnection_PublishMsg(nc, m);
    natsMsg_Destroy(m);
}

/* Whether JetStream's answer to a publish stored it ({"stream":..,"seq":N}). */
static int stored(natsMsg *m)
{
    const char *d = natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    return d && len > 0 && !memmem(d, (size_t)len, "\"error\"", 7) &&
           memmem(d, (size_t)len, "\"seq\"", 5);
}

static void on_answer(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)sub;
    jconfirm *c = closure;
    const char *dot = strrchr(natsMsg_GetSubject(m), '.');
    /* "<id>m" answers a mark's write, "<id>" its ack. */
    size_t len = dot ? strlen(dot + 1) : 0;
    int mark = len > 1 && dot[len] == 'm';
    pthread_mutex_lock(&c->lock);
    unconfirmed *u = dot ? strmap_get(&c->by_id, dot + 1, len - (size_t)mark) : NULL;
    if (u && mark != u->marking) {
        u = NULL; /* late: the mark was made by make_marks meanwhile */
    } else if (u && u->marking) {
        /* The mark is written: the ack now, as any other. */
        if (stored(m)) {
            u->marking = 0;
            u->tries = 0;
            u->sent_ms = clock_now_ms();
            list_remove(&u->link);
            list_push_back(&c->order, &u->link);
            send_one(c, nc, u);
        } else {
            u->refused = 1;
            pthread_cond_broadcast(&c->wake);
        }
        u = NULL;
    } else if (u && !natsMsg_IsNoResponders(m)) {
        strmap_remove(&c->by_id, u->id);
        list_remove(&u->link);
        c->count--;
    } else {
        u = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    free(u);
    natsMsg_Destroy(m);
}

/* The attempts bucket's key of the message a $JS.ACK subject settles, and
 * the record: $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.
 * <consumer seq>.<stored ns>.<pending> gives "<stream>.<consumer>.<stream
 * seq>" (as jsqueue__attempts_key) and "<body> <stored ns>"; -1 for
 * another form. */
static int record_of(const char *subject, const char *body, char *key, size_t cap, char *v,
                     size_t vcap)
{
    const char *tok[9]; /* each token's start */
    size_t len[9];
    int n = 0;
    for (const char *p = subject; n < 9; n++) {
        const char *dot = strchr(p, '.');
        tok[n] = p;
        len[n] = dot ? (size_t)(dot - p) : strlen(p);
        if (!dot) {
            n++;
            break;
        }
        p = dot + 1;
    }
    if (n != 9 || strncmp(subject, "$JS.ACK.", 8) != 0 || strchr(tok[8], '.')) return -1;
    int w = snprintf(key, cap, "%.*s.%.*s.%.*s", (int)len[2], tok[2], (int)len[3], tok[3],
                     (int)len[5], tok[5]);
    if (w < 0 || (size_t)w >= cap) return -1;
    w = snprintf(v, vcap, "%s %.*s", body, (int)len[7], tok[7]);
    if (w < 0 || (size_t)w >= vcap) return -1;
    for (char *p = key; *p; p++)
        if (*p == '@') *p = '=';
    return 0;
}

/* Sends again in a row before the lock is let go. */
enum { CONFIRM_SENDS_HELD = 256 };

/* Settlements sent again, to write into the attempts bucket. */
enum { LATE_BATCH = 64 };
typedef struct late {
    char key[KV_KEY_CAP];
    char value[48];
    char id[24];
} late;

/* Under the lock, which it lets go while it writes. */
static void record_late(queue *q, jconfirm *c, late *l, int n)
{
    pthread_mutex_unlock(&c->lock);
    int ok[LATE_BATCH] = {0};
    /* The first refusal ends the round: the bucket has no leader now, and
     * each try could wait its time-out. The rest at the next round. */
    for (int i = 0; i < n; i++)
        if (!(ok[i] =
                  kvStore_PutString(NULL, cluster_attempts(q->c), l[i].key, l[i].value) == NATS_OK))
            break;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < n; i++) {
        unconfirmed *u = ok[i] ? strmap_get(&c->by_id, l[i].id, strlen(l[i].id)) : NULL;
        if (u) u->recorded = 1;
    }
}

/* Marks made by this thread in a round at most: each can wait a JetStream
 * time-out while the bucket has no leader. */
enum { MARKS_HELD = 16 };

/* Under the lock, which it lets go while it writes: the marks refused or
 * not answered in time, made by reading and comparing; their acks sent
 * then. One the bucket cannot take is tried again a second later, its
 * message kept in progress meanwhile; after SPATE_JS_SETTLE_RETRY_FOR_MS
 * it is acked without (logged; the "+ACK" record then tells skipped.c). */
static void make_marks(queue *q, jconfirm *c, int64_t now)
{
    char ids[MARKS_HELD][24];
    int n = 0;
    for (list_node *e = list_first(&c->order); e != &c->order && n < MARKS_HELD; e = e->next) {
        unconfirmed *u = list_entry(e, unconfirmed, link);
        if (u->marking && (u->refused || u->sent_ms + SPATE_JS_CONFIRM_MS <= now))
            memcpy(ids[n++], u->id, sizeof u->id);
    }
    natsConnection *nc = cluster_nc(q->c);
    int failed = 0;
    for (int i = 0; i < n && !c->stop; i++) {
        unconfirmed *u = strmap_get(&c->by_id, ids[i], strlen(ids[i]));
        if (!u || !u->marking) continue;
        char key[KV_KEY_CAP];
        snprintf(key, sizeof key, "%s", u->mark_key);
        uint64_t seq = u->seq, rev = u->rev;
        int64_t created_ns = u->created_ns;
        pthread_mutex_unlock(&c->lock);
        natsStatus st = jsqueue__mark_raise(q, key, seq, created_ns, rev);
        pthread_mutex_lock(&c->lock);
        u = strmap_get(&c->by_id, ids[i], strlen(ids[i]));
        if (!u || !u->marking) continue;
        if (st != NATS_OK) { /* the bucket has no leader now: the rest next round */
            n = i + 1;
            failed = 1;
        }
        u->refused = 0;
        u->sent_ms = clock_now_ms();
        list_remove(&u->link);
        list_push_back(&c->order, &u->link);
        if (st != NATS_OK && u->sent_ms - u->first_ms < SPATE_JS_SETTLE_RETRY_FOR_MS) {
            natsConnection_PublishString(nc, u->subject, "+WPI"); /* still ours */
            continue;
        }
        if (st != NATS_OK) {
            /* Acked without the mark only with the "+ACK" record, which
             * tells skipped.c: without either, the key's next delivery
             * would take it for one JetStream skipped and run it again,
             * after that one. Handed back instead: it runs again, in its
             * place. */
            char rk[KV_KEY_CAP], rv[48];
            natsStatus rs = NATS_ERR;
            if (record_of(u->subject, "+ACK", rk, sizeof rk, rv, sizeof rv) == 0) {
                pthread_mutex_unlock(&c->lock);
                rs = kvStore_PutString(NULL, cluster_attempts(q->c), rk, rv);
                pthread_mutex_lock(&c->lock);
                u = strmap_get(&c->by_id, ids[i], strlen(ids[i]));
                if (!u || !u->marking) continue;
            }
            log_warn("cluster: cannot raise the mark %s to seq=%" PRIu64 " (tried for %d s): %s; "
                     "%s",
                     key, seq, SPATE_JS_SETTLE_RETRY_FOR_MS / 1000, cluster_nats_why(st),
                     rs == NATS_OK ? "acknowledged without it" : "handed back, to run again");
            if (rs != NATS_OK) {
                natsConnection_PublishString(nc, u->subject, "-NAK");
                strmap_remove(&c->by_id, u->id);
                list_remove(&u->link);
                c->count--;
                free(u);
                continue;
            }
        }
        u->marking = 0;
        u->tries = 0;
        send_one(c, nc, u);
    }
    /* The bucket takes no mark now: every mark waiting is kept in progress,
     * not only the one tried. Tried one a round, each in turn, the others
     * waited past their AckWait with many parts waiting, and JetStream gave
     * their messages to other nodes, which ran them again. */
    for (list_node *e = list_first(&c->order); failed && !c->stop && e != &c->order; e = e->next) {
        unconfirmed *u = list_entry(e, unconfirmed, link);
        int64_t t = clock_now_ms();
        if (u->marking && u->first_ms + SPATE_JS_CONFIRM_MS <= t &&
            u->wpi_ms + SPATE_JS_CONFIRM_MS <= t) {
            natsConnection_PublishString(nc, u->subject, "+WPI");
            u->wpi_ms = t;
        }
    }
}

static void *confirm_main(void *arg)
{
    queue *q = arg;
    jconfirm *c = &q->confirm;
    natsConnection *nc = cluster_nc(q->c);
    pthread_mutex_lock(&c->lock);
    while (!c->stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SPATE_JS_CONFIRM_MS / 4 * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = 0;
        while (!c->stop && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&c->wake, &c->lock, &until);
        int64_t now = clock_now_ms();
        late l[LATE_BATCH];
        int n = 0;
        /* Cut off, what is sent waits in nats.c's buffer: nothing more. */
        int connected = cluster_connected(q->c);
        if (connected && !c->stop) make_marks(q, c, now);
        int sent = 0;
        list_node *e = list_first(&c->order);
        while (connected && !c->stop && e != &c->order) {
            /* Each send is a write (SendAsap) under the lock every ack
             * takes (jsqueue__confirm, on the loop): let go between runs
             * of sends, not after tens of thousands. */
            if (++sent % CONFIRM_SENDS_HELD == 0) {
                pthread_mutex_unlock(&c->lock);
                sched_yield(); /* glibc's mutex is not fair: a waiter's turn */
                pthread_mutex_lock(&c->lock);
                e = list_first(&c->order); /* what it pointed at may be gone */
                continue;
            }
            unconfirmed *u = list_entry(e, unconfirmed, link);
            if (u->sent_ms + SPATE_JS_CONFIRM_MS > now) break;
            e = e->next;
            if (u->marking) continue; /* make_marks' */
            list_remove(&u->link);
            if (++u->tries >= SPATE_JS_CONFIRM_TRIES) {
                /* Its message goes to a node again after AckWait. */
                log_warn("cluster: %s not confirmed after %d tries: %s", u->body, u->tries,
                         u->subject);
                strmap_remove(&c->by_id, u->id);
                c->count--;
                free(u);
                continue;
            }
            u->sent_ms = now;
            list_push_back(&c->order, &u->link);
            send_one(c, nc, u);
            if (!u->recorded && n < LATE_BATCH &&
                record_of(u->subject, u->body, l[n].key, sizeof l[n].key, l[n].value,
                          sizeof l[n].value) == 0) {
                memcpy(l[n].id, u->id, sizeof u->id);
                n++;
            }
        }
        if (n && !c->stop) record_late(q, c, l, n);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int jsqueue__confirm_start(queue *q)
{
    jconfirm *c = &q->confirm;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    strmap_init(&c->by_id);
    list_init(&c->order);
    natsInbox *inbox = NULL;
    char subject[sizeof c->inbox + 2];
    if (natsInbox_Create(&inbox) != NATS_OK) return -1;
    snprintf(c->inbox, sizeof c->inbox, "%s", (const char *)inbox);
    natsInbox_Destroy(inbox);
    snprintf(subject, sizeof subject, "%s.*", c->inbox);
    if (natsConnection_Subscribe(&c->answers, cluster_nc(q->c), subject, on_answer, c) != NATS_OK)
        return -1;
    if (pthread_create(&c->thread, NULL, confirm_main, q) != 0) {
        natsSubscription_Unsubscribe(c->answers);
        natsSubscription_Destroy(c->answers);
        c->answers = NULL;
        return -1;
    }
    c->running = 1;
    return 0;
}

void jsqueue__confirm_stop(queue *q)
{
    jconfirm *c = &q->confirm;
    if (!c->running) return;
    pthread_mutex_lock(&c->lock);
    c->stop = 1;
    pthread_cond_broadcast(&c->wake);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    /* After it, nats.c calls on_answer no more. */
    natsSubscription_Unsubscribe(c->answers);
    natsSubscription_Destroy(c->answers);
    pthread_mutex_lock(&c->lock);
    c->running = 0;
    natsStatus st = NATS_OK;
    while (!list_empty(&c->order)) {
        unconfirmed *u = list_entry(list_first(&c->order), unconfirmed, link);
        list_remove(&u->link);
        strmap_remove(&c->by_id, u->id); /* an answer on its way finds it no more */
        /* A mark not yet answered: made here (it compares, so one written
         * meanwhile counts), then the ack. Acked without it, the message
         * would lie past its part's mark, settled: the key's next delivery
         * would take it for one JetStream skipped and run it again, after
         * that one. Handed back instead, it runs again in its place (as
         * after a crash). The first failure hands back the rest: the
         * bucket has no leader, and each try waits. */
        if (u->marking && st == NATS_OK) {
            pthread_mutex_unlock(&c->lock);
            st = jsqueue__mark_raise(q, u->mark_key, u->seq, u->created_ns, u->rev);
            pthread_mutex_lock(&c->lock);
        }
        if (u->marking)
            natsConnection_PublishString(cluster_nc(q->c), u->subject,
                                         st == NATS_OK ? "+ACK" : "-NAK");
        free(u);
    }
    strmap_free(&c->by_id);
    c->count = 0;
    pthread_mutex_unlock(&c->lock);
}

/* u (its subject filled) waiting and sent: 0; -1 (u freed): closing, or
 * too many wait. */
static int add(queue *q, unconfirmed *u)
{
    jconfirm *c = &q->confirm;
    u->tries = 0;
    u->recorded = 0;
    u->refused = 0;
    u->sent_ms = u->first_ms = clock_now_ms();
    pthread_mutex_lock(&c->lock);
    if (c->running && !c->stop && c->count < SPATE_JS_CONFIRM_MAX) {
        snprintf(u->id, sizeof u->id, "%" PRIu64, ++c->next_id);
        if (strmap_put(&c->by_id, u->id, u) == 0) {
            list_push_back(&c->order, &u->link);
            c->count++;
            send_one(c, cluster_nc(q->c), u);
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&c->lock);
    free(u);
    return -1;
}

static unconfirmed *new_unconfirmed(natsMsg *nm, const char *body, const char *mark_key)
{
    const char *subject = natsMsg_GetReply(nm);
    size_t len = subject ? strlen(subject) : 0, klen = mark_key ? strlen(mark_key) + 1 : 0;
    unconfirmed *u = len ? calloc(1, sizeof *u + len + 1 + klen) : NULL;
    if (u) {
        memcpy(u->subject, subject, len + 1);
        u->body = body;
        if (mark_key) u->mark_key = memcpy(u->subject + len + 1, mark_key, klen);
    }
    return u;
}

void jsqueue__confirm(queue *q, natsMsg *nm, const char *body)
{
    unconfirmed *u = new_unconfirmed(nm, body, NULL);
    if (u && add(q, u) == 0) return;
    /* Closing, or too many waiting: as nats.c sends it. */
    if (strcmp(body, "+TERM") == 0)
        natsMsg_Term(nm, NULL);
    else
        natsMsg_Ack(nm, NULL);
}

int jsqueue__confirm_after_mark(queue *q, natsMsg *nm, const char *mark_key, uint64_t seq,
                                int64_t created_ns, uint64_t rev)
{
    unconfirmed *u = new_unconfirmed(nm, "+ACK", mark_key);
    if (!u) return -1;
    u->marking = 1;
    u->seq = seq;
    u->rev = rev;
    u->created_ns = created_ns;
    return add(q, u);
}
