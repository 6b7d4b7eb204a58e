"""opskit check through real processes: a healthy project passes, each fault FAILs with its fix."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hcserver import HCServer
from support import cron
from support.cron import fake_proc
from support.project import OPSKIT, run_opskit, write_project
from support.services import PG, need_tools, unavailable

from opskit.archive import manifest as manifests
from opskit.engines import DbParams

UUID = "5bf68b1e-8a94-4bb2-9a5b-1c8e0b6f3a11"
API_KEY = "k" * 32
PING_KEY = "Xq3vT9bLmN2pR7sK4wYz1A"
# Runs the CLI with `check` added, for as long as opskit.cli does not register it itself.
LINE = re.compile(r"^(OK|WARN|FAIL|SKIP)\s+(\S+): (.*)$")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPSKIT_")}
    return {**env, **extra}


def check(
    site: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``opskit check`` in ``site``; every run's exit status must equal its FAIL lines."""
    full = clean_env(**(env or {}))
    full.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [str(OPSKIT), *map(str, args)],
        cwd=site,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if "--json" in args and done.stdout.strip():
        fails = sum(row["status"] == "FAIL" for row in json.loads(done.stdout))
    else:
        fails = sum(line.startswith("FAIL") for line in done.stdout.splitlines())
    assert done.returncode == min(fails, 63), done.stdout + done.stderr
    return done


def lines(done: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """Map each check's name to (status, rest of its line)."""
    found = {}
    for line in done.stdout.splitlines():
        match = LINE.match(line)
        assert match, line
        found[match.group(2)] = (match.group(1), match.group(3))
    return found


def migrate(site: Path) -> None:
    module = re.search(r"settings_\w+", (site / "manage.py").read_text())
    assert module
    code = (
        "import django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
    )
    env = {**clean_env(), "DJANGO_SETTINGS_MODULE": module.group(0), "PYTHONPATH": str(site)}
    subprocess.run([sys.executable, "-c", code], cwd=site, env=env, check=True, timeout=60)


def settings_file(site: Path) -> Path:
    return next(site.glob("settings_*.py"))


@pytest.fixture
def hc() -> Iterator[HCServer]:
    with HCServer() as server:
        yield server


def sqlite(path: Path, alias: str = "default") -> DbParams:
    return DbParams(alias=alias, django_engine="django.db.backends.sqlite3", name=str(path))


def make_site(tmp_path: Path, opskit: str = "{}", **extra: DbParams) -> Path:
    """A migrated SQLite project in a folder named ``site``."""
    db = sqlite(tmp_path / "site" / "db.sqlite3")
    site = write_project(tmp_path / "site", {"default": db, **extra}, opskit=opskit)
    migrate(site)
    return site


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A healthy project: migrated, and backed up once."""
    site = make_site(tmp_path)
    done = run_opskit("backup", cwd=site, env=clean_env())
    assert done.returncode == 0, done.stderr
    return site


@pytest.fixture
def cron_env(tmp_path: Path) -> dict[str, str]:
    return cron.cron_env(tmp_path)


def test_every_check_passes_in_a_healthy_project(tmp_path: Path, cron_env: dict[str, str]) -> None:
    with HCServer(api_key=API_KEY, ping_key=PING_KEY) as hc:
        opskit = (
            f"{{'HEALTHCHECKS': {{'backup': '{PING_KEY}/site-backup',"
            f" 'clear-sessions': '{PING_KEY}/site-clear-sessions'}},"
            f" 'HEALTHCHECKS_PING_URL': '{hc.url}', 'HEALTHCHECKS_API_URL': '{hc.api_url}',"
            f" 'HEALTHCHECKS_API_KEY': '{API_KEY}'}}"
        )
        site = make_site(tmp_path, opskit)
        assert run_opskit("hc", "sync", cwd=site, env=clean_env()).returncode == 0
        for job in ("backup", "clear-sessions"):
            assert run_opskit(job, cwd=site, env=clean_env()).returncode == 0
        # Again, now that the jobs ran: the grace follows their durations.
        assert run_opskit("hc", "sync", cwd=site, env=clean_env()).returncode == 0
        installed = run_opskit("cron", "install", "--cron-d", "opskit-site", cwd=site, env=cron_env)
        assert installed.returncode == 0, installed.stderr
        before = len(hc.requests)

        args = ("check", "--cron", "--cron-d", "opskit-site", "--healthchecks")
        done = check(site, *args, env=cron_env)
        during = hc.requests[before:]

    found = lines(done)
    assert done.returncode == 0
    assert set(found) == {
        "settings",
        "database:default",
        "folder:backup",
        "folder:log",
        "latest:default",
        "size:default",
        "restore:default",
        "cron:jobs",
        "cron:daemon",
        "cron:start",
        "healthchecks:clear-sessions",
        "healthchecks:backup",
        "sessions",
    }
    assert {status for status, _ in found.values()} == {"OK"}, done.stdout
    assert "sha256 matches" in found["latest:default"][1]
    assert "has all 2 job(s)" in found["cron:jobs"][1]
    assert [(r.method, r.api) for r in during] == [("GET", True)]  # read, never write


def test_json_lists_every_check_with_its_status(site: Path) -> None:
    done = check(site, "check", "--json")
    rows = json.loads(done.stdout)
    assert [r["name"] for r in rows] == [
        "settings",
        "database:default",
        "folder:backup",
        "folder:log",
        "latest:default",
        "size:default",
        "restore:default",
        "sessions",
    ]
    assert all(set(r) == {"name", "status", "found", "fix"} for r in rows)
    assert all(r["status"] == "OK" for r in rows)


def test_only_runs_the_named_checks_and_rejects_unknown_names(site: Path) -> None:
    done = check(site, "check", "--only", "latest,sessions")
    assert list(lines(done)) == ["latest:default", "sessions"]
    bad = run_opskit_check(site, "--only", "nonsense")
    assert bad.returncode == 64
    assert "unknown check nonsense" in bad.stderr


def run_opskit_check(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(OPSKIT), "check", *args],
        cwd=site,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unreachable_postgresql_fails_with_the_server_and_a_fix(tmp_path: Path) -> None:
    if not shutil.which("psql") or not shutil.which("pg_dump"):
        unavailable("psql and pg_dump")
    down = DbParams(
        alias="pg",
        django_engine="django.db.backends.postgresql",
        name="nothing_here",
        user="postgres",
        host="127.0.0.1",
        port="1",
    )
    site = make_site(tmp_path, pg=down)

    done = check(site, "check", "--only", "database")

    found = lines(done)
    assert done.returncode == 1
    assert found["database:default"][0] == "OK"
    status, text = found["database:pg"]
    assert status == "FAIL"
    assert "127.0.0.1" in text
    assert ":1" in text
    assert "; fix: " in text


def test_missing_tools_fail_naming_the_folder_and_the_setting(
    tmp_path: Path, pg_db: DbParams
) -> None:
    site = make_site(tmp_path, pg=DbParams(**{**pg_db.__dict__, "alias": "pg"}))
    empty = tmp_path / "empty-bin"
    empty.mkdir()

    done = check(site, "check", "--only", "database:pg", env={"OPSKIT_PG_BIN_DIR": str(empty)})

    status, text = lines(done)["database:pg"]
    assert status == "FAIL"
    assert f"pg_dump not found in {empty}" in text
    assert "PG_BIN_DIR" in text.split("; fix: ", 1)[1]
    ok = check(site, "check", "--only", "database:pg")
    assert lines(ok)["database:pg"][0] == "OK", PG


def test_a_backup_folder_that_cannot_be_created_fails(site: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the backup folder should be\n")

    done = check(site, "--backup-dir", blocker / "db_backups", "check", "--only", "folder")

    status, text = lines(done)["folder:backup"]
    assert status == "FAIL"
    assert f"cannot create {blocker / 'db_backups'}" in text
    assert "fix: create" in text
    assert "--backup-dir" in text
    assert lines(done)["folder:log"][0] == "OK"


def test_a_read_only_backup_folder_fails_even_for_root(site: Path, tmp_path: Path) -> None:
    need_tools("mount")
    if os.geteuid() != 0:
        unavailable("root, to mount a read-only tmpfs")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", mnt], check=True)
    try:
        done = check(site, "--backup-dir", mnt, "check", "--only", "folder:backup")
    finally:
        subprocess.run(["umount", mnt], check=True)
    status, text = lines(done)["folder:backup"]
    assert (status, text.split(";")[0]) == ("FAIL", f"{mnt} is not writable by this user")


def latest(site: Path) -> Path:
    return next((site / "db_backups").glob("latest.*")).resolve()


def test_a_latest_backup_older_than_max_age_fails(site: Path) -> None:
    path = latest(site)
    manifest = manifests.path_of(path)
    data = json.loads(manifest.read_text())
    old = datetime.now().astimezone() - timedelta(days=3)
    data["finished_at"] = old.isoformat()
    manifest.write_text(json.dumps(manifests.sign(data, ("test-only",))))
    os.utime(path, (old.timestamp(), old.timestamp()))

    done = check(site, "check", "--only", "latest")

    status, text = lines(done)["latest:default"]
    assert status == "FAIL"
    assert "3.0d old" in text
    assert "older than 26.0h" in text
    assert "fix: run opskit backup --database default" in text
    assert check(site, "check", "--only", "latest", "--max-age", "4d").returncode == 0


def test_a_corrupt_latest_backup_fails_with_the_verify_fix(site: Path) -> None:
    path = latest(site)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    done = check(site, "check", "--only", "latest")

    status, text = lines(done)["latest:default"]
    assert status == "FAIL"
    assert "sha256 does not match" in text
    assert "restore from another weekday" in text


def test_bad_max_age_is_a_usage_error(site: Path) -> None:
    done = run_opskit_check(site, "--max-age", "soon")
    assert done.returncode == 64
    assert "26h" in done.stderr


def test_cron_jobs_not_installed_stale_or_no_daemon_fail(
    site: Path, tmp_path: Path, cron_env: dict[str, str]
) -> None:
    args = ("check", "--only", "cron", "--cron", "--cron-d", "opskit-site")
    missing = lines(check(site, *args, env=cron_env))
    assert missing["cron:jobs"][0] == "FAIL"
    assert (
        "not installed: opskit:site:clear-sessions, opskit:site:backup" in missing["cron:jobs"][1]
    )
    assert "fix: run opskit cron install" in missing["cron:jobs"][1]
    assert missing["cron:daemon"][0] == "OK"

    run_opskit("cron", "install", "--cron-d", "opskit-site", cwd=site, env=cron_env)
    (site / "crontab.txt").write_text("0 2 * * * opskit backup\n")
    stale = lines(check(site, *args, env=cron_env))
    assert stale["cron:jobs"][0] == "FAIL"
    assert "stale (not in crontab.txt): opskit:site:clear-sessions" in stale["cron:jobs"][1]

    no_daemon = {**cron_env, "OPSKIT_TEST_PROC_DIR": str(fake_proc(tmp_path / "p2", "bash"))}
    done = check(site, *args, env=no_daemon)
    assert done.returncode == 2
    assert lines(done)["cron:daemon"] == (
        "FAIL",
        "no cron daemon is running; fix: start it: service cron start"
        " (or install it: apt-get install cron)",
    )


def test_a_configured_check_missing_on_the_server_fails(tmp_path: Path) -> None:
    with HCServer(api_key=API_KEY) as hc:
        opskit = (
            f"{{'HEALTHCHECKS': {{'restore': '{UUID}'}}, 'HEALTHCHECKS_PING_URL': '{hc.url}',"
            f" 'HEALTHCHECKS_API_URL': '{hc.api_url}', 'HEALTHCHECKS_API_KEY': '{API_KEY}'}}"
        )
        site = make_site(tmp_path, opskit)
        done = check(site, "check", "--only", "healthchecks", "--healthchecks")
    status, text = lines(done)["healthchecks:restore"]
    assert status == "FAIL"
    assert "no check 5bf68b1e… in Healthchecks" in text
    assert UUID not in done.stdout + done.stderr
    assert API_KEY not in done.stdout + done.stderr


def test_signed_cookie_sessions_fail_with_a_fix(site: Path) -> None:
    with settings_file(site).open("a") as f:
        f.write("SESSION_ENGINE = 'django.contrib.sessions.backends.signed_cookies'\n")

    done = check(site, "check", "--only", "sessions")

    status, text = lines(done)["sessions"]
    assert status == "FAIL"
    assert "signed-cookie" in text
    assert "fix: remove clear-sessions from crontab.txt, or use the db or cached_db engine" in text


def test_broken_settings_are_one_fail_and_the_rest_is_skipped(site: Path) -> None:
    with settings_file(site).open("a") as f:
        f.write("raise RuntimeError('boom')\n")

    done = check(site, "check", "--json")

    rows = json.loads(done.stdout)
    assert done.returncode == 1
    assert rows[0]["name"] == "settings"
    assert rows[0]["status"] == "FAIL"
    assert "RuntimeError: boom" in rows[0]["found"]
    assert {r["status"] for r in rows[1:]} == {"SKIP"}
    assert len(rows) > 4


def test_hc_flag_pings_start_and_the_fail_count(site: Path, hc: HCServer) -> None:
    (site / "db_backups" / "latest.sqlite3.zst").unlink()
    done = check(site, "check", "--hc", f"{hc.url}{UUID}", "--only", "latest,sessions")
    assert done.returncode == 1
    assert [r.path.rsplit("/", 1)[-1] for r in hc.requests] == ["start", "1"]
    assert "latest:default" in hc.requests[-1].body.decode()
