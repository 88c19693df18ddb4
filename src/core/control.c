/*
 * control.c - the administration socket DATA_VOLUME/control (mtactl's side
 * door into the running daemon): accept, read one command line, dispatch to the
 * registered handler, write "ok"/"error: ..." and the output, close. The socket
 * is mode 0660, group setgid_group, inside the 0710 data volume of that group:
 * root, the daemon's own user and programs running setgid setgid_group
 * (postqueue, as Postfix's) reach it. Each command is either public (the queue
 * listing, flush: what Postfix lets any local user do) or administrative; the
 * peer's uid (SO_PEERCRED) decides: only root and the daemon's own user run
 * administrative ones. Started as root, mtad creates the socket after dropping
 * to mail_owner (with setgid_group among its groups), so the socket is that
 * account's, and the daemon can remove it at exit.
 * The socket is bound relative to the working directory when that is the data
 * volume (privilege.h), so the path above the volume may stay root-only.
 * Also the client half (control_request) that mtactl uses.
 * Not here: the commands' meaning (the module that owns the data registers them).
 */
#include "mta/control.h"

#include "mta/conf.h"
#include "mta/counters.h"
#include "mta/privilege.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct control_cmd {
    char *name;
    control_cmd_fn fn;
    void *arg;
    int public; /* any peer may run it (else root and the daemon's user only) */
    SLIST_ENTRY(control_cmd) link;
};

struct control_conn {
    struct control *c;
    struct bufferevent *bev;
    LIST_ENTRY(control_conn) link; /* control.conns */
    uid_t uid;                     /* the peer's (SO_PEERCRED) */
    int replied;
};

static uid_t control_cur_uid = (uid_t)-1; /* the peer of the command being run */

struct control {
    struct event_base *base;
    struct evconnlistener *lev;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];  /* for messages */
    char local[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* bound and removed */
    SLIST_HEAD(, control_cmd) cmds;
    LIST_HEAD(, control_conn) conns; /* open connections, closed by control_free */
};

/* control_conn_free - close one client connection. */
static void control_conn_free(struct control_conn *cc)
{
    LIST_REMOVE(cc, link);
    bufferevent_free(cc->bev);
    free(cc);
}

/* control_stats - "stats": every counter as "name value" lines. */
static int control_stats(void *arg, int argc, char **argv, struct evbuffer *out)
{
    int i;

    (void)arg;
    (void)argc;
    (void)argv;
    for (i = 0; i < CNT__COUNT; i++)
        evbuffer_add_printf(out, "%s %lld\n", counter_name((enum counter_id)i),
                            counter_get((enum counter_id)i));
    return 0;
}

/* control_dispatch - run the command in LINE and queue the reply. */
static void control_dispatch(struct control_conn *cc, char *line)
{
    char *argv[CONTROL_ARGS_MAX + 1], *save = NULL, *tok;
    struct evbuffer *out = evbuffer_new(), *reply = bufferevent_get_output(cc->bev);
    struct control_cmd *cmd;
    int argc = 0, rc;

    if (!out)
        return;
    for (tok = strtok_r(line, " \t\r", &save); tok && argc < CONTROL_ARGS_MAX;
         tok = strtok_r(NULL, " \t\r", &save))
        argv[argc++] = tok;
    argv[argc] = NULL;
    for (cmd = SLIST_FIRST(&cc->c->cmds); argc && cmd; cmd = SLIST_NEXT(cmd, link))
        if (strcmp(cmd->name, argv[0]) == 0)
            break;
    if (!argc || !cmd) {
        evbuffer_add_printf(reply, "error: unknown command \"%s\"\n", argc ? argv[0] : "");
    } else if (!cmd->public && cc->uid != 0 && cc->uid != geteuid()) {
        evbuffer_add_printf(reply, "error: permission denied: %s is reserved for the superuser\n",
                            argv[0]);
    } else {
        control_cur_uid = cc->uid;
        rc = cmd->fn(cmd->arg, argc, argv, out);
        control_cur_uid = (uid_t)-1;
        if (rc == 0) {
            evbuffer_add(reply, "ok\n", 3);
            evbuffer_add_buffer(reply, out);
        } else {
            evbuffer_add(reply, "error: ", 7);
            evbuffer_add_buffer(reply, out);
            evbuffer_add(reply, "\n", 1);
        }
    }
    evbuffer_free(out);
    cc->replied = 1;
}

static void control_write_cb(struct bufferevent *bev, void *arg)
{
    struct control_conn *cc = arg;

    (void)bev;
    if (cc->replied)
        control_conn_free(cc);
}

static void control_read_cb(struct bufferevent *bev, void *arg)
{
    struct control_conn *cc = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char *line;
    size_t n;

    if (cc->replied)
        return;
    line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
    if (!line) {
        if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
            control_conn_free(cc);
        return;
    }
    control_dispatch(cc, line);
    free(line);
    bufferevent_disable(bev, EV_READ);
}

static void control_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what;
    control_conn_free(arg);
}

/* control_accept_cb - a client connected: note who it is (the socket's mode and
 * group decided that it may connect; the command decides what it may run). */
static void control_accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                              int salen, void *arg)
{
    struct control *c = arg;
    struct control_conn *cc;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    struct timeval tv = {30, 0};

    (void)lev;
    (void)sa;
    (void)salen;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        close(fd);
        return;
    }
    cc = calloc(1, sizeof(*cc));
    if (!cc) {
        close(fd);
        return;
    }
    cc->c = c;
    cc->uid = cred.uid;
    cc->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!cc->bev) {
        close(fd);
        free(cc);
        return;
    }
    LIST_INSERT_HEAD(&c->conns, cc, link);
    bufferevent_setcb(cc->bev, control_read_cb, control_write_cb, control_event_cb, cc);
    bufferevent_set_timeouts(cc->bev, &tv, &tv);
    bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
}

struct control *control_new(struct event_base *base, const struct conf *conf, char **err)
{
    struct control *c = calloc(1, sizeof(*c));
    struct sockaddr_un sun;
    int n;
    mode_t old;

    if (!c) {
        if (err)
            *err = strdup("out of memory");
        return NULL;
    }
    c->base = base;
    SLIST_INIT(&c->cmds);
    LIST_INIT(&c->conns);
    n = snprintf(c->path, sizeof(c->path), "%s/" CONTROL_SOCKET_NAME, conf->data_volume);
    if (n < 0 || (size_t)n >= sizeof(c->path)) {
        if (err && asprintf(err, "data_volume path too long for the control socket") < 0)
            *err = NULL;
        free(c);
        return NULL;
    }
    n = snprintf(c->local, sizeof(c->local), "%s/" CONTROL_SOCKET_NAME,
                 priv_data_volume_path(conf->data_volume));
    if (n < 0 || (size_t)n >= sizeof(c->local)) {
        if (err && asprintf(err, "data_volume path too long for the control socket") < 0)
            *err = NULL;
        free(c);
        return NULL;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, c->local, strlen(c->local) + 1);
    unlink(c->local);  /* a stale socket of an earlier run; the spool lock guards a live one */
    old = umask(0077); /* no moment with a wider mode than the final one */
    c->lev = evconnlistener_new_bind(base, control_accept_cb, c,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
                                     (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (!c->lev) {
        if (err && asprintf(err, "cannot listen on %s: %s", c->path, strerror(errno)) < 0)
            *err = NULL;
        free(c);
        return NULL;
    }
    /* group setgid_group may connect (postqueue); a failure leaves it root/owner-only */
    if (chown(c->local, (uid_t)-1, priv_setgid_group()) < 0 || chmod(c->local, 0660) < 0)
        chmod(c->local, 0600);
    control_register(c, "stats", control_stats, NULL);
    return c;
}

/* control_add - register NAME; PUBLIC: any peer may run it. */
static int control_add(struct control *c, const char *name, control_cmd_fn fn, void *arg,
                       int public)
{
    struct control_cmd *cmd = calloc(1, sizeof(*cmd));

    if (!cmd || !(cmd->name = strdup(name))) {
        free(cmd);
        return -1;
    }
    cmd->fn = fn;
    cmd->arg = arg;
    cmd->public = public;
    SLIST_INSERT_HEAD(&c->cmds, cmd, link);
    return 0;
}

int control_register(struct control *c, const char *name, control_cmd_fn fn, void *arg)
{
    return control_add(c, name, fn, arg, 0);
}

int control_register_public(struct control *c, const char *name, control_cmd_fn fn, void *arg)
{
    return control_add(c, name, fn, arg, 1);
}

uid_t control_peer_uid(void)
{
    return control_cur_uid;
}

void control_free(struct control *c)
{
    struct control_cmd *cmd;

    if (!c)
        return;
    while (!LIST_EMPTY(&c->conns))
        control_conn_free(LIST_FIRST(&c->conns));
    if (c->lev) {
        evconnlistener_free(c->lev);
        unlink(c->local);
    }
    while ((cmd = SLIST_FIRST(&c->cmds))) {
        SLIST_REMOVE_HEAD(&c->cmds, link);
        free(cmd->name);
        free(cmd);
    }
    free(c);
}

/* control_reply_add - append N bytes of P to R's text (bounded: the rest is dropped). */
static void control_reply_add(struct control_reply *r, const char *p, size_t n)
{
    size_t have = strlen(r->text), room = sizeof(r->text) - 1 - have;

    if (n > room)
        n = room;
    memcpy(r->text + have, p, n);
    r->text[have + n] = '\0';
}

int control_call(const char *data_volume, const char *line, FILE *out, struct control_reply *r)
{
    struct sockaddr_un sun;
    char buf[8192], status[512];
    size_t slen = 0, len = strlen(line);
    int fd, n, got_status = 0;

    memset(r, 0, sizeof(*r));
    r->rc = CONTROL_DOWN;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    n = snprintf(r->path, sizeof(r->path), "%s/" CONTROL_SOCKET_NAME, data_volume);
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        r->err = ENAMETOOLONG;
        snprintf(r->text, sizeof(r->text), "data_volume path too long");
        return r->rc;
    }
    memcpy(sun.sun_path, r->path, (size_t)n + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        r->err = errno;
        snprintf(r->text, sizeof(r->text),
                 "cannot connect to the mail system at %s: %s (is mtad running?)", r->path,
                 strerror(r->err));
        if (fd >= 0)
            close(fd);
        return r->rc;
    }
    if (write(fd, line, len) != (ssize_t)len || write(fd, "\n", 1) != 1) {
        r->err = errno;
        snprintf(r->text, sizeof(r->text), "write to %s: %s", r->path, strerror(r->err));
        close(fd);
        return r->rc;
    }
    while ((n = (int)read(fd, buf, sizeof(buf))) > 0) {
        int i = 0;
        while (!got_status && i < n) {
            char ch = buf[i++];
            if (ch == '\n') {
                status[slen] = '\0';
                got_status = 1;
                r->rc = strcmp(status, "ok") == 0 ? CONTROL_OK : CONTROL_REFUSED;
                if (r->rc == CONTROL_REFUSED)
                    snprintf(r->text, sizeof(r->text), "%s",
                             strncmp(status, "error: ", 7) == 0 ? status + 7 : status);
            } else if (slen + 1 < sizeof(status)) {
                status[slen++] = ch;
            }
        }
        if (i < n && r->rc == CONTROL_OK)
            fwrite(buf + i, 1, (size_t)(n - i), out);
        else if (i < n) /* more lines of a refusal's text */
            control_reply_add(r, buf + i, (size_t)(n - i));
    }
    close(fd);
    if (!got_status) {
        r->rc = CONTROL_DOWN;
        snprintf(r->text, sizeof(r->text),
                 "the mail system closed the connection without an answer");
    }
    return r->rc;
}

int control_request(const char *data_volume, const char *line, FILE *out, FILE *errf)
{
    struct control_reply r;
    size_t n;

    if (control_call(data_volume, line, out, &r) != CONTROL_OK) {
        n = strlen(r.text);
        fprintf(errf, "mtactl: %s%s", r.text, n && r.text[n - 1] == '\n' ? "" : "\n");
    }
    return r.rc;
}
