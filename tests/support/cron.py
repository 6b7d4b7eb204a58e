"""What the cron tests stand on: a fake /proc (the daemon check reads nothing else), a cron.d
folder of the test's own, and throwaway system users whose crontabs they may edit."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from support.services import unavailable


def fake_proc(folder: Path, *names: str) -> Path:
    """A /proc holding processes with these names (after init)."""
    for pid, name in enumerate(("init", *names), 1):
        (folder / str(pid)).mkdir(parents=True)
        (folder / str(pid) / "comm").write_text(f"{name}\n")
    return folder


def cron_env(folder: Path) -> dict[str, str]:
    """opskit's environment with a running cron daemon (a fake /proc under ``folder``) and the
    cron.d files in ``folder / "cron.d"``."""
    (folder / "cron.d").mkdir()
    return {
        "OPSKIT_TEST_PROC_DIR": str(fake_proc(folder / "proc", "cron")),
        "OPSKIT_CRON_D_DIR": str(folder / "cron.d"),
    }


@contextlib.contextmanager
def throwaway_user(prefix: str, *programs: str, shell: str = "") -> Iterator[str]:
    """A system user with no home (never the developer's own), removed with its crontab
    afterwards; ``programs`` are what the test needs besides useradd, userdel and crontab."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    missing = [
        p for p in ("useradd", "userdel", "crontab", *programs) if not shutil.which(p, path=path)
    ]
    if missing:
        unavailable(f"{', '.join(missing)} (for a throwaway user)")
    if os.geteuid() != 0:
        unavailable("root (for useradd and crontab -u)")
    useradd, userdel = shutil.which("useradd", path=path), shutil.which("userdel", path=path)
    assert useradd is not None
    assert userdel is not None
    name = f"{prefix}-{secrets.token_hex(4)}"
    subprocess.run(
        [useradd, "--no-create-home", *(["--shell", shell] if shell else []), name],
        check=True,
        capture_output=True,
    )
    try:
        yield name
    finally:
        # userdel leaves the spool file behind, so drop the crontab first.
        subprocess.run(["crontab", "-r", "-u", name], capture_output=True, check=False)
        subprocess.run([userdel, name], check=True, capture_output=True)
