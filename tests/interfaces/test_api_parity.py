"""Both backends export every name of PUBLIC_API, with the same public methods
and the same signatures."""

from __future__ import annotations

import importlib
import inspect

import pytest

from fastio._api import PUBLIC_API

NAMES = [(module, name) for module, names in PUBLIC_API.items() for name in names]


def _shape(func) -> list[tuple]:
    """A signature without annotations: names, kinds and defaults."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(func).parameters.values()]


def _public_members(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")} | ({"__enter__", "__exit__"} & set(dir(obj)))


@pytest.mark.parametrize("module, name", NAMES, ids=[f"{m}.{n}" for m, n in NAMES])
def test_same_names_and_signatures(module, name):
    c_obj = getattr(importlib.import_module(f"fastio._c.{module}"), name)
    pure_obj = getattr(importlib.import_module(f"fastio._pure.{module}"), name)
    if not inspect.isclass(c_obj):
        assert _shape(c_obj) == _shape(pure_obj)
        return
    assert _public_members(c_obj) == _public_members(pure_obj)
    for member in sorted(_public_members(c_obj)):
        c_attr, pure_attr = getattr(c_obj, member), getattr(pure_obj, member)
        if callable(c_attr) and callable(pure_attr):
            assert _shape(c_attr) == _shape(pure_attr), member


def test_public_modules_expose_the_chosen_backend():
    import fastio
    import fastio.epoll
    import fastio.poll
    import fastio.selectors

    for module, names in PUBLIC_API.items():
        impl = importlib.import_module(f"fastio._{fastio.backend}.{module}")
        facade = importlib.import_module(f"fastio.{module}")
        for name in names:
            assert getattr(facade, name) is getattr(impl, name)
            assert name in facade.__all__
