"""A hypothesis state machine over fastio.sigio.SignalIO, on both backends:
two SignalIO objects of this thread; random add/remove of socket ends, a
pipe's ends, an eventfd and bad fds (regular file, directory, closed,
negative, huge, wrong types, one added to the other object); writes and
reads that change readiness; waits with timeouts and max_events; a wait
from another thread; an added socket closed (and its number reused) before
remove; close and use after close. The model checks:

* every error is the documented one (FileExistsError, FileNotFoundError,
  PermissionError, OSError(EBADF), ValueError, TypeError, OverflowError,
  RuntimeError from another thread, ValueError once closed), and the
  RuntimeWarning for an added fd whose number now names another open file,
  which is left untouched;
* a wait reports only fds added to that object, each once, with a band;
* nothing is lost: an fd found ready by add(), or made readable while it
  had nothing unread, is reported by the waits that follow (bounded);
* close() and remove() restore every fd's flags, owner and signal, and the
  thread's signal mask (save the signals an fd closed before remove()
  leaves blocked, as documented).

Examples and steps: see tests/helpers/fuzzing.py (FASTIO_FUZZ_EXAMPLES=N for a long run).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import socket
import threading
import time
import warnings

import pytest
from fuzzing import BADFD, REFUSED_FDS, Errno, Raised, attempt, closed_fd_number, fuzz_settings, mostly
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from fastio import _sigclaim

SETTINGS = fuzz_settings(examples=60, steps=50)

PAIRS = 3
OBJS = st.sampled_from([0, 1])
POLLIN, POLLOUT = select.POLLIN, select.POLLOUT
F_GETSIG = 11


def thread_mask() -> set:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def eventfd() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.eventfd(0, os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "eventfd")
    return fd


def fd_state(fd: int):
    """What SignalIO must restore: flags, owner (F_GETOWN_EX) and signal."""
    return fcntl.fcntl(fd, fcntl.F_GETFL), fcntl.fcntl(fd, 16, bytes(8)), fcntl.fcntl(fd, F_GETSIG)


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def strangers_warned(caught) -> set:
    """The fds the RuntimeWarnings of remove()/close() name (another open
    file now has the number); every warning caught must be one of those."""
    fds = set()
    for w in caught:
        assert w.category is RuntimeWarning and "now names another open file" in str(w.message), w
        fds.add(int(str(w.message).split("fd ")[1].split()[0]))
    return fds


class SignalIOMachine(RuleBasedStateMachine):
    backend = None   # the backend namespace (conftest's fixture): set by machine_for()

    def __init__(self):
        super().__init__()
        self.mask = thread_mask()
        self.pairs = [self.new_pair() for _ in range(PAIRS)]
        self.r, self.w = os.pipe()
        self.efd = eventfd()
        self.regular = os.open(TMP_FILE, os.O_RDONLY | os.O_CLOEXEC)
        self.directory = os.open(os.path.dirname(TMP_FILE), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.to_close = []                # sockets replaced while added, closed at teardown
        self.objs = [None, None]          # the SignalIO objects (None: none yet or closed)
        self.made = []
        self.added = [dict(), dict()]     # obj -> {fd: name}
        self.stale = [set(), set()]       # obj -> fds closed while added
        self.pending = [dict(), dict()]   # obj -> {fd: bands that must be reported}
        self.unread = {}                  # name -> bytes written to it and not read
        self.saved = {}                   # name -> fd_state before it was first added
        self.unrestored = False

    @staticmethod
    def new_pair():
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        return a, b

    def teardown(self):
        try:
            for i, obj in enumerate(self.objs):
                if obj is not None:
                    self.close(i)
        finally:
            for obj in self.made:
                obj.close()
            for a, b in self.pairs:
                a.close()
                b.close()
            for s in self.to_close:
                s.close()
            for fd in (self.r, self.w, self.efd, self.regular, self.directory):
                os.close(fd)
        left = thread_mask() - self.mask
        state = _sigclaim._threads.get(threading.get_ident())
        allowed = (set(state.leftover) | {signal.SIGIO}) if state is not None else set()
        assert left <= allowed, f"signals left blocked: {sorted(left)} (leftovers: {sorted(allowed)})"

    # -- the fds ------------------------------------------------------------

    def fd_of(self, name):
        """(fd or bad value, errors, the name the model tracks)."""
        if name in REFUSED_FDS:
            value, exc = REFUSED_FDS[name]
            return value, [exc], None
        if name == "sock fd 0":
            return self.pairs[0][0].fileno(), [], "sock 0"
        if name.startswith("sock"):
            return self.pairs[int(name[-1])][0], [], name
        return {"pipe r": (self.r, [], name), "pipe w": (self.w, [], name), "eventfd": (self.efd, [], name),
                "regular": (self.regular, [PermissionError], None),
                "directory": (self.directory, [PermissionError], None),
                "bad number": (BADFD, [Errno(errno.EBADF)], None),
                "closed number": (closed_fd_number(), [Errno(errno.EBADF)], None)}[name]

    def fd_number(self, name):
        if name.startswith("sock"):
            return self.pairs[int(name[-1])][0].fileno()
        return {"pipe r": self.r, "pipe w": self.w, "eventfd": self.efd}[name]

    def readiness(self, name):
        """The bands add() finds by polling (what it must report)."""
        if name.startswith("sock"):
            return POLLOUT | (POLLIN if self.unread.get(name) else 0)
        if name == "pipe r":
            return POLLIN if self.unread.get(name) else 0
        if name == "pipe w":
            return POLLOUT
        return 0

    # -- rules ---------------------------------------------------------------

    @rule(i=OBJS, signum=mostly([None], ["SIGINT", "SIGRTMIN", "taken", 1.5]))
    def create(self, i, signum):
        if self.objs[i] is not None:
            return
        errors = []
        if signum == "SIGINT":
            signum = signal.SIGINT
            errors = [ValueError]
        elif signum == "SIGRTMIN":
            signum = signal.SIGRTMIN          # free unless the other object has it
            other = self.objs[1 - i]
            if other is not None and other.signum == signum:
                errors = [ValueError]
        elif signum == "taken":
            other = self.objs[1 - i]
            if other is None:
                return
            signum = other.signum
            errors = [ValueError]
        elif isinstance(signum, float):
            errors = [TypeError]
        obj = attempt(self.backend.SignalIO, signum, errors=errors)
        if not isinstance(obj, Raised):
            self.objs[i] = obj
            self.made.append(obj)
            assert not obj.closed and signal.SIGRTMIN <= obj.signum <= signal.SIGRTMAX
            assert obj.signum in thread_mask() and signal.SIGIO in thread_mask()

    @rule(i=OBJS, name=mostly(["sock 0", "sock 1", "sock 2", "sock fd 0", "pipe r", "pipe w",
                                               "eventfd"],
                              ["regular", "directory", "bad number", "closed number"] + list(REFUSED_FDS)))
    def add(self, i, name):
        obj = self.objs[i]
        if obj is None:
            return
        value, errors, tracked = self.fd_of(name)
        if tracked is not None:
            fd = self.fd_number(tracked)
            if fd in self.added[i] or fd in self.stale[i]:
                errors = errors + [FileExistsError]
            elif fd in self.added[1 - i]:
                errors = errors + [FileExistsError]     # armed by the other object
        if obj.closed:
            errors = errors + [ValueError]
        if tracked is not None and tracked not in self.saved and not errors:
            self.saved[tracked] = fd_state(fd)
        result = attempt(obj.add, value, errors=errors)
        if isinstance(result, Raised):
            return
        assert result is None
        self.added[i][fd] = tracked
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        # (an eventfd has no fasync hook: the kernel keeps O_ASYNC off, and it never signals)
        assert flags & os.O_NONBLOCK and (flags & os.O_ASYNC or tracked == "eventfd"), \
            f"add() left fd {fd} flags {flags:#x}"
        assert fcntl.fcntl(fd, F_GETSIG) == obj.signum
        bands = self.readiness(tracked)
        if bands:
            self.pending[i][fd] = self.pending[i].get(fd, 0) | bands

    @rule(i=OBJS, name=mostly(["sock 0", "sock 1", "sock 2", "pipe r", "pipe w", "eventfd"],
                              ["bad number"] + list(REFUSED_FDS)))
    def remove(self, i, name):
        obj = self.objs[i]
        if obj is None:
            return
        value, errors, tracked = self.fd_of(name)
        errors = [e for e in errors if e is not PermissionError and not isinstance(e, Errno)]
        stale = None
        if tracked is not None:
            fd = self.fd_number(tracked)
            if fd in self.stale[i]:
                # closed while added, its number now the new socket's: left
                # untouched with a RuntimeWarning, forgotten
                stale = fd
                before = fd_state(fd)
            elif fd not in self.added[i]:
                errors = errors + [FileNotFoundError]
        elif name == "bad number":
            errors = errors + [FileNotFoundError]
        if obj.closed:
            errors = errors + [ValueError]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = attempt(obj.remove, value, errors=errors)
        if stale is not None and not isinstance(result, Raised):
            assert strangers_warned(caught) == {stale}
            assert fd_state(stale) == before, "remove() touched the open file now at a stale number"
            self.stale[i].discard(stale)            # forgotten
            self.pending[i].pop(stale, None)
            self.unrestored = True
            return
        assert not caught, [str(w.message) for w in caught]
        if isinstance(result, Raised):
            return
        del self.added[i][fd]
        self.pending[i].pop(fd, None)
        if not any(fd in added for added in self.added):
            assert fd_state(fd) == self.saved[tracked], f"remove() did not restore {tracked}"

    @rule(name=st.sampled_from(["sock 0", "sock 1", "sock 2", "pipe r"]), data=st.binary(min_size=1, max_size=8))
    def make_readable(self, name, data):
        """Write to the peer: an added fd with nothing unread must be
        reported readable."""
        was = self.unread.get(name, 0)
        if name == "pipe r":
            os.write(self.w, data)
            fd = self.r
        else:
            a, b = self.pairs[int(name[-1])]
            b.send(data)
            fd = a.fileno()
        self.unread[name] = was + len(data)
        if not was:
            for i in (0, 1):
                if fd in self.added[i]:
                    self.pending[i][fd] = self.pending[i].get(fd, 0) | POLLIN

    @rule(name=st.sampled_from(["sock 0", "sock 1", "sock 2", "pipe r"]))
    def drain(self, name):
        if name == "pipe r":
            if self.unread.get(name):
                os.read(self.r, 1 << 16)
        else:
            a, _ = self.pairs[int(name[-1])]
            try:
                while a.recv(1 << 16):
                    pass
            except BlockingIOError:
                pass
        self.unread[name] = 0
        fd = self.fd_number(name)
        for i in (0, 1):                    # a readiness report may now be stale: fine either way
            if fd in self.pending[i]:
                self.pending[i][fd] &= ~POLLIN
                if not self.pending[i][fd]:
                    del self.pending[i][fd]

    @rule(i=OBJS, timeout=mostly([0, 0.0, 0.001, 0.02, None, -1], ["1", float("nan")]),
          max_events=mostly([None, None, 1, 2, 1000], [0, -1, 1.5, 2**40]))
    def wait(self, i, timeout, max_events):
        obj = self.objs[i]
        if obj is None:
            return
        errors = [ValueError] if obj.closed else []
        if isinstance(timeout, str):
            errors.append(TypeError)
        elif timeout is not None and timeout != timeout:
            errors.append(ValueError)
        if isinstance(max_events, float):
            errors.append(TypeError)
        elif max_events == 2**40:
            errors.append(OverflowError)
        elif max_events is not None and max_events < 1:
            errors.append(ValueError)
        unbounded = timeout is None or (isinstance(timeout, (int, float)) and timeout < 0)
        if unbounded and not errors and not self.pending[i]:
            timeout = 0.02          # unbounded only when something must be reported
        result = attempt(obj.wait, timeout, max_events, errors=errors)
        if not isinstance(result, Raised):
            self.check_events(i, result)

    def check_events(self, i, events):
        fds = [fd for fd, _ in events]
        assert len(fds) == len(set(fds)), f"an fd reported twice: {events}"
        for fd, band in events:
            assert fd in self.added[i] or fd in self.stale[i], \
                f"object {i} reported fd {fd}, not added to it: {events} (added {self.added[i]})"
            assert band > 0, f"fd {fd} reported with band {band}"
            if fd in self.pending[i]:
                self.pending[i][fd] &= ~band
                if not self.pending[i][fd]:
                    del self.pending[i][fd]

    @rule()
    def nothing_lost(self):
        """Every readiness the model expects is reported within 5 s of waits.
        (Not a precondition: what is still pending depends on timing, and
        hypothesis must draw the same way when it replays.)"""
        deadline = time.monotonic() + 5
        for i in (0, 1):
            obj = self.objs[i]
            while obj is not None and self.pending[i]:
                assert time.monotonic() < deadline, f"object {i} never reported {self.pending[i]}"
                self.check_events(i, obj.wait(0.05))

    @rule(i=OBJS)
    def wait_from_another_thread(self, i):
        obj = self.objs[i]
        if obj is None:
            return
        out = []

        def waiter():
            try:
                obj.wait(0)
            except Exception as exc:
                out.append(exc)
        t = threading.Thread(target=waiter)
        t.start()
        t.join(10)
        assert not t.is_alive()
        assert len(out) == 1 and isinstance(out[0], (RuntimeError, ValueError)), out
        assert isinstance(out[0], ValueError) == obj.closed, out

    @rule(k=st.integers(0, PAIRS - 1))
    def close_added_socket(self, k):
        """Close a socket end while it is added (and make a new pair, which
        may take the same number): remove() of that number can then only
        warn and leave the new socket alone, and close() leaves the signal
        blocked, as documented."""
        a, b = self.pairs[k]
        fd = a.fileno()
        owners = [i for i in (0, 1) if fd in self.added[i]]
        if not owners:
            return
        self.to_close.append(b)
        a.close()
        self.pairs[k] = self.new_pair()
        self.saved.pop(f"sock {k}", None)
        self.unread[f"sock {k}"] = 0
        for i in owners:
            del self.added[i][fd]
            self.pending[i].pop(fd, None)
            self.stale[i].add(fd)

    def close(self, i):
        obj = self.objs[i]
        reopened = {fd for fd in self.stale[i] if is_open(fd)}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            obj.close()
        assert strangers_warned(caught) == reopened
        assert obj.closed
        if self.stale[i]:
            self.unrestored = True
        for fd, name in self.added[i].items():
            if not any(fd in added for j, added in enumerate(self.added) if j != i):
                assert fd_state(fd) == self.saved[name], f"close() did not restore {name}"
        self.added[i] = {}
        self.stale[i] = set()
        self.pending[i] = {}
        for call in ("add", "remove", "wait", "fileno", "enter"):
            fn = {"add": lambda: obj.add(self.r), "remove": lambda: obj.remove(self.r),
                  "wait": lambda: obj.wait(0), "fileno": obj.fileno, "enter": obj.__enter__}[call]
            attempt(fn, errors=[ValueError])
        obj.close()                         # twice is fine
        self.objs[i] = None
        if not any(o is not None for o in self.objs) and not self.unrestored:
            assert thread_mask() == self.mask, "the thread's signal mask is not restored"

    @precondition(lambda self: any(o is not None for o in self.objs))
    @rule(i=OBJS)
    def close_object(self, i):
        if self.objs[i] is not None:
            self.close(i)

    @invariant()
    def fileno_is_a_signalfd(self):
        for obj in self.objs:
            if obj is not None:
                assert os.readlink(f"/proc/self/fd/{obj.fileno()}") == "anon_inode:[signalfd]"


def machine_for(backend):
    """SignalIOMachine bound to ``backend`` (a subclass per backend: hypothesis keeps rules per class)."""
    return type(f"SignalIOMachine_{backend.name}", (SignalIOMachine,), {"backend": backend})


TMP_FILE = None


@pytest.fixture
def sigio_env(tmp_path):
    """A regular file to refuse; afterwards the thread's mask and fastio's
    per-thread signal table are put back (an fd closed before remove()
    leaves a signal blocked on purpose)."""
    global TMP_FILE
    TMP_FILE = str(tmp_path / "regular")
    with open(TMP_FILE, "wb") as f:
        f.write(b"x")
    mask = thread_mask()
    yield
    state = _sigclaim._threads.get(threading.get_ident())
    if state is not None and not state.signums:
        del _sigclaim._threads[threading.get_ident()]
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    TMP_FILE = None


def test_signalio_state_machine(backend, sigio_env):
    run_state_machine_as_test(machine_for(backend), settings=SETTINGS)
