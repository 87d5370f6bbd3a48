"""The documentation site (docs/) against the code, without Sphinx.

* Every name of the public API (the ``__all__`` of ``fastio`` and of each
  public module, as each backend exports it) has an entry in the API
  reference, ``docs/api/*.rst``: an autodoc directive (``autoclass``,
  ``autofunction``, ``autodata`` ...) or an explicit ``py:`` one, under its
  full dotted name. An entry that names nothing public fails too (a rename
  left behind).
* The code the pages show runs. Pages hold no inline Python: every example is
  a ``literalinclude`` of a file in ``examples/`` (run by
  tests/tools/test_examples.py) or ``docs/examples/`` (run here, on both
  backends, with ``-W error``: stderr must stay empty). An example skips
  only where this kernel lacks the feature (it prints ``skipped: `` and the
  reason, and the test checks that the feature is really missing).

The build itself (``python -m sphinx -W -b html docs docs/_build/html``,
warnings as errors) is a step of .ci/run: Sphinx is not in the test extra.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
API = DOCS / "api"
EXAMPLES = ROOT / "examples"
DOC_EXAMPLES = DOCS / "examples"

# tools/check-wheels runs a copy of tests/ on its own, without docs/.
pytestmark = pytest.mark.skipif(not (DOCS / "conf.py").is_file(), reason=f"no docs/ beside tests/ ({DOCS})")

# The public modules, by the dotted name a user imports or reaches them by.
PUBLIC_MODULES = (
    "fastio",
    "fastio.epoll",
    "fastio.poll",
    "fastio.selectors",
    "fastio.sigio",
    "fastio.uring",
    "fastio.aio",
    "fastio.asyncio",
    "fastio.asyncio.os",
    "fastio.asyncio.os.path",
    "fastio.models",
    "fastio.loadgen",
)

# Prints {module: __all__} for the backend FASTIO_BACKEND picks.
LIST_API = """
import importlib, json, sys
from fastio._api import PUBLIC_API
out = {}
for name in sys.argv[1:]:
    if name == "fastio.asyncio.os.path":
        module = importlib.import_module("fastio.asyncio.os").path
    else:
        module = importlib.import_module(name)
    out[name] = list(module.__all__)
out["_api"] = sorted(PUBLIC_API)
import fastio
out["_backend"] = fastio.backend
print(json.dumps(out))
"""

DIRECTIVE = re.compile(
    r"^\s*\.\.\s+(auto(?:module|class|function|data|exception|method|attribute)|"
    r"py:(?:module|class|function|data|exception|method|attribute))::\s+(\S+?)(?:\(.*)?$",
    re.M,
)
SOURCES = sorted(p for p in DOCS.rglob("*") if p.suffix in (".md", ".rst") and "_build" not in p.parts)


def public_api(backend_name: str) -> dict:
    env = {**os.environ, "FASTIO_BACKEND": backend_name}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", LIST_API, *PUBLIC_MODULES], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    api = json.loads(proc.stdout)
    assert api.pop("_backend") == backend_name
    return api


def documented() -> set[str]:
    """Every full dotted name the API reference has an entry for."""
    names = set()
    for path in sorted(API.glob("*.rst")):
        for _, name in DIRECTIVE.findall(path.read_text()):
            if name.startswith("fastio"):
                names.add(name)
    return names


def test_the_reference_has_every_public_name(backend):
    api = public_api(backend.name)
    # Each module of the backends' table (fastio._api) is one of the public modules here.
    for short in api.pop("_api"):
        assert f"fastio.{short}" in api, f"fastio.{short} (fastio._api.PUBLIC_API) is not in PUBLIC_MODULES"
    docs = documented()
    missing = [f"{module}.{name}" for module, names in api.items() for name in names
               if f"{module}.{name}" not in docs]
    assert not missing, f"public names with no entry in docs/api/*.rst: {missing}"


def test_the_reference_names_nothing_that_is_not_public(backend):
    api = public_api(backend.name)
    api.pop("_api")
    public = {f"{module}.{name}" for module, names in api.items() for name in names}
    # automodule entries for a module's docstring; fastio.asyncio.ospath is what fastio.asyncio.os.path is.
    modules = set(api) | {"fastio.asyncio.ospath"}
    stale = sorted(name for name in documented() if name not in public and name not in modules)
    assert not stale, f"docs/api/*.rst documents names that are not public: {stale}"


def test_the_api_pages_are_in_the_toctree():
    index = (API / "index.rst").read_text()
    for page in sorted(API.glob("*.rst")):
        if page.name != "index.rst":
            assert re.search(rf"^\s+{re.escape(page.stem)}$", index, re.M), f"{page.name} is not in api/index.rst"


# ---------------------------------------------------------------- the examples

INLINE_PYTHON = re.compile(
    r"^\s*(?:```+|:::+)\s*(?:\{(?:code-block|code|sourcecode)\}\s*)?(?:python3?|py|pycon)\b"
    r"|^\s*\.\.\s+(?:code-block|code|sourcecode)::\s*(?:python3?|py|pycon)\b"
    r"|^\s*>>>\s",
    re.M,
)
LITERALINCLUDE = re.compile(r"(?:\{literalinclude\}|\.\.\s+literalinclude::)\s+(\S+)")


def included_files() -> dict[pathlib.Path, list[pathlib.Path]]:
    """{file: [pages that include it]} for every literalinclude of the docs."""
    found: dict[pathlib.Path, list[pathlib.Path]] = {}
    for page in SOURCES:
        for target in LITERALINCLUDE.findall(page.read_text()):
            path = (DOCS / target.lstrip("/")) if target.startswith("/") else (page.parent / target)
            found.setdefault(path.resolve(), []).append(page)
    return found


# Inline Python that cannot run on its own, with what runs it instead: {page: (blocks, why)}.
INLINE_ALLOWED = {
    "uring.md": (1, "one Extension(...) line of a setup.py; tests/interfaces/test_uring_cimport.py "
                    "builds and runs such a module"),
}


def test_the_pages_hold_no_inline_python():
    for page in SOURCES:
        found = [m.group(0).strip() for m in INLINE_PYTHON.finditer(page.read_text())]
        allowed, _ = INLINE_ALLOWED.get(str(page.relative_to(DOCS)), (0, ""))
        assert len(found) == allowed, (f"{page.relative_to(ROOT)}: inline Python ({found}); put it in "
                                       "docs/examples/ and literalinclude it, so that it runs in the suite")


def test_every_included_example_exists_and_runs_in_the_suite():
    included = included_files()
    assert included, "no literalinclude in docs/"
    for path, pages in included.items():
        assert path.is_file(), f"{path} (included by {pages}) does not exist"
        assert path.suffix == ".py" and path.parent in (EXAMPLES, DOC_EXAMPLES), \
            f"{path} (included by {pages}) is neither in examples/ nor in docs/examples/: nothing runs it"
    for script in sorted(DOC_EXAMPLES.glob("*.py")):
        assert script.resolve() in included, f"docs/examples/{script.name} is included by no page"
    assert sorted(p.name for p in DOC_EXAMPLES.glob("*.py")) == sorted(EXPECTED)


# What each docs example must print, line by line (each a substring of one line, in order).
EXPECTED = {
    "selectors_dropin.py": ["a b'ping'", "first select: ['a']", "second select: []", "after modify: ['a']",
                            "read: b'one'"],
    "asyncio_run.py": ["fastio.asyncio.run: ", "run_until_complete: "],
    "files_direct.py": ["engine: aio", "wrote 4096", "read 4096 bytes: b'hello'"],
    "models_loadgen.py": ["serving on 127.0.0.1",
                          "errors: {'corrupt': 0, 'lost': 0, 'closed': 0, 'connect': 0, 'other': 0}",
                          "ok: True requests > 0: True", "CPU seconds"],
    "sigio_tour.py": ["state when added: [(", "True b'ping'", "O_ASYNC and O_NONBLOCK off again: True"],
    "uring_tour.py": ["file 4096", "tick -62", "openat: [Errno 2]", "read_batch: [4096, 4096, 4096, 4096]",
                      "READ among them: True"],
    "aio_tour.py": ["alignment: (", "submitted: 1", "Completion(user_data='w', res=8192, res2=0)",
                    "read_batch: [4096, 4096]"],
}


def direct_io_missing() -> str | None:
    """Why O_DIRECT is unusable where the examples put their files, or None."""
    from fastio import aio

    directory = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        try:
            fd = os.open(f.name, os.O_RDONLY | os.O_DIRECT)
        except OSError as exc:
            return f"O_DIRECT refused in {directory}: {exc}"
        try:
            return f"no direct IO in {directory}" if aio.dio_alignment(fd) == (0, 0) else None
        finally:
            os.close(fd)


def missing_feature(name: str, backend) -> str | None:
    """Why this machine cannot run the example ``name``, or None."""
    if name == "uring_tour.py":
        return None if backend.uring.available() else backend.uring.why_unavailable()
    if name in ("aio_tour.py", "files_direct.py"):
        if not backend.aio.available():
            return backend.aio.why_unavailable()
        return direct_io_missing()
    return None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_doc_example(name, backend):
    env = {**os.environ, "FASTIO_BACKEND": backend.name}
    proc = subprocess.run([sys.executable, "-W", "error", str(DOC_EXAMPLES / name)], env=env,
                          capture_output=True, text=True, timeout=30, check=False, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    skipped = next((line for line in proc.stdout.splitlines() if line.startswith("skipped: ")), None)
    missing = missing_feature(name, backend)
    if missing is not None:
        assert skipped is not None, f"{name} ran although {missing}:\n{proc.stdout}"
        pytest.skip(f"{name}: {skipped}")
    assert skipped is None, proc.stdout
    lines = iter(proc.stdout.splitlines())
    for want in EXPECTED[name]:
        assert any(want in line for line in lines), f"{want!r} missing (in order) from:\n{proc.stdout}"
    if name == "asyncio_run.py" and backend.name == "c":
        assert "Loop, engine " in proc.stdout.splitlines()[0], proc.stdout
