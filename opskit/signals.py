"""Signals: SIGTERM and SIGHUP unwind like Ctrl-C; a second signal cannot cut the cleanup short."""

from __future__ import annotations

import contextlib
import signal
from types import FrameType

from opskit.errors import Interrupted

_seen: list[int] = []


def _handler(signum: int, frame: FrameType | None) -> None:
    if _seen:
        # Already unwinding: a restore may be putting the old database back; let it finish.
        return
    _seen.append(signum)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(signum)


def install() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into exceptions that run every cleanup on the way out."""
    _seen.clear()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # Only the main thread may set handlers (CliRunner in a thread, for example).
        with contextlib.suppress(ValueError):
            signal.signal(signum, _handler)
