/*
 * conf_int.h - what the configuration files share inside src/core: conf.c (the
 * parser) uses the table of settings (conf_table.c) and the Postfix names
 * (conf_postfix.c); neither of those calls the parser.
 */
#ifndef MTA_CONF_INT_H
#define MTA_CONF_INT_H

#include <stddef.h>

struct conf_def;

#define CONF_SHOW_MAX 80 /* longest value quoted in a message */

/* conf_offsets - where setting I lives in struct conf (same order as conf_defs). */
extern const size_t conf_offsets[];
#define CONF_FIELD(c, i, ctype) ((ctype *)((char *)(c) + conf_offsets[i]))

/* conf_find - index of setting NAME in conf_defs, or -1. */
int conf_find(const char *name);
/* conf_parse_int - optional '-', decimal digits, nothing else; 0, or -1. */
int conf_parse_int(const char *s, long long *out);
/* conf_check_value - the syntax check of string setting NAME on VALUE: 0 (also when the
 * setting has none), or -1 with WHY. */
int conf_check_value(const char *name, const char *value, char *why, size_t n);
/* conf_expected - what a valid value of numeric/bool setting D looks like, for messages. */
void conf_expected(const struct conf_def *d, char *buf, size_t n);
/* conf_show - V made safe to quote (bounded, control bytes as '?') in BUF of N bytes. */
const char *conf_show(const char *v, char *buf, size_t n);

/* conf_find_alias - index of Postfix name NAME in conf_aliases, or -1. */
int conf_find_alias(const char *name);

/* conf_alias_map - alias A's Postfix value IN as our value in *OUT (malloc'd); -1 with WHY
 * (empty WHY: out of memory). An alias that takes the same value leaves *OUT NULL. */
int conf_alias_map(int a, const char *in, char **out, char *why, size_t n);

#endif
