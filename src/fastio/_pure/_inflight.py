"""The in-flight table of the pure backend, for ``uring.Ring`` and
``aio.Context``: the pure twin of ``fastio._c._inflight``.

One slot per request the kernel may still touch. Until its owner releases it
after the kernel's last completion for it, a slot holds the ``Py_buffer``
views of every buffer the kernel may read or write (pinned with
``PyObject_GetBuffer`` through ``ctypes.pythonapi``, so dropping the last
Python reference to such a buffer changes nothing, and a ``bytearray`` in
flight cannot be resized), the ctypes memory the kernel reads by pointer
(iovecs, timespecs, paths) and the caller's ``user_data``. The kernel's id
for slot ``i`` is ``(gen << 32) | i``; the generation is bumped on every
release (31 bits, wrapping to 1, never 0: the top bit is the owners' batch
flag), so an id already reaped matches nothing.

Releasing a slot may run Python code (a buffer exporter's release, the
finalizer of a last reference); the table is consistent before that, so such
code may use the table's owner again. The table takes no lock: its owner
serialises calls (``Ring`` and ``Context`` hold their own lock around it).

Signals: a handler runs, and may raise, only where the interpreter checks
for one, never inside a *run*: straight-line code with no call and no
branch (no ``if``, ``and``, ``or`` or conditional expression); nor does
another thread get the GIL there. Measured with an interval timer raising
into such runs: CPython 3.11-3.13 check at calls (after a C function
returns, at a Python function's entry) and at a loop's jump back; 3.10 also
at every jump, and after a Python function returns; 3.9 between almost any
two bytecodes (70% of 20,000 runs of six attribute stores cut, against none
on 3.10-3.13), so there a raising handler can still leave a slot taken
(never released under the kernel: the orders kept below see to that) or a
completion handed out twice. CPython 3.13 has a bug of its own
(gh-130279): the jump back of a ``while cond:`` loop, or of a loop whose
body ends in an ``if``, lies outside the enclosing ``try`` or ``with``, so
a handler raising there skips its ``except``, ``finally`` or lock release;
such loops are written ``while True: if not cond: break``, or moved into a
function of their own. ``release`` frees a slot in such a run, then
gives its views back one at a time from a list the next release resumes, so
an exception there never leaves a slot half released or a view pinned for
ever. An owner that must count a completion together with its own record of
it (``aio.Context``: the event marked handled, the completion stored) does
that in a call-free run of its own: ``pending`` lowered and, once the slot is
done, ``(idx, gen)`` added to ``due``; ``settle()`` then releases it, and
does so later if a handler interrupts it first.
"""

from __future__ import annotations

import ctypes

from fastio._abi import uring as _uring_abi

MAX_VIEWS = 1024            # buffers per vectored request (the kernel's UIO_MAXIOV)
_MAX_SLOTS = 0x7FFFFFFF     # indices stay clear of the owners' reserved ids (UD_INTERNAL ...)
_GEN_MAX = 0x7FFFFFFF
_PYBUF_SIMPLE = 0
_PYBUF_WRITABLE = 1

# Tables given up on by close() (a request outlived the drain): the kernel may
# still write into what their slots hold, so all of it is kept for ever.
_leaked: list = []


class _PyBuffer(ctypes.Structure):
    """CPython's Py_buffer (obj as a raw pointer: the reference it holds is
    managed by PyObject_GetBuffer/PyBuffer_Release, not by ctypes)."""

    _fields_ = [
        ("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p), ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t), ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p), ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p), ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None


def pin(obj, writable: bool) -> _PyBuffer:
    """A pinned view of obj's buffer (C-contiguous), held by no slot (a
    registered buffer's). A read-only buffer where the kernel must write is a
    TypeError, as CPython's "w*" converter says."""
    return Slot(None).pin(obj, writable)


def unpin(view: _PyBuffer) -> None:
    """Give back a view pin() took (exactly once)."""
    _release_buffer(ctypes.byref(view))


def results_view(results, n: int) -> memoryview:
    """A batch's results buffer: writable, C-contiguous, native signed 32-bit
    items ('i', or 'l' where that is 4 bytes; '@' or '=' byte order), at least
    n of them; anything else is a TypeError (as in the compiled twin)."""
    try:
        rmv = memoryview(results)
    except TypeError:
        rmv = None
    if rmv is not None:
        fmt = rmv.format[1:] if rmv.format[:1] in ("@", "=") else rmv.format
        if (not rmv.readonly and rmv.c_contiguous and rmv.itemsize == 4 and fmt in ("i", "l")
                and rmv.nbytes >= n * 4):
            return rmv
        rmv.release()
    raise TypeError("results must be a writable int32 buffer (array('i')) of len(offsets)")


class Slot:
    """One request. The table owns gen and the free list, and sets pending
    (owners count completions off it: count_done(), or their own call-free
    run, see ``due``); the rest is filled by the owner while the slot is
    taken and cleared on release (payload excepted: it is made once per slot
    and kept across reuse)."""

    __slots__ = ("gen", "pending", "user_data", "tag", "batch", "batch_owned", "fixed", "group",
                 "views", "keep", "mem", "results", "payload")

    def __init__(self, payload):
        self.gen = 1              # bumped on every release: stale ids never match
        self.pending = 0          # completions still expected; 0 = free
        self.user_data = None     # the caller's, handed back in its Completion
        self.tag = 0              # the owner's: the opcode (Ring), the submit state (Context)
        self.batch = False        # a read_batch/write_batch slot
        self.batch_owned = False  # its batch call is still running: release waits for it
        self.fixed = False        # Ring: uses a registered buffer
        self.group = -1           # Ring: provided-buffer group, -1 for none
        self.views: list = []     # pinned _PyBuffer views, released with the slot
        self.keep: list = []      # objects whose memory the kernel reads (paths, timespecs ...)
        self.mem = None           # pin_vector()'s iovec array, for owners that read it back
        self.results = None       # batch: where each request's result goes
        self.payload = payload    # the owner's per-slot object (Context: its iocb)

    def pin(self, obj, writable: bool) -> _PyBuffer:
        """Pin obj's buffer with the slot; returns the view (buf, len). The
        view joins the slot before it is filled, so a raise anywhere here
        leaves no pin outside the slot (an unfilled view gives back nothing:
        PyBuffer_Release ignores a view without obj)."""
        view = _PyBuffer()
        self.views.append(view)
        if not writable:
            _get_buffer(obj, ctypes.byref(view), _PYBUF_SIMPLE)
            return view
        try:
            _get_buffer(obj, ctypes.byref(view), _PYBUF_WRITABLE)
        except BufferError:
            raise TypeError(f"a writable bytes-like object is required, not '{type(obj).__name__}'") from None
        return view

    def pin_vector(self, buffers, writable: bool):
        """Pin every buffer of the sequence and build the iovec array the
        kernel reads (kept in ``mem``); returns it."""
        objs = list(buffers)
        if not 1 <= len(objs) <= MAX_VIEWS:
            raise ValueError(f"give between 1 and {MAX_VIEWS} buffers")
        views = [self.pin(obj, writable) for obj in objs]
        iov = (_uring_abi.Iovec * len(views))(*[(v.buf, v.len) for v in views])
        self.mem = iov
        return iov

    def pin_results(self, results, n: int) -> None:
        """A batch's per-request results: the caller's int32 buffer (checked
        by results_view(), pinned with the slot so requests still in flight
        after an interrupt stay safe), or, when results is None, a list."""
        if results is None:
            self.results = [0] * n
            return
        rmv = results_view(results, n)
        self.keep.append(rmv)
        self.results = rmv.cast("B").cast("i")
        self.keep.append(self.results)


class InflightTable:
    """The slots of one Ring or Context.

    ``payload``, if given, is called once for each new slot; its result
    stays with the slot for the table's life (memory at a fixed address that
    the kernel names requests by, like an iocb).
    """

    __slots__ = ("slots", "inflight", "leaked", "due", "allocs", "last", "_free", "_payload", "_unpins",
                 "_settling", "_unpinning")

    def __init__(self, payload=None):
        self.slots: list[Slot] = []   # slot i at [i]; indexed directly by owners on hot paths
        self.inflight = 0             # slots taken
        self.leaked = False           # given up on: every slot and buffer is kept for ever
        self.due: list = []           # (idx, gen) of slots their owner found done: settle() releases them
        self.allocs = 0               # alloc() calls so far, and the index the last one took: an
        self.last = -1                # owner whose call was cut before it stored the index finds it here
        self._free: list[int] = []    # free indices, the last released taken first
        self._payload = payload
        self._unpins: list = []       # views of released slots not given back yet
        self._settling = self._unpinning = False

    def alloc(self, batch: bool = False) -> int:
        """Take a free slot (pending = 1, the owner's fields cleared, gen
        kept), growing the table when needed; returns its index. A batch slot
        starts with pending = 0 and its batch call owning it (release waits
        until the batch clears ``batch_owned``). Growing allocates: a finalizer the garbage collector
        runs in here finds the table consistent."""
        free = self._free
        pending = 0 if batch else 1
        if free:
            idx = free[-1]
            slot = self.slots[idx]
            taken, grown = free, ()
        else:
            if len(self.slots) >= _MAX_SLOTS:
                raise MemoryError("too many requests in flight")
            slot = Slot(self._payload() if self._payload is not None else None)
            idx = len(self.slots)
            taken, grown = [], (slot,)
        # Taken in one run (see the module docstring), up to the caller's
        # store of idx: off the free list, or appended to the table.
        del taken[-1:]
        self.slots += grown
        slot.pending = pending
        slot.batch = slot.batch_owned = batch
        self.inflight += 1
        self.allocs += 1
        self.last = idx
        return idx

    def at(self, idx: int):
        """Slot idx, or None beyond the table."""
        return self.slots[idx] if 0 <= idx < len(self.slots) else None

    def lookup(self, ident: int):
        """The taken slot an id names, or None: beyond the table, free, or of
        another generation (a stale id, or one with the batch bit set)."""
        idx = ident & 0xFFFFFFFF
        if idx >= len(self.slots):
            return None
        slot = self.slots[idx]
        if not slot.pending or (ident >> 32) != slot.gen:
            return None
        return slot

    def count_done(self, idx: int) -> bool:
        """One of slot idx's expected completions arrived (or will never
        come). True when it was the last and no batch call owns the slot any
        more: the owner releases it now."""
        slot = self.slots[idx]
        slot.pending -= 1
        return not slot.pending and not slot.batch_owned

    def release(self, idx: int) -> None:
        """Free slot idx and give back everything it holds. The slot is freed
        in one call-free run (a raising signal handler finds it taken or
        free), the table consistent before anything that can run Python code
        (an exporter's release, the finalizer of a last reference). Nothing
        is released once the table is leaked."""
        if self.leaked:
            return
        slot = self.slots[idx]
        fresh_views, fresh_keep, freed = [], [], (idx,)   # allocated (the GC may run) before any change
        gen = slot.gen + 1 if slot.gen < _GEN_MAX else 1
        views, keep, user_data = slot.views, slot.keep, slot.user_data
        mem, results = slot.mem, slot.results
        slot.views, slot.keep = fresh_views, fresh_keep
        slot.user_data = slot.mem = slot.results = None
        slot.tag = 0
        slot.batch = slot.batch_owned = slot.fixed = False
        slot.group = -1
        slot.pending = 0
        slot.gen = gen
        self._free += freed
        self.inflight -= 1
        self._unpins += views
        self._unpin_all()
        del views, keep, user_data, mem, results   # finalizers run now, with the table consistent

    def _unpin_all(self) -> None:
        """Give back the views released slots left, one at a time; after a
        raising signal handler the next call goes on (a view given back
        twice is harmless: PyBuffer_Release clears it). Python code an
        exporter runs meanwhile that releases a slot leaves its views to the
        call already running (none is given back while being given back)."""
        if self._unpinning:
            return
        try:
            self._unpinning = True
            unpins = self._unpins
            while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                if not unpins:
                    break
                _release_buffer(ctypes.byref(unpins[-1]))   # unpin(), inlined: once per request
                unpins.pop()
        finally:
            self._unpinning = False

    def settle(self) -> None:
        """Release the slots listed in ``due`` that are done: still taken at
        that generation, nothing pending, no batch call owning them (a slot
        listed twice, or taken again since, is left alone), and give back
        the views an interrupted release left. After a raising signal
        handler the next call goes on."""
        if self._settling:
            return
        try:
            self._settling = True
            due = self.due
            while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                if not due:
                    break
                idx, gen = due[-1]
                slot = self.slots[idx]
                if slot.gen == gen and not slot.pending and not slot.batch_owned:
                    self.release(idx)
                due.pop()
            self._unpin_all()
        finally:
            self._settling = False

    def release_all(self) -> None:
        """Release every slot still taken (the owner knows the kernel is done
        with them, or never saw them)."""
        self.settle()
        for idx, slot in enumerate(self.slots):
            if slot.pending or slot.batch_owned:
                self.release(idx)
        self._unpin_all()

    def leak(self) -> None:
        """Give up on the table (the kernel may still write into what its
        slots hold): keep every slot, buffer and object for ever."""
        self.leaked = True
        _leaked.append(self)
