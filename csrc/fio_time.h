/* SPDX-License-Identifier: MIT */
/* Monotonic time and timeout conversions shared by every wait. */
#ifndef FIO_TIME_H
#define FIO_TIME_H

#include <stdint.h>
#include <time.h>

#include "fio_common.h"

#define FIO_NS_PER_SEC 1000000000LL
#define FIO_NS_PER_MS 1000000LL

/* CLOCK_MONOTONIC in nanoseconds; the clock cannot fail on Linux. */
FIO_INLINE int64_t fio_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * FIO_NS_PER_SEC + ts.tv_nsec;
}

/* A non-negative nanosecond count as a timespec. */
FIO_INLINE struct timespec fio_ns_to_timespec(int64_t ns)
{
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / FIO_NS_PER_SEC);
    ts.tv_nsec = (long)(ns % FIO_NS_PER_SEC);
    return ts;
}

/* Nanoseconds to whole milliseconds, rounded up so a wait lasts at least as
 * long as asked; negative means forever (-1). Saturates at INT32_MAX. */
FIO_INLINE int fio_ns_to_ms_ceil(int64_t ns)
{
    if (ns < 0)
        return -1;
    int64_t ms = ns / FIO_NS_PER_MS + (ns % FIO_NS_PER_MS != 0);
    return ms > INT32_MAX ? INT32_MAX : (int)ms;
}

#endif /* FIO_TIME_H */
