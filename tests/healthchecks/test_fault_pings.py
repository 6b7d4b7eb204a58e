"""Healthchecks and faults together: what test_job_pings.py does not cover yet.

A signal still sends the final ping, as a failure; a failing job keeps its own exit status when
Healthchecks answers 500; a restore is not held up by a hanging server beyond the ping budget.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

import pytest
from dbdata import adapter_for
from hcserver import HCServer, Reply
from support.faultkit import (
    Run,
    assert_archives_verify,
    children,
    clean_env,
    running,
    state,
    step_failures,
    temp_files,
)
from support.mysql_lock import table_locked
from support.project import run_opskit, write_project
from support.waiting import wait_for

from opskit.engines import DbParams

UUID = "5b8c1d2e-3f40-4a51-8b62-7c9d0e1f2a3b"


def settings(ping_url: str) -> str:
    return (
        f"{{'HEALTHCHECKS': {{'backup': '{UUID}', 'restore': '{UUID}'}},"
        f" 'HEALTHCHECKS_PING_URL': '{ping_url}'}}"
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_during_a_backup_sends_the_final_ping_as_a_failure(
    mysql_db: DbParams, tmp_path: Path, signum: signal.Signals
) -> None:
    data = adapter_for(mysql_db)
    data.populate()
    data.execute("CREATE TABLE zz_locked (id int)")
    with HCServer() as hc:
        site = write_project(tmp_path / "site", {"default": mysql_db}, opskit=settings(hc.url))
        done = run_opskit("backup", cwd=site, env=clean_env())
        assert done.returncode == 0, done.stderr
        backups = site / "db_backups"
        before = state(backups)
        pings_before = len(hc.requests)

        with table_locked(mysql_db):  # the dump waits here
            run = Run("backup", cwd=site)
            try:
                (dump,) = wait_for(
                    lambda: [p for p in children(run.pid) if "--single-transaction" in p.argv],
                    "the dump tool to start",
                )
                wait_for(lambda: temp_files(backups), "the temp archive")
                run.signal(signum)
                stopped = run.finish(timeout=60)
                # Still under the table lock: a dump tool left behind would still be waiting.
                assert not running(dump.pid), "the dump tool outlived opskit"
            finally:
                run.stop()
        pings = hc.requests[pings_before:]

    assert stopped.returncode == 128 + signum, stopped.stderr
    assert signal.Signals(signum).name in stopped.stderr
    assert [p.path for p in pings] == [f"/{UUID}/start", f"/{UUID}/{128 + signum}"]
    assert pings[0].rid
    assert pings[0].rid == pings[1].rid
    assert b"event=dump_started" in pings[1].body  # the log tail says how far it got
    assert temp_files(backups) == [], stopped.stderr
    assert state(backups) == before
    assert assert_archives_verify(backups) == 1


def test_a_failing_backup_keeps_its_exit_status_when_healthchecks_answers_500(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "data" / "db.sqlite3"
    db_file.parent.mkdir()
    with sqlite3.connect(db_file) as conn:
        conn.execute("CREATE TABLE item (id INTEGER PRIMARY KEY)")
    conn.close()
    good = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name=str(db_file))
    down = DbParams(
        alias="reports",
        django_engine="django.db.backends.postgresql",
        name="reports",
        user="opskit",
        host="127.0.0.1",
        port="1",
    )
    with HCServer(default=500) as hc:
        site = write_project(
            tmp_path / "site", {"default": good, "reports": down}, settings(hc.url)
        )
        began = time.monotonic()
        done = run_opskit("backup", cwd=site, env=clean_env(OPSKIT_HEALTHCHECKS_BUDGET="2"))
        seconds = time.monotonic() - began
        paths = {r.path for r in hc.requests}

    assert done.returncode == 1, done.stderr  # the dump's error, and not one more for the pings
    (line,) = step_failures(done.stderr)
    assert "database=reports" in line
    assert "event=ping_failed" in done.stderr
    assert paths == {f"/{UUID}/start", f"/{UUID}/1"}  # it tried to report the 1, and retried
    assert seconds < 12
    assert assert_archives_verify(site / "db_backups") == 1


def test_a_hanging_healthchecks_delays_a_restore_by_at_most_the_budget(tmp_path: Path) -> None:
    db_file = tmp_path / "data" / "db.sqlite3"
    db = DbParams(alias="default", django_engine="django.db.backends.sqlite3", name=str(db_file))
    data = adapter_for(db)
    data.populate()
    with HCServer(default=Reply(hang=60)) as hc:
        site = write_project(tmp_path / "site", {"default": db}, settings(hc.url))
        env = clean_env(OPSKIT_HEALTHCHECKS_BUDGET="2", OPSKIT_HEALTHCHECKS_TIMEOUT="1")
        assert run_opskit("backup", cwd=site, env=env).returncode == 0
        backed_up = data.snapshot()
        data.mutate()
        began = time.monotonic()
        done = run_opskit("restore", "--yes", cwd=site, env=env)
        seconds = time.monotonic() - began
        restore_pings = [r.path for r in hc.requests if r.time >= began - 0.01]

    assert done.returncode == 0, done.stderr
    assert "event=ping_failed" in done.stderr
    assert data.snapshot() == {**backed_up, "sessions": 0}
    assert restore_pings
    assert restore_pings[0] == f"/{UUID}/start"
    assert seconds < 2 + 6  # the budget, plus the run itself
