# cython: language_level=3, embedsignature=True
"""The compiled core of ``fastio.asyncio.Loop``: its scheduler.

One turn of the loop (``_run_once``), as CPython's ``BaseEventLoop`` defines
it: wait for IO (no wait when callbacks are ready or the loop is stopping,
else until the first timer is due), queue the callbacks of the fds that are
ready, queue the timers that are due, then run the callbacks that were queued
when the turn began (those they add run in the next turn). All of it is C:
the ready queue is a list swapped per turn, the timers a binary heap on
(when, order of scheduling), so timers due at the same time run in the order
they were scheduled. The wait is the engine's (``_loop_engine``): epoll or
io_uring, with the GIL released.

* Events wake readers and writers as ``selectors.EpollSelector`` maps them:
  any event but ``EPOLLOUT`` wakes the reader, any but ``EPOLLIN`` the writer
  (so ``EPOLLERR``/``EPOLLHUP`` wake both).
* A callback that raises ``KeyboardInterrupt`` or ``SystemExit`` leaves the
  turn at once; the callbacks of that turn that did not run stay queued, in
  order, for the next ``run_forever``.
* A loop made before ``fork()`` raises ``RuntimeError`` when run in the child.
* ``call_soon_threadsafe`` writes the wake-up byte once per turn, not once
  per call: a call that finds one already written since the turn began only
  queues its handle, which the turn sees before it computes its wait.
"""

cimport cython
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.method cimport PyMethod_Check, PyMethod_GET_FUNCTION, PyMethod_GET_SELF
from libc.stdint cimport int64_t, uint32_t

from fastio._c._common cimport check_fork, fileobj_to_fd
from fastio._c._loop_engine cimport Engine, FdEntry
from fastio._c._loop_handles cimport Handle, TimerHandle, new_handle, new_timer
from fastio._c._sys cimport fio_fork_generation, fio_fork_init, fio_monotonic_ns

import selectors as _selectors

# Each module has its own fork counter (csrc/fio_fork.h): this one's handler.
if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")

cdef extern from "<sys/epoll.h>":
    uint32_t EPOLLIN, EPOLLOUT

cdef enum:
    MIN_SCHEDULED = 100          # the stdlib's thresholds for purging cancelled timers
cdef double MIN_CANCELLED_FRACTION = 0.5
cdef double MAXIMUM_SELECT_TIMEOUT = 24 * 3600.0


cdef inline double now() noexcept nogil:
    return <double>fio_monotonic_ns() * 1e-9


cdef inline bint earlier(TimerHandle a, TimerHandle b) noexcept:
    return a._when < b._when or (a._when == b._when and a.seq < b.seq)


cdef int heap_push(list heap, TimerHandle item) except -1:
    cdef Py_ssize_t i = len(heap), parent
    heap.append(item)
    while i > 0:
        parent = (i - 1) >> 1
        if not earlier(item, <TimerHandle>PyList_GET_ITEM(heap, parent)):
            break
        heap[i] = <object>PyList_GET_ITEM(heap, parent)
        i = parent
    heap[i] = item
    return 0


cdef int sift_down(list heap, Py_ssize_t i) except -1:
    cdef Py_ssize_t n = len(heap), child
    cdef TimerHandle item = heap[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        if child + 1 < n and earlier(<TimerHandle>PyList_GET_ITEM(heap, child + 1),
                                     <TimerHandle>PyList_GET_ITEM(heap, child)):
            child += 1
        if not earlier(<TimerHandle>PyList_GET_ITEM(heap, child), item):
            break
        heap[i] = <object>PyList_GET_ITEM(heap, child)
        i = child
    heap[i] = item
    return 0


cdef TimerHandle heap_pop(list heap):
    cdef TimerHandle top = heap[0]
    cdef object last = heap.pop()
    if len(heap):
        heap[0] = last
        sift_down(heap, 0)
    return top


cdef inline int fd_of(object fileobj) except -1:
    """selectors' rule (an int, or an object whose fileno() gives one), as a C int."""
    return fileobj_to_fd(fileobj)


cdef class LoopCore:
    """The scheduler under ``fastio.asyncio.Loop``; not used on its own."""

    def __cinit__(self):
        self.ready = []
        self.scheduled = []
        self.fds = []
        self.fired = []
        self.fork_gen = fio_fork_generation()
        self._clock_resolution = 1e-9
        self.slow_callback_duration = 0.1

    # -- what the stdlib's Python code reads as attributes -------------------

    @property
    def _ready(self):
        return self.ready

    @_ready.setter
    def _ready(self, value):
        self.ready = list(value)

    @property
    def _scheduled(self):
        return self.scheduled

    @_scheduled.setter
    def _scheduled(self, value):
        if len(value):
            raise ValueError("a loop's timers are scheduled through call_at()")
        self.scheduled = []

    @property
    def _turns(self):
        """Turns run (``_run_once`` calls) since the loop was made."""
        return self.turns

    # -- the clock and the callbacks -----------------------------------------

    def time(self):
        """The loop's clock: ``time.monotonic()``, in seconds."""
        return now()

    def get_debug(self):
        """Whether the loop is in debug mode."""
        return self._debug

    def call_soon(self, callback, *args, context=None):
        """Run ``callback(*args)`` in the next turn, after those already queued.
        Returns its ``Handle``."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
        cdef Handle h = new_handle(callback, args, self, context, self._debug)
        self.ready.append(h)
        return h

    def _call_soon(self, callback, args, context):
        cdef Handle h = new_handle(callback, tuple(args), self, context, self._debug)
        self.ready.append(h)
        return h

    def call_soon_threadsafe(self, callback, *args, context=None):
        """``call_soon`` from any thread: the loop wakes up if it is waiting."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        cdef Handle h = new_handle(callback, args, self, context, self._debug)
        self.ready.append(h)
        if not self.wake_pending:
            # One wake-up per turn is enough: the loop looks at the ready
            # queue after the turn's reset below, before it may block.
            self.wake_pending = True
            self._write_to_self()
        return h

    def call_at(self, when, callback, *args, context=None):
        """Run ``callback(*args)`` once the loop's clock reaches ``when``.
        Returns its ``TimerHandle``."""
        if when is None:
            raise TypeError("when cannot be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        self.timer_seq += 1
        cdef TimerHandle t = new_timer(when, self.timer_seq, callback, args, self, context,
                                       self._debug)
        heap_push(self.scheduled, t)
        t._scheduled = True
        return t

    def call_later(self, delay, callback, *args, context=None):
        """Run ``callback(*args)`` after ``delay`` seconds. Returns its ``TimerHandle``."""
        if delay is None:
            raise TypeError("delay must not be None")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_later")
        self.timer_seq += 1
        cdef TimerHandle t = new_timer(now() + delay, self.timer_seq, callback, args, self,
                                       context, self._debug)
        heap_push(self.scheduled, t)
        t._scheduled = True
        return t

    def _add_callback(self, handle):
        if not handle._cancelled:
            self.ready.append(handle)

    def _add_callback_signalsafe(self, handle):
        self._add_callback(handle)
        self._write_to_self()

    def _timer_handle_cancelled(self, handle):
        if handle._scheduled:
            self._timer_cancelled_count += 1

    # -- one turn ------------------------------------------------------------

    def _run_once(self):
        """One turn: wait for IO or the first timer, queue what is ready, run
        the callbacks queued when the turn began."""
        check_fork(self.fork_gen, "event loop")
        self.turns += 1
        # From here on a call_soon_threadsafe writes a wake-up byte again:
        # anything queued before this point is seen by this turn's timeout.
        self.wake_pending = False
        self.drop_cancelled_timers()
        self.poll(self.next_timeout_ns())
        self.move_due_timers()
        self.run_ready()

    cdef int drop_cancelled_timers(self) except -1:
        cdef Py_ssize_t n = len(self.scheduled)
        cdef TimerHandle t
        cdef list kept
        if n > MIN_SCHEDULED and self._timer_cancelled_count / <double>n > MIN_CANCELLED_FRACTION:
            kept = []
            for t in self.scheduled:
                if t._cancelled:
                    t._scheduled = False
                else:
                    heap_push(kept, t)
            self.scheduled = kept
            self._timer_cancelled_count = 0
            return 0
        while len(self.scheduled) and (<TimerHandle>PyList_GET_ITEM(self.scheduled, 0))._cancelled:
            self._timer_cancelled_count -= 1
            t = heap_pop(self.scheduled)
            t._scheduled = False
        return 0

    cdef int64_t next_timeout_ns(self) except? -2:
        cdef double wait
        if PyList_GET_SIZE(self.ready) or self._stopping:
            return 0
        if not PyList_GET_SIZE(self.scheduled):
            return -1
        wait = (<TimerHandle>PyList_GET_ITEM(self.scheduled, 0))._when - now()
        if wait <= 0:
            return 0
        if wait > MAXIMUM_SELECT_TIMEOUT:
            wait = MAXIMUM_SELECT_TIMEOUT
        return <int64_t>(wait * 1e9) + 1

    cdef int poll(self, int64_t timeout_ns) except -1:
        cdef list fired = self.fired
        cdef Py_ssize_t i
        cdef FdEntry entry
        if self.eng is None:
            raise RuntimeError("the loop has no engine (LoopCore._set_engine was not called)")
        self.eng.wait(timeout_ns, fired)
        try:
            for i in range(PyList_GET_SIZE(fired)):
                entry = <FdEntry>PyList_GET_ITEM(fired, i)
                if entry.revents & ~EPOLLOUT and entry.reader is not None:
                    if (<Handle>entry.reader)._cancelled:
                        self.remove_fd_handle(entry.fd, EPOLLIN)
                    else:
                        self.ready.append(entry.reader)
                if entry.revents & ~EPOLLIN and entry.writer is not None:
                    if (<Handle>entry.writer)._cancelled:
                        self.remove_fd_handle(entry.fd, EPOLLOUT)
                    else:
                        self.ready.append(entry.writer)
        finally:
            for i in range(PyList_GET_SIZE(fired)):
                (<FdEntry>PyList_GET_ITEM(fired, i)).revents = 0
            del fired[:]
        return 0

    cdef int move_due_timers(self) except -1:
        cdef double end = now() + self._clock_resolution
        cdef TimerHandle t
        while PyList_GET_SIZE(self.scheduled):
            t = <TimerHandle>PyList_GET_ITEM(self.scheduled, 0)
            if t._when >= end:
                break
            heap_pop(self.scheduled)
            t._scheduled = False
            self.ready.append(t)
        return 0

    cdef int run_ready(self) except -1:
        cdef list todo = self.ready
        cdef Py_ssize_t i = 0, n = PyList_GET_SIZE(todo)
        cdef object obj
        if not n:
            return 0
        self.ready = []
        try:
            while i < n:
                obj = <object>PyList_GET_ITEM(todo, i)
                i += 1
                if isinstance(obj, Handle):
                    if (<Handle>obj)._cancelled:
                        continue
                    if self._debug:
                        self._run_handle_debug(obj)
                    else:
                        (<Handle>obj).run()
                elif not obj._cancelled:
                    # A stdlib asyncio.Handle (unix_events makes them for signals).
                    if self._debug:
                        self._run_handle_debug(obj)
                    else:
                        obj._run()
        except BaseException:
            if i < n:
                self.ready[0:0] = todo[i:]
            raise
        return 0

    # -- fds -----------------------------------------------------------------

    def _add_reader(self, fd, callback, *args):
        return self.add_fd_handle(fd, EPOLLIN, callback, args)

    def _add_writer(self, fd, callback, *args):
        return self.add_fd_handle(fd, EPOLLOUT, callback, args)

    def _remove_reader(self, fd):
        return self.remove_fd_handle(fd, EPOLLIN)

    def _remove_writer(self, fd):
        return self.remove_fd_handle(fd, EPOLLOUT)

    def _fd_state(self, fileobj):
        """(events, reader, writer) of a watched fd as selectors would give
        them (EVENT_READ | EVENT_WRITE), or None."""
        cdef int fd = fd_of(fileobj)
        cdef FdEntry entry
        if fd >= len(self.fds) or self.fds[fd] is None:
            return None
        entry = self.fds[fd]
        return ((_selectors.EVENT_READ if entry.events & EPOLLIN else 0)
                | (_selectors.EVENT_WRITE if entry.events & EPOLLOUT else 0),
                entry.reader, entry.writer)

    cdef object add_fd_handle(self, object fileobj, uint32_t event, object callback, tuple args):
        if self._closed:
            raise RuntimeError("Event loop is closed")
        cdef int fd = fd_of(fileobj)
        cdef Handle h
        cdef FdEntry entry
        cdef object old, transport = self.recv_transport(event, callback, args)
        if fd >= len(self.fds):
            self.fds.extend([None] * (fd + 1 - len(self.fds)))
        if self.fds[fd] is None:
            entry = FdEntry.__new__(FdEntry)
            entry.fd = fd
        else:
            entry = self.fds[fd]
            if entry.recv is not None and event == EPOLLIN and transport is None:
                self.eng.detach_recv(entry)     # a readiness reader takes the fd over
        if transport is not None:
            h = self.eng.recv_reader(entry, transport, self, self._debug)
        else:
            h = new_handle(callback, args, self, None, self._debug)
        if self.fds[fd] is not entry:
            self.eng.watch(entry, event)
            self.fds[fd] = entry
        else:
            if entry.events & event:
                # A callback replaced: the number may name a new file since
                # (closed and reused without remove_reader): watch it afresh.
                self.eng.rewatch(entry)
            else:
                self.eng.watch(entry, entry.events | event)
        if event == EPOLLIN:
            old, entry.reader = entry.reader, h
        else:
            old, entry.writer = entry.writer, h
        if old is not None:
            old.cancel()
        return h

    cdef object recv_transport(self, uint32_t event, object callback, tuple args):
        """The transport whose reader this is, when the engine does its reads."""
        if (event != EPOLLIN or self.recv_func is None or PyTuple_GET_SIZE(args)
                or not PyMethod_Check(callback)
                or <object>PyMethod_GET_FUNCTION(callback) is not self.recv_func):
            return None
        transport = <object>PyMethod_GET_SELF(callback)
        if getattr(transport, "_fastio_recv", None) is not None:
            # Once read through the recv, always: its bytes in flight and its
            # backlog stay in order (deliver() feeds a BufferedProtocol too).
            return transport
        cb = transport._read_ready_cb
        if not PyMethod_Check(cb) or <object>PyMethod_GET_FUNCTION(cb) is not self.recv_data_func:
            return None     # a BufferedProtocol: its reads go into its get_buffer() memory
        return transport

    def _set_recv_reader(self, func, data_func):
        """Let the engine do the reads of the transports whose reader is
        ``func`` (bound) and whose protocol's path is ``data_func``."""
        self.recv_func = func
        self.recv_data_func = data_func

    cdef bint remove_fd_handle(self, object fileobj, uint32_t event) except -1:
        cdef int fd
        cdef FdEntry entry
        cdef object old
        if self._closed:
            return False
        fd = fd_of(fileobj)
        if fd >= len(self.fds) or self.fds[fd] is None:
            return False
        entry = self.fds[fd]
        self.eng.watch(entry, entry.events & ~event)
        if not entry.events:
            self.fds[fd] = None
        if event == EPOLLIN:
            old, entry.reader = entry.reader, None
        else:
            old, entry.writer = entry.writer, None
        if old is None:
            return False
        old.cancel()
        return True

    def _set_engine(self, Engine engine not None):
        """Put the loop on `engine` (once, before it runs)."""
        if self.eng is not None:
            raise RuntimeError("the loop already has an engine")
        self.eng = engine

    @property
    def engine(self):
        """The kernel interface under the loop: ``"uring"`` or ``"epoll"``."""
        return None if self.eng is None else self.eng.name

    @property
    def _engine(self):
        """The engine object (``UringEngine.ring`` is the loop's ring)."""
        return self.eng

    def _close_core(self):
        """Forget every fd and close the engine (the child's copy only, after fork)."""
        cdef object entry
        for entry in self.fds:
            if entry is not None:
                for h in ((<FdEntry>entry).reader, (<FdEntry>entry).writer):
                    if h is not None:
                        h.cancel()
        self.fds = []
        if self.eng is not None:
            self.eng.close_engine()
