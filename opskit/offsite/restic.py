"""restic, run as a program: its environment (repository, password), argv, and its errors.

The password and any credentials reach restic only through its environment
(``RESTIC_PASSWORD_FILE``, ``RESTIC_PASSWORD``, the backend's own variables); the argv holds
the command, tags and paths. Every failure becomes one line that says what went wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from opskit import proc
from opskit.archive import stream as archive
from opskit.errors import ArchiveError, CommandFailed, ConfigError, OpsError
from opskit.offsite.settings import Destination, redact_url
from opskit.redact import redact

_OWN_VARS = (
    "RESTIC_REPOSITORY",
    "RESTIC_REPOSITORY_FILE",
    "RESTIC_PASSWORD",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
)


class OffsiteError(OpsError):
    """A restic repository could not be reached, read or written."""


def reason(stderr: str, label: str) -> OffsiteError:
    """Turn restic's stderr into one line naming the cause and the fix."""
    text = " ".join(stderr.split())
    low = text.lower()
    if "wrong password" in low or "no key found" in low:
        return OffsiteError(
            f"wrong password for {label}", "check password_file (or the password variable)"
        )
    if "already locked" in low:
        who = re.search(r"locked (?:exclusively )?by (PID \d+ on [^\s]+(?: by [^\s]+)?)", text)
        since = re.search(r"lock was created at ([0-9-]+ [0-9:]+)", text)
        by = f" by {who.group(1)}" if who else ""
        at = f" since {since.group(1)}" if since else ""
        return OffsiteError(
            f"{label} is locked{by}{at}",
            "if no restic runs against it any more, the lock is stale: remove it with"
            " restic unlock (docs/offsite.md)",
        )
    if "bucket does not exist" in low or "nosuchbucket" in low:
        return OffsiteError(
            f"the bucket of {label} does not exist", "create it, or fix the repository URL"
        )
    if "no space left" in low or "disk quota" in low:
        return OffsiteError(f"the disk of {label} is full", "free space there or prune older data")
    network = (
        "connection refused",
        "connection reset",
        "connection closed",
        "connection lost",
        "broken pipe",
        "ssh: ",
        "ssh exited",
        "ssh command exited",
        "subprocess ssh",
        "no such host",
        "i/o timeout",
        "network is unreachable",
        "dial tcp",
        "unexpected eof",
        "error: eof",
    )
    if any(word in low for word in network):
        return OffsiteError(
            f"cannot reach {label}: {_fatal(stderr)}", "check the network and the server"
        )
    if "is there a repository at" in low or "unable to open config file" in low:
        return OffsiteError(
            f"no restic repository at {label}", "create it once with restic init (docs/offsite.md)"
        )
    return OffsiteError(f"restic failed on {label}: {_fatal(stderr)}", "see restic's message")


def _fatal(stderr: str) -> str:
    """restic's own reason: its "Fatal:" line, else its last line, shortened."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith("Fatal:")]
    line = (fatal or lines or ["no message"])[-1]
    line = line.removeprefix("Fatal: ")
    return line if len(line) <= 300 else line[:297] + "..."


class Restic:
    """restic for one destination: the environment it needs and its commands."""

    def __init__(self, dest: Destination, environ: Mapping[str, str] | None = None) -> None:
        self.dest = dest
        self.environ = os.environ if environ is None else environ
        self._timers: dict[int, threading.Timer] = {}
        self._expired: set[int] = set()

    @property
    def label(self) -> str:
        return self.dest.label

    def secrets(self) -> tuple[str, ...]:
        found = list(self.dest.secrets())
        if self.dest.password_env and self.environ.get(self.dest.password_env):
            found.append(self.environ[self.dest.password_env])
        return tuple(found)

    def env(self) -> dict[str, str]:
        dest = self.dest
        extra: dict[str, str] = {"RESTIC_REPOSITORY": dest.repository}
        if dest.password_file is not None:
            if not dest.password_file.is_file():
                raise ConfigError(
                    f"the password file {dest.password_file} of {dest.name} does not exist",
                    "create it (mode 0600) or fix OFFSITE password_file",
                )
            extra["RESTIC_PASSWORD_FILE"] = str(dest.password_file)
        elif dest.password:
            extra["RESTIC_PASSWORD"] = dest.password
        elif dest.password_env:
            value = self.environ.get(dest.password_env)
            if not value:
                raise ConfigError(
                    f"{dest.password_env} (the password of {dest.name}) is not set",
                    f"export {dest.password_env} for opskit",
                )
            extra["RESTIC_PASSWORD"] = value
        extra.update(dict(dest.env))
        env = proc.child_env(extra, drop=[v for v in _OWN_VARS if v not in extra])
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        options = [a for key, value in self.dest.options for a in ("-o", f"{key}={value}")]
        return [self.dest.restic, *options, *args]

    def what(self, command: str) -> str:
        return f"restic {command} on {self.dest.shown}"

    def run(self, *args: str, stdin: IO[bytes] | int | None = None) -> str:
        """Run a restic command to its end and return its stdout; a failure is one line."""
        env = self.env()
        with tempfile.TemporaryFile() as out:
            child = self.start(
                self.argv(*args),
                env,
                what=self.what(args[0]),
                secrets=self.secrets(),
                stdin=proc.DEVNULL if stdin is None else stdin,
                stdout=out,
            )
            self.wait(child)
            out.seek(0)
            return out.read().decode("utf-8", "replace")

    def start(self, argv: list[str], env: Mapping[str, str], **kwargs: Any) -> proc.Child:
        """Start restic; past the destination's timeout it is killed (restic itself retries
        a failing repository for up to 15 minutes per operation, over and over)."""
        child = proc.Child(argv, env, **kwargs)
        if self.dest.timeout:
            timer = threading.Timer(self.dest.timeout, self._expire, (child,))
            timer.daemon = True
            timer.start()
            self._timers[child.pid] = timer
        return child

    def stop(self, child: proc.Child) -> None:
        """Kill restic now (the other end failed) and forget its timer."""
        child.kill()
        timer = self._timers.pop(child.pid, None)
        if timer is not None:
            timer.cancel()

    def _expire(self, child: proc.Child) -> None:
        self._expired.add(child.pid)
        with contextlib.suppress(OSError):
            child.proc.kill()

    def wait(self, child: proc.Child) -> None:
        try:
            child.wait()
        except CommandFailed:
            raise self.failure(child) from None
        finally:
            timer = self._timers.pop(child.pid, None)
            if timer is not None:
                timer.cancel()

    def failure(self, child: proc.Child) -> OffsiteError:
        text = redact(redact_url(child.stderr_text()), self.secrets())
        cause = reason(text, self.label)
        if child.pid not in self._expired:
            return cause
        known = not cause.message.startswith("restic failed")
        return OffsiteError(
            f"restic did not finish in {self.dest.timeout:g} s on {self.label}"
            + (f" ({cause.message})" if known else ""),
            "it retries a failing repository for minutes: check the repository, or raise"
            " OFFSITE 'timeout'",
        )

    def json(self, *args: str) -> Any:
        out = self.run(*args, "--json")
        try:
            return json.loads(out or "null")
        except ValueError:
            raise OffsiteError(f"restic {args[0]} gave no JSON on {self.label}") from None

    def snapshots(self, host: str | None, tags: Sequence[str]) -> list[dict[str, Any]]:
        args = ["snapshots"]
        if host:
            args += ["--host", host]
        if tags:
            args += ["--tag", ",".join(tags)]
        found = self.json(*args) or []
        return sorted(found, key=lambda s: str(s.get("time", "")), reverse=True)

    def backup_stream(
        self,
        source: Any,
        filename: str,
        tags: Sequence[str],
        when: datetime,
        host: str,
    ) -> tuple[dict[str, Any], str, int]:
        """Feed ``source`` (read(), check_end()) to ``restic backup --stdin``.

        Returns restic's summary and the sha256 and size of the bytes fed. ``check_end`` is
        called before restic's stdin is closed: a source that turns out bad kills restic
        before it can save a snapshot.
        """
        args = ["backup", "--stdin", "--stdin-filename", filename, *self.common(tags, when, host)]
        env = self.env()
        with tempfile.TemporaryFile() as out:
            child = self.start(
                self.argv(*args),
                env,
                what=self.what("backup"),
                secrets=self.secrets(),
                stdin=proc.PIPE,
                stdout=out,
            )
            fd = child.stdin.fileno()
            try:
                sha256, size = _feed(source, fd)
            except BrokenPipeError:
                _abandon(source)
                raise self.failure_of(child) from None
            except BaseException:
                _abandon(source)
                self.stop(child)
                raise
            self.wait(child)
            out.seek(0)
            summary = _summary(out.read())
        return summary, sha256, size

    def failure_of(self, child: proc.Child) -> OffsiteError:
        with contextlib.suppress(OffsiteError):
            self.wait(child)
        return self.failure(child)

    def backup_paths(
        self, paths: Sequence[Path], tags: Sequence[str], when: datetime, host: str
    ) -> dict[str, Any]:
        out = self.run("backup", *self.common(tags, when, host), "--", *map(str, paths))
        return _summary(out.encode())

    @staticmethod
    def common(tags: Sequence[str], when: datetime, host: str) -> list[str]:
        stamp = when.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        return ["--host", host, "--tag", ",".join(tags), "--time", stamp, "--json"]

    @contextlib.contextmanager
    def dump(self, snapshot: str, path: str) -> Iterator[proc.Child]:
        """Run ``restic dump``; yield it (its stdout is the file's bytes)."""
        child = self.start(
            self.argv("dump", snapshot, path),
            self.env(),
            what=self.what("dump"),
            secrets=self.secrets(),
            stdin=proc.DEVNULL,
            stdout=proc.PIPE,
        )
        try:
            yield child
        except BaseException:
            self.stop(child)
            raise

    def read_file(self, snapshot: str, path: str, limit: int = 16 << 20) -> bytes:
        """A small file of a snapshot (a sidecar), whole."""
        with self.dump(snapshot, path) as child:
            data = child.stdout.read(limit + 1)
            if len(data) > limit:
                self.stop(child)
                raise OffsiteError(f"{path} in snapshot {snapshot[:8]} is too large for a sidecar")
            self.wait(child)
        return data


def _feed(source: Any, fd: int) -> tuple[str, int]:
    """Write all of ``source`` to ``fd``, then let it prove itself (``check_end``); return the
    sha256 and size of what was written."""
    sha, size = hashlib.sha256(), 0
    while chunk := source.read(archive.CHUNK):
        sha.update(chunk)
        size += len(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
    source.check_end()
    return sha.hexdigest(), size


def _abandon(source: Any) -> None:
    stop = getattr(source, "abandon", None)
    if stop is not None:
        stop()


def _summary(out: bytes) -> dict[str, Any]:
    for line in reversed(out.decode("utf-8", "replace").splitlines()):
        with contextlib.suppress(ValueError):
            data = json.loads(line)
            if isinstance(data, dict) and data.get("message_type") == "summary":
                return data
    raise OffsiteError("restic backup ended without its summary", "see restic's log")


class SnapshotContent:
    """A file of a snapshot, streamed by ``restic dump``, hashed as it is read.

    ``check_end`` proves restic ended cleanly and the bytes are the ones pushed (their size
    and sha256 recorded by opskit at push time); the loader commits only after it.
    """

    def __init__(
        self, restic: Restic, child: proc.Child, name: str, size: int, sha256: str
    ) -> None:
        self.restic = restic
        self.child = child
        self.reader = proc.interruptible(child.stdout)
        self.name = name
        self.expect = (size, sha256)
        self.sha = hashlib.sha256()
        self.size = 0
        self.checked = False

    def read(self, size: int = -1) -> bytes:
        data = self.reader.read(size if size > 0 else archive.CHUNK)
        self.sha.update(data)
        self.size += len(data)
        return data

    # No fileno(): a loader that spliced the pipe would bypass the hash.

    def check_end(self) -> None:
        if self.checked:
            return
        while self.read(archive.CHUNK):
            pass
        self.restic.wait(self.child)
        if (self.size, self.sha.hexdigest()) != self.expect:
            raise ArchiveError(
                f"{self.name} is not the dump that was pushed: {self.size:,} bytes with another"
                " sha256 than recorded at push time; nothing was committed",
                "use another snapshot; run opskit verify --offsite",
            )
        self.checked = True

    def settle(self) -> ArchiveError | None:
        try:
            self.check_end()
        except ArchiveError as exc:
            return exc
        except OpsError as exc:
            return ArchiveError(exc.message, exc.hint)
        return None

    def abandon(self) -> None:
        self.restic.stop(self.child)
