"""A PostgreSQL cluster of a test's own (initdb + pg_ctl on a free port), to restart or
stop mid-run; never the shared server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TypedDict

from support.services import unavailable

BIN = Path("/usr/lib/postgresql/15/bin")


class Server(TypedDict, total=False):
    """Where a cluster listens, as ``pg_state``'s helpers take it (``**server``); what is
    left out is the shared server's."""

    host: str
    port: str
    user: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """A throwaway cluster owned by the ``postgres`` user, trust auth, on 127.0.0.1."""

    def __init__(self, *options: str) -> None:
        if not (BIN / "initdb").exists():
            unavailable(f"{BIN}/initdb (for a private PostgreSQL cluster)")
        self.folder = Path(tempfile.mkdtemp(prefix="opskit-pg-"))
        os.chmod(self.folder, 0o755)
        self.data = self.folder / "data"
        self.port = _free_port()
        self.server = Server(host="127.0.0.1", port=str(self.port), user="postgres")
        self.options = " ".join(f"-c {o}" for o in options)

    def _as_postgres(self, *argv: str, timeout: float = 120) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(
            [*prefix, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr or done.stdout}")

    def start(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._as_postgres(
            str(BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--locale=C.UTF-8",
            "-E",
            "UTF8",
        )
        self._ctl("start")
        return self

    def _ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        opts += f" {self.options}"
        self._as_postgres(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "log"),
            "-o",
            opts,
            "-w",
            *extra,
            action,
        )

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
