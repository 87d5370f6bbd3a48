"""ctypes bindings for the libc entries and kernel structures the pure backend uses.

ctypes releases the GIL around every foreign call, so waits here do not
block other threads.
"""

import ctypes
import platform

libc = ctypes.CDLL(None, use_errno=True)

c_int = ctypes.c_int
c_long = ctypes.c_long
c_uint32 = ctypes.c_uint32
c_uint64 = ctypes.c_uint64

# x86_64's struct epoll_event is packed (12 bytes); other architectures pad it to 16.
_EPOLL_PACKED = platform.machine() in ("x86_64", "i386", "i686")


class EpollEvent(ctypes.Structure):
    """struct epoll_event: events, then the 64-bit epoll_data union (used as u64)."""

    if _EPOLL_PACKED:
        _pack_ = 1
    _fields_ = [("events", c_uint32), ("data", c_uint64)]


class PollFd(ctypes.Structure):
    """struct pollfd."""

    _fields_ = [("fd", c_int), ("events", ctypes.c_short), ("revents", ctypes.c_short)]


class Timespec(ctypes.Structure):
    """struct timespec (64-bit time_t on the platforms fastio supports)."""

    _fields_ = [("tv_sec", c_long), ("tv_nsec", c_long)]


# The unified syscall table number of epoll_pwait2(2) (Linux 5.11), every architecture.
NR_EPOLL_PWAIT2 = 441

epoll_create1 = libc.epoll_create1
epoll_create1.argtypes = [c_int]
epoll_create1.restype = c_int

epoll_ctl = libc.epoll_ctl
epoll_ctl.argtypes = [c_int, c_int, c_int, ctypes.POINTER(EpollEvent)]
epoll_ctl.restype = c_int

epoll_wait = libc.epoll_wait
epoll_wait.argtypes = [c_int, ctypes.POINTER(EpollEvent), c_int, c_int]
epoll_wait.restype = c_int

syscall = libc.syscall
syscall.restype = c_long

ppoll = libc.ppoll
ppoll.argtypes = [ctypes.POINTER(PollFd), ctypes.c_ulong, ctypes.POINTER(Timespec), ctypes.c_void_p]
ppoll.restype = c_int


def epoll_pwait2(epfd: int, events, maxevents: int, timeout) -> int:
    """epoll_pwait2(2) through syscall(2); returns the count or -1 with errno set."""
    return syscall(
        c_long(NR_EPOLL_PWAIT2), c_int(epfd), events, c_int(maxevents),
        timeout, None, ctypes.c_size_t(0),
    )
