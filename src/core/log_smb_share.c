/*
 * log_smb_share.c - the log terminal's libsmbclient session, on the log
 * terminal's thread only (libsmbclient blocks and is not thread-safe): loading
 * the library, the one client context, connecting (directories, the file),
 * rotation, and writing one batch from the head of the record stream. After a
 * failed write, the file size seen on reconnecting tells how much of the batch
 * reached the share, so that part is not written twice.
 * Not here: the record stream (log_smb_stream.c), the thread (log_smb.c).
 */
#include "mta/log_smb.h"
#include "log_smb_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* libsmbclient pulls in Samba's whole library tree (~10 MB resident): it is loaded with
 * dlopen only when the log terminal is started, so a daemon without one never maps it.
 * Every libsmbclient function this file calls is in this list and called via smb_lib. */
#define LOG_SMB_LIBNAME "libsmbclient.so.0"
/* One function a line: clang-format 14 reflows a packed list differently on each run. */
#define LOG_SMB_FUNCS(X)                                                                           \
    X(smbc_new_context)                                                                            \
    X(smbc_init_context)                                                                           \
    X(smbc_free_context)                                                                           \
    X(smbc_setDebug)                                                                               \
    X(smbc_setLogCallback)                                                                         \
    X(smbc_setConfiguration)                                                                       \
    X(smbc_setTimeout)                                                                             \
    X(smbc_setOptionUseKerberos)                                                                   \
    X(smbc_setOptionFallbackAfterKerberos)                                                         \
    X(smbc_setOptionNoAutoAnonymousLogin)                                                          \
    X(smbc_setOptionUseCCache)                                                                     \
    X(smbc_setOptionProtocols)                                                                     \
    X(smbc_setFunctionAuthDataWithContext)                                                         \
    X(smbc_getFunctionOpen)                                                                        \
    X(smbc_getFunctionClose)                                                                       \
    X(smbc_getFunctionFstat)                                                                       \
    X(smbc_getFunctionWrite)                                                                       \
    X(smbc_getFunctionMkdir)                                                                       \
    X(smbc_getFunctionUnlink)                                                                      \
    X(smbc_getFunctionRename)                                                                      \
    X(smbc_getFunctionPurgeCachedServers)

#define LOG_SMB_FN_FIELD(f) __typeof__(f) *f;
static struct {
    void *handle; /* kept for the life of the process: Samba does not unload cleanly */
    LOG_SMB_FUNCS(LOG_SMB_FN_FIELD)
} smb_lib;

/* log_smb_auth_cb - anonymous login: empty user and password. */
static void log_smb_auth_cb(SMBCCTX *c, const char *srv, const char *shr, char *wg, int wglen,
                            char *un, int unlen, char *pw, int pwlen)
{
    (void)c, (void)srv, (void)shr, (void)wg, (void)wglen;
    if (unlen > 0)
        un[0] = 0;
    if (pwlen > 0)
        pw[0] = 0;
}

/* log_smb_lib_load - dlopen libsmbclient once and resolve every function used.
 * 0 ok; -1 with the reason in log_smb_st.why (the library stays unloaded then). */
int log_smb_lib_load(void)
{
    void *h;
    const char *missing = NULL;

    if (smb_lib.handle != NULL)
        return 0;
    if ((h = dlopen(LOG_SMB_LIBNAME, RTLD_NOW | RTLD_LOCAL)) == NULL) {
        snprintf(log_smb_st.why, sizeof(log_smb_st.why), "cannot load %s: %.400s", LOG_SMB_LIBNAME,
                 dlerror());
        return -1;
    }
#define LOG_SMB_FN_LOAD(f)                                                                         \
    if ((smb_lib.f = (__typeof__(f) *)dlsym(h, #f)) == NULL && missing == NULL)                    \
        missing = #f;
    LOG_SMB_FUNCS(LOG_SMB_FN_LOAD)
#undef LOG_SMB_FN_LOAD
    if (missing != NULL) {
        snprintf(log_smb_st.why, sizeof(log_smb_st.why), "cannot load %s: symbol %s not found",
                 LOG_SMB_LIBNAME, missing);
        memset(&smb_lib, 0, sizeof(smb_lib));
        dlclose(h);
        return -1;
    }
    smb_lib.handle = h;
    return 0;
}

/* log_smb_debug_cb - libsmbclient's own chatter: dropped (our warnings say what matters). */
static void log_smb_debug_cb(void *priv, int level, const char *msg)
{
    (void)priv, (void)level, (void)msg;
}

/* log_smb_disconnect - close the file and drop the server connections. The context itself
 * is kept for the life of the process and reused: smbc_free_context (and every new context)
 * leaks inside libsmbclient 4.17 (its debug log file name), which sanitizer builds report. */
void log_smb_disconnect(void)
{
    if (log_smb_st.ctx == NULL)
        return;
    if (log_smb_st.fh != NULL)
        smb_lib.smbc_getFunctionClose(log_smb_st.ctx)(log_smb_st.ctx, log_smb_st.fh);
    log_smb_st.fh = NULL;
    smb_lib.smbc_getFunctionPurgeCachedServers(log_smb_st.ctx)(log_smb_st.ctx);
}

/* log_smb_fail - remember why (for the warning) and drop the connection. */
static int log_smb_fail(const char *what, const char *url)
{
    snprintf(log_smb_st.why, sizeof(log_smb_st.why), "%.40s %.2100s: %.200s", what, url,
             strerror(errno));
    log_smb_disconnect();
    return -1;
}

/* log_smb_open_file - open maillog for appending; learn its size. */
static int log_smb_open_file(void)
{
    struct stat st;

    /* O_RDWR, not O_WRONLY: with O_APPEND libsmbclient queries the size, which a
     * write-only handle may not do (ENXIO) */
    log_smb_st.fh = smb_lib.smbc_getFunctionOpen(log_smb_st.ctx)(
        log_smb_st.ctx, log_smb_st.tgt.file_url, O_CREAT | O_RDWR | O_APPEND, 0644);
    if (log_smb_st.fh == NULL)
        return log_smb_fail("cannot open", log_smb_st.tgt.file_url);
    if (smb_lib.smbc_getFunctionFstat(log_smb_st.ctx)(log_smb_st.ctx, log_smb_st.fh, &st) != 0)
        return log_smb_fail("cannot stat", log_smb_st.tgt.file_url);
    log_smb_st.fsize = st.st_size;
    return 0;
}

/* log_smb_context - the thread's one libsmbclient context, created at first use. */
static SMBCCTX *log_smb_context(void)
{
    SMBCCTX *c;

    if (log_smb_st.ctx != NULL) {
        if (log_smb_st.reconf) { /* a later start (tests) may use another config and timeout */
            smb_lib.smbc_setConfiguration(log_smb_st.ctx, log_smb_st.conf_path);
            smb_lib.smbc_setTimeout(log_smb_st.ctx, (int)log_smb_st.timeout_ms);
            log_smb_st.reconf = 0;
        }
        return log_smb_st.ctx;
    }
    errno = 0;
    {
        /* the library loads its configuration once, in the first smbc_new_context: only
         * from $HOME/.smb/smb.conf when that exists (ours), else from the system's file */
        const char *home = getenv("HOME");
        char *saved = home ? strdup(home) : NULL;

        setenv("HOME", log_smb_st.home_path, 1);
        c = smb_lib.smbc_new_context();
        if (saved) {
            setenv("HOME", saved, 1);
            free(saved);
        } else {
            unsetenv("HOME");
        }
    }
    if (c == NULL) {
        snprintf(log_smb_st.why, sizeof(log_smb_st.why), "cannot create an SMB client context");
        return NULL;
    }
    smb_lib.smbc_setDebug(c, 0);
    smb_lib.smbc_setLogCallback(c, NULL, log_smb_debug_cb);
    /* our own client settings, loaded over whatever the library read at first use */
    smb_lib.smbc_setConfiguration(c, log_smb_st.conf_path);
    smb_lib.smbc_setTimeout(c, (int)log_smb_st.timeout_ms);
    smb_lib.smbc_setOptionUseKerberos(c, 0);
    smb_lib.smbc_setOptionFallbackAfterKerberos(c, 1);
    smb_lib.smbc_setOptionNoAutoAnonymousLogin(c, 0);
    smb_lib.smbc_setOptionUseCCache(c, 0);
    smb_lib.smbc_setOptionProtocols(c, "SMB2_02", "SMB3");
    smb_lib.smbc_setFunctionAuthDataWithContext(c, log_smb_auth_cb);
    if (smb_lib.smbc_init_context(c) == NULL) {
        snprintf(log_smb_st.why, sizeof(log_smb_st.why), "cannot initialise the SMB client: %s",
                 strerror(errno));
        smb_lib.smbc_free_context(c, 1);
        return NULL;
    }
    log_smb_st.ctx = c;
    return c;
}

/* log_smb_connect - (re)connect: directories, file. 0 up; -1 with log_smb_st.why. */
int log_smb_connect(void)
{
    SMBCCTX *c = log_smb_context();

    if (c == NULL)
        return -1;
    for (int i = 0; i < log_smb_st.tgt.ndirs; i++) {
        if (smb_lib.smbc_getFunctionMkdir(c)(c, log_smb_st.tgt.dir_urls[i], 0755) != 0 &&
            errno != EEXIST)
            return log_smb_fail("cannot create directory", log_smb_st.tgt.dir_urls[i]);
    }
    if (log_smb_open_file() != 0)
        return -1;
    if (log_smb_st.pending) {
        /* the last batch failed: whatever of it reached the file is not written again */
        if (log_smb_st.fsize > log_smb_st.pending_base &&
            log_smb_st.fsize - log_smb_st.pending_base <= (long long)log_smb_st.pending_len)
            log_smb_stream_drop((size_t)(log_smb_st.fsize - log_smb_st.pending_base));
        log_smb_st.pending = 0;
    }
    return 0;
}

/* log_smb_rotated_url - FILE_URL.N into BUF. */
static void log_smb_rotated_url(char *buf, size_t len, int n)
{
    if (n == 0)
        snprintf(buf, len, "%s", log_smb_st.tgt.file_url);
    else
        snprintf(buf, len, "%s.%d", log_smb_st.tgt.file_url, n);
}

/* log_smb_rotate - maillog.N-1 -> maillog.N ... maillog -> maillog.1, then a new maillog.
 * Only between batches, so every record is in exactly one file. */
static int log_smb_rotate(void)
{
    char from[2100], to[2100];
    SMBCCTX *c = log_smb_st.ctx;

    smb_lib.smbc_getFunctionClose(c)(c, log_smb_st.fh);
    log_smb_st.fh = NULL;
    log_smb_rotated_url(to, sizeof(to), log_smb_st.rot_count);
    if (smb_lib.smbc_getFunctionUnlink(c)(c, to) != 0 && errno != ENOENT)
        return log_smb_fail("cannot remove", to);
    for (int i = log_smb_st.rot_count - 1; i >= 0; i--) {
        log_smb_rotated_url(from, sizeof(from), i);
        log_smb_rotated_url(to, sizeof(to), i + 1);
        if (smb_lib.smbc_getFunctionRename(c)(c, from, c, to) != 0 && errno != ENOENT)
            return log_smb_fail("cannot rename", from);
    }
    return log_smb_open_file();
}

/* log_smb_write_all - append LEN bytes to the open file. */
static int log_smb_write_all(const char *buf, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t w = smb_lib.smbc_getFunctionWrite(log_smb_st.ctx)(log_smb_st.ctx, log_smb_st.fh,
                                                                  buf + done, len - done);
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* log_smb_fit - the longest prefix of the batch's N bytes that ends a record and fits ROOM. */
static size_t log_smb_fit(size_t n, long long room)
{
    if (room <= 0)
        return 0;
    if ((long long)n <= room && n > 0 && log_smb_st.batch[n - 1] == '\n')
        return n;
    size_t lim = (long long)n < room ? n : (size_t)room;
    char *nl = memrchr(log_smb_st.batch, '\n', lim);
    return nl ? (size_t)(nl - log_smb_st.batch) + 1 : 0;
}

/* log_smb_write_batch - one batch from the head of the stream to the share. */
int log_smb_write_batch(void)
{
    int from_spill = log_smb_st.spill_off < log_smb_st.spill_size;
    size_t n = from_spill ? log_smb_spill_peek(log_smb_st.batch, LOG_SMB_BATCH)
                          : log_smb_queue_peek(log_smb_st.batch, LOG_SMB_BATCH);

    if (n == 0)
        return 0;
    if (log_smb_st.rot_size > 0) {
        /* whole records only, and never past the rotation size (one record alone may) */
        size_t fit = log_smb_fit(n, log_smb_st.rot_size - log_smb_st.fsize);
        if (fit == 0 && log_smb_st.fsize > 0) {
            if (log_smb_rotate() != 0)
                return -1;
            fit = log_smb_fit(n, log_smb_st.rot_size);
        }
        if (fit == 0) {
            char *nl = memchr(log_smb_st.batch, '\n', n);
            fit = nl ? (size_t)(nl - log_smb_st.batch) + 1 : n;
        }
        n = fit;
    }
    if (log_smb_write_all(log_smb_st.batch, n) != 0) {
        log_smb_st.pending = 1;
        log_smb_st.pending_base = log_smb_st.fsize;
        log_smb_st.pending_len = n;
        return log_smb_fail("cannot write", log_smb_st.tgt.file_url);
    }
    log_smb_st.fsize += (long long)n;
    if (from_spill)
        log_smb_spill_consume(n, log_smb_count_nl(log_smb_st.batch, n));
    else
        log_smb_queue_pop(n, log_smb_count_nl(log_smb_st.batch, n), 1);
    return 0;
}
