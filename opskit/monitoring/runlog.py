"""What the JSON log says about past runs: each job's last runs, each database's backups.

``logs/opskit.json.log`` holds one object per line, appended in order: a ``database_done``
per database per backup (bytes, duration, errors) and a ``job_finished`` (or
``job_interrupted``) per run. Only the end of the file is read (``TAIL_BYTES``), so a log of
years costs what a log of weeks does. Lines are taken in file order, not by timestamp: the
timestamps are local times, and a clock or time zone change would reorder them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from opskit import status

NAME = "opskit.json.log"
TAIL_BYTES = 8 << 20


def read_tail(path: Path, limit: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The events in the last ``limit`` bytes of a JSON log (none if it does not exist)."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - limit))
            data = fh.read(limit)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    if size > limit:
        lines = lines[1:]  # the first line was cut by the seek
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written, or not ours
        if isinstance(event, dict):
            events.append(event)
    return events


@dataclasses.dataclass(frozen=True)
class Run:
    """One run of a job, as its last event tells it."""

    job: str
    timestamp: str
    exit_status: int
    duration: float | None
    errors: int
    bytes: int
    databases: str = ""
    stopped: str = ""  # the signal that stopped it, for an interrupted run

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def runs(events: Iterable[dict[str, Any]], per_job: int = 10) -> dict[str, list[Run]]:
    """Each job's last ``per_job`` runs, newest first."""
    found: dict[str, list[Run]] = {}
    for e in events:
        job = e.get("job")
        if not isinstance(job, str):
            continue
        if e.get("event") == "job_finished":
            errors = _int(e.get("errors"))
            run = Run(
                job,
                str(e.get("timestamp", "")),
                status.for_errors(errors),
                _float(e.get("duration")),
                errors,
                _int(e.get("bytes")),
                str(e.get("databases") or ""),
            )
        elif e.get("event") == "job_interrupted":
            run = Run(
                job,
                str(e.get("timestamp", "")),
                _int(e.get("exit_status")),
                None,
                1,
                0,
                stopped=str(e.get("reason") or ""),
            )
        else:
            continue
        found.setdefault(job, []).append(run)
    return {job: list(reversed(items[-per_job:])) for job, items in sorted(found.items())}


@dataclasses.dataclass(frozen=True)
class Dump:
    """One backup of one database: what it wrote and how long it took."""

    timestamp: str
    bytes: int
    raw_bytes: int
    duration: float
    failed: bool


def dumps(events: Iterable[dict[str, Any]], alias: str, last: int = 60) -> list[Dump]:
    """The last ``last`` backups of ``alias``, oldest first."""
    found = [
        Dump(
            str(e.get("timestamp", "")),
            _int(e.get("bytes")),
            _int(e.get("raw_bytes")),
            _float(e.get("duration")) or 0.0,
            _int(e.get("errors")) > 0,
        )
        for e in events
        if e.get("event") == "database_done"
        and e.get("job") == "backup"
        and e.get("database") == alias
    ]
    return found[-last:]


def verifications(events: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last verification of each archive path: ok, when, what was found, the fix."""
    found: dict[str, dict[str, Any]] = {}
    for e in events:
        kind = e.get("event")
        if kind in ("archive_verified", "archive_bad") and e.get("archive"):
            found[str(e["archive"])] = {
                "ok": kind == "archive_verified",
                "timestamp": str(e.get("timestamp", "")),
                "found": str(e.get("found") or ""),
                "fix": str(e.get("fix") or ""),
            }
    return found


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
