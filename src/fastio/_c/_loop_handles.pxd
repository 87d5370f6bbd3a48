# cython: language_level=3
# The compiled loop's callbacks: what call_soon / call_later return and what
# the scheduler runs. cimport it; run() is a C call through the vtable.


cdef class Handle:
    cdef readonly object _callback
    cdef readonly object _args          # a tuple (None once cancelled)
    cdef readonly object _context       # the contextvars.Context it runs in
    cdef readonly object _loop
    cdef readonly bint _cancelled
    cdef public object _source_traceback
    cdef object _repr
    cdef object __weakref__

    cdef int run(self) except -1


cdef class TimerHandle(Handle):
    cdef readonly double _when
    cdef public bint _scheduled
    cdef unsigned long long seq         # FIFO among timers due at the same time


cdef Handle new_handle(object callback, tuple args, object loop, object context, bint debug)
cdef TimerHandle new_timer(double when, unsigned long long seq, object callback, tuple args,
                           object loop, object context, bint debug)
