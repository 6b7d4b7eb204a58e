"""Put a checked SQLite file in the place of the live one: by rename when no process has it
open, else by SQLite's backup API inside the live file.

Why not always rename: a rename leaves every process that has the old file open on the old
inode (a Django worker with a persistent connection would go on reading the old data), and
the -journal or -wal beside the name belong to the old file: a hot journal, or WAL frames,
would be applied to the new one and corrupt it. Why not always copy in place: the backup
API journals every old page before it overwrites it and syncs twice, several times the cost
of the decompression itself.

So the rename is taken only when it is provably safe, under a Linux write lease (fcntl
F_SETLEASE) on the live file: the kernel grants it only while no other descriptor of the
file is open anywhere (no connection, so no transaction and nobody to leave behind), and
any open() that comes in meanwhile blocks and breaks the lease, which is checked before and
after the rename. No hot journal and no WAL with frames may lie beside the name. The new
file gets the old one's owner, group, mode and extended attributes (ACLs, SELinux label).
When any of this cannot be had (the site holds the file open, another user's file, a
filesystem without leases), the page-by-page copy keeps SQLite's own locking and journal:
slower, and safe for every process that has the file open.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from opskit import files
from opskit.engines.sqlite.files import Scratch

# After a rename every one of these names would speak for the new file.
_DANGEROUS = ("-journal", "-wal")
_POLL = 0.02


def rename_over(scratch: Scratch, target: Path, wait: float) -> tuple[bool, str]:
    """Rename ``scratch`` over ``target`` if that is safe; say what was done or why not.

    Returns (True, "") when renamed, (True, note) when renamed but a process opened the old
    file at that very moment (it may see the old data), (False, reason) when not renamed.
    """
    setlease = getattr(fcntl, "F_SETLEASE", None)
    if setlease is None:
        return False, "this system has no file leases"
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        return False, f"cannot open it: {exc.strerror}"
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or before.st_nlink != 1:
            return False, "it is not a plain file with one name"
        with _leased(fd, wait) as reason:
            if reason:
                return False, reason
            leftover = _leftovers(target)
            if leftover:
                return False, f"{leftover} lies beside it"
            try:
                _copy_identity(before, target, scratch.fd)
            except OSError as exc:
                _own_again(scratch.fd)
                return False, f"the new file cannot get its owner, mode or attributes: {exc}"
            if _broken(fd):
                _own_again(scratch.fd)
                return False, "a process opened it"
            scratch.check_name()
            os.rename(scratch.path, target)
            scratch.renamed = True
            files.fsync(target.parent)
            if _broken(fd):
                return True, (
                    f"a process opened {target} while it was replaced and may still see the"
                    " previous data: restart the site's processes"
                )
        return True, ""
    finally:
        os.close(fd)


@contextlib.contextmanager
def _leased(fd: int, wait: float) -> Iterator[str]:
    """Hold a write lease on ``fd`` for the block (yield ""), or yield why there is none."""
    # A lease break signals the holder (SIGIO, which would kill us): SIGURG is ignored.
    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
            break
        except OSError as exc:
            if exc.errno == errno.EAGAIN and time.monotonic() < deadline:
                time.sleep(_POLL)
                continue
            if exc.errno == errno.EAGAIN:
                yield "another process has it open"
            elif exc.errno == errno.EACCES:
                yield "this user may not lease it (not its owner)"
            else:
                yield f"its filesystem gives no leases ({exc.strerror})"
            return
    try:
        yield ""
    finally:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)


def _broken(fd: int) -> bool:
    """Whether an open() of the leased file is under way (the lease is being broken)."""
    return bool(fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_WRLCK)


def _leftovers(target: Path) -> str:
    """Name a journal beside ``target`` that SQLite would apply to whatever file is there."""
    for suffix in _DANGEROUS:
        path = target.with_name(target.name + suffix)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            return path.name
        if st.st_size and (suffix == "-wal" or _first_byte(path) != b"\x00"):
            # A truncated or zeroed journal (TRUNCATE, PERSIST modes) is not hot.
            return path.name
    return ""


def _first_byte(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        return os.pread(fd, 1, 0)
    finally:
        os.close(fd)


def _copy_identity(old: os.stat_result, target: Path, fd: int) -> None:
    """Give the new file the old one's owner, group, mode and extended attributes."""
    if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
        os.fchown(fd, old.st_uid, old.st_gid)
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    if not hasattr(os, "listxattr"):
        return
    try:
        names = os.listxattr(target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return  # a filesystem without attributes: there are none to keep
        raise
    for name in names:
        os.setxattr(fd, name, os.getxattr(target, name, follow_symlinks=False))


def _own_again(fd: int) -> None:
    """Make a scratch file that stays a scratch file ours alone again."""
    with contextlib.suppress(OSError):
        os.fchmod(fd, 0o600)
        os.fchown(fd, os.geteuid(), os.getegid())


def leftovers_beside(target: Path) -> str:
    """For a target that does not exist: a journal there would be applied to the new file."""
    return _leftovers(target)
