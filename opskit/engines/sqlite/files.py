"""SQLite's files: a URI for any path, opskit's own files beside a database, stale ones swept.

Everything opskit writes next to a database is created by ``opskit.files`` (O_EXCL|O_NOFOLLOW,
0600, a random name) and kept open. SQLite itself opens files by name, so after each
connection opskit checks that the name still led to the file it created (another process
could have swapped it for a symlink in a folder others write). SQLite opens its own
-journal, -wal and -shm files with O_NOFOLLOW; opskit's copies need none of them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

from opskit import files
from opskit.files import UnsafeFile
from opskit.proc import pid_alive

AUX = ("-journal", "-wal", "-shm")
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# Header bytes 18-19, the file format's write and read versions: 1 rollback journal, 2 WAL.
_FORMAT = 18
_ROLLBACK, _WAL = b"\x01\x01", b"\x02\x02"


def uri(path: Path, mode: str, *, immutable: bool = False) -> str:
    """Return a ``file:`` URI for exactly ``path``: every byte that is not a letter, a digit or
    one of ``/_.-~`` is percent-encoded, so ``?``, ``#``, ``%`` and spaces stay in the name."""
    absolute = quote(os.fsencode(os.path.abspath(path)), safe="/")
    return f"file://{absolute}?mode={mode}" + ("&immutable=1" if immutable else "")


def connect(path: Path, mode: str = "ro", *, immutable: bool = False) -> sqlite3.Connection:
    """Open ``path`` (``ro``, ``rw`` which never creates it, ``rwc``); transactions are ours."""
    return sqlite3.connect(
        uri(path, mode, immutable=immutable), uri=True, timeout=30, isolation_level=None
    )


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def open_elsewhere(fd: int) -> bool | None:
    """Whether another descriptor of this process is on ``fd``'s file (None: cannot tell)."""
    mine = os.fstat(fd)
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in names:
        other = int(name)
        if other == fd:
            continue
        with contextlib.suppress(OSError):
            if same_file(os.fstat(other), mine):
                return True
    return False


class Scratch:
    """A new 0600 file of opskit's beside ``final`` (``.<name>.tmp-<pid>-<hex>``), held open."""

    def __init__(self, final: Path) -> None:
        self.path, self.fd = files.create_temp(final)
        self.renamed = False

    def connect(self, mode: str, *, immutable: bool = False) -> sqlite3.Connection:
        """Open the file with SQLite, refusing a name that no longer leads to it."""
        conn = connect(self.path, mode, immutable=immutable)
        if open_elsewhere(self.fd) is False:
            conn.close()
            raise self._swapped()
        return conn

    def reader(self) -> IO[bytes]:
        """Open the file for reading (by name, checked to be the same file)."""
        fd = os.open(self.path, _READ)
        if not same_file(os.fstat(fd), os.fstat(self.fd)):
            os.close(fd)
            raise self._swapped()
        return os.fdopen(fd, "rb")

    def check_name(self) -> None:
        """Raise unless the name still holds this very file (before it is renamed)."""
        if not same_file(os.lstat(self.path), os.fstat(self.fd)):
            raise self._swapped()

    def format_version(self) -> bytes:
        with self.reader() as fh:
            return os.pread(fh.fileno(), 2, _FORMAT)

    def set_format_version(self, value: bytes) -> None:
        os.pwrite(self.fd, value, _FORMAT)

    @contextlib.contextmanager
    def without_wal(self) -> Iterator[None]:
        """Mark a WAL-mode copy as rollback-journal for the block, so that writing to it or
        reading it opens no -wal or -shm file beside it; its own mark comes back after."""
        version = self.format_version()
        if version == _WAL:
            self.set_format_version(_ROLLBACK)
        yield
        if version == _WAL:
            self.set_format_version(_WAL)

    def remove(self) -> None:
        """Close and delete the file (unless renamed into place) and any journal of ours."""
        os.close(self.fd)
        if not self.renamed:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        for suffix in AUX:
            aux = self.path.with_name(self.path.name + suffix)
            if files.is_own_regular(aux):
                aux.unlink(missing_ok=True)

    def _swapped(self) -> UnsafeFile:
        return UnsafeFile(
            f"{self.path} was replaced by another file while opskit used it",
            f"check who else writes in {self.path.parent}",
        )

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def stale_pattern(db_file: Path) -> re.Pattern[str]:
    """The names opskit gives its files beside ``db_file`` (and the journals SQLite adds)."""
    return re.compile(
        rf"^\.{re.escape(db_file.name)}\.tmp-(\d+)(?:-[0-9a-f]+)?(?:-journal|-wal|-shm)?$"
    )


def stale(db_file: Path) -> list[Path]:
    """Return opskit's files beside ``db_file`` that a process now gone left behind."""
    pattern = stale_pattern(db_file)
    found: list[Path] = []
    try:
        entries = list(os.scandir(db_file.parent))
    except OSError:
        return found
    for entry in entries:
        match = pattern.match(entry.name)
        if not match:
            continue
        pid = int(match.group(1))
        path = Path(entry.path)
        # Only dead writers' files, and only plain files of ours (not what others planted).
        if pid != os.getpid() and not pid_alive(pid) and files.is_own_regular(path):
            found.append(path)
    return found


def sweep_stale(db_file: Path) -> list[Path]:
    """Delete opskit's files beside ``db_file`` that a process now gone left behind."""
    removed = stale(db_file)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
