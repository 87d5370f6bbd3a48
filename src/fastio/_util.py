"""Helpers the pure modules (and the backend-neutral ones) share: CPython's fd
and timeout conversions, the error pipeline and fork detection, mirroring
``fastio/_c/_common.pxd``."""

import errno
import math
import operator
import os
import time

_INT_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1

# Bumped in every forked child; an object records the value it was made with.
_fork_generation = 0


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


def fork_generation() -> int:
    return _fork_generation


def check_fork(generation: int, what: str) -> None:
    """RuntimeError if the object was made before a fork and is used in the child."""
    if generation != _fork_generation:
        raise RuntimeError(
            f"this {what} object was created in a parent process and cannot be "
            f"used after fork(); create a new one in the child"
        )


def raise_errno(err: int) -> None:
    """Raise OSError(err, strerror(err)); CPython picks the PEP 3151 subclass."""
    raise OSError(err, os.strerror(err))


def as_fd(obj) -> int:
    """``PyObject_AsFileDescriptor``: an int, or an object with ``fileno()``."""
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            method = obj.fileno
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        fd = method()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    if fd > _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")
    return int(fd)


def as_c_int(value) -> int:
    """An int argument as a C int, with the errors CPython's converter raises."""
    value = operator.index(value)
    if not -_INT_MAX - 1 <= value <= _INT_MAX:
        raise OverflowError("Python int too large to convert to C int")
    return value


def timeout_to_ns(timeout, unit_ns: int) -> int:
    """A timeout in units of ``unit_ns`` nanoseconds to nanoseconds, rounded up;
    None or any negative value means forever (-1)."""
    if timeout is None:
        return -1
    if isinstance(timeout, float):
        if math.isnan(timeout):
            raise ValueError("Invalid value NaN (not a number)")
        if timeout < 0:
            return -1
        ns = math.ceil(timeout * unit_ns)
    else:
        try:
            value = operator.index(timeout)
        except TypeError:
            raise TypeError("timeout must be an integer or None") from None
        if value < 0:
            return -1
        ns = value * unit_ns
    if ns > _INT64_MAX:
        raise OverflowError("timeout is too large")
    return ns


def deadline_for(timeout_ns: int) -> int:
    """The monotonic deadline of a wait of timeout_ns (-1: none)."""
    return -1 if timeout_ns < 0 else time.monotonic_ns() + timeout_ns


def remaining(deadline: int) -> int:
    """Nanoseconds left until deadline after an EINTR (-1: no deadline).
    Python runs the signal handlers as soon as the interrupted call returns,
    so a handler's exception has already propagated if there was one."""
    if deadline < 0:
        return -1
    return max(deadline - time.monotonic_ns(), 0)


EINTR = errno.EINTR
