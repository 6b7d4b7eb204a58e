"""The node_exporter textfile: valid exposition format, atomic, merged across jobs and runs."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.project import run_opskit, write_project

from opskit.engines import DbParams
from opskit.monitoring import metrics
from opskit.report import Report


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parse a textfile with prometheus_client's own parser: (name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge"
        assert family.documentation
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def backup_report(errors: bool = False) -> Report:
    report = Report("backup")
    with report.step("dump", "default"):
        pass
    report.details["default"] = {"archive": "x", "bytes": 120, "raw_bytes": 900, "rows": 42}
    if errors:
        report.fail("dump", "reports", "the server is down")
    return report


def test_a_run_writes_every_series_in_valid_exposition_format(tmp_path: Path) -> None:
    path = tmp_path / "opskit.prom"
    run = metrics.Run.of("backup", backup_report(), 0, 1000.0, 1012.5)
    assert metrics.record(path, run)
    found = samples(path)
    job = (("job_name", "backup"),)
    db = (("database", "default"), ("job_name", "backup"))
    assert found[("opskit_job_last_run_timestamp_seconds", job)] == 1012.5
    assert found[("opskit_job_last_success_timestamp_seconds", job)] == 1012.5
    assert found[("opskit_job_exit_status", job)] == 0
    assert found[("opskit_job_duration_seconds", job)] == 12.5
    assert found[("opskit_database_errors", db)] == 0
    assert found[("opskit_database_last_success_timestamp_seconds", db)] == 1012.5
    own = (("database", "default"),)
    assert found[("opskit_backup_dump_bytes", own)] == 900
    assert found[("opskit_backup_archive_bytes", own)] == 120
    assert found[("opskit_backup_rows", own)] == 42
    assert found[("opskit_backup_size_anomaly", own)] == 0


def test_a_failed_run_keeps_the_last_success_time_and_other_jobs_series(tmp_path: Path) -> None:
    path = tmp_path / "opskit.prom"
    metrics.record(path, metrics.Run.of("backup", backup_report(), 0, 1000.0, 1010.0))
    metrics.record(path, metrics.Run("clear-sessions", 0, 1100.0, 1101.0))
    metrics.record(path, metrics.Run.of("backup", backup_report(errors=True), 1, 2000.0, 2010.0))
    found = samples(path)
    job = (("job_name", "backup"),)
    assert found[("opskit_job_last_run_timestamp_seconds", job)] == 2010
    assert found[("opskit_job_last_success_timestamp_seconds", job)] == 1010
    assert found[("opskit_job_exit_status", job)] == 1
    reports = (("database", "reports"), ("job_name", "backup"))
    assert found[("opskit_database_errors", reports)] == 1
    assert ("opskit_database_last_success_timestamp_seconds", reports) not in found
    sessions = (("job_name", "clear-sessions"),)
    assert found[("opskit_job_last_success_timestamp_seconds", sessions)] == 1101


def test_the_file_is_world_readable_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "opskit.prom"
    metrics.record(path, metrics.Run("check", 2, 1.0, 2.0))
    inode = path.stat().st_ino
    metrics.record(path, metrics.Run("check", 0, 3.0, 4.0))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.stat().st_ino != inode  # a new file renamed over the old one
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["opskit.prom"]


def test_label_values_are_escaped_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "opskit.prom"
    odd = 'export "nightly"\\x'
    metrics.record(path, metrics.Run(odd, 0, 1.0, 2.0))
    metrics.record(path, metrics.Run("other", 0, 1.0, 2.0))
    assert samples(path)[("opskit_job_exit_status", (("job_name", odd),))] == 0


def test_a_folder_that_cannot_be_written_is_a_warning_not_an_exception(tmp_path: Path) -> None:
    assert not metrics.record(tmp_path / "missing" / "opskit.prom", metrics.Run("x", 0, 1, 2))


@pytest.fixture
def site(tmp_path: Path) -> Path:
    db_file = tmp_path / "data" / "db.sqlite3"
    db_file.parent.mkdir()
    with sqlite3.connect(db_file) as conn:
        conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO item (name) VALUES (?)", [("x",)] * 30)
    conn.close()
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name=str(db_file))
    prom = tmp_path / "textfile" / "opskit.prom"
    prom.parent.mkdir()
    settings = f"{{'METRICS_FILE': '{prom}', 'COUNT_ROWS': True}}"
    return write_project(tmp_path / "site", {"default": db}, opskit=settings)


def test_real_jobs_write_the_textfile_node_exporter_reads(site: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    assert run_opskit("backup", cwd=site, env=env).returncode == 0
    assert run_opskit("check", "--only", "latest", cwd=site, env=env).returncode == 0
    found = samples(tmp_path / "textfile" / "opskit.prom")
    own = (("database", "default"),)
    assert found[("opskit_backup_rows", own)] == 30
    assert found[("opskit_backup_dump_bytes", own)] > found[("opskit_backup_archive_bytes", own)]
    for job in ("backup", "check"):
        assert found[("opskit_job_exit_status", (("job_name", job),))] == 0
    done = run_opskit("run", "--job", "export", "--", "sh", "-c", "exit 3", cwd=site, env=env)
    assert done.returncode == 3
    found = samples(tmp_path / "textfile" / "opskit.prom")
    assert found[("opskit_job_exit_status", (("job_name", "export"),))] == 3
