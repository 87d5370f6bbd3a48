"""The leak soaks of tools/soak.py (code in tests/helpers/soak_core.py), short: about
10 000 operations per interface on each backend. Each soak checks every
result it gets and that RSS, open fds, Python objects and tracemalloc stay
within their slack between a sample after warm-up and one at the end. The
full form is ``python tools/soak.py`` (a million operations each)."""

from __future__ import annotations

import os

import pytest
import soak_core

OPS = int(os.environ.get("FASTIO_SOAK_OPS", "10000"))


@pytest.mark.parametrize("name", list(soak_core.SOAKS))
def test_soak(backend, name):
    why = soak_core.unavailable(name)
    if why:
        pytest.skip(why)
    result = soak_core.run(name, backend.name, OPS, warmup=max(OPS // 4, 2000))
    print(soak_core.table([result]))
    assert not result.failures(), soak_core.table([result])
