"""Secrets for a child: the environment it gets, and 0600 files in private folders."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from opskit.proc.spawn import pid_alive


def child_env(extra: Mapping[str, str], drop: Iterable[str] = ()) -> dict[str, str]:
    """Return this process's environment with ``extra`` set and ``drop`` removed."""
    env = {k: v for k, v in os.environ.items() if k not in set(drop)}
    env.update(extra)
    # Tools' messages are parsed and shown to humans; keep them in one language.
    env.setdefault("LC_MESSAGES", "C")
    return env


@contextlib.contextmanager
def secret_file(content: str, prefix: str = "opskit-") -> Iterator[Path]:
    """Write ``content`` to a 0600 file in a private 0700 folder and remove both afterwards."""
    # The pid in the name lets a later run remove it if this process is SIGKILLed.
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-"))
    path = folder / "credentials"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def sweep_secret_dirs(root: Path | None = None) -> list[Path]:
    """Remove credential folders left by opskit processes that were killed."""
    root = root or Path(tempfile.gettempdir())
    removed = []
    for folder in root.glob("opskit-*-*"):
        match = re.match(r"opskit-(?:pg|my)-(\d+)-", folder.name)
        if not match or not folder.is_dir() or pid_alive(int(match.group(1))):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed
