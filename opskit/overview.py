"""Everything the backups page shows, gathered from files: no Django, nothing written.

Per database: the archives (``opskit.catalog``: weekday, age, size, ratio, state) with the
last re-read of each from the log and its off-site copy as its manifest records it, what
restores kept or left (``Engine.leftovers`` and the pre-restore safety copies), and its last
backups for the chart. Then the last runs of every job, and the maintenance switch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from opskit import catalog, maintenance
from opskit.archive import manifest as manifests
from opskit.config import Config
from opskit.engines import DbParams, Tools, engine_for, vendor_of
from opskit.errors import ArchiveError, OpsError
from opskit.monitoring import chart, runlog


@dataclasses.dataclass
class DatabaseView:
    alias: str
    database: str
    engine: str
    folder: str
    archives: list[dict[str, Any]]
    kept: list[dict[str, Any]]
    kept_problem: str
    dumps: list[runlog.Dump]
    chart: str

    @property
    def last_dump_dropped(self) -> bool:
        sizes = [d.bytes for d in self.dumps]
        return bool(sizes) and chart.drops(sizes)[-1]


@dataclasses.dataclass
class Overview:
    databases: list[DatabaseView]
    runs: dict[str, list[runlog.Run]]
    maintenance: maintenance.State
    maintenance_problem: str
    log: str


def selected(config: Config, databases: Mapping[str, DbParams]) -> list[str]:
    """The aliases opskit works on: OPSKIT DATABASES, else every one (as backup and check)."""
    return [a for a in databases if not config.databases or a in config.databases]


def collect(config: Config, databases: Mapping[str, DbParams], now: datetime) -> Overview:
    log_path = config.log_dir / runlog.NAME
    events = runlog.read_tail(log_path)
    checked = runlog.verifications(events)
    views = []
    for entry in catalog.catalog(config, databases, selected(config, databases), now):
        alias = entry["alias"]
        db = databases[alias]
        rows = [_row(row, checked) for row in entry["archives"]]
        kept, problem = kept_copies(config, db, Path(entry["folder"]), now)
        dumps = runlog.dumps(events, alias)
        svg = chart.render(dumps, f"Dump size and duration of {alias}, last {len(dumps)} runs")
        try:
            vendor = vendor_of(db.django_engine)
        except OpsError:
            vendor = db.django_engine
        views.append(
            DatabaseView(alias, db.name, vendor, entry["folder"], rows, kept, problem, dumps, svg)
        )
    try:
        state, problem = maintenance.read(config.state_dir), ""
    except OpsError as exc:
        state, problem = maintenance.OFF, exc.line()
    return Overview(views, runlog.runs(events), state, problem, str(log_path))


def _row(row: dict[str, Any], checked: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    path = Path(row["file"])
    slot = row["slot"]
    weekday = slot.split("-", 1)[1] if "-" in slot and slot[0].isdigit() else slot
    offsite = None
    try:
        recorded = manifests.read(path).get("offsite")
        offsite = recorded if isinstance(recorded, dict) else None
    except ArchiveError:
        pass
    return {
        **row,
        "name": path.name,
        "weekday": weekday,
        "last_check": checked.get(row["file"]),
        "offsite": offsite,
    }


def kept_copies(
    config: Config, db: DbParams, folder: Path, now: datetime
) -> tuple[list[dict[str, Any]], str]:
    """Previous and scratch databases the engine reports, and the safety copies on disk."""
    kept: list[dict[str, Any]] = []
    problem = ""
    try:
        engine = engine_for(db, Tools.of(config), work_dir=folder)
        for item in engine.leftovers(db):
            kept.append(dataclasses.asdict(item) | {"age_seconds": None})
    except OpsError as exc:
        problem = exc.line()
    for path in sorted(folder.glob("pre-restore-*")) if folder.is_dir() else []:
        if path.name.endswith(".json") or not path.is_file():
            continue
        try:
            finished = manifests.finished_at(manifests.read(path))
        except ArchiveError:
            finished = None
        age = (now - finished).total_seconds() if finished else None
        kept.append(
            {
                "kind": "safety-copy",
                "name": path.name,
                "drop": f"rm -- {path} {manifests.path_of(path)}",
                "size": path.stat().st_size,
                "age_seconds": round(age) if age is not None else None,
            }
        )
    kept.sort(key=lambda k: (k["kind"], k["name"]))
    return kept, problem
