/*
 * conf.c - load and validate the daemon's settings (Postfix main.cf syntax):
 * defaults, the file's logical lines, -o overrides, $name expansion, cross
 * checks, and the errors of all of them; and print the values in effect.
 * The table of settings, value syntax and syntax checks are in conf_table.c.
 * All problems are collected, not just the first, so that one `mtactl check`
 * shows everything an administrator has to fix.
 * Postfix's main.cf names of our settings (conf_aliases) are read with Postfix's
 * value syntax, `$name` expansion included; our own names take '$' literally (a
 * password may hold one). The names and their value mappings are in conf_postfix.c.
 * Not here: what a setting does.
 */
#include "mta/conf.h"

#include "conf_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_LINE_MAX 65536  /* longest physical or logical line of a config file */
#define CONF_MAX_ERRORS 1000 /* a garbage file must not produce unbounded output */

/*
 * Collected errors. Value errors are found after the whole file and the -o options
 * are read (only a setting's last value counts), so every error carries the place
 * it belongs to (SEQ: file line, then -o order, then cross checks) and the text
 * is sorted by it at the end.
 */
struct conf_error {
    long seq;
    size_t n; /* arrival order, for a stable sort */
    char *text;
};

struct conf_errs {
    struct conf_error *v;
    size_t nv;
    long seq;  /* order key of what is reported now */
    int count; /* all errors, also those not kept */
    int quiet; /* count only (checking the built-in defaults) */
};

#define CONF_SEQ_OVERRIDE 1000000000L /* -o options come after every file line */
#define CONF_SEQ_CROSS LONG_MAX

/* conf_err - record one "Error: ..." line (the caller's format has no newline). */
static void conf_err(struct conf_errs *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void conf_err(struct conf_errs *e, const char *fmt, ...)
{
    va_list ap;
    char *text;

    e->count++;
    if (e->quiet || e->nv >= CONF_MAX_ERRORS)
        return;
    if (!e->v && !(e->v = calloc(CONF_MAX_ERRORS, sizeof(*e->v))))
        return;
    va_start(ap, fmt);
    int r = vasprintf(&text, fmt, ap);
    va_end(ap);
    if (r < 0)
        return;
    e->v[e->nv] = (struct conf_error){e->seq, e->nv, text};
    e->nv++;
}

/* conf_error_cmp - by place, then by arrival. */
static int conf_error_cmp(const void *a, const void *b)
{
    const struct conf_error *x = a, *y = b;

    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    return x->n < y->n ? -1 : x->n > y->n;
}

/* conf_errs_text - the sorted errors as one malloc'd text; frees them. */
static char *conf_errs_text(struct conf_errs *e)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);

    if (e->nv)
        qsort(e->v, e->nv, sizeof(e->v[0]), conf_error_cmp);
    for (size_t i = 0; i < e->nv; i++) {
        if (f)
            fprintf(f, "%s\n", e->v[i].text);
        free(e->v[i].text);
    }
    if (f && (size_t)e->count > e->nv)
        fprintf(f, "Error: more than %d errors; the rest are not shown\n", CONF_MAX_ERRORS);
    free(e->v);
    e->v = NULL;
    e->nv = 0;
    if (f)
        fclose(f);
    if (!buf || !*buf) {
        free(buf);
        buf = strdup("Error: out of memory\n");
    }
    return buf;
}

/* ---- assigning values ---- */

/*
 * conf_assign - check VALUE for setting I and store it; on error report it (LOC is
 * "FILE:LINE" or "-o TEXT"; LABEL names the setting as written, NULL: its name) and
 * keep the previous value. 0 ok, -1 bad.
 */
static int conf_assign(struct conf *c, size_t i, const char *value, const char *loc,
                       const char *label, struct conf_errs *e)
{
    const struct conf_def *d = &conf_defs[i];
    const char *name = label ? label : d->name;
    char why[512], shown[CONF_SHOW_MAX + 4];
    long long v = 0;
    long t = 0;
    int bad = 0;

    switch (d->type) {
    case CONF_STR: {
        if (conf_check_value(d->name, value, why, sizeof(why)) < 0) {
            if (!strcmp(d->name, "timezone"))
                conf_err(e, "Error: unknown timezone '%s' (setting timezone)",
                         conf_show(value, shown, sizeof(shown)));
            else
                conf_err(e, "Error: %s: bad value '%s' for %s: %s", loc,
                         conf_show(value, shown, sizeof(shown)), name, why);
            return -1;
        }
        /* Postfix 3.9: "yes" means reject; store one spelling so readers compare once. */
        if (!strcmp(d->name, "smtpd_forbid_bare_newline") && !strcmp(value, "yes"))
            value = "reject";
        char *copy = strdup(value);
        if (!copy) {
            conf_err(e, "Error: out of memory");
            return -1;
        }
        free(*CONF_FIELD(c, i, char *));
        *CONF_FIELD(c, i, char *) = copy;
        return 0;
    }
    case CONF_BOOL:
        if (!strcmp(value, "yes") || !strcmp(value, "no")) {
            *CONF_FIELD(c, i, int) = value[0] == 'y';
            return 0;
        }
        bad = 1;
        break;
    case CONF_INT:
        bad = conf_parse_int(value, &v) < 0 || v < d->min || v > d->max;
        if (!bad)
            *CONF_FIELD(c, i, long) = (long)v;
        break;
    case CONF_SIZE:
        bad = conf_parse_size(value, &v) < 0 || v < d->min || v > d->max;
        if (!bad)
            *CONF_FIELD(c, i, long long) = v;
        break;
    case CONF_TIME:
        bad = conf_parse_time(value, &t) < 0 || t < d->min || t > d->max;
        if (!bad)
            *CONF_FIELD(c, i, long) = t;
        break;
    }
    if (!bad)
        return 0;
    if (!strcmp(d->name, "ui_port") && !label) {
        conf_err(e, "Error: ui_port value must be between 1 and 65535.");
        return -1;
    }
    conf_expected(d, why, sizeof(why));
    conf_err(e, "Error: %s: bad value '%s' for %s: %s", loc, conf_show(value, shown, sizeof(shown)),
             name, why);
    return -1;
}

/* conf_trim - strip leading and trailing white space in place. */
static char *conf_trim(char *s)
{
    size_t len;

    while (*s == ' ' || *s == '\t')
        s++;
    len = strlen(s);
    while (len &&
           (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' || s[len - 1] == '\n'))
        s[--len] = '\0';
    return s;
}

/* The last value of a setting seen in the file or -o, checked when all are read. */
struct conf_raw {
    char *value;
    char *loc;
    long seq;
    int alias; /* index in conf_aliases when set under a Postfix name, else -1 */
};

/*
 * conf_setting - one "name = value" (file line or -o); LOC names where it came
 * from, e->seq orders its errors. Only names are checked here; the value is kept.
 */
static void conf_setting(struct conf_raw *raw, char *text, const char *loc, int is_override,
                         struct conf_errs *e)
{
    char shown[CONF_SHOW_MAX + 4];
    char *eq = strchr(text, '=');

    if (!eq) {
        if (is_override)
            conf_err(e, "Error: %s: expected name=value", loc);
        else
            conf_err(e, "Error: %s: expected 'name = value' but found '%s'", loc,
                     conf_show(text, shown, sizeof(shown)));
        return;
    }
    *eq = '\0';
    char *name = conf_trim(text), *value = conf_trim(eq + 1);
    if (!*name) {
        conf_err(e, "Error: %s: missing setting name before '='", loc);
        return;
    }
    int i = conf_find(name), alias = -1;
    if (i < 0 && (alias = conf_find_alias(name)) >= 0)
        i = conf_find(conf_aliases[alias].target);
    if (i < 0) {
        conf_err(e, "Error: %s: unknown setting '%s'", loc, conf_show(name, shown, sizeof(shown)));
        return;
    }
    char *v = strdup(value), *l = strdup(loc);
    if (!v || !l) {
        free(v);
        free(l);
        conf_err(e, "Error: out of memory");
        return;
    }
    free(raw[i].value);
    free(raw[i].loc);
    raw[i].value = v; /* the table owns them now; conf_load frees it */
    raw[i].loc = l;
    raw[i].seq = e->seq;
    raw[i].alias = alias;
}

/* ---- reading the file ---- */

struct conf_reader {
    struct conf_raw *raw;
    struct conf_errs *e;
    const char *path;
    char logical[CONF_LINE_MAX + 1];
    size_t llen;
    int lineno;    /* first physical line of the logical line */
    int have;      /* a logical line is pending */
    int too_long;  /* the pending logical line overflowed */
    int skip_cont; /* continuation lines of a broken line are dropped */
};

/* conf_flush - process the pending logical line. */
static void conf_flush(struct conf_reader *r)
{
    char loc[PATH_MAX + 32];

    if (!r->have)
        return;
    snprintf(loc, sizeof(loc), "%s:%d", r->path, r->lineno);
    r->e->seq = r->lineno;
    if (r->too_long)
        conf_err(r->e, "Error: %s: line longer than %d bytes (with its continuation lines)", loc,
                 CONF_LINE_MAX);
    else
        conf_setting(r->raw, r->logical, loc, 0, r->e);
    r->have = 0;
    r->too_long = 0;
    r->llen = 0;
}

/* conf_physical - one physical line (without '\n'); main.cf's logical-line rules. */
static void conf_physical(struct conf_reader *r, char *line, int lineno, int overlong, int nul)
{
    char *text = conf_trim(line);

    if (overlong || nul) {
        conf_flush(r);
        r->e->seq = lineno;
        conf_err(r->e, "Error: %s:%d: %s", r->path, lineno,
                 overlong ? "line too long" : "line contains a NUL byte");
        r->skip_cont = 1;
        return;
    }
    /* Postfix: blank and comment lines are ignored and do not end a logical line */
    if (*text == '\0' || *text == '#')
        return;
    if (line[0] == ' ' || line[0] == '\t') {
        if (!r->have) {
            r->e->seq = lineno;
            if (!r->skip_cont)
                conf_err(r->e,
                         "Error: %s:%d: line starts with white space but continues no setting "
                         "(a setting starts at the beginning of a line)",
                         r->path, lineno);
            return;
        }
        size_t tl = strlen(text);
        if (r->llen + 1 + tl > CONF_LINE_MAX) {
            r->too_long = 1;
            return;
        }
        r->logical[r->llen++] = ' ';
        memcpy(r->logical + r->llen, text, tl + 1);
        r->llen += tl;
        return;
    }
    conf_flush(r);
    r->skip_cont = 0;
    r->have = 1;
    r->lineno = lineno;
    r->llen = strlen(text);
    memcpy(r->logical, text, r->llen + 1);
}

/* conf_read_file - collect every setting in PATH into RAW; -1 when unreadable. */
static int conf_read_file(struct conf_raw *raw, const char *path, struct conf_errs *e)
{
    FILE *f = fopen(path, "r");
    struct stat st;

    if (f && fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        f = NULL;
        errno = EISDIR;
    }
    e->seq = 0;
    if (!f) {
        conf_err(e, "Error: cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    struct conf_reader *r = calloc(1, sizeof(*r));
    char *line = malloc(CONF_LINE_MAX + 1);
    if (!r || !line) {
        conf_err(e, "Error: out of memory");
        free(r);
        free(line);
        fclose(f);
        return -1;
    }
    r->raw = raw;
    r->e = e;
    r->path = path;
    int lineno = 0, ch;
    do {
        size_t len = 0;
        int overlong = 0, nul = 0;
        while ((ch = getc(f)) != EOF && ch != '\n') {
            if (ch == '\0')
                nul = 1;
            if (len < CONF_LINE_MAX)
                line[len++] = (char)ch;
            else
                overlong = 1;
        }
        line[len] = '\0';
        if (ch == EOF && len == 0)
            break;
        conf_physical(r, line, ++lineno, overlong, nul);
    } while (ch != EOF && e->count <= CONF_MAX_ERRORS);
    if (ferror(f))
        conf_err(e, "Error: cannot read %s: %s", path, strerror(errno));
    conf_flush(r);
    fclose(f);
    free(line);
    free(r);
    return 0;
}

/* conf_cross_check - rules that involve more than one setting, on the final values. */
static void conf_cross_check(const struct conf *c, struct conf_errs *e)
{
    if (!*c->data_volume)
        conf_err(e, "Error: data_volume is required (the directory of the mail queue).");
    if (c->logs_enabled && !*c->log_terminal)
        conf_err(e, "Error: Logs are enabled but 'log' terminal is not connected.");
    if (!c->ssl_disabled && (!*c->ssl_key_file || !*c->ssl_cert_file))
        conf_err(e, "Error: ssl_disabled=no but ssl key files are not defined.");
    if (*c->key_volume && *c->fs_terminal)
        conf_err(e, "Error: Both the key volume and the 'fs' terminal are configured; use only "
                    "one of them.");
    if (c->submission_port && (c->ssl_disabled || !c->smtpd_sasl_auth_enable))
        conf_err(e, "Error: submission_port needs ssl_disabled = no and smtpd_sasl_auth_enable "
                    "= yes (STARTTLS and AUTH are required there).");
    if (c->minimal_backoff_time > c->maximal_backoff_time)
        conf_err(e,
                 "Error: minimal_backoff_time (%lds) must not be greater than "
                 "maximal_backoff_time (%lds)",
                 c->minimal_backoff_time, c->maximal_backoff_time);
}

#define CONF_EXPAND_DEPTH 10 /* nested $name references; Postfix stops loops the same way */

/*
 * conf_expand - Postfix's $name, ${name} and $(name) in VALUE (a value given under a
 * Postfix name): the last value of that setting (ours or its Postfix name) or its
 * default; $myhostname with hostname empty is the system's name, as in Postfix. A
 * referenced value that was itself given under a Postfix name is expanded in turn.
 * A '$' not followed by a name stays. *OUT is malloc'd; -1 with WHY.
 */
static int conf_expand(const struct conf_raw *raw, const char *value, int depth, char **out,
                       char *why, size_t n)
{
    static const char namechars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_";
    char *buf = NULL, name[128], sys[256];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    int rc = 0;

    if (!f) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    for (const char *p = value; *p && rc == 0;) {
        if (*p != '$') {
            fputc(*p++, f);
            continue;
        }
        const char *nm = p + 1;
        char close = *nm == '{' ? '}' : *nm == '(' ? ')' : 0;
        nm += close != 0;
        size_t nl = strspn(nm, namechars);
        if (nl == 0 && !close) {
            fputc(*p++, f);
            continue;
        }
        if ((close && nm[nl] != close) || nl == 0 || nl >= sizeof(name)) {
            snprintf(why, n, "'%.40s': mta expands only $name, ${name} and $(name)", p);
            rc = -1;
            break;
        }
        memcpy(name, nm, nl);
        name[nl] = '\0';
        int i = conf_find(name), a;
        if (i < 0 && (a = conf_find_alias(name)) >= 0)
            i = conf_find(conf_aliases[a].target);
        if (i < 0) {
            snprintf(why, n, "$%s: mta has no setting %s", name, name);
            rc = -1;
            break;
        }
        if (depth >= CONF_EXPAND_DEPTH) {
            snprintf(why, n, "$%s: references nested too deeply (a loop?)", name);
            rc = -1;
            break;
        }
        const char *v = raw[i].value ? raw[i].value : conf_defs[i].def;
        if (!strcmp(conf_defs[i].name, "hostname") && !*v) {
            if (gethostname(sys, sizeof(sys) - 1) != 0 || !sys[0])
                snprintf(sys, sizeof(sys), "localhost");
            sys[sizeof(sys) - 1] = '\0';
            v = sys;
        }
        if (raw[i].value && raw[i].alias >= 0) {
            char *sub = NULL;
            rc = conf_expand(raw, v, depth + 1, &sub, why, n);
            if (rc == 0)
                fputs(sub, f);
            free(sub);
        } else {
            fputs(v, f);
        }
        p = nm + nl + (close != 0);
    }
    if (fclose(f) != 0 && rc == 0) {
        snprintf(why, n, "out of memory");
        rc = -1;
    }
    if (rc < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    return 0;
}

/* conf_assign_alias - setting I, whose last value was given under a Postfix name:
 * expand it, map it to our syntax, check and store it; errors name both spellings. */
static void conf_assign_alias(struct conf *c, const struct conf_raw *raw, size_t i,
                              struct conf_errs *e)
{
    int a = raw[i].alias;
    char label[160], why[512] = "", shown[CONF_SHOW_MAX + 4];
    char *expanded = NULL, *mapped = NULL;
    const char *bad = raw[i].value;

    snprintf(label, sizeof(label), "%s (mta's %s)", conf_aliases[a].name, conf_defs[i].name);
    if (conf_expand(raw, raw[i].value, 0, &expanded, why, sizeof(why)) == 0) {
        bad = expanded;
        if (conf_alias_map(a, expanded, &mapped, why, sizeof(why)) == 0) {
            if (conf_assign(c, i, mapped ? mapped : expanded, raw[i].loc, label, e) == 0)
                c->set_as[i] = conf_aliases[a].name;
            free(mapped);
            free(expanded);
            return;
        }
    }
    conf_err(e, "Error: %s: bad value '%s' for %s: %s", raw[i].loc,
             conf_show(bad, shown, sizeof(shown)), label, *why ? why : "out of memory");
    free(mapped);
    free(expanded);
}

/*
 * conf_alias_defaults - Postfix rules that follow from names, not single values:
 * smtpd_tls_key_file defaults to $smtpd_tls_cert_file, and Postfix's absolute key
 * paths are read from / when no key volume or fs terminal is configured.
 */
static void conf_alias_defaults(struct conf *c, const struct conf_raw *raw, struct conf_errs *e)
{
    int ki = conf_find("ssl_key_file"), ci = conf_find("ssl_cert_file");
    int kv = conf_find("key_volume"), fs = conf_find("fs_terminal");
    int ka = conf_find_alias("smtpd_tls_key_file");

    if (ki < 0 || ci < 0 || kv < 0 || fs < 0 || ka < 0)
        return;
    if (!raw[ki].value && c->set_as[ci]) {
        char *k = strdup(c->ssl_cert_file);
        if (!k) {
            conf_err(e, "Error: out of memory");
            return;
        }
        free(c->ssl_key_file);
        c->ssl_key_file = k;
        c->set_as[ki] = conf_aliases[ka].name;
    }
    if (((c->set_as[ki] && c->ssl_key_file[0] == '/') ||
         (c->set_as[ci] && c->ssl_cert_file[0] == '/')) &&
        !raw[kv].value && !raw[fs].value) {
        char *root = strdup("/");
        if (!root) {
            conf_err(e, "Error: out of memory");
            return;
        }
        free(c->key_volume);
        c->key_volume = root;
    }
}

/* conf_defaults - a config with every default applied (NULL when out of memory). */
static struct conf *conf_defaults(struct conf_errs *e)
{
    struct conf *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    for (size_t i = 0; i < conf_ndefs; i++) {
        if (conf_defs[i].type != CONF_STR)
            continue;
        if (!(*CONF_FIELD(c, i, char *) = strdup(""))) {
            conf_free(c);
            return NULL;
        }
    }
    for (size_t i = 0; i < conf_ndefs; i++)
        conf_assign(c, i, conf_defs[i].def, "default", NULL, e);
    return c;
}

struct conf *conf_load(const char *file, char *const *overrides, int noverrides, char **errors)
{
    struct conf_errs e = {0};
    struct conf_raw *raw = calloc(conf_ndefs, sizeof(*raw));
    struct conf *c = NULL;
    int readable = 1;

    if (errors)
        *errors = NULL;
    if (raw)
        c = conf_defaults(&e);
    if (c)
        c->path = strdup(file ? file : "");
    if (!c || !c->path) {
        free(raw);
        conf_free(c);
        if (errors)
            *errors = strdup("Error: out of memory\n");
        return NULL;
    }
    if (file)
        readable = conf_read_file(raw, file, &e) == 0;
    for (int i = 0; i < noverrides && overrides; i++) {
        char loc[CONF_SHOW_MAX + 8], shown[CONF_SHOW_MAX + 4];
        char *copy = strdup(overrides[i] ? overrides[i] : "");
        e.seq = CONF_SEQ_OVERRIDE + i;
        if (!copy) {
            conf_err(&e, "Error: out of memory");
            break;
        }
        snprintf(loc, sizeof(loc), "-o %s", conf_show(copy, shown, sizeof(shown)));
        conf_setting(raw, copy, loc, 1, &e);
        free(copy);
    }
    /* Postfix rules: only the last value of a setting counts, so only it is checked. */
    for (size_t i = 0; i < conf_ndefs; i++) {
        if (!raw[i].value)
            continue;
        e.seq = raw[i].seq;
        if (raw[i].alias >= 0)
            conf_assign_alias(c, raw, i, &e);
        else
            conf_assign(c, i, raw[i].value, raw[i].loc, NULL, &e);
    }
    e.seq = CONF_SEQ_CROSS;
    conf_alias_defaults(c, raw, &e);
    for (size_t i = 0; i < conf_ndefs; i++) {
        free(raw[i].value);
        free(raw[i].loc);
    }
    free(raw);
    /* Without the file, "data_volume is required" and the like would only be noise. */
    e.seq = CONF_SEQ_CROSS;
    if (readable)
        conf_cross_check(c, &e);
    if (e.count) {
        conf_free(c);
        char *text = conf_errs_text(&e);
        if (errors)
            *errors = text;
        else
            free(text);
        return NULL;
    }
    free(e.v);
    char sys[256] = "";
    if (!c->hostname[0] && (gethostname(sys, sizeof(sys) - 1) != 0 || !sys[0]))
        snprintf(sys, sizeof(sys), "localhost");
    c->myhostname = strdup(c->hostname[0] ? c->hostname : sys);
    if (!c->myhostname) {
        conf_free(c);
        if (errors)
            *errors = strdup("Error: out of memory\n");
        return NULL;
    }
    return c;
}

void conf_free(struct conf *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < conf_ndefs; i++)
        if (conf_defs[i].type == CONF_STR)
            free(*CONF_FIELD(c, i, char *));
    free(c->path);
    free(c->myhostname);
    free(c);
}

/* ---- printing ---- */

/* conf_value_text - the value of setting I in C as it would be written in the file. */
static void conf_value_text(const struct conf *c, size_t i, char *buf, size_t n)
{
    switch (conf_defs[i].type) {
    case CONF_STR:
        snprintf(buf, n, "%s", *CONF_FIELD(c, i, char *const));
        break;
    case CONF_BOOL:
        snprintf(buf, n, "%s", *CONF_FIELD(c, i, const int) ? "yes" : "no");
        break;
    case CONF_INT:
        snprintf(buf, n, "%ld", *CONF_FIELD(c, i, const long));
        break;
    case CONF_SIZE:
        snprintf(buf, n, "%lld", *CONF_FIELD(c, i, const long long));
        break;
    case CONF_TIME:
        snprintf(buf, n, "%lds", *CONF_FIELD(c, i, const long));
        break;
    }
}

void conf_print_values(const struct conf *c, FILE *out, int only_changed)
{
    struct conf_errs e = {.quiet = 1}; /* the defaults are known to be valid */
    struct conf *defaults = only_changed ? conf_defaults(&e) : NULL;
    char cur[1024], def[1024];

    for (size_t i = 0; i < conf_ndefs; i++) {
        conf_value_text(c, i, cur, sizeof(cur));
        if (defaults) {
            conf_value_text(defaults, i, def, sizeof(def));
            if (!strcmp(cur, def))
                continue;
        }
        fprintf(out, "%s = %s\n", conf_defs[i].name, cur);
    }
    conf_free(defaults);
}
