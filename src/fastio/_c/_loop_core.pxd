# cython: language_level=3
# The compiled loop's scheduler, over a kernel engine (_loop_engine). The
# Python class fastio.asyncio.Loop derives from LoopCore.
from libc.stdint cimport int64_t, uint32_t

from fastio._c._loop_engine cimport Engine, FdEntry


cdef class LoopCore:
    cdef public bint _closed
    cdef public bint _stopping
    cdef public bint _debug
    cdef public object _thread_id
    cdef public double _clock_resolution
    cdef public double slow_callback_duration
    cdef public object _current_handle
    cdef public Py_ssize_t _timer_cancelled_count
    cdef list ready             # Handles due this turn or the next, FIFO
    cdef list scheduled         # TimerHandles, a binary heap on (when, seq)
    cdef unsigned long long timer_seq
    cdef Engine eng
    cdef list fds               # fd -> FdEntry or None
    cdef list fired             # the entries the last wait reported (kept to reuse the list)
    cdef unsigned long fork_gen
    cdef unsigned long long turns
    cdef bint wake_pending      # a wake-up byte was written since this turn began
    cdef object recv_func       # a transport reader the engine replaces by its own recvs
    cdef object recv_data_func  # ... when the transport's protocol is a plain Protocol

    cdef int run_ready(self) except -1
    cdef int64_t next_timeout_ns(self) except? -2
    cdef int poll(self, int64_t timeout_ns) except -1
    cdef int move_due_timers(self) except -1
    cdef int drop_cancelled_timers(self) except -1
    cdef object add_fd_handle(self, object fileobj, uint32_t event, object callback, tuple args)
    cdef bint remove_fd_handle(self, object fileobj, uint32_t event) except -1
    cdef object recv_transport(self, uint32_t event, object callback, tuple args)
