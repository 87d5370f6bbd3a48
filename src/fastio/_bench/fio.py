"""fio, the kernel's own IO benchmark, as a reference row: one fio job of
random reads of a file fastio is measuring, and what fio says it did.

fio is not a dependency: ``available()`` says whether it is on ``PATH``
(Debian and Ubuntu: ``apt-get install fio``; Fedora: ``dnf install fio``),
and ``MISSING`` is the skip reason to print when it is not.

fio runs with its defaults for the engine (``iodepth_batch_submit=1``: each
request is submitted as soon as it is queued), one job, time based, and
``--invalidate=0`` so that it does not drop the page cache other rows rely on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

MISSING = ("fio is not installed (apt-get install fio, or your distribution's fio package); "
           "the reference rows need it")


@dataclass
class Sample:
    reads: int          # requests fio completed
    elapsed: float      # seconds fio timed them over (its own runtime, start-up excluded)
    cpu_s: float        # fio's user + system CPU time over that runtime
    p99_us: float       # completion latency, 99th percentile
    mean_us: float      # total latency (submit to completion), mean

    @property
    def iops(self) -> float:
        return self.reads / self.elapsed


def available() -> bool:
    return shutil.which("fio") is not None


def version() -> Optional[str]:
    """``fio --version``'s output ("fio-3.33"), or None without fio."""
    if not available():
        return None
    proc = subprocess.run(["fio", "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() or None


def command(path: str, engine: str, depth: int, direct: bool, seconds: float, block: int = 4096) -> list:
    """The fio command line for ``sample()`` (printed in the bench's method)."""
    return [
        "fio", "--name=fastio-reference", f"--filename={path}", "--rw=randread", f"--bs={block}",
        f"--ioengine={engine}", f"--iodepth={depth}", f"--direct={1 if direct else 0}",
        f"--runtime={max(1, round(seconds * 1000))}ms", "--time_based", "--norandommap",
        "--randrepeat=0", "--invalidate=0", "--output-format=json",
    ]


def sample(path: str, engine: str, depth: int, direct: bool, seconds: float, block: int = 4096) -> Sample:
    """Run one fio job (``engine``: "io_uring" or "libaio") reading ``path``
    for ``seconds``. ``path`` may be ``/proc/<pid>/fd/<n>`` for a file that
    has no name any more. Raises OSError when fio fails, hangs or prints no
    result."""
    try:
        proc = subprocess.run(command(path, engine, depth, direct, seconds, block), capture_output=True,
                              text=True, timeout=max(60.0, seconds * 10))
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"fio ({engine}) did not finish in {exc.timeout:g} s") from None
    start = proc.stdout.find("{")
    if proc.returncode != 0 or start < 0:
        raise OSError(f"fio ({engine}) failed with status {proc.returncode}: "
                      f"{(proc.stderr or proc.stdout).strip()[:300]}")
    try:
        doc, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])   # (text may follow the JSON)
        job = doc["jobs"][0]
        read = job["read"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise OSError(f"fio ({engine}) printed no job result: {exc!r}") from None
    elapsed = read["runtime"] / 1000.0
    if elapsed <= 0 or read["total_ios"] <= 0:
        raise OSError(f"fio ({engine}) read nothing: {(proc.stderr or '').strip()[:300]}")
    pct = read.get("clat_ns", {}).get("percentile", {})
    return Sample(
        reads=int(read["total_ios"]),
        elapsed=elapsed,
        cpu_s=(job["usr_cpu"] + job["sys_cpu"]) / 100.0 * elapsed,
        p99_us=pct.get("99.000000", 0) / 1000.0,
        mean_us=read["lat_ns"]["mean"] / 1000.0,
    )
