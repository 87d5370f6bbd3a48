"""The io_uring ABI checked three ways: the C header as compiled
(``fastio._c._uring_layout._abi_layout``), the ctypes mirror
(``fastio._abi.uring``), and the literal numbers of the kernel's
``include/uapi/linux/io_uring.h``."""

from __future__ import annotations

import ctypes

import pytest

import fastio.uring
from fastio._c._uring_layout import _abi_layout
from fastio._abi import uring as abi

LAYOUT = _abi_layout()

SIZES = {"sqe": 64, "cqe": 16, "sqring_offsets": 40, "cqring_offsets": 40, "params": 120, "probe_op": 8,
         "probe": 16, "buf": 16, "buf_reg": 40, "rsrc_update": 16, "getevents_arg": 24, "kernel_timespec": 16}

OFFSETS = {
    "sqe": {"opcode": 0, "flags": 1, "ioprio": 2, "fd": 4, "off": 8, "addr": 16, "len": 24, "op_flags": 28,
            "user_data": 32, "buf_index": 40, "personality": 42, "splice_fd_in": 44, "addr3": 48},
    "cqe": {"user_data": 0, "res": 8, "flags": 12},
    "params": {"sq_entries": 0, "cq_entries": 4, "flags": 8, "sq_thread_cpu": 12, "sq_thread_idle": 16,
               "features": 20, "wq_fd": 24, "sq_off": 40, "cq_off": 80},
    "sqring_offsets": {"head": 0, "tail": 4, "ring_mask": 8, "ring_entries": 12, "flags": 16, "dropped": 20,
                       "array": 24, "user_addr": 32},
    "cqring_offsets": {"head": 0, "tail": 4, "ring_mask": 8, "ring_entries": 12, "overflow": 16, "cqes": 20,
                       "flags": 24, "user_addr": 32},
    "buf": {"addr": 0, "len": 8, "bid": 12, "resv": 14},
    "buf_reg": {"ring_addr": 0, "ring_entries": 8, "bgid": 12},
    "getevents_arg": {"sigmask": 0, "sigmask_sz": 8, "ts": 16},
    "rsrc_update": {"offset": 0, "data": 8},
}

# Values from include/uapi/linux/io_uring.h (Linux 6.18), written out.
LITERALS = {
    "SETUP_IOPOLL": 1, "SETUP_SQPOLL": 2, "SETUP_SQ_AFF": 4, "SETUP_CQSIZE": 8, "SETUP_CLAMP": 16,
    "SETUP_ATTACH_WQ": 32, "SETUP_R_DISABLED": 64, "SETUP_SUBMIT_ALL": 128, "SETUP_COOP_TASKRUN": 256,
    "SETUP_TASKRUN_FLAG": 512, "SETUP_SQE128": 1024, "SETUP_CQE32": 2048, "SETUP_SINGLE_ISSUER": 4096,
    "SETUP_DEFER_TASKRUN": 8192, "SETUP_NO_MMAP": 16384, "SETUP_REGISTERED_FD_ONLY": 32768,
    "SETUP_NO_SQARRAY": 65536,
    "IOSQE_FIXED_FILE": 1, "IOSQE_IO_DRAIN": 2, "IOSQE_IO_LINK": 4, "IOSQE_IO_HARDLINK": 8, "IOSQE_ASYNC": 16,
    "IOSQE_BUFFER_SELECT": 32, "IOSQE_CQE_SKIP_SUCCESS": 64,
    "FEAT_SINGLE_MMAP": 1, "FEAT_NODROP": 2, "FEAT_EXT_ARG": 256, "FEAT_CQE_SKIP": 2048,
    "CQE_F_BUFFER": 1, "CQE_F_MORE": 2, "CQE_F_SOCK_NONEMPTY": 4, "CQE_BUFFER_SHIFT": 16,
    "SQ_NEED_WAKEUP": 1, "SQ_CQ_OVERFLOW": 2, "SQ_TASKRUN": 4,
    "ENTER_GETEVENTS": 1, "ENTER_SQ_WAKEUP": 2, "ENTER_SQ_WAIT": 4, "ENTER_EXT_ARG": 8,
    "ASYNC_CANCEL_ALL": 1, "ASYNC_CANCEL_FD": 2, "ASYNC_CANCEL_ANY": 4,
    "TIMEOUT_ABS": 1, "FSYNC_DATASYNC": 1, "POLL_ADD_MULTI": 1, "RECV_MULTISHOT": 2, "ACCEPT_MULTISHOT": 1,
    "REGISTER_BUFFERS": 0, "UNREGISTER_BUFFERS": 1, "REGISTER_FILES": 2, "UNREGISTER_FILES": 3,
    "REGISTER_EVENTFD": 4, "UNREGISTER_EVENTFD": 5, "REGISTER_FILES_UPDATE": 6, "REGISTER_PROBE": 8,
    "REGISTER_PBUF_RING": 22, "UNREGISTER_PBUF_RING": 23,
    "OFF_SQ_RING": 0, "OFF_CQ_RING": 0x8000000, "OFF_SQES": 0x10000000,
    "IORING_OP_NOP": 0, "IORING_OP_READV": 1, "IORING_OP_WRITEV": 2, "IORING_OP_FSYNC": 3,
    "IORING_OP_READ_FIXED": 4, "IORING_OP_WRITE_FIXED": 5, "IORING_OP_POLL_ADD": 6, "IORING_OP_POLL_REMOVE": 7,
    "IORING_OP_SENDMSG": 9, "IORING_OP_RECVMSG": 10, "IORING_OP_TIMEOUT": 11, "IORING_OP_TIMEOUT_REMOVE": 12,
    "IORING_OP_ACCEPT": 13, "IORING_OP_ASYNC_CANCEL": 14, "IORING_OP_LINK_TIMEOUT": 15, "IORING_OP_CONNECT": 16,
    "IORING_OP_FALLOCATE": 17, "IORING_OP_OPENAT": 18, "IORING_OP_CLOSE": 19, "IORING_OP_STATX": 21,
    "IORING_OP_READ": 22, "IORING_OP_WRITE": 23, "IORING_OP_SEND": 26, "IORING_OP_RECV": 27,
    "IORING_OP_SPLICE": 30, "IORING_OP_SHUTDOWN": 34, "IORING_OP_SEND_ZC": 47, "IORING_OP_READ_MULTISHOT": 49,
    "IORING_OP_FTRUNCATE": 55, "IORING_OP_BIND": 56, "IORING_OP_LISTEN": 57, "IORING_OP_PIPE": 62,
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_sizes_c_ctypes_literal(name):
    assert LAYOUT["sizes"][name] == SIZES[name]
    assert ctypes.sizeof(abi.STRUCTS[name]) == SIZES[name]


@pytest.mark.parametrize("struct", sorted(OFFSETS))
def test_offsets_c_ctypes_literal(struct):
    ctype = abi.STRUCTS[struct]
    for field, offset in OFFSETS[struct].items():
        assert LAYOUT["offsets"][struct][field] == offset, field
        assert getattr(ctype, field).offset == offset, field


def test_constants_c_python_literal():
    for name, value in LITERALS.items():
        assert getattr(abi, name) == value, name
        if name in LAYOUT["constants"]:
            assert LAYOUT["constants"][name] == value, name
    # every constant the C header defines is checked above
    assert set(LAYOUT["constants"]) <= set(LITERALS)


def test_facade_exports_the_constants():
    for name, value in LITERALS.items():
        if name.startswith(("OFF_", "REGISTER_", "UNREGISTER_")):
            continue
        assert getattr(fastio.uring, name) == value, name
        assert name in fastio.uring.__all__
    assert fastio.uring.OPCODE_NAMES[fastio.uring.IORING_OP_READ] == "READ"


# ---- Linux AIO: csrc/fio_aio_abi.h == fastio._abi.aio == include/uapi/linux/aio_abi.h ----

from fastio._c._aio_layout import _abi_layout as _aio_abi_layout  # noqa: E402
from fastio._abi import aio as aio_abi  # noqa: E402

AIO_LAYOUT = _aio_abi_layout()
AIO_SIZES = {"iocb": 64, "io_event": 32}
AIO_OFFSETS = {
    "iocb": {"aio_data": 0, "aio_key": 8, "aio_rw_flags": 12, "aio_lio_opcode": 16, "aio_reqprio": 18,
             "aio_fildes": 20, "aio_buf": 24, "aio_nbytes": 32, "aio_offset": 40, "aio_reserved2": 48,
             "aio_flags": 56, "aio_resfd": 60},
    "io_event": {"data": 0, "obj": 8, "res": 16, "res2": 24},
}
AIO_LITERALS = {
    "IOCB_CMD_PREAD": 0, "IOCB_CMD_PWRITE": 1, "IOCB_CMD_FSYNC": 2, "IOCB_CMD_FDSYNC": 3, "IOCB_CMD_POLL": 5,
    "IOCB_CMD_NOOP": 6, "IOCB_CMD_PREADV": 7, "IOCB_CMD_PWRITEV": 8, "IOCB_FLAG_RESFD": 1, "IOCB_FLAG_IOPRIO": 2,
    "RWF_HIPRI": 1, "RWF_DSYNC": 2, "RWF_SYNC": 4, "RWF_NOWAIT": 8, "RWF_APPEND": 16,
}


@pytest.mark.parametrize("name", sorted(AIO_SIZES))
def test_aio_sizes_c_ctypes_literal(name):
    assert AIO_LAYOUT["sizes"][name] == AIO_SIZES[name]
    assert ctypes.sizeof(aio_abi.STRUCTS[name]) == AIO_SIZES[name]


@pytest.mark.parametrize("struct", sorted(AIO_OFFSETS))
def test_aio_offsets_c_ctypes_literal(struct):
    ctype = aio_abi.STRUCTS[struct]
    for field, offset in AIO_OFFSETS[struct].items():
        assert AIO_LAYOUT["offsets"][struct][field] == offset, field
        assert getattr(ctype, field).offset == offset, field


def test_aio_constants_c_python_literal_facade():
    import fastio.aio

    assert set(AIO_LAYOUT["constants"]) == set(AIO_LITERALS)
    for name, value in AIO_LITERALS.items():
        assert AIO_LAYOUT["constants"][name] == value, name
        assert getattr(aio_abi, name) == value, name
        assert getattr(fastio.aio, name) == value and name in fastio.aio.__all__, name
