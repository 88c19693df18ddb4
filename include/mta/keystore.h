/*
 * keystore.h - where the SSL key and certificate come from: the key volume (a
 * directory, key_volume) or the fs terminal (an NFS export read with libnfs,
 * no kernel mount). Reads block: call them at start-up (before the loop runs)
 * or through keystore_reload (a worker thread), never from a session.
 * Not here: the TLS policy (tls.h).
 *
 * Start-up failures come as one exact line for stderr (*message, static) and a
 * detail naming the file, directory or URL (*detail, malloc'd):
 *   key_volume missing/unreadable, NFS export unreachable
 *                       -> "Error: Failed to mount key volume."
 *   a file missing or unreadable -> "Error: Could not find ssl keys on the key volume."
 *   key readable by others (mode o+r/o+w) -> refused, KEYSTORE_MSG_PERMS
 *   key password-protected, key/certificate mismatch, unparsable PEM -> see below.
 * A group-readable key is accepted with a warning in the mail log.
 */
#ifndef MTA_KEYSTORE_H
#define MTA_KEYSTORE_H

#include <stddef.h>

struct conf;
struct tls_ctx;
struct workers;

#define KEYSTORE_MSG_MOUNT "Error: Failed to mount key volume."
#define KEYSTORE_MSG_MISSING "Error: Could not find ssl keys on the key volume."
#define KEYSTORE_MSG_PERMS                                                                         \
    "Error: The ssl key file is readable by other users; make it readable by its owner only "      \
    "(chmod 600)."
#define KEYSTORE_MSG_PASSWORD                                                                      \
    "Error: The ssl key is password-protected; remove the password (openssl rsa -in "              \
    "protected.key -out server.key)."
#define KEYSTORE_MSG_MISMATCH "Error: The ssl key does not match the ssl certificate."
#define KEYSTORE_MSG_BADPEM "Error: The ssl key or certificate is not valid PEM."

#define KEYSTORE_FILE_MAX (1024 * 1024) /* larger key/cert files are refused */

struct keystore_pem {
    char *key, *cert;
    size_t key_len, cert_len;
    char *warning; /* malloc'd, or NULL: a note for the mail log (group-readable key) */
};

/* keystore_load - read ssl_key_file and ssl_cert_file. 0 ok; -1 with *message and *detail. */
int keystore_load(const struct conf *c, struct keystore_pem *out, const char **message,
                  char **detail);
void keystore_pem_free(struct keystore_pem *p);

/* keystore_read_key - one private key file NAME (the DKIM key) into OUT->key, with the same
 * sources and rules as ssl_key_file: from the fs terminal, else the key volume; with neither,
 * NAME must be an absolute path. */
int keystore_read_key(const struct conf *c, const char *name, struct keystore_pem *out,
                      const char **message, char **detail);

/*
 * keystore_tls_new - keystore_load, then the TLS context (tls_ctx_new); logs the
 * warning if any. NULL with *message and *detail on any failure.
 */
struct tls_ctx *keystore_tls_new(const struct conf *c, const char **message, char **detail);

/*
 * keystore_reload - SIGHUP: read the files and build a new context on a worker
 * of W, then DONE(ctx, NULL, arg) on the loop (the callee owns ctx), or
 * DONE(NULL, "why", arg) when anything failed (the old context stays in use).
 */
void keystore_reload(struct workers *w, const struct conf *c,
                     void (*done)(struct tls_ctx *ctx, const char *err, void *arg), void *arg);

#endif
