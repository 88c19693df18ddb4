/*
 * text.h - text encodings shared by layers: UTF-8 validation, JSON strings.
 */
#ifndef MTA_TEXT_H
#define MTA_TEXT_H

struct evbuffer;

/* text_utf8_len - length of a valid UTF-8 sequence at S (1..4), 0 when invalid. */
int text_utf8_len(const unsigned char *s);
/*
 * text_json_string - S as a quoted JSON string: quote, backslash and control
 * characters escaped, valid UTF-8 passed through, invalid bytes as \ufffd.
 */
void text_json_string(struct evbuffer *out, const char *s);

#endif
