"""The Linux native AIO ABI in ctypes (mirror of ``csrc/fio_aio_abi.h``), the
AIO constants with their kernel values, and what both backends share: the
``FASTIO_DISABLE`` switch, the explanation of an ``io_setup(2)`` failure, the
explanation of an ``EINVAL`` from a misaligned ``O_DIRECT`` request, and
:func:`aligned_buffer`.

Values from ``include/uapi/linux/aio_abi.h`` and ``include/uapi/linux/fs.h``.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform

from fastio._abi import probe

# io_setup(2) and friends: not in the unified table, so per architecture.
_SYSCALLS = {
    "x86_64": {"io_setup": 206, "io_destroy": 207, "io_getevents": 208, "io_submit": 209, "io_cancel": 210,
               "statx": 332},
    "aarch64": {"io_setup": 0, "io_destroy": 1, "io_submit": 2, "io_cancel": 3, "io_getevents": 4,
                "statx": 291},
}
_MACHINE = {"AMD64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())
SYSCALLS = _SYSCALLS.get(_MACHINE)

IOCB_CMD_PREAD = 0
IOCB_CMD_PWRITE = 1
IOCB_CMD_FSYNC = 2
IOCB_CMD_FDSYNC = 3
IOCB_CMD_POLL = 5
IOCB_CMD_NOOP = 6
IOCB_CMD_PREADV = 7
IOCB_CMD_PWRITEV = 8

# io_submit plugs the block layer for more iocbs than this (AIO_PLUG_THRESHOLD
# in fs/aio.c); read_batch on an O_DIRECT file submits this many at a time.
AIO_PLUG_THRESHOLD = 2

IOCB_FLAG_RESFD = 1 << 0
IOCB_FLAG_IOPRIO = 1 << 1

RWF_HIPRI = 0x01
RWF_DSYNC = 0x02
RWF_SYNC = 0x04
RWF_NOWAIT = 0x08
RWF_APPEND = 0x10
RWF_MASK = RWF_HIPRI | RWF_DSYNC | RWF_SYNC | RWF_NOWAIT | RWF_APPEND

# statx(2) with STATX_DIOALIGN (6.1): the O_DIRECT alignment of a file.
STATX_DIOALIGN = 0x2000
_STATX_DIO_MEM_ALIGN = 152
_STATX_DIO_OFFSET_ALIGN = 156


class Iocb(ctypes.Structure):
    """struct iocb (little-endian field order)."""

    _fields_ = [
        ("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32), ("aio_rw_flags", ctypes.c_uint32),
        ("aio_lio_opcode", ctypes.c_uint16), ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
        ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64), ("aio_offset", ctypes.c_int64),
        ("aio_reserved2", ctypes.c_uint64), ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32),
    ]


class IoEvent(ctypes.Structure):
    """struct io_event."""

    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64), ("res", ctypes.c_int64),
                ("res2", ctypes.c_int64)]


STRUCTS = {"iocb": Iocb, "io_event": IoEvent}


def disabled_by_env() -> str | None:
    """The reason if ``FASTIO_DISABLE`` names aio (comma-separated list)."""
    if probe.disabled_by_env("aio"):
        return "Linux AIO is switched off by FASTIO_DISABLE=aio in the environment"
    return None


def diagnose(err: int, nr_events: int) -> str:
    """Explain an ``io_setup(2)`` failure with errno ``err`` for
    ``nr_events`` events: the sysctl, seccomp or kernel option behind it."""
    if err == errno.EAGAIN:
        max_nr, cur = probe.read_sysctl("fs.aio-max-nr") or "?", probe.read_sysctl("fs.aio-nr") or "?"
        return (f"io_setup({nr_events}) failed with EAGAIN: the system-wide AIO limit is reached "
                f"(fs.aio-max-nr={max_nr}, fs.aio-nr={cur} events already taken by open contexts; "
                f"{nr_events} more do not fit). Ask for fewer events, close other AIO contexts, or "
                f"raise it: sysctl -w fs.aio-max-nr=<n> (as root)")
    if err == errno.ENOSYS:
        if probe.seccomp_mode() == "2":
            return "io_setup failed with ENOSYS: a seccomp filter (container profile) hides Linux AIO from this process"
        return "io_setup failed with ENOSYS: the kernel is built without CONFIG_AIO"
    if err == errno.EPERM:
        return "io_setup failed with EPERM: refused by a security policy (seccomp filter or an LSM)"
    if err == errno.ENOMEM:
        return "io_setup failed with ENOMEM: the kernel could not allocate the completion ring"
    return f"io_setup({nr_events}) failed: {os.strerror(err)} (errno {err})"


UNSUPPORTED_ERRNOS = (errno.ENOSYS, errno.EPERM, errno.EAGAIN)

_libc = ctypes.CDLL(None, use_errno=True)


def dio_alignment(fd: int) -> tuple[int, int] | None:
    """``(memory_alignment, offset_alignment)`` that ``O_DIRECT`` IO on ``fd``
    needs, from ``statx(2)`` ``STATX_DIOALIGN`` (Linux 6.1); ``(0, 0)`` when
    the file does not support direct IO at all; None when the kernel or the
    filesystem does not say."""
    if SYSCALLS is None:
        return None
    buf = ctypes.create_string_buffer(256)
    ret = _libc.syscall(ctypes.c_long(SYSCALLS["statx"]), ctypes.c_int(fd), ctypes.c_char_p(b""),
                        ctypes.c_int(0x1000), ctypes.c_uint(STATX_DIOALIGN), buf)  # AT_EMPTY_PATH
    if ret < 0:
        return None
    mask = int.from_bytes(buf.raw[0:4], "little")
    if not mask & STATX_DIOALIGN:
        return None
    return (int.from_bytes(buf.raw[_STATX_DIO_MEM_ALIGN:_STATX_DIO_MEM_ALIGN + 4], "little"),
            int.from_bytes(buf.raw[_STATX_DIO_OFFSET_ALIGN:_STATX_DIO_OFFSET_ALIGN + 4], "little"))


def explain_einval(fd: int, opcode: int, addrs: list[int], lengths: list[int], offset: int) -> str | None:
    """Why an AIO read/write on ``fd`` got EINVAL, if the cause is O_DIRECT
    alignment: which of offset, length, buffer address is not a multiple of
    what the file needs. None when ``fd`` is not (or no longer) O_DIRECT."""
    if opcode not in (IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_PREADV, IOCB_CMD_PWRITEV):
        return None
    try:
        import fcntl

        if not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            return None
    except OSError:
        return None
    align = dio_alignment(fd)
    if align is None or align == (0, 0):
        what = "does not support O_DIRECT" if align == (0, 0) else "did not report its alignment"
        return (f"Invalid argument: O_DIRECT request on fd {fd}, whose filesystem {what}; O_DIRECT needs the "
                f"offset, length and buffer address aligned to the device's logical block size")
    mem, off = align
    bad = []
    if offset % off:
        bad.append(f"offset {offset} is not a multiple of {off}")
    for length in lengths:
        if length % off:
            bad.append(f"length {length} is not a multiple of {off}")
            break
    for addr in addrs:
        if mem and addr % mem:
            bad.append(f"buffer address {addr:#x} is not a multiple of {mem}")
            break
    if not bad:
        return None
    return (f"Invalid argument: misaligned O_DIRECT request on fd {fd}: {'; '.join(bad)} (the device's "
            f"logical block size is {off}, memory alignment {mem}; use fastio.aligned_buffer())")


def aligned_buffer(size: int, alignment: int = 4096) -> memoryview:
    """A zero-filled, writable ``memoryview`` of ``size`` bytes whose address
    is a multiple of ``alignment`` (a power of two), backed by an anonymous
    ``mmap``: what ``O_DIRECT`` needs. The memory is freed when the last view
    of it is gone."""
    size = int(size)
    alignment = int(alignment)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if alignment <= 0 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a power of two, got {alignment}")
    extra = 0 if alignment <= mmap.PAGESIZE else alignment
    mm = mmap.mmap(-1, size + extra)
    view = memoryview(mm)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    start = (-addr) % alignment
    return view[start:start + size]
