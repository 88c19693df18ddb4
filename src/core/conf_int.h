/*
 * conf_int.h - what conf.c and conf_postfix.c share inside src/core.
 */
#ifndef MTA_CONF_INT_H
#define MTA_CONF_INT_H

#include <stddef.h>

/* conf_find_alias - index of Postfix name NAME in conf_aliases, or -1. */
int conf_find_alias(const char *name);

/* conf_alias_map - alias A's Postfix value IN as our value in *OUT (malloc'd); -1 with WHY
 * (empty WHY: out of memory). An alias that takes the same value leaves *OUT NULL. */
int conf_alias_map(int a, const char *in, char **out, char *why, size_t n);

#endif
