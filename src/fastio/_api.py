"""The public API table: every public name, per module. Both backends export
exactly these (``tests/interfaces/test_api_parity.py``); ``fastio._c`` checks its
modules against it at import. A leaf module, so that ``fastio._backend``
(which imports ``fastio._c``) and ``fastio._c`` do not import each other."""

from __future__ import annotations

# Every public name, per module; both backends export exactly these.
PUBLIC_API: dict[str, tuple[str, ...]] = {
    "epoll": ("Epoll", "epoll_pwait2_available"),
    "poll": ("Poll",),
    "selectors": ("EpollSelector", "PollSelector", "SelectSelector"),
    "sigio": ("SignalIO", "TextbookSignalIO"),
    "aio": ("Context", "Completion", "available", "why_unavailable"),
    "uring": ("Ring", "Completion", "BufRing", "available", "why_unavailable"),
}
