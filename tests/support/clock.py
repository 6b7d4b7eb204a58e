"""A fake clock for retry and backoff tests."""

from __future__ import annotations


class FakeTime:
    """A clock that only moves when someone sleeps, so backoff costs no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
