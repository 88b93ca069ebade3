/*
 * artifact.h - what a deploy's body is, looked at before it is stored, so
 * that an artifact that cannot run under the runtime asked for is refused
 * at once with the reason (and the runtime it needs), rather than deployed
 * to fail on every invocation.
 */
#ifndef SPATE_API_ARTIFACT_H
#define SPATE_API_ARTIFACT_H

#include <stddef.h>

#include "common/buf.h"
#include "common/fnconfig.h"

/* 0 when data may be deployed with runtime rt; else ERR_INVAL with why set
 * ("the artifact is a zip archive, not a shared object: ..."). Only what is
 * certain is refused: anything else is left to the loader. */
int api_artifact_check(const void *data, size_t len, enum fn_runtime rt, char *why, size_t cap);

/* Longest name of a managed runtime's lone source file (a tar entry's). */
#define API_SOURCE_NAME_MAX 99

/* A managed runtime's code that is no archive is one source file: the
 * body becomes a tar archive holding it as file (checked: a name of
 * [A-Za-z0-9_.-], or a relative path of such, with the runtime's extension),
 * so that the store unpacks every managed artifact alike and its hash
 * covers the name. 0 and body replaced, or ERR_INVAL (why says what is
 * wrong) or ERR_NOMEM. Archives are left as they are. */
int api_artifact_wrap_source(buf *body, enum fn_runtime rt, const char *file, char *why,
                             size_t cap);

/* Readies a deploy's body for the store, the same for every API that
 * deploys: refuses an empty one and one that cannot run under cfg's
 * runtime (api_artifact_check), and wraps a managed runtime's lone source
 * file (api_artifact_wrap_source) under file, or when file is "" under the
 * handler's module (app.handler: app.py, or app.js). 0 and body ready;
 * ERR_INVAL with why; ERR_NOMEM. */
int api_artifact_prepare(buf *body, const fn_config *cfg, const char *file, char *why, size_t cap);

#endif
