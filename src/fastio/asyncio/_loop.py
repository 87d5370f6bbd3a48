"""``fastio.asyncio.Loop`` on the compiled backend: an
``asyncio.AbstractEventLoop`` whose scheduler and fd engine are compiled
(``fastio._c._loop_core``, ``_loop_uring``, ``_loop_epoll``).

What runs per callback, per timer and per fd event is C: the ready queue, the
timer heap, ``call_soon``/``call_later``/``call_at``, the handles, the wait
(one ``io_uring_enter`` or one ``epoll_wait`` per turn), the dispatch of fd
events, and the socket transport's receive and send
(``fastio._c._loop_transport``). What runs per connection, per server or
per loop (``create_connection``'s happy eyeballs, ``create_server``, TLS
through ``asyncio.sslproto``, sendfile, subprocesses, signal handlers,
``run_forever``'s set-up, the executor, the exception handler) is the
running interpreter's own asyncio code, taken function by function from the
classes that define it, so every Python from 3.9 to 3.13 gets its own
version's semantics. The loop is not a subclass of ``asyncio.BaseEventLoop``:
those functions only need the attributes and the methods they call, which
the core and this class provide.
"""

import os
import selectors as _selectors
import sys
import types
import warnings
import weakref
from asyncio import base_events, events, selector_events, unix_events

from fastio._c import _loop_transport
from fastio._c._loop_core import LoopCore
from fastio._c._loop_epoll import EpollEngine
from fastio._c._loop_uring import UringEngine
from fastio._errors import UnsupportedError

__all__ = ["ENGINES", "Loop"]

# The stdlib classes whose methods the loop takes, the most derived first.
_SOURCES = (
    unix_events._UnixSelectorEventLoop,
    selector_events.BaseSelectorEventLoop,
    base_events.BaseEventLoop,
)
# Written here or in the core instead: they set up or tear down the selector
# machinery the core replaces.
_NOT_TAKEN = frozenset({"__init__", "close", "_process_events", "__dict__", "__weakref__",
                        "__module__", "__doc__", "__qualname__", "__slots__"})


def _rebound(function, owner):
    """``function`` with its ``super()`` resolved from ``owner``: the
    ``__class__`` cell the compiler gave it names the stdlib class, of which
    the loop is no instance."""
    code = function.__code__
    closure = tuple(types.CellType(owner) if name == "__class__" else cell
                    for name, cell in zip(code.co_freevars, function.__closure__))
    copy = types.FunctionType(code, function.__globals__, function.__name__,
                              function.__defaults__, closure)
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__doc__ = function.__doc__
    copy.__dict__.update(function.__dict__)
    return copy


def _stdlib_methods():
    """One class per stdlib class in ``_SOURCES``, holding its own methods,
    each deriving from the next one's, as the stdlib classes do: a method
    that calls ``super()`` reaches the method the stdlib's would. What the
    core defines is left out, so the core's comes next in the MRO."""
    level = object
    for klass in reversed(_SOURCES):
        methods = {name: value for name, value in vars(klass).items()
                   if name not in _NOT_TAKEN and name not in vars(LoopCore)}
        level = types.new_class(f"_{klass.__name__.lstrip('_')}Methods", (level,), {},
                                lambda ns: ns.update(methods))
        for name, value in methods.items():
            if "__class__" in getattr(getattr(value, "__code__", None), "co_freevars", ()):
                setattr(level, name, _rebound(value, level))
    return level


_StdlibLoopMethods = _stdlib_methods()


# The kernel engines of the compiled loop, the preferred first.
ENGINES = ("uring", "epoll")


def _kernel_at_least(major: int, minor: int) -> bool:
    release = os.uname().release.split(".")
    try:
        return (int(release[0]), int(release[1].split("-")[0])) >= (major, minor)
    except (IndexError, ValueError):
        return False


# Multishot recv (IORING_RECV_MULTISHOT) is Linux 6.0; an older kernel
# fails it with EINVAL, so the uring engine then reads on readiness.
_HAS_MULTISHOT_RECV = _kernel_at_least(6, 0)


def _new_engine(wanted):
    """(engine, why the loop has this one)."""
    source = "engine="
    if wanted is None:
        wanted = os.environ.get("FASTIO_LOOP_ENGINE", "")
        source = "FASTIO_LOOP_ENGINE"
        if wanted not in ("",) + ENGINES:
            warnings.warn(f"FASTIO_LOOP_ENGINE={wanted!r} is not one of {', '.join(ENGINES)}; "
                          "ignoring it", RuntimeWarning, stacklevel=4)
            wanted = ""
    elif wanted not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {wanted!r}")
    if wanted == "epoll":
        return EpollEngine(), f"{source}=epoll"
    if wanted == "uring":
        return UringEngine(recv=_HAS_MULTISHOT_RECV), f"{source}=uring"
    try:
        return UringEngine(recv=_HAS_MULTISHOT_RECV), "io_uring works here"
    except (UnsupportedError, OSError) as exc:
        return EpollEngine(), f"io_uring cannot be used here: {exc}"


class _FdView:
    """What ``loop._selector`` answers: the stdlib transports' reprs ask it
    whether their fd is watched."""

    __slots__ = ("_loop",)

    def __init__(self, loop):
        self._loop = loop

    def get_key(self, fileobj):
        state = self._loop._fd_state(fileobj)
        if state is None:
            raise KeyError(f"{fileobj!r} is not registered")
        fd = fileobj if isinstance(fileobj, int) else fileobj.fileno()
        return _selectors.SelectorKey(fileobj, fd, state[0], state[1:])


class _SocketTransport(selector_events._SelectorSocketTransport):
    """The stdlib's socket transport with its per-event paths in C."""

    __slots__ = ()
    _read_ready = _loop_transport.read_ready
    _read_ready__data_received = _loop_transport.read_ready__data_received
    _read_ready__get_buffer = _loop_transport.read_ready__get_buffer
    write = _loop_transport.write


class Loop(_StdlibLoopMethods, LoopCore, events.AbstractEventLoop):
    """Loop(*, engine=None)

    An asyncio event loop with a compiled scheduler, on io_uring or epoll.

    Use it as any asyncio loop: ``fastio.asyncio.run(main())``,
    ``asyncio.Runner(loop_factory=fastio.asyncio.Loop)``, or
    ``loop = fastio.asyncio.Loop(); loop.run_until_complete(...)``.

    :param engine: ``"uring"`` or ``"epoll"`` forces that engine; None (the
        default) takes ``FASTIO_LOOP_ENGINE`` when set, else ``uring`` where
        io_uring can be used and ``epoll`` otherwise.
    :raises fastio.UnsupportedError: ``uring`` was forced and io_uring
        cannot be used here (the message says why and what to change).
    """

    def __init__(self, *, engine=None):
        try:
            made, reason = _new_engine(engine)
            self._set_engine(made)
            if getattr(made, "recv_mode", False):
                # The engine reads the socket transports itself (multishot recv).
                self._set_recv_reader(_loop_transport.read_ready,
                                      _loop_transport.read_ready__data_received)
            #: Why the loop has its engine (forced, or why io_uring could not be used).
            self.engine_reason = reason
            base_events.BaseEventLoop.__init__(self)
            self._transports = weakref.WeakValueDictionary()
            self._signal_handlers = {}
            if sys.version_info >= (3, 13):
                self._unix_server_sockets = {}
            self._make_self_pipe()
        except BaseException:
            # A loop that never was: no unclosed-loop warning, nothing left open.
            self._close_core()
            self._closed = True
            raise

    @property
    def _selector(self):
        # The stdlib transports' reprs ask it whether their fd is watched.
        return None if self._closed else _FdView(self)

    def close(self):
        """Close the loop: its fds, its queues, its default executor (not
        waited for). Closing a running loop is a ``RuntimeError``."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._close_self_pipe()
        base_events.BaseEventLoop.close(self)
        self._close_core()
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown stage, "
                          "skipping signal handlers removal", ResourceWarning, source=self)
            self._signal_handlers.clear()

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        self._ensure_fd_no_transport(sock)
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    def _run_handle_debug(self, handle):
        """Run one callback in debug mode: as the current handle, timed."""
        try:
            self._current_handle = handle
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                base_events.logger.warning("Executing %s took %.3f seconds",
                                           base_events._format_handle(handle), dt)
        finally:
            self._current_handle = None


# Shown (repr, tracebacks) under the name users import it by.
Loop.__module__ = "fastio.asyncio"
