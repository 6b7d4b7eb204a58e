"""Dump-size anomalies: a database that lost most of its rows must not look like a good night."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hcserver import HCServer
from support.project import run_opskit, write_project

from opskit.engines import DbParams
from opskit.mail import compose, subject
from opskit.monitoring import anomaly
from opskit.report import Report

UUID = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"


def entry(raw: int, rows: int | None = None, **extra: object) -> dict[str, object]:
    return {"raw_size": raw, "size": raw // 4, "rows": rows, "file": "x", **extra}


def test_a_dump_under_half_the_median_is_an_anomaly() -> None:
    history = [entry(1000), entry(1100), entry(900), entry(5000)]
    assert anomaly.assess(history, entry(600), 0.5).anomaly == ""
    found = anomaly.assess(history, entry(400), 0.5).anomaly
    assert found.startswith("the dump is 400 B, 38% of the usual 1.0 KB")
    assert "median of the last 4 runs" in found


def test_rows_are_compared_when_they_were_counted() -> None:
    history = [entry(1000, 100), entry(1000, 104), entry(1000, 98)]
    assert (
        "it holds 40 rows, against a usual 100"
        in anomaly.assess(history, entry(1000, 40), 0.5).anomaly
    )


def test_too_few_runs_or_a_zero_ratio_judge_nothing() -> None:
    assert anomaly.assess([entry(1000)], entry(1), 0.5).anomaly == ""
    assert anomaly.assess([entry(1000)] * 7, entry(1), 0).anomaly == ""


def test_an_acknowledged_run_starts_a_new_baseline() -> None:
    history = [entry(1000)] * 5 + [entry(300, acknowledged=True), entry(310)]
    assert anomaly.assess(history, entry(290), 0.5).anomaly == ""


def test_the_mail_names_the_warnings() -> None:
    report = Report("backup")
    warnings = ["database default: the dump is 3 MB, 38% of the usual 8 MB"]
    assert subject(report, "web1", warnings) == "[opskit] backup on web1: 0 errors, 1 warning"
    text, page = compose(report, "web1", "log", (), warnings)
    assert "Warnings:\n  database default: the dump is 3 MB" in text
    assert "<b>Warning:</b> database default" in page


@pytest.fixture
def hc() -> Iterator[HCServer]:
    with HCServer() as server:
        yield server


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}


def test_a_dump_60_percent_smaller_warns_and_fails_check_until_acknowledged(
    hc: HCServer, tmp_path: Path
) -> None:
    db_file = tmp_path / "data" / "db.sqlite3"
    db_file.parent.mkdir()
    with sqlite3.connect(db_file) as conn:
        conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany(
            "INSERT INTO item (name) VALUES (?)", [(f"row {i} " * 20,) for i in range(2000)]
        )
    conn.close()
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name=str(db_file))
    settings = (
        f"{{'HEALTHCHECKS': {{'backup': '{UUID}'}}, 'HEALTHCHECKS_PING_URL': '{hc.url}',"
        " 'COUNT_ROWS': True}"
    )
    site = write_project(tmp_path / "site", {"default": db}, opskit=settings)
    for _ in range(3):
        done = run_opskit("backup", cwd=site, env=clean_env())
        assert done.returncode == 0, done.stderr
        assert "dump_smaller_than_usual" not in done.stderr
    assert run_opskit("check", "--only", "size", cwd=site, env=clean_env()).returncode == 0

    with sqlite3.connect(db_file) as conn:
        conn.execute("DELETE FROM item WHERE id > 800")  # 60% of the rows gone
    conn.execute("VACUUM")
    conn.close()
    done = run_opskit("backup", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr  # a warning, not an error
    assert "level=warning event=dump_smaller_than_usual database=default" in done.stderr
    assert "it holds 800 rows, against a usual 2000" in done.stderr
    body = hc.requests[-1].body.decode()
    assert hc.requests[-1].path == f"/{UUID}/0"
    assert "event=dump_smaller_than_usual" in body
    assert "warnings: 1" in body

    found = run_opskit("check", "--only", "size", cwd=site, env=clean_env())
    assert found.returncode == 1
    assert found.stdout.startswith("FAIL  size:default: ")
    assert "opskit check --ack-size default" in found.stdout

    acked = run_opskit(
        "check", "--only", "size", "--ack-size", "default", cwd=site, env=clean_env()
    )
    assert acked.returncode == 0, acked.stdout + acked.stderr
    assert "is now its usual size" in acked.stderr
    assert "(acknowledged)" in acked.stdout
    history = json.loads((site / "db_backups" / anomaly.HISTORY).read_text())["runs"]
    assert [bool(r.get("anomaly")) for r in history] == [False, False, False, True]
    assert history[-1]["acknowledged"] is True
    assert (site / "db_backups" / anomaly.HISTORY).stat().st_mode & 0o777 == 0o600


def test_without_a_history_file_the_manifests_are_the_history(tmp_path: Path) -> None:
    folder = tmp_path / "db_backups"
    folder.mkdir()
    for slot, raw, day in (("1-Monday", 1000, 1), ("2-Tuesday", 1100, 2), ("3-Wednesday", 300, 3)):
        (folder / f"{slot}.sql.zst").write_bytes(b"x")
        manifest = {
            "engine": "sqlite",
            "sha256": "0" * 64,
            "size": 1,
            "raw_size": raw,
            "finished_at": datetime(2026, 11, day, 2).astimezone().isoformat(),
        }
        (folder / f"{slot}.sql.zst.json").write_text(json.dumps(manifest))
    newest = anomaly.newest(folder, 0.5)
    assert newest is not None
    assert newest["raw_size"] == 300
    assert "of the usual" in newest["anomaly"]
