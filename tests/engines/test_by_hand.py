"""The README's "Restoring by hand" commands, run verbatim on real archives, bring the data back."""

from __future__ import annotations

import dataclasses
import os
import pty
import re
import select
from pathlib import Path

import pytest
from dbdata import adapter_for
from support.project import run_opskit, write_project
from support.services import MY, PG, mysql, psql, random_name

from opskit.engines import DbParams

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- by-hand: (\S+) -->\n```sh\n(.*?)```", re.S)


def blocks() -> dict[str, str]:
    """The marked command blocks of the README (and docs/, where the section may live)."""
    found: dict[str, str] = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if page.is_file():
            found.update(BLOCK.findall(page.read_text(encoding="utf-8")))
    return found


def fill(script: str, **values: str) -> str:
    """Replace each placeholder word (HOST, ARCHIVE, ...) by its value; nothing else changes."""
    for name, value in values.items():
        script = re.sub(rf"\b{name}\b", value, script)
    left = re.findall(r"\b(HOST|PORT|USER|DBNAME|ARCHIVE|DIRARCHIVE|DBFILE)\b", script)
    assert not left, f"placeholders left unfilled: {left}"
    return script


def run_in_pty(script: str, cwd: Path, password: str = "", timeout: float = 120) -> tuple[int, str]:
    """Run ``sh -e -c script`` on a terminal, answering every password prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MYSQL"))}
        os.execvpe("sh", ["sh", "-e", "-c", script], env)
    output = b""
    answered = 0
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                raise AssertionError(f"no output for {timeout} s: {output[-500:]!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the terminal closed: the script ended
                break
            if not chunk:
                break
            output += chunk
            prompts = output.lower().count(b"enter password:")
            while answered < prompts:
                os.write(fd, password.encode() + b"\n")
                answered += 1
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", "replace")


def backed_up(tmp_path: Path, db: DbParams, opskit: str = "{}") -> tuple[Path, dict[str, object]]:
    """Back up ``db`` with the CLI; return its backup folder and the data it must bring back."""
    data = adapter_for(db)
    data.populate()
    wanted = {**data.snapshot(), "sessions": 0}  # session data is never backed up
    site = write_project(tmp_path / "site", {"default": db}, opskit)
    done = run_opskit("backup", cwd=site)
    assert done.returncode == 0, done.stderr
    data.mutate()
    return site / "db_backups", wanted


def test_the_sha256_check_prints_the_same_sum_twice_for_latest(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """The check block works on the latest symlink: the archive's sum equals its manifest's."""
    folder, _ = backed_up(tmp_path, sqlite_db)
    code, out = run_in_pty(fill(blocks()["check"], ARCHIVE="latest.sqlite3.zst"), folder)
    assert code == 0, out
    sums = re.findall(r"\b[0-9a-f]{64}\b", out)
    assert len(sums) == 2, out
    assert sums[0] == sums[1], out


@pytest.mark.parametrize(
    ("block", "opskit", "archive"),
    [
        ("postgresql", "{}", "latest.sql.zst"),
        ("postgresql-gzip", "{'COMPRESS': 'gzip'}", "latest.sql.gz"),
        ("postgresql-directory", "{'FORMAT': 'directory'}", "latest.pgdir"),
    ],
)
def test_postgresql_archives_restore_by_hand_into_a_new_database(
    pg_db: DbParams, tmp_path: Path, block: str, opskit: str, archive: str
) -> None:
    """createdb, then the decompressor into psql (or pg_restore), give back the backed-up data."""
    folder, wanted = backed_up(tmp_path, pg_db, opskit)
    target = dataclasses.replace(pg_db, name=random_name())
    values = {"HOST": PG["host"], "PORT": PG["port"], "USER": PG["user"], "DBNAME": target.name}
    values["DIRARCHIVE" if block.endswith("directory") else "ARCHIVE"] = archive
    try:
        code, out = run_in_pty(fill(blocks()[block], **values), folder)
        assert code == 0, out
        assert adapter_for(target).snapshot() == wanted
    finally:
        psql(f'DROP DATABASE IF EXISTS "{target.name}" WITH (FORCE)')


def test_a_mariadb_archive_restores_by_hand_answering_the_password_prompt(
    mysql_db: DbParams, tmp_path: Path
) -> None:
    """The mariadb client asks for the password on the terminal, then loads latest."""
    folder, wanted = backed_up(tmp_path, mysql_db)
    target = dataclasses.replace(mysql_db, name=random_name())
    values = {"HOST": MY["host"], "PORT": MY["port"], "USER": MY["user"], "DBNAME": target.name}
    try:
        script = fill(blocks()["mysql"], ARCHIVE="latest.sql.zst", **values)
        code, out = run_in_pty(script, folder, password="")
        assert code == 0, out
        assert adapter_for(target).snapshot() == wanted
    finally:
        mysql(f"DROP DATABASE IF EXISTS `{target.name}`")


def test_an_sqlite_archive_restores_by_hand_over_the_database_file(
    sqlite_db: DbParams, tmp_path: Path
) -> None:
    """The copy is checked with integrity_check and moved over the file the settings name."""
    folder, wanted = backed_up(tmp_path, sqlite_db)
    script = fill(blocks()["sqlite"], ARCHIVE="latest.sqlite3.zst", DBFILE=sqlite_db.name)
    code, out = run_in_pty(script, folder)
    assert code == 0, out
    assert adapter_for(sqlite_db).snapshot() == wanted
    assert not Path(sqlite_db.name + ".new").exists()


def test_every_marked_block_is_tested() -> None:
    """A new block in the section needs a test here too."""
    assert set(blocks()) == {
        "check",
        "postgresql",
        "postgresql-gzip",
        "postgresql-directory",
        "mysql",
        "sqlite",
    }
