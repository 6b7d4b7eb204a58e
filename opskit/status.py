"""Exit statuses: the one place that says what each number opskit exits with means."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """What opskit's exit status means (docs/exit-status.md)."""

    OK = 0
    # 1-63: the number of errors (failed steps, FAILed checks), capped here.
    MAX_ERRORS = 63
    USAGE = 64  # a bad flag, argument or value: nothing ran (BSD's EX_USAGE)
    TIMEOUT = 124  # `opskit run --timeout`: the command had to be stopped (as timeout(1))
    NOT_EXECUTABLE = 126  # `opskit run`: found but cannot run (as the shell)
    NOT_FOUND = 127  # `opskit run`: command not found (as the shell)
    INTERRUPTED = 130  # stopped by SIGINT, SIGTERM or SIGHUP (128 + SIGINT)


def for_errors(errors: int) -> int:
    """The exit status of a run with this many errors: 0, or the count up to 63."""
    return max(0, min(errors, Status.MAX_ERRORS))


def for_signal(signum: int) -> int:
    """The exit status of a run a signal stopped: 128 + its number, as a shell says it."""
    return 128 + signum
