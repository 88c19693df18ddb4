/*
 * privilege.h - least privilege for mtad: started as root it looks up
 * mail_owner, makes the data volume that account's (mode 0710, group
 * setgid_group) and enters it,
 * binds the listening ports and then drops to mail_owner for the rest of its
 * life (supplementary groups, gid, uid; verified). Started as any other user it
 * stays that user. Process-wide state: one process has one identity.
 * Not here: what is opened before the drop (mtad.c orders the start-up), the
 * listeners themselves (smtpd, stats: they bind through priv_bind).
 */
#ifndef MTA_PRIVILEGE_H
#define MTA_PRIVILEGE_H

#include <sys/socket.h>
#include <sys/types.h>

struct conf;

/*
 * priv_prepare - when running as root, look up mail_owner (an unknown account,
 * or one with uid or gid 0, is an error naming the setting). Otherwise note
 * that the process stays the user it is. 0 ok; -1 and *err (malloc'd).
 */
int priv_prepare(const struct conf *c, char **err);

/*
 * priv_absolute_paths - make the path settings (data_volume, key_volume,
 * maillog_file, smtpd_sasl_config_dir) and the configuration file's name
 * absolute against the start directory: mtad changes its working directory to
 * the data volume, and files are opened again later (SIGHUP). 0 ok, -1 *err.
 */
int priv_absolute_paths(struct conf *c, char **err);

/* priv_will_drop - 1 when priv_prepare found root and priv_drop is still to come or done. */
int priv_will_drop(void);
/* priv_dropped - 1 after a successful priv_drop. */
int priv_dropped(void);
/* priv_owner_name - mail_owner's name when dropping (else the current user's, or ""). */
const char *priv_owner_name(void);

/*
 * priv_enter_data_volume - create data_volume if missing; as root make it and
 * everything below it mail_owner's (entries owned by anyone else are chowned
 * once, walking by directory descriptor, never through symbolic links; the
 * directories now, the files in the background: priv_walk_wait; the
 * volume itself gets mode 0710 and group setgid_group, and DATA/maildrop is
 * made mode 1730 with that group, its files left to their submitters);
 * then make it the working directory, so that
 * the path above it may stay root-only (the spool and the control socket open
 * it as "."). 0 ok; -1 and *err (malloc'd). Nothing is changed when the path is
 * not a directory.
 */
int priv_enter_data_volume(const struct conf *c, char **err);
/*
 * priv_walk_wait - the files below the data volume are given to mail_owner by a
 * child that priv_enter_data_volume forked as root, while the daemon goes on
 * (privilege.c says why); wait up to TIMEOUT_MS (-1: for ever) for it to finish,
 * logging what it reports. 1 when it has finished (or there was none), 0 not yet.
 * BLOCKS: for a worker thread, never the event loop.
 */
int priv_walk_wait(int timeout_ms);
/*
 * priv_setgid_group - setgid_group's gid (started unprivileged: the process's
 * own group), after priv_prepare: the group of DATA/maildrop and the control socket.
 */
gid_t priv_setgid_group(void);
/*
 * priv_data_volume_path - PATH, or "." when PATH is the data volume entered by
 * priv_enter_data_volume (the working directory).
 */
const char *priv_data_volume_path(const char *path);

/*
 * priv_prebind - as root, bind the TCP listening sockets the configuration
 * asks for (SMTP, SMTPS when SSL is on, HTTP on in_address) so that ports
 * below 1024 work after the drop. A socket that cannot be bound now is left to
 * the module's own bind, which reports the error as usual. No-op when not root.
 */
void priv_prebind(const struct conf *c);
/*
 * priv_bind - bind(2) for listening sockets: when a socket for exactly SA was
 * pre-bound, it takes FD's place (dup3, non-blocking, close-on-exec) and 0 is
 * returned; otherwise this is bind(FD, SA, LEN).
 */
int priv_bind(int fd, const struct sockaddr *sa, socklen_t len);
/* priv_prebind_release - close pre-bound sockets no module asked for. */
void priv_prebind_release(void);

/*
 * priv_drop - as root: initgroups(mail_owner) plus setgid_group, setresgid, setresuid, then
 * verify that uid 0 and gid 0 cannot be regained. Call it before any worker
 * thread starts. No-op (0) when not root. 0 ok; -1 and *err (malloc'd).
 */
int priv_drop(char **err);

#endif
