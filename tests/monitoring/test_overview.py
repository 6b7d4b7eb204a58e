"""What the backups page is made of: runs from the JSON log, the chart, the whole overview."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import datetime
from pathlib import Path

from support.project import run_opskit, write_project

from opskit import overview
from opskit.config import build_config
from opskit.engines import DbParams
from opskit.monitoring import chart, runlog
from opskit.monitoring.runlog import Dump


def write_log(path: Path, events: list[dict[str, object]], junk: bool = False) -> None:
    lines = [json.dumps(e) for e in events]
    if junk:
        lines.insert(1, "not json {")
    path.write_text("\n".join(lines) + "\n")


def backup_done(n: int, size: int, errors: int = 0) -> dict[str, object]:
    return {
        "event": "database_done",
        "job": "backup",
        "database": "default",
        "errors": errors,
        "duration": 1.0 + n,
        "bytes": size,
        "raw_bytes": size * 3,
        "timestamp": f"2026-11-{n + 1:02d}T02:00:00",
    }


def test_runs_are_each_jobs_last_ones_newest_first_with_their_exit_status(
    tmp_path: Path,
) -> None:
    log = tmp_path / "opskit.json.log"
    events: list[dict[str, object]] = [
        {"event": "job_finished", "job": "backup", "errors": 0, "duration": 2.5, "bytes": 10},
        {"event": "job_finished", "job": "backup", "errors": 70, "duration": 1.0, "bytes": 0},
        {"event": "job_interrupted", "job": "restore", "exit_status": 143, "reason": "SIGTERM"},
        {"event": "latest_linked", "database": "default"},
    ]
    write_log(log, events, junk=True)
    found = runlog.runs(runlog.read_tail(log))
    assert [r.exit_status for r in found["backup"]] == [63, 0]  # capped as the exit status is
    assert found["restore"][0].exit_status == 143
    assert found["restore"][0].stopped == "SIGTERM"


def test_only_the_end_of_a_long_log_is_read(tmp_path: Path) -> None:
    log = tmp_path / "opskit.json.log"
    write_log(log, [backup_done(n % 28, 1000 + n) for n in range(500)])
    events = runlog.read_tail(log, limit=4096)
    assert 0 < len(events) < 500
    assert events[-1]["bytes"] == 1499
    assert len(runlog.dumps(runlog.read_tail(log), "default")) == 60


def test_a_sudden_drop_in_size_is_flagged_and_failures_are_not(tmp_path: Path) -> None:
    sizes = [1000, 1020, 990, 0, 1010, 300, 1000, 990]
    flags = chart.drops(sizes)
    assert flags == [False, False, False, False, False, True, False, False]
    assert round(chart.fall(sizes, 5), 2) == 0.7
    # Slow growth and a single small first run are no drops.
    assert not any(chart.drops([100, 150, 200, 300, 450]))


def test_the_chart_draws_every_run_and_marks_the_drop() -> None:
    points = [
        Dump(f"2026-11-{n:02d}T02:00", size, 0, 2.0, failed)
        for n, (size, failed) in enumerate(
            [(5000, False), (5100, False), (0, True), (5200, False), (900, False)], 1
        )
    ]
    svg = chart.render(points, "size & <duration>")
    assert svg.startswith("<svg")
    assert svg.endswith("</svg>")
    assert "<title>size &amp; &lt;duration&gt;</title>" in svg
    assert len(re.findall(r'<rect class="bar', svg)) == 4
    assert len(re.findall(r'class="bar drop"', svg)) == 1
    assert 'class="failed"' in svg
    assert "&#8722;82%" in svg
    assert "no backups in the log yet" in chart.render([], "empty")


def test_the_overview_of_a_real_project(sqlite_db: DbParams, tmp_path: Path) -> None:
    site = write_project(tmp_path / "site", {"default": sqlite_db})
    with sqlite3.connect(sqlite_db.name) as conn:
        conn.execute("CREATE TABLE t (x TEXT)")
    conn.close()
    for _ in range(2):
        assert run_opskit("backup", cwd=site).returncode == 0
    assert run_opskit("verify", cwd=site).returncode == 0
    # The manifest names the project's settings module; the catalog checks that too.
    module = next(p.stem for p in site.glob("settings_*.py"))
    config = build_config(
        project_dir=site, settings_module=module, environ={}, secret_keys=("test-only",)
    )
    found = overview.collect(config, {"default": sqlite_db}, datetime.now().astimezone())
    (view,) = found.databases
    (row,) = view.archives
    assert row["latest"]
    assert row["status"] == "verified"
    assert row["weekday"] in row["slot"]
    assert row["last_check"]["ok"] is True
    assert len(view.dumps) == 2
    assert "<svg" in view.chart
    assert [r.exit_status for r in found.runs["backup"]] == [0, 0]
    assert found.maintenance.empty
