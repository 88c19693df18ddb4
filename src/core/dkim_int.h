/*
 * dkim_int.h - private to the DKIM signer in src/core/: the ed25519-sha256 signer of
 * dkim_ed25519.c that dkim.c uses instead of libopendkim for Ed25519 keys.
 * Not for other modules: they use include/mta/dkim.h.
 */
#ifndef MTA_DKIM_INT_H
#define MTA_DKIM_INT_H

#include <stddef.h>

#include <openssl/evp.h>

struct dkim_ed;

/* dkim_ed_new - the body hash of one message (relaxed); NULL when out of memory. */
struct dkim_ed *dkim_ed_new(void);
/* dkim_ed_body - the next body bytes as stored (CRLF lines). */
void dkim_ed_body(struct dkim_ed *e, const unsigned char *p, size_t n);
/* dkim_ed_sign - the end of the body: "DKIM-Signature: ...\r\n" (malloc'd) over the header block
 * H[0..HLEN) (its fields named in NAMES, every instance), d=DOMAIN, s=SELECTOR, signed with the
 * Ed25519 KEY; NULL and WHY on failure. */
char *dkim_ed_sign(struct dkim_ed *e, EVP_PKEY *key, const char *h, size_t hlen, char *const *names,
                   int nnames, const char *domain, const char *selector, char *why, size_t whylen);
void dkim_ed_free(struct dkim_ed *e);

#endif
