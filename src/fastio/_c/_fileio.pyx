# cython: language_level=3
"""``pread_nowait()``: the read from the page cache that ``fastio.asyncio``'s
file engine tries before it puts a read on the ring; ``FileCore``: that read
made for ``await f.pread()`` without a Python-level step.

``os.preadv`` can make the same ``preadv2(RWF_NOWAIT)`` call, but only into a
buffer the caller made: a ``bytearray`` that is zeroed first and copied into
``bytes`` after, two passes over fresh memory that cost more than the read
itself for large sizes (about 2 ms per MiB against 0.15 ms for ``os.pread``
on this project's test machine). Here the kernel copies straight into the
``bytes`` object returned, as ``os.pread`` does. ``fs_type()``: the file
system a file is on, which tells the engine a procfs or sysfs file (whose
reads the kernel cannot do asynchronously) from the others."""

import asyncio

from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF

from fastio._c._aio cimport FIO_RWF_NOWAIT
from fastio._c._loop_core cimport LoopCore
from fastio._c._sys cimport fio_fork_generation, fio_fork_init

from libc.errno cimport EAGAIN, errno
from libc.string cimport strerror


if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")


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


cdef extern from "<sys/vfs.h>" nogil:
    struct statfs:
        long f_type     # (__fsword_t: a long on every architecture fastio builds for)
    int fstatfs(int fd, statfs *buf)


def fs_type(int fd):
    """fs_type(fd) -> int

    The magic number of the file system ``fd``'s file is on (``fstatfs(2)``'s
    ``f_type``, as ``linux/magic.h`` names them: ``0x9fa0`` procfs ...);
    ``OSError`` for a bad fd."""
    cdef statfs st
    cdef int rc
    with nogil:
        rc = fstatfs(fd, &st)
    if rc != 0:
        raise OSError(errno, strerror(errno).decode())
    return <unsigned int>st.f_type


# The largest cached read made without releasing the GIL (16 KiB: 1-2 us).
cdef enum:
    HOLD_GIL_MAX = 16384

cdef object _get_running_loop = asyncio.events._get_running_loop   # (C on every supported Python)

cdef extern from "Python.h":
    int PY_VERSION_HEX
    unsigned long PyThread_get_thread_ident()


cdef class FileCore:
    """The compiled part of a ``fastio.asyncio`` binary file of the c backend
    on the ``uring`` engine (``fastio.asyncio._files.CompiledBinaryFile``,
    whose Python part is ``AsyncBinaryFile``): the file's state as C fields,
    and ``_cached_pread``, the read of a range the page cache holds that
    ``pread`` tries first: the loop and fork checks and one
    ``preadv2(RWF_NOWAIT)`` into the ``bytes`` returned, in C; and ``pread``
    as a compiled coroutine, which before Python 3.12 costs less than a
    Python one (0.12 against 0.18 us here; on 3.13 0.24 against 0.10)."""

    cdef public int _fd
    cdef public bint _closed
    cdef public bint _readable
    cdef public bint _direct
    cdef bint _fast                 # the cached path is tried
    cdef object _loopref            # the engine's weak reference to its loop
    cdef unsigned long _fork_gen
    cdef unsigned long _thread      # where the loop was found running last (Python < 3.12)
    cdef bint _stdlib_loop          # an asyncio.BaseEventLoop (whose _thread_id says where it runs)
    cdef bint _core_loop            # fastio's compiled loop (its _thread_id a C field, the same rule)

    def __cinit__(self):
        self._fd = -1
        self._closed = True     # (until the Python part's __init__ says otherwise: what __del__ reads)

    def _enable_fast_reads(self, loopref):
        """Try the page cache first while ``loopref()`` is the running loop
        (the engine's own test, made in C)."""
        self._loopref = loopref
        self._fork_gen = fio_fork_generation()
        self._fast = not self._direct
        loop = loopref()
        # Both run asyncio.BaseEventLoop.run_forever, which sets _thread_id
        # to the thread it runs in and back to None when it returns.
        stdlib_rules = type(loop).is_running is asyncio.BaseEventLoop.is_running
        self._core_loop = stdlib_rules and isinstance(loop, LoopCore)
        self._stdlib_loop = stdlib_rules and isinstance(loop, asyncio.BaseEventLoop)

    cdef bint _on_loop(self) except -1:
        """Whether the engine's loop is the running loop, and not the
        parent's in a forked child."""
        if self._fork_gen != fio_fork_generation():
            return False
        loop = self._loopref()
        if loop is None:
            return False
        if PY_VERSION_HEX >= 0x030C0000:
            return _get_running_loop() is loop
        # Before 3.12 asyncio's own test costs a getpid(2) (0.17 us here, more
        # than the rest of this path). A stdlib loop says which thread it
        # runs in; another loop, running, in the thread where it was found
        # running last, is the running loop of this thread (one loop runs
        # per thread at a time).
        if self._core_loop:
            tid = (<LoopCore>loop)._thread_id
            return tid is not None and <unsigned long>tid == PyThread_get_thread_ident()
        if self._stdlib_loop:
            tid = loop._thread_id
            return tid is not None and <unsigned long>tid == PyThread_get_thread_ident()
        if self._thread == PyThread_get_thread_ident() and loop.is_running():
            return True
        if _get_running_loop() is loop:
            self._thread = PyThread_get_thread_ident()
            return True
        return False

    cdef object _try(self, size, offset):
        """The range as ``bytes`` if the page cache holds all of it and the
        file may be read here, else None."""
        cdef Py_ssize_t n
        cdef long long off
        cdef long got
        cdef PyObject *raw
        if not self._fast or self._closed or not self._readable:
            return None
        n = size
        off = offset
        if n < 0 or off < 0 or not self._on_loop():
            return None
        raw = fio_bytes_new(NULL, n)
        if n <= HOLD_GIL_MAX:
            # RWF_NOWAIT never waits for the device or a page lock (EAGAIN
            # instead): a copy of a few pages, shorter than a release and
            # re-take of the GIL.
            got = fio_sys_preadv2(self._fd, fio_bytes_data(raw), <size_t>n, off, FIO_RWF_NOWAIT)
        else:
            with nogil:
                got = fio_sys_preadv2(self._fd, fio_bytes_data(raw), <size_t>n, off, FIO_RWF_NOWAIT)
        result = <object>raw
        Py_DECREF(result)
        if got == n:
            return result
        if got < 0 and got != -EAGAIN:
            self._fast = False      # (an error, or a file system without RWF_NOWAIT: the engine decides)
        return None

    def _cached_pread(self, size, offset):
        """_cached_pread(size, offset) -> bytes | None

        ``pread(size, offset)`` when the page cache holds the whole range
        and the file may be read here, else ``None`` (``pread`` then takes
        the engine's path, which decides, raises or waits)."""
        return self._try(size, offset)

    async def pread(self, size, offset):
        """``size`` bytes at ``offset`` (fewer at EOF); the position is not used."""
        data = self._try(size, offset)
        if data is not None:
            return data
        return await self._engine_pread(size, offset)
