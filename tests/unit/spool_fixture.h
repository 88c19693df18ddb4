/*
 * spool_fixture.h - the fixture the spool unit tests share: a real spool on a fresh data volume
 * in a temporary directory with its own event loop and maillog, the cmocka setup/teardown for
 * it, and helpers to open the spool, wait for its slots, commit a message and read one back.
 * Not a mock: every call goes to the real spool code; each test's data and assertions stay in
 * its own file.
 */
#ifndef MTA_TESTS_SPOOL_FIXTURE_H
#define MTA_TESTS_SPOOL_FIXTURE_H

#include <stddef.h>

#include <event2/event.h>

#include "mta/conf.h"
#include "mta/spool.h"

struct spool_fixture {
    struct event_base *base;
    struct conf conf;       /* data_volume points at dir */
    char dir[300];          /* the data volume TOPDIR/tN, not made yet at setup */
    struct spool *sp;       /* opened by spool_fixture_setup_open, else NULL */
    char id[SPOOL_ID_SIZE]; /* the message spool_fixture_commit committed last */
    char path[400];         /* and its queue file */
};

/* spool_fixture_begin - make the temporary top directory (NAME in its name) and the maillog. */
int spool_fixture_begin(const char *name);

/* spool_fixture_end - shut the log down; remove the top directory if RC (cmocka's) is 0. */
int spool_fixture_end(int rc);

/* spool_fixture_log_path - the maillog the spool writes to. */
const char *spool_fixture_log_path(void);

/* spool_fixture_setup - cmocka setup: a fresh struct spool_fixture, the spool not open. */
int spool_fixture_setup(void **state);

/* spool_fixture_setup_open - spool_fixture_setup, then the spool opened into f->sp. */
int spool_fixture_setup_open(void **state);

/* spool_fixture_teardown - cmocka teardown: close f->sp if open, free the rest. */
int spool_fixture_teardown(void **state);

/* spool_fixture_open - open the spool on F's volume and wait for its start-up scan. */
struct spool *spool_fixture_open(struct spool_fixture *f);

/* spool_fixture_run_until - run F's loop until *FLAG reaches N (30 s at most). */
void spool_fixture_run_until(struct spool_fixture *f, int *flag, int n);

/* spool_fixture_wait_slots - run F's loop until the slot maker has made SP's first slots. */
void spool_fixture_wait_slots(struct spool_fixture *f, struct spool *sp);

/* spool_fixture_append - append LEN bytes of S to M; the buffer is moved, not copied. */
void spool_fixture_append(struct spool_msg *m, const char *s, size_t len);

/* spool_fixture_commit - commit M with E, wait for the reply and assert it succeeded; its ID
 * and queue file in f->id and f->path. */
void spool_fixture_commit(struct spool_fixture *f, struct spool_msg *m,
                          const struct spool_envelope *e);

/* spool_fixture_read_message - the message bytes of ID (malloc'd), its size and envelope. */
char *spool_fixture_read_message(struct spool *sp, const char *id, long long *size,
                                 struct spool_envelope **env);

#endif
