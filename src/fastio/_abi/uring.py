"""The io_uring ABI in ctypes, mirroring ``csrc/fio_uring_abi.h``, and every
constant ``fastio.uring`` exports, with the values of the kernel's
``include/uapi/linux/io_uring.h`` (Linux 6.18). ``tests/interfaces/test_abi.py`` checks
sizes and offsets here against the C header and against literal numbers.

Also here, because both backends share it and it needs no compiler: the
explanation of why ``io_uring_setup(2)`` failed (``diagnose``), the
``FASTIO_DISABLE`` switch, and sockaddr packing for ``prep_connect``.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct

from fastio._abi import probe

c_uint8, c_uint16, c_uint32, c_uint64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
c_int32, c_int64 = ctypes.c_int32, ctypes.c_int64

NR_IO_URING_SETUP = 425
NR_IO_URING_ENTER = 426
NR_IO_URING_REGISTER = 427


class IoUringSqe(ctypes.Structure):
    """struct io_uring_sqe (64 bytes); union members named after their first alias."""

    _fields_ = [
        ("opcode", c_uint8), ("flags", c_uint8), ("ioprio", c_uint16), ("fd", c_int32),
        ("off", c_uint64), ("addr", c_uint64), ("len", c_uint32), ("op_flags", c_uint32),
        ("user_data", c_uint64), ("buf_index", c_uint16), ("personality", c_uint16),
        ("splice_fd_in", c_int32), ("addr3", c_uint64), ("__pad2", c_uint64),
    ]


class IoUringCqe(ctypes.Structure):
    """struct io_uring_cqe (16 bytes)."""

    _fields_ = [("user_data", c_uint64), ("res", c_int32), ("flags", c_uint32)]


class SqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", c_uint32), ("tail", c_uint32), ("ring_mask", c_uint32), ("ring_entries", c_uint32),
        ("flags", c_uint32), ("dropped", c_uint32), ("array", c_uint32), ("resv1", c_uint32),
        ("user_addr", c_uint64),
    ]


class CqringOffsets(ctypes.Structure):
    _fields_ = [
        ("head", c_uint32), ("tail", c_uint32), ("ring_mask", c_uint32), ("ring_entries", c_uint32),
        ("overflow", c_uint32), ("cqes", c_uint32), ("flags", c_uint32), ("resv1", c_uint32),
        ("user_addr", c_uint64),
    ]


class IoUringParams(ctypes.Structure):
    """struct io_uring_params (120 bytes)."""

    _fields_ = [
        ("sq_entries", c_uint32), ("cq_entries", c_uint32), ("flags", c_uint32),
        ("sq_thread_cpu", c_uint32), ("sq_thread_idle", c_uint32), ("features", c_uint32),
        ("wq_fd", c_uint32), ("resv", c_uint32 * 3), ("sq_off", SqringOffsets), ("cq_off", CqringOffsets),
    ]


class IoUringProbeOp(ctypes.Structure):
    _fields_ = [("op", c_uint8), ("resv", c_uint8), ("flags", c_uint16), ("resv2", c_uint32)]


class IoUringProbe(ctypes.Structure):
    """struct io_uring_probe header (16 bytes); ops[] follows."""

    _fields_ = [("last_op", c_uint8), ("ops_len", c_uint8), ("resv", c_uint16), ("resv2", c_uint32 * 3)]


class IoUringBuf(ctypes.Structure):
    """struct io_uring_buf (16 bytes); entry 0's resv is the ring's tail."""

    _fields_ = [("addr", c_uint64), ("len", c_uint32), ("bid", c_uint16), ("resv", c_uint16)]


class IoUringBufReg(ctypes.Structure):
    _fields_ = [("ring_addr", c_uint64), ("ring_entries", c_uint32), ("bgid", c_uint16),
                ("flags", c_uint16), ("resv", c_uint64 * 3)]


class IoUringRsrcUpdate(ctypes.Structure):
    _fields_ = [("offset", c_uint32), ("resv", c_uint32), ("data", c_uint64)]


class IoUringGeteventsArg(ctypes.Structure):
    _fields_ = [("sigmask", c_uint64), ("sigmask_sz", c_uint32), ("min_wait_usec", c_uint32), ("ts", c_uint64)]


class KernelTimespec(ctypes.Structure):
    _fields_ = [("tv_sec", c_int64), ("tv_nsec", c_int64)]


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32), ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t), ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


STRUCTS = {
    "sqe": IoUringSqe, "cqe": IoUringCqe, "sqring_offsets": SqringOffsets, "cqring_offsets": CqringOffsets,
    "params": IoUringParams, "probe_op": IoUringProbeOp, "probe": IoUringProbe, "buf": IoUringBuf,
    "buf_reg": IoUringBufReg, "rsrc_update": IoUringRsrcUpdate, "getevents_arg": IoUringGeteventsArg,
    "kernel_timespec": KernelTimespec,
}

# mmap offsets
OFF_SQ_RING = 0
OFF_CQ_RING = 0x8000000
OFF_SQES = 0x10000000

# io_uring_setup(2) flags
SETUP_IOPOLL = 1 << 0
SETUP_SQPOLL = 1 << 1
SETUP_SQ_AFF = 1 << 2
SETUP_CQSIZE = 1 << 3
SETUP_CLAMP = 1 << 4
SETUP_ATTACH_WQ = 1 << 5
SETUP_R_DISABLED = 1 << 6
SETUP_SUBMIT_ALL = 1 << 7
SETUP_COOP_TASKRUN = 1 << 8
SETUP_TASKRUN_FLAG = 1 << 9
SETUP_SQE128 = 1 << 10
SETUP_CQE32 = 1 << 11
SETUP_SINGLE_ISSUER = 1 << 12
SETUP_DEFER_TASKRUN = 1 << 13
SETUP_NO_MMAP = 1 << 14
SETUP_REGISTERED_FD_ONLY = 1 << 15
SETUP_NO_SQARRAY = 1 << 16
SETUP_HYBRID_IOPOLL = 1 << 17
# flags this binding cannot serve (other entry sizes, user-provided ring memory)
SETUP_REFUSED = SETUP_SQE128 | SETUP_CQE32 | SETUP_NO_MMAP | SETUP_REGISTERED_FD_ONLY

# sqe->flags
IOSQE_FIXED_FILE = 1 << 0
IOSQE_IO_DRAIN = 1 << 1
IOSQE_IO_LINK = 1 << 2
IOSQE_IO_HARDLINK = 1 << 3
IOSQE_ASYNC = 1 << 4
IOSQE_BUFFER_SELECT = 1 << 5
IOSQE_CQE_SKIP_SUCCESS = 1 << 6

# features reported by io_uring_setup
FEAT_SINGLE_MMAP = 1 << 0
FEAT_NODROP = 1 << 1
FEAT_SUBMIT_STABLE = 1 << 2
FEAT_RW_CUR_POS = 1 << 3
FEAT_CUR_PERSONALITY = 1 << 4
FEAT_FAST_POLL = 1 << 5
FEAT_POLL_32BITS = 1 << 6
FEAT_SQPOLL_NONFIXED = 1 << 7
FEAT_EXT_ARG = 1 << 8
FEAT_NATIVE_WORKERS = 1 << 9
FEAT_RSRC_TAGS = 1 << 10
FEAT_CQE_SKIP = 1 << 11
FEAT_LINKED_FILE = 1 << 12
FEAT_REG_REG_RING = 1 << 13
FEAT_RECVSEND_BUNDLE = 1 << 14
FEAT_MIN_TIMEOUT = 1 << 15

# cqe->flags
CQE_F_BUFFER = 1 << 0
CQE_F_MORE = 1 << 1
CQE_F_SOCK_NONEMPTY = 1 << 2
CQE_F_NOTIF = 1 << 3
CQE_BUFFER_SHIFT = 16

# sq ring flags
SQ_NEED_WAKEUP = 1 << 0
SQ_CQ_OVERFLOW = 1 << 1
SQ_TASKRUN = 1 << 2

# io_uring_enter(2) flags
ENTER_GETEVENTS = 1 << 0
ENTER_SQ_WAKEUP = 1 << 1
ENTER_SQ_WAIT = 1 << 2
ENTER_EXT_ARG = 1 << 3

# op-specific flags
FSYNC_DATASYNC = 1 << 0
TIMEOUT_ABS = 1 << 0
TIMEOUT_UPDATE = 1 << 1
TIMEOUT_BOOTTIME = 1 << 2
TIMEOUT_REALTIME = 1 << 3
LINK_TIMEOUT_UPDATE = 1 << 4
TIMEOUT_ETIME_SUCCESS = 1 << 5
POLL_ADD_MULTI = 1 << 0
ASYNC_CANCEL_ALL = 1 << 0
ASYNC_CANCEL_FD = 1 << 1
ASYNC_CANCEL_ANY = 1 << 2
RECVSEND_POLL_FIRST = 1 << 0
RECV_MULTISHOT = 1 << 1
ACCEPT_MULTISHOT = 1 << 0

# io_uring_register(2) opcodes
REGISTER_BUFFERS = 0
UNREGISTER_BUFFERS = 1
REGISTER_FILES = 2
UNREGISTER_FILES = 3
REGISTER_EVENTFD = 4
UNREGISTER_EVENTFD = 5
REGISTER_FILES_UPDATE = 6
REGISTER_PROBE = 8
REGISTER_PBUF_RING = 22
UNREGISTER_PBUF_RING = 23
IO_URING_OP_SUPPORTED = 1 << 0

# opcodes, in the kernel's enum io_uring_op order
OPCODE_NAMES = (
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
    "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT", "ASYNC_CANCEL",
    "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE", "STATX", "READ", "WRITE",
    "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL", "SPLICE", "PROVIDE_BUFFERS",
    "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT",
    "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC",
    "SENDMSG_ZC", "READ_MULTISHOT", "WAITID", "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV",
    "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED",
    "WRITEV_FIXED", "PIPE", "NOP128", "URING_CMD128",
)
OPCODES = {f"IORING_OP_{name}": value for value, name in enumerate(OPCODE_NAMES)}
globals().update(OPCODES)

# user_data encoding shared by both backends (see the module docstring of
# fastio/_c/uring.pyx): bits 0-31 slot, 32-62 generation (or a batch index),
# bit 63 batch; two reserved values never name a slot.
UD_BATCH = 1 << 63
UD_INTERNAL = 0xFFFFFFFFFFFFFFFF
UD_SKIP = 0xFFFFFFFFFFFFFFFE
# io_uring_enter plugs the block layer (requests reach the device at the end
# of the call) when it submits more SQEs than this (IO_PLUG_THRESHOLD in
# io_uring/io_uring.c); read_batch hands a device its reads this many at a time.
IO_PLUG_THRESHOLD = 2
STATX_SIZE = 256
PAGE_SIZE = os.sysconf("SC_PAGESIZE")


# ---- why io_uring cannot be used here ----

def disabled_by_env() -> str | None:
    """The reason if ``FASTIO_DISABLE`` names uring (comma-separated list)."""
    if probe.disabled_by_env("uring", "io_uring"):
        return "io_uring is switched off by FASTIO_DISABLE=uring in the environment"
    return None


def diagnose(err: int) -> str:
    """Explain an io_uring_setup(2) failure with errno ``err``: the sysctl,
    seccomp, group or limit behind it, and the fix."""
    disabled = probe.read_sysctl("kernel.io_uring_disabled")
    group = probe.read_sysctl("kernel.io_uring_group")
    if err == errno.ENOSYS:
        if disabled == "2":
            return ("io_uring_setup failed with ENOSYS: kernel.io_uring_disabled=2 turns io_uring off "
                    "for every process (set it to 0, or 1 with kernel.io_uring_group, as root)")
        if probe.seccomp_mode() == "2":
            return ("io_uring_setup failed with ENOSYS: a seccomp filter (container profile) hides it "
                    "from this process; allow io_uring_setup/enter/register in the profile (Docker: "
                    "--security-opt seccomp=<profile>) or run on the host kernel")
        return ("io_uring_setup failed with ENOSYS: kernel too old (io_uring needs Linux 5.1, fastio "
                "wants 5.11+) or built without CONFIG_IO_URING")
    if err == errno.EPERM:
        if disabled == "1":
            return (f"io_uring_setup failed with EPERM: kernel.io_uring_disabled=1 allows io_uring only to "
                    f"members of kernel.io_uring_group={group} and to CAP_SYS_ADMIN; this process is neither")
        if disabled == "2":
            return ("io_uring_setup failed with EPERM: kernel.io_uring_disabled=2 turns io_uring off for "
                    "every process (set it to 0, or 1 with kernel.io_uring_group, as root)")
        if probe.seccomp_mode() == "2":
            return ("io_uring_setup failed with EPERM: refused by a seccomp filter (a container runtime's "
                    "default profile blocks io_uring); allow io_uring_setup/enter/register in it")
        return "io_uring_setup failed with EPERM: refused by a security policy (seccomp or an LSM)"
    if err == errno.ENOMEM:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
        return (f"io_uring_setup failed with ENOMEM: the ring does not fit in RLIMIT_MEMLOCK={limit} "
                "(Linux before 5.12, and again 6.13+ where rings are memory regions, charge them to it "
                "unless the process has CAP_IPC_LOCK): raise it (ulimit -l) or use fewer entries")
    return f"io_uring_setup failed: {os.strerror(err)} (errno {err})"


UNSUPPORTED_ERRNOS = (errno.ENOSYS, errno.EPERM, errno.ENOMEM)


def register_buffers_error(exc: OSError, total: int) -> OSError:
    """The error for a failed IORING_REGISTER_BUFFERS: ENOMEM named as what it
    almost always is (registered buffers are charged to RLIMIT_MEMLOCK
    unless the process has CAP_IPC_LOCK); other errors unchanged."""
    if exc.errno != errno.ENOMEM:
        return exc
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else f"{soft} bytes"
    return OSError(errno.ENOMEM, f"register_buffers failed with ENOMEM: {total} bytes of buffers do not fit "
                   f"in RLIMIT_MEMLOCK={limit} (registered buffers are charged to it unless the process has "
                   "CAP_IPC_LOCK): raise it (ulimit -l) or register fewer or smaller buffers")


# ---- sockaddr packing for prep_connect / prep_sendmsg ----

def sockaddr(address) -> bytes:
    """A ``struct sockaddr_*`` for ``address``: ``(host, port)`` is AF_INET
    (a numeric IPv4 address), ``(host, port[, flowinfo, scope_id])`` with an
    IPv6 host is AF_INET6, ``str``/``bytes`` is an AF_UNIX path (a leading NUL
    for the abstract namespace). Names are not resolved (no DNS)."""
    if isinstance(address, (str, bytes)):
        path = os.fsencode(address)
        if len(path) >= 108:
            raise ValueError("AF_UNIX path too long")
        return struct.pack("=H", socket.AF_UNIX) + path + (b"\0" if path[:1] != b"\0" else b"")
    if not isinstance(address, tuple) or len(address) not in (2, 4):
        raise TypeError("address must be (host, port), (host, port, flowinfo, scope_id) or an AF_UNIX path")
    host, port = address[0], address[1]
    if not isinstance(host, str) or not isinstance(port, int):
        raise TypeError("address must be (str host, int port)")
    if not 0 <= port <= 65535:
        raise OverflowError("port must be 0-65535.")
    ip = ipaddress.ip_address(host)
    if ip.version == 4 and len(address) == 2:
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + ip.packed + b"\0" * 8
    if ip.version == 6:
        flowinfo, scope_id = (address[2], address[3]) if len(address) == 4 else (0, 0)
        return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, flowinfo) + ip.packed
                + struct.pack("=I", scope_id))
    raise ValueError(f"cannot make a sockaddr from {address!r}")
