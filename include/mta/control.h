/*
 * control.h - the administration socket: a UNIX stream socket
 * DATA_VOLUME/control speaking a line protocol. The client sends one line
 * "COMMAND [ARG...]\n"; the daemon answers with a status line ("ok" or
 * "error: TEXT"), then the command's output, then closes the connection.
 * Modules register the commands they serve (the data's owner answers).
 * Not here: what the commands do; mtactl's argument parsing.
 */
#ifndef MTA_CONTROL_H
#define MTA_CONTROL_H

#include <stdio.h>
#include <sys/types.h>
#include <sys/un.h>

struct event_base;
struct evbuffer;
struct conf;
struct control;

#define CONTROL_SOCKET_NAME "control"
#define CONTROL_LINE_MAX 4096
#define CONTROL_ARGS_MAX 64

/* A command handler (see control_register): ARGV[0] is the command name. */
typedef int (*control_cmd_fn)(void *arg, int argc, char **argv, struct evbuffer *out);

/*
 * control_new - listen on DATA_VOLUME/control (a stale socket is replaced; mode
 * 0660, group setgid_group; only public commands for peers other than root
 * and the daemon's own user). Serves
 * "stats" (the counters) itself. NULL and *err (malloc'd) on failure.
 */
struct control *control_new(struct event_base *base, const struct conf *conf, char **err);
/*
 * control_register - serve NAME with FN. FN returns 0 for success, or -1 when
 * what it wrote to OUT is an error message (the status line becomes
 * "error: <that text>" and mtactl exits 1).
 */
int control_register(struct control *c, const char *name, control_cmd_fn fn, void *arg);
/*
 * control_register_public - serve NAME with FN for any peer that can reach the
 * socket (mode 0660, group setgid_group: root, the daemon's user and programs
 * setgid to that group, such as postqueue). Use it only for what Postfix lets
 * every local user do (the queue listing, flush). Administrative commands use
 * control_register: other peers get "error: permission denied".
 */
int control_register_public(struct control *c, const char *name, control_cmd_fn fn, void *arg);
/* control_peer_uid - the uid of the peer whose command is being run (in a handler only). */
uid_t control_peer_uid(void);
/* control_free - close the socket and every client connection, unlink the socket. */
void control_free(struct control *c);

/* The outcome of a request (control_call). */
enum control_rc { CONTROL_OK = 0, CONTROL_REFUSED = 1, CONTROL_DOWN = 2 };
struct control_reply {
    int rc;  /* enum control_rc */
    int err; /* CONTROL_DOWN: the errno of the failure (0: no answer) */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* the socket, for messages */
    char text[1024]; /* CONTROL_REFUSED: the daemon's text; CONTROL_DOWN: why (English) */
};
/*
 * control_call - client side, for every program (mtactl, postqueue, postsuper):
 * send LINE to the daemon of DATA_VOLUME; on "ok" copy its output to OUT.
 * Returns R->rc; R says why when it is not CONTROL_OK, for the caller to word.
 */
int control_call(const char *data_volume, const char *line, FILE *out, struct control_reply *r);
/*
 * control_request - client side (mtactl): send LINE to the daemon of
 * DATA_VOLUME and copy its output to OUT. 0 on "ok", 1 on "error: ..." (the
 * text is printed to ERRF), 2 when the daemon cannot be reached (ERRF says why).
 */
int control_request(const char *data_volume, const char *line, FILE *out, FILE *errf);

#endif
