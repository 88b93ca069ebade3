/*
 * answer.c - requests to spated, its answers, and every message the client
 * prints about a failure: which exit status it is (spate(1) EXIT STATUS),
 * how it reads (the options as the user typed them, names unescaped), and
 * with --json a JSON object on standard error instead of a line of text:
 *
 *   {"error": "function 'ghost' does not exist", "code": "not_found",
 *    "status": 404, "exit": 3}
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "cli/cli.h"

/* --- Saying what went wrong ------------------------------------------------------------ */

/* The names this run sent in a URL (it runs one command: a handful). */
#define NAMES_MAX 8
static const char *sent_names[NAMES_MAX];
static int nsent;

void cli_remember_name(const char *name)
{
    if (nsent < NAMES_MAX) sent_names[nsent++] = name;
}

void cli_put_text(FILE *out, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* C1 controls in UTF-8 (U+0080..U+009F: 0xc2 0x80..0x9f) act on some terminals too. */
        int c1 = p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
        if ((*p >= 0x20 && *p != 0x7f && !c1) || *p == '\t') {
            putc(*p, out);
        } else if (*p == '\n' || *p == '\r') {
            fputs(*p == '\n' ? "\\n" : "\\r", out);
        } else {
            for (int i = 0; i <= c1; i++) fprintf(out, "\\x%c%c", hex[p[i] >> 4], hex[p[i] & 15]);
            p += c1;
        }
    }
}

/* One failure, as text ("spate: what: message (HTTP 404, not_found)") or as
 * a JSON object with --json; both on standard error. */
static void report(const cli *c, const char *what, const char *message, const char *code,
                   long status, int exit_status, const char *request_id)
{
    if (c && c->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", message);
        cJSON_AddStringToObject(o, "code", code);
        cJSON_AddNumberToObject(o, "status", (double)status);
        cJSON_AddNumberToObject(o, "exit", exit_status);
        if (request_id && *request_id) cJSON_AddStringToObject(o, "request_id", request_id);
        char *text = cJSON_PrintUnformatted(o);
        if (text) fprintf(stderr, "%s\n", text);
        free(text);
        cJSON_Delete(o);
        return;
    }
    /* The message may quote the server, a function or a file: its control
     * characters are shown, not sent to the terminal. */
    fprintf(stderr, "spate: %s%s", what ? what : "", what ? ": " : "");
    cli_put_text(stderr, message);
    if (status) {
        fprintf(stderr, " (HTTP %ld%s", status, *code ? ", " : "");
        cli_put_text(stderr, code);
        fputc(')', stderr);
    }
    fprintf(stderr, "\n");
}

int cli_fail(const cli *c, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(c, NULL, msg, code, 0, status, NULL);
    return status;
}

void cli_usage(const cli *c, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report(c, NULL, msg, "usage", 0, CLI_USAGE, NULL);
    if (!c || !c->json) {
        const char *name = c && c->cmd ? c->cmd->name : NULL;
        fprintf(stderr, "(see 'spate %s%s--help')\n", name ? name : "", name ? " " : "");
    }
    exit(CLI_USAGE);
}

int cli_exit_of_status(long status)
{
    if (status >= 200 && status < 300) return CLI_OK;
    switch (status) {
    case 400:
    case 413:
        return CLI_USAGE;
    case 404:
        return CLI_NOT_FOUND;
    case 409:
    case 429:
    case 503:
        return CLI_REFUSED;
    case 502:
    case 504:
        return CLI_FUNCTION;
    default:
        return CLI_FAILED;
    }
}

/* Appends s[0..n) to out (of cap, used *len), as far as it fits. */
static void put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    if (*len + 1 >= cap) return;
    if (n > cap - 1 - *len) n = cap - 1 - *len;
    memcpy(out + *len, s, n);
    *len += n;
    out[*len] = '\0';
}

/* The server's message as the user should read it: "parameter 'KEY'"
 * becomes the option they typed ("option '--max-attempts'"), and a name
 * sent escaped ('a%20b') is shown as typed ('a b'). */
static void reword(const cli *c, const char *in, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    static const char param[] = "parameter '";
    while (*in) {
        if (strncmp(in, param, sizeof param - 1) == 0) {
            const char *k = in + sizeof param - 1;
            size_t klen = strcspn(k, "'");
            const cli_opt *o = k[klen] == '\'' ? cli_opt_of_param(c->cmd, k, klen) : NULL;
            if (o) {
                char flag[80];
                int n = snprintf(flag, sizeof flag, "option '--%s'", o->name);
                put(out, cap, &len, flag, (size_t)n);
                in = k + klen + 1;
                continue;
            }
        }
        if (*in == '\'') {
            int done = 0;
            for (int i = 0; i < nsent && !done; i++) {
                char *esc = curl_easy_escape(NULL, sent_names[i], 0);
                size_t elen = esc ? strlen(esc) : 0;
                if (elen && strcmp(esc, sent_names[i]) != 0 && strncmp(in + 1, esc, elen) == 0 &&
                    in[1 + elen] == '\'') {
                    put(out, cap, &len, "'", 1);
                    put(out, cap, &len, sent_names[i], strlen(sent_names[i]));
                    put(out, cap, &len, "'", 1);
                    in += elen + 2;
                    done = 1;
                }
                curl_free(esc);
            }
            if (done) continue;
        }
        put(out, cap, &len, in, 1);
        in++;
    }
}

int cli_answer_error(const cli *c, const char *what, const answer *a)
{
    int rc = cli_exit_of_status(a->status);
    if (rc == CLI_OK) rc = CLI_FAILED; /* a status the command did not expect */
    cJSON *doc = cJSON_ParseWithLength(a->body.data ? a->body.data : "", a->body.len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(doc, "code");
    char msg[4096];
    if (cJSON_IsString(e))
        reword(c, e->valuestring, msg, sizeof msg);
    else
        snprintf(msg, sizeof msg, "%.*s", (int)(a->body.len > 200 ? 200 : a->body.len),
                 a->body.data ? a->body.data : "");
    report(c, what, msg, cJSON_IsString(code) ? code->valuestring : "", a->status, rc,
           a->request_id);
    /* The server speaks of an Authorization header; the client sends one
     * from $SPATE_TOKEN, set or not. */
    if (a->status == 401 && !c->json)
        fprintf(stderr, "(spate sends $SPATE_TOKEN as the token%s)\n",
                c->token ? ": spated does not know the one set" : ", which is not set");
    cJSON_Delete(doc);
    return rc;
}

cJSON *cli_answer_json(const cli *c, const char *what, const answer *a)
{
    cJSON *doc = cJSON_ParseWithLength(a->body.data ? a->body.data : "", a->body.len);
    if (!doc) cli_fail(c, CLI_FAILED, "bad_answer", "%s: the server's answer is not JSON", what);
    return doc;
}

void cli_print_raw(const answer *a)
{
    if (a->body.len) fwrite(a->body.data, 1, a->body.len, stdout);
}

int cli_finish(answer *a, cJSON *doc, int rc)
{
    cJSON_Delete(doc);
    buf_free(&a->body);
    return rc;
}

int cli_json_passthrough(const cli *c, const answer *a)
{
    if (!c->json) return 0;
    cli_print_raw(a);
    return 1;
}

/* --- HTTP ------------------------------------------------------------------------------ */

static size_t on_data(char *p, size_t size, size_t n, void *data)
{
    answer *a = data;
    if (buf_append(&a->body, p, size * n) != 0) return 0; /* over the limit: abort */
    return size * n;
}

/* Copies a header's value when the line is that header. */
static void header_value(const char *p, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(p, name, nl) != 0) return;
    const char *v = p + nl;
    while (*v == ' ') v++;
    size_t vl = len - (size_t)(v - p);
    while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n')) vl--;
    snprintf(out, cap, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *data)
{
    answer *a = data;
    size_t len = size * n;
    header_value(p, len, "content-type:", a->content_type, sizeof a->content_type);
    header_value(p, len, "spate-request-id:", a->request_id, sizeof a->request_id);
    return len;
}

/* What a transfer that got no answer stands for: a --url libcurl cannot use
 * is a usage error, an answer too large a failure, the rest unreachable. */
static int exit_of_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return CLI_USAGE;
    case CURLE_WRITE_ERROR:
    case CURLE_OUT_OF_MEMORY:
        return CLI_FAILED;
    default:
        return CLI_UNREACHABLE;
    }
}

int cli_request(const cli *c, const char *method, const char *path, const void *body, size_t len,
                const char *const *extra, answer *out)
{
    memset(out, 0, sizeof *out);
    buf_init(&out->body, CLI_ANSWER_MAX);
    CURL *h = curl_easy_init();
    if (!h) return cli_fail(c, CLI_FAILED, "internal", "cannot initialise libcurl");
    char url[4096];
    size_t ulen = strlen(c->url);
    while (ulen > 0 && c->url[ulen - 1] == '/') ulen--;
    snprintf(url, sizeof url, "%.*s%s", (int)ulen, c->url, path);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Expect:");
    if (c->token) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    int has_type = 0;
    for (const char *const *x = extra; x && *x; x++) {
        hdrs = curl_slist_append(hdrs, *x);
        if (strncasecmp(*x, "content-type:", 13) == 0) has_type = 1;
    }
    if (body && !has_type) hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    /* https: libcurl verifies the server's certificate and name by default;
     * nothing here turns that off. */
    if (c->cacert) curl_easy_setopt(h, CURLOPT_CAINFO, c->cacert);
    if (c->cert) curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert);
    if (c->cert_key) curl_easy_setopt(h, CURLOPT_SSLKEY, c->cert_key);
    char why[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, len ? body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    if (rc == CURLE_OK) return 0;
    buf_free(&out->body);
    if (rc == CURLE_WRITE_ERROR)
        return cli_fail(c, CLI_FAILED, "answer_too_large", "answer from %s is larger than %u bytes",
                        c->url, CLI_ANSWER_MAX);
    return cli_fail(c, exit_of_curl(rc), exit_of_curl(rc) == CLI_USAGE ? "usage" : "unreachable",
                    "cannot reach spated at %s: %s", c->url, why[0] ? why : curl_easy_strerror(rc));
}

void cli_name_path(char *out, size_t cap, const char *prefix, const char *name, const char *suffix)
{
    cli_remember_name(name);
    char *esc = curl_easy_escape(NULL, name, 0);
    snprintf(out, cap, "%s%s%s", prefix, esc ? esc : "", suffix);
    curl_free(esc);
}

void cli_function_path(char *out, size_t cap, const char *name, const char *suffix)
{
    cli_name_path(out, cap, "/v1/functions/", name, suffix);
}

void cli_topic_path(char *out, size_t cap, const char *prefix, const char *topic,
                    const char *suffix)
{
    cli_name_path(out, cap, prefix, topic, suffix);
}

cJSON *cli_call_json(const cli *c, const char *what, const char *method, const char *path,
                     cJSON *body, answer *r, int *rc)
{
    char *text = NULL;
    if (body) {
        text = cJSON_PrintUnformatted(body);
        cJSON_Delete(body);
        if (!text) {
            *rc = cli_fail(c, CLI_FAILED, "io_error", "out of memory");
            return NULL;
        }
    }
    const char *const hdr[] = {"Content-Type: application/json", NULL};
    *rc = cli_request(c, method, path, text, text ? strlen(text) : 0, text ? hdr : NULL, r);
    free(text);
    if (*rc) return NULL;
    if (r->status >= 300) {
        char failed[128];
        snprintf(failed, sizeof failed, "%s failed", what);
        *rc = cli_finish(r, NULL, cli_answer_error(c, failed, r));
        return NULL;
    }
    if (cli_json_passthrough(c, r)) {
        *rc = cli_finish(r, NULL, 0);
        return NULL;
    }
    cJSON *doc = cli_answer_json(c, what, r);
    if (!doc) *rc = cli_finish(r, NULL, CLI_FAILED);
    return doc;
}

/* The list commands (ls, topic ls, trigger ls) all walk the same pages, so
 * the request, its failures and "next" are here once and each command keeps
 * only what it does with a page. */
int cli_each_page(const cli *c, const char *path, const char *failed, const char *what, int page,
                  int pages_max, int (*on_page)(cJSON *doc, void *data), void *data)
{
    char after[256] = "";
    for (int pages = 0;; pages++) {
        char url[512];
        snprintf(url, sizeof url, "%s?limit=%d%s%s", path, page, after[0] ? "&after=" : "", after);
        answer r;
        int rc = cli_request(c, "GET", url, NULL, 0, NULL, &r);
        if (rc) return rc;
        if (r.status != 200) return cli_finish(&r, NULL, cli_answer_error(c, failed, &r));
        cJSON *doc = cli_answer_json(c, what, &r);
        if (!doc) return cli_finish(&r, NULL, CLI_FAILED);
        rc = on_page(doc, data);
        if (rc) return cli_finish(&r, doc, rc);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(doc, "next");
        /* A server from before pages has no "next": its one answer is all. */
        int more =
            cJSON_IsString(next) && strlen(next->valuestring) < sizeof after && pages < pages_max;
        if (more) snprintf(after, sizeof after, "%s", next->valuestring);
        cli_finish(&r, doc, 0);
        if (!more) return 0;
    }
}

void cli_json_take_items(cJSON *doc, const char *key, cJSON *to)
{
    cJSON *from = cJSON_GetObjectItemCaseSensitive(doc, key), *e;
    while (cJSON_IsArray(from) && (e = cJSON_DetachItemFromArray(from, 0)))
        cJSON_AddItemToArray(to, e);
}

/* --- Input ----------------------------------------------------------------------------- */

int cli_read_stream(const cli *c, FILE *f, const char *name, buf *out)
{
    buf_init(out, CLI_INPUT_MAX);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(out, chunk, n) != 0) {
            buf_free(out);
            return cli_fail(c, CLI_FAILED, "input_too_large", "%s is larger than %u bytes", name,
                            CLI_INPUT_MAX);
        }
    }
    if (ferror(f)) {
        buf_free(out);
        return cli_fail(c, CLI_FAILED, "io_error", "cannot read %s: %s", name, strerror(errno));
    }
    return 0;
}

int cli_read_file(const cli *c, const char *path, buf *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        buf_init(out, 0);
        return cli_fail(c, CLI_FAILED, "io_error", "cannot open '%s': %s", path, strerror(errno));
    }
    char name[4200];
    snprintf(name, sizeof name, "'%s'", path);
    int rc = cli_read_stream(c, f, name, out);
    fclose(f);
    return rc;
}

int cli_read_payload(const cli *c, const char *arg, buf *out)
{
    if (strcmp(arg, "-") == 0) return cli_read_stream(c, stdin, "standard input", out);
    if (arg[0] == '@' && arg[1] != '@') return cli_read_file(c, arg + 1, out);
    buf_init(out, CLI_INPUT_MAX);
    buf_append_str(out, arg[0] == '@' ? arg + 1 : arg); /* "@@x" is "@x" */
    return 0;
}

const char *cli_json_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

double cli_json_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

const char *cli_plural(double n, const char *one, const char *many, char *out, size_t cap)
{
    snprintf(out, cap, "%.0f %s", n, n == 1 ? one : many);
    return out;
}
