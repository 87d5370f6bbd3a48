"""Every script in examples/ runs to the end on both backends and shows the
bytes it copied.

Each example runs in a subprocess (``FASTIO_BACKEND`` picks the backend at
import) with ``-W error``, so a warning, an unclosed socket's
``ResourceWarning`` included, ends up on stderr, which must stay empty. An
example skips only where this kernel (or sandbox) lacks the feature: the
test checks that the feature is really missing before it accepts the skip.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import tempfile

import pytest

from fastio import aio

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

# tools/check-wheels runs a copy of tests/ on its own, without examples/.
pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason=f"no examples/ beside tests/ ({EXAMPLES})")

COPIED = "copied 12 bytes: b'hello, world'"

# What each example must print, line by line (each a substring of one line).
EXPECTED = {
    "blocking.py": ["waiting: recv() blocks in recvfrom(2)", COPIED],
    "nonblocking.py": ["then found data", COPIED],
    "multiplexing.py": ["ready: fd", COPIED, "ready: the first socket; " + COPIED],
    "signal_driven.py": ["state when added: POLLOUT", "= POLLIN", COPIED],
    "uring.py": ["completion 'recv on a': res=12", COPIED],
    "aio.py": ["completion 'poll a'", COPIED],
    "asyncio_loop.py": ["event loop: fastio.asyncio.", "waiting: the coroutine is suspended", COPIED],
    "asyncio_files.py": ["file engine: ", "read 2 lines: ['one\\n', 'two\\n']",
                         "pread at 4096: b'at offset 4096'; 8 blocks of zeros: True",
                         "size 4110, exists: True", "removed, exists: False"],
    "asyncio_server.py": ["event loop: fastio.asyncio.", "serving on 127.0.0.1:",
                          "echoed 3 messages to each of: client 0, client 1, client 2", "server closed"],
}
DIRECT_READ = ["completion 'pread file': res=4096", "copied 4096 bytes: b'hello, world' + 4084 zero bytes"]


def run_example(name: str, backend_name: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FASTIO_BACKEND": backend_name}
    return subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )


def assert_lines(stdout: str, expected: list[str]) -> None:
    """Each expected string on a line of its own, in this order."""
    lines = iter(stdout.splitlines())
    for want in expected:
        assert any(want in line for line in lines), f"{want!r} missing (in order) from:\n{stdout}"


def skipped_line(stdout: str) -> str | None:
    return next((line for line in stdout.splitlines() if line.startswith("skipped: ")), None)


def direct_io_missing() -> str | None:
    """Why O_DIRECT is unusable where examples/aio.py puts its file, or None."""
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


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)
    readme = (EXAMPLES / "README.md").read_text()
    for name in EXPECTED:
        assert f"examples/{name}" in readme, f"{name} is not in examples/README.md"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example(name, backend):
    proc = run_example(name, backend.name)
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == "", proc.stderr
    missing = None
    if name in ("uring.py", "aio.py"):
        module = getattr(backend, name[:-3])
        if not module.available():
            missing = module.why_unavailable()
    if missing is not None:
        # The example must say why and stop, with exit status 0.
        line = skipped_line(proc.stdout)
        assert line is not None and missing in line, proc.stdout
        pytest.skip(f"{name}: {line}")
    assert skipped_line(proc.stdout) is None or name == "aio.py", proc.stdout
    assert_lines(proc.stdout, EXPECTED[name])
    if name == "aio.py":
        why = direct_io_missing()
        if why is None:
            assert_lines(proc.stdout, DIRECT_READ)
        else:
            assert skipped_line(proc.stdout) is not None, proc.stdout
            pytest.skip(f"aio.py, the O_DIRECT read: {why}")
