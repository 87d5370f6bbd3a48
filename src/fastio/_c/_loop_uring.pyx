# cython: language_level=3, embedsignature=True
"""The compiled loop's io_uring engine: the loop's waits are one
``io_uring_enter`` per turn, which submits what the turn queued and waits for
the first completion or the first timer.

Watched fds are one-shot ``IORING_OP_POLL_ADD`` requests, re-armed in the
next turn after their callbacks ran: asyncio's ``add_reader`` is
level-triggered (a callback that reads one byte of ten is called again),
while a multishot poll completes once per wake-up of the file, like an
edge-triggered epoll. A poll armed on a file that is still ready completes
at once, inside the same ``io_uring_enter`` that submitted it.

Kernel facts it relies on:

* A poll request holds a reference to the *file*, not to the fd number. A
  file closed by its fd while its poll is armed stays open (a socket does not
  send its FIN) until the poll is removed, which the loop does in the turn
  after ``remove_reader``/``remove_writer``; the fd number can be reused at
  once, and the late completion of the old poll is recognised by its request
  id and ignored.
* Changing the events of an armed poll is ``POLL_REMOVE`` of it and a new
  ``POLL_ADD``; a readiness that the removed one had seen is seen again by
  the new one, since a poll checks the file when it is armed.
* ``io_uring_enter`` with a timeout (``IORING_ENTER_EXT_ARG``, Linux 5.11)
  returns ``ETIME`` when the time passes with no completion; a signal ends the
  wait with ``EINTR`` and its Python handler runs before the loop goes on.
* The ring is made with ``SUBMIT_ALL | COOP_TASKRUN | TASKRUN_FLAG`` where the
  kernel takes them (5.18/5.19), else with none. Not ``SINGLE_ISSUER``: asyncio
  lets a loop be made in one thread and run in another.
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EBADF, EBUSY, EINTR, EINVAL, ETIME
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from fastio._c._common cimport raise_errno
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, _PyBytes_Resize
from cpython.ref cimport PyObject, Py_DECREF, Py_INCREF, Py_XDECREF
from libc.string cimport memcpy, strerror
from posix.mman cimport MAP_FAILED

from fastio._c._inflight cimport Slot
from fastio._c._loop_engine cimport Engine, FdEntry, fire
from fastio._c._loop_handles cimport new_handle
from fastio._c._loop_transport cimport protocol_data
from fastio._c._uring cimport (
    FIO_IORING_CQE_BUFFER_SHIFT, FIO_IORING_CQE_F_BUFFER, FIO_IORING_CQE_F_MORE, FIO_IORING_FEAT_EXT_ARG,
    FIO_IORING_ENTER_GETEVENTS, FIO_OP_ASYNC_CANCEL, FIO_OP_POLL_ADD, FIO_OP_POLL_REMOVE, FIO_OP_RECV,
    fio_io_uring_cqe, fio_io_uring_sqe, fio_prep_poll_add, fio_prep_recv_multishot, fio_prep_target,
    fio_ring_flush_sq_to, fio_ring_sq_ready,
)
from fastio._c._uring_core cimport UD_INTERNAL, UD_SKIP
from fastio._c._uring_types cimport BufRing
from fastio._c.uring cimport Ring

from asyncio.protocols import BufferedProtocol as _BufferedProtocol
from asyncio.protocols import _feed_data_to_buffered_proto
from collections import deque

from fastio._errors import UnsupportedError

from fastio._abi import uring as _abi

cdef extern from "<poll.h>":
    uint32_t POLLERR, POLLIN

cdef extern from "<sys/epoll.h>":
    uint32_t EPOLLIN

cdef extern from "<errno.h>":
    int ECANCELED, ENOBUFS

cdef enum:
    RECV_GROUP = 0          # the loop's provided-buffer group
    RECV_BUFFERS = 256      # buffers in it (the kernel takes them in turn, the loop gives each back at once)
    RECV_BUFFER_SIZE = 16384
    HOLD_MAX = 16           # recv buffers a transport holds for one run (256 KiB); then they go into acc

cdef uint32_t SETUP_FLAGS = _abi.SETUP_SUBMIT_ALL | _abi.SETUP_COOP_TASKRUN | _abi.SETUP_TASKRUN_FLAG


cdef class UringEngine


@cython.no_gc_clear
cdef class RecvState:
    """What the loop keeps for a socket transport whose reads are its
    multishot recv: the bytes (and the end: 0 for EOF, -errno) that arrived
    and are not delivered yet, kept across pause_reading/resume_reading.

    The bytes of a run are in one of two places, never both: the recv
    buffers themselves, held out of the buffer ring until the delivery
    (``held``: the loop's turn that reaped them delivers them, or the next
    turn's wait first copies them into ``acc``, so every buffer is back in
    the ring before the loop's next wait: the kernel fills buffers inside
    that wait under COOP_TASKRUN; without it, a recv that finds none
    between two waits ends with ENOBUFS and is re-armed), or ``acc``. Held buffers
    count as the group's requests in flight: the group cannot be
    unregistered under them. (no_gc_clear: ``bufs`` and ``engine`` stay
    whole while the collector breaks a cycle through the state.)"""

    cdef object transport
    cdef object backlog         # deque of RECEIVED (the bytes held or in acc), then 0 (EOF) or -errno
    cdef uint16_t held_bid[HOLD_MAX]    # the recv buffers held, in order,
    cdef uint32_t held_len[HOLD_MAX]    # and the bytes in each
    cdef int nheld
    cdef Py_ssize_t held_bytes
    cdef BufRing bufs           # the loop's recv buffers
    cdef PyObject *acc          # a bytes only this state holds (NULL for none): in its first acc_len
    cdef char *acc_buf          # bytes (at acc_buf), the run's bytes when not held
    cdef Py_ssize_t acc_len, acc_cap, next_cap
    cdef FdEntry entry          # the fd entry of the current reader
    cdef uint64_t armed_ud      # the recv in flight, 0 for none
    cdef bint reading           # the transport wants data now
    cdef bint queued            # its delivery is in the ready queue
    cdef bint ended             # EOF or an error came: never re-armed
    cdef UringEngine engine

    def __dealloc__(self):
        Py_XDECREF(self.acc)

    cdef int reserve(self, Py_ssize_t n) except -1:
        """Room in acc for n more bytes: a new bytes of twice the size when
        they do not fit, the old one's bytes copied (a failure changes
        nothing)."""
        cdef Py_ssize_t cap = self.acc_cap if self.acc_cap else max(self.next_cap, RECV_BUFFER_SIZE)
        if self.acc_len + n <= self.acc_cap:
            return 0
        while cap < self.acc_len + n:
            cap *= 2
        fresh = PyBytes_FromStringAndSize(NULL, cap)
        memcpy(PyBytes_AS_STRING(fresh), self.acc_buf, <size_t>self.acc_len)
        Py_XDECREF(self.acc)
        Py_INCREF(fresh)
        self.acc = <PyObject *>fresh
        self.acc_buf = PyBytes_AS_STRING(fresh)
        self.acc_cap = cap
        return 0

    cdef void copy_held(self, char *dest) noexcept:
        """The held buffers' bytes, one after the other, to dest (room for
        held_bytes; the ring's memory is there)."""
        cdef int i
        for i in range(self.nheld):
            memcpy(dest, self.bufs.at(self.held_bid[i]), self.held_len[i])
            dest += self.held_len[i]

    cdef void give_back(self) noexcept:
        """The held buffers back to the ring (if its memory is still there)."""
        cdef int i
        if <void *>self.bufs.bufs != MAP_FAILED:
            for i in range(self.nheld):
                self.bufs.recycle(self.held_bid[i])
        self.bufs.inflight -= self.nheld
        self.engine.held -= self.nheld
        self.nheld = 0
        self.held_bytes = 0

    cdef void move_held_to_acc(self) noexcept:
        """The held buffers' bytes to the end of acc (reserve() made room),
        the buffers back to the ring."""
        self.copy_held(self.acc_buf + self.acc_len)
        self.acc_len += self.held_bytes
        self.give_back()

    cdef int check_ring(self) except -1:
        """RuntimeError (and the held buffers dropped) if the ring's memory
        is gone: closed under the loop."""
        if self.nheld and <void *>self.bufs.bufs == MAP_FAILED:
            self.give_back()
            raise RuntimeError("the loop's ring was closed under its transports")
        return 0

    cdef int spill(self) except -1:
        """The held buffers' bytes into acc, the buffers back to the ring
        (a failure changes nothing)."""
        if self.nheld:
            self.check_ring()
            self.reserve(self.held_bytes)
            self.move_held_to_acc()
        return 0

    cdef object take(self):
        """The run's bytes, as one bytes of their size; emptied. Held
        buffers are copied out and given back. A run in acc of one recv
        buffer's size or less is copied out (acc is kept for the next, up to
        ACC_KEEP); a longer one is acc itself, cut to its length, with no
        copy (the next run's acc starts at this one's size)."""
        cdef PyObject *obj = self.acc
        cdef Py_ssize_t n = self.acc_len
        if self.nheld:
            self.check_ring()
            data = PyBytes_FromStringAndSize(NULL, self.held_bytes)
            self.copy_held(PyBytes_AS_STRING(data))
            self.give_back()
            return data
        if n <= RECV_BUFFER_SIZE or obj == NULL:
            data = PyBytes_FromStringAndSize(self.acc_buf, n)
            self.acc_len = 0
            if self.acc_cap > ACC_KEEP:
                self.drop()
            return data
        self.next_cap = min(self.acc_cap, ACC_KEEP)
        self.acc = NULL
        self.acc_buf = NULL
        self.acc_len = self.acc_cap = 0
        # Shrinking: a realloc glibc does in place, and never fails. Were it
        # to fail, CPython frees the bytes and this raises MemoryError.
        _PyBytes_Resize(&obj, n)
        data = <object>obj
        Py_DECREF(data)       # (the reference acc held: data has it now)
        return data

    cdef void drop(self) noexcept:
        Py_XDECREF(self.acc)
        self.acc = NULL
        self.acc_buf = NULL
        self.acc_cap = 0


# The backlog's item for the bytes of a RecvState's run: one item for every
# run of recv buffers that arrive before a delivery, so there is one
# data_received for them all (as a readiness loop's one large recv() gives)
# and no Python object made per buffer. A bytes per 16 KiB buffer, then their
# join, made 8 allocations per 100 KiB message and kept glibc giving its heap
# top back and faulting it in again. Gathering a run in a per-transport
# accumulator copied each buffer once more, and handing the accumulator out
# made every transport allocate its own large block per run, freed in bursts
# at the heap top (a brk per few messages at 100 connections). Holding the
# buffers until the delivery makes one bytes of the run's size, copied from
# them, freed as soon as data_received drops it: the same block serves the
# next delivery, as with a readiness loop's recv() (bench/RESULTS.md).
cdef object RECEIVED = object()
cdef Py_ssize_t ACC_KEEP = 1 << 18   # acc kept up to 256 KiB between deliveries


cdef object os_error(int err):
    return OSError(err, strerror(err).decode("utf-8", "replace"))


cdef int buffered_data(object transport, object data) except -1:
    try:
        _feed_data_to_buffered_proto(transport._protocol, data)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        transport._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")
    return 0


def deliver(RecvState st):
    """The reader callback of a transport in recv mode: hand what arrived to
    the protocol, in order, as the stdlib transport's read path does, until
    the transport stops reading (a pause inside ``data_received``) or loses
    its connection."""
    st.queued = False
    transport = st.transport
    backlog = st.backlog
    try:
        while backlog:
            if not st.reading or transport._conn_lost:
                return
            item = backlog[0]
            if item is RECEIVED:
                item = st.take()
                backlog.popleft()
                if isinstance(transport._protocol, _BufferedProtocol):
                    # set_protocol() (start_tls, say) made it a BufferedProtocol
                    # after its reads became the recv's: copied into its buffer.
                    buffered_data(transport, item)
                else:
                    protocol_data(transport, item)
            else:
                backlog.popleft()
                try:
                    if item == 0:
                        transport._read_ready__on_eof()
                    else:
                        transport._fatal_error(os_error(-item), "Fatal read error on socket transport")
                except BaseException:
                    # (KeyboardInterrupt or SystemExit: the stdlib lets only
                    # those out.) The end is reported again in the next turn,
                    # as a readiness loop's next recv() finds it again: the
                    # multishot recv that brought it is over.
                    backlog.appendleft(item)
                    raise
    finally:
        # A KeyboardInterrupt in data_received leaves the loop: what is left
        # is delivered in the next turn it runs, not only when more arrives.
        if backlog and st.reading and not st.queued and st.entry is not None and not transport._conn_lost:
            st.queued = True
            st.engine.backlogged.append(st.entry)


@cython.no_gc_clear
cdef class LoopRing(Ring):
    """The loop's ring: its completions go to the loop's fd entries, with no
    Python object made per completion."""

    cdef list fired     # where fired fd entries go during the engine's reap (None otherwise)
    cdef list dirty     # the engine's: entries to re-arm
    cdef BufRing bufs   # the recv buffers (None where the kernel has no buffer rings)

    def __dealloc__(self):
        # A ring never closed (its loop was not) is drained here, while this
        # class's attributes are whole: the base's __dealloc__ runs after
        # they are cleared, and its drain calls handle_cqe.
        if self.ring.fd >= 0 and not self.closing:
            self.fired = None
            self.shutdown()

    cdef int handle_cqe(self, fio_io_uring_cqe *cqe, list out) except -1:
        cdef uint64_t ud = cqe.user_data
        cdef uint32_t idx = <uint32_t>ud
        cdef Slot *s
        cdef FdEntry entry
        if ud == UD_INTERNAL or ud == UD_SKIP:
            return 0
        s = self.table.lookup(ud)
        if s == NULL:
            return 0
        obj = self.table.user_data(idx)
        if s.tag == FIO_OP_POLL_ADD and isinstance(obj, FdEntry):
            entry = <FdEntry>obj
            if entry.armed_ud == ud and cqe.res == -EBADF:
                # The fd was closed (its number not reused yet): as epoll
                # drops a closed file, the poll is not re-armed.
                entry.armed_ud = 0
                entry.armed_events = 0
            elif entry.armed_ud == ud:
                # What can raise (the append) comes before the slot is
                # released, so a CQE whose handling raised is kept by reap()
                # and handled again, never lost.
                if cqe.res != -ECANCELED and self.fired is not None:
                    fire(self.fired, entry, <uint32_t>cqe.res if cqe.res > 0 else POLLERR)
                entry.armed_ud = 0
        elif s.tag == FIO_OP_RECV and isinstance(obj, RecvState):
            self.recv_done(<RecvState>obj, cqe)
            if cqe.flags & FIO_IORING_CQE_F_MORE:
                return 0
        elif obj is not None:
            # Another request on the loop's ring (fastio.asyncio.open's):
            # its Completion goes to out, for the engine's completion handler.
            return Ring.handle_cqe(self, cqe, out)
        self.slot_release(idx)
        return 0

    cdef int recv_done(self, RecvState st, fio_io_uring_cqe *cqe) except -1:
        """A completion of a transport's multishot recv. What can raise comes
        before any change, so reap() can hand the CQE in again."""
        cdef uint32_t bid = 0
        cdef object data = None
        cdef int res = cqe.res
        cdef Py_ssize_t n = 0
        cdef FdEntry entry = st.entry
        cdef bint hold = False
        if cqe.flags & FIO_IORING_CQE_F_BUFFER:
            bid = cqe.flags >> FIO_IORING_CQE_BUFFER_SHIFT
            n = res if 0 < res <= <int>self.bufs.size else 0
            # (Held only in the engine's own reap, where the engine is whole.)
            hold = n > 0 and st.acc_len == 0 and st.nheld < HOLD_MAX and self.fired is not None
            if hold:
                if st.nheld == 0:
                    st.engine.holding.append(st)    # (listed twice if what follows raises: harmless)
            else:
                st.reserve(st.held_bytes + n)
            data = RECEIVED
        elif res == 0 or (res < 0 and res != -ENOBUFS and res != -ECANCELED):
            data = res
        if data is not None and st.reading and not st.queued and entry is not None and self.fired is not None:
            fire(self.fired, entry, POLLIN)
            st.queued = True
        if data is not None and not (data is RECEIVED and st.backlog and st.backlog[-1] is RECEIVED):
            st.backlog.append(data)
        # Nothing below raises.
        if cqe.flags & FIO_IORING_CQE_F_BUFFER:
            if hold:
                st.held_bid[st.nheld] = <uint16_t>bid
                st.held_len[st.nheld] = <uint32_t>n
                st.nheld += 1
                st.held_bytes += n
                self.bufs.inflight += 1
                st.engine.held += 1
            else:
                st.move_held_to_acc()   # (in order: what was held comes first)
                memcpy(st.acc_buf + st.acc_len, self.bufs.at(bid), <size_t>n)
                st.acc_len += n
                self.bufs.recycle(<uint16_t>bid)
        if type(data) is int:
            st.ended = True
        if not (cqe.flags & FIO_IORING_CQE_F_MORE) and st.armed_ud == cqe.user_data:
            st.armed_ud = 0
            if st.reading and not st.ended and entry is not None and not entry.dirty:
                entry.dirty = True
                self.dirty.append(entry)   # ENOBUFS, or the kernel ended it: re-arm
        return 0


cdef class UringEngine(Engine):
    """UringEngine(entries=256)

    The io_uring engine of ``fastio.asyncio.Loop``: ``loop.engine`` says
    ``"uring"``. Raises ``fastio.UnsupportedError`` (with the reason and the
    fix) where io_uring cannot be used."""

    cdef LoopRing lring
    cdef list dirty             # entries whose poll must be (re-)armed or removed
    cdef list completions       # the Completions of the other requests on the ring, for on_complete
    cdef object on_complete     # set_completion_handler()'s handler, or None
    cdef list backlogged        # resumed transports with bytes waiting: delivered next turn
    cdef list holding           # RecvStates that held recv buffers in this turn
    cdef Py_ssize_t held        # the recv buffers they hold
    cdef readonly bint recv_mode    # socket transports read through multishot recv

    def __cinit__(self, entries=256, recv=True):
        self.name = "uring"
        self.dirty = []
        self.completions = []
        self.backlogged = []
        self.holding = []
        try:
            self.lring = LoopRing(entries, flags=SETUP_FLAGS, cq_entries=4 * entries)
        except OSError as exc:
            if exc.errno != EINVAL:   # a kernel before 5.19 refuses a flag
                raise
            self.lring = LoopRing(entries, cq_entries=4 * entries)
        self.lring.dirty = self.dirty
        if not (self.lring.features & FIO_IORING_FEAT_EXT_ARG):
            self.lring.close()
            raise UnsupportedError("the loop's waits need io_uring_enter with a timeout "
                                   "(IORING_FEAT_EXT_ARG, Linux 5.11)")
        if recv:
            try:
                self.lring.bufs = self.lring.register_buf_ring(RECV_GROUP, RECV_BUFFERS, RECV_BUFFER_SIZE)
                self.recv_mode = True
            except OSError:
                pass    # no buffer rings (before 5.19): transports read on readiness

    cdef object recv_reader(self, FdEntry entry, object transport, object loop, bint debug):
        cdef RecvState st = getattr(transport, "_fastio_recv", None)
        if st is None:
            st = RecvState.__new__(RecvState)
            st.transport = transport
            st.backlog = deque()
            st.engine = self
            st.bufs = self.lring.bufs
            transport._fastio_recv = st
        if entry.recv is not None and entry.recv is not st:
            self.detach_recv(entry)     # another transport's recv on this fd
        st.entry = entry
        entry.recv = st
        # The previous reader handle (cancelled by the loop) may have been
        # queued and never run: its delivery is owed again.
        st.queued = False
        if st.backlog:
            st.queued = True
            self.backlogged.append(entry)
        return new_handle(deliver, (st,), loop, None, debug)

    @property
    def held_recv_buffers(self):
        """How many of the loop's recv buffers are out of the kernel's
        ring, held for transports' runs not delivered yet: the turn that
        reaped them delivers them, or the next wait gives them back."""
        return self.held

    @property
    def ring(self):
        """The loop's ``fastio.uring.Ring``. Requests prepared on it with a
        ``user_data`` other than None are submitted by the loop's next wait
        (no system call of their own) and their completions go to the
        handler of :meth:`set_completion_handler`."""
        return self.lring

    def set_completion_handler(self, handler):
        """Hand the completions of the requests others put on the loop's ring
        to ``handler(completions)``, in the loop's turn, right after its wait:
        ``completions`` is a list of ``fastio.uring.Completion``, and the
        handler removes each from the list once it has taken it (what it
        leaves, because it raised, say, is handed in again in the next
        turn). None (the default) drops them."""
        if handler is not None and not callable(handler):
            raise TypeError(f"the completion handler must be callable or None, not {type(handler).__name__}")
        self.on_complete = handler

    cdef int watch(self, FdEntry entry, uint32_t events) except -1:
        entry.events = events
        if entry.recv is not None and (<RecvState>entry.recv).entry is entry:
            (<RecvState>entry.recv).reading = bool(events & EPOLLIN)
        if not entry.dirty:
            self.dirty.append(entry)
            entry.dirty = True
        return 0

    cdef int rewatch(self, FdEntry entry) except -1:
        entry.armed_events = 0      # the armed poll may be on another file: arm a new one
        return self.watch(entry, entry.events)

    cdef int detach_recv(self, FdEntry entry) except -1:
        """A reader that is not this recv's takes the fd: stop the recv now."""
        cdef RecvState st = entry.recv
        entry.recv = None
        if st is not None and st.entry is entry:
            st.entry = None
            st.reading = False
            if st.armed_ud:
                self.cancel(FIO_OP_ASYNC_CANCEL, st.armed_ud)
                st.armed_ud = 0
        return 0

    cdef int arm(self) except -1:
        """Queue the poll and recv changes of this turn."""
        cdef FdEntry entry
        cdef list dirty = list(self.dirty)
        cdef Py_ssize_t i = 0
        del self.dirty[:]       # (the same list object: the ring appends to it)
        try:
            for i in range(len(dirty)):
                self.arm_one(<FdEntry>dirty[i])
        except BaseException:
            # Not lost: the entries from the one that raised on are armed next turn.
            for entry in dirty[i:]:
                if not entry.dirty:
                    entry.dirty = True
                    self.dirty.append(entry)
            raise
        return 0

    cdef int arm_one(self, FdEntry entry) except -1:
        cdef uint32_t idx, want = entry.events
        cdef fio_io_uring_sqe *sqe
        cdef RecvState st
        entry.dirty = False
        if entry.recv is not None:
            st = entry.recv
            if st.entry is not entry:
                entry.recv = None       # a later entry of the fd has the reader now
            else:
                want &= ~EPOLLIN        # reads are the recv's, not a poll's
                if not st.reading:
                    if st.armed_ud:
                        self.cancel(FIO_OP_ASYNC_CANCEL, st.armed_ud)
                        st.armed_ud = 0
                elif (not st.armed_ud and not st.ended
                        and st.transport._sock.fileno() == entry.fd):
                    # (A socket closed under its transport gets no recv on
                    # its number, which may name another file by now.)
                    idx = self.lring.new_slot(st, 0, False)
                    self.lring.table.at(idx).group = RECV_GROUP
                    self.lring.bufs.inflight += 1
                    sqe = self.lring.sqe_for(idx)
                    fio_prep_recv_multishot(sqe, entry.fd, RECV_GROUP, 0)
                    st.armed_ud = self.lring.finish(idx, sqe, 0)
        if entry.armed_ud:
            if want and entry.armed_events == want:
                return 0        # armed with exactly these events
            self.cancel(FIO_OP_POLL_REMOVE, entry.armed_ud)
            entry.armed_ud = 0
        if want:
            idx = self.lring.new_slot(entry, 0, False)
            sqe = self.lring.sqe_for(idx)
            fio_prep_poll_add(sqe, entry.fd, want, 0)
            entry.armed_ud = self.lring.finish(idx, sqe, 0)
            entry.armed_events = want
        return 0

    cdef int cancel(self, uint8_t op, uint64_t target) except -1:
        cdef uint32_t idx = self.lring.new_slot(None, 0, False)
        cdef fio_io_uring_sqe *sqe = self.lring.sqe_for(idx)
        fio_prep_target(sqe, op, -1, target, 0)
        self.lring.finish(idx, sqe, 0)
        return 0

    cdef int wait(self, int64_t timeout_ns, list fired) except -1:
        cdef int ret
        cdef uint32_t pending, polled
        cdef FdEntry e
        cdef RecvState st
        while self.holding:
            # Runs not delivered in the turn that reaped them (a paused or
            # closed transport, a reader removed): their bytes into acc, the
            # buffers back to the ring before the kernel is entered.
            st = self.holding[-1]
            st.spill()
            self.holding.pop()
        self.arm()
        if self.backlogged:
            for obj in self.backlogged:
                fire(fired, <FdEntry>obj, POLLIN)
            del self.backlogged[:]
            timeout_ns = 0
        fio_ring_flush_sq_to(&self.lring.ring, self.lring.ring.sq.sqe_tail)
        pending = fio_ring_sq_ready(&self.lring.ring)
        if pending or timeout_ns != 0:
            ret = self.lring.enter(pending, 0 if timeout_ns == 0 else 1, FIO_IORING_ENTER_GETEVENTS,
                                  timeout_ns)
            if ret == -EINTR:
                PyErr_CheckSignals()
            elif ret < 0 and ret != -ETIME and ret != -EBUSY and ret != -EAGAIN:
                raise_errno(-ret)
        self.lring.fired = fired
        try:
            self.lring.reap(self.completions)
        finally:
            self.lring.fired = None
        # The loop re-arms, after their callbacks, the polls that completed.
        for obj in fired:
            e = <FdEntry>obj
            polled = e.events & ~EPOLLIN if e.recv is not None else e.events
            if polled and not e.dirty:
                self.dirty.append(e)
                e.dirty = True
        # Last, once the engine's own state is whole: the handler is Python
        # code, and what it raises leaves the wait.
        if self.completions:
            if self.on_complete is None:
                del self.completions[:]
            else:
                self.on_complete(self.completions)
        return 0

    cdef int close_engine(self) except -1:
        cdef RecvState st
        del self.dirty[:]
        del self.backlogged[:]
        for st in self.holding:
            st.give_back()      # (never delivered now: the ring's memory goes)
        del self.holding[:]
        self.on_complete = None
        self.lring.close()
        return 0
