"""Live progress on a terminal: a status line that log lines never garble."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, TextIO

# (label, bytes so far, total bytes or None, finished): called from the data path.
ProgressFn = Callable[[str, int, int | None, bool], None]


class Counting:
    """A reader that reports how many bytes have passed through it."""

    def __init__(self, reader: IO[bytes], label: str, total: int | None, report: ProgressFn):
        self.reader = reader
        self.label = label
        self.total = total
        self.report = report
        self.done = 0

    def read(self, size: int = -1) -> bytes:
        data = self.reader.read(size)
        self.done += len(data)
        self.report(self.label, self.done, self.total, not data)
        return data


def counting(
    reader: IO[bytes], label: str, total: int | None, report: ProgressFn | None
) -> IO[bytes]:
    """Wrap ``reader`` to report progress, or return it as it is when nobody listens."""
    if report is None:
        return reader
    return Counting(reader, label, total, report)  # type: ignore[return-value]


def human(n: float) -> str:
    """Say a byte count the way people read it (1.5 MB)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    """Say a length of time the way the checks do (45m, 26.0h, 3.5d)."""
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def ago(seconds: int | None) -> str:
    """Say how long ago an archive was made, in whole units (5m ago, 3h ago, 6d ago)."""
    if seconds is None:
        return "?"
    if seconds < -120:
        return "in the future"  # the clock moved back, or the archive came from elsewhere
    seconds = max(seconds, 0)
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400 * 2:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


class Console:
    """The terminal's stderr: log lines erase the status line first and redraw it after."""

    def __init__(
        self, stream: TextIO, clock: Callable[[], float] = time.monotonic, delay: float = 0.5
    ) -> None:
        self.stream = stream
        self.clock = clock
        self.delay = delay
        self.status = ""
        self.started: dict[str, float] = {}
        self.last_draw = 0.0

    def write(self, text: str) -> int:
        self._erase()
        written = self.stream.write(text)
        self._draw()
        return written

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return True

    def _erase(self) -> None:
        if self.status:
            self.stream.write("\r\033[K")

    def _draw(self) -> None:
        if self.status:
            self.stream.write(self.status)
            self.stream.flush()

    def update(self, label: str, done: int, total: int | None, finished: bool = False) -> None:
        """Show ``label``: bytes so far, rate, elapsed, and the percentage when known."""
        if finished:
            self.finish()
            return
        now = self.clock()
        start = self.started.setdefault(label, now)
        if not done:
            return  # the step has started: its rate counts from now
        if now - start < self.delay:
            return  # a step that ends within half a second needs no progress line
        if now - self.last_draw < 0.2 and (total is None or done < total):
            return  # a terminal redrawn more than five times a second only flickers
        self.last_draw = now
        elapsed = max(now - start, 1e-6)
        line = f"{label}: {human(done)}"
        if total:
            line += f" of {human(total)} ({min(100, done * 100 // total)}%)"
        line += f", {human(done / elapsed)}/s, {elapsed:.0f} s"
        self._erase()
        self.status = line
        self._draw()

    def finish(self) -> None:
        """Remove the status line (the job is over)."""
        if self.status:
            self._erase()
            self.status = ""
            self.stream.flush()
