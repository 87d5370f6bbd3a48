# cython: language_level=3, embedsignature=True
"""The per-event paths of the compiled loop's socket transport, in C.

``fastio.asyncio``'s socket transport is CPython's own
``selector_events._SelectorSocketTransport`` (its connection life cycle,
flow control, ``close``/``abort``/``write_eof`` and error reports are the
running interpreter's) with the methods that run per event replaced by
these functions, which keep the stdlib's behaviour and messages:

* ``read_ready``: the reader callback, which calls the protocol kind's path.

* ``read_ready__data_received``: one ``recv(2)`` into a 256 KiB buffer the
  module owns, then ``data_received`` with an exact-size ``bytes``. The stdlib
  asks ``socket.recv`` for 256 KiB, which allocates that much per call (glibc
  serves it with ``mmap``, then shrinks it): this is what uvloop does too.
* ``read_ready__get_buffer``: ``recv(2)`` straight into the
  ``BufferedProtocol``'s ``get_buffer()`` memory, released before
  ``buffer_updated`` is called.
* ``write``: when nothing is queued, one ``send(2)`` of the whole buffer; if
  the kernel took all of it the call is done. Anything else (a partial send,
  ``EAGAIN``, an error, a transport that is closing, a buffer that is not
  contiguous) goes to the stdlib's ``write`` with what is left, which queues
  it or reports the error exactly as the stdlib does.

The fd is taken from the socket object on every call, so a socket closed
under the transport fails with ``EBADF`` instead of reading another file that
got its number. The module buffer is safe to share: it is only used with the
GIL held and no Python code runs between the ``recv`` and the copy.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.errno cimport EAGAIN, EINTR, errno

from fastio._c._common cimport raise_errno

from asyncio import selector_events as _selector_events

cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int MSG_NOSIGNAL

cdef enum:
    MAX_SIZE = 256 * 1024        # the stdlib's _SelectorSocketTransport.max_size

cdef char read_buffer[MAX_SIZE]
cdef object stdlib_write = _selector_events._SelectorSocketTransport.write


cdef inline int retry_later(int err) noexcept:
    return err == EAGAIN or err == EINTR    # EWOULDBLOCK is EAGAIN on Linux


cdef object os_error(int err):
    try:
        raise_errno(err)
    except OSError as exc:
        return exc


def read_ready(self):
    """The socket is readable: the reader the loop calls (no Python frame)."""
    self._read_ready_cb()


def read_ready__data_received(self):
    """The socket is readable and the protocol is a ``Protocol``."""
    if self._conn_lost:
        return
    cdef int fd = self._sock.fileno()
    cdef ssize_t n = recv(fd, read_buffer, MAX_SIZE, 0)
    if n < 0:
        if retry_later(errno):
            return
        self._fatal_error(os_error(errno), "Fatal read error on socket transport")
        return
    if n == 0:
        self._read_ready__on_eof()
        return
    protocol_data(self, PyBytes_FromStringAndSize(read_buffer, n))


def read_ready__get_buffer(self):
    """The socket is readable and the protocol is a ``BufferedProtocol``."""
    cdef Py_buffer view
    cdef ssize_t n
    cdef int err
    if self._conn_lost:
        return
    try:
        buf = self._protocol.get_buffer(-1)
        if not len(buf):
            raise RuntimeError("get_buffer() returned an empty buffer")
        PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
        return
    try:
        n = recv(self._sock.fileno(), view.buf, <size_t>view.len, 0)
        err = errno
    finally:
        PyBuffer_Release(&view)
    if n < 0:
        if retry_later(err):
            return
        self._fatal_error(os_error(err), "Fatal read error on socket transport")
        return
    if n == 0:
        self._read_ready__on_eof()
        return
    try:
        self._protocol.buffer_updated(n)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")


def write(self, data):
    """Write ``data`` (bytes-like): sent now if the kernel takes it all,
    else queued and sent as the socket becomes writable."""
    cdef Py_buffer view
    cdef ssize_t n, size
    if (type(data) is not bytes or self._buffer or self._conn_lost or self._eof
            or self._empty_waiter is not None):
        return stdlib_write(self, data)
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    size = view.len
    try:
        if size == 0:
            return
        n = send(self._sock.fileno(), view.buf, <size_t>size, MSG_NOSIGNAL)
    finally:
        PyBuffer_Release(&view)
    if n == size:
        return
    if n > 0:
        data = memoryview(data)[n:]
    return stdlib_write(self, data)
