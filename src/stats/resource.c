/*
 * resource.c - the daemon's own resource usage for the dashboard, /metrics and
 * the mon push: CPU seconds (getrusage) and resident memory (/proc/self/statm).
 * Not here: system-wide figures.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "mta/clock.h"
#include "stats_int.h"

/* stats_resource_read - CPU seconds (user + system) and RSS bytes of this process. */
void stats_resource_read(double *cpu_seconds, long long *rss_bytes)
{
    struct rusage ru;
    *cpu_seconds = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        *cpu_seconds = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                       (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    *rss_bytes = 0;
    /* statm: "size resident shared text lib data dt" in pages; a read() of a
     * small proc file does not block the loop. */
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        char buf[128];
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
            long long size = 0, resident = 0;
            buf[n] = '\0';
            if (sscanf(buf, "%lld %lld", &size, &resident) == 2 && resident >= 0)
                *rss_bytes = resident * (long long)sysconf(_SC_PAGESIZE);
        }
    }
}

/* stats_mono_now - monotonic seconds (uptime and CPU-percent intervals). */
double stats_mono_now(void)
{
    return (double)clock_mono_us() / 1e6;
}
