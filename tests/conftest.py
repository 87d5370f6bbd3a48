"""One suite, both backends: the ``backend`` fixture runs each test that takes
it once on ``c`` and once on ``pure``. ``--backend=c|pure|both`` selects.
If the compiled backend does not import, its tests fail (they do not skip)."""

from __future__ import annotations

import pathlib
import signal
import socket
import sys
import types

import pytest

# The suite's shared helpers (support, fuzzing, soak_core) live in tests/helpers/,
# out of the list of test files; every test module imports them by name.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "helpers"))

from backends import load_backend  # noqa: E402
from fastio._backend import BACKENDS  # noqa: E402


def pytest_configure(config):
    """Ctrl-C as a user's Python has it, whatever started pytest. A shell
    starts a background job (`cmd &` without job control) with SIGINT
    ignored, and Python then leaves it ignored: no KeyboardInterrupt in this
    process, and none in the Python subprocesses the tests start (SIG_IGN
    survives exec, a handler does not). The tests that stop a loop or a
    server with SIGINT would wait for ever."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        choices=BACKENDS + ("both",),
        default="both",
        help="run the backend-parametrised tests on c, pure or both (default)",
    )
    parser.addoption(
        "--asyncio-kinds",
        default="all",
        help="the loop kinds CPython's asyncio suites run on (tests/helpers/asyncio_loops.py), "
             "comma-separated, or all (default); tools/check-wheels gives the compiled loop's",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--backend")
        names = BACKENDS if chosen == "both" else (chosen,)
        params = [pytest.param(n, marks=[pytest.mark.c_backend] if n == "c" else [], id=n) for n in names]
        metafunc.parametrize("backend", params, indirect=True, scope="session")


def pytest_collection_modifyitems(config, items):
    """A backend-parametrised case of an echo server the backend does not have
    (the compiled loop's exist only on ``c``) is not a test: dropped, not skipped."""
    from fastio import models

    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        name = params.get("model", params.get("name"))
        cls = models.MODELS.get(name) if isinstance(name, str) else None
        if "backend" in params and cls is not None and params["backend"] not in cls.backends:
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def backend(request) -> types.SimpleNamespace:
    return load_backend(request.param)


@pytest.fixture
def sockpair():
    """A connected AF_UNIX stream pair, closed after the test."""
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def tcp_pair():
    """A connected TCP pair on 127.0.0.1, closed after the test."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        peer, _ = server.accept()
    yield client, peer
    client.close()
    peer.close()
