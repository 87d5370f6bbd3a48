# cython: language_level=3, embedsignature=True
"""The io_uring ABI structs as compiled: sizes and field offsets, for
``tests/interfaces/test_abi.py`` (which checks them against the ctypes mirror and the
kernel's values)."""

from fastio._c._uring cimport *


def _abi_layout():
    """Sizes and field offsets of the C ABI structs, as compiled (tests/interfaces/test_abi.py)."""
    cdef fio_io_uring_sqe sqe
    cdef fio_io_uring_cqe cqe
    cdef fio_io_uring_params p
    cdef fio_io_uring_buf b
    cdef fio_io_uring_buf_reg reg
    cdef fio_io_uring_getevents_arg ga
    cdef fio_io_uring_rsrc_update up
    cdef char *base = <char *>&sqe
    sqe_off = {
        "opcode": <char *>&sqe.opcode - base, "flags": <char *>&sqe.flags - base,
        "ioprio": <char *>&sqe.ioprio - base, "fd": <char *>&sqe.fd - base, "off": <char *>&sqe.off - base,
        "addr": <char *>&sqe.addr - base, "len": <char *>&sqe.len - base,
        "op_flags": <char *>&sqe.op_flags - base, "user_data": <char *>&sqe.user_data - base,
        "buf_index": <char *>&sqe.buf_index - base, "personality": <char *>&sqe.personality - base,
        "splice_fd_in": <char *>&sqe.splice_fd_in - base, "addr3": <char *>&sqe.addr3 - base,
    }
    base = <char *>&p
    params_off = {
        "sq_entries": <char *>&p.sq_entries - base, "cq_entries": <char *>&p.cq_entries - base,
        "flags": <char *>&p.flags - base, "sq_thread_cpu": <char *>&p.sq_thread_cpu - base,
        "sq_thread_idle": <char *>&p.sq_thread_idle - base, "features": <char *>&p.features - base,
        "wq_fd": <char *>&p.wq_fd - base, "sq_off": <char *>&p.sq_off - base, "cq_off": <char *>&p.cq_off - base,
    }
    base = <char *>&p.sq_off
    sq_off = {name: value for name, value in {
        "head": <char *>&p.sq_off.head - base, "tail": <char *>&p.sq_off.tail - base,
        "ring_mask": <char *>&p.sq_off.ring_mask - base, "ring_entries": <char *>&p.sq_off.ring_entries - base,
        "flags": <char *>&p.sq_off.flags - base, "dropped": <char *>&p.sq_off.dropped - base,
        "array": <char *>&p.sq_off.array - base, "user_addr": <char *>&p.sq_off.user_addr - base}.items()}
    base = <char *>&p.cq_off
    cq_off = {
        "head": <char *>&p.cq_off.head - base, "tail": <char *>&p.cq_off.tail - base,
        "ring_mask": <char *>&p.cq_off.ring_mask - base, "ring_entries": <char *>&p.cq_off.ring_entries - base,
        "overflow": <char *>&p.cq_off.overflow - base, "cqes": <char *>&p.cq_off.cqes - base,
        "flags": <char *>&p.cq_off.flags - base, "user_addr": <char *>&p.cq_off.user_addr - base}
    base = <char *>&cqe
    cqe_off = {"user_data": <char *>&cqe.user_data - base, "res": <char *>&cqe.res - base,
               "flags": <char *>&cqe.flags - base}
    base = <char *>&b
    buf_off = {"addr": <char *>&b.addr - base, "len": <char *>&b.len - base, "bid": <char *>&b.bid - base,
               "resv": <char *>&b.resv - base}
    base = <char *>&reg
    reg_off = {"ring_addr": <char *>&reg.ring_addr - base, "ring_entries": <char *>&reg.ring_entries - base,
               "bgid": <char *>&reg.bgid - base}
    base = <char *>&ga
    ga_off = {"sigmask": <char *>&ga.sigmask - base, "sigmask_sz": <char *>&ga.sigmask_sz - base,
              "ts": <char *>&ga.ts - base}
    base = <char *>&up
    up_off = {"offset": <char *>&up.offset - base, "data": <char *>&up.data - base}
    return {
        "sizes": {
            "sqe": sizeof(fio_io_uring_sqe), "cqe": sizeof(fio_io_uring_cqe),
            "sqring_offsets": sizeof(fio_io_sqring_offsets), "cqring_offsets": sizeof(fio_io_cqring_offsets),
            "params": sizeof(fio_io_uring_params), "probe_op": sizeof(fio_io_uring_probe_op),
            "probe": 16, "buf": sizeof(fio_io_uring_buf), "buf_reg": sizeof(fio_io_uring_buf_reg),
            "rsrc_update": sizeof(fio_io_uring_rsrc_update), "getevents_arg": sizeof(fio_io_uring_getevents_arg),
            "kernel_timespec": sizeof(fio_kernel_timespec),
        },
        "offsets": {"sqe": sqe_off, "params": params_off, "sqring_offsets": sq_off, "cqring_offsets": cq_off,
                    "cqe": cqe_off, "buf": buf_off, "buf_reg": reg_off, "getevents_arg": ga_off,
                    "rsrc_update": up_off},
        "constants": {
            "SETUP_SQPOLL": FIO_IORING_SETUP_SQPOLL, "SETUP_SQ_AFF": FIO_IORING_SETUP_SQ_AFF,
            "SETUP_CQSIZE": FIO_IORING_SETUP_CQSIZE, "SETUP_SQE128": FIO_IORING_SETUP_SQE128,
            "SETUP_CQE32": FIO_IORING_SETUP_CQE32, "SETUP_DEFER_TASKRUN": FIO_IORING_SETUP_DEFER_TASKRUN,
            "SETUP_NO_MMAP": FIO_IORING_SETUP_NO_MMAP,
            "SETUP_REGISTERED_FD_ONLY": FIO_IORING_SETUP_REGISTERED_FD_ONLY,
            "SETUP_NO_SQARRAY": FIO_IORING_SETUP_NO_SQARRAY, "FEAT_SINGLE_MMAP": FIO_IORING_FEAT_SINGLE_MMAP,
            "FEAT_NODROP": FIO_IORING_FEAT_NODROP, "FEAT_EXT_ARG": FIO_IORING_FEAT_EXT_ARG,
            "SQ_NEED_WAKEUP": FIO_IORING_SQ_NEED_WAKEUP, "SQ_CQ_OVERFLOW": FIO_IORING_SQ_CQ_OVERFLOW,
            "SQ_TASKRUN": FIO_IORING_SQ_TASKRUN, "ENTER_GETEVENTS": FIO_IORING_ENTER_GETEVENTS,
            "ENTER_SQ_WAKEUP": FIO_IORING_ENTER_SQ_WAKEUP, "ENTER_SQ_WAIT": FIO_IORING_ENTER_SQ_WAIT,
            "ENTER_EXT_ARG": FIO_IORING_ENTER_EXT_ARG, "CQE_F_BUFFER": FIO_IORING_CQE_F_BUFFER,
            "CQE_F_MORE": FIO_IORING_CQE_F_MORE, "CQE_BUFFER_SHIFT": FIO_IORING_CQE_BUFFER_SHIFT,
            "ASYNC_CANCEL_ALL": FIO_IORING_ASYNC_CANCEL_ALL, "ASYNC_CANCEL_FD": FIO_IORING_ASYNC_CANCEL_FD,
            "ASYNC_CANCEL_ANY": FIO_IORING_ASYNC_CANCEL_ANY, "REGISTER_BUFFERS": FIO_IORING_REGISTER_BUFFERS,
            "UNREGISTER_BUFFERS": FIO_IORING_UNREGISTER_BUFFERS, "REGISTER_FILES": FIO_IORING_REGISTER_FILES,
            "UNREGISTER_FILES": FIO_IORING_UNREGISTER_FILES, "REGISTER_EVENTFD": FIO_IORING_REGISTER_EVENTFD,
            "UNREGISTER_EVENTFD": FIO_IORING_UNREGISTER_EVENTFD,
            "REGISTER_FILES_UPDATE": FIO_IORING_REGISTER_FILES_UPDATE,
            "REGISTER_PROBE": FIO_IORING_REGISTER_PROBE, "REGISTER_PBUF_RING": FIO_IORING_REGISTER_PBUF_RING,
            "UNREGISTER_PBUF_RING": FIO_IORING_UNREGISTER_PBUF_RING,
            "OFF_SQ_RING": FIO_IORING_OFF_SQ_RING, "OFF_CQ_RING": FIO_IORING_OFF_CQ_RING,
            "OFF_SQES": FIO_IORING_OFF_SQES,
            "IORING_OP_NOP": FIO_OP_NOP, "IORING_OP_READV": FIO_OP_READV, "IORING_OP_WRITEV": FIO_OP_WRITEV,
            "IORING_OP_FSYNC": FIO_OP_FSYNC, "IORING_OP_READ_FIXED": FIO_OP_READ_FIXED,
            "IORING_OP_WRITE_FIXED": FIO_OP_WRITE_FIXED, "IORING_OP_POLL_ADD": FIO_OP_POLL_ADD,
            "IORING_OP_POLL_REMOVE": FIO_OP_POLL_REMOVE, "IORING_OP_SENDMSG": FIO_OP_SENDMSG,
            "IORING_OP_RECVMSG": FIO_OP_RECVMSG, "IORING_OP_TIMEOUT": FIO_OP_TIMEOUT,
            "IORING_OP_TIMEOUT_REMOVE": FIO_OP_TIMEOUT_REMOVE, "IORING_OP_ACCEPT": FIO_OP_ACCEPT,
            "IORING_OP_ASYNC_CANCEL": FIO_OP_ASYNC_CANCEL, "IORING_OP_LINK_TIMEOUT": FIO_OP_LINK_TIMEOUT,
            "IORING_OP_CONNECT": FIO_OP_CONNECT, "IORING_OP_FALLOCATE": FIO_OP_FALLOCATE,
            "IORING_OP_OPENAT": FIO_OP_OPENAT, "IORING_OP_CLOSE": FIO_OP_CLOSE, "IORING_OP_STATX": FIO_OP_STATX,
            "IORING_OP_READ": FIO_OP_READ, "IORING_OP_WRITE": FIO_OP_WRITE, "IORING_OP_SEND": FIO_OP_SEND,
            "IORING_OP_RECV": FIO_OP_RECV, "IORING_OP_SPLICE": FIO_OP_SPLICE,
            "IORING_OP_SHUTDOWN": FIO_OP_SHUTDOWN,
        },
    }
