# cython: language_level=3, embedsignature=True
"""Drop-in replacements for the stdlib ``selectors`` classes, with the
fd-to-key table and the result list built in C.

Behaviour follows ``Lib/selectors.py`` case by case (messages included):
``register`` validates events, rejects a second registration of an fd with
``KeyError`` and rolls its bookkeeping back when the kernel refuses the fd;
``unregister`` of an fd that was closed meanwhile still succeeds; ``select``
maps ``EPOLLERR``/``EPOLLHUP`` (``POLLNVAL`` ...) to both read and write and
masks the result with the key's events; ``close`` drops every key and makes
``get_map()`` return None. The classes are virtual subclasses of
``selectors.BaseSelector``.

One difference: ``select(timeout)`` waits exactly ``timeout`` seconds
(nanoseconds through ``epoll_pwait2``/``ppoll``/``pselect``) where the stdlib
rounds up to the next millisecond.

``EpollSelector`` accepts ``flags`` in ``register``/``modify``: any of
``EPOLLET`` (edge-triggered), ``EPOLLONESHOT`` (disarmed after one event;
``modify`` re-arms it even with unchanged events), ``EPOLLEXCLUSIVE`` (wake
only one of several epoll sets waiting on the fd; since the kernel refuses
``EPOLL_CTL_MOD`` for it, ``modify`` re-adds the fd) and ``EPOLLWAKEUP``.
"""

import selectors as _std_selectors
import math as _math
from abc import ABCMeta as _ABCMeta
from collections.abc import Mapping as _Mapping

from cpython.dict cimport PyDict_GetItem
from cpython.mem cimport PyMem_Free
from cpython.ref cimport PyObject
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_Check, PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.long cimport PyLong_AsLong, PyLong_AsLongAndOverflow
from libc.errno cimport EINTR
from libc.limits cimport INT_MAX
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from fastio._c._common cimport fileobj_to_fd, deadline_for, raise_errno, remaining_after_eintr, timeout_to_ns
from fastio._c._sys cimport (
    EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, FD_CLR, FD_ISSET, FD_SET, FD_SETSIZE, FD_ZERO,
    epoll_event, fd_set, fio_ns_to_timespec, fio_sys_pselect, pollfd, timespec,
)
from fastio._c.epoll cimport Epoll
from fastio._c.poll cimport Poll

cdef extern from "<sys/epoll.h>":
    uint32_t EPOLLIN, EPOLLOUT, EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLWAKEUP

cdef extern from "<poll.h>":
    unsigned short POLLIN, POLLOUT

cdef object SelectorKey = _std_selectors.SelectorKey

cdef extern from *:
    """
    /* SelectorKey(fileobj, fd, events, data) without the tuple.__new__ wrapper:
     * a namedtuple adds no fields, so its instance is a tuple of 4 allocated
     * by its own type, as tuple_subtype_new does. */
    static PyObject *fio_selector_key(PyObject *cls, PyObject *fileobj, PyObject *fd,
                                      PyObject *events, PyObject *data)
    {
        PyObject *key = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 4);
        if (key == NULL)
            return NULL;
        Py_INCREF(fileobj);
        PyTuple_SET_ITEM(key, 0, fileobj);
        Py_INCREF(fd);
        PyTuple_SET_ITEM(key, 1, fd);
        Py_INCREF(events);
        PyTuple_SET_ITEM(key, 2, events);
        Py_INCREF(data);
        PyTuple_SET_ITEM(key, 3, data);
        return key;
    }
    """
    object fio_selector_key(object cls, object fileobj, object fd, object events, object data)

cdef extern from *:
    """
    /* Drop the instance dict Cython's tp_new made: CPython makes one on the
     * first attribute set (and its __dict__ getter on first read), and with
     * none the interpreter's attribute cache serves sel.select(...) as for a
     * dict-less type (a present dict, even empty, turns that off on 3.12+). */
    static void fio_drop_instance_dict(PyObject *self)
    {
        Py_ssize_t offset = Py_TYPE(self)->tp_dictoffset;
        if (offset > 0)
            Py_CLEAR(*(PyObject **)((char *)self + offset));
    }
    """
    void fio_drop_instance_dict(object self)

cdef enum:
    EVENT_READ = 1
    EVENT_WRITE = 2
    STACK_EVENTS = 256
    # fds below this have a slot in the fd-indexed table; others use the dict.
    SLOT_LIMIT = 1 << 20

cdef uint32_t EPOLL_FLAGS = EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP


cdef inline object key_item(object key, Py_ssize_t i):
    """``key[i]`` of a SelectorKey. Every key is a 4-tuple made by
    fio_selector_key; read as a tuple, not through the namedtuple type's
    sequence slot, which looks ``__getitem__`` up by name on each call."""
    if PyTuple_Check(key) and PyTuple_GET_SIZE(key) == 4:
        return <object>PyTuple_GET_ITEM(key, i)
    return key[i]


cdef inline Py_ssize_t slot_index(object fd) except -2:
    """fd (a registered Python int, >= 0) as an index into the fd-indexed
    table, or -1 when it is too large to have a slot."""
    cdef Py_ssize_t cfd
    try:
        cfd = fd
    except OverflowError:
        return -1
    return cfd if cfd < SLOT_LIMIT else -1


cdef inline int selector_mask(object events) except -1:
    """``events`` reduced to EVENT_READ|EVENT_WRITE with Python's ``&``, as the
    stdlib computes its poller events (so a non-int raises its TypeError and
    any int, negative or huge, works). An int that fits a C long takes the
    same bits in C (two's complement, as Python's ``&`` on negative ints)."""
    cdef int overflow = 0
    cdef long v
    if type(events) is int:
        v = PyLong_AsLongAndOverflow(events, &overflow)
        if not overflow:
            return <int>(v & (EVENT_READ | EVENT_WRITE))
    return (EVENT_READ if events & EVENT_READ else 0) | (EVENT_WRITE if events & EVENT_WRITE else 0)


class _SelectorMapping(_Mapping):
    """Read-only mapping of file objects to selector keys; iterates over fds."""

    __slots__ = ("_selector",)

    def __init__(self, selector):
        self._selector = selector

    def __len__(self):
        return len(self._selector._fd_to_key)

    def get(self, fileobj, default=None):
        fd = self._selector._fileobj_lookup(fileobj)
        return self._selector._fd_to_key.get(fd, default)

    def __getitem__(self, fileobj):
        fd = self._selector._fileobj_lookup(fileobj)
        key = self._selector._fd_to_key.get(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        return key

    def __iter__(self):
        return iter(self._selector._fd_to_key)


cdef class _BaseSelector:
    """The bookkeeping shared by every selector; subclasses add the kernel calls.

    ``_fd_to_key`` (fd -> key, in registration order) is the table the stdlib
    keeps. Beside it, ``_slots`` is a list indexed by fd so that ``select()``
    finds a ready fd's key without making an int object or hashing: each entry
    is None or ``[key, pair0, pair1, pair2, pair3]``, where ``pairN`` is the
    ``(key, N)`` tuple that ``select()`` returns for ready events N, made on
    first use and reused (tuples are immutable). A Python list, not a C
    array, so the garbage collector sees these references.

    Instances take attributes, as the stdlib's do (``__dict__``): a caller
    may replace ``register``/``unregister`` on one selector, and ``modify``
    calls them exactly where the stdlib's does (``SelectSelector`` on an
    events change; never on the shortcut, nor when the kernel refuses).
    """

    cdef dict __dict__
    cdef readonly dict _fd_to_key
    cdef object _map
    cdef list _slots

    def __cinit__(self):
        fio_drop_instance_dict(self)
        self._fd_to_key = {}
        self._map = _SelectorMapping(self)
        self._slots = []

    # -- the fd-indexed table --------------------------------------------------
    cdef int _slot_set(self, object fd, object key, int mask) except -1:
        """Give fd its key and EVENT_* mask (dropping any cached pairs)."""
        cdef Py_ssize_t cfd = slot_index(fd), size
        if cfd < 0:
            return 0
        size = PyList_GET_SIZE(self._slots)
        if cfd >= size:
            self._slots.extend([None] * (max(cfd + 1, 2 * size) - size))
        self._slots[cfd] = [key, mask, None, None, None, None]
        return 0

    cdef int _slot_clear(self, object fd) except -1:
        cdef Py_ssize_t cfd = slot_index(fd)
        if 0 <= cfd < PyList_GET_SIZE(self._slots):
            self._slots[cfd] = None
        return 0

    cdef object _ready_pair(self, int fd, int ready):
        """The ``(key, ready & key.events)`` pair for a ready fd, or None if the
        fd is not registered (any more). ``ready`` is EVENT_READ|EVENT_WRITE.

        The slot is held by a strong reference before anything is allocated:
        an allocation may run the garbage collector, and a ``__del__`` there
        may unregister the fd and drop the slot."""
        cdef PyObject *pair
        cdef PyObject *found
        cdef list entry
        cdef long events
        if fd < PyList_GET_SIZE(self._slots):
            entry = <object>PyList_GET_ITEM(self._slots, fd)
            if entry is None:
                return None
            events = ready & PyLong_AsLong(<object>PyList_GET_ITEM(entry, 1))
            pair = PyList_GET_ITEM(entry, 2 + events)
            if <object>pair is not None:
                return <object>pair
            made = (entry[0], events)
            entry[2 + events] = made
            return made
        found = PyDict_GetItem(self._fd_to_key, fd)
        if found == NULL:
            return None
        key = <object>found
        return (key, ready & key_item(key, 2))

    # -- the kernel side, overridden by each selector ----------------------------
    # fd is the registered Python int; mask is EVENT_READ|EVENT_WRITE (0-3).
    cdef int _kernel_add(self, object fd, int mask, uint32_t flags) except -1:
        return 0

    cdef int _kernel_remove(self, object fd) except -1:
        return 0

    cdef int _kernel_modify(self, object fd, int mask, object flags) except -1:
        return 0

    cdef bint _kernel_modify_needed(self, object fd, object old_events, object events,
                                    object flags) except -1:
        return events != old_events

    # -- the stdlib's _BaseSelectorImpl and _PollLikeSelector ----------------------
    def _fileobj_lookup(self, fileobj):
        """The fd of ``fileobj``; for a closed file object still registered, the fd
        it was registered with."""
        return self._lookup_fd(fileobj)

    cdef object _lookup_fd(self, object fileobj):
        """``_fileobj_lookup`` without the Python-level method call."""
        if type(fileobj) is int and fileobj >= 0:
            return fileobj
        try:
            return fileobj_to_fd(fileobj)
        except ValueError:
            for key in self._fd_to_key.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    cdef object _register(self, object fileobj, object events, object data, uint32_t flags):
        cdef int mask, overflow = 0
        cdef long v
        if type(events) is int:     # the stdlib's test below, in C
            v = PyLong_AsLongAndOverflow(events, &overflow)
            if overflow or v == 0 or v & ~(EVENT_READ | EVENT_WRITE):
                raise ValueError(f"Invalid events: {events!r}")
        elif not events or events & ~(EVENT_READ | EVENT_WRITE):
            raise ValueError(f"Invalid events: {events!r}")
        fd = self._lookup_fd(fileobj)
        if PyDict_GetItem(self._fd_to_key, fd) != NULL:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = fio_selector_key(SelectorKey, fileobj, fd, events, data)
        mask = selector_mask(events)
        self._kernel_add(fd, mask, flags)
        self._fd_to_key[fd] = key
        self._slot_set(fd, key, mask)
        return key

    def register(self, fileobj, events, data=None):
        """Register a file object for EVENT_READ and/or EVENT_WRITE; return its key.

        :raises ValueError: invalid events or file object.
        :raises KeyError: the file object (its fd) is already registered.
        :raises OSError: the kernel refused the fd (closed, unsupported).
        """
        return self._register(fileobj, events, data, 0)

    cdef object _forget(self, object fileobj):
        """Drop fileobj's key from the tables (not the kernel); return it."""
        fd = self._lookup_fd(fileobj)
        try:
            key = self._fd_to_key.pop(fd)
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        self._slot_clear(fd)
        return key

    def unregister(self, fileobj):
        """Unregister a file object (even one closed since); return its key.

        :raises KeyError: the file object is not registered.
        """
        key = self._forget(fileobj)
        try:
            self._kernel_remove(key_item(key, 1))
        except OSError:
            # The fd was closed since it was registered.
            pass
        return key

    cdef object _modify(self, object fileobj, object events, object data, object flags):
        """``_PollLikeSelector.modify``: the kernel registration changes in place;
        events are not validated (as in the stdlib) but reduced to a mask
        before anything changes, so a bad type leaves the key as it was."""
        cdef PyObject *found
        cdef int mask
        fd = self._lookup_fd(fileobj)
        found = PyDict_GetItem(self._fd_to_key, fd)
        if found == NULL:
            raise KeyError(f"{fileobj!r} is not registered")
        key = <object>found
        if self._kernel_modify_needed(fd, key_item(key, 2), events, flags):
            mask = selector_mask(events)
            try:
                self._kernel_modify(fd, mask, flags)
            except BaseException:
                # Not through self.unregister: the stdlib calls the base
                # class's here (super().unregister), never an override.
                _BaseSelector.unregister(self, fileobj)
                raise
        elif data != key_item(key, 3):
            mask = selector_mask(events)
        else:
            return key
        key = fio_selector_key(SelectorKey, key_item(key, 0), fd, events, data)
        self._fd_to_key[fd] = key
        self._slot_set(fd, key, mask)
        return key

    def modify(self, fileobj, events, data=None):
        """Change the events and data of a registered file object; return its key.

        :raises KeyError: the file object is not registered.
        """
        return self._modify(fileobj, events, data, None)

    def close(self):
        """Forget every registration; ``get_map()`` returns None afterwards."""
        self._fd_to_key.clear()
        self._slots = []
        self._map = None

    def get_key(self, fileobj):
        """The key of a registered file object.

        :raises KeyError: it is not registered.
        :raises RuntimeError: the selector is closed.
        """
        mapping = self._map
        if mapping is None:
            raise RuntimeError("Selector is closed")
        try:
            return mapping[fileobj]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def get_map(self):
        """A read-only mapping of file objects to keys, or None once closed."""
        return self._map

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


cdef int64_t select_timeout_ns(object timeout) except? -2:
    """``select(timeout)``'s seconds as nanoseconds: None waits forever (-1),
    zero or less polls (0), anything else is exact (rounded up to 1 ns)."""
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    return timeout_to_ns(timeout, 1000000000)


cdef uint32_t check_epoll_flags(object flags) except? 0xFFFFFFFF:
    """The extra epoll flags a selector registration may carry, or ValueError."""
    cdef int overflow = 0
    cdef long v
    if type(flags) is int:
        v = PyLong_AsLongAndOverflow(flags, &overflow)
        if not overflow and v >= 0 and not (v & ~<long>EPOLL_FLAGS):
            return <uint32_t>v
    if not isinstance(flags, int) or flags < 0 or flags & ~EPOLL_FLAGS:
        raise ValueError(f"invalid epoll flags: {flags!r} (allowed: EPOLLET, "
                         "EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLWAKEUP)")
    return flags


cdef inline int ready_events(uint32_t kernel_events, uint32_t read_bits, uint32_t write_bits) noexcept:
    """Kernel events to EVENT_READ|EVENT_WRITE as the stdlib maps them: any bit
    but the write bit means readable, any bit but the read bit writable."""
    return ((EVENT_WRITE if kernel_events & ~read_bits else 0)
            | (EVENT_READ if kernel_events & ~write_bits else 0))


cdef class EpollSelector(_BaseSelector):
    """EpollSelector()

    ``selectors.EpollSelector`` with the hot paths in C, plus the epoll flags
    ``EPOLLET``, ``EPOLLONESHOT``, ``EPOLLEXCLUSIVE`` and ``EPOLLWAKEUP`` as
    ``flags`` of ``register`` and ``modify``.
    """

    cdef Epoll _epoll
    cdef dict _flags

    def __cinit__(self):
        self._epoll = Epoll()
        self._flags = {}

    def fileno(self):
        """The epoll fd."""
        return self._epoll.fileno()

    cdef int _kernel_add(self, object fd, int mask, uint32_t flags) except -1:
        cdef int cfd = fd
        cdef uint32_t kernel_events = flags
        if mask & EVENT_READ:
            kernel_events |= EPOLLIN
        if mask & EVENT_WRITE:
            kernel_events |= EPOLLOUT
        self._epoll.ctl(EPOLL_CTL_ADD, cfd, kernel_events, <uint64_t><uint32_t>cfd)
        if flags:
            self._flags[fd] = flags
        return 0

    cdef int _kernel_remove(self, object fd) except -1:
        if self._flags:
            self._flags.pop(fd, None)
        self._epoll.ctl(EPOLL_CTL_DEL, fd, 0, 0)
        return 0

    cdef bint _kernel_modify_needed(self, object fd, object old_events, object events,
                                    object flags) except -1:
        cdef object old_flags = self._flags.get(fd, 0) if self._flags else 0
        if events != old_events:
            return True
        if flags is not None and flags != old_flags:
            return True
        # A one-shot registration is re-armed by every modify.
        return bool(old_flags & EPOLLONESHOT)

    cdef int _kernel_modify(self, object fd, int mask, object flags) except -1:
        cdef uint32_t old_flags = self._flags.get(fd, 0) if self._flags else 0
        cdef uint32_t new_flags = old_flags if flags is None else flags
        cdef uint32_t kernel_events = new_flags
        cdef int cfd = fd
        if (new_flags | old_flags) & EPOLLEXCLUSIVE:
            # The kernel refuses EPOLL_CTL_MOD on an exclusive registration.
            self._kernel_remove(fd)
            self._kernel_add(fd, mask, new_flags)
            return 0
        if mask & EVENT_READ:
            kernel_events |= EPOLLIN
        if mask & EVENT_WRITE:
            kernel_events |= EPOLLOUT
        self._epoll.ctl(EPOLL_CTL_MOD, cfd, kernel_events, <uint64_t><uint32_t>cfd)
        if new_flags:
            self._flags[fd] = new_flags
        elif old_flags:
            del self._flags[fd]
        return 0

    def register(self, fileobj, events, data=None, *, flags=0):
        """Register a file object; ``flags`` adds EPOLLET, EPOLLONESHOT,
        EPOLLEXCLUSIVE or EPOLLWAKEUP to the kernel registration.

        :raises ValueError: invalid events, flags or file object.
        :raises KeyError: the file object is already registered.
        :raises OSError: the kernel refused the fd (``PermissionError`` for a
            regular file, ``EBADF`` for a closed fd).
        """
        return self._register(fileobj, events, data, check_epoll_flags(flags))

    def modify(self, fileobj, events, data=None, *, flags=None):
        """Change events and data; ``flags`` (None: keep) changes the epoll flags.
        With ``EPOLLONESHOT`` every call re-arms the registration.

        :raises KeyError: the file object is not registered.
        """
        if flags is not None:
            check_epoll_flags(flags)
        return self._modify(fileobj, events, data, flags)

    def select(self, timeout=None):
        """Wait until some registered file objects are ready or ``timeout``
        seconds pass (None: forever; 0 or less: do not wait).

        Returns a list of ``(key, events)``. A signal whose handler returns
        normally resumes the wait (PEP 475).
        """
        cdef int64_t timeout_ns
        cdef epoll_event stack_events[STACK_EVENTS]
        cdef epoll_event *events = stack_events
        cdef int maxevents = len(self._fd_to_key) or 1
        cdef int n, i, fd, ready
        cdef list result = []
        # The stdlib's order of errors: its own arithmetic on the timeout (a
        # TypeError for a non-number, math.ceil's error for inf and NaN),
        # then a closed epoll, then a timeout too large for the kernel.
        # (A C test on a float's double: this runs on every select().)
        if isinstance(timeout, float):
            if not isfinite(<double>timeout) and not <double>timeout <= 0:
                _math.ceil(timeout)     # NaN or +inf: the stdlib's ValueError or OverflowError
        elif timeout is not None and timeout <= 0:
            pass                        # (the comparison: a non-number's TypeError)
        self._epoll.check()
        timeout_ns = select_timeout_ns(timeout)
        if maxevents > STACK_EVENTS:
            events = <epoll_event *>malloc(maxevents * sizeof(epoll_event))
            if events == NULL:
                raise MemoryError()
        try:
            n = self._epoll.wait(events, maxevents, timeout_ns)
            for i in range(n):
                pair = self._ready_pair(<int><uint32_t>events[i].data.u64,
                                        ready_events(events[i].events, EPOLLIN, EPOLLOUT))
                if pair is not None:
                    result.append(pair)
            return result
        finally:
            if events != stack_events:
                free(events)

    def close(self):
        """Close the epoll fd and forget every registration."""
        self._epoll.close()
        self._flags.clear()
        _BaseSelector.close(self)


cdef class PollSelector(_BaseSelector):
    """PollSelector()

    ``selectors.PollSelector`` with the ``pollfd`` array kept in C.
    """

    cdef Poll _poll

    def __cinit__(self):
        self._poll = Poll()

    cdef int _kernel_add(self, object fd, int mask, uint32_t flags) except -1:
        self._poll.set_events(fd, (POLLIN if mask & EVENT_READ else 0)
                              | (POLLOUT if mask & EVENT_WRITE else 0))
        return 0

    cdef int _kernel_remove(self, object fd) except -1:
        self._poll.remove(fd)
        return 0

    cdef int _kernel_modify(self, object fd, int mask, object flags) except -1:
        return self._kernel_add(fd, mask, 0)

    def select(self, timeout=None):
        """Wait until some registered file objects are ready or ``timeout``
        seconds pass (None: forever; 0 or less: do not wait).

        Returns a list of ``(key, events)``.
        """
        cdef int64_t timeout_ns
        cdef Py_ssize_t nfds, i
        cdef int n
        cdef pollfd *fds
        cdef list result = []
        timeout_ns = select_timeout_ns(timeout)
        # A local reference: close() from another thread replaces self._poll
        # while this one waits in it.
        cdef Poll poll = self._poll
        fds = poll.snapshot(&nfds)
        try:
            n = poll.wait(fds, nfds, timeout_ns)
            i = 0
            while n > 0 and i < nfds:
                if fds[i].revents:
                    n -= 1
                    pair = self._ready_pair(fds[i].fd, ready_events(
                        <unsigned short>fds[i].revents, POLLIN, POLLOUT))
                    if pair is not None:
                        result.append(pair)
                i += 1
            return result
        finally:
            PyMem_Free(fds)

    def close(self):
        """Forget every registration."""
        self._poll = Poll()
        _BaseSelector.close(self)


cdef class SelectSelector(_BaseSelector):
    """SelectSelector()

    ``selectors.SelectSelector`` with its fd sets kept in C. File descriptors
    must be below ``FD_SETSIZE`` (1024): ``select()`` raises ValueError
    otherwise, as ``select.select`` does.
    """

    cdef fd_set readers
    cdef fd_set writers
    cdef int max_fd
    cdef Py_ssize_t out_of_range
    cdef Py_ssize_t too_big         # of which beyond a C int

    def __cinit__(self):
        FD_ZERO(&self.readers)
        FD_ZERO(&self.writers)
        self.max_fd = -1
        self.out_of_range = 0
        self.too_big = 0

    cdef int _kernel_add(self, object fd, int mask, uint32_t flags) except -1:
        cdef int cfd
        if not fd < FD_SETSIZE:
            # Accepted, as the stdlib does; select() will refuse it.
            self.out_of_range += 1
            if fd > INT_MAX:
                self.too_big += 1
            return 0
        cfd = fd
        if mask & EVENT_READ:
            FD_SET(cfd, &self.readers)
        if mask & EVENT_WRITE:
            FD_SET(cfd, &self.writers)
        if cfd > self.max_fd:
            self.max_fd = cfd
        return 0

    cdef int _kernel_remove(self, object fd) except -1:
        cdef int cfd
        if not fd < FD_SETSIZE:
            self.out_of_range -= 1
            if fd > INT_MAX:
                self.too_big -= 1
            return 0
        cfd = fd
        FD_CLR(cfd, &self.readers)
        FD_CLR(cfd, &self.writers)
        while self.max_fd >= 0 and not (FD_ISSET(self.max_fd, &self.readers)
                                        or FD_ISSET(self.max_fd, &self.writers)):
            self.max_fd -= 1
        return 0

    def modify(self, fileobj, events, data=None):
        """Change the events and data of a registered file object; return its key.
        As the stdlib's ``SelectSelector``: new events unregister the file
        object and register it again (validating the events).

        :raises KeyError: the file object is not registered.
        """
        fd = self._lookup_fd(fileobj)
        key = self._fd_to_key.get(fd)
        if key is None:
            raise KeyError(f"{fileobj!r} is not registered")
        if events != key.events:
            self.unregister(fileobj)
            return self.register(fileobj, events, data)
        if data != key.data:
            key = key._replace(data=data)
            self._fd_to_key[fd] = key
            self._slot_set(fd, key, selector_mask(events))
        return key

    def select(self, timeout=None):
        """Wait until some registered file objects are ready or ``timeout``
        seconds pass (None: forever; 0 or less: do not wait).

        Returns a list of ``(key, events)``.
        """
        cdef int64_t timeout_ns, deadline
        cdef fd_set r, w
        cdef int n, fd, nfds, ready
        cdef timespec ts
        cdef timespec *tsp
        cdef list result = []
        timeout_ns = select_timeout_ns(timeout)
        if self.too_big:
            # select.select() converts each fd to a C int first
            raise OverflowError("Python int too large to convert to C int")
        if self.out_of_range:
            raise ValueError("filedescriptor out of range in select()")
        deadline = deadline_for(timeout_ns)
        nfds = self.max_fd + 1
        while True:
            r = self.readers
            w = self.writers
            if timeout_ns >= 0:
                ts = fio_ns_to_timespec(timeout_ns)
                tsp = &ts
            else:
                tsp = NULL
            if timeout_ns == 0:
                # Cannot wait: keep the GIL (releasing it costs more).
                n = fio_sys_pselect(nfds, &r, &w, tsp)
            else:
                with nogil:
                    n = fio_sys_pselect(nfds, &r, &w, tsp)
            if n >= 0:
                break
            if n != -EINTR:
                raise_errno(-n)
            timeout_ns = remaining_after_eintr(deadline)
        fd = 0
        while n > 0 and fd < nfds:
            ready = (EVENT_READ if FD_ISSET(fd, &r) else 0) | (EVENT_WRITE if FD_ISSET(fd, &w) else 0)
            if ready:
                n -= (ready == (EVENT_READ | EVENT_WRITE)) + 1
                pair = self._ready_pair(fd, ready)
                if pair is not None:
                    result.append(pair)
            fd += 1
        return result

    def close(self):
        """Forget every registration."""
        FD_ZERO(&self.readers)
        FD_ZERO(&self.writers)
        self.max_fd = -1
        self.out_of_range = 0
        self.too_big = 0
        _BaseSelector.close(self)


# BaseSelector.register is the abstract selector method; ABCMeta's is the one
# that makes these virtual subclasses.
for _cls in (EpollSelector, PollSelector, SelectSelector):
    _ABCMeta.register(_std_selectors.BaseSelector, _cls)
del _cls

