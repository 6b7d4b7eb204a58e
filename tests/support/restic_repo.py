"""Real restic repositories for tests: a local folder, its password file, and restic itself."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from support.services import need_tools
from support.waiting import wait_for

from opskit.config import Config
from opskit.offsite.settings import parse


def need_restic() -> None:
    need_tools("restic")


@dataclasses.dataclass
class Repo:
    """A restic repository and the settings that reach it."""

    repository: str
    password_file: Path
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    options: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()

    def settings(self, **more: Any) -> dict[str, Any]:
        found: dict[str, Any] = {
            "repository": self.repository,
            "password_file": str(self.password_file),
        }
        if self.env:
            found["env"] = dict(self.env)
        if self.options:
            found["options"] = dict(self.options)
        found.update(more)
        return found

    def restic(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **self.env,
            "RESTIC_REPOSITORY": self.repository,
            "RESTIC_PASSWORD_FILE": str(self.password_file),
        }
        argv = ["restic", *(a for k, v in self.options.items() for a in ("-o", f"{k}={v}"))]
        return subprocess.run(
            [*argv, *args], env=env, capture_output=True, text=True, check=check, timeout=300
        )

    def read(self, *args: str) -> bytes:
        """restic's stdout as bytes (``dump``)."""
        env = {
            **os.environ,
            **self.env,
            "RESTIC_REPOSITORY": self.repository,
            "RESTIC_PASSWORD_FILE": str(self.password_file),
        }
        argv = ["restic", *(a for k, v in self.options.items() for a in ("-o", f"{k}={v}"))]
        done = subprocess.run([*argv, *args], env=env, capture_output=True, check=True, timeout=300)
        return done.stdout

    def init(self) -> Repo:
        self.restic("init")
        return self

    def snapshots(self, *args: str) -> list[dict[str, Any]]:
        import json

        out = self.restic("snapshots", "--json", *args).stdout
        return list(json.loads(out or "[]"))


def password_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "restic.pass"
    path.write_text(f"pw-{secrets.token_hex(12)}\n")
    path.chmod(0o600)
    return path


def local_repo(tmp_path: Path) -> Repo:
    need_restic()
    return Repo(str(tmp_path / "restic-repo"), password_file(tmp_path / "secrets")).init()


def with_offsite(
    config: Config, *settings: dict[str, Any], media_root: Path | None = None
) -> Config:
    value: Any = settings[0] if len(settings) == 1 else list(settings)
    dests = parse(value, project_dir=config.project_dir, media_root=media_root)
    return dataclasses.replace(config, offsite=dests)


def plant_stale_lock(repo: Repo) -> None:
    """Leave an exclusive lock of a dead process: SIGKILL a ``restic prune`` holding it.

    The kill races restic's writing of the lock, and a torn lock file is no lock to restic:
    the lock left is read back with ``restic cat lock`` and planted again until it is whole.
    """
    env = {
        **os.environ,
        "RESTIC_REPOSITORY": repo.repository,
        "RESTIC_PASSWORD_FILE": str(repo.password_file),
    }
    locks = Path(repo.repository) / "locks"
    for _ in range(5):
        _kill_prune_holding_its_lock(env, locks)
        if any(_is_exclusive_lock(env, lock.name) for lock in locks.iterdir()):
            return
        for lock in locks.iterdir():
            lock.unlink()
    raise AssertionError("restic prune left no readable exclusive lock in five tries")


def _kill_prune_holding_its_lock(env: dict[str, str], locks: Path) -> None:
    child = subprocess.Popen(
        ["restic", "--no-cache", "prune", "--dry-run"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sizes: list[int] = []

    def lock_whole() -> bool:
        # restic writes the lock file in place: kill only once its size held still for three
        # looks (or prune ended, which the assert says).
        with contextlib.suppress(FileNotFoundError):  # prune may end and remove it meanwhile
            sizes.append(sum(p.stat().st_size for p in locks.iterdir()))
        steady = len(sizes) > 2 and sizes[-1] == sizes[-2] == sizes[-3] > 0
        return steady or child.poll() is not None

    wait_for(lock_whole, "restic prune to write its lock", 20, every=0.01)
    child.kill()
    child.wait()
    assert any(locks.iterdir()), "restic prune took no lock (or finished first)"


def _is_exclusive_lock(env: dict[str, str], name: str) -> bool:
    shown = subprocess.run(
        ["restic", "--no-cache", "--no-lock", "cat", "lock", name],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return shown.returncode == 0 and '"exclusive": true' in shown.stdout
