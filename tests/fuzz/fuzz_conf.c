/*
 * fuzz_conf.c - the configuration file parser and value checkers (conf.c):
 * the input up to the first NUL byte is the file (read from a memfd through
 * /proc/self/fd, as conf_load reads a path), the part after it holds -o
 * overrides, one per line. A loaded configuration is printed back, and every
 * error text must exist and be bounded.
 */
#include "fuzz_util.h"
#include "mta/conf.h"

#define FUZZ_MAX_OVERRIDES 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static FILE *devnull;
    const uint8_t *nul = memchr(data, '\0', size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    char path[64], *ov[FUZZ_MAX_OVERRIDES], *rest = NULL, *errors = NULL;
    int nov = 0;
    struct conf *c;

    if (!devnull && !(devnull = fopen("/dev/null", "w")))
        abort();
    if (fuzz_memfd(&fd, data, flen) < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    if (nul) {
        char *p;
        rest = fuzz_strndup(nul + 1, size - flen - 1);
        for (p = rest; p && nov < FUZZ_MAX_OVERRIDES;) {
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            ov[nov++] = p;
            p = nl ? nl + 1 : NULL;
        }
    }
    c = conf_load(path, ov, nov, &errors);
    if (c) {
        FUZZ_CHECK(errors == NULL && c->myhostname);
        conf_print_values(c, devnull, 1);
        conf_free(c);
    } else {
        FUZZ_CHECK(errors != NULL && strncmp(errors, "Error: ", 7) == 0);
        free(errors);
    }
    /* the value parsers on the first override, as a setting's value */
    if (nov > 0) {
        long long sz;
        long t;
        (void)conf_parse_size(ov[0], &sz);
        (void)conf_parse_time(ov[0], &t);
    }
    free(rest);
    return 0;
}
