/*
 * smtpd_map.h - a small chained hash map with fixed 16-byte keys: sessions by
 * numeric id (so async completions never hold a pointer) and connection
 * counts by client address. Not thread-safe (loop thread only).
 */
#ifndef SMTPD_MAP_H
#define SMTPD_MAP_H

#include <stddef.h>
#include <stdint.h>

struct smtpd_map;

struct smtpd_map *smtpd_map_new(void);
void smtpd_map_free(struct smtpd_map *m);
/* smtpd_map_get - the value stored under KEY, or NULL. */
void *smtpd_map_get(const struct smtpd_map *m, const unsigned char key[16]);
/* smtpd_map_put - store VAL under KEY (replacing). 0 ok, -1 out of memory. */
int smtpd_map_put(struct smtpd_map *m, const unsigned char key[16], void *val);
/* smtpd_map_del - remove KEY (no-op when absent). */
void smtpd_map_del(struct smtpd_map *m, const unsigned char key[16]);
/* smtpd_map_key_u64 - the key of a numeric id. */
void smtpd_map_key_u64(unsigned char key[16], uint64_t id);

#endif
