/*
 * artifact.h - what a deploy's body is, looked at before it is stored, so
 * that an artifact that cannot run under the runtime asked for is refused
 * at once with the reason (and the runtime it needs), rather than deployed
 * to fail on every invocation.
 */
#ifndef SPATE_API_ARTIFACT_H
#define SPATE_API_ARTIFACT_H

#include <stddef.h>

#include "common/fnconfig.h"

/* 0 when data may be deployed with runtime rt; else ERR_INVAL with why set
 * ("the artifact is a zip archive, not a shared object: ..."). Only what is
 * certain is refused: anything else is left to the loader. */
int api_artifact_check(const void *data, size_t len, enum fn_runtime rt, char *why, size_t cap);

#endif
