"""Backup → change → restore brings every table, value and counter back exactly."""

from __future__ import annotations

from datetime import datetime, timedelta

from dbdata import adapter_for
from support.project import SUNDAY

from opskit.archive import stream as archive
from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams
from opskit.report import Report
from opskit.restore import RestoreOptions, restore_archive


def backup(config: Config, db: DbParams, when: datetime = SUNDAY) -> Report:
    return run_backup(config, {db.alias: db}, [db.alias], when)


def restore(config: Config, db: DbParams, source: str = "latest") -> Report:
    report = Report("restore")
    when = SUNDAY + timedelta(hours=1)
    dbs = {db.alias: db}
    restore_archive(config, dbs, db.alias, source, when, report, RestoreOptions(drop_old=True))
    return report


def test_restore_brings_back_exactly_the_state_at_backup_time(
    any_db: DbParams, config: Config
) -> None:
    data = adapter_for(any_db)
    data.populate()
    before = data.snapshot()
    assert before["sessions"] == 1
    assert before["counter"] > len(before["items"]) + 1

    report = backup(config, any_db)
    assert report.exit_code == 0, report.failed()

    data.mutate()
    assert data.snapshot() != before

    report = restore(config, any_db)
    assert report.exit_code == 0, report.failed()
    after = data.snapshot()
    # Session data is excluded by default (schema kept), so restored sessions are empty.
    assert after == {**before, "sessions": 0}


def test_backup_excludes_session_data_but_keeps_the_table(any_db: DbParams, config: Config) -> None:
    data = adapter_for(any_db)
    data.populate()
    backup(config, any_db)
    latest = next(config.backup_dir.glob("latest.*"))
    with archive.open_content(latest.resolve()) as reader:
        content = reader.read(-1)
    assert b"django_session" in content
    assert b"secret-session" not in content


def test_excluded_tables_are_configurable(any_db: DbParams, config: Config) -> None:
    import dataclasses

    data = adapter_for(any_db)
    data.populate()
    keep_sessions = dataclasses.replace(config, exclude_table_data=())
    backup(keep_sessions, any_db)
    data.execute("DELETE FROM django_session")
    assert restore(keep_sessions, any_db).exit_code == 0
    assert data.snapshot()["sessions"] == 1


def test_gzip_and_uncompressed_archives_round_trip(any_db: DbParams, config: Config) -> None:
    import dataclasses

    data = adapter_for(any_db)
    data.populate()
    before = data.snapshot()
    for compress, ext in (("gzip", ".gz"), ("none", "")):
        cfg = dataclasses.replace(config, compress=compress)
        assert backup(cfg, any_db).exit_code == 0
        latest = next(config.backup_dir.glob("latest.*"))
        assert latest.name.endswith(f".{'sqlite3' if data.kind == 'sqlite' else 'sql'}{ext}")
        data.mutate()
        assert restore(cfg, any_db).exit_code == 0
        assert data.snapshot() == {**before, "sessions": 0}
