# cython: language_level=3, embedsignature=True
"""Callbacks of fastio's compiled event loop: ``Handle`` and ``TimerHandle``.

They have the methods and the behaviour of ``asyncio.Handle`` and
``asyncio.TimerHandle`` (``cancel``, ``cancelled``, ``get_context``,
``when``, the same ``repr`` and the same report to the loop's exception
handler when the callback raises), but are C objects the scheduler runs with
no Python call of its own: the callback is called inside its
``contextvars.Context`` through ``PyContext_Enter``/``PyContext_Exit``, which is
what ``Context.run`` does (a context that is already entered is a
``RuntimeError``, reported like any other error of the callback).
"""

cimport cython
from cpython.object cimport PyObject_Call

import sys

from asyncio import format_helpers as _format_helpers

cdef extern from "Python.h":
    object PyContext_CopyCurrent()
    int PyContext_Enter(object ctx) except -1
    int PyContext_Exit(object ctx) except -1

# Python 3.13 added debug= (longer reprs of the arguments in debug mode).
cdef bint FORMAT_TAKES_DEBUG = sys.version_info >= (3, 13)


cdef str format_callback(object callback, object args, object loop):
    if FORMAT_TAKES_DEBUG:
        return _format_helpers._format_callback_source(callback, args, debug=loop.get_debug())
    return _format_helpers._format_callback_source(callback, args)


def _creation_stack():
    # The frame of this function is frame 0; frame 1 is the Python code that
    # called call_soon/call_later (the compiled calls make no frames).
    return _format_helpers.extract_stack(sys._getframe(1))


cdef int report(Handle handle, object callback, object args, BaseException exc) except -1:
    cdef dict context = {
        "message": f"Exception in callback {format_callback(callback, args, handle._loop)}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)
    return 0


@cython.freelist(256)
cdef class Handle:
    """Handle(callback, args, loop, context=None)

    A callback scheduled with ``call_soon``; the object ``asyncio.Handle``
    describes."""

    def __init__(self, callback, tuple args, loop, context=None):
        self._callback = callback
        self._args = args
        self._loop = loop
        self._context = PyContext_CopyCurrent() if context is None else context
        if loop.get_debug():
            self._source_traceback = _creation_stack()

    cdef int run(self) except -1:
        cdef object callback = self._callback
        cdef object args = self._args
        cdef object ctx = self._context
        try:
            PyContext_Enter(ctx)
            try:
                PyObject_Call(callback, args, None)
            finally:
                PyContext_Exit(ctx)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            report(self, callback, args, exc)
        return 0

    def _run(self):
        self.run()

    def cancel(self):
        """Cancel the callback; it will not run. Cancelling twice is harmless."""
        if not self._cancelled:
            self._cancelled = True
            if self._loop.get_debug():
                # Keep the callback's description for the slow-callback warning.
                self._repr = repr(self)
            self._callback = None
            self._args = None

    def cancelled(self):
        """True once ``cancel()`` was called."""
        return self._cancelled

    def get_context(self):
        """The ``contextvars.Context`` the callback runs in."""
        return self._context

    def _repr_info(self):
        info = [type(self).__name__]
        if self._cancelled:
            info.append("cancelled")
        if self._callback is not None:
            info.append(format_callback(self._callback, self._args, self._loop))
        if self._source_traceback:
            frame = self._source_traceback[-1]
            info.append(f"created at {frame[0]}:{frame[1]}")
        return info

    def __repr__(self):
        if self._repr is not None:
            return self._repr
        return "<{}>".format(" ".join(self._repr_info()))


cdef class TimerHandle(Handle):
    """TimerHandle(when, callback, args, loop, context=None)

    A callback scheduled with ``call_later``/``call_at`` for loop time
    ``when``; the object ``asyncio.TimerHandle`` describes."""

    def __init__(self, when, callback, tuple args, loop, context=None):
        Handle.__init__(self, callback, args, loop, context)
        self._when = when

    def when(self):
        """The loop time (``loop.time()``'s clock) the callback is due at."""
        return self._when

    def cancel(self):
        """Cancel the callback; it will not run. Cancelling twice is harmless."""
        if not self._cancelled:
            self._loop._timer_handle_cancelled(self)
        Handle.cancel(self)

    def _repr_info(self):
        info = Handle._repr_info(self)
        info.insert(2 if self._cancelled else 1, f"when={self._when}")
        return info

    def __hash__(self):
        return hash(self._when)

    def __richcmp__(self, other, int op):
        if not isinstance(other, TimerHandle):
            return NotImplemented
        cdef TimerHandle o = other
        if op == 0:
            return self._when < o._when
        if op == 4:
            return self._when > o._when
        eq = (self._when == o._when and self._callback == o._callback
              and self._args == o._args and self._cancelled == o._cancelled)
        if op == 2:
            return eq
        if op == 3:
            return not eq
        if op == 1:
            return self._when < o._when or eq
        return self._when > o._when or eq


cdef Handle new_handle(object callback, tuple args, object loop, object context, bint debug):
    cdef Handle h = Handle.__new__(Handle)
    h._callback = callback
    h._args = args
    h._loop = loop
    h._context = PyContext_CopyCurrent() if context is None else context
    if debug:
        h._source_traceback = _creation_stack()
    return h


cdef TimerHandle new_timer(double when, unsigned long long seq, object callback, tuple args,
                           object loop, object context, bint debug):
    cdef TimerHandle h = TimerHandle.__new__(TimerHandle)
    h._callback = callback
    h._args = args
    h._loop = loop
    h._context = PyContext_CopyCurrent() if context is None else context
    h._when = when
    h.seq = seq
    if debug:
        h._source_traceback = _creation_stack()
    return h
