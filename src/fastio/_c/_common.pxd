# cython: language_level=3
# Helpers every compiled module shares: the error pipeline, fd and timeout
# conversion, the fork check. All inline, so no module depends on another's C API.

from cpython.exc cimport PyErr_CheckSignals
from cpython.number cimport PyNumber_Index
from libc.math cimport ceil
from libc.stdint cimport int64_t, INT64_MAX, uint32_t, UINT32_MAX, uint64_t
from libc.string cimport strerror

from fastio._c._sys cimport fio_fork_generation, fio_monotonic_ns


cdef extern from "Python.h":
    int PyObject_AsFileDescriptor(object obj) except -1


cdef inline int raise_errno(int err) except -1:
    """Raise OSError(err, strerror(err)); CPython picks the PEP 3151 subclass."""
    raise OSError(err, strerror(err).decode("utf-8", "replace"))


cdef inline int as_fd(object fileobj) except -1:
    """An int fd or an object with fileno(); CPython's own checks and messages."""
    return PyObject_AsFileDescriptor(fileobj)


cdef inline int as_c_int(object value) except? -1:
    """An integer argument as a C int, with the errors CPython's "i" converter
    raises ('str' object cannot be interpreted as an integer; OverflowError)."""
    cdef object i = PyNumber_Index(value)
    if not -2147483648 <= i <= 2147483647:
        raise OverflowError("Python int too large to convert to C int")
    return i


cdef inline int check_fork(unsigned long generation, str what) except -1:
    """RuntimeError if the object was made before a fork and is used in the child."""
    if generation != fio_fork_generation():
        raise RuntimeError(
            f"this {what} object was created in a parent process and cannot be "
            f"used after fork(); create a new one in the child")
    return 0


cdef inline int64_t timeout_to_ns(object timeout, int64_t unit_ns) except? -2:
    """A timeout in units of `unit_ns` nanoseconds (1e9: seconds, 1e6: ms) to
    nanoseconds, rounded up; None or any negative value means forever (-1).
    Floats and ints are accepted, as CPython's select module does."""
    cdef double d
    cdef long long i
    if timeout is None:
        return -1
    if isinstance(timeout, float):
        d = timeout
        if d != d:
            raise ValueError("Invalid value NaN (not a number)")
        if d < 0:
            return -1
        d = ceil(d * <double>unit_ns)
        if d >= <double>INT64_MAX:
            raise OverflowError("timeout is too large")
        return <int64_t>d
    try:
        i = timeout
    except TypeError:
        raise TypeError("timeout must be an integer or None") from None
    if i < 0:
        return -1
    if i > INT64_MAX // unit_ns:
        raise OverflowError("timeout is too large")
    return i * unit_ns


cdef inline int64_t remaining_after_eintr(int64_t deadline) except? -2:
    """After a wait returned EINTR: run the signal handlers (their exception
    propagates, so Ctrl-C works), then return the nanoseconds left until
    `deadline` (-1 for a wait with no deadline; 0 when it has passed)."""
    cdef int64_t left
    PyErr_CheckSignals()
    if deadline < 0:
        return -1
    left = deadline - fio_monotonic_ns()
    return left if left > 0 else 0


cdef inline int64_t deadline_for(int64_t timeout_ns) noexcept nogil:
    """The monotonic deadline of a wait of timeout_ns (-1: none)."""
    return -1 if timeout_ns < 0 else fio_monotonic_ns() + timeout_ns


cdef inline uint32_t len32(Py_ssize_t n) except? 0xFFFFFFFF:
    if n < 0:
        raise ValueError(f"a length must be >= 0, got {n}")
    if <size_t>n > UINT32_MAX:   # (a literal 0xFFFFFFFF would make this a Python comparison)
        raise ValueError("a single request moves at most 4 GiB - 1 bytes")
    return <uint32_t>n


cdef inline uint32_t as_u32(object value) except? 0xFFFFFFFF:
    """An int argument for a 32-bit unsigned field: a float or a str is a
    TypeError (as CPython's converters say), a value outside 0..2**32-1 an
    OverflowError."""
    cdef object v = PyNumber_Index(value)
    if not 0 <= v <= 0xFFFFFFFF:
        raise OverflowError(f"{v} is out of range for a 32-bit unsigned field")
    return <uint32_t>v


cdef inline long long as_i64(object value) except? -1:
    """An int argument for a signed 64-bit field (OverflowError outside it)."""
    return PyNumber_Index(value)


cdef inline uint64_t as_u64(object value) except? 0xFFFFFFFFFFFFFFFF:
    """An int argument for an unsigned 64-bit field (OverflowError outside it)."""
    return PyNumber_Index(value)


cdef inline object fileobj_to_fd(object fileobj):
    """``selectors._fileobj_to_fd``: the fd (a Python int of any size, as the
    stdlib keeps it), or ValueError with the stdlib's words."""
    cdef object fd
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd
