/*
 * mtactl.c - the administrator's command-line tool:
 *   mtactl [-c FILE] [-o name=value]... COMMAND
 * check     load and validate the configuration, print every error, exit 2 on error
 * settings  print the table of settings (the body of docs/configuration.md)
 * queue [--json] [limit=N] [offset=N|after=ID]  the mail queue (mailq format, or
 *                  postqueue -j JSON lines), one page of at most N (1000) messages
 * flush           retry all deferred mail now
 * delete ID...|ALL  remove messages from the queue
 * hold ID...|ALL    put messages on hold (postsuper -h): not delivered until released
 * release ID...|ALL release messages from hold (postsuper -H)
 * stats           the daemon's counters
 * The last six talk to the running daemon over DATA_VOLUME/control (control.h).
 */
#include "mta/conf.h"
#include "mta/control.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MTACTL_DEFAULT_CONF MTA_DEFAULT_CONF

/* mtactl_usage - the synopsis, to OUT. */
static void mtactl_usage(FILE *out)
{
    fprintf(out, "usage: mtactl [-c FILE] [-o name=value]... COMMAND\n"
                 "  -c FILE         configuration file (default " MTACTL_DEFAULT_CONF ")\n"
                 "  -o name=value   override a setting of the file\n"
                 "commands:\n"
                 "  check           validate the configuration, print every error "
                 "(exit 2 on error)\n"
                 "  settings        print the table of all settings (Markdown)\n"
                 "  queue [--json] [limit=N] [offset=N|after=ID]  list the mail queue (mailq /\n"
                 "                  postqueue -j format), at most N (1000) messages\n"
                 "  flush           retry all deferred mail now\n"
                 "  delete ID...|ALL  remove messages from the queue\n"
                 "  hold ID...|ALL    put messages on hold (not delivered until released)\n"
                 "  release ID...|ALL release messages from hold\n"
                 "  stats           print the daemon's counters\n");
}

/*
 * mtactl_hold_sync - after hold/release: wait (at most 30 s) until the daemon has the new
 * state on stable storage, so that a crash after mtactl returns cannot undo it.
 */
static int mtactl_hold_sync(const char *data_volume)
{
    struct timespec ms10 = {0, 10 * 1000 * 1000};
    long pending = 0;

    for (int i = 0; i < 3000; i++) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        int rc;
        if (!f)
            return 1;
        rc = control_request(data_volume, "hold-sync", f, stderr);
        fclose(f);
        pending = rc == 0 && out ? strtol(out, NULL, 10) : -1;
        free(out);
        if (rc != 0)
            return rc;
        if (pending <= 0)
            return 0;
        nanosleep(&ms10, NULL);
    }
    fprintf(stderr, "mtactl: %ld hold or release change(s) not yet on stable storage\n", pending);
    return 1;
}

/* mtactl_daemon - send one control request (queue, flush, delete, hold, release, stats). */
static int mtactl_daemon(const char *file, char **overrides, int noverrides, int argc, char **argv)
{
    char *errors = NULL, line[CONTROL_LINE_MAX];
    struct conf *c = conf_load(file, overrides, noverrides, &errors);
    size_t n = 0;
    int i, rc;

    if (!c) {
        fputs(errors ? errors : "Error: cannot load the configuration\n", stderr);
        free(errors);
        return 2;
    }
    if (!strcmp(argv[0], "queue") && argc >= 2 && !strcmp(argv[1], "--json")) {
        /* "queue --json [limit=N ...]" is "queue-json [limit=N ...]": join the rest below */
        argv[1] = "queue-json";
        argv++;
        argc--;
    }
    if ((!strcmp(argv[0], "flush") || !strcmp(argv[0], "stats")) && argc != 1) {
        fprintf(stderr, "mtactl: bad arguments for %s\n", argv[0]);
        conf_free(c);
        return 1;
    } else if ((!strcmp(argv[0], "delete") || !strcmp(argv[0], "hold") ||
                !strcmp(argv[0], "release")) &&
               (argc < 2 || argv[1][0] == '-')) {
        fprintf(stderr, "mtactl: %s needs queue IDs or ALL\n", argv[0]);
        conf_free(c);
        return 1;
    } else {
        for (i = 0; i < argc && n < sizeof(line); i++) {
            if (strpbrk(argv[i], " \t\r\n")) {
                fprintf(stderr, "mtactl: bad argument '%s'\n", argv[i]);
                conf_free(c);
                return 1;
            }
            n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s", i ? " " : "", argv[i]);
        }
    }
    if (n >= sizeof(line)) {
        fprintf(stderr, "mtactl: too many arguments\n");
        conf_free(c);
        return 1;
    }
    rc = control_request(c->data_volume, line, stdout, stderr);
    if (rc == 0 && (!strcmp(argv[0], "hold") || !strcmp(argv[0], "release")))
        rc = mtactl_hold_sync(c->data_volume);
    conf_free(c);
    return rc;
}

/* mtactl_check - `mtactl check`: 0 when the configuration loads, 2 otherwise. */
static int mtactl_check(const char *file, char **overrides, int noverrides)
{
    char *errors = NULL;
    struct conf *c = conf_load(file, overrides, noverrides, &errors);

    if (!c) {
        fputs(errors ? errors : "Error: cannot load the configuration\n", stderr);
        free(errors);
        return 2;
    }
    /* say which Postfix names were read as which of our settings */
    for (size_t i = 0; i < conf_ndefs; i++)
        if (c->set_as[i])
            printf("mtactl: %s is read as %s\n", c->set_as[i], conf_defs[i].name);
    conf_free(c);
    printf("mtactl: configuration OK\n");
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = MTACTL_DEFAULT_CONF;
    char **overrides = calloc((size_t)argc + 1, sizeof(*overrides));
    int noverrides = 0, opt, rc;

    if (!overrides) {
        fprintf(stderr, "mtactl: out of memory\n");
        return 1;
    }
    /* '+': stop at the command, so later commands can take their own options */
    while ((opt = getopt(argc, argv, "+c:o:h")) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 'o':
            overrides[noverrides++] = optarg;
            break;
        case 'h':
            mtactl_usage(stdout);
            free(overrides);
            return 0;
        default:
            mtactl_usage(stderr);
            free(overrides);
            return 1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "mtactl: missing command\n");
        mtactl_usage(stderr);
        free(overrides);
        return 1;
    }
    const char *cmd = argv[optind];
    if (!strcmp(cmd, "check") && optind + 1 == argc) {
        rc = mtactl_check(file, overrides, noverrides);
    } else if (!strcmp(cmd, "settings") && optind + 1 == argc) {
        conf_print_table(stdout);
        rc = fflush(stdout) == 0 ? 0 : 1;
    } else if (!strcmp(cmd, "queue") || !strcmp(cmd, "flush") || !strcmp(cmd, "delete") ||
               !strcmp(cmd, "hold") || !strcmp(cmd, "release") || !strcmp(cmd, "stats")) {
        rc = mtactl_daemon(file, overrides, noverrides, argc - optind, argv + optind);
    } else if (!strcmp(cmd, "check") || !strcmp(cmd, "settings")) {
        fprintf(stderr, "mtactl: %s takes no arguments\n", cmd);
        mtactl_usage(stderr);
        rc = 1;
    } else {
        fprintf(stderr, "mtactl: unknown command '%s'\n", cmd);
        mtactl_usage(stderr);
        rc = 1;
    }
    free(overrides);
    return rc;
}
