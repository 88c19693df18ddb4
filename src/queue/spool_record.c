/*
 * spool_record.c - the commit record that makes one flush enough: a queue file
 * of version 2 is the envelope, the message bytes, then a fixed-size line
 *   MTA-COMMIT <ID> <envelope length> <size> <envelope CRC> <body CRC> <line CRC>
 * (CRC-32C, hex). A file is committed only when this record is present at
 * envelope length + size, names the file's own queue ID, and its checksums
 * match; anything else is a write that was never acknowledged (the 250 follows
 * the flush of the whole write). So a message can be written in place into a
 * file whose name is already durable (spool_pool.c) and made durable with one
 * fdatasync, with no rename and no directory flush after it.
 * Start-up checks the envelope and the record (spool_record_check); the body's
 * checksum is checked before delivery (spool_record_verify_body), so a queue of
 * a million messages is not read twice at start.
 * Not here: writing the file (spool_intake.c), what recovery does with a verdict
 * (spool.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool_int.h"

/* --- CRC-32C (Castagnoli) --- */

static uint32_t spool_crc_table[8][256];
static pthread_once_t spool_crc_once = PTHREAD_ONCE_INIT;
static int spool_crc_hw;

/* spool_crc_init - the slicing-by-8 tables, and whether the CPU has the crc32 instruction. */
static void spool_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        spool_crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            spool_crc_table[t][i] = (spool_crc_table[t - 1][i] >> 8) ^
                                    spool_crc_table[0][spool_crc_table[t - 1][i] & 0xFF];
#if defined(__x86_64__)
    __builtin_cpu_init();
    spool_crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
/* spool_crc_sse - the same CRC with the SSE4.2 instruction (about 20 times faster). */
__attribute__((target("sse4.2"))) static uint32_t spool_crc_sse(uint32_t c, const unsigned char *p,
                                                                size_t n)
{
    unsigned long long c64 = c;
    while (n >= 8) {
        unsigned long long v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t spool_crc32c(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t c = ~crc;
    pthread_once(&spool_crc_once, spool_crc_init);
#if defined(__x86_64__)
    if (spool_crc_hw)
        return ~spool_crc_sse(c, p, n);
#endif
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = spool_crc_table[7][lo & 0xFF] ^ spool_crc_table[6][(lo >> 8) & 0xFF] ^
            spool_crc_table[5][(lo >> 16) & 0xFF] ^ spool_crc_table[4][lo >> 24] ^
            spool_crc_table[3][p[4]] ^ spool_crc_table[2][p[5]] ^ spool_crc_table[1][p[6]] ^
            spool_crc_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--)
        c = (c >> 8) ^ spool_crc_table[0][(c ^ *p++) & 0xFF];
    return ~c;
}

/* --- the record --- */

void spool_record_encode(char out[SPOOL_RECORD_LEN + 1], const char *id, size_t hdrlen,
                         long long size, uint32_t envcrc, uint32_t bodycrc)
{
    int n = snprintf(out, SPOOL_RECORD_LEN + 1, "MTA-COMMIT %s %08zX %016llX %08X %08X ", id,
                     hdrlen, (unsigned long long)size, envcrc, bodycrc);
    snprintf(out + n, SPOOL_RECORD_LEN + 1 - (size_t)n, "%08X\n", spool_crc32c(0, out, (size_t)n));
}

/* spool_record_field - parse LEN upper-case hex digits at P followed by SEP; -1 if not. */
static int spool_record_field(const char *p, int len, char sep, unsigned long long *v)
{
    *v = 0;
    for (int i = 0; i < len; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        *v = *v << 4 | (unsigned)d;
    }
    return p[len] == sep ? 0 : -1;
}

/* spool_record_parse - the fields of record REC read from a file named ID; NULL or why not. */
static const char *spool_record_parse(const char *rec, const char *id, size_t hdrlen,
                                      long long size, uint32_t *envcrc, uint32_t *bodycrc)
{
    static const char magic[] = "MTA-COMMIT ";
    const size_t crcat = SPOOL_RECORD_LEN - 9; /* the line's own CRC and "\n" */
    unsigned long long v[5];
    if (memcmp(rec, magic, sizeof magic - 1) != 0)
        return "no commit record (write not completed)";
    const char *p = rec + sizeof magic - 1;
    if (memcmp(p, id, SPOOL_ID_LEN) != 0 || p[SPOOL_ID_LEN] != ' ')
        return "the commit record names another queue ID (write not completed)";
    p += SPOOL_ID_LEN + 1;
    if (spool_record_field(p, 8, ' ', &v[0]) < 0 || spool_record_field(p + 9, 16, ' ', &v[1]) < 0 ||
        spool_record_field(p + 26, 8, ' ', &v[2]) < 0 ||
        spool_record_field(p + 35, 8, ' ', &v[3]) < 0 ||
        spool_record_field(rec + crcat, 8, '\n', &v[4]) < 0)
        return "damaged commit record";
    if (spool_crc32c(0, rec, crcat) != (uint32_t)v[4])
        return "commit record checksum mismatch";
    if (v[0] != hdrlen || v[1] != (unsigned long long)size)
        return "commit record does not match the envelope";
    *envcrc = (uint32_t)v[2];
    *bodycrc = (uint32_t)v[3];
    return NULL;
}

/* spool_pread_all - read exactly LEN bytes at OFF; 0, or -1 (short: EIO). */
static int spool_pread_all(int fd, void *buf, size_t len, off_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

int spool_record_check(int fd, const char *name, long long fsize, struct spool_envelope **env,
                       size_t *hdrlen, uint32_t *bodycrc, const char **why)
{
    char head[sizeof SPOOL_VERSION_LINE];
    *env = NULL;
    *why = NULL;
    if (fsize == 0)
        return SPOOL_REC_FREE;
    ssize_t hn = pread(fd, head, sizeof head, 0);
    if (hn < 0) {
        *why = "cannot read";
        return SPOOL_REC_BAD;
    }
    int v2 = hn == (ssize_t)sizeof head &&
             memcmp(head, SPOOL_VERSION_LINE "\n", sizeof SPOOL_VERSION_LINE) == 0;
    if (!v2 && (hn < 10 || memcmp(head, "MTA-QUEUE ", 10) != 0)) {
        /* not a queue file at all: a slot that was made but never written (spool_pool.c) */
        if (head[0] == '\0') {
            return SPOOL_REC_FREE;
        }
        *why = "unreadable envelope (bad version, no end marker or truncated)";
        return SPOOL_REC_BAD;
    }
    if (lseek(fd, 0, SEEK_SET) < 0 || spool_env_read_fd(fd, env, hdrlen) != 0) {
        *why = v2 ? "unreadable envelope (write not completed)"
                  : "unreadable envelope (bad version, no end marker or truncated)";
        return v2 ? SPOOL_REC_TORN : SPOOL_REC_BAD;
    }
    if (strcmp((*env)->id, name) != 0) {
        /* a recycled slot still holding the message it had under its former name: free */
        if (v2)
            return SPOOL_REC_FREE;
        *why = "envelope names another queue ID";
        return SPOOL_REC_BAD;
    }
    long long end = (long long)*hdrlen + (*env)->size;
    if (!v2) {
        if (end != fsize) {
            *why = "message size does not match the envelope (truncated)";
            return SPOOL_REC_BAD;
        }
        *bodycrc = 0;
        return SPOOL_REC_V1;
    }
    /* anything after the record is what the slot held before: ignored */
    char rec[SPOOL_RECORD_LEN];
    uint32_t envcrc = 0;
    if (end + SPOOL_RECORD_LEN > fsize) {
        *why = "no commit record, file too short (write not completed)";
        return SPOOL_REC_TORN;
    }
    if (spool_pread_all(fd, rec, sizeof rec, (off_t)end) < 0) {
        *why = "cannot read the commit record";
        return SPOOL_REC_TORN;
    }
    if ((*why = spool_record_parse(rec, name, *hdrlen, (*env)->size, &envcrc, bodycrc)))
        return SPOOL_REC_TORN;
    char *text = malloc(*hdrlen);
    if (!text || spool_pread_all(fd, text, *hdrlen, 0) < 0 ||
        spool_crc32c(0, text, *hdrlen) != envcrc) {
        *why = text ? "envelope checksum mismatch (write not completed)" : "out of memory";
        free(text);
        return SPOOL_REC_TORN;
    }
    free(text);
    return SPOOL_REC_OK;
}

int spool_record_verify_body(int fd, size_t hdrlen, long long size, uint32_t bodycrc)
{
    char buf[65536];
    uint32_t c = 0;
    long long off = 0;
    while (off < size) {
        size_t want = size - off < (long long)sizeof buf ? (size_t)(size - off) : sizeof buf;
        if (spool_pread_all(fd, buf, want, (off_t)hdrlen + off) < 0)
            return errno == EIO ? EBADMSG : errno;
        c = spool_crc32c(c, buf, want);
        off += (long long)want;
    }
    return c == bodycrc ? 0 : EBADMSG;
}
