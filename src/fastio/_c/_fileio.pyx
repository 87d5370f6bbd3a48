# cython: language_level=3
"""``pread_nowait()``: the read from the page cache that ``fastio.asyncio``'s
file engine tries before it puts a read on the ring.

``os.preadv`` can make the same ``preadv2(RWF_NOWAIT)`` call, but only into a
buffer the caller made: a ``bytearray`` that is zeroed first and copied into
``bytes`` after, two passes over fresh memory that cost more than the read
itself for large sizes (about 2 ms per MiB against 0.15 ms for ``os.pread``
on this project's test machine). Here the kernel copies straight into the
``bytes`` object returned, as ``os.pread`` does."""

from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF

from fastio._c._aio cimport FIO_RWF_NOWAIT

from libc.errno cimport EAGAIN
from libc.string cimport strerror


cdef extern from "fio_syscall.h" nogil:
    long fio_sys_preadv2(int fd, void *buf, size_t n, long long offset, unsigned int flags)


cdef extern from "Python.h":
    PyObject *fio_bytes_new "PyBytes_FromStringAndSize"(const char *v, Py_ssize_t n) except NULL
    int fio_bytes_resize "_PyBytes_Resize"(PyObject **b, Py_ssize_t n) except -1
    char *fio_bytes_data "PyBytes_AS_STRING"(PyObject *b) nogil


def pread_nowait(int fd, Py_ssize_t n, long long offset):
    """pread_nowait(fd, n, offset) -> bytes | None

    Up to ``n`` bytes of ``fd`` at ``offset`` as far as the page cache holds
    them, by ``preadv2(fd, ..., offset, RWF_NOWAIT)``: ``bytes`` (shorter than
    ``n`` at the end of the file or where the cached part ends; ``b""`` at or
    past the end), or ``None`` when the first page is not cached (``EAGAIN``),
    without waiting for a device. ``OSError`` for any other error
    (``EOPNOTSUPP`` where the file system cannot do ``RWF_NOWAIT``, ``ENOSYS``
    on an architecture this build has no ``preadv2`` number for); ``ValueError``
    for a negative ``n`` or ``offset``."""
    cdef PyObject *raw
    cdef long got
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    raw = fio_bytes_new(NULL, n)
    with nogil:
        got = fio_sys_preadv2(fd, fio_bytes_data(raw), <size_t>n, offset, FIO_RWF_NOWAIT)
    if got < 0:
        Py_DECREF(<object>raw)
        if got == -EAGAIN:
            return None
        raise OSError(-got, strerror(-got).decode())
    if got < n:
        fio_bytes_resize(&raw, got)    # (on failure it freed the object and set NULL)
    result = <object>raw    # (a new reference: the one from fio_bytes_new is dropped next)
    Py_DECREF(result)
    return result
