"""docs/offsite.md's "by hand" commands, run verbatim with restic alone, bring the data back."""

from __future__ import annotations

import dataclasses
import filecmp
import re
import subprocess
from pathlib import Path

from dbdata import adapter_for
from support.project import SUNDAY
from support.restic_repo import Repo, local_repo, with_offsite
from support.services import PG, psql, random_name

from opskit.backup import run_backup
from opskit.config import Config
from opskit.engines import DbParams

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"<!-- offsite-by-hand: (\S+) -->\n```sh\n(.*?)```", re.S)
WORDS = (
    "REPOSITORY|PASSWORDFILE|HOSTNAME|PROJECT|ALIAS|HOST|PORT|USER|DBNAME|DBFILE|FOLDERNAME"
    "|TARGET|MEDIAPATH"
)


def blocks() -> dict[str, str]:
    return dict(BLOCK.findall((ROOT / "docs" / "offsite.md").read_text(encoding="utf-8")))


def run(name: str, repo: Repo, cwd: Path, **values: str) -> str:
    script = blocks()[name]
    values = {"REPOSITORY": repo.repository, "PASSWORDFILE": str(repo.password_file), **values}
    for word, value in values.items():
        script = re.sub(rf"\b{word}\b", value, script)
    left = re.findall(rf"\b({WORDS})\b", script)
    assert not left, f"placeholders left unfilled: {left}"
    done = subprocess.run(
        ["sh", "-e", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _pushed(tmp_path: Path, config: Config, db: DbParams, media: Path) -> tuple[Repo, Config]:
    repo = local_repo(tmp_path)
    cfg = with_offsite(config, repo.settings(host="web1", media=[str(media)]))
    report = run_backup(cfg, {db.alias: db}, [db.alias], SUNDAY)
    assert report.exit_code == 0, report.failed()
    return repo, cfg


def test_a_postgresql_dump_and_the_media_come_back_with_restic_alone(
    tmp_path: Path, config: Config, pg_db: DbParams
) -> None:
    data = adapter_for(pg_db)
    data.populate()
    wanted = {**data.snapshot(), "sessions": 0}
    media = tmp_path / "site" / "media"
    (media / "sub").mkdir(parents=True)
    (media / "sub" / "photo.jpg").write_bytes(bytes(range(256)) * 40)
    repo, _ = _pushed(tmp_path, config, pg_db, media)

    listed = run("list", repo, tmp_path, HOSTNAME="web1", PROJECT="site")
    assert "kind=dump" in listed or "opskit" in listed

    target = random_name()
    common = {"HOSTNAME": "web1", "PROJECT": "site", "ALIAS": "default"}
    out = run(
        "postgresql",
        repo,
        tmp_path,
        **common,
        HOST=PG["host"],
        PORT=PG["port"],
        USER=PG["user"],
        DBNAME=target,
    )
    try:
        lines = out.splitlines()
        first, second = lines[0].split()[0], lines[1].strip()
        assert first == second
        assert len(first) == 64
        restored = dataclasses.replace(pg_db, name=target)
        assert adapter_for(restored).snapshot() == wanted
    finally:
        psql(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')

    back = tmp_path / "back"
    out = run(
        "media",
        repo,
        tmp_path,
        HOSTNAME="web1",
        PROJECT="site",
        FOLDERNAME="media",
        TARGET=str(back),
        MEDIAPATH=str(media.resolve()),
    )
    assert "sub" in out
    got = back / str(media.resolve()).lstrip("/")
    assert filecmp.cmp(got / "sub" / "photo.jpg", media / "sub" / "photo.jpg", shallow=False)


def test_an_sqlite_dump_comes_back_over_the_file_with_restic_alone(
    tmp_path: Path, config: Config, sqlite_db: DbParams
) -> None:
    data = adapter_for(sqlite_db)
    data.populate()
    wanted = {**data.snapshot(), "sessions": 0}
    media = tmp_path / "site" / "media"
    media.mkdir(parents=True)
    repo, _ = _pushed(tmp_path, config, sqlite_db, media)
    data.mutate()
    run(
        "sqlite",
        repo,
        tmp_path,
        HOSTNAME="web1",
        PROJECT="site",
        ALIAS="default",
        DBFILE=sqlite_db.name,
    )
    assert data.snapshot() == wanted


def test_every_marked_block_is_tested() -> None:
    """A new block in docs/offsite.md needs a test here too."""
    assert set(blocks()) == {"list", "postgresql", "sqlite", "media"}
