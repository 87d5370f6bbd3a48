/* SPDX-License-Identifier: MIT */
/* Shared macros for fastio's C core. */
#ifndef FIO_COMMON_H
#define FIO_COMMON_H

/* Every helper in csrc/ is header-only; one macro so a debug build can change it. */
#define FIO_INLINE static inline

#define fio_likely(x) __builtin_expect(!!(x), 1)
#define fio_unlikely(x) __builtin_expect(!!(x), 0)

#define FIO_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)

#endif /* FIO_COMMON_H */
