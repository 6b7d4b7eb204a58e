"""python manage.py opskit: the same CLI inside the project's own Django."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from support.project import run_opskit
from support.services import psql

from opskit.engines import DbParams

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop_settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def write_site(folder: Path, db: DbParams) -> Path:
    """A project with opskit in INSTALLED_APPS, its PostgreSQL database, and one that is down."""
    folder.mkdir()
    (folder / "manage.py").write_text(MANAGE)
    conf = {"ENGINE": db.django_engine, "NAME": db.name, "USER": db.user, "HOST": db.host}
    down = {**conf, "NAME": "nowhere", "PORT": "1"}
    (folder / "shop_settings.py").write_text(
        "SECRET_KEY = 'test-only'\nUSE_TZ = True\n"
        "INSTALLED_APPS = ['django.contrib.admin', 'django.contrib.auth',"
        " 'django.contrib.contenttypes', 'django.contrib.sessions', 'django.contrib.messages',"
        " 'opskit']\n"
        f"DATABASES = {{'default': {{**{conf!r}, 'PORT': {db.port!r}}}, 'down': {down!r}}}\n"
    )
    return folder


def manage(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run(
        [sys.executable, site / "manage.py", "opskit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def dump_of(archive: Path) -> bytes:
    """The dump, less pg_dump's random \\restrict key (new in every dump)."""
    data = zstandard.ZstdDecompressor().stream_reader(archive.open("rb")).read()
    return re.sub(rb"(?m)^\\(un)?restrict \S+$", b"", data)


@pytest.mark.postgresql
def test_manage_py_opskit_and_opskit_give_the_same_archive_and_exit_status(
    tmp_path: Path, pg_db: DbParams
) -> None:
    psql("CREATE TABLE item (id int PRIMARY KEY, name text)", db=pg_db.name)
    psql("INSERT INTO item SELECT i, 'n' || i FROM generate_series(1, 50) i", db=pg_db.name)
    site = write_site(tmp_path / "shop", pg_db)
    folder = site / "db_backups"

    # manage.py from another folder: the project is manage.py's, as for any manage.py command.
    hosted = manage(site, "backup", cwd=tmp_path)
    hosted_dump = dump_of(next(folder.glob("?-*.sql.zst")))
    hosted_manifest = json.loads(next(folder.glob("?-*.sql.zst.json")).read_text())
    plain = run_opskit("backup", cwd=site)
    plain_manifest = json.loads(next(folder.glob("?-*.sql.zst.json")).read_text())

    # One database down: 1 error either way, the other backed up either way.
    assert hosted.returncode == plain.returncode == 1, hosted.stderr
    assert hosted.stdout == plain.stdout
    assert hosted.stdout.startswith("default: ")
    assert "opskit backup: 1 error, 2 database(s)" in hosted.stderr
    assert dump_of(next(folder.glob("?-*.sql.zst"))) == hosted_dump
    for key in ("database", "engine", "raw_size", "identity"):
        assert hosted_manifest[key] == plain_manifest[key]
    assert hosted_manifest["identity"]["database"] == pg_db.name
    events = [
        json.loads(line) for line in (site / "logs" / "opskit.json.log").read_text().splitlines()
    ]
    finished = [e for e in events if e["event"] == "job_finished"]
    assert [e["errors"] for e in finished] == [1, 1]


def test_manage_py_opskit_speaks_with_the_same_usage_errors_and_help(tmp_path: Path) -> None:
    db = DbParams("default", "django.db.backends.postgresql", "x", "postgres", "", "127.0.0.1")
    site = write_site(tmp_path / "shop", db)

    bad = manage(site, "restore", "funday", cwd=tmp_path)
    same = manage(site, "--settings", "shop_settings", "list", "--json", cwd=tmp_path)
    shown = manage(site, "--help", cwd=tmp_path)

    assert bad.returncode == 64
    assert "'funday' is not latest, a weekday" in bad.stderr
    assert same.returncode == 0
    assert json.loads(same.stdout)[0]["folder"] == str(site / "db_backups")
    assert shown.returncode == 0
    assert "manage.py opskit [OPTIONS] COMMAND" in shown.stdout
