"""The only module that runs programs: argv lists, no shell, secrets via env or 0600 files."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from opskit.errors import CommandFailed, ToolNotFound
from opskit.redact import redact

_STDERR_KEEP = 8192


def find_tool(names: Sequence[str], bin_dir: Path | None, setting: str) -> Path:
    """Return the first of ``names`` found in ``bin_dir`` (if given) or on PATH."""
    for name in names:
        found = shutil.which(name, path=str(bin_dir) if bin_dir else None)
        if found:
            return Path(found)
    where = f"in {bin_dir}" if bin_dir else "on PATH"
    raise ToolNotFound(
        f"{' or '.join(names)} not found {where}",
        f"install the database client tools or set OPSKIT['{setting}'] to their folder",
    )


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
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    path = folder / "credentials"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _last_line(text: str) -> str:
    """Return the line of a tool's stderr that says what went wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if re.search(r"error|fatal|denied|refused", line, re.I)]
    return (errors or lines or [""])[-1 if not errors else 0]


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
        done = subprocess.run(
            [str(a) for a in argv],
            input=stdin,
            capture_output=True,
            env=dict(env),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise ToolNotFound(f"{argv[0]} not found", "install it or fix PATH") from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{what} did not finish in {timeout} s", "check the server") from None
    if done.returncode != 0:
        err = redact(_last_line(done.stderr.decode("utf-8", "replace")), secrets)
        raise CommandFailed(f"{what} failed (exit status {done.returncode}): {err}")
    return done.stdout.decode("utf-8", "replace")


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
            self.proc = subprocess.Popen(
                [str(a) for a in argv],
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=dict(env),
            )
        except FileNotFoundError:
            raise ToolNotFound(f"{argv[0]} not found", "install it or fix PATH") from None
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
        yield child.stdout
    except BaseException:
        child.kill()
        raise
    child.wait()


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
