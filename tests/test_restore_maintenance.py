"""A restore holds maintenance while the live database changes, and only then.

An engine says when its swap begins through the restore journal (the phase it records, its
"loaded" step); these tests drive the restore job with a scripted engine that records what
a real one records, and look at the maintenance state at each of those instants. The real
engines, killed and stopped, are in tests/test_fault_maintenance.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from opskit import maintenance
from opskit.backup import recover_folder
from opskit.config import Config
from opskit.engines import DbParams, journal
from opskit.engines.base import OpenArchive, RestoreContext
from opskit.errors import CommandFailed
from opskit.report import Report, StepFailed
from opskit.restore import RestoreOptions, RestorePlan, run_restore

NOW = datetime(2026, 11, 22, 2, 0).astimezone()
Script = Callable[[RestoreContext, Callable[[str], None]], None]


@dataclasses.dataclass
class ScriptedEngine:
    """An engine whose restore runs ``script``; ``seen`` notes maintenance at each mark."""

    state_dir: Path
    script: Script
    vendor: str = "scripted"
    suffix: str = "sql"
    seen: list[tuple[str, bool]] = dataclasses.field(default_factory=list)
    recovered: bool = False

    def mark(self, name: str) -> None:
        self.seen.append((name, not maintenance.read(self.state_dir).empty))

    def restore(self, db: DbParams, open_archive: OpenArchive, ctx: RestoreContext) -> None:
        self.script(ctx, self.mark)

    def recover(self, db: DbParams, left: journal.Journal) -> str:
        self.recovered = True
        return "put the old database back"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def swap(ctx: RestoreContext, mark: Callable[[str], None]) -> None:
    """What the PostgreSQL and MariaDB engines record for a restore by swap."""
    assert ctx.journal is not None
    ctx.journal.record(phase="loading", scratch="db__scratch")
    mark("loading")
    ctx.step("loaded")
    mark("loaded")
    ctx.journal.record(phase="swapping", live="db", old="db__old")
    ctx.step("renamed")
    mark("renamed")
    ctx.journal.record(phase="done")


def in_place(ctx: RestoreContext, mark: Callable[[str], None]) -> None:
    """What an in-place load records: nothing before it loads into the live database."""
    mark("start")
    ctx.step("loaded")


def killed_mid_swap(ctx: RestoreContext, mark: Callable[[str], None]) -> None:
    """A swap that fails where the engine cannot put things back: the journal stays."""
    assert ctx.journal is not None
    ctx.journal.record(phase="loading", scratch="db__scratch")
    ctx.step("loaded")
    ctx.journal.record(phase="swapping")
    raise CommandFailed("server went away mid-swap")


def failed_load(ctx: RestoreContext, mark: Callable[[str], None]) -> None:
    assert ctx.journal is not None
    ctx.journal.record(phase="loading", scratch="db__scratch")
    mark("loading")
    ctx.journal.record(phase="done")  # the engine dropped its scratch database
    raise CommandFailed("archive does not load")


def restore_with(
    config: Config, tmp_path: Path, script: Script, options: RestoreOptions | None = None
) -> tuple[ScriptedEngine, Report, DbParams]:
    engine = ScriptedEngine(config.state_dir, script)
    db = DbParams("default", "django.db.backends.sqlite3", str(tmp_path / "db.sqlite3"))
    folder = tmp_path / "backups"
    folder.mkdir(exist_ok=True)
    manifest = {"engine": "scripted", "size": 0, "sha256": "0" * 64}
    plan = RestorePlan(db, engine, tmp_path / "archive.sql", manifest, folder)
    report = Report("restore")
    with contextlib.suppress(StepFailed):
        run_restore(config, plan, NOW, report, options or RestoreOptions())
    return engine, report, db


def test_a_swap_is_in_maintenance_from_the_loaded_step_to_the_end(
    config: Config, tmp_path: Path
) -> None:
    engine, report, _ = restore_with(config, tmp_path, swap)
    assert report.errors == 0
    assert engine.seen == [("loading", False), ("loaded", True), ("renamed", True)]
    assert maintenance.read(config.state_dir).empty


def test_an_in_place_load_is_in_maintenance_from_its_start(config: Config, tmp_path: Path) -> None:
    engine, _, _ = restore_with(config, tmp_path, in_place, RestoreOptions(in_place=True))
    assert engine.seen == [("start", True)]
    assert maintenance.read(config.state_dir).empty


def test_a_load_that_fails_before_the_swap_never_turns_maintenance_on(
    config: Config, tmp_path: Path
) -> None:
    engine, report, _ = restore_with(config, tmp_path, failed_load)
    assert report.errors == 1
    assert engine.seen == [("loading", False)]
    assert not maintenance.path_in(config.state_dir).exists()


def test_a_manual_switch_stays_on_after_a_restore(config: Config, tmp_path: Path) -> None:
    maintenance.turn_on(config.state_dir, message="planned")
    restore_with(config, tmp_path, swap)
    state = maintenance.read(config.state_dir)
    assert state.site is not None
    assert state.site.message == "planned"
    assert not state.restores


def test_maintenance_during_restore_can_be_turned_off_in_the_settings(
    config: Config, tmp_path: Path
) -> None:
    config = dataclasses.replace(config, maintenance_during_restore=False)
    engine, _, _ = restore_with(config, tmp_path, swap)
    assert engine.seen == [("loading", False), ("loaded", False), ("renamed", False)]


def test_a_swap_left_unfinished_stays_in_maintenance_until_recovered(
    config: Config, tmp_path: Path
) -> None:
    engine, report, db = restore_with(config, tmp_path, killed_mid_swap)
    assert report.errors == 1
    folder = tmp_path / "backups"
    assert journal.load(folder) is not None
    assert set(maintenance.read(config.state_dir).restores) == {"default"}
    # The next run on this database finishes the swap, and only then is the site back.
    recover_folder(config, db, engine, folder)
    assert engine.recovered
    assert journal.load(folder) is None
    assert maintenance.read(config.state_dir).empty


def test_recovery_that_fails_keeps_maintenance_on(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, _, db = restore_with(config, tmp_path, killed_mid_swap)

    def cannot(db: DbParams, left: journal.Journal) -> str:
        raise CommandFailed("server down")

    monkeypatch.setattr(engine, "recover", cannot)
    with pytest.raises(Exception, match="cannot be finished or undone now"):
        recover_folder(config, db, engine, tmp_path / "backups")
    assert set(maintenance.read(config.state_dir).restores) == {"default"}
