/*
 * log_smb_int.h - log_smb.c's internals that unit tests reach: turning the log
 * terminal URL and maillog_filename into the URLs libsmbclient is given, and
 * feeding records to the sink without the log writer.
 * Not for other modules: they use include/mta/log_smb.h.
 */
#ifndef MTA_CORE_LOG_SMB_INT_H
#define MTA_CORE_LOG_SMB_INT_H

#include <stddef.h>

#define LOG_SMB_MAX_DIRS 16

struct log_smb_target {
    char *file_url;                   /* smb://host:port/share/dir/maillog */
    char *dir_urls[LOG_SMB_MAX_DIRS]; /* each parent directory, outermost first */
    int ndirs;
};

/* log_smb_target_parse - 0 ok; -1 and *err (malloc'd) for a bad URL or file name. */
int log_smb_target_parse(struct log_smb_target *t, const char *url, const char *file, char **err);
/* log_smb_target_free - release what parse allocated (safe on a zeroed struct). */
void log_smb_target_free(struct log_smb_target *t);

/* log_smb_sink_write - the sink's write: enqueue whole records; 0 stored, -1 not (queue full). */
int log_smb_sink_write(void *ctx, const char *buf, size_t len);

#endif
