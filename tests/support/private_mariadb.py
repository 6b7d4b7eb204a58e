"""A MariaDB server of a test's own, to restart, kill or reconfigure (never the shared one)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support.services import unavailable
from support.waiting import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateMariaDB:
    """mariadb-install-db into a temp folder, then mariadbd on a free port and socket."""

    def __init__(self, *options: str) -> None:
        for tool in ("mariadb-install-db", "mariadbd", "mariadb"):
            if not shutil.which(tool):
                unavailable(f"{tool} (for a private MariaDB server)")
        if os.geteuid() != 0:
            unavailable("root (a private MariaDB server runs as --user=root here)")
        self.folder = Path(tempfile.mkdtemp(prefix="opskit-mariadb-"))
        self.data = self.folder / "data"
        self.socket = self.folder / "s"
        self.port = _free_port()
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> dict[str, Any]:
        """Connection settings for tests/support/mysql_state helpers."""
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "password": ""}

    def install(self) -> None:
        done = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--user=root",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode:
            raise RuntimeError(f"mariadb-install-db failed: {done.stdout}{done.stderr}")

    def start(self, *extra: str) -> None:
        log = (self.folder / "err.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.socket}",
                "--user=root",
                f"--pid-file={self.folder / 'pid'}",
                "--innodb-buffer-pool-size=64M",
                "--skip-log-bin",
                *self.options,
                *extra,
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        wait_for(self._up, "the private MariaDB to start", 60, every=0.05)

    def _up(self) -> bool:
        assert self.proc is not None, "waited for before it was started"
        if self.proc.poll() is not None:
            raise RuntimeError((self.folder / "err.log").read_text()[-2000:])
        return self.ready()

    def ready(self) -> bool:
        done = subprocess.run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", "SELECT 1"],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the clients can tell."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def private_mariadb(*options: str) -> Iterator[PrivateMariaDB]:
    """A started private server, always stopped and deleted afterwards."""
    made = PrivateMariaDB(*options)
    try:
        made.install()
        made.start()
        yield made
    finally:
        made.remove()
