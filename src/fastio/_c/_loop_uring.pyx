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

from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EBUSY, EINTR, EINVAL, ETIME
from libc.stdint cimport int64_t, uint32_t, uint64_t

from fastio._c._common cimport raise_errno
from fastio._c._inflight cimport Slot
from fastio._c._loop_engine cimport Engine, FdEntry
from fastio._c._uring cimport (
    FIO_IORING_ENTER_GETEVENTS, FIO_OP_POLL_ADD, FIO_OP_POLL_REMOVE, fio_io_uring_cqe,
    fio_io_uring_sqe, fio_prep_poll_add, fio_prep_target, fio_ring_flush_sq_to, fio_ring_sq_ready,
)
from fastio._c._uring_core cimport UD_INTERNAL, UD_SKIP
from fastio._c.uring cimport Ring

from fastio._abi import uring as _abi

cdef extern from "<poll.h>":
    uint32_t POLLERR

cdef extern from "<errno.h>":
    int ECANCELED

cdef uint32_t SETUP_FLAGS = _abi.SETUP_SUBMIT_ALL | _abi.SETUP_COOP_TASKRUN | _abi.SETUP_TASKRUN_FLAG


cdef class LoopRing(Ring):
    """The loop's ring: its completions go to the loop's fd entries, with no
    Python object made per completion."""

    cdef list fired     # where fired fd entries go during the engine's reap (None otherwise)

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
        if s.tag == FIO_OP_POLL_ADD:
            entry = <FdEntry>obj
            if entry.armed_ud == ud:
                # What can raise (the append) comes before the slot is
                # released, so a CQE whose handling raised is kept by reap()
                # and handled again, never lost.
                if cqe.res != -ECANCELED and self.fired is not None:
                    entry.revents = <uint32_t>cqe.res if cqe.res > 0 else POLLERR
                    self.fired.append(entry)
                entry.armed_ud = 0
        self.slot_release(idx)
        return 0


cdef class UringEngine(Engine):
    """UringEngine(entries=256)

    The io_uring engine of ``fastio.asyncio.Loop``: ``loop.engine`` says
    ``"uring"``. Raises ``fastio.UnsupportedError`` (with the reason and the
    fix) where io_uring cannot be used."""

    cdef LoopRing lring
    cdef list dirty             # entries whose poll must be (re-)armed or removed
    cdef list unused            # reap()'s list of Completion objects: stays empty

    def __cinit__(self, entries=256):
        self.name = "uring"
        self.dirty = []
        self.unused = []
        try:
            self.lring = LoopRing(entries, flags=SETUP_FLAGS, cq_entries=4 * entries)
        except OSError as exc:
            if exc.errno != EINVAL:   # a kernel before 5.19 refuses a flag
                raise
            self.lring = LoopRing(entries, cq_entries=4 * entries)

    @property
    def ring(self):
        """The loop's ``fastio.uring.Ring``."""
        return self.lring

    cdef int watch(self, FdEntry entry, uint32_t events) except -1:
        entry.events = events
        if not entry.dirty:
            self.dirty.append(entry)
            entry.dirty = True
        return 0

    cdef int rewatch(self, FdEntry entry) except -1:
        entry.armed_events = 0      # the armed poll may be on another file: arm a new one
        return self.watch(entry, entry.events)

    cdef int arm(self) except -1:
        """Queue the poll changes of this turn."""
        cdef FdEntry entry
        cdef uint32_t idx
        cdef fio_io_uring_sqe *sqe
        cdef list dirty = self.dirty
        self.dirty = []
        for entry in dirty:
            entry.dirty = False
            if entry.armed_ud:
                if entry.events and entry.armed_events == entry.events:
                    continue        # armed with exactly these events
                idx = self.lring.new_slot(None, 0, False)
                sqe = self.lring.sqe_for(idx)
                fio_prep_target(sqe, FIO_OP_POLL_REMOVE, -1, entry.armed_ud, 0)
                self.lring.finish(idx, sqe, 0)
                entry.armed_ud = 0
            if entry.events:
                idx = self.lring.new_slot(entry, 0, False)
                sqe = self.lring.sqe_for(idx)
                fio_prep_poll_add(sqe, entry.fd, entry.events, 0)
                entry.armed_ud = self.lring.finish(idx, sqe, 0)
                entry.armed_events = entry.events
        return 0

    cdef int wait(self, int64_t timeout_ns, list fired) except -1:
        cdef int ret
        cdef uint32_t pending
        self.arm()
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
            self.lring.reap(self.unused)
        finally:
            self.lring.fired = None
        # The loop re-arms, after their callbacks, the polls that completed.
        for entry in fired:
            if (<FdEntry>entry).events and not (<FdEntry>entry).dirty:
                self.dirty.append(entry)
                (<FdEntry>entry).dirty = True
        return 0

    cdef int close_engine(self) except -1:
        self.dirty = []
        self.lring.close()
        return 0
