/* reqid.h - request ids: a random per-process prefix and a counter, so ids are
 * unique within a run and differ across restarts; formatted like a UUID. */
#ifndef SPATE_REQID_H
#define SPATE_REQID_H

#define REQID_LEN 36

/* Writes the next id and a NUL into out (REQID_LEN + 1 bytes). */
void reqid_next(char out[REQID_LEN + 1]);

#endif
