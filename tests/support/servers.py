"""Real servers for the off-site tests: OpenSSH's sshd and moto's S3, each on a free port."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from support.restic_repo import Repo, need_restic, password_file
from support.services import unavailable
from support.waiting import wait_for

SSHD = Path("/usr/sbin/sshd")


def _missing(what: str) -> None:
    unavailable(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    wait_for(listening, f"{what} to listen on {port}", 20, every=0.05)


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (sshd's per-connection children start sessions of their own)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        todo += kids
    return found


class Sshd:
    """``sshd -D`` on 127.0.0.1 with its own config, host key and one throwaway client key.

    It logs in the current user with that key only, to SFTP only (ForceCommand internal-sftp).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.user = pwd.getpwuid(os.getuid()).pw_name
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(folder / "host_key")], check=True)
        subprocess.run([*keygen, "-f", str(folder / "client_key")], check=True)
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        (folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
            f"PidFile {folder / 'sshd.pid'}\nAuthorizedKeysFile {folder / 'authorized_keys'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\n"
            f"UsePAM no\nAllowUsers {self.user}\nSubsystem sftp internal-sftp\n"
            "ForceCommand internal-sftp\nLogLevel ERROR\n"
        )

    def start(self) -> Sshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-p", str(self.port), "-f", str(self.folder / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=(self.folder / "sshd.log").open("ab"),
        )
        _wait_port(self.port, self.proc, "sshd")
        return self

    def stop(self) -> None:
        """Stop sshd and every connection it serves (as a crash or a cut cable would)."""
        if self.proc is None:
            return
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def sftp_command(self) -> str:
        return (
            f"ssh -p {self.port} -i {self.folder / 'client_key'} -o BatchMode=yes"
            " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
            f" {self.user}@127.0.0.1 -s sftp"
        )

    def repo(self, folder: Path, secrets: Path) -> Repo:
        return Repo(
            f"sftp:{self.user}@127.0.0.1:{folder}",
            password_file(secrets),
            options={"sftp.command": self.sftp_command()},
        )


@contextlib.contextmanager
def running_sshd(tmp_path: Path) -> Iterator[Sshd]:
    need_restic()
    if not SSHD.exists() or shutil.which("ssh") is None:
        _missing("OpenSSH server and client")
    server = Sshd(tmp_path / "sshd").start()
    try:
        yield server
    finally:
        server.stop()


class S3:
    """moto's S3 in server mode on 127.0.0.1, and throwaway credentials for it."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.key = "AKIA" + os.urandom(8).hex().upper()
        self.secret = "s3-secret-" + os.urandom(16).hex()
        server = Path(sys.executable).with_name("moto_server")
        if not server.exists():
            _missing("moto_server (pip install 'moto[server]')")
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "moto.log").open("ab"),
        )
        _wait_port(self.port, self.proc, "moto_server")

    def repo(self, bucket: str, secrets: Path) -> Repo:
        return Repo(
            f"s3:http://127.0.0.1:{self.port}/{bucket}",
            password_file(secrets),
            env={"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret},
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextlib.contextmanager
def running_s3(tmp_path: Path) -> Iterator[S3]:
    need_restic()
    server = S3(tmp_path / "moto")
    try:
        yield server
    finally:
        server.stop()


class CmdlineSampler:
    """Read every process's argv from /proc, over and over, on a thread, while a push runs."""

    def __init__(self) -> None:
        import threading

        self.seen: set[str] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    with contextlib.suppress(OSError):
                        raw = (entry / "cmdline").read_bytes()
                        if raw:
                            self.seen.add(raw.replace(b"\0", b" ").decode("utf-8", "replace"))
            self.rounds += 1

    def __enter__(self) -> CmdlineSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def restic_lines(self) -> list[str]:
        return [line for line in self.seen if line.startswith("restic ")]
