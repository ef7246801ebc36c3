/* What both native loop modules (_native_stream.c, _native_rr.c) share: the counter layout, the clock
 * the Python loops read, and time.sleep's absolute-deadline sleep. One copy, included by both. */
#ifndef VDEVPERF_NATIVE_H
#define VDEVPERF_NATIVE_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

/* vdevperf/counters.py SLOTS order (the tests check each module's SLOTS against it). */
enum {
    BYTES_SENT,
    BYTES_RECEIVED,
    MESSAGES_SENT,
    MESSAGES_RECEIVED,
    TRANSACTIONS,
    CONNECTIONS,
    ERRORS,
    ZEROCOPY_SENDS,
    ZEROCOPY_COPIED,
    JITTER_SUM_NS,
    N_SLOTS
};

/* CLOCK_MONOTONIC in ns: time.monotonic_ns's and time.perf_counter_ns's clock on Linux. */
static inline int64_t clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* time.sleep until the monotonic `due` (ns): clock_nanosleep to an absolute deadline, as CPython does;
 * resumed after EINTR when no signal handler raised. 0, or -1 with an exception set. */
static inline int sleep_until(int64_t due) {
    struct timespec ts = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
    for (;;) {
        int err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        if (!err) {
            return 0;
        }
        if (err == EINTR) {
            if (PyErr_CheckSignals() < 0) {
                return -1;
            }
            continue;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
}

#endif
