"""What the availability probes of io_uring and Linux AIO both read: a
sysctl, the process's seccomp mode, the ``FASTIO_DISABLE`` switch."""

from __future__ import annotations

import os


def read_sysctl(name: str) -> str | None:
    """The value of sysctl ``name`` (``kernel.io_uring_disabled``), or None if unreadable."""
    try:
        with open(f"/proc/sys/{name.replace('.', '/')}") as f:
            return f.read().strip()
    except OSError:
        return None


def seccomp_mode() -> str | None:
    """The ``Seccomp:`` field of /proc/self/status ("2": a filter is on), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return line.split()[1]
    except OSError:
        pass
    return None


def disabled_by_env(*names: str) -> bool:
    """Whether ``FASTIO_DISABLE`` (a comma-separated list) names one of ``names``."""
    wanted = {part.strip().lower() for part in os.environ.get("FASTIO_DISABLE", "").split(",")}
    return not wanted.isdisjoint(names)
