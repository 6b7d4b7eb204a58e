"""The only module that runs programs: argv lists, no shell, secrets via env or 0600 files."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import os
import re
import select
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

from opskit import signals
from opskit.errors import CommandFailed, ToolNotFound
from opskit.redact import redact
from opskit.status import Status

_STDERR_KEEP = 8192


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


def pid_alive(pid: int) -> bool:
    """Tell whether a process with this pid exists (ours counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_DETAIL = re.compile(r"^(?:[\w.-]+: )?(?:DETAIL|HINT|LINE \d+|CONTEXT|detail|hint):", re.I)


def _last_line(text: str) -> str:
    """Return what a tool's stderr says went wrong: its error line and the detail lines after.

    pg_dump and psql put the server's reason on a "detail:" or "DETAIL:" line after the
    error ("invalid byte sequence ..."); without it the message names no cause.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for n, line in enumerate(lines):
        if re.search(r"error|fatal|denied|refused", line, re.I):
            details = []
            for more in lines[n + 1 : n + 4]:
                if not _DETAIL.match(more):
                    break
                details.append(more)
            return " | ".join([line, *details])
    return (lines or [""])[-1]


# A child that outlives a killed opskit could go on loading a database nobody watches.
_PR_SET_PDEATHSIG = 1
_prctl: Any
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    _prctl.argtypes = [ctypes.c_int, ctypes.c_ulong]
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def _die_with_parent() -> None:
    """In the child, before exec: be killed when opskit dies, even by SIGKILL."""
    parent = _PARENT[0]
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # opskit died before the line above took effect
        os._exit(1)


_PARENT = [os.getpid()]


def _preexec() -> Callable[[], None]:
    _PARENT[0] = os.getpid()
    return _die_with_parent


def run(
    argv: Sequence[str | Path],
    env: Mapping[str, str],
    *,
    what: str,
    secrets: Iterable[str] = (),
    stdin: bytes | None = None,
    timeout: float | None = 300,
) -> str:
    """Run a program to completion and return its stdout; a failure raises CommandFailed."""
    try:
        with signals.deferred():
            child = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                preexec_fn=_preexec(),  # only prctl(2) and getppid(2) run in the child
            )
    except FileNotFoundError:
        raise ToolNotFound(f"{argv[0]} not found", "install it or fix PATH") from None
    with child:
        try:
            out, err = child.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            msg = f"{what} did not finish in {timeout} s"
            raise CommandFailed(msg, "check the server") from None
        except BaseException:
            child.kill()
            raise
    if child.returncode != 0:
        detail = redact(_last_line(err.decode("utf-8", "replace")), secrets)
        raise CommandFailed(f"{what} failed (exit status {child.returncode}): {detail}")
    return out.decode("utf-8", "replace")


# Runs "$@" in the background with its output in files and its exit status written last;
# prints its pid. The sh itself exits at once, so the program is nobody's child to wait for.
_DETACH = (
    'out=$1 err=$2 rc=$3; shift 3; ( "$@" >"$out" 2>"$err" </dev/null; echo $? >"$rc.tmp";'
    ' mv -f "$rc.tmp" "$rc" ) </dev/null >/dev/null 2>&1 & echo $!'
)


def start_detached(
    argv: Sequence[str | Path], *, cwd: Path, out: Path, err: Path, status: Path
) -> int:
    """Start a program that outlives this process (e.g. a web worker that must not block).

    Its own session, no stdin; stdout and stderr go to ``out`` and ``err``, and its exit
    status to ``status`` once it ends. Returns its pid.
    """
    done = subprocess.run(
        ["/bin/sh", "-c", _DETACH, "sh", str(out), str(err), str(status), *map(str, argv)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise CommandFailed(f"cannot start {argv[0]}: {_last_line(done.stderr)}")
    return int(done.stdout.strip())


PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
_PIPE_SIZE = 1 << 20  # fewer, larger hand-overs between a dump and its compressor


def _widen(pipe: IO[bytes] | None) -> None:
    if pipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_SIZE)


class Child:
    """A running program whose stdin or stdout we stream and whose exit status we check."""

    def __init__(
        self,
        argv: Sequence[str | Path],
        env: Mapping[str, str],
        *,
        what: str,
        secrets: Iterable[str] = (),
        stdin: IO[bytes] | int | None = None,
        stdout: IO[bytes] | int | None = None,
    ) -> None:
        self.what = what
        self.secrets = tuple(secrets)
        self._stderr = bytearray()
        try:
            with signals.deferred():
                self.proc = subprocess.Popen(
                    [str(a) for a in argv],
                    stdin=stdin,
                    stdout=stdout,
                    stderr=subprocess.PIPE,
                    env=dict(env),
                    preexec_fn=_preexec(),  # only prctl(2) and getppid(2) run in the child
                )
        except FileNotFoundError:
            raise ToolNotFound(f"{argv[0]} not found", "install it or fix PATH") from None
        _widen(self.proc.stdout)
        _widen(self.proc.stdin)
        # Drain stderr on a thread so a chatty tool can never block on a full pipe.
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read(4096), b""):  # type: ignore[union-attr]
            self._stderr += chunk
            del self._stderr[:-_STDERR_KEEP]

    def stderr_text(self) -> str:
        return redact(bytes(self._stderr).decode("utf-8", "replace"), self.secrets)

    def wait(self) -> None:
        """Wait for the program; a non-zero exit or a signal raises CommandFailed."""
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        code = self.proc.wait()
        self._reader.join(timeout=5)
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            detail = _last_line(self.stderr_text())
            raise CommandFailed(f"{self.what} {how}" + (f": {detail}" if detail else ""))

    def failure(self, timeout: float) -> CommandFailed | None:
        """Wait up to ``timeout`` s for the program to end; return its failure if it failed."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        try:
            self.wait()
        except CommandFailed as exc:
            return exc
        return None

    def kill(self) -> None:
        """Stop the program now (used when the other end of the pipe failed)."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.wait()


@contextlib.contextmanager
def reading(
    argv: Sequence[str | Path], env: Mapping[str, str], *, what: str, secrets: Iterable[str] = ()
) -> Iterator[IO[bytes]]:
    """Run a program and yield its stdout; leaving the block checks its exit status."""
    child = Child(argv, env, what=what, secrets=secrets, stdout=subprocess.PIPE)
    try:
        yield _Interruptible(child.stdout)  # type: ignore[misc]
    except BaseException:
        child.kill()
        raise
    child.wait()


class _Interruptible:
    """Read a pipe so that a signal always interrupts a wait for data.

    A compressor in native code calls read() on the pipe directly: a signal that lands
    between two reads only sets a flag, and the next blocking read(2) would wait for the
    dump's next bytes (forever, for a dump waiting on a lock). select() on the pipe and
    the signal wake-up descriptor returns to Python, where the handler runs.
    """

    def __init__(self, pipe: IO[bytes]) -> None:
        self.pipe = pipe
        self.fd = pipe.fileno()

    def read(self, size: int = -1) -> bytes:
        wake = signals.wakeup_fd()
        size = size if size > 0 else 1 << 20
        while True:
            ready, _, _ = select.select([self.fd] + ([wake] if wake is not None else []), [], [])
            if self.fd in ready:
                return os.read(self.fd, size)
            signals.drain_wakeup()  # the handler runs (and raises) as this returns to Python

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        self.pipe.close()


def interruptible(pipe: IO[bytes]) -> IO[bytes]:
    """Wrap a pipe so that a signal interrupts a read that waits for data."""
    return _Interruptible(pipe)  # type: ignore[return-value]


@contextlib.contextmanager
def writing(
    argv: Sequence[str | Path], env: Mapping[str, str], *, what: str, secrets: Iterable[str] = ()
) -> Iterator[IO[bytes]]:
    """Run a program and yield its stdin; leaving the block closes it and checks the exit."""
    child = Child(
        argv, env, what=what, secrets=secrets, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        yield child.stdin
    except BrokenPipeError:
        # The program stopped reading: its own exit status and message say why.
        child.wait()
        raise CommandFailed(f"{child.what} stopped reading its input") from None
    except BaseException:
        child.kill()
        raise
    child.wait()


_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_DRAIN = 1.0  # after the program exits, how long a grandchild may keep its pipes open


@dataclasses.dataclass(frozen=True)
class Finished:
    """How a passed-through program ended, as a shell would report it."""

    status: int  # exit code, 128+signal, 124 timed out, 126/127 could not start
    tail: bytes  # the last bytes of its stdout and stderr, interleaved as they came
    reason: str = ""  # why it did not simply exit: not started, timed out, signalled
    started: bool = True
    timed_out: bool = False


def passthrough(
    argv: Sequence[str | Path],
    *,
    out: IO[bytes],
    err: IO[bytes],
    keep: int = 100_000,
    timeout: float | None = None,
    kill_after: float = 5.0,
    stdin: IO[bytes] | int | None = None,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run a program with its output copied through, its tail kept and signals forwarded."""
    try:
        child = subprocess.Popen(
            [str(a) for a in argv],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            process_group=0,  # its own group: a timeout stops the programs it started too
        )
    except OSError as exc:
        code: int = (
            Status.NOT_FOUND if isinstance(exc, FileNotFoundError) else Status.NOT_EXECUTABLE
        )
        why = "command not found" if code == Status.NOT_FOUND else exc.strerror
        return Finished(code, b"", f"{argv[0]}: {why}", started=False)
    received: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        _signal_group(child, signum)

    # Python only lets the main thread set handlers; elsewhere signals are not ours to forward.
    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, forward) for s in _FORWARDED} if main else {}
    try:
        tail, timed_out, killed = _pump(child, out, err, keep, timeout, kill_after)
    finally:
        for signum, handler in old.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if child.poll() is None:  # only when we crashed: leave nothing running behind
            _signal_group(child, signal.SIGKILL)
            child.wait()
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
    code = child.returncode
    if timed_out:
        then = f", then SIGKILL {kill_after:g} s later" if killed else ""
        reason = f"timed out after {timeout:g} s: sent SIGTERM{then}"
        return Finished(Status.TIMEOUT, tail, reason, timed_out=True)
    if code >= 0:
        return Finished(code, tail)
    reason = f"killed by {signal.Signals(-code).name}"
    if received:
        reason += f" (opskit received {signal.Signals(received[0]).name} and passed it on)"
    return Finished(128 - code, tail, reason)


def _pump(
    child: subprocess.Popen[bytes],
    out: IO[bytes],
    err: IO[bytes],
    keep: int,
    timeout: float | None,
    kill_after: float,
) -> tuple[bytes, bool, bool]:
    """Copy output until the program ends; return (tail, timed out, needed SIGKILL)."""
    ring = bytearray()
    sinks: dict[int, IO[bytes] | None] = {}
    selector = selectors.DefaultSelector()
    for pipe, sink in ((child.stdout, out), (child.stderr, err)):
        assert pipe is not None
        selector.register(pipe, selectors.EVENT_READ)
        sinks[pipe.fileno()] = sink
    deadline = None if timeout is None else time.monotonic() + timeout
    term_at: float | None = None
    exited_at: float | None = None
    killed = False
    with selector:
        while True:
            now = time.monotonic()
            if deadline is not None and term_at is None and now >= deadline:
                term_at = now
                _signal_group(child, signal.SIGTERM)
            if term_at is not None and not killed and now >= term_at + kill_after:
                killed = True
                _signal_group(child, signal.SIGKILL)
            if child.poll() is not None:
                exited_at = now if exited_at is None else exited_at
                if not selector.get_map() or now - exited_at > _DRAIN:
                    break
            if not selector.get_map():  # it closed its output but still runs
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(0.1)
                continue
            for key, _ in selector.select(0.1):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                ring += data
                del ring[:-keep]  # bounded memory however much the program writes
                sinks[key.fd] = _copy(sinks[key.fd], data)
    return bytes(ring), term_at is not None, killed


def _copy(stream: IO[bytes] | None, data: bytes) -> IO[bytes] | None:
    """Write to our own stdout/stderr; a closed one is dropped, never a reason to stop."""
    if stream is None:
        return None
    try:
        stream.write(data)
        stream.flush()
    except (OSError, ValueError):
        return None
    return stream


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)
