"""An archive loaded into a checked SQLite file of opskit's, before anything else uses it.

The decompressor's pipe is spliced straight into the file (no copy through Python); the
archive must then prove whole (``check_end``); the file is fsynced on a thread while
``PRAGMA integrity_check`` reads it through an immutable connection (no locks, no -journal,
-wal or -shm opened beside it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from opskit.archive.stream import CHUNK
from opskit.engines.base import Content, OpenArchive
from opskit.engines.sqlite.files import Scratch
from opskit.errors import ArchiveError


@contextlib.contextmanager
def scratch(final: Path) -> Iterator[Scratch]:
    """Create a new file of opskit's beside ``final``; a full or read-only folder is one line."""
    try:
        made = Scratch(final)
    except OSError as exc:
        raise disk_error(exc, final.parent) from None
    with made:
        yield made


def fill(copy: Scratch, open_archive: OpenArchive) -> None:
    """Decompress the archive into ``copy`` and prove the archive whole."""
    try:
        with open_archive() as content:
            _copy(content, copy.fd)
            # Read to its end, decompressed cleanly, the manifest's sha256: before any use.
            getattr(content, "check_end", lambda: None)()
    except OSError as exc:
        raise disk_error(exc, copy.path.parent) from None


def _copy(content: Content, out: int) -> None:
    """Copy the content to ``out``: a pipe moves inside the kernel (splice), else by reads."""
    fd = _pipe_of(content)
    moved = 0
    if fd is not None:
        try:
            while n := os.splice(fd, out, 1 << 20):
                moved += n
            return
        except OSError as exc:
            if moved or exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
    while chunk := content.read(CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view) :]


def _pipe_of(content: object) -> int | None:
    fileno = getattr(content, "fileno", None)
    if fileno is None or not hasattr(os, "splice"):
        return None
    try:
        fd = int(fileno())
        return fd if stat.S_ISFIFO(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None  # no descriptor of its own (decompressed in this process)


class Sync(threading.Thread):
    """fsync a file on a thread of its own, while the integrity check reads it."""

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True)
        self.fd = fd
        self.error: OSError | None = None
        self.start()

    def run(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            self.error = exc

    def wait(self, folder: Path) -> None:
        self.join()
        if self.error is not None:
            raise disk_error(self.error, folder)


def check(copy: Scratch) -> None:
    """Raise ArchiveError unless the file passes ``PRAGMA integrity_check``."""
    try:
        # immutable: read as it is, no locks, no -wal or -shm opened beside it.
        with contextlib.closing(copy.connect("ro", immutable=True)) as conn:
            result = conn.execute("PRAGMA integrity_check").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ArchiveError(f"the archive is not a usable SQLite database: {exc}") from None
    if not result or result[0] != "ok":
        raise ArchiveError(f"the archive fails PRAGMA integrity_check: {result}")


def disk_error(exc: OSError, folder: Path) -> ArchiveError:
    """Say in one line why a file could not be written in ``folder``."""
    if exc.errno == errno.ENOSPC:
        return ArchiveError(f"no space left on the device of {folder}", "free space there")
    return ArchiveError(f"cannot write in {folder}: {exc.strerror or exc}", "check the folder")
