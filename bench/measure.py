"""Run one command and measure it: wall time, peak RSS of its process tree, and its own peak.

Every command starts in a session of its own (``start_new_session=True``), so its
session id is its pid. A sampler thread polls ``/proc`` every ``INTERVAL`` seconds:
it sums the resident set (``statm`` resident pages, which is ``VmRSS``) of every
process whose ``/proc/<pid>/stat`` names that session, and keeps the largest sum.
When the command's first process is a Python program (opskit, django-dbbackup's
``manage.py``) the sampler also reads that process's ``VmHWM`` (the kernel's
high-water mark of its resident set) from ``/proc/<pid>/status`` on every poll and
keeps the last value read before it exits. The parent reaps it with ``os.wait4``,
whose ``ru_maxrss`` (the largest of the process and its waited-for children) is kept
in the JSON as a cross-check.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

INTERVAL = 0.02
PAGE = os.sysconf("SC_PAGE_SIZE")
# The session of the command running now, so that an interrupted benchmark ends it too.
CURRENT: set[int] = set()


def end_current() -> None:
    """Kill the session of the command being measured (on SIGTERM/SIGINT of the bench)."""
    for sid in list(CURRENT):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGKILL)


@dataclass
class RunResult:
    ok: bool
    seconds: float
    tree_peak_kb: int
    own_hwm_kb: int | None
    wait4_maxrss_kb: int
    returncode: int
    error: str = ""
    archive_bytes: int | None = None
    samples: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 4),
            "tree_peak_kb": self.tree_peak_kb,
            "own_hwm_kb": self.own_hwm_kb,
            "wait4_maxrss_kb": self.wait4_maxrss_kb,
            "returncode": self.returncode,
            "error": self.error,
            "archive_bytes": self.archive_bytes,
            "samples": self.samples,
        }


def _session_of(stat: bytes) -> int:
    # pid (comm) state ppid pgrp session ...; comm may hold spaces or parentheses.
    return int(stat[stat.rindex(b")") + 2 :].split(b" ", 4)[3])


def _hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """Poll /proc for the resident memory of every process in one session."""

    def __init__(self, sid: int, track_leader: bool) -> None:
        super().__init__(daemon=True)
        self.sid = sid
        self.track_leader = track_leader
        self.peak_kb = 0
        self.leader_hwm_kb: int | None = None
        self.samples = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if _session_of(f.read()) != self.sid:
                        continue
                with open(f"/proc/{entry}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * PAGE // 1024
            except (OSError, ValueError, IndexError):
                continue  # gone between listdir and read
        self.peak_kb = max(self.peak_kb, total)
        if self.track_leader:
            hwm = _hwm_kb(self.sid)
            if hwm:
                self.leader_hwm_kb = hwm
        self.samples += 1

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(INTERVAL)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def last_line(path: Path) -> str:
    """The last line of stderr that names an error (else the last line), for the table."""
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln]
    errors = [ln for ln in lines if "level=error" in ln or "error" in ln.lower()[:40]]
    pick = errors[-1] if errors else (lines[-1] if lines else "")
    return pick[:300]


def run(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stderr_path: Path,
    track_leader: bool = False,
    timeout: float = 3600.0,
) -> RunResult:
    """Run ``argv`` once in a new session and measure it."""
    stderr_path.parent.mkdir(parents=True, exist_ok=True)
    timed_out = threading.Event()
    with open(stderr_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        CURRENT.add(proc.pid)
        sampler = Sampler(proc.pid, track_leader)
        sampler.start()

        def kill() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    # Anything the command left running in its session (it should not) is ended here.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    CURRENT.discard(proc.pid)
    error = ""
    if timed_out.is_set():
        error = f"timed out after {timeout:.0f} s"
    elif proc.returncode:
        error = last_line(stderr_path) or f"exit status {proc.returncode}"
    return RunResult(
        ok=proc.returncode == 0 and not timed_out.is_set(),
        seconds=seconds,
        tree_peak_kb=sampler.peak_kb,
        own_hwm_kb=sampler.leader_hwm_kb if track_leader else None,
        wait4_maxrss_kb=int(usage.ru_maxrss),
        returncode=proc.returncode,
        error=error,
        samples=sampler.samples,
    )
