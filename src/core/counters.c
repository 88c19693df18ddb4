/*
 * counters.c - the runtime counter registry: one static array of 64-bit
 * values updated with __atomic builtins, so the loop and worker threads may
 * bump counters without locks. Names, kinds and help texts come from the
 * COUNTERS X-macro in counters.h. Not here: presenting them (stats layer).
 */
#include "mta/counters.h"

static long long counter_values[CNT__COUNT];

static const struct {
    const char *name, *kind, *help;
} counter_defs[CNT__COUNT] = {
#define COUNTER_X_DEF(id, name, kind, help) [id] = {name, kind, help},
    COUNTERS(COUNTER_X_DEF)
#undef COUNTER_X_DEF
};

/* counter_valid - guard against out-of-range ids from a caller's bug (ignored, never UB). */
static int counter_valid(enum counter_id id)
{
    return (unsigned)id < (unsigned)CNT__COUNT;
}

void counter_add(enum counter_id id, long long delta)
{
    if (counter_valid(id))
        __atomic_add_fetch(&counter_values[id], delta, __ATOMIC_RELAXED);
}

void counter_set(enum counter_id id, long long value)
{
    if (counter_valid(id))
        __atomic_store_n(&counter_values[id], value, __ATOMIC_RELAXED);
}

long long counter_get(enum counter_id id)
{
    return counter_valid(id) ? __atomic_load_n(&counter_values[id], __ATOMIC_RELAXED) : 0;
}

const char *counter_name(enum counter_id id)
{
    return counter_valid(id) ? counter_defs[id].name : "";
}

const char *counter_kind(enum counter_id id)
{
    return counter_valid(id) ? counter_defs[id].kind : "";
}

const char *counter_help(enum counter_id id)
{
    return counter_valid(id) ? counter_defs[id].help : "";
}
