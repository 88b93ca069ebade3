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
    char subject[];   /* the delivery's $JS.ACK... subject */
} unconfirmed;

/* Under the lock. */
static void send_one(jconfirm *c, natsConnection *nc, unconfirmed *u)
{
    char reply[sizeof c->inbox + sizeof u->id + 1];
    snprintf(reply, sizeof reply, "%s.%s", c->inbox, u->id);
    natsConnection_PublishRequestString(nc, u->subject, reply, u->body);
}

static void on_answer(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc;
    (void)sub;
    jconfirm *c = closure;
    const char *dot = strrchr(natsMsg_GetSubject(m), '.');
    if (dot && !natsMsg_IsNoResponders(m)) {
        pthread_mutex_lock(&c->lock);
        unconfirmed *u = strmap_remove(&c->by_id, dot + 1);
        if (u) {
            list_remove(&u->link);
            c->count--;
        }
        pthread_mutex_unlock(&c->lock);
        free(u);
    }
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
        int sent = 0;
        while (connected && !c->stop && !list_empty(&c->order)) {
            /* Each send is a write (SendAsap) under the lock every ack
             * takes (jsqueue__confirm, on the loop): let go between runs
             * of sends, not after tens of thousands. */
            if (++sent % CONFIRM_SENDS_HELD == 0) {
                pthread_mutex_unlock(&c->lock);
                sched_yield(); /* glibc's mutex is not fair: a waiter's turn */
                pthread_mutex_lock(&c->lock);
                if (c->stop || list_empty(&c->order)) break;
            }
            unconfirmed *u = list_entry(list_first(&c->order), unconfirmed, link);
            if (u->sent_ms + SPATE_JS_CONFIRM_MS > now) break;
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
    while (!list_empty(&c->order)) {
        unconfirmed *u = list_entry(list_first(&c->order), unconfirmed, link);
        list_remove(&u->link);
        free(u);
    }
    strmap_free(&c->by_id);
    c->count = 0;
    pthread_mutex_unlock(&c->lock);
}

void jsqueue__confirm(queue *q, natsMsg *nm, const char *body)
{
    jconfirm *c = &q->confirm;
    const char *subject = natsMsg_GetReply(nm);
    size_t len = subject ? strlen(subject) : 0;
    unconfirmed *u = len ? malloc(sizeof *u + len + 1) : NULL;
    if (u) {
        memcpy(u->subject, subject, len + 1);
        u->body = body;
        u->tries = 0;
        u->recorded = 0;
        u->sent_ms = clock_now_ms();
        pthread_mutex_lock(&c->lock);
        if (c->running && !c->stop && c->count < SPATE_JS_CONFIRM_MAX) {
            snprintf(u->id, sizeof u->id, "%" PRIu64, ++c->next_id);
            if (strmap_put(&c->by_id, u->id, u) == 0) {
                list_push_back(&c->order, &u->link);
                c->count++;
                send_one(c, cluster_nc(q->c), u);
                pthread_mutex_unlock(&c->lock);
                return;
            }
        }
        pthread_mutex_unlock(&c->lock);
        free(u);
    }
    /* Closing, or too many waiting: as nats.c sends it. */
    if (strcmp(body, "+TERM") == 0)
        natsMsg_Term(nm, NULL);
    else
        natsMsg_Ack(nm, NULL);
}
