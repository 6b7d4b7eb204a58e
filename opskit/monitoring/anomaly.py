"""Dump-size anomalies: a dump much smaller than the usual ones is a warning, not a good night.

Each good backup adds an entry (sizes, rows, duration, time) to a small history file in the
database's backup folder, ``.opskit-history.json``, written atomically under the backup
lock; the folder's 7 slot archives alone cannot say what the last runs were when a backup
runs more than once a day. The new dump is compared with the median of the previous runs
(the last ``RUNS``): its uncompressed size, and its row total when rows are counted. Under
``ratio`` times the median (``SIZE_DROP_RATIO``, 0.5) it is an anomaly: a warning in the
log, the ping body and the mail, and a FAIL in ``opskit check`` until acknowledged with
``opskit check --ack-size ALIAS``. An acknowledged run starts a new baseline, so a database
that was shrunk on purpose is judged against its new size from then on.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import files, logs
from opskit.archive import manifest as manifests
from opskit.archive import rotation
from opskit.errors import OpsError
from opskit.progress import human

log = logs.get("backup")
HISTORY = ".opskit-history.json"
RUNS = 7  # the median of this many previous runs is "usual"
MIN_RUNS = 2  # fewer previous runs than this: nothing to compare with yet
KEEP = 60  # entries kept in the file


@dataclasses.dataclass(frozen=True)
class Verdict:
    """How one dump compares with the usual ones."""

    anomaly: str  # "" when the dump is as usual
    usual: str  # e.g. "12.1 MB (median of 7 runs)"


def path_of(folder: Path) -> Path:
    return folder / HISTORY


def load(folder: Path) -> list[dict[str, Any]]:
    """Return the history, oldest first; without a history file, what the manifests say."""
    try:
        doc = json.loads(path_of(folder).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _from_manifests(folder)
    except (OSError, ValueError):
        return []
    runs = doc.get("runs") if isinstance(doc, dict) else None
    return [r for r in runs if _valid(r)] if isinstance(runs, list) else []


def _valid(entry: Any) -> bool:
    return isinstance(entry, dict) and isinstance(entry.get("raw_size"), int)


def _from_manifests(folder: Path) -> list[dict[str, Any]]:
    entries = []
    for archive in rotation.list_archives(folder):
        try:
            entries.append(entry_of(manifests.read(archive)))
        except OpsError:
            continue
    return sorted(entries, key=lambda e: str(e.get("finished_at") or ""))


def entry_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The history entry of one archive, from its manifest."""
    tables = record.get("tables")
    rows = sum(tables.values()) if isinstance(tables, dict) else None
    return {
        "finished_at": record.get("finished_at"),
        "file": record.get("file"),
        "raw_size": int(record.get("raw_size") or record.get("size") or 0),
        "size": int(record.get("size") or 0),
        "rows": rows,
        "duration": record.get("duration"),
    }


def _baseline(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The previous runs to compare with: the last RUNS, none older than an acknowledged one."""
    since = max((i for i, e in enumerate(history) if e.get("acknowledged")), default=0)
    return history[since:][-RUNS:]


def assess(history: list[dict[str, Any]], entry: Mapping[str, Any], ratio: float) -> Verdict:
    """Compare a new entry with the previous runs (``history``, oldest first)."""
    base = _baseline(history)
    if len(base) < MIN_RUNS or ratio <= 0:
        return Verdict("", f"not enough runs yet to compare ({len(base)})")
    usual_raw = statistics.median(e["raw_size"] for e in base)
    usual = f"{human(int(usual_raw))} (median of the last {len(base)} runs)"
    found = []
    if entry["raw_size"] < ratio * usual_raw:
        share = entry["raw_size"] / usual_raw if usual_raw else 0
        found.append(f"the dump is {human(entry['raw_size'])}, {share:.0%} of the usual {usual}")
    counted = [e["rows"] for e in base if isinstance(e.get("rows"), int)]
    rows = entry.get("rows")
    if isinstance(rows, int) and len(counted) >= MIN_RUNS:
        usual_rows = statistics.median(counted)
        if rows < ratio * usual_rows:
            found.append(f"it holds {rows} rows, against a usual {usual_rows:.0f}")
    return Verdict("; ".join(found), usual)


def after_backup(
    folder: Path, alias: str, record: Mapping[str, Any], ratio: float
) -> dict[str, Any]:
    """Judge a new archive against the usual ones, log a warning, add it to the history.

    Returns what the report should know: the row total (when counted) and the warning.
    """
    entry = entry_of(record)
    # Without a history file the manifests stand in, and the new archive is among them.
    history = [e for e in load(folder) if e.get("finished_at") != entry["finished_at"]]
    verdict = assess(history, entry, ratio)
    entry["anomaly"] = verdict.anomaly
    try:
        _save(folder, [*history, entry])
    except OSError as exc:  # the archive is committed: a history that lags is no reason to fail
        log.warning("history_not_saved", database=alias, reason=f"{type(exc).__name__}: {exc}")
    extra: dict[str, Any] = {} if entry["rows"] is None else {"rows": entry["rows"]}
    if verdict.anomaly:
        fix = f"if that is expected, acknowledge it: opskit check --ack-size {alias}"
        log.warning(
            "dump_smaller_than_usual",
            database=alias,
            raw_bytes=entry["raw_size"],
            found=verdict.anomaly,
            fix=fix,
        )
        extra["size_warning"] = f"database {alias}: {verdict.anomaly}"
    return extra


def _save(folder: Path, history: list[dict[str, Any]]) -> None:
    data = json.dumps({"format": 1, "runs": history[-KEEP:]}, indent=1).encode() + b"\n"
    files.write_atomic(path_of(folder), data, 0o600)


def newest(folder: Path, ratio: float) -> dict[str, Any] | None:
    """The newest entry, as ``opskit check`` judges it."""
    history = load(folder)
    if not history:
        return None
    last = dict(history[-1])
    if "anomaly" not in last:  # from the manifests: judge it now
        last["anomaly"] = assess(history[:-1], last, ratio).anomaly
    return last


def acknowledge(folder: Path, now: datetime) -> dict[str, Any]:
    """Accept the newest run's size as the new usual (the caller holds the backup lock)."""
    history = load(folder)
    if not history:
        raise OpsError(f"no backup history in {folder}", "run opskit backup first")
    history[-1] = {**history[-1], "acknowledged": True, "acknowledged_at": now.isoformat()}
    _save(folder, history)
    return history[-1]
