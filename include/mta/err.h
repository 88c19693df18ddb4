/*
 * err.h - how a module tells the daemon's start-up what went wrong: a code that
 * decides what happens (which one summary line mtad prints last on stderr, where
 * the appliance and scripts look for it) and a free text for the administrator
 * (printed before it as "mtad: TEXT"). Callers decide on the code, never on the
 * text.
 * Not here: the messages of the key store (keystore.h names its own lines) or of
 * the configuration parser (conf.h collects every error).
 */
#ifndef MTA_ERR_H
#define MTA_ERR_H

enum mta_err_code {
    MTA_ERR_NONE = 0,
    MTA_ERR_CONFIG,    /* a setting or what it names cannot be used */
    MTA_ERR_START,     /* a part of the server could not start */
    MTA_ERR_LOG_SHARE, /* the log terminal's share cannot be mounted */
    MTA_ERR_UI,        /* the HTTP service (or the mon push) cannot start */
};

struct mta_err {
    enum mta_err_code code;
    char *text; /* malloc'd detail, or NULL when the summary says it all */
};

/* mta_err_set - set E (NULL: ignored) to CODE with the printf text FMT (NULL: no text). */
void mta_err_set(struct mta_err *e, enum mta_err_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* mta_err_clear - free E's text and reset it to MTA_ERR_NONE. */
void mta_err_clear(struct mta_err *e);
/* mta_err_summary - the exact start-up line of CODE ("Error: ..."). */
const char *mta_err_summary(enum mta_err_code code);

#endif
