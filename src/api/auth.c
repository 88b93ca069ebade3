#include "api/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include "api/sigv4.h"
#include "common/err.h"
#include "common/limits.h"

typedef struct token {
    char value[SPATE_TOKEN_MAX];
    size_t len;
    unsigned scopes;
    char key_id[SIGV4_KEY_ID_MAX + 1]; /* "": none; else the token is its SigV4 secret */
} token;

/* A client certificate's subject (mutual TLS) that grants scopes. */
typedef struct cert_subject {
    char *subject; /* RFC 2253, as http_request_tls_subject gives it */
    unsigned scopes;
} cert_subject;

struct auth {
    token *tokens;
    size_t n;
    cert_subject certs[SPATE_TOKENS_MAX];
    size_t ncerts;
};

static const struct {
    const char *name;
    unsigned scope;
} scopes[] = {{"admin", SCOPE_ADMIN}, {"invoke", SCOPE_INVOKE}, {"publish", SCOPE_PUBLISH}};

/* AWS's access key ids are upper-case letters and digits; any word
 * character is let through. */
static int key_id_valid(const char *k)
{
    size_t n = strlen(k);
    if (n < 1 || n > SIGV4_KEY_ID_MAX) return 0;
    for (; *k; k++)
        if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') ||
              *k == '_'))
            return 0;
    return 1;
}

/* Key ids are no secret: a plain search. */
static const token *find_key(const auth *a, const char *key_id)
{
    for (size_t i = 0; i < a->n; i++)
        if (a->tokens[i].key_id[0] && strcmp(a->tokens[i].key_id, key_id) == 0)
            return &a->tokens[i];
    return NULL;
}

int auth_key(const auth *a, const char *key_id, const char **secret, size_t *secret_len,
             unsigned *granted)
{
    const token *t = find_key(a, key_id);
    if (!t) return ERR_NOTFOUND;
    *secret = t->value;
    *secret_len = t->len;
    *granted = t->scopes & SCOPE_ADMIN ? SCOPE_ANY : t->scopes;
    return 0;
}

static unsigned scope_of(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++)
        if (strlen(scopes[i].name) == len && strncmp(name, scopes[i].name, len) == 0)
            return scopes[i].scope;
    return 0;
}

/* "SCOPE cert:SUBJECT": the second word starts with "cert:". */
static int is_cert_line(const char *p)
{
    p += strcspn(p, " \t\r\n");
    p += strspn(p, " \t");
    return strncmp(p, "cert:", 5) == 0;
}

/* Reads "SCOPE cert:SUBJECT" (the subject is the rest of the line: RFC 2253
 * names may hold spaces). 0, or ERR_INVAL with err set. */
static int add_cert(auth *a, const char *p, const char *path, int lineno, char *err, size_t errcap)
{
    size_t slen = strcspn(p, " \t");
    unsigned s = scope_of(p, slen);
    const char *subj = p + slen;
    subj += strspn(subj, " \t");
    subj += 5;
    size_t len = strlen(subj);
    while (len && (subj[len - 1] == '\n' || subj[len - 1] == '\r' || subj[len - 1] == ' ' ||
                   subj[len - 1] == '\t'))
        len--;
    if (!s) {
        snprintf(err, errcap, "%s:%d: unknown scope '%.*s' (admin, invoke or publish)", path,
                 lineno, (int)(slen > 32 ? 32 : slen), p);
        return ERR_INVAL;
    }
    if (len == 0 || !strchr(subj, '=')) {
        snprintf(err, errcap,
                 "%s:%d: expected 'SCOPE cert:SUBJECT', the subject as RFC 2253 writes it "
                 "(CN=NAME,O=ORG)",
                 path, lineno);
        return ERR_INVAL;
    }
    if (a->ncerts == SPATE_TOKENS_MAX) {
        snprintf(err, errcap, "%s:%d: more than %d certificate subjects", path, lineno,
                 SPATE_TOKENS_MAX);
        return ERR_INVAL;
    }
    cert_subject *c = &a->certs[a->ncerts];
    if (!(c->subject = strndup(subj, len))) {
        snprintf(err, errcap, "%s:%d: out of memory", path, lineno);
        return ERR_NOMEM;
    }
    c->scopes = s;
    a->ncerts++;
    return 0;
}

unsigned auth_cert_scopes(const auth *a, const char *subject)
{
    if (!subject) return 0;
    unsigned granted = 0;
    for (size_t i = 0; i < a->ncerts; i++)
        if (strcmp(a->certs[i].subject, subject) == 0) granted |= a->certs[i].scopes;
    return granted & SCOPE_ADMIN ? SCOPE_ANY : granted;
}

int auth_load(const char *path, auth **out, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "cannot open token file '%s': %s", path, strerror(errno));
        return ERR_IO;
    }
    auth *a = calloc(1, sizeof *a);
    a->tokens = calloc(SPATE_TOKENS_MAX, sizeof *a->tokens);
    char line[1024];
    int lineno = 0, rc = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            snprintf(err, errcap, "%s:%d: line too long", path, lineno);
            rc = ERR_INVAL;
            break;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0') continue;
        if (is_cert_line(p)) {
            rc = add_cert(a, p, path, lineno, err, errcap);
            continue;
        }
        char scope[32], value[SPATE_TOKEN_MAX + 2], key_id[SIGV4_KEY_ID_MAX + 2], extra[2];
        int got = sscanf(p, "%31s %257s %129s %1s", scope, value, key_id, extra);
        unsigned s = 0;
        for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++)
            if (got >= 1 && strcmp(scope, scopes[i].name) == 0) s = scopes[i].scope;
        size_t vlen = got >= 2 ? strlen(value) : 0;
        if (got != 2 && got != 3) {
            snprintf(err, errcap, "%s:%d: expected 'SCOPE TOKEN [ACCESS_KEY_ID]'", path, lineno);
            rc = ERR_INVAL;
        } else if (!s) {
            snprintf(err, errcap, "%s:%d: unknown scope '%s' (admin, invoke or publish)", path,
                     lineno, scope);
            rc = ERR_INVAL;
        } else if (vlen < SPATE_TOKEN_MIN || vlen > SPATE_TOKEN_MAX - 1) {
            snprintf(err, errcap, "%s:%d: a token must have %d to %d characters", path, lineno,
                     SPATE_TOKEN_MIN, SPATE_TOKEN_MAX - 1);
            rc = ERR_INVAL;
        } else if (got == 3 && !key_id_valid(key_id)) {
            snprintf(err, errcap,
                     "%s:%d: an access key id must have 1 to %d letters, digits or '_'", path,
                     lineno, SIGV4_KEY_ID_MAX);
            rc = ERR_INVAL;
        } else if (got == 3 && find_key(a, key_id)) {
            snprintf(err, errcap, "%s:%d: access key id '%s' is on an earlier line too", path,
                     lineno, key_id);
            rc = ERR_INVAL;
        } else if (a->n == SPATE_TOKENS_MAX) {
            snprintf(err, errcap, "%s:%d: more than %d tokens", path, lineno, SPATE_TOKENS_MAX);
            rc = ERR_INVAL;
        } else {
            token *t = &a->tokens[a->n++];
            memcpy(t->value, value, vlen);
            t->len = vlen;
            t->scopes = s;
            if (got == 3) strcpy(t->key_id, key_id);
        }
    }
    fclose(f);
    if (!rc && a->n == 0 && a->ncerts == 0) {
        snprintf(err, errcap, "%s: no token", path);
        rc = ERR_INVAL;
    }
    if (rc) {
        auth_free(a);
        return rc;
    }
    *out = a;
    return 0;
}

void auth_free(auth *a)
{
    if (!a) return;
    explicit_bzero(a->tokens, SPATE_TOKENS_MAX * sizeof *a->tokens);
    for (size_t i = 0; i < a->ncerts; i++) free(a->certs[i].subject);
    free(a->tokens);
    free(a);
}

/* Equal in time that depends on neither token: both are compared whole, as
 * SPATE_TOKEN_MAX bytes padded with zeros (libcrypto's constant-time
 * compare), and the lengths without a branch. */
static int same(const char *padded, size_t len, const token *t)
{
    return (CRYPTO_memcmp(padded, t->value, SPATE_TOKEN_MAX) | (len != t->len)) == 0;
}

unsigned auth_scopes(const auth *a, const char *authorization)
{
    if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return 0;
    const char *t = authorization + 7;
    while (*t == ' ') t++;
    size_t len = strlen(t);
    while (len && (t[len - 1] == ' ' || t[len - 1] == '\t')) len--;
    if (len == 0 || len > SPATE_TOKEN_MAX - 1) return 0;
    char padded[SPATE_TOKEN_MAX] = {0};
    memcpy(padded, t, len);
    /* Every token is compared, so the time does not say which one matched. */
    unsigned granted = 0;
    for (size_t i = 0; i < a->n; i++)
        if (same(padded, len, &a->tokens[i])) granted |= a->tokens[i].scopes;
    explicit_bzero(padded, sizeof padded);
    return granted & SCOPE_ADMIN ? SCOPE_ANY : granted;
}

const char *auth_scope_name(unsigned s)
{
    switch (s) {
    case SCOPE_ADMIN:
        return "admin";
    case SCOPE_INVOKE:
        return "invoke";
    case SCOPE_PUBLISH:
        return "publish";
    case SCOPE_INVOKE | SCOPE_PUBLISH:
        return "invoke, publish";
    default:
        return s ? "admin" : "none";
    }
}
