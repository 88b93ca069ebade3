/*
 * fnconfig_json.h - a function version's configuration (common/fnconfig.h) as
 * JSON (cJSON), both ways: the API shows it, and a registry that keeps its
 * entries as text (cluster mode's key-value bucket) writes and reads it.
 *
 * The fields: runtime, min, max, timeout_ms, memory_mb, keep_alive_ms,
 * queue, cpu_millis, network, tmp_mb, env {K: V}, secrets.
 */
#ifndef SPATE_FNCONFIG_JSON_H
#define SPATE_FNCONFIG_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "common/fnconfig.h"

/* The configuration as an object; caller owns. env_values: env with its
 * values, else only its names, each mapped to null. secret_values: secrets
 * as {K: V} (the registry's copy, never for an answer of the API), else as a
 * list of names. */
cJSON *fnconfig_json(const fn_config *c, int env_values, int secret_values);
/* Reads what fnconfig_json(c, 1, 1) wrote into cfg: what an object does not
 * name keeps its default, and the result is checked (fnconfig_check). On
 * error why says what is wrong and cfg holds nothing to free. */
int fnconfig_from_json(const cJSON *o, fn_config *cfg, char *why, size_t whycap);
/* A number field of o from 0 to 4e9, or dflt when o lacks it or it is out
 * of range. */
uint32_t fnconfig_json_u32(const cJSON *o, const char *key, uint32_t dflt);

#endif
