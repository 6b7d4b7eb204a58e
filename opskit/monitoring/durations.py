"""How long each job's runs took (the JSON log, the manifests), and the grace they call for.

Healthchecks counts a check down when a run that pinged ``/start`` has not finished within
the check's grace period, so a grace shorter than the job raises false alarms. ``hc sync``
sets it from the measured runs: twice the longest of the last ``RUNS``, rounded up to whole
5 minutes, and never under ``GRACE_FLOOR`` (10 minutes: cron's own start-up delay and a slow
night should never page anyone).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterable
from pathlib import Path

from opskit.archive import manifest as manifests
from opskit.archive import rotation
from opskit.errors import OpsError

RUNS = 7
GRACE_FLOOR = 600
GRACE_STEP = 300
GRACE_MAX = 31_536_000  # Healthchecks' limit
_READ = 4_000_000  # bytes read from the end of the JSON log


def logged(log_dir: Path, job: str, runs: int = RUNS) -> list[float]:
    """Durations of the job's last runs, oldest first, from ``job_finished`` in the JSON log."""
    found = []
    for line in _tail_lines(log_dir / "opskit.json.log"):
        if '"job_finished"' not in line:
            continue
        with contextlib.suppress(ValueError, AttributeError):
            event = json.loads(line)
            duration = event.get("duration")
            ours = event.get("event") == "job_finished" and event.get("job") == job
            if ours and isinstance(duration, int | float) and duration >= 0:
                found.append(float(duration))
    return found[-runs:]


def _tail_lines(path: Path) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - _READ))
            data = fh.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[1:] if size > _READ else lines  # the first may be cut


def from_manifests(backup_dir: Path) -> list[float]:
    """A backup's run durations as its archives record them: per weekday slot, summed over
    every database's folder (the default's and ``<alias>/``)."""
    folders = [backup_dir]
    with contextlib.suppress(OSError):
        folders += [
            p
            for p in backup_dir.iterdir()
            if p.is_dir() and not p.is_symlink() and "." not in p.name
        ]
    per_slot: dict[str, float] = {}
    for folder in folders:
        for archive in rotation.list_archives(folder):
            try:
                duration = manifests.read(archive).get("duration")
            except OpsError:
                continue
            if isinstance(duration, int | float):
                slot = archive.name.split(".", 1)[0]
                per_slot[slot] = per_slot.get(slot, 0.0) + float(duration)
    return list(per_slot.values())


def grace_for(durations: Iterable[float], floor: int = GRACE_FLOOR) -> int | None:
    """The grace period the runs call for (None when there are no runs to go by)."""
    longest = max(durations, default=None)
    if longest is None:
        return None
    grace = max(floor, math.ceil(2 * longest / GRACE_STEP) * GRACE_STEP)
    return min(grace, GRACE_MAX)


def grace_fits(current: object, wanted: int) -> bool:
    """A measured grace is met by anything from it to twice it: no update every night."""
    return isinstance(current, int | float) and wanted <= current <= 2 * wanted
