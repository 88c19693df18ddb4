/*
 * err.c - start-up error codes and their exact summary lines (err.h). The lines
 * are the appliance's: tests and the appliance's scripts match them byte for byte.
 * Not here: printing them (mtad.c) or deciding them (each module).
 */
#include "mta/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void mta_err_set(struct mta_err *e, enum mta_err_code code, const char *fmt, ...)
{
    va_list ap;

    if (!e)
        return;
    free(e->text);
    e->text = NULL;
    e->code = code;
    if (!fmt)
        return;
    va_start(ap, fmt);
    if (vasprintf(&e->text, fmt, ap) < 0)
        e->text = NULL; /* the code still says what happened */
    va_end(ap);
}

void mta_err_clear(struct mta_err *e)
{
    if (!e)
        return;
    free(e->text);
    e->text = NULL;
    e->code = MTA_ERR_NONE;
}

const char *mta_err_summary(enum mta_err_code code)
{
    switch (code) {
    case MTA_ERR_NONE:
        break;
    case MTA_ERR_CONFIG:
        return "Error: Failed to pre-configure MTA.";
    case MTA_ERR_START:
        return "Error: Failed to start MTA server. See the appliance log for details.";
    case MTA_ERR_LOG_SHARE:
        return "Error: Failed to mount log share.";
    case MTA_ERR_UI:
        return "Error: Failed to initialize UI backend.";
    }
    return "Error: Failed to start MTA server. See the appliance log for details.";
}
