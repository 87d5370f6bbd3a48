"""The ``.pyi`` stubs of the compiled backend match the built modules.

Every extension module in ``fastio._c`` (found at run time, so a new one is
covered the day it is added) must ship a ``.pyi`` next to it, and
``mypy.stubtest`` must find no difference between the two. Names Cython
generates are listed, with the reason, in ``tests/packaging/stubtest-allowlist.txt``.
"""

from __future__ import annotations

import importlib.machinery
import os
import pathlib
import pkgutil
import subprocess
import sys

import pytest

import fastio._c

pytest.importorskip("mypy.stubtest", reason="mypy is not installed (it is in the 'test' extra)")

ALLOWLIST = pathlib.Path(__file__).with_name("stubtest-allowlist.txt")


def compiled_modules() -> list[tuple[str, pathlib.Path]]:
    """(dotted name, file) of each extension module in fastio._c."""
    found = []
    for info in pkgutil.iter_modules(fastio._c.__path__):
        spec = info.module_finder.find_spec(info.name)
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            found.append((f"fastio._c.{info.name}", pathlib.Path(spec.origin)))
    return sorted(found)


def test_compiled_modules_found():
    names = {name for name, _ in compiled_modules()}
    # The ones that exist today; more may come and are then checked as well.
    assert {"fastio._c.epoll", "fastio._c.poll", "fastio._c.selectors", "fastio._c.sigio", "fastio._c.uring"} <= names


@pytest.mark.parametrize("name,path", compiled_modules(), ids=lambda v: str(v).rsplit(".", 1)[-1])
def test_stub_shipped(name, path):
    stub = path.parent / (name.rsplit(".", 1)[1] + ".pyi")
    assert stub.is_file(), f"{name} has no stub {stub.name} beside {path.name}"


def test_stubtest(tmp_path):
    modules = [name for name, _ in compiled_modules()]
    # mypy finds an installed fastio (wheel, or editable through its .pth file)
    # by PEP 561 (py.typed); one imported from elsewhere (PYTHONPATH=src)
    # through MYPYPATH, which must not name site-packages.
    package_root = pathlib.Path(fastio._c.__file__).resolve().parents[2]
    env = dict(os.environ)
    if package_root.name not in ("site-packages", "dist-packages"):
        env["MYPYPATH"] = str(package_root)
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", *modules, "--allowlist", str(ALLOWLIST)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
