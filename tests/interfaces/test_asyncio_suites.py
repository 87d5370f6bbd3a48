"""CPython's own asyncio suites (``test.test_asyncio``), run on each of
fastio's loop kinds (tests/helpers/asyncio_loops.py) and both backends
(issue 13).

As in test_stdlib_suites.py, the suites come from the *running* interpreter's
``test`` package, each stdlib test method is one pytest test, named
``<kind>-<suite>.<class>.<method>``, run through ``unittest`` as a one-test
``TestSuite`` (so class and module fixtures run as under ``unittest``); a
failure is reported with unittest's traceback, a stdlib skip stays a skip.

How each suite is bound to a loop kind (``BINDINGS``): where CPython runs a
mixin on ``asyncio.SelectorEventLoop(<selector>)`` (test_events,
test_sock_lowlevel, test_sendfile, test_subprocess), the same mixins are
subclassed with the kind's loop as ``create_event_loop()``; where CPython's
class makes its loop with ``new_loop()`` (test_server, test_buffered_proto),
that is overridden. The classes that call ``asyncio.new_event_loop()``
themselves, or are ``IsolatedAsyncioTestCase`` s (test_streams, test_ssl,
test_server's TestServer2 and UnixServerCleanupTests), are run as they are:
every case runs with an event loop policy that makes the kind's loops (and on
3.13+ an ``IsolatedAsyncioTestCase`` also gets it as its ``loop_factory``).
Child processes are watched by the policy's default watcher, the one a user
of fastio.asyncio gets (ThreadedChildWatcher before 3.12, PidfdChildWatcher
from 3.12), not by CPython's test choice of the deprecated SafeChildWatcher.

Each case runs as regrtest runs it: warnings shown, not raised (the suite's
``filterwarnings = error`` would make the stdlib's own DeprecationWarnings
failures); in a fresh temporary directory (test_sendfile writes
``support.TESTFN`` into the current one); under a watchdog (SIGALRM after
``WATCHDOG`` seconds fails the one test that hangs); and with the event loop
policy, the signal handlers and the signal wakeup fd restored afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import importlib
import signal
import sys
import unittest
import warnings
from typing import Any, Optional

import pytest
from asyncio_loops import LOOP_KINDS, get_policy, set_policy
from backends import load_backend

# Seconds one stdlib test may take before the watchdog fails it.
WATCHDOG = 60.0
# After the first SIGALRM, again every REPEAT seconds (a hang in a loop
# callback, where asyncio logs and drops the exception, is broken again),
# and after ABANDON of them unittest itself is interrupted.
REPEAT = 10.0
ABANDON = 3


class _LoopPerTest:
    """Makes ``self.loop`` for ``SubprocessMixin``, which leaves that to the
    concrete class (CPython's ``SubprocessWatcherMixin.setUp``)."""

    def setUp(self):
        super().setUp()
        self.loop = self.create_event_loop()
        self.set_event_loop(self.loop)


@dataclasses.dataclass(frozen=True)
class Binding:
    """A stdlib test class, made of ``bases`` (names in the suite's module,
    or classes) and named ``name``, whose loop comes from method ``hook``
    (None: the policy's ``new_event_loop()``)."""

    suite: str
    name: str
    bases: tuple[Any, ...]
    hook: Optional[str] = None


BINDINGS = (
    Binding("test_events", "EventLoopTests",
            ("EventLoopTestsMixin", "SubprocessTestsMixin", "test_utils.TestCase"), "create_event_loop"),
    Binding("test_sock_lowlevel", "SockTests", ("BaseSockTestsMixin", "test_utils.TestCase"), "create_event_loop"),
    Binding("test_sendfile", "SendfileTests", ("SendfileTestsBase", "test_utils.TestCase"), "create_event_loop"),
    Binding("test_server", "SelectorStartServerTests", ("SelectorStartServerTests",), "new_loop"),
    Binding("test_server", "TestServer2", ("TestServer2",)),
    Binding("test_server", "UnixServerCleanupTests", ("UnixServerCleanupTests",)),
    Binding("test_buffered_proto", "BufferedProtocolSelectorTests", ("BufferedProtocolSelectorTests",), "new_loop"),
    Binding("test_streams", "StreamTests", ("StreamTests",)),
    Binding("test_ssl", "TestSSL", ("TestSSL",)),
    Binding("test_subprocess", "SubprocessTests",
            (_LoopPerTest, "SubprocessMixin", "test_utils.TestCase"), "create_event_loop"),
)


def _load(suite: str):
    """The stdlib test module, or the reason it cannot be run here."""
    try:
        return importlib.import_module(f"test.test_asyncio.{suite}"), None
    except unittest.SkipTest as exc:
        return None, f"CPython's test.test_asyncio.{suite} skips itself here: {exc}"
    except ModuleNotFoundError as exc:
        if exc.name == f"test.test_asyncio.{suite}":
            return None, f"Python {sys.version.split()[0]}'s test package has no test_asyncio.{suite}"
        return None, (
            f"this interpreter has no CPython test package (import test.test_asyncio.{suite}: {exc}); "
            "install the python3-test package or use a full CPython build"
        )


def _resolve(module, base):
    """A base of a Binding: a class, or a dotted name in ``module``; None if absent."""
    if isinstance(base, type):
        return base
    obj = module
    for part in base.split("."):
        obj = getattr(obj, part, None)
    return obj


def _bases(binding: Binding):
    """(the suite's module, the binding's base classes), or (None, why not)."""
    module, why = _load(binding.suite)
    if module is None:
        return None, why
    bases = tuple(_resolve(module, base) for base in binding.bases)
    missing = [base for base, cls in zip(binding.bases, bases) if cls is None]
    if missing:
        return None, f"Python {sys.version.split()[0]}'s test.test_asyncio.{binding.suite} has no {', '.join(missing)}"
    return bases, None


def _test_ids():
    """(kind, binding index, method) of every stdlib test to run, with marks."""
    params = []
    loader = unittest.TestLoader()
    for kind_name, kind in LOOP_KINDS.items():
        for index, binding in enumerate(BINDINGS):
            where = f"{binding.suite}.{binding.name}"
            bases, why = _bases(binding)
            if bases is None:
                params.append(pytest.param(kind_name, index, None, id=f"{kind_name}-{where}",
                                           marks=pytest.mark.skip(reason=why)))
                continue
            for method in loader.getTestCaseNames(type(binding.name, bases, {})):
                key = f"{where}.{method}"
                marks = []
                if key in kind.not_ours:
                    marks.append(pytest.mark.skip(reason=kind.not_ours[key]))
                if key in kind.pending:
                    marks.append(pytest.mark.xfail(reason=kind.pending[key], strict=True))
                params.append(pytest.param(kind_name, index, method, id=f"{kind_name}-{key}", marks=marks))
    return params


_bound: dict[tuple[str, str, int], type] = {}
# How many loops the loop kinds have made: each case must make at least one,
# or it ran on some other loop.
_loops_made = [0]


def _new_loop(kind_name: str, backend):
    _loops_made[0] += 1
    return LOOP_KINDS[kind_name].new_loop(backend)


def _bound_class(backend, kind_name: str, index: int) -> type:
    """BINDINGS[index] on the loop kind and backend."""
    key = (kind_name, backend.name, index)
    if key not in _bound:
        binding = BINDINGS[index]
        bases, _ = _bases(binding)
        # __module__ stays the stdlib's, so its module fixtures (tearDownModule) run.
        attrs = {"__module__": f"test.test_asyncio.{binding.suite}",
                 "__qualname__": f"{kind_name}.{backend.name}.{binding.name}"}
        if binding.hook is not None:
            attrs[binding.hook] = lambda self: _new_loop(kind_name, backend)
        if "loop_factory" in vars(unittest.IsolatedAsyncioTestCase) and issubclass(
                bases[-1], unittest.IsolatedAsyncioTestCase):
            attrs["loop_factory"] = staticmethod(lambda: _new_loop(kind_name, backend))
        _bound[key] = type(binding.name, bases, attrs)
    return _bound[key]


class _KindPolicy(asyncio.DefaultEventLoopPolicy):
    """The default policy, with the loop kind's loops."""

    def __init__(self, make):
        super().__init__()
        self._make = make

    def _loop_factory(self):
        return self._make()


class CaseHung(Exception):
    """Raised by the watchdog into a stdlib test that runs too long."""


class CaseAbandoned(KeyboardInterrupt):
    """Raised when CaseHung did not end the test: escapes asyncio and unittest."""


@contextlib.contextmanager
def _as_regrtest_runs_it(policy):
    """Warnings shown, a watchdog, and the policy, the signal handlers and the
    wakeup fd restored afterwards."""
    handlers = {sig: signal.getsignal(sig) for sig in signal.valid_signals()}
    wakeup_fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_fd)
    previous = get_policy()
    fired = 0

    def watchdog(signum, frame):
        nonlocal fired
        fired += 1
        if fired > ABANDON:
            raise CaseAbandoned(f"the stdlib test went on {ABANDON} times after the watchdog")
        raise CaseHung(f"the stdlib test ran for more than {WATCHDOG:.0f} s")

    signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, WATCHDOG, REPEAT)
    set_policy(policy)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            try:
                yield
            finally:
                gc.collect()  # the case's unclosed resources warn here, not in a later test
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        set_policy(previous)
        signal.set_wakeup_fd(wakeup_fd)
        for sig, handler in handlers.items():
            if handler is not None and signal.getsignal(sig) != handler:
                signal.signal(sig, handler)


def pytest_generate_tests(metafunc):
    """Each case on each backend that has its loop kind (``--backend`` chooses
    among them, as for every backend-parametrised test), for the loop kinds
    ``--asyncio-kinds`` names."""
    if metafunc.function is not test_stdlib:
        return
    chosen = metafunc.config.getoption("--backend")
    kinds = metafunc.config.getoption("--asyncio-kinds")
    wanted = set(LOOP_KINDS) if kinds == "all" else set(kinds.split(","))
    unknown = wanted - set(LOOP_KINDS)
    if unknown:
        raise pytest.UsageError(f"--asyncio-kinds: no loop kind {sorted(unknown)} (there are {sorted(LOOP_KINDS)})")
    params = []
    for case in _test_ids():
        kind = case.values[0]
        if kind not in wanted:
            continue
        for name in LOOP_KINDS[kind].backends:
            if chosen in ("both", name):
                marks = [*case.marks, *([pytest.mark.c_backend] if name == "c" else [])]
                params.append(pytest.param(name, *case.values, id=f"{name}-{case.id}", marks=marks))
    metafunc.parametrize(("backend_name", "kind", "index", "method"), params)


def test_stdlib(backend_name, kind, index, method, tmp_path, monkeypatch):
    backend = load_backend(backend_name)
    why = LOOP_KINDS[kind].skip_reason(backend)
    if why is not None:
        pytest.skip(why)
    cls = _bound_class(backend, kind, index)
    result = unittest.TestResult()
    monkeypatch.chdir(tmp_path)
    made = _loops_made[0]
    try:
        with _as_regrtest_runs_it(_KindPolicy(lambda: _new_loop(kind, backend))):
            unittest.TestSuite([cls(method)]).run(result)
    except CaseAbandoned as exc:
        pytest.fail(f"{exc}; unittest was interrupted, its cleanups did not all run", pytrace=False)
    problems = result.errors + result.failures
    if problems:
        pytest.fail("\n".join(text for _, text in problems), pytrace=False)
    if result.unexpectedSuccesses:
        pytest.fail("unexpected success of a stdlib expectedFailure", pytrace=False)
    if result.skipped:
        pytest.skip(f"the stdlib test skips: {result.skipped[0][1]}")
    assert result.testsRun == 1
    assert _loops_made[0] > made, f"the stdlib test made no {kind} loop"
