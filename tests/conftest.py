"""One suite, both backends: the ``backend`` fixture runs each test that takes
it once on ``c`` and once on ``pure``. ``--backend=c|pure|both`` selects.
If the compiled backend does not import, its tests fail (they do not skip)."""

from __future__ import annotations

import importlib
import socket
import types

import pytest

from fastio._backend import BACKENDS, PUBLIC_API


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        choices=BACKENDS + ("both",),
        default="both",
        help="run the backend-parametrised tests on c, pure or both (default)",
    )


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--backend")
        names = BACKENDS if chosen == "both" else (chosen,)
        params = [pytest.param(n, marks=[pytest.mark.c_backend] if n == "c" else [], id=n) for n in names]
        metafunc.parametrize("backend", params, indirect=True, scope="session")


def load_backend(name: str) -> types.SimpleNamespace:
    """Every public class and function of one backend, by name (Epoll, Poll,
    EpollSelector ...), plus ``name``."""
    ns = types.SimpleNamespace(name=name)
    for module, names in PUBLIC_API.items():
        mod = importlib.import_module(f"fastio._{name}.{module}")
        for attr in names:
            setattr(ns, attr, getattr(mod, attr))
    return ns


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
