"""Files others can write, archives of other databases, forged and malformed manifests, time."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard
from dbdata import adapter_for
from support.project import run_opskit, write_project
from support.sites import backed_up_site

from opskit import files
from opskit.archive import locks
from opskit.archive import manifest as manifests
from opskit.engines import DbParams
from opskit.errors import OpsError

KEYS = ("test-only",)  # write_project's SECRET_KEY


def project(tmp_path: Path, db: DbParams, opskit: str = "{}", name: str = "project") -> Path:
    return write_project(tmp_path / name, {"default": db}, opskit)


def beside_a_precious_file(tmp_path: Path, db: DbParams, content: str) -> tuple[Path, Path, Path]:
    """A project on ``db`` with the test rows and its backup folder (0700, empty), and a file
    outside it holding ``content``, for a planted link to point at."""
    adapter_for(db).populate()
    site = project(tmp_path, db)
    folder = site / "db_backups"
    folder.mkdir(mode=0o700)
    target = tmp_path / "precious"
    target.write_text(content)
    return site, folder, target


def latest(site: Path) -> Path:
    (link,) = (site / "db_backups").glob("latest.*")
    return link.resolve()


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


# --- files and folders others can write ---------------------------------------------------------


def test_a_symlink_planted_at_the_lock_name_is_refused_and_its_target_untouched(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """The lock file is never opened through a symlink (O_NOFOLLOW): the target keeps its bytes."""
    site, folder, target = beside_a_precious_file(tmp_path, sqlite_db, "do not truncate me")
    (folder / ".opskit-backup.lock").symlink_to(target)
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 1
    no_traceback(done)
    assert "not a lock file opskit made" in done.stderr
    assert target.read_text() == "do not truncate me"


def test_a_hard_link_at_the_lock_name_is_refused(tmp_path: Path) -> None:
    """A second name for someone's file is not a lock file: truncating it would destroy it."""
    target = tmp_path / "precious"
    target.write_text("keep")
    os.link(target, tmp_path / ".opskit-backup.lock")
    with (
        pytest.raises(OpsError, match="not a lock file opskit made"),
        locks.hold(tmp_path / ".opskit-backup.lock", what="test"),
    ):
        pass
    assert target.read_text() == "keep"


def test_files_are_created_exclusively_and_never_through_a_symlink(tmp_path: Path) -> None:
    """Anything already at the name, a symlink above all, makes the create fail."""
    outside = tmp_path / "outside"
    outside.write_text("x")
    (tmp_path / "planted").symlink_to(outside)
    with pytest.raises(FileExistsError):
        files.create(tmp_path / "planted")
    old = os.umask(0)
    try:
        fd = files.create(tmp_path / "new", 0o600)
    finally:
        os.umask(old)
    os.close(fd)
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o600
    assert outside.read_text() == "x"


def test_symlinks_planted_at_slot_manifest_and_latest_names_are_replaced_not_followed(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """A rename replaces a planted symlink itself; the file it pointed to never changes."""
    site, folder, target = beside_a_precious_file(tmp_path, sqlite_db, "keep")
    from opskit.archive.rotation import slot_for

    slot = slot_for(__import__("datetime").datetime.now())
    for name in (f"{slot}.sqlite3.zst", f"{slot}.sqlite3.zst.json", "latest.sqlite3.zst"):
        (folder / name).symlink_to(target)
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    assert target.read_text() == "keep"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 or target.stat().st_size == 4
    assert run_opskit("verify", cwd=site).returncode == 0


def test_an_existing_folder_is_never_chmodded_and_a_shared_one_is_a_warning(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """A group-writable folder owned by someone else keeps its mode; backup and check both warn."""
    adapter_for(sqlite_db).populate()
    site = project(tmp_path, sqlite_db)
    folder = site / "db_backups"
    folder.mkdir()
    folder.chmod(0o2775)
    os.chown(folder, 65534, 65534)  # nobody:nogroup; root may still write it
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    assert "backup_folder_shared" in done.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o2775
    checked = run_opskit("check", "--only", "folder", cwd=site)
    assert checked.returncode == 0
    assert any(
        line.startswith("WARN  folder:backup") and "can write" in line
        for line in checked.stdout.splitlines()
    ), checked.stdout


def test_a_symlinked_backup_folder_is_used_and_its_target_keeps_its_mode(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """Pointing db_backups at another disk with a symlink works; opskit chmods nothing there."""
    adapter_for(sqlite_db).populate()
    site = project(tmp_path, sqlite_db)
    disk = tmp_path / "bigdisk"
    disk.mkdir()
    disk.chmod(0o755)
    (site / "db_backups").symlink_to(disk)
    assert run_opskit("backup", cwd=site).returncode == 0
    assert stat.S_IMODE(disk.stat().st_mode) == 0o755
    assert list(disk.glob("latest.*"))


def test_log_files_are_0640_and_log_folders_0750_whatever_the_umask(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """Under umask 000 the logs opskit creates are still readable by their group at most."""
    adapter_for(sqlite_db).populate()
    site = project(tmp_path, sqlite_db)
    done = subprocess.run(
        [
            "sh",
            "-c",
            'umask 000 && exec "$0" backup',
            str(Path(sys.executable).with_name("opskit")),
        ],
        cwd=site,
        capture_output=True,
        text=True,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
    )
    assert done.returncode == 0, done.stderr
    logs = site / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o750
    for name in ("opskit.log", "opskit.json.log"):
        assert stat.S_IMODE((logs / name).stat().st_mode) == 0o640
    assert stat.S_IMODE((site / "db_backups").stat().st_mode) == 0o700


# --- which database an archive is of ---------------------------------------------------------


def test_two_projects_sharing_one_backup_folder_are_refused_naming_both(
    tmp_path: Path,
) -> None:
    """The second database pointed at a folder is refused before it overwrites a slot."""
    shared = tmp_path / "shared"
    sites = []
    for name in ("one", "two"):
        db = DbParams("default", "django.db.backends.sqlite3", str(tmp_path / name / "db.sqlite3"))
        (tmp_path / name).mkdir()
        adapter_for(db).populate()
        sites.append(project(tmp_path, db, f"{{'BACKUP_DIR': '{shared}'}}", name=f"{name}-site"))
    assert run_opskit("backup", cwd=sites[0]).returncode == 0
    before = {p.name: p.read_bytes() for p in shared.iterdir() if p.is_file()}
    done = run_opskit("backup", cwd=sites[1])
    assert done.returncode == 1
    no_traceback(done)
    assert "must not share a backup folder" in done.stderr
    assert str(tmp_path / "one" / "db.sqlite3") in done.stderr
    assert str(tmp_path / "two" / "db.sqlite3") in done.stderr
    after = {
        p.name: p.read_bytes() for p in shared.iterdir() if p.is_file() and "lock" not in p.name
    }
    assert {k: v for k, v in before.items() if "lock" not in k} == after


def test_an_archive_of_another_database_is_refused_unless_asked(
    pg_db: DbParams, tmp_path: Path
) -> None:
    """latest pointing at another database's archive is refused; --from-other-database loads it."""
    from support.services import psql

    other = DbParams(**{**pg_db.__dict__, "name": pg_db.name + "_other"})
    psql(f'CREATE DATABASE "{other.name}"')
    source, target = adapter_for(other), adapter_for(pg_db)
    source.populate()
    target.populate()
    target.mutate()
    wanted, before = source.snapshot(), target.snapshot()
    theirs = project(tmp_path, other, name="theirs")
    assert run_opskit("backup", cwd=theirs).returncode == 0
    ours = project(tmp_path, pg_db, f"{{'BACKUP_DIR': '{theirs / 'db_backups'}'}}", name="ours")
    done = run_opskit("restore", "--yes", cwd=ours)
    assert done.returncode == 1
    no_traceback(done)
    assert f"it is a backup of postgresql database '{other.name}'" in done.stderr
    assert "--from-other-database" in done.stderr
    assert target.snapshot() == before
    done = run_opskit("restore", "--yes", "--from-other-database", "--drop-old", cwd=ours)
    assert done.returncode == 0, done.stderr
    assert target.snapshot() == {**wanted, "sessions": 0}  # session data is never backed up


# --- signatures ----------------------------------------------------------------------------


def test_an_archive_and_manifest_replaced_together_without_the_key_are_refused(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """A crafted archive with a matching sha256 but no valid signature never loads."""
    data = adapter_for(sqlite_db)
    site = backed_up_site(tmp_path / "project", sqlite_db)
    path = latest(site)
    record = manifests.read(path)
    shutil.copy(sqlite_db.name, tmp_path / "copy.sqlite3")  # any SQLite file will do
    crafted = zstandard.ZstdCompressor().compress((tmp_path / "copy.sqlite3").read_bytes())
    path.write_bytes(crafted)
    record.update(size=len(crafted), sha256=hashlib.sha256(crafted).hexdigest())
    data.mutate()
    before = data.snapshot()
    for forged in (
        dict(record, signature="x" * 43),
        {k: v for k, v in record.items() if k != "signature"},
    ):
        manifests.path_of(path).write_text(json.dumps(forged))
        done = run_opskit("restore", "--yes", cwd=site)
        assert done.returncode == 1
        no_traceback(done)
        assert "--trust-unsigned" in done.stderr
        assert data.snapshot() == before
        verified = run_opskit("verify", cwd=site)
        assert verified.returncode == 1
        assert re.search(r"bad signature|is not signed", verified.stdout), verified.stdout
    done = run_opskit("restore", "--yes", "--trust-unsigned", cwd=site)
    assert done.returncode == 0, done.stderr
    assert data.snapshot() != before  # the crafted content, loaded because the user said so


def test_archives_signed_with_a_retired_key_verify_through_secret_key_fallbacks(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """Rotating SECRET_KEY with the old one in SECRET_KEY_FALLBACKS keeps old archives trusted."""
    site = backed_up_site(tmp_path / "project", sqlite_db)
    (settings,) = site.glob("settings_*.py")
    text = settings.read_text().replace("SECRET_KEY = 'test-only'", "SECRET_KEY = 'new-key'")
    settings.write_text(text)
    assert run_opskit("verify", cwd=site).returncode == 1
    settings.write_text(text + "SECRET_KEY_FALLBACKS = ['test-only']\n")
    done = run_opskit("verify", cwd=site)
    assert done.returncode == 0, done.stdout + done.stderr


# --- malformed manifests --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("size", "12"),
        ("sha256", 42),
        ("finished_at", "yesterday-ish"),
        ("tables", {"t": "many"}),
        ("engine", ["sqlite"]),
    ],
)
def test_a_malformed_manifest_is_one_line_naming_the_file_and_field_everywhere(
    sqlite_db: DbParams, tmp_path: Path, field: str, value: object
) -> None:
    """verify, check, restore, list and --restore-test say what is wrong; none has a traceback."""
    site = backed_up_site(tmp_path / "project", sqlite_db)
    path = latest(site)
    record = manifests.read(path)
    record[field] = value
    manifests.path_of(path).write_text(json.dumps(record))
    for args in (
        ("verify",),
        ("verify", "--restore-test"),
        ("check", "--only", "latest"),
        ("restore", "--yes"),
        ("list",),
    ):
        done = run_opskit(*args, cwd=site)
        no_traceback(done)
        out = done.stdout + done.stderr
        assert f"field {field!r}" in out, (args, out)
        assert path.name in out, (args, out)
        if args[0] != "list":
            assert done.returncode == 1, (args, out)


# --- time ------------------------------------------------------------------------------------


def test_a_latest_backup_from_the_future_fails_check_and_list_says_so(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """With the clock moved back (faketime), check FAILs and list shows 'in the future'."""
    if not shutil.which("faketime"):
        from support.services import unavailable

        unavailable("faketime")
    site = backed_up_site(tmp_path / "project", sqlite_db)
    opskit = str(Path(sys.executable).with_name("opskit"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    moved_back = ["faketime", "-f", "-10d"]

    def at(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*moved_back, opskit, *args],
            cwd=site,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    done = at("check", "--only", "latest")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "clock moved back, or archive from the future" in done.stdout
    listed = at("list")
    assert "in the future" in listed.stdout
    assert "-" not in listed.stdout.split("in the future")[0][-12:]
