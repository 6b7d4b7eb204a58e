"""A command run the way runitor runs one: output copied through, tail kept, signals passed on."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from opskit.status import Status, for_signal

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
    child = _start(argv, stdin, env)
    if isinstance(child, Finished):
        return child
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
    if timed_out:
        then = f", then SIGKILL {kill_after:g} s later" if killed else ""
        reason = f"timed out after {timeout:g} s: sent SIGTERM{then}"
        return Finished(Status.TIMEOUT, tail, reason, timed_out=True)
    return _ended(child.returncode, tail, received)


def _start(
    argv: Sequence[str | Path], stdin: IO[bytes] | int | None, env: Mapping[str, str] | None
) -> subprocess.Popen[bytes] | Finished:
    """The running program, or how it failed to start (126/127, as a shell says)."""
    try:
        return subprocess.Popen(
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


def _ended(code: int, tail: bytes, received: list[int]) -> Finished:
    """An exit code as it is, a signal as 128+signal with its name (and who sent it on)."""
    if code >= 0:
        return Finished(code, tail)
    reason = f"killed by {signal.Signals(-code).name}"
    if received:
        reason += f" (opskit received {signal.Signals(received[0]).name} and passed it on)"
    return Finished(for_signal(-code), tail, reason)


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
