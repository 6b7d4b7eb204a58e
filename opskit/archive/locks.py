"""One flock per job and database, so two runs never write the same slot at once."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from opskit import files
from opskit.errors import OpsError


class LockBusy(OpsError):
    """Another run holds the lock."""


def lock_path(folder: Path, job: str) -> Path:
    return folder / f".opskit-{job}.lock"


def _holder(path: Path, what: str) -> str:
    """Say who holds the lock, from the pid and job its holder wrote into the file."""
    try:
        pid, _, job = path.read_text(encoding="utf-8").strip().partition(" ")
    except OSError:
        return f"another {what} is running (pid unknown)"
    pid = pid if pid.isdigit() else "unknown"
    return f"another {job or what} is running (pid {pid})"


@contextlib.contextmanager
def hold(
    path: Path,
    *,
    what: str,
    wait: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Hold an exclusive flock on ``path``; the kernel drops it if this process dies."""
    fd = files.open_lock(path)
    try:
        deadline = clock() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= deadline:
                    waited = f" after waiting {wait:g} s" if wait else ""
                    raise LockBusy(
                        f"{_holder(path, what)}{waited}",
                        "let it finish, or pass --lock-wait SECONDS to wait for it",
                    ) from None
                sleep(min(0.2, max(0.0, deadline - clock())))
        # The pid is for the message a second run shows; the flock itself is the lock.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {what}\n".encode())
        yield
    finally:
        os.close(fd)
