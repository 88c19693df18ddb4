/*
 * spool_id.c - queue IDs: 13 upper-case hex digits of microseconds since the
 * epoch followed by 3 hex digits of a running sequence (it tells apart IDs of
 * one microsecond), so IDs are unique, increase with time and sort by arrival
 * (Postfix tools accept hex IDs). Only the clock is read: no I/O, safe on the
 * loop. Not thread-safe: one generator per spool, used on the loop thread.
 * Not here: where the ID's file lives (spool.c).
 */
#include <string.h>
#include <time.h>

#include "mta/clock.h"
#include "spool_int.h"

#define SPOOL_SEQ_MAX 0xFFF

void spool_id_next(struct spool_idgen *g, char out[SPOOL_ID_SIZE])
{
    static const char hex[] = "0123456789ABCDEF";
    long long now = clock_now_us();
    /* The sequence runs on across microseconds (never reset) so that the last
     * hex digit, which picks the hash directory, spreads evenly. */
    g->seq = (g->seq + 1) & SPOOL_SEQ_MAX;
    if (now > g->last_us)
        g->last_us = now;
    else if (g->seq == 0)
        g->last_us++; /* wrapped within one microsecond (or the clock went back) */
    unsigned long long us = (unsigned long long)g->last_us;
    for (int i = 12; i >= 0; i--) {
        out[i] = hex[us & 0xF];
        us >>= 4;
    }
    unsigned seq = (unsigned)g->seq;
    for (int i = 15; i >= 13; i--) {
        out[i] = hex[seq & 0xF];
        seq >>= 4;
    }
    out[SPOOL_ID_LEN] = '\0';
}

/* spool_id_hexval - value of an upper-case hex digit, -1 otherwise. */
static int spool_id_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int spool_id_valid(const char *s)
{
    for (int i = 0; i < SPOOL_ID_LEN; i++)
        if (spool_id_hexval(s[i]) < 0)
            return 0;
    return s[SPOOL_ID_LEN] == '\0';
}

int spool_id_hash(const char *id)
{
    return spool_id_hexval(id[SPOOL_ID_LEN - 1]);
}

void spool_id_seen(struct spool_idgen *g, const char *id)
{
    if (!spool_id_valid(id))
        return;
    long long us = 0;
    int seq = 0;
    for (int i = 0; i < 13; i++)
        us = us * 16 + spool_id_hexval(id[i]);
    for (int i = 13; i < SPOOL_ID_LEN; i++)
        seq = seq * 16 + spool_id_hexval(id[i]);
    if (us > g->last_us || (us == g->last_us && seq > g->seq)) {
        g->last_us = us;
        g->seq = seq;
    }
}
