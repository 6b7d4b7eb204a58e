"""Shared tools of the fault tests: folder states, processes in /proc, a private cluster, tmpfs."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import zstandard
from support.project import OPSKIT
from support.services import unavailable

from opskit.engines import DbParams

PG_BIN = Path("/usr/lib/postgresql/15/bin")
# A run's temp file, and what SQLite keeps beside one (-journal, -wal, -shm).
TEMP = re.compile(r"^\..+\.tmp-\d+(?:-[0-9a-f]+)?(-journal|-wal|-shm)?$")


# --- what a backup folder holds ----------------------------------------------------------------


def _is_lock(path: Path) -> bool:
    # The lock file holds the pid of the last run that took it: it changes by design.
    return path.name.startswith(".opskit-") and path.name.endswith(".lock")


def _is_temp(path: Path) -> bool:
    return TEMP.match(path.name) is not None


def state(folder: Path) -> dict[str, str]:
    """Every archive, manifest and link under ``folder``: sha256 of files, targets of links.

    Temp files of runs (checked on their own with ``temp_files``) and lock files are left out.
    """
    found: dict[str, str] = {}
    if not folder.exists():
        return found
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file() and not _is_lock(path) and not _is_temp(path):
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def temp_files(folder: Path) -> list[Path]:
    """Temp files of runs (``.<name>.tmp-<pid>``) anywhere under ``folder``."""
    return sorted(p for p in folder.rglob(".*") if _is_temp(p)) if folder.exists() else []


def size_of(path: Path) -> int:
    """A file's size, 0 if it is gone."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _decompressed_size(path: Path, compression: str) -> int:
    total = 0
    with path.open("rb") as raw:
        reader: io.BufferedIOBase | zstandard.ZstdDecompressionReader
        if compression == "zstd":
            reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        elif compression == "gzip":
            reader = gzip.GzipFile(fileobj=raw)
        else:
            reader = raw
        while chunk := reader.read(1 << 20):
            total += len(chunk)
    return total


def assert_archives_verify(folder: Path) -> int:
    """Check every archive under ``folder`` against its manifest, independently of opskit."""
    count = 0
    for manifest_path in sorted(folder.rglob("*.json")):
        if manifest_path.name.startswith(".opskit-"):
            continue  # the folder's owner record and the restore journal are not manifests
        archive = manifest_path.with_name(manifest_path.name[: -len(".json")])
        manifest = json.loads(manifest_path.read_text())
        data = archive.read_bytes()
        assert len(data) == manifest["size"], archive
        assert hashlib.sha256(data).hexdigest() == manifest["sha256"], archive
        assert _decompressed_size(archive, manifest["compression"]) == manifest["raw_size"]
        count += 1
    for link in folder.rglob("latest.*"):
        assert link.is_symlink(), f"{link} points nowhere"
        assert link.resolve().is_file(), f"{link} points nowhere"
    return count


def archive_of(folder: Path) -> Path:
    """The archive ``latest`` points at, in a database's backup folder."""
    (link,) = [p for p in folder.iterdir() if p.name.startswith("latest.")]
    return link.resolve()


# --- processes ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    state: str
    argv: tuple[str, ...]


def processes() -> list[ProcInfo]:
    """Every process in /proc (entries that vanish while read are skipped)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat_line = fh.read()
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        comm = stat_line[stat_line.index("(") + 1 : stat_line.rindex(")")]
        fields = stat_line[stat_line.rindex(")") + 2 :].split()
        argv = tuple(a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0") if a)
        found.append(ProcInfo(int(entry.name), int(fields[1]), comm, fields[0], argv))
    return found


def children(pid: int, comm: str | None = None) -> list[ProcInfo]:
    """Living child processes of ``pid`` (optionally only those named ``comm``)."""
    return [
        p
        for p in processes()
        if p.ppid == pid and p.state != "Z" and (comm is None or p.comm == comm)
    ]


def environ_of(pid: int) -> dict[str, str]:
    """A process's environment ({} once it is gone)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            raw = fh.read()
    except OSError:
        return {}
    pairs = (item.decode("utf-8", "replace").partition("=") for item in raw.split(b"\0"))
    return {key: value for key, sep, value in pairs if sep}


def started_with(key: str, value: str) -> list[ProcInfo]:
    """Living processes whose environment has ``key=value`` (a run's children inherit it)."""
    return [p for p in processes() if p.state != "Z" and environ_of(p.pid).get(key) == value]


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat_line = fh.read()
    except OSError:
        return False
    return stat_line[stat_line.rindex(")") + 2] != "Z"


def holds_open(pid: int, path: Path) -> bool:
    """True if process ``pid`` has ``path`` open."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
    return False


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Django's settings variable or any OPSKIT_* setting."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DJANGO_SETTINGS_MODULE" and not k.startswith("OPSKIT_")
    }
    return {**env, **extra}


@dataclasses.dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


class Run:
    """A real ``opskit`` process, started now; its output goes to files (no pipe to fill)."""

    def __init__(self, *args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> None:
        # Closed in finish(): the files outlive this call.
        self.out = tempfile.TemporaryFile()  # noqa: SIM115
        self.err = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(OPSKIT), *map(str, args)],
            cwd=cwd,
            env=env if env is not None else clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=self.out,
            stderr=self.err,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signum)

    def finish(self, timeout: float = 120) -> Finished:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        texts = []
        for fh in (self.out, self.err):
            fh.seek(0)
            texts.append(fh.read().decode("utf-8", "replace"))
            fh.close()
        return Finished(code, *texts)

    def stop(self) -> None:
        """Kill it if it still runs (test teardown)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- a private PostgreSQL cluster --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A PostgreSQL 15 cluster of our own (initdb as user postgres) that we may stop and break."""

    def __init__(self, auth: str = "trust") -> None:
        if os.geteuid() != 0 or not shutil.which("runuser") or not (PG_BIN / "initdb").exists():
            unavailable("a private PostgreSQL cluster (root, runuser and PostgreSQL 15's initdb)")
        # Not under pytest's tmp_path: the postgres user must be able to enter the folder.
        self.folder = Path(tempfile.mkdtemp(prefix="faults-pgcluster-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.auth = auth
        self.running = False

    def create(self) -> None:
        """Run initdb: the superuser postgres, trusted on the socket; TCP by ``auth``."""
        self._as_postgres(
            PG_BIN / "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth-local=trust",  # the test's own admin connections use the socket
            f"--auth-host={self.auth}",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def _as_postgres(self, *argv: str | Path) -> str:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, argv)],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            cwd=self.folder,
        )
        if done.returncode:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr}{done.stdout}")
        return done.stdout

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses={self.host}"
            " -c fsync=off -c full_page_writes=off"
        )
        self._as_postgres(
            PG_BIN / "pg_ctl",
            "-D",
            self.data,
            "-o",
            options,
            "-l",
            self.folder / "log",
            "-w",
            "-t",
            "30",
            "start",
        )
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
            self.running = False

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def sql(self, sql: str, db: str = "postgres") -> str:
        """Run SQL as the superuser over the Unix socket (trust), SQL on stdin: never on argv."""
        done = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db],
            input=sql,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            env={
                **os.environ,
                "PGHOST": str(self.folder),
                "PGPORT": str(self.port),
                "PGUSER": "postgres",
            },
        )
        if done.returncode:
            raise RuntimeError(done.stderr)
        return done.stdout.strip()

    def params(self, name: str, user: str = "postgres", password: str = "") -> DbParams:
        return DbParams(
            alias="default",
            django_engine="django.db.backends.postgresql",
            name=name,
            user=user,
            password=password,
            host=self.host,
            port=str(self.port),
        )


@contextlib.contextmanager
def cluster(auth: str = "trust") -> Iterator[Cluster]:
    """A started private cluster, always stopped and deleted afterwards."""
    made = Cluster(auth)
    try:
        made.create()
        made.start()
        yield made
    finally:
        made.remove()


# --- a small disk --------------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``folder`` (root only); unmounted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        unavailable(f"mounting a tmpfs ({done.stderr.strip() or 'mount failed'})")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], check=False).returncode:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` until only about ``leave`` bytes are free."""
    ballast = folder / "ballast.bin"
    free = shutil.disk_usage(folder).free
    ballast.write_bytes(b"\0" * max(0, free - leave))
    return ballast


def sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def step_failures(stderr: str) -> list[str]:
    """The ``step_failed`` lines of a run's stderr, with the key=value quoting undone."""
    return [line.replace('\\"', '"') for line in stderr.splitlines() if "event=step_failed" in line]


# --- a database a restore takes a moment over --------------------------------------------------


def add_big_sqlite_table(path: str, rows: int = 150_000) -> None:
    """A ``big`` table of random 600-character rows in SQLite file ``path``: a restore of it
    takes a moment."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, t TEXT NOT NULL)")
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?)"
            " INSERT INTO big SELECT x, hex(randomblob(300)) FROM n",
            (rows,),
        )
    conn.close()
