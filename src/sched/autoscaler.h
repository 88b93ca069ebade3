/*
 * autoscaler.h - how many instances a function should have, from what is
 * measured: arrival rate, handler time, backlog, and the deadline of the
 * oldest waiting message. Pure arithmetic; sched/triggers.c feeds it.
 *
 * Little's law: keeping up with arrivals takes rate x service time instances
 * (at a target utilisation); draining a backlog B within T takes B x service
 * time / T more. T is the drain target (1 s by default) or, with a deadline,
 * what is left of it for the oldest message after a cold start. When even the
 * maximum cannot drain the backlog in time, the deadline is at risk.
 *
 * Before any handler time is known: start a few (AUTOSCALE_PROBE), learn,
 * then size. What the oldest running invocation has lasted is a lower bound
 * of the handler time, and sizing from it never asks for more than the rule
 * will once the time is known: a slow function grows as its calls run on,
 * a fast one's first result comes before many start.
 */
#ifndef SPATE_AUTOSCALER_H
#define SPATE_AUTOSCALER_H

#include <stdint.h>

/* Target utilisation of instances in steady state. */
#define AUTOSCALE_UTILISATION 0.8
/* Default time to drain a backlog (s). */
#define AUTOSCALE_DRAIN_TARGET_S 1.0
/* Instances a backlog gets before any handler time is known. */
#define AUTOSCALE_PROBE 2

typedef struct scale_input {
    double arrival_per_s;   /* lambda */
    double service_s;       /* handler time; 0 when not known yet */
    double service_floor_s; /* while service_s is 0: what the oldest running invocation has
                             * lasted (a lower bound of it); 0: none runs */
    double backlog;         /* messages and invocations not yet done */
    double oldest_age_s;    /* age of the oldest of them */
    double deadline_s;      /* 0: none */
    double cold_start_s;
    double drain_target_s;
    uint32_t min, max;
    int blocked; /* no instance runs and none can start (a node limit, a zygote that fails) */
} scale_input;

typedef struct scale_output {
    uint32_t desired;
    double eta_s;       /* time to drain the backlog with desired instances (INFINITY: never) */
    double eta_max_s;   /* the same with max instances */
    double time_left_s; /* deadline minus the oldest age (deadline only) */
    int at_risk;        /* even max instances miss the deadline, or the oldest has */
} scale_output;

void autoscale(const scale_input *in, scale_output *out);
/* Time to drain backlog with n instances while arrivals continue. */
double autoscale_eta(double backlog, double arrival_per_s, double service_s, uint32_t n);

/* A smoothed rate of a growing counter (per second, time constant 1 s). */
typedef struct rate_meter {
    double rate;
    uint64_t last_count;
    uint64_t last_ns;
    int primed;
} rate_meter;
void rate_update(rate_meter *m, uint64_t count, uint64_t now_ns);

#endif
