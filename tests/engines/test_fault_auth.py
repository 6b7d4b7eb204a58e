"""Passwords against a server that checks them: a private cluster with scram-sha-256.

The shared server trusts every local connection, so only here does the passfile really have to
work. While opskit runs, every process's command line is scanned for the password (the
technique of test_secrets.py); logs, manifests and output must not hold it either.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dbdata import adapter_for
from support.faultkit import (
    Cluster,
    assert_archives_verify,
    cluster,
    state,
    step_failures,
    temp_files,
)
from support.project import write_project
from test_secrets import (
    assert_nowhere,
    new_password,
    passfile_entry,
    pg_literal,
    run_watched,
    text_outputs,
)

from opskit.engines import DbParams


@pytest.fixture(scope="module")
def scram() -> Iterator[Cluster]:
    with cluster(auth="scram-sha-256") as pg:
        yield pg


@dataclasses.dataclass
class Account:
    db: DbParams  # what the project uses: TCP, the role and its password
    admin: DbParams  # the test's own view: the superuser over the socket (trust)
    token: str


@pytest.fixture
def account(scram: Cluster) -> Account:
    """A role with an odd password that owns a database with the test rows and 100k more."""
    password, token = new_password()
    role = f"opskit_u_{secrets.token_hex(5)}"
    name = f"shop_{secrets.token_hex(4)}"
    scram.sql(
        f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD {pg_literal(password)};"
        f" CREATE DATABASE {name} OWNER {role}"
    )
    admin = dataclasses.replace(scram.params(name), host=str(scram.folder))
    adapter_for(admin).populate()
    scram.sql(
        f"ALTER TABLE item OWNER TO {role}; ALTER TABLE django_session OWNER TO {role};"
        f" SET ROLE {role}; CREATE TABLE big AS SELECT g AS id, md5(g::text) AS t"
        " FROM generate_series(1, 100000) g",
        name,
    )
    db = scram.params(name, user=role, password=password)
    # The server really asks for the password over TCP: without it, no connection.
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host=db.host, port=db.port, user=role, dbname=name).close()
    return Account(db, admin, token)


@pytest.mark.postgresql  # a private server of its own
def test_backup_and_restore_authenticate_with_a_passfile_and_never_show_the_password(
    account: Account, tmp_path: Path
) -> None:
    db, token = account.db, account.token
    needles = (db.password, token)
    site = write_project(tmp_path / "site", {"default": db})
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    data = adapter_for(account.admin)
    backed_up = data.snapshot()

    backup = run_watched("backup", cwd=site, tmpdir=tmpdir, needles=needles)
    assert backup.returncode == 0, backup.stderr
    assert backup.leaks == []
    assert backup.dump_seen >= 1, f"no pg_dump seen in {backup.scans} scans"
    for env in backup.tool_envs:
        assert "PGPASSWORD" not in env
        assert env["PGPASSFILE"].startswith(str(tmpdir))
    assert backup.credential_files, "no PGPASSFILE caught while the tools ran"
    for path, (mode, folder_mode, content) in backup.credential_files.items():
        assert (mode, folder_mode) == (0o600, 0o700), path
        assert passfile_entry(content)[-1] == db.password
    assert list(tmpdir.iterdir()) == []
    assert assert_archives_verify(site / "db_backups") == 1

    data.mutate()
    assert data.snapshot() != backed_up
    restore = run_watched(
        "restore", "--yes", "--drop-old", cwd=site, tmpdir=tmpdir, needles=needles
    )
    assert restore.returncode == 0, restore.stderr
    assert restore.leaks == []
    assert data.snapshot() == {**backed_up, "sessions": 0}  # session data is never backed up
    assert list(tmpdir.iterdir()) == []

    texts = text_outputs(site, restore)
    texts.update({f"backup {k}": v for k, v in text_outputs(site, backup).items()})
    assert any(name.endswith(".sql.zst.json") for name in texts)
    assert any(name.endswith("opskit.json.log") for name in texts)
    assert_nowhere(texts, db.password, token)


@pytest.mark.postgresql  # a private server of its own
@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("wrong", 'password authentication failed for user "{user}"'),
        ("", "no password supplied"),
    ],
    ids=["wrong", "missing"],
)
def test_a_wrong_or_missing_password_is_one_error_that_never_shows_it(
    account: Account, tmp_path: Path, password: str, reason: str
) -> None:
    db = account.db
    site = write_project(tmp_path / "site", {"default": db})
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    good = run_watched("backup", cwd=site, tmpdir=tmpdir, needles=(db.password,))
    assert good.returncode == 0, good.stderr
    backups = site / "db_backups"
    before = state(backups)

    wrong, token = new_password() if password == "wrong" else ("", "")
    write_project(site, {"default": dataclasses.replace(db, password=wrong)})
    needles = tuple(n for n in (wrong, token, db.password) if n)
    watch = run_watched("backup", cwd=site, tmpdir=tmpdir, needles=needles)

    assert watch.returncode == 1, watch.stderr
    (line,) = step_failures(watch.stderr)
    assert reason.format(user=db.user) in line
    assert f"user {db.user} at {db.host}:{db.port}" in line
    assert watch.leaks == []
    assert_nowhere(text_outputs(site, watch), *needles)
    assert list(tmpdir.iterdir()) == []
    assert state(backups) == before
    assert temp_files(backups) == []
