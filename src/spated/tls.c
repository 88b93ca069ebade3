/*
 * tls.c - spated's TLS options: loaded at start and on SIGHUP (tls.h).
 */
#include "spated/tls.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"

int spated_tls_load(const options *o, http_tls **out, char *err, size_t errcap)
{
    *out = NULL;
    if (!o->tls_cert[0] && !o->tls_key[0] && !o->tls_client_ca[0]) return 0;
    if (!o->tls_cert[0] || !o->tls_key[0]) {
        snprintf(err, errcap, "%s needs --tls-cert and --tls-key both",
                 o->tls_client_ca[0] && !o->tls_cert[0] && !o->tls_key[0]
                     ? "--tls-client-ca"
                     : (o->tls_cert[0] ? "--tls-cert" : "--tls-key"));
        return -1;
    }
    return http_tls_load(o->tls_cert, o->tls_key, o->tls_client_ca, out, err, errcap) ? -1 : 0;
}

static void keep_running(const options *cur, options *next)
{
    memcpy(next->tls_cert, cur->tls_cert, sizeof next->tls_cert);
    memcpy(next->tls_key, cur->tls_key, sizeof next->tls_key);
    memcpy(next->tls_client_ca, cur->tls_client_ca, sizeof next->tls_client_ca);
}

void spated_tls_reload(http_server *s, const options *cur, options *next)
{
    if (!cur->tls_cert[0]) {
        if (next->tls_cert[0])
            log_warn("reload: TLS cannot be turned on without a restart; the API stays in clear");
        keep_running(cur, next);
        return;
    }
    if (!next->tls_cert[0] && !next->tls_key[0]) {
        log_warn("reload: TLS cannot be turned off without a restart; the certificate in use "
                 "stays");
        keep_running(cur, next);
        return;
    }
    char err[1024], what[512];
    http_tls *t = NULL;
    if (spated_tls_load(next, &t, err, sizeof err) != 0) {
        log_error("reload: %s; the TLS certificate in use stays", err);
        keep_running(cur, next);
        return;
    }
    http_tls_describe(t, what, sizeof what);
    http_server_set_tls(s, t);
    log_info("reload: TLS certificate %s loaded from %s%s%s (new connections use it)", what,
             next->tls_cert, next->tls_client_ca[0] ? ", client CA " : "", next->tls_client_ca);
}
