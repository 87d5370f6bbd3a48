"""What ``python -m fastio info`` reports: the backend, Python, the kernel, and
for each interface whether it is usable here and, if not, why."""

from __future__ import annotations

import os
import platform
import sys


def _probe_epoll() -> dict:
    from fastio import epoll

    try:
        epoll.Epoll().close()
    except OSError as exc:
        return {"available": False, "reason": f"epoll_create1 failed: {exc}"}
    if epoll.epoll_pwait2_available():
        detail = "epoll_pwait2: yes (sub-millisecond timeouts honoured)"
    else:
        detail = "epoll_pwait2: no (kernel before 5.11 or refused by seccomp); timeouts round up to 1 ms"
    return {"available": True, "reason": None, "detail": detail}


def _probe_poll() -> dict:
    from fastio import poll

    try:
        poll.Poll().poll(0)
    except OSError as exc:
        return {"available": False, "reason": f"ppoll failed: {exc}"}
    return {"available": True, "reason": None, "detail": "ppoll: yes"}


def _probe_select() -> dict:
    from fastio import selectors

    try:
        with selectors.SelectSelector() as sel:
            sel.select(0)
    except OSError as exc:
        return {"available": False, "reason": f"pselect failed: {exc}"}
    return {"available": True, "reason": None, "detail": "pselect: yes (fds below FD_SETSIZE=1024)"}


def _probe_sigio() -> dict:
    import resource
    import socket

    from fastio import sigio

    a, b = socket.socketpair()
    fd = a.fileno()
    try:
        with sigio.SignalIO() as sio:
            sio.add(a)
            sio.wait(0)  # the readiness add() found (writable)
            b.send(b"x")
            events = sio.wait(1.0)
            signum = sio.signum
    except (OSError, RuntimeError) as exc:
        return {"available": False, "reason": f"F_SETSIG/signalfd failed: {exc}"}
    finally:
        a.close()
        b.close()
    if not any(got == fd and band & sigio.POLLIN for got, band in events):
        return {"available": False, "reason": f"no signal named the ready socket (got {events})"}
    limit = resource.getrlimit(resource.RLIMIT_SIGPENDING)[0]
    return {
        "available": True,
        "reason": None,
        "detail": f"F_SETSIG + signalfd: yes (picked signal {signum}; RLIMIT_SIGPENDING {limit})",
    }


def _probe_uring() -> dict:
    from fastio import uring

    if not uring.available():
        return {"available": False, "reason": uring.why_unavailable()}
    try:
        with uring.Ring(4) as ring:
            ops = sorted(ring.probe())
            features = ring.features
    except OSError as exc:
        return {"available": False, "reason": f"io_uring_setup/register failed: {exc}"}
    names = [uring.OPCODE_NAMES[op] if op < len(uring.OPCODE_NAMES) else str(op) for op in ops]
    feats = [name[5:] for name in uring.__all__ if name.startswith("FEAT_") and features & getattr(uring, name)]
    return {
        "available": True,
        "reason": None,
        "detail": f"{len(ops)} opcodes (probe)",
        "opcodes": names,
        "features": feats,
    }


def _probe_aio() -> dict:
    import tempfile

    from fastio import aio

    if not aio.available():
        return {"available": False, "reason": aio.why_unavailable()}
    try:
        with open("/proc/sys/fs/aio-max-nr") as f:
            max_nr = f.read().strip()
        with open("/proc/sys/fs/aio-nr") as f:
            nr = f.read().strip()
    except OSError:
        max_nr = nr = "?"
    try:
        with aio.Context(4) as ctx, tempfile.TemporaryFile(dir="/var/tmp") as f:
            f.write(b"fastio")
            f.flush()
            ctx.prep_pread(f.fileno(), bytearray(6), 0)
            got = ctx.getevents(1, timeout=5)
    except OSError as exc:
        return {"available": False, "reason": f"io_setup/io_submit failed: {exc}"}
    if len(got) != 1 or got[0].res != 6:
        return {"available": False, "reason": f"a 6-byte read completed as {got}"}
    return {"available": True, "reason": None,
            "detail": f"io_submit: yes (fs.aio-nr {nr} of fs.aio-max-nr {max_nr})"}


# interface name -> (fastio module, probe); later interfaces add their line here.
INTERFACES = {
    "epoll": ("fastio.epoll", _probe_epoll),
    "poll": ("fastio.poll", _probe_poll),
    "select": ("fastio.selectors.SelectSelector", _probe_select),
    "sigio": ("fastio.sigio", _probe_sigio),
    "uring": ("fastio.uring", _probe_uring),
    "aio": ("fastio.aio", _probe_aio),
}


def _probe_asyncio_loop() -> dict:
    """Which loop, and which engine, ``fastio.asyncio.new_event_loop()`` gives
    here and why (it makes one and closes it)."""
    import fastio.asyncio

    loop = fastio.asyncio.new_event_loop()
    try:
        name = f"fastio.asyncio.{type(loop).__qualname__}"
        engine = getattr(loop, "engine", None)
        if engine is None:
            return {"loop": name, "engine": None,
                    "reason": "the pure backend's loop: the stdlib's SelectorEventLoop on fastio's selector"}
        return {"loop": name, "engine": engine, "reason": loop.engine_reason}
    finally:
        loop.close()


def collect() -> dict:
    """The whole report as plain data (what ``--json`` prints)."""
    import fastio

    return {
        "fastio": fastio.__version__,
        "backend": fastio.backend,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "executable": sys.executable,
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "interfaces": {name: dict(module=mod, **probe()) for name, (mod, probe) in INTERFACES.items()},
        "asyncio": _probe_asyncio_loop(),
    }


def format_text(report: dict) -> str:
    lines = [
        f"fastio {report['fastio']}  backend: {report['backend']}",
        f"python: {report['python']} ({report['executable']})",
        f"kernel: Linux {report['kernel']} {report['machine']}, {report['cpus']} CPUs",
        "interfaces:",
    ]
    for name, info in report["interfaces"].items():
        state = "yes" if info["available"] else "no"
        why = info.get("detail") if info["available"] else info["reason"]
        lines.append(f"  {name:<8} {state:<4} {info['module']:<34} {why}")
        if info.get("opcodes"):
            lines.append(f"           opcodes: {' '.join(info['opcodes'])}")
        if info.get("features"):
            lines.append(f"           features: {' '.join(info['features'])}")
    loop = report["asyncio"]
    engine = f", engine {loop['engine']}" if loop["engine"] else ""
    lines.append(f"asyncio: new loops are {loop['loop']}{engine} ({loop['reason']})")
    return "\n".join(lines)
