# cython: language_level=3
# What the socket transport's read paths share (_loop_transport, and the
# uring engine's recv delivery in _loop_uring).


cdef inline int protocol_data(object transport, object data) except -1:
    """``data_received``, an error of it reported as the stdlib transport does."""
    try:
        transport._protocol.data_received(data)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        transport._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
    return 0
