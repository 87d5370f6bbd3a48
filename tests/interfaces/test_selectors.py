"""fastio's selectors as a drop-in for the stdlib's: every test runs the same
calls on a fastio selector and on the matching ``selectors`` class and compares
return values and exception types (and messages where the stdlib's are
deterministic). Each runs for EpollSelector, PollSelector and SelectSelector on
both backends. The epoll ``flags`` extensions, which the stdlib lacks, are
tested on their own at the end."""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import socket

import pytest

import fastio.selectors as fselectors
from fastio.selectors import EPOLLONESHOT, EVENT_READ, EVENT_WRITE

CLASSES = ("EpollSelector", "PollSelector", "SelectSelector")
BOTH = EVENT_READ | EVENT_WRITE


# -- helpers ------------------------------------------------------------------


class FileLike:
    """A file object around an fd whose fileno() raises ValueError once closed,
    as io objects do."""

    def __init__(self, fd):
        self.fd = fd
        self.closed = False

    def fileno(self):
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self.fd

    def __repr__(self):
        return f"<FileLike fd={self.fd}>"


class Raised:
    """An exception as an outcome: equal when the type (and, if both carry
    one, the message) is equal."""

    def __init__(self, exc, with_message):
        self.type = type(exc)
        self.message = str(exc) if with_message else None

    def __eq__(self, other):
        return isinstance(other, Raised) and (self.type, self.message) == (other.type, other.message)

    def __repr__(self):
        return f"Raised({self.type.__name__}, {self.message!r})"


def outcome(fn, *args, messages=True, **kwargs):
    """``fn(*args, **kwargs)``'s value, or a ``Raised`` for its exception."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return Raised(exc, messages)


class Names:
    """Names the objects a test passes to both selectors so that keys can be
    compared field by field: the fileobj by identity, the rest by value."""

    def __init__(self, **objects):
        self.objects = objects

    def fileobj(self, obj):
        for name, known in self.objects.items():
            if obj is known:
                return name
        if isinstance(obj, int):
            return ("fd", obj)
        return ("other", repr(obj))

    def key(self, key):
        assert type(key) is selectors.SelectorKey
        return (self.fileobj(key.fileobj), key.fd, key.events, key.data)

    def value(self, value):
        """Keys, lists of keys, select() results (a set), mappings and
        exceptions, in a comparable form."""
        if isinstance(value, Raised) or value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, selectors.SelectorKey):
            return self.key(value)
        if isinstance(value, list) and all(
            isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], selectors.SelectorKey) for v in value
        ):
            assert len(value) == len({v[0].fd for v in value}), f"an fd reported twice: {value}"
            return {(self.key(k), ev) for k, ev in value}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        raise AssertionError(f"cannot compare {value!r}")


def same(fast, std, names, call, *args, messages=True, **kwargs):
    """Run ``call(selector, *args, **kwargs)`` on the stdlib selector, then on
    fastio's, and assert equal outcomes. Returns fastio's raw outcome."""
    expected = outcome(call, std, *args, messages=messages, **kwargs)
    got = outcome(call, fast, *args, messages=messages, **kwargs)
    assert names.value(got) == names.value(expected), f"fastio {got!r} != stdlib {expected!r}"
    return got


def map_view(sel, names, probes):
    """What a selector's map shows: None when closed, else len, the fds it
    iterates over, and for each probe: ``in``, ``.get`` and ``[]``."""
    mapping = sel.get_map()
    if mapping is None:
        return None
    view = [len(mapping), sorted(mapping)]
    for probe in probes:
        view.append(outcome(lambda p=probe: p in mapping))
        view.append(outcome(lambda p=probe: names.value(mapping.get(p))))
        view.append(outcome(lambda p=probe: names.value(mapping.get(p, "default"))))
        view.append(outcome(lambda p=probe: names.value(mapping[p])))
    return view


def readable(pair):
    """Make ``pair[0]`` readable by sending it a byte."""
    pair[1].send(b"x")


def fill(sock):
    """Fill ``sock``'s send buffer so it is no longer writable."""
    sock.setblocking(False)
    try:
        while True:
            sock.send(b"\0" * 65536)
    except BlockingIOError:
        pass


# -- fixtures -----------------------------------------------------------------


@pytest.fixture(params=CLASSES)
def cls_name(request):
    return request.param


@pytest.fixture
def sels(backend, cls_name):
    """(fastio selector, stdlib selector) of the same class, closed after the test."""
    fast = getattr(backend, cls_name)()
    std = getattr(selectors, cls_name)()
    yield fast, std
    fast.close()
    std.close()


# -- the module and the classes -----------------------------------------------


def test_module_names_are_the_stdlibs():
    assert fselectors.DefaultSelector is fselectors.EpollSelector
    assert fselectors.SelectorKey is selectors.SelectorKey
    assert fselectors.BaseSelector is selectors.BaseSelector
    assert (fselectors.EVENT_READ, fselectors.EVENT_WRITE) == (selectors.EVENT_READ, selectors.EVENT_WRITE)
    assert (fselectors.EPOLLET, fselectors.EPOLLONESHOT, fselectors.EPOLLEXCLUSIVE) == (
        select.EPOLLET,
        select.EPOLLONESHOT,
        select.EPOLLEXCLUSIVE,
    )


def test_is_a_base_selector(sels, cls_name):
    fast, std = sels
    assert isinstance(fast, selectors.BaseSelector)
    assert issubclass(type(fast), selectors.BaseSelector)
    assert hasattr(fast, "fileno") == hasattr(std, "fileno") == (cls_name == "EpollSelector")


# -- register, get_key, get_map, unregister, modify ---------------------------


def test_register_returns_selector_key(sels, pairs):
    fast, std = sels
    a, b = pairs()
    names = Names(a=a, b=b)
    key = same(fast, std, names, lambda s: s.register(a, EVENT_READ, "data"))
    assert type(key) is selectors.SelectorKey
    assert key == (a, a.fileno(), EVENT_READ, "data")
    key = same(fast, std, names, lambda s: s.register(fileobj=b.fileno(), events=EVENT_WRITE, data=None))
    assert key == (b.fileno(), b.fileno(), EVENT_WRITE, None)


def test_get_key_and_map(sels, pairs):
    fast, std = sels
    (a, b), (c, _), (d, _) = pairs(), pairs(), pairs()
    names = Names(a=a, b=b, c=c, d=d)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, 1))
    same(fast, std, names, lambda s: s.register(c.fileno(), BOTH, "c"))
    probes = [a, a.fileno(), c, c.fileno(), b, b.fileno(), d]
    view = same(fast, std, names, map_view, names, probes)
    assert view[:2] == [2, sorted([a.fileno(), c.fileno()])]
    assert view[2:6] == [True] + [names.key(fast.get_key(a))] * 3
    assert view[-4:] == [False, None, "default", Raised(KeyError(f"{d!r} is not registered"), True)]
    for probe in probes:
        same(fast, std, names, lambda s, p=probe: s.get_key(p))
    assert fast.get_key(c).fileobj == c.fileno()


def test_map_is_a_live_view(sels, pairs):
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    maps = (fast.get_map(), std.get_map())
    assert fast.get_map() is maps[0]
    same(fast, std, names, lambda s: s.register(a, EVENT_READ))
    assert names.value(maps[0][a]) == names.value(maps[1][a])
    assert len(maps[0]) == len(maps[1]) == 1
    same(fast, std, names, lambda s: s.unregister(a))
    assert len(maps[0]) == len(maps[1]) == 0
    assert (a in maps[0]) is (a in maps[1]) is False


def test_unregister(sels, pairs):
    fast, std = sels
    (a, b), (c, _) = pairs(), pairs()
    names = Names(a=a, b=b, c=c)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, "a"))
    same(fast, std, names, lambda s: s.register(b, EVENT_WRITE, "b"))
    assert same(fast, std, names, lambda s: s.unregister(a)).fileobj is a
    assert isinstance(same(fast, std, names, lambda s: s.get_key(a)), Raised)
    assert isinstance(same(fast, std, names, lambda s: s.unregister(a)), Raised)
    assert isinstance(same(fast, std, names, lambda s: s.unregister(c)), Raised)
    assert isinstance(same(fast, std, names, lambda s: s.unregister(c.fileno())), Raised)
    # by fd, for a key registered with the object
    assert same(fast, std, names, lambda s: s.unregister(b.fileno())).fileobj is b
    assert same(fast, std, names, map_view, names, [a, b]) == [0, [], False, None, "default"] + [
        Raised(KeyError(f"{a!r} is not registered"), True),
        False,
        None,
        "default",
        Raised(KeyError(f"{b!r} is not registered"), True),
    ]


def test_modify(sels, pairs):
    fast, std = sels
    (a, b), (c, _) = pairs(), pairs()
    names = Names(a=a, b=b, c=c)
    first = same(fast, std, names, lambda s: s.register(a, EVENT_READ, "a"))
    # unchanged: the same key back
    assert same(fast, std, names, lambda s: s.modify(a, EVENT_READ, "a")) == first
    assert same(fast, std, names, lambda s: s.modify(a, EVENT_READ, "new")) == (a, a.fileno(), EVENT_READ, "new")
    assert same(fast, std, names, lambda s: s.modify(a, BOTH, "new")) == (a, a.fileno(), BOTH, "new")
    assert same(fast, std, names, lambda s: s.modify(a, EVENT_WRITE)) == (a, a.fileno(), EVENT_WRITE, None)
    same(fast, std, names, lambda s: s.get_key(a))
    same(fast, std, names, map_view, names, [a, a.fileno()])
    # the kernel sees the change: a is writable, not readable
    readable((a, b))
    assert same(fast, std, names, lambda s: s.select(0)) == [(fast.get_key(a), EVENT_WRITE)]
    # not registered
    assert same(fast, std, names, lambda s: s.modify(c, EVENT_READ)) == Raised(
        KeyError(f"{c!r} is not registered"), True
    )
    same(fast, std, names, lambda s: s.modify(c.fileno(), EVENT_READ))


def test_modify_by_fd_of_a_registered_object(sels, pairs):
    """modify(fd) of a key registered as an object: the stdlib's SelectSelector
    re-registers with the fd as the new fileobj, the others keep the object."""
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, "a"))
    same(fast, std, names, lambda s: s.modify(a.fileno(), EVENT_READ, "data only"))
    same(fast, std, names, lambda s: s.modify(a.fileno(), BOTH, "events"))
    same(fast, std, names, lambda s: s.get_key(a))
    same(fast, std, names, map_view, names, [a, a.fileno()])


def test_register_twice(sels, pairs):
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, "first"))
    for fileobj in (a, a.fileno(), FileLike(a.fileno())):
        exc = same(fast, std, names, lambda s, f=fileobj: s.register(f, EVENT_WRITE, "second"))
        assert exc == Raised(KeyError(f"{fileobj!r} (FD {a.fileno()}) is already registered"), True)
    # the first registration is intact, in the kernel too
    same(fast, std, names, lambda s: s.get_key(a))
    same(fast, std, names, map_view, names, [a])
    assert same(fast, std, names, lambda s: s.select(0)) == []


# (1 << 64 and beyond: no C long holds them; False: an int subclass)
@pytest.mark.parametrize("events", [0, 4, 8, -1, -2, 7, 1.0, "x", None, 1 << 31, 1 << 64, (1 << 70) | 1,
                                    -(1 << 70), False])
def test_register_invalid_events(sels, pairs, events):
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    exc = same(fast, std, names, lambda s: s.register(a, events))
    assert isinstance(exc, Raised) and exc.type in (ValueError, TypeError)
    same(fast, std, names, map_view, names, [a])
    # nothing half-registered, in the kernel either
    assert same(fast, std, names, lambda s: s.register(a, EVENT_WRITE)).events == EVENT_WRITE
    assert same(fast, std, names, lambda s: s.select(0)) == [(fast.get_key(a), EVENT_WRITE)]


@pytest.mark.parametrize("events", [True, 3, EVENT_WRITE])
def test_register_events_of_any_int_type(sels, pairs, events):
    """bool is an int: the stdlib takes True as EVENT_READ and keeps it as given."""
    fast, std = sels
    a, b = pairs()
    names = Names(a=a)
    assert same(fast, std, names, lambda s: s.register(a, events)).events is events
    readable((a, b))
    same(fast, std, names, lambda s: s.select(0))


@pytest.mark.parametrize("events", [0, 4, -1, 7, 1.5, "x", None, (1 << 70) | 2, -(1 << 70) - 1, True])
def test_modify_invalid_events(sels, pairs, events):
    """What modify does with events register would refuse: the stdlib's
    SelectSelector re-registers (ValueError/TypeError, key gone); its poll and
    epoll selectors store int events as given and raise TypeError for others
    before touching anything (key kept)."""
    fast, std = sels
    a, b = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, "a"))
    expected = outcome(std.modify, a, events, "b")
    got = outcome(fast.modify, a, events, "b")
    assert names.value(got) == names.value(expected) or (
        isinstance(got, Raised) and isinstance(expected, Raised) and got.type is expected.type
    ), f"fastio {got!r} != stdlib {expected!r}"
    same(fast, std, names, lambda s: s.get_key(a))
    same(fast, std, names, map_view, names, [a])
    readable((a, b))
    same(fast, std, names, lambda s: s.select(0))
    # and the fd can be registered again if it is gone, or is still registered
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, "again"))
    # last, the message of modify's exception, which is deterministic
    assert names.value(got) == names.value(expected)


@pytest.mark.parametrize("events", [1 << 31, 1 << 40])
def test_modify_events_beyond_c_int(sels, pairs, events):
    """Events wider than a C int in modify: the stdlib's poll/epoll selectors
    store them (no READ/WRITE bit set, so the fd is watched for nothing); its
    SelectSelector refuses them with ValueError."""
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, "a"))
    same(fast, std, names, lambda s: s.modify(a, events, "a"))
    same(fast, std, names, lambda s: s.get_key(a))
    same(fast, std, names, lambda s: s.select(0))


class NoFileno:
    def __repr__(self):
        return "<NoFileno>"


class BadFileno:
    def __init__(self, value):
        self.value = value

    def fileno(self):
        return self.value

    def __repr__(self):
        return f"<BadFileno {self.value!r}>"


INVALID_FILEOBJS = [
    "x",
    None,
    1.5,
    NoFileno(),
    BadFileno("abc"),
    BadFileno(None),
    BadFileno(-1),
    FileLike(-3),
    -1,
    -2,
]


@pytest.mark.parametrize("fileobj", INVALID_FILEOBJS, ids=repr)
def test_invalid_file_objects_and_negative_fds(sels, pairs, fileobj):
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ))
    for call in (
        lambda s: s.register(fileobj, EVENT_READ),
        lambda s: s.unregister(fileobj),
        lambda s: s.modify(fileobj, EVENT_WRITE),
        lambda s: s.get_key(fileobj),
        lambda s: s.get_map()[fileobj],
        lambda s: s.get_map().get(fileobj),
        lambda s: fileobj in s.get_map(),
    ):
        exc = same(fast, std, names, call)
        assert isinstance(exc, Raised) and exc.type is ValueError
    same(fast, std, names, map_view, names, [a])


@pytest.mark.parametrize("fd", [1 << 31, 1 << 40])
def test_fds_beyond_c_int(sels, fd):
    """An int fd too large for a C int is not registered: the lookups say so
    with KeyError as the stdlib's do; register refuses it (OverflowError), or,
    for SelectSelector, accepts it as the stdlib does."""
    fast, std = sels
    names = Names()
    for call in (
        lambda s: s.get_key(fd),
        lambda s: s.get_map().get(fd),
        lambda s: fd in s.get_map(),
        lambda s: s.unregister(fd),
        lambda s: s.modify(fd, EVENT_READ),
    ):
        same(fast, std, names, call)
    same(fast, std, names, lambda s: s.register(fd, EVENT_READ), messages=False)


# -- closed file objects and fds ----------------------------------------------


def test_fd_closed_before_unregister(sels):
    fast, std = sels

    def scenario(sel):
        a, b = socket.socketpair()
        try:
            sel.register(a, BOTH, "a")
            fd = a.fileno()
            a.close()
            found = sel.get_key(a)
            key = sel.unregister(a)
            return [found.fileobj is a, found.fd == fd, key.fileobj is a, key.fd == fd, key.events, key.data,
                    len(sel.get_map())]
        finally:
            a.close()
            b.close()

    assert same(fast, std, Names(), scenario) == [True, True, True, True, BOTH, "a", 0]


def test_raw_fd_closed_before_unregister(sels):
    fast, std = sels

    def scenario(sel):
        a, b = socket.socketpair()
        fd = a.detach()
        sel.register(fd, EVENT_READ)
        os.close(fd)
        b.close()
        key = sel.unregister(fd)
        return [key.fd == fd, key.fileobj == fd, len(sel.get_map())]

    assert same(fast, std, Names(), scenario) == [True, True, 0]


def test_select_with_a_closed_fd_registered(sels):
    """epoll drops a closed fd by itself; poll reports it (POLLNVAL) as
    readable and writable; select fails with EBADF."""
    fast, std = sels

    def scenario(sel):
        a, b = socket.socketpair()
        try:
            sel.register(a, BOTH, "a")
            a.close()
            return sorted((key.data, events) for key, events in sel.select(0))
        finally:
            b.close()

    same(fast, std, Names(), scenario)


@pytest.mark.parametrize("close", ["socket", "filelike"])
def test_closed_file_object_found_by_identity(sels, pairs, close):
    """A file object whose fileno() now fails (-1 for a socket, ValueError for
    an io object) is still found among the keys by identity."""
    fast, std = sels
    a, b = pairs()
    obj = a.dup() if close == "socket" else FileLike(a.fileno())
    other = FileLike(a.fileno())
    other.closed = True
    names = Names(obj=obj, other=other)
    same(fast, std, names, lambda s: s.register(obj, EVENT_READ, "data"))
    fd = obj.fileno()
    if close == "socket":
        obj.close()  # the fd is closed too: the kernel forgets it
    else:
        obj.closed = True  # the fd is still open
    assert same(fast, std, names, lambda s: s.get_key(obj)) == (obj, fd, EVENT_READ, "data")
    same(fast, std, names, map_view, names, [obj])
    assert same(fast, std, names, lambda s: s.get_key(other)).type is ValueError
    assert same(fast, std, names, lambda s: s.modify(obj, EVENT_READ, "new")).data == "new"
    same(fast, std, names, lambda s: s.unregister(other))
    key = same(fast, std, names, lambda s: s.unregister(obj))
    assert key.fileobj is obj
    same(fast, std, names, map_view, names, [a])


@pytest.mark.parametrize("close", ["socket", "filelike"])
def test_modify_events_of_closed_file_object(sels, pairs, close):
    fast, std = sels
    a, b = pairs()
    obj = a.dup() if close == "socket" else FileLike(a.fileno())
    names = Names(obj=obj)
    same(fast, std, names, lambda s: s.register(obj, EVENT_READ, "data"))
    if close == "socket":
        obj.close()
    else:
        obj.closed = True
    same(fast, std, names, lambda s: s.modify(obj, BOTH, "data"), messages=False)
    same(fast, std, names, map_view, names, [obj])


# -- select -------------------------------------------------------------------


def test_select_results(sels, pairs):
    fast, std = sels
    (r1, p1), (r2, p2), (w1, _), (w2, _), (idle, _) = (pairs() for _ in range(5))
    fill(idle)
    names = Names(r1=r1, r2=r2, w1=w1, w2=w2, idle=idle)
    readable((r1, p1))
    readable((r2, p2))
    same(fast, std, names, lambda s: s.register(r1, BOTH, "r1 both"))
    same(fast, std, names, lambda s: s.register(r2.fileno(), EVENT_READ, "r2 read"))
    same(fast, std, names, lambda s: s.register(w1, EVENT_WRITE, "w1 write"))
    same(fast, std, names, lambda s: s.register(w2, EVENT_READ, "w2 read"))  # writable only: masked out
    same(fast, std, names, lambda s: s.register(idle, BOTH, "idle"))
    expected = {
        (names.key(fast.get_key(r1)), BOTH),
        (names.key(fast.get_key(r2)), EVENT_READ),
        (names.key(fast.get_key(w1)), EVENT_WRITE),
    }
    for timeout in (None, 0, -1, 0.001, 1e-9, 1, True):
        assert names.value(same(fast, std, names, lambda s, t=timeout: s.select(t))) == expected
    assert names.value(same(fast, std, names, lambda s: s.select(timeout=0))) == expected
    # a key in the result is the one get_key returns
    for key, _ in fast.select(0):
        assert key == fast.get_key(key.fd)


def test_select_reports_each_ready_fd_once(sels, pairs):
    fast, std = sels
    socks = [pairs()[0] for _ in range(40)]
    names = Names(**{f"s{i}": s for i, s in enumerate(socks)})
    for i, s in enumerate(socks):
        same(fast, std, names, lambda sel, s=s, i=i: sel.register(s, EVENT_WRITE, i))
    got = same(fast, std, names, lambda s: s.select(0))
    assert len(got) == 40


def test_events_masking(sels, pairs):
    """A writable socket registered for READ only is not reported; once
    readable, it is reported for READ only."""
    fast, std = sels
    a, b = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ))
    assert same(fast, std, names, lambda s: s.select(0)) == []
    readable((a, b))
    assert same(fast, std, names, lambda s: s.select(0)) == [(fast.get_key(a), EVENT_READ)]
    a.recv(1)
    assert same(fast, std, names, lambda s: s.select(0)) == []


def test_select_not_writable(sels, pairs):
    fast, std = sels
    a, b = pairs()
    fill(a)
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_WRITE))
    assert same(fast, std, names, lambda s: s.select(0)) == []
    b.setblocking(False)
    try:
        while True:
            b.recv(1 << 20)
    except BlockingIOError:
        pass
    assert same(fast, std, names, lambda s: s.select(0)) == [(fast.get_key(a), EVENT_WRITE)]


@pytest.mark.parametrize("registered", [BOTH, EVENT_READ, EVENT_WRITE])
def test_peer_closed_is_readable(sels, pairs, registered):
    """EPOLLHUP / POLLHUP / EOF: a socket whose peer closed is readable (and
    writable, from epoll and poll's HUP bit, as the stdlib maps it)."""
    fast, std = sels
    a, b = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, registered, "a"))
    b.close()
    got = same(fast, std, names, lambda s: s.select(0))
    assert len(got) == 1 and got[0][0] == fast.get_key(a)
    assert got[0][1] & EVENT_READ or registered == EVENT_WRITE


def test_peer_shut_down_tcp(sels, tcp_pair):
    fast, std = sels
    a, b = tcp_pair
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ, "a"))
    assert same(fast, std, names, lambda s: s.select(0)) == []
    b.shutdown(socket.SHUT_WR)
    assert same(fast, std, names, lambda s: s.select(0)) == [(fast.get_key(a), EVENT_READ)]


@pytest.mark.parametrize("timeout", [0, -1, -0.5, 1e-6, 0.01, False])
def test_select_nothing_registered(sels, timeout):
    fast, std = sels
    assert same(fast, std, Names(), lambda s: s.select(timeout)) == []


def test_select_nothing_ready_with_timeout(sels, pairs):
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ))
    assert same(fast, std, names, lambda s: s.select(0.02)) == []


@pytest.mark.parametrize("timeout", ["x", float("nan"), float("inf"), 1e20])
def test_select_invalid_timeout(sels, pairs, timeout):
    fast, std = sels
    a, _ = pairs()
    names = Names(a=a)
    same(fast, std, names, lambda s: s.register(a, EVENT_WRITE))
    exc = same(fast, std, names, lambda s: s.select(timeout), messages=False)
    assert isinstance(exc, Raised)


# -- close --------------------------------------------------------------------


def test_use_after_close(sels, pairs, cls_name):
    fast, std = sels
    a, b = pairs()
    names = Names(a=a, b=b)
    same(fast, std, names, lambda s: s.register(a, EVENT_READ))
    same(fast, std, names, lambda s: s.close())
    same(fast, std, names, lambda s: s.close())  # idempotent
    assert fast.get_map() is None and std.get_map() is None
    assert same(fast, std, names, lambda s: s.get_key(a)) == Raised(RuntimeError("Selector is closed"), True)
    assert same(fast, std, names, lambda s: s.get_key(b)) == Raised(RuntimeError("Selector is closed"), True)
    assert isinstance(same(fast, std, names, lambda s: s.unregister(a)), Raised)
    assert isinstance(same(fast, std, names, lambda s: s.modify(a, EVENT_WRITE)), Raised)
    closed = Raised(ValueError("I/O operation on closed epoll object"), True)
    if cls_name == "EpollSelector":
        assert same(fast, std, names, lambda s: s.select(0)) == closed
        assert same(fast, std, names, lambda s: s.register(b, EVENT_READ)) == closed
        assert same(fast, std, names, lambda s: s.fileno()) == closed
    else:
        assert same(fast, std, names, lambda s: s.select(0)) == []
        same(fast, std, names, lambda s: s.register(b, EVENT_READ))
        same(fast, std, names, lambda s: s.select(0))
    assert fast.get_map() is None


@pytest.mark.parametrize("fail", [False, True])
def test_context_manager_closes(backend, cls_name, pairs, fail):
    a, _ = pairs()
    for cls in (getattr(backend, cls_name), getattr(selectors, cls_name)):
        with pytest.raises(ZeroDivisionError) if fail else contextlib.nullcontext():
            with cls() as sel:
                assert isinstance(sel, cls)
                sel.register(a, EVENT_READ)
                assert sel.get_map() is not None
                if fail:
                    1 / 0
        assert sel.get_map() is None
        with pytest.raises(RuntimeError, match="Selector is closed"):
            sel.get_key(a)
        if cls_name == "EpollSelector":
            with pytest.raises(ValueError, match="closed epoll"):
                sel.select(0)


def test_epoll_selector_fileno(backend):
    sel = backend.EpollSelector()
    try:
        fd = sel.fileno()
        assert isinstance(fd, int) and fd >= 0
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        assert not os.get_inheritable(fd)
        other = backend.EpollSelector()
        assert other.fileno() != fd
        other.close()
    finally:
        sel.close()
    with pytest.raises(ValueError, match="I/O operation on closed epoll object"):
        sel.fileno()
    # closed: the fd is gone (or reused by something else)
    assert not os.path.exists(f"/proc/self/fd/{fd}") or os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[eventpoll]"


@pytest.mark.parametrize("cls_name", ["PollSelector", "SelectSelector"])
def test_flags_are_epoll_only(backend, cls_name, pairs):
    a, _ = pairs()
    for cls in (getattr(backend, cls_name), getattr(selectors, cls_name)):
        sel = cls()
        with pytest.raises(TypeError):
            sel.register(a, EVENT_READ, flags=EPOLLONESHOT)
        assert len(sel.get_map()) == 0
        sel.close()
