/*
 * secure.h - how a node proves itself to NATS and checks the server
 * (cluster.h's cluster_config: creds, tls_ca, tls_cert, tls_key): the files
 * are read and checked before connecting, so that a missing, unreadable or
 * malformed one stops spated at start with what and why, not with a vague
 * "cannot connect" later.
 *
 *   credentials  a NATS creds file (a user JWT and its NKey seed, as nsc
 *                writes it) or an NKey seed file (the seed SU... and its
 *                public key U..., as nk -gen user -pubout writes them);
 *                user:password or a token travel in the URL (nats.c reads
 *                them there) and are masked wherever a URL is shown
 *   TLS          the CA that signed the servers' certificates (PEM), and a
 *                client certificate and key (PEM) for servers that verify
 *                clients; any of them, or a tls:// URL, makes TLS required
 *
 * Internal to cluster/ (cluster.c calls it while setting nats.c's options).
 */
#ifndef SPATE_CLUSTER_SECURE_H
#define SPATE_CLUSTER_SECURE_H

#include <nats/nats.h>
#include <stddef.h>

#include "cluster/cluster.h"

/* Checks cfg's credential and TLS files and sets them on o. 0, or -1 with
 * err saying which file and why. */
int cluster__secure_options(natsOptions *o, const cluster_config *cfg, char *err, size_t cap);

#endif
