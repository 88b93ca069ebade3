/*
 * schedules.h - schedules: named timers that publish a message into a topic
 * of the queue interface when their expression (schedules/cron.h) says.
 * They are producers like sources: what a trigger does with the message
 * (retries, dead letters) holds for scheduled runs too. A schedule that runs
 * a function publishes into the topic schedule.NAME, which a trigger reads
 * (the API makes it).
 *
 * Each schedule has one uv timer set to its next fire time (never polling);
 * a fire publishes {"schedule": NAME, "time": ISO8601} or the schedule's own
 * payload, and records the fire time in the registry once the publish is
 * durable. At start, the runs missed while spated was down are caught up:
 * the most recent catch_up of them are published (each with its own time),
 * the rest skipped; the status says how many of each.
 *
 * In a cluster every node keeps a timer for every schedule of the shared
 * registry, follows the changes other nodes make (registry_watch), and
 * publishes a run only while it holds the schedule's lease (registry_lease):
 * once per cluster. A node that gains the lease catches up from the last run
 * the registry records, as at start.
 *
 * All calls on the loop thread.
 */
#ifndef SPATE_SCHEDULES_H
#define SPATE_SCHEDULES_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <uv.h>

#include "store/queue.h"
#include "store/registry.h"

typedef struct schedules schedules;

/* Loads the registry's schedules, publishes the missed runs to catch up
 * (at most catch_up each, 0: skip them all) and sets the timers. Borrows q
 * and reg until schedules_free. NULL when out of memory. */
schedules *schedules_open(uv_loop_t *loop, queue *q, registry *reg, uint32_t catch_up);
/* Checks def (expression, zone, payload); 0 or ERR_INVAL with err naming
 * the problem. */
int schedules_check(const reg_schedule *def, char *err, size_t errcap);
/* Adds def (borrowed), or replaces the schedule of its name; saved in the
 * registry, then armed. *replaced says which. 0, ERR_INVAL (err says why),
 * ERR_STORE or ERR_NOMEM. */
int schedules_put(schedules *s, const reg_schedule *def, int *replaced, char *err, size_t errcap);
/* The schedule of name as it is now (borrowed until the next change), or NULL. */
const reg_schedule *schedules_get(schedules *s, const char *name);
/* ERR_NOTFOUND, ERR_STORE or 0. */
int schedules_remove(schedules *s, const char *name);
/* A schedule with its status, or NULL when there is none; caller owns. */
cJSON *schedules_json(schedules *s, const char *name);
/* {"schedules": [...]} by name; caller owns. */
cJSON *schedules_json_all(schedules *s);
/* Stops every timer (spated is stopping); publishes under way complete. */
void schedules_stop(schedules *s);
/* After the loop has run the closes of schedules_stop. NULL is a no-op. */
void schedules_free(schedules *s);

#endif
