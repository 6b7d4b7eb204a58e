"""Metrics for Prometheus: a node_exporter textfile that every job updates after its run.

With ``OPSKIT["METRICS_FILE"]`` set (e.g. ``/var/lib/node_exporter/textfile/opskit.prom``),
each job rewrites the file with its own series and keeps the other jobs' and databases':
last run and last success times, exit status, errors, duration, and a backup's dump and
archive bytes, row count and size anomaly. The file is replaced atomically (temp file,
fsync, rename), so node_exporter never reads half of it, under a lock beside it, so two
jobs ending together both land. It is 0644: node_exporter runs as a user of its own and
must read it, and it holds no secret (job names, database aliases, numbers).

Labels are ``job_name`` and ``database``: a ``job`` label would clash with the one
Prometheus adds to every scraped series.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

from opskit import files, logs
from opskit.archive import locks
from opskit.errors import OpsError
from opskit.report import Report

log = logs.get("metrics")
MODE = 0o644
PREFIX = "opskit_"
# name -> help; every metric is a gauge.
HELP = {
    "job_last_run_timestamp_seconds": "When the job last ended (Unix time).",
    "job_last_success_timestamp_seconds": "When the job last ended with exit status 0.",
    "job_exit_status": "Exit status of the job's last run (0: no error).",
    "job_duration_seconds": "How long the job's last run took.",
    "database_last_run_timestamp_seconds": "When the job last worked on the database.",
    "database_last_success_timestamp_seconds": "When the job last worked on it without error.",
    "database_errors": "Failed steps for the database in the job's last run.",
    "database_duration_seconds": "Time the job's last run spent on the database.",
    "backup_dump_bytes": "Size of the last good dump, uncompressed.",
    "backup_archive_bytes": "Size of the last good archive on disk.",
    "backup_rows": "Rows in the last good dump (when COUNT_ROWS or VERIFY_RESTORE counts them).",
    "backup_size_anomaly": "1 when the last good dump was much smaller than the usual ones.",
}
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)\s*$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
Series = tuple[str, tuple[tuple[str, str], ...]]


@dataclasses.dataclass(frozen=True)
class DbRun:
    """What one job run did to one database."""

    database: str
    errors: int
    duration: float
    dump_bytes: int | None = None
    archive_bytes: int | None = None
    rows: int | None = None
    size_anomaly: bool | None = None


@dataclasses.dataclass(frozen=True)
class Run:
    """One job run, as the metrics see it."""

    job: str
    exit_status: int
    started: float
    finished: float
    databases: tuple[DbRun, ...] = ()

    @classmethod
    def of(
        cls, job: str, report: Report | None, exit_status: int, started: float, finished: float
    ) -> Run:
        """Summarise a report (None: a run stopped before it had one)."""
        if report is None:
            return cls(job, exit_status, started, finished)
        dbs = []
        for alias in sorted({s.database for s in report.steps if s.database}):
            steps = [s for s in report.steps if s.database == alias]
            detail = report.details.get(alias, {})
            dbs.append(
                DbRun(
                    alias,
                    sum(not s.ok for s in steps),
                    sum(s.duration for s in steps),
                    _int(detail.get("raw_bytes")),
                    _int(detail.get("bytes")),
                    _int(detail.get("rows")),
                    bool(detail.get("size_warning")) if "archive" in detail else None,
                )
            )
        return cls(job, exit_status, started, finished, tuple(dbs))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def update(series: dict[Series, float], run: Run) -> None:
    """Put one run's values into ``series`` (the other jobs' and databases' stay)."""
    job = (("job_name", run.job),)

    def put(name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        series[(PREFIX + name, labels)] = value

    put("job_last_run_timestamp_seconds", job, run.finished)
    put("job_exit_status", job, run.exit_status)
    put("job_duration_seconds", job, run.finished - run.started)
    if run.exit_status == 0:
        put("job_last_success_timestamp_seconds", job, run.finished)
    for db in run.databases:
        labels = (*job, ("database", db.database))
        put("database_last_run_timestamp_seconds", labels, run.finished)
        put("database_errors", labels, db.errors)
        put("database_duration_seconds", labels, db.duration)
        if db.errors == 0:
            put("database_last_success_timestamp_seconds", labels, run.finished)
        own = (("database", db.database),)
        for name, value in (
            ("backup_dump_bytes", db.dump_bytes),
            ("backup_archive_bytes", db.archive_bytes),
            ("backup_rows", db.rows),
            ("backup_size_anomaly", None if db.size_anomaly is None else int(db.size_anomaly)),
        ):
            if value is not None and db.errors == 0:
                put(name, own, value)


def render(series: Mapping[Series, float]) -> str:
    """The text exposition format, one family after the other, sorted."""
    out: list[str] = []
    for short, text in HELP.items():
        name = PREFIX + short
        rows = sorted((labels, v) for (n, labels), v in series.items() if n == name)
        if not rows:
            continue
        out += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for labels, value in rows:
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            out.append(f"{name}{{{inner}}} {_number(value)}")
    return "\n".join(out) + "\n" if out else ""


def parse(text: str) -> dict[Series, float]:
    """Read back a file this module wrote (other lines are ignored)."""
    series: dict[Series, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if line.startswith("#") or not match or not match.group(1).startswith(PREFIX):
            continue
        labels = tuple((k, _unescape(v)) for k, v in _LABEL.findall(match.group(2) or ""))
        try:
            series[(match.group(1), labels)] = float(match.group(3))
        except ValueError:
            continue
    return series


def record(path: Path, run: Run, lock_wait: float = 10.0) -> bool:
    """Add a run to the metrics file; a failure is logged, never raised (it is monitoring)."""
    try:
        with locks.hold(path.with_name(f".{path.name}.lock"), what="metrics", wait=lock_wait):
            try:
                old = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                old = ""
            series = parse(old)
            update(series, run)
            files.write_atomic(path, render(series).encode(), MODE)
    except (OSError, OpsError) as exc:
        reason = exc.line() if isinstance(exc, OpsError) else f"{type(exc).__name__}: {exc}"
        log.warning("metrics_not_written", path=str(path), reason=reason)
        return False
    log.debug("metrics_written", path=str(path), job=run.job)
    return True


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
