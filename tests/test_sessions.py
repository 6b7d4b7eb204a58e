"""opskit clear-sessions: expired sessions go, live ones stay, on every engine, as a real job."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from dbdata import adapter_for
from hcserver import HCServer
from support.project import run_opskit, write_project

from opskit.engines import DbParams

UUID = "5bf66975-d4c7-4bf5-bcc8-b8d8a82ea278"
ROWS = (
    "INSERT INTO django_session (session_key, session_data, expire_date) VALUES"
    " ('old1', 'x', '2000-01-01 00:00:00'),"
    " ('old2', 'x', '2001-06-30 12:00:00'),"
    " ('live', 'x', '2999-01-01 00:00:00')"
)


def settings_file(project: Path) -> Path:
    """Return the settings module that write_project chose for ``project``."""
    match = re.search(r"'(settings_\w+)'", (project / "manage.py").read_text())
    assert match
    return project / f"{match[1]}.py"


def project_for(folder: Path, db: DbParams, extra: str = "") -> Path:
    """Write a project for ``db``; MySQL needs PyMySQL standing in for mysqlclient."""
    project = write_project(folder, {"default": db})
    settings = settings_file(project)
    text = settings.read_text() + extra
    if "mysql" in db.django_engine:
        text = "import pymysql\npymysql.install_as_MySQLdb()\n" + text
    settings.write_text(text)
    return project


def migrate_sessions(project: Path) -> None:
    """Create django_session the way a deployment does: Django's migrate."""
    env = {**os.environ, "PYTHONPATH": str(project)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    settings = f"--settings={settings_file(project).stem}"
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "sessions", "-v0", settings],
        cwd=project,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )


def test_expired_sessions_are_removed_and_live_ones_stay(tmp_path: Path, any_db: DbParams) -> None:
    project = project_for(tmp_path / "site", any_db)
    migrate_sessions(project)
    data = adapter_for(any_db)
    data.execute(ROWS)

    done = run_opskit("--project-dir", project, "clear-sessions")

    assert done.returncode == 0, done.stderr
    assert data.query("SELECT session_key FROM django_session") == [("live",)]
    assert done.stdout == "default: removed 2 expired sessions, 1 left\n"
    assert "event=sessions_cleared" in done.stderr
    assert "removed=2" in done.stderr
    log = (project / "logs" / "opskit.json.log").read_text()
    assert '"removed": 2' in log
    assert '"remaining": 1' in log


def test_nothing_expired_is_a_clean_run(tmp_path: Path, sqlite_db: DbParams) -> None:
    project = project_for(tmp_path / "site", sqlite_db)
    migrate_sessions(project)

    done = run_opskit("--project-dir", project, "clear-sessions")

    assert done.returncode == 0, done.stderr
    assert done.stdout == "default: removed 0 expired sessions, 0 left\n"


def test_signed_cookie_sessions_fail_the_step_and_say_what_to_do(
    tmp_path: Path, sqlite_db: DbParams
) -> None:
    engine = "SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'\n"
    project = project_for(tmp_path / "site", sqlite_db, engine)

    done = run_opskit("--project-dir", project, "clear-sessions")

    assert done.returncode == 1
    assert "does not support clear_expired()" in done.stderr
    assert "remove clear-sessions from crontab.txt" in done.stderr
    assert "opskit clear-sessions: 1 error" in done.stderr


def test_engine_without_clear_expired_fails_with_djangos_reason(
    tmp_path: Path, sqlite_db: DbParams
) -> None:
    project = project_for(tmp_path / "site", sqlite_db, "SESSION_ENGINE = 'keepall'\n")
    (project / "keepall.py").write_text(
        "from django.contrib.sessions.backends.base import SessionBase\n\n\n"
        "class SessionStore(SessionBase):\n    pass\n"
    )

    done = run_opskit("--project-dir", project, "clear-sessions")

    assert done.returncode == 1
    assert "session engine 'keepall' does not support clear_expired()" in done.stderr
    assert "implement SessionStore.clear_expired()" in done.stderr


def test_missing_session_table_is_one_failed_step_pointing_at_migrate(
    tmp_path: Path, sqlite_db: DbParams
) -> None:
    project = project_for(tmp_path / "site", sqlite_db)
    sqlite3.connect(sqlite_db.name).close()  # the database is there, its tables are not

    done = run_opskit("--project-dir", project, "clear-sessions")

    assert done.returncode == 1
    assert "no such table: django_session" in done.stderr
    assert "manage.py migrate sessions" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_is_reported_to_healthchecks_with_its_exit_status(
    tmp_path: Path, sqlite_db: DbParams
) -> None:
    engine = "SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'\n"
    project = project_for(tmp_path / "site", sqlite_db, engine)
    with HCServer() as hc:
        done = run_opskit(
            "--project-dir",
            project,
            "clear-sessions",
            "--hc",
            UUID,
            env={"OPSKIT_HEALTHCHECKS_PING_URL": hc.url},
        )
        paths = [r.path for r in hc.requests]

    assert done.returncode == 1, done.stderr
    assert paths == [f"/{UUID}/start", f"/{UUID}/1"]
    assert b"clear_expired()" in hc.requests[-1].body
