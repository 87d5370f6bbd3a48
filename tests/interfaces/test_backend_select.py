"""FASTIO_BACKEND chooses the implementation; each case runs in a subprocess
so the choice is made fresh."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import fastio
import fastio._c
import fastio._pure.epoll


def _run(code: str, backend: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("FASTIO_BACKEND", None)
    if backend is not None:
        env["FASTIO_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


SHOW = """
import fastio, fastio.epoll, fastio.selectors, fastio.poll
print(fastio.backend, fastio.epoll.Epoll.__module__, fastio.selectors.DefaultSelector.__module__,
      fastio.poll.Poll.__module__)
"""


@pytest.mark.parametrize("value, expected", [(None, "c"), ("", "c"), ("c", "c"), ("pure", "pure")])
def test_choice(value, expected):
    proc = _run(SHOW, value)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [expected, f"fastio._{expected}.epoll", f"fastio._{expected}.selectors",
                                   f"fastio._{expected}.poll"]


def test_unknown_value_warns_with_valid_ones():
    proc = _run(SHOW, "rust")
    assert proc.returncode != 0
    assert "RuntimeWarning" in proc.stderr and "'rust'" in proc.stderr and "c, pure" in proc.stderr


@pytest.fixture
def broken_c(tmp_path):
    """A directory that shadows fastio._c with a package that fails to import."""
    pkg = tmp_path / "fastio"
    (pkg / "_c").mkdir(parents=True)
    real = os.path.dirname(fastio.__file__)
    # Re-export the real package, except that _c cannot be imported.
    (pkg / "__init__.py").write_text(
        f"__path__.append({real!r})\nexec(open({os.path.join(real, '__init__.py')!r}).read())\n"
    )
    (pkg / "_c" / "__init__.py").write_text("raise ImportError('simulated: extension not built')\n")
    return str(tmp_path)


def test_default_falls_back_to_pure_with_warning(broken_c):
    proc = subprocess.run(
        [sys.executable, "-c", SHOW],
        env={**os.environ, "PYTHONPATH": broken_c, "FASTIO_BACKEND": ""},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "pure"
    assert "RuntimeWarning" in proc.stderr and "simulated: extension not built" in proc.stderr


def test_forced_c_without_extension_is_import_error(broken_c):
    proc = subprocess.run(
        [sys.executable, "-c", SHOW],
        env={**os.environ, "PYTHONPATH": broken_c, "FASTIO_BACKEND": "c"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "simulated: extension not built" in proc.stderr
    assert "FASTIO_BACKEND=pure" in proc.stderr


def test_both_backends_importable_side_by_side():
    assert fastio._c.epoll.Epoll is not fastio._pure.epoll.Epoll
    with fastio._c.epoll.Epoll() as a, fastio._pure.epoll.Epoll() as b:
        assert a.fileno() != b.fileno()
