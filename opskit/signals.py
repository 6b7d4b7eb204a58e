"""Signals: SIGTERM and SIGHUP unwind like Ctrl-C; a second signal cannot cut the cleanup short."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType

from opskit.errors import Interrupted

_seen: list[int] = []
_wakeup: list[int] = []  # read end of the pipe the C-level handler writes each signal to
_deferring: list[int] = []  # nesting depth of ``deferred()`` blocks
_deferred: list[int] = []  # signals that arrived inside one


def _handler(signum: int, frame: FrameType | None) -> None:
    if _seen:
        # Already unwinding: a restore may be putting the old database back; let it finish.
        return
    if _deferring:
        _deferred.append(signum)
        return
    _seen.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal's exception until the block ends.

    Forking a child runs Python's at-fork hooks, where an exception is printed and dropped:
    a SIGTERM raised there would be lost. Inside this block it is kept, and raised after.
    """
    _deferring.append(1)
    try:
        yield
    finally:
        _deferring.pop()
        if not _deferring and _deferred:
            signum = _deferred[0]
            _deferred.clear()
            _handler(signum, None)


def install() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into exceptions that run every cleanup on the way out."""
    _seen.clear()
    _deferred.clear()
    try:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _handler)
    except ValueError:
        return  # only the main thread may set handlers (CliRunner in a thread, for example)
    if not _wakeup:
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        _wakeup.append(read_end)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)


def wakeup_fd() -> int | None:
    """Return a descriptor that turns readable when a signal arrives (None if not installed)."""
    return _wakeup[0] if _wakeup else None


def drain_wakeup() -> None:
    """Empty the wake-up pipe after a signal was seen."""
    with contextlib.suppress(BlockingIOError):
        while os.read(_wakeup[0], 512):
            pass
