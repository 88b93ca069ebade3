#include "sched/autoscaler.h"

#include <math.h>

double autoscale_eta(double backlog, double arrival_per_s, double service_s, uint32_t n)
{
    if (backlog <= 0) return 0;
    if (service_s <= 0 || n == 0) return INFINITY;
    double capacity = n / service_s; /* messages per second */
    if (capacity <= arrival_per_s) return INFINITY;
    return backlog / (capacity - arrival_per_s);
}

static uint32_t clamp(double v, uint32_t lo, uint32_t hi)
{
    if (v < lo) return lo;
    if (v > hi) return hi;
    return (uint32_t)v;
}

void autoscale(const scale_input *in, scale_output *out)
{
    double target = in->drain_target_s > 0 ? in->drain_target_s : AUTOSCALE_DRAIN_TARGET_S;
    out->time_left_s = 0;
    if (in->deadline_s > 0) {
        out->time_left_s = in->deadline_s - in->oldest_age_s;
        double left = out->time_left_s - in->cold_start_s;
        if (left < target) target = left > 0.001 ? left : 0.001;
    }
    /* Unknown handler time: size the backlog from its lower bound (what the
     * oldest running call has lasted, which on a loaded machine includes
     * its wait for a CPU), and at least probe. Arrivals are left out until
     * the time is known: a burst's are its backlog, counted twice. */
    double s = in->service_s > 0 ? in->service_s : in->service_floor_s;
    double want = 0;
    if (s > 0) {
        double steady =
            in->service_s > 0 ? in->arrival_per_s * in->service_s / AUTOSCALE_UTILISATION : 0;
        double drain = in->backlog * s / target;
        if (drain > in->backlog) drain = in->backlog; /* one each is the most that helps */
        want = ceil(steady + drain);
    }
    if (in->backlog > 0 && want < 1) want = 1;
    if (in->service_s <= 0 && in->backlog > 0) {
        double probe = in->backlog < AUTOSCALE_PROBE ? in->backlog : AUTOSCALE_PROBE;
        if (want < probe) want = probe;
    }
    out->desired = clamp(want, in->min, in->max);
    out->eta_s = autoscale_eta(in->backlog, in->arrival_per_s, in->service_s, out->desired);
    out->eta_max_s = autoscale_eta(in->backlog, in->arrival_per_s, in->service_s, in->max);
    /* Without a handler time the ETA is unknown, but a backlog whose oldest
     * is past the deadline has missed it whatever the time (its calls may
     * not start at all: a node limit, a zygote that cannot load). Nor
     * while the function cannot start an instance at all: nothing of the
     * backlog runs until that changes. */
    out->at_risk = in->deadline_s > 0 && in->backlog > 0 &&
                   (out->time_left_s <= 0 || in->blocked ||
                    (in->service_s > 0 && out->eta_max_s > out->time_left_s));
}

void rate_update(rate_meter *m, uint64_t count, uint64_t now_ns)
{
    if (!m->primed) {
        m->primed = 1;
        m->last_count = count;
        m->last_ns = now_ns;
        return;
    }
    if (count < m->last_count) {
        /* The counter went back (a trigger removed, or one's batch size
         * changed the invocations its messages count as): start again from
         * here rather than read a wrapped difference as a flood. */
        m->last_count = count;
        m->last_ns = now_ns;
        return;
    }
    double dt = (double)(now_ns - m->last_ns) / 1e9;
    if (dt < 0.01) return; /* too soon to say */
    double inst = (double)(count - m->last_count) / dt;
    /* Exponential smoothing with a 1 s time constant, whatever the tick. */
    double a = 1 - exp(-dt / 1.0);
    m->rate += a * (inst - m->rate);
    m->last_count = count;
    m->last_ns = now_ns;
}
