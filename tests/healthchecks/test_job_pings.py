"""Job runs ping Healthchecks end to end: a real `opskit backup` process and a real server."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hcserver import HCServer, Reply
from support.project import run_opskit, write_project

from opskit import __version__
from opskit.engines import DbParams

UUID = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"
FLAG_UUID = "0e1f2a3b-3f40-4a51-8b62-7c9d5b8c1d2e"
ENV_UUID = "7c9d0e1f-2a3b-4a51-8b62-5b8c1d2e3f40"
PASSWORD = "pw-Vq8rZ2xK"  # ignored by SQLite, but opskit must treat it as a secret


@pytest.fixture
def hc() -> Iterator[HCServer]:
    with HCServer() as server:
        yield server


def sqlite_db(path: Path, alias: str = "default", password: str = "") -> DbParams:
    return DbParams(
        alias=alias, django_engine="django.db.backends.sqlite3", name=str(path), password=password
    )


def project(tmp_path: Path, ping_url: str, **extra: DbParams) -> Path:
    """A project with one real SQLite database (plus ``extra``) and a check for backup."""
    db_file = tmp_path / "data" / "db.sqlite3"
    db_file.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db_file) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS item (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO item (name) VALUES ('one')")
    settings = f"{{'HEALTHCHECKS': {{'backup': '{UUID}'}}, 'HEALTHCHECKS_PING_URL': '{ping_url}'}}"
    databases = {"default": sqlite_db(db_file, password=PASSWORD), **extra}
    return write_project(tmp_path / "site", databases, opskit=settings)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    return {**env, **extra}


def backup(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_opskit(*args, "backup", cwd=site, env=clean_env(**env), timeout=90)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_backup_pings_start_then_0_with_the_log_tail_ending_in_the_summary(
    hc: HCServer, tmp_path: Path
) -> None:
    done = backup(project(tmp_path, hc.url))
    assert done.returncode == 0, done.stderr
    start, final = hc.requests
    assert (start.path, final.path) == (f"/{UUID}/start", f"/{UUID}/0")
    assert start.rid
    assert start.rid == final.rid
    body = final.body.decode()
    assert "event=dump_started" in body
    assert "event=job_finished" in body
    summary = body[body.index("--- opskit summary ---") :].splitlines()
    assert summary[1:] == [
        "job: backup",
        f"host: {socket.gethostname()}",
        "databases: default",
        summary[4],
        summary[5],
        f"opskit: {__version__}",
        "exit_status: 0",
    ]
    assert summary[4].startswith("bytes: ")
    assert summary[5].startswith("duration: ")
    assert body.endswith("exit_status: 0\n")
    assert not re.search("error|fail", body, re.I)  # a failure keyword filter reads it right


def test_a_failing_backup_pings_its_error_count(hc: HCServer, tmp_path: Path) -> None:
    unreachable = DbParams(
        alias="reports",
        django_engine="django.db.backends.postgresql",
        name="reports",
        user="opskit",
        host="127.0.0.1",
        port="1",
    )
    done = backup(project(tmp_path, hc.url, reports=unreachable))
    assert done.returncode == 1, done.stderr
    assert [r.path for r in hc.requests] == [f"/{UUID}/start", f"/{UUID}/1"]
    body = hc.requests[-1].body.decode()
    assert "event=step_failed" in body
    assert "database=reports" in body
    assert "errors: 1" in body
    assert "databases: default, reports" in body


def test_the_hc_flag_and_the_environment_override_the_settings(
    hc: HCServer, tmp_path: Path
) -> None:
    site = project(tmp_path, hc.url)
    assert backup(site, OPSKIT_HC_BACKUP=ENV_UUID).returncode == 0
    done = run_opskit(
        "backup", "--hc", FLAG_UUID, cwd=site, env=clean_env(OPSKIT_HC_BACKUP=ENV_UUID)
    )
    assert done.returncode == 0
    assert [r.path for r in hc.requests] == [
        f"/{ENV_UUID}/start",
        f"/{ENV_UUID}/0",
        f"/{FLAG_UUID}/start",
        f"/{FLAG_UUID}/0",
    ]


def test_a_dead_hanging_or_failing_server_never_changes_the_exit_status(tmp_path: Path) -> None:
    # Each case uses up the ping budget (set to 5 s here), so they run side by side.
    with HCServer(default=Reply(hang=60)) as hanging, HCServer(default=500) as failing:
        sites = {
            "dead": project(tmp_path / "dead", dead_url()),
            "hanging": project(tmp_path / "hanging", hanging.url),
            "500": project(tmp_path / "500", failing.url),
        }

        def timed(site: Path) -> tuple[subprocess.CompletedProcess[str], float]:
            began = time.monotonic()
            env = {"OPSKIT_HEALTHCHECKS_BUDGET": "5", "OPSKIT_HEALTHCHECKS_START_BUDGET": "2"}
            return backup(site, **env), time.monotonic() - began

        with ThreadPoolExecutor(3) as pool:
            results = dict(zip(sites, pool.map(timed, sites.values()), strict=True))
        assert len(failing.requests) >= 2  # it retried on 500
    for name, (done, seconds) in results.items():
        assert done.returncode == 0, (name, done.stderr)
        assert seconds < 15, name  # the bounds (2 s + 5 s) limit the delay the pings add
        assert "event=ping_failed" in done.stderr, name
        assert list((sites[name] / "db_backups").glob("latest.*")), name


def test_strict_ping_counts_a_failed_ping_as_an_error(hc: HCServer, tmp_path: Path) -> None:
    site = project(tmp_path, hc.url)
    hc.script(404, 404)
    assert backup(site).returncode == 0
    hc.script(404, 404)
    done = backup(site, OPSKIT_STRICT_PING="1")
    assert done.returncode == 1
    assert "unknown check" in done.stderr
    assert "opskit backup: 1 error," in done.stderr
    hc.script(404, 404)
    assert backup(site, "--strict-ping").returncode == 1


def test_a_database_password_never_reaches_a_ping_body(hc: HCServer, tmp_path: Path) -> None:
    # The second database's file name holds its password, so the failure message holds it too.
    leaky = sqlite_db(tmp_path / f"missing-{PASSWORD}" / "db.sqlite3", "leaky", PASSWORD)
    done = backup(project(tmp_path, hc.url, leaky=leaky))
    assert done.returncode == 1
    body = hc.requests[-1].body.decode()
    assert "event=step_failed" in body
    assert "missing-********" in body
    assert all(PASSWORD.encode() not in r.body for r in hc.requests)
    assert PASSWORD not in done.stderr


# Scaled down from a server that holds connections for its first 32 s, with opskit's
# defaults of 10 s for the start ping, 10 s per attempt and 30 s for the final ping: the
# same order of events, a tenth of the time. One real-length case is marked slow.
SCALED = {
    "OPSKIT_HEALTHCHECKS_START_BUDGET": "1",
    "OPSKIT_HEALTHCHECKS_TIMEOUT": "1",
    "OPSKIT_HEALTHCHECKS_BUDGET": "3",
}


def test_a_start_ping_that_hangs_never_silences_the_final_ping(tmp_path: Path) -> None:
    with HCServer(stall=3.2) as hc:
        site = project(tmp_path, hc.url)
        began = time.monotonic()
        done = backup(site, **SCALED)
        seconds = time.monotonic() - began
        pings = hc.requests
    assert done.returncode == 0, done.stderr
    assert "event=ping_failed" in done.stderr
    assert "kind=start" in done.stderr
    assert "timed out after 1.0s" in done.stderr
    start, *tries = pings
    assert start.path == f"/{UUID}/start"
    assert start.time < hc.started + 3.2
    assert {t.path for t in tries} == {f"/{UUID}/0"}
    assert start.rid == tries[-1].rid
    assert "kind=0" not in done.stderr  # the final ping arrived: no warning for it
    assert seconds < 1 + 3 + 8  # the two bounds, plus the backup itself


def test_run_reports_the_result_after_a_start_ping_that_hung(tmp_path: Path) -> None:
    with HCServer(stall=3.2) as hc:
        done = run_opskit(
            "run", "--hc", UUID, "--ping-url", hc.url, "--", "true", env=clean_env(**SCALED)
        )
        paths = [r.path for r in hc.requests]
    assert done.returncode == 0, done.stderr
    assert paths[0] == f"/{UUID}/start"
    assert paths[-1] == f"/{UUID}/0"
    assert "kind=start" in done.stderr
    assert "kind=0" not in done.stderr


@pytest.mark.slow
def test_a_32_second_hang_at_start_with_the_default_bounds_still_reports_the_result(
    tmp_path: Path,
) -> None:
    """The real length, with opskit's default bounds (takes about 33 s)."""
    with HCServer(stall=32) as hc:
        done = backup(project(tmp_path, hc.url))
        pings = hc.requests
    assert done.returncode == 0, done.stderr
    assert pings[0].path == f"/{UUID}/start"
    assert pings[-1].path == f"/{UUID}/0"
    assert "kind=start" in done.stderr
    assert "timed out after 10.0s" in done.stderr
    assert "kind=0" not in done.stderr  # the final ping got through once the server answered


def test_a_malformed_check_in_the_settings_is_an_error_and_the_backup_still_runs(
    hc: HCServer, tmp_path: Path
) -> None:
    site = project(tmp_path, hc.url)
    done = backup(site, OPSKIT_HC_BACKUP="Xq3vT9bLmN2pR7sK4wYz1A/Nightly")
    assert done.returncode == 1
    assert "upper-case letters" in done.stderr
    assert "event=step_failed step=ping" in done.stderr
    assert list((site / "db_backups").glob("latest.*"))
    assert hc.requests == []


@pytest.mark.parametrize("spec", ["not a check", "k/Upper", f"{UUID}x"])
def test_a_malformed_hc_flag_is_a_usage_error_that_runs_nothing(
    hc: HCServer, tmp_path: Path, spec: str
) -> None:
    site = project(tmp_path, hc.url)
    done = run_opskit("backup", "--hc", spec, cwd=site, env=clean_env())
    assert done.returncode == 64, done.stderr
    assert "--hc" in done.stderr
    assert not (site / "db_backups").exists()
    assert hc.requests == []


def test_every_log_timestamp_is_utc_with_its_offset(hc: HCServer, tmp_path: Path) -> None:
    site = project(tmp_path, hc.url)
    done = backup(site)
    assert done.returncode == 0
    stamps = re.findall(r"timestamp=(\S+)", done.stderr)
    with (site / "logs" / "opskit.json.log").open() as fh:
        stamps += [json.loads(line)["timestamp"] for line in fh]
    assert stamps
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", stamp), stamp
