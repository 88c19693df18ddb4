/*
 * fuzz_spool_status.c - the per-message status file "queue/X/ID.st"
 * (spool_status.c) as the scheduler reads it back after a restart. What
 * parses must encode and parse back to the same status.
 */
#include "fuzz_util.h"
#include "queue/sched_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct spool_status st, again;
    char *copy = malloc(size ? size : 1), *text;
    size_t len = 0;
    int rc;

    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    rc = spool_status_decode(copy, size, &st);
    free(copy);
    if (rc != 0)
        return 0;
    FUZZ_CHECK(st.slots && st.nslots >= 0);
    for (int i = 0; i < st.nslots; i++)
        FUZZ_CHECK(st.slots[i] == SCHED_SLOT_PENDING || st.slots[i] == SCHED_SLOT_SENT ||
                   st.slots[i] == SCHED_SLOT_BOUNCED);
    text = spool_status_encode(&st, &len);
    FUZZ_CHECK(text != NULL);
    FUZZ_CHECK(spool_status_decode(text, len, &again) == 0);
    FUZZ_CHECK(again.attempts == st.attempts && again.next_retry == st.next_retry);
    FUZZ_CHECK(again.nslots == st.nslots && memcmp(again.slots, st.slots, (size_t)st.nslots) == 0);
    free(text);
    free(again.slots);
    free(st.slots);
    return 0;
}
