"""setup.py's switches for instrumented builds (tools/sanitize, tools/valgrind):
a wrong value stops the build with a message that names it."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

SETUP = pathlib.Path(__file__).resolve().parents[2] / "setup.py"

pytestmark = [
    pytest.mark.skipif(not SETUP.exists(), reason="no setup.py beside tests/ (a run against an installed wheel)"),
    pytest.mark.skipif(importlib.util.find_spec("Cython") is None or importlib.util.find_spec("setuptools") is None,
                       reason="setup.py imports Cython and setuptools (the test extra has both); one is missing here"),
]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("FASTIO_SANITIZE", "adress", "FASTIO_SANITIZE: unknown adress"),
    ("FASTIO_SANITIZE", "address,thread", "FASTIO_SANITIZE: unknown thread"),
    ("FASTIO_DEBUG", "yes", "FASTIO_DEBUG='yes'"),
])
def test_a_wrong_value_is_an_error(name, value, message):
    env = dict(os.environ, FASTIO_SANITIZE="", FASTIO_DEBUG="")
    env[name] = value
    out = subprocess.run([sys.executable, str(SETUP), "--name"], cwd=SETUP.parent, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert message in out.stderr
