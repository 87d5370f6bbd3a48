"""Count the system calls a process makes, through ``perf_event_open(2)`` on
the ``raw_syscalls:sys_enter`` tracepoint (what ``perf stat -e
raw_syscalls:sys_enter`` counts), with ctypes and no other dependency.

    from fastio._bench.syscount import SyscallCounter, available, why_unavailable

    if available():
        with SyscallCounter() as sc:           # this process, every thread
            for _ in range(1000):
                os.getppid()
        sc.count                                # 1000 (the counter's own reads are taken off)

    with SyscallCounter(pid=server_pid) as sc:  # another process
        ...
        so_far = sc.read()                      # while it runs
    sc.count

How: one counting event per thread of the target (``/proc/PID/task/*``), each
with ``inherit=1``, so a thread or child process that a counted thread
creates after the counter is opened is counted too (its count is added to its
creator's event, while it runs and after it exits). The count is the
difference between two reads of all events, so nothing before ``start()``
and nothing after ``stop()`` is counted. Events are counted whatever CPU the
task runs on.

Limits:

* Needs the tracepoint's id, read from tracefs
  (``/sys/kernel/tracing/events/raw_syscalls/sys_enter/id``, or under
  ``/sys/kernel/debug/tracing``, or wherever ``/proc/self/mounts`` says a
  tracefs is mounted). No tracefs mounted: unavailable (as root:
  ``mount -t tracefs nodev /sys/kernel/tracing``).
* Needs permission to count kernel-side events of the target: root or
  ``CAP_PERFMON`` (``CAP_SYS_ADMIN`` before Linux 5.8), or
  ``kernel.perf_event_paranoid`` <= 1; for another process also ptrace
  access to it (same user, or ``CAP_SYS_PTRACE``). Seccomp profiles
  (Docker's default) often refuse ``perf_event_open`` altogether.
* A thread that an *uncounted* thread creates while the per-thread events
  are being opened (a window of microseconds) is missed.
* Counting makes every system call of every process on the machine take the
  slower tracing entry path while any counter is open (the kernel turns on
  syscall tracepoints for all tasks). Time a workload without a counter and
  count its system calls in a separate pass.
* ``io_uring`` work that the kernel does for a ring (SQPOLL, io-wq workers)
  makes no system call: only what the process itself enters is counted.
* vDSO calls (``clock_gettime``, ``gettimeofday``, ``getcpu``) never enter
  the kernel and are not counted; every real entry is, ``syscall(2)``
  included, from every thread (a thread pool's idle futex waits too).
* ``read()`` and ``stop()`` make one ``read(2)`` per event; on this process
  those (and the ones of ``start()``) are taken off the count.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

__all__ = ["SyscallCounter", "available", "why_unavailable", "tracepoint_id"]

_NR_PERF_EVENT_OPEN = {
    "x86_64": 298,
    "i386": 336,
    "i686": 336,
    "aarch64": 241,
    "riscv64": 241,
    "loongarch64": 241,
    "armv7l": 364,
    "armv6l": 364,
    "ppc64le": 319,
    "ppc64": 319,
    "s390x": 331,
}

PERF_TYPE_TRACEPOINT = 2
PERF_ATTR_SIZE_VER0 = 64
PERF_FLAG_FD_CLOEXEC = 1 << 3
# perf_event_attr flag bits (the u64 bitfield after read_format)
_INHERIT = 1 << 1
_EXCLUDE_HV = 1 << 6

_TRACEPOINT = ("events", "raw_syscalls", "sys_enter", "id")
_TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


class _PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr, the first 64 bytes (PERF_ATTR_SIZE_VER0)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("size", ctypes.c_uint32),
        ("config", ctypes.c_uint64),
        ("sample_period", ctypes.c_uint64),
        ("sample_type", ctypes.c_uint64),
        ("read_format", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
        ("wakeup_events", ctypes.c_uint32),
        ("bp_type", ctypes.c_uint32),
        ("config1", ctypes.c_uint64),
    ]


assert ctypes.sizeof(_PerfEventAttr) == PERF_ATTR_SIZE_VER0

_libc = None


def _syscall():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    return _libc.syscall


def _tracefs_dirs() -> list[str]:
    dirs = list(_TRACEFS_DIRS)
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "tracefs" and parts[1] not in dirs:
                    dirs.append(parts[1])
    except OSError:
        pass
    return dirs


def tracepoint_id() -> int | None:
    """The id of the raw_syscalls:sys_enter tracepoint, or None when no
    mounted tracefs shows it."""
    for d in _tracefs_dirs():
        try:
            with open(os.path.join(d, *_TRACEPOINT)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            continue
    return None


def _open_event(tid: int, config: int) -> int:
    """One counting event on thread ``tid``; the fd, or OSError."""
    machine = platform.machine()
    nr = _NR_PERF_EVENT_OPEN.get(machine)
    if nr is None:
        raise OSError(errno.ENOSYS, f"perf_event_open: syscall number unknown on {machine}")
    attr = _PerfEventAttr()
    attr.type = PERF_TYPE_TRACEPOINT
    attr.size = PERF_ATTR_SIZE_VER0
    attr.config = config
    attr.sample_period = 0  # counting, not sampling
    attr.flags = _INHERIT | _EXCLUDE_HV  # enabled from the start; kernel side counted
    fd = _syscall()(ctypes.c_long(nr), ctypes.byref(attr), ctypes.c_int(tid), ctypes.c_int(-1),
                    ctypes.c_int(-1), ctypes.c_ulong(PERF_FLAG_FD_CLOEXEC))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"perf_event_open(raw_syscalls:sys_enter, tid {tid}): {os.strerror(err)}")
    return fd


def _read_count(fd: int) -> int:
    data = os.read(fd, 8)
    if len(data) != 8:
        raise OSError(errno.EIO, f"perf counter read returned {len(data)} bytes")
    return int.from_bytes(data, sys.byteorder)


def _explain(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        try:
            with open("/proc/sys/kernel/perf_event_paranoid") as f:
                paranoid = f.read().strip()
        except OSError:
            paranoid = "?"
        return (f"{exc.strerror or exc}: counting kernel events needs root or CAP_PERFMON, or "
                f"kernel.perf_event_paranoid <= 1 (it is {paranoid}); a seccomp profile may also refuse "
                "perf_event_open")
    if exc.errno == errno.ENOSYS:
        return f"perf_event_open is not available ({exc.strerror or exc}: no CONFIG_PERF_EVENTS, or seccomp)"
    if exc.errno == errno.ENOENT:
        return f"the raw_syscalls:sys_enter tracepoint is not there ({exc.strerror or exc})"
    return str(exc)


_why: str | None = None
_probed = False


def why_unavailable() -> str | None:
    """None when a counter can be opened on this process; else why not.
    Probed once (opening and closing one event)."""
    global _why, _probed
    if _probed:
        return _why
    tp = tracepoint_id()
    if tp is None:
        _why = ("no tracefs mounted to read the raw_syscalls:sys_enter tracepoint id from "
                "(as root: mount -t tracefs nodev /sys/kernel/tracing)")
    else:
        try:
            os.close(_open_event(0, tp))
        except OSError as exc:
            _why = _explain(exc)
        else:
            _why = None
    _probed = True
    return _why


def available() -> bool:
    """Whether a SyscallCounter can count this process here."""
    return why_unavailable() is None


class SyscallCounter:
    """System calls entered by a process (every thread, and the threads and
    children they create while the counter is open) between ``start()`` and
    ``stop()``; a context manager doing both.

    ``pid``: None (or 0) for this process, else another process id. When
    counting this process, the counter's own reads (one per event, each way)
    are taken off, so ``count`` is what the code in between entered.
    ``count``: the total after ``stop()``; ``read()``: the count so far.
    Raises OSError (``ProcessLookupError`` for a gone pid, ``PermissionError``
    ...) from ``start()`` when an event cannot be opened; check
    ``available()`` first to avoid it."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if not pid else int(pid)
        self._self = self.pid == os.getpid()
        self._fds: list[int] = []
        self._base = 0
        self._passes = 0  # reads of every event made since the base (self-counting overhead)
        self.count: int | None = None
        self.threads = 0  # threads found and opened at start()

    def _tids(self) -> list[int]:
        try:
            return sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))
        except FileNotFoundError:
            raise ProcessLookupError(errno.ESRCH, f"no process {self.pid}") from None

    def _sum(self) -> int:
        return sum(_read_count(fd) for fd in self._fds)

    def start(self) -> SyscallCounter:
        if self._fds:
            raise RuntimeError("SyscallCounter already started")
        tp = tracepoint_id()
        if tp is None:
            raise OSError(errno.ENOENT, why_unavailable() or "raw_syscalls:sys_enter tracepoint id not found")
        try:
            for tid in self._tids():
                try:
                    self._fds.append(_open_event(tid, tp))
                except ProcessLookupError:
                    continue  # a thread that ended meanwhile
            if not self._fds:
                raise ProcessLookupError(errno.ESRCH, f"no thread of process {self.pid} left to count")
            self.threads = len(self._fds)
            self.count = None
            self._passes = 0
            self._base = self._sum()
        except BaseException:
            self._close()
            raise
        return self

    def read(self) -> int:
        """System calls counted since start() (while running) or the total."""
        if not self._fds:
            if self.count is None:
                raise RuntimeError("SyscallCounter not started")
            return self.count
        now = self._sum() - self._base
        if self._self:
            # The reads of this thread, which its own event counts: one per
            # event between the base and this pass (the end of the base pass
            # and the start of this one), and every earlier read() pass.
            now -= len(self._fds) * (1 + self._passes)
            self._passes += 1
        return max(now, 0)

    def stop(self) -> int:
        """Stop counting; the total (also in ``count``)."""
        if not self._fds:
            if self.count is None:
                raise RuntimeError("SyscallCounter not started")
            return self.count
        try:
            self.count = self.read()
        finally:
            self._close()
        return self.count

    def _close(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> SyscallCounter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.stop()
        else:
            self._close()

    def __del__(self) -> None:
        if getattr(self, "_fds", None):
            self._close()
