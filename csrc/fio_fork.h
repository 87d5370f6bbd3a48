/* SPDX-License-Identifier: MIT */
/*
 * Fork detection without a getpid() syscall on every call: a counter that a
 * pthread_atfork child handler bumps. An object records the counter when it is
 * made; a different value later means it is being used in a forked child.
 * Each extension module that includes this header has its own counter and
 * registers its own handler once, from module init.
 */
#ifndef FIO_FORK_H
#define FIO_FORK_H

#include <pthread.h>

#include "fio_common.h"

static unsigned long fio_fork_generation_value;

static void fio_fork_child_handler(void)
{
    fio_fork_generation_value++;
}

/* Register the child handler; returns 0 or a positive errno. */
FIO_INLINE int fio_fork_init(void)
{
    return pthread_atfork(NULL, NULL, fio_fork_child_handler);
}

/* The current generation: 0 in the process that loaded the module, +1 per fork. */
FIO_INLINE unsigned long fio_fork_generation(void)
{
    return fio_fork_generation_value;
}

#endif /* FIO_FORK_H */
