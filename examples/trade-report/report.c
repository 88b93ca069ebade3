/*
 * trade-report - builds the regulatory report of one executed trade and
 * submits it to the trade reporting facility (TRF).
 *
 * Input: a trade as JSON,
 *   {"trade_id":"T000042","account":"ACC017","symbol":"ACME","side":"BUY",
 *    "quantity":300,"price":101.25,"executed_at":1795700000123}
 * The instrument is looked up in a reference SQLite database ($REFDATA, opened
 * read-only in spate_init; the query is served by the primary key), and the
 * report is POSTed to the TRF ($TRF, host:port) over a keep-alive connection
 * held by the instance. An unknown instrument or a malformed trade fails the
 * invocation; so does a TRF that does not accept the report (then spate
 * retries it).
 *
 *   cc -O2 -shared -fPIC -I include -o report.so examples/trade-report/report.c \
 *      -lsqlite3 -lcjson
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "spate.h"

static sqlite3 *db;
static sqlite3_stmt *lookup;
static struct sockaddr_in trf;
static int trf_fd = -1;

int spate_init(void)
{
    const char *refdata = getenv("REFDATA"), *addr = getenv("TRF");
    if (!refdata || !addr) return 1;
    if (sqlite3_open_v2(refdata, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT isin, name, venue, asset_class FROM instruments"
                           " WHERE symbol = ?",
                           -1, &lookup, NULL) != SQLITE_OK)
        return 2;
    char host[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof host) return 3;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    trf.sin_family = AF_INET;
    trf.sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &trf.sin_addr) == 1 ? 0 : 4;
}

static int connect_trf(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&trf, sizeof trf) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* POSTs body to /reports; 0 and the status code, or -1 when the connection
 * failed (the caller may retry once on a fresh one). */
static int post_report(const char *body, size_t len, int *status, char *answer, size_t cap)
{
    if (trf_fd < 0 && (trf_fd = connect_trf()) < 0) return -1;
    char head[160];
    int n = snprintf(head, sizeof head,
                     "POST /reports HTTP/1.1\r\nHost: trf\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     len);
    struct part {
        const void *b;
        size_t l;
    } parts[2] = {{head, (size_t)n}, {body, len}};
    for (int i = 0; i < 2; i++) {
        const char *p = parts[i].b;
        size_t left = parts[i].l;
        while (left) {
            ssize_t w = send(trf_fd, p, left, MSG_NOSIGNAL);
            if (w <= 0) goto broken;
            p += w;
            left -= (size_t)w;
        }
    }
    size_t got = 0;
    for (;;) {
        ssize_t r = recv(trf_fd, answer + got, cap - 1 - got, 0);
        if (r <= 0) goto broken;
        got += (size_t)r;
        answer[got] = '\0';
        char *end = strstr(answer, "\r\n\r\n"), *cl = strstr(answer, "Content-Length: ");
        if (end && cl && got >= (size_t)(end + 4 - answer) + strtoul(cl + 16, NULL, 10)) break;
        if (got == cap - 1) goto broken;
    }
    *status = atoi(answer + 9);
    return 0;
broken:
    close(trf_fd);
    trf_fd = -1;
    return -1;
}

static const char *str_field(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int spate_handler(const spate_request *req, spate_response *res)
{
    char why[256];
    cJSON *trade = cJSON_ParseWithLength(req->payload, req->payload_len);
    const char *id = str_field(trade, "trade_id"), *account = str_field(trade, "account");
    const char *symbol = str_field(trade, "symbol"), *side = str_field(trade, "side");
    const cJSON *qty = cJSON_GetObjectItemCaseSensitive(trade, "quantity");
    const cJSON *price = cJSON_GetObjectItemCaseSensitive(trade, "price");
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(trade, "executed_at");
    if (!id || !account || !symbol || !side || !cJSON_IsNumber(qty) || !cJSON_IsNumber(price) ||
        !cJSON_IsNumber(at)) {
        cJSON_Delete(trade);
        return spate_fail(res, "malformed trade"), 1;
    }

    sqlite3_reset(lookup);
    sqlite3_bind_text(lookup, 1, symbol, -1, SQLITE_STATIC);
    if (sqlite3_step(lookup) != SQLITE_ROW) {
        snprintf(why, sizeof why, "unknown instrument '%s'", symbol);
        cJSON_Delete(trade);
        return spate_fail(res, why), 1;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    cJSON *report = cJSON_CreateObject();
    cJSON_AddStringToObject(report, "trade_id", id);
    cJSON_AddStringToObject(report, "reporting_firm", "SPATE-BD");
    cJSON_AddStringToObject(report, "account", account);
    cJSON_AddStringToObject(report, "isin", (const char *)sqlite3_column_text(lookup, 0));
    cJSON_AddStringToObject(report, "instrument", (const char *)sqlite3_column_text(lookup, 1));
    cJSON_AddStringToObject(report, "venue", (const char *)sqlite3_column_text(lookup, 2));
    cJSON_AddStringToObject(report, "asset_class", (const char *)sqlite3_column_text(lookup, 3));
    cJSON_AddStringToObject(report, "side", side);
    cJSON_AddNumberToObject(report, "quantity", qty->valuedouble);
    cJSON_AddNumberToObject(report, "price", price->valuedouble);
    cJSON_AddNumberToObject(report, "notional", qty->valuedouble * price->valuedouble);
    cJSON_AddNumberToObject(report, "executed_at", at->valuedouble);
    cJSON_AddNumberToObject(report, "reported_at",
                            (double)now.tv_sec * 1000 + (double)(now.tv_nsec / 1000000));
    cJSON_AddNumberToObject(report, "attempt", req->attempt);
    char *body = cJSON_PrintUnformatted(report);
    cJSON_Delete(report);
    cJSON_Delete(trade);
    if (!body) return spate_fail(res, "out of memory"), 1;

    char answer[1024];
    int status = 0;
    int rc = post_report(body, strlen(body), &status, answer, sizeof answer);
    if (rc != 0) rc = post_report(body, strlen(body), &status, answer, sizeof answer);
    free(body);
    if (rc != 0) {
        snprintf(why, sizeof why, "cannot reach the TRF: %s", strerror(errno));
        return spate_fail(res, why), 1;
    }
    if (status != 200) {
        snprintf(why, sizeof why, "the TRF answered %d", status);
        return spate_fail(res, why), 1;
    }
    const char *b = strstr(answer, "\r\n\r\n");
    return spate_write(res, b ? b + 4 : "", b ? strlen(b + 4) : 0);
}
