/*
 * text.h - text encodings shared by layers: UTF-8 validation, JSON strings,
 * printable text, checked decimal numbers.
 */
#ifndef MTA_TEXT_H
#define MTA_TEXT_H

#include <stddef.h>

struct evbuffer;

/* text_utf8_len - length of a valid UTF-8 sequence at S (1..4), 0 when invalid. */
int text_utf8_len(const unsigned char *s);
/*
 * text_json_string - S as a quoted JSON string: quote, backslash and control
 * characters escaped, valid UTF-8 passed through, invalid bytes as \ufffd.
 */
void text_json_string(struct evbuffer *out, const char *s);
/*
 * text_printable - replace in place every byte of S that is not printable ASCII
 * (0x20..0x7E) with REPL, as Postfix's printable() does: text from outside (a
 * remote server's reply) can then never carry terminal escapes or line breaks.
 * Returns S.
 */
char *text_printable(char *s, char repl);
/*
 * text_parse_u64 - the decimal number S[0..LEN) (digits only: no sign, space or
 * prefix) into *OUT when it is at most MAX. 0, or -1 when it is empty, not a
 * number, or larger than MAX (never overflows). For numbers read from disk or
 * the network.
 */
int text_parse_u64(const char *s, size_t len, unsigned long long max, unsigned long long *out);

#endif
