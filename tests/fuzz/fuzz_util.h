/*
 * fuzz_util.h - helpers shared by the libFuzzer targets in tests/fuzz/: a
 * NUL-terminated copy of the input, a byte reader for the option bytes a
 * target takes from the front of its input, and a memfd for parsers that
 * read a file. Not a test framework: every target is one
 * LLVMFuzzerTestOneInput that must never crash, leak or trip a sanitizer.
 */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* FUZZ_CHECK - an invariant of the code under test: a violation is a finding (abort). */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* fuzz_strndup - DATA[0..SIZE) as a malloc'd NUL-terminated string (embedded NULs kept). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* The option bytes at the front of an input; 0 once exhausted. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

/* fuzz_byte - take one byte from the front of IN. */
static inline unsigned fuzz_byte(struct fuzz_in *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* fuzz_memfd - a memory file holding DATA[0..SIZE), positioned at 0; -1 on error. */
static inline int fuzz_memfd(int *fd, const uint8_t *data, size_t size)
{
    if (*fd < 0 && (*fd = memfd_create("fuzz", MFD_CLOEXEC)) < 0)
        return -1;
    if (ftruncate(*fd, 0) < 0 || (size && pwrite(*fd, data, size, 0) != (ssize_t)size) ||
        lseek(*fd, 0, SEEK_SET) < 0)
        return -1;
    return 0;
}

#endif
