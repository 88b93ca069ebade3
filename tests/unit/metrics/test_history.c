/*
 * test_history.c - the history ring (src/metrics/history.c): frames by
 * change, keyframes, rebuilding a second, eviction by age and by bytes.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics/history.h"
#include "test.h"

#define T0 1800000000000LL

static cJSON *answer(history *h, int64_t since, int delta, size_t budget)
{
    buf out;
    buf_init(&out, 64u << 20);
    buf_append_str(&out, "{");
    CHECK_INT(history_json(h, &out, since, delta, budget), 0);
    buf_append_str(&out, "}");
    buf_append(&out, "", 1);
    cJSON *doc = cJSON_Parse(out.data);
    CHECK(doc != NULL);
    buf_free(&out);
    return doc;
}

static void second(history *h, int64_t t, uint32_t backlog, int with_topic)
{
    history_begin(h, t);
    history_fn f = {
        .busy = 2, .backlog = backlog, .triggered = 1, .eta_s = INFINITY, .deadline_s = 30};
    history_put_fn(h, "orders", &f);
    history_fn idle = {0};
    history_put_fn(h, "idle", &idle);
    if (with_topic) {
        history_topic q = {.depth = backlog, .oldest_s = 1.5};
        history_put_topic(h, "trades", &q);
    }
    history_end(h);
}

static void test_rows_by_change(void)
{
    history *h = history_create(1 << 20);
    for (int i = 0; i < 10; i++) second(h, T0 + i * 1000, i < 5 ? 100 : 50, 1);
    cJSON *doc = answer(h, 0, 0, 1 << 20);
    cJSON *s = cJSON_GetObjectItem(doc, "samples");
    CHECK_INT(cJSON_GetArraySize(s), 10);
    /* The first is full; "idle" is zero, so in no row. */
    cJSON *first = cJSON_GetArrayItem(s, 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(first, "full")));
    cJSON *fns = cJSON_GetObjectItem(first, "functions");
    CHECK_INT(cJSON_GetArraySize(fns), 1);
    cJSON *row = cJSON_GetArrayItem(fns, 0);
    CHECK_STR(cJSON_GetArrayItem(row, 0)->valuestring, "orders");
    CHECK_INT(cJSON_GetArrayItem(row, 1)->valueint, 2);
    CHECK_INT(cJSON_GetArrayItem(row, 4)->valueint, 100);
    CHECK_STR(cJSON_GetArrayItem(row, 9)->valuestring, "inf");
    CHECK_INT(cJSON_GetArrayItem(row, 10)->valueint, 30);
    /* Unchanged seconds hold no row; the change at 5 does. */
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(s, 3), "functions")), 0);
    cJSON *at5 = cJSON_GetObjectItem(cJSON_GetArrayItem(s, 5), "functions");
    CHECK_INT(cJSON_GetArraySize(at5), 1);
    CHECK_INT(cJSON_GetArrayItem(cJSON_GetArrayItem(at5, 0), 4)->valueint, 50);
    cJSON_Delete(doc);

    /* From second 6: a full frame rebuilt from the keyframe (backlog 50). */
    doc = answer(h, T0 + 6000, 0, 1 << 20);
    s = cJSON_GetObjectItem(doc, "samples");
    CHECK_INT(cJSON_GetArraySize(s), 3);
    first = cJSON_GetArrayItem(s, 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(first, "full")));
    CHECK_INT((long long)cJSON_GetObjectItem(first, "t")->valuedouble, T0 + 7000);
    row = cJSON_GetArrayItem(cJSON_GetObjectItem(first, "functions"), 0);
    CHECK_INT(cJSON_GetArrayItem(row, 4)->valueint, 50);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(first, "topics")), 1);
    cJSON_Delete(doc);

    /* delta=1 at a second the ring has: no full frame. */
    doc = answer(h, T0 + 6000, 1, 1 << 20);
    first = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "samples"), 0);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(first, "full")));
    cJSON_Delete(doc);
    history_free(h);
}

static void test_gone_is_zero(void)
{
    history *h = history_create(1 << 20);
    second(h, T0, 10, 1);
    second(h, T0 + 1000, 10, 0); /* the topic went */
    cJSON *doc = answer(h, T0, 1, 1 << 20);
    cJSON *t =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "samples"), 0), "topics");
    CHECK_INT(cJSON_GetArraySize(t), 1);
    CHECK_INT(cJSON_GetArrayItem(cJSON_GetArrayItem(t, 0), 1)->valueint, 0);
    cJSON_Delete(doc);
    history_free(h);
}

static void test_keeps_fifteen_minutes(void)
{
    history *h = history_create(4 << 20);
    for (int i = 0; i < 1500; i++) second(h, T0 + i * 1000LL, (uint32_t)(i % 7), 1);
    history_stats st;
    history_get_stats(h, &st);
    int64_t span = st.newest_ms - st.oldest_ms;
    CHECK(span >= HISTORY_KEEP_S * 1000LL);
    CHECK(span <= (HISTORY_KEEP_S + HISTORY_KEYFRAME_S) * 1000LL);
    cJSON *doc = answer(h, 0, 0, 64 << 20);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "samples"), 0);
    CHECK_INT((long long)cJSON_GetObjectItem(first, "t")->valuedouble, st.oldest_ms);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItem(doc, "truncated")));
    cJSON_Delete(doc);
    /* A small budget truncates and says where to go on. */
    doc = answer(h, 0, 0, 2000);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(doc, "truncated")));
    CHECK(cJSON_GetObjectItem(doc, "next_since") != NULL);
    cJSON_Delete(doc);
    history_free(h);
}

static void test_bounded_bytes(void)
{
    /* 1,000 functions changing every second in 1 MiB: the ring keeps what fits. */
    history *h = history_create(1 << 20);
    char name[32];
    for (int i = 0; i < 300; i++) {
        history_begin(h, T0 + i * 1000LL);
        for (int k = 0; k < 1000; k++) {
            snprintf(name, sizeof name, "fn%d", k);
            history_fn f = {.busy = (uint16_t)(i % 5 + 1), .backlog = (uint32_t)i};
            history_put_fn(h, name, &f);
        }
        history_end(h);
    }
    history_stats st;
    history_get_stats(h, &st);
    CHECK(st.bytes_used <= st.bytes_max);
    CHECK(st.frames > 0 && st.frames < 300);
    CHECK_INT(st.names, 1000);
    CHECK_INT(st.dropped_rows, 0);
    cJSON *doc = answer(h, 0, 0, 64 << 20);
    cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "samples"), 0);
    CHECK_INT(cJSON_GetArraySize(cJSON_GetObjectItem(first, "functions")), 1000);
    cJSON_Delete(doc);
    history_free(h);
}

/* Names that go free their ids for new ones; past HISTORY_NAMES_MAX a
 * name is dropped and counted. */
static void test_names_reuse_ids_and_stop_at_the_cap(void)
{
    history *h = history_create(4 << 20);
    char name[32];
    history_fn busy = {.busy = 1};
    history_begin(h, T0);
    for (int k = 0; k < 100; k++) {
        snprintf(name, sizeof name, "old%d", k);
        history_put_fn(h, name, &busy);
    }
    history_end(h);
    /* Gone for longer than the ring keeps: no frame refers to them. */
    int64_t t = T0;
    for (int i = 1; i <= (HISTORY_KEEP_S + 2 * HISTORY_KEYFRAME_S); i++) {
        t = T0 + i * 1000LL;
        history_begin(h, t);
        history_put_fn(h, "stays", &busy);
        history_end(h);
    }
    history_stats st;
    history_get_stats(h, &st);
    CHECK_INT(st.names, 1);
    /* New names take the freed ids, then new ones, up to the cap. */
    history_begin(h, t + 1000);
    history_put_fn(h, "stays", &busy);
    for (unsigned k = 0; k < HISTORY_NAMES_MAX + 99u; k++) {
        snprintf(name, sizeof name, "new%u", k);
        history_put_fn(h, name, &busy);
    }
    history_end(h);
    history_get_stats(h, &st);
    CHECK_INT(st.names, HISTORY_NAMES_MAX);
    CHECK_INT(st.dropped_rows, 100);
    history_free(h);
}

int main(void)
{
    RUN(test_rows_by_change);
    RUN(test_gone_is_zero);
    RUN(test_keeps_fifteen_minutes);
    RUN(test_bounded_bytes);
    RUN(test_names_reuse_ids_and_stop_at_the_cap);
    return TEST_RESULT();
}
