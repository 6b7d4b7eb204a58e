"""Programs whose stdin or stdout opskit streams: a dump, a compressor, a loader."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from opskit import signals
from opskit.errors import CommandFailed, ToolNotFound
from opskit.proc.spawn import last_line, preexec
from opskit.redact import redact

_STDERR_KEEP = 8192  # the end of a tool's stderr, which names what went wrong

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
                    preexec_fn=preexec(),  # only prctl(2) and getppid(2) run in the child
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
            detail = last_line(self.stderr_text())
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
