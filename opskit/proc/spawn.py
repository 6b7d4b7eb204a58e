"""Starting programs: argv lists, no shell, a child that dies with opskit; run to completion."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from opskit import signals
from opskit.errors import CommandFailed, ToolNotFound
from opskit.redact import redact


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


def last_line(text: str) -> str:
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


def preexec() -> Callable[[], None]:
    """What Popen runs in the child before exec: die with this process."""
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
                preexec_fn=preexec(),  # only prctl(2) and getppid(2) run in the child
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
        detail = redact(last_line(err.decode("utf-8", "replace")), secrets)
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
        raise CommandFailed(f"cannot start {argv[0]}: {last_line(done.stderr)}")
    return int(done.stdout.strip())
