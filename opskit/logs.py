"""structlog set-up: stderr (colour on a TTY, key=value otherwise), JSON and key=value files."""

from __future__ import annotations

import collections
import io
import logging
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import structlog

from opskit import files
from opskit.progress import Console
from opskit.redact import redact

LOGGER = "opskit"
_KEY_ORDER = ["timestamp", "level", "event"]


class _LogFile(logging.FileHandler):
    """A log file opened without following a symlink, created 0640 whatever the umask."""

    def _open(self) -> io.TextIOWrapper:
        fd = files.open_append(Path(self.baseFilename))
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


class LogTail(logging.Handler):
    """Keep the last lines of a run's log in memory (the Healthchecks ping body)."""

    def __init__(self, max_bytes: int = 100_000) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque()
        self.max_bytes = max_bytes
        self.size = 0

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines.append(line)
        self.size += len(line) + 1
        while self.size > self.max_bytes and len(self.lines) > 1:
            self.size -= len(self.lines.popleft()) + 1

    def text(self) -> str:
        return "\n".join(self.lines) + ("\n" if self.lines else "")


def _timestamp(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """ISO 8601 in UTC with its offset (``2026-11-22T01:00:00.123+00:00``) for every command.

    UTC, not local time: Django moves a job's process to settings.TIME_ZONE, and a command
    that sets no Django up would log in the system's zone; one zone keeps lines comparable.
    """
    event["timestamp"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    return event


def _redactor(secrets: tuple[str, ...]) -> Any:
    def processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if secrets:
            for key, value in event.items():
                if isinstance(value, str):
                    event[key] = redact(value, secrets)
                elif not isinstance(value, int | float | bool | type(None)):
                    event[key] = redact(str(value), secrets)
        return event

    return processor


def _handler(handler: logging.Handler, renderer: Any, pre: list[Any]) -> logging.Handler:
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=pre,
        )
    )
    return handler


def configure(
    *,
    log_dir: Path | None,
    verbosity: int = 0,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    tail: LogTail | None = None,
    progress_delay: float = 0.5,
) -> Console | None:
    """Send opskit's events to stderr, the log files and ``tail``; safe to call again.

    On a terminal, returns the Console that progress lines are drawn on.
    """
    stream = stream or sys.stderr
    pre: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        _timestamp,
        _redactor(tuple(s for s in secrets if s)),
    ]
    structlog.configure(
        processors=[*pre, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    logger = _fresh_logger()
    keyvalue = structlog.processors.LogfmtRenderer(key_order=_KEY_ORDER, drop_missing=True)
    tty = stream.isatty()
    console_renderer: Any = structlog.dev.ConsoleRenderer(colors=True) if tty else keyvalue
    terminal = Console(stream, delay=progress_delay) if tty else None
    console = _handler(logging.StreamHandler(terminal or stream), console_renderer, pre)
    console.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    logger.addHandler(console)
    if log_dir is not None:
        files.make_dirs(log_dir, 0o750)
        level = logging.DEBUG if verbosity > 0 else logging.INFO
        for handler in _log_files(log_dir, keyvalue, pre):
            handler.setLevel(level)
            logger.addHandler(handler)
    if tail is not None:
        logger.addHandler(_handler(tail, keyvalue, pre))
    return terminal


def _fresh_logger() -> logging.Logger:
    """opskit's logger with the handlers of an earlier ``configure`` closed and removed."""
    logger = logging.getLogger(LOGGER)
    for old in list(logger.handlers):
        logger.removeHandler(old)
        old.close()
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def _log_files(log_dir: Path, keyvalue: Any, pre: list[Any]) -> Iterator[logging.Handler]:
    """``opskit.json.log`` (one JSON object a line) and ``opskit.log`` (key=value), each
    opened when the one before it is in place."""
    for name, renderer in (
        ("opskit.json.log", structlog.processors.JSONRenderer(sort_keys=False)),
        ("opskit.log", keyvalue),
    ):
        yield _handler(_LogFile(log_dir / name, encoding="utf-8"), renderer, pre)


def get(name: str = "") -> Any:
    """Return a structlog logger under opskit's namespace."""
    return structlog.get_logger(f"{LOGGER}.{name}" if name else LOGGER)
