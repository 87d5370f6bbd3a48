"""Random register/modify/unregister/select(0)/close/get_key/get_map sequences,
run on a fastio selector and the matching stdlib selector side by side over a
small pool of socketpairs (made readable, filled, drained, closed at random)
and odd file objects (closed, negative, huge and unopened fd numbers, a str,
None, a float, objects whose fileno() lies or fails), with select() timeouts
out of range: both must give the same return values (keys field by field,
select() results as sets) and raise the same exception types. One machine
per selector class and backend. FASTIO_FUZZ_EXAMPLES=N runs N examples
(tests/helpers/fuzzing.py)."""

from __future__ import annotations

import importlib
import selectors
import socket
from selectors import EVENT_READ, EVENT_WRITE

import pytest
from fuzzing import closed_fd_number, fuzz_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

CLASSES = ("EpollSelector", "PollSelector", "SelectSelector")
PAIRS = 2  # socketpairs, so 2 * PAIRS sockets

SETTINGS = fuzz_settings(examples=50, steps=30)

# Mostly valid events for register, so that keys exist; for modify more of the
# events register refuses, whose handling by modify differs between the classes.
VALID = [EVENT_READ, EVENT_WRITE, EVENT_READ | EVENT_WRITE]
INVALID = [0, 4, -1, 7, 1 << 31, "x", None, 1.5]
REGISTER_EVENTS = st.sampled_from(VALID * 3 + INVALID)
MODIFY_EVENTS = st.sampled_from(VALID + INVALID)
DATA = st.one_of(st.none(), st.integers(-2, 2), st.sampled_from(["a", "b"]))
SOCK = st.integers(0, 2 * PAIRS - 1)
# How a socket is passed: as the object or as its fileno() (-1 once closed).
HOW = st.sampled_from(["obj", "fd"])


class Fileno:
    """An object whose fileno() returns ``value`` (or raises it)."""

    def __init__(self, value):
        self.value = value

    def fileno(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self):
        return f"Fileno({self.value!r})"


# File objects no socket of the pool is: fds never opened or just closed,
# out of range, of the wrong type, or with a fileno() that lies or fails.
ODD = ["closed fd", 2**31 - 1, 10**6, 2**31, 2**70, -1, -5, "3", None, 3.5, b"3",
       Fileno(-1), Fileno("3"), Fileno(2**31), Fileno(OSError(9, "bad")), Fileno(10**6)]
ODD_FILEOBJ = st.sampled_from(range(len(ODD)))
# select() timeouts that return at once or raise (never block): negative ones
# mean 0; too large or not numbers are errors.
TIMEOUTS = st.sampled_from([0, 0.0, -1, -0.5, -float("inf"), 1e-9, 1e20, 2**64, float("inf"), float("nan"),
                            "1", b"1", [0]])


class Raised:
    """An exception outcome; equal by type only."""

    def __init__(self, exc):
        self.type = type(exc)
        self.exc = exc

    def __eq__(self, other):
        return isinstance(other, Raised) and self.type is other.type

    def __hash__(self):
        return hash(self.type)

    def __repr__(self):
        return f"Raised({self.type.__name__}: {self.exc})"


def outcome(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        return Raised(exc)


class SelectorParity(RuleBasedStateMachine):
    """fastio's selector class against the stdlib's, call by call."""

    cls_name = ""      # the selector class compared: set by machine_for()
    fast_cls = None    # fastio._<backend>.selectors.<cls_name>
    std_cls = None     # selectors.<cls_name>

    def __init__(self):
        super().__init__()
        self.socks = []
        for _ in range(PAIRS):
            self.socks.extend(socket.socketpair())
        for s in self.socks:
            s.setblocking(False)
        self.fast = self.fast_cls()
        self.std = self.std_cls()
        self.old = [self.fast, self.std]  # every selector made, closed on teardown
        self.closed = False

    def teardown(self):
        for sel in self.old:
            sel.close()
        for s in self.socks:
            s.close()

    # -- comparing -------------------------------------------------------

    def name(self, obj):
        for i, s in enumerate(self.socks):
            if obj is s:
                return ("sock", i)
        if isinstance(obj, int):
            return ("int", obj)
        return ("other", repr(obj))

    def norm(self, value):
        if isinstance(value, Raised) or value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, selectors.SelectorKey):
            assert type(value) is selectors.SelectorKey
            return (self.name(value.fileobj), value.fd, value.events, value.data)
        if isinstance(value, (list, tuple)):
            return tuple(self.norm(v) for v in value)
        raise AssertionError(f"cannot compare {value!r}")

    def norm_select(self, value):
        if isinstance(value, Raised):
            if value.type is OverflowError and self.mixed_out_of_range():
                # select.select() meets the fds in set order: with one
                # fd beyond a C int and one beyond FD_SETSIZE registered,
                # either error may come first
                return Raised(ValueError())
            return value
        fds = [key.fd for key, _ in value]
        assert len(fds) == len(set(fds)), f"an fd reported twice: {value}"
        return {(self.norm(key), events) for key, events in value}

    def mixed_out_of_range(self):
        mapping = self.std.get_map()
        fds = [key.fd for key in mapping.values()] if mapping is not None else []
        return self.cls_name == "SelectSelector" and any(fd > 2**31 - 1 for fd in fds) and \
            any(1024 <= fd <= 2**31 - 1 for fd in fds)

    def same(self, call, norm=None):
        norm = norm or self.norm
        expected = outcome(call, self.std)
        got = outcome(call, self.fast)
        assert norm(got) == norm(expected), f"fastio {got!r} != stdlib {expected!r}"

    def fileobj(self, i, how, registered=False):
        """Socket ``i`` (or, if ``registered``, the ``i``-th registered key's
        fileobj), as the object or as an fd."""
        mapping = self.std.get_map()
        if registered and mapping:
            key = sorted(mapping.values(), key=lambda k: k.fd)[i % len(mapping)]
            return key.fileobj if how == "obj" else key.fd
        sock = self.socks[i]
        return sock if how == "obj" else sock.fileno()

    # -- the selector API ------------------------------------------------

    @rule(i=SOCK, how=HOW, events=REGISTER_EVENTS, data=DATA)
    def register(self, i, how, events, data):
        fileobj = self.fileobj(i, how)
        self.same(lambda s: s.register(fileobj, events, data))

    @rule(i=SOCK, how=HOW, events=MODIFY_EVENTS, data=DATA, registered=st.booleans())
    def modify(self, i, how, events, data, registered):
        fileobj = self.fileobj(i, how, registered)
        self.same(lambda s: s.modify(fileobj, events, data))

    @rule(i=SOCK, how=HOW, registered=st.booleans())
    def unregister(self, i, how, registered):
        fileobj = self.fileobj(i, how, registered)
        self.same(lambda s: s.unregister(fileobj))

    @rule(i=SOCK, how=HOW, registered=st.booleans())
    def get_key(self, i, how, registered):
        fileobj = self.fileobj(i, how, registered)
        self.same(lambda s: s.get_key(fileobj))

    @invariant()
    def get_map(self):
        # after every step: the bookkeeping must agree even when no rule looks at it
        def view(sel):
            mapping = sel.get_map()
            if mapping is None:
                return None
            out = [len(mapping), sorted(mapping)]
            for s in self.socks:
                for probe in (s, s.fileno()):
                    out.append(outcome(lambda p=probe: p in mapping))
                    out.append(outcome(lambda p=probe: self.norm(mapping.get(p))))
                    out.append(outcome(lambda p=probe: self.norm(mapping[p])))
            return out

        self.same(view)

    # The stdlib's SelectSelector.close() keeps its reader/writer sets, so a
    # select() after close still selects the old fds (EBADF once one is
    # closed); fastio clears them. That deliberate difference is tested in
    # test_selectors_extensions.py::test_select_selector_close_forgets_fds.
    @precondition(lambda self: not (self.closed and self.cls_name == "SelectSelector"))
    @rule()
    def select(self):
        self.same(lambda s: s.select(0), norm=self.norm_select)

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self):
        self.same(lambda s: s.close())
        self.closed = True

    @precondition(lambda self: self.closed)
    @rule()
    def reopen(self):
        # The closed pair has been used by the steps since close(); go on
        # with new selectors so that most steps use open ones.
        self.fast = self.fast_cls()
        self.std = self.std_cls()
        self.old.extend([self.fast, self.std])
        self.closed = False

    # -- odd file objects and timeouts -------------------------------------

    def odd(self, i):
        obj = ODD[i]
        return closed_fd_number() if obj == "closed fd" else obj

    @rule(i=ODD_FILEOBJ, events=REGISTER_EVENTS, data=DATA)
    def register_odd(self, i, events, data):
        fileobj = self.odd(i)
        self.same(lambda s: s.register(fileobj, events, data))

    @rule(i=ODD_FILEOBJ, events=MODIFY_EVENTS, data=DATA)
    def modify_odd(self, i, events, data):
        fileobj = self.odd(i)
        self.same(lambda s: s.modify(fileobj, events, data))

    @rule(i=ODD_FILEOBJ)
    def unregister_odd(self, i):
        fileobj = self.odd(i)
        self.same(lambda s: s.unregister(fileobj))

    @rule(i=ODD_FILEOBJ)
    def get_key_odd(self, i):
        fileobj = self.odd(i)
        self.same(lambda s: s.get_key(fileobj))

    @precondition(lambda self: not (self.closed and self.cls_name == "SelectSelector"))
    @rule(timeout=TIMEOUTS)
    def select_timeout(self, timeout):
        self.same(lambda s: s.select(timeout), norm=self.norm_select)

    # -- the sockets -----------------------------------------------------

    @rule(i=SOCK, action=st.sampled_from(["send", "send", "drain", "fill", "drain peer", "close"]),
          data=st.binary(min_size=1, max_size=3))
    def socket(self, i, action, data):
        """Make a socket readable (send to its peer), not readable (drain),
        not writable (fill), writable again (drain its peer), or closed
        (its peer then sees EOF/HUP; it stays registered, fileno() -1)."""
        sock = self.socks[i]
        peer = self.socks[i ^ 1]
        try:
            if action == "send":
                peer.send(data)
            elif action == "drain":
                while sock.recv(1 << 20):
                    pass
            elif action == "fill":
                while True:
                    sock.send(b"\0" * 65536)
            elif action == "drain peer":
                while peer.recv(1 << 20):
                    pass
            else:
                sock.close()
        except OSError:
            pass  # closed, peer closed, empty or full


def machine_for(backend_name, cls_name):
    """SelectorParity bound to ``fastio._<backend_name>.selectors.<cls_name>``."""
    fast_cls = getattr(importlib.import_module(f"fastio._{backend_name}.selectors"), cls_name)
    return type(f"SelectorParity_{backend_name}_{cls_name}", (SelectorParity,),
                {"cls_name": cls_name, "fast_cls": fast_cls, "std_cls": getattr(selectors, cls_name)})


@pytest.mark.parametrize("cls_name", CLASSES)
def test_selector_state_machine(backend, cls_name):
    run_state_machine_as_test(machine_for(backend.name, cls_name), settings=SETTINGS)
