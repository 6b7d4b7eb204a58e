"""Files where others may write: created exclusively, never through a symlink, fixed modes, durable.

Every file opskit makes in a backup folder, a log folder or beside an SQLite database goes
through here: ``O_CREAT|O_EXCL|O_NOFOLLOW``, so a name planted by someone else (a symlink to
/etc/shadow, a hard link, a file of theirs) is never written through; the mode is set with
``fchmod`` so the umask cannot widen or narrow it. Folders opskit did not create are used as
they are and never chmodded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from opskit import signals
from opskit.errors import OpsError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFile(OpsError):
    """A name opskit must write is held by something it did not create (a symlink, a link)."""


def create(path: Path, mode: int = 0o600) -> int:
    """Create ``path`` (which must not exist) for writing; return its descriptor.

    Raises FileExistsError if anything is there, a symlink included.
    """
    fd = os.open(path, _CREATE, mode)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def temp_name(final: Path) -> Path:
    """Return a fresh temporary name beside ``final``: ``.<name>.tmp-<pid>-<random>``.

    The pid lets a later run tell a dead writer's leftovers from a live one's; the random
    part makes the name impossible to plant in advance.
    """
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def create_temp(final: Path, mode: int = 0o600) -> tuple[Path, int]:
    """Create a new temporary file beside ``final``; return its path and descriptor."""
    for _ in range(8):
        path = temp_name(final)
        try:
            return path, create(path, mode)
        except FileExistsError:
            continue
    raise UnsafeFile(
        f"cannot create a temporary file beside {final}: every name tried exists",
        f"check who writes in {final.parent}",
    )


@contextlib.contextmanager
def temp_file(final: Path, mode: int = 0o600) -> Iterator[tuple[Path, IO[bytes]]]:
    """A new temp file beside ``final``, open for writing: fsynced and kept when the block
    ends, removed when it raises. A signal at any instant (even while the file is being
    created) removes it too: its exception is held until the name is known."""
    path: Path | None = None
    try:
        with signals.deferred():
            path, fd = create_temp(final, mode)
        with os.fdopen(fd, "wb") as fh:
            yield path, fh
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        if path is not None:
            path.unlink(missing_ok=True)
        raise


def fsync(path: Path) -> None:
    """fsync a file's content, or a folder's entries (so that renames in it survive a crash)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` over ``final`` and fsync the folder so the rename survives a crash."""
    os.replace(tmp, final)
    fsync(final.parent)


def write_atomic(final: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``final`` all or nothing: exclusive temp file, fsync, rename, fsync."""
    with temp_file(final, mode) as (tmp, fh):
        fh.write(data)
    try:
        commit(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def make_dirs(folder: Path, mode: int = 0o700) -> list[Path]:
    """Create ``folder`` and its missing parents with ``mode`` whatever the umask.

    Returns the folders created; existing ones (and symlinks to folders) are left as they are.
    """
    missing: list[Path] = []
    probe = folder
    while not probe.exists() and not probe.is_symlink():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    created = []
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs, so not ours to chmod
        os.chmod(path, mode, follow_symlinks=False)
        created.append(path)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    return created


def writable_by_others(folder: Path) -> str:
    """Say who else can write ``folder`` ("" when only its owner can), for a warning."""
    try:
        st = folder.stat()
    except OSError:
        return ""
    if st.st_mode & stat.S_IWOTH and not st.st_mode & stat.S_ISVTX:
        return "anyone"
    if st.st_mode & stat.S_IWGRP and st.st_uid == os.geteuid():
        return "its group"
    if st.st_uid != os.geteuid() and st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "its owner and group"
    return ""


def open_lock(path: Path) -> int:
    """Open (or create) a lock file; refuse one that is not a plain file of ours."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise UnsafeFile(
            f"{path} is not a lock file opskit made (a symlink)",
            "remove it and check who else writes in that folder",
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != os.geteuid():
            raise UnsafeFile(
                f"{path} is not a lock file opskit made (a link, or another user's file)",
                "remove it and check who else writes in that folder",
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_append(path: Path, mode: int = 0o640) -> int:
    """Open a log file for appending, never through a symlink; a new one gets ``mode``."""
    try:
        return create(path, mode) if not path.exists() else _append(path)
    except FileExistsError:  # created meanwhile by another run
        return _append(path)


def _append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)


def is_own_regular(path: Path) -> bool:
    """Whether ``path`` is a plain file (not a symlink) owned by this user."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()


@contextlib.contextmanager
def removing(path: Path) -> Iterator[Path]:
    """Yield ``path`` and delete it (not what a symlink there points to) on the way out."""
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
