# cython: language_level=3
"""``_abi_layout()``: the AIO structs' sizes and offsets as compiled, which
tests/interfaces/test_abi.py compares with the ctypes mirror in fastio._abi.aio."""

from fastio._c._aio cimport (
    FIO_IOCB_CMD_FDSYNC, FIO_IOCB_CMD_FSYNC, FIO_IOCB_CMD_NOOP, FIO_IOCB_CMD_POLL, FIO_IOCB_CMD_PREAD,
    FIO_IOCB_CMD_PREADV, FIO_IOCB_CMD_PWRITE, FIO_IOCB_CMD_PWRITEV, FIO_IOCB_FLAG_IOPRIO, FIO_IOCB_FLAG_RESFD,
    FIO_RWF_APPEND, FIO_RWF_DSYNC, FIO_RWF_HIPRI, FIO_RWF_NOWAIT, FIO_RWF_SYNC, fio_io_event, fio_iocb,
)


def _abi_layout():
    """Sizes and field offsets of the C ABI structs, as compiled (tests/interfaces/test_abi.py)."""
    cdef fio_iocb cb
    cdef fio_io_event ev
    cdef char *base = <char *>&cb
    iocb_off = {
        "aio_data": <char *>&cb.aio_data - base, "aio_key": <char *>&cb.aio_key - base,
        "aio_rw_flags": <char *>&cb.aio_rw_flags - base, "aio_lio_opcode": <char *>&cb.aio_lio_opcode - base,
        "aio_reqprio": <char *>&cb.aio_reqprio - base, "aio_fildes": <char *>&cb.aio_fildes - base,
        "aio_buf": <char *>&cb.aio_buf - base, "aio_nbytes": <char *>&cb.aio_nbytes - base,
        "aio_offset": <char *>&cb.aio_offset - base, "aio_reserved2": <char *>&cb.aio_reserved2 - base,
        "aio_flags": <char *>&cb.aio_flags - base, "aio_resfd": <char *>&cb.aio_resfd - base,
    }
    base = <char *>&ev
    ev_off = {"data": <char *>&ev.data - base, "obj": <char *>&ev.obj - base, "res": <char *>&ev.res - base,
              "res2": <char *>&ev.res2 - base}
    return {
        "sizes": {"iocb": sizeof(fio_iocb), "io_event": sizeof(fio_io_event)},
        "offsets": {"iocb": iocb_off, "io_event": ev_off},
        "constants": {
            "IOCB_CMD_PREAD": FIO_IOCB_CMD_PREAD, "IOCB_CMD_PWRITE": FIO_IOCB_CMD_PWRITE,
            "IOCB_CMD_FSYNC": FIO_IOCB_CMD_FSYNC, "IOCB_CMD_FDSYNC": FIO_IOCB_CMD_FDSYNC,
            "IOCB_CMD_POLL": FIO_IOCB_CMD_POLL, "IOCB_CMD_NOOP": FIO_IOCB_CMD_NOOP,
            "IOCB_CMD_PREADV": FIO_IOCB_CMD_PREADV, "IOCB_CMD_PWRITEV": FIO_IOCB_CMD_PWRITEV,
            "IOCB_FLAG_RESFD": FIO_IOCB_FLAG_RESFD, "IOCB_FLAG_IOPRIO": FIO_IOCB_FLAG_IOPRIO,
            "RWF_HIPRI": FIO_RWF_HIPRI, "RWF_DSYNC": FIO_RWF_DSYNC, "RWF_SYNC": FIO_RWF_SYNC,
            "RWF_NOWAIT": FIO_RWF_NOWAIT, "RWF_APPEND": FIO_RWF_APPEND,
        },
    }
