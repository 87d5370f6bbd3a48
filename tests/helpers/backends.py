"""The backends as the tests see them: ``load_backend(name)``, what
tests/conftest.py's ``backend`` fixture gives and what the soak tool and the
asyncio suites load by name."""

from __future__ import annotations

import importlib
import types

from fastio._api import PUBLIC_API


def load_backend(name: str) -> types.SimpleNamespace:
    """One backend: each implementation module by its name (``backend.aio``,
    ``backend.uring`` ...), every public name that only one module has
    (``backend.Epoll``, ``backend.Ring`` ...), and ``name``. A name two
    modules share (``Completion``, ``available``) is reached through its
    module only, so it can never resolve to the wrong one."""
    ns = types.SimpleNamespace(name=name)
    owners: dict[str, list[str]] = {}
    for module, names in PUBLIC_API.items():
        setattr(ns, module, importlib.import_module(f"fastio._{name}.{module}"))
        for attr in names:
            owners.setdefault(attr, []).append(module)
    for attr, modules in owners.items():
        if len(modules) == 1:
            setattr(ns, attr, getattr(getattr(ns, modules[0]), attr))
    return ns
