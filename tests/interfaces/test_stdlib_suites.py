"""CPython's own ``test.test_epoll``, ``test.test_poll`` and ``test.test_selectors``,
run against fastio's classes on both backends (issue 11).

The suites come from the *running* interpreter's ``test`` package, so each
Python checks fastio against its own stdlib's expectations (3.9 to 3.13 differ
in small ways). Each stdlib test method is one pytest test, named
``<suite>.<class>.<method>``, run through ``unittest`` (a one-test
``TestSuite``, so class and module fixtures run as under ``unittest``); a
failure is reported with unittest's traceback, a stdlib skip stays a skip.

How each suite is bound to fastio:

- ``test_selectors``: the test classes take the class under test from their
  ``SELECTOR`` attribute. Each of ``SelectSelectorTestCase``,
  ``PollSelectorTestCase`` and ``EpollSelectorTestCase`` is subclassed with
  ``SELECTOR`` set to the backend's class of that name; nothing else changes.
  (``DefaultSelectorTestCase`` is left out: fastio's ``DefaultSelector`` is
  its ``EpollSelector``, which is already run.)
- ``test_poll`` and ``test_epoll`` call ``select.poll()``/``select.epoll()``
  and read ``select.POLLIN`` ... through the name ``select`` in their module.
  While one of their tests runs, that module global (only that one: the
  stdlib ``select`` module itself and every other user of it are untouched)
  points at a copy of the ``select`` module whose ``poll``, ``epoll`` and
  POLL*/EPOLL* constants are fastio's; it is restored afterwards.

Left out, each with its reason as the skip reason: see ``NOT_OURS``.
"""

from __future__ import annotations

import importlib
import os
import select as _std_select
import selectors as std_selectors
import types
import unittest
from unittest import mock

import pytest

from fastio import _consts

SUITES = ("test_epoll", "test_poll", "test_selectors")

# The selectors test classes that are bound to fastio, by the name of the
# fastio class they get as SELECTOR.
SELECTOR_CLASSES = {
    "SelectSelectorTestCase": "SelectSelector",
    "PollSelectorTestCase": "PollSelector",
    "EpollSelectorTestCase": "EpollSelector",
}

# Stdlib tests that test CPython's implementation rather than the API.
NOT_OURS = {
    "test_modify_unregister": (
        "tests CPython's class, not the API: it patches the stdlib "
        "selectors.<Name>Selector._selector_cls (the private select.poll/epoll "
        "factory of CPython's selectors.py) to make modify() fail; fastio's "
        "selectors do not have it. The behaviour it checks, modify() unregistering "
        "the file object when the kernel refuses the change, is compared with the "
        "stdlib in tests/interfaces/test_selectors.py::test_modify_events_of_closed_file_object"
    ),
}


def _load(suite: str):
    """The stdlib test module, or the reason it cannot be run here."""
    try:
        return importlib.import_module(f"test.{suite}"), None
    except unittest.SkipTest as exc:
        return None, f"CPython's test.{suite} skips itself here: {exc}"
    except ImportError as exc:
        return None, (
            f"this interpreter has no CPython test package (import test.{suite}: {exc}); "
            "install the python3-test package or use a full CPython build"
        )


def _test_ids():
    """(suite, class, method) of every stdlib test to run, with skip reasons."""
    params = []
    loader = unittest.TestLoader()
    for suite in SUITES:
        module, why = _load(suite)
        if module is None:
            params.append(pytest.param(suite, None, None, id=suite, marks=pytest.mark.skip(reason=why)))
            continue
        for name in sorted(vars(module)):
            cls = getattr(module, name)
            if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
                continue
            if suite == "test_selectors" and name not in SELECTOR_CLASSES:
                continue
            for method in loader.getTestCaseNames(cls):
                marks = []
                if method in NOT_OURS:
                    marks.append(pytest.mark.skip(reason=NOT_OURS[method]))
                params.append(pytest.param(suite, name, method, id=f"{suite}.{name}.{method}", marks=marks))
    return params


def _select_namespace(backend) -> types.ModuleType:
    """A copy of the ``select`` module with fastio's poll, epoll and constants."""
    ns = types.ModuleType("select", "select as seen by the stdlib suites: fastio's poll and epoll")
    ns.__dict__.update({k: v for k, v in vars(_std_select).items() if not k.startswith("__")})
    for name in dir(_consts):
        if name.startswith(("POLL", "EPOLL")) and hasattr(_std_select, name):
            setattr(ns, name, getattr(_consts, name))
    ns.poll = backend.Poll
    ns.epoll = backend.Epoll
    return ns


_bound: dict[tuple[str, str, str], type] = {}


def _bound_class(backend, module, name: str) -> type:
    """The stdlib test class ``name`` bound to the backend's selector."""
    std = getattr(module, name)
    if module.__name__ != "test.test_selectors":
        return std
    key = (backend.name, module.__name__, name)
    if key not in _bound:
        impl = getattr(backend.selectors, SELECTOR_CLASSES[name])
        # __module__ stays the stdlib's, so its module fixtures (tearDownModule) run.
        _bound[key] = type(name, (std,), {"SELECTOR": impl, "__module__": module.__name__,
                                          "__qualname__": f"{backend.name}.{name}"})
    return _bound[key]


@pytest.mark.parametrize(("suite", "cls_name", "method"), _test_ids())
def test_stdlib(backend, suite, cls_name, method):
    module, _ = _load(suite)
    cls = _bound_class(backend, module, cls_name)
    case = cls(method)
    result = unittest.TestResult()
    if suite == "test_selectors":
        unittest.TestSuite([case]).run(result)
    else:
        with mock.patch.object(module, "select", _select_namespace(backend)):
            unittest.TestSuite([case]).run(result)
    problems = result.errors + result.failures
    if problems:
        pytest.fail("\n".join(text for _, text in problems), pytrace=False)
    if result.unexpectedSuccesses:
        pytest.fail("unexpected success of a stdlib expectedFailure", pytrace=False)
    if result.skipped:
        pytest.skip(f"the stdlib test skips: {result.skipped[0][1]}")
    assert result.testsRun == 1


# -- regressions the stdlib suites found ------------------------------------------
# Each is also a stdlib test above; these say what broke and compare with
# select.poll directly, so they hold on every Python whatever its test package.

INT_MAX = (1 << 31) - 1
INT_MIN = -(1 << 31)


def _outcome(call):
    try:
        return "returned", call()
    except Exception as exc:  # noqa: BLE001 - compared with the stdlib's
        return type(exc), str(exc)


@pytest.mark.parametrize(
    "timeout",
    [INT_MAX + 1, (1 << 32), INT_MIN - 1, INT_MAX + 0.5, INT_MIN - 0.5, float("inf"), float("-inf"),
     INT_MAX, INT_MIN, INT_MAX - 0.5, -0.5, 0.25],
    ids=repr,
)
def test_poll_timeout_must_fit_a_c_int(backend, sockpair, timeout):
    """Bug: ``Poll.poll(timeout)`` took any timeout up to 2**63 ns, while
    ``select.poll().poll`` raises ``OverflowError("timeout is too large")``
    unless the timeout, rounded away from zero to whole milliseconds, fits a
    C int, on either side of zero. Symptom: CPython's ``test_poll_c_limits``
    failed (``poll(INT_MAX + 1)`` returned instead of raising) and
    ``poll(-2**40)`` waited forever on fastio where the stdlib refuses it.
    Fix: ``poll()`` converts its timeout with select.poll's checks
    (``poll_timeout_ns`` / ``_poll_timeout_ns``) on both backends. The fd is
    writable, so an accepted timeout returns at once. (For an infinite
    timeout only the type is compared: CPython's message names its internal
    time type and differs between versions.)"""
    a, _ = sockpair
    fast, std = backend.Poll(), _std_select.poll()
    for p in (fast, std):
        p.register(a, _consts.POLLOUT)
    got, want = _outcome(lambda: fast.poll(timeout)), _outcome(lambda: std.poll(timeout))
    if timeout in (float("inf"), float("-inf")):
        got, want = got[0], want[0]
    assert got == want


@pytest.mark.parametrize("mask", [-1, -(1 << 64), 0x10000, 1 << 64, 1.0, "x"], ids=repr)
def test_poll_eventmask_errors_match_the_stdlib(backend, sockpair, mask):
    """Bug: the compiled ``Poll.register``/``modify`` converted the mask to a
    C long before checking its sign, so a mask below -2**63 raised
    OverflowError where ``select.poll`` raises ``ValueError("value must be
    positive")``, and a mask beyond an unsigned long had another message.
    Symptom: ``register(fd, -2**64)`` raised the wrong exception type.
    Fix: the sign is checked on the Python int first, then the range, with
    CPython's words (both backends)."""
    a, _ = sockpair
    fast, std = backend.Poll(), _std_select.poll()
    for call in ("register", "modify"):
        for p in (fast, std):
            p.register(a)
        assert _outcome(lambda: getattr(fast, call)(a, mask)) == _outcome(lambda: getattr(std, call)(a, mask))


@pytest.mark.parametrize("name", ["EpollSelector", "PollSelector", "SelectSelector"])
def test_selector_instance_attributes_and_modify_calls(backend, sockpair, name):
    """Bug: the compiled selectors had no ``__dict__``, so ``sel.register =
    ...`` raised AttributeError ("object attribute 'register' is read-only"),
    where the stdlib's selectors take instance attributes; and the compiled
    ``SelectSelector.modify`` re-registered through a C method, not through
    ``self.register`` as the stdlib's does. Symptom: CPython's
    ``test_modify`` errored on the three compiled classes (it puts mocks on
    the instance to check that modify takes its shortcut). Fix: the compiled
    base class has an instance dict (left unmade until first used, so the
    attribute lookups on ``select()`` stay as fast), and ``SelectSelector``'s
    modify calls ``self.unregister``/``self.register``. The calls that
    ``modify`` makes through the instance are recorded here and compared with
    the stdlib class's, for a data change (the shortcut: none), an events
    change, and a change the kernel refuses (an fd closed meanwhile)."""
    a, b = sockpair

    def trace(sel):
        calls = []
        sel.tag = "instance attribute"
        assert sel.tag == "instance attribute" and "tag" in vars(sel)
        for method in ("register", "unregister"):
            def record(*args, _method=method, **kwargs):
                calls.append(_method)
                return getattr(type(sel), _method)(sel, *args, **kwargs)
            setattr(sel, method, record)
        type(sel).register(sel, a, std_selectors.EVENT_READ, "d1")
        steps = []
        fd = os.dup(b.fileno())
        type(sel).register(sel, fd, std_selectors.EVENT_READ)
        os.close(fd)
        for args in ((a, std_selectors.EVENT_READ, "d2"), (a, std_selectors.EVENT_WRITE, "d3"),
                     (fd, std_selectors.EVENT_READ | std_selectors.EVENT_WRITE)):
            del calls[:]
            try:
                key = sel.modify(*args)
                outcome = (key.events, key.data)
            except OSError as exc:
                outcome = type(exc)
            steps.append((list(calls), outcome, sel.get_map() and sorted(sel.get_map())))
        sel.close()
        return steps

    assert trace(getattr(backend.selectors, name)()) == trace(getattr(std_selectors, name)())
